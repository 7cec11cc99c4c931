//! k nearest neighbours by squared Euclidean distance, as a tiled matrix product fused
//! with a threshold filter (`shaders/knn_scan.wgsl`), then an exact merge into sorted
//! per-query lists (`shaders/knn_select.wgsl` after `topk.wgsl`); or by Hamming distance
//! over byte codes (the number of differing bytes, for the CGK string embedding), with
//! the same slices and merge and a tiled count of differing bytes as the screen
//! (`shaders/knn_scan_hamming.wgsl`), exact, and bounded by each code's used length
//! (the words before its trailing run of padding bytes 0x80).
//!
//! The database is stored in chunks that fit one storage binding, by dimension for the
//! scan and by row for exact distances, with each row's squared norm, in a fixed
//! shuffled order (so that any slice is a fair sample of the whole, whatever order the
//! caller's rows are in). A search walks the database in slices, one after another in a
//! single submit: for each slice the scan screens every (query, row) pair with
//! `|x|^2 - 2 q.x + |q|^2` against the query's current k-th distance and appends the
//! rows that may beat it to the query's candidate slots; the select pass computes their
//! exact distances and merges them into the query's list, which sets the next slice's
//! threshold. The first slice is short (about 4 k rows, all candidates); after it each
//! slice is as long as all rows before it, so about k rows of each pass the screen
//! (the k-th of n shuffled rows is beaten by a new row with probability k / n), and the
//! search costs the product plus O(k log n) exact distances per query.
//!
//! A slice whose candidates overflow the slots (many rows tied at a query's k-th
//! distance, such as duplicates) sets a flag, and the batch is searched again in slices
//! no longer than the slots, which cannot overflow.
//!
//! Results are exact: every row whose exact distance could make the list passes the
//! screen (its rounding error is bounded), and lists are ordered by (exact distance,
//! row), so ties go to the smaller row. Rows are f32, or f16 read as packed u32 pairs
//! (no f16 shader support needed); sums are f32. Hamming counts are exact integers,
//! reported as f32.
use std::sync::OnceLock;

use anyhow::{Result, bail};
use half::f16;
use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use super::TileReads;
use crate::gpu::{Call, Gpu, Kernel, Readback, storage_buffer, storage_buffer_init};

/// Largest k the kernel supports (its largest list bucket).
pub const MAX_K: usize = 1024;
/// Widest vector the kernel supports (the select pass keeps a query in workgroup memory).
pub const MAX_DIM: usize = 128;
/// Widest code, in bytes, of a Hamming database (the scan keeps its tile of 16 queries
/// in workgroup memory).
pub const MAX_CODE_WIDTH: usize = 1024;
/// List sizes a select pipeline is built for; a search uses the smallest that holds k.
const K_BUCKETS: [usize; 4] = [16, 64, 256, MAX_K];
/// Rows of one scan workgroup's tile (`RT` in both scans); its queries: [`Metric`]'s
/// `query_tile`.
const ROW_TILE: usize = 256;
/// Candidate slots per query (and the slice length of the overflow rerun). Bounds the
/// work of one select invocation: at most SLOTS / 64 = 64 merges and exact distances,
/// ~15,000 loop iterations plus up to 16,384 for 256-word codes, inside lavapipe's
/// budget of 65,535 per invocation (see topk.wgsl).
const SLOTS: usize = 4096;
/// Longest slice: its row tiles must fit one grid dimension.
const MAX_SLICE: usize = MAX_GROUPS * ROW_TILE;
/// Workgroups per grid dimension (WebGPU's guaranteed limit).
const MAX_GROUPS: usize = 65_535;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    rows: u32,
    stride: u32,
    dim: u32,
    k: u32,
    cap: u32,
    slice_start: u32,
    slice_end: u32,
    first_slice: u32,
    _pad: [u32; 3],
}

/// How a database's rows and the queries are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance between f32 vectors, the rows stored as f32, or as IEEE
    /// f16 when `f16`.
    SquaredL2 { f16: bool },
    /// The number of byte positions at which two byte codes differ.
    Hamming,
}

