// BatchNorm1d in inference form, over [batch, channels]:
// y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta
struct Shape {
    batch: u32,
    channels: u32,
    gamma: u32,  // offset of gamma [channels] in the parameter slab
    beta: u32,   // offset of beta [channels]
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;  // running_mean ++ running_var
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn inference(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.channels {
        return;
    }
    let c = i % s.channels;
    let inv_std = 1.0 / sqrt(stats[s.channels + c] + s.eps);
    y[i] = (x[i] - stats[c]) * inv_std * params[s.gamma + c] + params[s.beta + c];
}
