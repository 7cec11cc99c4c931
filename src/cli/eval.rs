//! `megashtein-gpu eval`: accuracy metrics of a model and its baselines, with plots.
use std::path::PathBuf;

use anyhow::Result;

use crate::eval::{self, Options};
use crate::input::NonAscii;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model to evaluate (default: the built-in default model).
    #[arg(long, value_name = "FILE.safetensors")]
    pub model: Option<PathBuf>,
    /// Base strings, one a line (default: the built-in base of 3,000 words).
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// Real misspellings, lines `misspelling<TAB>correct` (default: the built-in pairs with
    /// the built-in base; none with --base). Pairs whose correct word is not in the base, or
    /// whose misspelling is, are skipped and counted in the report.
    #[arg(long, value_name = "FILE.tsv")]
    pub pairs: Option<PathBuf>,
    /// The released checkpoint for its baseline row (.pth or .safetensors; default: the
    /// copy built into the binary, models/reference/megashtein_trained_model.pth).
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
    /// Output directory for report.json and the PNG plots.
    #[arg(long, value_name = "DIR", default_value = "eval-out")]
    pub out: PathBuf,
    /// Held-out queries (typo'd base strings, never in the base).
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Synthetic pairs over lengths 1-80 and all distances.
    #[arg(long, default_value_t = 2000)]
    pub synthetic_pairs: usize,
    /// Typo'd pairs drawn from the base.
    #[arg(long, default_value_t = 1000)]
    pub typo_pairs: usize,
    /// CGK repetitions.
    #[arg(long, default_value_t = 4)]
    pub cgk_reps: usize,
    /// Use at most this many misspelling pairs (a seeded sample of the usable ones).
    #[arg(long, default_value_t = 1000)]
    pub max_misspellings: usize,
    /// Candidate counts C for "within the first C candidates" (comma-separated).
    #[arg(short = 'C', long, value_delimiter = ',', default_values_t = [1usize, 10, 100, 1000])]
    pub candidates: Vec<usize>,
    /// Seed of the generated queries and pairs and of CGK's random bits.
    #[arg(long, default_value_t = 20240)]
    pub seed: u64,
    /// Only the model and the exact scan, no baselines.
    #[arg(long)]
    pub no_baselines: bool,
    /// Lines with non-ASCII characters (same rules as embed).
    #[arg(long, value_enum, default_value_t = NonAscii::Error)]
    pub non_ascii: NonAscii,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

pub fn run(args: &Args) -> Result<()> {
    let gpu = args.gpu.open()?;
    let opts = Options {
        model: args.model.clone(),
        reference: args.reference.clone(),
        base: args.base.clone(),
        pairs: args.pairs.clone(),
        out: Some(args.out.clone()),
        non_ascii: args.non_ascii,
        seed: args.seed,
        queries: args.queries,
        synthetic_pairs: args.synthetic_pairs,
        typo_pairs: args.typo_pairs,
        cgk_reps: args.cgk_reps,
        max_misspellings: args.max_misspellings,
        candidates: args.candidates.clone(),
        no_baselines: args.no_baselines,
        ..Options::default()
    };
    let report = eval::run(&gpu, &opts)?;
    print!("{}", eval::table(&report));
    eprintln!(
        "wrote {} and {} plots in {:.1} s",
        args.out.join("report.json").display(),
        eval::plot::plot_files(&report, &args.out).len(),
        report.seconds
    );
    Ok(())
}
