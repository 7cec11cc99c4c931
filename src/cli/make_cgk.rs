//! `megashtein-gpu make-cgk`: a CGK model file (training-free: random walk bits drawn
//! from a seed) with its estimator, a power curve from Hamming to edit distance fitted
//! on labelled pairs.
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use rayon::prelude::*;

use crate::input::NonAscii;
use crate::io::write_file_atomic;
use crate::model::cgk::{self, Cgk, MAX_REPS};
use crate::model::params::MAX_LEN;
use crate::model::{Estimator, Model};
use crate::train::data::{PRINTABLE, PairGenerator};

/// The seed `eval` draws its CGK baseline from (its default `--seed` 20240 ^ 0xC6C), so
/// that the default model file is that baseline.
pub const DEFAULT_SEED: u64 = 20240 ^ 0xC6C;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Model file to write (safetensors, architecture cgk-v1).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Independent walks averaged (1 to 4): more find better candidates, and cost
    /// proportionally more to search.
    #[arg(long, default_value_t = 4)]
    pub repetitions: usize,
    /// Seed of the walks' random bits.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Pairs the estimator is fitted on.
    #[arg(long, default_value_t = 20_000)]
    pub fit_pairs: usize,
    /// Fit on typo and neighbour pairs from this corpus (one string per line, ASCII)
    /// instead of synthetic printable strings.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    if !(1..=MAX_REPS).contains(&args.repetitions) {
        bail!("--repetitions must be 1 to {MAX_REPS}");
    }
    if args.fit_pairs < 2 {
        bail!("--fit-pairs must be at least 2");
    }
    let generator = match &args.corpus {
        None => PairGenerator::synthetic(PRINTABLE.to_vec()),
        Some(path) => {
            let strings = super::train::read_corpus(path, NonAscii::Error)?;
            PairGenerator::corpus(strings, PRINTABLE.to_vec())?
        }
    };
    let mut cgk = Cgk::new(MAX_LEN, args.repetitions, args.seed);
    let pairs = generator.validation(args.seed, args.fit_pairs);
    let points: Vec<(f64, f64)> = pairs
        .a
        .par_iter()
        .zip(&pairs.b)
        .zip(&pairs.labels)
        .map(|((a, b), &d)| {
            let codes = cgk.embed_all(&[a, b]);
            let (x, y) = codes.split_at(cgk.width());
            let per_rep = f64::from(cgk::hamming(x, y)) / args.repetitions as f64;
            (per_rep, f64::from(d))
        })
        .collect();
    let (coefficient, exponent) = cgk::fit_power_curve(&points)
        .filter(|(c, e)| c.is_finite() && *c > 0.0 && e.is_finite() && *e > 0.0)
        .ok_or_else(|| anyhow!("the fitting pairs give no rising curve; use more --fit-pairs"))?;
    let estimator = Estimator::hamming(args.repetitions, coefficient as f32, exponent as f32);
    cgk.set_estimator(estimator);
    let source = args.output.display().to_string();
    let model = Model::from_cgk(cgk, &source)?;
    let bytes = model.file_bytes().expect("a CGK model has a file");
    write_file_atomic(&args.output, bytes)?;
    let fit = match &args.corpus {
        Some(path) => format!("pairs from {}", path.display()),
        None => "synthetic printable pairs".to_string(),
    };
    eprintln!(
        "wrote {source}: CGK, {} repetitions of 3x{MAX_LEN} steps, seed {}; estimate = \
         {coefficient:.4} * (hamming / {})^{exponent:.4}, fitted on {} {fit} (sha256 {})",
        args.repetitions,
        args.seed,
        args.repetitions,
        points.len(),
        model.fingerprint()
    );
    Ok(())
}
