//! The megashtein model: its tensors, weights on disk, and the GPU forward pass.
pub mod megashtein;
pub mod params;
pub mod pth;
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
pub const RELEASED_CHECKPOINT: &[u8] =
    include_bytes!("../../models/reference/megashtein_trained_model.pth");
/// Where [`RELEASED_CHECKPOINT`] comes from, relative to the repository root.
pub const RELEASED_CHECKPOINT_PATH: &str = "models/reference/megashtein_trained_model.pth";

/// Weights with where they came from.
pub struct LoadedModel {
    pub weights: Weights,
    /// Hex SHA-256 of the model file's bytes (CONTRACTS.md).
    pub fingerprint: String,
    /// The file's path, or "the default model".
    pub source: String,
}

/// Load `path`, or the built-in default model when `None`.
pub fn load(path: Option<&Path>) -> Result<LoadedModel> {
    Ok(load_with_bytes(path)?.0)
}

/// [`load`], also returning the model file's bytes (what an index stores).
pub fn load_with_bytes(path: Option<&Path>) -> Result<(LoadedModel, Vec<u8>)> {
    let (bytes, source) = match path {
        Some(path) => {
            let source = path.display().to_string();
            let bytes = weights::read_model_file(path)
                .map_err(|e| anyhow::anyhow!("cannot read model {source}: {e}"))?;
            (bytes, source)
        }
        None => (DEFAULT_MODEL.to_vec(), "the default model".to_string()),
    };
    Ok((load_bytes(&bytes, source)?, bytes))
}

/// A model from the bytes of a model file; `source` names it in messages.
pub fn load_bytes(bytes: &[u8], source: String) -> Result<LoadedModel> {
    Ok(LoadedModel {
        weights: Weights::from_safetensors(bytes, &source)?,
        fingerprint: hex_sha256(bytes),
        source,
    })
}

/// The released checkpoint built into the binary ([`RELEASED_CHECKPOINT`]), imported
/// (with its distance scale 78.6/280); the fingerprint is that of the `.pth` bytes.
pub fn released() -> Result<LoadedModel> {
    let source = format!("{RELEASED_CHECKPOINT_PATH} (built in)");
    let sd = pth::read_state_dict_bytes(RELEASED_CHECKPOINT, &source)?;
    Ok(LoadedModel {
        weights: Weights::from_state_dict(&sd, &source)?,
        fingerprint: hex_sha256(RELEASED_CHECKPOINT),
        source,
    })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
