//! `eval` of a CNN-ED model on long strings, as the CNN-ED paper measures it (Dai et al.,
//! SIGIR 2020, section 4.2): the strings the model's line was fitted on (train), held-out
//! queries and a base, all given as files.
//!
//! Rows: the model; the untrained CNN-ED of the same shape ([`RANDOM_SEED`], its line fitted
//! on the training pairs as the trainer fits one, [`fit_estimator`]); CGK ([`crate::model::cgk`],
//! a line fitted on the same pairs); the exact scan. For each row:
//! - the relative estimation error |g(d_hat) - d| / d over every (query, base) pair at a
//!   positive distance d, g the row's line (clamped at 0: an edit distance is never
//!   negative), and the same over each query's exact [`NEAR`] nearest (the pairs a search
//!   acts on);
//! - recall-item curves: recall of the exact top-k within the first T candidates by
//!   embedding distance, k of [`KS`], T on a log grid up to the base size;
//! - the fraction of queries whose exact top-10 lies within the first 100 candidates;
//! - threshold search (CNN-ED Algorithm 2) at each K of [`THRESHOLDS`] and blow-up mu of
//!   [`mus`]: recall of the base strings within K among those whose screen is <= mu * K,
//!   and the candidates that takes.
//!
//! The exact distances (code points, [`Exact`]) are the expensive part: queries x base
//! pairs on all CPU threads; `max_queries` evaluates a seeded sample of the queries.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;

use super::metrics::{self, LinearFit, ThresholdCount};
use super::{KS, RANDOM_SEED, SearchReport, ThresholdReport, bar, mus};
use crate::edit_distance::Exact;
use crate::embed::Embedder;
use crate::gpu::Gpu;
use crate::input::read_utf8_lines;
use crate::model::cgk::{self, Cgk};
use crate::model::cnn_ed::CnnEd;
use crate::model::{Architecture, Estimator, Model};
use crate::train::cnn_ed_data::{TripletData, sample};
use crate::train::cnn_ed_run::fit_estimator;

/// How many of each query's exact nearest the near relative error reads.
pub const NEAR: usize = 10;

/// Thresholds K of threshold search: fixed edit budgets, as a user gives them to
/// `query --max-distance`, rather than fractions of a data set's mean distance, so that
/// runs on different files compare. 40 and 100 are the CNN-ED paper's (40 for DBLP, Trec
/// and Enron, 100 for UniRef and Gen50ks); 10 and 20 the near copies. A K within which no
/// query has a base string reports no query (recall null).
pub const THRESHOLDS: [u32; 4] = [10, 20, 40, 100];

/// The files and sizes of a long-string evaluation.
#[derive(Debug, Clone)]
pub struct LongOptions {
    /// The strings the model's line was fitted on (its training strings).
    pub train: PathBuf,
    pub queries: PathBuf,
    pub base: PathBuf,
    /// Directory for report.json and the recall and threshold plots; `None`: nothing written.
    pub out: Option<PathBuf>,
    /// Evaluate a seeded sample of this many queries (`None`: all).
    pub max_queries: Option<usize>,
    /// Seed of the query sample and of CGK's bits.
    pub seed: u64,
    pub cgk_reps: usize,
    /// C values for "the exact nearest within the first C candidates".
    pub candidates: Vec<usize>,
    /// Strings per GPU batch.
    pub batch: usize,
    /// Only the model and the exact scan.
    pub no_baselines: bool,
    pub progress: bool,
}

