//! CNN-ED (Dai, Yan, Zhou, Wang, Yang and Cheng, "Convolutional Embedding for Edit
//! Distance", SIGIR 2020, and its code, github.com/xinyandai/string-embed): strings of up
//! to 5,000 characters over an alphabet taken from the data, embedded by a stack of
//! bias-free conv + average-pool layers and a linear head, compared by Euclidean
//! distance.
//!
//! The network, as the official code's default (per-character) layout computes it:
//! - a string's one-hot matrix `[C, M]` (column l is character l's indicator, zero past
//!   the end and for a character outside the alphabet) is read as C independent
//!   1-channel signals;
//! - `layers` times: Conv1d(k = 3, stride 1, padding 1, no bias) to `channels`
//!   channels, then AvgPool1d(2) (floor), no activation by default, a ReLU after the
//!   blocks the shape names (the official UniRef net: after blocks 3, 6 and 9 of 12);
//! - the C signals' outputs flattened c-major (`c * channels * Lf + ch * Lf + pos`,
//!   `Lf = M >> layers`) into a Linear layer with bias, giving `dim` values.
//!
//! Without activations the network is affine in the one-hot input, so it folds exactly
//! into a table ([`CnnEd::fold`]): `T[c, l, :]` is the head applied to the conv stack's
//! response to a unit impulse at position l, placed in character c's block, and a
//! string's embedding is the bias plus one table row per character. A network with
//! ReLUs runs layer by layer ([`CnnEd::embed_layered`], and on the GPU
//! `cnn_ed_layers`).
use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use safetensors::tensor::Dtype;

use super::Estimator;
use super::metadata::ModelFile;
use super::state_dict::{DType, StateDict, Tensor};
use super::weights::{META_ARCH, serialize_safetensors};

/// Architecture name and version of a CNN-ED model file.
pub const ARCH: &str = "cnn-ed-v1";
/// The longest padded length M: longer strings are cut (the paper cuts UniRef and Enron
/// at 5,000).
pub const MAX_LEN: usize = 5000;
/// The official code's kernels per conv layer.
pub const DEFAULT_CHANNELS: usize = 8;
/// The official code's output dimension.
pub const DEFAULT_DIM: usize = 128;
/// Conv layers unless `--layers` says otherwise: min(10, floor(log2 M)).
pub const DEFAULT_MAX_LAYERS: usize = 10;

const META_ALPHABET: &str = "megashtein.cnn_ed.alphabet";
const META_MAX_LEN: &str = "megashtein.cnn_ed.max_len";
const META_LAYERS: &str = "megashtein.cnn_ed.layers";
const META_CHANNELS: &str = "megashtein.cnn_ed.channels";
const META_DIM: &str = "megashtein.cnn_ed.dim";
/// A JSON list of the 1-based blocks followed by a ReLU; absent when there are none.
const META_RELU_AFTER: &str = "megashtein.cnn_ed.relu_after";
const META_SLOPE: &str = "megashtein.estimate_slope";
const META_INTERCEPT: &str = "megashtein.estimate_intercept";

/// The largest folded table the model is used through. Past it (thousands of
/// characters at M = 1,000 take gigabytes) an affine network runs layer by layer, as one
/// with ReLUs does, in memory that does not grow with alphabet x M.
pub const MAX_TABLE_BYTES: u64 = 1 << 30;

/// The sizes that fix a CNN-ED network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CnnEdShape {
    /// C, the alphabet's size.
    pub alphabet: usize,
    /// M, the padded length (even, at most [`MAX_LEN`]).
    pub max_len: usize,
    /// Conv + pool layers (`M >> layers` must be at least 1).
    pub layers: usize,
    /// Kernels per conv layer.
    pub channels: usize,
    /// Output dimension (a multiple of 4: the GPU reads rows as vec4).
    pub dim: usize,
    /// Bit i set: block i's pooled output (0-based) goes through a ReLU. Only a network
    /// without (0, every official net but UniRef's) folds into a table.
    pub relu: u32,
}