impl Metric {
    /// Queries of one scan workgroup's tile (`QT` in knn_scan.wgsl and
    /// knn_scan_hamming.wgsl).
    fn query_tile(self) -> usize {
        match self {
            Metric::SquaredL2 { .. } => 32,
            Metric::Hamming => 16,
        }
    }

    /// Bytes of one row of `dim` values (or code bytes) as stored.
    fn row_bytes(self, dim: usize) -> usize {
        match self {
            Metric::SquaredL2 { f16: true } => 2 * dim,
            Metric::SquaredL2 { f16: false } => 4 * dim,
            Metric::Hamming => dim,
        }
    }
}

/// Padding byte of CGK codes, four to a word: words of it past a code's used length
/// differ from nothing in the other code's padding.
const PADDING_WORD: u32 = 0x8080_8080;

/// A database of `rows` vectors of `dim`, or byte codes of `dim` bytes, on the GPU
/// (cloning shares the buffers).
#[derive(Clone)]
pub struct Database {
    chunks: Vec<Chunk>,
    rows: usize,
    dim: usize,
    metric: Metric,
}

#[derive(Clone)]
struct Chunk {
    /// `[words per row, stride]`: word w of row r at `w * stride + r`, for the scan.
    words: wgpu::Buffer,
    /// `[rows, words per row]`, for the exact distances of candidates.
    by_row: wgpu::Buffer,
    /// `[stride]` what the scan needs of each row besides its words: the squared norm
    /// (f32), or the used length in words of a code (u32).
    row_terms: wgpu::Buffer,
    /// `[rows]` the caller's row number of each stored row.
    ids: wgpu::Buffer,
    rows: usize,
    stride: usize,
}

impl Database {
    /// Upload `data`: `rows x dim` little-endian f32, or IEEE f16 when `f16`, row-major.
    /// Chunks hold at most `max_chunk_rows` rows (tests force small chunks) and never
    /// exceed the device's storage-binding limit.
    pub fn upload(
        gpu: &Gpu,
        data: &[u8],
        dim: usize,
        f16: bool,
        max_chunk_rows: Option<usize>,
    ) -> Result<Self> {
        if dim == 0 || dim > MAX_DIM || (f16 && !dim.is_multiple_of(2)) {
            bail!("unsupported vector width {dim} (1..={MAX_DIM}, even for f16)");
        }
        Self::upload_rows(gpu, data, dim, Metric::SquaredL2 { f16 }, max_chunk_rows)
    }

    /// Upload byte codes for search by Hamming distance: `data` is `rows x width` bytes,
    /// row-major, `width` a multiple of 4 up to [`MAX_CODE_WIDTH`]. Chunks as in
    /// [`Database::upload`]. Codes may end in padding bytes 0x80 (as CGK codes of short
    /// strings do); searches skip the words that are padding in both codes.
    pub fn upload_codes(
        gpu: &Gpu,
        data: &[u8],
        width: usize,
        max_chunk_rows: Option<usize>,
    ) -> Result<Self> {
        if width == 0 || width > MAX_CODE_WIDTH || !width.is_multiple_of(4) {
            bail!("unsupported code width {width} (a multiple of 4 up to {MAX_CODE_WIDTH})");
        }
        Self::upload_rows(gpu, data, width, Metric::Hamming, max_chunk_rows)
    }

