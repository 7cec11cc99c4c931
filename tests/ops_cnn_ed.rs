//! CNN-ED's training kernels against the plain CPU blocks of `reference::cnn_ed`: the
//! one-hot first block (forward and weight gradient) and the bias-free conv + pool
//! (+ ReLU) blocks (forward, input and weight gradients), both the shared tile's
//! (`conv1d`) and the 8-channel one the trainer runs (`conv8`), on random shapes (odd lengths,
//! alphabets of 4 and 37, batch 1, tokens outside the alphabet), each backward of the
//! reference against central finite differences of its forward, and every GPU gradient
//! bit-identical over two runs. The CNN-ED kernels compute each row only up to its
//! string's extent: their inputs are zero past it, as in the network, and everything
//! they write is checked against the full computation.
mod common;

use common::{
    TestGpu, assert_close, dot, finite_differences, gpu, narrow_grid_gpu, random_cnn_ed, rng,
    to_f64, uniform,
};
use megashtein_gpu::gpu::{Calls, Gpu, storage_buffer, storage_buffer_init};
use megashtein_gpu::ops::conv1d::{Conv1dGrads, Conv1dShape, Packing};
use megashtein_gpu::ops::conv8::Extents;
use megashtein_gpu::ops::onehot_conv::{CHANNELS, OneHotConvShape, Strings};
use megashtein_gpu::reference::{self, cnn_ed};
use rand::Rng;
use rand::rngs::StdRng;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-5;
/// Weight gradients sum thousands of f32 products.
const GRAD_ATOL: f64 = 1e-4;
const GRAD_RTOL: f64 = 1e-4;

/// Record `calls` for `batch` items, submit, and read `count` floats of `out`.
fn run(gpu: &Gpu, calls: &Calls, batch: u32, out: &wgpu::Buffer, count: usize) -> Vec<f32> {
    calls.set_batch(gpu, batch);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        calls.record(&mut pass, gpu, batch);
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.read_buffer(out, count).unwrap()
}

/// A slab of `len` NaNs, so an unwritten value shows.
fn nan_slab(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    storage_buffer_init(gpu, "slab", &vec![f32::NAN; len])
}

/// `batch` strings of `stride` tokens: random lengths up to `stride`, characters drawn
/// from the alphabet and a few past it (outside the alphabet), padded with the id
/// `alphabet`; and their lengths. Some strings are longer than `len`, whose tail the
/// kernels must ignore.
fn random_tokens(
    r: &mut StdRng,
    batch: usize,
    alphabet: usize,
    stride: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut tokens = vec![alphabet as u32; batch * stride];
    let mut lengths = Vec::with_capacity(batch);
    for string in tokens.chunks_mut(stride) {
        let n = r.random_range(0..=stride);
        for tok in &mut string[..n] {
            *tok = r.random_range(0..alphabet as u32 + 2);
        }
        lengths.push(n as u32);
    }
    (tokens, lengths)
}

/// A parameter slab `[7 filler floats, w]`: the weight sits at offset 7.
const W_AT: usize = 7;
fn params_with(w: &[f32]) -> Vec<f32> {
    [&[9.0f32; W_AT][..], w].concat()
}

fn onehot_shape(alphabet: usize, len: usize, stride: usize) -> OneHotConvShape {
    OneHotConvShape {
        alphabet: alphabet as u32,
        len: len as u32,
        stride: stride as u32,
        weight: W_AT as u32,
        impulses: false,
    }
}

/// (batch, alphabet, len, stride) of the one-hot tests.
const ONEHOT_SHAPES: [(usize, usize, usize, usize); 6] = [
    (1, 4, 2, 2),
    (1, 37, 7, 9),
    (3, 4, 13, 13),
    (5, 37, 50, 64),
    (2, 37, 333, 400),
    // 2,400 positions: several segments of the weight gradient.
    (48, 4, 101, 120),
];

