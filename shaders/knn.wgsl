// k nearest neighbours by squared Euclidean distance, first pass (after topk.wgsl):
// workgroup (q, s) scans database rows [s * slice, (s + 1) * slice) for query q, 64 rows
// at a time, and writes the sorted k best of its slice. The queries x database distance
// matrix is never written out; knn_merge.wgsl reduces the slice lists.
//
// The database is raw 32-bit words: f32 values, or (f16 = 1) pairs of IEEE halves
// unpacked with unpack2x16float, which needs no f16 shader support. Sums are f32.

@group(0) @binding(1) var<storage, read> queries: array<f32>;      // [batch, dim]
@group(0) @binding(2) var<storage, read> database: array<u32>;     // [rows, dim] as words
@group(0) @binding(3) var<storage, read_write> lists: array<u32>;  // [batch, lists, k] x (dist bits, row)

fn squared_distance(row: u32) -> f32 {
    var acc = 0.0;
    if p.f16 == 1u {
        let base = row * (p.dim / 2u);
        for (var w = 0u; w < p.dim / 2u; w++) {
            let x = unpack2x16float(database[base + w]);
            let a = x.x - query[2u * w];
            let b = x.y - query[2u * w + 1u];
            acc += a * a + b * b;
        }
    } else {
        let base = row * p.dim;
        for (var c = 0u; c < p.dim; c++) {
            let a = bitcast<f32>(database[base + c]) - query[c];
            acc += a * a;
        }
    }
    return acc;
}

@compute @workgroup_size(64)
fn slices(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let q = wg.x;
    let s = wg.y;
    for (var c = t; c < p.dim; c += WG) {
        query[c] = queries[q * p.dim + c];
    }
    reset_top(t);
    let start = s * p.slice;
    let end = min(start + p.slice, p.rows);
    for (var base = start; base < end; base += WG) {
        let row = base + t;
        var d = INF;
        var i = NONE;
        if row < end {
            d = squared_distance(row);
            i = row;
        }
        offer(t, d, i);
    }
    let out = (q * p.lists + s) * p.k;
    for (var j = t; j < p.k; j += WG) {
        lists[2u * (out + j)] = bitcast<u32>(top_d[j]);
        lists[2u * (out + j) + 1u] = top_i[j];
    }
}

