//! The megashtein architecture on the GPU: which op runs, in which order, on which
//! buffers. Activations for a fixed batch capacity are allocated once; a forward of any
//! batch up to that capacity is one encoder, one submit and one readback of the
//! `[batch, dim]` embeddings (80 for the released widths).
//!
//! The forward pass ([`forward_calls`]) is one sequence of calls that inference
//! ([`Megashtein`]) and training (`crate::train::trainer`) both build, as llm.c's
//! `gpt2_forward` serves both; it is equal to the PyTorch graph up to f32 rounding:
//! 1. `tapconv`: embedding + conv0 + avgpool + relu via per-character pair tables folded
//!    from the embedding and conv0 weights ([`Derived`]);
//! 2. blocks 1-4: `conv1d.forward_pool` (conv + avgpool + relu in one tiled kernel,
//!    over weights packed for the tile);
//! 3. fc0 (+relu), fc2; then the caller's batch norm (running statistics for inference,
//!    batch statistics in training).
//!
//! What is derived from the slab (tables, packed weights) is prepared once for inference
//! and every step in training.
use anyhow::{Result, bail};

use super::params::{CONV_BLOCKS, MAX_LEN, Widths};
use super::weights::Weights;
use crate::gpu::{Call, Calls, Gpu, Pending, ReadbackPair, storage_buffer, storage_buffer_init};
use crate::ops::Ops;
use crate::ops::PackedWeight;
use crate::ops::conv1d::Packing;

const F32: u64 = 4;

/// The shapes of the architecture's layers over the parameter slab, shared by the
/// inference plan below and the trainer (`crate::train::trainer`).
pub mod layers {
    use super::super::params::{BN_EPS, BN_MOMENTUM, MAX_LEN, VOCAB, Widths};
    use crate::ops::{
        batchnorm::BatchNormShape, conv1d::Conv1dShape, linear::LinearShape, tapconv::TapConvShape,
    };

    fn at(w: &Widths, name: &str) -> u32 {
        w.offset_of(name) as u32
    }

    /// Embedding + conv0 (+ pool + relu), folded into tap tables.
    pub fn block0(w: &Widths) -> TapConvShape {
        TapConvShape {
            len: MAX_LEN as u32,
            vocab: VOCAB as u32,
            dim: w.char_dim as u32,
            cout: w.channels as u32,
            table: at(w, "embedding.weight"),
            weight: at(w, "conv_layers.0.weight"),
            bias: at(w, "conv_layers.0.bias"),
        }
    }

    /// Input length of conv block `block` (80, 40, 20, 10, 5).
    pub fn block_len(block: usize) -> usize {
        MAX_LEN >> block
    }

    /// Conv block `block` >= 1 (PyTorch layer 3 * block).
    pub fn conv_block(w: &Widths, block: usize) -> Conv1dShape {
        let layer = 3 * block;
        Conv1dShape {
            cin: w.channels as u32,
            cout: w.channels as u32,
            len: block_len(block) as u32,
            weight: at(w, &format!("conv_layers.{layer}.weight")),
            bias: Some(at(w, &format!("conv_layers.{layer}.bias"))),
            relu: true,
        }
    }

    /// fc_layers.0 with its ReLU: the flattened [batch, channels, 2] -> [batch, hidden].
    pub fn fc0(w: &Widths) -> LinearShape {
        LinearShape {
            fan_in: w.flat() as u32,
            fan_out: w.hidden as u32,
            weight: at(w, "fc_layers.0.weight"),
            bias: Some(at(w, "fc_layers.0.bias")),
            relu: true,
        }
    }

    /// fc_layers.2: [batch, hidden] -> [batch, dim].
    pub fn fc2(w: &Widths) -> LinearShape {
        LinearShape {
            fan_in: w.hidden as u32,
            fan_out: w.dim as u32,
            weight: at(w, "fc_layers.2.weight"),
            bias: Some(at(w, "fc_layers.2.bias")),
            relu: false,
        }
    }

    /// fc_layers.3, the batch norm that gives the embedding.
    pub fn batchnorm(w: &Widths) -> BatchNormShape {
        BatchNormShape {
            channels: w.dim as u32,
            gamma: at(w, "fc_layers.3.weight"),
            beta: at(w, "fc_layers.3.bias"),
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
        }
    }
}

/// The activations of one forward pass for batches of up to a capacity, each
/// `[batch, ...]` f32, row-major per string.
pub struct Activations {
    /// Output of conv block b, relu(pool(conv)), `[batch, channels, 80 >> (b + 1)]`,
    /// b = 0..5.
    pub blocks: Vec<wgpu::Buffer>,
    /// fc0 with its ReLU, `[batch, hidden]` (the last block flattened is
    /// `[batch, 2 channels]`).
    pub hidden: wgpu::Buffer,
    /// fc2, `[batch, dim]`, before the batch norm.
    pub projected: wgpu::Buffer,
    /// The batch norm's output, the embeddings, `[batch, dim]`.
    pub embeddings: wgpu::Buffer,
}

