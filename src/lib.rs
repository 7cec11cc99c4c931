//! megashtein-gpu: a learned edit-distance embedding of ASCII strings, computed by
//! hand-written WGSL compute shaders through wgpu, for fuzzy string search.
//!
//! Floors, each using only the ones below it:
//! - [`cli`]: one function per command of the `megashtein-gpu` binary;
//! - [`train`]: training: labelled pairs on CPU threads, the explicit GPU step (forward,
//!   loss, backward, AdamW), checkpoints, and the loop with validation and logging;
//! - [`search`]: the index file and fuzzy queries (GPU kNN + exact re-rank);
//! - [`embed`]: strings to embeddings in GPU batches;
//! - [`model`]: the architecture, its weights (safetensors, `.pth` import);
//! - [`ops`]: one GPU op per file, each beside its shader in `shaders/`;
//! - [`gpu`]: device, buffers and pipelines;
//! - [`reference`]: plain CPU versions of every op, the yardstick for tests;
//! - [`input`] and [`io`]: the input-line rules of CONTRACTS.md and atomic file output;
//! - [`stats`]: rank correlation and embedding distance, for validation and reports.
pub mod bench;
pub mod cli;
pub mod embed;
pub mod eval;
pub mod gpu;
pub mod input;
pub mod io;
pub mod model;
pub mod ops;
pub mod reference;
pub mod search;
pub mod stats;
pub mod train;
