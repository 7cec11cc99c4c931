//! Every backward kernel (and batch norm in training mode, the PNLL pair loss, AdamW)
//! against its CPU reference on random shapes, and every CPU reference backward against
//! central finite differences of its forward, in f64.
mod common;

use common::{assert_close, dot, finite_differences, gpu, rng, to_f64, uniform};
use megashtein_gpu::gpu::{Calls, Gpu, storage_buffer, storage_buffer_init};
use megashtein_gpu::ops::adamw::{AdamWBuffers, AdamWStep};
use megashtein_gpu::ops::batchnorm::BatchNormShape;
use megashtein_gpu::ops::conv1d::{Conv1dGrads, Conv1dShape};
use megashtein_gpu::ops::embedding::{EmbeddingShape, positions_by_token};
use megashtein_gpu::ops::linear::{LinearGrads, LinearShape};
use megashtein_gpu::ops::pnll::{EPS, LossBuffers, LossShape};
use megashtein_gpu::ops::ranking::RankingWeights;
use megashtein_gpu::ops::tapconv::TapConvShape;
use megashtein_gpu::reference;
use rand::Rng;
use rand::rngs::StdRng;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

fn submit(gpu: &Gpu, calls: &Calls, batch: u32) {
    calls.set_batch(gpu, batch);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        calls.record(&mut pass, gpu, batch);
    }
    gpu.queue.submit([encoder.finish()]);
}

fn read(gpu: &Gpu, buffer: &wgpu::Buffer, count: usize) -> Vec<f32> {
    gpu.read_buffer(buffer, count).unwrap()
}

/// A gradient slab filled with a sentinel, so an unwritten gradient shows.
fn grad_slab(gpu: &Gpu, len: usize) -> wgpu::Buffer {
    storage_buffer_init(gpu, "grads", &vec![f32::NAN; len])
}

#[test]
fn embedding_backward_matches_reference_and_finite_differences() {
    let t = gpu();
    let mut r = rng(21);
    for &(batch, len, dim, vocab) in &[
        (1usize, 1usize, 1usize, 2usize),
        (3, 7, 5, 11),
        (4, 80, 64, 128),
        // Runs of ~1,300 positions per token: many pieces each.
        (50, 80, 70, 3),
    ] {
        let tokens: Vec<u8> = (0..batch * len)
            .map(|_| r.random_range(0..vocab as u8 + 2))
            .collect();
        let dout = uniform(&mut r, batch * dim * len);
        let positions =
            storage_buffer_init(&t.gpu, "positions", &positions_by_token(&tokens, vocab));
        let dout_b = storage_buffer_init(&t.gpu, "dout", &dout);
        let grads = grad_slab(&t.gpu, 3 + vocab * dim);
        let shape = EmbeddingShape {
            len: len as u32,
            dim: dim as u32,
            vocab: vocab as u32,
            table: 3,
        };
        let call = t
            .ops
            .embedding
            .backward(&t.gpu, shape, batch, &positions, &dout_b, &grads);
        submit(&t.gpu, &call, batch as u32);
        let got = read(&t.gpu, &grads, 3 + vocab * dim);
        let want = reference::embedding_backward(&tokens, &to_f64(&dout), len, dim, vocab);
        assert_close("embedding backward", &got[3..], &want, ATOL, RTOL);

        let table = to_f64(&uniform(&mut r, vocab * dim));
        let dout = to_f64(&dout);
        finite_differences("embedding", &mut r, &table, &want, |tab| {
            dot(&dout, &reference::embedding(&tokens, tab, len, dim, vocab))
        });
    }
}

