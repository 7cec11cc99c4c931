//! Fuzzy lookup: embed the queries, take the nearest rows by embedding distance on the
//! GPU, re-rank them by exact Levenshtein distance on CPU threads. Embedding and kNN of
//! a batch are one submit: the kNN reads the model's output buffer, so embeddings never
//! travel to the CPU.
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::index::Index;
use super::passes_screen;
use crate::edit_distance::Exact;
use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::Gpu;
use crate::input::{require_ascii, require_utf8};
use crate::model::Model;
use crate::ops::knn::{self, Database, Knn, KnnPlan, MAX_K, Neighbor};

/// Default `--candidates`, by CONTRACTS.md's rule: the smallest C of the grid 10, 20,
/// 50, 100, 200, 500, 1,024 reaching recall@1 >= 0.99 on codespell misspellings against
/// wamerican-huge with the default model, or 1,024 if none does: 0.991 at 50 on 1,000
/// queries (0.976 at 20, 0.997 at 200; BENCHMARKS.md, "The default model, retrained").
pub const DEFAULT_CANDIDATES: usize = 50;
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
    /// Threshold search keeps candidates with estimate <= blowup * max_distance (the
    /// estimate less a positive intercept: [`crate::model::Estimator::screen`]).
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

impl QueryOptions {
    /// The defaults for `model`: its own measured C where its file records one
    /// ([`Model::default_candidates`]), else [`DEFAULT_CANDIDATES`].
    pub fn for_model(model: &Model) -> Self {
        QueryOptions {
            candidates: model.default_candidates().unwrap_or(DEFAULT_CANDIDATES),
            ..QueryOptions::default()
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

/// An index loaded on a device with its model, ready for queries; optionally with a
/// second index of the same strings made by another model ([`Searcher::also`]), whose
/// candidates join the first's.
pub struct Searcher<'a> {
    gpu: &'a Gpu,
    primary: Source<'a>,
    /// The primary model reads any UTF-8 (CNN-ED), not ASCII only.
    unicode: bool,
    also: Option<Source<'a>>,
    /// Time embedding and kNN apart (two submits per batch instead of one).
    timed: bool,
    timings: Timings,
}

/// One index with its model on the device: where candidates come from.
struct Source<'a> {
    index: &'a Index,
    embedder: Embedder<'a>,
    knn: Knn,
    database: Database,
    /// The kNN plan of the last candidate count, reading the model's output.
    plan: Option<KnnPlan>,
}

/// A row to re-rank, with the estimate of the model that found it.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    row: usize,
    estimate: f32,
    /// What threshold search compares ([`crate::model::Estimator::screen`]).
    screen: f32,
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
        Ok(Searcher {
            gpu,
            primary: Source::new(gpu, index, model, batch)?,
            unicode: model.reads_unicode(),
            also: None,
            timed: false,
            timings: Timings::default(),
        })
    }

    /// Also take candidates from `index`, the same strings in the same order embedded by
    /// `model` (for example CGK beside a learned model): each query then gets C / 2
    /// candidates from the first index and C - C / 2 from this one (at least 1 each; every
    /// row from each when C covers the index), re-ranked together. A hit's estimate is
    /// that of the model that found it, or of the one that screens it lower when both did.
    pub fn also(mut self, index: &'a Index, model: &Model) -> Result<Self> {
        // Queries must suit both models.
        self.unicode &= model.reads_unicode();
        let first = self.primary.index;
        let same = index.len() == first.len()
            && (0..index.len()).all(|i| index.string(i) == first.string(i));
        if !same {
            bail!(
                "{} and {} do not hold the same strings in the same order: candidates from \
                 both can only be joined for one corpus embedded twice",
                first.path().display(),
                index.path().display()
            );
        }
        let batch = self.primary.embedder.batch();
        let source = Source::new(self.gpu, index, model, batch)?;
        self.also = Some(source);
        Ok(self)
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

    /// Answer `queries` (full strings, ASCII, or any UTF-8 for a CNN-ED model; cut only
    /// for the model).
    pub fn search<Q: AsRef<[u8]>>(
        &mut self,
        queries: &[Q],
        opts: &QueryOptions,
    ) -> Result<Vec<Answer>> {
        check_options(opts)?;
        if self.unicode {
            require_utf8(queries, |i| format!("query {}", i + 1))?;
        } else {
            require_ascii(queries, |i| format!("query {}", i + 1))?;
        }
        let queries: Vec<&[u8]> = queries.iter().map(AsRef::as_ref).collect();
        let index = self.primary.index;
        let n = index.len();
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        if n == 0 {
            return Ok(vec![Answer::default(); queries.len()]);
        }
        if opts.candidates > MAX_GPU_CANDIDATES && opts.candidates < n {
            bail!(
                "{} candidates (-C, or -k where larger) is above the GPU search's limit of \
                 {MAX_GPU_CANDIDATES}; use at most {MAX_GPU_CANDIDATES}, or at least the index \
                 size {n} for an exhaustive re-rank",
                opts.candidates
            );
        }
        // Each source's share of the candidates. With every row a candidate each source
        // still ranks them all: a row keeps the estimate that screens it lower ([`merge`]).
        let shares = match &self.also {
            Some(_) if opts.candidates < n => {
                let half = opts.candidates / 2;
                vec![half.max(1), opts.candidates - half]
            }
            Some(_) => vec![opts.candidates; 2],
            None => vec![opts.candidates],
        };
        // Whether a list may leave rows out (then a threshold search may be capped).
        let cut = shares.iter().any(|&c| c < n);
        let mut answers = Vec::with_capacity(queries.len());
        // A batch must fit every source's model and kNN plan.
        let batch = self
            .also
            .iter()
            .fold(self.primary.embedder.batch(), |b, source| {
                b.min(source.embedder.batch())
            });
        for chunk in queries.chunks(batch) {
            let mut found = vec![Vec::new(); chunk.len()];
            let sources = std::iter::once(&mut self.primary).chain(self.also.as_mut());
            for (source, &share) in sources.zip(&shares) {
                let lists =
                    source.candidates(self.gpu, chunk, share, self.timed, &mut self.timings)?;
                for (all, list) in found.iter_mut().zip(lists) {
                    merge(all, list);
                }
            }
            let start = Instant::now();
            answers.par_extend(
                chunk
                    .par_iter()
                    .zip(found)
                    .map(|(query, found)| answer(index, query, &found, cut, opts)),
            );
            self.timings.rerank += start.elapsed();
        }
        Ok(answers)
    }
}

