//! CNN-ED's training step on the GPU (the official code's networks.py): the
//! anchors, positives and negatives of a batch of triplets through the layered network
//! as one batch, the triplet + approximation loss on Euclidean distances, every layer's
//! backward pass in reverse order, Adam. No autograd: the order of the calls below is
//! the chain rule, as in [`super::trainer`].
//!
//! The parameter, gradient and moment slabs hold the network's tensors
//! ([`CnnEdShape::tensors`]) followed by one value the loss head reads as log s: fixed
//! at 0 (s = 1), since CNN-ED's targets are already on the embedding's scale (ED / avgD).
//!
//! Activations are `[rows, 8, len]` with `rows = 3 triplets * C`: string b's characters
//! are rows `b * C .. (b + 1) * C`, so the last layer's output is already the c-major
//! flattening the head reads (`[3 triplets, C * 8 * Lf]`).
use anyhow::{Result, bail};

use crate::gpu::{Calls, Gpu, Readback, storage_buffer, storage_buffer_init};
use crate::model::cnn_ed::{CnnEd, CnnEdShape};
use crate::ops::MAX_SEGMENTS;
use crate::ops::Ops;
use crate::ops::adamw::{AdamWBuffers, AdamWCalls, AdamWStep};
use crate::ops::conv1d::{Conv1dGrads, Conv1dShape};
use crate::ops::conv8::SEGMENT;
use crate::ops::linear::{KMAX, LinearGrads, LinearShape};
use crate::ops::onehot_conv::{CHANNELS, OneHotConvShape};
use crate::ops::pnll::{LossBuffers, LossCall, LossShape};
use crate::ops::ranking::RankingWeights;

use super::cnn_ed_data::Triplet;
use super::trainer::LOSS_SLOTS;

const F32: u64 = 4;

/// The weights of the loss's two terms for one phase of training: `hinge` λ on the
/// triplet hinge, `approx` ρ on the approximation term.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub hinge: f32,
    pub approx: f32,
}

/// The official code's schedule (networks.py:410-418): (λ, ρ) set at the start of each
/// epoch from {0: (0, 10), s: (10, 10), 2s: (10, 1), 3s: (5, 0.1), 4s: (1, 0.01)},
/// s = epochs / 5, before epoch 0 (1, 1). With fewer than 5 epochs every key is 0 and
/// the last entry wins: (1, 0.01) throughout.
pub fn official_schedule(epoch: usize, epochs: usize) -> LossWeights {
    let step = epochs / 5;
    let table = [
        (0.0, 10.0),
        (10.0, 10.0),
        (10.0, 1.0),
        (5.0, 0.1),
        (1.0, 0.01),
    ];
    let mut weights = (1.0, 1.0);
    for (i, w) in table.into_iter().enumerate() {
        if i * step <= epoch {
            weights = w;
        }
    }
    LossWeights {
        hinge: weights.0,
        approx: weights.1,
    }
}

/// Everything a checkpoint needs from the GPU: the slabs (tensors, then log s = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct CnnEdState {
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

impl CnnEdState {
    /// A fresh optimizer state for `model`.
    pub fn new(model: &CnnEd) -> Self {
        let mut params = model.params().to_vec();
        params.push(0.0);
        let n = params.len();
        CnnEdState {
            params,
            exp_avg: vec![0.0; n],
            exp_avg_sq: vec![0.0; n],
        }
    }
}

/// The layered network's calls for batches of up to a fixed number of triplets.
pub struct CnnEdTrainer<'g> {
    gpu: &'g Gpu,
    shape: CnnEdShape,
    /// Triplets per step at most.
    capacity: usize,
    /// Triplets of the last upload.
    triplets: usize,
    slabs: Slabs,
    tokens: wgpu::Buffer,
    /// Layer i's output `[rows, channels, M >> (i + 1)]`, and its gradient.
    _acts: Vec<wgpu::Buffer>,
    _d_acts: Vec<wgpu::Buffer>,
    head_io: HeadIo,
    /// Per string (`[3 triplets]` batch): tokens in, head, loss-side calls.
    prepare: Calls,
    first_block: Calls,
    /// Per character row (`[3 triplets * C]` batch): the conv blocks after the first.
    blocks: Calls,
    head: Calls,
    loss: LossCall,
    head_backward: Calls,
    blocks_backward: Calls,
    first_block_backward: Calls,
    adamw: AdamWCalls,
}