#[test]
fn folded_conv0_backward_matches_embedding_then_conv() {
    let t = gpu();
    let mut r = rng(22);
    for &(batch, len, vocab, dim, cout) in &[
        (1usize, 2usize, 2usize, 1usize, 1usize),
        (3, 9, 11, 7, 5),
        (4, 80, 128, 140, 64),
    ] {
        let table = uniform(&mut r, vocab * dim);
        let w = uniform(&mut r, cout * dim * 3);
        let tokens: Vec<u8> = (0..batch * len)
            .map(|_| r.random_range(0..vocab as u8))
            .collect();
        let dy = uniform(&mut r, batch * cout * len);
        let params: Vec<f32> = [table.as_slice(), &w, &vec![0.0; cout]].concat();
        let shape = TapConvShape {
            len: len as u32,
            vocab: vocab as u32,
            dim: dim as u32,
            cout: cout as u32,
            table: 0,
            weight: (vocab * dim) as u32,
            bias: (vocab * dim + cout * dim * 3) as u32,
        };
        let params_b = storage_buffer_init(&t.gpu, "params", &params);
        let positions =
            storage_buffer_init(&t.gpu, "positions", &positions_by_token(&tokens, vocab));
        let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
        let dtaps = storage_buffer(&t.gpu, "dtaps", (shape.tap_grads_len() * 4) as u64);
        let grads = grad_slab(&t.gpu, params.len());
        let mut calls = t.ops.embedding.backward_taps(
            &t.gpu,
            EmbeddingShape {
                len: len as u32,
                dim: cout as u32,
                vocab: vocab as u32,
                table: 0,
            },
            batch,
            &positions,
            &dy_b,
            &dtaps,
        );
        calls.extend(
            t.ops
                .tapconv
                .backward(&t.gpu, shape, &params_b, &dtaps, &grads),
        );
        submit(&t.gpu, &calls, batch as u32);
        let got = read(&t.gpu, &grads, params.len());

        let x = reference::embedding(&tokens, &to_f64(&table), len, dim, vocab);
        let (dx, dw, db) =
            reference::conv1d_backward(&x, &to_f64(&w), &to_f64(&dy), dim, cout, len);
        let dtable = reference::embedding_backward(&tokens, &dx, len, dim, vocab);
        let what = format!("folded conv0 {batch}x{len} {vocab}x{dim}->{cout}");
        assert_close(
            &format!("{what} dtable"),
            &got[..vocab * dim],
            &dtable,
            1e-4,
            RTOL,
        );
        let n = vocab * dim;
        assert_close(&format!("{what} dw"), &got[n..n + w.len()], &dw, 1e-4, RTOL);
        assert_close(&format!("{what} db"), &got[n + w.len()..], &db, 1e-4, RTOL);
    }
}

#[test]
fn tap_gradient_from_the_pooled_gradient_matches_the_unpooled() {
    let t = gpu();
    let mut r = rng(27);
    for &(batch, len, vocab, dim) in &[
        (1usize, 2usize, 2usize, 1usize),
        (3, 9, 11, 5),
        (5, 80, 128, 64),
    ] {
        let tokens: Vec<u8> = (0..batch * len)
            .map(|_| r.random_range(0..vocab as u8))
            .collect();
        let dz = uniform(&mut r, batch * dim * (len / 2));
        let d_conv = reference::avgpool_backward(&to_f64(&dz), len);
        let d_conv: Vec<f32> = d_conv.iter().map(|&v| v as f32).collect();
        let positions =
            storage_buffer_init(&t.gpu, "positions", &positions_by_token(&tokens, vocab));
        let shape = EmbeddingShape {
            len: len as u32,
            dim: dim as u32,
            vocab: vocab as u32,
            table: 0,
        };
        let n = 3 * vocab * dim;
        let mut got = Vec::new();
        for pooled in [false, true] {
            let out = storage_buffer(&t.gpu, "dtaps", (n * 4) as u64);
            let calls = if pooled {
                let dz_b = storage_buffer_init(&t.gpu, "dz", &dz);
                t.ops
                    .embedding
                    .backward_taps_pooled(&t.gpu, shape, batch, &positions, &dz_b, &out)
            } else {
                let d_b = storage_buffer_init(&t.gpu, "d conv", &d_conv);
                t.ops
                    .embedding
                    .backward_taps(&t.gpu, shape, batch, &positions, &d_b, &out)
            };
            submit(&t.gpu, &calls, batch as u32);
            got.push(read(&t.gpu, &out, n));
        }
        // The same sums in the same order, of the same halved values: bit for bit.
        assert_eq!(got[0], got[1], "{batch}x{len} vocab {vocab} dim {dim}");
    }
}

#[test]
fn conv1d_backward_matches_reference_and_finite_differences() {
    let mut r = rng(23);
    // The last shape spans several reduction segments.
    for &shape in &[
        (1usize, 1usize, 1usize, 1usize),
        (3, 5, 4, 7),
        (2, 7, 60, 9),
        (2, 64, 7, 9),
        (40, 64, 64, 40),
    ] {
        check_conv1d_backward(&mut r, shape, false);
    }
}

