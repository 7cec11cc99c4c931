//! Training: labelled pairs made on CPU threads ([`data`]), the explicit GPU step
//! ([`trainer`]), checkpoints ([`checkpoint`]) and the loop with schedule, validation
//! and logging ([`run`]).
pub mod checkpoint;
pub mod cnn_ed_data;
pub mod data;
pub mod run;
pub mod trainer;
