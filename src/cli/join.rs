//! `megashtein-gpu join`: every pair of strings within an exact edit distance, within
//! one index or between two.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::table::{OutputArgs, Table, as_text, f32_value};
use crate::search::index::Index;
use crate::search::join::{
    Copies, DEFAULT_BLOWUP, DEFAULT_CANDIDATES, JoinOptions, JoinStats, Pair, join,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Index made by `megashtein-gpu embed`; joined with itself unless --with is given.
    #[arg(long)]
    pub index: PathBuf,
    /// A second index (same model): pairs with one string from each.
    #[arg(long, value_name = "INDEX")]
    pub with: Option<PathBuf>,
    /// Pairs whose exact Levenshtein distance is at most D.
    #[arg(long, allow_negative_numbers = true, value_name = "D")]
    pub max_distance: u32,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// How candidates are found and checked; shared with `dedup`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Nearest rows by embedding taken per row for the exact check.
    #[arg(long, short = 'C', default_value_t = DEFAULT_CANDIDATES)]
    pub candidates: usize,
    /// Candidates whose estimate is <= blowup * D are checked (`inf` for all); a CNN-ED
    /// line's intercept is left out of that comparison.
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_BLOWUP)]
    pub blowup: f32,
    /// CPU threads for the exact check (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl SearchArgs {
    pub fn options(&self, max_distance: u32) -> JoinOptions {
        JoinOptions {
            max_distance,
            candidates: self.candidates,
            blowup: self.blowup,
            threads: self.threads,
            copies: Copies::EveryPair,
        }
    }
}

/// Columns of every output format.
const COLUMNS: &[&str] = &[
    "a_id", "a_line", "a_string", "b_id", "b_line", "b_string", "distance", "estimate",
];

pub fn run(args: &Args) -> Result<()> {
    let opts = args.search.options(args.max_distance);
    crate::search::join::check_options(&opts)?;
    let inputs = std::iter::once(&args.index).chain(&args.with);
    args.out
        .refuse_overwriting(&inputs.map(|p| (p.as_path(), "index")).collect::<Vec<_>>())?;
    let started = Instant::now();
    let left = Index::open(&args.index)?;
    let right = args.with.as_deref().map(Index::open).transpose()?;
    let right_index = right.as_ref().unwrap_or(&left);
    let gpu = args.gpu.open()?;
    let progress = super::progress_rows(left.len() as u64, "joining");
    // None when the reader closed the pipe (`| head`) before the join finished: then
    // there are no whole figures to report.
    let mut stats = None;
    args.out.write(COLUMNS, |table| {
        stats = Some(join(
            &gpu,
            &left,
            right.as_ref(),
            &opts,
            |done| progress.set_position(done as u64),
            |pairs| write_pairs(table, &left, right_index, pairs),
        )?);
        Ok(())
    })?;
    progress.finish_and_clear();
    if let Some(stats) = stats {
        let mut pairs = format!(
            "{} within distance {}",
            super::count(stats.pairs, "pair"),
            opts.max_distance
        );
        if let (Some(right), Some(path)) = (&right, &args.with) {
            let rows = super::count(right.len(), "row");
            pairs.push_str(&format!(" of the {rows} of {}", path.display()));
        }
        report(&pairs, &stats, &opts, started);
    }
    Ok(())
}

fn write_pairs(
    table: &mut Table<impl std::io::Write>,
    left: &Index,
    right: &Index,
    pairs: &[Pair],
) -> Result<()> {
    for p in pairs {
        table.row(&[
            json!(p.a),
            json!(left.line(p.a)),
            json!(as_text(left.string(p.a))),
            json!(p.b),
            json!(right.line(p.b)),
            json!(as_text(right.string(p.b))),
            json!(p.distance),
            f32_value(p.estimate),
        ])?;
    }
    Ok(())
}

/// The summary on stderr, opening with `pairs` (what was found), with the capped-rows
/// warning.
pub fn report(pairs: &str, stats: &JoinStats, opts: &JoinOptions, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{pairs} among {} ({} checked) in {seconds:.2} s",
        super::count(stats.rows, "row"),
        super::count(stats.verified, "candidate")
    );
    if stats.capped > 0 {
        let who = super::count(stats.capped, "string");
        let warning = super::capped_warning(&who, opts.candidates, opts.blowup, opts.max_distance);
        eprintln!("{warning}");
    }
}
