//! `megashtein-gpu eval`: accuracy metrics of a model and its baselines, with plots. A
//! CNN-ED model gets the long-string report ([`crate::eval::long`]) on the user's files.
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::eval::long::{self, LongOptions};
use crate::eval::{self, Options};
use crate::input::NonAscii;
use crate::model::{Architecture, Model};

/// `--queries`: a number of held-out queries made from the base (megashtein models), or a
/// file of queries (CNN-ED models).
#[derive(Debug, Clone)]
pub enum Queries {
    Count(usize),
    File(PathBuf),
}

fn parse_queries(value: &str) -> Result<Queries, String> {
    Ok(match value.parse() {
        Ok(n) => Queries::Count(n),
        Err(_) => Queries::File(value.into()),
    })
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model to evaluate (default: the built-in default model). A CNN-ED model is evaluated
    /// on --train, --queries FILE and --base (the CNN-ED paper's protocol).
    #[arg(long, short, value_name = "FILE.safetensors")]
    pub model: Option<PathBuf>,
    /// Base strings, one a line (default: the built-in base of 3,000 words).
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// CNN-ED models: the strings the model's line was fitted on (its training strings);
    /// the baselines' lines are fitted on their pairs too.
    #[arg(long, value_name = "FILE")]
    pub train: Option<PathBuf>,
    /// CNN-ED models: evaluate a seeded sample of this many of the --queries (default:
    /// all; the exact distances cost queries x base x length^2 / 64 word operations).
    #[arg(long, value_name = "N")]
    pub max_queries: Option<usize>,
    /// Real misspellings, lines `misspelling<TAB>correct` (default: the built-in pairs with
    /// the built-in base; none with --base). Pairs whose correct word is not in the base, or
    /// whose misspelling is, are skipped and counted in the report.
    #[arg(long, value_name = "FILE.tsv")]
    pub pairs: Option<PathBuf>,
    /// The released checkpoint for its baseline row (.pth or .safetensors; default: the
    /// copy built into the binary, models/reference/megashtein_trained_model.pth).
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
    /// Output directory for report.json and the PNG plots (`-o`/`--output` as in export).
    #[arg(
        long,
        short = 'o',
        visible_alias = "output",
        value_name = "DIR",
        default_value = "eval-out"
    )]
    pub out: PathBuf,
    /// Held-out queries: N typo'd base strings, never in the base (default 200); for a
    /// CNN-ED model a FILE of queries, one a line.
    #[arg(long, value_name = "N|FILE", value_parser = parse_queries)]
    pub queries: Option<Queries>,
    /// Synthetic pairs over lengths 1-80 and all distances.
    #[arg(long, default_value_t = 2000)]
    pub synthetic_pairs: usize,
    /// Typo'd pairs drawn from the base.
    #[arg(long, default_value_t = 1000)]
    pub typo_pairs: usize,
    /// CGK repetitions, 1 to 4 (default 4; 1 for a CNN-ED model, whose strings are long).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::model::cgk::MAX_REPS as u64))]
    pub cgk_reps: Option<usize>,
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
    if let Some(path) = &args.model {
        let model = crate::search::index::open_model(Some(path))?;
        if let Architecture::CnnEd(_) = model.architecture() {
            return run_long(args, &model);
        }
    }
    if args.train.is_some() || args.max_queries.is_some() {
        bail!(
            "--train and --max-queries are for CNN-ED models (--model FILE of arch cnn-ed-v1); \
             this is {}",
            args.model
                .as_ref()
                .map_or("the built-in default model".to_string(), |m| {
                    format!("{}, not a CNN-ED model", m.display())
                })
        );
    }
    let queries = match &args.queries {
        None => 200,
        Some(Queries::Count(n)) => *n,
        Some(Queries::File(path)) => bail!(
            "--queries {}: a query file is for CNN-ED models; this model's queries are made \
             from the base, give their number (--queries N)",
            path.display()
        ),
    };
    let gpu = args.gpu.open()?;
    let opts = Options {
        model: args.model.clone(),
        reference: args.reference.clone(),
        base: args.base.clone(),
        pairs: args.pairs.clone(),
        out: Some(args.out.clone()),
        non_ascii: args.non_ascii,
        seed: args.seed,
        queries,
        synthetic_pairs: args.synthetic_pairs,
        typo_pairs: args.typo_pairs,
        cgk_reps: args.cgk_reps.unwrap_or(4),
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

/// The long-string report of a CNN-ED model on the user's files.
fn run_long(args: &Args, model: &Model) -> Result<()> {
    let needs = "a CNN-ED model is evaluated on your strings: give --train FILE (the strings \
                 its line was fitted on), --queries FILE and --base FILE";
    let (Some(train), Some(base)) = (&args.train, &args.base) else {
        bail!("{needs}");
    };
    let queries = match &args.queries {
        Some(Queries::File(path)) => path.clone(),
        Some(Queries::Count(n)) => {
            bail!("--queries {n}: {needs} (for a sample of the queries, --max-queries N)")
        }
        None => bail!("{needs}"),
    };
    if args.pairs.is_some() || args.reference.is_some() {
        bail!("--pairs and --reference are for megashtein models, not CNN-ED ones");
    }
    let gpu = args.gpu.open()?;
    let opts = LongOptions {
        train: train.clone(),
        queries,
        base: base.clone(),
        out: Some(args.out.clone()),
        max_queries: args.max_queries,
        seed: args.seed,
        cgk_reps: args.cgk_reps.unwrap_or(1),
        candidates: args.candidates.clone(),
        batch: crate::embed::DEFAULT_BATCH,
        no_baselines: args.no_baselines,
        progress: true,
    };
    let report = long::run(&gpu, model, &opts)?;
    print!("{}", long::table(&report));
    eprintln!(
        "wrote {} and the recall and threshold plots in {:.1} s",
        args.out.join("report.json").display(),
        report.seconds
    );
    Ok(())
}
