//! The explicit training step on the GPU: forward of both sides of every pair as one
//! batch, the PNLL pair loss, every layer's backward pass in reverse order, AdamW. No
//! autograd: the order of the calls below is the chain rule.
//!
//! Parameters, gradients and both AdamW moments are four slabs of one layout: the
//! model's parameters at its widths ([`crate::model::params::Widths`]) followed by
//! `log_s`, the log of the distance scale. Every gradient is overwritten by exactly one
//! call per step, so nothing accumulates across steps (the reference's missing
//! `zero_grad`). Every kernel sums in a fixed order, so a step is a pure function of the
//! slabs and the batch: a resumed run reproduces an uninterrupted one bit for bit.
//!
//! The forward pass is the model's own ([`forward_calls`]), with what it derives from the
//! slab (block 0's pair tables, the packed weights) derived again before every step.
//! Block 0 stays folded: the backward pass gathers the tap tables' gradient per
//! character and maps it back onto conv0 and the embedding, which removes the unfolded
//! conv0 (70% of the model's arithmetic) from both passes. Blocks 1-4 go back through
//! their pooled form at the pooled length, like their forward.
//!
//! [`Trainer::new`] reads top to bottom: allocation (slabs, inputs, activations and
//! their gradients, all named), then `forward_step`, the loss, `backward_step` and
//! AdamW, each a list of calls built once.
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::gpu::{Calls, Gpu, Readback, storage_buffer, storage_buffer_init};
use crate::model::megashtein::{Activations, Derived, forward_calls, layers};
use crate::model::params::{CONV_BLOCKS, MAX_LEN, VOCAB, Widths};
use crate::model::weights::{ARCH, Weights};
use crate::ops::Ops;
use crate::ops::adamw::{AdamWBuffers, AdamWCalls, AdamWStep};
use crate::ops::conv1d::Conv1dGrads;
use crate::ops::embedding::{EmbeddingShape, positions_by_token, positions_len};
use crate::ops::linear::LinearGrads;
use crate::ops::pnll::{LossBuffers, LossCall, LossShape};
use crate::ops::ranking::RankingWeights;
use crate::ops::weight_grad::SEGMENT;

use super::data::Examples;

/// Loss values kept on the GPU between readbacks (one per step, cyclic).
pub const LOSS_SLOTS: usize = 4096;

const F32: u64 = 4;

/// Everything a checkpoint needs from the GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// The model's layer widths, which set the slabs' layout.
    pub widths: Widths,
    /// [`slab_len`] values: the model's parameters, then log_s.
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
    /// BatchNorm running mean ++ running variance.
    pub running: Vec<f32>,
}

impl TrainState {
    /// A fresh optimizer state for `weights` with distance scale `scale`.
    pub fn new(weights: &Weights, scale: f32) -> Self {
        let mut params = weights.params.clone();
        params.push(scale.ln());
        let len = slab_len(&weights.widths);
        TrainState {
            widths: weights.widths,
            params,
            exp_avg: vec![0.0; len],
            exp_avg_sq: vec![0.0; len],
            running: [weights.running_mean.as_slice(), &weights.running_var].concat(),
        }
    }

    /// Where log_s sits in the slabs: after the parameters.
    pub fn log_scale_at(&self) -> usize {
        self.widths.num_params()
    }

    pub fn scale(&self) -> f32 {
        self.params[self.log_scale_at()].exp()
    }

    /// The model in these slabs (BN's batch count is the caller's to set).
    pub fn weights(&self, num_batches_tracked: i64) -> Weights {
        let dim = self.widths.dim;
        Weights {
            widths: self.widths,
            params: self.params[..self.log_scale_at()].to_vec(),
            running_mean: self.running[..dim].to_vec(),
            running_var: self.running[dim..].to_vec(),
            num_batches_tracked,
            distance_scale: self.scale(),
            arch: ARCH.to_string(),
        }
    }
}

/// Length of the parameter, gradient and moment slabs at `widths`: the parameters, then
/// log_s.
pub fn slab_len(widths: &Widths) -> usize {
    widths.num_params() + 1
}

