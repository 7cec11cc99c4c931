//! CNN-ED's training step on the GPU (the official code's networks.py): the
//! anchors, positives and negatives of a batch of triplets through the layered network
//! as one batch, the triplet + approximation loss on Euclidean distances, every layer's
//! backward pass in reverse order, Adam. No autograd: the order of the calls below is
//! the chain rule, as in [`super::trainer`].
//!
//! The parameter, gradient and moment slabs hold the network's tensors
//! ([`CnnEdShape::tensors`]) followed by one value the loss head reads as log s: fixed
//! at 0 (s = 1), since CNN-ED's targets are already on the embedding's scale (ED / avgD).
//!
//! A network without ReLUs is affine in its one-hot input, so a step can run it two ways
//! with the same result ([`Formulation`]; a network with ReLUs runs as Strings):
//! - **Strings**: every character row of every string through the conv stack. Activations
//!   are `[rows, 8, len]` with `rows = 3 triplets * C`: string b's characters are rows
//!   `b * C .. (b + 1) * C`, so the last layer's output is already the c-major flattening
//!   the head reads (`[3 triplets, C * 8 * Lf]`).
//! - **Table**: the conv stack once on each place's impulse (M rows), the head on each
//!   response with its weight regrouped by character, giving the folded table `[M, C,
//!   dim]` (the model's `fold`, differentiable); each string's embedding is the bias
//!   plus its characters' rows, and the backward pass scatters back into the table. The
//!   slabs hold fc.weight regrouped as `[C, dim, 8 Lf]` ([`slab_order`]).
//!
//! The cost of the first grows with 3 triplets x C rows, of the second with M: the
//! trainer takes the cheaper that fits ([`Formulation::cheaper`]).
use anyhow::{Result, bail};

use crate::gpu::{Calls, Gpu, Readback, storage_buffer, storage_buffer_init};
use crate::model::cnn_ed::{CnnEd, CnnEdShape};
use crate::model::cnn_ed_layers::{self as layers, ForwardBuffers};
use crate::ops::MAX_SEGMENTS;
use crate::ops::Ops;
use crate::ops::adamw::{AdamWBuffers, AdamWCalls, AdamWStep};
use crate::ops::cnn_ed::{TableBuffers, TableGrads, TableLayout, TableShape, id_words, pack_ids};
use crate::ops::conv1d::Conv1dGrads;
use crate::ops::linear::{LinearGrads, LinearShape};
use crate::ops::onehot_conv::{CHANNELS, OneHotConvShape, Strings, pad_ids, weight_segments};
use crate::ops::pnll::{LossBuffers, LossCall, LossShape};
use crate::ops::ranking::RankingWeights;

use super::cnn_ed_data::Triplet;
use super::trainer::LOSS_SLOTS;

const F32: u64 = 4;

/// The weights of the loss's terms for one phase of training: `hinge` λ on the triplet
/// hinge, `approx` ρ on the code's approximation term sqrt(Σ (d - t)²), `absolute` α on
/// the paper's Σ |d - t|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub hinge: f32,
    pub approx: f32,
    pub absolute: f32,
}

/// Which of CNN-ED's losses a run minimises (the spec's "paper vs code" difference 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum CnnEdLoss {
    /// The official code's: the hinge and sqrt(Σ (d - t)²) on its epoch schedule
    /// (`official_schedule`).
    #[default]
    Official,
    /// The paper's (section 3.1): the hinge plus 0.1 Σ |d - t|, in every epoch.
    Paper,
}

impl CnnEdLoss {
    /// The weights of epoch `epoch` (0-based) of `epochs`.
    pub fn weights(self, epoch: usize, epochs: usize) -> LossWeights {
        match self {
            CnnEdLoss::Official => official_schedule(epoch, epochs),
            CnnEdLoss::Paper => LossWeights {
                hinge: 1.0,
                approx: 0.0,
                absolute: 0.1,
            },
        }
    }
}

