//! A CNN-ED training run (the official code's trainer.py and networks.py): epochs in which every
//! training string is an anchor once, in batches of triplets, with the official code's
//! loss schedule and Adam; then the estimator's line fitted on the training pairs.
use std::time::Instant;

use anyhow::{Result, anyhow};
use rand::{SeedableRng, rngs::StdRng};

use super::cnn_ed::{CnnEdState, CnnEdTrainer, Formulation, LossWeights, official_schedule};
use super::cnn_ed_data::{TripletData, fit_line};
use super::trainer::{LOSS_SLOTS, StepOverlap, StepQueue};
use crate::gpu::Gpu;
use crate::model::cnn_ed::CnnEd;
use crate::ops::Ops;
use crate::ops::adamw::AdamWStep;

/// How long and how a run trains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CnnEdRun {
    pub epochs: usize,
    /// Triplets per step (the official code's batch: 64).
    pub triplets: usize,
    /// Adam's learning rate (the official code's 1e-3).
    pub lr: f64,
    /// Seed of the epochs' order and partners.
    pub seed: u64,
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

/// Trains `model` on `data` for `run.epochs` epochs; `on_step(done, total)` after every
/// step, `on_epoch` after every epoch. Returns the trained model, centred on the training
/// strings' embeddings ([`CnnEd::center_on`]), with its estimator fitted on the training
/// pairs ([`fit_estimator`]).
pub fn train(
    gpu: &Gpu,
    ops: &Ops,
    model: &CnnEd,
    data: &TripletData,
    run: &CnnEdRun,
    mut on_step: impl FnMut(u64, u64),
    mut on_epoch: impl FnMut(&EpochReport) -> Result<()>,
) -> Result<CnnEd> {
    let n = data.strings().len();
    let steps_per_epoch = n.div_ceil(run.triplets) as u64;
    let total = steps_per_epoch * run.epochs as u64;
    let state = CnnEdState::new(model);
    let first = official_schedule(0, run.epochs);
    let shape = model.shape();
    let formulation = Formulation::cheaper(gpu, &shape, run.triplets)?;
    let mut trainer = CnnEdTrainer::new(gpu, ops, shape, formulation, &state, run.triplets, first)?;
    let mut rng = StdRng::seed_from_u64(run.seed);
    let mut queue = StepQueue::new(gpu, StepOverlap::Auto);
    let mut step = 0u64;
    let mut weights = first;
    for epoch in 0..run.epochs {
        let started = Instant::now();
        if official_schedule(epoch, run.epochs) != weights {
            weights = official_schedule(epoch, run.epochs);
            trainer.set_loss(ops, weights);
        }
        let (epoch_start, mut unread) = (step, step);
        let mut loss_sum = 0.0;
        let triplets = data.epoch(&mut rng);
        for chunk in triplets.chunks(run.triplets) {
            let batch: Vec<_> = chunk.iter().map(|&t| (t, data.targets(t))).collect();
            step += 1;
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
            on_step(step, total);
            // Losses are read at the epoch's end, or sooner when the slots are full.
            if step == epoch_start + steps_per_epoch || step - unread == LOSS_SLOTS as u64 {
                queue.drain(gpu)?;
                for (t, loss) in (unread + 1..).zip(trainer.losses(unread, step)?) {
                    if !loss.is_finite() {
                        return Err(anyhow!(
                            "the loss became {loss} at step {t} (epoch {}): lower --lr",
                            epoch + 1
                        ));
                    }
                    loss_sum += f64::from(loss);
                }
                unread = step;
            }
        }
        on_epoch(&EpochReport {
            epoch: epoch + 1,
            epochs: run.epochs,
            weights,
            loss: loss_sum / steps_per_epoch as f64,
            triplets_per_s: n as f64 / started.elapsed().as_secs_f64(),
        })?;
    }
    let params = trainer.state()?.params;
    let mut trained = model.with_params(params[..model.params().len()].to_vec())?;
    // One fold for both: centring moves only the bias, which no distance sees.
    let embeddings = trained.embed_all(data.strings());
    trained.center_on(&embeddings);
    fit_line_to(&mut trained, data, &embeddings)?;
    Ok(trained)
}

/// Fits the model's estimator, edit distance = slope * embedding distance + intercept,
/// by least squares over every pair of training strings (CNN-ED's linear g). An error
/// when the distances do not grow with edit distance (a slope of 0 or less).
pub fn fit_estimator(model: &mut CnnEd, data: &TripletData) -> Result<()> {
    let embeddings = model.embed_all(data.strings());
    fit_line_to(model, data, &embeddings)
}

/// [`fit_estimator`] from the strings' embeddings.
fn fit_line_to(model: &mut CnnEd, data: &TripletData, embeddings: &[f32]) -> Result<()> {
    let points = pairs(embeddings, model.dim(), data)
        .map(|(d, ed)| (d, f64::from(ed)))
        .collect::<Vec<_>>();
    match fit_line(&points) {
        Some((slope, intercept)) if slope > 0.0 => {
            model.set_estimator(slope as f32, intercept as f32);
            Ok(())
        }
        _ => Err(anyhow!(
            "the embedding distances of the training pairs do not grow with their edit \
             distances, so no estimate can be fitted: train longer or on more varied strings"
        )),
    }
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
    let n = data.strings().len();
    (0..n)
        .flat_map(move |i| (i + 1..n).map(move |j| (i, j)))
        .map(move |(i, j)| {
            let row = |k: usize| &embeddings[k * dim..(k + 1) * dim];
            let d = crate::stats::squared_distance(row(i), row(j)).sqrt();
            (d, data.distance(i, j))
        })
}
