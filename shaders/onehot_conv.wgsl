// CNN-ED's first block on the one-hot input of the per-character layout, without
// materialising it: row r = b * alphabet + c is the indicator of character c in string
// b, e[r, m] = [tokens[b, m] == c] for 0 <= m < len (zero elsewhere: padding, and ids
// >= alphabet, which are characters outside the alphabet and padding past a string's
// end). Conv1d(1 -> 8, k 3, pad 1, no bias) then AvgPool1d(2) (floor), fused:
//   y[r, o, j] = 1/2 sum_{l = 2j, 2j + 1} sum_t w[o, t] e[r, l + t - 1]
//              = 1/2 (w0 (e0 + e1) + w1 (e1 + e2) + w2 (e2 + e3)),  e_q = e[r, 2j - 1 + q]
// and its only gradient (the input is data), from dy at the pooled output:
//   dw[o, t] = 1/2 sum_{b, j} sum_c dy[b * alphabet + c, o, j] (e_t + e_{t + 1})
// where the sum over c keeps only c = tokens[b, 2j - 1 + q]: four gathers per (b, j).
// `partial` sums one segment of strings per workgroup in a fixed order and `reduce` adds
// the segments in order: no atomics, the same bits on every run.
// Both compute a string's positions only below its extent (extent.wgsl, prepended),
// from its length in `lengths` (an impulse at place b: b + 1), and the forward writes
// zeros after them.
struct Shape {
    batch: u32,     // strings
    alphabet: u32,  // C: rows per string
    len: u32,       // conv input length (<= stride); the output has len / 2 positions
    stride: u32,    // tokens per string in `tokens` (M)
    weight: u32,    // offset of w [8, 1, 3] in the parameter slab (of dw in `grads`)
    impulses: u32,  // 1: tokens unread, string b is character 0 at place b (alphabet 1)
    _pad1: u32,
    _pad2: u32,
}

const CHANNELS: u32 = 8u;
// Positions per workgroup of `partial`, about: it takes whole strings.
const SEGMENT: u32 = 512u;

// Strings per workgroup of `partial` (ops/onehot_conv.rs sizes the grid with the same
// rule).
fn segment_strings(half: u32) -> u32 {
    return max(1u, SEGMENT / max(half, 1u));
}
// Output positions per invocation of `forward` (ops/onehot_conv.rs dispatches for it).
const FORWARD_POSITIONS: u32 = 32u;

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;  // [batch, stride]
@group(0) @binding(4) var<storage, read> lengths: array<u32>;  // [batch] (unread for impulses)

// The output positions of string b that can be nonzero.
fn out_extent(b: u32) -> u32 {
    if s.impulses == 1u {
        return extent(b + 1u, 1u);
    }
    return extent(lengths[b], 1u);
}

// Token `m` of string `b` if it is a character (0 <= m < len, id < alphabet), else
// `alphabet` (no row).
fn char_at(b: u32, m: i32) -> u32 {
    if m < 0 || m >= i32(s.len) {
        return s.alphabet;
    }
    if s.impulses == 1u {
        return select(s.alphabet, 0u, u32(m) == b);
    }
    return min(tokens[b * s.stride + u32(m)], s.alphabet);
}

@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [batch * alphabet, 8, len / 2]

// w[o0 + c, t] for c = 0..3, in column t.
fn taps4(o0: u32) -> mat3x4<f32> {
    let at = s.weight + 3u * o0;
    return mat3x4(
        vec4(params[at], params[at + 3u], params[at + 6u], params[at + 9u]),
        vec4(params[at + 1u], params[at + 4u], params[at + 7u], params[at + 10u]),
        vec4(params[at + 2u], params[at + 5u], params[at + 8u], params[at + 11u]),
    );
}

