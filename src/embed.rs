//! Embedding strings in batches on the GPU: chunked to the model's capacity, with the
//! next batch read from the input while the GPU computes the current one. A megashtein
//! model gives its width's floats a string (80 for the released widths); a CGK model gives its code, one byte a place, handed
//! out as floats too (each a symbol 0..=128, exact), compared by Hamming distance.
use std::io::BufRead;

use anyhow::{Result, bail};

use crate::gpu::{Gpu, Pending};
use crate::input::{Line, LineReader, require_ascii, require_utf8, tokenize_batch};
use crate::model::cgk_encoder::CgkEncoder;
use crate::model::cnn_ed_encoder::CnnEdEncoder;
use crate::model::megashtein::Megashtein;
use crate::model::weights::Weights;
use crate::model::{Architecture, Estimator, Model};
use crate::ops::Ops;

/// Default number of strings per GPU batch (clamped to what the device can bind).
pub const DEFAULT_BATCH: usize = 4096;

/// A model on a device, ready to embed any number of strings.
pub struct Embedder<'g> {
    gpu: &'g Gpu,
    network: Network,
    tokens: Vec<u8>,
    estimator: Estimator,
}

/// What computes the embeddings.
enum Network {
    Megashtein(Box<Megashtein>),
    Cgk(Box<CgkEncoder>),
    CnnEd(Box<CnnEdEncoder>),
}

impl<'g> Embedder<'g> {
    /// Upload `weights` and size the model for batches of `batch` strings.
    pub fn new(gpu: &'g Gpu, weights: &Weights, batch: usize) -> Result<Self> {
        let model = Megashtein::new(gpu, &Ops::new(gpu), weights, batch)?;
        Ok(Embedder {
            gpu,
            network: Network::Megashtein(Box::new(model)),
            tokens: Vec::new(),
            estimator: Estimator::linear(weights.distance_scale),
        })
    }

    /// [`Embedder::new`] for `model`, with batches of [`DEFAULT_BATCH`] strings.
    pub fn for_model(gpu: &'g Gpu, model: &Model) -> Result<Self> {
        Embedder::with_batch(gpu, model, DEFAULT_BATCH)
    }

    /// `model` on `gpu` for batches of up to `batch` strings, whatever its architecture.
    pub fn with_batch(gpu: &'g Gpu, model: &Model, batch: usize) -> Result<Self> {
        match model.architecture() {
            Architecture::Megashtein(weights) => Embedder::new(gpu, weights, batch),
            Architecture::Cgk(cgk) => Ok(Embedder {
                gpu,
                network: Network::Cgk(Box::new(CgkEncoder::new(gpu, cgk, batch)?)),
                tokens: Vec::new(),
                estimator: cgk.estimator(),
            }),
            Architecture::CnnEd(cnn_ed) => Ok(Embedder {
                gpu,
                network: Network::CnnEd(Box::new(CnnEdEncoder::new(
                    gpu,
                    &Ops::new(gpu),
                    cnn_ed,
                    batch,
                )?)),
                tokens: Vec::new(),
                estimator: cnn_ed.estimator(),
            }),
        }
    }

    /// Strings per GPU batch.
    pub fn batch(&self) -> usize {
        match &self.network {
            Network::Megashtein(model) => model.capacity(),
            Network::Cgk(encoder) => encoder.capacity(),
            Network::CnnEd(encoder) => encoder.capacity(),
        }
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        match &self.network {
            Network::Megashtein(model) => model.dim(),
            Network::Cgk(encoder) => encoder.width(),
            Network::CnnEd(encoder) => encoder.dim(),
        }
    }

    /// Embeddings of `texts`, `[texts, dim]` row-major, in order; the model reads the
    /// first 80 characters of each, and a string that is not ASCII is an error. Each
    /// batch is tokenized and submitted before the previous one is read back, so the
    /// device never waits for the CPU between batches.
    pub fn embed<T: AsRef<[u8]>>(&mut self, texts: &[T]) -> Result<Vec<f32>> {
        if let Network::CnnEd(_) = self.network {
            require_utf8(texts, |i| format!("string {}", i + 1))?;
        } else {
            require_ascii(texts, |i| format!("string {}", i + 1))?;
        }
        let mut out = Vec::with_capacity(texts.len() * self.dim());
        let mut in_flight = None;
        for chunk in texts.chunks(self.batch()) {
            let chunk: Vec<&[u8]> = chunk.iter().map(AsRef::as_ref).collect();
            let pending = self.submit(&chunk)?;
            if let Some(previous) = in_flight.replace(pending) {
                out.extend(self.collect(previous)?);
            }
        }
        if let Some(last) = in_flight {
            out.extend(self.collect(last)?);
        }
        check_finite(&out, self.dim(), |i| {
            format!("string {} ({:?})", i + 1, ascii(texts[i].as_ref()))
        })?;
        Ok(out)
    }

    /// How the model estimates edit distance from two embeddings.
    pub fn estimator(&self) -> Estimator {
        self.estimator
    }

