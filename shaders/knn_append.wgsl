// The scans' output (prepended to knn_scan.wgsl and knn_scan_hamming.wgsl, after
// knn_common.wgsl): each query's candidate rows of the slice, which knn_select.wgsl
// merges and then clears.

@group(0) @binding(5) var<storage, read_write> counts: array<atomic<u32>>;  // [batch]
@group(0) @binding(6) var<storage, read_write> candidates: array<u32>;      // [batch, cap] chunk rows

// Append `row` to the candidates of the tile's queries set in `queries` (bit j: query
// q0 + j).
fn append(queries: u32, row: u32, q0: u32) {
    var left = queries;
    while left != 0u {
        let q = q0 + firstTrailingBit(left);
        left &= left - 1u;
        let slot = atomicAdd(&counts[q], 1u);
        if slot < p.cap {
            candidates[q * p.cap + slot] = row;
        }
    }
}
