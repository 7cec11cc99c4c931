// Embedding lookup, written channel-major as the convolution wants it:
//   forward:  out[b, c, l] = table[tok[b, l], c]   (PyTorch: embedding(x).permute(0, 2, 1))
//   backward: dtable[v, c] = sum over positions (b, l) holding token v of dout[b, c, l]
// The backward pass gathers instead of scattering (WGSL has no float atomics): the CPU
// groups the positions by token (a counting sort, `positions`) and cuts each token's
// run into pieces of at most PIECE positions; `sum_piece` sums one piece per workgroup,
// in parallel, and `sum_token` adds a token's pieces in order. Fixed-order sums, so the
// result is the same on every run, and no thread loops over all the padding positions.
// With `taps` = 3 and `shift` = 1 the same kernels give the gradient of conv0's folded
// tap tables (ops/tapconv.rs): tap t of token v at position l feeds output position
// l + shift - t, so
//   dT[t, v, c] = sum over positions (b, l) holding v of dout[b, c, l + shift - t].
// Tokens are bytes, four to a word, read with `token_at` (tokens.wgsl, prepended).
struct Shape {
    batch: u32,
    len: u32,     // positions per string
    dim: u32,     // embedding width
    vocab: u32,   // rows of the table; out-of-range tokens are clamped
    table: u32,   // offset of the table in the parameter slab (backward: in `grads`)
    taps: u32,    // backward: tables to fill, [taps, vocab, dim]
    shift: u32,   // backward: output position offset (see above)
    pooled: u32,  // backward: 1 when dout is the gradient after a following AvgPool1d(2)
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;  // u8 [batch, len], packed
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
    let tok = min(token_at(b * s.len + l), s.vocab - 1u);
    out[i] = params[s.table + tok * s.dim + c];
}

// Token-grouped positions (ops/embedding.rs `positions_by_token`), for n = batch * len:
//   [vocab + 1] start of each token's run in the list, then the n positions b * len + l,
//   then [vocab + 1] first piece of each token, then the token of each piece.
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;            // [batch, dim, len]
@group(0) @binding(3) var<storage, read_write> pieces: array<f32>;    // [piece, taps, dim]

const PIECE: u32 = 64u;

// dout[b, c, l], zero outside 0..len. POOLED: dout is the gradient at the output of an
// AvgPool1d(2) that follows, [batch, dim, len / 2], spread over its pairs.
fn dout_at(b: u32, c: u32, l: i32) -> f32 {
    if l < 0 || l >= i32(s.len) {
        return 0.0;
    }
    if s.pooled == 0u {
        return dout[(b * s.dim + c) * s.len + u32(l)];
    }
    let pairs = s.len / 2u;
    let m = u32(l) / 2u;
    if m >= pairs {
        return 0.0;
    }
    return 0.5 * dout[(b * s.dim + c) * pairs + m];
}

// Where the piece tables start.
fn piece_starts() -> u32 {
    return s.vocab + 1u + s.batch * s.len;
}

@compute @workgroup_size(64)
fn sum_piece(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let piece = wg.x + wg.y * nwg.x;
    let starts = piece_starts();
    if piece >= positions[starts + s.vocab] {
        return;
    }
    let v = positions[starts + s.vocab + 1u + piece];
    let first = positions[v] + (piece - positions[starts + v]) * PIECE;
    let end = min(first + PIECE, positions[v + 1u]);
    // Each position is decoded once for all taps (taps is 1 or 3).
    for (var c = tid; c < s.dim; c += 64u) {
        var acc = vec3(0.0);
        for (var k = first; k < end; k++) {
            let p = positions[s.vocab + 1u + k];
            let b = p / s.len;
            let l = i32(p - b * s.len) + i32(s.shift);
            acc.x += dout_at(b, c, l);
            if s.taps == 3u {
                acc.y += dout_at(b, c, l - 1);
                acc.z += dout_at(b, c, l - 2);
            }
        }
        for (var t = 0u; t < s.taps; t++) {
            pieces[(piece * s.taps + t) * s.dim + c] = acc[t];
        }
    }
}

@group(0) @binding(2) var<storage, read> piece_sums: array<f32>;
@group(0) @binding(3) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn sum_token(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= s.taps * s.vocab * s.dim {
        return;
    }
    let c = i % s.dim;
    let v = (i / s.dim) % s.vocab;
    let t = i / (s.dim * s.vocab);
    let starts = piece_starts();
    var acc = 0.0;
    for (var piece = positions[starts + v]; piece < positions[starts + v + 1u]; piece++) {
        acc += piece_sums[(piece * s.taps + t) * s.dim + c];
    }
    grads[s.table + i] = acc;
}
