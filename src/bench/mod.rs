//! Throughput measurements shared by `megashtein-gpu bench` and `benches/`.
//!
//! - [`embed_throughput`]: strings per second of the forward pass;
//! - [`knn`]: queries per second of the GPU k-nearest-neighbour kernel on random data;
//! - [`query`]: end-to-end fuzzy search against an exact scan (recall and queries/s);
//! - [`join`]: the similarity join against an exact join (recall and time);
//! - [`train`]: pairs per second of the training step, and whether it waits for data;
//! - [`peer`]: running the Python peers in `tools/` and reading their JSON lines.
//!
//! Benchmarks are measured and printed, never asserted.
pub mod join;
pub mod knn;
pub mod peer;
pub mod query;
pub mod train;

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::embed::Embedder;
use crate::model::params::MAX_LEN;
use crate::model::{Architecture, Model};

/// Printable ASCII strings of random length 1..=80, as the benchmarks embed.
pub fn random_strings(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(1..=MAX_LEN);
            (0..len).map(|_| rng.random_range(b' '..=b'~')).collect()
        })
        .collect()
}

/// The strings `bench embed` feeds `model`: printable ASCII of random length 1..=80
/// ([`random_strings`]) for the short-string models; for CNN-ED, whose cost grows with
/// length, strings of its full length M drawn from its alphabet (the worst case it was
/// built for).
pub fn embed_strings(model: &Model, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let Architecture::CnnEd(cnn_ed) = model.architecture() else {
        return random_strings(n, seed);
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let alphabet = cnn_ed.alphabet();
    let len = cnn_ed.shape().max_len;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect::<String>()
                .into_bytes()
        })
        .collect()
}

/// What [`embed_strings`] gives `model`, for `bench embed`'s header (`mean_chars`: the
/// measured mean length of the short-string models' random strings).
pub fn describe_embed_strings(model: &Model, mean_chars: f64) -> String {
    match model.architecture() {
        Architecture::CnnEd(cnn_ed) => format!(
            "{} characters each (the model's M), drawn from its alphabet of {}",
            cnn_ed.shape().max_len,
            cnn_ed.alphabet().len()
        ),
        _ => {
            format!("random printable ASCII of 1-{MAX_LEN} characters ({mean_chars:.1} on average)")
        }
    }
}

/// One row of the embed benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    pub batch: usize,
    pub strings_per_s: f64,
    /// Mean characters a string.
    pub chars_per_string: f64,
    pub iterations: u32,
    pub seconds: f64,
}

/// Embed the batch `strings` for about `budget` (at least two timed batches, after one
/// untimed warm-up) and report strings per second, readback included.
pub fn embed_throughput(
    embedder: &mut Embedder,
    strings: &[Vec<u8>],
    budget: Duration,
) -> Result<Throughput> {
    let texts: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
    embedder.embed(&texts)?;
    let (iterations, seconds) = repeat_for(budget, 2, || embedder.embed(&texts).map(drop))?;
    let chars: usize = texts
        .iter()
        .map(|t| String::from_utf8_lossy(t).chars().count())
        .sum();
    Ok(Throughput {
        batch: texts.len(),
        strings_per_s: (texts.len() as f64 * f64::from(iterations)) / seconds,
        chars_per_string: chars as f64 / texts.len().max(1) as f64,
        iterations,
        seconds,
    })
}

/// Each kernel's fastest time in the forward pass of the batch `strings`.
pub fn embed_profile(
    embedder: &mut Embedder,
    strings: &[Vec<u8>],
) -> Result<Vec<(&'static str, f64)>> {
    let texts: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
    embedder.profile(&texts)
}

/// Run `step` until `budget` has passed and it ran at least `min_iterations` times;
/// returns the iterations and the seconds they took.
pub fn repeat_for(
    budget: Duration,
    min_iterations: u32,
    mut step: impl FnMut() -> Result<()>,
) -> Result<(u32, f64)> {
    let start = Instant::now();
    let mut iterations = 0;
    while iterations < min_iterations || start.elapsed() < budget {
        step()?;
        iterations += 1;
    }
    Ok((iterations, start.elapsed().as_secs_f64()))
}
