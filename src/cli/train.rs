//! `megashtein-gpu train`: train (or fine-tune) a model on the GPU, with validation,
//! a JSON-lines log, checkpoints and resume.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use clap::ValueEnum;

use crate::input::{LineReader, NonAscii};
use crate::model::params::Widths;
use crate::model::weights::{REFERENCE_DISTANCE_SCALE, Weights};
use crate::ops::Ops;
use crate::train::checkpoint::{Checkpoint, DataConfig, Names, Schedule, TrainConfig};
use crate::train::data::{PRINTABLE, PairGenerator, parse_alphabet};
use crate::train::hard::HardConfig;
use crate::train::hard::{DEFAULT_K, DEFAULT_POOL};
use crate::train::run::{
    DataSource, Outcome, Progress, RunOptions, ValidationSet, run as run_training,
};
use crate::train::trainer::StepOverlap;
use crate::train::trainer::{Objective, TrainState, Trainer};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where the trained model goes (safetensors, written when the run completes).
    #[arg(long, short)]
    pub output: PathBuf,
    /// The architecture: `megashtein` (80-character ASCII strings, synthetic or --corpus
    /// pairs) or `cnn-ed` (long strings over any alphabet, trained on --corpus; see
    /// README "CNN-ED").
    #[arg(long, value_enum, default_value_t = Arch::Megashtein)]
    pub arch: Arch,
    /// Continue the run saved in this checkpoint, of either architecture (its settings
    /// are used; only --output, --checkpoint, --log, --stop-after and the GPU options
    /// may be given with it).
    #[arg(long, conflicts_with_all = ["steps", "batch", "loss", "hinge_weight", "approx_weight", "pnll_weight", "lr", "schedule", "warmup", "weight_decay", "clip", "seed", "scale", "init", "char_dim", "channels", "hidden", "dim", "corpus", "non_ascii", "synthetic_share", "alphabet", "val_pairs", "val_every", "checkpoint_every", "hard_every", "hard_pool", "hard_k", "epochs", "train_strings", "neighbours", "max_len", "layers", "relu_after", "cnn_ed_loss"])]
    pub resume: Option<PathBuf>,
    /// Checkpoint file, written atomically every --checkpoint-every steps (CNN-ED: every
    /// epoch), at --stop-after and on Ctrl-C [default: OUTPUT.ckpt].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// JSON-lines metrics log: a fresh run starts it anew, --resume appends to it
    /// [default: OUTPUT.log.jsonl].
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Training steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Examples per step: pairs, or triplets with --loss triplet|mix (every string of a
    /// step goes through one batched forward) [default: 256; 64 triplets with --arch
    /// cnn-ed].
    #[arg(long)]
    pub batch: Option<usize>,
    /// What a step minimises: `pnll` on pairs (the reference model's loss), `triplet`
    /// (CNN-ED's ranking hinge with the margin from the true distances, plus its
    /// approximation term) or `mix` (the hinge plus PNLL on each triplet's three pairs).
    #[arg(long, value_enum, default_value_t = Loss::Pnll)]
    pub loss: Loss,
    /// Weight of the ranking hinge [default: 1 with --loss triplet|mix].
    #[arg(long, value_name = "W")]
    pub hinge_weight: Option<f32>,
    /// Weight of the approximation term sqrt(sum (d - ED)^2) over a triplet's pairs
    /// [default: 0.1 with --loss triplet (the CNN-ED paper's alpha), 0 with mix].
    #[arg(long, value_name = "W")]
    pub approx_weight: Option<f32>,
    /// Weight of PNLL on a triplet's pairs [default: 0 with --loss triplet, 1 with mix].
    #[arg(long, value_name = "W")]
    pub pnll_weight: Option<f32>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 1e-5)]
    pub weight_decay: f64,
    /// Clip the gradient norm to this value; 0 disables clipping.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Seed of the initial weights and of the data (step t draws from (seed, t)).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The distance scale s: `learned` (log s is trained) or a fixed positive number.
    #[arg(long, default_value = "learned")]
    pub scale: String,
    /// Starting weights: `scratch`, `default` (the built-in model) or a model file.
    #[arg(long, default_value = "scratch")]
    pub init: String,
    /// Width of the character embedding, for a model trained from scratch [default: 140,
    /// the released model's].
    #[arg(long, value_name = "N")]
    pub char_dim: Option<usize>,
    /// Channels of every conv block, at most 64 [default: 64].
    #[arg(long, value_name = "N")]
    pub channels: Option<usize>,
    /// Width of the hidden fully connected layer [default: 200].
    #[arg(long, value_name = "N")]
    pub hidden: Option<usize>,
    /// Width of the embedding (even, at most 128) [default: 80].
    #[arg(long, value_name = "N")]
    pub dim: Option<usize>,
    /// Train on your own strings (one per line): anchors from the file, partners from a
    /// typo model and from the file itself. Without it, synthetic pairs.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// What to do with corpus lines holding non-ASCII characters.
    #[arg(long, value_enum, default_value_t = NonAscii::Error)]
    pub non_ascii: NonAscii,
    /// With --corpus: the share (0 to 1) of each step's examples that are synthetic
    /// instead (random strings over --alphabet and their heavy edits), for a model that
    /// serves both random strings and your kind of text [default: 0].
    #[arg(long, value_name = "F", requires = "corpus")]
    pub synthetic_share: Option<f64>,
    /// Characters of random strings and edits: printable, lower, alnum, dna or chars:XYZ.
    #[arg(long, default_value = "printable")]
    pub alphabet: String,
    /// Held-out pairs per validation set.
    #[arg(long, default_value_t = 2000)]
    pub val_pairs: usize,
    /// Validate and log every this many steps (at most 4,096).
    #[arg(long, default_value_t = 100)]
    pub val_every: u64,
    /// Write the checkpoint every this many steps.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Hard examples (with --corpus): every this many steps, embed a pool of corpus
    /// strings with the model being trained and find each one's nearest pool strings on
    /// the GPU; until the next rebuild, half the examples are a pool string and
    /// partners from its neighbours. Off without it.
    #[arg(long, value_name = "STEPS")]
    pub hard_every: Option<u64>,
    /// Different corpus strings in the hard-example pool, drawn afresh at each rebuild
    /// (all of a smaller corpus) [default: 8192].
    #[arg(long, value_name = "N", requires = "hard_every")]
    pub hard_pool: Option<usize>,
    /// Neighbours kept for each pool string (fewer in a pool of k strings or less)
    /// [default: 16].
    #[arg(long, value_name = "K", requires = "hard_every")]
    pub hard_k: Option<usize>,
    /// Stop once the run reaches step N (with a checkpoint to resume from), before its
    /// end; the learning-rate schedule still spans --steps.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// CNN-ED: epochs, each string of the training sample once as an anchor [default: 50].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// CNN-ED: strings sampled (seeded) from --corpus to train on; their all-pairs exact
    /// distances are computed once [default: 1000].
    #[arg(long)]
    pub train_strings: Option<usize>,
    /// CNN-ED: triplet partners come from each anchor's 2 x this many nearest training
    /// strings [default: 100].
    #[arg(long)]
    pub neighbours: Option<usize>,
    /// CNN-ED: the padded length M (even, at most 5,000) [default: the longest training
    /// string, rounded up to even].
    #[arg(long)]
    pub max_len: Option<usize>,
    /// CNN-ED: conv + pool layers [default: min(10, floor(log2 M))].
    #[arg(long)]
    pub layers: Option<usize>,
    /// CNN-ED: a ReLU after these conv + pool blocks (1-based, comma-separated; the
    /// official UniRef net is `--layers 12 --relu-after 3,6,9`) [default: none, the
    /// affine net that folds into a table].
    #[arg(long, value_delimiter = ',')]
    pub relu_after: Option<Vec<usize>>,
    /// CNN-ED: the loss: `official` (the official code's: the triplet hinge and
    /// sqrt(Σ (d - t)²) on its epoch schedule) or `paper` (the paper's: the hinge plus
    /// 0.1 Σ |d - t|) [default: official].
    #[arg(long, value_enum)]
    pub cnn_ed_loss: Option<crate::train::cnn_ed::CnnEdLoss>,
    /// Prepare step t + 1 while the device runs step t (auto: on GPUs, not on CPU
    /// adapters, where it measured slower). The result is the same either way.
    #[arg(long, value_enum, default_value_t = StepOverlap::Auto)]
    pub step_overlap: StepOverlap,
    #[command(flatten)]
    pub gpu: super::DeviceArgs,
}

