//! `megashtein-gpu train --arch cnn-ed`: a CNN-ED model trained on the user's strings
//! (Dai et al., SIGIR 2020): a seeded sample of the corpus, its all-pairs exact distances on
//! CPU threads, epochs of triplets on the GPU with a progress bar and a JSON-lines log,
//! the estimator's line fitted on the training pairs, the model file written atomically.
use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail};

use super::train::Args;
use crate::input::{LineReader, NonAscii};
use crate::model::cnn_ed::{self, CnnEd, CnnEdShape, DEFAULT_CHANNELS, DEFAULT_DIM};
use crate::ops::Ops;
use crate::train::cnn_ed_data::{TripletData, sample};
use crate::train::cnn_ed_run::{CnnEdRun, relative_error, train};

/// The official code's batch: 64 triplets.
pub const DEFAULT_TRIPLETS: usize = 64;
/// The paper's training set: 1,000 strings.
pub const DEFAULT_TRAIN_STRINGS: usize = 1000;
/// The paper's epochs.
pub const DEFAULT_EPOCHS: usize = 50;

pub fn run(args: &Args) -> Result<()> {
    refuse_megashtein_options(args)?;
    let Some(corpus) = &args.corpus else {
        bail!("train --arch cnn-ed trains on your strings: give them with --corpus FILE");
    };
    let strings = read_corpus(corpus)?;
    let (model, training) = untrained_model(args, &strings)?;
    let shape = model.shape();
    let run = CnnEdRun {
        epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS),
        triplets: args.batch.unwrap_or(DEFAULT_TRIPLETS),
        lr: args.lr,
        seed: args.seed,
    };
    if run.epochs == 0 || run.triplets == 0 {
        bail!("--epochs and --batch must be at least 1");
    }
    let gpu = args.gpu.open()?;
    let ops = Ops::new(&gpu);
    let started = Instant::now();
    eprintln!(
        "computing the {0} x {0} exact distances of the training strings...",
        training.len()
    );
    let neighbours = args
        .neighbours
        .unwrap_or(crate::train::cnn_ed_data::DEFAULT_NEIGHBOURS);
    let data = TripletData::new(training, neighbours);
    eprintln!(
        "training CNN-ED on {}: {} strings (mean distance {:.1}), alphabet {}, M {}, {} layers, \
         {} epochs of {} triplets per step, log {}",
        gpu.info.name,
        data.strings().len(),
        data.average(),
        shape.alphabet,
        shape.max_len,
        shape.layers,
        run.epochs,
        run.triplets,
        log_path(args).display()
    );
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(args))
        .map_err(|e| anyhow::anyhow!("cannot open log {}: {e}", log_path(args).display()))?;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "train [{bar:25}] {pos}/{len} steps {per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let trained = train(
        &gpu,
        &ops,
        &model,
        &data,
        &run,
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
        |report| {
            bar.set_message(format!(
                "epoch {}/{} loss {:.4}",
                report.epoch, report.epochs, report.loss
            ));
            let line = serde_json::json!({
                "epoch": report.epoch,
                "epochs": report.epochs,
                "loss": report.loss,
                "hinge_weight": report.weights.hinge,
                "approx_weight": report.weights.approx,
                "triplets_per_s": report.triplets_per_s,
                "elapsed_s": started.elapsed().as_secs_f64(),
            });
            writeln!(log, "{line}")?;
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    trained.save(&args.output)?;
    let e = trained.estimator();
    let error = relative_error(&trained, &data).unwrap_or(f64::NAN);
    eprintln!(
        "trained {} epochs in {:.0} s; estimate = {:.4} x distance + {:.4} (mean relative \
         error on the training pairs {error:.3}); model written to {}",
        run.epochs,
        started.elapsed().as_secs_f64(),
        e.scale,
        e.offset,
        args.output.display()
    );
    Ok(())
}

/// Every line of `corpus` (any valid UTF-8; invalid UTF-8 is an error naming the line).
fn read_corpus(corpus: &std::path::Path) -> Result<Vec<String>> {
    let (lines, _) = LineReader::open(corpus, NonAscii::Utf8)?.read_all()?;
    let strings: Vec<String> = lines
        .into_iter()
        .map(|l| String::from_utf8(l.text).expect("the UTF-8 rule checked every line"))
        .collect();
    if strings.len() < 3 {
        bail!(
            "corpus {} has {} strings; CNN-ED's triplets need at least 3",
            corpus.display(),
            strings.len()
        );
    }
    Ok(strings)
}

/// The network for `strings` (shape from the data and the options, PyTorch's
/// initialisation from --seed) and its training sample, cut to M as the model cuts them
/// so that every target is the distance of what it reads.
fn untrained_model(args: &Args, strings: &[String]) -> Result<(CnnEd, Vec<String>)> {
    let wanted = args.train_strings.unwrap_or(DEFAULT_TRAIN_STRINGS);
    if wanted < 3 {
        bail!("--train-strings {wanted}: CNN-ED's triplets need at least 3");
    }
    if strings.len() < wanted {
        eprintln!(
            "warning: the corpus has {} strings, fewer than --train-strings {wanted}: \
             training on all of them",
            strings.len()
        );
    }
    let training = sample(strings, wanted, args.seed);
    let longest = training
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0);
    let max_len = args.max_len.unwrap_or(cnn_ed::padded_len(longest));
    let cut = |s: &String| -> String { s.chars().take(max_len).collect() };
    let alphabet = cnn_ed::alphabet_of(
        strings
            .iter()
            .map(cut)
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    );
    let shape = CnnEdShape {
        alphabet: alphabet.len(),
        max_len,
        layers: args.layers.unwrap_or(cnn_ed::default_layers(max_len)),
        channels: DEFAULT_CHANNELS,
        dim: DEFAULT_DIM,
    };
    let model = CnnEd::random(alphabet, shape, args.seed)?;
    Ok((model, training.iter().map(cut).collect()))
}

fn log_path(args: &Args) -> std::path::PathBuf {
    args.log.clone().unwrap_or_else(|| {
        let mut name = args.output.as_os_str().to_owned();
        name.push(".log.jsonl");
        name.into()
    })
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
        ("--resume", args.resume.is_some()),
        ("--checkpoint", args.checkpoint.is_some()),
        ("--stop-after", args.stop_after.is_some()),
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
        ("--non-ascii", args.non_ascii != defaults.non_ascii),
        ("--alphabet", args.alphabet != defaults.alphabet),
        ("--val-pairs", args.val_pairs != defaults.val_pairs),
        ("--val-every", args.val_every != defaults.val_every),
        (
            "--checkpoint-every",
            args.checkpoint_every != defaults.checkpoint_every,
        ),
    ];
    let named: Vec<&str> = given.iter().filter(|g| g.1).map(|g| g.0).collect();
    if !named.is_empty() {
        bail!(
            "{} {} for the megashtein trainer; train --arch cnn-ed takes --corpus, --output, \
             --log, --epochs, --batch (triplets), --train-strings, --neighbours, --max-len, \
             --layers, --lr and --seed",
            named.join(", "),
            if named.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}
