// Linear with bias (PyTorch layout, w is [out, in]), optionally followed by ReLU:
// y[b, o] = act(bias[o] + sum_i w[o, i] * x[b, i])
// transpose_weight: w^T [in, out] and a zero bias into a scratch buffer, so that
// `forward` over (w^T, in <-> out) is the input gradient dx[b, i] = sum_o dy[b, o] w[o, i].
//
// Tiled: a workgroup owns TB consecutive rows of x and loops over tiles of TO outputs;
// per chunk of KC inputs it stages w[o-tile, chunk] and x[rows, chunk] in workgroup
// memory, and each of its 64 threads accumulates a 4 (outputs) x 8 (rows) register tile.
struct Shape {
    batch: u32,
    fan_in: u32,
    fan_out: u32,
    weight: u32,  // offset of w [fan_out, fan_in] in the parameter slab
    bias: u32,    // offset of bias [fan_out]
    relu: u32,    // 1: fused ReLU
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const TO: u32 = 64u;  // outputs per tile (16 threads x 4)
const TB: u32 = 32u;  // rows per workgroup (4 threads x 8)
const KC: u32 = 16u;  // inputs staged at once

var<workgroup> ws: array<vec4<f32>, 256>;  // [KC][TO / 4]
var<workgroup> xs: array<vec4<f32>, 128>;  // [KC][TB / 4]

fn load_w(o: u32, k: u32) -> f32 {
    if o >= s.fan_out || k >= s.fan_in {
        return 0.0;
    }
    return params[s.weight + o * s.fan_in + k];
}

fn load_x(b: u32, k: u32) -> f32 {
    if b >= s.batch || k >= s.fan_in {
        return 0.0;
    }
    return x[b * s.fan_in + k];
}

@compute @workgroup_size(64)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let r0 = (wg.x + wg.y * nwg.x) * TB;
    if r0 >= s.batch {
        return;
    }
    let og = tid % 16u;  // outputs o0 + og * 4 + 0..4
    let rg = tid / 16u;  // rows r0 + rg * 8 + 0..8
    for (var o0 = 0u; o0 < s.fan_out; o0 += TO) {
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var a2 = vec4<f32>(0.0);
        var a3 = vec4<f32>(0.0);
        var a4 = vec4<f32>(0.0);
        var a5 = vec4<f32>(0.0);
        var a6 = vec4<f32>(0.0);
        var a7 = vec4<f32>(0.0);
        for (var k0 = 0u; k0 < s.fan_in; k0 += KC) {
            for (var r = 0u; r < 4u; r++) {
                let v = tid + r * 64u;
                let k = k0 + v / 16u;
                let o = o0 + (v % 16u) * 4u;
                ws[v] = vec4<f32>(load_w(o, k), load_w(o + 1u, k), load_w(o + 2u, k), load_w(o + 3u, k));
            }
            // Consecutive threads read consecutive k of one row (coalesced).
            for (var r = 0u; r < 2u; r++) {
                let v = tid + r * 64u;
                let k = k0 + v % KC;
                let b = r0 + (v / KC) * 4u;
                xs[(v % KC) * 8u + v / KC] =
                    vec4<f32>(load_x(b, k), load_x(b + 1u, k), load_x(b + 2u, k), load_x(b + 3u, k));
            }
            workgroupBarrier();
            for (var q = 0u; q < KC; q++) {
                let w = ws[q * 16u + og];
                let b0 = xs[q * 8u + rg * 2u];
                let b1 = xs[q * 8u + rg * 2u + 1u];
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
        for (var q = 0u; q < 8u; q++) {
            let b = r0 + rg * 8u + q;
            if b >= s.batch {
                break;
            }
            for (var r = 0u; r < 4u; r++) {
                let o = o0 + og * 4u + r;
                if o < s.fan_out {
                    var v = params[s.bias + o] + acc[q][r];
                    if s.relu == 1u {
                        v = max(v, 0.0);
                    }
                    y[b * s.fan_out + o] = v;
                }
            }
        }
    }
}

@group(0) @binding(1) var<storage, read> weights: array<f32>;           // the parameter slab
@group(0) @binding(2) var<storage, read_write> transposed: array<f32>;  // [in, out] ++ [in] zeros

@compute @workgroup_size(64)
fn transpose_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let n = s.fan_in * s.fan_out;
    if idx >= n + s.fan_in {
        return;
    }
    if idx >= n {
        transposed[idx] = 0.0;
        return;
    }
    let o = idx % s.fan_out;
    let i = idx / s.fan_out;
    transposed[idx] = weights[s.weight + o * s.fan_in + i];
}