/// What `train` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arch {
    Megashtein,
    CnnEd,
}

pub fn run(args: &Args) -> Result<()> {
    let resumes_cnn_ed = args
        .resume
        .as_deref()
        .is_some_and(crate::train::cnn_ed_checkpoint::CnnEdCheckpoint::is_one);
    if args.arch == Arch::CnnEd || resumes_cnn_ed {
        return super::train_cnn_ed::run(args);
    }
    let cnn_ed_only = [
        ("--epochs", args.epochs.is_some()),
        ("--train-strings", args.train_strings.is_some()),
        ("--neighbours", args.neighbours.is_some()),
        ("--max-len", args.max_len.is_some()),
        ("--layers", args.layers.is_some()),
        ("--relu-after", args.relu_after.is_some()),
        ("--cnn-ed-loss", args.cnn_ed_loss.is_some()),
    ];
    if let Some((name, _)) = cnn_ed_only.iter().find(|o| o.1) {
        bail!("{name} is an option of train --arch cnn-ed");
    }
    let (checkpoint, log) = side_outputs(args);
    let options = RunOptions {
        output: args.output.clone(),
        checkpoint,
        log,
        stop_after: args.stop_after,
        step_overlap: args.step_overlap,
        progress: Box::new(train_bar()),
    };
    // Everything that can fail on bad input fails before the GPU starts.
    let resumed = args.resume.as_deref().map(Checkpoint::load).transpose()?;
    let corpus = match resumed.as_ref().map(|c| &c.config.data) {
        Some(DataConfig::Corpus { path, .. }) => Some(Path::new(path)),
        Some(DataConfig::Synthetic { .. }) => None,
        None => args.corpus.as_deref(),
    };
    check_outputs(args, &options.checkpoint, &options.log, corpus)?;
    let start = match resumed {
        Some(checkpoint) => checkpoint,
        None => fresh_start(args)?,
    };
    let generator = Arc::new(generator(&start.config.data)?);
    let source = DataSource::new(generator, &start).map_err(|e| match &args.resume {
        Some(path) => anyhow!("checkpoint {}: {e}", path.display()),
        None => e,
    })?;
    let gpu = args.gpu.open()?;
    let most = Trainer::max_examples(&gpu, &start.state.widths, start.config.objective);
    if start.config.pairs > most {
        bail!(
            "--batch {} does not fit {}: at most {most} per step",
            start.config.pairs,
            gpu.info.name,
        );
    }
    let ops = Ops::new(&gpu);
    let validation = validation_sets(&start.config, source.generator());
    // Ctrl-C finishes the step and writes a checkpoint; a second one exits at once (the
    // checkpoint is atomic, so the previous one stays intact).
    let interrupted = super::stop_flag();
    let from = start.step;
    eprintln!(
        "training on {}: steps {}..{} of {}, {} {} per step, log {}",
        gpu.info.name,
        from,
        options
            .stop_after
            .map_or(start.config.steps, |s| s.min(start.config.steps))
            .max(from),
        start.config.steps,
        start.config.pairs,
        match start.config.objective {
            Objective::Pnll => "pairs",
            Objective::Ranking { .. } => "triplets",
        },
        options.log.display()
    );
    let outcome = run_training(
        &gpu,
        &ops,
        source,
        &validation,
        start,
        &options,
        &interrupted,
    )?;
    match outcome {
        Outcome::Finished { step } => {
            eprintln!(
                "trained {step} steps; model written to {}",
                args.output.display()
            );
            Ok(())
        }
        Outcome::Stopped { step, interrupted } => {
            stopped(args, &options.checkpoint, step, interrupted);
            Ok(())
        }
    }
}

