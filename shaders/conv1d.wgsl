// Conv1d, kernel 3, stride 1, zero padding 1, with bias (PyTorch layout):
// y[b, o, l] = bias[o] + sum_{i, t} w[o, i, t] * x[b, i, l + t - 1]
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,
    weight: u32,  // offset of w [cout, cin, 3] in the parameter slab
    bias: u32,    // offset of bias [cout]
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
    if idx >= s.batch * s.cout * s.len {
        return;
    }
    let l = idx % s.len;
    let o = (idx / s.len) % s.cout;
    let b = idx / (s.len * s.cout);
    var acc = params[s.bias + o];
    let has_left = l > 0u;
    let has_right = l + 1u < s.len;
    for (var i = 0u; i < s.cin; i++) {
        let xrow = (b * s.cin + i) * s.len + l;
        let w = s.weight + (o * s.cin + i) * 3u;
        acc += params[w + 1u] * x[xrow];
        if has_left {
            acc += params[w] * x[xrow - 1u];
        }
        if has_right {
            acc += params[w + 2u] * x[xrow + 1u];
        }
    }
    y[idx] = acc;
}
