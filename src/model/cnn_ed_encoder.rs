//! A CNN-ED model on a device: an affine network folded into its table
//! ([`super::cnn_ed::Folded`], uploaded once, in parts of consecutive characters when it
//! is larger than one storage binding) and run by the table pass
//! ([`crate::ops::cnn_ed`]); a network with ReLUs, or an affine one whose table would
//! exceed [`MAX_TABLE_BYTES`], layer by layer ([`super::cnn_ed_layers`]) after its
//! blocks up to the first ReLU, folded ([`crate::ops::cnn_ed_prefix`]). Either fills a
//! `[batch, dim]` f32 buffer, which the kNN reads in place, for batches of up to
//! `capacity` strings.
use anyhow::{Result, anyhow, bail};

use super::cnn_ed::{CharIds, CnnEd, MAX_TABLE_BYTES};
use super::cnn_ed_layers::{self as layers, ForwardBuffers};
use crate::gpu::{Calls, Gpu, Pending, ReadbackPair, storage_buffer, storage_buffer_init};
use crate::ops::Ops;
use crate::ops::cnn_ed::{TableBuffers, TableLayout, TablePart, TableShape, id_words, pack_ids};
use crate::ops::cnn_ed_prefix::{PrefixBuffers, PrefixShape};
use crate::ops::onehot_conv::pad_ids;

/// The most bytes of token ids one batch uploads: batches of long strings get fewer
/// strings.
const MAX_ID_BYTES: usize = 32 << 20;

/// The most bytes of the layered network's widest activation (the folded blocks'
/// output, `[batch * C, 8, M >> blocks]`): batches of long strings over large alphabets
/// get fewer strings.
const MAX_ACTIVATION_BYTES: u64 = 64 << 20;

pub struct CnnEdEncoder {
    capacity: usize,
    dim: usize,
    chars: CharIds,
    network: Network,
    out: wgpu::Buffer,
    readbacks: ReadbackPair,
    /// Host copies of a batch's ids and their starts (table) or lengths (layers), reused.
    id_words: Vec<u32>,
    start_words: Vec<u32>,
}

/// How the encoder runs the network.
enum Network {
    /// The folded table: one table pass per part.
    Table {
        ids: wgpu::Buffer,
        starts: wgpu::Buffer,
        calls: Calls,
        _parts: Vec<wgpu::Buffer>,
        _bias: wgpu::Buffer,
    },
    /// Layer by layer from the folded blocks before the first ReLU, on tokens `[batch,
    /// M]`.
    Layered {
        tokens: wgpu::Buffer,
        /// `[batch]` each string's length in characters (at most M).
        lengths: wgpu::Buffer,
        forward: layers::Forward,
        /// The parameters and the folded blocks' responses.
        _buffers: Vec<wgpu::Buffer>,
        _acts: Vec<wgpu::Buffer>,
    },
}

impl CnnEdEncoder {
    /// `model` on `gpu`, for batches of up to `capacity` strings (clamped so that a
    /// batch's ids, or the layered network's activations, fit the limits above): an
    /// affine network through its folded table when that takes at most
    /// [`MAX_TABLE_BYTES`], any other layer by layer.
    pub fn new(gpu: &Gpu, ops: &Ops, model: &CnnEd, capacity: usize) -> Result<Self> {
        Self::with_table_limit(gpu, ops, model, capacity, MAX_TABLE_BYTES)
    }

    /// [`CnnEdEncoder::new`] with the folded table's limit at `table_bytes`.
    pub fn with_table_limit(
        gpu: &Gpu,
        ops: &Ops,
        model: &CnnEd,
        capacity: usize,
        table_bytes: u64,
    ) -> Result<Self> {
        if model.shape().folds_within(table_bytes) {
            Self::with_part_bytes(gpu, ops, model, capacity, gpu.max_binding_bytes())
        } else {
            Self::layered(gpu, ops, model, capacity)
        }
    }

