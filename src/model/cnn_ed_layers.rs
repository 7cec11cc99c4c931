//! CNN-ED's network layer by layer on the GPU, over a parameter slab: the first block on
//! the one-hot rows (`ops::onehot_conv`), the 8-channel blocks after it (`ops::conv8`),
//! each followed by its ReLU where the shape has one, and the linear head. Shared by the
//! trainer (`train::cnn_ed`), whose table formulation runs the same calls on impulses
//! with a regrouped head, and by the encoder of networks that do not fold into a table
//! ([`super::cnn_ed_encoder`]), which replaces the blocks up to the first ReLU by their
//! fold ([`after`]).
use super::cnn_ed::CnnEdShape;
use crate::gpu::{Calls, Gpu, storage_buffer};
use crate::ops::Ops;
use crate::ops::conv1d::Conv1dShape;
use crate::ops::conv8::Extents;
use crate::ops::linear::LinearShape;
use crate::ops::onehot_conv::{OneHotConvShape, Strings};

/// The first block on each string's C one-hot rows, tokens `[strings, M]`.
pub fn first_block(shape: &CnnEdShape) -> OneHotConvShape {
    OneHotConvShape {
        alphabet: shape.alphabet as u32,
        len: shape.max_len as u32,
        stride: shape.max_len as u32,
        weight: shape.conv_offset(0) as u32,
        impulses: false,
    }
}

/// Block `i` >= 1: `[rows, 8, M >> i]` to `[rows, 8, M >> (i + 1)]`, with its ReLU.
pub fn block(shape: &CnnEdShape, i: usize) -> Conv1dShape {
    Conv1dShape {
        cin: shape.channels as u32,
        cout: shape.channels as u32,
        len: (shape.max_len >> i) as u32,
        weight: shape.conv_offset(i) as u32,
        bias: None,
        relu: shape.relu_after(i),
    }
}

/// Which places of block `i`'s rows can be nonzero: `rows_per_string` rows a string, of
/// the lengths in `lengths`.
pub fn extents(lengths: &wgpu::Buffer, rows_per_string: u32, i: usize) -> Extents<'_> {
    Extents {
        lengths,
        rows_per_string,
        level: i as u32,
    }
}

/// The head on each string's rows flattened c-major, `[strings, C * 8 * Lf]`, with its
/// bias.
pub fn head(shape: &CnnEdShape) -> LinearShape {
    let weight = shape.fc_offset();
    LinearShape {
        fan_in: shape.flat() as u32,
        fan_out: shape.dim as u32,
        weight: weight as u32,
        bias: Some((weight + shape.dim * shape.flat()) as u32),
        relu: false,
    }
}

/// Each block's output `[rows, channels, M >> (i + 1)]`, for up to `rows` rows, from
/// block `from` on (the blocks before it get a placeholder that is never bound).
pub fn activations(
    gpu: &Gpu,
    shape: &CnnEdShape,
    rows: usize,
    from: usize,
    what: &str,
) -> Vec<wgpu::Buffer> {
    (0..shape.layers)
        .map(|i| {
            let floats = if i < from {
                1
            } else {
                rows * shape.channels * (shape.max_len >> (i + 1))
            };
            storage_buffer(gpu, what, floats as u64 * 4)
        })
        .collect()
}

/// The calls of one forward pass, in order. Batch sizes: `first` and `head` take items
/// (strings, or places for the trainer's table), `blocks` take rows (items x the first
/// block's alphabet).
pub struct Forward {
    /// Packs the head's weight: record it after the parameters change.
    pub pack_head: Calls,
    pub first: Calls,
    pub blocks: Calls,
    pub head: Calls,
}

/// The buffers a forward pass reads and writes.
pub struct ForwardBuffers<'a> {
    /// As `first` reads them.
    pub tokens: &'a wgpu::Buffer,
    /// Each string's length in characters, `[strings]` u32: each row is computed only up
    /// to its string's extent.
    pub lengths: &'a wgpu::Buffer,
    pub params: &'a wgpu::Buffer,
    /// From [`activations`].
    pub acts: &'a [wgpu::Buffer],
    /// `[items, head's fan_out]`.
    pub out: &'a wgpu::Buffer,
}

/// `shape`'s network as calls: the first block as `first` says, the blocks after it (on
/// `first.alphabet` rows a string), a ReLU after each block the shape names, and `head`
/// on the last block's output.
pub fn forward(
    gpu: &Gpu,
    ops: &Ops,
    shape: &CnnEdShape,
    first: OneHotConvShape,
    head: LinearShape,
    b: ForwardBuffers,
) -> Forward {
    let strings = Strings {
        tokens: b.tokens,
        lengths: b.lengths,
    };
    let mut first_calls = Calls::from(
        ops.onehot_conv
            .forward(gpu, first, strings, b.params, &b.acts[0]),
    );
    if shape.relu_after(0) {
        first_calls.push(ops.relu.forward(gpu, first.out_len() as u32, &b.acts[0]));
    }
    Forward {
        first: first_calls,
        ..after(gpu, ops, shape, 1, first.alphabet, head, b)
    }
}

/// The calls after block `from - 1` (whose output, `acts[from - 1]`, something else
/// writes, zero past each row's extent): the blocks from `from` on, on `rows_per_string`
/// rows a string, and the head; `first` is empty.
pub fn after(
    gpu: &Gpu,
    ops: &Ops,
    shape: &CnnEdShape,
    from: usize,
    rows_per_string: u32,
    head: LinearShape,
    b: ForwardBuffers,
) -> Forward {
    let mut blocks = Calls::default();
    for i in from..shape.layers {
        let extents = extents(b.lengths, rows_per_string, i);
        let (x, y) = (&b.acts[i - 1], &b.acts[i]);
        blocks.push(
            ops.conv8
                .forward(gpu, block(shape, i), extents, x, b.params, y),
        );
    }
    let packed = ops.linear.pack(gpu, head, b.params);
    let last = &b.acts[shape.layers - 1];
    let head_calls = ops
        .linear
        .forward(gpu, head, last, &packed, b.params, b.out);
    let mut pack_head = Calls::from(packed.pack.clone());
    pack_head.keep(packed.into_buffer());
    Forward {
        pack_head,
        first: Calls::default(),
        blocks,
        head: head_calls,
    }
}
