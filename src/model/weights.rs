//! The model's weights in memory and on disk.
//!
//! On disk a model is one safetensors file whose tensors are named, shaped and typed
//! exactly as PyTorch's `state_dict` of the reference architecture (so
//! `model.load_state_dict(safetensors.torch.load_file(path))` accepts it, strictly),
//! with everything else in the `__metadata__`: `megashtein.arch` and
//! `megashtein.distance_scale` (see CONTRACTS.md).

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::tensor::{Dtype, SafeTensors};

use super::params::{NUM_BATCHES_TRACKED, RUNNING_MEAN, RUNNING_VAR, TensorSpec, Widths};
use super::state_dict::{DType, StateDict, Tensor};

/// Float32 tensors beside the model's own in a file (by name, flattened).
pub type ExtraTensors = HashMap<String, Vec<f32>>;

/// Architecture name and version recorded in every model file.
pub const ARCH: &str = "megashtein-cnn-v1";
/// Metadata key of the architecture name.
pub const META_ARCH: &str = "megashtein.arch";
/// Metadata key of the distance scale s (d_hat = s * squared embedding distance).
pub const META_DISTANCE_SCALE: &str = "megashtein.distance_scale";
/// Metadata key of the layer widths (JSON), written when they are not the released ones.
pub const META_WIDTHS: &str = "megashtein.widths";
/// The scale the released reference checkpoint was trained with: M / (2 * 140), M = 78.6.
pub const REFERENCE_DISTANCE_SCALE: f32 = 78.6 / 280.0;
/// Name prefix of a training checkpoint's own tensors, which are not part of the model.
const TRAINING_STATE: &str = "train.";

/// A model file is about 546 KB; anything far larger is not one.
const MAX_MODEL_FILE_BYTES: u64 = 64 << 20;

/// All the weights of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// The layer widths, which give every tensor's shape.
    pub widths: Widths,
    /// The trainable tensors back to back, in `widths.params()` order.
    pub params: Vec<f32>,
    /// BatchNorm running mean (`widths.dim` values).
    pub running_mean: Vec<f32>,
    /// BatchNorm running variance (`widths.dim` values).
    pub running_var: Vec<f32>,
    /// BatchNorm's count of training batches (a 0-d int64 in PyTorch).
    pub num_batches_tracked: i64,
    /// d_hat = distance_scale * sum((e1 - e2)^2).
    pub distance_scale: f32,
    /// Architecture name and version, `ARCH`.
    pub arch: String,
}

impl Weights {
    /// Takes the weights out of a state_dict of the reference architecture, at the
    /// widths its shapes give. Strict: every tensor present with the shape those widths
    /// give and its dtype (float32; int64 for `num_batches_tracked`) and no other
    /// tensor. `source` names where the state_dict came from, for error messages. A
    /// state_dict carries no distance scale: the result has `REFERENCE_DISTANCE_SCALE`,
    /// that of the released checkpoint.
    pub fn from_state_dict(sd: &StateDict, source: &str) -> Result<Self> {
        let widths = Widths::of_state_dict(sd);
        widths
            .check()
            .map_err(|e| anyhow!("{source}: its shapes give widths this build cannot run: {e}"))?;
        let mut problems = Vec::new();
        let mut params = Vec::with_capacity(widths.num_params());
        for spec in widths.params() {
            match f32_tensor(sd, &spec) {
                Ok(values) => params.extend(values),
                Err(e) => problems.push(e),
            }
        }
        let running_mean = f32_tensor(sd, &widths.running_mean()).unwrap_or_else(|e| {
            problems.push(e);
            Vec::new()
        });
        let running_var = f32_tensor(sd, &widths.running_var()).unwrap_or_else(|e| {
            problems.push(e);
            Vec::new()
        });
        let num_batches_tracked = match sd.get(NUM_BATCHES_TRACKED) {
            None => {
                problems.push(format!("missing tensor {NUM_BATCHES_TRACKED}"));
                0
            }
            Some(t) if t.dtype != DType::I64 || !t.shape.is_empty() => {
                problems.push(format!(
                    "tensor {NUM_BATCHES_TRACKED} is {} {:?}, expected a 0-d int64",
                    t.dtype, t.shape
                ));
                0
            }
            Some(t) => t.to_i64().and_then(|v| v.first().copied()).unwrap_or(0),
        };
        for name in sd.names() {
            if !is_model_tensor(&widths, name) {
                problems.push(format!("unexpected tensor {}", name.escape_debug()));
            }
        }
        if !problems.is_empty() {
            bail!(
                "{source} is not a {ARCH} state_dict: {}",
                problems.join("; ")
            );
        }
        Ok(Self {
            widths,
            params,
            running_mean,
            running_var,
            num_batches_tracked,
            distance_scale: REFERENCE_DISTANCE_SCALE,
            arch: ARCH.to_string(),
        })
    }

