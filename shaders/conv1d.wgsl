// Conv1d, kernel 3, stride 1, zero padding 1, with bias (PyTorch layout):
//   forward:           y[b, o, l] = bias[o] + sum_{i, t} w[o, i, t] * x[b, i, l + t - 1]
//   forward_pool_relu: the same conv followed by AvgPool1d(2) (floor) and ReLU, fused:
//     y[b, o, j] = relu(bias[o] + 0.5 * sum_{i, t} w[o, i, t] * p[b, i, 2j + t])
//     with p[b, i, m] = x[b, i, m - 1] + x[b, i, m] (zero outside 0..len), i.e. the pool
//     is folded into the conv as a stride-2 conv over pair sums: half the multiply-adds.
//
//   flip_weight:       w'[i, o, t] = w[o, i, 2 - t] and a zero bias, written to a scratch
//     buffer, so that `forward` over (w', cin <-> cout) is the input gradient of the conv:
//     dx[b, i, m] = sum_{o, t} w[o, i, t] * dy[b, o, m - t + 1] (ops/conv1d.rs `backward`).
//
// Both forwards are one tiled matrix product  Y[o, col] = sum_k W[o, k] * B[k, col]  with
// k = i * 3 + t (W is the weight as it lies, [cout, cin * 3]) and col = b * len_out + j
// running over every output position of every string in the batch. A workgroup owns
// TC consecutive columns and loops over tiles of TO output channels; per chunk of KC
// values of k it stages W[o-tile, k-chunk] and B[k-chunk, col-tile] in workgroup memory,
// and each of its 64 threads accumulates a 4 (channels) x 8 (columns) register tile.
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,     // input length
    weight: u32,  // offset of w [cout, cin, 3] in the parameter slab
    bias: u32,    // offset of bias [cout]
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const TO: u32 = 64u;  // output channels per tile (16 threads x 4)
const TC: u32 = 32u;  // columns per workgroup (4 threads x 8)
const KC: u32 = 16u;  // reduction chunk staged at once

var<workgroup> ws: array<vec4<f32>, 256>;  // [KC][TO / 4]: 4 consecutive channels per vec4
var<workgroup> bs: array<vec4<f32>, 128>;  // [KC][TC / 4]: 4 consecutive columns per vec4

// x[b, i, pos] with `base` = (b * cin + i) * len, zero outside 0..len (the padding).
fn x_at(base: u32, pos: i32) -> f32 {
    if pos < 0 || pos >= i32(s.len) {
        return 0.0;
    }
    return x[base + u32(pos)];
}

// Where B[., col] starts: x's offset of string b, and the input position of tap 0
// (j - 1, or 2j - 1 pooled); a column past the batch gets a position that always
// reads the zero padding.
struct Column {
    base: u32,
    start: i32,
}

fn column(col: u32, ncols: u32, len_out: u32, pool: bool) -> Column {
    if col >= ncols {
        return Column(0u, -8);
    }
    let b = col / len_out;
    let j = col - b * len_out;
    return Column(b * s.cin * s.len, i32(select(j, 2u * j, pool)) - 1);
}

// B[k, col] for k = i * 3 + t < cin * 3.
fn load_b(c: Column, i: u32, t: u32, pool: bool) -> f32 {
    let base = c.base + i * s.len;
    let pos = c.start + i32(t);
    if pool {
        return x_at(base, pos) + x_at(base, pos + 1);
    }
    return x_at(base, pos);
}

fn load_w(o: u32, k: u32) -> f32 {
    let kk = s.cin * 3u;
    if o >= s.cout || k >= kk {
        return 0.0;
    }
    return params[s.weight + o * kk + k];
}

