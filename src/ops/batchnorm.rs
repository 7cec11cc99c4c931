//! BatchNorm1d over `[batch, channels]`: the inference form (running statistics) and the
//! training forward (batch statistics, running-statistics update) with its backward.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    channels: u32,
    gamma: u32,
    beta: u32,
    eps: f32,
    momentum: f32,
    _pad: [u32; 2],
}

/// `gamma` and `beta` are offsets in the parameter slab (and in the gradient slab).
#[derive(Debug, Clone, Copy)]
pub struct BatchNormShape {
    pub channels: u32,
    pub gamma: u32,
    pub beta: u32,
    pub eps: f32,
    /// PyTorch's momentum: running = (1 - momentum) * running + momentum * batch value.
    pub momentum: f32,
}

impl BatchNormShape {
    fn uniform(&self) -> Shape {
        Shape {
            batch: 0,
            channels: self.channels,
            gamma: self.gamma,
            beta: self.beta,
            eps: self.eps,
            momentum: self.momentum,
            _pad: [0; 2],
        }
    }
}

pub struct BatchNorm {
    inference: Kernel,
    train_forward: Kernel,
    backward: Kernel,
}

impl BatchNorm {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/batchnorm.wgsl");
        BatchNorm {
            inference: Kernel::new(gpu, "batchnorm.inference", source, "inference"),
            train_forward: Kernel::new(gpu, "batchnorm.train_forward", source, "train_forward"),
            backward: Kernel::new(gpu, "batchnorm.backward", source, "backward"),
        }
    }

    /// `x` -> `y` with the running statistics `stats` (running_mean ++ running_var).
    pub fn inference(
        &self,
        gpu: &Gpu,
        shape: BatchNormShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        stats: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        self.inference.call(
            gpu,
            &shape.uniform(),
            &[x, params, stats, y],
            shape.channels,
        )
    }

    /// `x` -> `y` with the batch's statistics; writes `saved` (mean ++ inv_std, for
    /// the backward pass) and moves `running` (running_mean ++ running_var) in place.
    /// One thread per channel: record with the batch size, it dispatches `channels`.
    #[allow(clippy::too_many_arguments)]
    pub fn train_forward(
        &self,
        gpu: &Gpu,
        shape: BatchNormShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        running: &wgpu::Buffer,
        y: &wgpu::Buffer,
        saved: &wgpu::Buffer,
    ) -> Call {
        self.train_forward.call_threads(
            gpu,
            &shape.uniform(),
            &[x, params, running, y, saved],
            u64::from(shape.channels),
        )
    }

    /// The backward pass of [`BatchNorm::train_forward`]: `dx` and dgamma, dbeta (into
    /// `grads` at the parameter offsets), overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: BatchNormShape,
        x: &wgpu::Buffer,
        params: &wgpu::Buffer,
        saved: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Call {
        self.backward.call_threads(
            gpu,
            &shape.uniform(),
            &[x, params, saved, dy, dx, grads],
            u64::from(shape.channels),
        )
    }
}