/// The checkpoint and log paths: the options', by default beside --output.
pub(super) fn side_outputs(args: &Args) -> (PathBuf, PathBuf) {
    let beside = |suffix: &str| {
        let mut name = args.output.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    (
        args.checkpoint.clone().unwrap_or_else(|| beside(".ckpt")),
        args.log.clone().unwrap_or_else(|| beside(".log.jsonl")),
    )
}

/// Refuses, before any work, outputs that would replace an input (the corpus, the
/// checkpoint resumed from, the --init model) or one another, or that cannot be created
/// (a missing folder): nothing else stops a run from writing its model over its corpus,
/// and the model and checkpoint are first written after training, when a bad path would
/// lose the work.
pub(super) fn check_outputs(
    args: &Args,
    checkpoint: &Path,
    log: &Path,
    corpus: Option<&Path>,
) -> Result<()> {
    let outputs = [
        ("--output", args.output.as_path()),
        ("--checkpoint", checkpoint),
        ("--log", log),
    ];
    let init =
        (!matches!(args.init.as_str(), "scratch" | "default")).then(|| Path::new(&args.init));
    for (i, &(name, path)) in outputs.iter().enumerate() {
        if let Some((other, _)) = outputs[..i]
            .iter()
            .find(|o| crate::io::same_file(o.1, path))
        {
            bail!(
                "{other} and {name} both name {}: choose different paths",
                path.display()
            );
        }
        if let Some(corpus) = corpus {
            crate::io::refuse_overwriting_input(path, corpus, "corpus")?;
        }
        if let Some(init) = init {
            crate::io::refuse_overwriting_input(path, init, "model (--init)")?;
        }
        // The checkpoint resumed from is the one to update; anything else over it loses it.
        if let Some(resume) = args.resume.as_deref().filter(|_| name != "--checkpoint") {
            crate::io::refuse_overwriting_input(path, resume, "checkpoint (--resume)")?;
        }
        // The log is written in place: a device such as /dev/null takes it.
        if !(name == "--log" && crate::io::is_special_file(path)) {
            crate::io::check_can_create(path)?;
        }
    }
    // A resumed run updates its own checkpoint; any other it would write over is checked.
    let resumed = |r: &Path| crate::io::same_file(r, checkpoint);
    if !args.resume.as_deref().is_some_and(resumed) {
        refuse_replacing_unfinished(checkpoint, &args.output)?;
    }
    Ok(())
}

/// A run writes its checkpoint where an earlier run may have left one it did not finish
/// (stopped with --stop-after, Ctrl-C or a crash), or finished without writing its model
/// (`output`): refuse rather than lose that work. A finished run's checkpoint, or a file
/// that cannot be resumed, is replaced.
fn refuse_replacing_unfinished(checkpoint: &Path, output: &Path) -> Result<()> {
    if !checkpoint.is_file() {
        return Ok(());
    }
    let saved = if crate::train::cnn_ed_checkpoint::CnnEdCheckpoint::is_one(checkpoint) {
        super::train_cnn_ed::saved_run(checkpoint)
    } else {
        match Checkpoint::load(checkpoint) {
            Ok(c) if c.step < c.config.steps => {
                SavedRun::Stopped(format!("step {} of {}", c.step, c.config.steps))
            }
            Ok(_) => SavedRun::Finished,
            Err(_) => SavedRun::Unreadable,
        }
    };
    let path = checkpoint.display();
    match saved {
        SavedRun::Stopped(at) => bail!(
            "checkpoint {path} holds an unfinished run (stopped at {at}): continue it with \
             --resume {path}, or remove it (or give --checkpoint another path) to start over"
        ),
        SavedRun::Finished if !output.exists() => bail!(
            "checkpoint {path} holds a finished run whose model {} was never written: \
             --resume {path} writes it; remove the checkpoint to start over",
            output.display()
        ),
        _ => Ok(()),
    }
}

/// Where the run saved in a checkpoint stands, for [`refuse_replacing_unfinished`].
pub(super) enum SavedRun {
    /// Short of its last step (or not known to have reached it): where it stopped.
    Stopped(String),
    Finished,
    /// Not loadable as a checkpoint, so not resumable either.
    Unreadable,
}

/// Says where a run stopped early and how to continue it; exits 130 if it was
/// interrupted.
pub(super) fn stopped(args: &Args, checkpoint: &Path, step: u64, interrupted: bool) {
    let mut resume = format!(
        "megashtein-gpu train --output {} --resume {}",
        args.output.display(),
        checkpoint.display()
    );
    if let Some(log) = &args.log {
        resume.push_str(&format!(" --log {}", log.display()));
    }
    eprintln!(
        "{} at step {step}; checkpoint {}. Continue with:\n  {resume}",
        if interrupted {
            "interrupted"
        } else {
            "stopped"
        },
        checkpoint.display()
    );
    if interrupted {
        std::process::exit(130);
    }
}

/// Pairs (or triplets) per step of the megashtein trainer.
fn batch(args: &Args) -> usize {
    args.batch.unwrap_or(256)
}

fn fresh_start(args: &Args) -> Result<Checkpoint> {
    let fixed_scale = match args.scale.as_str() {
        "learned" => None,
        s => Some(
            s.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    anyhow!("--scale must be `learned` or a positive number, got {s:?}")
                })?,
        ),
    };
    // A learned scale starts from the first batch's PNLL-optimal value
    // (`train::run::calibrated_scale`); the model's own scale is only the fallback.
    let (weights, init, model_scale) = match args.init.as_str() {
        "scratch" => (
            Weights::init_with(widths(args)?, args.seed),
            "scratch".to_string(),
            REFERENCE_DISTANCE_SCALE,
        ),
        spec => {
            let path = (spec != "default").then(|| Path::new(spec));
            let model = crate::search::index::open_model(path)?;
            let description = format!("{} (sha256 {})", model.source(), model.fingerprint());
            let weights = model.into_weights()?;
            if width_flags(args).next().is_some() {
                bail!(
                    "--init {spec} sets the widths ({}); --char-dim, --channels, --hidden and \
                     --dim are for a model trained from scratch",
                    weights.widths
                );
            }
            let scale = weights.distance_scale;
            (weights, description, scale)
        }
    };
    let data = match &args.corpus {
        None => DataConfig::Synthetic {
            alphabet: args.alphabet.clone(),
        },
        Some(path) => {
            // The strings are read once, by `generator`, still before the GPU starts.
            let sha256 = corpus_fingerprint(path)?;
            // Absolute, so --resume works from any directory.
            let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            DataConfig::Corpus {
                path: path.display().to_string(),
                sha256,
                alphabet: args.alphabet.clone(),
                non_ascii: args
                    .non_ascii
                    .to_possible_value()
                    .expect("every mode has a name")
                    .get_name()
                    .to_string(),
                synthetic_share: args.synthetic_share.unwrap_or(0.0),
            }
        }
    };
    let config = TrainConfig {
        steps: args.steps,
        pairs: batch(args),
        objective: objective(args)?,
        lr: args.lr,
        schedule: args.schedule,
        warmup: args.warmup,
        weight_decay: args.weight_decay,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        clip: args.clip,
        seed: args.seed,
        learn_scale: fixed_scale.is_none(),
        data,
        val_pairs: args.val_pairs,
        val_every: args.val_every,
        checkpoint_every: args.checkpoint_every,
        hard: hard(args)?,
        init,
    };
    config.check(Names::Flags)?;
    let scale = fixed_scale.unwrap_or(model_scale);
    Ok(Checkpoint {
        config,
        step: 0,
        num_batches_tracked: weights.num_batches_tracked,
        state: TrainState::new(&weights, scale),
        hard: None,
    })
}

