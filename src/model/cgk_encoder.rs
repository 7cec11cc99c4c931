//! A CGK model on a device: its hash bits uploaded once, buffers for batches of up to
//! `capacity` strings, and the encode pass ([`crate::ops::cgk`]) that fills a
//! `[batch, width / 4]` u32 buffer of codes, which the Hamming kNN reads in place.
use anyhow::Result;

use super::cgk::Cgk;
use super::params::MAX_LEN;
use crate::gpu::{Call, Gpu, Pending, ReadbackPair, storage_buffer, storage_buffer_init};
use crate::input::tokenize_batch;
use crate::ops::cgk::{CgkEncode, Walks};

pub struct CgkEncoder {
    capacity: usize,
    width: usize,
    tokens: wgpu::Buffer,
    lengths: wgpu::Buffer,
    codes: wgpu::Buffer,
    call: Call,
    readbacks: ReadbackPair,
    /// Host copies of a batch's tokens and lengths, reused.
    token_bytes: Vec<u8>,
    length_words: Vec<u32>,
    _hash: wgpu::Buffer,
}

impl CgkEncoder {
    /// `cgk` on `gpu` for batches of up to `capacity` strings (clamped so that the codes
    /// fit one storage binding).
    pub fn new(gpu: &Gpu, cgk: &Cgk, capacity: usize) -> Result<Self> {
        let width = cgk.width();
        let capacity = capacity.clamp(1, (gpu.max_binding_bytes() as usize / width).max(1));
        let hash = storage_buffer_init(gpu, "cgk hash bits", &cgk.hash_words());
        let tokens = storage_buffer(gpu, "cgk tokens", (capacity * MAX_LEN) as u64);
        let lengths = storage_buffer(gpu, "cgk lengths", capacity as u64 * 4);
        let codes = storage_buffer(gpu, "cgk codes", (capacity * width) as u64);
        let walks = Walks {
            len: cgk.input_len(),
            reps: cgk.reps(),
        };
        let call = CgkEncode::new(gpu).call(gpu, walks, &hash, &tokens, &lengths, &codes);
        Ok(CgkEncoder {
            capacity,
            width,
            tokens,
            lengths,
            codes,
            call,
            readbacks: ReadbackPair::new(gpu, (capacity * width) as u64),
            token_bytes: Vec::new(),
            length_words: Vec::new(),
            _hash: hash,
        })
    }

    /// How many strings one batch takes at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes per code.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[capacity, width / 4]` u32: the codes of the last recorded batch.
    pub fn output(&self) -> &wgpu::Buffer {
        &self.codes
    }

    /// Upload `texts` (cut to 80 characters, each byte read as min(c, 127)) and record
    /// their encoding into `encoder`. Returns the batch size.
    pub fn record(
        &mut self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        texts: &[&[u8]],
    ) -> Result<usize> {
        let batch = texts.len();
        super::check_capacity(batch, self.capacity)?;
        if batch == 0 {
            return Ok(0);
        }
        self.token_bytes.clear();
        tokenize_batch(texts.iter().copied(), &mut self.token_bytes);
        self.length_words.clear();
        self.length_words
            .extend(texts.iter().map(|t| t.len().min(MAX_LEN) as u32));
        gpu.queue.write_buffer(&self.tokens, 0, &self.token_bytes);
        gpu.queue
            .write_buffer(&self.lengths, 0, bytemuck::cast_slice(&self.length_words));
        self.call.set_batch(gpu, batch as u32);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        self.call.record(&mut pass, gpu, batch as u32);
        Ok(batch)
    }

    /// Start encoding `texts`; read the codes with [`CgkEncoder::collect`]. Two batches
    /// may be in flight.
    pub fn submit(&mut self, gpu: &Gpu, texts: &[&[u8]]) -> Result<Pending> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let batch = self.record(gpu, &mut encoder, texts)?;
        let bytes = (batch * self.width) as u64;
        Ok(self.readbacks.submit(gpu, encoder, &self.codes, bytes))
    }

    /// Wait for a batch started by [`CgkEncoder::submit`] and read its `[batch, width]`
    /// code bytes.
    pub fn collect(&self, gpu: &Gpu, pending: Pending) -> Result<Vec<u8>> {
        self.readbacks.read(gpu, pending)
    }

    /// The codes of `texts` (at most one batch), `[texts, width]` bytes.
    pub fn encode(&mut self, gpu: &Gpu, texts: &[&[u8]]) -> Result<Vec<u8>> {
        let pending = self.submit(gpu, texts)?;
        self.collect(gpu, pending)
    }
}