    /// The state_dict of these weights, in PyTorch's order.
    pub fn to_state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for spec in self.widths.params() {
            sd.insert(
                spec.name,
                f32_to_tensor(self.tensor(spec.name), &spec.shape),
            );
        }
        sd.insert(
            RUNNING_MEAN,
            f32_to_tensor(&self.running_mean, &[self.widths.dim]),
        );
        sd.insert(
            RUNNING_VAR,
            f32_to_tensor(&self.running_var, &[self.widths.dim]),
        );
        sd.insert(
            NUM_BATCHES_TRACKED,
            Tensor {
                dtype: DType::I64,
                shape: Vec::new(),
                data: self.num_batches_tracked.to_le_bytes().to_vec(),
            },
        );
        sd
    }

    /// Reads a model file (safetensors), with the same strict checks as
    /// `from_state_dict` plus the metadata `megashtein.arch` (must be `ARCH`),
    /// `megashtein.distance_scale` (a positive finite number) and, when present,
    /// `megashtein.widths` (must agree with the shapes).
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self::load_with_fingerprint(path)?.0)
    }

    /// [`Weights::load`], also returning the file's fingerprint (hex SHA-256 of the very
    /// bytes that were parsed).
    pub fn load_with_fingerprint(path: &Path) -> Result<(Self, String)> {
        let source = path.display().to_string();
        let bytes =
            read_model_file(path).map_err(|e| anyhow!("cannot read model {source}: {e}"))?;
        Ok((
            Self::from_safetensors(&bytes, &source)?,
            super::hex_sha256(&bytes),
        ))
    }

    /// Parses the bytes of a model file; `source` names it in error messages.
    /// A training checkpoint loads as the model it holds: its own tensors (named
    /// `train.*`: optimizer moments, the learned log scale, hard-example tables) are
    /// left out, and its metadata carries the scale like a model file's.
    pub fn from_safetensors(bytes: &[u8], source: &str) -> Result<Self> {
        Ok(Self::from_safetensors_with(bytes, source, &[])?.0)
    }

    /// Parses a model file that may also hold the float32 tensors named in `extra`
    /// (a training checkpoint: optimizer moments and the like). Returns the weights, the
    /// extra tensors present (flattened) and the file's metadata.
    pub fn from_safetensors_with(
        bytes: &[u8],
        source: &str,
        extra: &[&str],
    ) -> Result<(Self, ExtraTensors, HashMap<String, String>)> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            let hint = if bytes.starts_with(b"PK") {
                "; it looks like a PyTorch checkpoint: convert it with `megashtein-gpu import`"
            } else {
                ""
            };
            anyhow!("{source} is not a valid safetensors file ({e}){hint}")
        })?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{source} is not a valid safetensors file ({e})"))?;
        let mut sd = StateDict::new();
        let mut extras = HashMap::new();
        let mut bad_dtypes = Vec::new();
        for (name, view) in st.tensors() {
            let wanted = extra.contains(&name.as_str());
            if name.starts_with(TRAINING_STATE) && !wanted {
                continue;
            }
            let Some(dtype) = from_safetensors_dtype(view.dtype()) else {
                bad_dtypes.push(format!(
                    "tensor {} has dtype {:?}",
                    name.escape_debug(),
                    view.dtype()
                ));
                continue;
            };
            if wanted {
                let tensor = Tensor {
                    dtype,
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                };
                let values = tensor
                    .to_f32()
                    .ok_or_else(|| anyhow!("{source}: tensor {name} is not float32"))?;
                extras.insert(name, values);
                continue;
            }
            sd.insert(
                name,
                Tensor {
                    dtype,
                    shape: view.shape().to_vec(),
                    data: view.data().to_vec(),
                },
            );
        }
        if !bad_dtypes.is_empty() {
            bail!("{source} is not a {ARCH} model: {}", bad_dtypes.join("; "));
        }
        let mut weights = Self::from_state_dict(&sd, source)?;

        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let hint = "(files written by `megashtein-gpu import` or `train` have it)";
        match meta.get(META_ARCH) {
            Some(arch) if arch == ARCH => weights.arch = arch.clone(),
            Some(arch) => bail!(
                "{source} is a {} model, this build reads {ARCH}",
                arch.escape_debug()
            ),
            None => bail!("{source} has no {META_ARCH} metadata {hint}"),
        }
        let scale = meta
            .get(META_DISTANCE_SCALE)
            .ok_or_else(|| anyhow!("{source} has no {META_DISTANCE_SCALE} metadata {hint}"))?;
        weights.distance_scale = scale
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| {
                anyhow!(
                    "{source}: {META_DISTANCE_SCALE} is {:?}, expected a positive number",
                    scale.escape_debug().to_string()
                )
            })?;
        if let Some(recorded) = meta.get(META_WIDTHS) {
            let recorded: Widths = serde_json::from_str(recorded).map_err(|e| {
                anyhow!("{source}: {META_WIDTHS} is not a JSON object of four widths ({e})")
            })?;
            if recorded != weights.widths {
                bail!(
                    "{source}: {META_WIDTHS} says {recorded}, but its tensors have {}",
                    weights.widths
                );
            }
        }
        Ok((weights, extras, meta.clone()))
    }

    /// The model file's bytes (safetensors).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        self.to_safetensors_with(&[], &[])
    }

    /// The model file's bytes with `extra` float32 tensors (1-D) and metadata beside the
    /// model's own: a training checkpoint that still loads as a model in PyTorch with
    /// `strict=False`.
    pub fn to_safetensors_with(
        &self,
        extra: &[(&str, &[f32])],
        extra_meta: &[(&str, String)],
    ) -> Result<Vec<u8>> {
        self.widths.check()?;
        let expected = self.widths.num_params();
        if self.params.len() != expected
            || self.running_mean.len() != self.widths.dim
            || self.running_var.len() != self.widths.dim
        {
            bail!(
                "weights have {} parameters and {}/{} running statistics, expected {expected} and {}",
                self.params.len(),
                self.running_mean.len(),
                self.running_var.len(),
                self.widths.dim
            );
        }
        if !(self.distance_scale.is_finite() && self.distance_scale > 0.0) {
            bail!(
                "distance scale {} is not a positive number",
                self.distance_scale
            );
        }
        let mut meta = vec![
            (META_ARCH, self.arch.clone()),
            // Rust prints the shortest decimal that parses back to the same f32.
            (META_DISTANCE_SCALE, self.distance_scale.to_string()),
        ];
        // Only other widths are written, so released-width files keep their bytes.
        if self.widths != Widths::RELEASED {
            meta.push((META_WIDTHS, serde_json::to_string(&self.widths)?));
        }
        meta.extend(extra_meta.iter().cloned());
        let mut sd = self.to_state_dict();
        for (name, values) in extra {
            sd.insert(*name, f32_to_tensor(values, &[values.len()]));
        }
        serialize_safetensors(&sd, &meta)
    }

    /// Writes the model file atomically: the file at `path` is either the old one or the
    /// complete new one, never a part.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_safetensors()?;
        crate::io::write_file_atomic(path, &bytes)
    }

    /// PyTorch's initialisation of the reference architecture at the released widths
    /// ([`Weights::init_with`]).
    pub fn init(seed: u64) -> Self {
        Self::init_with(Widths::RELEASED, seed)
    }

    /// PyTorch's initialisation of the reference architecture (REFERENCE.md 1) at
    /// `widths`: xavier-uniform conv and linear weights, zero biases, embedding N(0, 1),
    /// BatchNorm gamma 1 and beta 0, running mean 0 and variance 1. The same seed always
    /// gives the same weights (tensors drawn in state_dict order from one `StdRng`).
    pub fn init_with(widths: Widths, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(widths.num_params());
        for spec in widths.params() {
            let n = spec.len();
            let shape = &spec.shape;
            if spec.name == "embedding.weight" {
                params.extend((0..n).map(|_| standard_normal(&mut rng)));
            } else if spec.name.ends_with(".bias") {
                params.extend(std::iter::repeat_n(0.0, n));
            } else if shape.len() == 1 {
                // BatchNorm gamma.
                params.extend(std::iter::repeat_n(1.0, n));
            } else {
                // Conv1d [out, in, k] or Linear [out, in]: fans include the kernel width.
                let receptive: usize = shape[2..].iter().product();
                let fan_in = (shape[1] * receptive) as f64;
                let fan_out = (shape[0] * receptive) as f64;
                let bound = (6.0 / (fan_in + fan_out)).sqrt();
                params.extend((0..n).map(|_| rng.random_range(-bound..bound) as f32));
            }
        }
        Self {
            widths,
            params,
            running_mean: vec![0.0; widths.dim],
            running_var: vec![1.0; widths.dim],
            num_batches_tracked: 0,
            distance_scale: REFERENCE_DISTANCE_SCALE,
            arch: ARCH.to_string(),
        }
    }

    /// A named tensor: a trainable one (a slice of `params`) or the running statistics.
    ///
    /// # Panics
    /// If no such tensor exists (names are the model's own constants).
    pub fn tensor(&self, name: &str) -> &[f32] {
        self.try_tensor(name)
            .unwrap_or_else(|| panic!("no tensor named {name}"))
    }

    /// Like `tensor`, but `None` for an unknown name.
    pub fn try_tensor(&self, name: &str) -> Option<&[f32]> {
        match name {
            RUNNING_MEAN => Some(&self.running_mean),
            RUNNING_VAR => Some(&self.running_var),
            _ => self.params.get(self.widths.range(name)?),
        }
    }

    /// Mutable access to a named tensor, as `tensor`.
    ///
    /// # Panics
    /// If no such tensor exists.
    pub fn tensor_mut(&mut self, name: &str) -> &mut [f32] {
        match name {
            RUNNING_MEAN => &mut self.running_mean,
            RUNNING_VAR => &mut self.running_var,
            _ => &mut self.params[self.widths.range_of(name)],
        }
    }
}

