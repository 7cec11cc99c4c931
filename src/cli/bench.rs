//! `megashtein-gpu bench`: throughput on the chosen adapter, optionally beside a peer
//! (PyTorch for the forward pass and kNN, rapidfuzz for the exact scan) as a ratio.
//! The measuring lives in [`crate::bench`]; this module parses flags and prints.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::bench::join::{exact_join, measure_join};
use crate::bench::knn::{KnnGrid, KnnThroughput, flops_per_pair, knn_grid};
use crate::bench::peer::run_json_lines;
use crate::bench::query::{
    CandidateRow, RULE_GRID, RULE_QUERIES, RULE_RECALL_AT_1, candidate_sweep, exact_scan,
    rapidfuzz_peer, rule_candidates, sample_queries, smallest_reaching,
};
use crate::bench::train::{TrainThroughput, train_profile, train_throughput};
use crate::bench::{
    Throughput, describe_embed_strings, embed_profile, embed_strings, embed_throughput,
};
use crate::embed::Embedder;
use crate::gpu::Gpu;
use crate::input::{LineReader, NonAscii};
use crate::model::Architecture;
use crate::search::index::{Index, short_fingerprint};
use crate::search::join::{Copies, JoinOptions};
use crate::search::query::{MAX_GPU_CANDIDATES, Searcher};
use crate::train::trainer::StepOverlap;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Strings per second of the forward pass for several batch sizes.
    Embed(EmbedArgs),
    /// Queries per second of the GPU kNN kernel on random vectors (d = 80).
    Knn(KnnArgs),
    /// Training pairs per second (full step: forward, loss, backward, AdamW), the time
    /// the GPU waits for data, and the data generator's own rate.
    Train(TrainArgs),
    /// End-to-end fuzzy search on real misspellings: queries/s and recall against an
    /// exhaustive exact scan, for several candidate counts.
    Query(QueryArgs),
    /// `join` within one index against an exact join: recall and time for each setting.
    Join(JoinArgs),
}

#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    /// Index made by `megashtein-gpu embed`, joined with itself.
    #[arg(long)]
    pub index: PathBuf,
    /// Distances to join at.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    pub max_distance: Vec<u32>,
    /// Candidate counts to measure.
    #[arg(long, short = 'C', value_delimiter = ',', default_value = "100")]
    pub candidates: Vec<usize>,
    /// Blowups to measure (`inf` for no estimate filter).
    #[arg(long, value_delimiter = ',', default_value = "3")]
    pub blowup: Vec<f32>,
    /// One JSON object per case instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    /// Model weights (safetensors); the built-in default model when omitted.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,4096,65536")]
    pub batch_sizes: Vec<usize>,
    /// Time budget per batch size, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Embed the lines of this file instead of random strings (ASCII, or any UTF-8 for a
    /// CNN-ED model, whose cost follows each string's length): each batch takes the
    /// next lines in order, wrapping around. Not with --torch, whose peer draws its own.
    #[arg(long, short, conflicts_with = "torch")]
    pub input: Option<PathBuf>,
    /// What to do with --input lines holding non-ASCII characters.
    #[arg(long, value_enum, default_value_t = NonAscii::Error, requires = "input")]
    pub non_ascii: NonAscii,
    #[command(flatten)]
    pub peer: TorchPeer,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// How a throughput benchmark reports.
#[derive(clap::Args, Debug)]
pub struct Report {
    /// One JSON object per case instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also time each kernel alone (fastest of 5 runs) at the largest size.
    #[arg(long)]
    pub profile: bool,
}

