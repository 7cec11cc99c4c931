//! The megashtein architecture on the GPU: which op runs, in which order, on which
//! buffers. Activations for a fixed batch capacity are allocated once; a forward of any
//! batch up to that capacity is one encoder, one submit and one readback of the
//! `[batch, 80]` embeddings.
//!
//! Inference runs a folded and fused plan ([`Megashtein::new`]), equal to the PyTorch
//! graph up to f32 rounding:
//! 1. `tapconv`: embedding + conv0 + avgpool + relu via per-character tap tables folded
//!    from the embedding and conv0 weights once, when the model is built;
//! 2. blocks 1-4: `conv1d.forward_pool_relu` (conv + avgpool + relu in one tiled kernel);
//! 3. fc0 (+relu), fc2, batchnorm (running statistics).
//!
//! Training (a later issue) needs every intermediate activation and the unfused
//! embedding / conv1d / avgpool / relu ops, which stay in [`crate::ops`] for it.
use anyhow::{Result, bail};

use super::params::{CONV_BLOCKS, CONV_CH, EMBED_DIM, HIDDEN, MAX_LEN};
use super::weights::Weights;
use crate::gpu::{Calls, Gpu, Readback, storage_buffer, storage_buffer_init};
use crate::ops::Ops;
use crate::ops::PackedWeight;
use crate::ops::conv1d::Packing;

const F32: u64 = 4;

/// The model's weights on a device, with activations for up to `capacity` strings.
/// The shapes of the architecture's layers over the parameter slab, shared by the
/// inference plan below and the trainer (`crate::train::trainer`).
pub mod layers {
    use super::super::params::{
        BN_EPS, BN_MOMENTUM, CHAR_DIM, CONV_CH, EMBED_DIM, FLAT, HIDDEN, MAX_LEN, VOCAB, offset_of,
    };
    use crate::ops::{
        batchnorm::BatchNormShape, conv1d::Conv1dShape, linear::LinearShape, tapconv::TapConvShape,
    };

    fn at(name: &str) -> u32 {
        offset_of(name) as u32
    }

    /// Embedding + conv0 (+ pool + relu), folded into tap tables.
    pub fn block0() -> TapConvShape {
        TapConvShape {
            len: MAX_LEN as u32,
            vocab: VOCAB as u32,
            dim: CHAR_DIM as u32,
            cout: CONV_CH as u32,
            table: at("embedding.weight"),
            weight: at("conv_layers.0.weight"),
            bias: at("conv_layers.0.bias"),
        }
    }

    /// Input length of conv block `block` (80, 40, 20, 10, 5).
    pub fn block_len(block: usize) -> usize {
        MAX_LEN >> block
    }

    /// Conv block `block` >= 1 (PyTorch layer 3 * block).
    pub fn conv_block(block: usize) -> Conv1dShape {
        let layer = 3 * block;
        Conv1dShape {
            cin: CONV_CH as u32,
            cout: CONV_CH as u32,
            len: block_len(block) as u32,
            weight: at(&format!("conv_layers.{layer}.weight")),
            bias: at(&format!("conv_layers.{layer}.bias")),
        }
    }

    /// fc_layers.0 with its ReLU: the flattened [batch, 64, 2] -> [batch, 200].
    pub fn fc0() -> LinearShape {
        LinearShape {
            fan_in: FLAT as u32,
            fan_out: HIDDEN as u32,
            weight: at("fc_layers.0.weight"),
            bias: at("fc_layers.0.bias"),
            relu: true,
        }
    }

    /// fc_layers.2: [batch, 200] -> [batch, 80].
    pub fn fc2() -> LinearShape {
        LinearShape {
            fan_in: HIDDEN as u32,
            fan_out: EMBED_DIM as u32,
            weight: at("fc_layers.2.weight"),
            bias: at("fc_layers.2.bias"),
            relu: false,
        }
    }

