//! Fuzzy lookup: embed the queries, take the nearest rows by embedding distance on the
//! GPU, re-rank them by exact Levenshtein distance on CPU threads. Embedding and kNN of
//! a batch are one submit: the kNN reads the model's output buffer, so embeddings never
//! travel to the CPU.
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rapidfuzz::distance::levenshtein::BatchComparator;
use rayon::prelude::*;

use super::index::Index;
use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::Gpu;
use crate::input::require_ascii;
use crate::model::{Estimator, Metric, Model};
use crate::ops::knn::{self, Database, Knn, KnnPlan, MAX_K, Neighbor};

/// Default `--candidates`, by CONTRACTS.md's rule: the smallest C of the grid 10, 20,
/// 50, 100, 200, 500, 1,024 reaching recall@1 >= 0.99 on codespell misspellings against
/// wamerican-huge with the default model, or 1,024 if none does. None does (0.951 at
/// 200, 0.975 at 500, 0.983 at 1,024 on 1,000 queries; BENCHMARKS.md), so 1,024.
pub const DEFAULT_CANDIDATES: usize = 1024;
/// Default `--blowup` for threshold search.
pub const DEFAULT_BLOWUP: f32 = 2.0;

/// What a query asks for.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// Hits to return per query (ignored by threshold search, which returns all).
    pub k: usize,
    /// Rows taken by embedding distance before the exact re-rank (C >= k).
    pub candidates: usize,
    /// Threshold search: every candidate within this exact distance.
    pub max_distance: Option<u32>,
    /// Threshold search keeps candidates with estimate <= blowup * max_distance.
    pub blowup: f32,
    /// Skip the exact re-rank and return raw embedding neighbours.
    pub rerank: bool,
}

impl Default for QueryOptions {
    /// The 10 nearest by exact distance among [`DEFAULT_CANDIDATES`] candidates.
    fn default() -> Self {
        QueryOptions {
            k: 10,
            candidates: DEFAULT_CANDIDATES,
            max_distance: None,
            blowup: DEFAULT_BLOWUP,
            rerank: true,
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// 0-based row of the index.
    pub id: usize,
    /// Exact Levenshtein distance (`None` without re-rank).
    pub distance: Option<u32>,
    /// The model's estimate of the edit distance from the embeddings (`s * squared
    /// embedding distance`, or CGK's curve of the Hamming distance).
    pub estimate: f32,
}

/// The hits of one query, plus whether the candidate cap may have cut a threshold search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub hits: Vec<Hit>,
    pub capped: bool,
}

/// Where a [`Searcher`]'s time went, summed over its calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Embedding the queries (GPU), including the token upload.
    pub embed: Duration,
    /// The kNN on the GPU, with the readback of the candidates.
    pub knn: Duration,
    /// The exact re-rank on CPU threads.
    pub rerank: Duration,
}

/// An index loaded on a device with its model, ready for queries.
pub struct Searcher<'a> {
    gpu: &'a Gpu,
    index: &'a Index,
    embedder: Embedder<'a>,
    knn: Knn,
    database: Database,
    /// The kNN plan of the last candidate count, reading the model's output.
    plan: Option<KnnPlan>,
    estimator: Estimator,
    /// Time embedding and kNN apart (two submits per batch instead of one).
    timed: bool,
    timings: Timings,
}

impl<'a> Searcher<'a> {
    /// Upload `index`'s embeddings and build `model` on `gpu`, for batches of up to
    /// [`DEFAULT_BATCH`] queries. An index made by another model is refused.
    pub fn new(gpu: &'a Gpu, index: &'a Index, model: &Model) -> Result<Self> {
        Searcher::with_batch(gpu, index, model, DEFAULT_BATCH)
    }

    /// [`Searcher::new`] for batches of up to `batch` queries (clamped to what the
    /// device holds).
    pub fn with_batch(gpu: &'a Gpu, index: &'a Index, model: &Model, batch: usize) -> Result<Self> {
        index.check_model(model)?;
        let database = index.upload(gpu)?;
        // Any kNN plan must take a whole batch of the model's output.
        let batch = batch.clamp(1, knn::max_batch(gpu, database.query_words(), MAX_K));
        Ok(Searcher {
            gpu,
            index,
            embedder: Embedder::with_batch(gpu, model, batch)?,
            knn: Knn::new(gpu),
            database,
            plan: None,
            estimator: index.estimator(),
            timed: false,
            timings: Timings::default(),
        })
    }

    /// Measure embedding and kNN separately from now on (see [`Searcher::timings`]).
    pub fn set_timed(&mut self, timed: bool) {
        self.timed = timed;
    }

    /// Time spent so far; embedding and kNN are told apart only while timed (otherwise
    /// both count as kNN).
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// Answer `queries` (full strings, ASCII; cut to 80 only for the model).
    pub fn search<Q: AsRef<[u8]>>(
        &mut self,
        queries: &[Q],
        opts: &QueryOptions,
    ) -> Result<Vec<Answer>> {
        check_options(opts)?;
        require_ascii(queries, |i| format!("query {}", i + 1))?;
        let queries: Vec<&[u8]> = queries.iter().map(AsRef::as_ref).collect();
        let n = self.index.len();
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        if n == 0 {
            return Ok(vec![Answer::default(); queries.len()]);
        }
        if opts.candidates > MAX_GPU_CANDIDATES && opts.candidates < n {
            bail!(
                "--candidates {} is above the GPU search's limit of {MAX_GPU_CANDIDATES}; use at \
                 most {MAX_GPU_CANDIDATES}, or at least the index size {n} for an exhaustive re-rank",
                opts.candidates
            );
        }
        let mut answers = Vec::with_capacity(queries.len());
        for chunk in queries.chunks(self.embedder.batch()) {
            let found = self.candidates(chunk, opts.candidates)?;
            let start = Instant::now();
            let (index, estimator) = (self.index, &self.estimator);
            answers.par_extend(
                chunk
                    .par_iter()
                    .zip(found)
                    .map(|(query, found)| answer(index, estimator, query, &found, opts)),
            );
            self.timings.rerank += start.elapsed();
        }
        Ok(answers)
    }

