// A register tile's reader of its staged columns at step k (`ops::TileReads::Subgroup`,
// CPU adapters with subgroups of 8: lavapipe): each invocation reads four of the 32
// columns and the subgroup shares them by broadcast. lavapipe turns a load from
// workgroup memory at an address that depends on a loop variable into a loop over the
// 8 lanes, one scalar load each, even when every lane reads the same address: 32 such
// loads per step become 4. Subgroups are invocations 8 s .. 8 s + 7 of a 1-D workgroup
// (lavapipe's order); `invocation` is the invocation's index, or any number equal to it
// mod 8. The including shader gives `tile_half` and `tile_quarter`
// (tile_reads_shared.wgsl).

// lavapipe runs the product four steps a trip (tile_product.wgsl).
const FOUR_STEP_TRIPS: bool = true;

fn tile_columns(k: u32, invocation: u32) -> TileColumns {
    let lane = invocation % 8u;
    // Lanes 0-3 read the columns of lo, lanes 4-7 those of hi, four each.
    let mine = tile_quarter(lane / 4u, k, lane % 4u);
    return TileColumns(
        mat4x4(
            subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u),
            subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u),
        ),
        mat4x4(
            subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u),
            subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u),
        ),
    );
}
