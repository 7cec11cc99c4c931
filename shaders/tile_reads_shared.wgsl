// A register tile's reader of its staged columns at step k (`ops::TileReads::Shared`,
// every device without subgroups of 8): every invocation reads all 32 from workgroup
// memory, the same addresses across the workgroup (a broadcast on a GPU). The including
// shader gives the staged values as `tile_half(h, k)`, columns 16 h .. 16 h + 15 at step
// k, and `tile_quarter(h, k, c)`, four of them (gemm_tile.wgsl, knn_scan.wgsl).

// One step a trip (tile_product.wgsl).
const FOUR_STEP_TRIPS: bool = false;

fn tile_columns(k: u32, invocation: u32) -> TileColumns {
    return TileColumns(tile_half(0u, k), tile_half(1u, k));
}