/// The PyTorch peer of a benchmark (`tools/bench_*torch.py`), run beside ours.
#[derive(clap::Args, Debug)]
pub struct TorchPeer {
    /// Python with torch: also run this benchmark's PyTorch peer (tools/bench_torch.py,
    /// bench_knn_torch.py or bench_train_torch.py) with it and print the ratio.
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<PathBuf>,
    /// Device for the PyTorch peer.
    #[arg(long, default_value = "cpu")]
    pub torch_device: String,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Pairs per step to measure.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    pub pairs: Vec<usize>,
    /// Time budget per size, in seconds.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Prepare step t + 1 while the device runs step t (auto: on GPUs, not on CPU
    /// adapters).
    #[arg(long, value_enum, default_value_t = StepOverlap::Auto)]
    pub step_overlap: StepOverlap,
    #[command(flatten)]
    pub peer: TorchPeer,
    #[command(flatten)]
    pub report: Report,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

#[derive(clap::Args, Debug)]
pub struct KnnArgs {
    /// Database sizes (rows of 80 random values).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub rows: Vec<usize>,
    /// Neighbours per query.
    #[arg(short, long, value_delimiter = ',', default_value = "10,100")]
    pub k: Vec<usize>,
    /// Database storage: f32 and/or f16.
    #[arg(long, value_delimiter = ',', default_value = "f32,f16")]
    pub precision: Vec<crate::search::index::Precision>,
    /// Queries per search call (one timed step).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Time budget per case, in seconds (at least one timed batch).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    #[command(flatten)]
    pub peer: TorchPeer,
    /// One JSON object per case instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// Index made by `megashtein-gpu embed` (the base searched).
    #[arg(long)]
    pub index: PathBuf,
    /// Lines `misspelling<TAB>correct`; the misspellings are the queries.
    #[arg(long)]
    pub pairs: PathBuf,
    /// Queries sampled from the pairs (distinct, readable by the model: ASCII, or any
    /// UTF-8 for a CNN-ED model; not strings of the index).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Seed of the sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Candidate counts C to measure (at most 1,024, the GPU search's limit).
    #[arg(
        long,
        short = 'C',
        value_delimiter = ',',
        default_value = "10,20,50,100,200,500,1024"
    )]
    pub candidates: Vec<usize>,
    /// Hits per query (recall@k).
    #[arg(short, default_value_t = 10)]
    pub k: usize,
    /// Model file; must be the one that made the index (checked by fingerprint).
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// A second index of the same strings by another model: candidates from both, as
    /// `query --also`.
    #[arg(long, value_name = "INDEX")]
    pub also: Option<PathBuf>,
    /// Python with rapidfuzz: also time tools/bench_rapidfuzz.py (process.cdist) on the
    /// same queries and strings and print the ratio.
    #[arg(long, value_name = "PYTHON")]
    pub python: Option<PathBuf>,
    /// Write the index's model, with the default C measured here recorded in it (the
    /// smallest C of the rule's grid with recall@1 >= 0.99, else 1,024; -C must hold the
    /// grid, and at least 1,000 queries), to this model file: `query` on indexes made
    /// with it then uses that C by default.
    #[arg(long, value_name = "MODEL", conflicts_with = "also")]
    pub record_default: Option<PathBuf>,
    /// One JSON object with everything instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

pub fn run(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Embed(args) => bench_embed(args),
        Command::Knn(args) => bench_knn(args),
        Command::Train(args) => bench_train(args),
        Command::Query(args) => bench_query(args),
        Command::Join(args) => bench_join(args),
    }
}

fn bench_train(args: &TrainArgs) -> Result<()> {
    if args.pairs.contains(&0) || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--pairs must be at least 1 and --seconds positive");
    }
    let gpu = args.gpu.open()?;
    let ops = crate::ops::Ops::new(&gpu);
    let json = args.report.json;
    if !json {
        println!("device: {}", gpu.describe());
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let ours: Vec<TrainThroughput> = args
        .pairs
        .iter()
        .map(|&p| train_throughput(&gpu, &ops, p, budget, args.step_overlap))
        .collect::<Result<_>>()?;
    let largest = args.pairs.iter().copied().max().unwrap_or(1);
    let profile = match args.report.profile {
        true => Some(train_profile(&gpu, &ops, largest)?),
        false => None,
    };
    let peer = sized_peer(
        &args.peer,
        "bench_train_torch.py",
        ("--pairs", "pairs", "pairs_per_s"),
        &args.pairs,
        args.seconds,
        json,
    )?;
    if json {
        return print_all_json(&gpu, &ours, &peer);
    }
    println!(
        "{:>6} {:>13} {:>13} {:>7} {:>10} {:>16}",
        "pairs", "ours pairs/s", "torch pairs/s", "ratio", "data wait", "generator pairs/s"
    );
    for t in &ours {
        let (rate, ratio) = peer_columns(t.pairs_per_s, peer_rate(&peer, t.pairs));
        println!(
            "{:>6} {:>13.0} {rate:>13} {ratio:>7} {:>9.1}% {:>16.0}",
            t.pairs,
            t.pairs_per_s,
            100.0 * t.data_wait_fraction,
            t.generator_pairs_per_s
        );
    }
    if let Some(times) = profile {
        print_profile(&format!("one step of {largest} pairs"), &times);
    }
    Ok(())
}

