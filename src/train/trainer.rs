//! The explicit training step on the GPU: forward of both sides of every pair as one
//! batch, the PNLL pair loss, every layer's backward pass in reverse order, AdamW. No
//! autograd: the order of the calls below is the chain rule.
//!
//! Parameters, gradients and both AdamW moments are four slabs of one layout: the
//! model's `NUM_PARAMS` values ([`crate::model::params`]) followed by `log_s`, the log of
//! the distance scale. Every gradient is overwritten by exactly one call per step, so
//! nothing accumulates across steps (the reference's missing `zero_grad`). Every kernel
//! sums in a fixed order, so a step is a pure function of the slabs and the batch: a
//! resumed run reproduces an uninterrupted one bit for bit.
//!
//! Block 0 stays folded as in inference (ops/tapconv.rs): the tap tables are refolded
//! from the slab each step, and the backward pass gathers the tables' gradient per
//! character and maps it back onto conv0 and the embedding. That removes the unfolded
//! conv0 (70% of the model's arithmetic) from both passes.
use anyhow::{Result, bail};

use crate::gpu::{Call, Calls, Gpu, Readback, storage_buffer, storage_buffer_init};
use crate::model::megashtein::layers;
use crate::model::params::{CONV_BLOCKS, CONV_CH, EMBED_DIM, HIDDEN, MAX_LEN, NUM_PARAMS, VOCAB};
use crate::model::weights::{ARCH, Weights};
use crate::ops::Ops;
use crate::ops::adamw::{AdamWBuffers, AdamWCalls, AdamWStep};
use crate::ops::conv1d::{Conv1dGrads, Packing};
use crate::ops::embedding::{EmbeddingShape, positions_by_token, positions_len};
use crate::ops::linear::LinearGrads;
use crate::ops::pnll::{PnllCall, PnllShape};
use crate::ops::weight_grad::SEGMENT;

use super::data::PairBatch;

/// Where `log_s` sits in the slabs.
pub const LOG_SCALE: usize = NUM_PARAMS;
/// Length of the parameter, gradient and moment slabs.
pub const SLAB: usize = NUM_PARAMS + 1;
/// Loss values kept on the GPU between readbacks (one per step, cyclic).
pub const LOSS_SLOTS: usize = 4096;

const F32: u64 = 4;

/// Everything a checkpoint needs from the GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// `SLAB` values: the model's parameters, then log_s.
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
        TrainState {
            params,
            exp_avg: vec![0.0; SLAB],
            exp_avg_sq: vec![0.0; SLAB],
            running: [weights.running_mean.as_slice(), &weights.running_var].concat(),
        }
    }

    pub fn scale(&self) -> f32 {
        self.params[LOG_SCALE].exp()
    }

    /// The model in these slabs (BN's batch count is the caller's to set).
    pub fn weights(&self, num_batches_tracked: i64) -> Weights {
        Weights {
            params: self.params[..NUM_PARAMS].to_vec(),
            running_mean: self.running[..EMBED_DIM].to_vec(),
            running_var: self.running[EMBED_DIM..].to_vec(),
            num_batches_tracked,
            distance_scale: self.scale(),
            arch: ARCH.to_string(),
        }
    }
}

pub struct Trainer<'g> {
    gpu: &'g Gpu,
    pairs: usize,
    slabs: Slabs,
    tokens: wgpu::Buffer,
    positions: wgpu::Buffer,
    labels: wgpu::Buffer,
    embeddings: wgpu::Buffer,
    fold: Call,
    forward: Calls,
    loss: PnllCall,
    backward: Calls,
    adamw: AdamWCalls,
}

struct Slabs {
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    exp_avg: wgpu::Buffer,
    exp_avg_sq: wgpu::Buffer,
    running: wgpu::Buffer,
    norm: wgpu::Buffer,
    losses: wgpu::Buffer,
}

impl<'g> Trainer<'g> {
    /// The most pairs one step can take on this device (the largest activation, the
    /// conv0 output gradient of both sides, must fit one storage binding).
    pub fn max_pairs(gpu: &Gpu) -> usize {
        let per_pair = 2 * (CONV_CH * MAX_LEN) as u64 * F32;
        // Shader indices are u32, and a weight gradient's segments (SEGMENT positions
        // each) are one grid dimension of at most 65,535 workgroups; the longest
        // reduction is block 1's, over its pooled output.
        let index_limit = (u64::from(u32::MAX) / 4) / per_pair;
        let longest_reduction = layers::block_len(2) as u64;
        let grid_limit = 65_535 * u64::from(SEGMENT) / (2 * longest_reduction);
        (gpu.max_binding_bytes() / per_pair)
            .min(index_limit)
            .min(grid_limit)
            .max(1) as usize
    }

