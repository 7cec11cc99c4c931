//! Character embedding lookup, output channel-major `[batch, dim, len]`.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    len: u32,
    dim: u32,
    vocab: u32,
    table: u32,
    _pad: [u32; 3],
}

/// Sizes of one embedding layer; `table` is the offset of `[vocab, dim]` in the slab.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingShape {
    pub len: u32,
    pub dim: u32,
    pub vocab: u32,
    pub table: u32,
}

pub struct Embedding {
    forward: Kernel,
}

impl Embedding {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/embedding.wgsl");
        Embedding {
            forward: Kernel::new(gpu, "embedding.forward", source, "forward"),
        }
    }

    /// `tokens [batch, len]` (u32) -> `out [batch, dim, len]`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        tokens: &wgpu::Buffer,
        params: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Call {
        let EmbeddingShape {
            len,
            dim,
            vocab,
            table,
        } = shape;
        let uniform = Shape {
            batch: 0,
            len,
            dim,
            vocab,
            table,
            _pad: [0; 3],
        };
        self.forward
            .call(gpu, &uniform, &[tokens, params, out], dim * len)
    }
}