/// The official code's schedule (networks.py:410-418): (λ, ρ) set at the start of each
/// epoch from {0: (0, 10), s: (10, 10), 2s: (10, 1), 3s: (5, 0.1), 4s: (1, 0.01)},
/// s = epochs / 5, before epoch 0 (1, 1). With fewer than 5 epochs every key is 0 and
/// the last entry wins: (1, 0.01) throughout.
pub fn official_schedule(epoch: usize, epochs: usize) -> LossWeights {
    let step = epochs / 5;
    let table = [
        (0.0, 10.0),
        (10.0, 10.0),
        (10.0, 1.0),
        (5.0, 0.1),
        (1.0, 0.01),
    ];
    let mut weights = (1.0, 1.0);
    for (i, w) in table.into_iter().enumerate() {
        if i * step <= epoch {
            weights = w;
        }
    }
    LossWeights {
        hinge: weights.0,
        approx: weights.1,
        absolute: 0.0,
    }
}

/// Everything a checkpoint needs from the GPU: the slabs (tensors, then log s = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct CnnEdState {
    pub params: Vec<f32>,
    pub exp_avg: Vec<f32>,
    pub exp_avg_sq: Vec<f32>,
}

impl CnnEdState {
    /// A fresh optimizer state for `model`.
    pub fn new(model: &CnnEd) -> Self {
        let mut params = model.params().to_vec();
        params.push(0.0);
        let n = params.len();
        CnnEdState {
            params,
            exp_avg: vec![0.0; n],
            exp_avg_sq: vec![0.0; n],
        }
    }
}

/// How a step runs the network (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Formulation {
    Strings,
    Table,
}

impl Formulation {
    /// The relative cost of a step of `triplets` triplets of strings `mean_len`
    /// characters long on average (cut to M), in multiply-adds: the conv stack (~192 a
    /// place of a row, its first layers dominating, computed up to each row's extent: its
    /// string's length, or b + 1 for the impulse at place b, M / 2 on average), the head,
    /// and for the table the sum of each string's rows and the scatter back, which cost ~4
    /// multiply-adds' time per value on lavapipe (scattered reads and writes; calibrated
    /// on 500-letter DNA, where the string rows win: 7.2 s an epoch against 8.4-10.7,
    /// BENCHMARKS.md "CNN-ED").
    fn cost(self, shape: &CnnEdShape, triplets: usize, mean_len: f64) -> f64 {
        let (m, dim) = (shape.max_len as f64, shape.dim as f64);
        let strings = 3.0 * triplets as f64;
        let (conv_places, head_rows, gather) = match self {
            Formulation::Strings => (strings * shape.alphabet as f64 * mean_len, strings, 0.0),
            Formulation::Table => (m * m / 2.0, m, strings * mean_len * dim * 4.0),
        };
        conv_places * 192.0 + head_rows * (shape.flat() * shape.dim) as f64 + gather
    }

    /// The cheaper formulation for `triplets` per step of strings `mean_len` characters
    /// long on average (each cut to M), whose buffers fit `gpu`; an error when neither
    /// fits.
    pub fn cheaper(gpu: &Gpu, shape: &CnnEdShape, triplets: usize, mean_len: f64) -> Result<Self> {
        if !shape.is_affine() {
            return check_fits(gpu, shape, Formulation::Strings, triplets)
                .map(|()| Formulation::Strings);
        }
        let cost = |f: &Formulation| f.cost(shape, triplets, mean_len);
        let mut both = [Formulation::Table, Formulation::Strings];
        both.sort_by(|a, b| cost(a).total_cmp(&cost(b)));
        let [best, other] = both;
        match check_fits(gpu, shape, best, triplets) {
            Ok(()) => Ok(best),
            Err(e) => check_fits(gpu, shape, other, triplets)
                .map(|()| other)
                .map_err(|_| e),
        }
    }

    /// Strings (or impulses) through the first block, rows through the later blocks,
    /// rows through the head, for `strings` strings in the batch, the longest `places`
    /// long: the table needs the impulses of those places only (its later rows are never
    /// read, and their gradient is 0).
    fn items(self, shape: &CnnEdShape, strings: usize, places: usize) -> Items {
        match self {
            Formulation::Strings => Items {
                first: strings,
                rows: strings * shape.alphabet,
                head: strings,
            },
            Formulation::Table => {
                let places = places.clamp(1, shape.max_len);
                Items {
                    first: places,
                    rows: places,
                    head: places,
                }
            }
        }
    }
}