#[test]
fn onehot_conv_matches_reference() {
    let t = gpu();
    let mut r = rng(41);
    for (batch, alphabet, len, stride) in ONEHOT_SHAPES {
        let (tokens, lengths) = random_tokens(&mut r, batch, alphabet, stride);
        let w = uniform(&mut r, 3 * CHANNELS as usize);
        let shape = onehot_shape(alphabet, len, stride);
        let got = onehot_forward(t, shape, &tokens, &lengths, &w);
        let want = cnn_ed::onehot_conv(&tokens, &to_f64(&w), alphabet, len, stride);
        let what = format!("onehot conv {batch}x{len}/{stride} alphabet {alphabet}");
        assert_close(&what, &got, &want, ATOL, RTOL);
    }
}

/// The forward runs one thread per 32 positions, too few to fill one grid dimension
/// within lavapipe's largest binding: on a device whose grid wraps past 4 workgroups,
/// 100 strings of 333 places over an alphabet of 4 take 38 (10 x 4); every output checked.
#[test]
fn onehot_conv_grid_wraps() {
    let t = narrow_grid_gpu();
    let mut r = rng(42);
    let (batch, alphabet, len) = (100, 4, 333);
    let (tokens, lengths) = random_tokens(&mut r, batch, alphabet, len);
    let w = uniform(&mut r, 3 * CHANNELS as usize);
    let shape = onehot_shape(alphabet, len, len);
    let got = onehot_forward(t, shape, &tokens, &lengths, &w);
    let want = cnn_ed::onehot_conv(&tokens, &to_f64(&w), alphabet, len, len);
    assert_close("onehot conv, wrapped grid", &got, &want, ATOL, RTOL);
}

fn onehot_forward(
    t: &TestGpu,
    shape: OneHotConvShape,
    tokens: &[u32],
    lengths: &[u32],
    w: &[f32],
) -> Vec<f32> {
    let batch = tokens.len() / shape.stride as usize;
    let n = batch * shape.out_len();
    let params = storage_buffer_init(&t.gpu, "params", &params_with(w));
    let tok = storage_buffer_init(&t.gpu, "tokens", tokens);
    let lengths = storage_buffer_init(&t.gpu, "lengths", lengths);
    let y = nan_slab(&t.gpu, n);
    let strings = Strings {
        tokens: &tok,
        lengths: &lengths,
    };
    let call = t
        .ops
        .onehot_conv
        .forward(&t.gpu, shape, strings, &params, &y);
    run(&t.gpu, &call.into(), batch as u32, &y, n)
}

#[test]
fn onehot_conv_backward_matches_reference_and_finite_differences() {
    let t = gpu();
    let mut r = rng(43);
    for (batch, alphabet, len, stride) in ONEHOT_SHAPES {
        let shape = onehot_shape(alphabet, len, stride);
        let (tokens, lengths) = random_tokens(&mut r, batch, alphabet, stride);
        // dy is nonzero everywhere: past a string's extent it meets no character.
        let dy = uniform(&mut r, batch * shape.out_len());
        // Built for twice the batch: the grid has segments this batch leaves empty.
        let capacity = 2 * batch;
        let tok = storage_buffer_init(&t.gpu, "tokens", &tokens);
        let lengths_b = storage_buffer_init(&t.gpu, "lengths", &lengths);
        let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
        let n = W_AT + 3 * CHANNELS as usize;
        let grads = nan_slab(&t.gpu, n);
        let strings = Strings {
            tokens: &tok,
            lengths: &lengths_b,
        };
        let calls = t
            .ops
            .onehot_conv
            .backward(&t.gpu, shape, capacity, strings, &dy_b, &grads);
        let got = run(&t.gpu, &calls, batch as u32, &grads, n);
        let what = format!("onehot conv backward {batch}x{len}/{stride} alphabet {alphabet}");
        let dy64 = to_f64(&dy);
        let want = cnn_ed::onehot_conv_backward(&tokens, &dy64, alphabet, len, stride);
        assert!(
            got[..W_AT].iter().all(|v| v.is_nan()),
            "{what}: wrote outside dw"
        );
        assert_close(&what, &got[W_AT..], &want, GRAD_ATOL, GRAD_RTOL);
        let again = run(&t.gpu, &calls, batch as u32, &grads, n);
        assert_eq!(
            bits(&got),
            bits(&again),
            "{what}: two runs differ in the last bit"
        );

        if batch * alphabet * len <= 4_000 {
            let w = to_f64(&uniform(&mut r, 3 * CHANNELS as usize));
            finite_differences(&what, &mut r, &w, &want, |w| {
                dot(
                    &dy64,
                    &cnn_ed::onehot_conv(&tokens, w, alphabet, len, stride),
                )
            });
        }
    }
}

