//! CNN-ED's folded forward pass (`shaders/cnn_ed_table.wgsl`): each string's embedding
//! as the bias plus one table row per character, as `model::cnn_ed::Folded::embed` sums
//! it on the CPU.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    max_len: u32,
    dim4: u32,
    unseen: u32,
}

/// The table's sizes: `M` places, `dim` outputs (a multiple of 4), ids from `unseen` up
/// adding nothing.
#[derive(Debug, Clone, Copy)]
pub struct TableShape {
    pub max_len: usize,
    pub dim: usize,
    pub unseen: u32,
}

pub struct TableEmbed {
    kernel: Kernel,
}

/// The buffers one call reads and writes.
pub struct TableBuffers<'a> {
    /// `[C, M, dim]` f32.
    pub table: &'a wgpu::Buffer,
    /// `[dim]` f32.
    pub bias: &'a wgpu::Buffer,
    /// Every string's token ids back to back, u32.
    pub ids: &'a wgpu::Buffer,
    /// `[batch + 1]` u32: string i's ids are `ids[starts[i]..starts[i + 1]]`.
    pub starts: &'a wgpu::Buffer,
    /// `[batch, dim]` f32.
    pub out: &'a wgpu::Buffer,
}

impl TableEmbed {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/cnn_ed_table.wgsl");
        TableEmbed {
            kernel: Kernel::new(gpu, "cnn_ed.table_embed", source, "embed"),
        }
    }

    pub fn call(&self, gpu: &Gpu, shape: TableShape, b: TableBuffers) -> Call {
        assert!(
            shape.dim.is_multiple_of(4),
            "the table's rows are read as vec4"
        );
        let dim4 = (shape.dim / 4) as u32;
        let uniform = Shape {
            batch: 0,
            max_len: shape.max_len as u32,
            dim4,
            unseen: shape.unseen,
        };
        self.kernel.call(
            gpu,
            &uniform,
            &[b.table, b.bias, b.ids, b.starts, b.out],
            dim4,
        )
    }
}
