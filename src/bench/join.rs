//! `bench join`: the similarity join against an exact one, for recall and time.
use std::collections::HashSet;
use std::time::Instant;

use anyhow::Result;
use rapidfuzz::distance::levenshtein::{Args, BatchComparator};
use rayon::prelude::*;

use crate::gpu::Gpu;
use crate::search::dedup::UnionFind;
use crate::search::index::Index;
use crate::search::join::{JoinOptions, join};

/// Every pair {a, b} (a < b) of `index` within exact distance `d`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExactJoin {
    pub max_distance: u32,
    #[serde(skip)]
    pub pairs: HashSet<(usize, usize)>,
    pub pair_count: usize,
    /// Groups of near-duplicates (connected components of more than one row), as
    /// `dedup` would make them from these pairs.
    pub groups: usize,
    pub seconds: f64,
}

/// The exact join on CPU threads with the rapidfuzz crate: rows sorted by length, each
/// compared with the longer rows up to `d` characters longer (a length gap above `d`
/// cannot be within `d`), with the distance cut off at `d`.
pub fn exact_join(index: &Index, d: u32) -> ExactJoin {
    let start = Instant::now();
    let mut order: Vec<usize> = (0..index.len()).collect();
    order.sort_by_key(|&i| (index.string(i).len(), i));
    let lens: Vec<usize> = order.iter().map(|&i| index.string(i).len()).collect();
    let cutoff = Args::default().score_cutoff(d as usize);
    let pairs: HashSet<(usize, usize)> = (0..order.len())
        .into_par_iter()
        .flat_map_iter(|x| {
            let a = order[x];
            let exact = BatchComparator::new(index.string(a).iter().copied());
            let end = x + lens[x..].partition_point(|&l| l <= lens[x] + d as usize);
            let found: Vec<(usize, usize)> = order[x + 1..end]
                .iter()
                .filter(|&&b| {
                    exact
                        .distance_with_args(index.string(b).iter().copied(), &cutoff)
                        .is_some()
                })
                .map(|&b| (a.min(b), a.max(b)))
                .collect();
            found
        })
        .collect();
    let seconds = start.elapsed().as_secs_f64();
    let mut sets = UnionFind::new(index.len());
    for &(a, b) in &pairs {
        sets.union(a, b);
    }
    ExactJoin {
        max_distance: d,
        pair_count: pairs.len(),
        groups: sets.groups(),
        pairs,
        seconds,
    }
}

/// One setting of the join, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JoinRow {
    pub max_distance: u32,
    pub candidates: usize,
    pub blowup: f32,
    pub seconds: f64,
    /// Pairs of the index considered per second: N (N - 1) / 2 / seconds.
    pub all_pairs_per_s: f64,
    pub pairs: u64,
    pub verified: u64,
    pub capped_rows: u64,
    /// Near-duplicate groups `dedup` makes from these pairs (see [`ExactJoin::groups`]).
    pub groups: usize,
    /// Share of the exact join's pairs found.
    pub recall: f64,
}

/// Join `index` with itself with `opts` and compare with `exact`.
pub fn measure_join(
    gpu: &Gpu,
    index: &Index,
    opts: &JoinOptions,
    exact: &ExactJoin,
) -> Result<JoinRow> {
    let start = Instant::now();
    let mut found = 0usize;
    let mut sets = UnionFind::new(index.len());
    let stats = join(
        gpu,
        index,
        None,
        opts,
        |_| {},
        |pairs| {
            found += pairs
                .iter()
                .filter(|p| exact.pairs.contains(&(p.a, p.b)))
                .count();
            for p in pairs {
                sets.union(p.a, p.b);
            }
            Ok(())
        },
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let n = index.len() as f64;
    Ok(JoinRow {
        max_distance: opts.max_distance,
        candidates: opts.candidates,
        blowup: opts.blowup,
        seconds,
        all_pairs_per_s: n * (n - 1.0) / 2.0 / seconds,
        pairs: stats.pairs,
        verified: stats.verified,
        capped_rows: stats.capped,
        groups: sets.groups(),
        recall: if exact.pair_count == 0 {
            1.0
        } else {
            found as f64 / exact.pair_count as f64
        },
    })
}
