// Embedding + Conv1d(k3, pad 1) + AvgPool1d(2) + ReLU for inference, folded.
//
// The embedding is a lookup, so conv0(embedding(tok)) at position l is
//   bias[o] + sum_t T[t, tok[l + t - 1], o]   (taps at positions outside 0..len add 0)
// with the tap tables T[t, c, o] = sum_i w[o, i, t] * table[c, i]. A padding token 0
// inside the string is a real token (row 0 of the table); only the conv's zero padding
// outside 0..len contributes nothing. The pooled output j reads positions 2j - 1 .. 2j + 2:
//   0.5 (conv(2j) + conv(2j + 1)) = bias + P0[tok(2j - 1)] + P1[tok(2j)] + P2[tok(2j + 1)]
//                                        + P3[tok(2j + 2)]
// with the pair tables P = 0.5 [T0, T0 + T1, T1 + T2, T2], [4, vocab + 1, width], whose
// last row (index vocab) is zero: the conv's padding. Rows are `width` = cout rounded up
// to 4 wide (zeros past cout), so a thread reads four channels as one vec4.
//   fold:    builds P from the parameter slab (once per set of weights).
//   forward: y[b, o, j] = relu(bias[o] + four table reads), [batch, cout, len / 2].
// Training goes back through the fold: given dT, the gradient of the tap tables
// (ops/embedding.rs `backward` with three taps gathers it from the conv output gradient),
//   backward (PRODUCT WEIGHT): dw[o, i, t] = sum_c dT[t, c, o] * table[c, i];
//                    dbias[o] = sum_c dT[1, c, o] (tap 1 sees every position once);
//   backward (PRODUCT TABLE):  dtable[c, i] = sum_{t, o} dT[t, c, o] * w[o, i, t];
//   both on the register tile (gemm_tile.wgsl, prepended with PRODUCT and KMAX).
// Both cost 3.4 M multiply-adds per step whatever the batch, where the unfolded conv0
// backward would cost 8.6 M per string.
// Tokens are bytes, four to a word, read with `token_at` (tokens.wgsl, prepended).
struct Shape {
    batch: u32,
    len: u32,     // positions per string
    vocab: u32,   // rows of the embedding table; out-of-range tokens are clamped
    dim: u32,     // embedding width = conv input channels
    cout: u32,
    table: u32,   // offset of the embedding table [vocab, dim] in the parameter slab
    weight: u32,  // offset of the conv weight [cout, dim, 3]
    bias: u32,    // offset of the conv bias [cout]
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> taps: array<vec4<f32>>;  // P [4, vocab + 1, width / 4]
@group(0) @binding(3) var<storage, read> tokens: array<u32>;  // u8 [batch, len], packed
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// T[t, c, o].
fn tap_value(t: u32, c: u32, o: u32) -> f32 {
    var acc = 0.0;
    for (var i = 0u; i < s.dim; i++) {
        acc += params[s.weight + (o * s.dim + i) * 3u + t] * params[s.table + c * s.dim + i];
    }
    return acc;
}

@group(0) @binding(2) var<storage, read_write> folded: array<f32>;  // P, written

// Table row width: cout rounded up to a multiple of 4.
fn width() -> u32 {
    return (s.cout + 3u) / 4u * 4u;
}

@compute @workgroup_size(64)
fn fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let rows = s.vocab + 1u;
    let w = width();
    if idx >= 4u * rows * w {
        return;
    }
    let o = idx % w;
    let c = (idx / w) % rows;
    let q = idx / (w * rows);
    var v = 0.0;
    if c < s.vocab && o < s.cout {
        // P_q = T_{q - 1} + T_q, with T_{-1} = T_3 = 0.
        if q > 0u {
            v += tap_value(q - 1u, c, o);
        }
        if q < 3u {
            v += tap_value(q, c, o);
        }
    }
    folded[idx] = 0.5 * v;
}

// The pair-table row of position `pos` of string b, in vec4s: its token's, or the zero
// row (index vocab) outside 0..len.
fn row(b: u32, pos: i32) -> u32 {
    var c = s.vocab;
    if pos >= 0 && pos < i32(s.len) {
        c = min(token_at(b * s.len + u32(pos)), s.vocab - 1u);
    }
    return c * width() / 4u;
}

