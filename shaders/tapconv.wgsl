// Embedding + Conv1d(k3, pad 1) + AvgPool1d(2) + ReLU for inference, folded.
//
// The embedding is a lookup, so conv0(embedding(tok)) at position l is
//   bias[o] + sum_t T[t, tok[l + t - 1], o]   (taps at positions outside 0..len add 0)
// with the tap tables T[t, c, o] = sum_i w[o, i, t] * table[c, i], [3, vocab, cout].
// A padding token 0 inside the string is a real token (row 0 of the table); only the
// conv's zero padding outside 0..len contributes nothing.
//   fold:    builds T from the parameter slab (run once per set of weights).
//   forward: y[b, o, j] = relu(0.5 * (conv(2j) + conv(2j + 1))), [batch, cout, len / 2].
struct Shape {
    batch: u32,
    len: u32,     // positions per string
    vocab: u32,   // rows of the embedding table; out-of-range tokens are clamped
    dim: u32,     // embedding width = conv input channels
    cout: u32,
    table: u32,   // offset of the embedding table [vocab, dim] in the parameter slab
    weight: u32,  // offset of the conv weight [cout, dim, 3]
    bias: u32,    // offset of the conv bias [cout]
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read_write> taps: array<f32>;  // [3, vocab, cout]
@group(0) @binding(3) var<storage, read> tokens: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn fold(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= 3u * s.vocab * s.cout {
        return;
    }
    let o = idx % s.cout;
    let c = (idx / s.cout) % s.vocab;
    let t = idx / (s.cout * s.vocab);
    var acc = 0.0;
    for (var i = 0u; i < s.dim; i++) {
        acc += params[s.weight + (o * s.dim + i) * 3u + t] * params[s.table + c * s.dim + i];
    }
    taps[idx] = acc;
}

// sum_t T[t, tok[l + t - 1], o] for the conv output at position l (no bias).
fn conv_at(b: u32, o: u32, l: u32) -> f32 {
    var acc = 0.0;
    for (var t = 0u; t < 3u; t++) {
        let pos = i32(l + t) - 1;
        if pos >= 0 && pos < i32(s.len) {
            let tok = min(tokens[b * s.len + u32(pos)], s.vocab - 1u);
            acc += taps[(t * s.vocab + tok) * s.cout + o];
        }
    }
    return acc;
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let len_out = s.len / 2u;
    let idx = gid.x + gid.y * nwg.x * 64u;
    if idx >= s.batch * s.cout * len_out {
        return;
    }
    let j = idx % len_out;
    let o = (idx / len_out) % s.cout;
    let b = idx / (len_out * s.cout);
    let pooled = 0.5 * (conv_at(b, o, 2u * j) + conv_at(b, o, 2u * j + 1u));
    y[idx] = max(params[s.bias + o] + pooled, 0.0);
}
