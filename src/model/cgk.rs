//! The CGK embedding (Chakraborty, Goldenberg and Koucký, "Streaming algorithms for
//! embedding and computing edit distance in the low distance regime", STOC 2016), as
//! Algorithm 1 of seed 002 states it: a random walk over the input that copies the
//! current character to the output and advances with a random hash bit, giving a string
//! of length 3n compared by Hamming distance. It needs no training: a model file of
//! architecture [`ARCH`] holds its random bits and the curve that turns a Hamming
//! distance into an edit-distance estimate.
//!
//! Generalised to bytes and variable lengths: strings are cut to `n` characters (as the
//! model cuts them), positions past the end of a string emit [`PAD`] (a symbol outside
//! ASCII), and the hash functions are h_j: {0..=128} -> {0, 1}, one independent random
//! bit per (step, symbol). Several independent repetitions are averaged. A code holds
//! the repetitions interleaved by step (byte `j * reps + r` is step j of repetition r),
//! so a short string's code ends in one run of [`PAD`] that search can skip.
//!
//! Lower bound: seed 002 (Zhang, Yuan, Indyk), Theorem 1(2), states for every r
//! ED(x, y) / 2 <= Ham(f(x, r), f(y, r)) for its truncated variant CGK', as the main
//! embedding theorem of CGK (ECCC TR15-111, "Low distortion embedding from edit to
//! Hamming distance using coupling") does for CGK; we did not check that paper's
//! theorem number. The argument walks
//! both strings with the same bits: a step whose two outputs agree moves both pointers
//! alike, and each disagreeing step advances the pointers by at most one character each,
//! which one substitution, insertion or deletion pays for. So whenever the walk reads
//! both strings to the end within its 3n steps (which fails with probability
//! exponentially small in n), even ED(x, y) <= Ham. The walk can stop short only for
//! bits that rarely advance; then the unread tails are not paid for and the bound can
//! fail (e.g. bits that never advance on `a`: "aa…a" and "aa…ab" both map to "aa…a").
//! The tests check both statements on random pairs.
use anyhow::{Result, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use safetensors::tensor::Dtype;

use super::Estimator;
use super::metadata::ModelFile;
use super::params::MAX_LEN;
use super::state_dict::{DType, StateDict, Tensor};
use super::weights::{META_ARCH, serialize_safetensors};

/// Architecture name and version of a CGK model file.
pub const ARCH: &str = "cgk-v1";
/// The symbol written once the walk has passed the end of a string.
pub const PAD: u8 = 128;
/// Number of distinct symbols a hash function sees: ASCII plus [`PAD`].
pub const SYMBOLS: usize = 129;
/// Bytes of one step's hash bits in the model file (bit c of byte c / 8 is h_j(c)).
const STEP_BYTES: usize = SYMBOLS.div_ceil(8);
/// u32 words of one step's hash bits on the GPU (bit c % 32 of word c / 32 is h_j(c)).
pub const STEP_WORDS: usize = SYMBOLS.div_ceil(32);
/// Most repetitions: a code's bytes must fit the Hamming kNN (4 x 240 bytes at n = 80).
pub const MAX_REPS: usize = 4;
/// The tensor holding the hash bits, `[reps, 3n, 17]` uint8.
const HASH_TENSOR: &str = "hash_bits";

const META_SEED: &str = "megashtein.cgk.seed";
const META_REPS: &str = "megashtein.cgk.repetitions";
const META_LEN: &str = "megashtein.cgk.length";
const META_ALPHABET: &str = "megashtein.cgk.alphabet";
/// What the alphabet metadata says: bytes read as min(c, 127), plus the padding symbol.
const ALPHABET: &str = "ascii+pad";
const META_COEFFICIENT: &str = "megashtein.estimate_coefficient";
const META_EXPONENT: &str = "megashtein.estimate_exponent";

/// CGK with fixed random bits: `reps` independent walks of `3 * n` steps, and the
/// estimator of edit distance from Hamming distance.
#[derive(Debug, Clone, PartialEq)]
pub struct Cgk {
    n: usize,
    reps: usize,
    /// The seed the bits were drawn from (0 for bits given by [`Cgk::from_fn`]).
    seed: u64,
    /// Bit `c` of `bits[rep * 3n + j]` (two u128 words per step) is h_j(c) of that rep.
    bits: Vec<[u128; 2]>,
    estimator: Estimator,
}

impl Cgk {
    /// Random bits drawn from a `StdRng` seeded with `seed`; the estimator is the
    /// average Hamming distance per repetition until [`Cgk::set_estimator`].
    pub fn new(n: usize, reps: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let bits = (0..reps * 3 * n)
            .map(|_| [rng.random::<u128>(), rng.random::<u128>() & 1])
            .collect();
        Cgk {
            n,
            reps,
            seed,
            bits,
            estimator: Estimator::hamming(reps, 1.0, 1.0),
        }
    }

    /// Given bits: `hash(rep, j, c)` is h_j(c) of repetition `rep` (j 0-based).
    pub fn from_fn(n: usize, reps: usize, hash: impl Fn(usize, usize, u8) -> bool) -> Self {
        let mut bits = vec![[0u128; 2]; reps * 3 * n];
        for rep in 0..reps {
            for j in 0..3 * n {
                for c in 0..SYMBOLS {
                    if hash(rep, j, c as u8) {
                        bits[rep * 3 * n + j][c / 128] |= 1u128 << (c % 128);
                    }
                }
            }
        }
        Cgk {
            n,
            reps,
            seed: 0,
            bits,
            estimator: Estimator::hamming(reps, 1.0, 1.0),
        }
    }

    /// h_j(c) of repetition `rep`.
    pub fn hash(&self, rep: usize, j: usize, c: u8) -> bool {
        let c = c as usize;
        (self.bits[rep * 3 * self.n + j][c / 128] >> (c % 128)) & 1 == 1
    }

    /// Longest input read; longer strings are cut.
    pub fn input_len(&self) -> usize {
        self.n
    }

    pub fn reps(&self) -> usize {
        self.reps
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Bytes of one embedding: `reps * 3n`.
    pub fn width(&self) -> usize {
        self.reps * 3 * self.n
    }

    /// Edit-distance estimate from Hamming distance.
    pub fn estimator(&self) -> Estimator {
        self.estimator
    }

    pub fn set_estimator(&mut self, estimator: Estimator) {
        self.estimator = estimator;
    }

    /// The embedding of `text` (each byte c read as min(c, 127), cut to n characters),
    /// repetitions interleaved by step.
    pub fn embed_into(&self, text: &[u8], out: &mut Vec<u8>) {
        let text = &text[..text.len().min(self.n)];
        let start = out.len();
        out.resize(start + self.width(), PAD);
        let code = &mut out[start..];
        for rep in 0..self.reps {
            let mut i = 0;
            for j in 0..3 * self.n {
                let c = text.get(i).map_or(PAD, |&c| c.min(127));
                code[j * self.reps + rep] = c;
                i += usize::from(self.hash(rep, j, c));
            }
        }
    }

    /// Embeddings of all `texts`, `[texts, width]`.
    pub fn embed_all<T: AsRef<[u8]>>(&self, texts: &[T]) -> Vec<u8> {
        let mut out = Vec::with_capacity(texts.len() * self.width());
        for t in texts {
            self.embed_into(t.as_ref(), &mut out);
        }
        out
    }

    /// Whether the walk of every repetition reads all of `text` (cut to n).
    pub fn reads_whole(&self, text: &[u8]) -> bool {
        let len = text.len().min(self.n);
        let steps = 3 * self.n;
        (0..self.reps).all(|rep| {
            let mut i = 0;
            for j in 0..steps {
                if i >= len {
                    return true;
                }
                i += usize::from(self.hash(rep, j, text[i].min(127)));
            }
            i >= len
        })
    }

    /// The hash bits as the GPU reads them: `[reps, 3n, STEP_WORDS]` u32, bit c % 32
    /// of word c / 32 is h_j(c).
    pub fn hash_words(&self) -> Vec<u32> {
        self.bits
            .iter()
            .flat_map(|step| (0..STEP_WORDS).map(move |w| (step[w / 4] >> (32 * (w % 4))) as u32))
            .collect()
    }

    /// The model file's bytes (safetensors): the hash bits as a `[reps, 3n, 17]` uint8
    /// tensor, the rest in metadata.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let mut data = Vec::with_capacity(self.bits.len() * STEP_BYTES);
        for step in &self.bits {
            for b in 0..STEP_BYTES {
                data.push((step[b / 16] >> (8 * (b % 16))) as u8);
            }
        }
        let mut sd = StateDict::new();
        sd.insert(
            HASH_TENSOR,
            Tensor {
                dtype: DType::U8,
                shape: vec![self.reps, 3 * self.n, STEP_BYTES],
                data,
            },
        );
        let e = self.estimator;
        serialize_safetensors(
            &sd,
            &[
                (META_ARCH, ARCH.to_string()),
                (META_SEED, self.seed.to_string()),
                (META_REPS, self.reps.to_string()),
                (META_LEN, self.n.to_string()),
                (META_ALPHABET, ALPHABET.to_string()),
                (META_COEFFICIENT, e.scale.to_string()),
                (META_EXPONENT, e.exponent.to_string()),
            ],
        )
    }

    /// Parses a CGK model file; `source` names it in messages.
    pub fn from_safetensors(bytes: &[u8], source: &str) -> Result<Cgk> {
        let file = ModelFile::parse(bytes, source, ARCH)?;
        let st = &file.tensors;
        let get = |key: &str| file.get(key);
        let number = |key: &str| file.number::<u64>(key);
        let positive = |key: &str| file.positive(key);
        let seed = number(META_SEED)?;
        let reps = number(META_REPS)? as usize;
        let n = number(META_LEN)? as usize;
        if !(1..=MAX_REPS).contains(&reps) {
            bail!("{source}: {META_REPS} is {reps}, expected 1 to {MAX_REPS}");
        }
        if !(1..=MAX_LEN).contains(&n) || !(3 * n * reps).is_multiple_of(4) {
            bail!(
                "{source}: {META_LEN} is {n}, expected 1 to {MAX_LEN} with 3 x length x \
                 repetitions a multiple of 4"
            );
        }
        if get(META_ALPHABET)? != ALPHABET {
            bail!("{source}: {META_ALPHABET} must be {ALPHABET:?}");
        }
        let estimator =
            Estimator::hamming(reps, positive(META_COEFFICIENT)?, positive(META_EXPONENT)?);
        let names: Vec<String> = st.names().into_iter().map(String::from).collect();
        if names != [HASH_TENSOR] {
            bail!("{source}: a {ARCH} model holds one tensor, {HASH_TENSOR}, not {names:?}");
        }
        let view = st.tensor(HASH_TENSOR).map_err(|e| file.invalid(e))?;
        let shape = [reps, 3 * n, STEP_BYTES];
        if view.dtype() != Dtype::U8 || view.shape() != shape {
            bail!(
                "{source}: {HASH_TENSOR} is {:?} {:?}, expected U8 {shape:?}",
                view.dtype(),
                view.shape()
            );
        }
        let bits = view
            .data()
            .chunks_exact(STEP_BYTES)
            .map(|step| {
                let mut words = [0u128; 2];
                for (b, &byte) in step.iter().enumerate() {
                    words[b / 16] |= u128::from(byte) << (8 * (b % 16));
                }
                words[1] &= 1; // bits of symbols past PAD mean nothing
                words
            })
            .collect();
        Ok(Cgk {
            n,
            reps,
            seed,
            bits,
            estimator,
        })
    }
}

/// Hamming distance of two equally long byte strings.
pub fn hamming(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(x, y)| u32::from(x != y)).sum()
}

/// The power curve `d = coefficient * h^exponent` through the pairs `(h, d)` (h the
/// Hamming distance per repetition, d the edit distance) that best fits log d on log h,
/// over the pairs where both are positive: the relative error is what matters, and a
/// curve through the origin keeps identical codes at estimate 0.
pub fn fit_power_curve(pairs: &[(f64, f64)]) -> Option<(f64, f64)> {
    let (xs, ys): (Vec<f64>, Vec<f64>) = pairs
        .iter()
        .filter(|(h, d)| *h > 0.0 && *d > 0.0)
        .map(|(h, d)| (h.ln(), d.ln()))
        .unzip();
    let line = crate::stats::LinearFit::least_squares(&xs, &ys)?;
    Some((line.intercept.exp(), line.slope))
}
