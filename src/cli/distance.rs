//! `megashtein-gpu distance`: the model's estimate beside the exact edit distance, for
//! two strings or a file of pairs.
use std::io::BufRead;
use std::path::PathBuf;

use crate::edit_distance::Exact;
use anyhow::{Result, bail};
use serde_json::json;

use super::table::{OutputArgs, as_text, f32_value};
use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::input::{NonAscii, check_query, open_input, source_name};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Two strings (or none, with --pairs).
    #[arg(num_args = 2, value_names = ["A", "B"], required_unless_present = "pairs")]
    pub strings: Vec<String>,
    /// File of pairs, two tab-separated columns per line (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "strings")]
    pub pairs: Option<PathBuf>,
    /// Model weights (safetensors); the built-in default model when omitted.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// What to do with strings holding non-ASCII characters (`skip` drops the pair).
    #[arg(long, value_enum, default_value_t = NonAscii::Error)]
    pub non_ascii: NonAscii,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// Columns of every output format: one record per pair, in input order.
const COLUMNS: &[&str] = &["a", "b", "distance", "estimate"];

pub fn run(args: &Args) -> Result<()> {
    let model = crate::search::index::open_model(args.model.as_deref())?;
    let mode = args.non_ascii.for_model(&model)?;
    if let Some(path) = &args.pairs {
        args.out.refuse_overwriting(&[(path, "pairs file")])?;
    }
    // Pairs stream from the file a batch at a time: memory does not grow with it.
    let pairs: Box<dyn Iterator<Item = Result<Option<Pair>>>> = match &args.pairs {
        Some(path) => Box::new(read_pairs(path, mode)?),
        None => {
            let check = |i: usize| {
                let label = format!("string {}", i + 1);
                check_query(args.strings[i].as_bytes(), &label, mode)
            };
            let pair = check(0).and_then(|a| Ok(a.zip(check(1)?)));
            Box::new(std::iter::once(pair))
        }
    };
    // Pairs dropped by --non-ascii skip: how many, and the first one's line.
    let (mut skipped, mut first_skipped) = (0u64, None);
    let mut pairs = pairs.enumerate().filter_map(|(i, pair)| {
        if let Ok(None) = pair {
            skipped += 1;
            first_skipped.get_or_insert(i + 1);
        }
        pair.transpose()
    });
    // Strings longer than the model reads: its estimate sees only their start.
    let reads_up_to = model.reads_up_to();
    let mut cut = 0u64;
    // Strings holding characters outside a CNN-ED model's alphabet (read as padding).
    let mut unseen = 0u64;
    let gpu = args.gpu.open()?;
    let mut embedder = Embedder::for_model(&gpu, &model)?;
    args.out.write(COLUMNS, |table| {
        loop {
            let chunk: Vec<Pair> = pairs
                .by_ref()
                .take(DEFAULT_BATCH / 2)
                .collect::<Result<_>>()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let estimates = embedder.estimates(&chunk)?;
            for ((a, b), estimate) in chunk.iter().zip(estimates) {
                let longer = |s: &[u8]| as_text(s).chars().nth(reads_up_to).is_some();
                cut += u64::from(longer(a)) + u64::from(longer(b));
                unseen +=
                    u64::from(model.reads_unseen_chars(a)) + u64::from(model.reads_unseen_chars(b));
                let exact = Exact::new(a).distance(b);
                table.row(&[
                    json!(as_text(a)),
                    json!(as_text(b)),
                    json!(exact),
                    f32_value(estimate),
                ])?;
            }
        }
    })?;
    drop(pairs);
    if skipped > 0 {
        let first_line = match (&args.pairs, first_skipped) {
            (Some(_), Some(line)) => format!(" (first: line {line})"),
            _ => String::new(),
        };
        eprintln!(
            "warning: {} contained non-ASCII characters and {} skipped{first_line}",
            super::count(skipped, "pair"),
            if skipped == 1 { "was" } else { "were" }
        );
    }
    if unseen > 0 {
        eprintln!(
            "warning: {} held characters outside the model's alphabet, read as padding",
            super::count(unseen, "string")
        );
    }
    if cut > 0 {
        eprintln!(
            "warning: {} {} longer than {reads_up_to} characters: the estimate reads the \
             first {reads_up_to}, the exact distance the whole string",
            super::count(cut, "string"),
            if cut == 1 { "was" } else { "were" }
        );
    }
    Ok(())
}

type Pair = (Vec<u8>, Vec<u8>);

/// The pairs of `path`, one per line: two tab-separated columns, ASCII (or any UTF-8
/// under [`NonAscii::Utf8`]); anything else is an error naming the file and line.
/// `None`: a pair skipped by `mode`.
fn read_pairs(
    path: &std::path::Path,
    mode: NonAscii,
) -> Result<impl Iterator<Item = Result<Option<Pair>>>> {
    let name = source_name(path);
    let lines = open_input(path)?.split(b'\n').enumerate();
    Ok(lines.map(move |(i, line)| {
        let mut line = line.map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let number = i + 1;
        let fields: Vec<&[u8]> = line.split(|&c| c == b'\t').collect();
        if fields.len() != 2 {
            bail!(
                "{name} line {number}: expected two tab-separated columns, found {}",
                fields.len()
            );
        }
        let check = |text: &[u8], column: usize| {
            let label = format!("{name} line {number} column {column}");
            check_query(text, &label, mode)
        };
        Ok(check(fields[0], 1)?.zip(check(fields[1], 2)?))
    }))
}
