// The register tile's product, shared by gemm_tile.wgsl and knn_scan.wgsl (appended after
// the including shader, before the device's reader, tile_reads_*.wgsl): an invocation
// holds 4 rows x 32 columns as eight 4x4 matrices, named values, which lavapipe keeps in
// registers (arrays it keeps in memory, at a third of the speed). At step k the rows'
// values come from the including shader's `tile_rows(k, at)` (one vec4: rows 0..3 of
// the invocation's four) and the 32 columns from the reader's `tile_columns(k,
// invocation)`.

// The 32 staged columns at one step: lo holds columns 0..15 (column 4 c + l is lo[c][l]),
// hi columns 16..31.
struct TileColumns {
    lo: mat4x4<f32>,
    hi: mat4x4<f32>,
}

// Row r's sums against columns 0..15 (a<r>0) and 16..31 (a<r>1).
struct Tile {
    a00: mat4x4<f32>, a01: mat4x4<f32>,
    a10: mat4x4<f32>, a11: mat4x4<f32>,
    a20: mat4x4<f32>, a21: mat4x4<f32>,
    a30: mat4x4<f32>, a31: mat4x4<f32>,
}

// sum_{k < k_len} rows(k) x columns(k), each sum in order of k. With the reader's
// FOUR_STEP_TRIPS, four steps a trip, their loads first and each sum's four terms
// together: lavapipe blends the tile under the loop's lane mask and stores it once a
// trip, not once a step (1.3-1.5x faster products there). A GPU keeps one step a trip,
// which holds 32 staged columns beside the 128 sums, not 128.
fn tile_product(at: u32, invocation: u32, k_len: u32) -> Tile {
    var tile = Tile();
    var k = 0u;
    let trips_end = select(0u, k_len - k_len % 4u, FOUR_STEP_TRIPS);
    for (; k < trips_end; k += 4u) {
        let x0 = tile_rows(k, at);
        let x1 = tile_rows(k + 1u, at);
        let x2 = tile_rows(k + 2u, at);
        let x3 = tile_rows(k + 3u, at);
        let c0 = tile_columns(k, invocation);
        let c1 = tile_columns(k + 1u, invocation);
        let c2 = tile_columns(k + 2u, invocation);
        let c3 = tile_columns(k + 3u, invocation);
        tile = Tile(
            tile.a00 + c0.lo * x0.x + c1.lo * x1.x + c2.lo * x2.x + c3.lo * x3.x,
            tile.a01 + c0.hi * x0.x + c1.hi * x1.x + c2.hi * x2.x + c3.hi * x3.x,
            tile.a10 + c0.lo * x0.y + c1.lo * x1.y + c2.lo * x2.y + c3.lo * x3.y,
            tile.a11 + c0.hi * x0.y + c1.hi * x1.y + c2.hi * x2.y + c3.hi * x3.y,
            tile.a20 + c0.lo * x0.z + c1.lo * x1.z + c2.lo * x2.z + c3.lo * x3.z,
            tile.a21 + c0.hi * x0.z + c1.hi * x1.z + c2.hi * x2.z + c3.hi * x3.z,
            tile.a30 + c0.lo * x0.w + c1.lo * x1.w + c2.lo * x2.w + c3.lo * x3.w,
            tile.a31 + c0.hi * x0.w + c1.hi * x1.w + c2.hi * x2.w + c3.hi * x3.w,
        );
    }
    for (; k < k_len; k++) {
        let x = tile_rows(k, at);
        let c = tile_columns(k, invocation);
        tile = Tile(
            tile.a00 + c.lo * x.x, tile.a01 + c.hi * x.x,
            tile.a10 + c.lo * x.y, tile.a11 + c.hi * x.y,
            tile.a20 + c.lo * x.z, tile.a21 + c.hi * x.z,
            tile.a30 + c.lo * x.w, tile.a31 + c.hi * x.w,
        );
    }
    return tile;
}
