// kNN, first pass over one slice of the database (after knn_common.wgsl and
// knn_append.wgsl): workgroup (x, y) screens query tile y (32 queries) against row tile
// x of the slice (256 rows) and appends every row that may beat a query's current k-th
// distance to that query's candidate list; knn_select.wgsl then merges the candidates
// into the query's top k.
//
// The screen is the matrix-product form |x|^2 - 2 q.x + |q|^2, 2 flops per value, held
// in a register tile: each invocation owns 4 consecutive rows x 32 queries as eight 4x4
// matrices (columns = rows' 4-query groups), fed by the query tile from workgroup memory
// (through the device's reader, tile_reads_*.wgsl, appended) and one vec4 of the
// database a step: its rows' words at that dimension (contiguous across invocations; one
// load where lavapipe would loop over the lanes once for each of four scalar loads).
// A row is a candidate when its screen is within the rounding bound EPS (|q|^2 + |x|^2)
// of the k-th distance, so every row whose exact squared distance could make the list
// is kept; select recomputes exact distances, and ties and order come from those.

const QT: u32 = 32u;          // queries per tile
const RT: u32 = 256u;         // rows per tile: 4 per invocation
// Bound on |screen - exact| relative to |q|^2 + |x|^2: the error of an 80-256 term f32
// dot product and norms is below ~170 u = 1e-5; 2^-14 leaves a 6x margin.
const EPS: f32 = 0x1p-14f;
const NEVER: f32 = -0x1.fffffep+127f;

@group(0) @binding(1) var<storage, read> queries: array<u32>;        // [batch, dim] f32 bits
@group(0) @binding(2) var<storage, read> database: array<vec4<u32>>; // [words, stride / 4]
@group(0) @binding(3) var<storage, read> norms: array<f32>;          // [stride] |x|^2
@group(0) @binding(4) var<storage, read> lists: array<u32>;          // [batch, k] x (distance bits, row)

// qs[h * DMAX + d]: column c holds queries 16 h + 4 c .. + 3 of the tile at dimension d.
var<workgroup> qs: array<mat4x4<f32>, 2u * DMAX>;
// The query tile at dimension d, for the reader: queries 16 h .. 16 h + 15, and four.
fn tile_half(h: u32, d: u32) -> mat4x4<f32> {
    return qs[h * DMAX + d];
}

fn tile_quarter(h: u32, d: u32, c: u32) -> vec4<f32> {
    return qs[h * DMAX + d][c];
}

// Per 4-query group g = 4 h + c: the screen's bound (see `near`).
var<workgroup> bound: array<vec4<f32>, 8>;

@compute @workgroup_size(64)
fn scan(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let q0 = wg.y * QT;
    if t < QT {
        let q = q0 + t;
        var norm = 0.0;
        var kth = NEVER;
        if q < p.batch {
            for (var d = 0u; d < p.dim; d++) {
                let v = bitcast<f32>(queries[q * p.dim + d]);
                norm += v * v;
            }
            kth = INF;
            if p.first_slice == 0u {
                kth = bitcast<f32>(lists[2u * (q * p.k + p.k - 1u)]);
            }
        }
        bound[t / 4u][t % 4u] = 0.5 * ((1.0 - EPS) * norm - kth);
    }
    for (var i = t; i < 2u * DMAX; i += 64u) {
        let h = i / DMAX;
        let d = i % DMAX;
        var m = mat4x4<f32>();
        if d < p.dim {
            for (var c = 0u; c < 4u; c++) {
                let q = q0 + 16u * h + 4u * c;
                m[c] = vec4(query_value(q, d), query_value(q + 1u, d),
                            query_value(q + 2u, d), query_value(q + 3u, d));
            }
        }
        qs[i] = m;
    }
    workgroupBarrier();

    // The register tile (tile_product.wgsl); no barrier from here on, so lavapipe keeps
    // it in registers.
    let r0 = p.slice_start + wg.x * RT + 4u * t;
    let a = tile_product(r0, t, p.dim);

    let x0 = half_norm(r0);
    let x1 = half_norm(r0 + 1u);
    let x2 = half_norm(r0 + 2u);
    let x3 = half_norm(r0 + 3u);
    let any_near = near(a.a00, 0u, x0) || near(a.a01, 1u, x0) ||
        near(a.a10, 0u, x1) || near(a.a11, 1u, x1) ||
        near(a.a20, 0u, x2) || near(a.a21, 1u, x2) ||
        near(a.a30, 0u, x3) || near(a.a31, 1u, x3);
    // Rarely taken after the first slice. A loop that runs at most once rather than an
    // if: lavapipe skips a loop whose lanes are all done, but runs an if's body masked.
    var pending = any_near;
    while pending {
        pending = false;
        append(near_bits(a.a00, 0u, x0) | near_bits(a.a01, 1u, x0), r0, q0);
        append(near_bits(a.a10, 0u, x1) | near_bits(a.a11, 1u, x1), r0 + 1u, q0);
        append(near_bits(a.a20, 0u, x2) | near_bits(a.a21, 1u, x2), r0 + 2u, q0);
        append(near_bits(a.a30, 0u, x3) | near_bits(a.a31, 1u, x3), r0 + 3u, q0);
    }
}