impl Activations {
    pub fn new(gpu: &Gpu, widths: &Widths, capacity: usize) -> Self {
        let buffer = |label: &str, per_string: usize| {
            storage_buffer(gpu, label, (capacity * per_string) as u64 * F32)
        };
        Activations {
            blocks: (0..CONV_BLOCKS)
                .map(|b| buffer("block output", widths.channels * layers::block_len(b + 1)))
                .collect(),
            hidden: buffer("hidden", widths.hidden),
            projected: buffer("projected", widths.dim),
            embeddings: buffer("embeddings", widths.dim),
        }
    }
}

/// What the forward pass reads besides the slab, derived from it: block 0's pair tables
/// and the weights of blocks 1-4, fc0 and fc2 packed for the tile.
pub struct Derived {
    widths: Widths,
    fold: Call,
    taps: wgpu::Buffer,
    blocks: Vec<PackedWeight>,
    fc0: PackedWeight,
    fc2: PackedWeight,
}

impl Derived {
    pub fn new(gpu: &Gpu, ops: &Ops, widths: &Widths, params: &wgpu::Buffer) -> Self {
        let first = layers::block0(widths);
        let taps = storage_buffer(gpu, "conv0 pair tables", first.taps_len() as u64 * F32);
        let fold = ops.tapconv.fold(gpu, first, params, &taps);
        fold.set_batch(gpu, 1);
        Derived {
            widths: *widths,
            fold,
            taps,
            blocks: (1..CONV_BLOCKS)
                .map(|b| {
                    let shape = layers::conv_block(widths, b);
                    ops.conv1d.pack(gpu, shape, params, Packing::Pooled)
                })
                .collect(),
            fc0: ops.linear.pack(gpu, layers::fc0(widths), params),
            fc2: ops.linear.pack(gpu, layers::fc2(widths), params),
        }
    }

    /// The calls that derive everything from the slab, to record (with batch 1) before a
    /// forward pass whenever the slab has changed.
    pub fn prepare(&self) -> Calls {
        let mut calls = Calls::from(self.fold.clone());
        for packed in self.blocks.iter().chain([&self.fc0, &self.fc2]) {
            calls.push(packed.pack.clone());
        }
        calls
    }
}

/// The forward pass of `tokens` (`[batch, 80]` u8) up to `acts.projected`: block 0
/// folded, blocks 1-4, fc0 + ReLU, fc2, at the widths `derived` was made for. The caller
/// adds the batch norm it wants.
pub fn forward_calls(
    gpu: &Gpu,
    ops: &Ops,
    params: &wgpu::Buffer,
    derived: &Derived,
    tokens: &wgpu::Buffer,
    acts: &Activations,
) -> Calls {
    let w = &derived.widths;
    let a = &acts.blocks;
    let mut calls = Calls::from(ops.tapconv.forward(
        gpu,
        layers::block0(w),
        params,
        &derived.taps,
        tokens,
        &a[0],
    ));
    for (block, packed) in (1..CONV_BLOCKS).zip(&derived.blocks) {
        calls.push(ops.conv1d.forward_pool(
            gpu,
            layers::conv_block(w, block),
            &a[block - 1],
            packed,
            params,
            &a[block],
        ));
    }
    // The last block, [batch, channels, 2], is [batch, 2 channels] channel-major as it
    // lies.
    let last = &a[CONV_BLOCKS - 1];
    calls.extend(ops.linear.forward(
        gpu,
        layers::fc0(w),
        last,
        &derived.fc0,
        params,
        &acts.hidden,
    ));
    calls.extend(ops.linear.forward(
        gpu,
        layers::fc2(w),
        &acts.hidden,
        &derived.fc2,
        params,
        &acts.projected,
    ));
    calls
}

/// The model's weights on a device, with activations for up to `capacity` strings.
pub struct Megashtein {
    widths: Widths,
    capacity: usize,
    tokens: wgpu::Buffer,
    acts: Activations,
    calls: Calls,
    /// Staging, so one batch's embeddings can be read while the next runs.
    readbacks: ReadbackPair,
    // Kept alive for the bind groups in `calls`.
    _params: wgpu::Buffer,
    _running: wgpu::Buffer,
    _derived: Derived,
}

impl Megashtein {
    /// The largest batch one forward at `widths` can take on this device: the biggest
    /// activation of the inference plan ([`Widths::widest_activation`]) must fit one
    /// storage binding.
    pub fn max_batch(gpu: &Gpu, widths: &Widths) -> usize {
        let per_string = widths.widest_activation() as u64 * F32;
        (gpu.max_binding_bytes() / per_string).max(1) as usize
    }

