//! CNN-ED's blocks up to the first ReLU, folded (`shaders/cnn_ed_prefix.wgsl`): each
//! character's row after them from the responses of the places that hold it
//! (`model::cnn_ed::Prefix`), for the layered network's inference.
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    alphabet: u32,
    max_len: u32,
    len: u32,
    width: u32,
    relu: u32,
    blocks: u32,
    _pad: u32,
}

/// The sizes: `alphabet` rows a string (of `max_len` ids), `blocks` blocks folded,
/// `len` positions a row after them, `width` values a channel of a response, and whether
/// a ReLU ends them.
#[derive(Debug, Clone, Copy)]
pub struct PrefixShape {
    pub alphabet: usize,
    pub max_len: usize,
    pub blocks: usize,
    pub len: usize,
    pub width: usize,
    pub relu: bool,
}

/// The buffers: `tokens [batch, max_len]` u32 (ids >= alphabet add nothing) and the
/// strings' `lengths [batch]` u32 (positions past a string's extent are zeros), the
/// responses `[max_len, 8, width]`, `first [max_len]` and `reach [len, 2]` u32 as
/// `Prefix` holds them, and `out [batch * alphabet, 8, len]`.
pub struct PrefixBuffers<'a> {
    pub tokens: &'a wgpu::Buffer,
    pub lengths: &'a wgpu::Buffer,
    pub responses: &'a wgpu::Buffer,
    pub first: &'a wgpu::Buffer,
    pub reach: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// Positions a thread owns (as in the shader).
const POSITIONS: u32 = 4;

fn source() -> String {
    format!(
        "{}{}",
        super::EXTENT_WGSL,
        include_str!("../../shaders/cnn_ed_prefix.wgsl")
    )
}

/// The source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    vec![("cnn_ed_prefix.wgsl".to_string(), source())]
}

pub struct PrefixEmbed {
    forward: Kernel,
}

impl PrefixEmbed {
    pub fn new(gpu: &Gpu) -> Self {
        PrefixEmbed {
            forward: Kernel::new(gpu, "cnn_ed_prefix.forward", &source(), "forward"),
        }
    }

    /// Every row of a batch of strings after the folded blocks (recorded per string: one
    /// thread per `POSITIONS` positions).
    pub fn call(&self, gpu: &Gpu, shape: PrefixShape, b: PrefixBuffers) -> Call {
        let uniform = Shape {
            batch: 0,
            alphabet: shape.alphabet as u32,
            max_len: shape.max_len as u32,
            len: shape.len as u32,
            width: shape.width as u32,
            relu: u32::from(shape.relu),
            blocks: shape.blocks as u32,
            _pad: 0,
        };
        let per_string = (shape.len as u32).div_ceil(POSITIONS);
        self.forward.call(
            gpu,
            &uniform,
            &[b.tokens, b.responses, b.first, b.reach, b.out, b.lengths],
            per_string,
        )
    }
}