/// Impulse mode (the folded table's inputs: string b is character 0 at place b) equals
/// the reference on those strings written out as tokens, forward and backward.
#[test]
fn onehot_conv_impulses_match_reference() {
    let t = gpu();
    let mut r = rng(44);
    for len in [2usize, 7, 50, 333] {
        let tokens: Vec<u32> = (0..len * len)
            .map(|i| u32::from(i / len != i % len))
            .collect();
        let shape = OneHotConvShape {
            impulses: true,
            ..onehot_shape(1, len, len)
        };
        let w = uniform(&mut r, 3 * CHANNELS as usize);
        // Token and length buffers of junk: impulse mode must not read them (lengths of 0
        // would zero nearly every output).
        let junk = vec![0u32; len * len];
        let got = onehot_forward(t, shape, &junk, &junk[..len], &w);
        let want = cnn_ed::onehot_conv(&tokens, &to_f64(&w), 1, len, len);
        assert_close(&format!("impulses {len}"), &got, &want, ATOL, RTOL);

        let dy = uniform(&mut r, len * shape.out_len());
        let tok = storage_buffer_init(&t.gpu, "tokens", &junk);
        let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
        let n = W_AT + 3 * CHANNELS as usize;
        let grads = nan_slab(&t.gpu, n);
        let strings = Strings {
            tokens: &tok,
            lengths: &tok,
        };
        let calls = t
            .ops
            .onehot_conv
            .backward(&t.gpu, shape, len, strings, &dy_b, &grads);
        let got = run(&t.gpu, &calls, len as u32, &grads, n);
        let want = cnn_ed::onehot_conv_backward(&tokens, &to_f64(&dy), 1, len, len);
        let what = format!("impulses backward {len}");
        assert_close(&what, &got[W_AT..], &want, GRAD_ATOL, GRAD_RTOL);
    }
}

/// The bits of `v`, so NaNs compare equal to themselves.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A bias-free conv block `cin -> cout` over `len` with the weight at [`W_AT`].
fn block_shape(cin: usize, cout: usize, len: usize, relu: bool) -> Conv1dShape {
    Conv1dShape {
        cin: cin as u32,
        cout: cout as u32,
        len: len as u32,
        weight: W_AT as u32,
        bias: None,
        relu,
    }
}

/// (rows, len, relu) of the 8 -> 8 block tests: one string of alphabet 4 and of 37,
/// odd lengths, a few strings, and tiles of at most 4 and 16 columns.
const BLOCK_SHAPES: [(usize, usize, bool); 7] = [
    (1, 2, false),
    (4, 3, true),
    (37, 7, false),
    (3, 33, true),
    (148, 50, false),
    (37, 101, true),
    (2, 333, false),
];

/// Strings laid over a block's rows as the network lays them out: `group` rows a string
/// (its characters), the block's input `level` blocks in, each string of a random
/// length, so that a row's extent falls anywhere from the first place to past the end.
struct RowStrings {
    group: usize,
    level: usize,
    lengths: Vec<u32>,
}