    /// fc_layers.3, the batch norm that gives the embedding.
    pub fn batchnorm() -> BatchNormShape {
        BatchNormShape {
            channels: EMBED_DIM as u32,
            gamma: at("fc_layers.3.weight"),
            beta: at("fc_layers.3.bias"),
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
        }
    }
}

pub struct Megashtein {
    capacity: usize,
    tokens: wgpu::Buffer,
    output: wgpu::Buffer,
    calls: Calls,
    readback: Readback,
    // Kept alive for the bind groups in `calls`.
    _params: wgpu::Buffer,
    _running: wgpu::Buffer,
    _taps: wgpu::Buffer,
    _packed: Vec<wgpu::Buffer>,
    _activations: Vec<wgpu::Buffer>,
}

impl Megashtein {
    /// The largest batch one forward can take on this device: the biggest activation of
    /// the inference plan (`[batch, 64, 40]` after the folded first block) must fit one
    /// storage binding.
    pub fn max_batch(gpu: &Gpu) -> usize {
        let per_string = (CONV_CH * (MAX_LEN / 2)) as u64 * F32;
        (gpu.max_binding_bytes() / per_string).max(1) as usize
    }

    /// Upload `weights`, fold the first block's tap tables and build the inference plan
    /// for batches of up to `capacity` strings (clamped to [`Megashtein::max_batch`]).
    pub fn new(gpu: &Gpu, ops: &Ops, weights: &Weights, capacity: usize) -> Result<Self> {
        let capacity = capacity.clamp(1, Self::max_batch(gpu));
        let cap = capacity as u64;
        let params = storage_buffer_init(gpu, "params", &weights.params);
        let running: Vec<f32> = weights
            .running_mean
            .iter()
            .chain(&weights.running_var)
            .copied()
            .collect();
        let running = storage_buffer_init(gpu, "bn running stats", &running);
        let tokens = storage_buffer(gpu, "tokens", cap * MAX_LEN as u64 * F32);
        let buffer = |label: &str, per_string: usize| {
            storage_buffer(gpu, label, cap * per_string as u64 * F32)
        };
        // Weights prepared once, now, from the uploaded slab (queue order puts this before
        // any forward): block 0's tap tables, and the packed weights of blocks 1...
        let first = layers::block0();
        let taps = storage_buffer(gpu, "conv0 tap tables", first.taps_len() as u64 * F32);
        let mut prepare = Calls::from(ops.tapconv.fold(gpu, first, &params, &taps));
        let packed: Vec<PackedWeight> = (1..CONV_BLOCKS)
            .map(|block| {
                ops.conv1d
                    .pack(gpu, layers::conv_block(block), &params, Packing::Pooled)
            })
            .collect();
        let (fc0, fc2) = (layers::fc0(), layers::fc2());
        let packed_fc0 = ops.linear.pack(gpu, fc0, &params);
        let packed_fc2 = ops.linear.pack(gpu, fc2, &params);
        for p in packed.iter().chain([&packed_fc0, &packed_fc2]) {
            prepare.push(p.pack.clone());
        }
        prepare.set_batch(gpu, 1);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            prepare.record(&mut pass, gpu, 1);
        }
        gpu.queue.submit([encoder.finish()]);

