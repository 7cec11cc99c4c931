//! `megashtein-gpu query`: fuzzy lookup in an index, printed as TSV or JSON lines.
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use serde_json::json;

use super::table::{Format, Table, as_text, f32_value};
use crate::input::{InputStats, Line, NonAscii, check_query, stream_batches};
use crate::model::Model;
use crate::search::index::Index;
use crate::search::query::{Answer, DEFAULT_BLOWUP, MAX_GPU_CANDIDATES, QueryOptions, Searcher};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Index made by `megashtein-gpu embed`.
    #[arg(long)]
    pub index: PathBuf,
    /// A second index of the same file made by another model (for example the CGK
    /// model): C / 2 candidates come from --index and the rest from this one, re-ranked
    /// together. Uses the model stored in it.
    #[arg(long, value_name = "INDEX")]
    pub also: Option<PathBuf>,
    /// Query strings; without them (and without --queries) queries are read from stdin.
    pub queries: Vec<String>,
    /// File of queries, one per line (`-` for stdin).
    #[arg(long = "queries", value_name = "FILE", conflicts_with = "queries")]
    pub queries_file: Option<PathBuf>,
    /// Hits per query (top-k search; threshold search gives every hit within D).
    #[arg(short, default_value_t = 10, conflicts_with = "max_distance")]
    pub k: usize,
    /// Rows taken by embedding distance for the exact re-rank [default: the model's own
    /// measured default if its file records one (`bench query --record-default`), else 50
    /// (the project's rule, README); with --also the larger of the two models'; raised to
    /// -k; 1,024, the GPU search's limit, for threshold search].
    #[arg(long, short = 'C')]
    pub candidates: Option<usize>,
    /// Threshold search: every string within this exact distance among the candidates.
    /// Exits with status 1 when no query found any (like grep).
    #[arg(long, allow_negative_numbers = true, value_name = "D")]
    pub max_distance: Option<u32>,
    /// Threshold search takes candidates whose estimate is <= blowup * D (`inf` for all);
    /// a CNN-ED line's intercept is left out of that comparison.
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_BLOWUP)]
    pub blowup: f32,
    /// Return raw embedding neighbours without the exact re-rank.
    #[arg(long)]
    pub no_rerank: bool,
    /// TSV and CSV: a line per hit (query number, rank, distance, estimate, id, string);
    /// JSON: an object per query with its hits.
    #[arg(long, value_enum, default_value_t = Format::Tsv)]
    pub format: Format,
    /// Write the hits to FILE (atomically, once every query is answered) instead of
    /// standard output, where they are written as each batch is answered.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Model file; must be the one that made the index (checked by fingerprint). By
    /// default the model stored in the index, or the built-in one for older indexes.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// What to do with queries holding non-ASCII characters.
    #[arg(long, value_enum, default_value_t = NonAscii::Error)]
    pub non_ascii: NonAscii,
    /// Most queries per GPU batch (queries from a pipe are answered as they arrive).
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Print start-up, embedding, kNN, re-rank and output time to stderr (embedding and
    /// kNN then go in two GPU submits per batch instead of one, to be timed apart).
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// `--candidates`, or its default: for top-k search the models' own (the larger of the
/// two with `--also`, whose sources each take half), never below -k; for threshold
/// search, where C only caps the candidates within the estimate, the GPU search's limit.
fn candidates(args: &Args, models: &[&Model]) -> usize {
    match (args.candidates, args.max_distance) {
        (Some(c), _) => c,
        (None, Some(_)) => MAX_GPU_CANDIDATES,
        (None, None) => models
            .iter()
            .map(|model| QueryOptions::for_model(model).candidates)
            .max()
            .unwrap_or(0)
            .max(args.k),
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let mut opts = QueryOptions {
        k: args.k,
        // Checked before any work with -C or its floor, -k; the default is set below.
        candidates: args.candidates.unwrap_or(args.k),
        max_distance: args.max_distance,
        blowup: args.blowup,
        rerank: !args.no_rerank,
    };
    crate::search::query::check_options(&opts)?;
    if let Some(output) = &args.output {
        let inputs = [
            (Some(&args.index), "index"),
            (args.also.as_ref(), "index (--also)"),
            (args.queries_file.as_ref(), "queries file"),
        ];
        for (input, what) in inputs {
            if let Some(input) = input {
                crate::io::refuse_overwriting_input(output, input, what)?;
            }
        }
    }
    let started = Instant::now();
    let index = Index::open(&args.index)?;
    if index.is_empty() {
        eprintln!(
            "warning: {} holds no strings: no query can find anything",
            args.index.display()
        );
    }
    let model = index.load_model(args.model.as_deref())?;
    let also = super::open_also(args.also.as_deref())?;
    let models: Vec<&Model> = std::iter::once(&model)
        .chain(also.as_ref().map(|(_, model)| model))
        .collect();
    opts.candidates = candidates(args, &models);
    let gpu = args.gpu.open()?;
    let mut searcher = Searcher::with_batch(&gpu, &index, &model, args.batch)?;
    if let Some((also, model)) = &also {
        searcher = searcher.also(also, model)?;
    }
    searcher.set_timed(args.timings);
    // With --also both models read each query: the rule is that of one reading ASCII only.
    let strictest = models
        .iter()
        .find(|m| !m.reads_unicode())
        .unwrap_or(&models[0]);
    let non_ascii = args.non_ascii.for_model(strictest)?;
    let startup = started.elapsed();
    let mut stats = InputStats::default();
    let mut capped = 0u64;
    let mut hits = 0u64;
    let mut unseen = super::UnseenChars::default();
    // Standard output's writer takes a closed pipe (`| head`) as the end: then there is
    // no whole answer to summarise.
    let mut answered = false;
    super::table::write_output(args.output.as_deref(), |out| {
        let mut out = Output::new(out, args.format)?;
        let mut answer_batch = |lines: &[Line], out: &mut Output<_>| -> Result<()> {
            unseen.record(&model, lines);
            let texts: Vec<&[u8]> = lines.iter().map(|l| l.text.as_slice()).collect();
            let answers = searcher.search(&texts, &opts)?;
            for (line, answer) in lines.iter().zip(&answers) {
                capped += u64::from(answer.capped);
                hits += answer.hits.len() as u64;
                write_answer(out, &index, line, answer)?;
            }
            Ok(())
        };
        if !args.queries.is_empty() {
            let mut lines = Vec::new();
            for (i, q) in args.queries.iter().enumerate() {
                let number = i as u64 + 1;
                let label = format!("query {number}");
                if let Some(text) = check_query(q.as_bytes(), &label, non_ascii)? {
                    stats.record_line(number, &text, false, non_ascii);
                    lines.push(Line { number, text });
                } else {
                    stats.record_skipped(number);
                }
            }
            answer_batch(&lines, &mut out)?;
        } else {
            let path = args
                .queries_file
                .clone()
                .unwrap_or_else(|| PathBuf::from("-"));
            stats = stream_batches(&path, non_ascii, args.batch, |lines| {
                answer_batch(lines, &mut out)?;
                out.flush()
            })?;
        }
        out.flush()?;
        answered = true;
        Ok(())
    })?;
    if !answered {
        return Ok(());
    }
    for warning in stats.warnings() {
        eprintln!(
            "warning: {}",
            warning
                .replace("lines were", "queries were")
                .replace("line was", "query was")
                .replace("(first: line", "(first: query")
        );
    }
    if let Some(warning) = unseen.warning("query") {
        eprintln!("{warning}");
    }
    if let (true, Some(d)) = (capped > 0, opts.max_distance) {
        let who = super::count(capped, "query");
        eprintln!(
            "{}",
            super::capped_warning(&who, opts.candidates, opts.blowup, d)
        );
    }
    if args.timings {
        let t = searcher.timings();
        let total = started.elapsed().as_secs_f64();
        let (startup, embed, knn, rerank) = (
            startup.as_secs_f64(),
            t.embed.as_secs_f64(),
            t.knn.as_secs_f64(),
            t.rerank.as_secs_f64(),
        );
        eprintln!(
            "timings: start-up {startup:.3} s (index, model, device, upload), embedding \
             {embed:.3} s, kNN {knn:.3} s, re-rank {rerank:.3} s, input and output {:.3} s, \
             total {total:.3} s; C = {}",
            (total - startup - embed - knn - rerank).max(0.0),
            opts.candidates
        );
    }
    if args.max_distance.is_some() && hits == 0 {
        return Err(super::NoMatch.into());
    }
    Ok(())
}

fn write_answer(
    out: &mut Output<impl Write>,
    index: &Index,
    query: &Line,
    answer: &Answer,
) -> Result<()> {
    match out {
        Output::Table(table) => {
            for (rank, hit) in answer.hits.iter().enumerate() {
                table.row(&[
                    json!(query.number),
                    json!(rank + 1),
                    json!(hit.distance),
                    f32_value(hit.estimate),
                    json!(hit.id),
                    json!(as_text(index.string(hit.id))),
                ])?;
            }
        }
        Output::Json(out) => {
            let hits = answer
                .hits
                .iter()
                .enumerate()
                .map(|(rank, hit)| JsonHit {
                    rank: rank + 1,
                    id: hit.id,
                    line: index.line(hit.id),
                    string: as_text(index.string(hit.id)),
                    distance: hit.distance,
                    estimate: f32_value(hit.estimate),
                })
                .collect();
            let object = JsonAnswer {
                query: as_text(&query.text),
                hits,
            };
            serde_json::to_writer(&mut *out, &object).context("cannot write output")?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// One query's JSON line. Structs, not `json!`, so the keys keep the documented order
/// (serde_json's map would sort them).
#[derive(serde::Serialize)]
struct JsonAnswer {
    query: String,
    hits: Vec<JsonHit>,
}

#[derive(serde::Serialize)]
struct JsonHit {
    rank: usize,
    id: usize,
    line: u64,
    string: String,
    distance: Option<u32>,
    estimate: serde_json::Value,
}

/// Hits as flat records (TSV, CSV), or one nested JSON object per query.
enum Output<W: Write> {
    Table(Table<W>),
    Json(W),
}

impl<W: Write> Output<W> {
    fn new(out: W, format: Format) -> Result<Self> {
        Ok(match format {
            Format::Json => Output::Json(out),
            _ => Output::Table(Table::new(out, format, COLUMNS)?),
        })
    }

    fn flush(&mut self) -> Result<()> {
        match self {
            Output::Table(table) => table.flush(),
            Output::Json(out) => Ok(out.flush()?),
        }
    }
}

/// Columns of the TSV and CSV output.
const COLUMNS: &[&str] = &["query", "rank", "distance", "estimate", "id", "string"];