#[test]
fn conv1d_pool_backward_matches_reference_and_finite_differences() {
    let mut r = rng(26);
    // Odd lengths drop the last position; the last two shapes span several segments.
    for &shape in &[
        (1usize, 1usize, 1usize, 2usize),
        (3, 5, 4, 7),
        (2, 7, 60, 9),
        (1, 64, 64, 80),
        (40, 64, 64, 40),
        (4100, 3, 2, 5),
    ] {
        check_conv1d_backward(&mut r, shape, true);
    }
}

/// dx, dw and db of one conv (`pooled`: of conv + AvgPool1d(2), from the gradient at the
/// pool's output) against the reference, and the reference against finite differences.
fn check_conv1d_backward(
    r: &mut StdRng,
    (batch, cin, cout, len): (usize, usize, usize, usize),
    pooled: bool,
) {
    let t = gpu();
    let out_len = if pooled { len / 2 } else { len };
    let x = uniform(r, batch * cin * len);
    let w = uniform(r, cout * cin * 3);
    let dy = uniform(r, batch * cout * out_len);
    let params: Vec<f32> = [&[5.0f32][..], &w, &vec![0.0; cout]].concat();
    let params_b = storage_buffer_init(&t.gpu, "params", &params);
    let x_b = storage_buffer_init(&t.gpu, "x", &x);
    let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
    let dx_b = storage_buffer(&t.gpu, "dx", (x.len() * 4) as u64);
    let grads = grad_slab(&t.gpu, params.len());
    let shape = Conv1dShape {
        cin: cin as u32,
        cout: cout as u32,
        len: len as u32,
        weight: 1,
        bias: Some((1 + w.len()) as u32),
        relu: false,
    };
    let buffers = Conv1dGrads {
        x: &x_b,
        dy: &dy_b,
        params: &params_b,
        grads: &grads,
        dx: &dx_b,
    };
    let conv1d = &t.ops.conv1d;
    let calls = if pooled {
        conv1d.backward_pool(&t.gpu, &t.ops.weight_grad, shape, batch, buffers)
    } else {
        conv1d.backward(&t.gpu, &t.ops.weight_grad, shape, batch, buffers)
    };
    submit(&t.gpu, &calls, batch as u32);
    let (x64, w64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
    // The conv output's gradient: dy, or spread back over the pool's pairs.
    let d_conv = if pooled {
        reference::avgpool_backward(&dy64, len)
    } else {
        dy64.clone()
    };
    let (dx, dw, db) = reference::conv1d_backward(&x64, &w64, &d_conv, cin, cout, len);
    let what = format!("conv1d backward (pooled {pooled}) {batch}x{cin}->{cout}x{len}");
    let got_dx = read(&t.gpu, &dx_b, x.len());
    assert_close(&format!("{what} dx"), &got_dx, &dx, ATOL, RTOL);
    let g = read(&t.gpu, &grads, params.len());
    assert_close(&format!("{what} dw"), &g[1..1 + w.len()], &dw, 1e-4, RTOL);
    assert_close(&format!("{what} db"), &g[1 + w.len()..], &db, 1e-4, RTOL);

    if batch * len <= 64 {
        let bias = vec![0.0; cout];
        let f = |x: &[f64], w: &[f64], b: &[f64]| {
            let conv = reference::conv1d(x, w, b, cin, cout, len);
            let out = if pooled {
                reference::avgpool(&conv, len)
            } else {
                conv
            };
            dot(&dy64, &out)
        };
        finite_differences("conv1d dx", r, &x64, &dx, |v| f(v, &w64, &bias));
        finite_differences("conv1d dw", r, &w64, &dw, |v| f(&x64, v, &bias));
        finite_differences("conv1d db", r, &bias, &db, |v| f(&x64, &w64, v));
    }
}

#[test]
fn linear_backward_matches_reference_and_finite_differences() {
    let t = gpu();
    let mut r = rng(24);
    for &(batch, fan_in, fan_out) in &[
        (1usize, 1usize, 1usize),
        (3, 5, 4),
        (33, 128, 200),
        (1100, 200, 80),
        // Split-K in both directions (dx reduces over fan_out).
        (6, 410, 7),
        (4, 9, 230),
    ] {
        let x = uniform(&mut r, batch * fan_in);
        let w = uniform(&mut r, fan_out * fan_in);
        let dy = uniform(&mut r, batch * fan_out);
        let params: Vec<f32> = [w.as_slice(), &vec![0.0; fan_out]].concat();
        let params_b = storage_buffer_init(&t.gpu, "params", &params);
        let x_b = storage_buffer_init(&t.gpu, "x", &x);
        let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
        let dx_b = storage_buffer(&t.gpu, "dx", (x.len() * 4) as u64);
        let grads = grad_slab(&t.gpu, params.len());
        let shape = LinearShape {
            fan_in: fan_in as u32,
            fan_out: fan_out as u32,
            weight: 0,
            bias: Some(w.len() as u32),
            relu: false,
        };
        // Calls made for a larger capacity serve this batch (as a trainer's last,
        // shorter batch of an epoch).
        let calls = t.ops.linear.backward(
            &t.gpu,
            &t.ops.weight_grad,
            shape,
            batch + 2,
            LinearGrads {
                x: &x_b,
                dy: &dy_b,
                params: &params_b,
                grads: &grads,
                dx: &dx_b,
            },
        );
        submit(&t.gpu, &calls, batch as u32);
        let (x64, w64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
        let (dx, dw, db) = reference::linear_backward(&x64, &w64, &dy64, fan_in, fan_out);
        let what = format!("linear backward {batch}x{fan_in}->{fan_out}");
        assert_close(
            &format!("{what} dx"),
            &read(&t.gpu, &dx_b, x.len()),
            &dx,
            ATOL,
            RTOL,
        );
        let g = read(&t.gpu, &grads, params.len());
        assert_close(&format!("{what} dw"), &g[..w.len()], &dw, 1e-4, RTOL);
        assert_close(&format!("{what} db"), &g[w.len()..], &db, 1e-4, RTOL);

        if batch * fan_in <= 64 {
            let bias = vec![0.0; fan_out];
            let f = |x: &[f64], w: &[f64], b: &[f64]| {
                dot(&dy64, &reference::linear(x, w, b, fan_in, fan_out, false))
            };
            finite_differences("linear dx", &mut r, &x64, &dx, |v| f(v, &w64, &bias));
            finite_differences("linear dw", &mut r, &w64, &dw, |v| f(&x64, v, &bias));
            finite_differences("linear db", &mut r, &bias, &db, |v| f(&x64, &w64, v));
        }
    }
}

#[test]
fn avgpool_and_relu_backward_match_reference_and_finite_differences() {
    let t = gpu();
    let mut r = rng(25);
    for &(batch, channels, len_in) in &[(1usize, 1usize, 2usize), (3, 4, 5), (7, 64, 80)] {
        let dy = uniform(&mut r, batch * channels * (len_in / 2));
        let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
        let dx_b = storage_buffer(&t.gpu, "dx", (batch * channels * len_in * 4) as u64);
        let call = t
            .ops
            .avgpool
            .backward(&t.gpu, channels as u32, len_in as u32, &dy_b, &dx_b);
        submit(&t.gpu, &call.into(), batch as u32);
        let want = reference::avgpool_backward(&to_f64(&dy), len_in);
        assert_close(
            "avgpool backward",
            &read(&t.gpu, &dx_b, want.len()),
            &want,
            0.0,
            0.0,
        );
        let x = to_f64(&uniform(&mut r, batch * channels * len_in));
        let dy64 = to_f64(&dy);
        finite_differences("avgpool", &mut r, &x, &want, |v| {
            dot(&dy64, &reference::avgpool(v, len_in))
        });

        // ReLU: y from random inputs (about half zero), the gradient masked in place.
        let n = batch * channels * len_in;
        let input = to_f64(&uniform(&mut r, n));
        let y = reference::relu(&input);
        let grad = uniform(&mut r, n);
        let y_b = storage_buffer_init(
            &t.gpu,
            "y",
            &y.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        );
        let grad_b = storage_buffer_init(&t.gpu, "grad", &grad);
        let call = t
            .ops
            .relu
            .backward(&t.gpu, (channels * len_in) as u32, &y_b, &grad_b);
        submit(&t.gpu, &call.into(), batch as u32);
        let want = reference::relu_backward(&y, &to_f64(&grad));
        assert_close("relu backward", &read(&t.gpu, &grad_b, n), &want, 0.0, 0.0);
        let g64 = to_f64(&grad);
        finite_differences("relu", &mut r, &input, &want, |v| {
            dot(&g64, &reference::relu(v))
        });
    }
}

#[test]
fn batchnorm_training_matches_reference_and_finite_differences() {
    let t = gpu();
    let mut r = rng(26);
    for &(batch, channels) in &[(2usize, 1usize), (5, 3), (512, 80)] {
        // An offset and a spread per channel, as real activations have.
        let x: Vec<f32> = (0..batch * channels)
            .map(|i| {
                0.3 * (i % channels) as f32
                    + (1.0 + (i % channels) as f32 * 0.1) * r.random_range(-1.0f32..1.0)
            })
            .collect();
        let gamma = uniform(&mut r, channels);
        let beta = uniform(&mut r, channels);
        let running: Vec<f32> = [uniform(&mut r, channels), vec![0.5; channels]].concat();
        let dy = uniform(&mut r, batch * channels);
        let params: Vec<f32> = [gamma.as_slice(), &beta].concat();
        let shape = BatchNormShape {
            channels: channels as u32,
            gamma: 0,
            beta: channels as u32,
            eps: 1e-5,
            momentum: 0.1,
        };
        let params_b = storage_buffer_init(&t.gpu, "params", &params);
        let x_b = storage_buffer_init(&t.gpu, "x", &x);
        let running_b = storage_buffer_init(&t.gpu, "running", &running);
        let y_b = storage_buffer(&t.gpu, "y", (x.len() * 4) as u64);
        let saved = storage_buffer(&t.gpu, "saved", (2 * channels * 4) as u64);
        let dy_b = storage_buffer_init(&t.gpu, "dy", &dy);
        let dx_b = storage_buffer(&t.gpu, "dx", (x.len() * 4) as u64);
        let grads = grad_slab(&t.gpu, params.len());
        let mut calls = Calls::from(
            t.ops
                .batchnorm
                .train_forward(&t.gpu, shape, &x_b, &params_b, &running_b, &y_b, &saved),
        );
        calls.push(
            t.ops
                .batchnorm
                .backward(&t.gpu, shape, &x_b, &params_b, &saved, &dy_b, &dx_b, &grads),
        );
        submit(&t.gpu, &calls, batch as u32);

        let (x64, g64, b64, dy64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta), to_f64(&dy));
        let (y, mean, var) = reference::batchnorm_train(&x64, &g64, &b64, 1e-5);
        assert_close(
            "batchnorm train forward",
            &read(&t.gpu, &y_b, x.len()),
            &y,
            1e-4,
            RTOL,
        );
        let mut rm = to_f64(&running[..channels]);
        let mut rv = to_f64(&running[channels..]);
        reference::batchnorm_running(&mut rm, &mut rv, &mean, &var, batch, 0.1);
        assert_close(
            "batchnorm running statistics",
            &read(&t.gpu, &running_b, 2 * channels),
            &[rm, rv].concat(),
            1e-5,
            RTOL,
        );
        let (dx, dgamma, dbeta) = reference::batchnorm_backward(&x64, &g64, &dy64, 1e-5);
        assert_close(
            "batchnorm dx",
            &read(&t.gpu, &dx_b, x.len()),
            &dx,
            1e-4,
            1e-3,
        );
        let g = read(&t.gpu, &grads, params.len());
        assert_close("batchnorm dgamma", &g[..channels], &dgamma, 1e-4, RTOL);
        assert_close("batchnorm dbeta", &g[channels..], &dbeta, 1e-4, RTOL);

        if batch * channels <= 64 {
            let f = |x: &[f64], gm: &[f64], bt: &[f64]| {
                dot(&dy64, &reference::batchnorm_train(x, gm, bt, 1e-5).0)
            };
            finite_differences("batchnorm dx", &mut r, &x64, &dx, |v| f(v, &g64, &b64));
            finite_differences("batchnorm dgamma", &mut r, &g64, &dgamma, |v| {
                f(&x64, v, &b64)
            });
            finite_differences("batchnorm dbeta", &mut r, &b64, &dbeta, |v| {
                f(&x64, &g64, v)
            });
        }
    }
}

#[test]
fn pnll_matches_reference_and_finite_differences() {
    let t = gpu();
    let mut r = rng(27);
    for &(pairs, dim) in &[(1usize, 1usize), (3, 5), (700, 80)] {
        let e = uniform(&mut r, 2 * pairs * dim);
        let labels: Vec<f32> = (0..pairs).map(|_| r.random_range(0..40) as f32).collect();
        let log_s = -0.7f32;
        let params = [3.0f32, log_s];
        let e_b = storage_buffer_init(&t.gpu, "e", &e);
        let labels_b = storage_buffer_init(&t.gpu, "labels", &labels);
        let params_b = storage_buffer_init(&t.gpu, "params", &params);
        let de_b = storage_buffer(&t.gpu, "de", (e.len() * 4) as u64);
        let grads = grad_slab(&t.gpu, 2);
        let losses = storage_buffer(&t.gpu, "losses", 16);
        let mut call = t.ops.pnll.forward_backward(
            &t.gpu,
            LossShape {
                dim: dim as u32,
                log_scale: 1,
                learn: true,
            },
            &LossBuffers {
                e: &e_b,
                labels: &labels_b,
                params: &params_b,
                de: &de_b,
                grads: &grads,
                losses: &losses,
            },
        );
        call.set(&t.gpu, pairs as u32, 2);
        let mut encoder = t.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            call.record(&mut pass, &t.gpu);
        }
        t.gpu.queue.submit([encoder.finish()]);

        let (e64, l64) = (to_f64(&e), to_f64(&labels));
        let eps = f64::from(EPS);
        let (loss, _, de, dlog_s) = reference::pnll(&e64, &l64, f64::from(log_s), dim, eps);
        let got_loss = read(&t.gpu, &losses, 4)[2];
        assert_close("pnll loss", &[got_loss], &[loss], 1e-4, 1e-5);
        assert_close("pnll de", &read(&t.gpu, &de_b, e.len()), &de, 1e-6, 1e-4);
        assert_close(
            "pnll dlog_s",
            &read(&t.gpu, &grads, 2)[1..],
            &[dlog_s],
            1e-5,
            1e-4,
        );

        if pairs * dim <= 64 {
            finite_differences("pnll de", &mut r, &e64, &de, |v| {
                reference::pnll(v, &l64, f64::from(log_s), dim, eps).0
            });
            finite_differences("pnll dlog_s", &mut r, &[f64::from(log_s)], &[dlog_s], |v| {
                reference::pnll(&e64, &l64, v[0], dim, eps).0
            });
        }
    }
}

