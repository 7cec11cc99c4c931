//! Similarity join: every pair of strings within an exact edit distance, within one
//! index or between two. Each row of the left index is a query: the GPU kNN gives its
//! candidates among the right rows, candidates with estimate <= blowup * D are checked
//! by exact Levenshtein on CPU threads, and the pairs stream out batch by batch, so
//! memory is bounded by a batch of candidate lists, whatever the index size.
//!
//! Within one index, pair {i, j} is found from i's list, from j's list or both; it is
//! written once. Estimates are recomputed on the CPU from the stored embeddings, with
//! `(x - y)^2` summed in a fixed order, so est(i, j) == est(j, i) exactly and both rows
//! agree on whether the pair passes the blowup filter. Equal strings (in either index)
//! are searched and stored once ([`EqualStrings`]), and their pairs written for each of
//! their rows.
use std::collections::{HashMap, HashSet};

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::index::{Index, Precision, short_fingerprint};
use super::passes_screen;
use crate::edit_distance::Exact;
use crate::gpu::Gpu;
use crate::model::Estimator;
use crate::ops::knn::{Knn, KnnPlan, MAX_K, Neighbor};

/// Default `--candidates` of `join` and `dedup`: with the default blowup, every pair of
/// an exact join of 20,000 and of 89,039 titles at D = 3 and 5 (BENCHMARKS.md, "Joins").
pub const DEFAULT_CANDIDATES: usize = 100;
/// Default `--blowup`: candidates with estimate <= blowup * D are verified.
pub const DEFAULT_BLOWUP: f32 = 3.0;

/// What a join asks for.
#[derive(Debug, Clone, Copy)]
pub struct JoinOptions {
    /// Pairs with exact distance <= this.
    pub max_distance: u32,
    /// Nearest rows by embedding taken per row before the exact check.
    pub candidates: usize,
    /// Candidates with estimate <= blowup * max_distance are checked (`inf`: all).
    pub blowup: f32,
    /// CPU threads for the exact check (`None`: one per core).
    pub threads: Option<usize>,
    /// Within one index, which pairs of equal strings' rows are written.
    pub copies: Copies,
}

/// Within one index, which pairs a join writes for the rows of equal strings (searched
/// once, [`EqualStrings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copies {
    /// Every pair of rows (`join`'s output): k copies of a string make k (k - 1) / 2.
    EveryPair,
    /// Pairs that connect the same rows (what `dedup`'s groups need): each copy with
    /// its string's first row, and a pair of strings by their first rows alone.
    Connect,
}

/// One pair: `a` a row of the left index, `b` of the right one (within one index,
/// `a < b`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    /// Exact Levenshtein distance.
    pub distance: u32,
    /// The model's estimate from the embeddings (`s * squared embedding distance`, or
    /// CGK's curve of the Hamming distance).
    pub estimate: f32,
}

/// What a join did.
#[derive(Debug, Clone, Copy, Default)]
pub struct JoinStats {
    /// Left rows searched.
    pub rows: usize,
    /// Candidates verified by exact distance.
    pub verified: u64,
    /// Pairs written.
    pub pairs: u64,
    /// Rows whose every candidate passed the blowup filter: the cap may have cut pairs.
    pub capped: u64,
}

/// Check `opts` before any work.
pub fn check_options(opts: &JoinOptions) -> Result<()> {
    if opts.candidates == 0 {
        bail!("--candidates must be at least 1");
    }
    if opts.blowup.is_nan() || opts.blowup < 0.0 {
        bail!("--blowup must be a non-negative number or inf");
    }
    if opts.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    Ok(())
}

