// k nearest neighbours, second pass (after topk.wgsl): workgroup q merges the sorted
// per-slice lists of query q into its final top-k. Places that hold no row (fewer rows
// than k) come out as (INF, 0xffffffff).

@group(0) @binding(1) var<storage, read> lists: array<u32>;       // [batch, lists, k] x (dist bits, row)
@group(0) @binding(2) var<storage, read_write> best: array<u32>;  // [batch, k] x (dist bits, row)

@compute @workgroup_size(64)
fn merge(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let q = wg.x;
    reset_top(t);
    let total = p.lists * p.k;
    let first = q * total;
    for (var base = 0u; base < total; base += WG) {
        var d = INF;
        var i = NONE;
        if base + t < total {
            let at = 2u * (first + base + t);
            i = lists[at + 1u];
            if i < p.rows {
                d = bitcast<f32>(lists[at]);
            } else {
                i = NONE;
            }
        }
        offer(t, d, i);
    }
    for (var j = t; j < p.k; j += WG) {
        let at = 2u * (q * p.k + j);
        let empty = top_i[j] >= p.rows;
        best[at] = select(bitcast<u32>(top_d[j]), bitcast<u32>(INF), empty);
        best[at + 1u] = select(top_i[j], NONE, empty);
    }
}
