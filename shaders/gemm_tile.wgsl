// The register tile of conv1d, linear, weight_grad and tapconv (prepended to their
// sources after a line `const KMAX: u32 = ...;`, and followed by tile_product.wgsl and
// the device's reader): one workgroup of 16 invocations computes the product
//   Y[o, col] = sum_{k < K} W[k, o] * B[k, col]      (K <= KMAX)
// for every row o and 32 columns col0 .. col0 + 31.
//   - B's 32 columns are staged whole in workgroup memory by the including shader
//     (`tile_put`), once, behind a single barrier. Each step k of the full 32-column
//     product (tile_product.wgsl) then reads B[k, 0..31] with `tile_columns`, from one
//     of two readers that the op appends for its device (`ops::TileReads`):
//     tile_reads_shared.wgsl (every invocation reads all 32) or tile_reads_subgroup.wgsl
//     (each reads four, shared by subgroup broadcast). The narrow products (4 or 16
//     columns) read tile_b directly.
//   - W comes from the including shader's `tile_rows(k, o)`: W[k, o + 16 r] for
//     r = 0..3 as one vec4. Packed weights ([K][rows], rows a multiple of 64, zero past
//     the layer) keep those four side by side, so each is one 16-byte load and the 16
//     invocations read 256 consecutive bytes.
//   - Each invocation holds rows o0 + lane + 16 r (r = 0..3) x 32 columns.
// The including shader also provides `tile_store(o, col, value)` for each result.

const TILE_COLS: u32 = 32u;
const TILE_ROWS: u32 = 64u;
const TILE_LANES: u32 = 16u;

// A packed weight [K][rows] keeps, in each block of 64 rows, invocation l's four rows
// l, l + 16, l + 32, l + 48 side by side: the row at position p of a packed row is
fn tile_packed_row(p: u32) -> u32 {
    let within = p % TILE_ROWS;
    return (p - within) + (within % 4u) * TILE_LANES + within / 4u;
}

// The vec4 of a packed weight, read as array<vec4<f32>>, holding rows o, o + 16, o + 32,
// o + 48 at k (o = o0 + lane, o0 a multiple of 64).
fn tile_packed_vec4(k: u32, o: u32, rows: u32) -> u32 {
    return (k * rows + o - o % TILE_ROWS) / 4u + o % TILE_ROWS;
}

// tile_b[h * KMAX + k] column c holds B[k, col0 + 16 h + 4 c .. + 3].
var<workgroup> tile_b: array<mat4x4<f32>, 2u * KMAX>;

// The staged B[k, col0 + 16 h .. + 15] (column 4 c + l is m[c][l]), and its columns
// 4 c .. 4 c + 3: what the reader reads.
fn tile_half(h: u32, k: u32) -> mat4x4<f32> {
    return tile_b[h * KMAX + k];
}

fn tile_quarter(h: u32, k: u32, c: u32) -> vec4<f32> {
    return tile_b[h * KMAX + k][c];
}

// B[k, col0 + c] = v, for c < 32.
fn tile_put(k: u32, c: u32, v: f32) {
    tile_b[(c / 16u) * KMAX + k][(c / 4u) % 4u][c % 4u] = v;
}

// After staging and a barrier: multiply, for rows o0 .. o0 + 63, and store. `cols` is
// how many of the 32 columns are real (col0 + cols <= the product's columns): a tile
// with at most 4 or 16 of them multiplies only those (a batch of one string, the last
// tile of a layer), at 1/8 or 1/2 of the work. Where the reader runs four steps a trip
// (lavapipe), the full product beats the 16-column one even at 5 real columns (1.3x at
// batch 16).
fn tile_multiply(lane: u32, o0: u32, col0: u32, k_len: u32, cols: u32) {
    let o = lane + o0;
    var sums: TileSums;
    if cols <= 4u {
        sums = tile_multiply_4(o, k_len);
    } else if cols <= 16u && !FOUR_STEP_TRIPS {
        sums = tile_multiply_16(o, k_len);
    } else {
        sums = tile_multiply_32(o, k_len);
    }
    tile_store_sums(o, col0, cols, sums);
}

// An invocation's sums: rows o + 16 r at columns 16 h .. 16 h + 15 in [2 r + h]
// (column 16 h + 4 c + l is [2 r + h][c][l]).
alias TileSums = array<mat4x4<f32>, 8>;

fn tile_multiply_32(o: u32, k_len: u32) -> TileSums {
    let t = tile_product(o, o, k_len);
    return TileSums(t.a00, t.a01, t.a10, t.a11, t.a20, t.a21, t.a30, t.a31);
}

fn tile_multiply_16(o: u32, k_len: u32) -> TileSums {
    var a0 = mat4x4<f32>(); var a1 = mat4x4<f32>();
    var a2 = mat4x4<f32>(); var a3 = mat4x4<f32>();
    for (var k = 0u; k < k_len; k++) {
        let w = tile_rows(k, o);
        let lo = tile_b[k];
        a0 += lo * w.x; a1 += lo * w.y; a2 += lo * w.z; a3 += lo * w.w;
    }
    let zero = mat4x4<f32>();
    return TileSums(a0, zero, a1, zero, a2, zero, a3, zero);
}

fn tile_multiply_4(o: u32, k_len: u32) -> TileSums {
    var a0 = vec4<f32>(); var a1 = vec4<f32>();
    var a2 = vec4<f32>(); var a3 = vec4<f32>();
    for (var k = 0u; k < k_len; k++) {
        let w = tile_rows(k, o);
        let b = tile_b[k][0];
        a0 += b * w.x; a1 += b * w.y; a2 += b * w.z; a3 += b * w.w;
    }
    let zero = vec4<f32>();
    return TileSums(
        mat4x4<f32>(a0, zero, zero, zero), mat4x4<f32>(),
        mat4x4<f32>(a1, zero, zero, zero), mat4x4<f32>(),
        mat4x4<f32>(a2, zero, zero, zero), mat4x4<f32>(),
        mat4x4<f32>(a3, zero, zero, zero), mat4x4<f32>(),
    );
}

// Store the first `cols` columns of `sums`. One loop whose length the compiler does not
// know, rather than 128 unrolled stores: each `tile_store` inlined 128 times made
// lavapipe take ~0.2 s to build a pipeline (0.02-0.04 s now).
fn tile_store_sums(o: u32, col0: u32, cols: u32, sums: TileSums) {
    var s = sums;
    for (var c = 0u; c < cols; c++) {
        for (var r = 0u; r < 4u; r++) {
            tile_store(o + 16u * r, col0 + c, s[2u * r + c / 16u][(c / 4u) % 4u][c % 4u]);
        }
    }
}
