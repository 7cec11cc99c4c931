//! `megashtein-gpu dedup`: near-duplicate groups of a corpus or an index, each line
//! written with its cluster id and the line number of its cluster's representative.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;

use super::count;
use super::join::SearchArgs;
use super::table::{OutputArgs, as_text};
use crate::edit_distance::char_len;
use crate::embed::Embedder;
use crate::gpu::Gpu;
use crate::input::{LineReader, NonAscii};
use crate::io::Tracked;
use crate::search::dedup::{Clusters, Keep, UnionFind};
use crate::search::index::{Index, IndexWriter, Precision};
use crate::search::join::{Copies, JoinOptions, join};

#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("source").required(true))]
#[command(group = clap::ArgGroup::new("threshold").required(true))]
pub struct Args {
    /// Corpus, one string per line (embedded into a temporary index first).
    #[arg(long, short, group = "source")]
    pub input: Option<PathBuf>,
    /// Index made by `megashtein-gpu embed`.
    #[arg(long, group = "source")]
    pub index: Option<PathBuf>,
    /// Strings within this exact edit distance are duplicates.
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "D",
        group = "threshold"
    )]
    pub max_distance: Option<u32>,
    /// Strings within distance R * (the longer length) are duplicates, 0 <= R < 1.
    #[arg(
        long,
        allow_negative_numbers = true,
        value_name = "R",
        group = "threshold"
    )]
    pub max_ratio: Option<f64>,
    /// Which member represents its cluster.
    #[arg(long, value_enum, default_value_t = Keep::First)]
    pub keep: Keep,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    /// With --input: the model to embed with (default: the built-in one; an index holds
    /// its own).
    #[arg(long, short, conflicts_with = "index")]
    pub model: Option<PathBuf>,
    /// With --input: what to do with lines holding non-ASCII characters.
    #[arg(long, value_enum, default_value_t = NonAscii::Error, conflicts_with = "index")]
    pub non_ascii: NonAscii,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// Columns of every output format: one record per accepted input line.
const COLUMNS: &[&str] = &["line", "cluster", "representative", "string"];

pub fn run(args: &Args) -> Result<()> {
    if let Some(r) = args.max_ratio
        && !(0.0..1.0).contains(&r)
    {
        bail!("--max-ratio must be at least 0 and below 1, not {r}");
    }
    let source = match (&args.index, &args.input) {
        (Some(index), _) => (index.as_path(), "index"),
        (None, input) => (input.as_deref().expect("clap requires a source"), "corpus"),
    };
    args.out.refuse_overwriting(&[source])?;
    let started = Instant::now();
    let gpu = args.gpu.open()?;
    let (index, _temporary) = open_source(args, &gpu)?;
    // The join's threshold: with --max-ratio, the largest distance any pair may have.
    let longest = (0..index.len()).map(|i| char_len(index.string(i))).max();
    let max_distance = match (args.max_distance, args.max_ratio) {
        (Some(d), _) => d,
        (None, Some(r)) => (r * longest.unwrap_or(0) as f64).floor() as u32,
        (None, None) => unreachable!("clap requires a threshold"),
    };
    // The groups need only pairs that connect each string's copies, not all of them.
    let opts = JoinOptions {
        copies: Copies::Connect,
        ..args.search.options(max_distance)
    };
    let progress = super::progress_rows(index.len() as u64, "grouping");
    let mut sets = UnionFind::new(index.len());
    // The join's pairs that pass --max-ratio too (all of them without it).
    let mut linking = 0u64;
    let stats = join(
        &gpu,
        &index,
        None,
        &opts,
        |done| progress.set_position(done as u64),
        |pairs| {
            for p in pairs {
                if within_ratio(&index, p.a, p.b, p.distance, args.max_ratio) {
                    linking += 1;
                    sets.union(p.a, p.b);
                }
            }
            Ok(())
        },
    )?;
    progress.finish_and_clear();
    let clusters = Clusters::new(&mut sets, &index, args.keep);
    args.out.write(COLUMNS, |table| {
        for (row, &cluster) in clusters.cluster.iter().enumerate() {
            let representative = clusters.representative[cluster];
            table.row(&[
                json!(index.line(row)),
                json!(cluster),
                json!(index.line(representative)),
                json!(as_text(index.string(row))),
            ])?;
        }
        Ok(())
    })?;
    let pairs = match args.max_ratio {
        Some(r) => format!(
            "{} within ratio {r} (of {} within distance {max_distance}, the most the ratio \
             allows for the longest line)",
            count(linking, "pair"),
            stats.pairs
        ),
        None => format!("{} within distance {max_distance}", count(linking, "pair")),
    };
    super::join::report(&pairs, &stats, &opts, started);
    summarize(&clusters);
    Ok(())
}

/// `--max-ratio`: distance <= R * max(len a, len b); without it every join pair counts.
fn within_ratio(index: &Index, a: usize, b: usize, distance: u32, ratio: Option<f64>) -> bool {
    ratio.is_none_or(|r| {
        let longer = char_len(index.string(a)).max(char_len(index.string(b)));
        f64::from(distance) <= r * longer as f64
    })
}

/// The index to group: `--index`, or `--input` embedded into a temporary index (removed
/// when the returned guard drops).
fn open_source(args: &Args, gpu: &Gpu) -> Result<(Index, Option<(Tracked, tempfile::TempDir)>)> {
    if let Some(path) = &args.index {
        return Ok((Index::open(path)?, None));
    }
    let input = args.input.as_deref().expect("clap requires a source");
    let model = crate::search::index::open_model(args.model.as_deref())?;
    let mut reader =
        LineReader::open(input, args.non_ascii.for_model(&model)?)?.cutting_at(model.reads_up_to());
    let dir = tempfile::tempdir()?;
    let tracked = Tracked::new(dir.path());
    let path = dir.path().join("dedup.idx");
    let mut writer = IndexWriter::for_model(&path, &model, Precision::F32)?;
    let total = std::fs::metadata(input).ok().filter(|m| m.is_file());
    let progress = super::progress_bytes(total.map(|m| m.len()), "embedding");
    let mut unseen = super::UnseenChars::default();
    Embedder::for_model(gpu, &model)?.embed_stream(&mut reader, |lines, embeddings| {
        unseen.record(&model, lines);
        progress.inc(lines.iter().map(|l| l.text.len() as u64 + 1).sum());
        writer.push(lines, embeddings)
    })?;
    progress.finish_and_clear();
    writer.finish()?;
    for warning in reader.stats().warnings() {
        eprintln!("warning: {warning}");
    }
    if let Some(warning) = unseen.warning("line") {
        eprintln!("{warning}");
    }
    Ok((Index::open(&path)?, Some((tracked, dir))))
}

/// Cluster counts and sizes on stderr.
fn summarize(clusters: &Clusters) {
    let sizes = clusters.sizes();
    let groups: Vec<usize> = sizes.iter().copied().filter(|&s| s > 1).collect();
    let largest = groups
        .iter()
        .max()
        .map_or(String::new(), |n| format!(", largest {n}"));
    eprintln!(
        "{} in {}: {} of near-duplicates ({}{largest}), {}",
        count(clusters.cluster.len(), "line"),
        count(sizes.len(), "cluster"),
        count(groups.len(), "group"),
        count(groups.iter().sum::<usize>(), "line"),
        count(sizes.len() - groups.len(), "singleton")
    );
}
