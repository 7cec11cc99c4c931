// Shared by the scans (knn_scan.wgsl, knn_scan_hamming.wgsl) and knn_select.wgsl
// (prepended by knn.rs, after the constants `HAMMING` (the metric: differing bytes of
// byte codes, else squared Euclidean distance), `F16` (f16 storage), `DMAX` (words per
// query: the vector width rounded up to 4, or the code width / 4) and, for select,
// `KMAX`).
//
// A database chunk is stored twice: by dimension for the scan (word w of row r at
// w * stride + r, stride = rows rounded up to a whole tile, so neighbouring invocations
// read neighbouring words) and by row for the select pass's exact distances (a row's
// words together, so a candidate costs a few cache lines, not one per dimension). A
// word is one f32, or (F16) two IEEE halves for dimensions 2w and 2w + 1, unpacked with
// unpack2x16float (no f16 shader support needed), or (HAMMING) four code bytes. Sums
// are f32; Hamming counts are u32, reported as (exact) f32.

const DIMS_PER_WORD: u32 = select(1u, 2u, F16);
const NONE: u32 = 0xffffffffu;
const INF: f32 = 0x1.fffffep+127f;  // largest f32: above any real distance

struct Params {
    batch: u32,         // queries in this submit
    rows: u32,          // rows of the database chunk
    stride: u32,        // words between consecutive dimensions of a row
    dim: u32,           // words per query: values per vector, or code width / 4
    k: u32,             // list length
    cap: u32,           // candidate slots per query (>= the longest slice)
    slice_start: u32,   // first chunk row of this slice
    slice_end: u32,     // one past its last row
    first_slice: u32,   // 1: the first slice of a search (lists start empty)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// A code word of padding: four CGK padding symbols (128).
const PADDING: u32 = 0x80808080u;

// Query q's used length: its words up to the last one that is not all padding (the
// including shader binds `queries`).
fn used_words(q: u32) -> u32 {
    var n = p.dim;
    while n > 0u && queries[q * p.dim + n - 1u] == PADDING {
        n--;
    }
    return n;
}

// The number of bytes in which two code words differ, without unpacking: bit 7 of a
// byte of y is set when any bit of that byte of a ^ b is.
fn differing_bytes(a: u32, b: u32) -> u32 {
    let x = a ^ b;
    let y = ((x & 0x7f7f7f7fu) + 0x7f7f7f7fu) | x;
    return countOneBits(y & 0x80808080u);
}