    /// [`CnnEdEncoder::new`] for an affine network, with the table split into parts of
    /// at most `part_bytes` (whole characters); an error when one character's rows
    /// exceed it.
    pub fn with_part_bytes(
        gpu: &Gpu,
        ops: &Ops,
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
        let out = storage_buffer(gpu, "cnn-ed embeddings", (capacity * shape.dim * 4) as u64);
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
            calls.push(ops.table.call_part(gpu, part_shape, part, buffers));
            parts.push(table);
        }
        let network = Network::Table {
            ids,
            starts,
            calls,
            _parts: parts,
            _bias: bias,
        };
        Ok(Self::with_network(gpu, model, capacity, network, out))
    }

    /// `model` layer by layer (any network; [`CnnEdEncoder::new`] takes it for networks
    /// with ReLUs): the blocks up to the first ReLU folded ([`CnnEd::prefix`]), the
    /// blocks after them and the head; the parameters uploaded and the head's weight
    /// packed once.
    pub fn layered(gpu: &Gpu, ops: &Ops, model: &CnnEd, capacity: usize) -> Result<Self> {
        let shape = model.shape();
        let prefix = model.prefix();
        let widest_per_string = (shape.alphabet * shape.channels * prefix.len) as u64 * 4;
        let most = gpu.max_binding_bytes().min(MAX_ACTIVATION_BYTES) / widest_per_string;
        if most == 0 {
            bail!(
                "one string's widest activation in this CNN-ED model ({} characters x {} \
                 places) does not fit the device's largest storage binding",
                shape.alphabet,
                prefix.len
            );
        }
        let capacity = capacity.clamp(1, most as usize);
        let tokens = storage_buffer(gpu, "cnn-ed tokens", (capacity * shape.max_len * 4) as u64);
        let lengths = storage_buffer(gpu, "cnn-ed lengths", (capacity * 4) as u64);
        let params = storage_buffer_init(gpu, "cnn-ed params", model.params());
        let responses = storage_buffer_init(gpu, "cnn-ed prefix responses", &prefix.values);
        let first = storage_buffer_init(gpu, "cnn-ed prefix first", &prefix.first);
        let reach = storage_buffer_init(gpu, "cnn-ed prefix reach", &prefix.reach);
        let rows = capacity * shape.alphabet;
        let acts = layers::activations(gpu, &shape, rows, prefix.blocks - 1, "cnn-ed activation");
        let out = storage_buffer(gpu, "cnn-ed embeddings", (capacity * shape.dim * 4) as u64);
        let prefix_shape = PrefixShape {
            alphabet: shape.alphabet,
            max_len: shape.max_len,
            blocks: prefix.blocks,
            len: prefix.len,
            width: prefix.width,
            relu: prefix.relu,
        };
        let folded_blocks = ops.prefix.call(
            gpu,
            prefix_shape,
            PrefixBuffers {
                tokens: &tokens,
                lengths: &lengths,
                responses: &responses,
                first: &first,
                reach: &reach,
                out: &acts[prefix.blocks - 1],
            },
        );
        let forward = layers::Forward {
            first: Calls::from(folded_blocks),
            ..layers::after(
                gpu,
                ops,
                &shape,
                prefix.blocks,
                shape.alphabet as u32,
                layers::head(&shape),
                ForwardBuffers {
                    tokens: &tokens,
                    lengths: &lengths,
                    params: &params,
                    acts: &acts,
                    out: &out,
                },
            )
        };
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        forward
            .pack_head
            .record(&mut encoder.begin_compute_pass(&Default::default()), gpu, 1);
        gpu.queue.submit([encoder.finish()]);
        let network = Network::Layered {
            tokens,
            lengths,
            forward,
            _buffers: vec![params, responses, first, reach],
            _acts: acts,
        };
        Ok(Self::with_network(gpu, model, capacity, network, out))
    }

    fn with_network(
        gpu: &Gpu,
        model: &CnnEd,
        capacity: usize,
        network: Network,
        out: wgpu::Buffer,
    ) -> Self {
        let dim = model.dim();
        CnnEdEncoder {
            capacity,
            dim,
            chars: model.char_ids().clone(),
            network,
            readbacks: ReadbackPair::new(gpu, (capacity * dim * 4) as u64),
            out,
            id_words: Vec::new(),
            start_words: Vec::new(),
        }
    }

    /// Whether the network runs as its folded table (else layer by layer).
    pub fn runs_table(&self) -> bool {
        matches!(self.network, Network::Table { .. })
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
        self.upload(gpu, &utf8(texts)?);
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for (calls, items) in self.calls(gpu, batch) {
            calls.record(&mut pass, gpu, items);
        }
        Ok(batch)
    }

    /// Each kernel's fastest time of 5 runs on one batch of `texts` (as many as fit):
    /// (label, seconds).
    pub fn profile(&mut self, gpu: &Gpu, texts: &[&[u8]]) -> Result<Vec<(&'static str, f64)>> {
        let batch = texts.len().min(self.capacity);
        self.upload(gpu, &utf8(&texts[..batch])?);
        let mut times = Vec::new();
        for (calls, items) in self.calls(gpu, batch) {
            times.extend(calls.time_each(gpu, items, 5)?);
        }
        Ok(times)
    }

    /// Writes the token ids of `texts` for the network to read.
    fn upload(&mut self, gpu: &Gpu, texts: &[&str]) {
        let strings = texts.iter().map(|text| self.chars.of(text));
        match &self.network {
            Network::Table { ids, starts, .. } => {
                pack_ids(strings, &mut self.id_words, &mut self.start_words);
                gpu.queue
                    .write_buffer(ids, 0, bytemuck::cast_slice(&self.id_words));
                gpu.queue
                    .write_buffer(starts, 0, bytemuck::cast_slice(&self.start_words));
            }
            Network::Layered {
                tokens, lengths, ..
            } => {
                let m = self.chars.max_len();
                pad_ids(strings, m, &mut self.id_words, &mut self.start_words);
                gpu.queue
                    .write_buffer(tokens, 0, bytemuck::cast_slice(&self.id_words));
                gpu.queue
                    .write_buffer(lengths, 0, bytemuck::cast_slice(&self.start_words));
            }
        }
    }

    /// The network's call groups in order, each with its batch for `batch` strings (set
    /// here on their uniforms).
    fn calls(&self, gpu: &Gpu, batch: usize) -> Vec<(&Calls, u32)> {
        let n = batch as u32;
        let groups = match &self.network {
            Network::Table { calls, .. } => vec![(calls, n)],
            Network::Layered { forward, .. } => {
                let rows = n * self.chars.alphabet_len() as u32;
                vec![
                    (&forward.first, n),
                    (&forward.blocks, rows),
                    (&forward.head, n),
                ]
            }
        };
        for (calls, items) in &groups {
            calls.set_batch(gpu, *items);
        }
        groups
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

/// `texts` as UTF-8; an error naming the first string that is not.
fn utf8<'t>(texts: &[&'t [u8]]) -> Result<Vec<&'t str>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            std::str::from_utf8(text)
                .map_err(|e| anyhow!("string {} is not valid UTF-8 ({e})", i + 1))
        })
        .collect()
}
