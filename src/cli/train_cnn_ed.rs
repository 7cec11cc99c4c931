//! `megashtein-gpu train --arch cnn-ed`: a CNN-ED model trained on the user's strings
//! (Dai et al., SIGIR 2020): a seeded sample of the corpus, its all-pairs exact distances on
//! CPU threads, epochs of triplets on the GPU with a progress bar and a JSON-lines log,
//! the estimator's line fitted on the training pairs, the model file written atomically;
//! a checkpoint after every epoch (and at --stop-after or Ctrl-C) to --resume from.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow, bail};

use super::train::{Args, SavedRun};
use crate::input::read_utf8_lines;
use crate::model::cnn_ed::{self, CnnEd, CnnEdShape, DEFAULT_CHANNELS, DEFAULT_DIM};
use crate::ops::Ops;
use crate::train::checkpoint::Names;
use crate::train::cnn_ed::CnnEdState;
use crate::train::cnn_ed_checkpoint::{CnnEdCheckpoint, CnnEdConfig};
use crate::train::cnn_ed_data::{TripletData, sample};
use crate::train::cnn_ed_run::{
    CnnEdHooks, CnnEdOutcome, CnnEdRun, CnnEdStart, EpochReport, relative_error, steps_per_epoch,
    train,
};

/// The official code's batch: 64 triplets.
pub const DEFAULT_TRIPLETS: usize = 64;
/// The paper's training set: 1,000 strings.
pub const DEFAULT_TRAIN_STRINGS: usize = 1000;
/// The paper's epochs.
pub const DEFAULT_EPOCHS: usize = 50;