impl CnnEdShape {
    /// The official configuration for alphabet size `alphabet` and padded length
    /// `max_len`: min(10, floor(log2 M)) layers of 8 channels, 128 outputs.
    pub fn official(alphabet: usize, max_len: usize) -> Self {
        CnnEdShape {
            alphabet,
            max_len,
            layers: default_layers(max_len),
            channels: DEFAULT_CHANNELS,
            dim: DEFAULT_DIM,
            relu: 0,
        }
    }

    /// Whether block `i`'s (0-based) pooled output goes through a ReLU.
    pub fn relu_after(&self, i: usize) -> bool {
        self.relu >> i & 1 == 1
    }

    /// No ReLU: the network is affine in its one-hot input and folds into a table.
    pub fn is_affine(&self) -> bool {
        self.relu == 0
    }

    /// Bytes of the folded table: alphabet x M x dim f32.
    pub fn table_bytes(&self) -> u64 {
        self.alphabet as u64 * self.max_len as u64 * self.dim as u64 * 4
    }

    /// Whether the network is used through its folded table: affine, with a table of at
    /// most `limit` bytes ([`MAX_TABLE_BYTES`] but in tests).
    pub fn folds_within(&self, limit: u64) -> bool {
        self.is_affine() && self.table_bytes() <= limit
    }

    /// The leading blocks that are affine in the input: up to and including the first
    /// block with a ReLU (whose pooled output, before that ReLU, is still affine), or
    /// every block.
    pub fn affine_blocks(&self) -> usize {
        (self.relu.trailing_zeros() as usize + 1).min(self.layers)
    }

    /// The 1-based blocks followed by a ReLU, in order (as `--relu-after` takes them).
    pub fn relu_blocks(&self) -> Vec<usize> {
        (0..self.layers)
            .filter(|&i| self.relu_after(i))
            .map(|i| i + 1)
            .collect()
    }

    /// Lf, the length of each signal after the last pool.
    pub fn final_len(&self) -> usize {
        self.max_len >> self.layers
    }

    /// The linear head's input size, `C * channels * Lf`.
    pub fn flat(&self) -> usize {
        self.alphabet * self.channels * self.final_len()
    }

    /// The network's tensors in slab order: name, shape.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let ch = self.channels;
        let mut out: Vec<(String, Vec<usize>)> = (0..self.layers)
            .map(|i| {
                (
                    format!("conv.{i}.weight"),
                    vec![ch, if i == 0 { 1 } else { ch }, 3],
                )
            })
            .collect();
        out.push(("fc.weight".into(), vec![self.dim, self.flat()]));
        out.push(("fc.bias".into(), vec![self.dim]));
        out
    }

    /// Values in the parameter slab.
    pub fn num_params(&self) -> usize {
        self.tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Where conv layer `i`'s weight `[channels, cin, 3]` starts in the slab.
    pub fn conv_offset(&self, i: usize) -> usize {
        let ch = self.channels;
        if i == 0 {
            0
        } else {
            3 * ch + (i - 1) * ch * ch * 3
        }
    }

    /// Where the head's weight `[dim, flat]` starts in the slab (its bias follows).
    pub fn fc_offset(&self) -> usize {
        self.conv_offset(self.layers)
    }

    /// An error saying what is wrong with these sizes, if anything.
    pub fn check(&self) -> Result<(), String> {
        let CnnEdShape {
            alphabet,
            max_len,
            layers,
            channels,
            dim,
            relu,
        } = *self;
        if alphabet == 0 {
            return Err("the alphabet is empty".into());
        }
        if !(2..=MAX_LEN).contains(&max_len) || !max_len.is_multiple_of(2) {
            return Err(format!(
                "max_len is {max_len}, expected an even length from 2 to {MAX_LEN}"
            ));
        }
        if layers == 0 || layers > max_len.ilog2() as usize {
            return Err(format!(
                "{layers} layers for max_len {max_len}: expected 1 to {} (each halves the length)",
                max_len.ilog2()
            ));
        }
        if !(1..=64).contains(&channels) {
            return Err(format!("channels is {channels}, expected 1 to 64"));
        }
        if dim == 0 || dim > 1024 || dim % 4 != 0 {
            return Err(format!("dim is {dim}, expected a multiple of 4 up to 1024"));
        }
        if relu >> layers != 0 {
            return Err(format!(
                "a ReLU after block {}, but the network has {layers}",
                32 - relu.leading_zeros()
            ));
        }
        Ok(())
    }
}

