//! GPU ops, one file each beside `shaders/<op>.wgsl`. An op owns its compiled pipelines
//! (built once per device) and hands out [`Call`](crate::gpu::Call)s: the op bound to
//! fixed buffers, recorded for any batch size up to what the buffers hold. Shapes travel
//! in a small uniform whose first word is the batch size; parameters are read from the
//! model's flat slab at offsets given in that uniform.
pub mod avgpool;
pub mod batchnorm;
pub mod conv1d;
pub mod embedding;
pub mod knn;
pub mod linear;
pub mod relu;
pub mod tapconv;

/// Every op, compiled once for a device.
pub struct Ops {
    pub embedding: embedding::Embedding,
    pub conv1d: conv1d::Conv1d,
    pub avgpool: avgpool::AvgPool,
    pub relu: relu::Relu,
    pub linear: linear::Linear,
    pub batchnorm: batchnorm::BatchNorm,
    pub tapconv: tapconv::TapConv,
}

impl Ops {
    pub fn new(gpu: &crate::gpu::Gpu) -> Self {
        Ops {
            embedding: embedding::Embedding::new(gpu),
            conv1d: conv1d::Conv1d::new(gpu),
            avgpool: avgpool::AvgPool::new(gpu),
            relu: relu::Relu::new(gpu),
            linear: linear::Linear::new(gpu),
            batchnorm: batchnorm::BatchNorm::new(gpu),
            tapconv: tapconv::TapConv::new(gpu),
        }
    }
}