fn query_value(q: u32, d: u32) -> f32 {
    if q < p.batch {
        return bitcast<f32>(queries[q * p.dim + d]);
    }
    return 0.0;
}

// The tile's rows: dimension `d` of rows r0 .. r0 + 3 (r0 and the stride are multiples
// of 4). An F16 word holds dimensions 2w and 2w + 1; the second read of a word hits the
// cache.
fn tile_rows(d: u32, r0: u32) -> vec4<f32> {
    let words = database[((d / DIMS_PER_WORD) * p.stride + r0) / 4u];
    if F16 {
        let e = d % 2u;
        return vec4(unpack2x16float(words.x)[e], unpack2x16float(words.y)[e],
                    unpack2x16float(words.z)[e], unpack2x16float(words.w)[e]);
    }
    return bitcast<vec4<f32>>(words);
}

// The screen: a row x is a candidate for query q when
//   |x|^2 + |q|^2 - 2 q.x <= kth + EPS (|q|^2 + |x|^2),
// that is q.x >= (1 - EPS) |x|^2 / 2 + bound[q], bound = ((1 - EPS) |q|^2 - kth) / 2:
// one add and one compare per pair. `half_norm` is the row's part, a value no dot
// product reaches for rows outside the slice.
fn half_norm(row: u32) -> f32 {
    if row >= p.slice_end || row >= p.rows {
        return INF;
    }
    return 0.5 * (1.0 - EPS) * norms[row];
}

// Whether any of the 16 queries of half `h` of the tile may take the row whose dot
// products with them are `dots` (columns: 4-query groups) and half norm `x`. Columns are
// picked by constant indices: a dynamic index would spill the matrix to memory.
fn near(dots: mat4x4<f32>, h: u32, x: f32) -> bool {
    let g = 4u * h;
    return any((dots[0] >= x + bound[g]) | (dots[1] >= x + bound[g + 1u]) |
               (dots[2] >= x + bound[g + 2u]) | (dots[3] >= x + bound[g + 3u]));
}

// The same as bits: bit 16 h + 4 c + l for query 16 h + 4 c + l of the tile.
fn near_bits(dots: mat4x4<f32>, h: u32, x: f32) -> u32 {
    let g = 4u * h;
    let bits = column_bits(dots[0], g, x) | column_bits(dots[1], g + 1u, x) << 4u |
        column_bits(dots[2], g + 2u, x) << 8u | column_bits(dots[3], g + 3u, x) << 12u;
    return bits << (16u * h);
}

fn column_bits(dots: vec4<f32>, g: u32, x: f32) -> u32 {
    return dot(vec4<u32>(dots >= x + bound[g]), vec4(1u, 2u, 4u, 8u));
}