impl RowStrings {
    fn random(r: &mut StdRng, rows: usize, len: usize) -> Self {
        let group = [37, 4, 1]
            .into_iter()
            .find(|&g| rows.is_multiple_of(g))
            .unwrap();
        let level = r.random_range(0..4);
        let lengths = (0..rows / group)
            .map(|_| r.random_range(0..=(len << level) + 2) as u32)
            .collect();
        RowStrings {
            group,
            level,
            lengths,
        }
    }

    /// The places of `row` that can be nonzero at `level` (of `len`).
    fn extent(&self, row: usize, level: usize, len: usize) -> usize {
        cnn_ed::extent(self.lengths[row / self.group] as usize, level).min(len)
    }

    /// Each row of `v [rows, ch, len]` at `level` zeroed past its extent.
    fn zero_past(&self, v: &mut [f32], ch: usize, len: usize, level: usize) {
        for (row, values) in v.chunks_mut(ch * len).enumerate() {
            let end = self.extent(row, level, len);
            for channel in values.chunks_mut(len) {
                channel[end..].fill(0.0);
            }
        }
    }

    fn extents<'a>(&self, lengths: &'a wgpu::Buffer) -> Extents<'a> {
        Extents {
            lengths,
            rows_per_string: self.group as u32,
            level: self.level as u32,
        }
    }
}

/// A block's forward calls: `(gpu, shape, extents, x, params, y)`.
type BlockForward =
    fn(&TestGpu, Conv1dShape, Extents, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer) -> Calls;

