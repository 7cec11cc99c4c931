// Weight and bias gradients of a conv1d (kernel `taps`, zero padding `pad`, stride 1)
// or, with len 1, taps 1 and pad 0, of a linear layer, after gemm_tile.wgsl:
//   dw[o, i, t] = sum_{b, l} dy[b, o, l] * x[b, i, l + t - pad]
//   db[o]       = sum_{b, l} dy[b, o, l]
// and, POOLED, of a conv block's conv + AvgPool1d(2) from the gradient dz at the pooled
// output (ReLU already undone), folded like the forward: with p[m] = x[m - 1] + x[m],
//   dw[o, i, t] = 1/2 sum_{b, j} dz[b, o, j] * p[b, i, 2j + t],   db[o] = sum_{b, j} dz[b, o, j]
// at half the reduction length of the unfolded conv.
// Both are the tile's product  G[o, col] = sum_r A[o, r] * B[r, col]  with the reduction r
// over every (string, position), A = dy, col = i * taps + t and, with a bias, a last
// column of ones. A is read like a conv's weight: `pack_dy` first lays dy out as
// [r][rows] in the tile's packed order, so the product loads each invocation's four rows
// as one vec4 (dy's own layout puts neighbouring rows a string's length apart).
// The reduction is long and the output small, so it is split: `partial`
// computes the product over one segment of KMAX reduction indices per workgroup row,
// and `reduce` adds this batch's segments in order. No atomics, so the sum is the same
// on every run (resumed training must reproduce weights bit for bit).
struct Shape {
    batch: u32,
    cin: u32,
    cout: u32,
    len: u32,       // input length
    taps: u32,
    pad: u32,
    weight: u32,    // offset of dw [cout, cin, taps] in `grads`
    bias: u32,      // offset of db [cout]
    _pad: u32,
    pooled: u32,    // 1: the pooled block (taps 3, pad 1; dy has len / 2 positions)
    rows: u32,      // cout rounded up to 64
    has_bias: u32,  // 1: db too (the column of ones)
}

@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> packed_dy: array<vec4<f32>>;    // [r][rows], packed
@group(0) @binding(2) var<storage, read> x: array<f32>;                  // [batch, cin, len]
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;     // [segments, cout, cols]

fn cols() -> u32 {
    return s.cin * s.taps + s.has_bias;
}

// Positions per string of the reduction: dy's length.
fn positions() -> u32 {
    return select(s.len, s.len / 2u, s.pooled == 1u);
}

// The first reduction index of this workgroup's segment.
var<private> segment_start: u32;

fn tile_rows(k: u32, o: u32) -> vec4<f32> {
    return packed_dy[tile_packed_vec4(segment_start + k, o, s.rows)];
}

fn tile_store(o: u32, col: u32, v: f32) {
    let ncols = cols();
    if o >= s.cout || col >= ncols {
        return;
    }
    // The pool's mean halves the weight gradient, not the bias's.
    let half = s.pooled == 1u && col < s.cin * s.taps;
    partials[(segment_start / KMAX * s.cout + o) * ncols + col] = select(v, 0.5 * v, half);
}

fn x_at(row: u32, pos: i32) -> f32 {
    if pos < 0 || pos >= i32(s.len) {
        return 0.0;
    }
    return x[row + u32(pos)];
}

// Stages B[r, col] for the segment's r < k_len as tile column c: x at the tap's position
// (a pair sum when pooled), 1 in the bias column, 0 past the columns. The reduction
// index r = (b, l) advances string by string, without a division per value.
fn stage_column(c: u32, col: u32, k_len: u32) {
    let kk = s.cin * s.taps;
    if col >= kk {
        let v = select(0.0, 1.0, col < cols());
        for (var r = 0u; r < k_len; r++) {
            tile_put(r, c, v);
        }
        return;
    }
    let i = col / s.taps;
    let t = col - i * s.taps;
    let n = positions();
    var b = segment_start / n;
    var l = segment_start - b * n;
    for (var r = 0u; r < k_len; r++) {
        let row = (b * s.cin + i) * s.len;
        var v: f32;
        if s.pooled == 1u {
            let pos = i32(2u * l + t) - 1;
            v = x_at(row, pos) + x_at(row, pos + 1);
        } else {
            v = x_at(row, i32(l + t) - i32(s.pad));
        }
        tile_put(r, c, v);
        l++;
        if l == n {
            l = 0u;
            b++;
        }
    }
}

@compute @workgroup_size(16)
fn partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let col0 = wg.x * TILE_COLS;
    segment_start = wg.y * KMAX;
    // The grid is sized for the capacity: segments past this batch's do nothing (and
    // `reduce` does not read them).
    if segment_start >= s.batch * positions() {
        return;
    }
    let k_len = min(KMAX, s.batch * positions() - segment_start);
    // Invocation `lane` stages columns col0 + lane and col0 + lane + 16.
    for (var c = lane; c < TILE_COLS; c += TILE_LANES) {
        stage_column(c, col0 + c, k_len);
    }
    workgroupBarrier();
    for (var o0 = 0u; o0 < s.rows; o0 += TILE_ROWS) {
        tile_multiply(lane, o0, col0, k_len, min(TILE_COLS, cols() - min(cols(), col0)));
    }
}

@group(0) @binding(1) var<storage, read> dy: array<f32>;                // [batch, cout, positions]
@group(0) @binding(2) var<storage, read_write> packing: array<f32>;     // [r][rows]

// packing[r * rows + p] = dy at reduction index r = (b, l), channel o = the packed row
// p's (gemm_tile.wgsl), 0 for o >= cout; one invocation per value, `positions * rows`
// per string.
@compute @workgroup_size(64)
fn pack_dy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let n = positions();
    if idx >= s.batch * n * s.rows {
        return;
    }
    let r = idx / s.rows;
    let o = tile_packed_row(idx - r * s.rows);
    let b = r / n;
    var v = 0.0;
    if o < s.cout {
        v = dy[(b * s.cout + o) * n + r - b * n];
    }
    packing[idx] = v;
}

@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(64)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 64u;
    let ncols = cols();
    if idx >= s.cout * ncols {
        return;
    }
    let segments = (s.batch * positions() + KMAX - 1u) / KMAX;
    var sum = 0.0;
    for (var seg = 0u; seg < segments; seg++) {
        sum += parts[seg * s.cout * ncols + idx];
    }
    let o = idx / ncols;
    let k = idx - o * ncols;
    let kk = s.cin * s.taps;
    if k == kk {
        grads[s.bias + o] = sum;
    } else {
        grads[s.weight + o * kk + k] = sum;
    }
}
