//! Linear layer with bias and an optional fused ReLU, PyTorch weight layout `[out, in]`:
//! the register-tiled product of `shaders/gemm_tile.wgsl` over a weight packed
//! `[in][out]` ([`Linear::pack`]). The backward pass reuses the product for dx (over the
//! weight as it lies) and `weight_grad` for dw, db. A reduction longer than the tile
//! stages ([`KMAX`]) is split into calls of at most `KMAX` that add up in order
//! (split-K), so any `fan_in` and `fan_out` work.
use super::weight_grad::{WeightGrad, WeightGradShape};
use super::{PackedWeight, TileReads, tile_rows};
use crate::gpu::{Calls, Gpu, Kernel};

/// The longest reduction one call stages in workgroup memory (2 x 200 4x4 f32
/// matrices, 25 KiB); longer ones take several calls.
pub const KMAX: u32 = 200;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    fan_in: u32,
    fan_out: u32,
    weight: u32,
    bias: u32,
    relu: u32,
    rows: u32,
    flags: u32,
    k0: u32,
    k_len: u32,
}

// `flags` bits, as in the shader.
const TRANSPOSE: u32 = 2;
const NO_BIAS: u32 = 4;
const ACCUMULATE: u32 = 8;

/// Sizes of one linear layer; `weight` and `bias` are offsets in the parameter slab
/// (no bias: none added, no gradient written).
#[derive(Debug, Clone, Copy)]
pub struct LinearShape {
    pub fan_in: u32,
    pub fan_out: u32,
    pub weight: u32,
    pub bias: Option<u32>,
    pub relu: bool,
}

impl LinearShape {
    fn uniform(&self, flags: u32) -> Shape {
        let flags = if self.bias.is_none() {
            flags | NO_BIAS
        } else {
            flags
        };
        let outs = if flags & TRANSPOSE != 0 {
            self.fan_in
        } else {
            self.fan_out
        };
        Shape {
            batch: 0,
            fan_in: self.fan_in,
            fan_out: self.fan_out,
            weight: self.weight,
            bias: self.bias.unwrap_or(0),
            relu: u32::from(self.relu),
            rows: tile_rows(outs),
            flags,
            k0: 0,
            k_len: 0,
        }
    }

    /// The uniforms of a forward over this shape, one per split-K call: reduction
    /// ranges of at most [`KMAX`], the bias (unless `flags` has `NO_BIAS`) with the
    /// first, the ReLU with the last.
    fn forward_uniforms(&self, flags: u32) -> Vec<Shape> {
        let whole = self.uniform(flags);
        let starts: Vec<u32> = (0..self.fan_in).step_by(KMAX as usize).collect();
        let last = starts.len() - 1;
        starts
            .iter()
            .enumerate()
            .map(|(i, &k0)| Shape {
                k0,
                k_len: KMAX.min(self.fan_in - k0),
                relu: if i == last { whole.relu } else { 0 },
                flags: if i == 0 {
                    whole.flags
                } else {
                    whole.flags | NO_BIAS | ACCUMULATE
                },
                ..whole
            })
            .collect()
    }
}

pub struct Linear {
    forward: Kernel,
    pack_weight: Kernel,
}

/// The buffers of one linear backward pass.
pub struct LinearGrads<'a> {
    /// The forward's input `[batch, fan_in]`.
    pub x: &'a wgpu::Buffer,
    /// The gradient of the output before any fused ReLU `[batch, fan_out]`.
    pub dy: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    /// The input gradient `[batch, fan_in]`, written.
    pub dx: &'a wgpu::Buffer,
}

impl Linear {
    pub fn new(gpu: &Gpu, reads: TileReads) -> Self {
        let source = source(reads);
        Linear {
            forward: Kernel::new(gpu, "linear.forward", &source, "forward"),
            pack_weight: Kernel::new(gpu, "linear.pack_weight", &source, "pack_weight"),
        }
    }

    /// The weight of `shape` packed from `params` for [`Linear::forward`].
    pub fn pack(&self, gpu: &Gpu, shape: LinearShape, params: &wgpu::Buffer) -> PackedWeight {
        self.pack_flags(gpu, shape, params, 0)
    }

    fn pack_flags(
        &self,
        gpu: &Gpu,
        shape: LinearShape,
        params: &wgpu::Buffer,
        flags: u32,
    ) -> PackedWeight {
        let uniform = shape.uniform(flags);
        let ins = if flags & TRANSPOSE != 0 {
            shape.fan_out
        } else {
            shape.fan_in
        };
        let len = ins * uniform.rows;
        PackedWeight::new(gpu, &self.pack_weight, &uniform, params, len)
    }

    /// `x [batch, fan_in]` -> `y [batch, fan_out]`, with `packed` from [`Linear::pack`]
    /// (recorded before).
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: LinearShape,
        x: &wgpu::Buffer,
        packed: &PackedWeight,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Calls {
        self.forward_calls(gpu, shape, 0, [x, &packed.weight, params, y])
    }

    fn forward_calls(
        &self,
        gpu: &Gpu,
        shape: LinearShape,
        flags: u32,
        buffers: [&wgpu::Buffer; 4],
    ) -> Calls {
        let mut calls = Calls::default();
        for uniform in shape.forward_uniforms(flags) {
            calls.push(self.forward.call(gpu, &uniform, &buffers, THREADS_PER_ROW));
        }
        calls
    }

    /// The backward pass for batches up to `capacity`: dx, dw and db, overwritten. A fused
    /// ReLU is not undone here: run the ReLU backward on `dy` first.
    pub fn backward(
        &self,
        gpu: &Gpu,
        weight_grad: &WeightGrad,
        shape: LinearShape,
        capacity: usize,
        b: LinearGrads,
    ) -> Calls {
        let transposed_weight = self.pack_flags(gpu, shape, b.params, TRANSPOSE);
        let transposed = LinearShape {
            fan_in: shape.fan_out,
            fan_out: shape.fan_in,
            relu: false,
            ..shape
        };
        let mut calls = Calls::from(transposed_weight.pack);
        calls.extend(self.forward_calls(
            gpu,
            transposed,
            NO_BIAS,
            [b.dy, &transposed_weight.weight, b.params, b.dx],
        ));
        calls.extend(weight_grad.calls(
            gpu,
            WeightGradShape {
                cin: shape.fan_in,
                cout: shape.fan_out,
                len: 1,
                taps: 1,
                pad: 0,
                weight: shape.weight,
                bias: shape.bias,
                pooled: false,
            },
            capacity,
            b.dy,
            b.x,
            b.grads,
        ));
        calls.keep(transposed_weight.weight);
        calls
    }
}

/// The shader, after the tile.
fn source(reads: TileReads) -> String {
    format!(
        "const KMAX: u32 = {KMAX}u;\n{}{}",
        reads.wgsl(),
        include_str!("../../shaders/linear.wgsl")
    )
}

/// Every source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    super::reader_sources("linear.wgsl", source)
}

/// A workgroup covers 32 rows of the batch, and a call's grid counts workgroups of 64
/// threads: 2 threads' worth per row.
const THREADS_PER_ROW: u32 = 2;
