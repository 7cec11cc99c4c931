//! The training loop: pairs from CPU threads, one GPU step each, validation and a
//! JSON-lines log at intervals, checkpoints at intervals, at `stop_after` and on
//! interrupt, and the final model.
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::checkpoint::{Checkpoint, TrainConfig};
use super::data::{Examples, PairBatch, PairGenerator, Prefetch, TrainBatch};
use super::hard::{HardConfig, Neighbours, SavedTable, distinct_places};
use super::trainer::{Objective, StepOverlap, StepQueue, TrainState, Trainer};
use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::Gpu;
use crate::model::weights::Weights;
use crate::ops::Ops;
use crate::ops::adamw::AdamWStep;
use crate::stats::{spearman, squared_distance};

/// Batches the data thread may run ahead of the GPU.
const PREFETCH_DEPTH: usize = 4;

/// Accuracy of d_hat against the exact distance on one held-out set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Mean |d_hat - d|.
    pub mae: f64,
    /// Mean |d_hat - d| / d over pairs with d > 0.
    pub mre: f64,
    pub spearman: f64,
}

/// A fixed, named set of held-out pairs.
pub struct ValidationSet {
    pub name: &'static str,
    pub pairs: PairBatch,
}

/// d_hat (eval mode, the model's own scale) for every pair of `pairs`.
pub fn estimate(gpu: &Gpu, weights: &Weights, pairs: &PairBatch) -> Result<Vec<f64>> {
    let batch = (2 * pairs.len()).clamp(1, DEFAULT_BATCH);
    let texts: Vec<&[u8]> = pairs.a.iter().chain(&pairs.b).map(Vec::as_slice).collect();
    let e = Embedder::new(gpu, weights, batch)?.embed(&texts)?;
    let n = pairs.len();
    let row = |i: usize| &e[i * weights.widths.dim..(i + 1) * weights.widths.dim];
    Ok((0..n)
        .map(|p| f64::from(weights.distance_scale) * squared_distance(row(p), row(n + p)))
        .collect())
}

pub fn accuracy(d_hat: &[f64], labels: &[u32]) -> Accuracy {
    let d: Vec<f64> = labels.iter().map(|&x| f64::from(x)).collect();
    let n = d.len().max(1) as f64;
    let mae = d_hat
        .iter()
        .zip(&d)
        .map(|(e, t)| (e - t).abs())
        .sum::<f64>()
        / n;
    let positive: Vec<f64> = d_hat
        .iter()
        .zip(&d)
        .filter(|(_, t)| **t > 0.0)
        .map(|(e, t)| (e - t).abs() / t)
        .collect();
    let mre = positive.iter().sum::<f64>() / positive.len().max(1) as f64;
    Accuracy {
        mae,
        mre,
        spearman: spearman(d_hat, &d).unwrap_or(0.0),
    }
}

/// Where a run writes, and when it stops early.
pub struct RunOptions {
    pub output: PathBuf,
    pub checkpoint: PathBuf,
    pub log: PathBuf,
    /// Stop (with a checkpoint) after this many steps of the run, before its end.
    pub stop_after: Option<u64>,
    pub step_overlap: StepOverlap,
    /// Told of each step and each validation (the CLI draws a bar); `()` for silence.
    pub progress: Box<dyn Progress>,
}

/// Where a run reports how far it is.
pub trait Progress {
    /// Before the first step: `done` of the run's `total` steps are done.
    fn start(&self, done: u64, total: u64);
    /// `done` steps are done.
    fn step(&self, done: u64);
    /// A one-line summary of the latest validation.
    fn summary(&self, line: String);
    /// The run is over.
    fn finish(&self);
}

impl Progress for () {
    fn start(&self, _: u64, _: u64) {}
    fn step(&self, _: u64) {}
    fn summary(&self, _: String) {}
    fn finish(&self) {}
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// All steps done; the model is at `output`.
    Finished { step: u64 },
    /// Stopped early (stop_after or interrupt); resume from the checkpoint.
    Stopped { step: u64, interrupted: bool },
}

