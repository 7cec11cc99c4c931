//! Character embedding lookup, output channel-major `[batch, dim, len]`, and its
//! deterministic gradient (gathered per token from positions grouped on the CPU by
//! [`positions_by_token`], in pieces of at most [`PIECE`] positions summed in parallel).
use crate::gpu::{Call, Calls, Gpu, Kernel, storage_buffer};

/// Positions one workgroup of the backward pass sums (as in the shader).
pub const PIECE: usize = 64;

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
    pooled: u32,
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
    fn uniform(&self, taps: u32, shift: u32, pooled: bool) -> Shape {
        Shape {
            batch: 0,
            len: self.len,
            dim: self.dim,
            vocab: self.vocab,
            table: self.table,
            taps,
            shift,
            pooled: u32::from(pooled),
        }
    }
}

/// The shader, after the token reader.
fn source() -> String {
    format!(
        "{}{}",
        super::TOKENS_WGSL,
        include_str!("../../shaders/embedding.wgsl")
    )
}

/// Every source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    vec![("embedding.wgsl".to_string(), source())]
}

pub struct Embedding {
    forward: Kernel,
    sum_piece: Kernel,
    sum_token: Kernel,
}

impl Embedding {
    pub fn new(gpu: &Gpu) -> Self {
        let source = source();
        Embedding {
            forward: Kernel::new(gpu, "embedding.forward", &source, "forward"),
            sum_piece: Kernel::new(gpu, "embedding.sum_piece", &source, "sum_piece"),
            sum_token: Kernel::new(gpu, "embedding.sum_token", &source, "sum_token"),
        }
    }

    /// `tokens [batch, len]` (u8) -> `out [batch, dim, len]`.
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
            &shape.uniform(1, 0, false),
            &[tokens, params, out],
            shape.dim * shape.len,
        )
    }

    /// `dout [batch, dim, len]` -> `grads[table..]` = dtable `[vocab, dim]`, overwritten,
    /// for batches of up to `capacity` items. `positions` holds [`positions_by_token`]
    /// of the batch's tokens.
    pub fn backward(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        capacity: usize,
        positions: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Calls {
        self.gather(
            gpu,
            shape.uniform(1, 0, false),
            capacity,
            positions,
            dout,
            grads,
        )
    }

    /// The gradient of conv0's folded tap tables, `[3, vocab, dim]` at `shape.table` in
    /// `out`, from the conv output gradient `dout [batch, dim, len]` (`dim` = conv
    /// channels): `dT[t, v, c] = sum over positions l of token v of dout[b, c, l + 1 - t]`.
    pub fn backward_taps(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        capacity: usize,
        positions: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Calls {
        self.gather(
            gpu,
            shape.uniform(3, 1, false),
            capacity,
            positions,
            dout,
            out,
        )
    }

    /// [`Embedding::backward_taps`] from the gradient at the output of the AvgPool1d(2)
    /// that follows the conv, `dz [batch, dim, len / 2]`, spread over the pool's pairs
    /// as it is read (no unpooled buffer, no pass to make one).
    pub fn backward_taps_pooled(
        &self,
        gpu: &Gpu,
        shape: EmbeddingShape,
        capacity: usize,
        positions: &wgpu::Buffer,
        dz: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Calls {
        self.gather(gpu, shape.uniform(3, 1, true), capacity, positions, dz, out)
    }

    fn gather(
        &self,
        gpu: &Gpu,
        uniform: Shape,
        capacity: usize,
        positions: &wgpu::Buffer,
        dout: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Calls {
        let pieces = max_pieces(capacity * uniform.len as usize, uniform.vocab as usize) as u32;
        let (taps, dim, vocab) = (uniform.taps, uniform.dim, uniform.vocab);
        let sums = storage_buffer(
            gpu,
            "embedding gradient pieces",
            u64::from(pieces) * u64::from(taps * dim) * 4,
        );
        let max_x = gpu.limits.max_compute_workgroups_per_dimension;
        let grid = [pieces.min(max_x), pieces.div_ceil(max_x)];
        let mut calls =
            Calls::from(
                self.sum_piece
                    .call_fixed(gpu, &uniform, &[positions, dout, &sums], grid),
            );
        // One thread per table entry, whatever the batch.
        calls.push(self.sum_token.call_threads(
            gpu,
            &uniform,
            &[positions, &sums, out],
            u64::from(taps * vocab * dim),
        ));
        calls.keep(sums);
        calls
    }
}

/// The most pieces `n` positions over `vocab` tokens are cut into.
fn max_pieces(n: usize, vocab: usize) -> usize {
    n / PIECE + vocab
}

/// Length of [`positions_by_token`] for `n` positions: what its buffer must hold.
pub fn positions_len(n: usize, vocab: usize) -> usize {
    2 * (vocab + 1) + n + max_pieces(n, vocab)
}

/// Groups the positions of `tokens` (`[batch, len]`, clamped to the vocabulary as the
/// forward does) by token: `vocab + 1` start offsets, then every `b * len + l` in token
/// order (a counting sort); then each token's run cut into pieces of at most [`PIECE`]:
/// `vocab + 1` first-piece indices and the token of every piece. The embedding backward
/// sums each piece, then each token's pieces, in this order: no atomics, and the same
/// result on every run.
pub fn positions_by_token(tokens: &[u8], vocab: usize) -> Vec<u32> {
    let clamp = |t: u8| usize::from(t).min(vocab - 1);
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
    let runs: Vec<usize> = (0..vocab).map(|v| (out[v + 1] - out[v]) as usize).collect();
    let mut first_piece = 0;
    for run in &runs {
        out.push(first_piece as u32);
        first_piece += run.div_ceil(PIECE);
    }
    out.push(first_piece as u32);
    for (v, run) in runs.iter().enumerate() {
        out.extend(std::iter::repeat_n(v as u32, run.div_ceil(PIECE)));
    }
    out
}