fn run(wid: u32, tid: u32, pool: bool) {
    let len_out = select(s.len, s.len / 2u, pool);
    let ncols = s.batch * len_out;
    let c0 = wid * TC;
    if c0 >= ncols {
        return;
    }
    let kk = s.cin * 3u;
    let og = tid % 16u;  // this thread's channels: o0 + og * 4 + 0..4
    let cg = tid / 16u;  // this thread's columns: c0 + cg * 8 + 0..8
    // The 4 columns this thread stages into B (the same for every chunk).
    let sc = c0 + (tid % 8u) * 4u;
    let col0 = column(sc, ncols, len_out, pool);
    let col1 = column(sc + 1u, ncols, len_out, pool);
    let col2 = column(sc + 2u, ncols, len_out, pool);
    let col3 = column(sc + 3u, ncols, len_out, pool);
    for (var o0 = 0u; o0 < s.cout; o0 += TO) {
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        var a4 = vec4<f32>(0.0);
        var a5 = vec4<f32>(0.0);
        var a6 = vec4<f32>(0.0);
        var a7 = vec4<f32>(0.0);
        for (var k0 = 0u; k0 < kk; k0 += KC) {
            // Stage W: 256 vec4s, 4 per thread; B: 128 vec4s, 2 per thread.
            for (var r = 0u; r < 4u; r++) {
                let v = tid + r * 64u;
                let k = k0 + v / 16u;
                let o = o0 + (v % 16u) * 4u;
                if o + 3u < s.cout && k < kk {
                    let at = s.weight + o * kk + k;
                    ws[v] = vec4<f32>(params[at], params[at + kk], params[at + 2u * kk], params[at + 3u * kk]);
                } else {
                    ws[v] = vec4<f32>(load_w(o, k), load_w(o + 1u, k), load_w(o + 2u, k), load_w(o + 3u, k));
                }
            }
            for (var r = 0u; r < 2u; r++) {
                let v = tid + r * 64u;
                let k = k0 + v / 8u;
                var val = vec4<f32>(0.0);
                if k < kk {
                    let i = k / 3u;
                    let t = k - 3u * i;
                    val = vec4<f32>(
                        load_b(col0, i, t, pool),
                        load_b(col1, i, t, pool),
                        load_b(col2, i, t, pool),
                        load_b(col3, i, t, pool),
                    );
                }
                bs[v] = val;
            }
            workgroupBarrier();
            for (var q = 0u; q < KC; q++) {
                let w = ws[q * 16u + og];
                let b0 = bs[q * 8u + cg * 2u];
                let b1 = bs[q * 8u + cg * 2u + 1u];
                a0 += w * b0.x;
                a1 += w * b0.y;
                a2 += w * b0.z;
                a3 += w * b0.w;
                a4 += w * b1.x;
                a5 += w * b1.y;
                a6 += w * b1.z;
                a7 += w * b1.w;
            }
            workgroupBarrier();
        }
        var acc = array<vec4<f32>, 8>(a0, a1, a2, a3, a4, a5, a6, a7);
        let scale = select(1.0, 0.5, pool);
        for (var q = 0u; q < 8u; q++) {
            let col = c0 + cg * 8u + q;
            if col >= ncols {
                break;
            }
            let b = col / len_out;
            let j = col - b * len_out;
            for (var r = 0u; r < 4u; r++) {
                let o = o0 + og * 4u + r;
                if o < s.cout {
                    var v = params[s.bias + o] + scale * acc[q][r];
                    if pool {
                        v = max(v, 0.0);
                    }
                    y[(b * s.cout + o) * len_out + j] = v;
                }
            }
        }
    }
}

@compute @workgroup_size(64)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    run(wg.x + wg.y * nwg.x, tid, false);
}

@compute @workgroup_size(64)
fn forward_pool_relu(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    run(wg.x + wg.y * nwg.x, tid, true);
}

@group(0) @binding(1) var<storage, read> weights: array<f32>;           // the parameter slab
@group(0) @binding(2) var<storage, read_write> flipped: array<f32>;     // [cin, cout, 3] ++ [cin] zeros

@compute @workgroup_size(64)
fn flip_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let n = s.cin * s.cout * 3u;
    if idx >= n + s.cin {
        return;
    }
    if idx >= n {
        flipped[idx] = 0.0;
        return;
    }
    let t = idx % 3u;
    let o = (idx / 3u) % s.cout;
    let i = idx / (3u * s.cout);
    flipped[idx] = weights[s.weight + (o * s.cin + i) * 3u + 2u - t];
}