/// The ranking head on the GPU: `(loss, de, dlog_s)` for `e [3n, dim]`, `labels [n, 3]`.
fn run_ranking(
    e: &[f32],
    labels: &[f32],
    log_s: f32,
    dim: usize,
    weights: RankingWeights,
) -> (f32, Vec<f32>, f32) {
    let t = gpu();
    let e_b = storage_buffer_init(&t.gpu, "e", e);
    let labels_b = storage_buffer_init(&t.gpu, "labels", labels);
    let params_b = storage_buffer_init(&t.gpu, "params", &[3.0f32, log_s]);
    let de_b = storage_buffer(&t.gpu, "de", (e.len() * 4) as u64);
    let grads = grad_slab(&t.gpu, 2);
    let losses = storage_buffer(&t.gpu, "losses", 16);
    let shape = LossShape {
        dim: dim as u32,
        log_scale: 1,
        learn: true,
    };
    let buffers = LossBuffers {
        e: &e_b,
        labels: &labels_b,
        params: &params_b,
        de: &de_b,
        grads: &grads,
        losses: &losses,
    };
    let mut call = t
        .ops
        .ranking
        .forward_backward(&t.gpu, shape, weights, &buffers);
    call.set(&t.gpu, (labels.len() / 3) as u32, 3);
    let mut encoder = t.gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        call.record(&mut pass, &t.gpu);
    }
    t.gpu.queue.submit([encoder.finish()]);
    (
        read(&t.gpu, &losses, 4)[3],
        read(&t.gpu, &de_b, e.len()),
        read(&t.gpu, &grads, 2)[1],
    )
}

