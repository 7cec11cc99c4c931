// Conv1d, kernel 3, stride 1, zero padding 1, with an optional bias and ReLU (PyTorch
// layout), after gemm_tile.wgsl:
//   forward:      y[b, o, l] = act(bias[o] + sum_{i, t} w[o, i, t] * x[b, i, l + t - 1])
//   forward_pool: the same conv followed by AvgPool1d(2) (floor) and the activation, fused:
//     y[b, o, j] = act(bias[o] + sum_{i, t} (w[o, i, t] / 2) * p[b, i, 2j + t])
//     with p[b, i, m] = x[b, i, m - 1] + x[b, i, m] (zero outside 0..len), i.e. the pool
//     is folded into the conv as a stride-2 conv over pair sums: half the multiply-adds.
//   pack_weight: W[k, o] = w[o, i, t] with k = i * 3 + t, [cin * 3][rows] in the tile's
//     packed order (gemm_tile.wgsl), zero for o >= cout; halved for the pooled forward
//     (exact: a power of two). TRANSPOSE packs
//     W[k, i] = w[o, i, 2 - t] with k = o * 3 + t, so that `forward` over the packed
//     weight (cin <-> cout, no bias) is the input gradient
//     dx[b, i, m] = sum_{o, t} w[o, i, t] * dy[b, o, m - t + 1] (ops/conv1d.rs `backward`).
//
// Both forwards are the tile's product with col = b * len_out + j running over every
// output position of every string in the batch. MODE (prepended) says what the columns
// read: 0 the input as it is, POOL its pair sums (forward_pool), or, SPLIT, the
// input gradient of a pooled block straight from the gradient dz [batch, cout, len / 2]
// at its pooled output. The conv's output gradient there is 0.5 dz[m / 2] at position
// m, so each input position reads two values of dz, with weights set by its parity:
//   dx[2a]     = 1/2 sum_o (w0 + w1) dz[a]     + w2 dz[a - 1]
//   dx[2a + 1] = 1/2 sum_o  w0       dz[a + 1] + (w1 + w2) dz[a]
// (w_t = w[o, i, t], dz zero outside 0..len / 2): a reduction over 2 cout values instead
// of 3 cout. Even and odd positions are two calls (flag ODD), over one packed weight
// holding both parities (PAIRS).
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,     // input length
    weight: u32,  // offset of w [cout, cin, 3] in the parameter slab
    bias: u32,    // offset of bias [cout]
    rows: u32,    // rows of the packed weight: cout rounded up to 64
    flags: u32,
}

const POOL: u32 = 1u;
const SPLIT: u32 = 2u;

const HALVE: u32 = 1u;      // pack_weight: halve (the pool's mean)
const TRANSPOSE: u32 = 2u;  // pack_weight: flip and transpose (the input gradient)
const NO_BIAS: u32 = 4u;    // forward: no bias (CNN-ED's convs, the input gradient)
const PAIRS: u32 = 8u;      // pack_weight: SPLIT's weights, even then odd positions
const ODD: u32 = 16u;       // forward, SPLIT: the odd input positions (else the even)
const RELU: u32 = 32u;      // forward: ReLU at the end

// SPLIT: 1 for the odd positions.
fn parity() -> u32 {
    return select(0u, 1u, (s.flags & ODD) != 0u);
}