    /// A trainer for steps of exactly `pairs` pairs, starting from `state`. With
    /// `learn_scale` false, log_s stays at its value in `state`.
    pub fn new(
        gpu: &'g Gpu,
        ops: &Ops,
        state: &TrainState,
        pairs: usize,
        learn_scale: bool,
    ) -> Result<Self> {
        if pairs == 0 || pairs > Self::max_pairs(gpu) {
            bail!(
                "a batch of {pairs} pairs does not fit this device: use 1 to {} pairs",
                Self::max_pairs(gpu)
            );
        }
        check_state(state)?;
        let rows = 2 * pairs;
        let slabs = Slabs {
            params: storage_buffer_init(gpu, "params", &state.params),
            grads: storage_buffer(gpu, "grads", SLAB as u64 * F32),
            exp_avg: storage_buffer_init(gpu, "exp_avg", &state.exp_avg),
            exp_avg_sq: storage_buffer_init(gpu, "exp_avg_sq", &state.exp_avg_sq),
            running: storage_buffer_init(gpu, "bn running stats", &state.running),
            norm: storage_buffer_init(gpu, "grad norm", &[0.0f32, 1.0]),
            losses: storage_buffer(gpu, "losses", LOSS_SLOTS as u64 * F32),
        };
        let buffer =
            |label: &str, per_row: usize| storage_buffer(gpu, label, (rows * per_row) as u64 * F32);
        let tokens = buffer("tokens", MAX_LEN);
        let positions = storage_buffer(
            gpu,
            "positions",
            positions_len(rows * MAX_LEN, VOCAB) as u64 * 4,
        );
        let labels = storage_buffer(gpu, "labels", pairs as u64 * F32);
        let params = &slabs.params;
        let grads = &slabs.grads;

        // Forward, keeping each block's output (relu(pool(conv))): a[0] .. a[4].
        let first = layers::block0();
        let taps = storage_buffer(gpu, "conv0 tap tables", first.taps_len() as u64 * F32);
        let fold = ops.tapconv.fold(gpu, first, params, &taps);
        let mut forward = Calls::default();
        // Output length of each block (40, 20, 10, 5, 2).
        let lens: Vec<usize> = (1..=CONV_BLOCKS).map(layers::block_len).collect();
        let a: Vec<wgpu::Buffer> = lens
            .iter()
            .map(|&len| buffer("block output", CONV_CH * len))
            .collect();
        forward.push(
            ops.tapconv
                .forward(gpu, first, params, &taps, &tokens, &a[0]),
        );
        let conv = layers::conv_block;
        for block in 1..CONV_BLOCKS {
            // The weights change every step: packed again before each forward.
            let packed = ops.conv1d.pack(gpu, conv(block), params, Packing::Pooled);
            forward.push(packed.pack.clone());
            forward.push(ops.conv1d.forward_pool_relu(
                gpu,
                conv(block),
                &a[block - 1],
                &packed,
                params,
                &a[block],
            ));
            forward.keep(packed.into_buffer());
        }
        let (fc0, fc2, bn) = (layers::fc0(), layers::fc2(), layers::batchnorm());
        let hidden = buffer("hidden", HIDDEN);
        let projected = buffer("projected", EMBED_DIM);
        let embeddings = buffer("embeddings", EMBED_DIM);
        let bn_saved = storage_buffer(gpu, "bn batch stats", 2 * EMBED_DIM as u64 * F32);
        let last = &a[CONV_BLOCKS - 1];
        for (shape, x, y) in [(fc0, last, &hidden), (fc2, &hidden, &projected)] {
            let packed = ops.linear.pack(gpu, shape, params);
            forward.push(packed.pack.clone());
            forward.push(ops.linear.forward(gpu, shape, x, &packed, params, y));
            forward.keep(packed.into_buffer());
        }
        forward.push(ops.batchnorm.train_forward(
            gpu,
            bn,
            &projected,
            params,
            &slabs.running,
            &embeddings,
            &bn_saved,
        ));

        let d_embeddings = buffer("d embeddings", EMBED_DIM);
        let loss = ops.pnll.forward_backward(
            gpu,
            PnllShape {
                dim: EMBED_DIM as u32,
                log_scale: LOG_SCALE as u32,
                learn: learn_scale,
            },
            &embeddings,
            &labels,
            params,
            &d_embeddings,
            grads,
            &slabs.losses,
        );

        // Backward, in reverse.
        let mut backward = Calls::default();
        let d_projected = buffer("d projected", EMBED_DIM);
        backward.push(ops.batchnorm.backward(
            gpu,
            bn,
            &projected,
            params,
            &bn_saved,
            &d_embeddings,
            &d_projected,
            grads,
        ));
        let d_hidden = buffer("d hidden", HIDDEN);
        backward.extend(ops.linear.backward(
            gpu,
            &ops.weight_grad,
            fc2,
            rows,
            LinearGrads {
                x: &hidden,
                dy: &d_projected,
                params,
                grads,
                dx: &d_hidden,
            },
        ));
        backward.push(ops.relu.backward(gpu, HIDDEN as u32, &hidden, &d_hidden));
        let da: Vec<wgpu::Buffer> = lens
            .iter()
            .map(|&len| buffer("d block output", CONV_CH * len))
            .collect();
        backward.extend(ops.linear.backward(
            gpu,
            &ops.weight_grad,
            fc0,
            rows,
            LinearGrads {
                x: last,
                dy: &d_hidden,
                params,
                grads,
                dx: &da[CONV_BLOCKS - 1],
            },
        ));
        for block in (1..CONV_BLOCKS).rev() {
            let per_row = (CONV_CH * lens[block]) as u32;
            backward.push(ops.relu.backward(gpu, per_row, &a[block], &da[block]));
            backward.extend(ops.conv1d.backward_pool(
                gpu,
                &ops.weight_grad,
                conv(block),
                rows,
                Conv1dGrads {
                    x: &a[block - 1],
                    dy: &da[block],
                    params,
                    grads,
                    dx: &da[block - 1],
                },
            ));
        }
        // Block 0 through the fold.
        backward.push(
            ops.relu
                .backward(gpu, (CONV_CH * lens[0]) as u32, &a[0], &da[0]),
        );
        let d_conv0 = buffer("d conv0 output", CONV_CH * MAX_LEN);
        backward.push(
            ops.avgpool
                .backward(gpu, CONV_CH as u32, MAX_LEN as u32, &da[0], &d_conv0),
        );
        let d_taps = storage_buffer(gpu, "d tap tables", first.tap_grads_len() as u64 * F32);
        backward.extend(ops.embedding.backward_taps(
            gpu,
            EmbeddingShape {
                len: MAX_LEN as u32,
                dim: CONV_CH as u32,
                vocab: VOCAB as u32,
                table: 0,
            },
            rows,
            &positions,
            &d_conv0,
            &d_taps,
        ));
        backward.extend(ops.tapconv.backward(gpu, first, params, &d_taps, grads));

        let mut ranges = vec![(0..NUM_PARAMS, true)];
        if learn_scale {
            ranges.push((LOG_SCALE..SLAB, false));
        }
        let adamw = ops.adamw.calls(
            gpu,
            AdamWBuffers {
                params,
                grads,
                m: &slabs.exp_avg,
                v: &slabs.exp_avg_sq,
                norm: &slabs.norm,
            },
            &ranges,
        );

        for buffer in a.into_iter().chain(da) {
            forward.keep(buffer);
        }
        for buffer in [
            taps,
            hidden,
            projected,
            bn_saved,
            d_embeddings,
            d_projected,
            d_hidden,
        ] {
            forward.keep(buffer);
        }
        backward.keep(d_conv0);
        backward.keep(d_taps);
        let mut trainer = Trainer {
            gpu,
            pairs,
            slabs,
            tokens,
            positions,
            labels,
            embeddings,
            fold,
            forward,
            loss,
            backward,
            adamw,
        };
        trainer.set_pairs(pairs);
        Ok(trainer)
    }

