//! The accuracy metrics, as plain functions of exact distances and estimates so that
//! each can be checked on hand-made cases.
use serde::Serialize;

/// Base rows ordered by estimate, ties by smaller row (the GPU search's order).
pub fn rank_rows(estimates: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_unstable_by(|&a, &b| estimates[a].total_cmp(&estimates[b]).then(a.cmp(&b)));
    order
}

/// The `k`-th smallest of `values` (1-based `k`, clamped to the length); `None` if empty.
pub fn kth_smallest(values: &[u32], k: usize) -> Option<u32> {
    if values.is_empty() || k == 0 {
        return None;
    }
    let k = k.min(values.len());
    let mut v = values.to_vec();
    let (_, kth, _) = v.select_nth_unstable(k - 1);
    Some(*kth)
}

/// Tie-aware recall of the exact top-k within the first T candidates, for each T of
/// `ts`. `exact[j]` is the exact distance of base row j, `order` the rows by
/// embedding rank (at least the first max(ts) of them, or all). Relevant rows are those
/// whose exact distance is at most the k-th smallest; at most k of them count, so
/// recall(T) = min(k', relevant among the first T) / k' with k' = min(k, N). A T beyond
/// `order` counts all of `order`. `None` for an empty base.
pub fn recall_at(exact: &[u32], order: &[usize], k: usize, ts: &[usize]) -> Option<Vec<f64>> {
    let kth = kth_smallest(exact, k)?;
    let k_eff = k.min(exact.len());
    let max_t = ts.iter().copied().max().unwrap_or(0).min(order.len());
    let mut prefix = Vec::with_capacity(max_t + 1);
    prefix.push(0usize);
    for &row in &order[..max_t] {
        let last = *prefix.last().expect("non-empty");
        prefix.push(last + usize::from(exact[row] <= kth));
    }
    Some(
        ts.iter()
            .map(|&t| prefix[t.min(max_t)].min(k_eff) as f64 / k_eff as f64)
            .collect(),
    )
}

/// 0-based position in `order` of the first row at the exact nearest distance; `None`
/// for an empty base (or if `order` holds none of them).
pub fn nearest_rank(exact: &[u32], order: &[usize]) -> Option<usize> {
    let best = *exact.iter().min()?;
    order.iter().position(|&row| exact[row] == best)
}

/// Exact re-rank of the first `c` candidates, as `query` does it: the candidate with the
/// smallest (exact distance, estimate, row). `None` when there is no candidate.
pub fn rerank_top1(exact: &[u32], estimates: &[f32], order: &[usize], c: usize) -> Option<usize> {
    order[..c.min(order.len())]
        .iter()
        .copied()
        .min_by(|&a, &b| {
            exact[a]
                .cmp(&exact[b])
                .then(estimates[a].total_cmp(&estimates[b]))
                .then(a.cmp(&b))
        })
}

/// One query of threshold search (CNN-ED Algorithm 2): rows with exact distance <= `d`
/// (the truth), rows with estimate <= `mu * d` (the candidates), and how many of the truth
/// are candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThresholdCount {
    pub truth: usize,
    pub candidates: usize,
    pub found: usize,
}

pub fn threshold_count(exact: &[u32], estimates: &[f32], d: u32, mu: f64) -> ThresholdCount {
    let limit = mu * f64::from(d);
    let mut c = ThresholdCount::default();
    for (&e, &est) in exact.iter().zip(estimates) {
        let truth = e <= d;
        let cand = f64::from(est) <= limit;
        c.truth += usize::from(truth);
        c.candidates += usize::from(cand);
        c.found += usize::from(truth && cand);
    }
    c
}

/// [`threshold_count`] for each threshold of `ds` (outer) and blow-up of `mus` (inner).
pub fn threshold_counts(
    exact: &[u32],
    estimates: &[f32],
    ds: &[u32],
    mus: &[f64],
) -> Vec<Vec<ThresholdCount>> {
    ds.iter()
        .map(|&d| {
            mus.iter()
                .map(|&mu| threshold_count(exact, estimates, d, mu))
                .collect()
        })
        .collect()
}

pub use crate::stats::{LinearFit, average_ranks, pearson, spearman};

/// Errors of calibrated estimates g(d_hat) against true distances d (> 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairStats {
    pub pairs: usize,
    /// mean |g(d_hat) - d|
    pub mae: f64,
    /// mean |g(d_hat) - d| / d
    pub mre: f64,
    /// Spearman correlation of d_hat and d (`None` when undefined).
    pub spearman: Option<f64>,
}

/// Statistics of `estimates` (raw d_hat) against `truth` under the calibration `g`.
/// Pairs with d = 0 are left out of the relative error.
pub fn pair_stats(estimates: &[f64], truth: &[f64], g: &LinearFit) -> PairStats {
    let n = estimates.len();
    let mut abs = 0.0;
    let mut rel = 0.0;
    let mut rel_n = 0usize;
    for (&e, &d) in estimates.iter().zip(truth) {
        let err = (g.apply(e) - d).abs();
        abs += err;
        if d > 0.0 {
            rel += err / d;
            rel_n += 1;
        }
    }
    PairStats {
        pairs: n,
        mae: if n == 0 { f64::NAN } else { abs / n as f64 },
        mre: if rel_n == 0 {
            f64::NAN
        } else {
            rel / rel_n as f64
        },
        spearman: spearman(estimates, truth),
    }
}

/// Powers of two 1, 2, 4, ... and powers of ten 10, 100, ... below `n`, in order, then
/// `n` itself (just `[1]` for n <= 1). The powers of ten make the reported Rk@10 and
/// Rk@100 exact points of the curve.
pub fn candidate_steps(n: usize) -> Vec<usize> {
    let mut ts = Vec::new();
    let mut t = 1;
    while t < n {
        ts.push(t);
        t *= 2;
    }
    let mut t = 10;
    while t < n {
        ts.push(t);
        t *= 10;
    }
    ts.sort_unstable();
    ts.push(n.max(1));
    ts
}