/// What the loss head reads and writes.
struct HeadIo {
    /// The network's output, `[3 triplets, dim]`.
    embeddings: wgpu::Buffer,
    /// The triplets' targets, `[triplets, 3]`.
    labels: wgpu::Buffer,
    /// The loss's gradient at the embeddings.
    d_embeddings: wgpu::Buffer,
}

struct Slabs {
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    exp_avg: wgpu::Buffer,
    exp_avg_sq: wgpu::Buffer,
    norm: wgpu::Buffer,
    losses: wgpu::Buffer,
}

/// An error unless `triplets` per step of a network of `shape` fit the device and the
/// kernels: each activation within one storage binding, each weight gradient within the
/// reductions' segment limit, the first block's 8 channels, the head within the tile.
fn check_fits(gpu: &Gpu, shape: &CnnEdShape, triplets: usize) -> Result<()> {
    let rows = (3 * triplets * shape.alphabet) as u64;
    let widest = rows * (shape.channels * shape.max_len / 2) as u64 * F32;
    // Block 1's weight gradient reduces over every row's pooled positions (M / 4).
    let positions = rows * (shape.max_len / 4) as u64;
    let most_positions = MAX_SEGMENTS * u64::from(SEGMENT);
    if triplets == 0 || widest > gpu.max_binding_bytes() || positions > most_positions {
        bail!(
            "{triplets} triplets per step of {} characters x {} places need {} MiB per \
             activation and {positions} positions in a weight gradient; this device binds \
             {} MiB and the reduction takes {most_positions}: use fewer triplets per step \
             (--batch) or a shorter --max-len",
            shape.alphabet,
            shape.max_len,
            widest >> 20,
            gpu.max_binding_bytes() >> 20
        );
    }
    if shape.channels != CHANNELS as usize {
        bail!(
            "the GPU trainer's first block has {CHANNELS} channels, not {}",
            shape.channels
        );
    }
    if shape.flat().max(shape.dim) > KMAX as usize {
        bail!(
            "the GPU trainer's linear head reduces over at most {KMAX} values, and this \
             network's head takes {} inputs (alphabet {} x {} channels x {} places) to {} \
             outputs: use more --layers (down to 1 place) or a corpus with fewer distinct \
             characters",
            shape.flat(),
            shape.alphabet,
            shape.channels,
            shape.final_len(),
            shape.dim
        );
    }
    Ok(())
}

/// Shapes of the layers over the slab.
fn first_block(shape: &CnnEdShape) -> OneHotConvShape {
    OneHotConvShape {
        alphabet: shape.alphabet as u32,
        len: shape.max_len as u32,
        stride: shape.max_len as u32,
        weight: shape.conv_offset(0) as u32,
    }
}

fn block(shape: &CnnEdShape, i: usize) -> Conv1dShape {
    Conv1dShape {
        cin: shape.channels as u32,
        cout: shape.channels as u32,
        len: (shape.max_len >> i) as u32,
        weight: shape.conv_offset(i) as u32,
        bias: None,
        relu: false,
    }
}

fn head(shape: &CnnEdShape) -> LinearShape {
    let weight = shape.fc_offset();
    LinearShape {
        fan_in: shape.flat() as u32,
        fan_out: shape.dim as u32,
        weight: weight as u32,
        bias: (weight + shape.dim * shape.flat()) as u32,
        relu: false,
    }
}

