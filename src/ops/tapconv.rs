//! Embedding + conv0 + AvgPool1d(2) + ReLU, folded (`shaders/tapconv.wgsl`).
//!
//! conv0 of an embedding lookup only ever sees `vocab` distinct input columns, so its
//! three taps are precomputed per character: `T[t, c, o] = sum_i w[o, i, t] * E[c, i]`.
//! With the pool, one output reads four positions, so the fold keeps four pair tables
//! `0.5 [T0, T0 + T1, T1 + T2, T2]` (4 x 129 x 64 floats, a zero row for the padding):
//! a pooled output is the bias plus four table reads instead of 840 multiply-adds, which
//! removes ~70% of the model's arithmetic and the `[batch, 140, 80]` embedding
//! activation. The unfolded embedding and conv1d ops stay, tested on their own.
//!
//! The tables are built on the GPU by [`TapConv::fold`] from the parameter slab itself,
//! not on the CPU at load: a model whose slab is updated in place on the device (the
//! trainer's validation passes) refolds with one dispatch and no round trip, and the
//! cost (3.4 M multiply-adds, once per set of weights) is negligible. f32 accumulation
//! over 140 terms keeps the tables within ~1e-6 relative of an f64 fold.
//!
//! The trainer uses the fold too: its backward pass gathers the gradient of the tables
//! (`Embedding::backward_taps`) and maps it back onto the conv weight, bias and
//! embedding table ([`TapConv::backward`]), a per-step cost independent of the batch.
use super::TileReads;
use crate::gpu::{Call, Calls, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    len: u32,
    vocab: u32,
    dim: u32,
    cout: u32,
    table: u32,
    weight: u32,
    bias: u32,
}

/// Sizes of the folded layer; `table`, `weight` and `bias` are offsets in the slab of the
/// embedding table `[vocab, dim]`, conv weight `[cout, dim, 3]` and conv bias `[cout]`.
#[derive(Debug, Clone, Copy)]
pub struct TapConvShape {
    pub len: u32,
    pub vocab: u32,
    pub dim: u32,
    pub cout: u32,
    pub table: u32,
    pub weight: u32,
    pub bias: u32,
}

impl TapConvShape {
    /// Floats in the folded pair tables `[4, vocab + 1, cout rounded up to 4]` the
    /// forward reads.
    pub fn taps_len(&self) -> usize {
        4 * (self.vocab as usize + 1) * (self.cout as usize).next_multiple_of(4)
    }

    /// Floats in the tap tables' gradient `[3, vocab, cout]` the backward reads.
    pub fn tap_grads_len(&self) -> usize {
        3 * self.vocab as usize * self.cout as usize
    }

    fn uniform(&self) -> Shape {
        let TapConvShape {
            len,
            vocab,
            dim,
            cout,
            table,
            weight,
            bias,
        } = *self;
        Shape {
            batch: 0,
            len,
            vocab,
            dim,
            cout,
            table,
            weight,
            bias,
        }
    }
}

/// The largest reduction of the backward products (`vocab`, and `3 * cout`).
pub const KMAX: u32 = 192;

/// The shader computing backward product `product` (0: conv weight and bias, 1: the
/// embedding table), after the tile and the token reader.
fn source(product: u32, reads: TileReads) -> String {
    format!(
        "const KMAX: u32 = {KMAX}u;\nconst PRODUCT: u32 = {product}u;\n{}{}{}",
        reads.wgsl(),
        super::TOKENS_WGSL,
        include_str!("../../shaders/tapconv.wgsl")
    )
}

/// Every source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    super::tiled_sources("tapconv.wgsl product", 2, source)
}

pub struct TapConv {
    fold: Kernel,
    forward: Kernel,
    backward_weight: Kernel,
    backward_table: Kernel,
}

impl TapConv {
    pub fn new(gpu: &Gpu, reads: TileReads) -> Self {
        let (weight, table) = (source(0, reads), source(1, reads));
        TapConv {
            fold: Kernel::new(gpu, "tapconv.fold", &weight, "fold"),
            forward: Kernel::new(gpu, "tapconv.forward", &weight, "forward"),
            backward_weight: Kernel::new(gpu, "tapconv.backward_weight", &weight, "backward"),
            backward_table: Kernel::new(gpu, "tapconv.backward_table", &table, "backward"),
        }
    }

    /// `params` -> the pair tables `taps [4, vocab + 1, cout rounded up to 4]`. Record it with batch 1, once per set of
    /// weights, before the forward passes that read `taps`.
    pub fn fold(
        &self,
        gpu: &Gpu,
        shape: TapConvShape,
        params: &wgpu::Buffer,
        taps: &wgpu::Buffer,
    ) -> Call {
        self.fold.call(
            gpu,
            &shape.uniform(),
            &[params, taps],
            shape.taps_len() as u32,
        )
    }

    /// `tokens [batch, len]` (u8) -> `y [batch, cout, len / 2]`
    /// = relu(avgpool(conv1d(embedding(tokens)))), reading the folded `taps`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: TapConvShape,
        params: &wgpu::Buffer,
        taps: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        // One workgroup (16 threads) per string.
        let per_item = if shape.len >= 2 { 64 } else { 0 };
        self.forward
            .call(gpu, &shape.uniform(), &[params, taps, tokens, y], per_item)
    }

    /// From the tap-table gradient `dtaps [3, vocab, cout]`: the conv weight and bias
    /// gradients and the embedding table gradient, into `grads` at the parameter
    /// offsets, overwritten. Two calls with fixed grids.
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: TapConvShape,
        params: &wgpu::Buffer,
        dtaps: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Calls {
        assert!(
            shape.vocab <= KMAX && 3 * shape.cout <= KMAX,
            "the folded conv's backward reduces over at most {KMAX} values"
        );
        let tiles = |cols: u32| cols.div_ceil(32);
        let mut calls = Calls::from(self.backward_weight.call_fixed(
            gpu,
            &shape.uniform(),
            &[params, dtaps, grads],
            [tiles(shape.dim + 1), 3],
        ));
        calls.push(self.backward_table.call_fixed(
            gpu,
            &shape.uniform(),
            &[params, dtaps, grads],
            [tiles(shape.vocab), 1],
        ));
        calls
    }
}