/// Join `left` with itself (`right` = `None`) or with `right`. `progress` gets the
/// number of left rows done after each batch; `sink` gets the pairs a batch at a time:
/// those the rows found, then those among equal strings.
pub fn join(
    gpu: &Gpu,
    left: &Index,
    right: Option<&Index>,
    opts: &JoinOptions,
    mut progress: impl FnMut(usize),
    mut sink: impl FnMut(&[Pair]) -> Result<()>,
) -> Result<JoinStats> {
    check_options(opts)?;
    let within = right.is_none();
    let right = right.unwrap_or(left);
    if left.fingerprint() != right.fingerprint() {
        bail!(
            "{} and {} were made by different models ({} and {}): their embeddings cannot \
             be compared; embed both corpora with the same model",
            left.path().display(),
            right.path().display(),
            short_fingerprint(left.fingerprint()),
            short_fingerprint(right.fingerprint())
        );
    }
    let mut stats = JoinStats {
        rows: left.len(),
        ..JoinStats::default()
    };
    if left.is_empty() || right.is_empty() {
        return Ok(stats);
    }
    let equal = EqualStrings::of(left);
    let right_equal = (!within).then(|| EqualStrings::of(right));
    let right_equal = right_equal.as_ref().unwrap_or(&equal);
    let candidates = Candidates::new(gpu, right, right_equal.firsts(), opts.candidates, within)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()?;
    let verifier = Verifier {
        left,
        right,
        within,
        max_distance: opts.max_distance,
        limit: opts.blowup * opts.max_distance as f32,
        may_cut: candidates.may_cut(),
    };
    // Within one index, the candidates of each row whose list was capped: the rule
    // that writes each pair once needs them (`written_before`).
    let mut capped_lists: HashMap<usize, HashSet<usize>> = HashMap::new();
    let mut out = Batches::new(&mut sink);
    let mut done = 0;
    for rows in equal.firsts().chunks(QUERY_BATCH) {
        let queries: Vec<f32> = rows.iter().flat_map(|&a| left.embedding(a)).collect();
        let lists = candidates.search(gpu, left.precision(), &queries)?;
        let found: Vec<RowResult> = pool.install(|| {
            rows.par_iter()
                .zip(queries.par_chunks(left.dim()))
                .enumerate()
                .map(|(i, (&a, query))| verifier.row(a, query, candidates.list(&lists, i)))
                .collect::<Result<_>>()
        })?;
        for (&a, row) in rows.iter().zip(found) {
            stats.verified += row.verified;
            stats.capped += u64::from(row.capped);
            let new = row
                .pairs
                .into_iter()
                .filter(|p| !within || p.a == a || !written_before(&capped_lists, p));
            for pair in new {
                equal.expand(pair, right_equal, within, opts.copies, |pair| {
                    out.push(pair)
                })?;
            }
            if within && row.capped {
                capped_lists.insert(a, row.candidates);
            }
        }
        out.flush()?;
        for &a in rows {
            if within {
                equal.among_copies(left, a, opts.copies, |pair| out.push(pair))?;
            }
            done += equal.rows(a).count();
        }
        out.flush()?;
        progress(done);
    }
    stats.pairs = out.written;
    Ok(stats)
}

/// The rows of equal strings in an index. Equal strings are one point of the
/// embedding, so only the first row of each string is searched (and stored for the
/// search): the others would fill candidate lists with copies. Pairs are then written
/// for every row of each string, and within one index every pair of copies at
/// distance 0.
struct EqualStrings {
    /// The first row of each distinct string, ascending.
    firsts: Vec<usize>,
    /// The later rows of a first row's string, where there are any.
    copies: HashMap<usize, Vec<usize>>,
}

