//! CNN-ED training checkpoints: one safetensors file holding the training slabs
//! (parameters in model order with log s last, Adam's two moments), the step, the
//! current epoch's loss so far and the run's configuration. The training strings, the
//! model's shape and every epoch's triplets are pure functions of the configuration
//! (corpus, seed, sizes), so nothing else is needed to continue bit for bit. Written
//! atomically.
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    EXP_AVG, EXP_AVG_SQ, META_CONFIG, META_FORMAT, META_STEP, Names, check_lr, in_config,
};
use super::cnn_ed::CnnEdState;
use super::cnn_ed_run::CnnEdRun;
use crate::model::cnn_ed::relu_mask_of;
use crate::model::metadata::ModelFile;
use crate::model::state_dict::{DType, StateDict, Tensor};
use crate::model::weights::serialize_safetensors;

/// Format name recorded in every checkpoint.
pub const FORMAT: &str = "megashtein-cnn-ed-checkpoint-v1";
const META_EPOCH_LOSS: &str = "train.epoch_loss";
const PARAMS: &str = "train.params";

/// Everything that defines a run; a resumed run takes it from the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnEdConfig {
    /// The corpus (absolute) and its hex SHA-256, so a resumed run sees the same strings.
    pub corpus: String,
    pub sha256: String,
    pub train_strings: usize,
    pub neighbours: usize,
    /// `None`: from the data (the longest training string, rounded up to even).
    pub max_len: Option<usize>,
    /// `None`: min(10, floor(log2 M)).
    pub layers: Option<usize>,
    /// The 1-based blocks followed by a ReLU (none: the affine net).
    #[serde(default)]
    pub relu_after: Vec<usize>,
    pub run: CnnEdRun,
}

impl CnnEdConfig {
    /// An error naming the first setting out of its range: the command line's checks,
    /// also run on a checkpoint's settings when it is resumed.
    pub fn check(&self, names: Names) -> Result<()> {
        let name = |flag: &str, key: &str| names.of(flag, key);
        let run = &self.run;
        for (flag, key, value, least) in [
            ("--epochs", "run.epochs", run.epochs, 1),
            ("--batch", "run.triplets", run.triplets, 1),
            // CNN-ED's triplets.
            ("--train-strings", "train_strings", self.train_strings, 3),
            ("--neighbours", "neighbours", self.neighbours, 1),
        ] {
            if value < least {
                bail!("{} must be at least {least}, got {value}", name(flag, key));
            }
        }
        check_lr(run.lr, &name("--lr", "run.lr"))?;
        let longest = crate::model::cnn_ed::MAX_LEN;
        if let Some(m) = self
            .max_len
            .filter(|&m| m % 2 == 1 || !(2..=longest).contains(&m))
        {
            bail!(
                "{} must be an even length from 2 to {longest}, got {m}",
                name("--max-len", "max_len")
            );
        }
        relu_mask_of(&self.relu_after)
            .map_err(|e| anyhow!("{}: {e}", name("--relu-after", "relu_after")))?;
        Ok(())
    }
}

/// A run after `step` steps.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnEdCheckpoint {
    pub config: CnnEdConfig,
    pub step: u64,
    /// The sum of the losses of the current epoch's steps so far (0 at an epoch's end).
    pub epoch_loss: f64,
    pub state: CnnEdState,
}

impl CnnEdCheckpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut sd = StateDict::new();
        for (name, values) in [
            (PARAMS, &self.state.params),
            (EXP_AVG, &self.state.exp_avg),
            (EXP_AVG_SQ, &self.state.exp_avg_sq),
        ] {
            let tensor = Tensor {
                dtype: DType::F32,
                shape: vec![values.len()],
                data: bytemuck::cast_slice(values).to_vec(),
            };
            sd.insert(name, tensor);
        }
        let bytes = serialize_safetensors(
            &sd,
            &[
                (META_FORMAT, FORMAT.to_string()),
                (META_STEP, self.step.to_string()),
                (META_EPOCH_LOSS, self.epoch_loss.to_string()),
                (META_CONFIG, serde_json::to_string(&self.config)?),
            ],
        )?;
        crate::io::write_atomic(path, |out| {
            std::io::Write::write_all(out, &bytes)?;
            Ok(())
        })
        .map_err(|e| anyhow!("cannot write checkpoint {}: {e}", path.display()))
    }

    /// Whether `path` is a CNN-ED checkpoint (not one of the megashtein trainer's).
    pub fn is_one(path: &Path) -> bool {
        std::fs::read(path).is_ok_and(|bytes| {
            ModelFile::parse(&bytes, "", FORMAT)
                .is_ok_and(|f| f.get(META_FORMAT).is_ok_and(|v| v == FORMAT))
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let source = path.display().to_string();
        let bytes = super::checkpoint::read_checkpoint(path)?;
        let file = ModelFile::parse(&bytes, &source, FORMAT)?;
        match file.get(META_FORMAT) {
            Ok(FORMAT) => {}
            Ok(other) => bail!("{source} is a {other:?} checkpoint, not a {FORMAT} one"),
            Err(_) => bail!("{source} is not a training checkpoint (no {META_FORMAT} metadata)"),
        }
        let config: CnnEdConfig = serde_json::from_str(file.get(META_CONFIG)?)
            .map_err(|e| file.error(format!("{META_CONFIG} is not valid ({e})")))?;
        config
            .check(Names::Keys)
            .map_err(|e| in_config(&source, e))?;
        let epoch_loss: f64 = file
            .get(META_EPOCH_LOSS)?
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| file.error(format!("{META_EPOCH_LOSS} is not a finite number")))?;
        let slab = |name: &str| -> Result<Vec<f32>> {
            let view = file.tensors.tensor(name).map_err(|e| file.invalid(e))?;
            if view.dtype() != safetensors::Dtype::F32 || view.shape().len() != 1 {
                bail!("{source}: {name} is not a flat F32 tensor");
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if values.iter().any(|v| !v.is_finite()) {
                bail!("{source}: {name} holds non-finite values");
            }
            Ok(values)
        };
        let state = CnnEdState {
            params: slab(PARAMS)?,
            exp_avg: slab(EXP_AVG)?,
            exp_avg_sq: slab(EXP_AVG_SQ)?,
        };
        let n = state.params.len();
        if state.exp_avg.len() != n || state.exp_avg_sq.len() != n {
            bail!("{source}: the parameter and moment slabs differ in length");
        }
        Ok(CnnEdCheckpoint {
            config,
            step: file.number(META_STEP)?,
            epoch_loss,
            state,
        })
    }
}
