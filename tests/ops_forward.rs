//! Every forward kernel against its CPU reference, on random shapes including odd
//! lengths and batch 1.
mod common;

use common::{assert_close, gpu, rng, to_f64, uniform};
use megashtein_gpu::gpu::{Call, Calls, Gpu, storage_buffer, storage_buffer_init};
use megashtein_gpu::input::{MAX_CHAR, MAX_LEN, tokenize_batch};
use megashtein_gpu::model::params::VOCAB;
use megashtein_gpu::ops::{
    PackedWeight,
    batchnorm::BatchNormShape,
    conv1d::{Conv1dShape, Packing},
    embedding::EmbeddingShape,
    linear::LinearShape,
    tapconv::TapConvShape,
};
use megashtein_gpu::reference;
use rand::Rng;
use rand::rngs::StdRng;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-5;

/// Run `call` for `batch` items and read `count` floats of `out`.
fn run(gpu: &Gpu, call: &Call, batch: u32, out: &wgpu::Buffer, count: usize) -> Vec<f32> {
    run_calls(gpu, &Calls::from(call.clone()), batch, out, count)
}

fn run_calls(gpu: &Gpu, calls: &Calls, batch: u32, out: &wgpu::Buffer, count: usize) -> Vec<f32> {
    calls.set_batch(gpu, batch);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        calls.record(&mut pass, gpu, batch);
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.read_buffer(out, count).unwrap()
}

/// Record a packed weight's packing call.
fn pack(gpu: &Gpu, packed: &PackedWeight) {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        packed.pack.record(&mut pass, gpu, 1);
    }
    gpu.queue.submit([encoder.finish()]);
}

/// A parameter slab with some padding in front, so offsets are exercised.
fn slab(parts: &[&[f32]]) -> (Vec<f32>, Vec<u32>) {
    let mut data = vec![9.0; 7];
    let mut offsets = Vec::new();
    for p in parts {
        offsets.push(data.len() as u32);
        data.extend_from_slice(p);
    }
    (data, offsets)
}

#[test]
fn embedding_matches_reference() {
    let t = gpu();
    let mut r = rng(1);
    for &(batch, len, dim, vocab) in &[
        (1usize, 1usize, 1usize, 2usize),
        (3, 7, 5, 11),
        (2, 80, 140, 128),
    ] {
        let table = uniform(&mut r, vocab * dim);
        // Include out-of-range tokens: they are clamped to the last row.
        let tokens: Vec<u8> = (0..batch * len)
            .map(|_| r.random_range(0..vocab as u8 + 3))
            .collect();
        let (params, off) = slab(&[&table]);
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let tok = storage_buffer_init(&t.gpu, "tokens", &tokens);
        let shape = EmbeddingShape {
            len: len as u32,
            dim: dim as u32,
            vocab: vocab as u32,
            table: off[0],
        };
        check_embedding(t, shape, &tokens, &tok, &params, &table, "embedding");
    }
}

/// Block 0's shape with its table, weight and bias at `off[0..3]` of the slab.
fn tap_shape(len: usize, vocab: usize, dim: usize, cout: usize, off: &[u32]) -> TapConvShape {
    TapConvShape {
        len: len as u32,
        vocab: vocab as u32,
        dim: dim as u32,
        cout: cout as u32,
        table: off[0],
        weight: off[1],
        bias: off[2],
    }
}

/// The GPU embedding of `tokens` (uploaded as `tok`) equals the reference exactly;
/// returns the reference output.
fn check_embedding(
    t: &common::TestGpu,
    shape: EmbeddingShape,
    tokens: &[u8],
    tok: &wgpu::Buffer,
    params: &wgpu::Buffer,
    table: &[f32],
    what: &str,
) -> Vec<f64> {
    let (len, dim, vocab) = (shape.len as usize, shape.dim as usize, shape.vocab as usize);
    let batch = tokens.len() / len;
    let out = storage_buffer(&t.gpu, "out", (batch * dim * len * 4) as u64);
    let call = t.ops.embedding.forward(&t.gpu, shape, tok, params, &out);
    let got = run(&t.gpu, &call, batch as u32, &out, batch * dim * len);
    let want = reference::embedding(tokens, &to_f64(table), len, dim, vocab);
    assert_close(what, &got, &want, 0.0, 0.0);
    want
}

