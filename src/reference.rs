//! Plain CPU versions of every op and of the whole model, in f64. They are the yardstick
//! for the GPU kernels in tests and for finite differences; nothing here touches the GPU.
//! Layouts match the kernels (and PyTorch): activations `[batch, channels, len]`, weights
//! `[out, in, (tap)]`.
use crate::model::params::{
    BN_EPS, CHAR_DIM, CONV_BLOCKS, CONV_CH, EMBED_DIM, FLAT, HIDDEN, MAX_LEN, VOCAB, range_of,
};

/// `out[b, c, l] = table[tokens[b, l], c]`; tokens past the vocabulary are clamped.
pub fn embedding(tokens: &[u32], table: &[f64], len: usize, dim: usize, vocab: usize) -> Vec<f64> {
    let batch = tokens.len() / len;
    let mut out = vec![0.0; batch * dim * len];
    for b in 0..batch {
        for l in 0..len {
            let tok = (tokens[b * len + l] as usize).min(vocab - 1);
            for c in 0..dim {
                out[(b * dim + c) * len + l] = table[tok * dim + c];
            }
        }
    }
    out
}

/// Conv1d, kernel 3, stride 1, zero padding 1: `x [batch, cin, len]` -> `[batch, cout, len]`.
pub fn conv1d(x: &[f64], w: &[f64], bias: &[f64], cin: usize, cout: usize, len: usize) -> Vec<f64> {
    let batch = x.len() / (cin * len);
    let mut y = vec![0.0; batch * cout * len];
    for b in 0..batch {
        for o in 0..cout {
            for l in 0..len {
                let mut acc = bias[o];
                for i in 0..cin {
                    for t in 0..3 {
                        let pos = l as isize + t as isize - 1;
                        if pos >= 0 && (pos as usize) < len {
                            acc += w[(o * cin + i) * 3 + t] * x[(b * cin + i) * len + pos as usize];
                        }
                    }
                }
                y[(b * cout + o) * len + l] = acc;
            }
        }
    }
    y
}

/// conv0 of an embedding folded into per-character tap tables (inference only):
/// `T[t, c, o] = sum_i w[o, i, t] * table[c, i]`, `[3, vocab, cout]`, from the table
/// `[vocab, dim]` and the conv weight `[cout, dim, 3]`.
pub fn fold_taps(table: &[f64], w: &[f64], vocab: usize, dim: usize, cout: usize) -> Vec<f64> {
    let mut taps = vec![0.0; 3 * vocab * cout];
    for t in 0..3 {
        for c in 0..vocab {
            for o in 0..cout {
                taps[(t * vocab + c) * cout + o] = (0..dim)
                    .map(|i| w[(o * dim + i) * 3 + t] * table[c * dim + i])
                    .sum();
            }
        }
    }
    taps
}

/// AvgPool1d(2), floor: `x [rows, len_in]` -> `[rows, len_in / 2]` (rows = batch * channels).
pub fn avgpool(x: &[f64], len_in: usize) -> Vec<f64> {
    let len_out = len_in / 2;
    let rows = x.len() / len_in;
    let mut y = vec![0.0; rows * len_out];
    for r in 0..rows {
        for j in 0..len_out {
            y[r * len_out + j] = 0.5 * (x[r * len_in + 2 * j] + x[r * len_in + 2 * j + 1]);
        }
    }
    y
}

pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// `y[b, o] = bias[o] + sum_i w[o, i] x[b, i]`, then ReLU if asked.
pub fn linear(
    x: &[f64],
    w: &[f64],
    bias: &[f64],
    fan_in: usize,
    fan_out: usize,
    relu: bool,
) -> Vec<f64> {
    let batch = x.len() / fan_in;
    let mut y = vec![0.0; batch * fan_out];
    for b in 0..batch {
        for o in 0..fan_out {
            let dot: f64 = (0..fan_in)
                .map(|i| w[o * fan_in + i] * x[b * fan_in + i])
                .sum();
            let v = bias[o] + dot;
            y[b * fan_out + o] = if relu { v.max(0.0) } else { v };
        }
    }
    y
}

/// BatchNorm1d in inference form over `[batch, channels]`.
pub fn batchnorm_inference(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    mean: &[f64],
    var: &[f64],
    eps: f64,
) -> Vec<f64> {
    let ch = gamma.len();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % ch;
            (v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c]
        })
        .collect()
}

/// The whole megashtein forward pass in eval mode: `tokens [batch, 80]` -> `[batch, 80]`.
/// `params` is the flat slab (see [`crate::model::params`]); `running` = mean ++ var.
pub fn megashtein_forward(params: &[f64], running: &[f64], tokens: &[u32]) -> Vec<f64> {
    let p = |name: &str| &params[range_of(name)];
    let mut x = embedding(tokens, p("embedding.weight"), MAX_LEN, CHAR_DIM, VOCAB);
    let (mut cin, mut len) = (CHAR_DIM, MAX_LEN);
    for block in 0..CONV_BLOCKS {
        let layer = 3 * block;
        let w = p(&format!("conv_layers.{layer}.weight"));
        let b = p(&format!("conv_layers.{layer}.bias"));
        x = relu(&avgpool(&conv1d(&x, w, b, cin, CONV_CH, len), len));
        cin = CONV_CH;
        len /= 2;
    }
    let h = linear(
        &x,
        p("fc_layers.0.weight"),
        p("fc_layers.0.bias"),
        FLAT,
        HIDDEN,
        true,
    );
    let e = linear(
        &h,
        p("fc_layers.2.weight"),
        p("fc_layers.2.bias"),
        HIDDEN,
        EMBED_DIM,
        false,
    );
    let (mean, var) = running.split_at(EMBED_DIM);
    let gamma = p("fc_layers.3.weight");
    let beta = p("fc_layers.3.bias");
    batchnorm_inference(&e, gamma, beta, mean, var, f64::from(BN_EPS))
}

/// Squared Euclidean distance, summed in f64.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

/// Brute-force k nearest rows of `data` (`[rows, dim]`) for each query (`[n, dim]`):
/// `(squared distance, row)`, nearest first, ties by smaller row, `min(k, rows)` each.
pub fn knn(data: &[f32], queries: &[f32], dim: usize, k: usize) -> Vec<Vec<(f64, usize)>> {
    queries
        .chunks_exact(dim)
        .map(|q| {
            let mut all: Vec<(f64, usize)> = data
                .chunks_exact(dim)
                .enumerate()
                .map(|(row, x)| (squared_distance(x, q), row))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
            all
        })
        .collect()
}
