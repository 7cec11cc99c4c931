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
// its work is padding. Here an invocation of forward and backward_data holds the weight
// in registers as 4x4 blocks (named values: lavapipe keeps arrays in memory) and computes
// all 8 channels of up to POSITIONS positions with them: on lavapipe a read of the
// weight is a gather, 8 lanes one by one, so reading it per position would cost more
// than the multiply-adds (measured: 7/8 of the time). A row's invocations take
// neighbouring positions, POSITIONS times over.
// Row r belongs to string r / group, of lengths[r / group] characters (extent.wgsl,
// prepended): forward computes the output places below that string's extent at level
// + 1 and writes zeros after them, backward_data the input places below its extent at
// level, and weight_partial the places whose pair sums can be nonzero. Each stops its
// loop at the extent (forward and backward_data write the zeros after it in a second
// loop): lavapipe runs both sides of a branch under a mask, so only a shorter loop saves
// time there (a branch in the loop gained 6%).
struct Shape {
    batch: u32,   // rows
    len: u32,     // input length; the output has len / 2 positions
    weight: u32,  // offset of w [8, 8, 3] in the parameter slab (of dw in the gradient slab)
    relu: u32,    // forward: 1 for a ReLU at the end
    group: u32,   // rows a string
    level: u32,   // blocks before this one (the input is level `level`)
    _pad0: u32,
    _pad1: u32,
}