/// Runs `start.config` from `start.step` to its end (or `stop_after`).
pub fn run(
    gpu: &Gpu,
    ops: &Ops,
    source: DataSource,
    validation: &[ValidationSet],
    start: Checkpoint,
    options: &RunOptions,
    interrupted: &AtomicBool,
) -> Result<Outcome> {
    let config = start.config.clone();
    let mut start = start;
    if start.step == 0 && config.learn_scale {
        // The scale only needs typical pairs: the first batch without hard examples.
        let first = source.generator.batch(config.seed, 0, config.pairs, None);
        let scale = calibrated_scale(gpu, ops, &start.state, &first)?;
        let at = start.state.log_scale_at();
        start.state.params[at] = scale.ln();
    }
    let mut trainer = Trainer::new(
        gpu,
        ops,
        &start.state,
        config.pairs,
        config.learn_scale,
        config.objective,
    )?;
    let end = options
        .stop_after
        .map_or(config.steps, |s| s.min(config.steps))
        .max(start.step);
    // A fresh run starts a fresh log; a resumed one appends to it.
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(start.step > 0)
        .truncate(start.step == 0)
        .open(&options.log)
        .with_context(|| format!("cannot open training log {}", options.log.display()))?;
    let bar = &options.progress;
    bar.start(start.step, config.steps);
    // PyTorch counts BatchNorm's training batches in the model: one per step.
    let tracked_base = start.num_batches_tracked - start.step as i64;
    let mut checkpoint = start;
    let mut interval_start = (checkpoint.step, Instant::now());
    let mut data = Data::new(source, &config, tracked_base, end);
    if checkpoint.step < end {
        // Before the first validation, so batches are ready when training starts.
        data.start_segment(gpu, ops, &trainer, checkpoint.step)?;
    }
    let mut waited_before = Duration::ZERO;
    if checkpoint.step == 0 {
        let line = report(gpu, &trainer, &checkpoint, validation, None)?;
        write_log(&mut log, &line, &options.log)?;
        bar.summary(summary(&line));
    }
    let mut step = checkpoint.step;
    let mut saved_at = step;
    let mut stopped_by_signal = false;
    let mut steps = StepQueue::new(gpu, options.step_overlap);
    while step < end {
        if interrupted.load(Ordering::SeqCst) {
            stopped_by_signal = true;
            break;
        }
        let Some((t, batch)) = data.next(gpu, ops, &trainer, step)? else {
            break;
        };
        debug_assert_eq!(t, step);
        let hyper = AdamWStep {
            lr: config.lr_at(step + 1),
            weight_decay: config.weight_decay,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            step: step + 1,
            clip: config.clip,
        };
        steps.submitted(gpu, trainer.step(&batch, &hyper)?)?;
        step += 1;
        bar.step(step);
        let validate = step.is_multiple_of(config.val_every.max(1)) || step == config.steps;
        let save = step.is_multiple_of(config.checkpoint_every.max(1)) || step == end;
        if validate || save {
            checkpoint.step = step;
            checkpoint.state = trainer.state()?;
            checkpoint.num_batches_tracked = tracked_base + step as i64;
            checkpoint.hard = data.saved_table(step);
        }
        if validate {
            let (from, since) = interval_start;
            let seconds = since.elapsed().as_secs_f64();
            let waited = data.waited() - waited_before;
            waited_before = data.waited();
            let rate = Rate {
                losses: trainer.losses(from, step)?,
                examples: config.objective.examples_name(),
                per_s: ((step - from) as usize * config.pairs) as f64 / seconds.max(1e-9),
                data_wait_s: waited.as_secs_f64(),
                hard_build_s: data.take_build_time().map(|t| t.as_secs_f64()),
                lr: hyper.lr,
                grad_norm: trainer.grad_norm()?,
            };
            let line = report(gpu, &trainer, &checkpoint, validation, Some(rate))?;
            write_log(&mut log, &line, &options.log)?;
            bar.summary(summary(&line));
            interval_start = (step, Instant::now());
        }
        if validate || save {
            check_finite(&checkpoint, &trainer)?;
        }
        if save {
            checkpoint.save(&options.checkpoint)?;
            saved_at = step;
        }
    }
    bar.finish();
    if step < config.steps || stopped_by_signal {
        if saved_at != step {
            checkpoint.step = step;
            checkpoint.state = trainer.state()?;
            checkpoint.num_batches_tracked = tracked_base + step as i64;
            checkpoint.hard = data.saved_table(step);
            check_finite(&checkpoint, &trainer)?;
            checkpoint.save(&options.checkpoint)?;
        }
        return Ok(Outcome::Stopped {
            step,
            interrupted: stopped_by_signal,
        });
    }
    let weights = checkpoint.state.weights(checkpoint.num_batches_tracked);
    weights.save(&options.output)?;
    Ok(Outcome::Finished { step })
}

