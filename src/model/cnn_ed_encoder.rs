//! A CNN-ED model on a device, folded into its table ([`super::cnn_ed::Folded`]): the
//! table uploaded once (in parts of consecutive characters when it is larger than one
//! storage binding), buffers for batches of up to `capacity` strings, and the table
//! pass ([`crate::ops::cnn_ed`]) that fills a `[batch, dim]` f32 buffer, which the kNN
//! reads in place.
use anyhow::{Result, anyhow, bail};

use super::cnn_ed::CnnEd;
use crate::gpu::{Calls, Gpu, Pending, ReadbackPair, storage_buffer, storage_buffer_init};
use crate::ops::cnn_ed::{
    TableBuffers, TableEmbed, TableLayout, TablePart, TableShape, id_words, pack_ids,
};

/// The most bytes of token ids one batch uploads: batches of long strings get fewer
/// strings.
const MAX_ID_BYTES: usize = 32 << 20;

pub struct CnnEdEncoder {
    capacity: usize,
    dim: usize,
    model: CnnEd,
    ids: wgpu::Buffer,
    starts: wgpu::Buffer,
    out: wgpu::Buffer,
    /// One table pass per part.
    calls: Calls,
    readbacks: ReadbackPair,
    /// Host copies of a batch's ids and starts, reused.
    id_words: Vec<u32>,
    start_words: Vec<u32>,
    _table_parts: Vec<wgpu::Buffer>,
    _bias: wgpu::Buffer,
}

impl CnnEdEncoder {
    /// `model` folded and uploaded to `gpu`, for batches of up to `capacity` strings
    /// (clamped so that a batch's ids fit [`MAX_ID_BYTES`]).
    pub fn new(gpu: &Gpu, model: &CnnEd, capacity: usize) -> Result<Self> {
        Self::with_part_bytes(gpu, model, capacity, gpu.max_binding_bytes())
    }

    /// [`CnnEdEncoder::new`] with the table split into parts of at most `part_bytes`
    /// (whole characters); an error when one character's rows exceed it.
    pub fn with_part_bytes(
        gpu: &Gpu,
        model: &CnnEd,
        capacity: usize,
        part_bytes: u64,
    ) -> Result<Self> {
        let shape = model.shape();
        let char_floats = shape.max_len * shape.dim;
        let chars_per_part = (part_bytes / (char_floats as u64 * 4)) as usize;
        if chars_per_part == 0 {
            bail!(
                "one character's rows of this CNN-ED model's folded table ({} places x {} \
                 outputs, {} MiB) do not fit the device's largest storage binding ({} MiB)",
                shape.max_len,
                shape.dim,
                (char_floats * 4) >> 20,
                part_bytes >> 20
            );
        }
        let folded = model.fold();
        let capacity = capacity.clamp(1, (MAX_ID_BYTES / (4 * id_words(1, shape.max_len))).max(1));
        let bias = storage_buffer_init(gpu, "cnn-ed bias", &folded.bias);
        let id_bytes = 4 * id_words(capacity, shape.max_len) as u64;
        let ids = storage_buffer(gpu, "cnn-ed ids", id_bytes);
        let starts = storage_buffer(gpu, "cnn-ed starts", (capacity as u64 + 1) * 4);
        let out_bytes = (capacity * shape.dim * 4) as u64;
        let out = storage_buffer(gpu, "cnn-ed embeddings", out_bytes);
        let kernel = TableEmbed::new(gpu);
        let mut calls = Calls::default();
        let mut parts = Vec::new();
        for (i, rows) in folded
            .table
            .chunks(chars_per_part * char_floats)
            .enumerate()
        {
            let table = storage_buffer_init(gpu, "cnn-ed table", rows);
            let part_shape = TableShape {
                alphabet: rows.len() / char_floats,
                max_len: shape.max_len,
                dim: shape.dim,
                layout: TableLayout::CharMajor,
                bias: 0,
            };
            let part = TablePart {
                first: i * chars_per_part,
                accumulate: i > 0,
            };
            let buffers = TableBuffers {
                table: &table,
                bias: &bias,
                ids: &ids,
                starts: &starts,
                out: &out,
            };
            calls.push(kernel.call_part(gpu, part_shape, part, buffers));
            parts.push(table);
        }
        Ok(CnnEdEncoder {
            capacity,
            dim: shape.dim,
            model: model.clone(),
            ids,
            starts,
            out,
            calls,
            readbacks: ReadbackPair::new(gpu, out_bytes),
            id_words: Vec::new(),
            start_words: Vec::new(),
            _table_parts: parts,
            _bias: bias,
        })
    }

    /// How many strings one batch takes at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `[capacity, dim]` f32: the embeddings of the last recorded batch.
    pub fn output(&self) -> &wgpu::Buffer {
        &self.out
    }

    /// Upload `texts` (UTF-8, each cut to M characters) and record their embedding into
    /// `encoder`. Returns the batch size.
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
        let texts = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                std::str::from_utf8(text)
                    .map_err(|e| anyhow!("string {} is not valid UTF-8 ({e})", i + 1))
            })
            .collect::<Result<Vec<_>>>()?;
        let strings = texts.iter().map(|text| self.model.token_ids(text));
        pack_ids(strings, &mut self.id_words, &mut self.start_words);
        gpu.queue
            .write_buffer(&self.ids, 0, bytemuck::cast_slice(&self.id_words));
        gpu.queue
            .write_buffer(&self.starts, 0, bytemuck::cast_slice(&self.start_words));
        self.calls.set_batch(gpu, batch as u32);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        self.calls.record(&mut pass, gpu, batch as u32);
        Ok(batch)
    }

    /// Start embedding `texts`; read the embeddings with [`CnnEdEncoder::collect`]. Two
    /// batches may be in flight.
    pub fn submit(&mut self, gpu: &Gpu, texts: &[&[u8]]) -> Result<Pending> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        let batch = self.record(gpu, &mut encoder, texts)?;
        let bytes = (batch * self.dim * 4) as u64;
        Ok(self.readbacks.submit(gpu, encoder, &self.out, bytes))
    }

    /// Wait for a batch started by [`CnnEdEncoder::submit`] and read its `[batch, dim]`
    /// embeddings.
    pub fn collect(&self, gpu: &Gpu, pending: Pending) -> Result<Vec<f32>> {
        self.readbacks.read(gpu, pending)
    }
}