impl<'g> CnnEdTrainer<'g> {
    /// A trainer for steps of up to `triplets` triplets of `state`'s network of `shape`,
    /// with the loss weights `weights` (change them with [`CnnEdTrainer::set_loss`]).
    pub fn new(
        gpu: &'g Gpu,
        ops: &Ops,
        shape: CnnEdShape,
        state: &CnnEdState,
        triplets: usize,
        weights: LossWeights,
    ) -> Result<Self> {
        let strings = 3 * triplets;
        let rows = strings * shape.alphabet;
        check_fits(gpu, &shape, triplets)?;
        if state.params.len() != shape.num_params() + 1 {
            bail!(
                "a training state of {} values for a network of {}",
                state.params.len(),
                shape.num_params()
            );
        }
        let n = state.params.len() as u64;
        let slabs = Slabs {
            params: storage_buffer_init(gpu, "cnn-ed params", &state.params),
            grads: storage_buffer(gpu, "cnn-ed grads", n * F32),
            exp_avg: storage_buffer_init(gpu, "cnn-ed exp_avg", &state.exp_avg),
            exp_avg_sq: storage_buffer_init(gpu, "cnn-ed exp_avg_sq", &state.exp_avg_sq),
            norm: storage_buffer_init(gpu, "cnn-ed grad norm", &[0.0f32, 1.0]),
            losses: storage_buffer(gpu, "cnn-ed losses", LOSS_SLOTS as u64 * F32),
        };
        let tokens = storage_buffer(gpu, "cnn-ed tokens", (strings * shape.max_len) as u64 * 4);
        let output_bytes = (strings * shape.dim) as u64 * F32;
        let head_io = HeadIo {
            embeddings: storage_buffer(gpu, "cnn-ed embeddings", output_bytes),
            labels: storage_buffer(gpu, "cnn-ed targets", (3 * triplets) as u64 * F32),
            d_embeddings: storage_buffer(gpu, "cnn-ed d embeddings", output_bytes),
        };
        // Layer i's output and its gradient, [rows, channels, M >> (i + 1)].
        let act = |i: usize, what: &str| {
            let floats = rows * shape.channels * (shape.max_len >> (i + 1));
            storage_buffer(gpu, what, floats as u64 * F32)
        };
        let acts: Vec<wgpu::Buffer> = (0..shape.layers)
            .map(|i| act(i, "cnn-ed activation"))
            .collect();
        let d_acts: Vec<wgpu::Buffer> = (0..shape.layers)
            .map(|i| act(i, "cnn-ed activation gradient"))
            .collect();
        let last = shape.layers - 1;

        // Forward.
        let first_block_calls = Calls::from(ops.onehot_conv.forward(
            gpu,
            first_block(&shape),
            &tokens,
            &slabs.params,
            &acts[0],
        ));
        let mut prepare = Calls::default();
        let mut blocks = Calls::default();
        for i in 1..shape.layers {
            blocks.push(ops.conv8.forward(
                gpu,
                block(&shape, i),
                &acts[i - 1],
                &slabs.params,
                &acts[i],
            ));
        }
        let packed = ops.linear.pack(gpu, head(&shape), &slabs.params);
        let head_calls = Calls::from(ops.linear.forward(
            gpu,
            head(&shape),
            &acts[last],
            &packed,
            &slabs.params,
            &head_io.embeddings,
        ));
        prepare.push(packed.pack.clone());
        prepare.keep(packed.into_buffer());

        // The loss and its gradient at the embeddings.
        let loss = Self::loss_call(gpu, ops, &shape, &slabs, &head_io, weights);

        // Backward, last layer first.
        let head_backward = ops.linear.backward(
            gpu,
            &ops.weight_grad,
            head(&shape),
            strings,
            LinearGrads {
                x: &acts[last],
                dy: &head_io.d_embeddings,
                params: &slabs.params,
                grads: &slabs.grads,
                dx: &d_acts[last],
            },
        );
        let mut blocks_backward = Calls::default();
        for i in (1..shape.layers).rev() {
            blocks_backward.extend(ops.conv8.backward(
                gpu,
                block(&shape, i),
                rows,
                Conv1dGrads {
                    x: &acts[i - 1],
                    dy: &d_acts[i],
                    params: &slabs.params,
                    grads: &slabs.grads,
                    dx: &d_acts[i - 1],
                },
            ));
        }
        let first_block_backward = ops.onehot_conv.backward(
            gpu,
            first_block(&shape),
            strings,
            &tokens,
            &d_acts[0],
            &slabs.grads,
        );
        let adamw = ops.adamw.calls(
            gpu,
            AdamWBuffers {
                params: &slabs.params,
                grads: &slabs.grads,
                m: &slabs.exp_avg,
                v: &slabs.exp_avg_sq,
                norm: &slabs.norm,
            },
            &[(0..shape.num_params(), false)],
        );
        let mut trainer = CnnEdTrainer {
            gpu,
            shape,
            capacity: triplets,
            triplets,
            slabs,
            tokens,
            _acts: acts,
            _d_acts: d_acts,
            head_io,
            prepare,
            first_block: first_block_calls,
            blocks,
            head: head_calls,
            loss,
            head_backward,
            blocks_backward,
            first_block_backward,
            adamw,
        };
        trainer.set_batches(triplets);
        Ok(trainer)
    }