pub fn run(args: &Args) -> Result<()> {
    refuse_megashtein_options(args)?;
    // Everything that can fail on bad input fails before the GPU starts.
    let resumed = args
        .resume
        .as_deref()
        .map(CnnEdCheckpoint::load)
        .transpose()?;
    let config = match &resumed {
        Some(checkpoint) => checkpoint.config.clone(),
        None => fresh_config(args)?,
    };
    let corpus = Path::new(&config.corpus);
    let (checkpoint, log) = super::train::side_outputs(args);
    super::train::check_outputs(args, &checkpoint, &log, Some(corpus))?;
    let strings = read_corpus(corpus)?;
    let now = super::train::corpus_fingerprint(corpus)?;
    if now != config.sha256 {
        bail!(
            "corpus {} has changed since the run started (sha256 {now}, was {})",
            corpus.display(),
            config.sha256
        );
    }
    let (model, training) = untrained_model(&config, &strings)?;
    let shape = model.shape();
    let start = match resumed {
        Some(c) if c.state.params.len() != shape.num_params() + 1 => bail!(
            "checkpoint {} holds {} parameters, the network of its corpus and settings {}",
            args.resume.as_deref().unwrap_or(Path::new("")).display(),
            c.state.params.len(),
            shape.num_params() + 1
        ),
        Some(c) => CnnEdStart {
            step: c.step,
            epoch_loss: c.epoch_loss,
            state: c.state,
        },
        None => CnnEdStart::fresh(&model),
    };
    let run = config.run;
    let max_len = shape.max_len;
    let cut: Vec<String> = training.iter().map(|s| cut_to(s, max_len)).collect();
    // Every target is a distance over the mean distance: with one distinct string, 0 / 0.
    if cut.iter().all(|s| *s == cut[0]) {
        bail!(
            "{}: the training sample holds fewer than two distinct strings (as the model reads \
             them, cut to M = {max_len}), so every pair is at distance 0 and there is nothing \
             to learn",
            corpus.display()
        );
    }
    let gpu = args.gpu.open()?;
    let ops = Ops::new(&gpu);
    let started = Instant::now();
    eprintln!(
        "computing the {0} x {0} exact distances of the training strings...",
        training.len()
    );
    let data = TripletData::new(cut, config.neighbours).with_whole_strings(&training);
    eprintln!(
        "training CNN-ED on {}: {} strings (mean distance {:.1}), alphabet {}, M {}, {} layers{}, \
         {} of {} triplets per step{}, log {}, checkpoint {}",
        gpu.info.name,
        data.strings().len(),
        data.average(),
        shape.alphabet,
        shape.max_len,
        shape.layers,
        if shape.is_affine() {
            String::new()
        } else {
            format!(" (ReLU after {:?})", shape.relu_blocks())
        },
        super::count(run.epochs, "epoch"),
        run.triplets,
        if start.step > 0 {
            format!(", from step {}", start.step)
        } else {
            String::new()
        },
        log.display(),
        checkpoint.display()
    );
    let mut hooks = CliHooks {
        bar: super::train::train_bar(),
        log: Log {
            path: log.clone(),
            // A run's log starts with its first epoch's line: a run resumed before that
            // starts it anew, one resumed later appends.
            append: start.step >= steps_per_epoch(data.strings().len(), &run),
            file: None,
        },
        started,
        resumed_at: Some(start.step),
        config: &config,
        checkpoint: checkpoint.clone(),
        stop_after: args.stop_after,
        interrupted: super::stop_flag(),
    };
    let start_step = start.step;
    let outcome = train(&gpu, &ops, &model, &data, &run, &start, &mut hooks)?;
    hooks.bar.finish_and_clear();
    match outcome {
        CnnEdOutcome::Finished {
            model: trained,
            fit,
        } => {
            trained.save(&args.output)?;
            if fit.through_zero {
                eprintln!(
                    "warning: the embedding distances of the training pairs do not follow their \
                     edit distances (correlation {:.2}), so the estimate is the least-squares \
                     line through 0 and distance estimates are rough; search still ranks by \
                     embedding distance and re-ranks exactly. This happens when the training \
                     strings are mostly unrelated to each other (their distances then depend \
                     mostly on their lengths): train longer, or on a sample with near \
                     neighbours",
                    fit.correlation
                );
            }
            let e = trained.estimator();
            let error = relative_error(&trained, &data).unwrap_or(f64::NAN);
            let resumed = match start_step {
                0 => String::new(),
                step => format!(" (resumed at step {step})"),
            };
            eprintln!(
                "trained {}{resumed} in {:.0} s; estimate = {:.4} x embedding distance {} \
                 {:.4} (mean relative error on the training pairs {error:.3}); model written \
                 to {}",
                super::count(run.epochs, "epoch"),
                started.elapsed().as_secs_f64(),
                e.scale,
                if e.offset < 0.0 { '-' } else { '+' },
                e.offset.abs(),
                args.output.display()
            );
            Ok(())
        }
        CnnEdOutcome::Stopped { step } => {
            let interrupted = hooks.interrupted.load(Ordering::Relaxed);
            super::train::stopped(args, &checkpoint, step, interrupted);
            Ok(())
        }
    }
}

/// The JSON-lines log, opened at its first line, so that a run failing before that
/// leaves no empty log behind.
struct Log {
    path: PathBuf,
    /// Append to the file, or start it anew.
    append: bool,
    file: Option<std::fs::File>,
}

impl Log {
    fn write(&mut self, line: &serde_json::Value) -> Result<()> {
        let path = &self.path;
        if self.file.is_none() {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(self.append)
                .truncate(!self.append)
                .open(path)
                .map_err(|e| anyhow!("cannot open log {}: {e}", path.display()))?;
            self.file = Some(file);
        }
        let file = self.file.as_mut().expect("opened above");
        writeln!(file, "{line}").map_err(|e| anyhow!("cannot write log {}: {e}", path.display()))
    }
}

/// The CLI's side of a run: progress bar, JSON-lines log, checkpoints, stopping.
struct CliHooks<'a> {
    bar: indicatif::ProgressBar,
    log: Log,
    started: Instant,
    /// The step the run started from, until the bar is set up.
    resumed_at: Option<u64>,
    config: &'a CnnEdConfig,
    checkpoint: PathBuf,
    stop_after: Option<u64>,
    interrupted: Arc<AtomicBool>,
}

