//! ReLU in place, and its backward pass in place on the gradient.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    per_item: u32,
    _pad: [u32; 2],
}

pub struct Relu {
    forward: Kernel,
    backward: Kernel,
}

impl Relu {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/relu.wgsl");
        Relu {
            forward: Kernel::new(gpu, "relu.forward", source, "forward"),
            backward: Kernel::new(gpu, "relu.backward", source, "backward"),
        }
    }

    /// `x = max(x, 0)` over `batch * per_item` elements.
    pub fn forward(&self, gpu: &Gpu, per_item: u32, x: &wgpu::Buffer) -> Call {
        let uniform = Shape {
            batch: 0,
            per_item,
            _pad: [0; 2],
        };
        self.forward.call(gpu, &uniform, &[x], per_item)
    }

    /// `grad = grad * (y > 0)` over `batch * per_item` elements, `y` the forward's output.
    pub fn backward(
        &self,
        gpu: &Gpu,
        per_item: u32,
        y: &wgpu::Buffer,
        grad: &wgpu::Buffer,
    ) -> Call {
        let uniform = Shape {
            batch: 0,
            per_item,
            _pad: [0; 2],
        };
        self.backward.call(gpu, &uniform, &[y, grad], per_item)
    }
}
