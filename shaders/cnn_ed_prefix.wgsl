// CNN-ED's blocks up to the first ReLU, folded (src/model/cnn_ed.rs, `Prefix`): they are
// affine in the one-hot input, so character c's row after them is the sum, over the
// places l of the string holding c, of their response to an impulse at l (`width` values
// a channel from position first[l]), then the ReLU that ends them. One thread per (row,
// position), rows (string, character) as the conv blocks lay them out, sums the places
// whose response reaches its position (a run: reach[2 pos] .. reach[2 pos + 1]) and
// writes the 8 channels of out [rows, 8, len]. It replaces ~M x 200 multiply-adds a row
// of the layered blocks by a few comparisons a position.
struct Shape {
    batch: u32,     // strings
    alphabet: u32,  // C: rows a string; ids >= C (padding, unseen) add nothing
    max_len: u32,   // M: ids a string
    len: u32,       // positions a row after the blocks
    width: u32,     // values a channel of a place's response
    relu: u32,      // 1: the blocks end with a ReLU
    _pad0: u32,
    _pad1: u32,
}

const CHANNELS: u32 = 8u;

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;     // [batch, M]
@group(0) @binding(2) var<storage, read> responses: array<f32>;  // [M, 8, width]
@group(0) @binding(3) var<storage, read> first: array<u32>;      // [M]
@group(0) @binding(4) var<storage, read> reach: array<u32>;      // [len, 2]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;  // [batch * C, 8, len]

// Channels c0 .. c0 + 3 of place l's response at its offset k.
fn response4(l: u32, c0: u32, k: u32) -> vec4<f32> {
    let at = (l * CHANNELS + c0) * s.width + k;
    let w = s.width;
    return vec4(responses[at], responses[at + w], responses[at + 2u * w], responses[at + 3u * w]);
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.batch * s.alphabet * s.len {
        return;
    }
    let row = i / s.len;
    let pos = i - row * s.len;
    let string = row / s.alphabet;
    let c = row - string * s.alphabet;
    var lo = vec4<f32>();
    var hi = vec4<f32>();
    for (var l = reach[2u * pos]; l < reach[2u * pos + 1u]; l++) {
        if tokens[string * s.max_len + l] == c {
            let k = pos - first[l];
            lo += response4(l, 0u, k);
            hi += response4(l, 4u, k);
        }
    }
    if s.relu == 1u {
        lo = max(lo, vec4<f32>());
        hi = max(hi, vec4<f32>());
    }
    for (var ch = 0u; ch < 4u; ch++) {
        out[(row * CHANNELS + ch) * s.len + pos] = lo[ch];
        out[(row * CHANNELS + 4u + ch) * s.len + pos] = hi[ch];
    }
}