/// The lines of `path` as `model` reads them (ASCII under `non_ascii`, or any UTF-8 for
/// a model that reads any alphabet); an error when there are none.
fn read_bench_lines(
    path: &Path,
    model: &crate::model::Model,
    non_ascii: NonAscii,
) -> Result<Vec<Vec<u8>>> {
    let rule = non_ascii.for_model(model)?;
    let (lines, _) = LineReader::open(path, rule)?.read_all()?;
    if lines.is_empty() {
        bail!("{}: no lines to embed", path.display());
    }
    Ok(lines.into_iter().map(|line| line.text).collect())
}

fn bench_embed(args: &EmbedArgs) -> Result<()> {
    if args.batch_sizes.contains(&0) || args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("batch sizes must be at least 1 and --seconds positive");
    }
    let model = crate::search::index::open_model(args.model.as_deref())?;
    if args.peer.torch.is_some() && !matches!(model.architecture(), Architecture::Megashtein(_)) {
        bail!(
            "--torch: tools/bench_torch.py runs the megashtein network, not {}'s {} model",
            model.source(),
            model.arch_name()
        );
    }
    let gpu = args.gpu.open()?;
    let largest = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let mut embedder = Embedder::with_batch(&gpu, &model, largest)?;
    let json = args.report.json;
    if !json {
        println!("device: {}", gpu.describe());
        println!(
            "model: {} ({}), GPU batch capacity {}",
            model.source(),
            short_fingerprint(model.fingerprint()),
            embedder.batch()
        );
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let lines = match &args.input {
        Some(path) => Some(read_bench_lines(path, &model, args.non_ascii)?),
        None => None,
    };
    let strings = |batch: usize| match &lines {
        Some(lines) => lines.iter().cycle().take(batch).cloned().collect(),
        None => embed_strings(&model, batch, batch as u64),
    };
    let ours: Vec<Throughput> = args
        .batch_sizes
        .iter()
        .map(|&b| embed_throughput(&mut embedder, &strings(b), budget))
        .collect::<Result<_>>()?;
    if !json {
        let mean_chars = ours.last().map_or(0.0, |t| t.chars_per_string);
        let described = match (&args.input, &lines) {
            (Some(path), Some(lines)) => format!(
                "the {} lines of {} in order ({mean_chars:.1} characters on average at the \
                 largest batch)",
                lines.len(),
                path.display()
            ),
            _ => describe_embed_strings(&model, mean_chars),
        };
        println!("strings: {described}");
    }
    let profile = match args.report.profile {
        true => Some((
            largest.min(embedder.batch()),
            embed_profile(&mut embedder, &strings(largest))?,
        )),
        false => None,
    };
    drop(embedder);
    let peer = sized_peer(
        &args.peer,
        "bench_torch.py",
        ("--batch-sizes", "batch", "strings_per_s"),
        &args.batch_sizes,
        args.seconds,
        json,
    )?;
    if json {
        return print_all_json(&gpu, &ours, &peer);
    }
    println!(
        "{:>8} {:>16} {:>16} {:>8}",
        "batch", "ours str/s", "torch str/s", "ratio"
    );
    for t in &ours {
        let (rate, ratio) = peer_columns(t.strings_per_s, peer_rate(&peer, t.batch));
        println!(
            "{:>8} {:>16.0} {rate:>16} {ratio:>8}",
            t.batch, t.strings_per_s
        );
    }
    if let Some((batch, times)) = profile {
        print_profile(&format!("the forward pass of {batch} strings"), &times);
    }
    Ok(())
}

/// Where a JSON result was measured: device, backend and commit (CONTRACTS.md).
fn provenance(gpu: &Gpu) -> serde_json::Value {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map_or("unknown".to_string(), |out| {
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        });
    serde_json::json!({
        "device": gpu.info.name,
        "backend": format!("{:?}", gpu.info.backend),
        "commit": commit,
    })
}