/// min(10, floor(log2 M)) conv layers for padded length `max_len` >= 2.
pub fn default_layers(max_len: usize) -> usize {
    DEFAULT_MAX_LAYERS.min(max_len.max(2).ilog2() as usize)
}

/// The padded length for strings of up to `longest` characters: cut at [`MAX_LEN`],
/// rounded up to even, at least 2.
pub fn padded_len(longest: usize) -> usize {
    longest.clamp(2, MAX_LEN).next_multiple_of(2)
}

/// The alphabet of `texts`: every distinct character, in order of first appearance.
pub fn alphabet_of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<char> {
    let mut seen = std::collections::HashSet::new();
    let mut alphabet = Vec::new();
    for c in texts.into_iter().flat_map(str::chars) {
        if seen.insert(c) {
            alphabet.push(c);
        }
    }
    alphabet
}

/// A network's reading of text: each character's id, the first M characters only.
#[derive(Debug, Clone, PartialEq)]
pub struct CharIds {
    ids: HashMap<char, u32>,
    max_len: usize,
}

impl CharIds {
    /// The token id of each of the first M characters of `text`: its place in the
    /// alphabet, or [`CharIds::unseen`] for a character outside it (an all-zero column).
    pub fn of<'t>(&'t self, text: &'t str) -> impl Iterator<Item = u32> + 't {
        let unseen = self.unseen();
        text.chars()
            .take(self.max_len)
            .map(move |c| self.ids.get(&c).copied().unwrap_or(unseen))
    }

    /// The id of a character outside the alphabet: C.
    pub fn unseen(&self) -> u32 {
        self.alphabet_len() as u32
    }

    /// C, the alphabet's size.
    pub fn alphabet_len(&self) -> usize {
        self.ids.len()
    }

    /// M, the characters read.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
}

/// A CNN-ED network: its alphabet, sizes, weights and estimator
/// `d = slope * ||e1 - e2|| + intercept`.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnEd {
    alphabet: Vec<char>,
    chars: CharIds,
    shape: CnnEdShape,
    /// The tensors of [`CnnEdShape::tensors`] back to back.
    params: Vec<f32>,
    slope: f32,
    intercept: f32,
}