/// Batch sizes of a step's call groups.
#[derive(Debug, Clone, Copy)]
struct Items {
    first: usize,
    rows: usize,
    head: usize,
}

/// The layered network's calls for batches of up to a fixed number of triplets.
pub struct CnnEdTrainer<'g> {
    gpu: &'g Gpu,
    shape: CnnEdShape,
    formulation: Formulation,
    /// Triplets per step at most.
    capacity: usize,
    /// Triplets of the last upload, and its longest string's length.
    triplets: usize,
    places: usize,
    slabs: Slabs,
    inputs: Inputs,
    /// Host copies of a batch's ids and their lengths (Strings) or starts (Table), reused.
    id_words: Vec<u32>,
    start_words: Vec<u32>,
    /// Layer i's output `[rows, channels, M >> (i + 1)]`, and its gradient.
    _acts: Vec<wgpu::Buffer>,
    _d_acts: Vec<wgpu::Buffer>,
    head_io: HeadIo,
    /// The table and its gradient (Table only).
    _table: Option<[wgpu::Buffer; 2]>,
    /// Weight packing, once per step.
    prepare: Calls,
    first_block: Calls,
    /// The conv blocks after the first.
    blocks: Calls,
    head: Calls,
    /// The table's rows summed per string, and back (Table only; empty otherwise).
    gather: Calls,
    loss: LossCall,
    gather_backward: Calls,
    head_backward: Calls,
    blocks_backward: Calls,
    first_block_backward: Calls,
    adamw: AdamWCalls,
}

/// The batch's strings as the first block (Strings) or the table (Table) reads them.
struct Inputs {
    /// `[3 triplets, M]` ids padded with the unseen id (Strings).
    tokens: wgpu::Buffer,
    /// What bounds each row's extent: the strings' lengths `[3 triplets]` (Strings), or
    /// the impulses' `[M]`, b + 1 for the impulse at place b (Table).
    lengths: wgpu::Buffer,
    /// Ids back to back, and `[3 triplets + 1]` starts (Table).
    ids: wgpu::Buffer,
    starts: wgpu::Buffer,
}

/// What the loss head reads and writes.
struct HeadIo {
    /// The network's output, `[3 triplets, dim]`.
    embeddings: wgpu::Buffer,
    /// The triplets' targets, `[triplets, 3]`.
    labels: wgpu::Buffer,
    /// The loss's gradient at the embeddings.
    d_embeddings: wgpu::Buffer,
}

struct Slabs {
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    exp_avg: wgpu::Buffer,
    exp_avg_sq: wgpu::Buffer,
    norm: wgpu::Buffer,
    losses: wgpu::Buffer,
}

/// An error unless `triplets` per step of a network of `shape`, run as `formulation`,
/// fit the device and the kernels: each activation (and the table, the strings' ids and
/// their embeddings) within one storage binding, each weight gradient within the
/// reductions' segment limit, the first block's 8 channels.
fn check_fits(
    gpu: &Gpu,
    shape: &CnnEdShape,
    formulation: Formulation,
    triplets: usize,
) -> Result<()> {
    let items = formulation.items(shape, 3 * triplets, shape.max_len);
    let rows = items.rows as u64;
    let widest = rows * (shape.channels * shape.max_len / 2) as u64 * F32;
    let table = match formulation {
        Formulation::Strings => 0,
        Formulation::Table => (shape.max_len * shape.alphabet * shape.dim) as u64 * F32,
    };
    let strings = 3 * triplets as u64;
    let per_string = (shape.max_len.next_multiple_of(4) as u64).max(shape.dim as u64) * 4;
    // The first block's weight gradient reduces over segments of whole strings.
    let segments = weight_segments(items.first, shape.max_len as u32);
    let binding = gpu.max_binding_bytes();
    let inputs = strings.saturating_mul(per_string);
    if triplets == 0 || widest.max(table).max(inputs) > binding || segments > MAX_SEGMENTS {
        bail!(
            "{triplets} triplets per step of {} characters x {} places ({formulation:?}) \
             need {} MiB per activation, a {} MiB table, {} MiB for the strings' ids or \
             embeddings and {segments} segments in a weight gradient; this device binds {} \
             MiB and the reduction takes {MAX_SEGMENTS}: use fewer triplets per step \
             (--batch) or a shorter --max-len",
            shape.alphabet,
            shape.max_len,
            widest >> 20,
            table >> 20,
            inputs >> 20,
            binding >> 20
        );
    }
    if formulation == Formulation::Table && !shape.is_affine() {
        bail!("a CNN-ED network with ReLUs does not fold into a table: train it as strings");
    }
    if shape.channels != CHANNELS as usize {
        bail!(
            "the GPU trainer's first block has {CHANNELS} channels, not {}",
            shape.channels
        );
    }
    Ok(())
}