/// Hex SHA-256 of a file's bytes: the model fingerprint.
pub fn fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow!(
            "cannot fingerprint {}: {}",
            path.display(),
            crate::io::io_reason(&e)
        )
    })?;
    Ok(super::hex_sha256(&bytes))
}

fn is_model_tensor(widths: &Widths, name: &str) -> bool {
    [RUNNING_MEAN, RUNNING_VAR, NUM_BATCHES_TRACKED].contains(&name) || widths.range(name).is_some()
}

fn f32_tensor(sd: &StateDict, spec: &TensorSpec) -> std::result::Result<Vec<f32>, String> {
    let t = sd
        .get(spec.name)
        .ok_or_else(|| format!("missing tensor {}", spec.name))?;
    if t.shape != spec.shape {
        return Err(format!(
            "tensor {} has shape {:?}, expected {:?}",
            spec.name, t.shape, spec.shape
        ));
    }
    let values = t.to_f32().ok_or_else(|| {
        format!(
            "tensor {} has dtype {}, expected float32",
            spec.name, t.dtype
        )
    })?;
    // A NaN or infinity would make every distance untrustworthy: refuse it here.
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "tensor {} holds a non-finite value ({}) at element {i}",
            spec.name, values[i]
        )),
        None => Ok(values),
    }
}