// The reduction length of the product.
fn k_len() -> u32 {
    return select(3u * s.cin, 2u * s.cin, MODE == SPLIT);
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> packed: array<vec4<f32>>;   // [cin * 3][rows]
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn tile_rows(k: u32, o: u32) -> vec4<f32> {
    // SPLIT: the odd positions' weights follow the even ones'.
    return packed[tile_packed_vec4(k + parity() * k_len(), o, s.rows)];
}

// Output positions per string (SPLIT: of this call's parity).
fn len_out() -> u32 {
    if MODE == POOL {
        return s.len / 2u;
    }
    if MODE == SPLIT {
        return (s.len + 1u - parity()) / 2u;
    }
    return s.len;
}

fn tile_store(o: u32, col: u32, v: f32) {
    let len_out = len_out();
    if o >= s.cout || col >= s.batch * len_out {
        return;
    }
    var value = v;
    if (s.flags & NO_BIAS) == 0u {
        value += params[s.bias + o];
    }
    if (s.flags & RELU) != 0u {
        value = max(value, 0.0);
    }
    let b = col / len_out;
    let j = col - b * len_out;
    if MODE == SPLIT {
        y[(b * s.cout + o) * s.len + 2u * j + parity()] = value;
        return;
    }
    y[(b * s.cout + o) * len_out + j] = value;
}

// Input channel i of string b at conv position pos, zero outside 0..len (the padding).
fn input_at(b: u32, i: u32, pos: i32) -> f32 {
    if pos < 0 || pos >= i32(s.len) {
        return 0.0;
    }
    return x[(b * s.cin + i) * s.len + u32(pos)];
}

// SPLIT: dz[b, o, m], zero outside 0..len / 2.
fn dz_at(b: u32, o: u32, m: i32) -> f32 {
    let pairs = s.len / 2u;
    if m < 0 || m >= i32(pairs) {
        return 0.0;
    }
    return x[(b * s.cin + o) * pairs + u32(m)];
}

// Invocation `lane` stages columns col0 + lane and col0 + lane + 16: for each input
// channel, the 3 (4 pooled) input values a column's taps read, as B[i * 3 + t, col].
fn stage(lane: u32, col0: u32) {
    let len_out = len_out();
    for (var c = lane; c < TILE_COLS; c += TILE_LANES) {
        let col = col0 + c;
        let b = col / len_out;
        let j = col - b * len_out;
        // A column past the batch reads only padding.
        var start = select(i32(j), 2 * i32(j), MODE == POOL) - 1;
        if col >= s.batch * len_out {
            start = -8;
        }
        if MODE == SPLIT {
            // Even positions read dz[a], dz[a - 1]; odd ones dz[a + 1], dz[a].
            let first = i32(j) + i32(parity());
            for (var o = 0u; o < s.cin; o++) {
                tile_put(2u * o, c, dz_at(b, o, select(first, -1, start == -8)));
                tile_put(2u * o + 1u, c, dz_at(b, o, select(first - 1, -1, start == -8)));
            }
            continue;
        }
        for (var i = 0u; i < s.cin; i++) {
            let v0 = input_at(b, i, start);
            let v1 = input_at(b, i, start + 1);
            let v2 = input_at(b, i, start + 2);
            if MODE == POOL {
                let v3 = input_at(b, i, start + 3);
                tile_put(3u * i, c, v0 + v1);
                tile_put(3u * i + 1u, c, v1 + v2);
                tile_put(3u * i + 2u, c, v2 + v3);
            } else {
                tile_put(3u * i, c, v0);
                tile_put(3u * i + 1u, c, v1);
                tile_put(3u * i + 2u, c, v2);
            }
        }
    }
}

@compute @workgroup_size(16)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let col0 = (wg.x + wg.y * nwg.x) * TILE_COLS;
    let columns = s.batch * len_out();
    if col0 >= columns {
        return;
    }
    stage(lane, col0);
    workgroupBarrier();
    for (var o0 = 0u; o0 < s.rows; o0 += TILE_ROWS) {
        tile_multiply(lane, o0, col0, k_len(), min(TILE_COLS, columns - col0));
    }
}

@group(0) @binding(1) var<storage, read> weights: array<f32>;        // the parameter slab
@group(0) @binding(2) var<storage, read_write> packing: array<f32>;  // [k][rows]

@compute @workgroup_size(64)
fn pack_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let transpose = (s.flags & TRANSPOSE) != 0u;
    let pairs = (s.flags & PAIRS) != 0u;
    // Rows of the packed weight are output channels of the product it serves.
    let outs = select(s.cout, s.cin, transpose);
    let ins = select(s.cin, s.cout, transpose);
    if idx >= select(3u, 4u, pairs) * ins * s.rows {
        return;
    }
    let k = idx / s.rows;
    let o = tile_packed_row(idx - k * s.rows);
    var v = 0.0;
    if o < outs && pairs {
        // k = parity * 2 ins + 2 i + q, rows over the conv's inputs (transposed).
        let odd = k >= 2u * ins;
        let kk = k - select(0u, 2u * ins, odd);
        let i = kk / 2u;
        let q = kk - 2u * i;
        let at = s.weight + (i * s.cin + o) * 3u;
        let w = vec3(weights[at], weights[at + 1u], weights[at + 2u]);
        if odd {
            v = select(w.y + w.z, w.x, q == 0u);
        } else {
            v = select(w.z, w.x + w.y, q == 0u);
        }
    } else if o < outs {
        let i = k / 3u;
        let t = k - 3u * i;
        if transpose {
            v = weights[s.weight + (i * s.cin + o) * 3u + 2u - t];
        } else {
            v = weights[s.weight + (o * s.cin + i) * 3u + t];
        }
    }
    if (s.flags & HALVE) != 0u {
        v *= 0.5;
    }
    packing[idx] = v;
}
