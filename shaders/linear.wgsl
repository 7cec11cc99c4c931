// Linear with bias (PyTorch layout, w is [out, in]), optionally followed by ReLU:
// y[b, o] = act(bias[o] + sum_i w[o, i] * x[b, i])
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

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= s.batch * s.fan_out {
        return;
    }
    let o = idx % s.fan_out;
    let b = idx / s.fan_out;
    var acc = params[s.bias + o];
    let w = s.weight + o * s.fan_in;
    let xb = b * s.fan_in;
    for (var i = 0u; i < s.fan_in; i++) {
        acc += params[w + i] * x[xb + i];
    }
    if s.relu == 1u {
        acc = max(acc, 0.0);
    }
    y[idx] = acc;
}