/// The first block: on each string's one-hot rows (Strings), or on one impulse per place
/// (Table).
fn first_block(shape: &CnnEdShape, formulation: Formulation) -> OneHotConvShape {
    let strings = layers::first_block(shape);
    match formulation {
        Formulation::Strings => strings,
        Formulation::Table => OneHotConvShape {
            alphabet: 1,
            impulses: true,
            ..strings
        },
    }
}

/// The head: on each string's flattened rows (Strings), or on each place's response
/// with the weight regrouped by character, `[C * dim, 8 Lf]`, and no bias (Table; the
/// bias is added per string by the table's sum).
fn head(shape: &CnnEdShape, formulation: Formulation) -> LinearShape {
    let strings = layers::head(shape);
    match formulation {
        Formulation::Strings => strings,
        Formulation::Table => LinearShape {
            fan_in: (shape.channels * shape.final_len()) as u32,
            fan_out: (shape.alphabet * shape.dim) as u32,
            bias: None,
            ..strings
        },
    }
}

/// The table the Table formulation builds: place-major, the bias in the parameter slab.
fn table_shape(shape: &CnnEdShape) -> TableShape {
    TableShape {
        alphabet: shape.alphabet,
        max_len: shape.max_len,
        dim: shape.dim,
        layout: TableLayout::PlaceMajor,
        bias: shape.fc_offset() + shape.dim * shape.flat(),
    }
}

/// A slab (params, a moment or gradients, model order) in the order `formulation`'s
/// trainer keeps it: Table regroups fc.weight `[dim, C, 8 Lf]` as `[C, dim, 8 Lf]`;
/// `back` undoes it.
fn slab_order(shape: &CnnEdShape, formulation: Formulation, slab: &[f32], back: bool) -> Vec<f32> {
    let mut out = slab.to_vec();
    if formulation == Formulation::Table {
        let (dim, chars, per_place) = (
            shape.dim,
            shape.alphabet,
            shape.channels * shape.final_len(),
        );
        let at = shape.fc_offset();
        for o in 0..dim {
            for c in 0..chars {
                let model = at + (o * chars + c) * per_place;
                let regrouped = at + (c * dim + o) * per_place;
                let (from, to) = if back {
                    (regrouped, model)
                } else {
                    (model, regrouped)
                };
                out[to..to + per_place].copy_from_slice(&slab[from..from + per_place]);
            }
        }
    }
    out
}

