mod common;
use megashtein_gpu::gpu::{storage_buffer, storage_buffer_init};
use megashtein_gpu::ops::{conv1d::Conv1dShape, linear::LinearShape, tapconv::TapConvShape};
use std::time::Instant;

#[test]
#[ignore]
fn profile() {
    let t = common::gpu();
    let g = &t.gpu;
    let mut r = common::rng(1);
    let params = common::uniform(&mut r, 200_000);
    let params = storage_buffer_init(g, "p", &params);
    let batch: u32 = std::env::var("B").map(|v| v.parse().unwrap()).unwrap_or(4096);
    let tokens: Vec<u32> = (0..batch * 80).map(|i| i % 97).collect();
    let tok = storage_buffer_init(g, "t", &tokens);
    let taps = storage_buffer(g, "taps", 3 * 128 * 64 * 4);
    let bufs: Vec<_> = [40usize, 20, 10, 5, 2].iter().map(|l| storage_buffer(g, "x", batch as u64 * 64 * *l as u64 * 4)).collect();
    let h = storage_buffer(g, "h", batch as u64 * 200 * 4);
    let e = storage_buffer(g, "e", batch as u64 * 80 * 4);
    let ts = TapConvShape { len: 80, vocab: 128, dim: 140, cout: 64, table: 0, weight: 20000, bias: 50000 };
    let mut calls = vec![("tapconv".to_string(), t.ops.tapconv.forward(g, ts, &params, &taps, &tok, &bufs[0]))];
    for (i, len) in [40u32, 20, 10, 5].iter().enumerate() {
        let s = Conv1dShape { cin: 64, cout: 64, len: *len, weight: 60000, bias: 100 };
        calls.push((format!("conv{}", i + 1), t.ops.conv1d.forward_pool_relu(g, s, &bufs[i], &params, &bufs[i + 1])));
    }
    calls.push(("fc0".into(), t.ops.linear.forward(g, LinearShape { fan_in: 128, fan_out: 200, weight: 70000, bias: 0, relu: true }, &bufs[4], &params, &h)));
    calls.push(("fc2".into(), t.ops.linear.forward(g, LinearShape { fan_in: 200, fan_out: 80, weight: 70000, bias: 0, relu: false }, &h, &params, &e)));
    for (name, call) in &calls {
        call.set_batch(g, batch);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t0 = Instant::now();
            let mut enc = g.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                call.record(&mut pass, g, batch);
            }
            g.queue.submit([enc.finish()]);
            g.wait().unwrap();
            best = best.min(t0.elapsed().as_secs_f64());
        }
        println!("{name}: {:.2} ms", best * 1e3);
    }
}