/// Append the rows of `list` that `all` does not hold yet. A row both hold keeps the
/// estimate of the model that screens it lower, so that threshold search keeps a row
/// either model lets through, whichever index came first.
fn merge(all: &mut Vec<Candidate>, list: Vec<Candidate>) {
    if all.is_empty() {
        *all = list;
        return;
    }
    let seen: std::collections::HashMap<usize, usize> =
        all.iter().enumerate().map(|(i, c)| (c.row, i)).collect();
    for c in list {
        match seen.get(&c.row) {
            Some(&i) if c.screen < all[i].screen => all[i] = c,
            Some(_) => {}
            None => all.push(c),
        }
    }
}

impl<'a> Source<'a> {
    fn new(gpu: &'a Gpu, index: &'a Index, model: &Model, batch: usize) -> Result<Self> {
        index.check_model(model)?;
        let database = index.upload(gpu)?;
        // Any kNN plan must take a whole batch of the model's output.
        let batch = batch.clamp(1, knn::max_batch(gpu, database.query_words(), MAX_K));
        Ok(Source {
            index,
            embedder: Embedder::with_batch(gpu, model, batch)?,
            knn: Knn::new(gpu),
            database,
            plan: None,
        })
    }

    /// The `candidates` nearest rows of each query by embedding distance, nearest
    /// first, with their estimates.
    fn candidates(
        &mut self,
        gpu: &Gpu,
        queries: &[&[u8]],
        candidates: usize,
        timed: bool,
        timings: &mut Timings,
    ) -> Result<Vec<Vec<Candidate>>> {
        let start = Instant::now();
        if candidates > MAX_GPU_CANDIDATES {
            // More candidates than the GPU search keeps, covering every row: rank them all.
            let embeddings = self.embedder.embed(queries)?;
            timings.embed += start.elapsed();
            let found = rank_all(self.index, &embeddings);
            return Ok(self.with_estimates(found));
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
        if timed {
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
        timings.embed += embedded - start;
        timings.knn += embedded.elapsed();
        Ok(self.with_estimates(found))
    }

    fn with_estimates(&self, found: Vec<Vec<Neighbor>>) -> Vec<Vec<Candidate>> {
        let estimator = self.index.estimator();
        found
            .into_iter()
            .map(|list| {
                list.into_iter()
                    .map(|n| Candidate {
                        row: n.row,
                        estimate: estimator.estimate(n.distance),
                        screen: estimator.screen(n.distance),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Every row of `index` for each query embedding, nearest first (ties by row), on CPU
/// threads: the exhaustive search behind `--candidates` >= the index size.
fn rank_all(index: &Index, embeddings: &[f32]) -> Vec<Vec<Neighbor>> {
    embeddings
        .par_chunks(index.dim())
        .map(|q| {
            let mut rows: Vec<Neighbor> = (0..index.len())
                .map(|row| Neighbor {
                    distance: index.distance(row, q),
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
    if opts.candidates == 0 {
        bail!("--candidates must be at least 1");
    }
    if opts.max_distance.is_none() && opts.candidates < opts.k {
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

/// Re-rank one query's candidates (nearest by embedding first); `cut`: the candidate
/// lists may have left rows out.
fn answer(
    index: &Index,
    query: &[u8],
    found: &[Candidate],
    cut: bool,
    opts: &QueryOptions,
) -> Answer {
    let capped;
    let pool: Vec<&Candidate> = match opts.max_distance {
        Some(d) => {
            let limit = opts.blowup * d as f32;
            let within: Vec<&Candidate> = found
                .iter()
                .filter(|c| passes_screen(c.screen, limit, query, index.string(c.row)))
                .collect();
            // Every candidate passed the filter, so the cap may have cut more that would.
            capped = cut && within.len() == found.len();
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
            .map(|c| Hit {
                id: c.row,
                distance: None,
                estimate: c.estimate,
            })
            .collect();
        return Answer { hits, capped };
    }
    let pool = pool.into_iter().map(|c| (c, index.string(c.row)));
    let hits = rerank(query, pool, opts.k, opts.max_distance);
    Answer { hits, capped }
}

/// The hits among `pool` (candidates with their strings, nearest by embedding first) by
/// exact distance to `query`: the `k` nearest, or every one within `max_distance`, in
/// query output order.
fn rerank<'s>(
    query: &[u8],
    pool: impl IntoIterator<Item = (&'s Candidate, &'s [u8])>,
    k: usize,
    max_distance: Option<u32>,
) -> Vec<Hit> {
    let exact = Exact::new(query);
    let mut hits = Vec::new();
    // No candidate farther than `bound` can be a hit: past D in a threshold search, past
    // the k-th smallest distance so far otherwise (k hits are already at most that). A
    // distance is computed only as far as the bound, which makes re-ranking long strings
    // cheap: the nearest candidates come first.
    let mut bound = max_distance.map(|d| d as usize);
    let mut nearest = BinaryHeap::with_capacity(k + 1);
    for (c, string) in pool {
        let distance = match bound {
            Some(max) => exact.distance_within(string, max),
            None => Some(exact.distance(string)),
        };
        let Some(distance) = distance else { continue };
        hits.push(Hit {
            id: c.row,
            distance: Some(distance as u32),
            estimate: c.estimate,
        });
        if max_distance.is_none() {
            nearest.push(distance);
            if nearest.len() > k {
                nearest.pop();
            }
            if nearest.len() == k {
                bound = nearest.peek().copied();
            }
        }
    }
    hits.sort_by(output_order);
    if max_distance.is_none() {
        hits.truncate(k);
    }
    hits
}

/// The order of a query's hits: exact distance, then estimate, then row.
fn output_order(a: &Hit, b: &Hit) -> std::cmp::Ordering {
    a.distance
        .cmp(&b.distance)
        .then(a.estimate.total_cmp(&b.estimate))
        .then(a.id.cmp(&b.id))
}

/// Largest `--candidates` the GPU search takes; larger values are allowed only when they
/// cover the whole index (an exhaustive re-rank).
pub const MAX_GPU_CANDIDATES: usize = MAX_K;

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Every candidate's whole distance, then the same order and cut.
    fn rerank_every_distance(
        query: &[u8],
        pool: &[(Candidate, Vec<u8>)],
        k: usize,
        max_distance: Option<u32>,
    ) -> Vec<Hit> {
        let exact = Exact::new(query);
        let mut hits: Vec<Hit> = pool
            .iter()
            .map(|(c, string)| Hit {
                id: c.row,
                distance: Some(exact.distance(string) as u32),
                estimate: c.estimate,
            })
            .filter(|h| max_distance.is_none_or(|d| h.distance.unwrap() <= d))
            .collect();
        hits.sort_by(output_order);
        if max_distance.is_none() {
            hits.truncate(k);
        }
        hits
    }

    fn random_string(rng: &mut StdRng, max_len: usize, alphabet: &[char]) -> Vec<u8> {
        let len = rng.random_range(0..=max_len);
        let text: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        text.into_bytes()
    }

    #[test]
    fn the_bounded_rerank_gives_the_hits_of_every_whole_distance() {
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..300 {
            // Short strings over few letters tie often; long ones take the banded path.
            let (max_len, alphabet): (usize, &[char]) = match case % 3 {
                0 => (8, &['a', 'b']),
                1 => (40, &['a', 'b', 'c', 'd']),
                _ => (300, &['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', '\u{e9}']),
            };
            let query = random_string(&mut rng, max_len, alphabet);
            let pool: Vec<(Candidate, Vec<u8>)> = (0..rng.random_range(1..60))
                .map(|row| {
                    let estimate = rng.random_range(0..4) as f32;
                    let candidate = Candidate {
                        row,
                        estimate,
                        screen: estimate,
                    };
                    (candidate, random_string(&mut rng, max_len, alphabet))
                })
                .collect();
            let k = rng.random_range(1..8);
            let max_distance = rng
                .random_bool(0.3)
                .then(|| rng.random_range(0..=max_len as u32 / 2));
            let bounded = rerank(
                &query,
                pool.iter().map(|(c, s)| (c, s.as_slice())),
                k,
                max_distance,
            );
            let every = rerank_every_distance(&query, &pool, k, max_distance);
            assert_eq!(bounded, every, "case {case}, k {k}, max {max_distance:?}");
        }
    }
}