/// `--hard-every` and its settings, checked; hard examples need a corpus.
fn hard(args: &Args) -> Result<Option<HardConfig>> {
    let Some(every) = args.hard_every else {
        return Ok(None);
    };
    if args.corpus.is_none() {
        bail!("--hard-every needs --corpus: hard examples are the corpus's own strings");
    }
    // Checked with the other settings (TrainConfig::check).
    Ok(Some(HardConfig {
        every,
        pool: args.hard_pool.unwrap_or(DEFAULT_POOL),
        k: args.hard_k.unwrap_or(DEFAULT_K),
    }))
}

/// The width flags given, by name.
fn width_flags(args: &Args) -> impl Iterator<Item = &'static str> {
    [
        ("--char-dim", args.char_dim),
        ("--channels", args.channels),
        ("--hidden", args.hidden),
        ("--dim", args.dim),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|_| name))
}

/// The released widths with the flags' changes, checked.
fn widths(args: &Args) -> Result<Widths> {
    let released = Widths::RELEASED;
    let widths = Widths {
        char_dim: args.char_dim.unwrap_or(released.char_dim),
        channels: args.channels.unwrap_or(released.channels),
        hidden: args.hidden.unwrap_or(released.hidden),
        dim: args.dim.unwrap_or(released.dim),
    };
    widths.check()?;
    Ok(widths)
}