    pub fn pairs(&self) -> usize {
        self.pairs
    }

    fn set_pairs(&mut self, pairs: usize) {
        let rows = (2 * pairs) as u32;
        self.forward.set_batch(self.gpu, rows);
        self.backward.set_batch(self.gpu, rows);
        self.loss.set(self.gpu, pairs as u32, 0);
    }

    /// Uploads a batch of exactly `pairs()` pairs.
    fn upload(&mut self, batch: &PairBatch, slot: usize) -> Result<()> {
        if batch.len() != self.pairs {
            bail!(
                "batch of {} pairs given to a trainer of {}",
                batch.len(),
                self.pairs
            );
        }
        let tokens = batch.tokens();
        let positions = positions_by_token(&tokens, VOCAB);
        let labels: Vec<f32> = batch.labels.iter().map(|&d| d as f32).collect();
        let queue = &self.gpu.queue;
        queue.write_buffer(&self.tokens, 0, bytemuck::cast_slice(&tokens));
        queue.write_buffer(&self.positions, 0, bytemuck::cast_slice(&positions));
        queue.write_buffer(&self.labels, 0, bytemuck::cast_slice(&labels));
        self.loss
            .set(self.gpu, self.pairs as u32, (slot % LOSS_SLOTS) as u32);
        Ok(())
    }

