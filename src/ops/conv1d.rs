//! Conv1d with kernel 3, stride 1, padding 1, an optional bias and an optional fused
//! ReLU, on `[batch, channels, len]`, and the same conv fused with the AvgPool1d(2) that
//! follows it in the models (then the ReLU, if any). Both are the register-tiled product
//! of `shaders/gemm_tile.wgsl` over a weight packed `[cin * 3][cout]` ([`Conv1d::pack`]:
//! once per set of weights, at model build or per training step). The backward pass
//! reuses the product for the input gradient (a conv with flipped, transposed weights)
//! and `weight_grad` for the weight and bias gradients.
use super::weight_grad::{WeightGrad, WeightGradShape};
use super::{PackedWeight, TileReads, tile_rows};
use crate::gpu::{Call, Calls, Gpu, Kernel};

/// The largest reduction (`cin * 3`, and `cout * 3` for the input gradient) the tile
/// stages in workgroup memory: 2 x 192 4x4 f32 matrices, 24 KiB.
pub const KMAX: u32 = 192;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,
    weight: u32,
    bias: u32,
    rows: u32,
    flags: u32,
}

// `flags` bits, as in the shader.
const HALVE: u32 = 1;
const TRANSPOSE: u32 = 2;
const NO_BIAS: u32 = 4;
const PAIRS: u32 = 8;
const ODD: u32 = 16;
const RELU: u32 = 32;

/// Sizes of one conv layer; `weight` and `bias` are offsets in the parameter slab (no
/// bias: none added, none learned, as CNN-ED's convs). `relu`: the forward ends with a
/// ReLU (after the pool when pooled); the backward passes take their gradient with it
/// already undone.
#[derive(Debug, Clone, Copy)]
pub struct Conv1dShape {
    pub cin: u32,
    pub cout: u32,
    pub len: u32,
    pub weight: u32,
    pub bias: Option<u32>,
    pub relu: bool,
}

impl Conv1dShape {
    fn uniform(&self, flags: u32) -> Shape {
        let transpose = flags & TRANSPOSE != 0;
        let outs = if transpose { self.cin } else { self.cout };
        let no_bias = if self.bias.is_none() { NO_BIAS } else { 0 };
        let relu = if self.relu { RELU } else { 0 };
        Shape {
            batch: 0,
            cin: self.cin,
            cout: self.cout,
            len: self.len,
            weight: self.weight,
            bias: self.bias.unwrap_or(0),
            rows: tile_rows(outs),
            flags: flags | no_bias | relu,
        }
    }
}

/// Which product a packed weight serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// [`Conv1d::forward`].
    Conv,
    /// [`Conv1d::forward_pool`] (the weight halved: the pool's mean).
    Pooled,
}

pub struct Conv1d {
    forward: Kernel,
    forward_pool: Kernel,
    backward_data_pooled: Kernel,
    pack_weight: Kernel,
}

/// The buffers of one conv backward pass.
pub struct Conv1dGrads<'a> {
    /// The forward's input `[batch, cin, len]`.
    pub x: &'a wgpu::Buffer,
    /// The gradient of the conv output `[batch, cout, len]` (pooled: of the block's
    /// output `[batch, cout, len / 2]`), after the ReLU's backward if there is one.
    pub dy: &'a wgpu::Buffer,
    /// The parameter slab (read) and the gradient slab (dw, and db if the layer has a
    /// bias, written at the layer's offsets).
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    /// The input gradient `[batch, cin, len]`, written.
    pub dx: &'a wgpu::Buffer,
}

impl Conv1d {
    pub fn new(gpu: &Gpu, reads: TileReads) -> Self {
        let kernel = |label, mode, entry| Kernel::new(gpu, label, &source(mode, reads), entry);
        Conv1d {
            forward: kernel("conv1d.forward", 0, "forward"),
            forward_pool: kernel("conv1d.forward_pool", 1, "forward"),
            backward_data_pooled: kernel("conv1d.backward_data_pooled", 2, "forward"),
            pack_weight: kernel("conv1d.pack_weight", 0, "pack_weight"),
        }
    }

    /// The weight of `shape` packed from `params` for `packing`.
    pub fn pack(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        params: &wgpu::Buffer,
        packing: Packing,
    ) -> PackedWeight {
        let flags = if packing == Packing::Pooled { HALVE } else { 0 };
        self.pack_flags(gpu, shape, params, flags)
    }

    fn pack_flags(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        params: &wgpu::Buffer,
        flags: u32,
    ) -> PackedWeight {
        let uniform = shape.uniform(flags);
        let ins = if flags & TRANSPOSE != 0 {
            shape.cout
        } else {
            shape.cin
        };
        assert!(
            3 * ins <= KMAX,
            "conv1d reduces over at most {KMAX} values (3 x {ins} given)"
        );
        // PAIRS: two reductions of 2 ins (even and odd positions), else one of 3 ins.
        let len = if flags & PAIRS != 0 { 4 } else { 3 } * ins * uniform.rows;
        PackedWeight::new(gpu, &self.pack_weight, &uniform, params, len)
    }

