//! `megashtein-gpu eval`: the accuracy of an embedding model and its baselines on one
//! data set, as in the CNN-ED (Dai et al., SIGIR 2020) and GRU-embedding (Zhang, Yuan,
//! Indyk) papers: distance estimation on pairs, the recall-item curve on a base with
//! held-out queries, real misspellings against a dictionary, and threshold search.
//!
//! Rows of the report: the evaluated model (`--model`, else the built-in default), the
//! released reference checkpoint (imported from its `.pth`), the untrained network
//! (random weights, [`RANDOM_SEED`]), the CGK embedding ([`crate::model::cgk`]) and the exact scan.
//!
//! Candidates are ranked on the CPU by the full estimate row of each query (ties by
//! smaller row, the GPU search's order), so T runs up to N; embeddings come from the GPU.
pub mod data;
pub mod long;
pub mod metrics;
pub mod plot;

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rapidfuzz::distance::levenshtein::{self, BatchComparator};
use rayon::prelude::*;
use serde::Serialize;

use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::Gpu;
use crate::input::NonAscii;
use crate::model::Metric;
use crate::model::cgk;
use crate::model::params::{MAX_LEN, Widths};
use crate::model::weights::Weights;
use metrics::{LinearFit, PairStats, ThresholdCount};

/// Seed of the untrained network's weights.
pub const RANDOM_SEED: u64 = 0x5EED;
/// k of the recall-item curves.
pub const KS: [usize; 3] = [1, 10, 50];
/// Thresholds D of threshold search.
pub const THRESHOLDS: [u32; 4] = [1, 2, 4, 8];
/// Blow-up factors mu of threshold search: 2^(i/2) from 1/64 to 16 (a wide grid, since
/// how an estimate's scale fits short distances differs from model to model).
pub fn mus() -> Vec<f64> {
    (-12..=8).map(|i| 2f64.powf(f64::from(i) / 2.0)).collect()
}

/// What to evaluate and on which data.
#[derive(Debug, Clone)]
pub struct Options {
    /// The model under test; `None`: the built-in default model.
    pub model: Option<PathBuf>,
    /// The released checkpoint (`.pth` or `.safetensors`); `None`: the copy built into
    /// the binary ([`crate::model::RELEASED_CHECKPOINT`]).
    pub reference: Option<PathBuf>,
    /// Base strings (one a line); `None`: the built-in base.
    pub base: Option<PathBuf>,
    /// Misspellings `wrong<TAB>correct`; `None`: the built-in pairs (with the built-in base
    /// only; with another base, no misspelling section unless given).
    pub pairs: Option<PathBuf>,
    /// Directory for report.json and the plots; `None`: nothing written.
    pub out: Option<PathBuf>,
    pub non_ascii: NonAscii,
    /// Seed of the data generators (queries, pairs) and of CGK's bits.
    pub seed: u64,
    /// Held-out queries for search.
    pub queries: usize,
    /// Synthetic pairs (lengths 1-80, all distances).
    pub synthetic_pairs: usize,
    /// Typo'd pairs drawn from the base.
    pub typo_pairs: usize,
    /// CGK repetitions.
    pub cgk_reps: usize,
    /// At most this many misspellings (a seeded sample of the usable ones).
    pub max_misspellings: usize,
    /// C values for "within the first C candidates".
    pub candidates: Vec<usize>,
    /// Strings per GPU batch.
    pub batch: usize,
    /// Leave out the baselines (random CNN, released, CGK).
    pub no_baselines: bool,
    /// Show progress bars (when stderr is a terminal).
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            model: None,
            reference: None,
            base: None,
            pairs: None,
            out: None,
            non_ascii: NonAscii::Error,
            seed: 20240,
            queries: 200,
            synthetic_pairs: 2000,
            typo_pairs: 1000,
            cgk_reps: 4,
            max_misspellings: 1000,
            candidates: vec![1, 10, 100, 1000],
            batch: DEFAULT_BATCH,
            no_baselines: false,
            progress: true,
        }
    }
}

