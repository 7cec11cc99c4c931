//! CNN-ED's conv blocks after the first, Conv1d(8 -> 8, kernel 3, padding 1, no bias) +
//! AvgPool1d(2) (+ ReLU), forward and backward (`shaders/conv8.wgsl`). The same block as
//! [`Conv1d::forward_pool`](super::conv1d::Conv1d::forward_pool) and its backward, without
//! the register tile's padding of 8 output channels to 64 rows: an invocation holds the
//! weight in registers, read straight from the slab (no packing), and computes all 8
//! channels of up to 32 positions.
//! The weight gradient is deterministic: fixed-order partial sums per segment, then a
//! fixed-order reduce. Each row is computed only up to its string's extent
//! ([`Extents`]), so a batch costs its strings' lengths rather than M each.
use super::MAX_SEGMENTS;
use super::conv1d::{Conv1dGrads, Conv1dShape};
use crate::gpu::{Call, Calls, Gpu, Kernel, storage_buffer};

/// Input and output channels.
pub const CHANNELS: u32 = 8;

/// Positions per invocation of the forward and the input gradient (as in the shader).
const POSITIONS: u32 = 32;

/// Rows per workgroup of the weight gradient's partial sums, for an input of `len`
/// places: each of its 64 invocations sums whole rows, about 64 positions' worth (as in
/// the shader).
fn segment_rows(len: u32) -> u64 {
    64 * (64 / (len / 2).max(1)).max(1) as u64
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    len: u32,
    weight: u32,
    relu: u32,
    group: u32,
    level: u32,
    _pad: [u32; 2],
}

/// Which places of each row can be nonzero (`shaders/extent.wgsl`): row r is part of
/// string `r / rows_per_string`, of `lengths[r / rows_per_string]` characters (u32), and
/// the block's input is the activation after `level` blocks. The input must be zero past
/// each row's extent, as the blocks before leave it.
#[derive(Clone, Copy)]
pub struct Extents<'a> {
    pub lengths: &'a wgpu::Buffer,
    pub rows_per_string: u32,
    pub level: u32,
}

fn uniform(shape: &Conv1dShape, extents: &Extents) -> Shape {
    assert!(
        shape.cin == CHANNELS && shape.cout == CHANNELS && shape.bias.is_none(),
        "conv8 is the bias-free {CHANNELS} -> {CHANNELS} block ({} -> {}, bias {:?} given)",
        shape.cin,
        shape.cout,
        shape.bias
    );
    Shape {
        batch: 0,
        len: shape.len,
        weight: shape.weight,
        relu: u32::from(shape.relu),
        group: extents.rows_per_string.max(1),
        level: extents.level,
        _pad: [0; 2],
    }
}

fn source() -> String {
    format!(
        "{}{}",
        super::EXTENT_WGSL,
        include_str!("../../shaders/conv8.wgsl")
    )
}

/// The source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    vec![("conv8.wgsl".to_string(), source())]
}

pub struct Conv8 {
    forward: Kernel,
    backward_data: Kernel,
    weight_partial: Kernel,
    weight_reduce: Kernel,
}

impl Conv8 {
    pub fn new(gpu: &Gpu) -> Self {
        let source = source();
        let kernel = |label, entry| Kernel::new(gpu, label, &source, entry);
        Conv8 {
            forward: kernel("conv8.forward", "forward"),
            backward_data: kernel("conv8.backward_data", "backward_data"),
            weight_partial: kernel("conv8.weight_partial", "weight_partial"),
            weight_reduce: kernel("conv8.weight_reduce", "weight_reduce"),
        }
    }

    /// `x [rows, 8, len]` -> `y [rows, 8, len / 2]` = avgpool(conv1d(x)), then ReLU if
    /// `shape.relu`; the weight `[8, 8, 3]` read from `params` at `shape.weight`. Places
    /// past a row's extent are written as zeros.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        extents: Extents,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        let per_row = (shape.len / 2).div_ceil(POSITIONS);
        let buffers = [x, params, y, extents.lengths];
        self.forward
            .call(gpu, &uniform(&shape, &extents), &buffers, per_row)
    }

    /// The backward pass of [`Conv8::forward`] for batches of up to `capacity` rows, from
    /// `b.dy` the gradient at the pooled output with any ReLU already undone: dx and dw,
    /// overwritten. dx is zero past each row's extent (where the forward's input is zero,
    /// so nothing before this block needs it).
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        extents: Extents,
        capacity: usize,
        b: Conv1dGrads,
    ) -> Calls {
        let uniform = uniform(&shape, &extents);
        let rows = capacity.max(1) as u64;
        let segments = rows.div_ceil(segment_rows(shape.len));
        assert!(
            segments <= MAX_SEGMENTS,
            "a conv8 weight gradient over {rows} rows needs more than {MAX_SEGMENTS} segments"
        );
        let weights = u64::from(CHANNELS * CHANNELS * 3);
        let partials = storage_buffer(gpu, "conv8 weight partials", segments * weights * 4);
        let mut calls = Calls::from(self.backward_data.call(
            gpu,
            &uniform,
            &[b.dy, b.params, b.dx, extents.lengths],
            shape.len.div_ceil(2).div_ceil(POSITIONS),
        ));
        calls.push(self.weight_partial.call_fixed(
            gpu,
            &uniform,
            &[b.x, b.dy, &partials, extents.lengths],
            [segments as u32, CHANNELS / 4],
        ));
        calls.push(self.weight_reduce.call_fixed(
            gpu,
            &uniform,
            &[&partials, b.grads],
            [(weights as u32).div_ceil(64), 1],
        ));
        calls.keep(partials);
        calls
    }
}
