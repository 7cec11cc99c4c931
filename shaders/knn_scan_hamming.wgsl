// kNN by Hamming distance over byte codes, first pass over one slice of the database
// (after knn_common.wgsl and knn_append.wgsl): knn_scan.wgsl's role for codes.
// Workgroup (x, y) compares query tile y (16 queries) with row tile x of the slice (256
// rows) and appends every row within the query's current k-th distance to that query's
// candidate list; knn_select.wgsl then merges the candidates into the query's top k.
// The screen is exact, in the lists' order (distance, then row number): a row tied
// with the k-th distance is kept only when its row number is smaller. Codes tie often.
//
// Each invocation owns 4 consecutive rows x 16 queries as sixteen vec4<u32> of
// distances, fed by the query tile from workgroup memory (a broadcast) and one vec4 of
// the database a word: its rows' words (contiguous across invocations; one load where
// lavapipe would loop over the lanes once for each of four scalar loads). A word pair
// costs `differing_bytes`, a countOneBits of a mask: on lavapipe as fast as counting per
// byte lane (which must be folded every 255 words), and simpler. The whole query tile
// sits in workgroup memory, 16 KiB at the widest code (16 queries x 256 words), so
// the word loop needs no barrier (which would take the accumulators out of registers on
// lavapipe); 32 queries would not fit lavapipe's 32 KiB beside the rest.
//
// Short strings: CGK codes end in a run of the padding byte 0x80. Each row's used length
// (its words up to the last one that is not all padding) comes with the chunk, the
// staging finds the queries'; past both lengths both codes are padding and differ
// nowhere, so an invocation stops at the longest of its rows and the tile's queries.

const QT: u32 = 16u;          // queries per tile
const RT: u32 = 256u;         // rows per tile: 4 per invocation

@group(0) @binding(1) var<storage, read> queries: array<u32>;        // [batch, dim] code words
@group(0) @binding(2) var<storage, read> database: array<vec4<u32>>; // [dim, stride / 4]
@group(0) @binding(3) var<storage, read> used: array<u32>;           // [stride] used words per row
@group(0) @binding(4) var<storage, read> lists: array<u32>;          // [batch, k] x (distance bits, row)
@group(0) @binding(7) var<storage, read> ids: array<u32>;            // [rows] row numbers of chunk rows

// qs[4 w + g]: word w of the tile's queries 4 g .. 4 g + 3.
var<workgroup> qs: array<vec4<u32>, 4u * DMAX>;
// Per 4-query group g: each query's k-th (distance, row number); a row is a candidate
// when it comes before it.
var<workgroup> kth_distance: array<vec4<u32>, 4>;
var<workgroup> kth_row: array<vec4<u32>, 4>;
// Longest used length of the tile's queries.
var<workgroup> queries_used: atomic<u32>;