pub struct Trainer<'g> {
    gpu: &'g Gpu,
    /// Examples per step: pairs, or triplets.
    examples: usize,
    objective: Objective,
    slabs: Slabs,
    inputs: Inputs,
    acts: Activations,
    /// Kept for the calls that read them.
    _grads: ActivationGrads,
    _derived: Derived,
    /// Derives tables and packed weights from the slab: recorded with batch 1.
    prepare: Calls,
    forward: Calls,
    loss: LossCall,
    backward: Calls,
    adamw: AdamWCalls,
}

/// Parameters, their gradients, AdamW's moments and what the step keeps beside them.
struct Slabs {
    /// The model's widths, which set the slabs' layout.
    widths: Widths,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    exp_avg: wgpu::Buffer,
    exp_avg_sq: wgpu::Buffer,
    /// BatchNorm running mean ++ running variance.
    running: wgpu::Buffer,
    /// The gradient norm and clip factor of the last step.
    norm: wgpu::Buffer,
    /// One loss per step, cyclic.
    losses: wgpu::Buffer,
}

impl Slabs {
    fn new(gpu: &Gpu, state: &TrainState) -> Self {
        Slabs {
            widths: state.widths,
            params: storage_buffer_init(gpu, "params", &state.params),
            grads: storage_buffer(gpu, "grads", state.params.len() as u64 * F32),
            exp_avg: storage_buffer_init(gpu, "exp_avg", &state.exp_avg),
            exp_avg_sq: storage_buffer_init(gpu, "exp_avg_sq", &state.exp_avg_sq),
            running: storage_buffer_init(gpu, "bn running stats", &state.running),
            norm: storage_buffer_init(gpu, "grad norm", &[0.0f32, 1.0]),
            losses: storage_buffer(gpu, "losses", LOSS_SLOTS as u64 * F32),
        }
    }
}

/// One step's batch on the device.
struct Inputs {
    /// `[rows, 80]` u8: side a of pair p is row 2p, side b row 2p + 1.
    tokens: wgpu::Buffer,
    /// The tokens' positions grouped by token (`positions_by_token`).
    positions: wgpu::Buffer,
    /// f32 edit distances: `[pairs]`, or `[triplets, 3]`.
    labels: wgpu::Buffer,
}

impl Inputs {
    fn new(gpu: &Gpu, rows: usize, labels: usize) -> Self {
        let positions = rows * MAX_LEN;
        Inputs {
            tokens: storage_buffer(gpu, "tokens", positions as u64),
            positions: storage_buffer(gpu, "positions", positions_len(positions, VOCAB) as u64 * 4),
            labels: storage_buffer(gpu, "labels", labels as u64 * F32),
        }
    }
}

/// The gradients of the activations, each the shape of what it is the gradient of.
struct ActivationGrads {
    /// Of each block's output; the ReLU is undone in place.
    blocks: Vec<wgpu::Buffer>,
    /// Of the folded tap tables, `[3, vocab, channels]`.
    taps: wgpu::Buffer,
    hidden: wgpu::Buffer,
    projected: wgpu::Buffer,
    embeddings: wgpu::Buffer,
    /// The batch norm's batch mean and variance, saved by the forward pass.
    bn_stats: wgpu::Buffer,
}

impl ActivationGrads {
    fn new(gpu: &Gpu, w: &Widths, rows: usize) -> Self {
        let buffer =
            |label: &str, per_row: usize| storage_buffer(gpu, label, (rows * per_row) as u64 * F32);
        ActivationGrads {
            blocks: (1..=CONV_BLOCKS)
                .map(|b| buffer("d block output", w.channels * layers::block_len(b)))
                .collect(),
            taps: storage_buffer(
                gpu,
                "d tap tables",
                layers::block0(w).tap_grads_len() as u64 * F32,
            ),
            hidden: buffer("d hidden", w.hidden),
            projected: buffer("d projected", w.dim),
            embeddings: buffer("d embeddings", w.dim),
            bn_stats: storage_buffer(gpu, "bn batch stats", 2 * w.dim as u64 * F32),
        }
    }
}