#[test]
fn ranking_matches_reference_and_finite_differences() {
    let mut r = rng(29);
    let cases = [
        // (triplets, dim, (hinge, approx, absolute, pnll), squared)
        (1usize, 1usize, (1.0, 0.0, 0.0, 0.0), true),
        (3, 5, (1.0, 0.1, 0.0, 0.0), false),
        (4, 7, (1.0, 0.0, 0.0, 1.0), true),
        (5, 3, (0.5, 2.0, 0.0, 0.25), false),
        (300, 80, (1.0, 0.1, 0.0, 1.0), true),
        (300, 80, (1.0, 1.0, 0.0, 0.0), false),
        // The paper's approximation term, alone and beside the others.
        (4, 6, (0.0, 0.0, 1.0, 0.0), false),
        (200, 64, (1.0, 0.0, 0.1, 0.0), false),
        (3, 5, (0.5, 0.3, 0.7, 0.2), true),
    ];
    for &(triplets, dim, (hinge, approx, absolute, pnll), squared) in &cases {
        let e = uniform(&mut r, 3 * triplets * dim);
        let labels: Vec<f32> = (0..3 * triplets)
            .map(|_| r.random_range(0..12) as f32)
            .collect();
        let log_s = if squared { -0.7f32 } else { 0.9 };
        let weights = RankingWeights {
            hinge,
            approx,
            absolute,
            pnll,
            squared,
        };
        let (got_loss, got_de, got_dlog_s) = run_ranking(&e, &labels, log_s, dim, weights);

        let what = format!("ranking {triplets}x{dim} {weights:?}");
        let (e64, l64) = (to_f64(&e), to_f64(&labels));
        let w64 = (
            f64::from(hinge),
            f64::from(approx),
            f64::from(absolute),
            f64::from(pnll),
        );
        let eps = f64::from(EPS);
        let f = |e: &[f64], log_s: f64| reference::ranking(e, &l64, log_s, dim, eps, w64, squared);
        let (loss, de, dlog_s) = f(&e64, f64::from(log_s));
        assert!(loss > 0.0, "{what}: a loss of 0 checks nothing");
        assert_close(&format!("{what} loss"), &[got_loss], &[loss], 1e-4, 1e-5);
        assert_close(&format!("{what} de"), &got_de, &de, 1e-6, 1e-4);
        assert_close(
            &format!("{what} dlog_s"),
            &[got_dlog_s],
            &[dlog_s],
            1e-5,
            1e-4,
        );

        if triplets * dim <= 64 {
            finite_differences(&format!("{what} de"), &mut r, &e64, &de, |v| {
                f(v, f64::from(log_s)).0
            });
            finite_differences(
                &format!("{what} dlog_s"),
                &mut r,
                &[f64::from(log_s)],
                &[dlog_s],
                |v| f(&e64, v[0]).0,
            );
        }
    }
}

