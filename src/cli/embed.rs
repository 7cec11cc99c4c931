//! `megashtein-gpu embed`: stream a corpus through the model into a .npy array.
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::input::Line;
use crate::input::{LineReader, NonAscii};
use crate::io::{NpyWriter, write_npy_i64};
use crate::model::Metric;
use crate::search::index::{IndexWriter, Precision};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model weights (safetensors); the built-in default model when omitted.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Corpus, one string per line; `-` reads standard input.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Output file: `.npy` (any case) gets a float32 [N, dim] array in input order (dim: the model's
    /// width, 80 released; a CGK model's code bytes, one symbol each) and, when lines
    /// were skipped, `NAME.lines.npy`: each row's 1-based source line, int64; any other
    /// name gets a search index for `megashtein-gpu query`. Both are binary files,
    /// written atomically (a temporary file renamed into place): not `-`, nor a device.
    #[arg(long, short)]
    pub output: PathBuf,
    /// How the index stores embeddings (f16 halves its size) [default: f32]; refused for
    /// .npy output (always float32) and for a CGK model, whose codes are stored as bytes.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    /// What to do with lines holding non-ASCII characters.
    #[arg(long, value_enum, default_value_t = NonAscii::Error)]
    pub non_ascii: NonAscii,
    /// Strings per GPU batch (capped by the device's limits).
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// Where embeddings go: a .npy array or an index.
enum Sink {
    Npy(NpyWriter),
    Index(Box<IndexWriter>),
}

impl Sink {
    fn push(&mut self, lines: &[Line], embeddings: &[f32]) -> Result<()> {
        match self {
            Sink::Npy(w) => w.write_rows(embeddings),
            Sink::Index(w) => w.push(lines, embeddings),
        }
    }

    fn finish(self) -> Result<u64> {
        match self {
            Sink::Npy(w) => w.finish(),
            Sink::Index(w) => w.finish(),
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if args.output.as_os_str() == "-" {
        bail!(
            "--output - (standard output) is not supported: an index or .npy file is written \
             to a named file, atomically; give a file name"
        );
    }
    crate::io::refuse_overwriting_input(&args.output, &args.input, "corpus")?;
    let npy = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if let (Some(precision), true) = (args.precision, npy) {
        bail!("--precision {precision} applies to an index; a .npy array is always float32");
    }
    let model = crate::search::index::open_model(args.model.as_deref())?;
    if let (Some(precision), Metric::Hamming) = (args.precision, model.estimator().metric) {
        bail!(
            "--precision {precision} does not apply to {} ({}), whose index stores codes as \
             bytes",
            model.source(),
            model.arch_name()
        );
    }
    let mut reader = LineReader::open(&args.input, args.non_ascii.for_model(&model)?)?
        .cutting_at(model.reads_up_to());
    let total_bytes = std::fs::metadata(&args.input)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let mut sink = if npy {
        Sink::Npy(NpyWriter::create(&args.output, model.dim())?)
    } else {
        // The index carries its model, so `query` needs no --model.
        let precision = args.precision.unwrap_or(Precision::F32);
        let writer = IndexWriter::for_model(&args.output, &model, precision)?;
        Sink::Index(Box::new(writer))
    };
    // The index's own: codes for CGK.
    let index_precision = match &sink {
        Sink::Index(writer) => Some(writer.precision()),
        Sink::Npy(_) => None,
    };
    let gpu = args.gpu.open()?;
    let mut embedder = Embedder::with_batch(&gpu, &model, args.batch)?;
    let progress = super::progress_bytes(total_bytes, "embedding");
    let mut rows = 0u64;
    let mut line_numbers: Vec<i64> = Vec::new();
    let mut unseen = super::UnseenChars::default();
    embedder.embed_stream(&mut reader, |lines, embeddings| {
        unseen.record(&model, lines);
        if npy {
            line_numbers.extend(lines.iter().map(|l| l.number as i64));
        }
        // Progress in input bytes: line lengths plus their line endings.
        progress.inc(lines.iter().map(|l| l.text.len() as u64 + 1).sum());
        rows += lines.len() as u64;
        progress.set_message(format!("{rows} strings"));
        sink.push(lines, embeddings)
    })?;
    let rows = sink.finish()?;
    progress.finish_and_clear();
    if npy {
        write_line_numbers(&args.output, &line_numbers, reader.stats().skipped > 0)?;
    }
    for warning in reader.stats().warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(warning) = unseen.warning("line") {
        eprintln!("{warning}");
    }
    let what = match index_precision {
        Some(precision) => format!("index ({precision})"),
        None => "array".to_string(),
    };
    eprintln!(
        "embedded {} with {} into {what} {} ({} per batch on {})",
        super::count(rows, "string"),
        model.source(),
        args.output.display(),
        embedder.batch(),
        gpu.info.name
    );
    Ok(())
}

/// `X.lines.npy` beside `X.npy`: the row-to-line map, written when lines were skipped
/// (otherwise row i is line i + 1, and a stale map from an earlier run is removed).
fn write_line_numbers(npy: &Path, lines: &[i64], skipped: bool) -> Result<()> {
    let path = npy.with_extension("lines.npy");
    if skipped {
        write_npy_i64(&path, lines)?;
        eprintln!(
            "lines were skipped: row i of {} is source line lines[i] of {}",
            npy.display(),
            path.display()
        );
    } else if path.exists() {
        std::fs::remove_file(&path)
            .map_err(|e| anyhow!("cannot remove stale {}: {e}", path.display()))?;
    }
    Ok(())
}