/// What a step minimises.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Objective {
    /// PNLL on pairs: the reference model's loss.
    #[default]
    Pnll,
    /// Triplets: the ranking hinge, the approximation term and PNLL on their three
    /// pairs, weighted (`ops::ranking`), on the squared distance.
    Ranking { hinge: f32, approx: f32, pnll: f32 },
}

impl Objective {
    /// Strings per example: every string of a step goes through the model as one batch.
    pub fn rows(self) -> usize {
        match self {
            Objective::Pnll => 2,
            Objective::Ranking { .. } => 3,
        }
    }

    /// What one example is, for logs: "pairs" or "triplets".
    pub fn examples_name(self) -> &'static str {
        match self {
            Objective::Pnll => "pairs",
            Objective::Ranking { .. } => "triplets",
        }
    }

    /// Labels per example.
    fn labels(self) -> usize {
        match self {
            Objective::Pnll => 1,
            Objective::Ranking { .. } => 3,
        }
    }
}

impl<'g> Trainer<'g> {
    /// The most examples of `objective` one step at `widths` can take on this device
    /// (the largest activation for every string, [`Widths::widest_activation`], must fit
    /// one storage binding).
    pub fn max_examples(gpu: &Gpu, widths: &Widths, objective: Objective) -> usize {
        let rows = objective.rows() as u64;
        let per_pair = rows * widths.widest_activation() as u64 * F32;
        // Shader indices are u32, and a weight gradient's segments (SEGMENT positions
        // each) are one grid dimension of at most 65,535 workgroups; the longest
        // reduction is block 1's, over its pooled output.
        let index_limit = (u64::from(u32::MAX) / 4) / per_pair;
        let longest_reduction = layers::block_len(2) as u64;
        let grid_limit = 65_535 * u64::from(SEGMENT) / (rows * longest_reduction);
        (gpu.max_binding_bytes() / per_pair)
            .min(index_limit)
            .min(grid_limit)
            .max(1) as usize
    }

    /// A trainer for steps of exactly `examples` examples of `objective`, starting from
    /// `state`. With `learn_scale` false, log_s stays at its value in `state`.
    /// Allocation, then the forward calls, the loss, the backward calls and AdamW, each
    /// built once.
    pub fn new(
        gpu: &'g Gpu,
        ops: &Ops,
        state: &TrainState,
        examples: usize,
        learn_scale: bool,
        objective: Objective,
    ) -> Result<Self> {
        check_state(state)?;
        let widths = state.widths;
        let most = Self::max_examples(gpu, &widths, objective);
        if examples == 0 || examples > most {
            bail!("a batch of {examples} examples does not fit this device: use 1 to {most}");
        }
        crate::ops::check_tile_limits(gpu)?;
        let rows = examples * objective.rows();
        let slabs = Slabs::new(gpu, state);
        let inputs = Inputs::new(gpu, rows, examples * objective.labels());
        let acts = Activations::new(gpu, &widths, rows);
        let grads = ActivationGrads::new(gpu, &widths, rows);
        let derived = Derived::new(gpu, ops, &widths, &slabs.params);

        let forward = forward_step(gpu, ops, &slabs, &inputs, &derived, &acts, &grads);
        let log_scale = state.log_scale_at();
        let shape = LossShape {
            dim: widths.dim as u32,
            log_scale: log_scale as u32,
            learn: learn_scale,
        };
        let buffers = LossBuffers {
            e: &acts.embeddings,
            labels: &inputs.labels,
            params: &slabs.params,
            de: &grads.embeddings,
            grads: &slabs.grads,
            losses: &slabs.losses,
        };
        let loss = match objective {
            Objective::Pnll => ops.pnll.forward_backward(gpu, shape, &buffers),
            Objective::Ranking {
                hinge,
                approx,
                pnll,
            } => {
                let weights = RankingWeights {
                    hinge,
                    approx,
                    absolute: 0.0,
                    pnll,
                    squared: true,
                };
                ops.ranking.forward_backward(gpu, shape, weights, &buffers)
            }
        };
        let backward = backward_step(gpu, ops, rows, &slabs, &inputs, &acts, &grads);
        let mut ranges = vec![(0..log_scale, true)];
        if learn_scale {
            ranges.push((log_scale..log_scale + 1, false));
        }
        let adamw = ops.adamw.calls(
            gpu,
            AdamWBuffers {
                params: &slabs.params,
                grads: &slabs.grads,
                m: &slabs.exp_avg,
                v: &slabs.exp_avg_sq,
                norm: &slabs.norm,
            },
            &ranges,
        );
        let mut trainer = Trainer {
            gpu,
            examples,
            objective,
            prepare: derived.prepare(),
            slabs,
            inputs,
            acts,
            _grads: grads,
            _derived: derived,
            forward,
            loss,
            backward,
            adamw,
        };
        let rows = trainer.rows();
        trainer.forward.set_batch(gpu, rows);
        trainer.backward.set_batch(gpu, rows);
        trainer.loss.set(gpu, examples as u32, 0);
        Ok(trainer)
    }

