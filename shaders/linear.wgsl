// Linear with bias (PyTorch layout, w is [out, in]), optionally followed by ReLU, after
// gemm_tile.wgsl:
//   forward:     y[b, o] = act(bias[o] + sum_i w[o, i] * x[b, i]), the tile's product
//                with k = i and one column per row b of the batch;
//   pack_weight: W[i, o] = w[o, i], [fan_in][rows] in the tile's packed order
//                (gemm_tile.wgsl), zero for o >= fan_out. TRANSPOSE
//                packs W[o, i] = w[o, i] ([fan_out][rows over fan_in]), so that
//                `forward` over it (fan_in <-> fan_out, no bias) is the input gradient
//                dx[b, i] = sum_o dy[b, o] w[o, i] (ops/linear.rs `backward`).
// A reduction longer than the tile stages (KMAX) is split over calls (split-K): each
// covers k0 .. k0 + k_len, the first writes y (with the bias), the later ones ACCUMULATE
// into it, in order, and only the last applies the ReLU.
struct Shape {
    batch: u32,
    fan_in: u32,
    fan_out: u32,
    weight: u32,  // offset of w [fan_out, fan_in] in the parameter slab
    bias: u32,    // offset of bias [fan_out]
    relu: u32,    // 1: fused ReLU
    rows: u32,    // rows of the packed weight: fan_out rounded up to 64
    flags: u32,
    k0: u32,      // forward: this call's first reduction index
    k_len: u32,   // forward: its reduction length (<= KMAX)
}

const TRANSPOSE: u32 = 2u;    // pack_weight: the input gradient's weight
const NO_BIAS: u32 = 4u;      // forward: no bias (the input gradient, split-K calls after the first)
const ACCUMULATE: u32 = 8u;   // forward: add to y (split-K calls after the first)

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> packed: array<vec4<f32>>;   // [fan_in][rows]
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn tile_rows(k: u32, o: u32) -> vec4<f32> {
    return packed[tile_packed_vec4(s.k0 + k, o, s.rows)];
}

fn tile_store(o: u32, b: u32, v: f32) {
    if o >= s.fan_out || b >= s.batch {
        return;
    }
    var value = v;
    let at = b * s.fan_out + o;
    if (s.flags & NO_BIAS) == 0u {
        value += params[s.bias + o];
    }
    if (s.flags & ACCUMULATE) != 0u {
        value += y[at];
    }
    if s.relu == 1u {
        value = max(value, 0.0);
    }
    y[at] = value;
}

@compute @workgroup_size(16)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let b0 = (wg.x + wg.y * nwg.x) * TILE_COLS;
    if b0 >= s.batch {
        return;
    }
    // Invocation `lane` stages rows b0 + lane and b0 + lane + 16 (zeros past the batch).
    for (var c = lane; c < TILE_COLS; c += TILE_LANES) {
        let b = b0 + c;
        for (var i = 0u; i < s.k_len; i++) {
            var v = 0.0;
            if b < s.batch {
                v = x[b * s.fan_in + s.k0 + i];
            }
            tile_put(i, c, v);
        }
    }
    workgroupBarrier();
    for (var o0 = 0u; o0 < s.rows; o0 += TILE_ROWS) {
        tile_multiply(lane, o0, b0, s.k_len, min(TILE_COLS, s.batch - b0));
    }
}

@group(0) @binding(1) var<storage, read> weights: array<f32>;        // the parameter slab
@group(0) @binding(2) var<storage, read_write> packing: array<f32>;  // [k][rows]

@compute @workgroup_size(64)
fn pack_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let transpose = (s.flags & TRANSPOSE) != 0u;
    let outs = select(s.fan_out, s.fan_in, transpose);
    let ins = select(s.fan_in, s.fan_out, transpose);
    if idx >= ins * s.rows {
        return;
    }
    let k = idx / s.rows;
    let o = tile_packed_row(idx - k * s.rows);
    var v = 0.0;
    if o < outs {
        v = weights[s.weight + select(o * s.fan_in + k, k * s.fan_in + o, transpose)];
    }
    packing[idx] = v;
}
