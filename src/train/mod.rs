//! Training: labelled pairs made on CPU threads ([`data`]), the explicit GPU step
//! ([`trainer`]), checkpoints ([`checkpoint`]) and the loop with schedule, validation
//! and logging ([`run`]); CNN-ED's triplets ([`cnn_ed_data`]), step ([`cnn_ed`]) and run
//! ([`cnn_ed_run`]); hard examples from the model's own neighbours ([`hard`]).
pub mod checkpoint;
pub mod cnn_ed;
pub mod cnn_ed_checkpoint;
pub mod cnn_ed_data;
pub mod cnn_ed_run;
pub mod data;
pub mod hard;
pub mod run;
pub mod trainer;
