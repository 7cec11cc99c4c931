//! GPU ops, one file each beside `shaders/<op>.wgsl`. An op owns its kernels (each
//! pipeline built once per device, by [`Gpu::pipeline`](crate::gpu::Gpu::pipeline)) and
//! hands out [`Call`](crate::gpu::Call)s: the op bound to fixed buffers, recorded for
//! any batch size up to what the buffers hold. Shapes travel in a small uniform whose
//! first word is the batch size; parameters are read from the model's flat slab at
//! offsets given in that uniform, and gradients are written to a slab of the same layout
//! (each gradient overwritten by exactly one call per step).
pub mod adamw;
pub mod avgpool;
pub mod batchnorm;
pub mod cgk;
pub mod cnn_ed;
pub mod cnn_ed_prefix;
pub mod conv1d;
pub mod conv8;
pub mod embedding;
pub mod knn;
pub mod linear;
pub mod onehot_conv;
pub mod pnll;
pub mod ranking;
pub mod relu;
pub mod tapconv;
pub mod weight_grad;

/// A layer's weight packed for the register tile (`shaders/gemm_tile.wgsl`:
/// `[reduction][rows]`, rows padded to 64), and the call that packs it from the slab:
/// recorded once per set of weights, before the calls that read it.
pub struct PackedWeight {
    pub pack: crate::gpu::Call,
    weight: wgpu::Buffer,
}

impl PackedWeight {
    /// A `len`-float packed weight and the call of `kernel` (one thread per float, with
    /// `uniform`) that packs it from `params`.
    fn new<U: bytemuck::Pod>(
        gpu: &crate::gpu::Gpu,
        kernel: &crate::gpu::Kernel,
        uniform: &U,
        params: &wgpu::Buffer,
        len: u32,
    ) -> Self {
        let weight = crate::gpu::storage_buffer(gpu, "packed weight", u64::from(len) * 4);
        let pack = kernel.call_threads(gpu, uniform, &[params, &weight], u64::from(len));
        PackedWeight { pack, weight }
    }

    /// The packed weight, to keep alive as long as the calls that read it.
    pub fn into_buffer(self) -> wgpu::Buffer {
        self.weight
    }
}

/// The shader files that are not modules on their own but composed by the ops: the
/// register tile, its product and readers, the packed-token reader (`TOKENS_WGSL`), the
/// loss heads' bindings and sum (`LOSS_HEAD_WGSL`), CNN-ED's extents (`EXTENT_WGSL`)
/// and the shaders they are joined to.
pub const COMPOSED_SHADERS: [&str; 17] = [
    "gemm_tile.wgsl",
    "tile_product.wgsl",
    "tile_reads_shared.wgsl",
    "tile_reads_subgroup.wgsl",
    "conv1d.wgsl",
    "linear.wgsl",
    "weight_grad.wgsl",
    "tapconv.wgsl",
    "tokens.wgsl",
    "embedding.wgsl",
    "loss_head.wgsl",
    "pnll.wgsl",
    "ranking.wgsl",
    "extent.wgsl",
    "conv8.wgsl",
    "onehot_conv.wgsl",
    "cnn_ed_prefix.wgsl",
];

/// Every composed source, as the ops build them, labelled.
pub fn composed_shader_sources() -> Vec<(String, String)> {
    [
        conv1d::shader_sources(),
        linear::shader_sources(),
        weight_grad::shader_sources(),
        tapconv::shader_sources(),
        embedding::shader_sources(),
        conv8::shader_sources(),
        onehot_conv::shader_sources(),
        cnn_ed_prefix::shader_sources(),
        vec![
            ("pnll.wgsl".to_string(), pnll::source()),
            ("ranking.wgsl".to_string(), ranking::source()),
        ],
    ]
    .concat()
}

/// `token_at(i)`, token `i` of a `tokens: array<u32>` binding holding u8 tokens four to
/// a word (as [`crate::input::tokenize_batch`] lays them out): prepended to the shaders
/// that read tokens.
const TOKENS_WGSL: &str = include_str!("../../shaders/tokens.wgsl");

/// `extent(len, level)`, the places of a CNN-ED activation that can be nonzero:
/// prepended to the CNN-ED kernels.
const EXTENT_WGSL: &str = include_str!("../../shaders/extent.wgsl");

/// The bindings every loss head has and `finish(tid, loss, dscale)`, the fixed-order sum
/// that ends each: appended to them.
const LOSS_HEAD_WGSL: &str = include_str!("../../shaders/loss_head.wgsl");

/// The most segments a fixed-order reduction (a weight gradient) may have: its partial
/// sums are one grid dimension (WebGPU's floor), and the loop that adds them in order
/// runs that many iterations, which lavapipe silently stops past 65,535 (see topk.wgsl).
pub const MAX_SEGMENTS: u64 = 65_535;

/// Rows of a tile product (and of a packed weight): `n` rounded up to the tile's 64.
fn tile_rows(n: u32) -> u32 {
    n.div_ceil(64) * 64
}

/// Workgroup memory the register tile needs at its largest: linear's 2 x 200 4x4 f32
/// matrices (conv1d, weight_grad and tapconv stage 2 x 192).
pub const TILE_WORKGROUP_BYTES: u32 = 2 * linear::KMAX * 64;

/// A clear error when `gpu` cannot run the tiled ops (every Vulkan desktop driver,
/// Metal and DX12 give at least 32 KiB; WebGPU's default floor is 16 KiB).
pub fn check_tile_limits(gpu: &crate::gpu::Gpu) -> anyhow::Result<()> {
    let available = gpu.limits.max_compute_workgroup_storage_size;
    if available < TILE_WORKGROUP_BYTES {
        anyhow::bail!(
            "this adapter ({}) has {available} bytes of workgroup memory; the model's \
             kernels need {TILE_WORKGROUP_BYTES}",
            gpu.info.name
        );
    }
    Ok(())
}

