//! Training checkpoints: one safetensors file holding the model's tensors under their
//! PyTorch names (so it still loads as a model), the AdamW moments, log_s, the step and
//! the run's configuration. The pairs of step t are a pure function of (seed, t) and,
//! with hard examples, of the neighbour table in use, which the checkpoint keeps.
//! Written atomically (temp file + rename).
use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::data::parse_alphabet;
use super::hard::{HardConfig, SavedTable};
use super::trainer::{LOSS_SLOTS, Objective, TrainState, slab_len};
use crate::model::weights::{ExtraTensors, Weights};

/// Format name recorded in every checkpoint.
pub const FORMAT: &str = "megashtein-train-checkpoint-v1";
// Keys shared with CNN-ED's checkpoints (`cnn_ed_checkpoint`).
pub(super) const META_FORMAT: &str = "train.format";
pub(super) const META_STEP: &str = "train.step";
pub(super) const META_CONFIG: &str = "train.config";
pub(super) const EXP_AVG: &str = "train.exp_avg";
pub(super) const EXP_AVG_SQ: &str = "train.exp_avg_sq";
const LOG_S: &str = "train.log_scale";
const HARD_LISTS: &str = "train.hard_lists";
const HARD_STEP: &str = "train.hard_step";

/// Where the pairs come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataConfig {
    Synthetic {
        alphabet: String,
    },
    Corpus {
        path: String,
        /// Hex SHA-256 of the corpus file, so a resumed run sees the same strings.
        sha256: String,
        alphabet: String,
        non_ascii: String,
        /// The share of examples that are synthetic instead (0 for runs from before
        /// there was a choice).
        #[serde(default, skip_serializing_if = "is_zero")]
        synthetic_share: f64,
    },
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Learning-rate schedule over the run's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warm-up, then cosine decay to zero at the last step.
    Cosine,
    /// Linear warm-up, then constant.
    Constant,
}

/// Everything that defines a run; a resumed run takes it from the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub steps: u64,
    /// Examples per step: pairs, or triplets for a ranking objective.
    pub pairs: usize,
    /// What a step minimises (PNLL for checkpoints from before there was a choice).
    #[serde(default)]
    pub objective: Objective,
    pub lr: f64,
    pub schedule: Schedule,
    pub warmup: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Gradient-norm clipping threshold; 0 disables it.
    pub clip: f64,
    pub seed: u64,
    pub learn_scale: bool,
    pub data: DataConfig,
    pub val_pairs: usize,
    pub val_every: u64,
    pub checkpoint_every: u64,
    /// Hard examples (corpus mode): partners from the model's own nearest neighbours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard: Option<HardConfig>,
    /// Where the starting weights came from ("scratch" or a model file and fingerprint).
    pub init: String,
}

/// How a check of a run's settings names them: by the command-line flag (`--lr`) for
/// options given, by the train.config key (`lr`) for a resumed run's, which were never
/// typed as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Flags,
    Keys,
}

impl Names {
    pub fn of(self, flag: &str, key: &str) -> String {
        match self {
            Names::Flags => flag.to_string(),
            Names::Keys => key.to_string(),
        }
    }
}

/// An error unless `lr` is a learning rate: a negative one trains the wrong way.
pub fn check_lr(lr: f64, name: &str) -> Result<()> {
    if !(lr.is_finite() && lr > 0.0) {
        bail!("{name} must be a positive number, got {lr}");
    }
    Ok(())
}