// One invocation per FORWARD_POSITIONS output positions of a row r (j = k, k + per_row,
// ...), all 8 channels: it reads the weight once (on lavapipe a read of the slab is a
// gather of 8 lanes one by one, however uniform its address). It stops at the string's
// extent and writes the zeros after it in a second loop (lavapipe runs both sides of a
// branch under a mask: only a shorter loop saves time there).
@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    let half = s.len / 2u;
    let per_row = (half + FORWARD_POSITIONS - 1u) / FORWARD_POSITIONS;
    if t >= s.batch * s.alphabet * per_row {
        return;
    }
    let r = t / per_row;
    let b = r / s.alphabet;
    let c = r - b * s.alphabet;
    let end = min(half, out_extent(b));
    let lo = taps4(0u);
    let hi = taps4(4u);
    var j = t - r * per_row;
    while j < end {
        var e = vec4<f32>();
        for (var q = 0u; q < 4u; q++) {
            e[q] = select(0.0, 1.0, char_at(b, i32(2u * j + q) - 1) == c);
        }
        // The pair sums each tap sees over the pool's two positions.
        let p = vec3(e.x + e.y, e.y + e.z, e.z + e.w);
        let y_lo = 0.5 * (lo * p);
        let y_hi = 0.5 * (hi * p);
        for (var o = 0u; o < 4u; o++) {
            y[(r * CHANNELS + o) * half + j] = y_lo[o];
            y[(r * CHANNELS + 4u + o) * half + j] = y_hi[o];
        }
        j += per_row;
    }
    while j < half {
        for (var o = 0u; o < CHANNELS; o++) {
            y[(r * CHANNELS + o) * half + j] = 0.0;
        }
        j += per_row;
    }
}

@group(0) @binding(2) var<storage, read> dy: array<f32>;               // as y
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;   // [segments, 3, 8]

// Each invocation's sums, dw[o, t] for o = 4 h + component at [lane * 6 + 2 t + h].
var<workgroup> sums: array<vec4<f32>, 384>;

// dy[b * alphabet + tokens[b, 2j - 1 + q], 0..8, j] as two vec4 (zero without a char).
fn gathered(b: u32, j: u32, q: u32, half: u32) -> array<vec4<f32>, 2> {
    let c = char_at(b, i32(2u * j + q) - 1);
    if c >= s.alphabet {
        return array(vec4<f32>(), vec4<f32>());
    }
    let at = (b * s.alphabet + c) * CHANNELS * half + j;
    return array(
        vec4(dy[at], dy[at + half], dy[at + 2u * half], dy[at + 3u * half]),
        vec4(dy[at + 4u * half], dy[at + 5u * half], dy[at + 6u * half], dy[at + 7u * half]),
    );
}

@compute @workgroup_size(64)
fn partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let segment = wg.x;
    let half = s.len / 2u;
    let strings = segment_strings(half);
    let first = segment * strings;
    // The grid is sized for the capacity: segments past this batch's do nothing (and
    // `reduce` does not read them).
    if first >= s.batch {
        return;
    }
    var t0 = array(vec4<f32>(), vec4<f32>());
    var t1 = t0;
    var t2 = t0;
    // String by string, the invocations taking neighbouring positions up to its extent
    // (past it no character is in reach; the loop ends there, as a skip would cost the
    // same on lavapipe).
    for (var b = first; b < min(s.batch, first + strings); b++) {
        let end = min(half, out_extent(b));
        for (var j = lane; j < end; j += 64u) {
            let g0 = gathered(b, j, 0u, half);
            let g1 = gathered(b, j, 1u, half);
            let g2 = gathered(b, j, 2u, half);
            let g3 = gathered(b, j, 3u, half);
            for (var h = 0u; h < 2u; h++) {
                t0[h] += g0[h] + g1[h];
                t1[h] += g1[h] + g2[h];
                t2[h] += g2[h] + g3[h];
            }
        }
    }
    for (var h = 0u; h < 2u; h++) {
        sums[lane * 6u + h] = t0[h];
        sums[lane * 6u + 2u + h] = t1[h];
        sums[lane * 6u + 4u + h] = t2[h];
    }
    workgroupBarrier();
    for (var width = 32u; width > 0u; width /= 2u) {
        if lane < width {
            for (var k = 0u; k < 6u; k++) {
                sums[lane * 6u + k] += sums[(lane + width) * 6u + k];
            }
        }
        workgroupBarrier();
    }
    if lane < 3u * CHANNELS {
        // lane = t * 8 + o.
        partials[segment * 3u * CHANNELS + lane] = 0.5 * sums[lane / 4u][lane % 4u];
    }
}

@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn reduce(@builtin(local_invocation_index) lane: u32) {
    if lane >= 3u * CHANNELS {
        return;
    }
    let strings = segment_strings(s.len / 2u);
    let segments = (s.batch + strings - 1u) / strings;
    var sum = 0.0;
    for (var seg = 0u; seg < segments; seg++) {
        sum += parts[seg * 3u * CHANNELS + lane];
    }
    let t = lane / CHANNELS;
    let o = lane - t * CHANNELS;
    grads[s.weight + 3u * o + t] = sum;
}
