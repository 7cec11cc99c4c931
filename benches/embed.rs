//! `cargo bench --bench embed`: forward-pass throughput of the default model on the
//! default adapter, small batches so that it finishes quickly on a software driver.
//! The same measurement as `megashtein-gpu bench embed` ([`embed_throughput`]).
use std::time::Duration;

use megashtein_gpu::bench::{embed_throughput, random_strings};
use megashtein_gpu::embed::Embedder;
use megashtein_gpu::gpu::{Gpu, GpuOptions};

const BATCHES: [usize; 3] = [1, 256, 4096];
const BUDGET: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let model = megashtein_gpu::Model::builtin()?;
    let gpu = Gpu::new(&GpuOptions::default())?;
    let mut embedder = Embedder::new(&gpu, model.weights()?, BATCHES[BATCHES.len() - 1])?;
    println!("device: {}", gpu.describe());
    for batch in BATCHES {
        let t = embed_throughput(&mut embedder, &random_strings(batch, batch as u64), BUDGET)?;
        println!(
            "embed batch {:>6}: {:>10.0} strings/s ({} iterations in {:.2} s)",
            t.batch, t.strings_per_s, t.iterations, t.seconds
        );
    }
    Ok(())
}
