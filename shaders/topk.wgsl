// Top-k selection in workgroup memory, shared by knn.wgsl and knn_merge.wgsl (the Rust
// side prepends this file to each). A workgroup keeps a sorted list of its k best
// (distance, row) pairs; `offer` merges in up to 64 new pairs at a time. Order is
// (distance, row) ascending, so ties go to the smaller row. Empty places hold sentinels
// (INF, NONE - KMAX + place), ascending like the rest, and candidates that are not kept
// (INF, NONE - 2 KMAX - thread), so that every key is distinct and merging by rank is exact.

const WG: u32 = 64u;
const KMAX: u32 = 1024u;
const DMAX: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const INF: f32 = 0x1.fffffep+127f;  // largest f32: above any real distance

struct Params {
    batch: u32,   // queries in this dispatch
    rows: u32,    // database rows in this chunk
    dim: u32,     // floats per row (even when f16 = 1)
    k: u32,       // list length, 1..=KMAX
    slice: u32,   // rows per workgroup in `slices`
    lists: u32,   // slice lists per query (for `merge`)
    f16: u32,     // 1: database words hold two halves each
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> top_d: array<f32, KMAX>;
var<workgroup> top_i: array<u32, KMAX>;
var<workgroup> next_d: array<f32, KMAX>;
var<workgroup> next_i: array<u32, KMAX>;
var<workgroup> cand_d: array<f32, WG>;
var<workgroup> cand_i: array<u32, WG>;
var<workgroup> query: array<f32, DMAX>;
var<workgroup> kept: atomic<u32>;
var<workgroup> kept_count: u32;

fn less(ad: f32, ai: u32, bd: f32, bi: u32) -> bool {
    return ad < bd || (ad == bd && ai < bi);
}

fn reset_top(t: u32) {
    for (var j = t; j < p.k; j += WG) {
        top_d[j] = INF;
        top_i[j] = NONE - KMAX + j;
    }
    if t == 0u {
        atomicStore(&kept, 0u);
    }
    workgroupBarrier();
}

// Every thread offers one (distance, row); those that beat the current k-th are merged
// into the sorted top list. Must be reached by all threads of the workgroup.
fn offer(t: u32, d: f32, i: u32) {
    let keep = less(d, i, top_d[p.k - 1u], top_i[p.k - 1u]);
    if keep {
        atomicAdd(&kept, 1u);
    }
    workgroupBarrier();
    if t == 0u {
        kept_count = atomicLoad(&kept);
        atomicStore(&kept, 0u);
    }
    if workgroupUniformLoad(&kept_count) == 0u {
        return;
    }
    cand_d[t] = select(INF, d, keep);
    cand_i[t] = select(NONE - 2u * KMAX - t, i, keep);

    // Bitonic sort of the 64 candidates, ascending.
    for (var size = 2u; size <= WG; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            workgroupBarrier();
            let other = t ^ stride;
            if other > t {
                let ascending = (t & size) == 0u;
                let a_d = cand_d[t];
                let a_i = cand_i[t];
                let b_d = cand_d[other];
                let b_i = cand_i[other];
                if less(b_d, b_i, a_d, a_i) == ascending {
                    cand_d[t] = b_d;
                    cand_i[t] = b_i;
                    cand_d[other] = a_d;
                    cand_i[other] = a_i;
                }
            }
        }
    }
    workgroupBarrier();

    // Merge by rank into `next`: each element's place in the merged order is its own
    // index plus the number of elements of the other list before it. Keys are distinct,
    // so places are too; places past k fall off.
    for (var j = t; j < p.k; j += WG) {
        let d = top_d[j];
        let i = top_i[j];
        var lo = 0u;
        var hi = WG;
        while lo < hi {
            let mid = (lo + hi) / 2u;
            if less(cand_d[mid], cand_i[mid], d, i) { lo = mid + 1u; } else { hi = mid; }
        }
        if j + lo < p.k {
            next_d[j + lo] = d;
            next_i[j + lo] = i;
        }
    }
    let c_d = cand_d[t];
    let c_i = cand_i[t];
    var lo = 0u;
    var hi = p.k;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if less(top_d[mid], top_i[mid], c_d, c_i) { lo = mid + 1u; } else { hi = mid; }
    }
    if t + lo < p.k {
        next_d[t + lo] = c_d;
        next_i[t + lo] = c_i;
    }
    workgroupBarrier();
    for (var j = t; j < p.k; j += WG) {
        top_d[j] = next_d[j];
        top_i[j] = next_i[j];
    }
    workgroupBarrier();
}

