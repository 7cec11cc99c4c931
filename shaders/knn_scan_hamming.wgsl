// kNN by Hamming distance over byte codes, first pass over one slice of the database
// (after knn_common.wgsl and knn_append.wgsl): knn_scan.wgsl's role for codes.
// Workgroup (x, y) compares query tile y (16 queries) with row tile x of the slice (256
// rows) and appends every row within the query's current k-th distance to that query's
// candidate list; knn_select.wgsl then merges the candidates into the query's top k.
// The screen is exact, and keeps rows tied with the k-th (<=, not <): a tied row may
// still win on its smaller row number.
//
// Each invocation owns 4 rows x 16 queries as sixteen vec4<u32> of byte-lane counts
// (`differing_lanes`), fed by the query tile from workgroup memory (a broadcast) and
// one word per row from the database (contiguous across invocations). The whole query
// tile sits in workgroup memory, 16 KiB at the widest code (16 queries x 256 words), so
// the word loop needs no barrier (which would take the accumulators out of registers on
// lavapipe); 32 queries would not fit lavapipe's 32 KiB beside the rest.
//
// Short strings: CGK codes end in a run of the padding byte 0x80. Each row's used length
// (its words up to the last one that is not all padding) comes with the chunk, the
// staging finds the queries'; past both lengths both codes are padding and differ
// nowhere, so an invocation stops at the longest of its rows and the tile's queries.

const QT: u32 = 16u;          // queries per tile
const RT: u32 = 256u;         // rows per tile: 4 per invocation
const PADDING: u32 = 0x80808080u;
const LANE_WORDS: u32 = 255u; // words a byte lane counts before it must be folded

@group(0) @binding(1) var<storage, read> queries: array<u32>;        // [batch, dim] code words
@group(0) @binding(2) var<storage, read> database: array<u32>;       // [dim, stride]
@group(0) @binding(3) var<storage, read> used: array<u32>;           // [stride] used words per row
@group(0) @binding(4) var<storage, read> lists: array<u32>;          // [batch, k] x (distance bits, row)

// qs[4 w + g]: word w of the tile's queries 4 g .. 4 g + 3.
var<workgroup> qs: array<vec4<u32>, 4u * DMAX>;
// Per 4-query group g: a row is a candidate of a query when its distance is below this.
var<workgroup> limit: array<vec4<u32>, 4>;
// Longest used length of the tile's queries.
var<workgroup> queries_used: atomic<u32>;

