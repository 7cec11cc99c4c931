// CNN-ED's blocks up to the first ReLU, folded (src/model/cnn_ed.rs, `Prefix`): they are
// affine in the one-hot input, so character c's row after them is the sum, over the
// places l of the string holding c, of their response to an impulse at l (`width` values
// a channel from position first[l]), then the ReLU that ends them. A thread owns a few
// positions of a string (POSITIONS), each in every row of the string (rows (string,
// character) as the conv blocks lay them out, out [rows, 8, len]): it zeroes them, adds
// each place whose response reaches the position (a run: reach[2 pos] .. reach[2 pos +
// 1]) to the row of the character there, then applies the ReLU. Each id is read once,
// not once per character (one thread per row and position was 2x slower on lavapipe).
// It replaces ~M x 200 multiply-adds a row of the layered blocks by a few additions a
// place. Positions past the string's extent after the blocks (extent.wgsl, prepended)
// are zeros, written without reading the string.
struct Shape {
    batch: u32,     // strings
    alphabet: u32,  // C: rows a string; ids >= C (padding, unseen) add nothing
    max_len: u32,   // M: ids a string
    len: u32,       // positions a row after the blocks
    width: u32,     // values a channel of a place's response
    relu: u32,      // 1: the blocks end with a ReLU
    blocks: u32,    // blocks folded: the rows are at level `blocks`
    _pad: u32,
}

const CHANNELS: u32 = 8u;

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;     // [batch, M]
@group(0) @binding(2) var<storage, read> responses: array<f32>;  // [M, 8, width]
@group(0) @binding(3) var<storage, read> first: array<u32>;      // [M]
@group(0) @binding(4) var<storage, read> reach: array<u32>;      // [len, 2]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;  // [batch * C, 8, len]
@group(0) @binding(6) var<storage, read> lengths: array<u32>;    // [batch]

// Channels c0 .. c0 + 3 of place l's response at its offset k.
fn response4(l: u32, c0: u32, k: u32) -> vec4<f32> {
    let at = (l * CHANNELS + c0) * s.width + k;
    let w = s.width;
    return vec4(responses[at], responses[at + w], responses[at + 2u * w], responses[at + 3u * w]);
}

// out[row, ch, pos] for channels c0 .. c0 + 3.
fn out_at(row: u32, ch: u32, pos: u32) -> u32 {
    return (row * CHANNELS + ch) * s.len + pos;
}

fn add4(row: u32, c0: u32, pos: u32, v: vec4<f32>) {
    for (var ch = 0u; ch < 4u; ch++) {
        out[out_at(row, c0 + ch, pos)] += v[ch];
    }
}

// Positions a thread owns (ops/cnn_ed_prefix.rs dispatches for it): pos = k, k +
// per_string, ..., so that neighbouring threads take neighbouring positions.
const POSITIONS: u32 = 4u;

// Zero every row of `string` at `pos`.
fn zero(rows: u32, pos: u32) {
    for (var c = 0u; c < s.alphabet; c++) {
        for (var ch = 0u; ch < CHANNELS; ch++) {
            out[out_at(rows + c, ch, pos)] = 0.0;
        }
    }
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = gid.x + gid.y * nwg.x * 64u;
    let per_string = (s.len + POSITIONS - 1u) / POSITIONS;
    if t >= s.batch * per_string {
        return;
    }
    let string = t / per_string;
    let rows = string * s.alphabet;
    // Two loops, not a branch: lavapipe runs both sides of a branch under a mask.
    let end = min(s.len, extent(lengths[string], s.blocks));
    var pos = t - string * per_string;
    while pos < end {
        zero(rows, pos);
        for (var l = reach[2u * pos]; l < reach[2u * pos + 1u]; l++) {
            let c = tokens[string * s.max_len + l];
            if c < s.alphabet {
                let k = pos - first[l];
                add4(rows + c, 0u, pos, response4(l, 0u, k));
                add4(rows + c, 4u, pos, response4(l, 4u, k));
            }
        }
        if s.relu == 1u {
            for (var c = 0u; c < s.alphabet; c++) {
                for (var ch = 0u; ch < CHANNELS; ch++) {
                    let at = out_at(rows + c, ch, pos);
                    out[at] = max(out[at], 0.0);
                }
            }
        }
        pos += per_string;
    }
    while pos < s.len {
        zero(rows, pos);
        pos += per_string;
    }
}