    /// Records forward, loss and backward: the gradient slab holds this batch's gradients.
    fn record_gradients(&self, pass: &mut wgpu::ComputePass) {
        let rows = (2 * self.pairs) as u32;
        self.fold.record(pass, self.gpu, 1);
        self.forward.record(pass, self.gpu, rows);
        self.loss.record(pass, self.gpu);
        self.backward.record(pass, self.gpu, rows);
    }

    /// One training step (gradients, then AdamW), submitted without waiting; the loss of
    /// 1-based step t lands in slot `(t - 1) % LOSS_SLOTS` of [`Trainer::losses`].
    pub fn step(&mut self, batch: &PairBatch, hyper: &AdamWStep) -> Result<()> {
        self.upload(batch, hyper.step.saturating_sub(1) as usize)?;
        self.adamw.set(self.gpu, hyper);
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_gradients(&mut pass);
            self.adamw.record(&mut pass, self.gpu);
        }
        self.gpu.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// Time each kernel of one step on `batch` on its own (forward, backward; the loss
    /// and AdamW are small).
    pub fn profile(&mut self, batch: &PairBatch) -> Result<Vec<(&'static str, f64)>> {
        self.gradients(batch)?;
        let rows = (2 * self.pairs) as u32;
        let mut times = self.forward.time_each(self.gpu, rows, 5)?;
        times.extend(self.backward.time_each(self.gpu, rows, 5)?);
        Ok(times)
    }

    /// Forward, loss and backward only (no update; batch norm's running statistics do
    /// move, as in any training-mode forward); waits for the GPU.
    pub fn gradients(&mut self, batch: &PairBatch) -> Result<()> {
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
        self.gpu.read_buffer(&self.slabs.grads, SLAB)
    }

    pub fn write_grads(&self, grads: &[f32]) {
        self.gpu
            .queue
            .write_buffer(&self.slabs.grads, 0, bytemuck::cast_slice(grads));
    }

    /// The train-mode embeddings of the last forward, `[2 * pairs, 80]`.
    pub fn read_embeddings(&self) -> Result<Vec<f32>> {
        self.gpu
            .read_buffer(&self.embeddings, 2 * self.pairs * EMBED_DIM)
    }

    /// Everything a checkpoint holds, read back in one submit.
    pub fn state(&self) -> Result<TrainState> {
        let s = &self.slabs;
        let slab_bytes = SLAB as u64 * F32;
        let running_bytes = 2 * EMBED_DIM as u64 * F32;
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
            params: next()?,
            exp_avg: next()?,
            exp_avg_sq: next()?,
            running: next()?,
        })
    }
}

fn check_state(state: &TrainState) -> Result<()> {
    let lens = [
        state.params.len(),
        state.exp_avg.len(),
        state.exp_avg_sq.len(),
    ];
    if lens.iter().any(|&n| n != SLAB) || state.running.len() != 2 * EMBED_DIM {
        bail!(
            "training state has slabs of {lens:?} and {} running statistics, expected {SLAB} and {}",
            state.running.len(),
            2 * EMBED_DIM
        );
    }
    Ok(())
}
