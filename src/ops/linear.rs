//! Linear layer with bias and an optional fused ReLU, PyTorch weight layout `[out, in]`;
//! tiled through workgroup memory (see `shaders/linear.wgsl`). The backward pass reuses
//! the forward product over the transposed weight for dx, and `weight_grad` for dw, db.
use super::weight_grad::{WeightGrad, WeightGradShape};
use crate::gpu::{Call, Calls, Gpu, Kernel, storage_buffer};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    fan_in: u32,
    fan_out: u32,
    weight: u32,
    bias: u32,
    relu: u32,
    _pad: [u32; 2],
}

/// Sizes of one linear layer; `weight` and `bias` are offsets in the parameter slab.
#[derive(Debug, Clone, Copy)]
pub struct LinearShape {
    pub fan_in: u32,
    pub fan_out: u32,
    pub weight: u32,
    pub bias: u32,
    pub relu: bool,
}

pub struct Linear {
    forward: Kernel,
    transpose_weight: Kernel,
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
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/linear.wgsl");
        Linear {
            forward: Kernel::new(gpu, "linear.forward", source, "forward"),
            transpose_weight: Kernel::new(
                gpu,
                "linear.transpose_weight",
                source,
                "transpose_weight",
            ),
        }
    }

    /// `x [batch, fan_in]` -> `y [batch, fan_out]`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: LinearShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        let LinearShape {
            fan_in,
            fan_out,
            weight,
            bias,
            relu,
        } = shape;
        let uniform = Shape {
            batch: 0,
            fan_in,
            fan_out,
            weight,
            bias,
            relu: u32::from(relu),
            _pad: [0; 2],
        };
        // One workgroup of 64 threads per 32 rows: 2 threads' worth per row.
        self.forward.call(gpu, &uniform, &[x, params, y], 2)
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
        let weights = shape.fan_in * shape.fan_out;
        let transposed = storage_buffer(
            gpu,
            "transposed linear weight",
            u64::from(weights + shape.fan_in) * 4,
        );
        let uniform = |fan_in, fan_out, weight, bias| Shape {
            batch: 0,
            fan_in,
            fan_out,
            weight,
            bias,
            relu: 0,
            _pad: [0; 2],
        };
        let mut calls = Calls::from(self.transpose_weight.call_fixed(
            gpu,
            &uniform(shape.fan_in, shape.fan_out, shape.weight, shape.bias),
            &[b.params, &transposed],
            [(weights + shape.fan_in).div_ceil(64), 1],
        ));
        calls.push(self.forward.call(
            gpu,
            &uniform(shape.fan_out, shape.fan_in, 0, weights),
            &[b.dy, &transposed, b.dx],
            2,
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
            },
            capacity,
            b.dy,
            b.x,
            b.grads,
        ));
        calls.keep(transposed);
        calls
    }
}