    fn upload_rows(
        gpu: &Gpu,
        data: &[u8],
        dim: usize,
        metric: Metric,
        max_chunk_rows: Option<usize>,
    ) -> Result<Self> {
        let row_bytes = metric.row_bytes(dim);
        if !data.len().is_multiple_of(row_bytes) {
            bail!(
                "database of {} bytes is not a whole number of {row_bytes}-byte rows",
                data.len()
            );
        }
        let rows = data.len() / row_bytes;
        // Row numbers must stay clear of the lists' sentinels (topk.wgsl).
        if rows > (u32::MAX as usize) - 4 * MAX_K {
            bail!("database of {rows} rows is too large for 32-bit row numbers");
        }
        let words_per_row = row_bytes / 4;
        let by_binding = (gpu.max_binding_bytes() as usize / row_bytes) / ROW_TILE * ROW_TILE;
        if by_binding == 0 {
            bail!("the device's storage bindings cannot hold {ROW_TILE} rows of {row_bytes} bytes");
        }
        let chunk_rows = by_binding.min(max_chunk_rows.unwrap_or(usize::MAX).max(1));
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.shuffle(&mut StdRng::seed_from_u64(0x6b6e6e));
        let chunks = order
            .chunks(chunk_rows)
            .map(|ids| Chunk::upload(gpu, data, ids, words_per_row, metric))
            .collect();
        Ok(Database {
            chunks,
            rows,
            dim,
            metric,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per vector, or bytes per code.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// u32 words per query in a search's query buffer: f32 values, or 4 code bytes each.
    pub fn query_words(&self) -> usize {
        match self.metric {
            Metric::SquaredL2 { .. } => self.dim,
            Metric::Hamming => self.dim / 4,
        }
    }
}

impl Chunk {
    /// Store the rows `ids` of `data` (rows of `words_per_row` little-endian words) in
    /// both layouts, with their squared norms or used lengths. On CPU threads: this runs
    /// whenever an index is opened for search (0.1 s for 347k rows of 80 f32).
    fn upload(gpu: &Gpu, data: &[u8], ids: &[u32], words_per_row: usize, metric: Metric) -> Chunk {
        let rows = ids.len();
        let stride = rows.next_multiple_of(ROW_TILE);
        let row_bytes = words_per_row * 4;
        let row = |id: u32| &data[id as usize * row_bytes..][..row_bytes];
        let mut by_row = vec![0u32; rows * words_per_row];
        by_row
            .par_chunks_mut(words_per_row)
            .zip(ids)
            .for_each(|(out, &id)| out.iter_mut().zip(words(row(id))).for_each(|(o, w)| *o = w));
        // Transposed a cache line of each row at a time: gathering one word at a time
        // from the shuffled rows missed the cache on every word (0.3 s more for 347k rows).
        let mut by_dim = vec![0u32; words_per_row * stride];
        by_dim
            .par_chunks_mut(TRANSPOSE_LINES * stride)
            .enumerate()
            .for_each(|(block, lines)| {
                let first = block * TRANSPOSE_LINES;
                for (r, row) in by_row.chunks_exact(words_per_row).enumerate() {
                    for (l, &word) in row[first..].iter().take(TRANSPOSE_LINES).enumerate() {
                        lines[l * stride + r] = word;
                    }
                }
            });
        let mut row_terms: Vec<u32> = by_row
            .par_chunks(words_per_row)
            .map(|row| match metric {
                Metric::SquaredL2 { f16 } => squared_norm(row, f16).to_bits(),
                Metric::Hamming => used_words(row) as u32,
            })
            .collect();
        row_terms.resize(stride, 0);
        Chunk {
            words: storage_buffer_init(gpu, "knn database", &by_dim),
            by_row: storage_buffer_init(gpu, "knn database rows", &by_row),
            row_terms: storage_buffer_init(gpu, "knn database row terms", &row_terms),
            ids: storage_buffer_init(gpu, "knn database ids", ids),
            rows,
            stride,
        }
    }
}

/// Dimension lines [`Chunk::upload`] fills in one pass over the rows: the words of a
/// 64-byte cache line.
const TRANSPOSE_LINES: usize = 16;

/// The little-endian words of `bytes` (a multiple of 4 long).
fn words(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|le| u32::from_le_bytes([le[0], le[1], le[2], le[3]]))
}

/// Squared norm of a row of f32 words, or of f16 pairs when `f16`.
fn squared_norm(row: &[u32], f16: bool) -> f32 {
    row.iter()
        .map(|&word| {
            let [a, b] = if f16 {
                [word as u16, (word >> 16) as u16].map(|h| f16::from_bits(h).to_f32())
            } else {
                [f32::from_bits(word), 0.0]
            };
            a * a + b * b
        })
        .sum()
}

/// Words of a code up to its last one that is not all padding (the scan's `used`).
fn used_words(code: &[u32]) -> usize {
    code.iter()
        .rposition(|&w| w != PADDING_WORD)
        .map_or(0, |last| last + 1)
}

/// One neighbour: squared Euclidean distance (or Hamming distance, a whole number) and
/// database row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub distance: f32,
    pub row: usize,
}

/// The kNN kernels: one scan per metric (and storage type) and width, one select per
/// metric, width and k bucket, each generated when a plan needs it and compiled once per
/// device (`Gpu::pipeline` caches by source). `reads`: how the vector scan's register
/// tile reads its query tile.
pub struct Knn {
    reads: TileReads,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KernelKey {
    /// `reads`: how the vector screen's tile reads its queries (unused for codes).
    Scan {
        metric: Metric,
        dmax: usize,
        reads: TileReads,
    },
    Select {
        metric: Metric,
        dmax: usize,
        kmax: usize,
    },
}

impl KernelKey {
    fn entry(self) -> (&'static str, &'static str) {
        match self {
            KernelKey::Scan { .. } => ("knn.scan", "scan"),
            KernelKey::Select { .. } => ("knn.select", "select_candidates"),
        }
    }