/// The distance scale that minimises the PNLL loss of `batch` for the embeddings of
/// `state` as training sees them (batch norm on the batch's own statistics):
/// d/ds sum(s D - d log(s D)) = 0 gives s = sum d / sum D, D = ||e1 - e2||^2.
///
/// A run with a learned scale starts from it: batch statistics depend on the data, so a
/// model fine-tuned on a narrow corpus (short, similar words: a few times smaller
/// variance before batch norm than synthetic pairs) would otherwise start with every
/// distance inflated several-fold, and log s learns at the learning rate, far too slowly
/// to catch up; the weights would be wrecked compensating. Nothing of `state` changes
/// but log s (the batch-norm statistics of this pass are thrown away).
pub fn calibrated_scale(
    gpu: &Gpu,
    ops: &Ops,
    state: &TrainState,
    batch: &PairBatch,
) -> Result<f32> {
    let mut probe = Trainer::new(gpu, ops, state, batch.len(), false, Objective::Pnll)?;
    probe.gradients(batch)?;
    let e = probe.read_embeddings()?;
    let n = batch.len();
    let sum_d: f64 = batch.labels.iter().map(|&d| f64::from(d)).sum();
    let row = |i: usize| &e[i * state.widths.dim..(i + 1) * state.widths.dim];
    let sum_sq: f64 = (0..n).map(|p| squared_distance(row(p), row(n + p))).sum();
    let scale = (sum_d / sum_sq) as f32;
    Ok(if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        state.scale()
    })
}

/// What a run's batches are drawn from: the generator and, for a resumed run with hard
/// examples, the table its checkpoint holds, checked against the corpus. Made before the
/// GPU starts, so a checkpoint that does not fit its corpus fails early.
pub struct DataSource {
    generator: Arc<PairGenerator>,
    table: Option<Neighbours>,
}

impl DataSource {
    pub fn new(generator: Arc<PairGenerator>, start: &Checkpoint) -> Result<Self> {
        let corpus = generator.strings();
        let table = match (&start.config.hard, &start.hard) {
            (Some(hard), Some(saved)) => Some(Neighbours::restored(
                hard,
                start.config.seed,
                corpus,
                saved,
            )?),
            (Some(_), None) if distinct_places(corpus).len() < 2 => {
                bail!("hard examples need at least 2 different corpus strings")
            }
            _ => None,
        };
        Ok(DataSource { generator, table })
    }

    pub fn generator(&self) -> &PairGenerator {
        &self.generator
    }
}

