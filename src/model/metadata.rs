//! A model file read as safetensors with its `__metadata__`: values by key, parsed, with
//! errors that name the file and the key (shared by the CGK and CNN-ED model files).
use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{Result, anyhow};
use safetensors::tensor::SafeTensors;

pub struct ModelFile<'a> {
    pub tensors: SafeTensors<'a>,
    metadata: HashMap<String, String>,
    source: &'a str,
    arch: &'static str,
}

impl<'a> ModelFile<'a> {
    /// Parses `bytes`, a model file of architecture `arch`; `source` names it in messages.
    pub fn parse(bytes: &'a [u8], source: &'a str, arch: &'static str) -> Result<Self> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| invalid(source, e))?;
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| invalid(source, e))?;
        Ok(ModelFile {
            tensors,
            metadata: header.metadata().clone().unwrap_or_default(),
            source,
            arch,
        })
    }

    /// An error naming the file: "`source`: `message`".
    pub fn error(&self, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: {message}", self.source)
    }

    /// A safetensors error about this file.
    pub fn invalid(&self, e: safetensors::SafeTensorError) -> anyhow::Error {
        invalid(self.source, e)
    }

    /// The value of `key`, trimmed; an error when it is missing.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.optional(key)
            .ok_or_else(|| self.error(format!("a {} model needs {key} metadata", self.arch)))
    }

    /// The value of an optional `key`, trimmed.
    pub fn optional(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(|v| v.trim())
    }

    /// `key` as a whole number.
    pub fn number<T: FromStr>(&self, key: &str) -> Result<T> {
        self.get(key)?
            .parse()
            .map_err(|_| self.error(format!("{key} is not a whole number")))
    }

    /// `key` as a finite number.
    pub fn real(&self, key: &str) -> Result<f32> {
        self.get(key)?
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.error(format!("{key} is not a finite number")))
    }

    /// `key` as a positive finite number.
    pub fn positive(&self, key: &str) -> Result<f32> {
        Some(self.real(key)?)
            .filter(|v| *v > 0.0)
            .ok_or_else(|| self.error(format!("{key} is not a positive number")))
    }
}

fn invalid(source: &str, e: safetensors::SafeTensorError) -> anyhow::Error {
    anyhow!("{source} is not a valid safetensors file ({e})")
}

/// `bytes`, a safetensors file, with `__metadata__[key] = value` (added or replaced);
/// the tensors and their data are unchanged. The header is written with its keys sorted,
/// so the same input gives the same bytes (and fingerprint).
pub fn with_metadata(bytes: &[u8], key: &str, value: &str, source: &str) -> Result<Vec<u8>> {
    use serde_json::{Map, Value};
    SafeTensors::deserialize(bytes).map_err(|e| invalid(source, e))?;
    // A valid file: 8 bytes of header length, the JSON header, then the data.
    let header_len = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: Map<String, Value> = serde_json::from_slice(&bytes[8..8 + header_len])?;
    let mut entries: Vec<(String, Value)> = header.into_iter().collect();
    match entries.iter_mut().find(|(k, _)| k == "__metadata__") {
        Some((_, Value::Object(meta))) => {
            meta.insert(key.to_string(), Value::String(value.to_string()));
            let mut sorted: Vec<_> = std::mem::take(meta).into_iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            *meta = sorted.into_iter().collect();
        }
        _ => {
            let meta = Map::from_iter([(key.to_string(), Value::String(value.to_string()))]);
            entries.retain(|(k, _)| k != "__metadata__");
            entries.push(("__metadata__".to_string(), Value::Object(meta)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let header = Value::Object(entries.into_iter().collect());
    super::weights::assemble_safetensors(&header, &[&bytes[8 + header_len..]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};

    /// A one-tensor file with `metadata`, written by the safetensors crate.
    fn file(metadata: Option<HashMap<String, String>>) -> Vec<u8> {
        let data: Vec<u8> = (0..24).collect();
        let view = TensorView::new(Dtype::F32, vec![2, 3], &data).unwrap();
        safetensors::serialize([("w", view)], metadata).unwrap()
    }

    fn data_of(bytes: &[u8]) -> Vec<u8> {
        SafeTensors::deserialize(bytes)
            .unwrap()
            .tensor("w")
            .unwrap()
            .data()
            .to_vec()
    }

    fn metadata_of(bytes: &[u8]) -> HashMap<String, String> {
        let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
        header.metadata().clone().unwrap_or_default()
    }

    #[test]
    fn a_file_without_metadata_gains_the_key_and_keeps_its_tensors() {
        let plain = file(None);
        let out = with_metadata(&plain, "k", "v", "f").unwrap();
        assert_eq!(metadata_of(&out), HashMap::from([("k".into(), "v".into())]));
        assert_eq!(data_of(&out), data_of(&plain));
        let header_len = u64::from_le_bytes(out[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0, "the header is padded to 8 bytes");
    }

    #[test]
    fn a_key_is_replaced_and_the_result_depends_only_on_the_final_metadata() {
        let base = file(Some(HashMap::from([("a".into(), "1".into())])));
        let twice = with_metadata(
            &with_metadata(&base, "k", "20", "f").unwrap(),
            "k",
            "30",
            "f",
        );
        let once = with_metadata(&base, "k", "30", "f").unwrap();
        assert_eq!(twice.unwrap(), once);
        let want = HashMap::from([("a".into(), "1".into()), ("k".into(), "30".into())]);
        assert_eq!(metadata_of(&once), want);
        assert_eq!(data_of(&once), data_of(&base));
    }

    #[test]
    fn not_a_safetensors_file_is_an_error_naming_it() {
        let e = with_metadata(b"nonsense", "k", "v", "m.safetensors").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("m.safetensors is not a valid safetensors file")
        );
    }
}
