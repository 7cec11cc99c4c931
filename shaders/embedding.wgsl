// Embedding lookup, written channel-major as the convolution wants it:
// out[b, c, l] = table[tok[b, l], c]   (PyTorch: embedding(x).permute(0, 2, 1))
struct Shape {
    batch: u32,
    len: u32,     // positions per string
    dim: u32,     // embedding width
    vocab: u32,   // rows of the table; out-of-range tokens are clamped
    table: u32,   // offset of the table in the parameter slab
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> params: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.dim * s.len {
        return;
    }
    let l = i % s.len;
    let c = (i / s.len) % s.dim;
    let b = i / (s.len * s.dim);
    let tok = min(tokens[b * s.len + l], s.vocab - 1u);
    out[i] = params[s.table + tok * s.dim + c];
}