/// One `{"impl": ..., "result": {...}}` line: `result`'s fields and `source`'s.
fn print_json(
    which: &str,
    result: &impl serde::Serialize,
    source: &serde_json::Value,
) -> Result<()> {
    let mut value = serde_json::to_value(result)?;
    if let (Some(fields), Some(extra)) = (value.as_object_mut(), source.as_object()) {
        fields.extend(extra.clone());
    }
    println!("{}", serde_json::json!({ "impl": which, "result": value }));
    Ok(())
}

/// Our results, then the peer's, one JSON line each.
fn print_all_json(
    gpu: &Gpu,
    ours: &[impl serde::Serialize],
    peer: &Option<PeerRows>,
) -> Result<()> {
    let source = provenance(gpu);
    for result in ours {
        print_json("ours", result, &source)?;
    }
    for v in peer.iter().flat_map(|(_, rows)| &rows.1) {
        println!("{}", serde_json::json!({ "impl": "torch", "result": v }));
    }
    Ok(())
}

/// A per-kernel profile, slowest first, with each kernel's share.
fn print_profile(what: &str, times: &[(&str, f64)]) {
    let total: f64 = times.iter().map(|(_, s)| s).sum();
    println!(
        "kernels of {what}, each alone (fastest of 5), {:.1} ms in all:",
        total * 1e3
    );
    let mut sorted = times.to_vec();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (label, seconds) in sorted {
        println!(
            "  {label:<32} {:>9.2} ms {:>5.1}%",
            seconds * 1e3,
            100.0 * seconds / total
        );
    }
}

/// The peer's rate and ours/theirs, or dashes.
fn peer_columns(ours: f64, theirs: Option<f64>) -> (String, String) {
    match theirs {
        Some(rate) if rate > 0.0 => (rate_text(rate), ratio_text(ours / rate)),
        _ => ("-".to_string(), "-".to_string()),
    }
}

/// A rate with at least 3 significant digits for small values, whole units otherwise.
fn rate_text(x: f64) -> String {
    match x {
        x if x < 10.0 => format!("{x:.2}"),
        x if x < 100.0 => format!("{x:.1}"),
        x => format!("{x:.0}"),
    }
}

/// A ratio with 2 decimals, or 2 significant digits below 0.1.
fn ratio_text(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.2e}")
    } else {
        format!("{x:.2}")
    }
}

/// A PyTorch peer's description, (size, rate) rows, and its JSON lines as printed.
type PeerRows = (String, (Vec<(usize, f64)>, Vec<serde_json::Value>));

/// With `--torch`, run `tools/SCRIPT` with `SIZE_FLAG sizes --seconds --device` and read
/// its (`size_key`, `rate_key`) rows; prints which peer ran (or how to run one).
fn sized_peer(
    peer: &TorchPeer,
    script: &str,
    (size_flag, size_key, rate_key): (&str, &str, &str),
    sizes: &[usize],
    seconds: f64,
    quiet: bool,
) -> Result<Option<PeerRows>> {
    let Some(python) = &peer.torch else {
        if !quiet {
            println!("peer: none (pass --torch PYTHON to run tools/{script} beside it)");
        }
        return Ok(None);
    };
    let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
    let values = run_json_lines(
        python,
        script,
        [
            size_flag,
            &sizes.join(","),
            "--seconds",
            &seconds.to_string(),
            "--device",
            &peer.torch_device,
        ],
    )?;
    let mut rows = Vec::new();
    let mut name = String::new();
    for v in &values {
        let (Some(size), Some(rate)) = (v[size_key].as_u64(), v[rate_key].as_f64()) else {
            bail!("unexpected output from tools/{script}: {v}");
        };
        name = torch_name(v);
        rows.push((size as usize, rate));
    }
    if !quiet {
        println!("peer: {name}");
    }
    Ok(Some((name, (rows, values))))
}

/// The peer's rate for `size`, if it measured one.
fn peer_rate(peer: &Option<PeerRows>, size: usize) -> Option<f64> {
    peer.as_ref()
        .and_then(|(_, (rows, _))| rows.iter().find(|(s, _)| *s == size).map(|&(_, r)| r))
}

fn torch_name(v: &serde_json::Value) -> String {
    format!(
        "PyTorch {} on {}, {} threads",
        v["torch"].as_str().unwrap_or("?"),
        v["device"].as_str().unwrap_or("?"),
        v["threads"]
    )
}

