// CNN-ED's activations end in zeros (prepended to the CNN-ED kernels): the blocks have
// no bias and pad with zeros, so a string of `len` characters is zero from place `len`
// on, and each block (conv, kernel 3, padding 1, then a floor avg-pool by 2) moves that
// end from e to e / 2 + 1, the conv reaching one place past it (a ReLU keeps zeros). The
// kernels compute a row only up to its string's extent at their level and write zeros
// after it: the full computation's values, for a batch's cost in its strings' lengths
// rather than in M. (An upper bound when the activation is shorter than the extent.)
fn extent(len: u32, level: u32) -> u32 {
    var e = len;
    for (var i = 0u; i < level; i++) {
        e = e / 2u + 1u;
    }
    return e;
}
