//! Plain CPU versions of every op and of the whole model, in f64. They are the yardstick
//! for the GPU kernels in tests and for finite differences; nothing here touches the GPU.
//! Layouts match the kernels (and PyTorch): activations `[batch, channels, len]`, weights
//! `[out, in, (tap)]`.
pub mod cnn_ed;

use crate::model::params::{BN_EPS, CONV_BLOCKS, MAX_LEN, VOCAB, Widths};

/// `out[b, c, l] = table[tokens[b, l], c]`; tokens past the vocabulary are clamped.
pub fn embedding(tokens: &[u8], table: &[f64], len: usize, dim: usize, vocab: usize) -> Vec<f64> {
    let batch = tokens.len() / len;
    let mut out = vec![0.0; batch * dim * len];
    for b in 0..batch {
        for l in 0..len {
            let tok = usize::from(tokens[b * len + l]).min(vocab - 1);
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

/// The pooled forward's pair tables from the tap tables `[3, vocab, cout]`:
/// `0.5 [T0, T0 + T1, T1 + T2, T2]`, each with a zero row after the vocabulary (the
/// conv's padding), rows padded with zeros to a multiple of 4: `[4, vocab + 1, width]`.
pub fn pair_tables(taps: &[f64], vocab: usize, cout: usize) -> Vec<f64> {
    let tap = |t: usize, c: usize, o: usize| taps[(t * vocab + c) * cout + o];
    let width = cout.next_multiple_of(4);
    let mut pairs = vec![0.0; 4 * (vocab + 1) * width];
    for q in 0..4 {
        for c in 0..vocab {
            for o in 0..cout {
                let lower = if q > 0 { tap(q - 1, c, o) } else { 0.0 };
                let upper = if q < 3 { tap(q, c, o) } else { 0.0 };
                pairs[(q * (vocab + 1) + c) * width + o] = 0.5 * (lower + upper);
            }
        }
    }
    pairs
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

/// The whole megashtein forward pass in eval mode at `widths`: `tokens [batch, 80]` ->
/// `[batch, dim]`. `params` is the flat slab (see [`crate::model::params`]); `running`
/// = mean ++ var.
pub fn megashtein_forward(
    widths: &Widths,
    params: &[f64],
    running: &[f64],
    tokens: &[u8],
) -> Vec<f64> {
    let p = |name: &str| &params[widths.range_of(name)];
    let channels = widths.channels;
    let mut x = embedding(
        tokens,
        p("embedding.weight"),
        MAX_LEN,
        widths.char_dim,
        VOCAB,
    );
    let (mut cin, mut len) = (widths.char_dim, MAX_LEN);
    for block in 0..CONV_BLOCKS {
        let layer = 3 * block;
        let w = p(&format!("conv_layers.{layer}.weight"));
        let b = p(&format!("conv_layers.{layer}.bias"));
        x = relu(&avgpool(&conv1d(&x, w, b, cin, channels, len), len));
        cin = channels;
        len /= 2;
    }
    let h = linear(
        &x,
        p("fc_layers.0.weight"),
        p("fc_layers.0.bias"),
        widths.flat(),
        widths.hidden,
        true,
    );
    let e = linear(
        &h,
        p("fc_layers.2.weight"),
        p("fc_layers.2.bias"),
        widths.hidden,
        widths.dim,
        false,
    );
    let (mean, var) = running.split_at(widths.dim);
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

/// Hamming distance between byte codes: the number of positions where they differ.
pub fn hamming(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

/// Brute-force k nearest codes of `database` (`[rows, width]` bytes) for each query
/// (`[n, width]`) by [`hamming`]: `(distance, row)`, nearest first, ties by smaller row,
/// `min(k, rows)` each.
pub fn knn_hamming(
    database: &[u8],
    width: usize,
    queries: &[u8],
    k: usize,
) -> Vec<Vec<(f64, usize)>> {
    queries
        .chunks_exact(width)
        .map(|q| {
            let mut all: Vec<(f64, usize)> = database
                .chunks_exact(width)
                .enumerate()
                .map(|(row, x)| (hamming(x, q) as f64, row))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            all.truncate(k);
            all
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Training: backward passes (each the exact derivative of the forward above), batch norm
// in training mode, the PNLL pair loss and AdamW. Finite differences in
// tests/ops_backward.rs check these; the GPU kernels are checked against them.

/// Gradient of [`embedding`]: `dtable[v, c] = sum over positions holding token v of
/// dout[b, c, l]`, `[vocab, dim]`.
pub fn embedding_backward(
    tokens: &[u8],
    dout: &[f64],
    len: usize,
    dim: usize,
    vocab: usize,
) -> Vec<f64> {
    let mut dtable = vec![0.0; vocab * dim];
    for (p, &t) in tokens.iter().enumerate() {
        let (b, l) = (p / len, p % len);
        let v = usize::from(t).min(vocab - 1);
        for c in 0..dim {
            dtable[v * dim + c] += dout[(b * dim + c) * len + l];
        }
    }
    dtable
}

/// Gradients of [`conv1d`] given the output gradient `dy [batch, cout, len]`:
/// `(dx [batch, cin, len], dw [cout, cin, 3], db [cout])`.
pub fn conv1d_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    cin: usize,
    cout: usize,
    len: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let batch = x.len() / (cin * len);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; cout];
    for b in 0..batch {
        for o in 0..cout {
            for l in 0..len {
                let g = dy[(b * cout + o) * len + l];
                db[o] += g;
                for i in 0..cin {
                    for t in 0..3 {
                        let pos = l as isize + t as isize - 1;
                        if pos >= 0 && (pos as usize) < len {
                            let xi = (b * cin + i) * len + pos as usize;
                            dw[(o * cin + i) * 3 + t] += g * x[xi];
                            dx[xi] += g * w[(o * cin + i) * 3 + t];
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// Gradient of [`avgpool`]: `dy [rows, len_in / 2]` -> `dx [rows, len_in]`.
pub fn avgpool_backward(dy: &[f64], len_in: usize) -> Vec<f64> {
    let len_out = len_in / 2;
    let rows = dy.len() / len_out.max(1);
    let mut dx = vec![0.0; rows * len_in];
    for r in 0..rows {
        for j in 0..len_out {
            dx[r * len_in + 2 * j] = 0.5 * dy[r * len_out + j];
            dx[r * len_in + 2 * j + 1] = 0.5 * dy[r * len_out + j];
        }
    }
    dx
}

/// Gradient of [`relu`] from its output `y`: `dy` where `y > 0`, else 0.
pub fn relu_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(dy)
        .map(|(&y, &g)| if y > 0.0 { g } else { 0.0 })
        .collect()
}

/// Gradients of [`linear`] (without the ReLU) given `dy [batch, fan_out]`:
/// `(dx [batch, fan_in], dw [fan_out, fan_in], db [fan_out])`.
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    fan_in: usize,
    fan_out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let batch = x.len() / fan_in;
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; fan_out];
    for b in 0..batch {
        for o in 0..fan_out {
            let g = dy[b * fan_out + o];
            db[o] += g;
            for i in 0..fan_in {
                dw[o * fan_in + i] += g * x[b * fan_in + i];
                dx[b * fan_in + i] += g * w[o * fan_in + i];
            }
        }
    }
    (dx, dw, db)
}

/// BatchNorm1d in training mode over `[batch, channels]`: `(y, mean, biased variance)`.
pub fn batchnorm_train(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ch = gamma.len();
    let n = (x.len() / ch) as f64;
    let mut mean = vec![0.0; ch];
    let mut var = vec![0.0; ch];
    for (i, &v) in x.iter().enumerate() {
        mean[i % ch] += v / n;
    }
    for (i, &v) in x.iter().enumerate() {
        var[i % ch] += (v - mean[i % ch]).powi(2) / n;
    }
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % ch;
            (v - mean[c]) / (var[c] + eps).sqrt() * gamma[c] + beta[c]
        })
        .collect();
    (y, mean, var)
}

/// PyTorch's running-statistics update after a training batch (`var` biased, as
/// [`batchnorm_train`] returns it; the running variance takes the unbiased one).
pub fn batchnorm_running(
    running_mean: &mut [f64],
    running_var: &mut [f64],
    mean: &[f64],
    var: &[f64],
    batch: usize,
    momentum: f64,
) {
    let unbiased = batch as f64 / (batch as f64 - 1.0);
    for c in 0..mean.len() {
        running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * mean[c];
        running_var[c] = (1.0 - momentum) * running_var[c] + momentum * var[c] * unbiased;
    }
}

/// Gradients of [`batchnorm_train`] given `dy`: `(dx, dgamma, dbeta)`.
pub fn batchnorm_backward(
    x: &[f64],
    gamma: &[f64],
    dy: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let ch = gamma.len();
    let (_, mean, var) = batchnorm_train(x, gamma, &vec![0.0; ch], eps);
    let n = (x.len() / ch) as f64;
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let xhat = |i: usize| (x[i] - mean[i % ch]) * inv_std[i % ch];
    let mut dgamma = vec![0.0; ch];
    let mut dbeta = vec![0.0; ch];
    for (i, &g) in dy.iter().enumerate() {
        dgamma[i % ch] += g * xhat(i);
        dbeta[i % ch] += g;
    }
    let dx = dy
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            let c = i % ch;
            gamma[c] * inv_std[c] / n * (n * g - dbeta[c] - xhat(i) * dgamma[c])
        })
        .collect();
    (dx, dgamma, dbeta)
}

/// The pair head and PNLL loss: rows `0..pairs` of `e [2 * pairs, dim]` against rows
/// `pairs..`; `d_hat = exp(log_s) * ||e1 - e2||^2`,
/// `loss = mean(d_hat - d * log(d_hat + eps))`. Returns `(loss, d_hat, de, dlog_s)`.
pub fn pnll(
    e: &[f64],
    labels: &[f64],
    log_s: f64,
    dim: usize,
    eps: f64,
) -> (f64, Vec<f64>, Vec<f64>, f64) {
    let pairs = labels.len();
    let s = log_s.exp();
    let mut loss = 0.0;
    let mut d_hat = vec![0.0; pairs];
    let mut de = vec![0.0; e.len()];
    let mut dlog_s = 0.0;
    for p in 0..pairs {
        let (a, b) = (p * dim, (pairs + p) * dim);
        let sq: f64 = (0..dim).map(|k| (e[a + k] - e[b + k]).powi(2)).sum();
        let dh = s * sq;
        d_hat[p] = dh;
        loss += (dh - labels[p] * (dh + eps).ln()) / pairs as f64;
        let g = (1.0 - labels[p] / (dh + eps)) / pairs as f64;
        dlog_s += g * dh;
        for k in 0..dim {
            let v = 2.0 * s * g * (e[a + k] - e[b + k]);
            de[a + k] = v;
            de[b + k] = -v;
        }
    }
    (loss, d_hat, de, dlog_s)
}

/// The ranking head (`ops::ranking`): rows `0..n` of `e [3n, dim]` are anchors, `n..2n`
/// positives, `2n..3n` negatives, `labels [n, 3]` the distances ap, an, pn. Per pair
/// `d = s * q` (`squared`) or `s * sqrt(q)`, `q = ||e_x - e_y||^2`; per triplet
/// `hinge * relu(d_ap - d_an + t_an - t_ap) + approx * ||d - t|| + pnll * mean(d - t
/// ln(d + eps))`; the loss is the mean over triplets. Returns `(loss, de, dlog_s)`.
#[allow(clippy::too_many_arguments)]
pub fn ranking(
    e: &[f64],
    labels: &[f64],
    log_s: f64,
    dim: usize,
    eps: f64,
    (hinge, approx, absolute, pnll): (f64, f64, f64, f64),
    squared: bool,
) -> (f64, Vec<f64>, f64) {
    let n = labels.len() / 3;
    let s = log_s.exp();
    let rows = |i: usize| [i * dim, (n + i) * dim, (2 * n + i) * dim];
    let mut loss = 0.0;
    let mut de = vec![0.0; e.len()];
    let mut dlog_s = 0.0;
    for i in 0..n {
        let [a, p, m] = rows(i);
        // The pairs ap, an, pn as (first row, second row).
        let pairs = [(a, p), (a, m), (p, m)];
        let q: Vec<f64> = pairs
            .iter()
            .map(|&(x, y)| (0..dim).map(|k| (e[x + k] - e[y + k]).powi(2)).sum())
            .collect();
        let d: Vec<f64> = q
            .iter()
            .map(|&q| s * if squared { q } else { q.sqrt() })
            .collect();
        let t = &labels[3 * i..3 * i + 3];
        let margin = d[0] - d[1] + t[1] - t[0];
        let err: Vec<f64> = (0..3).map(|j| d[j] - t[j]).collect();
        let norm = err.iter().map(|v| v * v).sum::<f64>().sqrt();
        let poisson: f64 = (0..3).map(|j| d[j] - t[j] * (d[j] + eps).ln()).sum::<f64>() / 3.0;
        let l1: f64 = err.iter().map(|v| v.abs()).sum();
        loss +=
            (hinge * margin.max(0.0) + approx * norm + absolute * l1 + pnll * poisson) / n as f64;
        for (j, &(x, y)) in pairs.iter().enumerate() {
            let mut g = pnll * (1.0 - t[j] / (d[j] + eps)) / 3.0;
            if err[j] != 0.0 {
                g += absolute * err[j].signum();
            }
            if norm > 0.0 {
                g += approx * err[j] / norm;
            }
            if margin > 0.0 {
                g += hinge * [1.0, -1.0, 0.0][j];
            }
            g /= n as f64;
            dlog_s += g * d[j];
            let slope = if squared {
                2.0
            } else if q[j] > 0.0 {
                1.0 / q[j].sqrt()
            } else {
                0.0
            };
            for k in 0..dim {
                let v = g * s * slope * (e[x + k] - e[y + k]);
                de[x + k] += v;
                de[y + k] -= v;
            }
        }
    }
    (loss, de, dlog_s)
}

/// One AdamW step as torch.optim.AdamW takes it (`step` is 1-based), in place.
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    lr: f64,
    weight_decay: f64,
    (beta1, beta2, eps): (f64, f64, f64),
    step: u64,
) {
    let bc1 = 1.0 - beta1.powf(step as f64);
    let bc2 = 1.0 - beta2.powf(step as f64);
    for i in 0..p.len() {
        p[i] *= 1.0 - lr * weight_decay;
        m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
        p[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
    }
}

/// A CNN-ED network's embedding of `text`, layer by layer as the official code computes
/// it: one 1-channel one-hot signal per character of the alphabet, `layers` times a
/// bias-free conv and an average pool (and a ReLU where the shape has one), flattened
/// c-major into the linear head.
pub fn cnn_ed_forward(model: &crate::model::cnn_ed::CnnEd, text: &str) -> Vec<f64> {
    let shape = model.shape();
    let (c_count, mut len) = (shape.alphabet, shape.max_len);
    let mut x = vec![0.0; c_count * len];
    for (l, id) in model.token_ids(text).enumerate() {
        if (id as usize) < c_count {
            x[id as usize * len + l] = 1.0;
        }
    }
    let f64s = |v: &[f32]| v.iter().map(|&w| f64::from(w)).collect::<Vec<f64>>();
    let mut cin = 1;
    for layer in 0..shape.layers {
        let zero_bias = vec![0.0; shape.channels];
        let y = conv1d(
            &x,
            &f64s(model.conv_weight(layer)),
            &zero_bias,
            cin,
            shape.channels,
            len,
        );
        x = avgpool(&y, len);
        if shape.relu_after(layer) {
            x = relu(&x);
        }
        (cin, len) = (shape.channels, len / 2);
    }
    let fc = f64s(model.fc_weight());
    linear(
        &x,
        &fc,
        &f64s(model.fc_bias()),
        shape.flat(),
        shape.dim,
        false,
    )
}
