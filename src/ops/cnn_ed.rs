//! CNN-ED's folded table (`shaders/cnn_ed_table.wgsl`): each string's embedding as the
//! bias plus one table row per character, as `model::cnn_ed::Folded::embed` sums it on
//! the CPU; and, for training through the table, its backward pass to the table and the
//! bias.
use crate::gpu::{Call, Calls, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    max_len: u32,
    dim4: u32,
    alphabet: u32,
    char_stride: u32,
    place_stride: u32,
    bias: u32,
    first: u32,
    accumulate: u32,
    _pad: [u32; 2],
}

/// How the table's rows lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableLayout {
    /// `[C, M, dim]`: the folded model's table (`Folded::table`).
    CharMajor,
    /// `[M, C, dim]`: the head's output over the places, in training.
    PlaceMajor,
}

/// The table's sizes: `alphabet` characters (ids from there up add nothing) at
/// `max_len` places, `dim` outputs (a multiple of 4); `bias` the offset of the bias
/// `[dim]` in its buffer (a multiple of 4).
#[derive(Debug, Clone, Copy)]
pub struct TableShape {
    pub alphabet: usize,
    pub max_len: usize,
    pub dim: usize,
    pub layout: TableLayout,
    pub bias: usize,
}

/// One part of a character-major table too large for one storage binding: characters
/// `first .. first + shape.alphabet`.
#[derive(Debug, Clone, Copy)]
pub struct TablePart {
    pub first: usize,
    /// Add onto the embeddings of the parts before (every part but the first).
    pub accumulate: bool,
}

impl TableShape {
    fn uniform(&self) -> Shape {
        assert!(
            self.dim.is_multiple_of(4) && self.bias.is_multiple_of(4),
            "the table's rows are read as vec4"
        );
        let dim4 = (self.dim / 4) as u32;
        let (char_stride, place_stride) = match self.layout {
            TableLayout::CharMajor => (self.max_len as u32 * dim4, dim4),
            TableLayout::PlaceMajor => (dim4, self.alphabet as u32 * dim4),
        };
        Shape {
            batch: 0,
            max_len: self.max_len as u32,
            dim4,
            alphabet: self.alphabet as u32,
            char_stride,
            place_stride,
            bias: self.bias as u32,
            first: 0,
            accumulate: 0,
            _pad: [0; 2],
        }
    }
}

pub struct TableEmbed {
    embed: Kernel,
    d_table: Kernel,
    d_bias: Kernel,
}

/// The id that pads each string's ids to a multiple of 4: above every alphabet, it adds
/// nothing.
pub const PAD_ID: u32 = u32::MAX;

/// The most id words a batch of `strings` strings of at most `max_len` places takes.
pub fn id_words(strings: usize, max_len: usize) -> usize {
    strings * max_len.next_multiple_of(4)
}

/// A batch's token ids as the table kernels read them, into `ids` and `starts` (both
/// cleared first): each string's ids from a multiple of 4 words (the forward reads four
/// at a time), padded to one with [`PAD_ID`]; string i's are `ids[starts[i]..starts[i +
/// 1]]`.
pub fn pack_ids<S: IntoIterator<Item = u32>>(
    strings: impl IntoIterator<Item = S>,
    ids: &mut Vec<u32>,
    starts: &mut Vec<u32>,
) {
    ids.clear();
    starts.clear();
    for string in strings {
        starts.push(ids.len() as u32);
        ids.extend(string);
        ids.resize(ids.len().next_multiple_of(4), PAD_ID);
    }
    starts.push(ids.len() as u32);
}

/// The buffers of the forward.
pub struct TableBuffers<'a> {
    /// Laid out as the shape says, f32.
    pub table: &'a wgpu::Buffer,
    /// Holds the bias `[dim]` f32 at the shape's offset.
    pub bias: &'a wgpu::Buffer,
    /// Every string's token ids as [`pack_ids`] lays them out, u32.
    pub ids: &'a wgpu::Buffer,
    /// `[batch + 1]` u32: string i's ids are `ids[starts[i]..starts[i + 1]]`.
    pub starts: &'a wgpu::Buffer,
    /// `[batch, dim]` f32.
    pub out: &'a wgpu::Buffer,
}

/// The buffers of the backward.
pub struct TableGrads<'a> {
    /// The gradient at the embeddings, `[batch, dim]`.
    pub d_out: &'a wgpu::Buffer,
    pub ids: &'a wgpu::Buffer,
    pub starts: &'a wgpu::Buffer,
    /// The table's gradient, laid out as the table, overwritten.
    pub d_table: &'a wgpu::Buffer,
    /// db is written at the shape's bias offset.
    pub grads: &'a wgpu::Buffer,
}

impl TableEmbed {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/cnn_ed_table.wgsl");
        TableEmbed {
            embed: Kernel::new(gpu, "cnn_ed.table_embed", source, "embed"),
            d_table: Kernel::new(gpu, "cnn_ed.d_table", source, "d_table_rows"),
            d_bias: Kernel::new(gpu, "cnn_ed.d_bias", source, "d_bias"),
        }
    }

    /// The embeddings of a batch of strings (recorded per string).
    pub fn call(&self, gpu: &Gpu, shape: TableShape, b: TableBuffers) -> Call {
        let whole = TablePart {
            first: 0,
            accumulate: false,
        };
        self.call_part(gpu, shape, whole, b)
    }

    /// [`TableEmbed::call`] for one part of a table split by characters.
    pub fn call_part(
        &self,
        gpu: &Gpu,
        shape: TableShape,
        part: TablePart,
        b: TableBuffers,
    ) -> Call {
        let uniform = Shape {
            first: part.first as u32,
            accumulate: u32::from(part.accumulate),
            ..shape.uniform()
        };
        // One thread per 16 outputs.
        self.embed.call(
            gpu,
            &uniform,
            &[b.ids, b.starts, b.table, b.bias, b.out],
            uniform.dim4.div_ceil(4),
        )
    }

    /// dT and db from the gradient at the embeddings (the batch is the strings').
    pub fn backward(&self, gpu: &Gpu, shape: TableShape, b: TableGrads) -> Calls {
        let uniform = shape.uniform();
        let rows = u64::from(uniform.max_len) * u64::from(uniform.dim4);
        let mut calls = Calls::from(self.d_table.call_threads(
            gpu,
            &uniform,
            &[b.ids, b.starts, b.d_out, b.d_table],
            rows,
        ));
        calls.push(self.d_bias.call_threads(
            gpu,
            &uniform,
            &[b.d_out, b.grads],
            u64::from(uniform.dim4),
        ));
        calls
    }
}