impl<'g> CnnEdTrainer<'g> {
    /// A trainer for steps of up to `triplets` triplets of `state`'s network of `shape`,
    /// run as `formulation` (usually [`Formulation::cheaper`]), with the loss weights
    /// `weights` (change them with [`CnnEdTrainer::set_loss`]).
    pub fn new(
        gpu: &'g Gpu,
        ops: &Ops,
        shape: CnnEdShape,
        formulation: Formulation,
        state: &CnnEdState,
        triplets: usize,
        weights: LossWeights,
    ) -> Result<Self> {
        let strings = 3 * triplets;
        let items = formulation.items(&shape, strings, shape.max_len);
        check_fits(gpu, &shape, formulation, triplets)?;
        if state.params.len() != shape.num_params() + 1 {
            bail!(
                "a training state of {} values for a network of {}",
                state.params.len(),
                shape.num_params()
            );
        }
        let n = state.params.len() as u64;
        let ordered = |slab: &[f32]| slab_order(&shape, formulation, slab, false);
        let slabs = Slabs {
            params: storage_buffer_init(gpu, "cnn-ed params", &ordered(&state.params)),
            grads: storage_buffer(gpu, "cnn-ed grads", n * F32),
            exp_avg: storage_buffer_init(gpu, "cnn-ed exp_avg", &ordered(&state.exp_avg)),
            exp_avg_sq: storage_buffer_init(gpu, "cnn-ed exp_avg_sq", &ordered(&state.exp_avg_sq)),
            norm: storage_buffer_init(gpu, "cnn-ed grad norm", &[0.0f32, 1.0]),
            losses: storage_buffer(gpu, "cnn-ed losses", LOSS_SLOTS as u64 * F32),
        };
        let id_bytes = 4 * id_words(strings, shape.max_len) as u64;
        let inputs = match formulation {
            Formulation::Strings => Inputs {
                tokens: storage_buffer(gpu, "cnn-ed tokens", id_bytes),
                lengths: storage_buffer(gpu, "cnn-ed lengths", strings as u64 * 4),
                ids: storage_buffer(gpu, "cnn-ed ids (unused)", 4),
                starts: storage_buffer(gpu, "cnn-ed starts (unused)", 4),
            },
            Formulation::Table => Inputs {
                tokens: storage_buffer(gpu, "cnn-ed tokens (unused)", 4),
                lengths: storage_buffer_init(
                    gpu,
                    "cnn-ed impulse lengths",
                    &(1..=shape.max_len as u32).collect::<Vec<_>>(),
                ),
                ids: storage_buffer(gpu, "cnn-ed ids", id_bytes),
                starts: storage_buffer(gpu, "cnn-ed starts", (strings as u64 + 1) * 4),
            },
        };
        let output_bytes = (strings * shape.dim) as u64 * F32;
        let head_io = HeadIo {
            embeddings: storage_buffer(gpu, "cnn-ed embeddings", output_bytes),
            labels: storage_buffer(gpu, "cnn-ed targets", (3 * triplets) as u64 * F32),
            d_embeddings: storage_buffer(gpu, "cnn-ed d embeddings", output_bytes),
        };
        let acts = layers::activations(gpu, &shape, items.rows, 0, "cnn-ed activation");
        let d_acts = layers::activations(gpu, &shape, items.rows, 0, "cnn-ed activation gradient");
        let last = shape.layers - 1;
        let table = (formulation == Formulation::Table).then(|| {
            let bytes = (shape.max_len * shape.alphabet * shape.dim) as u64 * F32;
            [
                storage_buffer(gpu, "cnn-ed table", bytes),
                storage_buffer(gpu, "cnn-ed table gradient", bytes),
            ]
        });
        // The head writes the embeddings (Strings) or the table (Table).
        let head_out = table.as_ref().map_or(&head_io.embeddings, |[t, _]| t);
        let d_head_out = table.as_ref().map_or(&head_io.d_embeddings, |[_, d]| d);

        // Forward.
        let first = first_block(&shape, formulation);
        let head_shape = head(&shape, formulation);
        let forward = layers::forward(
            gpu,
            ops,
            &shape,
            first,
            head_shape,
            ForwardBuffers {
                tokens: &inputs.tokens,
                lengths: &inputs.lengths,
                params: &slabs.params,
                acts: &acts,
                out: head_out,
            },
        );
        let (gather, gather_backward) = match &table {
            None => (Calls::default(), Calls::default()),
            Some([t, d_t]) => {
                let forward = ops.table.call(
                    gpu,
                    table_shape(&shape),
                    TableBuffers {
                        table: t,
                        bias: &slabs.params,
                        ids: &inputs.ids,
                        starts: &inputs.starts,
                        out: &head_io.embeddings,
                    },
                );
                let backward = ops.table.backward(
                    gpu,
                    table_shape(&shape),
                    TableGrads {
                        d_out: &head_io.d_embeddings,
                        ids: &inputs.ids,
                        starts: &inputs.starts,
                        d_table: d_t,
                        grads: &slabs.grads,
                    },
                );
                (Calls::from(forward), backward)
            }
        };

        // The loss and its gradient at the embeddings.
        let loss = Self::loss_call(gpu, ops, &shape, &slabs, &head_io, weights);

        // Backward, last layer first.
        let head_backward = ops.linear.backward(
            gpu,
            &ops.weight_grad,
            head_shape,
            items.head,
            LinearGrads {
                x: &acts[last],
                dy: d_head_out,
                params: &slabs.params,
                grads: &slabs.grads,
                dx: &d_acts[last],
            },
        );
        // A block's ReLU is undone on its output's gradient before the block's backward,
        // over items of `rows_per_item` rows (the batch of the calls it joins).
        let undo_relu = |i: usize, rows_per_item: usize| {
            let per_item = rows_per_item * shape.channels * (shape.max_len >> (i + 1));
            ops.relu
                .backward(gpu, per_item as u32, &acts[i], &d_acts[i])
        };
        let mut blocks_backward = Calls::default();
        for i in (1..shape.layers).rev() {
            if shape.relu_after(i) {
                blocks_backward.push(undo_relu(i, 1));
            }
            blocks_backward.extend(ops.conv8.backward(
                gpu,
                layers::block(&shape, i),
                layers::extents(&inputs.lengths, first.alphabet, i),
                items.rows,
                Conv1dGrads {
                    x: &acts[i - 1],
                    dy: &d_acts[i],
                    params: &slabs.params,
                    grads: &slabs.grads,
                    dx: &d_acts[i - 1],
                },
            ));
        }
        let mut first_block_backward = Calls::default();
        if shape.relu_after(0) {
            first_block_backward.push(undo_relu(0, first.alphabet as usize));
        }
        first_block_backward.extend(ops.onehot_conv.backward(
            gpu,
            first,
            items.first,
            Strings {
                tokens: &inputs.tokens,
                lengths: &inputs.lengths,
            },
            &d_acts[0],
            &slabs.grads,
        ));
        let adamw = ops.adamw.calls(
            gpu,
            AdamWBuffers {
                params: &slabs.params,
                grads: &slabs.grads,
                m: &slabs.exp_avg,
                v: &slabs.exp_avg_sq,
                norm: &slabs.norm,
            },
            &[(0..shape.num_params(), false)],
        );
        let mut trainer = CnnEdTrainer {
            gpu,
            shape,
            formulation,
            capacity: triplets,
            triplets,
            places: shape.max_len,
            slabs,
            inputs,
            id_words: Vec::new(),
            start_words: Vec::new(),
            _acts: acts,
            _d_acts: d_acts,
            head_io,
            _table: table,
            prepare: forward.pack_head,
            first_block: forward.first,
            blocks: forward.blocks,
            head: forward.head,
            gather,
            loss,
            gather_backward,
            head_backward,
            blocks_backward,
            first_block_backward,
            adamw,
        };
        trainer.set_batches(triplets, shape.max_len);
        Ok(trainer)
    }