fn f32_to_tensor(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The safetensors name of a dtype.
fn safetensors_dtype_name(d: DType) -> &'static str {
    match d {
        DType::F64 => "F64",
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::I8 => "I8",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
    }
}

/// A safetensors file of `sd`, byte for byte the same for the same input. (The
/// safetensors crate writes its `__metadata__` from a HashMap, in random order, which
/// would change the fingerprint of an unchanged model.) Tensor data is laid out as the
/// crate does it: by descending element size, then by name.
pub(crate) fn serialize_safetensors(sd: &StateDict, meta: &[(&str, String)]) -> Result<Vec<u8>> {
    use serde_json::{Map, Value, json};
    let mut tensors: Vec<(&str, &Tensor)> = sd.iter().collect();
    tensors.sort_by(|a, b| b.1.dtype.size().cmp(&a.1.dtype.size()).then(a.0.cmp(b.0)));
    let mut meta: Vec<&(&str, String)> = meta.iter().collect();
    meta.sort();
    // Every JSON object is filled in sorted key order, so the bytes are the same whether
    // serde_json's map sorts its keys or keeps their insertion order (`preserve_order`).
    let meta: Map<String, Value> = meta
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    let mut entries = vec![("__metadata__".to_string(), Value::Object(meta))];
    let mut offset = 0usize;
    for (name, t) in &tensors {
        let end = offset + t.data.len();
        let mut info = Map::new();
        info.insert("data_offsets".into(), json!([offset, end]));
        info.insert("dtype".into(), json!(safetensors_dtype_name(t.dtype)));
        info.insert("shape".into(), json!(t.shape));
        entries.push((name.to_string(), Value::Object(info)));
        offset = end;
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let header: Map<String, Value> = entries.into_iter().collect();
    let data: Vec<&[u8]> = tensors.iter().map(|(_, t)| t.data.as_slice()).collect();
    assemble_safetensors(&Value::Object(header), &data)
}

/// A safetensors file from its JSON `header` and its tensors' `data` in offset order:
/// the header's length, the header padded with spaces to a multiple of 8 bytes (as the
/// format recommends), then the data; checked by parsing it back.
pub(crate) fn assemble_safetensors(header: &serde_json::Value, data: &[&[u8]]) -> Result<Vec<u8>> {
    let mut json = serde_json::to_vec(header)?;
    json.resize(json.len().next_multiple_of(8), b' ');
    let data_len: usize = data.iter().map(|d| d.len()).sum();
    let mut out = Vec::with_capacity(8 + json.len() + data_len);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    for d in data {
        out.extend(*d);
    }
    SafeTensors::deserialize(&out)
        .map_err(|e| anyhow!("internal error: wrote an invalid safetensors file ({e})"))?;
    Ok(out)
}

fn from_safetensors_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F64 => DType::F64,
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::I64 => DType::I64,
        Dtype::I32 => DType::I32,
        Dtype::I16 => DType::I16,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

/// The bytes of a model file, refusing directories and files far too large to be one.
pub(crate) fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    let meta = fs::metadata(path)?;
    if meta.is_dir() {
        bail!("it is a directory, not a file");
    }
    if meta.len() > MAX_MODEL_FILE_BYTES {
        bail!(
            "it is {} bytes, far too large for a {ARCH} model",
            meta.len()
        );
    }
    Ok(fs::read(path)?)
}

