//! AvgPool1d with window 2 and stride 2; an odd last position is dropped (floor).
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    channels: u32,
    len_in: u32,
    _pad: u32,
}

pub struct AvgPool {
    forward: Kernel,
    backward: Kernel,
}

impl AvgPool {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/avgpool.wgsl");
        AvgPool {
            forward: Kernel::new(gpu, "avgpool.forward", source, "forward"),
            backward: Kernel::new(gpu, "avgpool.backward", source, "backward"),
        }
    }

    /// `x [batch, channels, len_in]` -> `y [batch, channels, len_in / 2]`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        channels: u32,
        len_in: u32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        self.forward.call(
            gpu,
            &uniform(channels, len_in),
            &[x, y],
            channels * (len_in / 2),
        )
    }

    /// `dy [batch, channels, len_in / 2]` -> `dx [batch, channels, len_in]`.
    pub fn backward(
        &self,
        gpu: &Gpu,
        channels: u32,
        len_in: u32,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
    ) -> Call {
        self.backward.call(
            gpu,
            &uniform(channels, len_in),
            &[dy, dx],
            channels * len_in,
        )
    }
}

fn uniform(channels: u32, len_in: u32) -> Shape {
    Shape {
        batch: 0,
        channels,
        len_in,
        _pad: 0,
    }
}
