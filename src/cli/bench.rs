//! `megashtein-gpu bench`: throughput on the chosen adapter, optionally beside the same
//! model in PyTorch (`tools/bench_torch.py`) as a ratio.
use std::path::PathBuf;
use std::process::Command as Process;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bench::{Throughput, embed_throughput};
use crate::embed::Embedder;
use crate::gpu::{Gpu, GpuOptions};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Strings per second of the forward pass for several batch sizes.
    Embed(EmbedArgs),
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
    /// Python with torch: also run tools/bench_torch.py with it and print the ratio.
    #[arg(long, value_name = "PYTHON")]
    pub torch: Option<PathBuf>,
    /// Device for the PyTorch peer.
    #[arg(long, default_value = "cpu")]
    pub torch_device: String,
    #[command(flatten)]
    pub gpu: GpuOptions,
}

pub fn run(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Embed(args) => bench_embed(args),
    }
}

fn bench_embed(args: &EmbedArgs) -> Result<()> {
    if args.batch_sizes.contains(&0) || !(args.seconds > 0.0) {
        bail!("batch sizes must be at least 1 and --seconds positive");
    }
    let model = crate::model::load(args.model.as_deref())?;
    let gpu = Gpu::new(&args.gpu)?;
    let largest = args.batch_sizes.iter().copied().max().unwrap_or(1);
    let mut embedder = Embedder::new(&gpu, &model.weights, largest)?;
    println!("device: {}", gpu.describe());
    println!(
        "model: {} ({}), GPU batch capacity {}",
        model.source,
        &model.fingerprint[..12],
        embedder.batch()
    );
    let budget = Duration::from_secs_f64(args.seconds);
    let ours: Vec<Throughput> = args
        .batch_sizes
        .iter()
        .map(|&b| embed_throughput(&mut embedder, b, budget))
        .collect::<Result<_>>()?;
    let peer = match &args.torch {
        Some(python) => Some(torch_peer(python, args)?),
        None => None,
    };
    match &peer {
        Some((name, _)) => println!("peer: {name}"),
        None => println!("peer: none (pass --torch PYTHON to run tools/bench_torch.py beside it)"),
    }
    println!(
        "{:>8} {:>16} {:>16} {:>8}",
        "batch", "ours str/s", "torch str/s", "ratio"
    );
    for t in &ours {
        let theirs = peer.as_ref().and_then(|(_, rows)| {
            rows.iter()
                .find(|(b, _)| *b == t.batch)
                .map(|&(_, rate)| rate)
        });
        match theirs {
            Some(rate) => println!(
                "{:>8} {:>16.0} {:>16.0} {:>8.2}",
                t.batch,
                t.strings_per_s,
                rate,
                t.strings_per_s / rate
            ),
            None => println!(
                "{:>8} {:>16.0} {:>16} {:>8}",
                t.batch, t.strings_per_s, "-", "-"
            ),
        }
    }
    Ok(())
}

/// Run the PyTorch peer and return its description and (batch, strings/s) rows.
fn torch_peer(python: &PathBuf, args: &EmbedArgs) -> Result<(String, Vec<(usize, f64)>)> {
    let script = [
        "tools/bench_torch.py",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tools/bench_torch.py"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .context("cannot find tools/bench_torch.py (run from the repository root)")?;
    let sizes: Vec<String> = args.batch_sizes.iter().map(ToString::to_string).collect();
    let out = Process::new(python)
        .arg(&script)
        .args([
            "--batch-sizes",
            &sizes.join(","),
            "--seconds",
            &args.seconds.to_string(),
        ])
        .args(["--device", &args.torch_device])
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut rows = Vec::new();
    let mut name = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("unexpected output from {}: {line}", script.display()))?;
        let (Some(batch), Some(rate)) = (v["batch"].as_u64(), v["strings_per_s"].as_f64()) else {
            bail!("unexpected output from {}: {line}", script.display());
        };
        name = format!(
            "PyTorch {} on {}, {} threads",
            v["torch"], v["device"], v["threads"]
        );
        rows.push((batch as usize, rate));
    }
    Ok((name, rows))
}
