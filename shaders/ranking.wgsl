// The ranking head: CNN-ED's triplet loss with its approximation term, and PNLL on each
// triplet's three pairs, forward and backward in one pass.
// Rows 0..n of `e` are the anchors, n..2n the positives, 2n..3n the negatives (one
// batched forward, so batch norm sees one batch). For each pair xy of triplet i
// (ap, an, pn):
//   q = ||e_x - e_y||^2,  D = q (SQUARED) or sqrt(q),  d = s * D,  s = exp(log_s)
//   t = labels[3 i + (0, 1, 2)]: the pair's edit distance on the distance's scale
// and the triplet's loss, weighted by `hinge`, `approx` and `pnll`:
//   R = relu(d_ap - d_an + t_an - t_ap)                              the ranking hinge
//   S = sqrt((d_ap - t_ap)^2 + (d_an - t_an)^2 + (d_pn - t_pn)^2)    the approximation
//   A = |d_ap - t_ap| + |d_an - t_an| + |d_pn - t_pn|                the paper's form of it
//   P = mean over the three pairs of d - t log(d + eps)              PNLL
//   loss = mean_i (hinge R + approx S + absolute A + pnll P)
// With G_xy = dloss/dd_xy (relu', sqrt' and |.|' are 0 at 0, as in PyTorch; so is the
// Euclidean distance's gradient at q = 0) and c_xy = G_xy * s * (2 or 1 / sqrt(q)):
//   de_a = c_ap (e_a - e_p) + c_an (e_a - e_n)
//   de_p = -c_ap (e_a - e_p) + c_pn (e_p - e_n)
//   de_n = -c_an (e_a - e_n) - c_pn (e_p - e_n)
//   dlog_s = sum G_xy d_xy   (written only when the scale is learned).
// One workgroup: thread tid takes triplets tid, tid + 256, ...; loss_head.wgsl (appended)
// declares the bindings and adds the per-thread partial sums in a fixed order.
struct Shape {
    batch: u32,      // triplets
    dim: u32,
    log_scale: u32,  // offset of log_s in the parameter slab (and in `grads`)
    learn: u32,      // 1: write dlog_s
    eps: f32,
    slot: u32,       // where in `losses` this step's loss goes
    squared: u32,    // 1: D = q, else D = sqrt(q)
    hinge: f32,
    approx: f32,
    pnll: f32,
    absolute: f32,
    _pad1: u32,
}


// D for squared distance q.
fn distance(q: f32) -> f32 {
    return select(sqrt(q), q, s.squared == 1u);
}

// dD/dq * 2: what multiplies (e_x - e_y) in dD/de_x.
fn slope(q: f32) -> f32 {
    if s.squared == 1u {
        return 2.0;
    }
    return select(0.0, 1.0 / sqrt(q), q > 0.0);
}

@compute @workgroup_size(256)
fn forward_backward(@builtin(local_invocation_index) tid: u32) {
    let scale = exp(params[s.log_scale]);
    let n = s.batch;
    var loss = 0.0;
    var dscale = 0.0;
    for (var i = tid; i < n; i += THREADS) {
        let a = i * s.dim;
        let p = (n + i) * s.dim;
        let m = (2u * n + i) * s.dim;
        var q = vec3<f32>();  // ap, an, pn
        for (var k = 0u; k < s.dim; k++) {
            let ap = e[a + k] - e[p + k];
            let an = e[a + k] - e[m + k];
            let pn = e[p + k] - e[m + k];
            q += vec3(ap * ap, an * an, pn * pn);
        }
        let d = scale * vec3(distance(q.x), distance(q.y), distance(q.z));
        let t = vec3(labels[3u * i], labels[3u * i + 1u], labels[3u * i + 2u]);
        let margin = d.x - d.y + t.y - t.x;
        let err = d - t;
        let approx = sqrt(dot(err, err));
        let pnll = d - t * log(d + s.eps);
        let absolute = abs(err);
        loss += s.hinge * max(margin, 0.0) + s.approx * approx
            + s.absolute * (absolute.x + absolute.y + absolute.z)
            + s.pnll * (pnll.x + pnll.y + pnll.z) / 3.0;
        var g = s.approx * select(vec3<f32>(), err / approx, approx > 0.0)
            + s.absolute * sign(err)
            + s.pnll * (1.0 - t / (d + s.eps)) / 3.0;
        if margin > 0.0 {
            g += s.hinge * vec3(1.0, -1.0, 0.0);
        }
        g /= f32(n);
        dscale += dot(g, d);
        let c = g * scale * vec3(slope(q.x), slope(q.y), slope(q.z));
        for (var k = 0u; k < s.dim; k++) {
            let ap = e[a + k] - e[p + k];
            let an = e[a + k] - e[m + k];
            let pn = e[p + k] - e[m + k];
            de[a + k] = c.x * ap + c.y * an;
            de[p + k] = -c.x * ap + c.z * pn;
            de[m + k] = -c.y * an - c.z * pn;
        }
    }
    finish(tid, loss, dscale);
}
