//! CNN-ED's first block, Conv1d(1 -> 8, k 3, pad 1, no bias) + AvgPool1d(2), on the
//! one-hot input of the per-character layout (`shaders/onehot_conv.wgsl`): string b's
//! C rows `b * C + c` are the indicators of each character, read straight from the
//! tokens, never materialised. The backward pass is the weight gradient only (the input
//! is data), deterministic: fixed-order partial sums per segment, then a fixed-order
//! reduce.
//!
//! Tokens are `u32` ids `[batch, stride]`; an id >= the alphabet size is an all-zero
//! column, which serves both for characters outside the alphabet and for the padding
//! after a string's end (fill it with `alphabet` or any larger id).
//!
//! Each string is computed only up to its extent (`shaders/extent.wgsl`), from its
//! length in a `lengths` buffer (`[batch]` u32): the forward writes zeros after it.
use super::MAX_SEGMENTS;
use crate::gpu::{Call, Calls, Gpu, Kernel, storage_buffer};

/// Output channels of the block (the paper's 8 kernels).
pub const CHANNELS: u32 = 8;

/// Positions per workgroup of the weight gradient's partial sums, about: a workgroup
/// takes whole strings.
const SEGMENT: u32 = 512;

/// Workgroups of the weight gradient's partial sums for `strings` strings of conv input
/// length `len` (as the shader's `segment_strings`).
pub fn weight_segments(strings: usize, len: u32) -> u64 {
    let per_segment = (SEGMENT / (len / 2).max(1)).max(1);
    (strings.max(1) as u64).div_ceil(u64::from(per_segment))
}

/// Output positions per invocation of the forward (as in the shader).
const FORWARD_POSITIONS: u32 = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    alphabet: u32,
    len: u32,
    stride: u32,
    weight: u32,
    impulses: u32,
    _pad: [u32; 2],
}

/// One first block: `alphabet` rows per string, conv input length `len` (tokens at
/// positions >= `len` are ignored, so a batch of short strings can run a shorter
/// `len`), `stride` tokens per string in the token buffer (`len <= stride`), `weight`
/// the offset of w `[8, 1, 3]` in the parameter slab (and of dw in the gradient slab).
/// With `impulses`, the tokens are not read: "string" b is a single character 0 at place
/// b (alphabet 1), the inputs whose responses make CNN-ED's folded table.
#[derive(Debug, Clone, Copy)]
pub struct OneHotConvShape {
    pub alphabet: u32,
    pub len: u32,
    pub stride: u32,
    pub weight: u32,
    pub impulses: bool,
}

impl OneHotConvShape {
    fn uniform(&self) -> Shape {
        assert!(
            self.len <= self.stride,
            "conv length {} past the {} tokens per string",
            self.len,
            self.stride
        );
        Shape {
            batch: 0,
            alphabet: self.alphabet,
            len: self.len,
            stride: self.stride,
            weight: self.weight,
            impulses: u32::from(self.impulses),
            _pad: [0; 2],
        }
    }

    /// Floats of the output per string: `[alphabet, 8, len / 2]`.
    pub fn out_len(&self) -> usize {
        (self.alphabet * CHANNELS * (self.len / 2)) as usize
    }
}

/// A batch's token ids as the first block (and the folded first blocks) read them, into
/// `ids` and `lengths` (both cleared first): each string's ids padded to `stride` with
/// [`PAD_ID`](super::cnn_ed::PAD_ID), and its length. A string longer than `stride` is a
/// bug of the caller, which cuts strings to M.
pub fn pad_ids<S: IntoIterator<Item = u32>>(
    strings: impl IntoIterator<Item = S>,
    stride: usize,
    ids: &mut Vec<u32>,
    lengths: &mut Vec<u32>,
) {
    ids.clear();
    lengths.clear();
    for string in strings {
        let start = ids.len();
        ids.extend(string);
        let len = ids.len() - start;
        assert!(
            len <= stride,
            "a string of {len} ids past the stride {stride}"
        );
        lengths.push(len as u32);
        ids.resize(start + stride, super::cnn_ed::PAD_ID);
    }
}

fn source() -> String {
    format!(
        "{}{}",
        super::EXTENT_WGSL,
        include_str!("../../shaders/onehot_conv.wgsl")
    )
}

/// The source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    vec![("onehot_conv.wgsl".to_string(), source())]
}

/// A batch's strings: their ids `[batch, stride]` and lengths `[batch]` (unread with
/// impulses, whose lengths are known).
#[derive(Clone, Copy)]
pub struct Strings<'a> {
    pub tokens: &'a wgpu::Buffer,
    pub lengths: &'a wgpu::Buffer,
}

pub struct OneHotConv {
    forward: Kernel,
    partial: Kernel,
    reduce: Kernel,
}

impl OneHotConv {
    pub fn new(gpu: &Gpu) -> Self {
        let source = source();
        OneHotConv {
            forward: Kernel::new(gpu, "onehot_conv.forward", &source, "forward"),
            partial: Kernel::new(gpu, "onehot_conv.partial", &source, "partial"),
            reduce: Kernel::new(gpu, "onehot_conv.reduce", &source, "reduce"),
        }
    }

    /// `tokens [batch, stride]` -> `y [batch * alphabet, 8, len / 2]`, the pooled conv of
    /// each string's one-hot rows.
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: OneHotConvShape,
        strings: Strings,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        self.forward.call(
            gpu,
            &shape.uniform(),
            &[strings.tokens, params, y, strings.lengths],
            shape.alphabet * (shape.len / 2).div_ceil(FORWARD_POSITIONS),
        )
    }

    /// `grads[weight..]` = dw `[8, 1, 3]`, overwritten, from `dy [batch * alphabet, 8,
    /// len / 2]` the gradient at the pooled output, for batches of up to `capacity`
    /// strings.
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: OneHotConvShape,
        capacity: usize,
        strings: Strings,
        dy: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Calls {
        let segments = weight_segments(capacity, shape.len);
        assert!(
            segments <= MAX_SEGMENTS,
            "a one-hot weight gradient over {capacity} strings needs more than \
             {MAX_SEGMENTS} segments"
        );
        let partials = storage_buffer(
            gpu,
            "onehot conv partials",
            segments * u64::from(3 * CHANNELS) * 4,
        );
        let uniform = shape.uniform();
        let mut calls = Calls::from(self.partial.call_fixed(
            gpu,
            &uniform,
            &[strings.tokens, dy, &partials, strings.lengths],
            [segments as u32, 1],
        ));
        calls.push(
            self.reduce
                .call_fixed(gpu, &uniform, &[&partials, grads], [1, 1]),
        );
        calls.keep(partials);
        calls
    }
}