    /// The `candidates` nearest rows of each query by embedding distance.
    fn candidates(&mut self, queries: &[&[u8]], candidates: usize) -> Result<Vec<Vec<Neighbor>>> {
        let gpu = self.gpu;
        let start = Instant::now();
        if candidates > MAX_GPU_CANDIDATES {
            // More candidates than the GPU search keeps, covering every row: rank them all.
            let embeddings = self.embedder.embed(queries)?;
            self.timings.embed += start.elapsed();
            return Ok(rank_all(self.index, self.estimator.metric, &embeddings));
        }
        if self.plan.as_ref().is_none_or(|plan| plan.k() != candidates) {
            let capacity = self.embedder.batch();
            let output = Some(self.embedder.output());
            let plan = KnnPlan::new(gpu, &self.knn, &self.database, candidates, capacity, output)?;
            self.plan = Some(plan);
        }
        let plan = self.plan.as_ref().unwrap();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let batch = self.embedder.record(&mut encoder, queries)?;
        if self.timed {
            gpu.queue.submit([encoder.finish()]);
            gpu.wait()?;
            encoder = gpu.device.create_command_encoder(&Default::default());
        }
        let embedded = Instant::now();
        plan.record(gpu, &mut encoder, batch);
        gpu.queue.submit([encoder.finish()]);
        let found = plan.read(gpu, batch)?;
        // A query whose embedding is not finite gets NaN distances (or none at all).
        let untrusted = found
            .iter()
            .position(|list| list.is_empty() || list.iter().any(|n| !n.distance.is_finite()));
        if let Some(i) = untrusted {
            bail!(
                "query {:?}: its embedding distances are not finite numbers, so no answer \
                 can be trusted (the model's weights hold NaN or infinity?)",
                String::from_utf8_lossy(queries[i])
            );
        }
        self.timings.embed += embedded - start;
        self.timings.knn += embedded.elapsed();
        Ok(found)
    }
}

/// Every row of `index` for each query embedding, nearest first (ties by row), on CPU
/// threads: the exhaustive search behind `--candidates` >= the index size.
fn rank_all(index: &Index, metric: Metric, embeddings: &[f32]) -> Vec<Vec<Neighbor>> {
    let all = index.embeddings_f32();
    let dim = index.dim();
    embeddings
        .par_chunks(dim)
        .map(|q| {
            let mut rows: Vec<Neighbor> = all
                .chunks_exact(dim)
                .enumerate()
                .map(|(row, x)| Neighbor {
                    distance: match metric {
                        Metric::SquaredEuclidean => squared_distance(q, x),
                        Metric::Hamming => q.iter().zip(x).filter(|(a, b)| a != b).count() as f32,
                    },
                    row,
                })
                .collect();
            rows.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
            rows
        })
        .collect()
}

/// Reject option combinations that make no sense, before any work is done.
pub fn check_options(opts: &QueryOptions) -> Result<()> {
    if opts.k == 0 {
        bail!("-k must be at least 1");
    }
    if opts.candidates < opts.k {
        bail!(
            "--candidates ({}) must be at least -k ({})",
            opts.candidates,
            opts.k
        );
    }
    if opts.blowup.is_nan() || opts.blowup < 0.0 {
        bail!("--blowup must be a non-negative number or inf");
    }
    Ok(())
}

/// Re-rank one query's candidates (nearest by embedding first).
fn answer(
    index: &Index,
    estimator: &Estimator,
    query: &[u8],
    found: &[Neighbor],
    opts: &QueryOptions,
) -> Answer {
    let estimate = |n: &Neighbor| estimator.estimate(n.distance);
    let capped;
    let pool: Vec<&Neighbor> = match opts.max_distance {
        Some(d) => {
            let limit = opts.blowup * d as f32;
            let within: Vec<&Neighbor> = found.iter().filter(|n| estimate(n) <= limit).collect();
            // Every candidate passed the filter, so the cap may have cut more that would.
            capped = within.len() == opts.candidates && within.len() < index.len();
            within
        }
        None => {
            capped = false;
            found.iter().collect()
        }
    };
    if !opts.rerank {
        let take = if opts.max_distance.is_some() {
            pool.len()
        } else {
            opts.k
        };
        let hits = pool
            .into_iter()
            .take(take)
            .map(|n| Hit {
                id: n.row,
                distance: None,
                estimate: estimate(n),
            })
            .collect();
        return Answer { hits, capped };
    }
    let exact = BatchComparator::new(query.iter().copied());
    let mut hits: Vec<Hit> = pool
        .into_iter()
        .map(|n| Hit {
            id: n.row,
            distance: Some(exact.distance(index.string(n.row).iter().copied()) as u32),
            estimate: estimate(n),
        })
        .collect();
    if let Some(d) = opts.max_distance {
        hits.retain(|h| h.distance.is_some_and(|x| x <= d));
    }
    hits.sort_by(|a, b| {
        a.distance
            .cmp(&b.distance)
            .then(a.estimate.total_cmp(&b.estimate))
            .then(a.id.cmp(&b.id))
    });
    if opts.max_distance.is_none() {
        hits.truncate(opts.k);
    }
    Answer { hits, capped }
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Largest `--candidates` the GPU search takes; larger values are allowed only when they
/// cover the whole index (an exhaustive re-rank).
pub const MAX_GPU_CANDIDATES: usize = MAX_K;
