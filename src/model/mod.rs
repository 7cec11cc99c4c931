//! The models: the megashtein network (its tensors, weights on disk, and the GPU forward
//! pass) and the training-free CGK embedding, each a model file; and the estimator that
//! turns an embedding distance into an edit-distance estimate.
pub mod cgk;
pub mod cgk_encoder;
pub mod cnn_ed;
pub mod cnn_ed_encoder;
pub mod cnn_ed_layers;
pub mod megashtein;
pub(crate) mod metadata;
pub mod params;
#[cfg(feature = "pth")]
pub mod pth;
pub mod state_dict;
pub mod weights;

use std::path::Path;

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::ops::knn::MAX_K;
use cgk::Cgk;
use cnn_ed::CnnEd;
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

/// How two embeddings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance of float vectors (megashtein).
    SquaredEuclidean,
    /// Hamming distance: the number of places that differ (CGK codes, one symbol each).
    Hamming,
    /// Euclidean distance of float vectors (CNN-ED; ranked by its square).
    Euclidean,
}

impl Metric {
    /// The distance search ranks `a` and `b` by, summed in order in f64: the squared
    /// distance for both float metrics (it orders like the Euclidean one), the count of
    /// differing places for codes. [`Estimator::estimate`] reads it.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::SquaredEuclidean | Metric::Euclidean => crate::stats::squared_distance(a, b),
            Metric::Hamming => a.iter().zip(b).filter(|(x, y)| x != y).count() as f64,
        }
    }

    /// `"squared_euclidean"`, `"hamming"` or `"euclidean"`, as export manifests name it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::SquaredEuclidean => "squared_euclidean",
            Metric::Hamming => "hamming",
            Metric::Euclidean => "euclidean",
        }
    }
}

/// How a model turns the distance of two embeddings (squared Euclidean, Hamming for CGK
/// codes, Euclidean for CNN-ED) into an estimate of their edit distance:
/// `scale * (distance / divisor)^exponent + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimator {
    pub metric: Metric,
    pub scale: f32,
    /// CGK's repetitions: the Hamming distance per repetition is what the curve reads.
    pub divisor: f32,
    pub exponent: f32,
    /// CNN-ED's fitted line has an intercept.
    pub offset: f32,
}

impl Estimator {
    /// megashtein: `s * squared distance`.
    pub fn linear(scale: f32) -> Estimator {
        Estimator {
            metric: Metric::SquaredEuclidean,
            scale,
            divisor: 1.0,
            exponent: 1.0,
            offset: 0.0,
        }
    }

    /// CGK: `coefficient * (hamming / reps)^exponent`.
    pub fn hamming(reps: usize, coefficient: f32, exponent: f32) -> Estimator {
        Estimator {
            metric: Metric::Hamming,
            scale: coefficient,
            divisor: reps as f32,
            exponent,
            offset: 0.0,
        }
    }

    /// CNN-ED: `slope * euclidean distance + intercept`.
    pub fn euclidean(slope: f32, intercept: f32) -> Estimator {
        Estimator {
            metric: Metric::Euclidean,
            scale: slope,
            divisor: 1.0,
            exponent: 1.0,
            offset: intercept,
        }
    }

    /// The edit-distance estimate of an embedding distance as search ranks it
    /// ([`Metric::distance`]: squared for the Euclidean metric, whose root it takes).
    pub fn estimate(&self, distance: f32) -> f32 {
        let distance = match self.metric {
            Metric::Euclidean => distance.max(0.0).sqrt(),
            _ => distance,
        };
        let estimate = if self.divisor == 1.0 && self.exponent == 1.0 {
            // Bit for bit the megashtein estimate s * d.
            self.scale * distance
        } else {
            self.scale * (distance / self.divisor).powf(self.exponent)
        };
        if self.offset == 0.0 {
            return estimate;
        }
        // A fitted line can cross zero; an edit distance cannot.
        (estimate + self.offset).max(0.0)
    }

    /// What threshold search compares with blowup x D: the estimate less a positive
    /// offset, which would otherwise keep even equal strings (distance 0) out of reach of
    /// a small D (a fitted line's intercept can be far above 0).
    pub fn screen(&self, distance: f32) -> f32 {
        self.estimate(distance) - self.offset.max(0.0)
    }

    /// The estimate for two embeddings.
    pub fn between(&self, a: &[f32], b: &[f32]) -> f32 {
        self.estimate(self.metric.distance(a, b) as f32)
    }
}

