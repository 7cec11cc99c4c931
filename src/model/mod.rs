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
    match path {
        Some(path) => {
            let (weights, fingerprint) = Weights::load_with_fingerprint(path)?;
            Ok(LoadedModel {
                weights,
                fingerprint,
                source: path.display().to_string(),
            })
        }
        None => Ok(LoadedModel {
            weights: Weights::from_safetensors(DEFAULT_MODEL, "the default model")?,
            fingerprint: hex_sha256(DEFAULT_MODEL),
            source: "the default model".to_string(),
        }),
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
