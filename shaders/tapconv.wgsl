// Embedding + Conv1d(k3, pad 1) + AvgPool1d(2) + ReLU for inference, folded.
//
// The embedding is a lookup, so conv0(embedding(tok)) at position l is
//   bias[o] + sum_t T[t, tok[l + t - 1], o]   (taps at positions outside 0..len add 0)
// with the tap tables T[t, c, o] = sum_i w[o, i, t] * table[c, i]. A padding token 0
// inside the string is a real token (row 0 of the table); only the conv's zero padding
// outside 0..len contributes nothing. The pooled output j reads positions 2j - 1 .. 2j + 2:
//   0.5 (conv(2j) + conv(2j + 1)) = bias + P0[tok(2j - 1)] + P1[tok(2j)] + P2[tok(2j + 1)]
//                                        + P3[tok(2j + 2)]
// with the pair tables P = 0.5 [T0, T0 + T1, T1 + T2, T2], [4, vocab + 1, cout], whose
// last row (index vocab) is zero: the conv's padding.
//   fold:    builds P from the parameter slab (once per set of weights).
//   forward: y[b, o, j] = relu(bias[o] + four table reads), [batch, cout, len / 2].
// Training goes back through the fold: given dT, the gradient of the tap tables
// (ops/embedding.rs `backward` with three taps gathers it from the conv output gradient),
//   backward_weight: dw[o, i, t] = sum_c dT[t, c, o] * table[c, i];
//                    dbias[o] = sum_c dT[1, c, o] (tap 1 sees every position once);
//   backward_table:  dtable[c, i] = sum_{t, o} dT[t, c, o] * w[o, i, t].
// Both cost 3.4 M multiply-adds per step whatever the batch, where the unfolded conv0
// backward would cost 8.6 M per string.
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
@group(0) @binding(2) var<storage, read> taps: array<f32>;  // P [4, vocab + 1, cout]
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
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

@compute @workgroup_size(64)
fn fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let rows = s.vocab + 1u;
    if idx >= 4u * rows * s.cout {
        return;
    }
    let o = idx % s.cout;
    let c = (idx / s.cout) % rows;
    let q = idx / (s.cout * rows);
    var v = 0.0;
    if c < s.vocab {
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

const TJ: u32 = 40u;  // pooled positions per tile (the model's 80 / 2: one tile per string)
var<workgroup> stage: array<f32, 2560>;  // [cout tile of 64][TJ] outputs of one tile
// Row offsets tok * cout in a pair table of positions 2 * j0 - 1 + r, or vocab * cout
// (the zero row) outside 0..len.
var<workgroup> rows: array<u32, 82>;

// One workgroup per string, one thread per channel: a table read is 64 consecutive
// floats, and the token rows are the same for every thread. The tile is staged in
// workgroup memory and written out as one contiguous run per channel block.
@compute @workgroup_size(64)
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
    let table = (s.vocab + 1u) * s.cout;
    for (var j0 = 0u; j0 < len_out; j0 += TJ) {
        let n_j = min(TJ, len_out - j0);
        // rows[r] is position 2 * j0 - 1 + r.
        for (var r = tid; r < 2u * n_j + 2u; r += 64u) {
            let pos = i32(2u * j0 + r) - 1;
            var row = s.vocab;
            if pos >= 0 && pos < i32(s.len) {
                row = min(tokens[b * s.len + u32(pos)], s.vocab - 1u);
            }
            rows[r] = row * s.cout;
        }
        workgroupBarrier();
        for (var o0 = 0u; o0 < s.cout; o0 += 64u) {
            let n_o = min(64u, s.cout - o0);
            let o = o0 + tid;
            if tid < n_o {
                let bias = params[s.bias + o];
                for (var jj = 0u; jj < n_j; jj++) {
                    let pair = taps[rows[2u * jj] + o] + taps[table + rows[2u * jj + 1u] + o]
                        + taps[2u * table + rows[2u * jj + 2u] + o]
                        + taps[3u * table + rows[2u * jj + 3u] + o];
                    y[(b * s.cout + o) * len_out + j0 + jj] = max(bias + pair, 0.0);
                }
            }
        }
    }
}

@group(0) @binding(2) var<storage, read> dtaps: array<f32>;          // dT [3, vocab, cout]
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;    // the gradient slab

@compute @workgroup_size(64)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let n = s.cout * s.dim * 3u;
    if idx >= n + s.cout {
        return;
    }
    var acc = 0.0;
    if idx >= n {
        let o = idx - n;
        for (var c = 0u; c < s.vocab; c++) {
            acc += dtaps[(s.vocab + c) * s.cout + o];
        }
        grads[s.bias + o] = acc;
        return;
    }
    let t = idx % 3u;
    let i = (idx / 3u) % s.dim;
    let o = idx / (3u * s.dim);
    for (var c = 0u; c < s.vocab; c++) {
        acc += dtaps[(t * s.vocab + c) * s.cout + o] * params[s.table + c * s.dim + i];
    }
    grads[s.weight + idx] = acc;
}

@compute @workgroup_size(64)
fn backward_table(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= s.vocab * s.dim {
        return;
    }
    let i = idx % s.dim;
    let c = idx / s.dim;
    var acc = 0.0;
    for (var t = 0u; t < 3u; t++) {
        for (var o = 0u; o < s.cout; o++) {
            acc += dtaps[(t * s.vocab + c) * s.cout + o] * params[s.weight + (o * s.dim + i) * 3u + t];
        }
    }
    grads[s.table + idx] = acc;
}