impl EqualStrings {
    fn of(index: &Index) -> Self {
        let mut first_of: HashMap<&[u8], usize> = HashMap::new();
        let mut firsts = Vec::new();
        let mut copies: HashMap<usize, Vec<usize>> = HashMap::new();
        for row in 0..index.len() {
            match first_of.entry(index.string(row)) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    copies.entry(*first.get()).or_default().push(row);
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(row);
                    firsts.push(row);
                }
            }
        }
        EqualStrings { firsts, copies }
    }

    fn firsts(&self) -> &[usize] {
        &self.firsts
    }

    /// Every row of `a`'s string (first row `a`), in order.
    fn rows(&self, a: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(a).chain(self.copies.get(&a).into_iter().flatten().copied())
    }

    /// `pair` of first rows (`b` one of `right`'s, which is `self` within one index), for
    /// every row of each string under [`Copies::EveryPair`].
    fn expand(
        &self,
        pair: Pair,
        right: &EqualStrings,
        within: bool,
        copies: Copies,
        mut f: impl FnMut(Pair) -> Result<()>,
    ) -> Result<()> {
        let alone = self.copies.is_empty() && right.copies.is_empty();
        if alone || copies == Copies::Connect {
            return f(pair);
        }
        for x in self.rows(pair.a) {
            for y in right.rows(pair.b) {
                let (a, b) = if within { (x.min(y), x.max(y)) } else { (x, y) };
                f(Pair { a, b, ..pair })?;
            }
        }
        Ok(())
    }

    /// The pairs among the rows of first row `a`'s string, at distance 0: every pair, or
    /// each copy with `a` ([`Copies`]).
    fn among_copies(
        &self,
        index: &Index,
        a: usize,
        which: Copies,
        mut f: impl FnMut(Pair) -> Result<()>,
    ) -> Result<()> {
        let Some(copies) = self.copies.get(&a) else {
            return Ok(());
        };
        let estimate = index
            .estimator()
            .estimate(index.distance(copies[0], &index.embedding(a)));
        let rows: Vec<usize> = self.rows(a).collect();
        let firsts = match which {
            Copies::EveryPair => rows.len(),
            Copies::Connect => 1,
        };
        for (i, &x) in rows[..firsts].iter().enumerate() {
            for &y in &rows[i + 1..] {
                f(Pair {
                    a: x,
                    b: y,
                    distance: 0,
                    estimate,
                })?;
            }
        }
        Ok(())
    }
}

/// Pairs on their way to the sink, handed over [`BATCH_PAIRS`] at a time (a string with
/// many copies makes more pairs than memory should hold).
struct Batches<'s, F> {
    sink: &'s mut F,
    pairs: Vec<Pair>,
    written: u64,
}

const BATCH_PAIRS: usize = 1 << 16;

impl<'s, F: FnMut(&[Pair]) -> Result<()>> Batches<'s, F> {
    fn new(sink: &'s mut F) -> Self {
        Batches {
            sink,
            pairs: Vec::new(),
            written: 0,
        }
    }

    fn push(&mut self, pair: Pair) -> Result<()> {
        self.pairs.push(pair);
        if self.pairs.len() == BATCH_PAIRS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pairs.is_empty() {
            (self.sink)(&self.pairs)?;
            self.written += self.pairs.len() as u64;
            self.pairs.clear();
        }
        Ok(())
    }
}

/// Where each row's candidates come from, among the right index's `rows` (the first row
/// of each distinct string).
enum Candidates {
    /// The GPU kNN: the `k()` nearest of the rows by embedding; the database holds
    /// them in order, so its row j is `rows[j]`.
    Nearest {
        plan: Box<KnnPlan>,
        rows: Vec<usize>,
    },
    /// Every one of the rows (candidates covering them: no search needed).
    Every(Vec<Neighbor>),
}

impl Candidates {
    fn new(
        gpu: &Gpu,
        right: &Index,
        rows: &[usize],
        candidates: usize,
        within: bool,
    ) -> Result<Self> {
        let n = rows.len();
        // Within one index each row finds itself too.
        let k = candidates.saturating_add(usize::from(within));
        if k >= n && n > MAX_K {
            let every = rows.iter().map(|&row| Neighbor { distance: 0.0, row });
            return Ok(Candidates::Every(every.collect()));
        }
        if k.min(n) > MAX_K {
            let limit = if within {
                format!(
                    "the limit of {} in a join within one index (the GPU search keeps {MAX_K} \
                     neighbours, and each row's own slot is one of them)",
                    MAX_K - 1
                )
            } else {
                format!("the GPU search's limit of {MAX_K}")
            };
            bail!(
                "--candidates {candidates} is above {limit}; use at most that, or at least \
                 the number of distinct strings ({n}) to check every pair",
            );
        }
        let database = if n == right.len() {
            right.upload(gpu)?
        } else {
            right.upload_rows(gpu, rows)?
        };
        let plan = KnnPlan::new(gpu, &Knn::new(gpu), &database, k.min(n), QUERY_BATCH, None)?;
        Ok(Candidates::Nearest {
            plan: Box::new(plan),
            rows: rows.to_vec(),
        })
    }

    /// Whether a row's list may leave out rows: fewer candidates than rows.
    fn may_cut(&self) -> bool {
        match self {
            Candidates::Nearest { plan, rows } => plan.k() < rows.len(),
            Candidates::Every(_) => false,
        }
    }