@compute @workgroup_size(64)
fn scan(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let q0 = wg.y * QT;
    if t < QT {
        let q = q0 + t;
        var below = 0u;
        if q < p.batch {
            below = NONE;
            if p.first_slice == 0u {
                let kth = bitcast<f32>(lists[2u * (q * p.k + p.k - 1u)]);
                if kth < INF {
                    below = u32(kth) + 1u;
                }
            }
            var n = p.dim;
            while n > 0u && queries[q * p.dim + n - 1u] == PADDING {
                n--;
            }
            atomicMax(&queries_used, n);
        }
        limit[t / 4u][t % 4u] = below;
    }
    for (var i = t; i < 4u * p.dim; i += 64u) {
        let w = i / 4u;
        let q = q0 + 4u * (i % 4u);
        qs[i] = vec4(query_word(q, w), query_word(q + 1u, w), query_word(q + 2u, w),
                     query_word(q + 3u, w));
    }
    workgroupBarrier();

    // The register tile; no barrier from here on, so lavapipe keeps it in registers.
    let r0 = p.slice_start + wg.x * RT + t;
    let words = max(max(max(row_used(r0), row_used(r0 + 64u)),
                        max(row_used(r0 + 128u), row_used(r0 + 192u))),
                    atomicLoad(&queries_used));
    // d<row><group>: distances of row r0 + 64 row to the queries of 4-query group.
    var d00 = vec4<u32>(); var d01 = vec4<u32>(); var d02 = vec4<u32>(); var d03 = vec4<u32>();
    var d10 = vec4<u32>(); var d11 = vec4<u32>(); var d12 = vec4<u32>(); var d13 = vec4<u32>();
    var d20 = vec4<u32>(); var d21 = vec4<u32>(); var d22 = vec4<u32>(); var d23 = vec4<u32>();
    var d30 = vec4<u32>(); var d31 = vec4<u32>(); var d32 = vec4<u32>(); var d33 = vec4<u32>();
    for (var start = 0u; start < words; start += LANE_WORDS) {
        // a<row><group>: the same as byte-lane counts over this block of words.
        var a00 = vec4<u32>(); var a01 = vec4<u32>(); var a02 = vec4<u32>(); var a03 = vec4<u32>();
        var a10 = vec4<u32>(); var a11 = vec4<u32>(); var a12 = vec4<u32>(); var a13 = vec4<u32>();
        var a20 = vec4<u32>(); var a21 = vec4<u32>(); var a22 = vec4<u32>(); var a23 = vec4<u32>();
        var a30 = vec4<u32>(); var a31 = vec4<u32>(); var a32 = vec4<u32>(); var a33 = vec4<u32>();
        let end = min(start + LANE_WORDS, words);
        for (var w = start; w < end; w++) {
            let at = w * p.stride + r0;
            let x0 = database[at];
            let x1 = database[at + 64u];
            let x2 = database[at + 128u];
            let x3 = database[at + 192u];
            let g0 = qs[4u * w];
            let g1 = qs[4u * w + 1u];
            let g2 = qs[4u * w + 2u];
            let g3 = qs[4u * w + 3u];
            a00 += lanes4(x0, g0); a01 += lanes4(x0, g1); a02 += lanes4(x0, g2); a03 += lanes4(x0, g3);
            a10 += lanes4(x1, g0); a11 += lanes4(x1, g1); a12 += lanes4(x1, g2); a13 += lanes4(x1, g3);
            a20 += lanes4(x2, g0); a21 += lanes4(x2, g1); a22 += lanes4(x2, g2); a23 += lanes4(x2, g3);
            a30 += lanes4(x3, g0); a31 += lanes4(x3, g1); a32 += lanes4(x3, g2); a33 += lanes4(x3, g3);
        }
        d00 += sums4(a00); d01 += sums4(a01); d02 += sums4(a02); d03 += sums4(a03);
        d10 += sums4(a10); d11 += sums4(a11); d12 += sums4(a12); d13 += sums4(a13);
        d20 += sums4(a20); d21 += sums4(a21); d22 += sums4(a22); d23 += sums4(a23);
        d30 += sums4(a30); d31 += sums4(a31); d32 += sums4(a32); d33 += sums4(a33);
    }

    let b0 = candidate_bits(d00, d01, d02, d03, r0);
    let b1 = candidate_bits(d10, d11, d12, d13, r0 + 64u);
    let b2 = candidate_bits(d20, d21, d22, d23, r0 + 128u);
    let b3 = candidate_bits(d30, d31, d32, d33, r0 + 192u);
    // At most once; a loop rather than an if, as in knn_scan.wgsl (lavapipe skips a loop
    // whose lanes are all done, but runs an if's body masked).
    var pending = (b0 | b1 | b2 | b3) != 0u;
    while pending {
        pending = false;
        append(b0, r0, q0);
        append(b1, r0 + 64u, q0);
        append(b2, r0 + 128u, q0);
        append(b3, r0 + 192u, q0);
    }
}

// Word `w` of query `q`; a query past the batch is all padding (and never a candidate's).
fn query_word(q: u32, w: u32) -> u32 {
    if q < p.batch {
        return queries[q * p.dim + w];
    }
    return PADDING;
}

fn in_slice(row: u32) -> bool {
    return row < p.slice_end && row < p.rows;
}

// Used words of a row; none for rows outside the slice, whose distances are not used.
fn row_used(row: u32) -> u32 {
    return select(0u, used[row], in_slice(row));
}

// Byte-lane counts of the differences between row word `x` and one word of 4 queries.
fn lanes4(x: u32, q: vec4<u32>) -> vec4<u32> {
    return vec4(differing_lanes(x, q.x), differing_lanes(x, q.y), differing_lanes(x, q.z),
                differing_lanes(x, q.w));
}

fn sums4(lanes: vec4<u32>) -> vec4<u32> {
    return vec4(lane_sum(lanes.x), lane_sum(lanes.y), lane_sum(lanes.z), lane_sum(lanes.w));
}

// Bit 4 g + l: the row whose distances to the 4-query groups g are `dg` is a candidate
// of query 4 g + l of the tile. Groups are picked by constant indices: a dynamic index
// would spill the accumulators to memory.
fn candidate_bits(d0: vec4<u32>, d1: vec4<u32>, d2: vec4<u32>, d3: vec4<u32>, row: u32) -> u32 {
    if !in_slice(row) {
        return 0u;
    }
    return group_bits(d0, 0u) | group_bits(d1, 1u) << 4u | group_bits(d2, 2u) << 8u |
        group_bits(d3, 3u) << 12u;
}

fn group_bits(d: vec4<u32>, g: u32) -> u32 {
    return dot(vec4<u32>(d < limit[g]), vec4(1u, 2u, 4u, 8u));
}