/// One N(0, 1) sample (Box-Muller).
fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_deterministic_and_follows_the_reference_recipe() {
        let a = Weights::init(1);
        assert_eq!(a, Weights::init(1));
        assert_ne!(a.params, Weights::init(2).params);
        assert_eq!(a.params.len(), Widths::RELEASED.num_params());
        assert!(a.tensor("conv_layers.0.bias").iter().all(|&v| v == 0.0));
        assert!(a.tensor("fc_layers.3.weight").iter().all(|&v| v == 1.0));
        assert!(a.tensor("fc_layers.3.bias").iter().all(|&v| v == 0.0));
        assert!(
            a.running_var.iter().all(|&v| v == 1.0) && a.running_mean.iter().all(|&v| v == 0.0)
        );
        // Xavier bounds: conv0 fans 140*3 and 64*3; fc0 fans 128 and 200.
        let conv0 = a.tensor("conv_layers.0.weight");
        let b = (6.0f32 / (420.0 + 192.0)).sqrt();
        assert!(conv0.iter().all(|v| v.abs() <= b));
        assert!(conv0.iter().any(|v| v.abs() > 0.9 * b));
        let fc0 = a.tensor("fc_layers.0.weight");
        let b = (6.0f32 / 328.0).sqrt();
        assert!(fc0.iter().all(|v| v.abs() <= b) && fc0.iter().any(|v| v.abs() > 0.9 * b));
        // Embedding ~ N(0, 1).
        let e = a.tensor("embedding.weight");
        let mean = e.iter().sum::<f32>() / e.len() as f32;
        let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / e.len() as f32;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }

    #[test]
    fn model_bytes_are_deterministic() {
        let w = Weights::init(8);
        let bytes = w.to_safetensors().unwrap();
        for _ in 0..20 {
            assert_eq!(w.to_safetensors().unwrap(), bytes);
        }
        assert_eq!(Weights::from_safetensors(&bytes, "x").unwrap(), w);
    }

    #[test]
    fn non_finite_weights_are_refused_by_name() {
        for bad in [f32::NAN, f32::INFINITY] {
            let mut w = Weights::init(4);
            w.tensor_mut("conv_layers.3.weight")[7] = bad;
            let bytes = w.to_safetensors().unwrap();
            let err = Weights::from_safetensors(&bytes, "bad.safetensors")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("bad.safetensors")
                    && err.contains("conv_layers.3.weight holds a non-finite value")
                    && err.contains("element 7"),
                "{err}"
            );
        }
    }

    #[test]
    fn other_widths_round_trip_and_are_recorded() {
        let widths = Widths {
            char_dim: 12,
            channels: 8,
            hidden: 232,
            dim: 44,
        };
        let w = Weights::init_with(widths, 5);
        assert_eq!(w.params.len(), widths.num_params());
        assert_eq!(w.tensor("conv_layers.3.weight").len(), 8 * 8 * 3);
        let bytes = w.to_safetensors().unwrap();
        let back = Weights::from_safetensors(&bytes, "w.safetensors").unwrap();
        assert_eq!(back, w);
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().clone().unwrap();
        assert_eq!(
            meta[META_WIDTHS],
            r#"{"char_dim":12,"channels":8,"hidden":232,"dim":44}"#
        );
        // The released widths write no key: such files keep their bytes.
        let released = Weights::init(5).to_safetensors().unwrap();
        let (_, header) = SafeTensors::read_metadata(&released).unwrap();
        assert!(!header.metadata().clone().unwrap().contains_key(META_WIDTHS));
    }

    #[test]
    fn recorded_widths_must_agree_with_the_shapes() {
        let w = Weights::init_with(
            Widths {
                dim: 40,
                ..Widths::RELEASED
            },
            6,
        );
        let sd = w.to_state_dict();
        let write = |widths: &str| {
            let meta = vec![
                (META_ARCH, ARCH.to_string()),
                (META_DISTANCE_SCALE, "0.5".to_string()),
                (META_WIDTHS, widths.to_string()),
            ];
            serialize_safetensors(&sd, &meta).unwrap()
        };
        let other = r#"{"char_dim":140,"channels":64,"hidden":200,"dim":80}"#;
        let e = Weights::from_safetensors(&write(other), "m.safetensors").unwrap_err();
        assert!(
            e.to_string()
                .contains("m.safetensors: megashtein.widths says")
                && e.to_string().contains("its tensors have"),
            "{e}"
        );
        let extra = r#"{"char_dim":140,"channels":64,"hidden":200,"dim":40,"depth":6}"#;
        for bad in ["wide", extra] {
            let e = Weights::from_safetensors(&write(bad), "m.safetensors").unwrap_err();
            assert!(
                e.to_string().contains("not a JSON object of four widths"),
                "{e}"
            );
        }
        // Widths the kernels cannot run are not written either.
        let odd = Weights::init_with(
            Widths {
                dim: 41,
                ..Widths::RELEASED
            },
            6,
        );
        let e = odd.to_safetensors().unwrap_err();
        assert!(e.to_string().contains("must be even"), "{e}");
        let ok = r#"{"char_dim":140,"channels":64,"hidden":200,"dim":40}"#;
        assert_eq!(
            Weights::from_safetensors(&write(ok), "m").unwrap().params,
            w.params
        );
    }

    #[test]
    fn tensor_slices_by_name() {
        let mut w = Weights::init(3);
        assert_eq!(w.tensor("embedding.weight").len(), 128 * 140);
        assert_eq!(w.tensor("fc_layers.2.bias").len(), 80);
        assert_eq!(w.tensor(RUNNING_VAR), &w.running_var[..]);
        assert!(w.try_tensor("nope").is_none());
        w.tensor_mut("fc_layers.2.bias")[0] = 5.0;
        assert_eq!(w.params[w.widths.offset_of("fc_layers.2.bias")], 5.0);
    }
}
