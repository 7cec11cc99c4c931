// ReLU in place: x = max(x, 0).
// backward, in place on the gradient, from the forward's output y (y > 0 exactly where
// the input was > 0; PyTorch's gradient at 0 is 0 too): grad = y > 0 ? grad : 0.
struct Shape {
    batch: u32,
    per_item: u32,  // elements per batch item
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.per_item {
        return;
    }
    x[i] = max(x[i], 0.0);
}

@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.per_item {
        return;
    }
    grad[i] = select(0.0, grad[i], y[i] > 0.0);
}
