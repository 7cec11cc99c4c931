//! CNN-ED's blocks, plainly: the one-hot input materialised, then the generic conv,
//! pool and ReLU of the parent module. Layout (per-character): row `b * alphabet + c` of
//! a string's one-hot is the indicator of character c; tokens `[batch, stride]` are u32
//! ids, an id >= `alphabet` is an all-zero column, and positions >= `len` are padding.
use super::{avgpool, avgpool_backward, conv1d, conv1d_backward, relu_backward};

/// The places of a string of `len` characters that can be nonzero after `level`
/// blocks: each block's conv reaches one place past the end, and its pool halves that
/// (`shaders/extent.wgsl`).
pub fn extent(len: usize, level: usize) -> usize {
    (0..level).fold(len, |e, _| e / 2 + 1)
}

/// The one-hot rows `[batch * alphabet, 1, len]` of `tokens [batch, stride]`.
pub fn onehot(tokens: &[u32], alphabet: usize, len: usize, stride: usize) -> Vec<f64> {
    let batch = tokens.len() / stride;
    let mut x = vec![0.0; batch * alphabet * len];
    for b in 0..batch {
        for (l, &tok) in tokens[b * stride..b * stride + len].iter().enumerate() {
            let c = tok as usize;
            if c < alphabet {
                x[(b * alphabet + c) * len + l] = 1.0;
            }
        }
    }
    x
}

/// A bias-free block, `x [rows, cin, len]` -> `[rows, cout, len / 2]`:
/// avgpool(conv1d(x, w)) (kernel 3, padding 1), then ReLU if asked.
pub fn conv_pool(
    x: &[f64],
    w: &[f64],
    cin: usize,
    cout: usize,
    len: usize,
    relu: bool,
) -> Vec<f64> {
    let pooled = avgpool(&conv1d(x, w, &vec![0.0; cout], cin, cout, len), len);
    if relu { super::relu(&pooled) } else { pooled }
}

/// Gradients of [`conv_pool`] from `dy` at its output: `(dx [rows, cin, len], dw [cout,
/// cin, 3])`.
pub fn conv_pool_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    cin: usize,
    cout: usize,
    len: usize,
    with_relu: bool,
) -> (Vec<f64>, Vec<f64>) {
    let dz = if with_relu {
        relu_backward(&conv_pool(x, w, cin, cout, len, true), dy)
    } else {
        dy.to_vec()
    };
    let (dx, dw, _) = conv1d_backward(x, w, &avgpool_backward(&dz, len), cin, cout, len);
    (dx, dw)
}

/// The first block on the one-hot input: `tokens [batch, stride]` -> `[batch *
/// alphabet, 8, len / 2]` for w `[8, 1, 3]`.
pub fn onehot_conv(
    tokens: &[u32],
    w: &[f64],
    alphabet: usize,
    len: usize,
    stride: usize,
) -> Vec<f64> {
    let x = onehot(tokens, alphabet, len, stride);
    conv_pool(&x, w, 1, w.len() / 3, len, false)
}

/// The weight gradient of [`onehot_conv`] from `dy` at its output: dw `[8, 1, 3]`.
pub fn onehot_conv_backward(
    tokens: &[u32],
    dy: &[f64],
    alphabet: usize,
    len: usize,
    stride: usize,
) -> Vec<f64> {
    let x = onehot(tokens, alphabet, len, stride);
    let rows = tokens.len() / stride * alphabet;
    let cout = dy.len() / (rows * (len / 2)).max(1);
    // The block is linear in w: its weight gradient does not depend on w.
    conv_pool_backward(&x, &vec![0.0; cout * 3], dy, 1, cout, len, false).1
}

/// The folded table's sum: `out[b] = bias + sum_{l < min(len, M)} table[row(ids_b[l], l)]`
/// for ids below `alphabet`, with `row(c, l)` the offset of that row's `dim` values
/// (the layout's). `strings` are id lists.
pub fn table_embed(
    table: &[f64],
    bias: &[f64],
    strings: &[Vec<u32>],
    alphabet: usize,
    max_len: usize,
    row: impl Fn(usize, usize) -> usize,
) -> Vec<f64> {
    let dim = bias.len();
    let mut out = Vec::with_capacity(strings.len() * dim);
    for ids in strings {
        let mut e = bias.to_vec();
        for (l, &id) in ids.iter().take(max_len).enumerate() {
            if (id as usize) < alphabet {
                let at = row(id as usize, l);
                for (v, t) in e.iter_mut().zip(&table[at..at + dim]) {
                    *v += t;
                }
            }
        }
        out.extend(e);
    }
    out
}

/// The gradients of [`table_embed`] from `d_out [batch, dim]`: (d_table laid out as the
/// table, `table_len` values; d_bias).
pub fn table_embed_backward(
    d_out: &[f64],
    strings: &[Vec<u32>],
    alphabet: usize,
    max_len: usize,
    table_len: usize,
    row: impl Fn(usize, usize) -> usize,
) -> (Vec<f64>, Vec<f64>) {
    let dim = d_out.len() / strings.len();
    let mut d_table = vec![0.0; table_len];
    let mut d_bias = vec![0.0; dim];
    for (ids, d) in strings.iter().zip(d_out.chunks(dim)) {
        for (b, v) in d_bias.iter_mut().zip(d) {
            *b += v;
        }
        for (l, &id) in ids.iter().take(max_len).enumerate() {
            if (id as usize) < alphabet {
                let at = row(id as usize, l);
                for (t, v) in d_table[at..at + dim].iter_mut().zip(d) {
                    *t += v;
                }
            }
        }
    }
    (d_table, d_bias)
}