#[test]
fn conv1d_matches_reference() {
    let t = gpu();
    let mut r = rng(2);
    for &(batch, cin, cout, len) in &[
        (1usize, 1usize, 1usize, 1usize),
        (1, 3, 2, 2),
        (3, 5, 4, 7),
        (2, 7, 70, 9),
        (2, 64, 64, 80),
        (3, 64, 5, 9),
        (5, 64, 64, 5),
    ] {
        let x = uniform(&mut r, batch * cin * len);
        let w = uniform(&mut r, cout * cin * 3);
        let b = uniform(&mut r, cout);
        let (params, off) = slab(&[&w, &b]);
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let xb = storage_buffer_init(&t.gpu, "x", &x);
        let y = storage_buffer(&t.gpu, "y", (batch * cout * len * 4) as u64);
        let shape = Conv1dShape {
            cin: cin as u32,
            cout: cout as u32,
            len: len as u32,
            weight: off[0],
            bias: Some(off[1]),
            relu: false,
        };
        let packed = t.ops.conv1d.pack(&t.gpu, shape, &params, Packing::Conv);
        pack(&t.gpu, &packed);
        let call = t
            .ops
            .conv1d
            .forward(&t.gpu, shape, &xb, &packed, &params, &y);
        let got = run(&t.gpu, &call, batch as u32, &y, batch * cout * len);
        let want = reference::conv1d(&to_f64(&x), &to_f64(&w), &to_f64(&b), cin, cout, len);
        assert_close(
            &format!("conv1d {batch}x{cin}->{cout}x{len}"),
            &got,
            &want,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn conv1d_pool_relu_matches_reference() {
    let t = gpu();
    let mut r = rng(7);
    for &(batch, cin, cout, len) in &[
        (1usize, 1usize, 1usize, 2usize),
        (1, 3, 2, 3),
        (3, 5, 4, 7),
        (2, 7, 70, 9),
        // The tile's narrow paths: last tiles of 2 and 13 columns (at most 4, 16).
        (33, 64, 64, 5),
        (13, 64, 64, 2),
        (17, 64, 64, 40),
        (4, 64, 64, 80),
        (1, 64, 64, 80),
        // 2.1 M columns: more workgroups than one grid dimension holds (65,535).
        (2_100_000, 1, 2, 3),
    ] {
        let x = uniform(&mut r, batch * cin * len);
        let w = uniform(&mut r, cout * cin * 3);
        let b = uniform(&mut r, cout);
        let (params, off) = slab(&[&w, &b]);
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let xb = storage_buffer_init(&t.gpu, "x", &x);
        let n = batch * cout * (len / 2);
        let y = storage_buffer(&t.gpu, "y", (n * 4) as u64);
        let shape = Conv1dShape {
            cin: cin as u32,
            cout: cout as u32,
            len: len as u32,
            weight: off[0],
            bias: Some(off[1]),
            relu: true,
        };
        let packed = t.ops.conv1d.pack(&t.gpu, shape, &params, Packing::Pooled);
        pack(&t.gpu, &packed);
        let call = t
            .ops
            .conv1d
            .forward_pool(&t.gpu, shape, &xb, &packed, &params, &y);
        let got = run(&t.gpu, &call, batch as u32, &y, n);
        let conv = reference::conv1d(&to_f64(&x), &to_f64(&w), &to_f64(&b), cin, cout, len);
        let want = reference::relu(&reference::avgpool(&conv, len));
        assert_close(
            &format!("conv1d+pool+relu {batch}x{cin}->{cout}x{len}"),
            &got,
            &want,
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn tapconv_matches_embedding_conv_pool_relu() {
    let t = gpu();
    let mut r = rng(8);
    for &(batch, len, vocab, dim, cout) in &[
        (1usize, 2usize, 2usize, 1usize, 1usize),
        (1, 3, 5, 4, 3),
        (3, 9, 11, 7, 70),
        (5, 80, 128, 140, 64),
        // One workgroup per string: the grid wraps into its second dimension.
        (70_000, 2, 3, 1, 1),
    ] {
        let table = uniform(&mut r, vocab * dim);
        let w = uniform(&mut r, cout * dim * 3);
        let b = uniform(&mut r, cout);
        // Token 0 inside the string is a real token; out-of-range tokens are clamped.
        let mut tokens: Vec<u8> = (0..batch * len)
            .map(|_| r.random_range(0..vocab as u8 + 3))
            .collect();
        tokens[len - 1] = 0;
        let (params, off) = slab(&[&table, &w, &b]);
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let tok = storage_buffer_init(&t.gpu, "tokens", &tokens);
        let shape = tap_shape(len, vocab, dim, cout, &off);
        let taps = storage_buffer(&t.gpu, "taps", (shape.taps_len() * 4) as u64);
        let fold = t.ops.tapconv.fold(&t.gpu, shape, &params, &taps);
        let got = run(&t.gpu, &fold, 1, &taps, shape.taps_len());
        let taps64 = reference::fold_taps(&to_f64(&table), &to_f64(&w), vocab, dim, cout);
        let want = reference::pair_tables(&taps64, vocab, cout);
        assert_close("pair tables", &got, &want, ATOL, RTOL);

        let x = reference::embedding(&tokens, &to_f64(&table), len, dim, vocab);
        let what = format!("tapconv {batch}x{len} vocab {vocab} {dim}->{cout}");
        check_tapconv(t, shape, [&params, &taps, &tok], batch, &x, &w, &b, &what);
    }
}

/// The GPU block 0 (`buffers`: params, folded taps, tokens) equals the reference conv +
/// pool + ReLU of the embedded input `x`.
#[allow(clippy::too_many_arguments)]
fn check_tapconv(
    t: &common::TestGpu,
    shape: TapConvShape,
    [params, taps, tok]: [&wgpu::Buffer; 3],
    batch: usize,
    x: &[f64],
    w: &[f32],
    b: &[f32],
    what: &str,
) {
    let (len, dim, cout) = (shape.len as usize, shape.dim as usize, shape.cout as usize);
    let n = batch * cout * (len / 2);
    let y = storage_buffer(&t.gpu, "y", (n * 4) as u64);
    let call = t.ops.tapconv.forward(&t.gpu, shape, params, taps, tok, &y);
    let got = run(&t.gpu, &call, batch as u32, &y, n);
    let conv = reference::conv1d(x, &to_f64(w), &to_f64(b), dim, cout, len);
    let want = reference::relu(&reference::avgpool(&conv, len));
    assert_close(what, &got, &want, ATOL, RTOL);
}

/// The embedding and the folded conv0 read u8 tokens packed four to a word: strings of
/// every length modulo 4 (padding from every byte of a word), characters at the top of
/// the vocabulary and past it (clamped), and raw bytes up to 255 over a 256-row table
/// in rows of odd length (rows starting at every byte of a word). A wrong shift or mask
/// in `token_at` picks a neighbour's row.
#[test]
fn packed_tokens_match_reference() {
    let t = gpu();
    let mut r = rng(9);
    let mut strings: Vec<Vec<u8>> = [0usize, 1, 2, 3, 5, 79, 80, 83]
        .iter()
        .map(|&n| (0..n).map(|_| r.random_range(100..=255u8)).collect())
        .collect();
    strings.push(vec![127, 126, 1, 0, 127]);
    let mut tokenized = Vec::new();
    tokenize_batch(strings.iter().map(Vec::as_slice), &mut tokenized);
    assert!(tokenized.contains(&MAX_CHAR) && tokenized.contains(&(MAX_CHAR - 1)));
    let raw = |r: &mut StdRng, n: usize| -> Vec<u8> {
        let mut v: Vec<u8> = (0..n).map(|_| r.random()).collect();
        v[1] = 255;
        v
    };
    let cases: [(Vec<u8>, usize, usize); 3] = [
        (tokenized, MAX_LEN, VOCAB),
        (raw(&mut r, 5 * 7), 7, 256),
        (raw(&mut r, 3 * 9), 9, 200),
    ];
    let (dim, cout) = (7usize, 6usize);
    for (tokens, len, vocab) in cases {
        let batch = tokens.len() / len;
        let table = uniform(&mut r, vocab * dim);
        let w = uniform(&mut r, cout * dim * 3);
        let b = uniform(&mut r, cout);
        let (params, off) = slab(&[&table, &w, &b]);
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let tok = storage_buffer_init(&t.gpu, "tokens", &tokens);
        let what = format!("{batch}x{len} vocab {vocab}");
        let shape = EmbeddingShape {
            len: len as u32,
            dim: dim as u32,
            vocab: vocab as u32,
            table: off[0],
        };
        let embedding = format!("embedding {what}");
        let x = check_embedding(t, shape, &tokens, &tok, &params, &table, &embedding);

        let shape = tap_shape(len, vocab, dim, cout, &off);
        let taps = storage_buffer(&t.gpu, "taps", (shape.taps_len() * 4) as u64);
        run(
            &t.gpu,
            &t.ops.tapconv.fold(&t.gpu, shape, &params, &taps),
            1,
            &taps,
            1,
        );
        let tapconv = format!("tapconv {what}");
        check_tapconv(
            t,
            shape,
            [&params, &taps, &tok],
            batch,
            &x,
            &w,
            &b,
            &tapconv,
        );
    }
}

#[test]
fn avgpool_matches_reference() {
    let t = gpu();
    let mut r = rng(3);
    for &(batch, ch, len) in &[(1usize, 1usize, 2usize), (1, 3, 5), (4, 7, 9), (3, 64, 80)] {
        let x = uniform(&mut r, batch * ch * len);
        let xb = storage_buffer_init(&t.gpu, "x", &x);
        let y = storage_buffer(&t.gpu, "y", (batch * ch * (len / 2) * 4) as u64);
        let call = t
            .ops
            .avgpool
            .forward(&t.gpu, ch as u32, len as u32, &xb, &y);
        let got = run(&t.gpu, &call, batch as u32, &y, batch * ch * (len / 2));
        assert_close(
            "avgpool",
            &got,
            &reference::avgpool(&to_f64(&x), len),
            ATOL,
            RTOL,
        );
    }
}

#[test]
fn relu_matches_reference() {
    let t = gpu();
    let mut r = rng(4);
    for &(batch, per_item) in &[(1usize, 1usize), (3, 17), (7, 200)] {
        let x = uniform(&mut r, batch * per_item);
        let xb = storage_buffer_init(&t.gpu, "x", &x);
        let call = t.ops.relu.forward(&t.gpu, per_item as u32, &xb);
        let got = run(&t.gpu, &call, batch as u32, &xb, batch * per_item);
        assert_close("relu", &got, &reference::relu(&to_f64(&x)), 0.0, 0.0);
    }
}

#[test]
fn linear_matches_reference() {
    let t = gpu();
    let mut r = rng(5);
    // (batch, fan_in, fan_out, relu, bias)
    for &(batch, fan_in, fan_out, relu, bias) in &[
        (1usize, 1usize, 1usize, false, true),
        (1, 3, 5, true, true),
        (7, 13, 9, false, true),
        (33, 128, 200, true, true),
        (4, 200, 80, false, true),
        (70, 17, 65, true, true),
        // Split-K: reductions past KMAX, the last call 1 wide or ragged; ReLU after
        // the whole sum.
        (5, 201, 3, true, true),
        (37, 450, 128, true, true),
        (2, 601, 70, false, true),
        // No bias, with one call and with several.
        (9, 30, 20, true, false),
        (3, 450, 40, false, false),
        // 2.1 M rows: the grid wraps into its second dimension.
        (2_100_000, 1, 2, true, true),
    ] {
        let x = uniform(&mut r, batch * fan_in);
        let w = uniform(&mut r, fan_out * fan_in);
        // Without a bias the slab still holds one, which must not be added.
        let b = uniform(&mut r, fan_out);
        let (params, off) = slab(&[&w, &b]);
        let b = if bias { b } else { vec![0.0; fan_out] };
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let xb = storage_buffer_init(&t.gpu, "x", &x);
        let y = storage_buffer(&t.gpu, "y", (batch * fan_out * 4) as u64);
        let shape = LinearShape {
            fan_in: fan_in as u32,
            fan_out: fan_out as u32,
            weight: off[0],
            bias: bias.then_some(off[1]),
            relu,
        };
        let packed = t.ops.linear.pack(&t.gpu, shape, &params);
        pack(&t.gpu, &packed);
        let calls = t
            .ops
            .linear
            .forward(&t.gpu, shape, &xb, &packed, &params, &y);
        let got = run_calls(&t.gpu, &calls, batch as u32, &y, batch * fan_out);
        let want = reference::linear(&to_f64(&x), &to_f64(&w), &to_f64(&b), fan_in, fan_out, relu);
        assert_close("linear", &got, &want, ATOL, RTOL);
    }
}

#[test]
fn batchnorm_inference_matches_reference() {
    let t = gpu();
    let mut r = rng(6);
    for &(batch, ch) in &[(1usize, 1usize), (3, 5), (17, 80)] {
        let x = uniform(&mut r, batch * ch);
        let gamma = uniform(&mut r, ch);
        let beta = uniform(&mut r, ch);
        let mean = uniform(&mut r, ch);
        let var: Vec<f32> = (0..ch).map(|_| r.random_range(0.01f32..3.0)).collect();
        let (params, off) = slab(&[&gamma, &beta]);
        let params = storage_buffer_init(&t.gpu, "params", &params);
        let running: Vec<f32> = mean.iter().chain(&var).copied().collect();
        let running = storage_buffer_init(&t.gpu, "running", &running);
        let xb = storage_buffer_init(&t.gpu, "x", &x);
        let y = storage_buffer(&t.gpu, "y", (batch * ch * 4) as u64);
        let shape = BatchNormShape {
            channels: ch as u32,
            gamma: off[0],
            beta: off[1],
            eps: 1e-5,
            momentum: 0.1,
        };
        let call = t
            .ops
            .batchnorm
            .inference(&t.gpu, shape, &xb, &params, &running, &y);
        let got = run(&t.gpu, &call, batch as u32, &y, batch * ch);
        let want = reference::batchnorm_inference(
            &to_f64(&x),
            &to_f64(&gamma),
            &to_f64(&beta),
            &to_f64(&mean),
            &to_f64(&var),
            1e-5,
        );
        assert_close("batchnorm", &got, &want, ATOL, RTOL);
    }
}