    /// The lists of a batch of queries, embeddings stored at `precision` and widened
    /// to f32 (none for `Every`: see [`Candidates::list`]).
    fn search(
        &self,
        gpu: &Gpu,
        precision: Precision,
        queries: &[f32],
    ) -> Result<Vec<Vec<Neighbor>>> {
        let (plan, rows) = match self {
            Candidates::Nearest { plan, rows } => (plan, rows),
            Candidates::Every(_) => return Ok(Vec::new()),
        };
        let mut lists = if precision == Precision::Codes {
            let codes: Vec<u8> = queries.iter().map(|&v| v as u8).collect();
            plan.search(gpu, &codes)?
        } else {
            plan.search(gpu, queries)?
        };
        for n in lists.iter_mut().flatten() {
            n.row = rows[n.row];
        }
        Ok(lists)
    }

    /// Query `i`'s list from `lists` (a result of [`Candidates::search`]).
    fn list<'a>(&'a self, lists: &'a [Vec<Neighbor>], i: usize) -> &'a [Neighbor] {
        match self {
            Candidates::Nearest { .. } => &lists[i],
            Candidates::Every(every) => every,
        }
    }
}

/// Left rows per GPU search.
const QUERY_BATCH: usize = 4096;

/// Within one index, a later row found pair {a, b} (a < b): was it written at a's turn?
/// Yes if a's list held b, which an uncapped list does: it holds every row within the
/// filter, and the filter is symmetric.
fn written_before(capped: &HashMap<usize, HashSet<usize>>, pair: &Pair) -> bool {
    capped
        .get(&pair.a)
        .is_none_or(|list| list.contains(&pair.b))
}

/// One left row's verified pairs (in canonical order within one index: `a < b`).
struct RowResult {
    pairs: Vec<Pair>,
    verified: u64,
    capped: bool,
    /// Its candidate rows; kept only when capped.
    candidates: HashSet<usize>,
}

struct Verifier<'a> {
    left: &'a Index,
    right: &'a Index,
    within: bool,
    max_distance: u32,
    limit: f32,
    may_cut: bool,
}

impl Verifier<'_> {
    /// Check left row `a` (embedding `query`) against its kNN `list`.
    fn row(&self, a: usize, query: &[f32], list: &[Neighbor]) -> Result<RowResult> {
        let estimator: Estimator = self.left.estimator();
        let string = self.left.string(a);
        let exact = Exact::new(string);
        let mut pairs = Vec::new();
        let mut verified = 0;
        for n in list.iter().filter(|n| !(self.within && n.row == a)) {
            let distance = self.right.distance(n.row, query);
            let estimate = estimator.estimate(distance);
            if !estimate.is_finite() {
                bail!(
                    "rows {a} and {} have a non-finite estimated distance: an index holds \
                     NaN or infinity; rebuild it with `megashtein-gpu embed`",
                    n.row
                );
            }
            let b = self.right.string(n.row);
            if !passes_screen(estimator.screen(distance), self.limit, string, b) {
                continue;
            }
            verified += 1;
            if let Some(d) = exact.distance_within(b, self.max_distance as usize) {
                let (a, b) = if self.within && n.row < a {
                    (n.row, a)
                } else {
                    (a, n.row)
                };
                pairs.push(Pair {
                    a,
                    b,
                    distance: d as u32,
                    estimate,
                });
            }
        }
        pairs.sort_by_key(|p| (p.a, p.b));
        // The list's last (farthest) row passed the filter: rows after it might too. The
        // margin covers the difference between the GPU's and the CPU's rounding.
        let limit = self.limit * (1.0 + 1e-3) + 1e-6;
        let capped = self.may_cut
            && list.last().is_some_and(|n| {
                passes_screen(
                    estimator.screen(n.distance),
                    limit,
                    string,
                    self.right.string(n.row),
                )
            });
        let candidates = if capped && self.within {
            list.iter().map(|n| n.row).collect()
        } else {
            HashSet::new()
        };
        Ok(RowResult {
            pairs,
            verified,
            capped,
            candidates,
        })
    }
}