// One workgroup of 16 threads per string, four channels per thread. The rows come
// straight from the token buffer at addresses every thread shares, so lavapipe treats
// them as uniform, and a table read is one 16-byte load per thread (staging the rows in
// workgroup memory made every read a per-lane gather, 3x slower).
@compute @workgroup_size(16)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let b = wg.x + wg.y * nwg.x;
    if b >= s.batch {
        return;
    }
    let len_out = s.len / 2u;
    let table = (s.vocab + 1u) * width() / 4u;
    for (var o = 4u * tid; o < s.cout; o += 64u) {
        var bias = vec4(0.0);
        for (var c = 0u; c < min(4u, s.cout - o); c++) {
            bias[c] = params[s.bias + o + c];
        }
        let quad = o / 4u;
        for (var j = 0u; j < len_out; j++) {
            let p = 2 * i32(j) - 1;
            let pair = taps[row(b, p) + quad] + taps[table + row(b, p + 1) + quad]
                + taps[2u * table + row(b, p + 2) + quad] + taps[3u * table + row(b, p + 3) + quad];
            let v = max(bias + pair, vec4(0.0));
            let at = (b * s.cout + o) * len_out + j;
            y[at] = v.x;
            if o + 3u < s.cout {
                y[at + len_out] = v.y;
                y[at + 2u * len_out] = v.z;
                y[at + 3u * len_out] = v.w;
            } else {
                for (var c = 1u; c < s.cout - o; c++) {
                    y[at + c * len_out] = v[c];
                }
            }
        }
    }
}

@group(0) @binding(2) var<storage, read> dtaps: array<f32>;          // dT [3, vocab, cout]
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;    // the gradient slab

// The two backward products run on the register tile (gemm_tile.wgsl, prepended with
// PRODUCT saying which one this module computes):
//   WEIGHT: per tap t (grid y), rows o, columns i (and a last column of ones, the bias,
//           for tap 1), reduction over characters c:
//           dw[o, i, t] = sum_c dT[t, c, o] * table[c, i].
//   TABLE:  rows i, columns c, reduction over k = t * cout + o:
//           dtable[c, i] = sum_{t, o} w[o, i, t] * dT[t, c, o].
const WEIGHT: u32 = 0u;
const TABLE: u32 = 1u;

// The tap of this WEIGHT workgroup.
var<private> tap: u32;

fn weight_at(k: u32, row: u32) -> f32 {
    if PRODUCT == WEIGHT {
        if row >= s.cout {
            return 0.0;
        }
        return dtaps[(tap * s.vocab + k) * s.cout + row];
    }
    if row >= s.dim {
        return 0.0;
    }
    let t = k / s.cout;
    let o = k - t * s.cout;
    return params[s.weight + (o * s.dim + row) * 3u + t];
}

fn tile_rows(k: u32, o: u32) -> vec4<f32> {
    return vec4(weight_at(k, o), weight_at(k, o + 16u), weight_at(k, o + 32u), weight_at(k, o + 48u));
}

fn tile_store(row: u32, col: u32, v: f32) {
    if PRODUCT == WEIGHT {
        if row < s.cout && col < s.dim {
            grads[s.weight + (row * s.dim + col) * 3u + tap] = v;
        } else if row < s.cout && col == s.dim && tap == 1u {
            grads[s.bias + row] = v;
        }
        return;
    }
    if row < s.dim && col < s.vocab {
        grads[s.table + col * s.dim + row] = v;
    }
}

// B[k, col] of this module's product.
fn b_value(k: u32, col: u32) -> f32 {
    if PRODUCT == WEIGHT {
        if col < s.dim {
            return params[s.table + k * s.dim + col];
        }
        return select(0.0, 1.0, col == s.dim);
    }
    if col >= s.vocab {
        return 0.0;
    }
    let t = k / s.cout;
    let o = k - t * s.cout;
    return dtaps[(t * s.vocab + col) * s.cout + o];
}

@compute @workgroup_size(16)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let col0 = wg.x * TILE_COLS;
    tap = wg.y;
    let k_len = select(3u * s.cout, s.vocab, PRODUCT == WEIGHT);
    let rows = select(s.dim, s.cout, PRODUCT == WEIGHT);
    // Columns: the table's characters, or conv0's input channels and the bias.
    let columns = select(s.vocab, s.dim + 1u, PRODUCT == WEIGHT);
    for (var c = lane; c < TILE_COLS; c += TILE_LANES) {
        for (var k = 0u; k < k_len; k++) {
            tile_put(k, c, b_value(k, col0 + c));
        }
    }
    workgroupBarrier();
    for (var o0 = 0u; o0 < rows; o0 += TILE_ROWS) {
        // A tile past the columns (the wider product's grid) stores nothing.
        tile_multiply(lane, o0, col0, k_len, min(TILE_COLS, columns - min(columns, col0)));
    }
}