    fn loss_call(
        gpu: &Gpu,
        ops: &Ops,
        shape: &CnnEdShape,
        slabs: &Slabs,
        io: &HeadIo,
        weights: LossWeights,
    ) -> LossCall {
        let loss_shape = LossShape {
            dim: shape.dim as u32,
            log_scale: shape.num_params() as u32,
            learn: false,
        };
        let buffers = LossBuffers {
            e: &io.embeddings,
            labels: &io.labels,
            params: &slabs.params,
            de: &io.d_embeddings,
            grads: &slabs.grads,
            losses: &slabs.losses,
        };
        let ranking = RankingWeights {
            hinge: weights.hinge,
            approx: weights.approx,
            pnll: 0.0,
            squared: false,
        };
        ops.ranking
            .forward_backward(gpu, loss_shape, ranking, &buffers)
    }

    /// Sizes every call for `triplets` triplets.
    fn set_batches(&mut self, triplets: usize) {
        self.triplets = triplets;
        let strings = (3 * triplets) as u32;
        let rows = strings * self.shape.alphabet as u32;
        let gpu = self.gpu;
        self.first_block.set_batch(gpu, strings);
        self.blocks.set_batch(gpu, rows);
        self.head.set_batch(gpu, strings);
        self.head_backward.set_batch(gpu, strings);
        self.blocks_backward.set_batch(gpu, rows);
        self.first_block_backward.set_batch(gpu, strings);
    }

    /// Uploads the strings of `triplets` (anchors, then positives, then negatives, as
    /// token ids padded with the unseen id) and their targets; the loss goes to `slot`.
    fn upload(
        &mut self,
        model: &CnnEd,
        strings: &[String],
        triplets: &[(Triplet, [f32; 3])],
        slot: usize,
    ) -> Result<()> {
        if triplets.is_empty() || triplets.len() > self.capacity {
            bail!(
                "{} triplets given to a trainer of up to {}",
                triplets.len(),
                self.capacity
            );
        }
        if triplets.len() != self.triplets {
            self.set_batches(triplets.len());
        }
        let m = self.shape.max_len;
        let mut ids = vec![model.unseen(); 3 * self.triplets * m];
        let order = [
            |t: &Triplet| t.anchor,
            |t: &Triplet| t.positive,
            |t: &Triplet| t.negative,
        ];
        for (side, pick) in order.iter().enumerate() {
            for (i, (t, _)) in triplets.iter().enumerate() {
                let row = side * self.triplets + i;
                for (l, id) in model.token_ids(&strings[pick(t)]).enumerate() {
                    ids[row * m + l] = id;
                }
            }
        }
        let targets: Vec<f32> = triplets.iter().flat_map(|(_, t)| *t).collect();
        self.gpu
            .queue
            .write_buffer(&self.tokens, 0, bytemuck::cast_slice(&ids));
        self.gpu
            .queue
            .write_buffer(&self.head_io.labels, 0, bytemuck::cast_slice(&targets));
        self.loss
            .set(self.gpu, self.triplets as u32, (slot % LOSS_SLOTS) as u32);
        Ok(())
    }

