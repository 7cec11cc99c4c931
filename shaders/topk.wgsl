// Top-k selection in workgroup memory (prepended to knn_select.wgsl, after
// knn_common.wgsl). A workgroup keeps
// a sorted list of its k best (distance, row) pairs; `offer` merges in up to 64 new pairs
// at a time. Order is (distance, row) ascending, so ties go to the smaller row. Empty
// places hold sentinels (INF, NONE - KMAX + place), ascending like the rest, and offered
// pairs that are not kept (INF, NONE - 2 KMAX - thread), so that every key is distinct
// and merging by rank is exact.
//
// The including shader declares the uniform `p` with the list length `p.k` <= KMAX;
// the Rust side prepends `const KMAX` (the list-size bucket the pipeline is built for).
//
// On lavapipe (llvmpipe) every loop iteration of an invocation counts against one budget
// of 65,535 (LP_MAX_TGSI_LOOP_ITERATIONS, "shared between every loop in a shader"); past
// it, loops silently stop early. One `offer` costs ~170 iterations at KMAX = 1,024, so a
// caller must bound the offers per invocation (knn.rs: at most SLOTS / 64 = 64).

const WG: u32 = 64u;
const PER_THREAD: u32 = max(KMAX / WG, 1u);

var<workgroup> top_d: array<f32, KMAX>;
var<workgroup> top_i: array<u32, KMAX>;
var<workgroup> cand_d: array<f32, WG>;
var<workgroup> cand_i: array<u32, WG>;
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
    start_offers(t);
}

// Before the first offer, once the top list is in place (workgroup memory starts
// undefined: pipelines skip its zeroing, see gpu/context.rs).
fn start_offers(t: u32) {
    if t == 0u {
        atomicStore(&kept, 0u);
    }
    workgroupBarrier();
}

// Every thread offers one (distance, row); those that beat the current k-th are merged
// into the sorted top list. Must be reached by all threads of the workgroup. The kept
// pairs are gathered into the first m candidate places and only the next power of two
// >= m is sorted, so the usual offer (a handful kept, or none) costs a few barriers.
fn offer(t: u32, d: f32, i: u32) {
    let keep = less(d, i, top_d[p.k - 1u], top_i[p.k - 1u]);
    if keep {
        let at = atomicAdd(&kept, 1u);
        cand_d[at] = d;
        cand_i[at] = i;
    }
    workgroupBarrier();
    if t == 0u {
        kept_count = atomicLoad(&kept);
        atomicStore(&kept, 0u);
    }
    let m = workgroupUniformLoad(&kept_count);
    if m == 0u {
        return;
    }
    var width = 1u;
    while width < m {
        width <<= 1u;
    }
    if t >= m && t < width {
        cand_d[t] = INF;
        cand_i[t] = NONE - 2u * KMAX - t;
    }

    // Bitonic sort of the first `width` candidates, ascending.
    for (var size = 2u; size <= width; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            workgroupBarrier();
            let other = t ^ stride;
            if other > t && other < width {
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

    // Merge by rank: each element's place in the merged order is its own index plus the
    // number of elements of the other list before it. Keys are distinct, so places are
    // too; places past k fall off. Every thread finds the places of its elements first
    // and writes them after a barrier, so the list is merged in place.
    var old_d: array<f32, PER_THREAD>;
    var old_i: array<u32, PER_THREAD>;
    var old_at: array<u32, PER_THREAD>;
    var n = 0u;
    for (var j = t; j < p.k; j += WG) {
        let d = top_d[j];
        let i = top_i[j];
        var lo = 0u;
        var hi = m;
        while lo < hi {
            let mid = (lo + hi) / 2u;
            if less(cand_d[mid], cand_i[mid], d, i) { lo = mid + 1u; } else { hi = mid; }
        }
        old_d[n] = d;
        old_i[n] = i;
        old_at[n] = j + lo;
        n += 1u;
    }
    let c_d = cand_d[t];
    let c_i = cand_i[t];
    var lo = 0u;
    var hi = select(0u, p.k, t < m);
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if less(top_d[mid], top_i[mid], c_d, c_i) { lo = mid + 1u; } else { hi = mid; }
    }
    workgroupBarrier();
    for (var e = 0u; e < n; e++) {
        if old_at[e] < p.k {
            top_d[old_at[e]] = old_d[e];
            top_i[old_at[e]] = old_i[e];
        }
    }
    if t < m && t + lo < p.k {
        top_d[t + lo] = c_d;
        top_i[t + lo] = c_i;
    }
    workgroupBarrier();
}
