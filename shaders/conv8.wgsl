// CNN-ED's conv block of 8 channels in and out: Conv1d(kernel 3, padding 1, no bias),
// AvgPool1d(2) (floor), then an optional ReLU, on x [rows, 8, len] (PyTorch layout).
// The pool is folded into the conv as a stride-2 conv over pair sums (as in conv1d.wgsl):
//   forward:        y[r, o, j] = act(1/2 sum_{i, t} w[o, i, t] p[r, i, 2j + t])
//                   with p[r, i, m] = x[r, i, m - 1] + x[r, i, m] (x zero outside 0..len)
// and the backward pass from dz, the gradient at the pooled output with any ReLU undone
// (w_t = w[o, i, t], dz zero outside 0..len / 2):
//   backward_data:  dx[r, i, 2a]     = 1/2 sum_o (w0 + w1) dz[r, o, a] + w2 dz[r, o, a - 1]
//                   dx[r, i, 2a + 1] = 1/2 sum_o w0 dz[r, o, a + 1] + (w1 + w2) dz[r, o, a]
//   weight_partial, weight_reduce:
//                   dw[o, i, t] = 1/2 sum_{r, j} dz[r, o, j] p[r, i, 2j + t]
// The shared register tile (gemm_tile.wgsl) pads 8 output channels to 64 rows, so 7/8 of
// its work is padding. Here an invocation computes 4 channels (one vec4) of one position:
// the weights are read at the same address by every invocation (one scalar load each on
// lavapipe), neighbouring invocations take neighbouring positions, nothing is padded.
struct Shape {
    batch: u32,   // rows
    len: u32,     // input length; the output has len / 2 positions
    weight: u32,  // offset of w [8, 8, 3] in the parameter slab (of dw in the gradient slab)
    relu: u32,    // forward: 1 for a ReLU at the end
}

const CHANNELS: u32 = 8u;
// (row, j) positions per workgroup of weight_partial: 16 per invocation.
const SEGMENT: u32 = 1024u;

@group(0) @binding(0) var<uniform> s: Shape;

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// w[o0 + c, i, t] for c = 0..3: four output channels.
fn w_out4(o0: u32, i: u32, t: u32) -> vec4<f32> {
    let at = s.weight + (o0 * CHANNELS + i) * 3u + t;
    let next = CHANNELS * 3u;
    return vec4(params[at], params[at + next], params[at + 2u * next], params[at + 3u * next]);
}

// w[o, i0 + c, t] for c = 0..3: four input channels.
fn w_in4(o: u32, i0: u32, t: u32) -> vec4<f32> {
    let at = s.weight + (o * CHANNELS + i0) * 3u + t;
    return vec4(params[at], params[at + 3u], params[at + 6u], params[at + 9u]);
}

@group(0) @binding(1) var<storage, read> x: array<f32>;       // [rows, 8, len]
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // [rows, 8, len / 2]

// x[r, i, m] at `row` = (r * 8 + i) * len, zero outside 0..len (the padding).
fn x_at(row: u32, m: i32) -> f32 {
    if m < 0 || m >= i32(s.len) {
        return 0.0;
    }
    return x[row + u32(m)];
}

// The three pair sums p[r, i, 2j + t] the taps of pooled position j read.
fn pair_sums(row: u32, j: u32) -> vec3<f32> {
    let m = 2 * i32(j) - 1;
    let x0 = x_at(row, m);
    let x1 = x_at(row, m + 1);
    let x2 = x_at(row, m + 2);
    let x3 = x_at(row, m + 3);
    return vec3(x0 + x1, x1 + x2, x2 + x3);
}

// One invocation per (row, group of 4 output channels, pooled position): 2 per position,
// the groups' positions side by side.
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = s.len / 2u;
    let idx = thread_index(gid, nwg);
    if idx >= s.batch * 2u * half {
        return;
    }
    let rg = idx / half;
    let j = idx - rg * half;
    let r = rg / 2u;
    let o0 = 4u * (rg - 2u * r);
    var acc = vec4<f32>();
    for (var i = 0u; i < CHANNELS; i++) {
        let p = pair_sums((r * CHANNELS + i) * s.len, j);
        acc += w_out4(o0, i, 0u) * p.x + w_out4(o0, i, 1u) * p.y + w_out4(o0, i, 2u) * p.z;
    }
    acc *= 0.5;
    if s.relu == 1u {
        acc = max(acc, vec4<f32>());
    }
    for (var c = 0u; c < 4u; c++) {
        y[(r * CHANNELS + o0 + c) * half + j] = acc[c];
    }
}

@group(0) @binding(1) var<storage, read> dz: array<f32>;        // [rows, 8, len / 2]
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;  // [rows, 8, len]

// dz[r, o, a] at `row` = (r * 8 + o) * (len / 2), zero outside 0..len / 2.
fn dz_at(row: u32, a: i32) -> f32 {
    if a < 0 || a >= i32(s.len / 2u) {
        return 0.0;
    }
    return dz[row + u32(a)];
}

