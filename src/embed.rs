//! Embedding strings in batches on the GPU: chunked to the model's capacity, with the
//! next batch read from the input while the GPU computes the current one.
use std::io::BufRead;

use anyhow::{Result, bail};

use crate::gpu::Gpu;
use crate::input::{Line, LineReader, require_ascii, tokenize_batch};
use crate::model::Model;
use crate::model::megashtein::{Megashtein, Pending};
use crate::model::params::EMBED_DIM;
use crate::model::weights::Weights;
use crate::ops::Ops;
use crate::stats::squared_distance;

/// Default number of strings per GPU batch (clamped to what the device can bind).
pub const DEFAULT_BATCH: usize = 4096;

/// A model on a device, ready to embed any number of strings.
pub struct Embedder<'g> {
    gpu: &'g Gpu,
    model: Megashtein,
    tokens: Vec<u8>,
    distance_scale: f32,
}

impl<'g> Embedder<'g> {
    /// Upload `weights` and size the model for batches of `batch` strings.
    pub fn new(gpu: &'g Gpu, weights: &Weights, batch: usize) -> Result<Self> {
        Embedder::with_ops(gpu, &Ops::new(gpu), weights, batch)
    }

    /// [`Embedder::new`] with `ops` whose pipelines are already built (a caller that
    /// embeds again and again, like training's validation, compiles them once).
    pub fn with_ops(gpu: &'g Gpu, ops: &Ops, weights: &Weights, batch: usize) -> Result<Self> {
        let model = Megashtein::new(gpu, ops, weights, batch)?;
        Ok(Embedder {
            gpu,
            model,
            tokens: Vec::new(),
            distance_scale: weights.distance_scale,
        })
    }

    /// [`Embedder::new`] for `model`, with batches of [`DEFAULT_BATCH`] strings.
    pub fn for_model(gpu: &'g Gpu, model: &Model) -> Result<Self> {
        Embedder::new(gpu, model.weights(), DEFAULT_BATCH)
    }

    /// Strings per GPU batch.
    pub fn batch(&self) -> usize {
        self.model.capacity()
    }

    /// Embeddings of `texts`, `[texts, 80]` row-major, in order; the model reads the
    /// first 80 characters of each, and a string that is not ASCII is an error. Each
    /// batch is tokenized and submitted before the previous one is read back, so the
    /// device never waits for the CPU between batches.
    pub fn embed<T: AsRef<[u8]>>(&mut self, texts: &[T]) -> Result<Vec<f32>> {
        require_ascii(texts, |i| format!("string {}", i + 1))?;
        let mut out = Vec::with_capacity(texts.len() * EMBED_DIM);
        let mut in_flight = None;
        for chunk in texts.chunks(self.model.capacity()) {
            let pending = self.submit(chunk.iter().map(AsRef::as_ref))?;
            if let Some(previous) = in_flight.replace(pending) {
                out.extend(self.model.collect(self.gpu, previous)?);
            }
        }
        if let Some(last) = in_flight {
            out.extend(self.model.collect(self.gpu, last)?);
        }
        check_finite(&out, |i| {
            format!("string {} ({:?})", i + 1, ascii(texts[i].as_ref()))
        })?;
        Ok(out)
    }

    /// The model's estimate of the edit distance of each pair: `s * |e(a) - e(b)|^2`.
    pub fn estimates<A: AsRef<[u8]>, B: AsRef<[u8]>>(
        &mut self,
        pairs: &[(A, B)],
    ) -> Result<Vec<f32>> {
        let texts: Vec<&[u8]> = pairs
            .iter()
            .flat_map(|(a, b)| [a.as_ref(), b.as_ref()])
            .collect();
        let embeddings = self.embed(&texts)?;
        let scale = f64::from(self.distance_scale);
        Ok(embeddings
            .chunks_exact(2 * EMBED_DIM)
            .map(|e| (scale * squared_distance(&e[..EMBED_DIM], &e[EMBED_DIM..])) as f32)
            .collect())
    }

    /// The model's estimate of the edit distance of `a` and `b` ([`Embedder::estimates`]).
    pub fn estimate(&mut self, a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> Result<f32> {
        Ok(self.estimates(&[(a.as_ref(), b.as_ref())])?[0])
    }

    fn submit<'t>(&mut self, texts: impl Iterator<Item = &'t [u8]>) -> Result<Pending> {
        self.tokens.clear();
        tokenize_batch(texts, &mut self.tokens);
        self.model.submit(self.gpu, &self.tokens)
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
    /// with its `[lines, 80]` embeddings, in input order. The next batch is read and
    /// submitted while the GPU works on the current one, and the current one is read
    /// back and handed to `sink` while the GPU works on the next.
    pub fn embed_stream<R: BufRead>(
        &mut self,
        reader: &mut LineReader<R>,
        mut sink: impl FnMut(&[Line], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let capacity = self.model.capacity();
        let mut reading = Vec::with_capacity(capacity);
        let mut in_flight: Option<(Vec<Line>, Pending)> = None;
        loop {
            reader.next_batch(capacity, &mut reading)?;
            let submitted = if reading.is_empty() {
                None
            } else {
                let pending = self.submit(reading.iter().map(|l| l.text.as_slice()))?;
                Some((std::mem::take(&mut reading), pending))
            };
            if let Some((lines, pending)) = in_flight.take() {
                let embeddings = self.model.collect(self.gpu, pending)?;
                check_finite(&embeddings, |i| format!("line {}", lines[i].number))?;
                sink(&lines, &embeddings)?;
                reading = lines;
            }
            match submitted {
                Some(batch) => in_flight = Some(batch),
                None => break,
            }
        }
        Ok(())
    }
}

/// Embeddings holding NaN or infinity make every distance meaningless: an error naming
/// the string (`name` of its position) instead of answers that cannot be trusted.
fn check_finite(embeddings: &[f32], name: impl Fn(usize) -> String) -> Result<()> {
    match embeddings.iter().position(|v| !v.is_finite()) {
        Some(i) => bail!(
            "{}: the model's embedding holds a non-finite value ({}); the model's weights \
             cannot give trustworthy distances",
            name(i / EMBED_DIM),
            embeddings[i]
        ),
        None => Ok(()),
    }
}

fn ascii(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}