/// The ranking head against PyTorch autograd (tests/fixtures/ranking.safetensors, made
/// by tools/make_ranking_fixture.py): loss, and every gradient within 1e-4 of its norm.
#[test]
fn ranking_matches_pytorch() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ranking.safetensors"
    ))
    .expect("fixture");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&header.metadata().as_ref().unwrap()["cases"]).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let get = |name: &str| -> (Vec<f32>, Vec<usize>) {
        let v = st.tensor(name).unwrap();
        let values = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (values, v.shape().to_vec())
    };
    assert_eq!(cases.len(), 6);
    for (i, case) in cases.iter().enumerate() {
        let weights = RankingWeights {
            hinge: case["hinge"].as_f64().unwrap() as f32,
            approx: case["approx"].as_f64().unwrap() as f32,
            absolute: case["absolute"].as_f64().unwrap() as f32,
            pnll: case["pnll"].as_f64().unwrap() as f32,
            squared: case["squared"].as_bool().unwrap(),
        };
        let (e, shape) = get(&format!("case{i}.e"));
        let (labels, _) = get(&format!("case{i}.labels"));
        let log_s = get(&format!("case{i}.log_s")).0[0];
        let (loss, de, dlog_s) = run_ranking(&e, &labels, log_s, shape[1], weights);
        let what = format!("case {i} {weights:?}");
        let want_loss = f64::from(get(&format!("case{i}.loss")).0[0]);
        assert_close(&format!("{what} loss"), &[loss], &[want_loss], 0.0, 1e-5);
        let want_de = to_f64(&get(&format!("case{i}.de")).0);
        let norm = want_de.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm > 0.0, "{what}: a zero gradient checks nothing");
        assert_close(&format!("{what} de"), &de, &want_de, 1e-4 * norm, 0.0);
        let want_dlog_s = f64::from(get(&format!("case{i}.dlog_s")).0[0]);
        assert_close(
            &format!("{what} dlog_s"),
            &[dlog_s],
            &[want_dlog_s],
            1e-4 * want_dlog_s.abs().max(1e-3),
            0.0,
        );
    }
}