    /// `x [batch, cin, len]` -> `y [batch, cout, len]` (then ReLU if `shape.relu`), with
    /// `packed` from [`Packing::Conv`] (recorded before).
    pub fn forward(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        x: &wgpu::Buffer,
        packed: &PackedWeight,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        self.forward.call(
            gpu,
            &shape.uniform(0),
            &[x, &packed.weight, params, y],
            threads_per_item(shape.len),
        )
    }

    /// `x [batch, cin, len]` -> `y [batch, cout, len / 2]` = avgpool(conv1d(x)), then
    /// ReLU if `shape.relu`: one conv block (the pool is folded into the conv: half the
    /// work, and neither the conv nor the pool output is written out), with `packed`
    /// from [`Packing::Pooled`].
    pub fn forward_pool(
        &self,
        gpu: &Gpu,
        shape: Conv1dShape,
        x: &wgpu::Buffer,
        packed: &PackedWeight,
        params: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Call {
        self.forward_pool.call(
            gpu,
            &shape.uniform(0),
            &[x, &packed.weight, params, y],
            threads_per_item(shape.len / 2),
        )
    }

    /// The backward pass of [`Conv1d::forward`] for batches up to `capacity`: dx, dw and
    /// db (if any), each overwritten, from `b.dy` the gradient at the conv output. dx is the
    /// forward product over the weights flipped and transposed into a scratch buffer by
    /// this pass's first call.
    pub fn backward(
        &self,
        gpu: &Gpu,
        weight_grad: &WeightGrad,
        shape: Conv1dShape,
        capacity: usize,
        b: Conv1dGrads,
    ) -> Calls {
        self.backward_of(gpu, weight_grad, shape, capacity, b, false)
    }

    /// The backward pass of [`Conv1d::forward_pool`], from `b.dy` the gradient at the
    /// pooled output `[batch, cout, len / 2]` with any ReLU already undone: dx reads
    /// it directly, even and odd positions in two calls with 2 cout terms each (see
    /// conv1d.wgsl), and dw, db are reduced over the pair sums at the pooled length
    /// (half the work of the unfolded conv's).
    pub fn backward_pool(
        &self,
        gpu: &Gpu,
        weight_grad: &WeightGrad,
        shape: Conv1dShape,
        capacity: usize,
        b: Conv1dGrads,
    ) -> Calls {
        self.backward_of(gpu, weight_grad, shape, capacity, b, true)
    }

    fn backward_of(
        &self,
        gpu: &Gpu,
        weight_grad: &WeightGrad,
        shape: Conv1dShape,
        capacity: usize,
        b: Conv1dGrads,
        pooled: bool,
    ) -> Calls {
        // dx is the forward conv of dy over the flipped, transposed weight, no bias; from
        // a pooled gradient, even and odd positions with their own weights.
        let flags = if pooled {
            TRANSPOSE | HALVE | PAIRS
        } else {
            TRANSPOSE
        };
        let flipped = self.pack_flags(gpu, shape, b.params, flags);
        let transposed = Conv1dShape {
            cin: shape.cout,
            cout: shape.cin,
            bias: None,
            relu: false,
            ..shape
        };
        let mut calls = Calls::from(flipped.pack);
        let buffers = [b.dy, &flipped.weight, b.params, b.dx];
        if pooled {
            for (parity, positions) in [(0, shape.len.div_ceil(2)), (ODD, shape.len / 2)] {
                calls.push(self.backward_data_pooled.call(
                    gpu,
                    &transposed.uniform(parity),
                    &buffers,
                    threads_per_item(positions),
                ));
            }
        } else {
            calls.push(self.forward.call(
                gpu,
                &transposed.uniform(0),
                &buffers,
                threads_per_item(shape.len),
            ));
        }
        calls.extend(weight_grad.calls(
            gpu,
            WeightGradShape {
                cin: shape.cin,
                cout: shape.cout,
                len: shape.len,
                taps: 3,
                pad: 1,
                weight: shape.weight,
                bias: shape.bias,
                pooled,
            },
            capacity,
            b.dy,
            b.x,
            b.grads,
        ));
        calls.keep(flipped.weight);
        calls
    }
}

/// The shader for `mode` (what the tile's columns read: 0 the input, 1 its pair sums,
/// 2 a pooled block's output gradient, split by parity; see conv1d.wgsl), after the tile.
fn source(mode: u32, reads: TileReads) -> String {
    format!(
        "const KMAX: u32 = {KMAX}u;\nconst MODE: u32 = {mode}u;\n{}{}",
        reads.wgsl(),
        include_str!("../../shaders/conv1d.wgsl")
    )
}

/// Every source this op compiles, labelled (for the portability test).
pub fn shader_sources() -> Vec<(String, String)> {
    super::tiled_sources("conv1d.wgsl mode", 3, source)
}

/// A workgroup covers 32 output columns, and a call's grid counts workgroups of 64
/// threads, so each string (`len_out` columns) asks for `2 * len_out` threads.
fn threads_per_item(len_out: u32) -> u32 {
    len_out * 2
}