    /// Strings per step.
    fn rows(&self) -> u32 {
        (self.examples * self.objective.rows()) as u32
    }

    /// Uploads a batch of exactly `examples()` examples of the trainer's objective.
    fn upload<E: Examples>(&mut self, batch: &E, slot: usize) -> Result<()> {
        if batch.len() != self.examples || batch.rows() != self.objective.rows() {
            bail!(
                "a batch of {} examples of {} strings given to a trainer of {} examples of {}",
                batch.len(),
                batch.rows(),
                self.examples,
                self.objective.rows()
            );
        }
        let tokens = batch.tokens();
        let positions = positions_by_token(&tokens, VOCAB);
        let labels = batch.labels();
        let queue = &self.gpu.queue;
        let inputs = &self.inputs;
        queue.write_buffer(&inputs.tokens, 0, &tokens);
        queue.write_buffer(&inputs.positions, 0, bytemuck::cast_slice(&positions));
        queue.write_buffer(&inputs.labels, 0, bytemuck::cast_slice(&labels));
        self.loss
            .set(self.gpu, self.examples as u32, (slot % LOSS_SLOTS) as u32);
        Ok(())
    }

    /// Records forward, loss and backward: the gradient slab holds this batch's gradients.
    fn record_gradients(&self, pass: &mut wgpu::ComputePass) {
        let rows = self.rows();
        self.prepare.record(pass, self.gpu, 1);
        self.forward.record(pass, self.gpu, rows);
        self.loss.record(pass, self.gpu);
        self.backward.record(pass, self.gpu, rows);
    }