impl CnnEd {
    /// PyTorch's default initialisation (conv and linear weights and the linear bias
    /// uniform in ±1/sqrt(fan_in)), drawn in slab order from a `StdRng` seeded with
    /// `seed`; the estimator is the plain distance until [`CnnEd::set_estimator`].
    pub fn random(alphabet: Vec<char>, shape: CnnEdShape, seed: u64) -> Result<Self> {
        shape
            .check()
            .map_err(|e| anyhow!("a new CNN-ED model: {e}"))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut params = Vec::with_capacity(shape.num_params());
        for (name, dims) in shape.tensors() {
            let fan_in = if name.starts_with("conv") {
                dims[1] * dims[2]
            } else {
                shape.flat()
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            let n: usize = dims.iter().product();
            params.extend((0..n).map(|_| rng.random_range(-bound..bound)));
        }
        CnnEd::from_parts(alphabet, shape, params, 1.0, 0.0, "a new CNN-ED model")
    }

    fn from_parts(
        alphabet: Vec<char>,
        shape: CnnEdShape,
        params: Vec<f32>,
        slope: f32,
        intercept: f32,
        source: &str,
    ) -> Result<Self> {
        shape.check().map_err(|e| anyhow!("{source}: {e}"))?;
        if alphabet.len() != shape.alphabet {
            bail!(
                "{source}: the alphabet has {} characters, the shape says {}",
                alphabet.len(),
                shape.alphabet
            );
        }
        let ids: HashMap<char, u32> = alphabet
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i as u32))
            .collect();
        if ids.len() != alphabet.len() {
            bail!("{source}: the alphabet lists a character twice");
        }
        if params.len() != shape.num_params() {
            bail!(
                "{source}: {} parameters, the shape needs {}",
                params.len(),
                shape.num_params()
            );
        }
        Ok(CnnEd {
            alphabet,
            chars: CharIds {
                ids,
                max_len: shape.max_len,
            },
            shape,
            params,
            slope,
            intercept,
        })
    }

    /// Moves the head's bias so that the mean of `embeddings` (`[rows, dim]`, this
    /// model's) is 0. Distances do not change (and the loss never sees the bias: its
    /// gradient is 0), but search does: an embedding's common part, far larger than the
    /// differences between strings, would swamp them in the kNN's f32 products
    /// |q|² + |x|² - 2 q·x.
    pub fn center_on(&mut self, embeddings: &[f32]) {
        let mean = column_mean(embeddings, self.shape.dim);
        let at = self.shape.fc_offset() + self.shape.dim * self.shape.flat();
        for (b, m) in self.params[at..].iter_mut().zip(mean) {
            *b -= m as f32;
        }
    }

    /// The mean embedding of `strings` (0 for none).
    pub fn mean_embedding(&self, strings: &[String]) -> Vec<f64> {
        column_mean(&self.embed_all(strings), self.shape.dim)
    }

    /// Every string's embedding, `[strings, dim]`: through the folded table (one fold)
    /// when the network is affine and its table within [`MAX_TABLE_BYTES`], else layer by
    /// layer.
    pub fn embed_all(&self, strings: &[String]) -> Vec<f32> {
        use rayon::prelude::*;
        if !self.shape.folds_within(MAX_TABLE_BYTES) {
            return strings
                .par_iter()
                .flat_map_iter(|s| self.embed_layered(s))
                .collect();
        }
        let folded = self.fold();
        strings
            .iter()
            .flat_map(|s| folded.embed(self.token_ids(s)))
            .collect()
    }

    /// `text`'s embedding, layer by layer: each character's one-hot signal through the
    /// conv stack (characters absent from the text give zero signals, and skip it), the
    /// head on the c-major flattening.
    pub fn embed_layered(&self, text: &str) -> Vec<f32> {
        let shape = self.shape;
        let per_char = shape.channels * shape.final_len();
        let mut signals = vec![vec![0.0f32; shape.max_len]; shape.alphabet];
        for (l, id) in self.token_ids(text).enumerate() {
            if let Some(signal) = signals.get_mut(id as usize) {
                signal[l] = 1.0;
            }
        }
        let fc = self.fc_weight();
        let mut out = self.fc_bias().to_vec();
        for (c, signal) in signals.iter().enumerate() {
            if signal.iter().all(|&v| v == 0.0) {
                continue;
            }
            let response = self.conv_stack(signal);
            for (d, o) in out.iter_mut().enumerate() {
                let w = &fc[d * shape.flat() + c * per_char..][..per_char];
                *o += w.iter().zip(&response).map(|(w, x)| w * x).sum::<f32>();
            }
        }
        out
    }

    /// One 1-channel signal `[M]` through every conv + pool block (and its ReLU):
    /// `[channels, Lf]`.
    fn conv_stack(&self, signal: &[f32]) -> Vec<f32> {
        let (mut hi, mut x) = (signal.len(), signal.to_vec());
        for layer in 0..self.shape.layers {
            let (_, end, mut y) = self.block_window(layer, &x, 0, hi);
            if self.shape.relu_after(layer) {
                y.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            (hi, x) = (end, y);
        }
        x
    }

    /// The same network with other weights (trained ones), same length as
    /// [`CnnEd::params`].
    pub fn with_params(&self, params: Vec<f32>) -> Result<CnnEd> {
        if params.len() != self.params.len() {
            bail!(
                "{} parameters for a network of {}",
                params.len(),
                self.params.len()
            );
        }
        Ok(CnnEd {
            params,
            ..self.clone()
        })
    }

    pub fn shape(&self) -> CnnEdShape {
        self.shape
    }

    /// The characters, in id order.
    pub fn alphabet(&self) -> &[char] {
        &self.alphabet
    }

    /// The weights, [`CnnEdShape::tensors`] back to back.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.shape.dim
    }

    /// `slope * ||e1 - e2|| + intercept`.
    pub fn estimator(&self) -> Estimator {
        Estimator::euclidean(self.slope, self.intercept)
    }

    /// Sets the estimator's line (fitted on training pairs).
    pub fn set_estimator(&mut self, slope: f32, intercept: f32) {
        self.slope = slope;
        self.intercept = intercept;
    }

    /// The token ids of `text` ([`CharIds::of`]).
    pub fn token_ids<'t>(&'t self, text: &'t str) -> impl Iterator<Item = u32> + 't {
        self.chars.of(text)
    }

    /// The id of a character outside the alphabet: C.
    pub fn unseen(&self) -> u32 {
        self.chars.unseen()
    }

    /// How the network reads text.
    pub fn char_ids(&self) -> &CharIds {
        &self.chars
    }

    /// Conv layer `i`'s weight `[channels, cin, 3]`.
    pub fn conv_weight(&self, i: usize) -> &[f32] {
        let ch = self.shape.channels;
        let cin = if i == 0 { 1 } else { ch };
        let at = self.shape.conv_offset(i);
        &self.params[at..at + ch * cin * 3]
    }

    /// The head's weight `[dim, flat]`.
    pub fn fc_weight(&self) -> &[f32] {
        let at = self.shape.fc_offset();
        &self.params[at..at + self.shape.dim * self.shape.flat()]
    }

    /// The head's bias `[dim]`.
    pub fn fc_bias(&self) -> &[f32] {
        let at = self.shape.fc_offset() + self.shape.dim * self.shape.flat();
        &self.params[at..at + self.shape.dim]
    }

    /// The output `[channels, M >> blocks]` of the first `blocks` conv + pool blocks
    /// (without any ReLU) for a unit impulse at position `l` of one signal. The conv
    /// spreads a signal by one place each side and the pool halves it, so only a window
    /// of a few places is ever nonzero: the result is that window, `(first place,
    /// [channels, width] values)`.
    pub fn impulse_response(&self, l: usize, blocks: usize) -> (usize, Vec<f32>) {
        let (mut lo, mut hi, mut x) = (l, l + 1, vec![1.0f32]);
        for layer in 0..blocks {
            (lo, hi, x) = self.block_window(layer, &x, lo, hi);
        }
        (lo, x)
    }

    /// Conv + pool block `layer` (no ReLU) on a signal `[cin, hi - lo]` that is zero
    /// outside places `lo..hi` of the block's input: the output's nonzero window, `(lo,
    /// hi, [channels, hi - lo] values)`. The conv widens the window by one place each
    /// side (within the signal) and the pool halves it.
    fn block_window(
        &self,
        layer: usize,
        x: &[f32],
        lo: usize,
        hi: usize,
    ) -> (usize, usize, Vec<f32>) {
        let ch = self.shape.channels;
        let len = self.shape.max_len >> layer;
        let cin = if layer == 0 { 1 } else { ch };
        let w = self.conv_weight(layer);
        let (clo, chi) = (lo.saturating_sub(1), (hi + 1).min(len));
        let width = hi - lo;
        let conv_width = chi - clo;
        let mut z = vec![0.0f32; ch * conv_width];
        for o in 0..ch {
            for p in clo..chi {
                let mut acc = 0.0f32;
                for ci in 0..cin {
                    for t in 0..3 {
                        // Input place p + t - 1, inside the window [lo, hi).
                        if let Some(q) = (p + t).checked_sub(1).filter(|q| (lo..hi).contains(q)) {
                            acc += w[(o * cin + ci) * 3 + t] * x[ci * width + (q - lo)];
                        }
                    }
                }
                z[o * conv_width + (p - clo)] = acc;
            }
        }
        // AvgPool1d(2), floor: output j reads 2j and 2j + 1, for j < len / 2.
        let (plo, phi) = (clo / 2, chi.div_ceil(2).min(len / 2));
        let pool_width = phi - plo;
        let mut y = vec![0.0f32; ch * pool_width];
        for o in 0..ch {
            for j in plo..phi {
                let at = |p: usize| {
                    if (clo..chi).contains(&p) {
                        z[o * conv_width + (p - clo)]
                    } else {
                        0.0
                    }
                };
                y[o * pool_width + (j - plo)] = (at(2 * j) + at(2 * j + 1)) / 2.0;
            }
        }
        (plo, phi, y)
    }

    /// The folded network ([`Folded`]): `T[c, l, :]` for every character and place. Only
    /// an affine network folds ([`CnnEdShape::is_affine`]).
    pub fn fold(&self) -> Folded {
        assert!(
            self.shape.is_affine(),
            "a CNN-ED network with ReLUs does not fold into a table"
        );
        let CnnEdShape {
            alphabet,
            max_len,
            channels,
            dim,
            ..
        } = self.shape;
        let final_len = self.shape.final_len();
        let flat = self.shape.flat();
        let fc = self.fc_weight();
        let responses: Vec<(usize, Vec<f32>)> = (0..max_len)
            .map(|l| self.impulse_response(l, self.shape.layers))
            .collect();
        let mut table = vec![0.0f32; alphabet * max_len * dim];
        use rayon::prelude::*;
        table
            .par_chunks_mut(max_len * dim)
            .enumerate()
            .for_each(|(c, rows)| {
                for (l, (first, values)) in responses.iter().enumerate() {
                    let width = values.len() / channels;
                    let row = &mut rows[l * dim..(l + 1) * dim];
                    for (d, out) in row.iter_mut().enumerate() {
                        let w = &fc[d * flat + c * channels * final_len..];
                        let mut acc = 0.0f32;
                        for o in 0..channels {
                            for k in 0..width {
                                acc += w[o * final_len + first + k] * values[o * width + k];
                            }
                        }
                        *out = acc;
                    }
                }
            });
        Folded {
            table,
            bias: self.fc_bias().to_vec(),
            max_len,
            dim,
            unseen: self.unseen(),
        }
    }

    /// The blocks up to the first ReLU folded ([`Prefix`]): they are affine in the
    /// one-hot input. All blocks for an affine network.
    pub fn prefix(&self) -> Prefix {
        let blocks = self.shape.affine_blocks();
        let channels = self.shape.channels;
        let len = self.shape.max_len >> blocks;
        let responses: Vec<(usize, Vec<f32>)> = (0..self.shape.max_len)
            .map(|l| self.impulse_response(l, blocks))
            .collect();
        let width = responses
            .iter()
            .map(|(_, v)| v.len() / channels)
            .max()
            .unwrap_or(1);
        // Each place's response from its first position, `width` values a channel, the
        // tail past its window (or past the signal's end) zero.
        let mut values = vec![0.0f32; self.shape.max_len * channels * width];
        for (l, (_, v)) in responses.iter().enumerate() {
            let w = v.len() / channels;
            for (o, channel) in v.chunks_exact(w).enumerate() {
                values[(l * channels + o) * width..][..w].copy_from_slice(channel);
            }
        }
        let first: Vec<u32> = responses.iter().map(|r| r.0 as u32).collect();
        // Place l reaches positions first[l] .. first[l] + width; first never decreases,
        // so the places that reach `pos` are a run.
        let reach = (0..len as u32)
            .flat_map(|pos| {
                let from = first.partition_point(|&f| f as usize + width <= pos as usize);
                let to = first.partition_point(|&f| f <= pos);
                [from as u32, to as u32]
            })
            .collect();
        Prefix {
            blocks,
            len,
            width,
            values,
            first,
            reach,
            relu: self.shape.relu_after(blocks - 1),
        }
    }

    /// The model file's bytes (safetensors): the tensors of [`CnnEdShape::tensors`],
    /// float32, and the alphabet, sizes and estimator in metadata.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut sd = StateDict::new();
        let mut at = 0;
        for (name, dims) in self.shape.tensors() {
            let n: usize = dims.iter().product();
            let data = bytemuck::cast_slice(&self.params[at..at + n]).to_vec();
            sd.insert(
                name,
                Tensor {
                    dtype: DType::F32,
                    shape: dims,
                    data,
                },
            );
            at += n;
        }
        let codes: Vec<u32> = self.alphabet.iter().map(|&c| c as u32).collect();
        let s = self.shape;
        let mut metadata = vec![
            (META_ARCH, ARCH.to_string()),
            (META_ALPHABET, serde_json::to_string(&codes)?),
            (META_MAX_LEN, s.max_len.to_string()),
            (META_LAYERS, s.layers.to_string()),
            (META_CHANNELS, s.channels.to_string()),
            (META_DIM, s.dim.to_string()),
            (META_SLOPE, self.slope.to_string()),
            (META_INTERCEPT, self.intercept.to_string()),
        ];
        if !s.is_affine() {
            metadata.push((META_RELU_AFTER, serde_json::to_string(&s.relu_blocks())?));
        }
        serialize_safetensors(&sd, &metadata)
    }

    /// Writes the model file atomically (complete or absent).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let bytes = self.to_safetensors()?;
        crate::io::write_file_atomic(path, &bytes)
    }

    /// Parses a CNN-ED model file; `source` names it in messages.
    pub fn from_safetensors(bytes: &[u8], source: &str) -> Result<CnnEd> {
        let file = ModelFile::parse(bytes, source, ARCH)?;
        let st = &file.tensors;
        let get = |key: &str| file.get(key);
        let number = |key: &str| file.number::<usize>(key);
        let real = |key: &str| file.real(key);
        let codes: Vec<u32> = serde_json::from_str(get(META_ALPHABET)?).map_err(|e| {
            anyhow!("{source}: {META_ALPHABET} is not a JSON list of code points ({e})")
        })?;
        let alphabet = codes
            .iter()
            .map(|&code| {
                char::from_u32(code).ok_or_else(|| {
                    anyhow!("{source}: {META_ALPHABET} holds {code}, not a character")
                })
            })
            .collect::<Result<Vec<char>>>()?;
        let shape = CnnEdShape {
            alphabet: alphabet.len(),
            max_len: number(META_MAX_LEN)?,
            layers: number(META_LAYERS)?,
            channels: number(META_CHANNELS)?,
            dim: number(META_DIM)?,
            relu: match file.optional(META_RELU_AFTER) {
                None => 0,
                Some(text) => relu_mask(text)
                    .map_err(|e| anyhow!("{source}: {META_RELU_AFTER} is {text:?}: {e}"))?,
            },
        };
        shape.check().map_err(|e| anyhow!("{source}: {e}"))?;
        let expected = shape.tensors();
        let mut names: Vec<&str> = st.names();
        let mut wanted: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        wanted.sort_unstable();
        if names != wanted {
            bail!("{source}: a {ARCH} model of this shape holds tensors {wanted:?}, not {names:?}");
        }
        let mut params = Vec::with_capacity(shape.num_params());
        for (name, dims) in &expected {
            let view = st.tensor(name).map_err(|e| file.invalid(e))?;
            if view.dtype() != Dtype::F32 || view.shape() != dims.as_slice() {
                bail!(
                    "{source}: {name} is {:?} {:?}, expected F32 {dims:?}",
                    view.dtype(),
                    view.shape()
                );
            }
            params.extend(
                view.data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        if let Some(i) = params.iter().position(|v| !v.is_finite()) {
            bail!("{source}: parameter {i} is not finite");
        }
        let slope = real(META_SLOPE)?;
        if slope <= 0.0 {
            bail!("{source}: {META_SLOPE} is {slope}; the estimate must grow with distance");
        }
        CnnEd::from_parts(
            alphabet,
            shape,
            params,
            slope,
            real(META_INTERCEPT)?,
            source,
        )
    }
}

/// The ReLU mask ([`CnnEdShape::relu`]) of a JSON list of 1-based block numbers.
fn relu_mask(json: &str) -> Result<u32, String> {
    let blocks: Vec<usize> = serde_json::from_str(json)
        .map_err(|e| format!("not a JSON list of block numbers ({e})"))?;
    relu_mask_of(&blocks)
}

/// The ReLU mask ([`CnnEdShape::relu`]) of 1-based block numbers (at most
/// [`MAX_LEN`]'s 12 blocks); the shape's check bounds them by its layers.
pub fn relu_mask_of(blocks: &[usize]) -> Result<u32, String> {
    let most = MAX_LEN.ilog2() as usize;
    blocks.iter().try_fold(0u32, |mask, &b| {
        if (1..=most).contains(&b) {
            Ok(mask | 1 << (b - 1))
        } else {
            Err(format!("block {b}: blocks are numbered 1 to {most}"))
        }
    })
}

/// The mean of the rows of `[rows, dim]` values (0 for no rows).
fn column_mean(values: &[f32], dim: usize) -> Vec<f64> {
    let rows = (values.len() / dim).max(1) as f64;
    let mut mean = vec![0.0f64; dim];
    for row in values.chunks_exact(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v) / rows;
        }
    }
    mean
}

