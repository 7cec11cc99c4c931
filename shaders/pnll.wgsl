// The pair head and its loss, forward and backward in one pass.
// Rows 0..pairs of `e` are the first strings of the pairs, rows pairs..2 * pairs the
// second ones (one batched forward, so batch norm sees one batch):
//   d_hat[p] = s * sum_k (e[p, k] - e[pairs + p, k])^2,  s = exp(log_s)
//   loss     = mean_p (d_hat[p] - d[p] * log(d_hat[p] + eps))
// which is torch.nn.PoissonNLLLoss(log_input=False, full=False) with the distance as
// the rate. With g[p] = (1 - d[p] / (d_hat[p] + eps)) / pairs:
//   de[p] = 2 s g[p] (e[p] - e[pairs + p]),  de[pairs + p] = -de[p],
//   dlog_s = sum_p g[p] * d_hat[p]   (written only when the scale is learned).
// One workgroup: each thread takes pairs tid, tid + 256, ...; loss_head.wgsl (appended)
// declares the bindings and adds the per-thread partial sums in a fixed order.
struct Shape {
    batch: u32,      // pairs
    dim: u32,
    log_scale: u32,  // offset of log_s in the parameter slab (and in `grads`)
    learn: u32,      // 1: write dlog_s
    eps: f32,
    slot: u32,       // where in `losses` this step's loss goes
    _pad0: u32,
    _pad1: u32,
}


@compute @workgroup_size(256)
fn forward_backward(@builtin(local_invocation_index) tid: u32) {
    let scale = exp(params[s.log_scale]);
    let n = s.batch;
    var loss = 0.0;
    var dscale = 0.0;
    for (var p = tid; p < n; p += THREADS) {
        let a = p * s.dim;
        let b = (n + p) * s.dim;
        var sq = 0.0;
        for (var k = 0u; k < s.dim; k++) {
            let diff = e[a + k] - e[b + k];
            sq += diff * diff;
        }
        let d_hat = scale * sq;
        let d = labels[p];
        loss += d_hat - d * log(d_hat + s.eps);
        let g = (1.0 - d / (d_hat + s.eps)) / f32(n);
        dscale += g * d_hat;
        let c = 2.0 * scale * g;
        for (var k = 0u; k < s.dim; k++) {
            let v = c * (e[a + k] - e[b + k]);
            de[a + k] = v;
            de[b + k] = -v;
        }
    }
    finish(tid, loss, dscale);
}
