//! CGK codes on the GPU (`shaders/cgk_encode.wgsl`): strings to their CGK walks, bit for
//! bit the CPU's `model::cgk::Cgk::embed_into`.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    len: u32,
    reps: u32,
    words: u32,
}

/// The walks: `len` characters read (3 len steps), `reps` of them.
#[derive(Debug, Clone, Copy)]
pub struct Walks {
    pub len: usize,
    pub reps: usize,
}

pub struct CgkEncode {
    kernel: Kernel,
}

impl CgkEncode {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/cgk_encode.wgsl");
        CgkEncode {
            kernel: Kernel::new(gpu, "cgk.encode", source, "encode"),
        }
    }

    /// Codes of `[batch, 3 len reps / 4]` words from `tokens` (`[batch, 80]` bytes) and
    /// `lengths` (`[batch]` u32, cut to `len`), by the walks' `hash` bits
    /// (`[reps, 3 len, 5]` u32). `3 * len * reps` must be a multiple of 4.
    pub fn call(
        &self,
        gpu: &Gpu,
        walks: Walks,
        hash: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        lengths: &wgpu::Buffer,
        codes: &wgpu::Buffer,
    ) -> Call {
        let Walks { len, reps } = walks;
        let shape = Shape {
            batch: 0,
            len: len as u32,
            reps: reps as u32,
            words: (3 * len * reps / 4) as u32,
        };
        self.kernel
            .call(gpu, &shape, &[hash, tokens, lengths, codes], 1)
    }
}