    /// The WGSL of this variant: its constants, then the shared snippets, then the pass.
    fn source(self) -> String {
        let (metric, dmax) = match self {
            KernelKey::Scan { metric, dmax, .. } | KernelKey::Select { metric, dmax, .. } => {
                (metric, dmax)
            }
        };
        let hamming = metric == Metric::Hamming;
        let f16 = metric == Metric::SquaredL2 { f16: true };
        let constants = format!(
            "const HAMMING: bool = {hamming};\nconst F16: bool = {f16};\nconst DMAX: u32 = {dmax}u;\n"
        );
        let common = include_str!("../../shaders/knn_common.wgsl");
        match self {
            KernelKey::Scan { .. } if hamming => format!(
                "{constants}{common}\n{}\n{}",
                include_str!("../../shaders/knn_append.wgsl"),
                include_str!("../../shaders/knn_scan_hamming.wgsl")
            ),
            KernelKey::Scan { reads, .. } => format!(
                "{constants}{common}\n{}\n{}\n{}",
                include_str!("../../shaders/knn_append.wgsl"),
                include_str!("../../shaders/knn_scan.wgsl"),
                reads.product()
            ),
            KernelKey::Select { kmax, .. } => format!(
                "{constants}const KMAX: u32 = {kmax}u;\n{common}\n{}\n{}",
                include_str!("../../shaders/topk.wgsl"),
                include_str!("../../shaders/knn_select.wgsl")
            ),
        }
    }
}

/// `DMAX` of the kernels for `dim` under `metric`: query words, rounded up to 4 for
/// vectors.
fn dmax(metric: Metric, dim: usize) -> usize {
    match metric {
        Metric::SquaredL2 { .. } => dim.next_multiple_of(4),
        Metric::Hamming => dim / 4,
    }
}

/// Every kNN shader variant a search of `dim`-wide vectors (or `dim`-byte codes) under
/// `metric` may build, as (label, entry point, WGSL source): for checks that translate
/// all shaders without running them.
pub fn shader_variants(metric: Metric, dim: usize) -> Vec<(String, &'static str, String)> {
    let dmax = dmax(metric, dim);
    // The code scan has no register tile: one source, whatever the reader.
    let readers = match metric {
        Metric::Hamming => &TileReads::ALL[..1],
        Metric::SquaredL2 { .. } => &TileReads::ALL[..],
    };
    let scans = readers.iter().map(|&reads| KernelKey::Scan {
        metric,
        dmax,
        reads,
    });
    let selects = K_BUCKETS.map(|kmax| KernelKey::Select { metric, dmax, kmax });
    scans
        .chain(selects)
        .map(|key| {
            let (label, entry) = key.entry();
            let variant = match key {
                KernelKey::Scan { .. } if metric == Metric::Hamming => String::new(),
                KernelKey::Scan { reads, .. } => format!(", {}", reads.label()),
                KernelKey::Select { kmax, .. } => format!(" kmax={kmax}"),
            };
            (
                format!("{label} {metric:?} dim={dim}{variant}"),
                entry,
                key.source(),
            )
        })
        .collect()
}

impl Knn {
    pub fn new(gpu: &Gpu) -> Self {
        Knn::with_tile_reads(TileReads::for_device(gpu))
    }