/// How a register tile (`shaders/gemm_tile.wgsl`, the kNN screen) reads the staged
/// columns at each step of its product, chosen per device ([`TileReads::for_device`]);
/// both give the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileReads {
    /// Every invocation reads all 32 columns from workgroup memory.
    Shared,
    /// Each invocation of a subgroup of 8 reads four and broadcasts them: 1.4x faster
    /// products on lavapipe, which loads from workgroup memory lane by lane.
    Subgroup,
}

impl TileReads {
    pub const ALL: [TileReads; 2] = [TileReads::Shared, TileReads::Subgroup];

    /// [`TileReads::Subgroup`] on CPU adapters whose subgroups are always 8 wide
    /// (lavapipe at its default 256-bit lanes); [`TileReads::Shared`] elsewhere, GPUs
    /// included, whose workgroup memory serves one address to every lane at once.
    pub fn for_device(gpu: &crate::gpu::Gpu) -> Self {
        let info = &gpu.info;
        let eight_wide = info.subgroup_min_size == 8 && info.subgroup_max_size == 8;
        if info.device_type == wgpu::DeviceType::Cpu
            && gpu.features.contains(wgpu::Features::SUBGROUP)
            && eight_wide
        {
            TileReads::Subgroup
        } else {
            TileReads::Shared
        }
    }

    /// The register tile's product (`shaders/tile_product.wgsl`) with this reader
    /// (`shaders/tile_reads_*.wgsl`), for a shader that stages its columns as the tile
    /// does and gives its rows' values.
    fn product(self) -> String {
        let reader = match self {
            TileReads::Shared => include_str!("../../shaders/tile_reads_shared.wgsl"),
            TileReads::Subgroup => include_str!("../../shaders/tile_reads_subgroup.wgsl"),
        };
        format!(
            "{}\n{reader}",
            include_str!("../../shaders/tile_product.wgsl")
        )
    }

    /// The matrix products' register tile with this reader, to follow the including
    /// op's `const KMAX`.
    fn wgsl(self) -> String {
        format!(
            "{}\n{}",
            include_str!("../../shaders/gemm_tile.wgsl"),
            self.product()
        )
    }

    /// How a source built with this reader is labelled in the portability test.
    fn label(self) -> &'static str {
        match self {
            TileReads::Shared => "shared reads",
            TileReads::Subgroup => "subgroup reads",
        }
    }
}

/// Every (label, source) of a tiled op's source under each reader, for the portability
/// test.
fn reader_sources(name: &str, source: impl Fn(TileReads) -> String) -> Vec<(String, String)> {
    TileReads::ALL
        .map(|reads| (format!("{name}, {}", reads.label()), source(reads)))
        .to_vec()
}

/// The same for an op with `variants` sources (`{name} {i}`).
fn tiled_sources(
    name: &str,
    variants: u32,
    source: impl Fn(u32, TileReads) -> String,
) -> Vec<(String, String)> {
    (0..variants)
        .flat_map(|i| reader_sources(&format!("{name} {i}"), |reads| source(i, reads)))
        .collect()
}

/// Every op, compiled once for a device.
pub struct Ops {
    pub embedding: embedding::Embedding,
    pub conv1d: conv1d::Conv1d,
    pub conv8: conv8::Conv8,
    pub avgpool: avgpool::AvgPool,
    pub relu: relu::Relu,
    pub linear: linear::Linear,
    pub onehot_conv: onehot_conv::OneHotConv,
    pub table: cnn_ed::TableEmbed,
    pub prefix: cnn_ed_prefix::PrefixEmbed,
    pub batchnorm: batchnorm::BatchNorm,
    pub tapconv: tapconv::TapConv,
    pub weight_grad: weight_grad::WeightGrad,
    pub pnll: pnll::Pnll,
    pub ranking: ranking::Ranking,
    pub adamw: adamw::AdamW,
    /// The kNN pipelines, compiled on first use.
    pub knn: knn::Knn,
}

impl Ops {
    pub fn new(gpu: &crate::gpu::Gpu) -> Self {
        Ops::with_tile_reads(gpu, TileReads::for_device(gpu))
    }

    /// The ops with the register tile reading as `reads` says (tests compare both).
    pub fn with_tile_reads(gpu: &crate::gpu::Gpu, reads: TileReads) -> Self {
        Ops {
            embedding: embedding::Embedding::new(gpu),
            conv1d: conv1d::Conv1d::new(gpu, reads),
            conv8: conv8::Conv8::new(gpu),
            avgpool: avgpool::AvgPool::new(gpu),
            relu: relu::Relu::new(gpu),
            linear: linear::Linear::new(gpu, reads),
            onehot_conv: onehot_conv::OneHotConv::new(gpu),
            table: cnn_ed::TableEmbed::new(gpu),
            prefix: cnn_ed_prefix::PrefixEmbed::new(gpu),
            batchnorm: batchnorm::BatchNorm::new(gpu),
            tapconv: tapconv::TapConv::new(gpu, reads),
            weight_grad: weight_grad::WeightGrad::new(gpu, reads),
            pnll: pnll::Pnll::new(gpu),
            ranking: ranking::Ranking::new(gpu),
            adamw: adamw::AdamW::new(gpu),
            knn: knn::Knn::with_tile_reads(reads),
        }
    }
}