    /// One training step (gradients, then AdamW), submitted without waiting; the loss of
    /// 1-based step t lands in slot `(t - 1) % LOSS_SLOTS` of [`Trainer::losses`].
    /// Uploads for the next step may follow at once (the queue orders them after this
    /// step's reads); hand the returned submission to a [`StepQueue`].
    pub fn step<E: Examples>(
        &mut self,
        batch: &E,
        hyper: &AdamWStep,
    ) -> Result<wgpu::SubmissionIndex> {
        self.upload(batch, hyper.step.saturating_sub(1) as usize)?;
        self.adamw.set(self.gpu, hyper);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_gradients(&mut pass);
            self.adamw.record(&mut pass, self.gpu);
        }
        Ok(self.gpu.queue.submit([encoder.finish()]))
    }

    /// Time each kernel of one step on `batch` on its own (forward, backward; the loss
    /// and AdamW are small).
    pub fn profile<E: Examples>(&mut self, batch: &E) -> Result<Vec<(&'static str, f64)>> {
        self.gradients(batch)?;
        let rows = self.rows();
        let mut times = self.forward.time_each(self.gpu, rows, 5)?;
        times.extend(self.backward.time_each(self.gpu, rows, 5)?);
        Ok(times)
    }

    /// Forward, loss and backward only (no update; batch norm's running statistics do
    /// move, as in any training-mode forward); waits for the GPU.
    pub fn gradients<E: Examples>(&mut self, batch: &E) -> Result<()> {
        self.upload(batch, 0)?;
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_gradients(&mut pass);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait()
    }

    /// One AdamW update from the gradient slab as it stands (tests feed it gradients
    /// with [`Trainer::write_grads`]).
    pub fn update(&mut self, hyper: &AdamWStep) -> Result<()> {
        self.adamw.set(self.gpu, hyper);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.adamw.record(&mut pass, self.gpu);
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait()
    }

    /// The losses of steps `from + 1 ..= to` (1-based; at most `LOSS_SLOTS` of them),
    /// waiting for the GPU.
    pub fn losses(&self, from: u64, to: u64) -> Result<Vec<f32>> {
        let all: Vec<f32> = self.gpu.read_buffer(&self.slabs.losses, LOSS_SLOTS)?;
        Ok((from..to).map(|s| all[s as usize % LOSS_SLOTS]).collect())
    }

    /// The norm of the last step's gradient, before clipping.
    pub fn grad_norm(&self) -> Result<f32> {
        Ok(self.gpu.read_buffer::<f32>(&self.slabs.norm, 2)?[0])
    }

    pub fn read_grads(&self) -> Result<Vec<f32>> {
        self.gpu
            .read_buffer(&self.slabs.grads, slab_len(&self.slabs.widths))
    }

    pub fn write_grads(&self, grads: &[f32]) {
        self.gpu
            .queue
            .write_buffer(&self.slabs.grads, 0, bytemuck::cast_slice(grads));
    }

    /// The train-mode embeddings of the last forward, `[rows, dim]`.
    pub fn read_embeddings(&self) -> Result<Vec<f32>> {
        self.gpu.read_buffer(
            &self.acts.embeddings,
            self.rows() as usize * self.slabs.widths.dim,
        )
    }

    /// Everything a checkpoint holds, read back in one submit.
    pub fn state(&self) -> Result<TrainState> {
        let s = &self.slabs;
        let widths = self.slabs.widths;
        let slab_bytes = slab_len(&widths) as u64 * F32;
        let running_bytes = 2 * widths.dim as u64 * F32;
        let readbacks: Vec<(Readback, &wgpu::Buffer, u64)> = [
            (&s.params, slab_bytes),
            (&s.exp_avg, slab_bytes),
            (&s.exp_avg_sq, slab_bytes),
            (&s.running, running_bytes),
        ]
        .into_iter()
        .map(|(b, bytes)| (Readback::new(self.gpu, bytes), b, bytes))
        .collect();
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for (r, b, bytes) in &readbacks {
            r.copy(&mut encoder, b, *bytes);
        }
        self.gpu.queue.submit([encoder.finish()]);
        let mut values = readbacks
            .iter()
            .map(|(r, _, bytes)| r.read::<f32>(self.gpu, *bytes));
        let mut next = || values.next().expect("four readbacks");
        Ok(TrainState {
            widths,
            params: next()?,
            exp_avg: next()?,
            exp_avg_sq: next()?,
            running: next()?,
        })
    }
}

/// The training forward: the model's forward pass ([`forward_calls`]) keeping every
/// activation, and the batch norm on the batch's statistics (moving the running ones).
fn forward_step(
    gpu: &Gpu,
    ops: &Ops,
    slabs: &Slabs,
    inputs: &Inputs,
    derived: &Derived,
    acts: &Activations,
    grads: &ActivationGrads,
) -> Calls {
    let mut calls = forward_calls(gpu, ops, &slabs.params, derived, &inputs.tokens, acts);
    calls.push(ops.batchnorm.train_forward(
        gpu,
        layers::batchnorm(&slabs.widths),
        &acts.projected,
        &slabs.params,
        &slabs.running,
        &acts.embeddings,
        &grads.bn_stats,
    ));
    calls
}

