// BatchNorm1d over [batch, channels] (PyTorch's, eps and momentum from the uniform).
//   inference:     y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta
//   train_forward: y = (x - mean) * inv_std * gamma + beta with the batch's mean and
//                  biased variance, inv_std = 1 / sqrt(var + eps); saves (mean, inv_std)
//                  for the backward pass and moves the running statistics:
//                  running = (1 - momentum) * running + momentum * batch statistic, the
//                  variance unbiased (var * batch / (batch - 1)) as PyTorch does.
//   backward:      with xhat = (x - mean) * inv_std,
//                  dgamma = sum_b dy * xhat, dbeta = sum_b dy,
//                  dx = gamma * inv_std / batch * (batch * dy - dbeta - xhat * dgamma).
// The training entries run one thread per channel, summing over the batch in order.
struct Shape {
    batch: u32,
    channels: u32,
    gamma: u32,  // offset of gamma [channels] in the parameter slab (and in `grads`)
    beta: u32,   // offset of beta [channels]
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;  // running_mean ++ running_var
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn inference(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= s.batch * s.channels {
        return;
    }
    let c = i % s.channels;
    let inv_std = 1.0 / sqrt(stats[s.channels + c] + s.eps);
    y[i] = (x[i] - stats[c]) * inv_std * params[s.gamma + c] + params[s.beta + c];
}

@group(0) @binding(3) var<storage, read_write> running: array<f32>;  // running_mean ++ running_var
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;    // mean ++ inv_std

@compute @workgroup_size(64)
fn train_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = index(gid, nwg);
    if c >= s.channels {
        return;
    }
    let n = s.batch;
    var sum = 0.0;
    for (var b = 0u; b < n; b++) {
        sum += x[b * s.channels + c];
    }
    let mean = sum / f32(n);
    var sq = 0.0;
    for (var b = 0u; b < n; b++) {
        let d = x[b * s.channels + c] - mean;
        sq += d * d;
    }
    let var_biased = sq / f32(n);
    let inv_std = 1.0 / sqrt(var_biased + s.eps);
    let gamma = params[s.gamma + c];
    let beta = params[s.beta + c];
    for (var b = 0u; b < n; b++) {
        let i = b * s.channels + c;
        y[i] = (x[i] - mean) * inv_std * gamma + beta;
    }
    saved[c] = mean;
    saved[s.channels + c] = inv_std;
    let var_unbiased = sq / f32(max(n, 2u) - 1u);
    running[c] = (1.0 - s.momentum) * running[c] + s.momentum * mean;
    running[s.channels + c] = (1.0 - s.momentum) * running[s.channels + c] + s.momentum * var_unbiased;
}

@group(0) @binding(3) var<storage, read> saved_in: array<f32>;  // mean ++ inv_std
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = index(gid, nwg);
    if c >= s.channels {
        return;
    }
    let n = s.batch;
    let mean = saved_in[c];
    let inv_std = saved_in[s.channels + c];
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var b = 0u; b < n; b++) {
        let i = b * s.channels + c;
        dbeta += dy[i];
        dgamma += dy[i] * (x[i] - mean) * inv_std;
    }
    let k = params[s.gamma + c] * inv_std / f32(n);
    for (var b = 0u; b < n; b++) {
        let i = b * s.channels + c;
        let xhat = (x[i] - mean) * inv_std;
        dx[i] = k * (f32(n) * dy[i] - dbeta - xhat * dgamma);
    }
    grads[s.gamma + c] = dgamma;
    grads[s.beta + c] = dbeta;
}
