//! A CNN-ED training run (the official code's trainer.py and networks.py): epochs in which every
//! training string is an anchor once, in batches of triplets, with the official code's
//! loss schedule (or the paper's loss) and Adam; then the estimator's line fitted on the
//! training pairs.
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use rand::{SeedableRng, rngs::StdRng};

use super::cnn_ed::{CnnEdLoss, CnnEdState, CnnEdTrainer, Formulation, LossWeights};
use super::cnn_ed_data::{EstimateFit, TripletData, fit_estimate};
use super::trainer::{LOSS_SLOTS, StepOverlap, StepQueue};
use crate::gpu::Gpu;
use crate::model::cnn_ed::CnnEd;
use crate::ops::Ops;
use crate::ops::adamw::AdamWStep;

/// How long and how a run trains.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CnnEdRun {
    pub epochs: usize,
    /// Triplets per step (the official code's batch: 64).
    pub triplets: usize,
    /// Adam's learning rate (the official code's 1e-3).
    pub lr: f64,
    /// Seed of the epochs' order and partners.
    pub seed: u64,
    /// The loss and its schedule.
    pub loss: CnnEdLoss,
}

/// What one epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    pub epochs: usize,
    pub weights: LossWeights,
    /// Mean loss over the epoch's steps.
    pub loss: f64,
    pub triplets_per_s: f64,
}

/// What a run reports and asks while it trains.
pub trait CnnEdHooks {
    /// `done` of `total` steps are done.
    fn step(&mut self, done: u64, total: u64);
    /// An epoch ended.
    fn epoch(&mut self, report: &EpochReport) -> Result<()>;
    /// The state after `step` steps, with the current epoch's loss sum so far: at every
    /// epoch's end and when the run stops early.
    fn checkpoint(&mut self, step: u64, epoch_loss: f64, state: &CnnEdState) -> Result<()>;
    /// Whether to stop (with a checkpoint) after `step` steps.
    fn stop(&self, step: u64) -> bool;
}

/// Where a run starts: step 0 with a fresh optimizer, or a checkpoint's.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnEdStart {
    pub step: u64,
    /// The current epoch's loss sum so far.
    pub epoch_loss: f64,
    pub state: CnnEdState,
}

impl CnnEdStart {
    pub fn fresh(model: &CnnEd) -> Self {
        CnnEdStart {
            step: 0,
            epoch_loss: 0.0,
            state: CnnEdState::new(model),
        }
    }
}

/// How a run ended.
pub enum CnnEdOutcome {
    /// Every epoch done: the trained model, centred on the training strings' embeddings
    /// ([`CnnEd::center_on`]), with its estimator fitted on the training pairs
    /// ([`fit_estimator`]) as `fit` says.
    Finished { model: Box<CnnEd>, fit: EstimateFit },
    /// Stopped after `step` steps, with a checkpoint.
    Stopped { step: u64 },
}

/// Steps per epoch of `strings` training strings: every one is an anchor once.
pub fn steps_per_epoch(strings: usize, run: &CnnEdRun) -> u64 {
    strings.div_ceil(run.triplets) as u64
}

