// What every loss head shares (appended to pnll.wgsl and ranking.wgsl, which each
// declare their `struct Shape`: batch, dim, log_scale, learn, eps, slot, then their own):
// the bindings, and `finish`. Each of the 256 threads of the single workgroup brings its
// partial loss and d loss / d log_s; they are added in a fixed tree order (so both are
// deterministic), and thread 0 writes the mean loss into `losses[s.slot]` and dlog_s into
// `grads[s.log_scale]` (0 unless the scale is learned).
@group(0) @binding(0) var<uniform> s: Shape;
@group(0) @binding(1) var<storage, read> e: array<f32>;        // embeddings
@group(0) @binding(2) var<storage, read> labels: array<f32>;   // distances
@group(0) @binding(3) var<storage, read> params: array<f32>;
@group(0) @binding(4) var<storage, read_write> de: array<f32>; // the shape of e
@group(0) @binding(5) var<storage, read_write> grads: array<f32>;
@group(0) @binding(6) var<storage, read_write> losses: array<f32>;

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
