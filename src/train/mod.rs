//! Training: data generation.
pub mod data;