const CHANNELS: u32 = 8u;
// Positions per invocation of forward and backward_data (ops/conv8.rs dispatches for it).
const POSITIONS: u32 = 32u;
// Rows per workgroup of weight_partial: each of its 64 invocations sums whole rows, about
// 64 positions' worth (ops/conv8.rs sizes the grid with the same rule).
fn segment_rows(half: u32) -> u32 {
    return 64u * max(1u, 64u / max(half, 1u));
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(4) var<storage, read> lengths: array<u32>;  // [strings]

// The places of row r at level `level` that can be nonzero.
fn row_extent(r: u32, level: u32) -> u32 {
    return extent(lengths[r / s.group], level);
}

fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// Invocations of a row of `n` positions: POSITIONS positions each.
fn per_row(n: u32) -> u32 {
    return (n + POSITIONS - 1u) / POSITIONS;
}

// w[o0 + c, i, t] for c = 0..3: four output channels.
fn w_out4(o0: u32, i: u32, t: u32) -> vec4<f32> {
    let at = s.weight + (o0 * CHANNELS + i) * 3u + t;
    let next = CHANNELS * 3u;
    return vec4(params[at], params[at + next], params[at + 2u * next], params[at + 3u * next]);
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

// The pair sums of input channels i0 .. i0 + 3: column t holds tap t's, over the channels.
fn pair_sums4(r: u32, i0: u32, j: u32) -> mat3x4<f32> {
    let row = (r * CHANNELS + i0) * s.len;
    let p0 = pair_sums(row, j);
    let p1 = pair_sums(row + s.len, j);
    let p2 = pair_sums(row + 2u * s.len, j);
    let p3 = pair_sums(row + 3u * s.len, j);
    return transpose(mat4x3(p0, p1, p2, p3));
}

// Four output channels' weights over four input channels, one matrix per tap:
// (tap_t * v)[row] = sum_c w[o0 + row, i0 + c, t] v[c].
struct ForwardBlock {
    tap0: mat4x4<f32>,
    tap1: mat4x4<f32>,
    tap2: mat4x4<f32>,
}

fn forward_tap(o0: u32, i0: u32, t: u32) -> mat4x4<f32> {
    return mat4x4(w_out4(o0, i0, t), w_out4(o0, i0 + 1u, t), w_out4(o0, i0 + 2u, t), w_out4(o0, i0 + 3u, t));
}

fn forward_block(o0: u32, i0: u32) -> ForwardBlock {
    return ForwardBlock(forward_tap(o0, i0, 0u), forward_tap(o0, i0, 1u), forward_tap(o0, i0, 2u));
}

fn apply_forward(w: ForwardBlock, p: mat3x4<f32>) -> vec4<f32> {
    return w.tap0 * p[0] + w.tap1 * p[1] + w.tap2 * p[2];
}

// One invocation per POSITIONS pooled positions of a row (j = k, k + per_row, ...), all 8
// output channels.
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = s.len / 2u;
    let invocations = per_row(half);
    let t = thread_index(gid, nwg);
    if t >= s.batch * invocations {
        return;
    }
    let r = t / invocations;
    let end = min(half, row_extent(r, s.level + 1u));
    // Output channels 0..3 (lo) and 4..7 (hi) from input channels 0..3 and 4..7.
    let lo_lo = forward_block(0u, 0u);
    let lo_hi = forward_block(0u, 4u);
    let hi_lo = forward_block(4u, 0u);
    let hi_hi = forward_block(4u, 4u);
    var j = t - r * invocations;
    while j < end {
        let p_lo = pair_sums4(r, 0u, j);
        let p_hi = pair_sums4(r, 4u, j);
        var lo = 0.5 * (apply_forward(lo_lo, p_lo) + apply_forward(lo_hi, p_hi));
        var hi = 0.5 * (apply_forward(hi_lo, p_lo) + apply_forward(hi_hi, p_hi));
        if s.relu == 1u {
            lo = max(lo, vec4<f32>());
            hi = max(hi, vec4<f32>());
        }
        for (var c = 0u; c < 4u; c++) {
            y[(r * CHANNELS + c) * half + j] = lo[c];
            y[(r * CHANNELS + 4u + c) * half + j] = hi[c];
        }
        j += invocations;
    }
    while j < half {
        for (var c = 0u; c < CHANNELS; c++) {
            y[(r * CHANNELS + c) * half + j] = 0.0;
        }
        j += invocations;
    }
}

@group(0) @binding(1) var<storage, read> dz: array<f32>;        // [rows, 8, len / 2]
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;  // [rows, 8, len]

// dz[r, o0 + c, a] for c = 0..3, zero outside 0..len / 2.
fn dz4(r: u32, o0: u32, a: i32) -> vec4<f32> {
    let half = s.len / 2u;
    if a < 0 || a >= i32(half) {
        return vec4<f32>();
    }
    let at = (r * CHANNELS + o0) * half + u32(a);
    return vec4(dz[at], dz[at + half], dz[at + 2u * half], dz[at + 3u * half]);
}

// Four input channels' weights over four output channels, combined as the input
// gradient's formulas combine the taps: (m * v)[row] = sum_c w_t[o0 + c, i0 + row] v[c].
struct BackwardBlock {
    even_here: mat4x4<f32>,    // w0 + w1
    even_before: mat4x4<f32>,  // w2
    odd_after: mat4x4<f32>,    // w0
    odd_here: mat4x4<f32>,     // w1 + w2
}

fn backward_block(i0: u32, o0: u32) -> BackwardBlock {
    // w_t[o0 + c, i0 + row] is forward_tap's (c, row) entry.
    let w0 = transpose(forward_tap(o0, i0, 0u));
    let w1 = transpose(forward_tap(o0, i0, 1u));
    let w2 = transpose(forward_tap(o0, i0, 2u));
    return BackwardBlock(w0 + w1, w2, w0, w1 + w2);
}

// One invocation per POSITIONS pairs of input positions of a row (2a and 2a + 1 for a =
// k, k + per_row, ...; an odd len's last pair is its last position alone), all 8 input
// channels.
@compute @workgroup_size(64)
fn backward_data(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let pairs = (s.len + 1u) / 2u;
    let invocations = per_row(pairs);
    let t = thread_index(gid, nwg);
    if t >= s.batch * invocations {
        return;
    }
    let r = t / invocations;
    // The places that can be nonzero, and the pairs that hold one.
    let end = row_extent(r, s.level);
    let live = min(pairs, (end + 1u) / 2u);
    // Input channels 0..3 (lo) and 4..7 (hi) from output channels 0..3 and 4..7.
    let lo_lo = backward_block(0u, 0u);
    let lo_hi = backward_block(0u, 4u);
    let hi_lo = backward_block(4u, 0u);
    let hi_hi = backward_block(4u, 4u);
    var a = t - r * invocations;
    while a < live {
        let before_lo = dz4(r, 0u, i32(a) - 1);
        let here_lo = dz4(r, 0u, i32(a));
        let after_lo = dz4(r, 0u, i32(a) + 1);
        let before_hi = dz4(r, 4u, i32(a) - 1);
        let here_hi = dz4(r, 4u, i32(a));
        let after_hi = dz4(r, 4u, i32(a) + 1);
        let even_lo = lo_lo.even_here * here_lo + lo_lo.even_before * before_lo
            + lo_hi.even_here * here_hi + lo_hi.even_before * before_hi;
        let even_hi = hi_lo.even_here * here_lo + hi_lo.even_before * before_lo
            + hi_hi.even_here * here_hi + hi_hi.even_before * before_hi;
        let odd_lo = lo_lo.odd_after * after_lo + lo_lo.odd_here * here_lo
            + lo_hi.odd_after * after_hi + lo_hi.odd_here * here_hi;
        let odd_hi = hi_lo.odd_after * after_lo + hi_lo.odd_here * here_lo
            + hi_hi.odd_after * after_hi + hi_hi.odd_here * here_hi;
        let odd = 2u * a + 1u;
        for (var c = 0u; c < 4u; c++) {
            let lo = (r * CHANNELS + c) * s.len + 2u * a;
            let hi = lo + 4u * s.len;
            dx[lo] = 0.5 * even_lo[c];
            dx[hi] = 0.5 * even_hi[c];
            if odd < s.len {
                dx[lo + 1u] = select(0.0, 0.5 * odd_lo[c], odd < end);
                dx[hi + 1u] = select(0.0, 0.5 * odd_hi[c], odd < end);
            }
        }
        a += invocations;
    }
    while a < pairs {
        for (var c = 0u; c < CHANNELS; c++) {
            let at = (r * CHANNELS + c) * s.len + 2u * a;
            dx[at] = 0.0;
            if 2u * a + 1u < s.len {
                dx[at + 1u] = 0.0;
            }
        }
        a += invocations;
    }
}

// weight_partial binds x (as forward), dz, and its output.
@group(0) @binding(2) var<storage, read> dz_w: array<f32>;               // as dz
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;  // [segments, 8 o, 8 i, 3 t]

// Each invocation's sums over its positions: at [lane * 6 + 3h + t], dw[4h + row, i0 + c, t]
// in column c, row `row` (24 KiB).
var<workgroup> sums: array<mat4x4<f32>, 384>;

// The outer product d p^T: column c is d * p[c].
fn outer(d: vec4<f32>, p: vec4<f32>) -> mat4x4<f32> {
    return mat4x4(d * p.x, d * p.y, d * p.z, d * p.w);
}

// Workgroup (segment, q): dw[.., 4q .. 4q + 3, ..] summed over one segment of rows, each
// invocation taking every 64th row up to its extent (so its loop ends there, where a skip
// would cost the same on lavapipe), then over the invocations in a fixed tree.
@compute @workgroup_size(64)
fn weight_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let half = s.len / 2u;
    let rows = segment_rows(half);
    let first = wg.x * rows;
    let i0 = 4u * wg.y;
    // The grid is sized for the capacity: segments past this batch's do nothing (and
    // weight_reduce does not read them).
    if first >= s.batch {
        return;
    }
    // Output channels 0..3 (lo) and 4..7 (hi), by tap.
    var lo0 = mat4x4<f32>(); var lo1 = mat4x4<f32>(); var lo2 = mat4x4<f32>();
    var hi0 = mat4x4<f32>(); var hi1 = mat4x4<f32>(); var hi2 = mat4x4<f32>();
    for (var r = first + lane; r < min(s.batch, first + rows); r += 64u) {
        // Past the extent the pair sums are zero.
        let end = min(half, row_extent(r, s.level + 1u));
        for (var j = 0u; j < end; j++) {
            let p = pair_sums4(r, i0, j);
            let at = r * CHANNELS * half + j;
            let lo = vec4(dz_w[at], dz_w[at + half], dz_w[at + 2u * half], dz_w[at + 3u * half]);
            let hi = vec4(dz_w[at + 4u * half], dz_w[at + 5u * half], dz_w[at + 6u * half], dz_w[at + 7u * half]);
            lo0 += outer(lo, p[0]); lo1 += outer(lo, p[1]); lo2 += outer(lo, p[2]);
            hi0 += outer(hi, p[0]); hi1 += outer(hi, p[1]); hi2 += outer(hi, p[2]);
        }
    }
    let mine = lane * 6u;
    sums[mine] = lo0; sums[mine + 1u] = lo1; sums[mine + 2u] = lo2;
    sums[mine + 3u] = hi0; sums[mine + 4u] = hi1; sums[mine + 5u] = hi2;
    workgroupBarrier();
    for (var width = 32u; width > 0u; width /= 2u) {
        if lane < width {
            for (var k = 0u; k < 6u; k++) {
                sums[mine + k] += sums[(lane + width) * 6u + k];
            }
        }
        workgroupBarrier();
    }
    if lane < 24u {
        // Lane (k, c) writes column c of sum k = 3h + t: dw[4h + row, i0 + c, t].
        let k = lane / 4u;
        let c = lane % 4u;
        let h = k / 3u;
        let t = k - 3u * h;
        let column = 0.5 * sums[k][c];
        for (var row = 0u; row < 4u; row++) {
            let o = 4u * h + row;
            partials[wg.x * 192u + (o * CHANNELS + i0 + c) * 3u + t] = column[row];
        }
    }
}

@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;

// One invocation per weight, adding this batch's segments in order.
@compute @workgroup_size(64)
fn weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.x;  // (o * 8 + i) * 3 + t
    if idx >= 192u {
        return;
    }
    let rows = segment_rows(s.len / 2u);
    let segments = (s.batch + rows - 1u) / rows;
    var sum = 0.0;
    for (var seg = 0u; seg < segments; seg++) {
        sum += parts[seg * 192u + idx];
    }
    grads[s.weight + idx] = sum;
}