    /// The kernels with the scan's register tile reading as `reads` says (tests compare
    /// both).
    pub fn with_tile_reads(reads: TileReads) -> Self {
        Knn { reads }
    }

    fn kernel(&self, gpu: &Gpu, key: KernelKey) -> Kernel {
        let (label, entry) = key.entry();
        Kernel::new(gpu, label, &key.source(), entry)
    }
    /// The `min(k, rows)` nearest rows of `db` to each of the `queries`, nearest first,
    /// ties by smaller row. Queries are laid out as [`KnnPlan::search`] takes them. Builds
    /// a [`KnnPlan`] for this call; callers that search repeatedly keep one instead.
    pub fn search<T: bytemuck::Pod>(
        &self,
        gpu: &Gpu,
        db: &Database,
        queries: &[T],
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let n = std::mem::size_of_val(queries) / (4 * db.query_words());
        KnnPlan::new(gpu, self, db, k, n.max(1), None)?.search(gpu, queries)
    }
}

/// The most queries one search at `k` can take on `gpu`, for queries of `query_words`
/// u32 words ([`Database::query_words`]: a vector's width, or a code's width / 4): its
/// query, list and candidate buffers must each fit one storage binding.
pub fn max_batch(gpu: &Gpu, query_words: usize, k: usize) -> usize {
    let max_binding = gpu.max_binding_bytes() as usize;
    (max_binding / (SLOTS * 4))
        .min(max_binding / (k.max(1) * 8))
        .min(max_binding / (query_words.max(1) * 4))
        .max(1)
}

/// Everything one search of up to `capacity` queries at one k needs, made once and
/// reused: the query, list, candidate and readback buffers and the bound calls of
/// every slice.
pub struct KnnPlan {
    db: Database,
    k: usize,
    capacity: usize,
    /// `[capacity, query words]`.
    queries: wgpu::Buffer,
    lists: wgpu::Buffer,
    /// `[capacity + 1]`: candidates per query, then the overflow flag.
    counts: wgpu::Buffer,
    candidates: wgpu::Buffer,
    scan: Kernel,
    select: Kernel,
    /// Slices that double in length: the search.
    growing: Vec<Slice>,
    /// Slices of at most [`SLOTS`] rows, bound on the first overflow: the rerun.
    short: OnceLock<Vec<Slice>>,
    lists_readback: Readback,
    flag_readback: Readback,
}

/// One slice's two passes, bound to the plan's buffers.
struct Slice {
    scan: Call,
    select: Call,
    row_tiles: u32,
}

impl KnnPlan {
    /// Buffers and calls for batches of up to `capacity` queries at `k` (capacity is
    /// clamped to what one storage binding holds). `queries` may be a buffer another
    /// pass writes, such as a model's output: `[capacity, dim]` f32 for vectors, or
    /// `[capacity, width / 4]` u32 for codes (each word four code bytes, little-endian);
    /// otherwise the plan makes its own, filled by [`KnnPlan::search`].
    pub fn new(
        gpu: &Gpu,
        knn: &Knn,
        db: &Database,
        k: usize,
        capacity: usize,
        queries: Option<&wgpu::Buffer>,
    ) -> Result<Self> {
        if k == 0 || k > MAX_K {
            bail!("k must be between 1 and {MAX_K}, not {k}");
        }
        let metric = db.metric;
        let dmax = dmax(metric, db.dim);
        // The scan's query tile: 2 x dmax 4x4 f32 matrices plus bounds, or dmax words of
        // 16 queries plus limits and the used length.
        let tile_bytes = match metric {
            Metric::SquaredL2 { .. } => 2 * dmax * 64 + 2 * 8 * 16,
            Metric::Hamming => dmax * 16 * 4 + 4 * 16 + 4,
        };
        let available = gpu.limits.max_compute_workgroup_storage_size as usize;
        if tile_bytes > available {
            bail!(
                "this adapter has {available} bytes of workgroup memory; the kNN of \
                 {}-wide rows needs {tile_bytes}",
                db.dim
            );
        }
        let query_words = db.query_words();
        let capacity = capacity.min(max_batch(gpu, query_words, k)).max(1);
        let queries = match queries {
            Some(buffer) => buffer.clone(),
            None => storage_buffer(gpu, "knn queries", (capacity * query_words * 4) as u64),
        };
        let list_bytes = (capacity * k * 8) as u64;
        let kmax = *K_BUCKETS.iter().find(|&&b| b >= k).unwrap();
        let mut plan = KnnPlan {
            db: db.clone(),
            k,
            capacity,
            queries,
            lists: storage_buffer(gpu, "knn lists", list_bytes),
            counts: storage_buffer(gpu, "knn candidate counts", (capacity as u64 + 1) * 4),
            candidates: storage_buffer(gpu, "knn candidates", (capacity * SLOTS * 4) as u64),
            scan: knn.kernel(
                gpu,
                KernelKey::Scan {
                    metric,
                    dmax,
                    reads: knn.reads,
                },
            ),
            select: knn.kernel(gpu, KernelKey::Select { metric, dmax, kmax }),
            growing: Vec::new(),
            short: OnceLock::new(),
            lists_readback: Readback::new(gpu, list_bytes),
            flag_readback: Readback::new(gpu, 4),
        };
        plan.growing = plan.bind_slices(gpu, true);
        Ok(plan)
    }

