//! megashtein-gpu: a learned edit-distance embedding of ASCII strings, computed by
//! hand-written WGSL compute shaders through wgpu, for fuzzy string search.
//!
//! # Using it from Rust
//!
//! Open a device, load a model, then embed strings, estimate edit distances, or build
//! an index and search it: the nearest rows by embedding distance on the GPU, re-ranked
//! by exact Levenshtein distance on CPU threads.
//!
//! ```
//! use megashtein_gpu::{Embedder, Gpu, GpuOptions, Index, Model, Precision, QueryOptions, Searcher};
//!
//! # fn main() -> anyhow::Result<()> {
//! // The best adapter there is (a software one where there is no GPU).
//! let gpu = Gpu::new(&GpuOptions::default())?;
//! // The built-in model; `Model::open("model.safetensors")` for a trained one.
//! let model = Model::builtin()?;
//!
//! // Embeddings (`model.dim()` values each, row-major) and distance estimates.
//! let mut embedder = Embedder::for_model(&gpu, &model)?;
//! let vectors = embedder.embed(&["kitten", "sitting"])?;
//! assert_eq!(vectors.len(), 2 * model.dim());
//! let estimate = embedder.estimate("kitten", "sitting")?;
//! assert!(estimate.is_finite() && estimate > 0.0);
//!
//! // An index in memory (`Index::open` maps one written by `megashtein-gpu embed`,
//! // `index.save(path)` writes this one).
//! let words = ["apple", "banana", "cherry", "orange", "grape", "melon"];
//! let index = Index::build(&gpu, &model, &words, Precision::F32)?;
//!
//! // A searcher checks that the index was made by this model, then answers queries.
//! let mut searcher = Searcher::new(&gpu, &index, &model)?;
//! let answers = searcher.search(&["oragne", "banan"], &QueryOptions::for_model(&model))?;
//! let best = &answers[0].hits[0];
//! assert_eq!(index.string(best.id), b"orange");
//! assert_eq!(best.distance, Some(2));
//! assert_eq!(index.string(answers[1].hits[0].id), b"banana");
//! # Ok(())
//! # }
//! ```
//!
//! Everything above is re-exported at the crate root. The modules below are the
//! engine behind it, public so that the binary, the tests and the benchmarks can reach
//! it; they carry no promise of stability.
//!
//! # Cargo features
//!
//! - `cli` (default): the `megashtein-gpu` binary and its commands; brings `eval` and
//!   `pth`, and clap, indicatif, ctrlc.
//! - `eval`: the accuracy report with its plots (plotters).
//! - `pth`: reading PyTorch `.pth` checkpoints (zip).
//!
//! `default-features = false` leaves embedding, indexes and search.
//!
//! # Floors
//!
//! Each uses only the ones below it:
//! - `cli`: one function per command of the `megashtein-gpu` binary;
//! - `train`: training: labelled pairs on CPU threads, the explicit GPU step (forward,
//!   loss, backward, AdamW), checkpoints, and the loop with validation and logging;
//! - `search`: the index file and fuzzy queries (GPU kNN + exact re-rank);
//! - `embed`: strings to embeddings in GPU batches;
//! - `model`: the architecture, its weights (safetensors, `.pth` import);
//! - `ops`: one GPU op per file, each beside its shader in `shaders/`;
//! - `gpu`: device, buffers and pipelines;
//! - `reference`: plain CPU versions of every op, the yardstick for tests;
//! - `input` and `io`: the input-line rules of CONTRACTS.md and atomic file output;
//! - `stats`: rank correlation, least-squares lines and embedding distance, for the
//!   trainers, the estimators and reports.

pub use embed::Embedder;
pub use gpu::{BackendChoice, Gpu, GpuOptions};
pub use model::Model;
pub use search::index::{Index, Precision};
pub use search::query::{Answer, Hit, QueryOptions, Searcher};

#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod bench;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod edit_distance;
#[doc(hidden)]
pub mod embed;
#[cfg(feature = "eval")]
#[doc(hidden)]
pub mod eval;
#[doc(hidden)]
pub mod gpu;
#[doc(hidden)]
pub mod input;
#[doc(hidden)]
pub mod io;
#[doc(hidden)]
pub mod model;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod reference;
#[doc(hidden)]
pub mod search;
#[doc(hidden)]
pub mod stats;
#[doc(hidden)]
pub mod train;
