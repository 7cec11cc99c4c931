//! Embedding strings in batches on the GPU: chunked to the model's capacity, with the
//! next batch read from the input while the GPU computes the current one.
use std::io::BufRead;

use anyhow::Result;

use crate::gpu::Gpu;
use crate::input::{Line, LineReader, tokenize_batch, tokenize_lines};
use crate::model::megashtein::Megashtein;
use crate::model::params::EMBED_DIM;
use crate::model::weights::Weights;
use crate::ops::Ops;

/// Default number of strings per GPU batch (clamped to what the device can bind).
pub const DEFAULT_BATCH: usize = 4096;

/// A model on a device, ready to embed any number of strings.
pub struct Embedder<'g> {
    gpu: &'g Gpu,
    model: Megashtein,
    tokens: Vec<u32>,
}

impl<'g> Embedder<'g> {
    /// Upload `weights` and size the model for batches of `batch` strings.
    pub fn new(gpu: &'g Gpu, weights: &Weights, batch: usize) -> Result<Self> {
        let ops = Ops::new(gpu);
        let model = Megashtein::new(gpu, &ops, weights, batch)?;
        Ok(Embedder {
            gpu,
            model,
            tokens: Vec::new(),
        })
    }

    /// Strings per GPU batch.
    pub fn batch(&self) -> usize {
        self.model.capacity()
    }

    /// Embeddings of `texts`, `[texts, 80]` row-major, in order.
    pub fn embed(&mut self, texts: &[&[u8]]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(texts.len() * EMBED_DIM);
        for chunk in texts.chunks(self.model.capacity()) {
            self.tokens.clear();
            tokenize_batch(chunk.iter().copied(), &mut self.tokens);
            out.extend(self.model.forward(self.gpu, &self.tokens)?);
        }
        Ok(out)
    }

    /// Each kernel's time in the forward pass of `texts` (at most one batch), for
    /// `bench embed --profile`.
    pub fn profile(&mut self, texts: &[&[u8]]) -> Result<Vec<(&'static str, f64)>> {
        self.tokens.clear();
        let batch = texts.len().min(self.model.capacity());
        tokenize_batch(texts[..batch].iter().copied(), &mut self.tokens);
        self.model.profile(self.gpu, &self.tokens)
    }

    /// Stream every line of `reader` through the model; `sink` gets each batch of lines
    /// with its `[lines, 80]` embeddings, in input order. Reading the next batch overlaps
    /// with the GPU's work on the current one.
    pub fn embed_stream<R: BufRead>(
        &mut self,
        reader: &mut LineReader<R>,
        mut sink: impl FnMut(&[Line], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let capacity = self.model.capacity();
        let mut current = Vec::with_capacity(capacity);
        let mut next = Vec::with_capacity(capacity);
        reader.next_batch(capacity, &mut current)?;
        while !current.is_empty() {
            self.tokens.clear();
            tokenize_lines(&current, &mut self.tokens);
            let batch = self.model.submit(self.gpu, &self.tokens)?;
            reader.next_batch(capacity, &mut next)?;
            let embeddings = self.model.collect(self.gpu, batch)?;
            sink(&current, &embeddings)?;
            std::mem::swap(&mut current, &mut next);
        }
        Ok(())
    }
}