@compute @workgroup_size(64)
fn scan(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let q0 = wg.y * QT;
    // Workgroup memory starts undefined (gpu/context.rs).
    if t == 0u {
        atomicStore(&queries_used, 0u);
    }
    workgroupBarrier();
    if t < QT {
        let q = q0 + t;
        // Nothing comes before (0, 0): a query past the batch takes no row.
        var distance = 0u;
        var row = 0u;
        if q < p.batch {
            // Before the list is full every row comes before its empty places.
            distance = NONE;
            if p.first_slice == 0u {
                let at = 2u * (q * p.k + p.k - 1u);
                let kth = bitcast<f32>(lists[at]);
                if kth < INF {
                    distance = u32(kth);
                    row = lists[at + 1u];
                }
            }
            atomicMax(&queries_used, used_words(q));
        }
        kth_distance[t / 4u][t % 4u] = distance;
        kth_row[t / 4u][t % 4u] = row;
    }
    for (var i = t; i < 4u * p.dim; i += 64u) {
        let w = i / 4u;
        let q = q0 + 4u * (i % 4u);
        qs[i] = vec4(query_word(q, w), query_word(q + 1u, w), query_word(q + 2u, w),
                     query_word(q + 3u, w));
    }
    workgroupBarrier();

    // The register tile; no barrier from here on, so lavapipe keeps it in registers.
    let r0 = p.slice_start + wg.x * RT + 4u * t;
    let words = max(max(max(row_used(r0), row_used(r0 + 1u)),
                        max(row_used(r0 + 2u), row_used(r0 + 3u))),
                    atomicLoad(&queries_used));
    // d<row><group>: distances of row r0 + row to the queries of 4-query group.
    var d00 = vec4<u32>(); var d01 = vec4<u32>(); var d02 = vec4<u32>(); var d03 = vec4<u32>();
    var d10 = vec4<u32>(); var d11 = vec4<u32>(); var d12 = vec4<u32>(); var d13 = vec4<u32>();
    var d20 = vec4<u32>(); var d21 = vec4<u32>(); var d22 = vec4<u32>(); var d23 = vec4<u32>();
    var d30 = vec4<u32>(); var d31 = vec4<u32>(); var d32 = vec4<u32>(); var d33 = vec4<u32>();
    for (var w = 0u; w < words; w++) {
        // r0 and the stride are multiples of 4.
        let x = database[(w * p.stride + r0) / 4u];
        let x0 = x.x;
        let x1 = x.y;
        let x2 = x.z;
        let x3 = x.w;
        let g0 = qs[4u * w];
        let g1 = qs[4u * w + 1u];
        let g2 = qs[4u * w + 2u];
        let g3 = qs[4u * w + 3u];
        d00 += differing4(x0, g0); d01 += differing4(x0, g1); d02 += differing4(x0, g2); d03 += differing4(x0, g3);
        d10 += differing4(x1, g0); d11 += differing4(x1, g1); d12 += differing4(x1, g2); d13 += differing4(x1, g3);
        d20 += differing4(x2, g0); d21 += differing4(x2, g1); d22 += differing4(x2, g2); d23 += differing4(x2, g3);
        d30 += differing4(x3, g0); d31 += differing4(x3, g1); d32 += differing4(x3, g2); d33 += differing4(x3, g3);
    }

    let b0 = candidate_bits(d00, d01, d02, d03, r0);
    let b1 = candidate_bits(d10, d11, d12, d13, r0 + 1u);
    let b2 = candidate_bits(d20, d21, d22, d23, r0 + 2u);
    let b3 = candidate_bits(d30, d31, d32, d33, r0 + 3u);
    // At most once; a loop rather than an if, as in knn_scan.wgsl (lavapipe skips a loop
    // whose lanes are all done, but runs an if's body masked).
    var pending = (b0 | b1 | b2 | b3) != 0u;
    while pending {
        pending = false;
        append(b0, r0, q0);
        append(b1, r0 + 1u, q0);
        append(b2, r0 + 2u, q0);
        append(b3, r0 + 3u, q0);
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

// Differing bytes of row word `x` and one word of 4 queries.
fn differing4(x: u32, q: vec4<u32>) -> vec4<u32> {
    return vec4(differing_bytes(x, q.x), differing_bytes(x, q.y), differing_bytes(x, q.z),
                differing_bytes(x, q.w));
}

// Bit 4 g + l: the row whose distances to the 4-query groups g are `dg` is a candidate
// of query 4 g + l of the tile. Groups are picked by constant indices: a dynamic index
// would spill the accumulators to memory.
fn candidate_bits(d0: vec4<u32>, d1: vec4<u32>, d2: vec4<u32>, d3: vec4<u32>, row: u32) -> u32 {
    if !in_slice(row) {
        return 0u;
    }
    let id = vec4(ids[row]);
    return group_bits(d0, id, 0u) | group_bits(d1, id, 1u) << 4u |
        group_bits(d2, id, 2u) << 8u | group_bits(d3, id, 3u) << 12u;
}

fn group_bits(d: vec4<u32>, id: vec4<u32>, g: u32) -> u32 {
    let kth = kth_distance[g];
    let before = (d < kth) | ((d == kth) & (id < kth_row[g]));
    return dot(vec4<u32>(before), vec4(1u, 2u, 4u, 8u));
}
