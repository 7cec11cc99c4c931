// kNN, second pass over one slice (after knn_common.wgsl and topk.wgsl), for both
// metrics: workgroup q recomputes the exact distance (squared Euclidean, or HAMMING:
// differing bytes) of each candidate the scan found for query q and merges them into
// the query's sorted list of its k best (distance, row) so far, which lives in `lists`
// between slices. It then clears the query's candidate count for the next slice. Places
// that hold no row yet carry sentinel rows (>= every real row). Lists hold the caller's
// row numbers (`ids`): chunks store rows in shuffled order.

@group(0) @binding(1) var<storage, read> queries: array<u32>;        // [batch, dim] f32 bits or code words
@group(0) @binding(2) var<storage, read> by_row: array<u32>;         // [rows, words]
@group(0) @binding(3) var<storage, read_write> lists: array<u32>;    // [batch, k] x (distance bits, row)
@group(0) @binding(4) var<storage, read_write> counts: array<atomic<u32>>;  // [capacity + 1]; last: overflow flag
@group(0) @binding(5) var<storage, read> candidates: array<u32>;     // [batch, cap] chunk rows
@group(0) @binding(6) var<storage, read> ids: array<u32>;            // [rows] row numbers of chunk rows
@group(0) @binding(7) var<storage, read> used: array<u32>;           // HAMMING: [stride] used words per row

var<workgroup> query: array<u32, DMAX>;
var<workgroup> found: u32;
// HAMMING: the query's used length (words up to its last one that is not all padding).
var<workgroup> query_used: u32;

fn distance(row: u32) -> f32 {
    if HAMMING {
        return f32(hamming_distance(row));
    }
    return squared_distance(row);
}

// Sum over dimensions in order, as the CPU reference does.
fn squared_distance(row: u32) -> f32 {
    let words = p.dim / DIMS_PER_WORD;
    var acc = 0.0;
    for (var w = 0u; w < words; w++) {
        let word = by_row[row * words + w];
        if F16 {
            let x = unpack2x16float(word);
            let a = x.x - bitcast<f32>(query[2u * w]);
            let b = x.y - bitcast<f32>(query[2u * w + 1u]);
            acc += a * a;
            acc += b * b;
        } else {
            let a = bitcast<f32>(word) - bitcast<f32>(query[w]);
            acc += a * a;
        }
    }
    return acc;
}

// Up to the longer used length of the row and the query, as in the scan: past both,
// both codes are padding.
fn hamming_distance(row: u32) -> u32 {
    var acc = 0u;
    let words = max(used[row], query_used);
    for (var w = 0u; w < words; w++) {
        acc += differing_bytes(by_row[row * p.dim + w], query[w]);
    }
    return acc;
}

@compute @workgroup_size(64)
fn select_candidates(@builtin(local_invocation_index) t: u32,
                     @builtin(workgroup_id) wg: vec3<u32>,
                     @builtin(num_workgroups) groups: vec3<u32>) {
    let q = wg.x + wg.y * groups.x;
    if q >= p.batch {
        return;
    }
    if t == 0u {
        let count = atomicLoad(&counts[q]);
        found = min(count, p.cap);
        if count > p.cap {
            // Candidates were dropped: flag the search for a rerun in slices of `cap` rows.
            atomicStore(&counts[arrayLength(&counts) - 1u], 1u);
        }
    }
    let n = workgroupUniformLoad(&found);
    if n == 0u && p.first_slice == 0u {
        return;  // nothing beat the list: it stays as it is
    }
    for (var d = t; d < p.dim; d += WG) {
        query[d] = queries[q * p.dim + d];
    }
    if HAMMING && t == 0u {
        query_used = used_words(q);
    }
    if p.first_slice == 1u {
        reset_top(t);
    } else {
        for (var j = t; j < p.k; j += WG) {
            top_d[j] = bitcast<f32>(lists[2u * (q * p.k + j)]);
            top_i[j] = lists[2u * (q * p.k + j) + 1u];
        }
        start_offers(t);
    }
    for (var base = 0u; base < n; base += WG) {
        var d = INF;
        var i = NONE;
        if base + t < n {
            let row = candidates[q * p.cap + base + t];
            d = distance(row);
            i = ids[row];
        }
        offer(t, d, i);
    }
    for (var j = t; j < p.k; j += WG) {
        lists[2u * (q * p.k + j)] = bitcast<u32>(top_d[j]);
        lists[2u * (q * p.k + j) + 1u] = top_i[j];
    }
    if t == 0u {
        atomicStore(&counts[q], 0u);
    }
}