/// `--loss` and its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Loss {
    Pnll,
    Triplet,
    Mix,
}

fn objective(args: &Args) -> Result<Objective> {
    let (hinge, approx, pnll) = match args.loss {
        Loss::Pnll => {
            if args
                .hinge_weight
                .or(args.approx_weight)
                .or(args.pnll_weight)
                .is_some()
            {
                bail!(
                    "--hinge-weight, --approx-weight and --pnll-weight need --loss triplet or mix"
                );
            }
            return Ok(Objective::Pnll);
        }
        Loss::Triplet => (1.0, 0.1, 0.0),
        Loss::Mix => (1.0, 0.0, 1.0),
    };
    // Checked with the other settings (TrainConfig::check).
    Ok(Objective::Ranking {
        hinge: args.hinge_weight.unwrap_or(hinge),
        approx: args.approx_weight.unwrap_or(approx),
        pnll: args.pnll_weight.unwrap_or(pnll),
    })
}

pub(super) fn read_corpus(path: &Path, non_ascii: NonAscii) -> Result<Vec<Vec<u8>>> {
    let (lines, stats) = LineReader::open(path, non_ascii)?.read_all()?;
    for warning in stats.warnings() {
        eprintln!("warning: {warning}");
    }
    if lines.is_empty() {
        bail!("corpus {} has no strings to train on", path.display());
    }
    Ok(lines.into_iter().map(|l| l.text).collect())
}