#[test]
fn adamw_matches_reference_with_and_without_clipping() {
    let mut r = rng(28);
    for clip in [0.0, 0.5] {
        check_adamw(&mut r, 1000, clip, 3);
    }
}

#[test]
fn adamw_updates_more_values_than_one_row_of_workgroups_holds() {
    let max = gpu().gpu.limits.max_compute_workgroups_per_dimension as usize;
    check_adamw(&mut rng(29), 64 * max + 100, 0.5, 1);
}

/// `steps` AdamW steps on `n` random values (the last 10 without weight decay) against
/// the reference, with gradient clipping at `clip` (0: none).
fn check_adamw(r: &mut StdRng, n: usize, clip: f64, steps: u64) {
    let t = gpu();
    let params = uniform(r, n);
    let params_b = storage_buffer_init(&t.gpu, "params", &params);
    let grads_b = storage_buffer(&t.gpu, "grads", (n * 4) as u64);
    let m_b = storage_buffer_init(&t.gpu, "m", &vec![0.0f32; n]);
    let v_b = storage_buffer_init(&t.gpu, "v", &vec![0.0f32; n]);
    let norm_b = storage_buffer_init(&t.gpu, "norm", &[0.0f32, 1.0]);
    // The last 10 values without weight decay (as log_s is trained).
    let calls = t.ops.adamw.calls(
        &t.gpu,
        AdamWBuffers {
            params: &params_b,
            grads: &grads_b,
            m: &m_b,
            v: &v_b,
            norm: &norm_b,
        },
        &[(0..n - 10, true), (n - 10..n, false)],
    );
    let (mut p, mut m, mut v) = (to_f64(&params), vec![0.0; n], vec![0.0; n]);
    for step in 1..=steps {
        let g = uniform(r, n);
        t.gpu
            .queue
            .write_buffer(&grads_b, 0, bytemuck::cast_slice(&g));
        let hyper = AdamWStep {
            lr: 1e-2,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step,
            clip,
        };
        calls.set(&t.gpu, &hyper);
        let mut encoder = t.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            calls.record(&mut pass, &t.gpu);
        }
        t.gpu.queue.submit([encoder.finish()]);

        let mut g64 = to_f64(&g);
        let norm = g64.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert_close(
            "gradient norm",
            &read(&t.gpu, &norm_b, 1),
            &[norm],
            1e-5,
            1e-5,
        );
        if clip > 0.0 {
            let factor = (clip / (norm + 1e-6)).min(1.0);
            g64.iter_mut().for_each(|x| *x *= factor);
        }
        let betas = (0.9, 0.999, 1e-8);
        let (head, tail) = p.split_at_mut(n - 10);
        let (mh, mt) = m.split_at_mut(n - 10);
        let (vh, vt) = v.split_at_mut(n - 10);
        reference::adamw(head, &g64[..n - 10], mh, vh, 1e-2, 0.1, betas, step);
        reference::adamw(tail, &g64[n - 10..], mt, vt, 1e-2, 0.0, betas, step);
        assert_close("adamw params", &read(&t.gpu, &params_b, n), &p, 1e-6, 1e-5);
        assert_close("adamw exp_avg", &read(&t.gpu, &m_b, n), &m, 1e-6, 1e-5);
        assert_close("adamw exp_avg_sq", &read(&t.gpu, &v_b, n), &v, 1e-8, 1e-5);
    }
}