/// Everything the long-string `eval` measured; written as report.json.
#[derive(Debug, Clone, Serialize)]
pub struct LongReport {
    pub data: LongData,
    pub models: Vec<LongRow>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LongData {
    pub train_source: String,
    pub queries_source: String,
    pub base_source: String,
    pub train_rows: usize,
    /// Queries in the file, and those evaluated (all, or a seeded sample).
    pub query_rows: usize,
    pub queries: usize,
    pub base_rows: usize,
    /// Mean length in characters of the evaluated queries and of the base strings.
    pub mean_query_len: f64,
    pub mean_base_len: f64,
    /// (query, base) pairs at a positive distance: the pairs of the relative error.
    pub error_pairs: usize,
    pub seed: u64,
    pub ks: Vec<usize>,
    pub ts: Vec<usize>,
    pub candidates: Vec<usize>,
    /// Thresholds K and blow-ups mu of threshold search (`models[].threshold`).
    pub thresholds: Vec<u32>,
    pub mus: Vec<f64>,
    /// Wall time of the exact (query, base) distances.
    pub exact_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LongRow {
    /// `model`, `random-cnn-ed`, `cgk` or `exact`.
    pub name: String,
    pub source: String,
    pub fingerprint: Option<String>,
    /// g: edit distance = slope * embedding distance + intercept.
    pub fit: LinearFit,
    /// Mean |g(d_hat) - d| / d over the pairs at d > 0 (CNN-ED's Table 2 measure).
    pub relative_error: f64,
    /// The same over each query's exact nearest [`NEAR`] base strings (at d > 0): the
    /// pairs a search acts on, which the mean over all pairs barely sees.
    pub near_relative_error: f64,
    /// Mean |g(d_hat) - d| over all pairs.
    pub mean_abs_error: f64,
    pub search: SearchReport,
    /// Fraction of queries whose exact top-10 (ties at the 10th distance count) is all
    /// within the first 100 candidates.
    pub top10_within_100: f64,
    /// Threshold search, one report for each K of `data.thresholds` (its `d`): a base
    /// string is a candidate when the row's estimate less a positive intercept (the screen
    /// of `query --max-distance`) is <= mu * K, or when it equals the query.
    pub threshold: Vec<ThresholdReport>,
    pub seconds: f64,
}

/// How a row compares two strings: by index into [`Strings::all`].
enum Embedded {
    /// CNN-ED embeddings `[strings, dim]`, Euclidean distance.
    Dense { data: Vec<f32>, dim: usize },
    /// CGK codes `[strings, width]`, Hamming distance per repetition.
    Codes {
        codes: Vec<u8>,
        width: usize,
        reps: usize,
    },
    /// The exact distance itself (queries x base only).
    Exact,
}

/// Train, evaluated queries and base, back to back, with the exact (query, base) distances.
struct Strings {
    all: Vec<String>,
    train: usize,
    queries: usize,
    /// `[queries][base]`.
    exact: Vec<Vec<u32>>,
}

impl Strings {
    fn query(&self, q: usize) -> usize {
        self.train + q
    }

    fn base(&self) -> std::ops::Range<usize> {
        self.train + self.queries..self.all.len()
    }

    /// (query, base) pairs at a positive distance: the pairs of the relative error.
    fn positive_pairs(&self) -> usize {
        self.exact.iter().flatten().filter(|&&d| d > 0).count()
    }
}

impl Embedded {
    /// The raw distance of query `q` to base row `j`.
    fn distance(&self, s: &Strings, q: usize, j: usize) -> f64 {
        let (a, b) = (s.query(q), s.base().start + j);
        match self {
            Embedded::Dense { data, dim } => {
                let row = |i: usize| &data[i * dim..(i + 1) * dim];
                crate::stats::squared_distance(row(a), row(b)).sqrt()
            }
            Embedded::Codes { codes, width, reps } => {
                let row = |i: usize| &codes[i * width..(i + 1) * width];
                f64::from(cgk::hamming(row(a), row(b))) / *reps as f64
            }
            Embedded::Exact => f64::from(s.exact[q][j]),
        }
    }
}

/// What threshold search compares with mu * K for a row's raw distance `raw` under its
/// line `g`: the estimate less a positive intercept, as `query --max-distance` screens a
/// CNN-ED model ([`Estimator::screen`], whose Euclidean metric reads a squared distance).
/// A fitted line's intercept is set by mostly unrelated training pairs and would keep
/// close strings out of reach of a small K (the CNN-ED authors' threshold search,
/// nns.py, also screens its CNN with a bias of 0).
/// Every row's line is a * raw + b, so CGK's and the exact scan's screen the same way.
/// An equal string (exact distance 0) always passes, as in [`crate::search::passes_screen`].
fn screen(g: &LinearFit, raw: f64, exact: u32) -> f32 {
    if exact == 0 {
        return 0.0;
    }
    Estimator::euclidean(g.slope as f32, g.intercept as f32).screen((raw * raw) as f32)
}

/// Runs the long-string report for the CNN-ED `model`; with `opts.out`, writes
/// report.json and the recall and threshold plots there.
pub fn run(gpu: &Gpu, model: &Model, opts: &LongOptions) -> Result<LongReport> {
    let start = Instant::now();
    let Architecture::CnnEd(cnn_ed) = model.architecture() else {
        bail!(
            "{} is a {} model; the long-string report is for CNN-ED models",
            model.source(),
            model.arch_name()
        );
    };
    if let Some(c) = opts.candidates.iter().find(|&&c| c == 0) {
        bail!("--candidates must be positive, not {c}");
    }
    if opts.max_queries == Some(0) {
        bail!("--max-queries must be positive");
    }
    let mut notes = Vec::new();
    let train = read_strings(&opts.train, "--train")?;
    if train.len() < 2 {
        bail!(
            "--train {} has {} strings; fitting a line needs at least 2",
            opts.train.display(),
            train.len()
        );
    }
    let all_queries = read_strings(&opts.queries, "--queries")?;
    let base = read_strings(&opts.base, "--base")?;
    for (what, path, rows) in [
        ("--queries", &opts.queries, all_queries.len()),
        ("--base", &opts.base, base.len()),
    ] {
        if rows == 0 {
            bail!("{what} {} holds no strings", path.display());
        }
    }
    let queries = match opts.max_queries {
        Some(n) if n < all_queries.len() => {
            notes.push(format!(
                "a seeded sample of {n} of the {} queries (seed {})",
                all_queries.len(),
                opts.seed
            ));
            sample(&all_queries, n, opts.seed)
        }
        _ => all_queries.clone(),
    };

    let exact_start = Instant::now();
    let exact = exact_matrix(&queries, &base, opts.progress);
    let exact_seconds = exact_start.elapsed().as_secs_f64();
    let strings = Strings {
        train: train.len(),
        queries: queries.len(),
        all: train.iter().chain(&queries).chain(&base).cloned().collect(),
        exact,
    };
    let ts = metrics::candidate_steps(base.len());
    // Training pairs' distances, computed once for every fitted line.
    let training = TripletData::new(train, 1);

    let mut models = vec![embedded_row(gpu, opts, &strings, &ts, "model", model)?];
    if !opts.no_baselines {
        let mut random = CnnEd::random(cnn_ed.alphabet().to_vec(), cnn_ed.shape(), RANDOM_SEED)?;
        let fit = fit_estimator(&mut random, &training).context("the untrained CNN-ED's line")?;
        if fit.through_zero {
            notes.push(format!(
                "the untrained CNN-ED's distances do not follow the training pairs' edit \
                 distances (correlation {:.2}): its line is the least-squares line through 0",
                fit.correlation
            ));
        }
        let source = format!("untrained CNN-ED of the model's shape, seed {RANDOM_SEED:#x}");
        let random = Model::from_cnn_ed(random, source)?;
        models.push(embedded_row(
            gpu,
            opts,
            &strings,
            &ts,
            "random-cnn-ed",
            &random,
        )?);
        models.push(cgk_row(opts, &strings, &training, &ts));
        if strings.all.iter().any(|s| !s.is_ascii()) {
            notes.push(
                "CGK reads bytes: a character outside ASCII is its UTF-8 bytes, each read as 127"
                    .into(),
            );
        }
    }
    models.push(evaluate(
        &strings,
        &Embedded::Exact,
        LinearFit {
            slope: 1.0,
            intercept: 0.0,
        },
        &ts,
        &opts.candidates,
        Row {
            name: "exact",
            source: "exact scan (Levenshtein over code points)".into(),
            fingerprint: None,
            start: Instant::now(),
            progress: opts.progress,
        },
    ));

    let mean_len = |v: &[String]| {
        v.iter().map(|s| s.chars().count()).sum::<usize>() as f64 / v.len().max(1) as f64
    };
    let report = LongReport {
        data: LongData {
            train_source: opts.train.display().to_string(),
            queries_source: opts.queries.display().to_string(),
            base_source: opts.base.display().to_string(),
            train_rows: strings.train,
            query_rows: all_queries.len(),
            queries: queries.len(),
            base_rows: base.len(),
            mean_query_len: mean_len(&queries),
            mean_base_len: mean_len(&base),
            error_pairs: strings.positive_pairs(),
            seed: opts.seed,
            ks: KS.to_vec(),
            ts,
            candidates: opts.candidates.clone(),
            thresholds: THRESHOLDS.to_vec(),
            mus: mus(),
            exact_seconds,
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

/// Every line of `path` as a string (any valid UTF-8; invalid UTF-8 is an error naming
/// the file and line).
fn read_strings(path: &Path, option: &str) -> Result<Vec<String>> {
    read_utf8_lines(path).with_context(|| format!("reading {option}"))
}

/// Exact code-point distances from every query to every base string, on all CPU threads.
fn exact_matrix(queries: &[String], base: &[String], progress: bool) -> Vec<Vec<u32>> {
    let bar = bar(queries.len(), "exact distances", progress);
    let out = queries
        .par_iter()
        .map(|q| {
            let exact = Exact::new(q.as_bytes());
            let row = base
                .iter()
                .map(|b| exact.distance(b.as_bytes()) as u32)
                .collect();
            bar.inc(1);
            row
        })
        .collect();
    bar.finish_and_clear();
    out
}

/// What names a row in the report.
struct Row<'a> {
    name: &'a str,
    source: String,
    fingerprint: Option<String>,
    start: Instant,
    progress: bool,
}

/// The row of a CNN-ED model, embedded on the GPU as `query` embeds it, under its own
/// line.
fn embedded_row(
    gpu: &Gpu,
    opts: &LongOptions,
    s: &Strings,
    ts: &[usize],
    name: &str,
    model: &Model,
) -> Result<LongRow> {
    let start = Instant::now();
    let e = model.estimator();
    let g = LinearFit {
        slope: f64::from(e.scale),
        intercept: f64::from(e.offset),
    };
    let mut embedder = Embedder::with_batch(gpu, model, opts.batch)?;
    let bar = bar(s.all.len(), &format!("embed ({name})"), opts.progress);
    let mut data = Vec::with_capacity(s.all.len() * embedder.dim());
    for chunk in s.all.chunks(embedder.batch()) {
        data.extend(
            embedder
                .embed(chunk)
                .with_context(|| format!("embedding for {name}"))?,
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let embedded = Embedded::Dense {
        data,
        dim: embedder.dim(),
    };
    let row = Row {
        name,
        source: model.source().to_string(),
        fingerprint: Some(model.fingerprint().to_string()),
        start,
        progress: opts.progress,
    };
    Ok(evaluate(s, &embedded, g, ts, &opts.candidates, row))
}

/// CGK over the longest string's bytes, its line fitted on the training pairs' Hamming
/// distances per repetition.
fn cgk_row(opts: &LongOptions, s: &Strings, training: &TripletData, ts: &[usize]) -> LongRow {
    let start = Instant::now();
    let longest = s.all.iter().map(String::len).max().unwrap_or(1).max(1);
    let reps = opts.cgk_reps.max(1);
    let cgk = Cgk::new(longest, reps, opts.seed ^ 0xC6C);
    let (codes, width) = (cgk.embed_all(&s.all), cgk.width());
    let row = |k: usize| &codes[k * width..(k + 1) * width];
    let (xs, ys): (Vec<f64>, Vec<f64>) = training
        .pairs()
        .map(|(i, j, ed)| {
            let hamming = f64::from(cgk::hamming(row(i), row(j))) / reps as f64;
            (hamming, f64::from(ed))
        })
        .unzip();
    let embedded = Embedded::Codes { codes, width, reps };
    let row = Row {
        name: "cgk",
        source: format!(
            "CGK embedding, {reps} repetitions of 3x{longest} symbols, Hamming distance"
        ),
        fingerprint: None,
        start,
        progress: opts.progress,
    };
    evaluate(
        s,
        &embedded,
        LinearFit::fit(&xs, &ys),
        ts,
        &opts.candidates,
        row,
    )
}

/// One query's measures under one row.
struct QueryOut {
    /// Recall at each T, for each k of [`KS`].
    recall: Vec<Vec<f64>>,
    /// Position of the first base row at the exact nearest distance.
    nearest: usize,
    top10_within_100: bool,
    relative_error_sum: f64,
    abs_error_sum: f64,
    /// Relative errors summed over the query's exact nearest [`NEAR`] at d > 0, and their count.
    near_error: (f64, usize),
    /// Threshold search's counts at each K of [`THRESHOLDS`] and mu of [`mus`].
    thresholds: Vec<Vec<ThresholdCount>>,
}

fn evaluate(
    s: &Strings,
    embedded: &Embedded,
    g: LinearFit,
    ts: &[usize],
    candidates: &[usize],
    row: Row,
) -> LongRow {
    let bar = bar(s.queries, &format!("search ({})", row.name), row.progress);
    let mus = mus();
    let per_query: Vec<QueryOut> = (0..s.queries)
        .into_par_iter()
        .map(|q| {
            let exact = &s.exact[q];
            let raw: Vec<f64> = (0..exact.len())
                .map(|j| embedded.distance(s, q, j))
                .collect();
            let error = |j: usize| (g.apply(raw[j]).max(0.0) - f64::from(exact[j])).abs();
            let mut relative_error_sum = 0.0;
            let mut abs_error_sum = 0.0;
            for (j, &d) in exact.iter().enumerate() {
                abs_error_sum += error(j);
                if d > 0 {
                    relative_error_sum += error(j) / f64::from(d);
                }
            }
            let mut by_distance: Vec<usize> = (0..exact.len()).collect();
            let near = NEAR.min(exact.len());
            by_distance.select_nth_unstable_by_key(near - 1, |&j| (exact[j], j));
            let near_error = by_distance[..near]
                .iter()
                .filter(|&&j| exact[j] > 0)
                .fold((0.0, 0), |(sum, n), &j| {
                    (sum + error(j) / f64::from(exact[j]), n + 1)
                });
            let ranked: Vec<f32> = raw.iter().map(|&x| x as f32).collect();
            let screens: Vec<f32> = raw
                .iter()
                .zip(exact)
                .map(|(&x, &d)| screen(&g, x, d))
                .collect();
            let order = metrics::rank_rows(&ranked);
            let recall_at = |k, ts: &[usize]| {
                metrics::recall_at(exact, &order, k, ts).expect("the base is not empty")
            };
            bar.inc(1);
            QueryOut {
                recall: KS.iter().map(|&k| recall_at(k, ts)).collect(),
                nearest: metrics::nearest_rank(exact, &order).expect("the base is not empty"),
                top10_within_100: recall_at(10, &[100])[0] == 1.0,
                relative_error_sum,
                abs_error_sum,
                near_error,
                thresholds: metrics::threshold_counts(exact, &screens, &THRESHOLDS, &mus),
            }
        })
        .collect();
    bar.finish_and_clear();
    let pairs = s.queries * s.base().len();
    let sum = |f: &dyn Fn(&QueryOut) -> f64| per_query.iter().map(f).sum::<f64>();
    let fraction = |f: &dyn Fn(&QueryOut) -> bool| {
        per_query.iter().filter(|q| f(q)).count() as f64 / s.queries as f64
    };
    LongRow {
        name: row.name.to_string(),
        source: row.source,
        fingerprint: row.fingerprint,
        fit: g,
        relative_error: sum(&|q| q.relative_error_sum) / s.positive_pairs() as f64,
        near_relative_error: sum(&|q| q.near_error.0) / sum(&|q| q.near_error.1 as f64),
        mean_abs_error: sum(&|q| q.abs_error_sum) / pairs as f64,
        search: SearchReport::summarize(
            ts,
            candidates,
            &per_query
                .iter()
                .map(|q| (q.recall.clone(), q.nearest))
                .collect::<Vec<_>>(),
        ),
        top10_within_100: fraction(&|q| q.top10_within_100),
        threshold: ThresholdReport::summarize(
            &THRESHOLDS,
            mus.len(),
            per_query.iter().map(|q| q.thresholds.as_slice()),
        ),
        seconds: row.start.elapsed().as_secs_f64(),
    }
}

/// Writes `dir/report.json` and the recall and threshold plots.
pub fn write_outputs(report: &LongReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    crate::io::write_atomic(&dir.join("report.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, report)?;
        std::io::Write::write_all(w, b"\n")?;
        Ok(())
    })?;
    let rows: Vec<(&str, &SearchReport)> = report
        .models
        .iter()
        .map(|m| (m.name.as_str(), &m.search))
        .collect();
    super::plot::write_recall_plots(dir, report.data.queries, report.data.base_rows, &rows)?;
    let rows: Vec<(&str, &[ThresholdReport])> = report
        .models
        .iter()
        .map(|m| (m.name.as_str(), m.threshold.as_slice()))
        .collect();
    let d = &report.data;
    super::plot::write_threshold_plots(dir, &d.thresholds, d.base_rows, &d.mus, &rows)?;
    Ok(())
}

/// The table printed on stdout.
pub fn table(report: &LongReport) -> String {
    use std::fmt::Write;
    let d = &report.data;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "train: {} ({} strings); queries: {} ({} of {}, mean length {:.0}); base: {} ({} strings, mean length {:.0}); {} pairs at d > 0",
        d.train_source,
        d.train_rows,
        d.queries_source,
        d.queries,
        d.query_rows,
        d.mean_query_len,
        d.base_source,
        d.base_rows,
        d.mean_base_len,
        d.error_pairs
    );
    let _ = writeln!(
        s,
        "{:<14} {:>9} {:>11} {:>8} {:>8} {:>9} {:>9} {:>10}",
        "model", "rel.err", "rel.err@10", "MAE", "R1@10", "R10@100", "R50@100", "top10@100"
    );
    let at = |search: &SearchReport, ki: usize, t: usize| {
        super::recall_at_t(search, ki, t).map_or("-".to_string(), |r| format!("{r:.3}"))
    };
    for m in &report.models {
        let _ = writeln!(
            s,
            "{:<14} {:>9.3} {:>11.3} {:>8.2} {:>8} {:>9} {:>9} {:>10.3}",
            m.name,
            m.relative_error,
            m.near_relative_error,
            m.mean_abs_error,
            at(&m.search, 0, 10),
            at(&m.search, 1, 100),
            at(&m.search, 2, 100),
            m.top10_within_100
        );
    }
    let _ = writeln!(
        s,
        "rel.err: mean |g(d_hat) - d| / d over (query, base) pairs at d > 0, g fitted on the training pairs (CNN-ED's Table 2); rel.err@10: the same over each query's exact {NEAR} nearest; Rk@T: recall of the exact top-k in the first T candidates; top10@100: queries whose exact top-10 is all in the first 100."
    );
    s.push_str(&threshold_table(report));
    for n in &report.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// Recall threshold search's summary asks for.
const RECALL_TARGET: f64 = 0.99;

/// Threshold search in short: for each row and K, the mean candidates per query at the
/// first mu of the grid whose recall reaches [`RECALL_TARGET`] (the verification work
/// that recall costs), with that mu.
fn threshold_table(report: &LongReport) -> String {
    use std::fmt::Write;
    let d = &report.data;
    let mut s = String::new();
    let _ = write!(s, "{:<14}", "threshold");
    for k in &d.thresholds {
        let _ = write!(s, " {:>16}", format!("K={k}"));
    }
    s.push('\n');
    for m in &report.models {
        let _ = write!(s, "{:<14}", m.name);
        for t in &m.threshold {
            let _ = write!(s, " {:>16}", candidates_at_target(t, &d.mus));
        }
        s.push('\n');
    }
    let queries: Vec<String> = report
        .models
        .first()
        .map(|m| m.threshold.iter().map(|t| t.queries.to_string()).collect())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "threshold: mean candidates per query (screen <= mu * K) at the first mu of the grid with recall >= {RECALL_TARGET} of the base strings within K, mu in parentheses; over the queries with a string within K ({}).",
        queries.join(", ")
    );
    s
}

/// "candidates (mu)" at the first mu of `mus` where `t` reaches [`RECALL_TARGET`]; "-"
/// where no query has a string within K or no mu of the grid gets there.
fn candidates_at_target(t: &ThresholdReport, mus: &[f64]) -> String {
    t.recall
        .iter()
        .position(|&r| r >= RECALL_TARGET)
        .map_or("-".to_string(), |mi| {
            format!("{:.1} ({:.3})", t.candidates[mi], mus[mi])
        })
}