    /// The slices of every chunk, bound to this plan's buffers. The first holds about
    /// 4 k rows (all of them candidates); after it, `growing` slices are as long as all
    /// rows before them, otherwise at most [`SLOTS`] rows.
    fn bind_slices(&self, gpu: &Gpu, growing: bool) -> Vec<Slice> {
        let first_len = (4 * self.k).next_multiple_of(ROW_TILE).min(SLOTS);
        let mut slices = Vec::new();
        let mut seen = 0usize;
        for chunk in &self.db.chunks {
            let mut start = 0;
            while start < chunk.rows {
                let len = match (seen, growing) {
                    (0, _) => first_len,
                    (_, true) => seen.next_multiple_of(ROW_TILE).min(MAX_SLICE),
                    (_, false) => SLOTS,
                };
                let end = (start + len).min(chunk.rows);
                let params = Params {
                    batch: 0,
                    rows: chunk.rows as u32,
                    stride: chunk.stride as u32,
                    dim: self.db.query_words() as u32,
                    k: self.k as u32,
                    cap: SLOTS as u32,
                    slice_start: start as u32,
                    slice_end: end as u32,
                    first_slice: u32::from(seen == 0),
                    _pad: [0; 3],
                };
                let (queries, lists, counts, candidates) =
                    (&self.queries, &self.lists, &self.counts, &self.candidates);
                let mut scan_buffers = vec![
                    queries,
                    &chunk.words,
                    &chunk.row_terms,
                    lists,
                    counts,
                    candidates,
                ];
                if self.db.metric == Metric::Hamming {
                    // The exact screen breaks ties by row number.
                    scan_buffers.push(&chunk.ids);
                }
                let select_buffers = [
                    queries,
                    &chunk.by_row,
                    lists,
                    counts,
                    candidates,
                    &chunk.ids,
                    &chunk.row_terms,
                ];
                slices.push(Slice {
                    scan: self.scan.call(gpu, &params, &scan_buffers, 0),
                    select: self.select.call(gpu, &params, &select_buffers, 0),
                    row_tiles: (end - start).div_ceil(ROW_TILE) as u32,
                });
                seen += end - start;
                start = end;
            }
        }
        slices
    }

    /// The list length this plan searches for.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Most queries one [`KnnPlan::record`] takes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The query buffer the search reads (laid out as [`KnnPlan::new`] describes).
    pub fn queries(&self) -> &wgpu::Buffer {
        &self.queries
    }

