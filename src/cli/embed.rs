//! `megashtein-gpu embed`: stream a corpus through the model into a .npy array.
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::{Gpu, GpuOptions};
use crate::input::{LineReader, NonAscii};
use crate::io::NpyWriter;
use crate::model::params::EMBED_DIM;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model weights (safetensors); the built-in default model when omitted.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Corpus, one string per line; `-` reads standard input.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Output file; `.npy` gets a float32 [N, 80] array in input order.
    #[arg(long, short)]
    pub output: PathBuf,
    /// What to do with lines holding non-ASCII characters.
    #[arg(long, value_enum, default_value_t = NonAscii::Error)]
    pub non_ascii: NonAscii,
    /// Strings per GPU batch (capped by the device's limits).
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    #[command(flatten)]
    pub gpu: GpuOptions,
}

pub fn run(args: &Args) -> Result<()> {
    if args.output.extension().is_none_or(|e| e != "npy") {
        bail!(
            "output {}: only .npy output is supported so far (a float32 [N, 80] array)",
            args.output.display()
        );
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let model = crate::model::load(args.model.as_deref())?;
    let mut reader = LineReader::open(&args.input, args.non_ascii)?;
    let total_bytes = std::fs::metadata(&args.input).ok().filter(|m| m.is_file()).map(|m| m.len());
    let gpu = Gpu::new(&args.gpu)?;
    let mut embedder = Embedder::new(&gpu, &model.weights, args.batch)?;
    let mut writer = NpyWriter::create(&args.output, EMBED_DIM)?;
    let progress = super::progress_bytes(total_bytes, "embedding");
    embedder.embed_stream(&mut reader, |lines, embeddings| {
        // Progress in input bytes: line lengths plus their line endings.
        progress.inc(lines.iter().map(|l| l.text.len() as u64 + 1).sum());
        progress.set_message(format!("{} strings", writer.rows() + lines.len() as u64));
        writer.write_rows(embeddings)
    })?;
    let rows = writer.finish()?;
    progress.finish_and_clear();
    for warning in reader.stats().warnings() {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "embedded {rows} strings with {} into {} ({} per batch on {})",
        model.source,
        args.output.display(),
        embedder.batch(),
        gpu.info.name
    );
    Ok(())
}
