//! Fuzzy lookup: embed the queries, take the nearest rows by embedding distance on the
//! GPU, re-rank them by exact Levenshtein distance on CPU threads.
use anyhow::{Result, bail};
use rapidfuzz::distance::levenshtein::BatchComparator;
use rayon::prelude::*;

use super::index::{Index, Precision};
use crate::embed::Embedder;
use crate::gpu::Gpu;
use crate::model::weights::Weights;
use crate::ops::knn::{Database, Knn, MAX_K, Neighbor};

/// Default `--candidates`: the smallest C reaching recall@1 >= 0.95 on codespell
/// misspellings against wamerican-huge with the default model (0.957 at C = 200 of the
/// grid 10, 20, 50, 100, 200, 500, 1,024; 0.933 at 100). See BENCHMARKS.md.
pub const DEFAULT_CANDIDATES: usize = 200;
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

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// 0-based row of the index.
    pub id: usize,
    /// Exact Levenshtein distance (`None` without re-rank).
    pub distance: Option<u32>,
    /// `s * squared embedding distance`, on the edit-distance scale.
    pub estimate: f32,
}

/// The hits of one query, plus whether the candidate cap may have cut a threshold search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub hits: Vec<Hit>,
    pub capped: bool,
}

/// An index loaded on a device with its model, ready for queries.
pub struct Searcher<'a> {
    gpu: &'a Gpu,
    index: &'a Index,
    embedder: Embedder<'a>,
    knn: Knn,
    database: Database,
    scale: f32,
}

impl<'a> Searcher<'a> {
    /// Upload `index`'s embeddings and build `weights` (which must be the index's model).
    pub fn new(gpu: &'a Gpu, index: &'a Index, weights: &Weights) -> Result<Self> {
        let embedder = Embedder::new(gpu, weights, 1024)?;
        let knn = Knn::new(gpu);
        let f16 = index.precision() == Precision::F16;
        let database = Database::upload(gpu, index.embedding_bytes(), index.dim(), f16, None)?;
        Ok(Searcher {
            gpu,
            index,
            embedder,
            knn,
            database,
            scale: index.distance_scale(),
        })
    }

    /// Answer `queries` (full strings; cut to 80 only for the model).
    pub fn search(&mut self, queries: &[&[u8]], opts: &QueryOptions) -> Result<Vec<Answer>> {
        check_options(opts)?;
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
        let embeddings = self.embedder.embed(queries)?;
        let candidates = if opts.candidates <= MAX_GPU_CANDIDATES {
            self.knn
                .search(self.gpu, &self.database, &embeddings, opts.candidates)?
        } else {
            // More candidates than the GPU search keeps, covering every row: rank them all.
            let all = self.index.embeddings_f32();
            let dim = self.index.dim();
            embeddings
                .par_chunks(dim)
                .map(|q| {
                    let mut rows: Vec<Neighbor> = all
                        .chunks_exact(dim)
                        .enumerate()
                        .map(|(row, x)| Neighbor {
                            distance: squared_distance(q, x),
                            row,
                        })
                        .collect();
                    rows.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row)));
                    rows
                })
                .collect()
        };
        let index = self.index;
        let scale = self.scale;
        Ok(queries
            .par_iter()
            .zip(candidates)
            .map(|(query, found)| answer(index, scale, query, &found, opts))
            .collect())
    }
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
    scale: f32,
    query: &[u8],
    found: &[Neighbor],
    opts: &QueryOptions,
) -> Answer {
    let estimate = |n: &Neighbor| scale * n.distance;
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
