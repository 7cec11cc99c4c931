//! `cargo bench --bench knn`: GPU kNN throughput on random d = 80 vectors, small
//! databases so that it finishes quickly on a software driver. The same measurement as
//! `megashtein-gpu bench knn` ([`knn_grid`]); larger sizes: `megashtein-gpu bench knn`.
use std::time::Duration;

use megashtein_gpu::bench::knn::{KnnGrid, knn_grid};
use megashtein_gpu::gpu::{Gpu, GpuOptions};

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    println!("device: {}", gpu.describe());
    let grid = KnnGrid {
        rows: vec![10_000, 100_000],
        ks: vec![10, 100],
        precisions: vec![false, true],
        batch: 64,
        budget: Duration::from_secs(1),
    };
    knn_grid(&gpu, &grid, |r| {
        println!(
            "knn rows {:>7} {} k {:>3} batch {}: {:>9.0} queries/s, {:>7.2} GFLOP/s \
             ({} iterations in {:.2} s)",
            r.rows, r.precision, r.k, r.batch, r.queries_per_s, r.gflops, r.iterations, r.seconds
        );
    })?;
    Ok(())
}