/// The shared tile's block (which computes every place): the weight packed, then the
/// product.
fn tiled_forward(
    t: &TestGpu,
    shape: Conv1dShape,
    _: Extents,
    x: &wgpu::Buffer,
    params: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Calls {
    let packed = t.ops.conv1d.pack(&t.gpu, shape, params, Packing::Pooled);
    let mut calls = Calls::from(packed.pack.clone());
    calls.push(
        t.ops
            .conv1d
            .forward_pool(&t.gpu, shape, x, &packed, params, y),
    );
    calls.keep(packed.into_buffer());
    calls
}

fn conv8_forward(
    t: &TestGpu,
    shape: Conv1dShape,
    extents: Extents,
    x: &wgpu::Buffer,
    params: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Calls {
    t.ops
        .conv8
        .forward(&t.gpu, shape, extents, x, params, y)
        .into()
}

#[test]
fn conv_pool_block_matches_reference() {
    let t = gpu();
    let mut r = rng(44);
    for (rows, len, relu) in BLOCK_SHAPES {
        check_block_forward(t, &mut r, tiled_forward, rows, 8, len, relu);
    }
}

/// 2^21 output columns of an 8 -> 8 block: 2^22 threads, more than one grid dimension
/// holds, over an input of 128 MiB (lavapipe's largest binding); every output checked.
#[test]
fn conv_pool_block_grid_wraps() {
    let t = gpu();
    let mut r = rng(45);
    check_block_forward(t, &mut r, tiled_forward, 2_048, 8, 2_048, false);
}

#[test]
fn conv8_block_matches_reference() {
    let t = gpu();
    let mut r = rng(47);
    for (rows, len, relu) in BLOCK_SHAPES {
        check_block_forward(t, &mut r, conv8_forward, rows, 8, len, relu);
    }
}

/// conv8 runs one thread per 32 positions, too few to fill one grid dimension within
/// lavapipe's largest binding: on a device whose grid wraps past 4 workgroups, 148 rows
/// of 333 places take 14 (4 x 4); every output checked.
#[test]
fn conv8_block_grid_wraps() {
    let t = narrow_grid_gpu();
    let mut r = rng(48);
    check_block_forward(t, &mut r, conv8_forward, 148, 8, 333, true);
}

fn check_block_forward(
    t: &TestGpu,
    r: &mut StdRng,
    forward: BlockForward,
    rows: usize,
    ch: usize,
    len: usize,
    relu: bool,
) {
    let strings = RowStrings::random(r, rows, len);
    let mut x = uniform(r, rows * ch * len);
    strings.zero_past(&mut x, ch, len, strings.level);
    let w = uniform(r, ch * ch * 3);
    let shape = block_shape(ch, ch, len, relu);
    let params = storage_buffer_init(&t.gpu, "params", &params_with(&w));
    let x_b = storage_buffer_init(&t.gpu, "x", &x);
    let lengths = storage_buffer_init(&t.gpu, "lengths", &strings.lengths);
    let n = rows * ch * (len / 2);
    let y = nan_slab(&t.gpu, n);
    let calls = forward(t, shape, strings.extents(&lengths), &x_b, &params, &y);
    let got = run(&t.gpu, &calls, rows as u32, &y, n);
    let want = cnn_ed::conv_pool(&to_f64(&x), &to_f64(&w), ch, ch, len, relu);
    let what = format!("block {rows}x{ch}x{len} relu {relu}");
    assert_close(&what, &got, &want, ATOL, RTOL);
}

/// A block's backward calls for up to `capacity` rows: `(gpu, shape, extents, capacity,
/// buffers)`, and whether its dx is zero past each row's extent.
type BlockBackward = (
    fn(&TestGpu, Conv1dShape, Extents, usize, Conv1dGrads) -> Calls,
    bool,
);

const TILED_BACKWARD: BlockBackward = (
    |t, shape, _, capacity, b| {
        t.ops
            .conv1d
            .backward_pool(&t.gpu, &t.ops.weight_grad, shape, capacity, b)
    },
    false,
);

const CONV8_BACKWARD: BlockBackward = (
    |t, shape, extents, capacity, b| t.ops.conv8.backward(&t.gpu, shape, extents, capacity, b),
    true,
);

#[test]
fn conv_pool_block_backward_matches_reference_and_finite_differences() {
    let mut r = rng(46);
    for (rows, len, relu) in BLOCK_SHAPES {
        check_block_backward(gpu(), &mut r, TILED_BACKWARD, rows, 8, len, relu);
    }
}

#[test]
fn conv8_block_backward_matches_reference_and_finite_differences() {
    let mut r = rng(49);
    for (rows, len, relu) in BLOCK_SHAPES {
        check_block_backward(gpu(), &mut r, CONV8_BACKWARD, rows, 8, len, relu);
    }
}

/// As [`conv8_block_grid_wraps`], for the input gradient; every dx and dw checked.
#[test]
fn conv8_block_backward_grid_wraps() {
    let mut r = rng(50);
    check_block_backward(narrow_grid_gpu(), &mut r, CONV8_BACKWARD, 148, 8, 333, true);
}

/// A weight gradient needs at most 65,535 segments (192 positions each): past that
/// lavapipe would stop its reduce early, so building the call fails instead.
#[test]
#[should_panic(expected = "segments of 192")]
fn block_backward_past_the_segment_limit_fails_loudly() {
    let t = gpu();
    let tiny = storage_buffer(&t.gpu, "tiny", 1024);
    let buffers = Conv1dGrads {
        x: &tiny,
        dy: &tiny,
        params: &tiny,
        grads: &tiny,
        dx: &tiny,
    };
    let shape = block_shape(8, 8, 360, false);
    let rows = 70_000;
    assert!(rows * 180 > 65_535 * 192);
    t.ops
        .conv1d
        .backward_pool(&t.gpu, &t.ops.weight_grad, shape, rows, buffers);
}

/// dx and dw of a bias-free block (from the gradient at its output, the ReLU undone
/// here on the CPU as the model's relu backward would) against the reference, bit for
/// bit the same over two runs, no bias gradient written; and the reference against
/// finite differences. The input is zero past each row's extent and the output's
/// gradient is not: dw must equal the full sum all the same, and a cutting block's dx
/// the reference's up to the extent and zero after it.
fn check_block_backward(
    t: &TestGpu,
    r: &mut StdRng,
    backward: BlockBackward,
    rows: usize,
    ch: usize,
    len: usize,
    relu: bool,
) {
    let (backward, cuts) = backward;
    let strings = RowStrings::random(r, rows, len);
    let mut x = uniform(r, rows * ch * len);
    strings.zero_past(&mut x, ch, len, strings.level);
    let w = uniform(r, ch * ch * 3);
    let dy = uniform(r, rows * ch * (len / 2));
    let (x64, w64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
    let dz = if relu {
        let y = cnn_ed::conv_pool(&x64, &w64, ch, ch, len, true);
        reference::relu_backward(&y, &dy64)
            .iter()
            .map(|&v| v as f32)
            .collect()
    } else {
        dy.clone()
    };
    let shape = block_shape(ch, ch, len, relu);
    let params = params_with(&w);
    let params_b = storage_buffer_init(&t.gpu, "params", &params);
    let x_b = storage_buffer_init(&t.gpu, "x", &x);
    let dz_b = storage_buffer_init(&t.gpu, "dz", &dz);
    let lengths = storage_buffer_init(&t.gpu, "lengths", &strings.lengths);
    let dx_b = nan_slab(&t.gpu, x.len());
    // A sentinel after dw: a bias gradient would land there or nowhere.
    let grads = nan_slab(&t.gpu, params.len() + ch);
    // Built for twice the rows: the weight gradient's grid has segments left empty.
    let calls = backward(
        t,
        shape,
        strings.extents(&lengths),
        2 * rows,
        Conv1dGrads {
            x: &x_b,
            dy: &dz_b,
            params: &params_b,
            grads: &grads,
            dx: &dx_b,
        },
    );
    let what = format!("block backward {rows}x{ch}x{len} relu {relu}");
    let runs: Vec<(Vec<f32>, Vec<f32>)> = (0..2)
        .map(|_| {
            let g = run(&t.gpu, &calls, rows as u32, &grads, params.len() + ch);
            (g, t.gpu.read_buffer(&dx_b, x.len()).unwrap())
        })
        .collect();
    let (g, got_dx) = &runs[0];
    assert_eq!(bits(g), bits(&runs[1].0), "{what}: dw differs between runs");
    assert_eq!(
        bits(got_dx),
        bits(&runs[1].1),
        "{what}: dx differs between runs"
    );
    let (dx, dw) = cnn_ed::conv_pool_backward(&x64, &w64, &dy64, ch, ch, len, relu);
    let mut want_dx: Vec<f32> = dx.iter().map(|&v| v as f32).collect();
    if cuts {
        strings.zero_past(&mut want_dx, ch, len, strings.level);
    }
    assert_close(
        &format!("{what} dx"),
        got_dx,
        &to_f64(&want_dx),
        ATOL,
        GRAD_RTOL,
    );
    assert_close(
        &format!("{what} dw"),
        &g[W_AT..params.len()],
        &dw,
        GRAD_ATOL,
        GRAD_RTOL,
    );
    let untouched = g[..W_AT].iter().chain(&g[params.len()..]);
    assert!(
        untouched.into_iter().all(|v| v.is_nan()),
        "{what}: wrote outside dw"
    );

    // The reference's backward, on an input without zeros (whose ReLU kinks would
    // fool the differences).
    if rows * len <= 400 {
        let x64 = to_f64(&uniform(r, rows * ch * len));
        let (dx, dw) = cnn_ed::conv_pool_backward(&x64, &w64, &dy64, ch, ch, len, relu);
        let f = |x: &[f64], w: &[f64]| dot(&dy64, &cnn_ed::conv_pool(x, w, ch, ch, len, relu));
        finite_differences(&format!("{what} dx"), r, &x64, &dx, |v| f(v, &w64));
        finite_differences(&format!("{what} dw"), r, &w64, &dw, |v| f(&x64, v));
    }
}

/// The folded table's sum and its backward (training through the table) against the
/// reference, in both layouts: alphabets 4 and 37, M not a power of two, batch 1,
/// strings longer than M, empty strings, ids outside the alphabet; the bias read and db
/// written at an offset; the reference's backward against finite differences.
#[test]
fn table_embed_and_backward_match_reference() {
    use megashtein_gpu::ops::cnn_ed::{
        TableBuffers, TableGrads, TableLayout, TableShape, pack_ids,
    };
    let t = gpu();
    let mut r = rng(45);
    for (batch, alphabet, max_len, dim) in [
        (1usize, 4usize, 7usize, 8usize),
        (9, 37, 50, 128),
        (5, 4, 3, 4),
        // 16 outputs a thread: three threads a string; a last thread of 8 outputs.
        (3, 5, 9, 48),
        (2, 6, 11, 24),
    ] {
        for layout in [TableLayout::CharMajor, TableLayout::PlaceMajor] {
            let what = format!("table {batch}x{alphabet}x{max_len}x{dim} {layout:?}");
            let row = |c: usize, l: usize| match layout {
                TableLayout::CharMajor => (c * max_len + l) * dim,
                TableLayout::PlaceMajor => (l * alphabet + c) * dim,
            };
            let strings: Vec<Vec<u32>> = (0..batch)
                .map(|b| {
                    let len = if b == 1 {
                        0
                    } else {
                        r.random_range(1..max_len + 4)
                    };
                    (0..len)
                        .map(|_| r.random_range(0..=alphabet as u32))
                        .collect()
                })
                .collect();
            let table = uniform(&mut r, alphabet * max_len * dim);
            // The bias sits at an offset in a larger slab, as in the trainer's.
            const AT: usize = 8;
            let bias = uniform(&mut r, dim);
            let slab = [&[9.0f32; AT][..], &bias, &[9.0]].concat();
            let shape = TableShape {
                alphabet,
                max_len,
                dim,
                layout,
                bias: AT,
            };
            let (mut ids, mut starts) = (Vec::new(), Vec::new());
            pack_ids(strings.iter().cloned(), &mut ids, &mut starts);
            // A zero-length binding is not allowed: keep one id.
            let ids_b = storage_buffer_init(&t.gpu, "ids", &[ids.as_slice(), &[0]].concat());
            let starts_b = storage_buffer_init(&t.gpu, "starts", &starts);
            let table_b = storage_buffer_init(&t.gpu, "table", &table);
            let slab_b = storage_buffer_init(&t.gpu, "slab", &slab);
            let out = nan_slab(&t.gpu, batch * dim);
            let call = t.ops.table.call(
                &t.gpu,
                shape,
                TableBuffers {
                    table: &table_b,
                    bias: &slab_b,
                    ids: &ids_b,
                    starts: &starts_b,
                    out: &out,
                },
            );
            let got = run(&t.gpu, &call.into(), batch as u32, &out, batch * dim);
            let (t64, b64) = (to_f64(&table), to_f64(&bias));
            let want = cnn_ed::table_embed(&t64, &b64, &strings, alphabet, max_len, row);
            assert_close(&what, &got, &want, ATOL, RTOL);

            let d_out = uniform(&mut r, batch * dim);
            let d_out_b = storage_buffer_init(&t.gpu, "d_out", &d_out);
            let d_table = nan_slab(&t.gpu, table.len());
            let grads = nan_slab(&t.gpu, AT + dim + 1);
            let calls = t.ops.table.backward(
                &t.gpu,
                shape,
                TableGrads {
                    d_out: &d_out_b,
                    ids: &ids_b,
                    starts: &starts_b,
                    d_table: &d_table,
                    grads: &grads,
                },
            );
            let got_table = run(&t.gpu, &calls, batch as u32, &d_table, table.len());
            let got_slab = t.gpu.read_buffer(&grads, AT + dim + 1).unwrap();
            let d64 = to_f64(&d_out);
            let (want_table, want_bias) =
                cnn_ed::table_embed_backward(&d64, &strings, alphabet, max_len, table.len(), row);
            assert_close(
                &format!("{what} d_table"),
                &got_table,
                &want_table,
                ATOL,
                RTOL,
            );
            assert_close(
                &format!("{what} d_bias"),
                &got_slab[AT..AT + dim],
                &want_bias,
                ATOL,
                RTOL,
            );
            assert!(
                got_slab[..AT]
                    .iter()
                    .chain(&got_slab[AT + dim..])
                    .all(|v| v.is_nan()),
                "{what}: wrote outside db"
            );
            let f = |table: &[f64], bias: &[f64]| {
                dot(
                    &d64,
                    &cnn_ed::table_embed(table, bias, &strings, alphabet, max_len, row),
                )
            };
            finite_differences(&format!("{what} d_table"), &mut r, &t64, &want_table, |v| {
                f(v, &b64)
            });
            finite_differences(&format!("{what} d_bias"), &mut r, &b64, &want_bias, |v| {
                f(&t64, v)
            });
        }
    }
}

/// The folded blocks before the first ReLU (`ops::cnn_ed_prefix`, from
/// `CnnEd::prefix`) equal those blocks run plainly, conv + pool one after another, and
/// the ReLU that ends them: ReLUs after the first block, after the third and none
/// (every block folded), M not a power of two, alphabets of 4 and 37, batch 1, tokens
/// outside the alphabet; on a device whose grid wraps too.
#[test]
fn folded_blocks_match_the_blocks_run_plainly() {
    use megashtein_gpu::ops::cnn_ed_prefix::{PrefixBuffers, PrefixShape};
    let mut r = rng(47);
    // (alphabet, M, layers, ReLU mask, batch)
    for (alphabet, max_len, layers, relu, batch) in [
        (4, 38, 5, 0b00001, 1),
        (37, 250, 7, 0b0100100, 3),
        (4, 100, 6, 0, 2),
        (5, 64, 6, 0b110100, 9),
    ] {
        let model = random_cnn_ed(r.random(), alphabet, max_len, layers, relu);
        let shape = model.shape();
        let prefix = model.prefix();
        let (tokens, lengths) = random_tokens(&mut r, batch, alphabet, max_len);
        // The blocks run plainly on the one-hot rows.
        let mut want = cnn_ed::onehot(&tokens, alphabet, max_len, max_len);
        let (mut cin, mut len) = (1, max_len);
        for i in 0..prefix.blocks {
            let w = to_f64(model.conv_weight(i));
            want = cnn_ed::conv_pool(&want, &w, cin, 8, len, shape.relu_after(i));
            (cin, len) = (8, len / 2);
        }
        assert_eq!(len, prefix.len);
        for t in [gpu(), narrow_grid_gpu()] {
            let g = &t.gpu;
            let n = batch * alphabet * 8 * prefix.len;
            let out = nan_slab(g, n);
            let tok = storage_buffer_init(g, "tokens", &tokens);
            let lengths = storage_buffer_init(g, "lengths", &lengths);
            let responses = storage_buffer_init(g, "responses", &prefix.values);
            let first = storage_buffer_init(g, "first", &prefix.first);
            let reach = storage_buffer_init(g, "reach", &prefix.reach);
            let prefix_shape = PrefixShape {
                alphabet,
                max_len,
                blocks: prefix.blocks,
                len: prefix.len,
                width: prefix.width,
                relu: prefix.relu,
            };
            let buffers = PrefixBuffers {
                tokens: &tok,
                lengths: &lengths,
                responses: &responses,
                first: &first,
                reach: &reach,
                out: &out,
            };
            let call = t.ops.prefix.call(g, prefix_shape, buffers);
            let got = run(g, &call.into(), batch as u32, &out, n);
            let what = format!(
                "C {alphabet} M {max_len} ReLU {relu:b}: {} blocks",
                prefix.blocks
            );
            assert_close(&what, &got, &want, ATOL, RTOL);
        }
    }
}
