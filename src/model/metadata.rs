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
