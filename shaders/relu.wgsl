// ReLU in place: x = max(x, 0).
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
