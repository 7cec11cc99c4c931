// The end of every loss head (prepended to pnll.wgsl and ranking.wgsl, after their
// bindings' declarations are known by name): each of the 256 threads of the single
// workgroup brings its partial loss and d loss / d log_s; they are added in a fixed tree
// order (so both are deterministic), and thread 0 writes the mean loss into
// `losses[s.slot]` and dlog_s into `grads[s.log_scale]` (0 unless the scale is learned).
const THREADS: u32 = 256u;
var<workgroup> loss_sum: array<f32, THREADS>;
var<workgroup> scale_sum: array<f32, THREADS>;

fn finish(tid: u32, loss: f32, dscale: f32) {
    loss_sum[tid] = loss;
    scale_sum[tid] = dscale;
    workgroupBarrier();
    for (var width = THREADS / 2u; width > 0u; width /= 2u) {
        if tid < width {
            loss_sum[tid] += loss_sum[tid + width];
            scale_sum[tid] += scale_sum[tid + width];
        }
        workgroupBarrier();
    }
    if tid == 0u {
        losses[s.slot] = loss_sum[0] / f32(s.batch);
        grads[s.log_scale] = select(0.0, scale_sum[0], s.learn == 1u);
    }
}
