//! A CNN-ED model on a device, folded into its table ([`super::cnn_ed::Folded`]): the
//! table uploaded once, buffers for batches of up to `capacity` strings, and the table
//! pass ([`crate::ops::cnn_ed`]) that fills a `[batch, dim]` f32 buffer, which the kNN
//! reads in place.
use anyhow::{Result, anyhow, bail};

use super::cnn_ed::CnnEd;
use crate::gpu::{Call, Gpu, Pending, ReadbackPair, storage_buffer, storage_buffer_init};
use crate::ops::cnn_ed::{TableBuffers, TableEmbed, TableLayout, TableShape};

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
    call: Call,
    readbacks: ReadbackPair,
    /// Host copies of a batch's ids and starts, reused.
    id_words: Vec<u32>,
    start_words: Vec<u32>,
    _table: wgpu::Buffer,
    _bias: wgpu::Buffer,
}

impl CnnEdEncoder {
    /// `model` folded and uploaded to `gpu`, for batches of up to `capacity` strings
    /// (clamped so that a batch's ids fit [`MAX_ID_BYTES`]). An error when the table
    /// does not fit one storage binding of the device.
    pub fn new(gpu: &Gpu, model: &CnnEd, capacity: usize) -> Result<Self> {
        let shape = model.shape();
        let table_bytes = (shape.alphabet * shape.max_len * shape.dim * 4) as u64;
        if table_bytes > gpu.max_binding_bytes() {
            bail!(
                "this CNN-ED model's folded table ({} characters x {} places x {} outputs, \
                 {} MiB) does not fit the device's largest storage binding ({} MiB)",
                shape.alphabet,
                shape.max_len,
                shape.dim,
                table_bytes >> 20,
                gpu.max_binding_bytes() >> 20
            );
        }
        let folded = model.fold();
        let capacity = capacity.clamp(1, (MAX_ID_BYTES / (4 * shape.max_len)).max(1));
        let table = storage_buffer_init(gpu, "cnn-ed table", &folded.table);
        let bias = storage_buffer_init(gpu, "cnn-ed bias", &folded.bias);
        let ids = storage_buffer(gpu, "cnn-ed ids", (capacity * shape.max_len * 4) as u64);
        let starts = storage_buffer(gpu, "cnn-ed starts", (capacity as u64 + 1) * 4);
        let out_bytes = (capacity * shape.dim * 4) as u64;
        let out = storage_buffer(gpu, "cnn-ed embeddings", out_bytes);
        let table_shape = TableShape {
            alphabet: shape.alphabet,
            max_len: shape.max_len,
            dim: shape.dim,
            layout: TableLayout::CharMajor,
            bias: 0,
        };
        let buffers = TableBuffers {
            table: &table,
            bias: &bias,
            ids: &ids,
            starts: &starts,
            out: &out,
        };
        let call = TableEmbed::new(gpu).call(gpu, table_shape, buffers);
        Ok(CnnEdEncoder {
            capacity,
            dim: shape.dim,
            model: model.clone(),
            ids,
            starts,
            out,
            call,
            readbacks: ReadbackPair::new(gpu, out_bytes),
            id_words: Vec::new(),
            start_words: Vec::new(),
            _table: table,
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
        self.id_words.clear();
        self.start_words.clear();
        for (i, text) in texts.iter().enumerate() {
            let text = std::str::from_utf8(text)
                .map_err(|e| anyhow!("string {} is not valid UTF-8 ({e})", i + 1))?;
            self.start_words.push(self.id_words.len() as u32);
            self.id_words.extend(self.model.token_ids(text));
        }
        self.start_words.push(self.id_words.len() as u32);
        gpu.queue
            .write_buffer(&self.ids, 0, bytemuck::cast_slice(&self.id_words));
        gpu.queue
            .write_buffer(&self.starts, 0, bytemuck::cast_slice(&self.start_words));
        self.call.set_batch(gpu, batch as u32);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        self.call.record(&mut pass, gpu, batch as u32);
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
