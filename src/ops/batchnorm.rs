//! BatchNorm1d over `[batch, channels]`; inference form uses the running statistics.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    channels: u32,
    gamma: u32,
    beta: u32,
    eps: f32,
    _pad: [u32; 3],
}

/// Sizes of one batch norm; `gamma` and `beta` are offsets in the parameter slab.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormShape {
    pub channels: u32,
    pub gamma: u32,
    pub beta: u32,
    pub eps: f32,
}

pub struct BatchNorm {
    inference: Kernel,
}

impl BatchNorm {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/batchnorm.wgsl");
        BatchNorm {
            inference: Kernel::new(gpu, "batchnorm.inference", source, "inference"),
        }
    }

    /// `x [batch, channels]` -> `y`, with `stats` = running_mean ++ running_var.
    pub fn inference(
        &self,
        gpu: &Gpu,
        shape: BatchNormShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        let BatchNormShape {
            channels,
            gamma,
            beta,
            eps,
        } = shape;
        let uniform = Shape {
            batch: 0,
            channels,
            gamma,
            beta,
            eps,
            _pad: [0; 3],
        };
        self.inference
            .call(gpu, &uniform, &[x, params, stats, y], channels)
    }
}
