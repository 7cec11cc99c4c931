//! Throughput of the GPU kNN kernel ([`crate::ops::knn`]) on random vectors.
//!
//! One timed step searches a whole batch of queries through a reused [`KnnPlan`]: the
//! query upload, every slice of every chunk, the readback of the top-k lists, what a
//! caller that searches repeatedly pays. The database upload is not timed. Work is
//! counted as `2 * dim` flops per (query, database row) pair, one multiply-add per
//! coordinate (the matrix-product form; norms and the top-k selection not counted), so
//! GFLOP/s compare directly with a GEMM's and with a device's FP32 peak.
use std::time::Duration;

use anyhow::Result;
use half::f16;
use rand::{Rng, SeedableRng, rngs::StdRng};

use super::repeat_for;
use crate::gpu::Gpu;
use crate::ops::knn::{Database, Knn, KnnPlan};

/// Width of the benchmark's vectors: the released model's embedding width.
pub const DIM: usize = crate::model::params::Widths::RELEASED.dim;

/// Flops counted per (query, database row) pair for vectors of `dim`.
pub fn flops_per_pair(dim: usize) -> f64 {
    2.0 * dim as f64
}

/// `n * dim` values uniform in [-1, 1), from `seed`.
pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Little-endian bytes of `values` as [`Database::upload`] takes them (f32, or f16).
pub fn database_bytes(values: &[f32], f16: bool) -> Vec<u8> {
    if f16 {
        values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect()
    } else {
        bytemuck::cast_slice(values).to_vec()
    }
}

/// A random database of `rows` vectors of [`DIM`] uploaded to `gpu`.
pub fn random_database(gpu: &Gpu, rows: usize, f16: bool, seed: u64) -> Result<Database> {
    let values = random_vectors(rows, DIM, seed);
    Database::upload(gpu, &database_bytes(&values, f16), DIM, f16, None)
}

/// One row of the kNN benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KnnThroughput {
    pub rows: usize,
    pub dim: usize,
    pub k: usize,
    /// "f32" or "f16" database storage.
    pub precision: &'static str,
    /// Queries per timed search call.
    pub batch: usize,
    pub queries_per_s: f64,
    /// `queries_per_s * rows * flops_per_pair(dim) / 1e9`.
    pub gflops: f64,
    pub iterations: u32,
    pub seconds: f64,
}

/// Search `db` with batches of `batch` random queries for about `budget` (at least one
/// timed batch, after an untimed warm-up with one query) and report queries per second.
pub fn knn_throughput(
    gpu: &Gpu,
    knn: &Knn,
    db: &Database,
    f16: bool,
    k: usize,
    batch: usize,
    budget: Duration,
) -> Result<KnnThroughput> {
    let dim = db.dim();
    let queries = random_vectors(batch, dim, 0x5eed ^ batch as u64);
    let plan = KnnPlan::new(gpu, knn, db, k, batch, None)?;
    plan.search(gpu, &queries[..dim])?;
    let (iterations, seconds) = repeat_for(budget, 1, || plan.search(gpu, &queries).map(drop))?;
    let queries_per_s = (batch as f64 * f64::from(iterations)) / seconds;
    Ok(KnnThroughput {
        rows: db.rows(),
        dim,
        k,
        precision: if f16 { "f16" } else { "f32" },
        batch,
        queries_per_s,
        gflops: queries_per_s * db.rows() as f64 * flops_per_pair(dim) / 1e9,
        iterations,
        seconds,
    })
}

/// What [`knn_grid`] measures: every combination of these.
#[derive(Debug, Clone)]
pub struct KnnGrid {
    pub rows: Vec<usize>,
    pub ks: Vec<usize>,
    /// false = f32, true = f16.
    pub precisions: Vec<bool>,
    pub batch: usize,
    pub budget: Duration,
}

/// Measure every (rows, precision, k) of `grid`, one database upload per (rows,
/// precision); `report` sees each row as soon as it is measured.
pub fn knn_grid(
    gpu: &Gpu,
    grid: &KnnGrid,
    mut report: impl FnMut(&KnnThroughput),
) -> Result<Vec<KnnThroughput>> {
    let knn = Knn::new(gpu);
    let mut out = Vec::new();
    for &rows in &grid.rows {
        for &f16 in &grid.precisions {
            let db = random_database(gpu, rows, f16, rows as u64)?;
            for &k in &grid.ks {
                let row = knn_throughput(gpu, &knn, &db, f16, k, grid.batch, grid.budget)?;
                report(&row);
                out.push(row);
            }
        }
    }
    Ok(out)
}
