//! Weight and bias gradients of conv1d and linear layers (`shaders/weight_grad.wgsl`):
//! the register-tiled product of `shaders/gemm_tile.wgsl` (the output gradient first
//! packed like a weight, so the tile reads it in vec4s) reduced over every position of
//! every string, split into segments whose partial products are added in a fixed order
//! (deterministic, no atomics). A conv block's conv + pool is reduced at the pooled
//! length, over pair sums of its input, like its forward.
use super::{MAX_SEGMENTS, TileReads};
use crate::gpu::{Calls, Gpu, Kernel, storage_buffer};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,
    taps: u32,
    pad: u32,
    weight: u32,
    bias: u32,
    _pad: u32,
    pooled: u32,
    rows: u32,
    has_bias: u32,
}

/// A layer as the gradient sees it: `dy [batch, cout, len]`, `x [batch, cin, len]`,
/// kernel `taps` with zero padding `pad` (a linear layer is len 1, taps 1, pad 0);
/// `weight` and `bias` are offsets of dw and db in the gradient slab (no bias: no db).
/// `pooled`: the conv (taps 3, pad 1) of a block whose AvgPool1d(2) follows, and
/// `dy [batch, cout, len / 2]` the gradient at the pool's output.
#[derive(Debug, Clone, Copy)]
pub struct WeightGradShape {
    pub cin: u32,
    pub cout: u32,
    pub len: u32,
    pub taps: u32,
    pub pad: u32,
    pub weight: u32,
    pub bias: Option<u32>,
    pub pooled: bool,
}

impl WeightGradShape {
    /// Reduction indices per string.
    fn positions(&self) -> u32 {
        if self.pooled { self.len / 2 } else { self.len }
    }
}

/// Reduction indices per segment (the tile's KMAX: 2 x 192 4x4 f32 matrices, 24 KiB),
/// and output columns per workgroup.
pub const SEGMENT: u32 = 192;
const TILE_COLS: u32 = 32;

/// The shader, after the tile.
fn source(reads: TileReads) -> String {
    format!(
        "const KMAX: u32 = {SEGMENT}u;\n{}{}",
        reads.wgsl(),
        include_str!("../../shaders/weight_grad.wgsl")
    )
}

/// Every source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    super::reader_sources("weight_grad.wgsl", source)
}

pub struct WeightGrad {
    pack_dy: Kernel,
    partial: Kernel,
    reduce: Kernel,
}

impl WeightGrad {
    pub fn new(gpu: &Gpu, reads: TileReads) -> Self {
        let source = source(reads);
        WeightGrad {
            pack_dy: Kernel::new(gpu, "weight_grad.pack_dy", &source, "pack_dy"),
            partial: Kernel::new(gpu, "weight_grad.partial", &source, "partial"),
            reduce: Kernel::new(gpu, "weight_grad.reduce", &source, "reduce"),
        }
    }

    /// `grads[weight..]` = dw `[cout, cin, taps]` and `grads[bias..]` = db `[cout]` (if
    /// the layer has a bias), overwritten, for batches of up to `capacity` items.
    pub fn calls(
        &self,
        gpu: &Gpu,
        shape: WeightGradShape,
        capacity: usize,
        dy: &wgpu::Buffer,
        x: &wgpu::Buffer,
        grads: &wgpu::Buffer,
    ) -> Calls {
        let rows = capacity.max(1) as u64 * u64::from(shape.positions());
        let segments = rows.div_ceil(u64::from(SEGMENT));
        assert!(
            segments <= MAX_SEGMENTS,
            "a weight gradient over {rows} positions needs more than {MAX_SEGMENTS} \
             segments of {SEGMENT}"
        );
        let segments = segments as u32;
        let cols = shape.cin * shape.taps + u32::from(shape.bias.is_some());
        let partials = storage_buffer(
            gpu,
            "weight grad partials",
            u64::from(segments) * u64::from(shape.cout) * u64::from(cols) * 4,
        );
        let uniform = Shape {
            batch: 0,
            cin: shape.cin,
            cout: shape.cout,
            len: shape.len,
            taps: shape.taps,
            pad: shape.pad,
            weight: shape.weight,
            bias: shape.bias.unwrap_or(0),
            _pad: 0,
            pooled: u32::from(shape.pooled),
            rows: super::tile_rows(shape.cout),
            has_bias: u32::from(shape.bias.is_some()),
        };
        let packed_dy = storage_buffer(
            gpu,
            "packed output gradient",
            rows * u64::from(uniform.rows) * 4,
        );
        let tiles = cols.div_ceil(TILE_COLS);
        let mut calls = Calls::from(self.pack_dy.call(
            gpu,
            &uniform,
            &[dy, &packed_dy],
            shape.positions() * uniform.rows,
        ));
        calls.push(self.partial.call_fixed(
            gpu,
            &uniform,
            &[&packed_dy, x, &partials],
            [tiles, segments],
        ));
        calls.push(self.reduce.call_threads(
            gpu,
            &uniform,
            &[&partials, grads],
            u64::from(shape.cout * cols),
        ));
        calls.keep(packed_dy);
        calls.keep(partials);
        calls
    }
}