// One invocation per (row, group of 4 input channels, pair of input positions 2a, 2a + 1;
// an odd len's last pair is its last position alone).
@compute @workgroup_size(64)
fn backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pairs = (s.len + 1u) / 2u;
    let idx = thread_index(gid, nwg);
    if idx >= s.batch * 2u * pairs {
        return;
    }
    let rg = idx / pairs;
    let a = idx - rg * pairs;
    let r = rg / 2u;
    let i0 = 4u * (rg - 2u * r);
    var even = vec4<f32>();
    var odd = vec4<f32>();
    for (var o = 0u; o < CHANNELS; o++) {
        let row = (r * CHANNELS + o) * (s.len / 2u);
        let before = dz_at(row, i32(a) - 1);
        let here = dz_at(row, i32(a));
        let after = dz_at(row, i32(a) + 1);
        let w0 = w_in4(o, i0, 0u);
        let w1 = w_in4(o, i0, 1u);
        let w2 = w_in4(o, i0, 2u);
        even += (w0 + w1) * here + w2 * before;
        odd += w0 * after + (w1 + w2) * here;
    }
    for (var c = 0u; c < 4u; c++) {
        let at = (r * CHANNELS + i0 + c) * s.len + 2u * a;
        dx[at] = 0.5 * even[c];
        if 2u * a + 1u < s.len {
            dx[at + 1u] = 0.5 * odd[c];
        }
    }
}

// weight_partial binds x (as forward), dz, and its output.
@group(0) @binding(2) var<storage, read> dz_w: array<f32>;               // as dz
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;  // [segments, 8 i, 3 t, 8 o]

// Each invocation's sums over its positions: dw[4h + c, i, t] at [lane * 6 + 2t + h][c].
var<workgroup> sums: array<vec4<f32>, 384>;

// Workgroup (segment, i): dw[.., i, ..] summed over one segment of (row, j) positions, 16
// per invocation, then over the invocations in a fixed tree.
@compute @workgroup_size(64)
fn weight_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let half = s.len / 2u;
    let positions = s.batch * half;
    let start = wg.x * SEGMENT;
    let i = wg.y;
    // The grid is sized for the capacity: segments past this batch's do nothing (and
    // weight_reduce does not read them).
    if start >= positions {
        return;
    }
    var lo0 = vec4<f32>(); var hi0 = vec4<f32>();
    var lo1 = vec4<f32>(); var hi1 = vec4<f32>();
    var lo2 = vec4<f32>(); var hi2 = vec4<f32>();
    for (var pos = start + lane; pos < min(positions, start + SEGMENT); pos += 64u) {
        let r = pos / half;
        let j = pos - r * half;
        let p = pair_sums((r * CHANNELS + i) * s.len, j);
        let at = r * CHANNELS * half + j;
        let lo = vec4(dz_w[at], dz_w[at + half], dz_w[at + 2u * half], dz_w[at + 3u * half]);
        let hi = vec4(dz_w[at + 4u * half], dz_w[at + 5u * half], dz_w[at + 6u * half], dz_w[at + 7u * half]);
        lo0 += lo * p.x; hi0 += hi * p.x;
        lo1 += lo * p.y; hi1 += hi * p.y;
        lo2 += lo * p.z; hi2 += hi * p.z;
    }
    let mine = lane * 6u;
    sums[mine] = lo0; sums[mine + 1u] = hi0;
    sums[mine + 2u] = lo1; sums[mine + 3u] = hi1;
    sums[mine + 4u] = lo2; sums[mine + 5u] = hi2;
    workgroupBarrier();
    for (var width = 32u; width > 0u; width /= 2u) {
        if lane < width {
            for (var k = 0u; k < 6u; k++) {
                sums[mine + k] += sums[(lane + width) * 6u + k];
            }
        }
        workgroupBarrier();
    }
    if lane < 3u * CHANNELS {
        // lane = t * 8 + o = (2t + h) * 4 + c.
        partials[(wg.x * CHANNELS + i) * 3u * CHANNELS + lane] = 0.5 * sums[lane / 4u][lane % 4u];
    }
}

@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;

// One invocation per weight, adding this batch's segments in order.
@compute @workgroup_size(64)
fn weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x;  // i * 24 + t * 8 + o
    if idx >= CHANNELS * CHANNELS * 3u {
        return;
    }
    let segments = (s.batch * (s.len / 2u) + SEGMENT - 1u) / SEGMENT;
    var sum = 0.0;
    for (var seg = 0u; seg < segments; seg++) {
        sum += parts[seg * CHANNELS * CHANNELS * 3u + idx];
    }
    let i = idx / (3u * CHANNELS);
    let t = (idx / CHANNELS) % 3u;
    let o = idx % CHANNELS;
    grads[s.weight + (o * CHANNELS + i) * 3u + t] = sum;
}
