//! CNN-ED's conv blocks after the first, Conv1d(8 -> 8, kernel 3, padding 1, no bias) +
//! AvgPool1d(2) (+ ReLU), forward and backward (`shaders/conv8.wgsl`). The same block as
//! [`Conv1d::forward_pool`](super::conv1d::Conv1d::forward_pool) and its backward, without
//! the register tile's padding of 8 output channels to 64 rows: an invocation holds the
//! weight in registers, read straight from the slab (no packing), and computes all 8
//! channels of up to 32 positions.
//! The weight gradient is deterministic: fixed-order partial sums per segment, then a
//! fixed-order reduce.
use super::MAX_SEGMENTS;
use super::conv1d::{Conv1dGrads, Conv1dShape};
use crate::gpu::{Call, Calls, Gpu, Kernel, storage_buffer};

/// Input and output channels.
pub const CHANNELS: u32 = 8;

/// Positions per invocation of the forward and the input gradient (as in the shader).
const POSITIONS: u32 = 32;

/// `(row, j)` positions per workgroup of the weight gradient's partial sums.
pub const SEGMENT: u32 = 4096;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    len: u32,
    weight: u32,
    relu: u32,
}

fn uniform(shape: &Conv1dShape) -> Shape {
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
    }
}

pub struct Conv8 {
    forward: Kernel,
    backward_data: Kernel,
    weight_partial: Kernel,
    weight_reduce: Kernel,
}

impl Conv8 {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/conv8.wgsl");
        let kernel = |label, entry| Kernel::new(gpu, label, source, entry);
        Conv8 {
            forward: kernel("conv8.forward", "forward"),
            backward_data: kernel("conv8.backward_data", "backward_data"),
            weight_partial: kernel("conv8.weight_partial", "weight_partial"),
            weight_reduce: kernel("conv8.weight_reduce", "weight_reduce"),
        }
    }

    /// `x [rows, 8, len]` -> `y [rows, 8, len / 2]` = avgpool(conv1d(x)), then ReLU if
    /// `shape.relu`; the weight `[8, 8, 3]` read from `params` at `shape.weight`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        let per_row = (shape.len / 2).div_ceil(POSITIONS);
        self.forward
            .call(gpu, &uniform(&shape), &[x, params, y], per_row)
    }

    /// The backward pass of [`Conv8::forward`] for batches of up to `capacity` rows, from
    /// `b.dy` the gradient at the pooled output with any ReLU already undone: dx and dw,
    /// overwritten.
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        capacity: usize,
        b: Conv1dGrads,
    ) -> Calls {
        let uniform = uniform(&shape);
        let positions = capacity.max(1) as u64 * u64::from(shape.len / 2);
        let segments = positions.div_ceil(u64::from(SEGMENT)).max(1);
        assert!(
            segments <= MAX_SEGMENTS,
            "a conv8 weight gradient over {positions} positions needs more than \
             {MAX_SEGMENTS} segments of {SEGMENT}"
        );
        let weights = u64::from(CHANNELS * CHANNELS * 3);
        let partials = storage_buffer(gpu, "conv8 weight partials", segments * weights * 4);
        let mut calls = Calls::from(self.backward_data.call(
            gpu,
            &uniform,
            &[b.dy, b.params, b.dx],
            shape.len.div_ceil(2).div_ceil(POSITIONS),
        ));
        calls.push(self.weight_partial.call_fixed(
            gpu,
            &uniform,
            &[b.x, b.dy, &partials],
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
