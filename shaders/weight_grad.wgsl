// Weight and bias gradients of a conv1d (kernel `taps`, zero padding `pad`, stride 1)
// or, with len 1, taps 1 and pad 0, of a linear layer:
//   dw[o, i, t] = sum_{b, l} dy[b, o, l] * x[b, i, l + t - pad]
//   db[o]       = sum_{b, l} dy[b, o, l]
// as one matrix product G[o, k] = sum_r A[o, r] * B[k, r] over r = b * len + l, with
// k = i * taps + t for k < cin * taps and B[cin * taps, r] = 1 (the bias column).
//
// The reduction (every position of every string) is long and the output small, so it
// is split: `partial` computes the product over one segment of SEG reduction indices
// per workgroup row, and `reduce` adds the segments in order. No atomics, so the sum
// is the same on every run (resumed training must reproduce weights bit for bit).
// A `partial` workgroup owns a TM x TN output tile; per chunk of RC reduction indices it
// stages A and B in workgroup memory, and each thread accumulates 4 (o) x 8 (k) values.
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,
    taps: u32,
    pad: u32,
    weight: u32,    // offset of dw [cout, cin, taps] in `grads`
    bias: u32,      // offset of db [cout]
    segments: u32,  // ceil(batch * len / SEG)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> dy: array<f32>;                 // [batch, cout, len]
@group(0) @binding(2) var<storage, read> x: array<f32>;                  // [batch, cin, len]
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;     // [segments, cout, cols]

const TM: u32 = 32u;   // output channels per tile (8 threads x 4)
const TN: u32 = 64u;   // columns k per tile (8 threads x 8)
const RC: u32 = 16u;   // reduction indices staged at once
const SEG: u32 = 1024u;

var<workgroup> a_tile: array<vec4<f32>, 128>;  // [RC][TM / 4]
var<workgroup> b_tile: array<vec4<f32>, 256>;  // [RC][TN / 4]

fn cols() -> u32 {
    return s.cin * s.taps + 1u;
}

fn a_at(o: u32, r: u32, r_end: u32) -> f32 {
    if o >= s.cout || r >= r_end {
        return 0.0;
    }
    let b = r / s.len;
    let l = r - b * s.len;
    return dy[(b * s.cout + o) * s.len + l];
}

fn b_at(k: u32, r: u32, r_end: u32) -> f32 {
    let kk = s.cin * s.taps;
    if k > kk || r >= r_end {
        return 0.0;
    }
    if k == kk {
        return 1.0;
    }
    let i = k / s.taps;
    let t = k - i * s.taps;
    let b = r / s.len;
    let pos = i32(r - b * s.len) + i32(t) - i32(s.pad);
    if pos < 0 || pos >= i32(s.len) {
        return 0.0;
    }
    return x[(b * s.cin + i) * s.len + u32(pos)];
}

@compute @workgroup_size(64)
fn partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let ncols = cols();
    let tiles_n = (ncols + TN - 1u) / TN;
    let m0 = (wg.x / tiles_n) * TM;
    let n0 = (wg.x % tiles_n) * TN;
    let seg = wg.y;
    let r_begin = seg * SEG;
    let r_end = min(s.batch * s.len, r_begin + SEG);
    let mg = tid % 8u;  // this thread's channels: m0 + mg * 4 + 0..4
    let ng = tid / 8u;  // this thread's columns: n0 + ng * 8 + 0..8
    var acc = array<vec4<f32>, 8>();
    for (var r0 = r_begin; r0 < r_end; r0 += RC) {
        for (var j = 0u; j < 2u; j++) {
            let v = tid + j * 64u;
            let r = r0 + v / 8u;
            let m = m0 + (v % 8u) * 4u;
            a_tile[v] = vec4<f32>(a_at(m, r, r_end), a_at(m + 1u, r, r_end), a_at(m + 2u, r, r_end), a_at(m + 3u, r, r_end));
        }
        for (var j = 0u; j < 4u; j++) {
            let v = tid + j * 64u;
            let r = r0 + v / 16u;
            let n = n0 + (v % 16u) * 4u;
            b_tile[v] = vec4<f32>(b_at(n, r, r_end), b_at(n + 1u, r, r_end), b_at(n + 2u, r, r_end), b_at(n + 3u, r, r_end));
        }
        workgroupBarrier();
        for (var q = 0u; q < RC; q++) {
            let a = a_tile[q * 8u + mg];
            let b0 = b_tile[q * 16u + ng * 2u];
            let b1 = b_tile[q * 16u + ng * 2u + 1u];
            acc[0] += a * b0.x;
            acc[1] += a * b0.y;
            acc[2] += a * b0.z;
            acc[3] += a * b0.w;
            acc[4] += a * b1.x;
            acc[5] += a * b1.y;
            acc[6] += a * b1.z;
            acc[7] += a * b1.w;
        }
        workgroupBarrier();
    }
    for (var q = 0u; q < 8u; q++) {
        let n = n0 + ng * 8u + q;
        for (var e = 0u; e < 4u; e++) {
            let m = m0 + mg * 4u + e;
            if n < ncols && m < s.cout {
                partials[(seg * s.cout + m) * ncols + n] = acc[q][e];
            }
        }
    }
}

@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let ncols = cols();
    if idx >= s.cout * ncols {
        return;
    }
    var sum = 0.0;
    for (var seg = 0u; seg < s.segments; seg++) {
        sum += parts[seg * s.cout * ncols + idx];
    }
    let o = idx / ncols;
    let k = idx - o * ncols;
    if k + 1u == ncols {
        grads[s.bias + o] = sum;
    } else {
        grads[s.weight + o * (ncols - 1u) + k] = sum;
    }
}