/// Epoch `epoch`'s triplets are drawn with this generator: a pure function of the seed
/// and the epoch, so a resumed run draws the same ones.
fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Trains `model` on `data` for `run.epochs` epochs from `start`, reporting to `hooks`.
pub fn train(
    gpu: &Gpu,
    ops: &Ops,
    model: &CnnEd,
    data: &TripletData,
    run: &CnnEdRun,
    start: &CnnEdStart,
    hooks: &mut impl CnnEdHooks,
) -> Result<CnnEdOutcome> {
    let per_epoch = steps_per_epoch(data.strings().len(), run);
    let total = per_epoch * run.epochs as u64;
    if start.step > total {
        bail!(
            "the checkpoint is at step {}, past the run's {total} steps",
            start.step
        );
    }
    let first_epoch = (start.step / per_epoch) as usize;
    let mut weights = run.loss.weights(first_epoch, run.epochs);
    let shape = model.shape();
    let strings = data.strings();
    let characters: usize = strings
        .iter()
        .map(|s| s.chars().count().min(shape.max_len))
        .sum();
    let mean_len = characters as f64 / strings.len().max(1) as f64;
    let formulation = Formulation::cheaper(gpu, &shape, run.triplets, mean_len)?;
    let mut trainer = CnnEdTrainer::new(
        gpu,
        ops,
        shape,
        formulation,
        &start.state,
        run.triplets,
        weights,
    )?;
    let mut queue = StepQueue::new(gpu, StepOverlap::Auto);
    let mut step = start.step;
    let mut unread = step;
    let mut epoch_loss = start.epoch_loss;
    for epoch in first_epoch..run.epochs {
        let started = Instant::now();
        if run.loss.weights(epoch, run.epochs) != weights {
            weights = run.loss.weights(epoch, run.epochs);
            trainer.set_loss(ops, weights);
        }
        let epoch_end = (epoch as u64 + 1) * per_epoch;
        let done_before = step - epoch as u64 * per_epoch;
        let triplets = data.epoch(&mut epoch_rng(run.seed, epoch));
        let mut trained = 0;
        for chunk in triplets.chunks(run.triplets).skip(done_before as usize) {
            let batch: Vec<_> = chunk.iter().map(|&t| (t, data.targets(t))).collect();
            step += 1;
            trained += chunk.len();
            let hyper = AdamWStep {
                lr: run.lr,
                weight_decay: 0.0,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                step,
                clip: 0.0,
            };
            queue.submitted(gpu, trainer.step(model, data.strings(), &batch, &hyper)?)?;
            hooks.step(step, total);
            let stop = step < epoch_end && hooks.stop(step);
            // Losses are read at the epoch's end, when stopping, or when the slots are full.
            if step == epoch_end || stop || step - unread == LOSS_SLOTS as u64 {
                queue.drain(gpu)?;
                epoch_loss += read_losses(&trainer, unread, step, per_epoch)?;
                unread = step;
            }
            if stop {
                hooks.checkpoint(step, epoch_loss, &trainer.state()?)?;
                return Ok(CnnEdOutcome::Stopped { step });
            }
        }
        hooks.epoch(&EpochReport {
            epoch: epoch + 1,
            epochs: run.epochs,
            weights,
            loss: epoch_loss / per_epoch as f64,
            triplets_per_s: trained as f64 / started.elapsed().as_secs_f64(),
        })?;
        epoch_loss = 0.0;
        hooks.checkpoint(step, epoch_loss, &trainer.state()?)?;
        if step < total && hooks.stop(step) {
            return Ok(CnnEdOutcome::Stopped { step });
        }
    }
    let params = trainer.state()?.params;
    let mut trained = model.with_params(params[..model.params().len()].to_vec())?;
    // One fold for both: centring moves only the bias, which no distance sees.
    let embeddings = trained.embed_all(data.strings());
    trained.center_on(&embeddings);
    let fit = fit_line_to(&mut trained, data, &embeddings)?;
    Ok(CnnEdOutcome::Finished {
        model: Box::new(trained),
        fit,
    })
}

/// The sum of the losses of steps `from + 1 ..= to`; an error naming the step and epoch
/// of the first that is not finite.
fn read_losses(trainer: &CnnEdTrainer, from: u64, to: u64, per_epoch: u64) -> Result<f64> {
    let mut sum = 0.0;
    for (t, loss) in (from + 1..).zip(trainer.losses(from, to)?) {
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at step {t} (epoch {}): lower --lr",
                (t - 1) / per_epoch + 1
            );
        }
        sum += f64::from(loss);
    }
    Ok(sum)
}

/// Fits the model's estimator, edit distance = slope * embedding distance + intercept,
/// by least squares over every pair of training strings (CNN-ED's linear g; through 0
/// when that line does not rise, [`fit_estimate`]). An error when every embedding is the
/// same.
pub fn fit_estimator(model: &mut CnnEd, data: &TripletData) -> Result<EstimateFit> {
    let embeddings = model.embed_all(data.strings());
    fit_line_to(model, data, &embeddings)
}

/// [`fit_estimator`] from the strings' embeddings.
fn fit_line_to(model: &mut CnnEd, data: &TripletData, embeddings: &[f32]) -> Result<EstimateFit> {
    let points = pairs(embeddings, model.dim(), data)
        .map(|(d, ed)| (d, f64::from(ed)))
        .collect::<Vec<_>>();
    let fit = fit_estimate(&points).ok_or_else(|| {
        anyhow!(
            "every training string has the same embedding, so no estimate can be fitted: \
             train longer or on more varied strings"
        )
    })?;
    model.set_estimator(fit.slope as f32, fit.intercept as f32);
    Ok(fit)
}

/// The mean relative error |d̂ - ED| / ED of `model`'s estimate over the pairs of
/// `data`'s strings at a positive distance (CNN-ED's Table 2 measure); `None` without
/// such pairs.
pub fn relative_error(model: &CnnEd, data: &TripletData) -> Option<f64> {
    let estimator = model.estimator();
    let (mut sum, mut count) = (0.0, 0usize);
    let embeddings = model.embed_all(data.strings());
    for (d, ed) in pairs(&embeddings, model.dim(), data).filter(|p| p.1 > 0) {
        let truth = f64::from(ed);
        sum += (f64::from(estimator.estimate((d * d) as f32)) - truth).abs() / truth;
        count += 1;
    }
    (count > 0).then(|| sum / count as f64)
}

/// (embedding distance, edit distance) of every pair of `data`'s strings, from their
/// embeddings `[strings, dim]`.
fn pairs<'a>(
    embeddings: &'a [f32],
    dim: usize,
    data: &'a TripletData,
) -> impl Iterator<Item = (f64, u32)> + 'a {
    let row = move |k: usize| &embeddings[k * dim..(k + 1) * dim];
    data.pairs().map(move |(i, j, ed)| {
        let d = crate::stats::squared_distance(row(i), row(j)).sqrt();
        (d, ed)
    })
}