    fn loss_call(
        gpu: &Gpu,
        ops: &Ops,
        shape: &CnnEdShape,
        slabs: &Slabs,
        io: &HeadIo,
        weights: LossWeights,
    ) -> LossCall {
        let loss_shape = LossShape {
            dim: shape.dim as u32,
            log_scale: shape.num_params() as u32,
            learn: false,
        };
        let buffers = LossBuffers {
            e: &io.embeddings,
            labels: &io.labels,
            params: &slabs.params,
            de: &io.d_embeddings,
            grads: &slabs.grads,
            losses: &slabs.losses,
        };
        let ranking = RankingWeights {
            hinge: weights.hinge,
            approx: weights.approx,
            absolute: weights.absolute,
            pnll: 0.0,
            squared: false,
        };
        ops.ranking
            .forward_backward(gpu, loss_shape, ranking, &buffers)
    }

    /// Sizes every call for `triplets` triplets, the longest string `places` long.
    fn set_batches(&mut self, triplets: usize, places: usize) {
        self.triplets = triplets;
        self.places = places;
        let strings = 3 * triplets;
        let items = self.formulation.items(&self.shape, strings, places);
        let gpu = self.gpu;
        let set = |calls: &Calls, n: usize| calls.set_batch(gpu, n as u32);
        set(&self.first_block, items.first);
        set(&self.blocks, items.rows);
        set(&self.head, items.head);
        set(&self.gather, strings);
        set(&self.gather_backward, strings);
        set(&self.head_backward, items.head);
        set(&self.blocks_backward, items.rows);
        set(&self.first_block_backward, items.first);
    }