fn bench_knn(args: &KnnArgs) -> Result<()> {
    if args.rows.contains(&0) || args.k.contains(&0) || args.batch == 0 {
        bail!("--rows, -k and --batch must be at least 1");
    }
    if args.seconds.is_nan() || args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    if let Some(&k) = args.k.iter().find(|&&k| k > crate::ops::knn::MAX_K) {
        bail!(
            "-k {k} is above the kernel's limit of {}",
            crate::ops::knn::MAX_K
        );
    }
    let gpu = args.gpu.open()?;
    let grid = KnnGrid {
        rows: args.rows.clone(),
        ks: args.k.clone(),
        precisions: args
            .precision
            .iter()
            .map(|&p| p == crate::search::index::Precision::F16)
            .collect(),
        batch: args.batch,
        budget: Duration::from_secs_f64(args.seconds),
    };
    if !args.json {
        println!("device: {}", gpu.describe());
        println!(
            "dim {}, {} queries per search call (upload + kernel + readback timed, database \
             upload not), {} flops per query-row pair",
            crate::bench::knn::DIM,
            args.batch,
            flops_per_pair(crate::bench::knn::DIM)
        );
        eprintln!("measuring ours...");
    }
    let source = provenance(&gpu);
    let ours = knn_grid(&gpu, &grid, |row| {
        if args.json {
            // A row serializes; nothing here can fail.
            print_json("ours", row, &source).expect("a knn row serializes");
        } else {
            eprintln!(
                "  rows {} {} k {}: {:.0} queries/s",
                row.rows, row.precision, row.k, row.queries_per_s
            );
        }
    })?;
    let peer = match &args.peer.torch {
        Some(python) => {
            if !args.json {
                eprintln!("measuring the PyTorch peer...");
            }
            Some(torch_knn_peer(python, args)?)
        }
        None => None,
    };
    if args.json {
        for v in peer.iter().flatten() {
            println!("{}", serde_json::json!({ "impl": "torch", "result": v }));
        }
        return Ok(());
    }
    match peer.as_ref().and_then(|p| p.first()) {
        Some(v) => println!("peer: {} (q @ db.T + norms + torch.topk)", torch_name(v)),
        None => {
            println!("peer: none (pass --torch PYTHON to run tools/bench_knn_torch.py beside it)")
        }
    }
    println!(
        "{:>9} {:>5} {:>5} {:>12} {:>9} {:>12} {:>9} {:>8}",
        "rows", "prec", "k", "ours q/s", "GFLOP/s", "torch q/s", "GFLOP/s", "ratio"
    );
    for row in &ours {
        let theirs = peer.iter().flatten().find(|v| same_case(v, row));
        let rate = theirs.and_then(|v| v["queries_per_s"].as_f64());
        let (rate_s, ratio) = peer_columns(row.queries_per_s, rate);
        let gflops = theirs
            .and_then(|v| v["gflops"].as_f64())
            .map_or("-".to_string(), |g| format!("{g:.2}"));
        let rate_s = match theirs.and_then(|v| v["error"].as_str()) {
            Some(_) => "error".to_string(),
            None => rate_s,
        };
        println!(
            "{:>9} {:>5} {:>5} {:>12} {:>9.2} {rate_s:>12} {gflops:>9} {ratio:>8}",
            row.rows,
            row.precision,
            row.k,
            rate_text(row.queries_per_s),
            row.gflops
        );
    }
    for v in peer.iter().flatten() {
        if let Some(e) = v["error"].as_str() {
            println!(
                "torch failed for rows {} {} k {}: {e}",
                v["rows"], v["precision"], v["k"]
            );
        }
    }
    Ok(())
}

fn same_case(v: &serde_json::Value, row: &KnnThroughput) -> bool {
    v["rows"].as_u64() == Some(row.rows as u64)
        && v["k"].as_u64() == Some(row.k as u64)
        && v["precision"].as_str() == Some(row.precision)
}

fn torch_knn_peer(python: &Path, args: &KnnArgs) -> Result<Vec<serde_json::Value>> {
    let list = |v: &[usize]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let precisions: Vec<&str> = args.precision.iter().map(|p| p.name()).collect();
    run_json_lines(
        python,
        "bench_knn_torch.py",
        [
            "--rows",
            &list(&args.rows).join(","),
            "--k",
            &list(&args.k).join(","),
            "--precision",
            &precisions.join(","),
            "--batch",
            &args.batch.to_string(),
            "--seconds",
            &args.seconds.to_string(),
            "--device",
            &args.peer.torch_device,
        ],
    )
}

