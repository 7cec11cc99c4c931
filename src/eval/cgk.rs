//! The CGK embedding (Chakraborty, Goldenberg and Koucký, "Streaming algorithms for
//! embedding and computing edit distance in the low distance regime", STOC 2016), as
//! Algorithm 1 of seed 002 states it: a random walk over the input that copies the
//! current character to the output and advances with a random hash bit, giving a string
//! of length 3n compared by Hamming distance.
//!
//! Generalised to bytes and variable lengths: strings are cut to `n` characters (as the
//! model cuts them), positions past the end of a string emit [`PAD`] (a symbol outside
//! ASCII), and the hash functions are h_j: {0..=128} -> {0, 1}, one independent random
//! bit per (step, symbol). Several independent repetitions are averaged.
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
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The symbol written once the walk has passed the end of a string.
pub const PAD: u8 = 128;
/// Number of distinct symbols a hash function sees: ASCII plus [`PAD`].
pub const SYMBOLS: usize = 129;

/// CGK with fixed random bits: `reps` independent walks of `3 * n` steps.
#[derive(Debug, Clone)]
pub struct Cgk {
    n: usize,
    reps: usize,
    /// Bit `c` of `bits[rep * 3n + j]` (two u128 words per step) is h_j(c) of that rep.
    bits: Vec<[u128; 2]>,
}

impl Cgk {
    /// Random bits drawn from a `StdRng` seeded with `seed`.
    pub fn new(n: usize, reps: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let bits = (0..reps * 3 * n)
            .map(|_| [rng.random::<u128>(), rng.random::<u128>() & 1])
            .collect();
        Cgk { n, reps, bits }
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
        Cgk { n, reps, bits }
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

    /// Bytes of one embedding: `reps * 3n`.
    pub fn width(&self) -> usize {
        self.reps * 3 * self.n
    }

    /// The embedding of `text` (each byte c read as min(c, 127), cut to n characters),
    /// repetitions one after another.
    pub fn embed_into(&self, text: &[u8], out: &mut Vec<u8>) {
        let text = &text[..text.len().min(self.n)];
        let steps = 3 * self.n;
        for rep in 0..self.reps {
            let bits = &self.bits[rep * steps..(rep + 1) * steps];
            let mut i = 0;
            for step in bits {
                let c = text.get(i).map_or(PAD, |&c| c.min(127));
                out.push(c);
                let c = c as usize;
                i += ((step[c / 128] >> (c % 128)) & 1) as usize;
            }
        }
    }

    /// Embeddings of all `texts`, `[texts, width]`.
    pub fn embed_all(&self, texts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::with_capacity(texts.len() * self.width());
        for t in texts {
            self.embed_into(t, &mut out);
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
}

/// Hamming distance of two equally long byte strings.
pub fn hamming(a: &[u8], b: &[u8]) -> u32 {
    a.iter().zip(b).map(|(x, y)| u32::from(x != y)).sum()
}