/// Every layer's backward pass in reverse, from the loss's gradient at the embeddings
/// to the gradient slab. Block 0 goes back through the fold: the tables' gradient is
/// gathered per character and mapped onto conv0 and the embedding.
fn backward_step(
    gpu: &Gpu,
    ops: &Ops,
    rows: usize,
    slabs: &Slabs,
    inputs: &Inputs,
    acts: &Activations,
    grads: &ActivationGrads,
) -> Calls {
    let (params, slab, w) = (&slabs.params, &slabs.grads, &slabs.widths);
    let (a, da) = (&acts.blocks, &grads.blocks);
    let (fc0, fc2) = (layers::fc0(w), layers::fc2(w));
    let mut calls = Calls::from(ops.batchnorm.backward(
        gpu,
        layers::batchnorm(w),
        &acts.projected,
        params,
        &grads.bn_stats,
        &grads.embeddings,
        &grads.projected,
        slab,
    ));
    calls.extend(ops.linear.backward(
        gpu,
        &ops.weight_grad,
        fc2,
        rows,
        LinearGrads {
            x: &acts.hidden,
            dy: &grads.projected,
            params,
            grads: slab,
            dx: &grads.hidden,
        },
    ));
    calls.push(
        ops.relu
            .backward(gpu, w.hidden as u32, &acts.hidden, &grads.hidden),
    );
    calls.extend(ops.linear.backward(
        gpu,
        &ops.weight_grad,
        fc0,
        rows,
        LinearGrads {
            x: &a[CONV_BLOCKS - 1],
            dy: &grads.hidden,
            params,
            grads: slab,
            dx: &da[CONV_BLOCKS - 1],
        },
    ));
    for block in (1..CONV_BLOCKS).rev() {
        let per_row = (w.channels * layers::block_len(block + 1)) as u32;
        calls.push(ops.relu.backward(gpu, per_row, &a[block], &da[block]));
        calls.extend(ops.conv1d.backward_pool(
            gpu,
            &ops.weight_grad,
            layers::conv_block(w, block),
            rows,
            Conv1dGrads {
                x: &a[block - 1],
                dy: &da[block],
                params,
                grads: slab,
                dx: &da[block - 1],
            },
        ));
    }
    let per_row = (w.channels * layers::block_len(1)) as u32;
    calls.push(ops.relu.backward(gpu, per_row, &a[0], &da[0]));
    calls.extend(ops.embedding.backward_taps_pooled(
        gpu,
        EmbeddingShape {
            len: MAX_LEN as u32,
            dim: w.channels as u32,
            vocab: VOCAB as u32,
            table: 0,
        },
        rows,
        &inputs.positions,
        &da[0],
        &grads.taps,
    ));
    calls.extend(
        ops.tapconv
            .backward(gpu, layers::block0(w), params, &grads.taps, slab),
    );
    calls
}

fn check_state(state: &TrainState) -> Result<()> {
    let lens = [
        state.params.len(),
        state.exp_avg.len(),
        state.exp_avg_sq.len(),
    ];
    let w = &state.widths;
    w.check()?;
    let slab = slab_len(w);
    if lens.iter().any(|&n| n != slab) || state.running.len() != 2 * w.dim {
        bail!(
            "training state has slabs of {lens:?} and {} running statistics, expected {slab} and {}",
            state.running.len(),
            2 * w.dim
        );
    }
    Ok(())
}

/// Whether the CPU prepares step t + 1 while the device runs step t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum StepOverlap {
    /// On for GPUs, off for CPU adapters (lavapipe), where the CPU that would prepare
    /// the next step is the one running the current one: measured slower there.
    #[default]
    Auto,
    On,
    Off,
}

/// Training steps on their way through the device: with overlap at most two in flight
/// (each step waits for the one before it), otherwise one.
pub struct StepQueue {
    overlap: bool,
    in_flight: Option<wgpu::SubmissionIndex>,
}

impl StepQueue {
    pub fn new(gpu: &Gpu, mode: StepOverlap) -> Self {
        let overlap = match mode {
            StepOverlap::Auto => gpu.info.device_type != wgpu::DeviceType::Cpu,
            StepOverlap::On => true,
            StepOverlap::Off => false,
        };
        StepQueue {
            overlap,
            in_flight: None,
        }
    }

    /// A step was submitted: wait for the one before it (overlap) or for it.
    pub fn submitted(&mut self, gpu: &Gpu, step: wgpu::SubmissionIndex) -> Result<()> {
        let wait_for = if self.overlap {
            self.in_flight.replace(step)
        } else {
            Some(step)
        };
        match wait_for {
            Some(done) => gpu.wait_for(Some(done)),
            None => Ok(()),
        }
    }

    /// Wait for every submitted step.
    pub fn drain(&mut self, gpu: &Gpu) -> Result<()> {
        self.in_flight = None;
        gpu.wait()
    }
}