/// Everything `eval` measured; written as report.json.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub data: DataSummary,
    pub models: Vec<ModelReport>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    pub base_source: String,
    pub base_rows: usize,
    pub queries: usize,
    pub synthetic_pairs: usize,
    pub typo_pairs: usize,
    pub misspellings_source: Option<String>,
    pub misspellings_read: usize,
    pub misspellings_used: usize,
    /// Pairs left out because the correct word is not a base string.
    pub skipped_correct_not_in_base: usize,
    /// Pairs left out because the misspelling is itself a base string.
    pub skipped_wrong_in_base: usize,
    pub seed: u64,
    pub ks: Vec<usize>,
    pub ts: Vec<usize>,
    pub candidates: Vec<usize>,
    pub thresholds: Vec<u32>,
    pub mus: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// `model`, `released`, `random-cnn`, `cgk` or `exact`.
    pub name: String,
    pub source: String,
    pub fingerprint: Option<String>,
    pub distance: DistanceReport,
    pub search: SearchReport,
    pub misspellings: Option<MisspellReport>,
    pub threshold: Vec<ThresholdReport>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    /// Inclusive range of the true distance (or string length).
    pub lo: u32,
    pub hi: u32,
    pub stats: PairStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct DistanceReport {
    /// g, fitted on the even-numbered pairs; statistics are on the odd-numbered ones.
    pub fit: LinearFit,
    /// Proportional fit d ~ a * d_hat on the same half: the scale of threshold search.
    pub threshold_scale: f64,
    pub fit_pairs: usize,
    pub all: PairStats,
    pub synthetic: PairStats,
    pub typo: PairStats,
    /// Synthetic pairs over printable ASCII (what `train` draws by default), estimated
    /// with the same g; not in the fit nor in `all`.
    pub synthetic_printable: PairStats,
    pub by_distance: Vec<Bucket>,
    /// By the longer string's length.
    pub by_length: Vec<Bucket>,
    /// (true distance, mean relative error, pairs) for every distance seen.
    pub relative_error_by_distance: Vec<(u32, f64, usize)>,
    /// (raw estimate, true distance) of the evaluation half, for the scatter plot.
    #[serde(skip)]
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecallCurve {
    pub k: usize,
    /// Mean recall at each T of `ts`.
    pub recall: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub queries: usize,
    pub ts: Vec<usize>,
    pub curves: Vec<RecallCurve>,
    /// Fraction of queries whose exact nearest distance is reached within the first C
    /// candidates, for each C of `candidates`.
    pub nearest_within: Vec<f64>,
    pub candidates: Vec<usize>,
}

impl SearchReport {
    /// The means over `answered` queries, each `(recall, nearest)`: `recall[ki]` its recall
    /// at each T of `ts` for k = `KS[ki]`, `nearest` the position of its first candidate at
    /// the exact nearest distance. NaN where no query was answered.
    fn summarize(ts: &[usize], candidates: &[usize], answered: &[(Vec<Vec<f64>>, usize)]) -> Self {
        let n = answered.len();
        let mean = |values: &mut dyn Iterator<Item = f64>| mean_or_nan(values, n);
        let curves = KS
            .iter()
            .enumerate()
            .map(|(ki, &k)| RecallCurve {
                k,
                recall: (0..ts.len())
                    .map(|ti| mean(&mut answered.iter().map(|(r, _)| r[ki][ti])))
                    .collect(),
            })
            .collect();
        let nearest_within = candidates
            .iter()
            .map(|&c| mean(&mut answered.iter().map(|&(_, at)| f64::from(at < c))))
            .collect();
        SearchReport {
            queries: n,
            ts: ts.to_vec(),
            curves,
            nearest_within,
            candidates: candidates.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MisspellReport {
    pub pairs: usize,
    pub candidates: Vec<usize>,
    /// The correct word is among the first C candidates.
    pub correct_within: Vec<f64>,
    /// A row at the exact nearest distance is among the first C candidates.
    pub nearest_within: Vec<f64>,
    /// After exact re-rank of the first C, the top-1 is at the exact scan's top-1 distance.
    pub top1_matches_exact: Vec<f64>,
    /// After exact re-rank of the first C, the top-1 is the correct word.
    pub top1_correct: Vec<f64>,
    /// The exact scan's top-1 (ties by row) is the correct word: the ceiling.
    pub exact_top1_correct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdReport {
    pub d: u32,
    /// Queries with at least one base string within d (the recall averages over these).
    pub queries: usize,
    pub mean_truth: f64,
    /// Mean recall of the strings within d, for each mu of `mus`. Candidates: an estimate on
    /// the edit-distance scale <= mu * d. The short-string report's estimate is a * d_hat,
    /// a = `distance.threshold_scale` (a least-squares fit through the origin, so that every
    /// method is on the edit-distance scale; a shift of g's intercept would make small d
    /// unreachable); the long-string report's is the row's line less a positive intercept
    /// (`long::LongRow::threshold`).
    pub recall: Vec<f64>,
    /// Mean number of candidates, for each mu.
    pub candidates: Vec<f64>,
}

impl ThresholdReport {
    /// One report for each threshold of `ds`, from each query's counts
    /// (`per_query`, each `[di][mi]`, [`metrics::threshold_counts`]) at `mu_count` blow-ups: means
    /// over the queries with a string within the threshold, NaN (null in JSON) where none has.
    fn summarize<'a>(
        ds: &[u32],
        mu_count: usize,
        per_query: impl Iterator<Item = &'a [Vec<ThresholdCount>]> + Clone,
    ) -> Vec<Self> {
        ds.iter()
            .enumerate()
            .map(|(di, &d)| {
                let with_truth: Vec<&[ThresholdCount]> = per_query
                    .clone()
                    .map(|q| q[di].as_slice())
                    .filter(|t| t[0].truth > 0)
                    .collect();
                let n = with_truth.len();
                let mean_at = |f: &dyn Fn(&ThresholdCount) -> f64| -> Vec<f64> {
                    (0..mu_count)
                        .map(|mi| mean_or_nan(&mut with_truth.iter().map(|t| f(&t[mi])), n))
                        .collect()
                };
                ThresholdReport {
                    d,
                    queries: n,
                    mean_truth: mean_or_nan(&mut with_truth.iter().map(|t| t[0].truth as f64), n),
                    recall: mean_at(&|t| t.found as f64 / t.truth as f64),
                    candidates: mean_at(&|t| t.candidates as f64),
                }
            })
            .collect()
    }
}

/// The sum of `values` over `n`; NaN for n = 0 (no query to average over).
fn mean_or_nan(values: &mut dyn Iterator<Item = f64>, n: usize) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        values.sum::<f64>() / n as f64
    }
}

/// Distance estimates over one list of strings.
enum Estimator {
    /// Model outputs `[n, dim]` and the model's estimate from their distance.
    Dense {
        data: Vec<f32>,
        dim: usize,
        estimator: crate::model::Estimator,
    },
    /// CGK codes `[n, width]` and the estimate from their Hamming distance.
    Codes {
        codes: Vec<u8>,
        width: usize,
        estimator: crate::model::Estimator,
    },
    /// The exact distance itself.
    Exact,
}

/// The strings every estimator sees: pair sides, base, queries, misspellings.
struct Strings {
    all: Vec<Vec<u8>>,
    pair_a: Range<usize>,
    pair_b: Range<usize>,
    base: Range<usize>,
    queries: Range<usize>,
    wrong: Range<usize>,
}

impl Estimator {
    fn dist(&self, s: &Strings, i: usize, j: usize) -> f32 {
        match self {
            Estimator::Dense {
                data,
                dim,
                estimator,
            } => estimator.between(&data[i * dim..(i + 1) * dim], &data[j * dim..(j + 1) * dim]),
            Estimator::Codes {
                codes,
                width,
                estimator,
            } => {
                let a = &codes[i * width..(i + 1) * width];
                let b = &codes[j * width..(j + 1) * width];
                estimator.estimate(cgk::hamming(a, b) as f32)
            }
            Estimator::Exact => {
                levenshtein::distance(s.all[i].iter().copied(), s.all[j].iter().copied()) as f32
            }
        }
    }

    /// Estimates from string `q` to every base string.
    fn row(&self, s: &Strings, q: usize) -> Vec<f32> {
        match self {
            Estimator::Exact => exact_row(&s.all[q], &s.all[s.base.clone()])
                .into_iter()
                .map(|d| d as f32)
                .collect(),
            _ => s.base.clone().map(|j| self.dist(s, q, j)).collect(),
        }
    }
}

/// Exact distances from `q` to every string of `base`.
pub fn exact_row(q: &[u8], base: &[Vec<u8>]) -> Vec<u32> {
    let cmp = BatchComparator::new(q.iter().copied());
    base.iter()
        .map(|b| cmp.distance(b.iter().copied()) as u32)
        .collect()
}

/// Exact distances from every query to every base string, on all CPU threads.
pub fn exact_matrix(queries: &[Vec<u8>], base: &[Vec<u8>], progress: bool) -> Vec<Vec<u32>> {
    let bar = bar(queries.len(), "exact distances", progress);
    let out = queries
        .par_iter()
        .map(|q| {
            let r = exact_row(q, base);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    out
}

/// A progress bar over `n` items; hidden when not `show`n or when there is nothing to do
/// (a bar of 0/0 says nothing, e.g. the misspellings' exact distances without any).
fn bar(n: usize, what: &str, show: bool) -> indicatif::ProgressBar {
    if !show || n == 0 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>24} [{bar:30}] {pos}/{len} {per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// One misspelling prepared for evaluation.
struct MissCase {
    /// Base rows equal to the correct word.
    correct_rows: Vec<usize>,
    exact: Vec<u32>,
}

/// Everything shared by all rows of the report.
struct EvalData {
    strings: Strings,
    pair_truth: Vec<u32>,
    /// Length of the longer side of each pair.
    pair_len: Vec<u32>,
    synthetic: usize,
    /// Pairs g is fitted on and `all` measures: the synthetic and typo pairs, before the
    /// printable ones.
    fitted: usize,
    query_exact: Vec<Vec<u32>>,
    miss: Vec<MissCase>,
    has_misspellings: bool,
    ts: Vec<usize>,
    candidates: Vec<usize>,
    progress: bool,
}

/// The warnings of reading `path` (lines skipped, replaced or cut): on standard error
/// as `embed` gives them, and in the report's notes.
fn warn_of_input(path: &Path, warnings: &[String], notes: &mut Vec<String>) {
    for warning in warnings {
        eprintln!("warning: {}: {warning}", path.display());
        notes.push(format!("{}: {warning}", path.display()));
    }
}

/// Run the evaluation; with `opts.out`, write report.json and the plots there.
pub fn run(gpu: &Gpu, opts: &Options) -> Result<Report> {
    let start = Instant::now();
    let mut notes = Vec::new();
    let (base, base_source) = match &opts.base {
        Some(p) => {
            let (base, warnings) = data::read_base_file(p, opts.non_ascii)?;
            warn_of_input(p, &warnings, &mut notes);
            (base, p.display().to_string())
        }
        None => (data::builtin_base(), "the built-in base".to_string()),
    };
    let (pairs, pairs_source) = match (&opts.pairs, &opts.base) {
        (Some(p), _) => {
            let (pairs, warnings) = data::read_pairs_file(p, opts.non_ascii)?;
            warn_of_input(p, &warnings, &mut notes);
            (pairs, Some(p.display().to_string()))
        }
        (None, None) => (
            data::builtin_pairs(),
            Some("the built-in misspellings".to_string()),
        ),
        (None, Some(_)) => (Vec::new(), None),
    };
    if let Some(c) = opts.candidates.iter().find(|&&c| c == 0) {
        bail!("--candidates must be positive, not {c}");
    }

    // Data: pairs, queries, misspellings.
    let synthetic = data::synthetic_pairs(opts.seed, opts.synthetic_pairs);
    let typo = data::typo_pairs(opts.seed ^ 0x7970_6f73, &base, opts.typo_pairs);
    let printable = data::printable_pairs(opts.seed ^ 0x7072_696e, opts.synthetic_pairs);
    let queries = data::held_out_queries(opts.seed ^ 0x7175_6572, &base, opts.queries);
    if queries.len() < opts.queries {
        notes.push(format!(
            "only {} held-out queries could be made from the base",
            queries.len()
        ));
    }
    let base_set: HashSet<&[u8]> = base.iter().map(|s| s.as_slice()).collect();
    let mut skipped_absent = 0;
    let mut skipped_in_base = 0;
    let mut used = Vec::new();
    for m in &pairs {
        if !base_set.contains(m.correct.as_slice()) {
            skipped_absent += 1;
        } else if base_set.contains(m.wrong.as_slice()) {
            skipped_in_base += 1;
        } else {
            used.push(m);
        }
    }
    if used.len() > opts.max_misspellings {
        let mut rng =
            <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(opts.seed ^ 0x6d69_7373);
        rand::seq::SliceRandom::shuffle(used.as_mut_slice(), &mut rng);
        used.truncate(opts.max_misspellings);
        notes.push(format!(
            "misspellings: a seeded sample of {} of the usable pairs",
            opts.max_misspellings
        ));
    }
    if skipped_absent > 0 {
        notes.push(format!(
            "{skipped_absent} misspelling pairs skipped: the correct word is not in the base"
        ));
    }
    if skipped_in_base > 0 {
        notes.push(format!(
            "{skipped_in_base} misspelling pairs skipped: the misspelling is itself in the base"
        ));
    }

    let mut all: Vec<Vec<u8>> = Vec::new();
    let push = |v: &mut Vec<Vec<u8>>, items: Vec<Vec<u8>>| {
        let r = v.len()..v.len() + items.len();
        v.extend(items);
        r
    };
    let pair_list: Vec<&(Vec<u8>, Vec<u8>)> =
        synthetic.iter().chain(&typo).chain(&printable).collect();
    let pair_a = push(&mut all, pair_list.iter().map(|p| p.0.clone()).collect());
    let pair_b = push(&mut all, pair_list.iter().map(|p| p.1.clone()).collect());
    let base_range = push(&mut all, base.clone());
    let query_range = push(&mut all, queries.clone());
    let wrong_range = push(&mut all, used.iter().map(|m| m.wrong.clone()).collect());
    let strings = Strings {
        all,
        pair_a,
        pair_b,
        base: base_range,
        queries: query_range,
        wrong: wrong_range,
    };

    let pair_truth: Vec<u32> = pair_list
        .par_iter()
        .map(|(a, b)| levenshtein::distance(a.iter().copied(), b.iter().copied()) as u32)
        .collect();
    let pair_len = pair_list
        .iter()
        .map(|(a, b)| a.len().max(b.len()) as u32)
        .collect();
    let query_exact = exact_matrix(&queries, &base, opts.progress);
    let wrongs: Vec<Vec<u8>> = used.iter().map(|m| m.wrong.clone()).collect();
    let miss_exact = exact_matrix(&wrongs, &base, opts.progress);
    let miss = used
        .iter()
        .zip(miss_exact)
        .map(|(m, exact)| MissCase {
            correct_rows: base
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == m.correct)
                .map(|(i, _)| i)
                .collect(),
            exact,
        })
        .collect();
    let ctx = EvalData {
        strings,
        pair_truth,
        pair_len,
        synthetic: synthetic.len(),
        fitted: synthetic.len() + typo.len(),
        query_exact,
        miss,
        has_misspellings: pairs_source.is_some(),
        ts: metrics::candidate_steps(base.len()),
        candidates: opts.candidates.clone(),
        progress: opts.progress,
    };

    // The rows.
    let mut models = Vec::new();
    let loaded = crate::search::index::open_model(opts.model.as_deref())?;
    models.push(embedded_row(
        &ctx,
        "model",
        Embedder::with_batch(gpu, &loaded, opts.batch)?,
        loaded.source().to_string(),
        Some(loaded.fingerprint().to_string()),
    )?);
    if !opts.no_baselines {
        let released = match &opts.reference {
            Some(path) => {
                let (weights, fingerprint) = load_reference(path)?;
                crate::model::Model::imported(weights, fingerprint, path.display().to_string())
            }
            None => crate::model::released()?,
        };
        models.push(embedded_row(
            &ctx,
            "released",
            Embedder::new(gpu, released.weights()?, opts.batch)?,
            released.source().to_string(),
            Some(released.fingerprint().to_string()),
        )?);
        // At the model's widths, so the row shows what training added.
        let widths = loaded.weights().map_or(Widths::RELEASED, |w| w.widths);
        let random = Weights::init_with(widths, RANDOM_SEED);
        models.push(embedded_row(
            &ctx,
            "random-cnn",
            Embedder::new(gpu, &random, opts.batch)?,
            format!("untrained network ({widths}), Weights::init_with(.., {RANDOM_SEED:#x})"),
            None,
        )?);
        let t = Instant::now();
        let cgk = cgk::Cgk::new(MAX_LEN, opts.cgk_reps.max(1), opts.seed ^ 0xC6C);
        let texts: Vec<&[u8]> = ctx.strings.all.iter().map(|s| s.as_slice()).collect();
        let est = Estimator::Codes {
            codes: cgk.embed_all(&texts),
            width: cgk.width(),
            estimator: cgk.estimator(),
        };
        models.push(evaluate(
            &ctx,
            &est,
            "cgk",
            format!(
                "CGK embedding, {} repetitions of 3x{MAX_LEN} symbols, Hamming distance",
                cgk.reps()
            ),
            None,
            t,
        ));
    }
    models.push(evaluate(
        &ctx,
        &Estimator::Exact,
        "exact",
        "exact scan (Levenshtein)".to_string(),
        None,
        Instant::now(),
    ));

    let report = Report {
        data: DataSummary {
            base_source,
            base_rows: base.len(),
            queries: queries.len(),
            synthetic_pairs: synthetic.len(),
            typo_pairs: typo.len(),
            misspellings_source: pairs_source,
            misspellings_read: pairs.len(),
            misspellings_used: used.len(),
            skipped_correct_not_in_base: skipped_absent,
            skipped_wrong_in_base: skipped_in_base,
            seed: opts.seed,
            ks: KS.to_vec(),
            ts: ctx.ts.clone(),
            candidates: ctx.candidates.clone(),
            thresholds: THRESHOLDS.to_vec(),
            mus: mus(),
        },
        models,
        notes,
        seconds: start.elapsed().as_secs_f64(),
    };
    if let Some(dir) = &opts.out {
        write_outputs(&report, dir)?;
    }
    Ok(report)
}

/// A `.pth` through import, anything else as a model file.
fn load_reference(path: &Path) -> Result<(Weights, String)> {
    crate::search::index::refuse_index_as_model(path)?;
    if path.extension().is_some_and(|e| e == "pth") {
        let sd = crate::model::pth::read_state_dict(path)?;
        let weights = Weights::from_state_dict(&sd, &path.display().to_string())?;
        let fingerprint = crate::model::weights::fingerprint(path)?;
        Ok((weights, fingerprint))
    } else {
        Weights::load_with_fingerprint(path)
    }
}

/// The row of a model that `embedder` runs: float embeddings, or codes (CGK) kept as
/// bytes.
fn embedded_row(
    ctx: &EvalData,
    name: &str,
    mut embedder: Embedder,
    source: String,
    fingerprint: Option<String>,
) -> Result<ModelReport> {
    let t = Instant::now();
    let estimator = embedder.estimator();
    if estimator.metric == Metric::Euclidean {
        bail!("eval does not yet report CNN-ED models ({name}: {source})");
    }
    let texts: Vec<&[u8]> = ctx.strings.all.iter().map(|s| s.as_slice()).collect();
    let bar = bar(texts.len(), &format!("embed ({name})"), ctx.progress);
    let mut data = Vec::with_capacity(texts.len() * embedder.dim());
    let mut codes = Vec::new();
    for chunk in texts.chunks(embedder.batch()) {
        let embedded = embedder
            .embed(chunk)
            .with_context(|| format!("embedding for {name}"))?;
        match estimator.metric {
            Metric::SquaredEuclidean | Metric::Euclidean => data.extend(embedded),
            Metric::Hamming => codes.extend(embedded.into_iter().map(|v| v as u8)),
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let est = match estimator.metric {
        Metric::SquaredEuclidean | Metric::Euclidean => Estimator::Dense {
            data,
            dim: embedder.dim(),
            estimator,
        },
        Metric::Hamming => Estimator::Codes {
            codes,
            width: embedder.dim(),
            estimator,
        },
    };
    Ok(evaluate(ctx, &est, name, source, fingerprint, t))
}

const DISTANCE_BUCKETS: [(u32, u32); 8] = [
    (1, 1),
    (2, 2),
    (3, 3),
    (4, 5),
    (6, 8),
    (9, 16),
    (17, 32),
    (33, u32::MAX),
];
const LENGTH_BUCKETS: [(u32, u32); 5] = [(1, 5), (6, 10), (11, 20), (21, 40), (41, u32::MAX)];

fn evaluate(
    ctx: &EvalData,
    est: &Estimator,
    name: &str,
    source: String,
    fingerprint: Option<String>,
    start: Instant,
) -> ModelReport {
    let s = &ctx.strings;
    // Distance estimation: fit g on the even pairs, measure on the odd ones.
    let d_hat: Vec<f64> = s
        .pair_a
        .clone()
        .into_par_iter()
        .zip(s.pair_b.clone())
        .map(|(i, j)| f64::from(est.dist(s, i, j)))
        .collect();
    let truth: Vec<f64> = ctx.pair_truth.iter().map(|&d| f64::from(d)).collect();
    let (fit_x, fit_y): (Vec<f64>, Vec<f64>) = (0..ctx.fitted)
        .step_by(2)
        .map(|i| (d_hat[i], truth[i]))
        .unzip();
    let g = LinearFit::fit(&fit_x, &fit_y);
    let scale = LinearFit::fit_proportional(&fit_x, &fit_y);
    let eval_idx: Vec<usize> = (1..ctx.fitted).step_by(2).collect();
    let stats_over = |idx: &mut dyn Iterator<Item = usize>| {
        let (x, y): (Vec<f64>, Vec<f64>) = idx.map(|i| (d_hat[i], truth[i])).unzip();
        metrics::pair_stats(&x, &y, &g)
    };
    let stats_of = |keep: &dyn Fn(usize) -> bool| {
        stats_over(&mut eval_idx.iter().copied().filter(|&i| keep(i)))
    };
    let bucketed = |buckets: &[(u32, u32)], key: &dyn Fn(usize) -> u32| {
        buckets
            .iter()
            .map(|&(lo, hi)| {
                let seen = eval_idx
                    .iter()
                    .map(|&i| key(i))
                    .filter(|k| (lo..=hi).contains(k))
                    .max();
                Bucket {
                    lo,
                    hi: seen.unwrap_or(lo),
                    stats: stats_of(&|i| (lo..=hi).contains(&key(i))),
                }
            })
            .filter(|b| b.stats.pairs > 0)
            .collect::<Vec<_>>()
    };
    let max_d = ctx.pair_truth[..ctx.fitted]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let relative_error_by_distance = (1..=max_d)
        .filter_map(|d| {
            let st = stats_of(&|i| ctx.pair_truth[i] == d);
            (st.pairs > 0).then_some((d, st.mre, st.pairs))
        })
        .collect();
    let distance = DistanceReport {
        fit: g,
        threshold_scale: scale.slope,
        fit_pairs: fit_x.len(),
        all: stats_of(&|_| true),
        synthetic: stats_of(&|i| i < ctx.synthetic),
        typo: stats_of(&|i| i >= ctx.synthetic),
        synthetic_printable: stats_over(&mut (ctx.fitted..d_hat.len())),
        by_distance: bucketed(&DISTANCE_BUCKETS, &|i| ctx.pair_truth[i]),
        by_length: bucketed(&LENGTH_BUCKETS, &|i| ctx.pair_len[i]),
        relative_error_by_distance,
        points: eval_idx.iter().map(|&i| (d_hat[i], truth[i])).collect(),
    };

    // Search with held-out queries.
    let ts = &ctx.ts;
    let mus = mus();
    let cs = &ctx.candidates;
    let bar = bar(
        s.queries.len() + s.wrong.len(),
        &format!("search ({name})"),
        ctx.progress,
    );
    struct QueryOut {
        recall: Vec<Option<Vec<f64>>>,
        nearest: Option<usize>,
        thresholds: Vec<Vec<ThresholdCount>>,
    }
    let per_query: Vec<QueryOut> = s
        .queries
        .clone()
        .into_par_iter()
        .zip(&ctx.query_exact)
        .map(|(q, exact)| {
            let row = est.row(s, q);
            let order = metrics::rank_rows(&row);
            let scaled: Vec<f32> = row
                .iter()
                .map(|&e| scale.apply(f64::from(e)) as f32)
                .collect();
            let out = QueryOut {
                recall: KS
                    .iter()
                    .map(|&k| metrics::recall_at(exact, &order, k, ts))
                    .collect(),
                nearest: metrics::nearest_rank(exact, &order),
                thresholds: metrics::threshold_counts(exact, &scaled, &THRESHOLDS, &mus),
            };
            bar.inc(1);
            out
        })
        .collect();
    // A query is answered when the base is not empty (its recall is then defined).
    let answered: Vec<(Vec<Vec<f64>>, usize)> = per_query
        .iter()
        .filter_map(|q| {
            let recall: Option<Vec<Vec<f64>>> = q.recall.iter().cloned().collect();
            Some((recall?, q.nearest?))
        })
        .collect();
    let search = SearchReport::summarize(ts, cs, &answered);
    let counts = per_query.iter().map(|q| q.thresholds.as_slice());
    let threshold = ThresholdReport::summarize(&THRESHOLDS, mus.len(), counts);

    // Real misspellings.
    let misspellings = ctx.has_misspellings.then(|| {
        struct MissOut {
            correct: Option<usize>,
            nearest: Option<usize>,
            top1_match: Vec<bool>,
            top1_correct: Vec<bool>,
            exact_correct: bool,
        }
        let outs: Vec<MissOut> = s
            .wrong
            .clone()
            .into_par_iter()
            .zip(&ctx.miss)
            .map(|(q, case)| {
                let row = est.row(s, q);
                let order = metrics::rank_rows(&row);
                let best = case.exact.iter().copied().min();
                let exact_top1 = case
                    .exact
                    .iter()
                    .enumerate()
                    .min_by_key(|&(i, &d)| (d, i))
                    .map(|(i, _)| i);
                let tops: Vec<Option<usize>> = cs
                    .iter()
                    .map(|&c| metrics::rerank_top1(&case.exact, &row, &order, c))
                    .collect();
                bar.inc(1);
                MissOut {
                    correct: order.iter().position(|r| case.correct_rows.contains(r)),
                    nearest: metrics::nearest_rank(&case.exact, &order),
                    top1_match: tops
                        .iter()
                        .map(|t| t.is_some() && t.map(|r| case.exact[r]) == best)
                        .collect(),
                    top1_correct: tops
                        .iter()
                        .map(|t| t.is_some_and(|r| case.correct_rows.contains(&r)))
                        .collect(),
                    exact_correct: exact_top1.is_some_and(|r| case.correct_rows.contains(&r)),
                }
            })
            .collect();
        let n = outs.len();
        let frac = |f: &dyn Fn(&MissOut) -> bool| {
            mean_or_nan(&mut outs.iter().map(|o| f64::from(f(o))), n)
        };
        MisspellReport {
            pairs: n,
            candidates: cs.clone(),
            correct_within: cs
                .iter()
                .map(|&c| frac(&|o| o.correct.is_some_and(|r| r < c)))
                .collect(),
            nearest_within: cs
                .iter()
                .map(|&c| frac(&|o| o.nearest.is_some_and(|r| r < c)))
                .collect(),
            top1_matches_exact: (0..cs.len())
                .map(|ci| frac(&|o| o.top1_match[ci]))
                .collect(),
            top1_correct: (0..cs.len())
                .map(|ci| frac(&|o| o.top1_correct[ci]))
                .collect(),
            exact_top1_correct: frac(&|o| o.exact_correct),
        }
    });
    bar.finish_and_clear();
    ModelReport {
        name: name.to_string(),
        source,
        fingerprint,
        distance,
        search,
        misspellings,
        threshold,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Writes `dir/report.json` and the plots.
pub fn write_outputs(report: &Report, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    crate::io::write_atomic(&dir.join("report.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, report)?;
        std::io::Write::write_all(w, b"\n")?;
        Ok(())
    })?;
    plot::write_all(report, dir)
}

/// Recall at the largest T of `ts` not above `t` (the curve's step there).
fn recall_at_t(search: &SearchReport, ki: usize, t: usize) -> Option<f64> {
    let i = search.ts.iter().rposition(|&x| x <= t)?;
    Some(search.curves[ki].recall[i])
}

/// The short table printed on stdout.
pub fn table(report: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let d = &report.data;
    let _ = writeln!(
        s,
        "base: {} ({} rows), {} held-out queries, {} synthetic + {} typo pairs (and {} printable, outside the fit), misspellings: {} of {} used",
        d.base_source,
        d.base_rows,
        d.queries,
        d.synthetic_pairs,
        d.typo_pairs,
        d.synthetic_pairs,
        d.misspellings_used,
        d.misspellings_read
    );
    let c = d
        .candidates
        .iter()
        .copied()
        .find(|&c| c >= 100)
        .or(d.candidates.last().copied());
    let ci = c.and_then(|c| d.candidates.iter().position(|&x| x == c));
    let cs = c.map_or("-".to_string(), |c| c.to_string());
    let _ = writeln!(
        s,
        "{:<11} {:>6} {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "model",
        "MAE",
        "MRE",
        "spearman",
        "R1@10",
        "R10@100",
        "R50@100",
        format!("nn@{cs}"),
        format!("corr@{cs}"),
        format!("top1@{cs}")
    );
    let f = |x: Option<f64>| {
        x.filter(|v| v.is_finite())
            .map_or("-".to_string(), |v| format!("{v:.3}"))
    };
    for m in &report.models {
        let miss = m.misspellings.as_ref();
        let _ = writeln!(
            s,
            "{:<11} {:>6.2} {:>6.3} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            m.name,
            m.distance.all.mae,
            m.distance.all.mre,
            f(m.distance.all.spearman),
            f(recall_at_t(&m.search, 0, 10)),
            f(recall_at_t(&m.search, 1, 100)),
            f(recall_at_t(&m.search, 2, 100)),
            f(ci.map(|i| m.search.nearest_within[i])),
            f(ci.and_then(|i| miss.map(|r| r.correct_within[i]))),
            f(ci.and_then(|i| miss.map(|r| r.top1_matches_exact[i]))),
        );
    }
    let synthetic_mre: Vec<String> = report
        .models
        .iter()
        .map(|m| {
            format!(
                "{} {:.3} / {:.3}",
                m.name, m.distance.synthetic.mre, m.distance.synthetic_printable.mre
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "synthetic MRE, lower-case (the evaluation half) / printable (all): {}",
        synthetic_mre.join(", ")
    );
    let _ = writeln!(
        s,
        "MAE/MRE: calibrated |g(d_hat) - d| (g fitted on a separate half); Rk@T: recall of the exact top-k in the first T candidates; nn@C: exact nearest within C; corr@C: correct word within C (misspellings); top1@C: re-ranked top-1 at the exact top-1 distance."
    );
    for n in &report.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}