    /// Forward, loss and backward: the gradient slab holds this batch's gradients.
    fn record_gradients(&self, pass: &mut wgpu::ComputePass) {
        let strings = (3 * self.triplets) as u32;
        let rows = strings * self.shape.alphabet as u32;
        let gpu = self.gpu;
        self.prepare.record(pass, gpu, 1);
        self.first_block.record(pass, gpu, strings);
        self.blocks.record(pass, gpu, rows);
        self.head.record(pass, gpu, strings);
        self.loss.record(pass, gpu);
        self.head_backward.record(pass, gpu, strings);
        self.blocks_backward.record(pass, gpu, rows);
        self.first_block_backward.record(pass, gpu, strings);
    }

    /// The loss weights from now on.
    pub fn set_loss(&mut self, ops: &Ops, weights: LossWeights) {
        self.loss = Self::loss_call(
            self.gpu,
            ops,
            &self.shape,
            &self.slabs,
            &self.head_io,
            weights,
        );
    }

    /// One step (gradients, then Adam) on `triplets` of `strings`, each with its targets,
    /// submitted without waiting; the loss of 1-based step t lands in slot
    /// `(t - 1) % LOSS_SLOTS` of [`CnnEdTrainer::losses`]. Hand the submission to a
    /// [`StepQueue`](super::trainer::StepQueue).
    pub fn step(
        &mut self,
        model: &CnnEd,
        strings: &[String],
        triplets: &[(Triplet, [f32; 3])],
        hyper: &AdamWStep,
    ) -> Result<wgpu::SubmissionIndex> {
        self.upload(
            model,
            strings,
            triplets,
            hyper.step.saturating_sub(1) as usize,
        )?;
        self.adamw.set(self.gpu, hyper);
        Ok(self.submit(true))
    }

    /// Forward, loss and backward only; waits and returns the loss (the gradients are in
    /// [`CnnEdTrainer::read_grads`]).
    pub fn gradients(
        &mut self,
        model: &CnnEd,
        strings: &[String],
        triplets: &[(Triplet, [f32; 3])],
    ) -> Result<f32> {
        self.upload(model, strings, triplets, 0)?;
        self.submit(false);
        Ok(self.losses(0, 1)?[0])
    }

    fn submit(&self, update: bool) -> wgpu::SubmissionIndex {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_gradients(&mut pass);
            if update {
                self.adamw.record(&mut pass, self.gpu);
            }
        }
        self.gpu.queue.submit([encoder.finish()])
    }

    /// The losses of steps `from + 1 ..= to` (1-based; at most `LOSS_SLOTS` of them),
    /// waiting for the GPU.
    pub fn losses(&self, from: u64, to: u64) -> Result<Vec<f32>> {
        let all: Vec<f32> = self.gpu.read_buffer(&self.slabs.losses, LOSS_SLOTS)?;
        Ok((from..to).map(|s| all[s as usize % LOSS_SLOTS]).collect())
    }

    /// The gradient slab (the tensors' gradients, then 0 for log s).
    pub fn read_grads(&self) -> Result<Vec<f32>> {
        self.gpu
            .read_buffer(&self.slabs.grads, self.shape.num_params() + 1)
    }

    /// The embeddings of the last forward, `[3 triplets, dim]`.
    pub fn read_embeddings(&self) -> Result<Vec<f32>> {
        self.gpu
            .read_buffer(&self.head_io.embeddings, 3 * self.triplets * self.shape.dim)
    }

    /// The slabs, read back in one submit.
    pub fn state(&self) -> Result<CnnEdState> {
        let s = &self.slabs;
        let bytes = (self.shape.num_params() + 1) as u64 * F32;
        let readbacks: Vec<(Readback, &wgpu::Buffer)> = [&s.params, &s.exp_avg, &s.exp_avg_sq]
            .into_iter()
            .map(|b| (Readback::new(self.gpu, bytes), b))
            .collect();
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for (r, b) in &readbacks {
            r.copy(&mut encoder, b, bytes);
        }
        self.gpu.queue.submit([encoder.finish()]);
        let mut values = readbacks
            .iter()
            .map(|(r, _)| r.read::<f32>(self.gpu, bytes));
        let mut next = || values.next().expect("three readbacks");
        Ok(CnnEdState {
            params: next()?,
            exp_avg: next()?,
            exp_avg_sq: next()?,
        })
    }
}