impl TrainConfig {
    /// An error naming the first setting out of its range: the command line's checks,
    /// also run on a checkpoint's settings when it is resumed.
    pub fn check(&self, names: Names) -> Result<()> {
        let name = |flag: &str, key: &str| names.of(flag, key);
        for (flag, key, value) in [
            ("--steps", "steps", self.steps),
            ("--batch", "pairs", self.pairs as u64),
            ("--val-pairs", "val_pairs", self.val_pairs as u64),
            ("--val-every", "val_every", self.val_every),
            (
                "--checkpoint-every",
                "checkpoint_every",
                self.checkpoint_every,
            ),
        ] {
            if value < 1 {
                bail!("{} must be at least 1", name(flag, key));
            }
        }
        if self.val_every > LOSS_SLOTS as u64 {
            bail!(
                "{} must be at most {LOSS_SLOTS}",
                name("--val-every", "val_every")
            );
        }
        check_lr(self.lr, &name("--lr", "lr"))?;
        let (decay, clip) = (self.weight_decay, self.clip);
        if !(decay.is_finite() && decay >= 0.0) {
            let name = name("--weight-decay", "weight_decay");
            bail!("{name} must be 0 or more, got {decay}");
        }
        if !(clip.is_finite() && clip >= 0.0) {
            let name = name("--clip", "clip");
            bail!("{name} must be 0 (off) or a positive number, got {clip}");
        }
        // Fixed on the command line; only a hand-edited checkpoint gets these wrong.
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                bail!("{key} must be 0 or more and below 1, got {beta}");
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            bail!("eps must be a positive number, got {}", self.eps);
        }
        if let Objective::Ranking {
            hinge,
            approx,
            pnll,
        } = self.objective
        {
            for (what, w) in [("hinge", hinge), ("approx", approx), ("pnll", pnll)] {
                if !(w.is_finite() && w >= 0.0) {
                    let name = name(&format!("--{what}-weight"), &format!("objective.{what}"));
                    bail!("{name} must be a number >= 0, not {w}");
                }
            }
            if hinge + approx + pnll == 0.0 {
                bail!("the loss weights are all 0: nothing to train");
            }
        }
        let (alphabet, key) = match &self.data {
            DataConfig::Synthetic { alphabet } => (alphabet, "data.synthetic.alphabet"),
            DataConfig::Corpus {
                alphabet,
                synthetic_share,
                ..
            } => {
                if !(0.0..=1.0).contains(synthetic_share) {
                    let name = name("--synthetic-share", "data.corpus.synthetic_share");
                    bail!("{name} must be 0..=1, got {synthetic_share}");
                }
                (alphabet, "data.corpus.alphabet")
            }
        };
        parse_alphabet(alphabet).map_err(|e| anyhow!("{} {e}", name("--alphabet", key)))?;
        if let Some(hard) = &self.hard {
            hard.check(names)?;
        }
        Ok(())
    }

    /// The learning rate of 1-based step `t`.
    pub fn lr_at(&self, t: u64) -> f64 {
        let warmup = self.warmup.min(self.steps);
        if t <= warmup {
            return self.lr * t as f64 / warmup.max(1) as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = (self.steps - warmup).max(1) as f64;
                let progress = (t - warmup) as f64 / span;
                0.5 * self.lr * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// A run stopped after `step` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub config: TrainConfig,
    pub step: u64,
    pub state: TrainState,
    /// BatchNorm's batch count (PyTorch's num_batches_tracked).
    pub num_batches_tracked: i64,
    /// The hard-example table steps from `step` on draw from; none without hard
    /// examples and at a rebuild step.
    pub hard: Option<SavedTable>,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let weights = self.state.weights(self.num_batches_tracked);
        let config = serde_json::to_string(&self.config)?;
        let log_s = [self.state.params[self.state.log_scale_at()]];
        let mut tensors = vec![
            (EXP_AVG, self.state.exp_avg.as_slice()),
            (EXP_AVG_SQ, &self.state.exp_avg_sq),
            (LOG_S, &log_s),
        ];
        let mut meta = vec![
            (META_FORMAT, FORMAT.to_string()),
            (META_STEP, self.step.to_string()),
            (META_CONFIG, config),
        ];
        // Pool slots are below hard::MAX_POOL < 2^24, so f32 holds them exactly.
        let hard_lists: Vec<f32>;
        if let Some(table) = &self.hard {
            hard_lists = table.lists.iter().map(|&s| s as f32).collect();
            tensors.push((HARD_LISTS, &hard_lists));
            meta.push((HARD_STEP, table.step.to_string()));
        }
        let bytes = weights.to_safetensors_with(&tensors, &meta)?;
        crate::io::write_atomic(path, |out| {
            std::io::Write::write_all(out, &bytes)?;
            Ok(())
        })
        .with_context(|| format!("cannot write checkpoint {}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let source = path.display().to_string();
        let bytes = read_checkpoint(path)?;
        let (weights, extra, meta) = Weights::from_safetensors_with(
            &bytes,
            &source,
            &[EXP_AVG, EXP_AVG_SQ, LOG_S, HARD_LISTS],
        )?;
        let not_one = |what: &str| {
            anyhow!(
                "{source} is a model file, not a training checkpoint ({what}); \
                 to fine-tune it, pass it to --init"
            )
        };
        match meta.get(META_FORMAT) {
            Some(f) if f == FORMAT => {}
            Some(f) => bail!("{source} is a {f:?} checkpoint, this build reads {FORMAT}"),
            None => return Err(not_one("no train.format metadata")),
        }
        let step = meta
            .get(META_STEP)
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("{source}: train.step metadata is missing or not a number"))?;
        let config: TrainConfig = meta
            .get(META_CONFIG)
            .ok_or_else(|| anyhow!("{source}: train.config metadata is missing"))
            .and_then(|c| {
                serde_json::from_str(c)
                    .map_err(|e| anyhow!("{source}: train.config metadata is not valid: {e}"))
            })?;
        config
            .check(Names::Keys)
            .map_err(|e| in_config(&source, e))?;
        let tensor = |name: &str, len: usize| -> Result<Vec<f32>> {
            let v = extra
                .get(name)
                .ok_or_else(|| anyhow!("{source}: tensor {name} is missing"))?;
            if v.len() != len {
                bail!(
                    "{source}: tensor {name} has {} values, expected {len}",
                    v.len()
                );
            }
            Ok(v.clone())
        };
        let mut params = weights.params.clone();
        params.push(tensor(LOG_S, 1)?[0]);
        let slab = slab_len(&weights.widths);
        let state = TrainState {
            widths: weights.widths,
            params,
            exp_avg: tensor(EXP_AVG, slab)?,
            exp_avg_sq: tensor(EXP_AVG_SQ, slab)?,
            running: [weights.running_mean.as_slice(), &weights.running_var].concat(),
        };
        if step > config.steps {
            bail!(
                "{source}: step {step} is past the run's {} steps",
                config.steps
            );
        }
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        if !(finite(&state.params) && finite(&state.exp_avg) && finite(&state.exp_avg_sq)) {
            bail!("{source}: the checkpoint holds non-finite values");
        }
        let hard = saved_table(&extra, &meta, &config, step, &source)?;
        Ok(Checkpoint {
            config,
            step,
            state,
            num_batches_tracked: weights.num_batches_tracked,
            hard,
        })
    }
}

/// The hard-example table a checkpoint at `step` holds, checked against its run: a
/// run with hard examples saves the table its next steps draw from, except at a rebuild
/// step (the resumed run builds that table itself).
fn saved_table(
    extra: &ExtraTensors,
    meta: &HashMap<String, String>,
    config: &TrainConfig,
    step: u64,
    source: &str,
) -> Result<Option<SavedTable>> {
    let found = match (extra.get(HARD_LISTS), meta.get(HARD_STEP)) {
        (None, None) => None,
        (Some(lists), Some(at)) => Some((lists, at)),
        _ => bail!("{source}: {HARD_LISTS} and {HARD_STEP} must come together"),
    };
    let Some(hard) = &config.hard else {
        if found.is_some() {
            bail!("{source} holds a hard-example table, but its run has no hard examples");
        }
        return Ok(None);
    };
    if !matches!(config.data, DataConfig::Corpus { .. }) {
        bail!("{source}: a run with hard examples needs a corpus");
    }
    let built_at = hard.built_at(step);
    let Some((lists, at)) = found else {
        if built_at != step {
            bail!(
                "{source} lacks the hard-example table of step {built_at}, which step {step} \
                 draws from"
            );
        }
        return Ok(None);
    };
    if at.parse::<u64>().ok() != Some(built_at) || built_at == step {
        bail!(
            "{source}: {HARD_STEP} is {at:?}; a checkpoint at step {step} holds the table \
             of step {built_at}, or none at a rebuild step"
        );
    }
    let slot = |&v: &f32| (v >= 0.0 && v.fract() == 0.0).then_some(v as u32);
    let lists = lists.iter().map(slot).collect::<Option<Vec<u32>>>();
    let lists = lists
        .ok_or_else(|| anyhow!("{source}: tensor {HARD_LISTS} holds values that are not slots"))?;
    Ok(Some(SavedTable {
        step: built_at,
        lists,
    }))
}

/// A stored setting's error, naming the checkpoint file.
pub(super) fn in_config(source: &str, e: anyhow::Error) -> anyhow::Error {
    anyhow!("{source}: in {META_CONFIG}, {e}")
}

/// A checkpoint file's bytes, or an error naming it and the reason.
pub(super) fn read_checkpoint(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow!(
            "cannot read checkpoint {}: {}",
            path.display(),
            crate::io::io_reason(&e)
        )
    })
}
