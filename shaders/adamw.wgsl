// AdamW as torch.optim.AdamW does it (decoupled weight decay, bias correction), over
// `count` values of the parameter slab from `offset`, with the gradient scaled by the
// clipping factor `norm[1]`:
//   p = p * (1 - lr * wd)
//   m = m + (1 - beta1) * (g - m)           (torch: exp_avg.lerp_(grad, 1 - beta1))
//   v = beta2 * v + (1 - beta2) * g * g
// (1 - beta1 and 1 - beta2 come rounded once from the CPU, as torch's Python floats do:
// 1 - 0.999 in f32 arithmetic would be off by 1.3e-5 relative)
//   p = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
// with step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t) from the CPU.
//   grad_norm: one workgroup; norm[0] = ||g|| over the range, summed in a fixed tree
//   order, and norm[1] = min(1, clip / (||g|| + 1e-6)) (torch's clip_grad_norm_), or 1
//   when clip is 0 (no clipping).
struct Shape {
    count: u32,
    offset: u32,
    decay: f32,      // 1 - lr * wd
    step_size: f32,
    bc2_sqrt: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    clip: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> grads: array<f32>;
@group(0) @binding(2) var<storage, read> norm: array<f32>;  // [norm, clip factor]
@group(0) @binding(3) var<storage, read_write> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(64)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= s.count {
        return;
    }
    let i = s.offset + idx;
    let g = grads[i] * norm[1];
    let p = params[i] * s.decay;
    let mi = m[i] + s.one_minus_beta1 * (g - m[i]);
    let vi = s.beta2 * v[i] + s.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] = p - s.step_size * mi / (sqrt(vi) / s.bc2_sqrt + s.eps);
}

const THREADS: u32 = 256u;
var<workgroup> partial: array<f32, THREADS>;
@group(0) @binding(2) var<storage, read_write> norm_out: array<f32>;

@compute @workgroup_size(256)
fn grad_norm(@builtin(local_invocation_index) tid: u32) {
    var sum = 0.0;
    for (var idx = tid; idx < s.count; idx += THREADS) {
        let g = grads[s.offset + idx];
        sum += g * g;
    }
    partial[tid] = sum;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if tid < width {
            partial[tid] += partial[tid + width];
        }
        workgroupBarrier();
    }
    if tid == 0u {
        let n = sqrt(partial[0]);
        norm_out[0] = n;
        norm_out[1] = select(1.0, min(1.0, s.clip / (n + 1e-6)), s.clip > 0.0);
    }
}
