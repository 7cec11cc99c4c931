//! Linear layer with bias and an optional fused ReLU, PyTorch weight layout `[out, in]`;
//! tiled through workgroup memory (see `shaders/linear.wgsl`).
use crate::gpu::{Call, Gpu, Kernel};

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
}

impl Linear {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/linear.wgsl");
        Linear {
            forward: Kernel::new(gpu, "linear.forward", source, "forward"),
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
}
