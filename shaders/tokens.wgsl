// Tokens are bytes, four to a u32 word, first token in the lowest byte (the host's
// `[batch, len]` u8 rows as they lie in memory: WGSL lays out u32s in memory
// little-endian). Prepended by the ops to the shaders that read `tokens`, which declare
// it as `array<u32>`.
fn token_at(i: u32) -> u32 {
    return (tokens[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}
