//! k nearest neighbours by squared Euclidean distance with fused top-k selection
//! (`shaders/topk.wgsl` + `knn.wgsl` + `knn_merge.wgsl`).
//!
//! The database lives on the GPU in chunks that respect the storage-binding limit. For
//! each chunk, one pass finds the k best rows of every slice of the chunk per query, a
//! second pass merges the slice lists; chunk results are merged on the CPU. Ties go to
//! the smaller row. Rows are f32, or f16 read as packed u32 pairs (no f16 shader support
//! needed); distances are summed in f32.
use anyhow::{Result, bail};

use crate::gpu::{Gpu, Kernel, Readback, storage_buffer, storage_buffer_init};

/// Largest k the kernel supports (its workgroup list length).
pub const MAX_K: usize = 1024;
/// Widest row the kernel supports (its workgroup copy of the query).
pub const MAX_DIM: usize = 256;
/// Queries per dispatch are at most this (one workgroup column each).
const MAX_QUERIES_PER_DISPATCH: usize = 65_535;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    rows: u32,
    dim: u32,
    k: u32,
    slice: u32,
    lists: u32,
    f16: u32,
    _pad: u32,
}

/// A database of `rows` vectors of `dim` on the GPU.
pub struct Database {
    chunks: Vec<Chunk>,
    rows: usize,
    dim: usize,
    f16: bool,
}

struct Chunk {
    words: wgpu::Buffer,
    start: usize,
    rows: usize,
}

impl Database {
    /// Upload `data`: `rows x dim` little-endian f32, or IEEE f16 when `f16`. Chunks hold
    /// at most `max_chunk_rows` rows (tests force small chunks) and never exceed the
    /// device's storage-binding limit.
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
        let row_bytes = dim * if f16 { 2 } else { 4 };
        if !data.len().is_multiple_of(row_bytes) {
            bail!(
                "database of {} bytes is not a whole number of {row_bytes}-byte rows",
                data.len()
            );
        }
        let rows = data.len() / row_bytes;
        let by_binding = (gpu.max_binding_bytes() as usize / row_bytes).max(1);
        // Row numbers within a chunk must stay clear of the kernel's sentinels.
        let chunk_rows = by_binding
            .min(max_chunk_rows.unwrap_or(usize::MAX))
            .clamp(1, 1 << 30);
        let chunks = (0..rows)
            .step_by(chunk_rows)
            .map(|start| {
                let n = chunk_rows.min(rows - start);
                let bytes = &data[start * row_bytes..(start + n) * row_bytes];
                Chunk {
                    words: storage_buffer_init(gpu, "knn database", bytes),
                    start,
                    rows: n,
                }
            })
            .collect();
        Ok(Database {
            chunks,
            rows,
            dim,
            f16,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// One neighbour: squared Euclidean distance and database row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub distance: f32,
    pub row: usize,
}

pub struct Knn {
    slices: Kernel,
    merge: Kernel,
}

impl Knn {
    pub fn new(gpu: &Gpu) -> Self {
        let topk = include_str!("../../shaders/topk.wgsl");
        let slices = format!("{topk}\n{}", include_str!("../../shaders/knn.wgsl"));
        let merge = format!("{topk}\n{}", include_str!("../../shaders/knn_merge.wgsl"));
        Knn {
            slices: Kernel::new(gpu, "knn.slices", &slices, "slices"),
            merge: Kernel::new(gpu, "knn.merge", &merge, "merge"),
        }
    }

    /// The `min(k, rows)` nearest rows of `db` to each of the `queries` (`[n, dim]`),
    /// nearest first, ties by smaller row.
    pub fn search(
        &self,
        gpu: &Gpu,
        db: &Database,
        queries: &[f32],
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>> {
        if k == 0 || k > MAX_K {
            bail!("k must be between 1 and {MAX_K}, not {k}");
        }
        if !queries.len().is_multiple_of(db.dim) {
            bail!("queries are not a whole number of {}-wide vectors", db.dim);
        }
        let n_queries = queries.len() / db.dim;
        let mut results: Vec<Vec<Neighbor>> = vec![Vec::new(); n_queries];
        for chunk in &db.chunks {
            let k_chunk = k.min(chunk.rows);
            // Slices big enough that merging their lists stays cheap, small enough that
            // a single query still spreads over many workgroups.
            let slice = (8 * k_chunk).max(2048).min(chunk.rows.next_multiple_of(64));
            let lists = chunk.rows.div_ceil(slice);
            let scratch_per_query = (lists * k_chunk * 8) as u64;
            let per_dispatch = ((gpu.max_binding_bytes() / scratch_per_query) as usize)
                .clamp(1, MAX_QUERIES_PER_DISPATCH);
            for (batch_no, batch) in queries.chunks(per_dispatch * db.dim).enumerate() {
                let first_query = batch_no * per_dispatch;
                let found = self.search_chunk(gpu, db, chunk, batch, k_chunk, slice, lists)?;
                for (q, neighbors) in found.into_iter().enumerate() {
                    let all = &mut results[first_query + q];
                    all.extend(neighbors);
                    if db.chunks.len() > 1 {
                        all.sort_by(|a, b| {
                            a.distance.total_cmp(&b.distance).then(a.row.cmp(&b.row))
                        });
                        all.truncate(k);
                    }
                }
            }
        }
        Ok(results)
    }

    #[allow(clippy::too_many_arguments)]
    fn search_chunk(
        &self,
        gpu: &Gpu,
        db: &Database,
        chunk: &Chunk,
        queries: &[f32],
        k: usize,
        slice: usize,
        lists: usize,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let batch = queries.len() / db.dim;
        let params = Params {
            batch: batch as u32,
            rows: chunk.rows as u32,
            dim: db.dim as u32,
            k: k as u32,
            slice: slice as u32,
            lists: lists as u32,
            f16: u32::from(db.f16),
            _pad: 0,
        };
        let query_buf = storage_buffer_init(gpu, "knn queries", queries);
        let list_buf = storage_buffer(gpu, "knn slice lists", (batch * lists * k * 8) as u64);
        let best_bytes = (batch * k * 8) as u64;
        let best_buf = storage_buffer(gpu, "knn best", best_bytes);
        let slices = self
            .slices
            .call(gpu, &params, &[&query_buf, &chunk.words, &list_buf], 0);
        let merge = self.merge.call(gpu, &params, &[&list_buf, &best_buf], 0);
        let readback = Readback::new(gpu, best_bytes);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            slices.record_workgroups(&mut pass, batch as u32, lists as u32);
            merge.record_workgroups(&mut pass, batch as u32, 1);
        }
        readback.copy(&mut encoder, &best_buf, best_bytes);
        gpu.queue.submit([encoder.finish()]);
        let words: Vec<u32> = readback.read(gpu, best_bytes)?;
        Ok(words
            .chunks_exact(2 * k)
            .map(|list| {
                list.chunks_exact(2)
                    .filter(|pair| (pair[1] as usize) < chunk.rows)
                    .map(|pair| Neighbor {
                        distance: f32::from_bits(pair[0]),
                        row: chunk.start + pair[1] as usize,
                    })
                    .collect()
            })
            .collect())
    }
}
