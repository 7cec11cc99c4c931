//! Conv1d with kernel 3, stride 1, padding 1 and bias, on `[batch, channels, len]`.
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

pub struct Conv1d {
    forward: Kernel,
}

impl Conv1d {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/conv1d.wgsl");
        Conv1d { forward: Kernel::new(gpu, "conv1d.forward", source, "forward") }
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
        let Conv1dShape { cin, cout, len, weight, bias } = shape;
        let uniform = Shape { batch: 0, cin, cout, len, weight, bias, _pad: [0; 2] };
        self.forward.call(gpu, &uniform, &[x, params, y], cout * len)
    }
}