fn bench_query(args: &QueryArgs) -> Result<()> {
    if args.queries == 0 || args.k == 0 || args.candidates.is_empty() {
        bail!("--queries, -k and --candidates must be at least 1");
    }
    if let Some(path) = &args.record_default {
        if let Some(c) = RULE_GRID.iter().find(|c| !args.candidates.contains(c)) {
            bail!(
                "--record-default needs the rule's whole grid of C measured ({RULE_GRID:?}); \
                 -C lacks {c}"
            );
        }
        // A path that cannot be written fails now, not after the measurement.
        crate::io::TempFile::create(path)?;
    }
    let index = Index::open(&args.index)?;
    if index.is_empty() {
        bail!("index {} is empty", args.index.display());
    }
    let model = index.load_model(args.model.as_deref())?;
    let gpu = args.gpu.open()?;
    let unicode = model.reads_unicode();
    let sample = sample_queries(&args.pairs, &index, args.queries, args.seed, unicode)?;
    if sample.queries.is_empty() {
        bail!("no usable queries in {}", args.pairs.display());
    }
    if args.record_default.is_some() && sample.queries.len() < RULE_QUERIES {
        bail!(
            "--record-default needs at least {RULE_QUERIES} queries (the default-C rule); {} \
             has {} usable ones{}",
            args.pairs.display(),
            sample.eligible,
            if args.queries < RULE_QUERIES {
                format!(" and --queries is {}", args.queries)
            } else {
                String::new()
            }
        );
    }
    let queries: Vec<&[u8]> = sample.queries.iter().map(Vec::as_slice).collect();
    let choices: Vec<&[u8]> = (0..index.len()).map(|i| index.string(i)).collect();
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    say(format!(
        "{} queries sampled (seed {}) from {} eligible misspellings of {} ({} {} and {} \
         already in the index left out); exact scan of {} strings...",
        queries.len(),
        args.seed,
        sample.eligible,
        args.pairs.display(),
        sample.skipped_non_ascii,
        if unicode {
            "invalid UTF-8"
        } else {
            "non-ASCII"
        },
        sample.skipped_in_index,
        choices.len()
    ));
    let exact = exact_scan(&choices, &queries, args.k);
    say(format!(
        "  exact scan: {:.0} queries/s; measuring C = {:?}...",
        exact.queries_per_s, args.candidates
    ));
    let also = super::open_also(args.also.as_deref())?;
    let mut searcher = Searcher::new(&gpu, &index, &model)?;
    if let Some((also, model)) = &also {
        searcher = searcher.also(also, model)?;
    }
    let rows = candidate_sweep(
        searcher,
        &index,
        &queries,
        &exact,
        &args.candidates,
        |row: &CandidateRow| {
            say(format!(
                "  C {}: {:.0} queries/s, recall@1 {:.3}",
                row.candidates, row.queries_per_s, row.recall_at_1
            ))
        },
    )?;
    let recorded = match &args.record_default {
        Some(path) => {
            let candidates = rule_candidates(&rows);
            model.with_default_candidates(candidates)?.save(path)?;
            say(format!(
                "recorded C = {candidates} as the default of the model written to {}; indexes \
                 made with it (`embed --model {0}`) use it",
                path.display()
            ));
            Some(
                serde_json::json!({ "model": path.display().to_string(), "candidates": candidates }),
            )
        }
        None => None,
    };
    let peer = match &args.python {
        Some(python) => {
            say("running tools/bench_rapidfuzz.py...".to_string());
            Some(rapidfuzz_peer(python, &choices, &queries, &exact)?)
        }
        None => None,
    };
    if args.json {
        let report = serde_json::json!({
            "device": gpu.describe(),
            "index": args.index.display().to_string(),
            "also": args.also.as_ref().map(|p| p.display().to_string()),
            "rows": index.len(),
            "precision": index.precision().name(),
            "model": model.source(),
            "fingerprint": index.fingerprint(),
            "pairs": args.pairs.display().to_string(),
            "queries": queries.len(),
            "sample": sample,
            "k": exact.k,
            "exact_scan": exact,
            "candidates": rows,
            "rapidfuzz": peer,
            "model_default_candidates": model.default_candidates(),
            "recorded_default": recorded,
        });
        println!("{report}");
        return Ok(());
    }
    println!("device: {}", gpu.describe());
    println!(
        "index: {} ({} strings, {}; {}, fingerprint {}); queries: {} misspellings from {} (seed {})",
        args.index.display(),
        index.len(),
        index.precision(),
        model.source(),
        short_fingerprint(index.fingerprint()),
        queries.len(),
        args.pairs.display(),
        args.seed
    );
    if let Some(path) = &args.also {
        println!("also: candidates from {} (C / 2 from each)", path.display());
    }
    println!(
        "exact scan (rapidfuzz crate, {} threads): {:.3} s, {:.0} queries/s, {:.3e} pairs/s",
        exact.threads, exact.seconds, exact.queries_per_s, exact.pairs_per_s
    );
    if let Some(p) = &peer {
        println!(
            "peer: {}: {:.3} s, {:.0} queries/s, {:.3e} pairs/s{}",
            p.name,
            p.seconds,
            p.queries_per_s,
            p.pairs_per_s,
            if p.disagreements == 0 {
                ", same minima as our scan".to_string()
            } else {
                format!(", DIFFERENT minimum for {} queries", p.disagreements)
            }
        );
    }
    let k = exact.k;
    println!(
        "{:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "C",
        "queries/s",
        "total s",
        "embed s",
        "knn s",
        "rerank s",
        "recall@1",
        format!("recall@{k}"),
        "/exact",
        "/rapidfz"
    );
    for row in &rows {
        let vs_peer = peer.as_ref().map_or("-".to_string(), |p| {
            ratio_text(row.queries_per_s / p.queries_per_s)
        });
        println!(
            "{:>6} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9} {vs_peer:>9}",
            row.candidates,
            rate_text(row.queries_per_s),
            row.seconds,
            row.embed_seconds,
            row.knn_seconds,
            row.rerank_seconds,
            row.recall_at_1,
            row.recall_at_k,
            ratio_text(row.queries_per_s / exact.queries_per_s)
        );
    }
    match smallest_reaching(&rows) {
        Some(c) => println!(
            "smallest C measured with recall@1 >= {RULE_RECALL_AT_1} (the default-C rule): {c}"
        ),
        None => println!(
            "no C measured within the GPU search's limit ({MAX_GPU_CANDIDATES}) reaches \
             recall@1 >= {RULE_RECALL_AT_1}"
        ),
    }
    if let Some(c) = model.default_candidates() {
        println!("the index's model records C = {c} as its default");
    }
    Ok(())
}