    /// Upload `weights`, derive the tables and packed weights once, and build the
    /// inference plan for batches of up to `capacity` strings (clamped to
    /// [`Megashtein::max_batch`]).
    pub fn new(gpu: &Gpu, ops: &Ops, weights: &Weights, capacity: usize) -> Result<Self> {
        crate::ops::check_tile_limits(gpu)?;
        let widths = weights.widths;
        let capacity = capacity.clamp(1, Self::max_batch(gpu, &widths));
        let params = storage_buffer_init(gpu, "params", &weights.params);
        let running: Vec<f32> = weights
            .running_mean
            .iter()
            .chain(&weights.running_var)
            .copied()
            .collect();
        let running = storage_buffer_init(gpu, "bn running stats", &running);
        let tokens = storage_buffer(gpu, "tokens", (capacity * MAX_LEN) as u64);
        // Queue order puts the derivation before any forward.
        let derived = Derived::new(gpu, ops, &widths, &params);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            derived.prepare().record(&mut pass, gpu, 1);
        }
        gpu.queue.submit([encoder.finish()]);

        let acts = Activations::new(gpu, &widths, capacity);
        let mut calls = forward_calls(gpu, ops, &params, &derived, &tokens, &acts);
        calls.push(ops.batchnorm.inference(
            gpu,
            layers::batchnorm(&widths),
            &acts.projected,
            &params,
            &running,
            &acts.embeddings,
        ));
        let readbacks = ReadbackPair::new(gpu, (capacity * widths.dim) as u64 * F32);
        Ok(Megashtein {
            widths,
            capacity,
            tokens,
            acts,
            calls,
            readbacks,
            _params: params,
            _running: running,
            _derived: derived,
        })
    }

    /// How many strings one [`Megashtein::forward`] takes at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.widths.dim
    }

    /// Embed `tokens` (`[batch, 80]`, from [`crate::input::tokenize`]) and return the
    /// `[batch, dim]` embeddings, row-major.
    pub fn forward(&mut self, gpu: &Gpu, tokens: &[u8]) -> Result<Vec<f32>> {
        let pending = self.submit(gpu, tokens)?;
        self.collect(gpu, pending)
    }

    /// Start the forward pass of `tokens`; the CPU is free until
    /// [`Megashtein::collect`]. Two batches may be in flight: submitting the next batch
    /// before collecting this one keeps the device busy while this one is read back.
    pub fn submit(&mut self, gpu: &Gpu, tokens: &[u8]) -> Result<Pending> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let batch = self.record(gpu, &mut encoder, tokens)?;
        let bytes = (batch * self.widths.dim) as u64 * F32;
        Ok(self
            .readbacks
            .submit(gpu, encoder, &self.acts.embeddings, bytes))
    }

    /// Upload `tokens` and record their forward pass into `encoder`; the embeddings land
    /// in [`Megashtein::output`]. Returns the batch size.
    pub fn record(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        tokens: &[u8],
    ) -> Result<usize> {
        if !tokens.len().is_multiple_of(MAX_LEN) {
            bail!(
                "token buffer of {} is not a multiple of {MAX_LEN}",
                tokens.len()
            );
        }
        let batch = tokens.len() / MAX_LEN;
        super::check_capacity(batch, self.capacity)?;
        if batch == 0 {
            return Ok(0);
        }
        // Rows of MAX_LEN = 80 bytes: whole words, as `write_buffer` requires.
        gpu.queue.write_buffer(&self.tokens, 0, tokens);
        self.calls.set_batch(gpu, batch as u32);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        self.calls.record(&mut pass, gpu, batch as u32);
        Ok(batch)
    }

    /// Time each kernel of the forward pass of `tokens` on its own.
    pub fn profile(&mut self, gpu: &Gpu, tokens: &[u8]) -> Result<Vec<(&'static str, f64)>> {
        let batch = tokens.len() / MAX_LEN;
        self.forward(gpu, tokens)?;
        self.calls.time_each(gpu, batch as u32, 5)
    }

    /// `[capacity, dim]` f32: the embeddings of the last recorded batch.
    pub fn output(&self) -> &wgpu::Buffer {
        &self.acts.embeddings
    }

    /// Wait for a batch started by [`Megashtein::submit`] and read its `[batch, dim]`
    /// embeddings. Fails if two later batches were submitted before it was collected
    /// (its staging buffer has been reused).
    pub fn collect(&self, gpu: &Gpu, pending: Pending) -> Result<Vec<f32>> {
        self.readbacks.read(gpu, pending)
    }
}
