//! Conv1d with kernel 3, stride 1, padding 1 and bias, on `[batch, channels, len]`, and
//! the same conv fused with the AvgPool1d(2) + ReLU that follow it in the model (the
//! inference path). Both are one tiled matrix product in `shaders/conv1d.wgsl`. The
//! backward pass reuses that product for the input gradient (a conv with flipped,
//! transposed weights) and `weight_grad` for the weight and bias gradients.
use super::weight_grad::{WeightGrad, WeightGradShape};
use crate::gpu::{Call, Calls, Gpu, Kernel, storage_buffer};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,
    weight: u32,
    bias: u32,
    _pad: [u32; 2],
}

/// Sizes of one conv layer; `weight` and `bias` are offsets in the parameter slab.
#[derive(Debug, Clone, Copy)]
pub struct Conv1dShape {
    pub cin: u32,
    pub cout: u32,
    pub len: u32,
    pub weight: u32,
    pub bias: u32,
}

/// Threads per workgroup, and output columns (positions of all strings) one workgroup
/// computes (`TC` in the shader).
const WORKGROUP: u32 = 64;
const COLUMNS_PER_GROUP: u32 = 32;

pub struct Conv1d {
    forward: Kernel,
    forward_pool_relu: Kernel,
    flip_weight: Kernel,
}

/// The buffers of one conv backward pass.
pub struct Conv1dGrads<'a> {
    /// The forward's input `[batch, cin, len]`.
    pub x: &'a wgpu::Buffer,
    /// The gradient of the conv output `[batch, cout, len]`.
    pub dy: &'a wgpu::Buffer,
    /// The parameter slab (read) and the gradient slab (dw, db written at the layer's offsets).
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    /// The input gradient `[batch, cin, len]`, written.
    pub dx: &'a wgpu::Buffer,
}

impl Conv1d {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/conv1d.wgsl");
        Conv1d {
            forward: Kernel::new(gpu, "conv1d.forward", source, "forward"),
            forward_pool_relu: Kernel::new(
                gpu,
                "conv1d.forward_pool_relu",
                source,
                "forward_pool_relu",
            ),
            flip_weight: Kernel::new(gpu, "conv1d.flip_weight", source, "flip_weight"),
        }
    }

    /// `x [batch, cin, len]` -> `y [batch, cout, len]`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        let uniform = uniform(shape);
        self.forward
            .call(gpu, &uniform, &[x, params, y], threads_per_item(shape.len))
    }

    /// `x [batch, cin, len]` -> `y [batch, cout, len / 2]` = relu(avgpool(conv1d(x))),
    /// the inference form of one conv block (the pool is folded into the conv: half the
    /// work, and neither the conv nor the pool output is written out).
    pub fn forward_pool_relu(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        let uniform = uniform(shape);
        self.forward_pool_relu.call(
            gpu,
            &uniform,
            &[x, params, y],
            threads_per_item(shape.len / 2),
        )
    }

    /// The backward pass of [`Conv1d::forward`] for batches up to `capacity`: dx, dw and
    /// db, each overwritten. dx is the forward product over the weights flipped and
    /// transposed into a scratch buffer by this pass's first call.
    pub fn backward(
        &self,
        gpu: &Gpu,
        weight_grad: &WeightGrad,
        shape: Conv1dShape,
        capacity: usize,
        b: Conv1dGrads,
    ) -> Calls {
        let weights = shape.cin * shape.cout * 3;
        let flipped = storage_buffer(
            gpu,
            "flipped conv weight",
            u64::from(weights + shape.cin) * 4,
        );
        let flip = self.flip_weight.call_fixed(
            gpu,
            &uniform(shape),
            &[b.params, &flipped],
            [(weights + shape.cin).div_ceil(64), 1],
        );
        let transposed = Conv1dShape {
            cin: shape.cout,
            cout: shape.cin,
            len: shape.len,
            weight: 0,
            bias: weights,
        };
        let mut calls = Calls::from(flip);
        calls.push(self.forward.call(
            gpu,
            &uniform(transposed),
            &[b.dy, &flipped, b.dx],
            threads_per_item(shape.len),
        ));
        calls.extend(weight_grad.calls(
            gpu,
            WeightGradShape {
                cin: shape.cin,
                cout: shape.cout,
                len: shape.len,
                taps: 3,
                pad: 1,
                weight: shape.weight,
                bias: shape.bias,
            },
            capacity,
            b.dy,
            b.x,
            b.grads,
        ));
        calls.keep(flipped);
        calls
    }
}

fn uniform(shape: Conv1dShape) -> Shape {
    let Conv1dShape {
        cin,
        cout,
        len,
        weight,
        bias,
    } = shape;
    Shape {
        batch: 0,
        cin,
        cout,
        len,
        weight,
        bias,
        _pad: [0; 2],
    }
}

/// A workgroup of 64 threads covers 32 output columns, so each string (`len_out`
/// columns) needs `2 * len_out` threads' worth of workgroups.
fn threads_per_item(len_out: u32) -> u32 {
    len_out * (WORKGROUP / COLUMNS_PER_GROUP)
}