/// A CNN-ED network folded into a table: a string's embedding is
/// `bias + sum over its places l of T[id(s[l]), l, :]`, ids outside the alphabet adding
/// nothing. Exact up to float rounding (the network is affine in its one-hot input).
#[derive(Debug, Clone)]
pub struct Folded {
    /// `[C, M, dim]`.
    pub table: Vec<f32>,
    /// `[dim]`.
    pub bias: Vec<f32>,
    pub max_len: usize,
    pub dim: usize,
    /// The id of a character outside the alphabet (C): no row.
    pub unseen: u32,
}

impl Folded {
    /// The embedding of a string given by its token ids ([`CnnEd::token_ids`]), summed
    /// in place order, as the GPU sums it.
    pub fn embed(&self, ids: impl IntoIterator<Item = u32>) -> Vec<f32> {
        let dim = self.dim;
        let mut out = self.bias.clone();
        for (l, id) in ids.into_iter().enumerate().take(self.max_len) {
            if id >= self.unseen {
                continue;
            }
            let row = (id as usize * self.max_len + l) * dim;
            for (o, t) in out.iter_mut().zip(&self.table[row..row + dim]) {
                *o += t;
            }
        }
        out
    }
}

/// The first [`CnnEdShape::affine_blocks`] blocks of a network folded: a character's
/// signal after them, `[channels, len]`, is the sum over the places l holding it of
/// place l's response, `width` values a channel from position `first[l]`; then the ReLU
/// that ends them, if any. The GPU's layered network starts from here
/// (`ops::cnn_ed_prefix`).
#[derive(Debug, Clone)]
pub struct Prefix {
    pub blocks: usize,
    /// Positions after the blocks, `M >> blocks`.
    pub len: usize,
    pub width: usize,
    /// `[M, channels, width]`.
    pub values: Vec<f32>,
    /// `[M]`.
    pub first: Vec<u32>,
    /// `[len, 2]`: the places that reach each position, `reach[2 pos] .. reach[2 pos + 1]`.
    pub reach: Vec<u32>,
    pub relu: bool,
}