    /// Uploads the strings of `triplets` (anchors, then positives, then negatives, as
    /// token ids padded with the unseen id) and their targets; the loss goes to `slot`.
    fn upload(
        &mut self,
        model: &CnnEd,
        strings: &[String],
        triplets: &[(Triplet, [f32; 3])],
        slot: usize,
    ) -> Result<()> {
        if triplets.is_empty() || triplets.len() > self.capacity {
            bail!(
                "{} triplets given to a trainer of up to {}",
                triplets.len(),
                self.capacity
            );
        }
        // Anchors, then positives, then negatives.
        let batch: Vec<Vec<u32>> = [
            |t: &Triplet| t.anchor,
            |t: &Triplet| t.positive,
            |t: &Triplet| t.negative,
        ]
        .iter()
        .flat_map(|pick| {
            triplets
                .iter()
                .map(|(t, _)| model.token_ids(&strings[pick(t)]).collect())
        })
        .collect();
        let places = batch.iter().map(Vec::len).max().unwrap_or(0);
        if (triplets.len(), places) != (self.triplets, self.places) {
            self.set_batches(triplets.len(), places);
        }
        let queue = &self.gpu.queue;
        match self.formulation {
            Formulation::Strings => {
                let (ids, lengths) = (&mut self.id_words, &mut self.start_words);
                let strings = batch.iter().map(|s| s.iter().copied());
                pad_ids(strings, self.shape.max_len, ids, lengths);
                queue.write_buffer(&self.inputs.tokens, 0, bytemuck::cast_slice(ids));
                queue.write_buffer(&self.inputs.lengths, 0, bytemuck::cast_slice(lengths));
            }
            Formulation::Table => {
                let (ids, starts) = (&mut self.id_words, &mut self.start_words);
                pack_ids(batch.iter().map(|s| s.iter().copied()), ids, starts);
                queue.write_buffer(&self.inputs.ids, 0, bytemuck::cast_slice(ids));
                queue.write_buffer(&self.inputs.starts, 0, bytemuck::cast_slice(starts));
            }
        }
        let targets: Vec<f32> = triplets.iter().flat_map(|(_, t)| *t).collect();
        queue.write_buffer(&self.head_io.labels, 0, bytemuck::cast_slice(&targets));
        self.loss
            .set(self.gpu, self.triplets as u32, (slot % LOSS_SLOTS) as u32);
        Ok(())
    }

    /// Forward, loss and backward: the gradient slab holds this batch's gradients.
    fn record_gradients(&self, pass: &mut wgpu::ComputePass) {
        let strings = 3 * self.triplets;
        let items = self.formulation.items(&self.shape, strings, self.places);
        let gpu = self.gpu;
        let mut record = |calls: &Calls, n: usize| calls.record(pass, gpu, n as u32);
        record(&self.prepare, 1);
        record(&self.first_block, items.first);
        record(&self.blocks, items.rows);
        record(&self.head, items.head);
        record(&self.gather, strings);
        self.loss.record(pass, gpu);
        let mut record = |calls: &Calls, n: usize| calls.record(pass, gpu, n as u32);
        record(&self.gather_backward, strings);
        record(&self.head_backward, items.head);
        record(&self.blocks_backward, items.rows);
        record(&self.first_block_backward, items.first);
    }