impl CnnEdHooks for CliHooks<'_> {
    fn step(&mut self, done: u64, total: u64) {
        if let Some(from) = self.resumed_at.take() {
            self.bar.set_length(total);
            self.bar.set_position(from);
            // Rate and ETA count from the resumed step, not from 0.
            self.bar.reset_eta();
        }
        self.bar.set_position(done);
    }

    fn epoch(&mut self, report: &EpochReport) -> Result<()> {
        self.bar.set_message(format!(
            "epoch {}/{} loss {:.4}",
            report.epoch, report.epochs, report.loss
        ));
        let line = serde_json::json!({
            "epoch": report.epoch,
            "epochs": report.epochs,
            "loss": report.loss,
            "hinge_weight": report.weights.hinge,
            "approx_weight": report.weights.approx,
            "absolute_weight": report.weights.absolute,
            "triplets_per_s": report.triplets_per_s,
            "elapsed_s": self.started.elapsed().as_secs_f64(),
        });
        self.log.write(&line)
    }

    fn checkpoint(&mut self, step: u64, epoch_loss: f64, state: &CnnEdState) -> Result<()> {
        CnnEdCheckpoint {
            config: self.config.clone(),
            step,
            epoch_loss,
            state: state.clone(),
        }
        .save(&self.checkpoint)
    }

    fn stop(&self, step: u64) -> bool {
        self.stop_after.is_some_and(|last| step >= last) || self.interrupted.load(Ordering::Relaxed)
    }
}

/// A new run's settings from the options.
fn fresh_config(args: &Args) -> Result<CnnEdConfig> {
    let Some(corpus) = &args.corpus else {
        bail!("train --arch cnn-ed trains on your strings: give them with --corpus FILE");
    };
    let run = CnnEdRun {
        epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS),
        triplets: args.batch.unwrap_or(DEFAULT_TRIPLETS),
        lr: args.lr,
        seed: args.seed,
        loss: args.cnn_ed_loss.unwrap_or_default(),
    };
    // Absolute, so --resume works from any directory.
    let absolute = std::fs::canonicalize(corpus).unwrap_or_else(|_| corpus.clone());
    let config = CnnEdConfig {
        corpus: absolute.to_string_lossy().into_owned(),
        sha256: super::train::corpus_fingerprint(corpus)?,
        train_strings: args.train_strings.unwrap_or(DEFAULT_TRAIN_STRINGS),
        neighbours: args
            .neighbours
            .unwrap_or(crate::train::cnn_ed_data::DEFAULT_NEIGHBOURS),
        max_len: args.max_len,
        layers: args.layers,
        relu_after: args.relu_after.clone().unwrap_or_default(),
        run,
    };
    config.check(Names::Flags)?;
    Ok(config)
}

/// Where the CNN-ED run saved in `checkpoint` stands. Its last step depends on its
/// corpus (the sample is min(--train-strings, the corpus), as `sample` draws it); a corpus
/// that cannot be read leaves that unknown, so the run counts as stopped.
pub(super) fn saved_run(checkpoint: &Path) -> SavedRun {
    let Ok(c) = CnnEdCheckpoint::load(checkpoint) else {
        return SavedRun::Unreadable;
    };
    let strings = match read_utf8_lines(Path::new(&c.config.corpus)) {
        Ok(strings) => strings,
        Err(e) => {
            return SavedRun::Stopped(format!(
                "step {}; whether that is its last cannot be told: {e:#}",
                c.step
            ));
        }
    };
    let per_epoch = steps_per_epoch(strings.len().min(c.config.train_strings), &c.config.run);
    let total = per_epoch * c.config.run.epochs as u64;
    if c.step >= total {
        return SavedRun::Finished;
    }
    SavedRun::Stopped(format!(
        "step {} of {total}, {} of {} done",
        c.step,
        c.step / per_epoch,
        super::count(c.config.run.epochs, "epoch")
    ))
}

/// Every line of `corpus` (any valid UTF-8; invalid UTF-8 is an error naming the line).
fn read_corpus(corpus: &std::path::Path) -> Result<Vec<String>> {
    let strings = read_utf8_lines(corpus)?;
    if strings.len() < 3 {
        bail!(
            "corpus {} has {}; CNN-ED's triplets need at least 3",
            corpus.display(),
            super::count(strings.len(), "string")
        );
    }
    Ok(strings)
}

