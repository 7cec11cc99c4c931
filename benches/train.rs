//! `cargo bench --bench train`: training-step throughput on the default adapter, small
//! batches so that it finishes quickly on a software driver. The same measurement as
//! `megashtein-gpu bench train` ([`train_throughput`]).
use std::time::Duration;

use megashtein_gpu::bench::train::train_throughput;
use megashtein_gpu::gpu::{Gpu, GpuOptions};
use megashtein_gpu::ops::Ops;
use megashtein_gpu::train::trainer::StepOverlap;

const PAIRS: [usize; 2] = [16, 64];
const BUDGET: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&GpuOptions::default())?;
    let ops = Ops::new(&gpu);
    println!("device: {}", gpu.describe());
    for pairs in PAIRS {
        let t = train_throughput(&gpu, &ops, pairs, BUDGET, StepOverlap::Auto)?;
        println!(
            "train pairs {:>5}: {:>8.0} pairs/s, data wait {:.1}% ({} steps in {:.2} s)",
            t.pairs,
            t.pairs_per_s,
            100.0 * t.data_wait_fraction,
            t.steps,
            t.seconds
        );
    }
    Ok(())
}
