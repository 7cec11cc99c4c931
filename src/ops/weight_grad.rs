//! Weight and bias gradients of conv1d and linear layers (`shaders/weight_grad.wgsl`):
//! a matrix product reduced over every position of every string, split into segments
//! whose partial products are added in a fixed order (deterministic, no atomics).
use crate::gpu::{Calls, Gpu, Kernel, storage_buffer};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,
    taps: u32,
    pad: u32,
    weight: u32,
    bias: u32,
    segments: u32,
    _pad: [u32; 3],
}

/// A layer as the gradient sees it: `dy [batch, cout, len]`, `x [batch, cin, len]`,
/// kernel `taps` with zero padding `pad` (a linear layer is len 1, taps 1, pad 0);
/// `weight` and `bias` are offsets of dw and db in the gradient slab.
#[derive(Debug, Clone, Copy)]
pub struct WeightGradShape {
    pub cin: u32,
    pub cout: u32,
    pub len: u32,
    pub taps: u32,
    pub pad: u32,
    pub weight: u32,
    pub bias: u32,
}

/// Reduction indices per segment and output tile, as in the shader.
const SEGMENT: u32 = 1024;
const TILE_O: u32 = 32;
const TILE_K: u32 = 64;

pub struct WeightGrad {
    partial: Kernel,
    reduce: Kernel,
}

impl WeightGrad {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/weight_grad.wgsl");
        WeightGrad {
            partial: Kernel::new(gpu, "weight_grad.partial", source, "partial"),
            reduce: Kernel::new(gpu, "weight_grad.reduce", source, "reduce"),
        }
    }

    /// `grads[weight..]` = dw `[cout, cin, taps]` and `grads[bias..]` = db `[cout]`,
    /// overwritten, for batches of up to `capacity` items.
    pub fn calls(
        &self,
        gpu: &Gpu,
        shape: WeightGradShape,
        capacity: usize,
        dy: &wgpu::Buffer,
        x: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Calls {
        let rows = capacity.max(1) as u64 * u64::from(shape.len);
        let segments = rows.div_ceil(u64::from(SEGMENT)) as u32;
        let cols = shape.cin * shape.taps + 1;
        let partials = storage_buffer(
            gpu,
            "weight grad partials",
            u64::from(segments) * u64::from(shape.cout) * u64::from(cols) * 4,
        );
        let uniform = Shape {
            batch: 0,
            cin: shape.cin,
            cout: shape.cout,
            len: shape.len,
            taps: shape.taps,
            pad: shape.pad,
            weight: shape.weight,
            bias: shape.bias,
            segments,
            _pad: [0; 3],
        };
        let tiles = shape.cout.div_ceil(TILE_O) * cols.div_ceil(TILE_K);
        let outputs = (shape.cout * cols).div_ceil(64);
        let mut calls = Calls::from(self.partial.call_fixed(
            gpu,
            &uniform,
            &[dy, x, &partials],
            [tiles, segments],
        ));
        calls.push(
            self.reduce
                .call_fixed(gpu, &uniform, &[&partials, grads], [outputs, 1]),
        );
        calls.keep(partials);
        calls
    }
}