        let mut activations = Vec::new();
        let mut calls = Calls::default();
        let mut len = MAX_LEN / 2;
        let mut x = buffer("block 0", CONV_CH * len);
        calls.push(ops.tapconv.forward(gpu, first, &params, &taps, &tokens, &x));
        // Blocks 1.., conv + avgpool + relu fused.
        for (block, weight) in (1..CONV_BLOCKS).zip(&packed) {
            let pooled = buffer("block", CONV_CH * (len / 2));
            calls.push(ops.conv1d.forward_pool_relu(
                gpu,
                layers::conv_block(block),
                &x,
                weight,
                &params,
                &pooled,
            ));
            activations.push(std::mem::replace(&mut x, pooled));
            len /= 2;
        }
        // x is now [batch, 64, 2]; flattened channel-major it is [batch, 128] as it lies.
        let hidden = buffer("hidden", HIDDEN);
        calls.push(
            ops.linear
                .forward(gpu, fc0, &x, &packed_fc0, &params, &hidden),
        );
        let projected = buffer("projected", EMBED_DIM);
        calls.push(
            ops.linear
                .forward(gpu, fc2, &hidden, &packed_fc2, &params, &projected),
        );
        let output = buffer("embedding out", EMBED_DIM);
        calls.push(ops.batchnorm.inference(
            gpu,
            layers::batchnorm(),
            &projected,
            &params,
            &running,
            &output,
        ));
        activations.extend([x, hidden, projected]);
        let readback = Readback::new(gpu, cap * EMBED_DIM as u64 * F32);
        Ok(Megashtein {
            capacity,
            tokens,
            output,
            calls,
            readback,
            _params: params,
            _running: running,
            _taps: taps,
            _packed: packed
                .into_iter()
                .chain([packed_fc0, packed_fc2])
                .map(PackedWeight::into_buffer)
                .collect(),
            _activations: activations,
        })
    }

    /// How many strings one [`Megashtein::forward`] takes at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Embed `tokens` (`[batch, 80]`, from [`crate::input::tokenize`]) and return the
    /// `[batch, 80]` embeddings, row-major.
    pub fn forward(&self, gpu: &Gpu, tokens: &[u32]) -> Result<Vec<f32>> {
        let batch = self.submit(gpu, tokens)?;
        self.collect(gpu, batch)
    }

    /// Start the forward pass of `tokens` and return the batch size; the CPU is free
    /// until [`Megashtein::collect`]. At most one batch may be in flight.
    pub fn submit(&self, gpu: &Gpu, tokens: &[u32]) -> Result<usize> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let batch = self.record(gpu, &mut encoder, tokens)?;
        self.readback
            .copy(&mut encoder, &self.output, Self::output_bytes(batch));
        gpu.queue.submit([encoder.finish()]);
        Ok(batch)
    }

    /// Upload `tokens` and record their forward pass into `encoder`; the embeddings land
    /// in [`Megashtein::output`]. Returns the batch size.
    pub fn record(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        tokens: &[u32],
    ) -> Result<usize> {
        if !tokens.len().is_multiple_of(MAX_LEN) {
            bail!(
                "token buffer of {} is not a multiple of {MAX_LEN}",
                tokens.len()
            );
        }
        let batch = tokens.len() / MAX_LEN;
        if batch > self.capacity {
            bail!(
                "batch of {batch} exceeds this model's capacity of {}",
                self.capacity
            );
        }
        if batch == 0 {
            return Ok(0);
        }
        gpu.queue
            .write_buffer(&self.tokens, 0, bytemuck::cast_slice(tokens));
        self.calls.set_batch(gpu, batch as u32);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        self.calls.record(&mut pass, gpu, batch as u32);
        Ok(batch)
    }

    /// Time each kernel of the forward pass of `tokens` on its own.
    pub fn profile(&self, gpu: &Gpu, tokens: &[u32]) -> Result<Vec<(&'static str, f64)>> {
        let batch = tokens.len() / MAX_LEN;
        self.submit(gpu, tokens)?;
        gpu.wait()?;
        self.calls.time_each(gpu, batch as u32, 5)
    }

    /// `[capacity, 80]` f32: the embeddings of the last recorded batch.
    pub fn output(&self) -> &wgpu::Buffer {
        &self.output
    }

    /// Wait for the batch started by [`Megashtein::submit`] and read its embeddings.
    pub fn collect(&self, gpu: &Gpu, batch: usize) -> Result<Vec<f32>> {
        self.readback.read(gpu, Self::output_bytes(batch))
    }

    fn output_bytes(batch: usize) -> u64 {
        (batch * EMBED_DIM) as u64 * F32
    }
}
