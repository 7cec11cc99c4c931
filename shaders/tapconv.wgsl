// Embedding + Conv1d(k3, pad 1) + AvgPool1d(2) + ReLU for inference, folded.
//
// The embedding is a lookup, so conv0(embedding(tok)) at position l is
//   bias[o] + sum_t T[t, tok[l + t - 1], o]   (taps at positions outside 0..len add 0)
// with the tap tables T[t, c, o] = sum_i w[o, i, t] * table[c, i], [3, vocab, cout].
// A padding token 0 inside the string is a real token (row 0 of the table); only the
// conv's zero padding outside 0..len contributes nothing.
//   fold:    builds T from the parameter slab (run once per set of weights).
//   forward: y[b, o, j] = relu(0.5 * (conv(2j) + conv(2j + 1))), [batch, cout, len / 2].
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
@group(0) @binding(2) var<storage, read_write> taps: array<f32>;  // [3, vocab, cout]
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= 3u * s.vocab * s.cout {
        return;
    }
    let o = idx % s.cout;
    let c = (idx / s.cout) % s.vocab;
    let t = idx / (s.cout * s.vocab);
    var acc = 0.0;
    for (var i = 0u; i < s.dim; i++) {
        acc += params[s.weight + (o * s.dim + i) * 3u + t] * params[s.table + c * s.dim + i];
    }
    taps[idx] = acc;
}

const TO: u32 = 64u;  // channels per tile: one per thread
const TJ: u32 = 40u;  // pooled positions per tile (the model's 80 / 2: one tile per string)
var<workgroup> stage: array<f32, 2560>;  // [TO][TJ] outputs of one tile
// Table row offsets tok * cout of positions 2 * j0 - 1 .. 2 * (j0 + TJ) + 1, or -1 for
// the conv's zero padding outside 0..len.
var<workgroup> rows: array<i32, 82>;

// T[t, row] for channel o, or 0 for a padding position.
fn tap(t: u32, row: i32, o: u32) -> f32 {
    let v = taps[t * s.vocab * s.cout + u32(max(row, 0)) + o];
    return select(0.0, v, row >= 0);
}

// One workgroup per string. Thread = channel, so the table reads of a tap are 64
// consecutive floats and the token reads are the same for every thread; the tile is
// staged in workgroup memory and written out as one contiguous run per channel block.
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
    for (var j0 = 0u; j0 < len_out; j0 += TJ) {
        let n_j = min(TJ, len_out - j0);
        // rows[r] is position 2 * j0 - 1 + r.
        for (var r = tid; r < 2u * n_j + 2u; r += 64u) {
            let pos = i32(2u * j0 + r) - 1;
            var row = -1;
            if pos >= 0 && pos < i32(s.len) {
                row = i32(min(tokens[b * s.len + u32(pos)], s.vocab - 1u) * s.cout);
            }
            rows[r] = row;
        }
        workgroupBarrier();
        for (var o0 = 0u; o0 < s.cout; o0 += TO) {
            let n_o = min(TO, s.cout - o0);
            let o = o0 + tid;
            if tid < n_o {
                let bias = params[s.bias + o];
                for (var jj = 0u; jj < n_j; jj++) {
                    // conv(l) + conv(l + 1), l = 2 (j0 + jj): positions l - 1 .. l + 2.
                    let r0 = rows[2u * jj];
                    let r1 = rows[2u * jj + 1u];
                    let r2 = rows[2u * jj + 2u];
                    let r3 = rows[2u * jj + 3u];
                    let pair = tap(0u, r0, o) + tap(1u, r1, o) + tap(2u, r2, o)
                        + tap(0u, r1, o) + tap(1u, r2, o) + tap(2u, r3, o);
                    stage[tid * n_j + jj] = max(bias + 0.5 * pair, 0.0);
                }
            }
            workgroupBarrier();
            for (var e = tid; e < n_o * n_j; e += 64u) {
                let oo = e / n_j;
                let jj = e - oo * n_j;
                y[(b * s.cout + o0 + oo) * len_out + j0 + jj] = stage[e];
            }
            workgroupBarrier();
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
