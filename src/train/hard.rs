//! Hard examples for corpus mode: a seeded pool of corpus strings, each with the pool
//! strings nearest to it under the model being trained (the GPU kNN over its current
//! embeddings). Partners drawn from these lists are the strings the model confuses with
//! the anchor, which the typo model and random corpus strings rarely are.
//!
//! The table is rebuilt every `every` steps from the weights of that step, and steps
//! `r..r + every` draw from the table of step `r`; a checkpoint stores the table in use,
//! so a resumed run draws exactly what the uninterrupted one would.
use anyhow::{Result, bail};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use super::checkpoint::Names;
use super::data::{PairGenerator, splitmix64};
use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::Gpu;
use crate::model::weights::Weights;
use crate::ops::Ops;
use crate::ops::knn::{Database, MAX_K};

/// The largest pool: a checkpoint stores pool slots as f32, exact below 2^24; 2^20
/// strings is already far more than a rebuild should embed.
pub const MAX_POOL: usize = 1 << 20;
pub const DEFAULT_POOL: usize = 8192;
pub const DEFAULT_K: usize = 16;

/// Domain constant of the pool seeds.
const POOL_SEED: u64 = 0x6861_7264_0000_0003;

/// How hard examples are drawn (a run's setting, kept in its checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardConfig {
    /// Steps between rebuilds of the neighbour table.
    pub every: u64,
    /// Corpus strings in the pool (fewer when the corpus is smaller).
    pub pool: usize,
    /// Neighbours kept for each pool string.
    pub k: usize,
}

impl HardConfig {
    pub fn check(&self, names: Names) -> Result<()> {
        if self.every == 0 {
            bail!(
                "{} must be at least 1",
                names.of("--hard-every", "hard.every")
            );
        }
        if !(2..=MAX_POOL).contains(&self.pool) {
            let name = names.of("--hard-pool", "hard.pool");
            bail!("{name} must be 2..={MAX_POOL}, got {}", self.pool);
        }
        if !(1..MAX_K).contains(&self.k) {
            let name = names.of("--hard-k", "hard.k");
            bail!("{name} must be 1..={}, got {}", MAX_K - 1, self.k);
        }
        Ok(())
    }

    /// The step whose weights built the table that step `step` draws from.
    pub fn built_at(&self, step: u64) -> u64 {
        step - step % self.every
    }
}

/// A pool of corpus strings and each one's nearest pool strings under one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbours {
    /// The step whose weights built the table.
    pub step: u64,
    /// Places in the (sorted) corpus of the pool strings.
    pub pool: Vec<usize>,
    /// `[pool, k]`: pool slots of each slot's neighbours, nearest first.
    pub lists: Vec<u32>,
    pub k: usize,
}

impl Neighbours {
    /// The pool of the table built at `step`: the places of `config.pool` different
    /// strings of the sorted `corpus` (all of a smaller corpus), a pure function of
    /// (seed, step). A repeated string enters once, so no list fills with its copies.
    pub fn pool(config: &HardConfig, seed: u64, step: u64, corpus: &[Vec<u8>]) -> Vec<usize> {
        let firsts = distinct_places(corpus);
        let rng = &mut StdRng::seed_from_u64(splitmix64(splitmix64(seed ^ POOL_SEED) ^ step));
        let mut pool: Vec<usize> =
            rand::seq::index::sample(rng, firsts.len(), config.pool.min(firsts.len()))
                .into_iter()
                .map(|i| firsts[i])
                .collect();
        pool.sort_unstable();
        pool
    }

    /// The pool of `step` and the neighbours kept per string (at most the others).
    fn pool_and_k(
        config: &HardConfig,
        seed: u64,
        step: u64,
        corpus: &[Vec<u8>],
    ) -> Result<(Vec<usize>, usize)> {
        let pool = Self::pool(config, seed, step, corpus);
        if pool.len() < 2 {
            bail!("hard examples need at least 2 different corpus strings");
        }
        let k = config.k.min(pool.len() - 1);
        Ok((pool, k))
    }

    /// Builds the table of `step` from `weights` (eval mode): embeds the pool, then keeps
    /// each string's `k` nearest other pool strings (ties by smaller slot).
    pub fn build(
        gpu: &Gpu,
        ops: &Ops,
        weights: &Weights,
        generator: &PairGenerator,
        config: &HardConfig,
        seed: u64,
        step: u64,
    ) -> Result<Self> {
        let corpus = generator.strings();
        let (pool, k) = Self::pool_and_k(config, seed, step, corpus)?;
        let texts: Vec<&[u8]> = pool.iter().map(|&i| corpus[i].as_slice()).collect();
        let batch = texts.len().clamp(1, DEFAULT_BATCH);
        let embeddings = Embedder::new(gpu, weights, batch)?.embed(&texts)?;
        let dim = weights.widths.dim;
        let db = Database::upload(gpu, bytemuck::cast_slice(&embeddings), dim, false, None)?;
        // One more than k: each string finds itself (or a duplicate) among its nearest.
        let found = ops.knn.search(gpu, &db, &embeddings, k + 1)?;
        let mut lists = Vec::with_capacity(pool.len() * k);
        for (slot, nearest) in found.iter().enumerate() {
            let others = nearest.iter().filter(|n| n.row != slot).take(k);
            lists.extend(others.map(|n| n.row as u32));
        }
        // Short lists would shift every later slot's; non-finite embeddings can cause them.
        if lists.len() != pool.len() * k {
            bail!(
                "the hard-example search at step {step} found {} neighbours, expected {} \
                 (non-finite embeddings?)",
                lists.len(),
                pool.len() * k
            );
        }
        Ok(Neighbours {
            step,
            pool,
            lists,
            k,
        })
    }

    /// The corpus place of pool slot `slot`'s neighbour at rank `rank` (0 = nearest).
    pub fn neighbour(&self, slot: usize, rank: usize) -> usize {
        self.pool[self.lists[slot * self.k + rank] as usize]
    }

    /// The table a checkpoint saved, checked against the run: the pool is the one the
    /// run's seed gives at the saved step, and every list entry is a pool slot.
    pub fn restored(
        config: &HardConfig,
        seed: u64,
        corpus: &[Vec<u8>],
        saved: &SavedTable,
    ) -> Result<Self> {
        let (pool, k) = Self::pool_and_k(config, seed, saved.step, corpus)?;
        if saved.lists.len() != pool.len() * k {
            bail!(
                "the hard-example table has {} entries, expected {} ({} strings x {k})",
                saved.lists.len(),
                pool.len() * k,
                pool.len()
            );
        }
        if saved.lists.iter().any(|&s| s as usize >= pool.len()) {
            bail!("the hard-example table holds entries that are not pool slots");
        }
        Ok(Neighbours {
            step: saved.step,
            pool,
            lists: saved.lists.clone(),
            k,
        })
    }

    /// What a checkpoint keeps of the table.
    pub fn saved(&self) -> SavedTable {
        SavedTable {
            step: self.step,
            lists: self.lists.clone(),
        }
    }
}

/// A hard-example table as a checkpoint keeps it: the step that built it and its lists
/// (the pool follows from the run's seed and that step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedTable {
    pub step: u64,
    pub lists: Vec<u32>,
}

/// The first place of each run of equal strings in the sorted `corpus`.
pub fn distinct_places(corpus: &[Vec<u8>]) -> Vec<usize> {
    (0..corpus.len())
        .filter(|&i| i == 0 || corpus[i] != corpus[i - 1])
        .collect()
}
