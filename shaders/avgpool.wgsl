// AvgPool1d(2): windows of 2, stride 2, an odd last position is dropped (floor).
// y[b, c, j] = (x[b, c, 2j] + x[b, c, 2j + 1]) / 2
struct Shape {
    batch: u32,
    channels: u32,
    len_in: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let len_out = s.len_in / 2u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.channels * len_out {
        return;
    }
    let j = i % len_out;
    let row = i / len_out;  // b * channels + c
    let at = row * s.len_in + 2u * j;
    y[i] = 0.5 * (x[at] + x[at + 1u]);
}