/// The batches of a run: made ahead on a thread, in segments between rebuilds of the
/// hard-example table (a segment's batches all draw from one table).
struct Data {
    generator: Arc<PairGenerator>,
    table: Option<Arc<Neighbours>>,
    seed: u64,
    examples: usize,
    objective: Objective,
    hard: Option<HardConfig>,
    /// Batch norm's batch count at step 0 (it counts one a step).
    tracked_base: i64,
    /// The run's last step (exclusive).
    end: u64,
    prefetch: Option<Prefetch<TrainBatch>>,
    /// Where the current segment ends.
    segment_end: u64,
    /// Time the GPU waited on finished segments' data.
    waited: Duration,
    /// Time spent building tables since the last [`Data::take_build_time`].
    building: Duration,
}

impl Data {
    fn new(source: DataSource, config: &TrainConfig, tracked_base: i64, end: u64) -> Self {
        Data {
            generator: source.generator,
            table: source.table.map(Arc::new),
            seed: config.seed,
            examples: config.pairs,
            objective: config.objective,
            hard: config.hard,
            tracked_base,
            end,
            prefetch: None,
            segment_end: 0,
            waited: Duration::ZERO,
            building: Duration::ZERO,
        }
    }

    /// Starts making the batches of `step` on, up to the next rebuild; first rebuilds the
    /// table from `trainer`'s weights if `step` is due one.
    fn start_segment(&mut self, gpu: &Gpu, ops: &Ops, trainer: &Trainer, step: u64) -> Result<()> {
        self.segment_end = self.end;
        if let Some(hard) = self.hard {
            let built_at = hard.built_at(step);
            if self.table.as_ref().is_none_or(|t| t.step != built_at) {
                self.rebuild(gpu, ops, trainer, step, &hard)?;
            }
            self.segment_end = self.end.min(built_at + hard.every);
        }
        let next = self.spawn(step..self.segment_end);
        if let Some(old) = self.prefetch.replace(next) {
            self.waited += old.waited();
        }
        Ok(())
    }

    fn rebuild(
        &mut self,
        gpu: &Gpu,
        ops: &Ops,
        trainer: &Trainer,
        step: u64,
        hard: &HardConfig,
    ) -> Result<()> {
        // Checkpoint::load refuses a mid-span checkpoint without its table: a table built
        // here from later weights would change the run.
        if hard.built_at(step) != step {
            bail!("no hard-example table for step {step}");
        }
        let start = Instant::now();
        let weights = trainer.state()?.weights(self.tracked_base + step as i64);
        let (generator, seed) = (&self.generator, self.seed);
        let table = Neighbours::build(gpu, ops, &weights, generator, hard, seed, step)?;
        self.table = Some(Arc::new(table));
        self.building += start.elapsed();
        Ok(())
    }

    /// The batch of `step`, starting a new segment when the last one is used up.
    fn next(
        &mut self,
        gpu: &Gpu,
        ops: &Ops,
        trainer: &Trainer,
        step: u64,
    ) -> Result<Option<(u64, TrainBatch)>> {
        if step == self.segment_end {
            self.start_segment(gpu, ops, trainer, step)?;
        }
        Ok(self.prefetch.as_mut().and_then(Iterator::next))
    }

    fn spawn(&self, steps: Range<u64>) -> Prefetch<TrainBatch> {
        let (generator, table) = (self.generator.clone(), self.table.clone());
        let (seed, examples, objective) = (self.seed, self.examples, self.objective);
        Prefetch::spawn_with(steps, PREFETCH_DEPTH, move |step| {
            let hard = table.as_deref();
            match objective {
                Objective::Pnll => TrainBatch::Pairs(generator.batch(seed, step, examples, hard)),
                Objective::Ranking { .. } => {
                    TrainBatch::Triplets(generator.triplets(seed, step, examples, hard))
                }
            }
        })
    }

    /// Time the GPU has waited on data so far.
    fn waited(&self) -> Duration {
        self.waited
            + self
                .prefetch
                .as_ref()
                .map_or(Duration::ZERO, Prefetch::waited)
    }

    /// Time spent building tables since the last call; `None` without hard examples.
    fn take_build_time(&mut self) -> Option<Duration> {
        self.hard?;
        Some(std::mem::take(&mut self.building))
    }

