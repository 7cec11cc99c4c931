// AvgPool1d(2): windows of 2, stride 2, an odd last position is dropped (floor).
// forward:  y[b, c, j] = (x[b, c, 2j] + x[b, c, 2j + 1]) / 2
// backward: dx[b, c, l] = dy[b, c, l / 2] / 2, and 0 at a dropped odd last position
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

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let len_out = s.len_in / 2u;
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.channels * s.len_in {
        return;
    }
    let l = i % s.len_in;
    let row = i / s.len_in;
    let j = l / 2u;
    dx[i] = select(0.0, 0.5 * dy[row * len_out + min(j, len_out - 1u)], j < len_out);
}