    /// The loss weights from now on.
    pub fn set_loss(&mut self, ops: &Ops, weights: LossWeights) {
        self.loss = Self::loss_call(
            self.gpu,
            ops,
            &self.shape,
            &self.slabs,
            &self.head_io,
            weights,
        );
    }

    /// One step (gradients, then Adam) on `triplets` of `strings`, each with its targets,
    /// submitted without waiting; the loss of 1-based step t lands in slot
    /// `(t - 1) % LOSS_SLOTS` of [`CnnEdTrainer::losses`]. Hand the submission to a
    /// [`StepQueue`](super::trainer::StepQueue).
    pub fn step(
        &mut self,
        model: &CnnEd,
        strings: &[String],
        triplets: &[(Triplet, [f32; 3])],
        hyper: &AdamWStep,
    ) -> Result<wgpu::SubmissionIndex> {
        self.upload(
            model,
            strings,
            triplets,
            hyper.step.saturating_sub(1) as usize,
        )?;
        self.adamw.set(self.gpu, hyper);
        Ok(self.submit(true))
    }

    /// Forward, loss and backward only; waits and returns the loss (the gradients are in
    /// [`CnnEdTrainer::read_grads`]).
    pub fn gradients(
        &mut self,
        model: &CnnEd,
        strings: &[String],
        triplets: &[(Triplet, [f32; 3])],
    ) -> Result<f32> {
        self.upload(model, strings, triplets, 0)?;
        self.submit(false);
        Ok(self.losses(0, 1)?[0])
    }

    fn submit(&self, update: bool) -> wgpu::SubmissionIndex {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.record_gradients(&mut pass);
            if update {
                self.adamw.record(&mut pass, self.gpu);
            }
        }
        self.gpu.queue.submit([encoder.finish()])
    }

    /// The losses of steps `from + 1 ..= to` (1-based; at most `LOSS_SLOTS` of them),
    /// waiting for the GPU.
    pub fn losses(&self, from: u64, to: u64) -> Result<Vec<f32>> {
        let all: Vec<f32> = self.gpu.read_buffer(&self.slabs.losses, LOSS_SLOTS)?;
        Ok((from..to).map(|s| all[s as usize % LOSS_SLOTS]).collect())
    }

    /// The gradient slab (the tensors' gradients, then 0 for log s).
    pub fn read_grads(&self) -> Result<Vec<f32>> {
        let grads = self
            .gpu
            .read_buffer(&self.slabs.grads, self.shape.num_params() + 1)?;
        Ok(self.model_order(&grads))
    }

    fn model_order(&self, slab: &[f32]) -> Vec<f32> {
        slab_order(&self.shape, self.formulation, slab, true)
    }

    /// The embeddings of the last forward, `[3 triplets, dim]`.
    pub fn read_embeddings(&self) -> Result<Vec<f32>> {
        self.gpu
            .read_buffer(&self.head_io.embeddings, 3 * self.triplets * self.shape.dim)
    }

    /// The slabs, read back in one submit.
    pub fn state(&self) -> Result<CnnEdState> {
        let s = &self.slabs;
        let bytes = (self.shape.num_params() + 1) as u64 * F32;
        let readbacks: Vec<(Readback, &wgpu::Buffer)> = [&s.params, &s.exp_avg, &s.exp_avg_sq]
            .into_iter()
            .map(|b| (Readback::new(self.gpu, bytes), b))
            .collect();
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for (r, b) in &readbacks {
            r.copy(&mut encoder, b, bytes);
        }
        self.gpu.queue.submit([encoder.finish()]);
        let mut values = readbacks
            .iter()
            .map(|(r, _)| r.read::<f32>(self.gpu, bytes));
        let mut next = || -> Result<Vec<f32>> {
            Ok(self.model_order(&values.next().expect("three readbacks")?))
        };
        Ok(CnnEdState {
            params: next()?,
            exp_avg: next()?,
            exp_avg_sq: next()?,
        })
    }
}