    /// Record the search of the first `batch` queries of the query buffer (every slice
    /// of every chunk) and the copy of its lists for [`KnnPlan::read`].
    pub fn record(&self, gpu: &Gpu, encoder: &mut wgpu::CommandEncoder, batch: usize) {
        self.record_slices(gpu, encoder, batch, &self.growing);
    }

    fn record_slices(
        &self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        batch: usize,
        slices: &[Slice],
    ) {
        assert!(
            batch <= self.capacity,
            "kNN batch above the plan's capacity"
        );
        if batch == 0 || slices.is_empty() {
            return;
        }
        for slice in slices {
            slice.scan.set_batch(gpu, batch as u32);
            slice.select.set_batch(gpu, batch as u32);
        }
        encoder.clear_buffer(&self.counts, 0, None);
        let query_tiles = batch.div_ceil(self.db.metric.query_tile()) as u32;
        let select_x = batch.min(MAX_GROUPS);
        let select_y = batch.div_ceil(select_x) as u32;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for slice in slices {
                slice
                    .scan
                    .record_workgroups(&mut pass, slice.row_tiles, query_tiles);
                slice
                    .select
                    .record_workgroups(&mut pass, select_x as u32, select_y);
            }
        }
        self.lists_readback
            .copy(encoder, &self.lists, (batch * self.k * 8) as u64);
        let flag_at = self.capacity as u64 * 4;
        self.flag_readback
            .copy_from(encoder, &self.counts, flag_at, 4);
    }

    /// Wait for the search recorded by [`KnnPlan::record`] and return its lists. If a
    /// slice overflowed its candidate slots, search the batch again in short slices.
    pub fn read(&self, gpu: &Gpu, batch: usize) -> Result<Vec<Vec<Neighbor>>> {
        if batch == 0 || self.growing.is_empty() {
            return Ok(vec![Vec::new(); batch]);
        }
        let overflowed = self.flag_readback.read::<u32>(gpu, 4)?[0] != 0;
        if overflowed {
            let short = self.short.get_or_init(|| self.bind_slices(gpu, false));
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            self.record_slices(gpu, &mut encoder, batch, short);
            gpu.queue.submit([encoder.finish()]);
        }
        let words: Vec<u32> = self.lists_readback.read(gpu, (batch * self.k * 8) as u64)?;
        let rows = self.db.rows;
        Ok(words
            .chunks_exact(2 * self.k)
            .map(|list| {
                list.chunks_exact(2)
                    .filter(|pair| (pair[1] as usize) < rows)
                    .map(|pair| Neighbor {
                        distance: f32::from_bits(pair[0]),
                        row: pair[1] as usize,
                    })
                    .collect()
            })
            .collect())
    }

    /// The `min(k, rows)` nearest rows to each of `queries`, nearest first, ties by
    /// smaller row: `[n, dim]` f32 for vectors, or `[n, width]` code bytes (any `Pod`
    /// type whose bytes are those rows). Uploads, searches and reads back in batches of
    /// the capacity, one submit each.
    pub fn search<T: bytemuck::Pod>(&self, gpu: &Gpu, queries: &[T]) -> Result<Vec<Vec<Neighbor>>> {
        let bytes: &[u8] = bytemuck::cast_slice(queries);
        let query_bytes = 4 * self.db.query_words();
        if !bytes.len().is_multiple_of(query_bytes) {
            bail!(
                "queries of {} bytes are not a whole number of {query_bytes}-byte queries",
                bytes.len()
            );
        }
        let mut results = Vec::with_capacity(bytes.len() / query_bytes);
        for batch in bytes.chunks(self.capacity * query_bytes) {
            let n = batch.len() / query_bytes;
            gpu.queue.write_buffer(&self.queries, 0, batch);
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            self.record(gpu, &mut encoder, n);
            gpu.queue.submit([encoder.finish()]);
            results.extend(self.read(gpu, n)?);
        }
        Ok(results)
    }
}