    /// The model's estimate of the edit distance of each pair: `s * |e(a) - e(b)|^2`
    /// for megashtein, the fitted curve of the Hamming distance for CGK.
    pub fn estimates<A: AsRef<[u8]>, B: AsRef<[u8]>>(
        &mut self,
        pairs: &[(A, B)],
    ) -> Result<Vec<f32>> {
        let texts: Vec<&[u8]> = pairs
            .iter()
            .flat_map(|(a, b)| [a.as_ref(), b.as_ref()])
            .collect();
        let embeddings = self.embed(&texts)?;
        let dim = self.dim();
        Ok(embeddings
            .chunks_exact(2 * dim)
            .map(|e| self.estimator.between(&e[..dim], &e[dim..]))
            .collect())
    }

    /// The model's estimate of the edit distance of `a` and `b` ([`Embedder::estimates`]).
    pub fn estimate(&mut self, a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> Result<f32> {
        Ok(self.estimates(&[(a.as_ref(), b.as_ref())])?[0])
    }

    /// Upload `texts` (at most [`Embedder::batch`]) and record their embedding into
    /// `encoder`; the result lands in [`Embedder::output`] (`[batch, dim]` f32, or
    /// `[batch, width / 4]` u32 words of codes). Returns the batch size.
    pub fn record(&mut self, encoder: &mut wgpu::CommandEncoder, texts: &[&[u8]]) -> Result<usize> {
        match &mut self.network {
            Network::Megashtein(model) => {
                self.tokens.clear();
                tokenize_batch(texts.iter().copied(), &mut self.tokens);
                model.record(self.gpu, encoder, &self.tokens)
            }
            Network::Cgk(cgk) => cgk.record(self.gpu, encoder, texts),
            Network::CnnEd(cnn_ed) => cnn_ed.record(self.gpu, encoder, texts),
        }
    }

    /// The buffer [`Embedder::record`] writes.
    pub fn output(&self) -> &wgpu::Buffer {
        match &self.network {
            Network::Megashtein(model) => model.output(),
            Network::Cgk(encoder) => encoder.output(),
            Network::CnnEd(encoder) => encoder.output(),
        }
    }

    fn submit(&mut self, texts: &[&[u8]]) -> Result<Pending> {
        match &mut self.network {
            Network::Megashtein(model) => {
                self.tokens.clear();
                tokenize_batch(texts.iter().copied(), &mut self.tokens);
                model.submit(self.gpu, &self.tokens)
            }
            Network::Cgk(encoder) => encoder.submit(self.gpu, texts),
            Network::CnnEd(encoder) => encoder.submit(self.gpu, texts),
        }
    }

    fn collect(&self, pending: Pending) -> Result<Vec<f32>> {
        match &self.network {
            Network::Megashtein(model) => model.collect(self.gpu, pending),
            Network::Cgk(encoder) => Ok(encoder
                .collect(self.gpu, pending)?
                .into_iter()
                .map(f32::from)
                .collect()),
            Network::CnnEd(encoder) => encoder.collect(self.gpu, pending),
        }
    }

    /// Each kernel's time in the forward pass of `texts` (at most one batch), for
    /// `bench embed --profile`.
    pub fn profile(&mut self, texts: &[&[u8]]) -> Result<Vec<(&'static str, f64)>> {
        let model = match &mut self.network {
            Network::Megashtein(model) => model,
            Network::CnnEd(encoder) => return encoder.profile(self.gpu, texts),
            Network::Cgk(_) => {
                bail!("profiling is for megashtein and CNN-ED networks; CGK embeds in one kernel")
            }
        };
        self.tokens.clear();
        let batch = texts.len().min(model.capacity());
        tokenize_batch(texts[..batch].iter().copied(), &mut self.tokens);
        model.profile(self.gpu, &self.tokens)
    }

    /// Stream every line of `reader` through the model; `sink` gets each batch of lines
    /// with its `[lines, dim]` embeddings, in input order. The next batch is read and
    /// submitted while the GPU works on the current one, and the current one is read
    /// back and handed to `sink` while the GPU works on the next.
    pub fn embed_stream<R: BufRead>(
        &mut self,
        reader: &mut LineReader<R>,
        mut sink: impl FnMut(&[Line], &[f32]) -> Result<()>,
    ) -> Result<()> {
        let capacity = self.batch();
        let mut reading = Vec::with_capacity(capacity);
        let mut in_flight: Option<(Vec<Line>, Pending)> = None;
        let source = reader.name().to_string();
        loop {
            reader.next_batch(capacity, &mut reading)?;
            let submitted = if reading.is_empty() {
                None
            } else {
                let texts: Vec<&[u8]> = reading.iter().map(|l| l.text.as_slice()).collect();
                let pending = self.submit(&texts)?;
                Some((std::mem::take(&mut reading), pending))
            };
            if let Some((lines, pending)) = in_flight.take() {
                let embeddings = self.collect(pending)?;
                check_finite(&embeddings, self.dim(), |i| {
                    format!("{source}:{}", lines[i].number)
                })?;
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
fn check_finite(embeddings: &[f32], dim: usize, name: impl Fn(usize) -> String) -> Result<()> {
    match embeddings.iter().position(|v| !v.is_finite()) {
        Some(i) => bail!(
            "{}: the model's embedding holds a non-finite value ({}); the model's weights \
             cannot give trustworthy distances",
            name(i / dim),
            embeddings[i]
        ),
        None => Ok(()),
    }
}

fn ascii(text: &[u8]) -> String {
    String::from_utf8_lossy(text).into_owned()
}