fn bench_join(args: &JoinArgs) -> Result<()> {
    let index = Index::open(&args.index)?;
    let gpu = args.gpu.open()?;
    let source = provenance(&gpu);
    let all_pairs = index.len() as f64 * (index.len() as f64 - 1.0) / 2.0;
    if !args.json {
        println!("{} rows of {}", index.len(), args.index.display());
        println!(
            "{:>3} {:>6} {:>7} {:>9} {:>14} {:>9} {:>9} {:>8} {:>7}",
            "D", "C", "blowup", "seconds", "pairs/s N²/2", "found", "exact", "recall", "groups"
        );
    }
    for &d in &args.max_distance {
        let exact = exact_join(&index, d);
        if args.json {
            print_json("exact", &exact, &source)?;
        } else {
            println!(
                "{d:>3} {:>6} {:>7} {:>9.2} {:>14} {:>9} {:>9} {:>8} {:>7}  exact (rapidfuzz crate)",
                "-",
                "-",
                exact.seconds,
                rate_text(all_pairs / exact.seconds),
                exact.pair_count,
                exact.pair_count,
                "-",
                exact.groups
            );
        }
        for &candidates in &args.candidates {
            for &blowup in &args.blowup {
                let opts = JoinOptions {
                    max_distance: d,
                    candidates,
                    blowup,
                    threads: None,
                    copies: Copies::EveryPair,
                };
                let row = measure_join(&gpu, &index, &opts, &exact)?;
                if args.json {
                    print_json("ours", &row, &source)?;
                } else {
                    println!(
                        "{d:>3} {candidates:>6} {blowup:>7} {:>9.2} {:>14} {:>9} {:>9} {:>8.4} {:>7}",
                        row.seconds,
                        rate_text(row.all_pairs_per_s),
                        row.pairs,
                        exact.pair_count,
                        row.recall,
                        row.groups
                    );
                }
            }
        }
    }
    Ok(())
}
