//! Character embedding lookup, output channel-major `[batch, dim, len]`, and its
//! deterministic gradient (gathered per token from positions grouped on the CPU by
//! [`positions_by_token`]).
use crate::gpu::{Call, Gpu, Kernel};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    len: u32,
    dim: u32,
    vocab: u32,
    table: u32,
    taps: u32,
    shift: u32,
    _pad: u32,
}

/// Sizes of one embedding layer; `table` is the offset of `[vocab, dim]` in the slab.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingShape {
    pub len: u32,
    pub dim: u32,
    pub vocab: u32,
    pub table: u32,
}

impl EmbeddingShape {
    fn uniform(&self, taps: u32, shift: u32) -> Shape {
        Shape {
            batch: 0,
            len: self.len,
            dim: self.dim,
            vocab: self.vocab,
            table: self.table,
            taps,
            shift,
            _pad: 0,
        }
    }
}

pub struct Embedding {
    forward: Kernel,
    backward: Kernel,
}

impl Embedding {
    pub fn new(gpu: &Gpu) -> Self {
        let source = include_str!("../../shaders/embedding.wgsl");
        Embedding {
            forward: Kernel::new(gpu, "embedding.forward", source, "forward"),
            backward: Kernel::new(gpu, "embedding.backward", source, "backward"),
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
        self.forward.call(
            gpu,
            &shape.uniform(1, 0),
            &[tokens, params, out],
            shape.dim * shape.len,
        )
    }

    /// `dout [batch, dim, len]` -> `grads[table..]` = dtable `[vocab, dim]`, overwritten.
    /// `positions` holds [`positions_by_token`] of the batch's tokens.
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        positions: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Call {
        self.gather(gpu, shape, 1, 0, positions, dout, grads)
    }

    /// The gradient of conv0's folded tap tables, `[3, vocab, dim]` at `shape.table` in
    /// `out`, from the conv output gradient `dout [batch, dim, len]` (`dim` = conv
    /// channels): `dT[t, v, c] = sum over positions l of token v of dout[b, c, l + 1 - t]`.
    pub fn backward_taps(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        positions: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Call {
        self.gather(gpu, shape, 3, 1, positions, dout, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn gather(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        taps: u32,
        shift: u32,
        positions: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Call {
        // One thread per table entry, whatever the batch.
        self.backward.call_fixed(
            gpu,
            &shape.uniform(taps, shift),
            &[positions, dout, out],
            [(taps * shape.vocab * shape.dim).div_ceil(64), 1],
        )
    }
}

/// Groups the positions of `tokens` (`[batch, len]`, clamped to the vocabulary as the
/// forward does) by token: `vocab + 1` start offsets, then every `b * len + l` in token
/// order (a counting sort). The embedding backward sums each token's positions in this
/// order, so it needs no atomics and gives the same result on every run.
pub fn positions_by_token(tokens: &[u32], vocab: usize) -> Vec<u32> {
    let clamp = |t: u32| (t as usize).min(vocab - 1);
    let mut out = vec![0u32; vocab + 1 + tokens.len()];
    for &t in tokens {
        out[clamp(t) + 1] += 1;
    }
    for v in 0..vocab {
        out[v + 1] += out[v];
    }
    let mut next: Vec<u32> = out[..vocab].to_vec();
    for (p, &t) in tokens.iter().enumerate() {
        let v = clamp(t);
        out[vocab + 1 + next[v] as usize] = p as u32;
        next[v] += 1;
    }
    out
}