pub(super) fn corpus_fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow!(
            "cannot read corpus {}: {}",
            path.display(),
            crate::io::io_reason(&e)
        )
    })?;
    Ok(crate::model::hex_sha256(&bytes))
}

fn generator(data: &DataConfig) -> Result<PairGenerator> {
    match data {
        DataConfig::Synthetic { alphabet } => {
            Ok(PairGenerator::synthetic(parse_alphabet(alphabet)?))
        }
        DataConfig::Corpus {
            path,
            sha256,
            alphabet,
            non_ascii,
            synthetic_share,
        } => {
            let path = Path::new(path);
            let now = corpus_fingerprint(path)?;
            if &now != sha256 {
                bail!(
                    "corpus {} has changed since the run started (sha256 {now}, was {sha256})",
                    path.display()
                );
            }
            let mode = NonAscii::from_str(non_ascii, false)
                .map_err(|e| anyhow!("checkpoint names non-ASCII mode {non_ascii:?}: {e}"))?;
            PairGenerator::corpus(read_corpus(path, mode)?, parse_alphabet(alphabet)?)?
                .with_synthetic_share(*synthetic_share)
        }
    }
}

/// Seed of the validation sets: the same pairs for every run, so runs compare on one
/// yardstick (validation draws never coincide with training draws: the generator
/// separates the two by a domain constant).
const VALIDATION_SEED: u64 = 0;

/// Synthetic pairs of all lengths always (over printable ASCII); in corpus mode also
/// pairs of the corpus: anchors from the corpus itself (the base the model will search),
/// partners from the validation draws.
fn validation_sets(config: &TrainConfig, generator: &PairGenerator) -> Vec<ValidationSet> {
    let mut sets = vec![ValidationSet {
        name: "synthetic",
        pairs: PairGenerator::synthetic(PRINTABLE.to_vec())
            .validation(VALIDATION_SEED, config.val_pairs),
    }];
    if let DataConfig::Corpus { .. } = config.data {
        sets.push(ValidationSet {
            name: "corpus",
            pairs: generator.validation(VALIDATION_SEED, config.val_pairs),
        });
    }
    sets
}

/// The training progress bar: steps with rate and ETA, and the latest validation.
pub(super) fn train_bar() -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(0).with_style(super::bar_style(
        "train [{bar:25}] {pos}/{len} steps {rate} ETA {eta} {msg}",
    ))
}

impl Progress for indicatif::ProgressBar {
    fn start(&self, done: u64, total: u64) {
        self.set_length(total);
        self.set_position(done);
        // Rate and ETA count from the resumed step, not from 0.
        self.reset_eta();
    }

    fn step(&self, done: u64) {
        self.set_position(done);
    }

    fn summary(&self, line: String) {
        self.set_message(line);
    }

    fn finish(&self) {
        self.finish_and_clear();
    }
}
