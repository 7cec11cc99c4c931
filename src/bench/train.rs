//! Training throughput: pairs per second of the whole step (data from the prefetch
//! thread, forward, loss, backward, AdamW), the time the GPU waited for data, and the
//! rate of the data generator alone.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::gpu::Gpu;
use crate::model::weights::Weights;
use crate::ops::Ops;
use crate::ops::adamw::AdamWStep;
use crate::train::data::{Examples, PRINTABLE, PairGenerator, Prefetch};
use crate::train::trainer::{Objective, StepOverlap, StepQueue, TrainState, Trainer};

/// One row of the training benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainThroughput {
    pub pairs: usize,
    pub pairs_per_s: f64,
    /// Share of the timed run the step loop spent waiting for the data thread.
    pub data_wait_fraction: f64,
    /// Pairs per second the generator makes on its own (all CPU threads).
    pub generator_pairs_per_s: f64,
    pub steps: u64,
    pub seconds: f64,
}

/// Each kernel's fastest time in one training step of `pairs` synthetic pairs.
pub fn train_profile(gpu: &Gpu, ops: &Ops, pairs: usize) -> Result<Vec<(&'static str, f64)>> {
    let generator = PairGenerator::synthetic(PRINTABLE.to_vec());
    let state = TrainState::new(&Weights::init(0), 0.25);
    let mut trainer = Trainer::new(gpu, ops, &state, pairs, true, Objective::Pnll)?;
    trainer.profile(&generator.batch(7, 0, pairs, None))
}

/// Train a fresh model on synthetic pairs, `pairs` per step, for about `budget` (at
/// least 3 timed steps after 2 untimed ones).
pub fn train_throughput(
    gpu: &Gpu,
    ops: &Ops,
    pairs: usize,
    budget: Duration,
    overlap: StepOverlap,
) -> Result<TrainThroughput> {
    let generator = Arc::new(PairGenerator::synthetic(PRINTABLE.to_vec()));
    let generated = Instant::now();
    let mut made = 0;
    while made < 3 * pairs || generated.elapsed() < Duration::from_millis(200) {
        made += generator.batch(7, made as u64, pairs, None).len();
    }
    let generator_pairs_per_s = made as f64 / generated.elapsed().as_secs_f64();

    let state = TrainState::new(&Weights::init(0), 0.25);
    let mut trainer = Trainer::new(gpu, ops, &state, pairs, true, Objective::Pnll)?;
    let mut prefetch = Prefetch::spawn(generator, 0, 0..u64::MAX, pairs, 4);
    let mut queue = StepQueue::new(gpu, overlap);
    let mut step = |t: u64, prefetch: &mut Prefetch, queue: &mut StepQueue| -> Result<()> {
        let (_, batch) = prefetch.next().expect("endless prefetch");
        let hyper = AdamWStep {
            lr: 1e-3,
            weight_decay: 1e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: t + 1,
            clip: 1.0,
        };
        queue.submitted(gpu, trainer.step(&batch, &hyper)?)
    };
    for t in 0..2 {
        step(t, &mut prefetch, &mut queue)?;
    }
    let waited_before = prefetch.waited();
    let start = Instant::now();
    let mut steps = 0;
    while steps < 3 || start.elapsed() < budget {
        step(2 + steps, &mut prefetch, &mut queue)?;
        steps += 1;
    }
    queue.drain(gpu)?;
    let seconds = start.elapsed().as_secs_f64();
    let waited = (prefetch.waited() - waited_before).as_secs_f64();
    Ok(TrainThroughput {
        pairs,
        pairs_per_s: (steps as usize * pairs) as f64 / seconds,
        data_wait_fraction: waited / seconds,
        generator_pairs_per_s,
        steps,
        seconds,
    })
}