/// The network for `strings` (shape from the data and the options, PyTorch's
/// initialisation from --seed) and its training sample, whole: the caller cuts them to M
/// as the model cuts them, so that every target is the distance of what it reads, and
/// fits the estimator's line on the whole strings' distances.
fn untrained_model(config: &CnnEdConfig, strings: &[String]) -> Result<(CnnEd, Vec<String>)> {
    let wanted = config.train_strings;
    if strings.len() < wanted {
        eprintln!(
            "warning: the corpus has {} strings, fewer than --train-strings {wanted}: \
             training on all of them",
            strings.len()
        );
    }
    let seed = config.run.seed;
    let training = sample(strings, wanted, seed);
    let longest = training
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let max_len = config.max_len.unwrap_or(cnn_ed::padded_len(longest));
    let alphabet = cnn_ed::alphabet_of(
        strings
            .iter()
            .map(|s| cut_to(s, max_len))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    let shape = CnnEdShape {
        alphabet: alphabet.len(),
        max_len,
        layers: config.layers.unwrap_or(cnn_ed::default_layers(max_len)),
        channels: DEFAULT_CHANNELS,
        dim: DEFAULT_DIM,
        // Checked with the other settings (CnnEdConfig::check).
        relu: cnn_ed::relu_mask_of(&config.relu_after).map_err(|e| anyhow!(e))?,
    };
    let model = CnnEd::random(alphabet, shape, seed)?;
    Ok((model, training))
}

/// `text`'s first `max_len` characters, as the model reads it.
fn cut_to(text: &str, max_len: usize) -> String {
    text.chars().take(max_len).collect()
}

/// An error for options of the megashtein trainer given to a CNN-ED run (each differs
/// from its default), instead of ignoring them.
fn refuse_megashtein_options(args: &Args) -> Result<()> {
    #[derive(clap::Parser)]
    struct Defaults {
        #[command(flatten)]
        args: Args,
    }
    let defaults = <Defaults as clap::Parser>::try_parse_from(["train", "--output", "x"])
        .expect("the defaults parse")
        .args;
    let given = [
        ("--steps", args.steps != defaults.steps),
        ("--loss", args.loss != defaults.loss),
        ("--hinge-weight", args.hinge_weight.is_some()),
        ("--approx-weight", args.approx_weight.is_some()),
        ("--pnll-weight", args.pnll_weight.is_some()),
        ("--schedule", args.schedule != defaults.schedule),
        ("--warmup", args.warmup != defaults.warmup),
        ("--weight-decay", args.weight_decay != defaults.weight_decay),
        ("--clip", args.clip != defaults.clip),
        ("--scale", args.scale != defaults.scale),
        ("--init", args.init != defaults.init),
        ("--char-dim", args.char_dim.is_some()),
        ("--channels", args.channels.is_some()),
        ("--hidden", args.hidden.is_some()),
        ("--dim", args.dim.is_some()),
        ("--non-ascii", args.non_ascii != defaults.non_ascii),
        ("--alphabet", args.alphabet != defaults.alphabet),
        ("--val-pairs", args.val_pairs != defaults.val_pairs),
        ("--val-every", args.val_every != defaults.val_every),
        (
            "--checkpoint-every",
            args.checkpoint_every != defaults.checkpoint_every,
        ),
        ("--hard-every", args.hard_every.is_some()),
        ("--synthetic-share", args.synthetic_share.is_some()),
        ("--step-overlap", args.step_overlap != defaults.step_overlap),
    ];
    let named: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    if !named.is_empty() {
        bail!(
            "{} {} for the megashtein trainer; train --arch cnn-ed takes --corpus, --output, \
             --log, --epochs, --batch (triplets), --train-strings, --neighbours, --max-len, \
             --layers, --relu-after, --cnn-ed-loss, --lr, --seed, --checkpoint, --resume and \
             --stop-after (and the device's --backend and --adapter)",
            named.join(", "),
            if named.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}
