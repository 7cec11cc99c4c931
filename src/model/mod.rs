//! The megashtein model: its tensors, weights on disk, and the GPU forward pass.
pub mod megashtein;
pub mod params;
#[cfg(feature = "pth")]
pub mod pth;
pub mod state_dict;
pub mod weights;

use std::path::Path;

use anyhow::Result;
use sha2::{Digest, Sha256};

use weights::Weights;

/// The shipped default model (`models/default.safetensors`), built into the binary so
/// that it works from any directory.
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../../models/default.safetensors");

/// The released reference checkpoint of the PyTorch megashtein model, a `torch.save`
/// state_dict (`models/reference/megashtein_trained_model.pth`, MIT, licence beside it),
/// built into the binary so that `eval` compares against it from any directory.
#[cfg(feature = "pth")]
pub const RELEASED_CHECKPOINT: &[u8] =
    include_bytes!("../../models/reference/megashtein_trained_model.pth");
/// Where [`RELEASED_CHECKPOINT`] comes from, relative to the repository root.
pub const RELEASED_CHECKPOINT_PATH: &str = "models/reference/megashtein_trained_model.pth";

/// A model file, loaded and checked: its weights, its fingerprint (what an index records
/// and is checked against) and a name for messages.
#[derive(Clone)]
pub struct Model {
    weights: Weights,
    fingerprint: String,
    source: String,
    /// The safetensors file's bytes, which an index stores so that searching needs no
    /// model file (`None` for an imported `.pth`).
    file: Option<Vec<u8>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("source", &self.source)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// The built-in default model (`models/default.safetensors`).
    pub fn builtin() -> Result<Model> {
        Model::from_bytes(DEFAULT_MODEL.to_vec(), "the default model")
    }

    /// The model file (safetensors) at `path`; every error names the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let bytes = weights::read_model_file(path)
            .map_err(|e| anyhow::anyhow!("cannot read model {source}: {e}"))?;
        Model::from_bytes(bytes, source)
    }

    /// `path`, or the built-in default model when `None`.
    pub fn open_or_builtin(path: Option<&Path>) -> Result<Model> {
        match path {
            Some(path) => Model::open(path),
            None => Model::builtin(),
        }
    }

    /// A model from the bytes of a model file; `source` names it in messages.
    pub fn from_bytes(bytes: Vec<u8>, source: impl Into<String>) -> Result<Model> {
        let source = source.into();
        Ok(Model {
            weights: Weights::from_safetensors(&bytes, &source)?,
            fingerprint: hex_sha256(&bytes),
            source,
            file: Some(bytes),
        })
    }

    /// A model from weights in memory (fine-tuned or edited); its fingerprint is that of
    /// the model file they would be saved as.
    pub fn from_weights(weights: Weights, source: impl Into<String>) -> Result<Model> {
        let bytes = weights.to_safetensors()?;
        Ok(Model {
            weights,
            fingerprint: hex_sha256(&bytes),
            source: source.into(),
            file: Some(bytes),
        })
    }

    /// Weights imported from a file that is not a model file (a `.pth` checkpoint),
    /// fingerprinted by that file's bytes. Such a model cannot be stored in an index.
    pub fn imported(weights: Weights, fingerprint: String, source: String) -> Model {
        Model {
            weights,
            fingerprint,
            source,
            file: None,
        }
    }

    /// The weights.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// The weights, giving up the rest.
    pub fn into_weights(self) -> Weights {
        self.weights
    }

    /// Hex SHA-256 of the model file (CONTRACTS.md).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The file's path, or a description such as "the default model".
    pub fn source(&self) -> &str {
        &self.source
    }

    /// s in `estimate = s * squared embedding distance`.
    pub fn distance_scale(&self) -> f32 {
        self.weights.distance_scale
    }

    /// The model file's bytes, when there is a model file (not for an imported `.pth`).
    pub fn file_bytes(&self) -> Option<&[u8]> {
        self.file.as_deref()
    }
}

/// The released checkpoint built into the binary ([`RELEASED_CHECKPOINT`]), imported
/// (with its distance scale 78.6/280); the fingerprint is that of the `.pth` bytes.
#[cfg(feature = "pth")]
pub fn released() -> Result<Model> {
    let source = format!("{RELEASED_CHECKPOINT_PATH} (built in)");
    let sd = pth::read_state_dict_bytes(RELEASED_CHECKPOINT, &source)?;
    Ok(Model::imported(
        Weights::from_state_dict(&sd, &source)?,
        hex_sha256(RELEASED_CHECKPOINT),
        source,
    ))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