/// What a model file holds.
#[derive(Debug, Clone)]
pub enum Architecture {
    /// The learned CNN ([`weights::ARCH`]): float embeddings, squared Euclidean distance.
    Megashtein(Weights),
    /// The CGK walk ([`cgk::ARCH`]): byte codes, Hamming distance.
    Cgk(Cgk),
    /// CNN-ED ([`cnn_ed::ARCH`]): any alphabet, long strings, Euclidean distance.
    CnnEd(Box<CnnEd>),
}

/// A model file, loaded and checked: its architecture, its fingerprint (what an index
/// records and is checked against) and a name for messages.
#[derive(Clone)]
pub struct Model {
    arch: Architecture,
    fingerprint: String,
    source: String,
    /// The safetensors file's bytes, which an index stores so that searching needs no
    /// model file (`None` for an imported `.pth`).
    file: Option<Vec<u8>>,
    /// The `--candidates` measured for this model and recorded in its file
    /// ([`META_DEFAULT_CANDIDATES`]), if any.
    default_candidates: Option<usize>,
}

/// Model-file metadata: the default `--candidates` measured for this model by
/// CONTRACTS.md's rule (`bench query --record-default`), a whole number from 1 to the GPU
/// search's limit ([`MAX_K`], 1,024). Files without it take the project's default.
pub const META_DEFAULT_CANDIDATES: &str = "megashtein.default_candidates";

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
        let default_candidates = match file_metadata(&bytes, META_DEFAULT_CANDIDATES) {
            Some(text) => Some(
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|c| (1..=MAX_K).contains(c))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{source}: {META_DEFAULT_CANDIDATES} is {text:?}, expected a whole \
                             number from 1 to {MAX_K}"
                        )
                    })?,
            ),
            None => None,
        };
        let arch = match file_metadata(&bytes, weights::META_ARCH).as_deref() {
            Some(cgk::ARCH) => Architecture::Cgk(Cgk::from_safetensors(&bytes, &source)?),
            Some(cnn_ed::ARCH) => {
                Architecture::CnnEd(Box::new(CnnEd::from_safetensors(&bytes, &source)?))
            }
            _ => Architecture::Megashtein(Weights::from_safetensors(&bytes, &source)?),
        };
        Ok(Model {
            arch,
            fingerprint: hex_sha256(&bytes),
            source,
            file: Some(bytes),
            default_candidates,
        })
    }

    /// A model from weights in memory (fine-tuned or edited); its fingerprint is that of
    /// the model file they would be saved as.
    pub fn from_weights(weights: Weights, source: impl Into<String>) -> Result<Model> {
        let bytes = weights.to_safetensors()?;
        Ok(Model {
            arch: Architecture::Megashtein(weights),
            fingerprint: hex_sha256(&bytes),
            source: source.into(),
            file: Some(bytes),
            default_candidates: None,
        })
    }

    /// Weights imported from a file that is not a model file (a `.pth` checkpoint),
    /// fingerprinted by that file's bytes. Such a model cannot be stored in an index.
    pub fn imported(weights: Weights, fingerprint: String, source: String) -> Model {
        Model {
            arch: Architecture::Megashtein(weights),
            fingerprint,
            source,
            file: None,
            default_candidates: None,
        }
    }

    /// A CGK model; its fingerprint is that of its model file.
    pub fn from_cgk(cgk: Cgk, source: impl Into<String>) -> Result<Model> {
        let bytes = cgk.to_safetensors()?;
        Ok(Model {
            fingerprint: hex_sha256(&bytes),
            arch: Architecture::Cgk(cgk),
            source: source.into(),
            file: Some(bytes),
            default_candidates: None,
        })
    }

    /// A CNN-ED model; its fingerprint is that of its model file.
    pub fn from_cnn_ed(model: CnnEd, source: impl Into<String>) -> Result<Model> {
        let bytes = model.to_safetensors()?;
        Ok(Model {
            fingerprint: hex_sha256(&bytes),
            arch: Architecture::CnnEd(Box::new(model)),
            source: source.into(),
            file: Some(bytes),
            default_candidates: None,
        })
    }

    /// What the model file holds.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The megashtein network's weights; for another architecture an error naming the
    /// model (training and `bench embed` need a megashtein network).
    pub fn weights(&self) -> Result<&Weights> {
        match &self.arch {
            Architecture::Megashtein(weights) => Ok(weights),
            _ => Err(not_a_network(&self.source, self.arch_name())),
        }
    }

    /// The weights, giving up the rest ([`Model::weights`]'s error otherwise).
    pub fn into_weights(self) -> Result<Weights> {
        let arch = self.arch_name();
        match self.arch {
            Architecture::Megashtein(weights) => Ok(weights),
            _ => Err(not_a_network(&self.source, arch)),
        }
    }

    /// The architecture name recorded in the model file.
    pub fn arch_name(&self) -> &'static str {
        match self.arch {
            Architecture::Megashtein(_) => weights::ARCH,
            Architecture::Cgk(_) => cgk::ARCH,
            Architecture::CnnEd(_) => cnn_ed::ARCH,
        }
    }

    /// Values per embedding: the megashtein model's width (80 released), a CGK code's
    /// bytes, or CNN-ED's dimension.
    pub fn dim(&self) -> usize {
        match &self.arch {
            Architecture::Megashtein(weights) => weights.widths.dim,
            Architecture::Cgk(cgk) => cgk.width(),
            Architecture::CnnEd(model) => model.dim(),
        }
    }

    /// The characters of a string the model reads: longer strings are cut for it (80
    /// for the megashtein network, a CGK walk's input length, CNN-ED's M).
    pub fn reads_up_to(&self) -> usize {
        match &self.arch {
            Architecture::Megashtein(_) => params::MAX_LEN,
            Architecture::Cgk(cgk) => cgk.input_len(),
            Architecture::CnnEd(model) => model.shape().max_len,
        }
    }

    /// Whether the part of `text` the model reads holds characters outside its alphabet,
    /// which it reads as padding (CNN-ED's rule; the ASCII models have no such characters).
    pub fn reads_unseen_chars(&self, text: &[u8]) -> bool {
        let Architecture::CnnEd(model) = &self.arch else {
            return false;
        };
        let chars = model.char_ids();
        let unseen = chars.unseen();
        chars
            .of(&String::from_utf8_lossy(text))
            .any(|id| id == unseen)
    }

    /// Whether the model reads any UTF-8 (CNN-ED) rather than ASCII only.
    pub fn reads_unicode(&self) -> bool {
        matches!(self.arch, Architecture::CnnEd(_))
    }

    /// Hex SHA-256 of the model file (CONTRACTS.md).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The file's path, or a description such as "the default model".
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Edit-distance estimates from embedding distances.
    pub fn estimator(&self) -> Estimator {
        match &self.arch {
            Architecture::Megashtein(weights) => Estimator::linear(weights.distance_scale),
            Architecture::Cgk(cgk) => cgk.estimator(),
            Architecture::CnnEd(model) => model.estimator(),
        }
    }

    /// The model file's bytes, when there is a model file (not for an imported `.pth`).
    pub fn file_bytes(&self) -> Option<&[u8]> {
        self.file.as_deref()
    }

    /// The `--candidates` measured for this model and recorded in its file, if any.
    pub fn default_candidates(&self) -> Option<usize> {
        self.default_candidates
    }

    /// This model with `candidates` recorded as its default `--candidates`: the same
    /// tensors and metadata plus [`META_DEFAULT_CANDIDATES`], so a new fingerprint.
    pub fn with_default_candidates(&self, candidates: usize) -> Result<Model> {
        let Some(bytes) = &self.file else {
            anyhow::bail!(
                "{} is not a model file; make one with `megashtein-gpu import` first",
                self.source
            );
        };
        let bytes = metadata::with_metadata(
            bytes,
            META_DEFAULT_CANDIDATES,
            &candidates.to_string(),
            &self.source,
        )?;
        Model::from_bytes(bytes, self.source.clone())
    }

    /// Writes the model file to `path` atomically (complete or absent).
    pub fn save(&self, path: &Path) -> Result<()> {
        let Some(bytes) = &self.file else {
            anyhow::bail!("{} is not a model file and cannot be saved", self.source);
        };
        crate::io::write_file_atomic(path, bytes)
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

/// An error when a batch of `batch` strings exceeds a model's `capacity`.
fn check_capacity(batch: usize, capacity: usize) -> Result<()> {
    if batch > capacity {
        anyhow::bail!("batch of {batch} exceeds this model's capacity of {capacity}");
    }
    Ok(())
}

fn not_a_network(source: &str, arch: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{source} is a {arch} model, not a {} network",
        weights::ARCH
    )
}

/// The `key` metadata of a safetensors file, if it has one.
fn file_metadata(bytes: &[u8], key: &str) -> Option<String> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    header.metadata().as_ref()?.get(key).cloned()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