    /// What a checkpoint at `step` keeps: the table steps from `step` on draw from, none
    /// at a rebuild step (the resumed run builds that one itself).
    fn saved_table(&self, step: u64) -> Option<SavedTable> {
        let hard = self.hard?;
        let table = self.table.as_ref()?;
        (hard.built_at(step) == table.step && table.step != step).then(|| table.saved())
    }
}

/// Refuses to save a diverged run over the last good checkpoint.
fn check_finite(checkpoint: &Checkpoint, trainer: &Trainer) -> Result<()> {
    let s = &checkpoint.state;
    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    if finite(&s.params) && finite(&s.exp_avg) && finite(&s.exp_avg_sq) && finite(&s.running) {
        return Ok(());
    }
    let norm = trainer.grad_norm().unwrap_or(f32::NAN);
    anyhow::bail!(
        "training diverged by step {} (non-finite weights; last gradient norm {norm}); \
         the previous checkpoint is kept. Try a lower --lr or --clip",
        checkpoint.step
    )
}

struct Rate {
    losses: Vec<f32>,
    /// What a step's examples are ("pairs" or "triplets"), and how many a second.
    examples: &'static str,
    per_s: f64,
    data_wait_s: f64,
    /// Seconds spent rebuilding hard-example tables, with hard examples.
    hard_build_s: Option<f64>,
    lr: f64,
    grad_norm: f32,
}

fn report(
    gpu: &Gpu,
    trainer: &Trainer,
    checkpoint: &Checkpoint,
    validation: &[ValidationSet],
    rate: Option<Rate>,
) -> Result<serde_json::Value> {
    let state = if checkpoint.step == 0 {
        trainer.state()?
    } else {
        checkpoint.state.clone()
    };
    let weights = state.weights(checkpoint.num_batches_tracked);
    let mut val = serde_json::Map::new();
    for set in validation {
        let d_hat = estimate(gpu, &weights, &set.pairs)?;
        let a = accuracy(&d_hat, &set.pairs.labels);
        val.insert(
            set.name.to_string(),
            json!({"mae": a.mae, "mre": a.mre, "spearman": a.spearman}),
        );
    }
    let mut line = json!({
        "step": checkpoint.step,
        "scale": state.scale(),
        "val": val,
    });
    if let Some(r) = rate {
        let mean =
            r.losses.iter().map(|&l| f64::from(l)).sum::<f64>() / r.losses.len().max(1) as f64;
        line["loss"] = json!(mean);
        line["lr"] = json!(r.lr);
        line["grad_norm"] = json!(r.grad_norm);
        line[format!("{}_per_s", r.examples)] = json!(r.per_s);
        line["data_wait_s"] = json!(r.data_wait_s);
        if let Some(seconds) = r.hard_build_s {
            line["hard_build_s"] = json!(seconds);
        }
    }
    Ok(line)
}

fn summary(line: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(loss) = line["loss"].as_f64() {
        parts.push(format!("loss {loss:.3}"));
    }
    if let Some(val) = line["val"].as_object() {
        for (name, m) in val {
            parts.push(format!(
                "{name} MAE {:.2} MRE {:.3} rho {:.3}",
                m["mae"].as_f64().unwrap_or(f64::NAN),
                m["mre"].as_f64().unwrap_or(f64::NAN),
                m["spearman"].as_f64().unwrap_or(f64::NAN)
            ));
        }
    }
    for examples in ["pairs", "triplets"] {
        if let Some(rate) = line[format!("{examples}_per_s")].as_f64() {
            parts.push(format!("{rate:.0} {examples}/s"));
        }
    }
    parts.join(" | ")
}

fn write_log(
    log: &mut std::fs::File,
    line: &serde_json::Value,
    path: &std::path::Path,
) -> Result<()> {
    writeln!(log, "{line}").with_context(|| format!("cannot write training log {}", path.display()))
}
