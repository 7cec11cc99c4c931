//! Conv1d with kernel 3, stride 1, padding 1 and bias, on `[batch, channels, len]`, and
//! the same conv fused with the AvgPool1d(2) + ReLU that follow it in the model (the
//! inference path). Both are one tiled matrix product in `shaders/conv1d.wgsl`.
use crate::gpu::{Call, Gpu, Kernel};

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
