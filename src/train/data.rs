//! Training pairs, generated on the CPU while the GPU trains.
//!
//! Every pair is cut to [`MAX_LEN`] bytes *before* it is labelled, so a label is always
//! the exact Levenshtein distance of what the model sees. Each pair draws from its own
//! RNG seeded by (seed, step, index), so a step's batch is the same on any thread count
//! and a run can resume at any step.
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use super::hard::Neighbours;
use crate::input::{MAX_LEN, tokenize_batch};

/// One training batch: `a[i]`, `b[i]` already cut to [`MAX_LEN`] bytes, `labels[i]` the
/// exact Levenshtein distance of exactly those cut byte strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PairBatch {
    pub a: Vec<Vec<u8>>,
    pub b: Vec<Vec<u8>>,
    pub labels: Vec<u32>,
}

/// What a training step takes: examples whose strings go through the model as one
/// batch, and their labels.
pub trait Examples {
    /// Strings per example (2 for a pair, 3 for a triplet).
    fn rows(&self) -> usize;
    /// Examples.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Token rows for one batched forward, [`MAX_LEN`] tokens each: every example's
    /// first string, then every second string, and so on.
    fn tokens(&self) -> Vec<u8>;
    /// The labels in the order the loss head reads them.
    fn labels(&self) -> Vec<f32>;
}

impl Examples for PairBatch {
    fn rows(&self) -> usize {
        2
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn tokens(&self) -> Vec<u8> {
        tokens(&[&self.a, &self.b])
    }

    fn labels(&self) -> Vec<f32> {
        self.labels.iter().map(|&d| d as f32).collect()
    }
}

/// One batch of triplets: an anchor `a[i]`, a positive `p[i]` and a negative `n[i]`,
/// cut to [`MAX_LEN`] bytes, with `labels[i]` the exact distances (ap, an, pn); the
/// positive is never farther from the anchor than the negative.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TripletBatch {
    pub a: Vec<Vec<u8>>,
    pub p: Vec<Vec<u8>>,
    pub n: Vec<Vec<u8>>,
    pub labels: Vec<[u32; 3]>,
}

impl Examples for TripletBatch {
    fn rows(&self) -> usize {
        3
    }

    fn len(&self) -> usize {
        self.labels.len()
    }

    fn tokens(&self) -> Vec<u8> {
        tokens(&[&self.a, &self.p, &self.n])
    }

    fn labels(&self) -> Vec<f32> {
        self.labels.iter().flatten().map(|&d| d as f32).collect()
    }
}

/// A step's batch, pairs or triplets as the run's objective wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrainBatch {
    Pairs(PairBatch),
    Triplets(TripletBatch),
}

impl TrainBatch {
    fn examples(&self) -> &dyn Examples {
        match self {
            TrainBatch::Pairs(batch) => batch,
            TrainBatch::Triplets(batch) => batch,
        }
    }
}

impl Examples for TrainBatch {
    fn rows(&self) -> usize {
        self.examples().rows()
    }

    fn len(&self) -> usize {
        self.examples().len()
    }

    fn tokens(&self) -> Vec<u8> {
        self.examples().tokens()
    }

    fn labels(&self) -> Vec<f32> {
        self.examples().labels()
    }
}

/// The token rows of `groups` one after another.
fn tokens(groups: &[&Vec<Vec<u8>>]) -> Vec<u8> {
    let rows: usize = groups.iter().map(|g| g.len()).sum();
    let mut out = Vec::with_capacity(rows * MAX_LEN);
    tokenize_batch(
        groups.iter().flat_map(|g| g.iter()).map(Vec::as_slice),
        &mut out,
    );
    out
}

/// The printable ASCII characters `b' '..=b'~'`, the default alphabet.
pub const PRINTABLE: &[u8] =
    b" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

/// The characters random edits draw from (`--alphabet`): `printable`, `lower` (a-z),
/// `alnum` (a-zA-Z0-9), `dna` (ACGT), or `chars:XYZ...` for those literal ASCII
/// characters (duplicates dropped).
pub fn parse_alphabet(spec: &str) -> Result<Vec<u8>> {
    Ok(match spec {
        "printable" => PRINTABLE.to_vec(),
        "lower" => (b'a'..=b'z').collect(),
        "alnum" => (b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .chain(b'0'..=b'9')
            .collect(),
        "dna" => b"ACGT".to_vec(),
        _ => match spec.strip_prefix("chars:") {
            Some("") => bail!("{spec:?}: chars: needs at least one character"),
            Some(chars) if !chars.is_ascii() => {
                bail!("{spec:?}: only ASCII characters are allowed")
            }
            Some(chars) => {
                let mut seen = [false; 128];
                let mut new = |c: &u8| !std::mem::replace(&mut seen[*c as usize], true);
                chars.bytes().filter(|c| new(c)).collect()
            }
            None => bail!("{spec:?}: expected printable, lower, alnum, dna or chars:XYZ..."),
        },
    })
}

/// Where the anchors of a [`PairGenerator`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Synthetic,
    Corpus,
}

/// Domain constants of the pair seeds: validation pairs never coincide with a training
/// step's pairs.
const TRAIN: u64 = 0x7472_6169_6e00_0001;
const VALIDATION: u64 = 0x7661_6c69_6400_0002;

/// Draws training pairs, synthetic or from a corpus.
///
/// Synthetic pairs: an anchor of uniform length 1..=80 over the alphabet (short, heavily
/// padded strings are common) and its heavy-edit partner, so labels spread over the
/// whole 0..=80 range, not the reference model's bimodal 1-9 / 75-80.
///
/// Corpus pairs learn the user's distribution (the CNN-ED idea): a uniformly drawn corpus
/// string and, by mixture,
/// - 50%: a realistic typo of it (mostly 1-3 keyboard-like edits);
/// - 20%: a near neighbour 1..=16 places away in the sorted corpus (shared prefixes,
///   realistic mid distances);
/// - 15%: a uniformly drawn corpus string (the far range);
/// - 15%: the synthetic heavy-edit partner (keeps mid and high distances covered).
///
/// With a hard-example table ([`Neighbours`]), half the examples instead take a pool
/// string as the anchor and the partner (a triplet's two) from its list of the strings
/// the model places nearest.
pub struct PairGenerator {
    alphabet: Vec<u8>,
    /// The corpus strings cut to [`MAX_LEN`], sorted; empty when synthetic.
    corpus: Vec<Vec<u8>>,
    /// The share of a corpus run's training examples that are synthetic instead.
    synthetic_share: f64,
}

impl PairGenerator {
    /// Panics on an empty alphabet ([`parse_alphabet`] never returns one).
    pub fn synthetic(alphabet: Vec<u8>) -> Self {
        assert!(!alphabet.is_empty(), "the alphabet is empty");
        PairGenerator {
            alphabet,
            corpus: Vec::new(),
            synthetic_share: 0.0,
        }
    }

    /// Corpus strings, ASCII (validated by the caller), any length (cut to [`MAX_LEN`]
    /// here), duplicates allowed (they weight the draw like the corpus does).
    pub fn corpus(mut strings: Vec<Vec<u8>>, alphabet: Vec<u8>) -> Result<Self> {
        if strings.is_empty() {
            bail!("the training corpus is empty");
        }
        for s in &mut strings {
            s.truncate(MAX_LEN);
        }
        strings.sort_unstable();
        Ok(PairGenerator {
            corpus: strings,
            ..Self::synthetic(alphabet)
        })
    }

    /// Makes a `share` (0..=1) of each training step's examples synthetic: a random
    /// anchor and its heavy-edit partner, as in synthetic mode; corpus validation pairs
    /// stay corpus pairs. A model for both random strings and natural text trains on
    /// such a mix.
    pub fn with_synthetic_share(mut self, share: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&share) {
            bail!("--synthetic-share must be 0..=1, got {share}");
        }
        self.synthetic_share = share;
        Ok(self)
    }

    /// The corpus strings, cut and sorted (empty when synthetic).
    pub fn strings(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    pub fn source(&self) -> Source {
        if self.corpus.is_empty() {
            Source::Synthetic
        } else {
            Source::Corpus
        }
    }

    /// The pairs of training step `step`: a pure function of (seed, step, pairs, hard).
    pub fn batch(
        &self,
        seed: u64,
        step: u64,
        pairs: usize,
        hard: Option<&Neighbours>,
    ) -> PairBatch {
        self.draw(step_key(seed, step), pairs, self.mix(hard))
    }

    /// A fixed held-out set, disjoint in seeds from every training step.
    pub fn validation(&self, seed: u64, pairs: usize) -> PairBatch {
        self.draw(splitmix64(seed ^ VALIDATION), pairs, Mix::default())
    }

    /// The triplets of training step `step`: an anchor and two partners drawn like a
    /// pair's partner (so both near it at graded distances), the nearer one the
    /// positive; a pure function of (seed, step, triplets, hard).
    pub fn triplets(
        &self,
        seed: u64,
        step: u64,
        triplets: usize,
        hard: Option<&Neighbours>,
    ) -> TripletBatch {
        let (key, mix) = (step_key(seed, step), self.mix(hard));
        let drawn: Vec<_> = (0..triplets as u64)
            .into_par_iter()
            .map(|i| {
                let rng = &mut StdRng::seed_from_u64(splitmix64(key ^ i));
                let (a, at) = self.anchor(rng, mix);
                let mut p = self.partner(rng, &a, at);
                let mut n = self.partner(rng, &a, at);
                p.truncate(MAX_LEN);
                n.truncate(MAX_LEN);
                let (mut ap, mut an) = (levenshtein(&a, &p), levenshtein(&a, &n));
                if ap > an {
                    std::mem::swap(&mut p, &mut n);
                    std::mem::swap(&mut ap, &mut an);
                }
                let pn = levenshtein(&p, &n);
                (a, p, n, [ap, an, pn])
            })
            .collect();
        let mut batch = TripletBatch::default();
        for (a, p, n, labels) in drawn {
            batch.a.push(a);
            batch.p.push(p);
            batch.n.push(n);
            batch.labels.push(labels);
        }
        batch
    }

    /// What a training draw mixes in.
    fn mix<'t>(&self, hard: Option<&'t Neighbours>) -> Mix<'t> {
        Mix {
            hard,
            synthetic_share: self.synthetic_share,
        }
    }

    fn draw(&self, key: u64, pairs: usize, mix: Mix) -> PairBatch {
        let (a, (b, labels)) = (0..pairs as u64)
            .into_par_iter()
            .map(|i| {
                let rng = &mut StdRng::seed_from_u64(splitmix64(key ^ i));
                let (mut a, at) = self.anchor(rng, mix);
                let mut b = self.partner(rng, &a, at);
                a.truncate(MAX_LEN);
                b.truncate(MAX_LEN);
                let label = levenshtein(&a, &b);
                (a, (b, label))
            })
            .unzip();
        PairBatch { a, b, labels }
    }

    /// A pair's first string: random in synthetic mode (and for the mix's synthetic
    /// share), else a uniformly drawn corpus string with its place in the sorted corpus;
    /// with a hard-example table, a [`HARD_SHARE`] of anchors are pool strings instead,
    /// whose partners come from their lists.
    fn anchor<'t>(&self, rng: &mut StdRng, mix: Mix<'t>) -> (Vec<u8>, Place<'t>) {
        let n = self.corpus.len();
        // No draw for a share of 0, so such runs keep their data.
        if n == 0 || (mix.synthetic_share > 0.0 && rng.random_bool(mix.synthetic_share)) {
            let len = rng.random_range(1..=MAX_LEN);
            return (self.random_string(rng, len), Place::Synthetic);
        }
        if let Some(table) = mix.hard
            && rng.random_bool(HARD_SHARE)
        {
            let slot = rng.random_range(0..table.pool.len());
            return (
                self.corpus[table.pool[slot]].clone(),
                Place::Pool { table, slot },
            );
        }
        let i = rng.random_range(0..n);
        (self.corpus[i].clone(), Place::Corpus(i))
    }

    /// A partner of anchor `a` (at `at`): for a pool anchor, one of its listed
    /// neighbours; else by the mixture described above.
    fn partner(&self, rng: &mut StdRng, a: &[u8], at: Place) -> Vec<u8> {
        let i = match at {
            Place::Synthetic => return self.heavy_partner(rng, a),
            Place::Pool { table, slot } => {
                let rank = rng.random_range(0..table.k);
                return self.corpus[table.neighbour(slot, rank)].clone();
            }
            Place::Corpus(i) => i,
        };
        let n = self.corpus.len();
        match rng.random_range(0..100) {
            0..50 => self.typo(rng, a),
            50..70 => {
                let d = rng.random_range(1..=16);
                let j = if (rng.random_bool(0.5) && i + d < n) || i < d {
                    (i + d).min(n - 1)
                } else {
                    i - d
                };
                self.corpus[j].clone()
            }
            70..85 => self.corpus[rng.random_range(0..n)].clone(),
            _ => self.heavy_partner(rng, a),
        }
    }

    fn random_char(&self, rng: &mut StdRng) -> u8 {
        self.alphabet[rng.random_range(0..self.alphabet.len())]
    }

    fn random_string(&self, rng: &mut StdRng, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.random_char(rng)).collect()
    }

    /// The heavy-edit partner: 15% an independent random string, 5% identical (label 0),
    /// else k uniform random edits with k uniform in 1..=len, one time in ten followed by
    /// a transposition or a block move (variety that single edits rarely give).
    fn heavy_partner(&self, rng: &mut StdRng, a: &[u8]) -> Vec<u8> {
        match rng.random_range(0..100) {
            0..15 => {
                let len = rng.random_range(1..=MAX_LEN);
                self.random_string(rng, len)
            }
            15..20 => a.to_vec(),
            _ => {
                let mut b = a.to_vec();
                for _ in 0..rng.random_range(1..=a.len().max(1)) {
                    let c = self.random_char(rng);
                    match (rng.random_range(0..3), b.len()) {
                        (0, len @ 1..) => b[rng.random_range(0..len)] = c,
                        (1, len @ 1..) => {
                            b.remove(rng.random_range(0..len));
                        }
                        (_, len) => b.insert(rng.random_range(0..=len), c),
                    }
                }
                if b.len() >= 2 && rng.random_bool(0.1) {
                    let i = rng.random_range(0..b.len() - 1);
                    if rng.random_bool(0.5) {
                        b.swap(i, i + 1);
                    } else {
                        let end = (i + rng.random_range(1..=8)).min(b.len());
                        let block: Vec<u8> = b.drain(i..end).collect();
                        let at = rng.random_range(0..=b.len());
                        b.splice(at..at, block);
                    }
                }
                b
            }
        }
    }

    /// A realistic typo: 1 + geometric(0.4) edits (mostly 1-3, at most max(1, len/2)),
    /// each a substitution or insertion of a keyboard neighbour (insertions also double
    /// the character), a deletion, an adjacent transposition or a case flip.
    fn typo(&self, rng: &mut StdRng, s: &[u8]) -> Vec<u8> {
        let mut out = s.to_vec();
        let mut edits = 1;
        while edits < (s.len() / 2).max(1) && rng.random_bool(0.4) {
            edits += 1;
        }
        for _ in 0..edits {
            if out.is_empty() {
                out.push(self.random_char(rng));
                continue;
            }
            let i = rng.random_range(0..out.len());
            let c = out[i];
            let flipped = c ^ 0x20;
            match rng.random_range(0..5) {
                1 => {
                    let d = if rng.random_bool(0.5) {
                        c
                    } else {
                        self.near_key(rng, c)
                    };
                    out.insert(i + rng.random_range(0..=1), d);
                }
                2 => {
                    out.remove(i);
                }
                3 if i + 1 < out.len() => out.swap(i, i + 1),
                4 if c.is_ascii_alphabetic() && self.alphabet.contains(&flipped) => {
                    out[i] = flipped
                }
                _ => out[i] = self.near_key(rng, c),
            }
        }
        out
    }

    /// Mostly a QWERTY neighbour of `c` (same case) that the alphabet allows, else a
    /// random alphabet character.
    fn near_key(&self, rng: &mut StdRng, c: u8) -> u8 {
        let near: Vec<u8> = keyboard_neighbours(c)
            .into_iter()
            .filter(|k| self.alphabet.contains(k))
            .collect();
        if near.is_empty() || rng.random_bool(0.2) {
            self.random_char(rng)
        } else {
            near[rng.random_range(0..near.len())]
        }
    }
}

/// QWERTY rows with their stagger in quarter key widths.
const KEYBOARD: [(&[u8], usize); 4] = [
    (b"1234567890", 0),
    (b"qwertyuiop", 2),
    (b"asdfghjkl", 3),
    (b"zxcvbnm", 5),
];

/// The keys touching `c`'s key (same case); empty off the letter and digit keys.
fn keyboard_neighbours(c: u8) -> Vec<u8> {
    let lower = c.to_ascii_lowercase();
    let Some((row, x)) = KEYBOARD.iter().enumerate().find_map(|(r, (keys, off))| {
        let p = keys.iter().position(|&k| k == lower)?;
        Some((r, off + 4 * p))
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (r, (keys, off)) in KEYBOARD.iter().enumerate() {
        for (p, &k) in keys.iter().enumerate() {
            let dx = (off + 4 * p).abs_diff(x);
            if (r == row && dx == 4) || (r.abs_diff(row) == 1 && dx <= 3) {
                out.push(if c.is_ascii_uppercase() {
                    k.to_ascii_uppercase()
                } else {
                    k
                });
            }
        }
    }
    out
}

/// Where an anchor came from.
#[derive(Debug, Clone, Copy)]
enum Place<'t> {
    Synthetic,
    /// Its place in the sorted corpus.
    Corpus(usize),
    /// Its slot in a hard-example table's pool.
    Pool {
        table: &'t Neighbours,
        slot: usize,
    },
}

/// What one draw mixes into a corpus run's examples.
#[derive(Debug, Clone, Copy, Default)]
struct Mix<'t> {
    hard: Option<&'t Neighbours>,
    synthetic_share: f64,
}

/// The share of corpus examples that are hard with a table: a pool anchor and partners
/// from its list. Half keeps the typo model's realistic pairs as common as the hard ones.
const HARD_SHARE: f64 = 0.5;

/// The RNG key of training step `step`'s draws.
fn step_key(seed: u64, step: u64) -> u64 {
    splitmix64(splitmix64(seed ^ TRAIN) ^ step)
}

/// A well-mixed 64-bit hash, so nearby (seed, step, index) give unrelated RNG seeds.
pub(super) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Exact Levenshtein distance (rapidfuzz's bit-parallel implementation).
pub fn levenshtein(a: &[u8], b: &[u8]) -> u32 {
    rapidfuzz::distance::levenshtein::distance(a.iter().copied(), b.iter().copied()) as u32
}

/// Batches generated ahead on a background thread, so the GPU never waits for data;
/// an iterator of (step, batch).
pub struct Prefetch<B = PairBatch> {
    rx: Option<Receiver<(u64, B)>>,
    producer: Option<JoinHandle<()>>,
    waited: Duration,
}

impl Prefetch<PairBatch> {
    /// Produces `batch(seed, step, pairs)` for each step in order, at most `depth` ahead.
    pub fn spawn(
        generator: Arc<PairGenerator>,
        seed: u64,
        steps: Range<u64>,
        pairs: usize,
        depth: usize,
    ) -> Self {
        Prefetch::spawn_with(steps, depth, move |step| {
            generator.batch(seed, step, pairs, None)
        })
    }
}

impl<B: Send + 'static> Prefetch<B> {
    /// Produces `make(step)` for each step in order, at most `depth` ahead.
    pub fn spawn_with(
        steps: Range<u64>,
        depth: usize,
        make: impl Fn(u64) -> B + Send + 'static,
    ) -> Self {
        let (tx, rx) = sync_channel(depth);
        let producer = std::thread::spawn(move || {
            for step in steps {
                // A failed send means the consumer is gone: stop.
                if tx.send((step, make(step))).is_err() {
                    break;
                }
            }
        });
        Prefetch {
            rx: Some(rx),
            producer: Some(producer),
            waited: Duration::ZERO,
        }
    }
}

impl<B> Prefetch<B> {
    /// Total time the consumer spent blocked in `next()`: the GPU waiting
    /// on data.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl<B> Iterator for Prefetch<B> {
    type Item = (u64, B);

    /// The next (step, batch); `None` when all steps are done. A panic in the producer
    /// is passed on here rather than ending training early.
    fn next(&mut self) -> Option<(u64, B)> {
        let start = Instant::now();
        let got = self.rx.as_ref()?.recv().ok();
        self.waited += start.elapsed();
        if got.is_none()
            && let Some(Err(panic)) = self.producer.take().map(JoinHandle::join)
        {
            std::panic::resume_unwind(panic);
        }
        got
    }
}

impl<B> Drop for Prefetch<B> {
    /// Closes the channel first, so a producer blocked on a full channel wakes and exits.
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook O(nm) dynamic programme, independent of rapidfuzz.
    fn dp(a: &[u8], b: &[u8]) -> u32 {
        let mut row: Vec<u32> = (0..=b.len() as u32).collect();
        for (i, &x) in a.iter().enumerate() {
            let mut diag = row[0];
            row[0] = i as u32 + 1;
            for (j, &y) in b.iter().enumerate() {
                let next = (diag + u32::from(x != y))
                    .min(row[j] + 1)
                    .min(row[j + 1] + 1);
                diag = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }

    fn words() -> Vec<Vec<u8>> {
        let mut words: Vec<Vec<u8>> = include_str!("../../tests/data/eval_base.txt")
            .lines()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        words.push(vec![b'x'; 120]);
        words
    }

    fn check_labels(batch: &PairBatch) {
        for ((a, b), &label) in batch.a.iter().zip(&batch.b).zip(&batch.labels) {
            assert!(a.len() <= MAX_LEN && b.len() <= MAX_LEN);
            assert_eq!(label, dp(a, b), "{a:?} {b:?}");
        }
    }

    #[test]
    fn alphabets() {
        assert_eq!(PRINTABLE, (b' '..=b'~').collect::<Vec<_>>());
        assert_eq!(parse_alphabet("printable").unwrap(), PRINTABLE);
        assert_eq!(parse_alphabet("lower").unwrap().len(), 26);
        assert_eq!(parse_alphabet("alnum").unwrap().len(), 62);
        assert_eq!(parse_alphabet("dna").unwrap(), b"ACGT");
        assert_eq!(parse_alphabet("chars:abca:").unwrap(), b"abc:");
        for bad in ["chars:", "chars:é", "upper", ""] {
            let err = parse_alphabet(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{bad:?}: ")), "{err}");
        }
        let err = parse_alphabet("upper").unwrap_err().to_string();
        assert!(
            err.contains("printable, lower, alnum, dna or chars:"),
            "{err}"
        );
    }

    #[test]
    fn synthetic_labels_spread() {
        let g = PairGenerator::synthetic(PRINTABLE.to_vec());
        assert_eq!(g.source(), Source::Synthetic);
        let batch = g.batch(1, 0, 4000, None);
        check_labels(&batch);
        let mut bins = [0usize; 10];
        for &l in &batch.labels {
            bins[(l as usize / 8).min(9)] += 1;
        }
        eprintln!("synthetic label histogram, 8-wide bins: {bins:?}");
        // Falling with the distance (k <= len, and k edits rarely cost k), but no band
        // below 1.5%: about [30, 20, 15, 12, 8, 5, 3.3, 3, 2.8, 1.9]% at seed 1.
        assert!(bins.iter().all(|&n| n >= 60), "{bins:?}");
        assert!(batch.labels.iter().filter(|&&l| l == 0).count() >= 40);
        let lens = || batch.a.iter().map(Vec::len);
        assert!(lens().filter(|&n| n <= 10).count() >= 200);
        assert!(lens().filter(|&n| n >= 70).count() >= 200);
        assert!(lens().all(|n| n >= 1));
        let dna = PairGenerator::synthetic(b"ACGT".to_vec()).batch(1, 0, 200, None);
        assert!(
            dna.a
                .iter()
                .chain(&dna.b)
                .flatten()
                .all(|c| b"ACGT".contains(c))
        );
    }

    #[test]
    fn deterministic() {
        for g in [
            PairGenerator::synthetic(PRINTABLE.to_vec()),
            PairGenerator::corpus(words(), PRINTABLE.to_vec()).unwrap(),
        ] {
            let batch = g.batch(7, 3, 300, None);
            assert_eq!(batch.len(), 300);
            assert_eq!(batch, g.batch(7, 3, 300, None));
            let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build();
            assert_eq!(
                batch,
                one_thread.unwrap().install(|| g.batch(7, 3, 300, None))
            );
            assert_ne!(batch, g.batch(7, 4, 300, None));
            assert_ne!(batch, g.batch(8, 3, 300, None));
            assert_ne!(g.validation(7, 300), g.batch(7, 0, 300, None));
            assert_eq!(g.validation(7, 300), g.validation(7, 300));
            assert!(g.batch(7, 3, 0, None).is_empty());
        }
    }

    #[test]
    fn triplets_are_labelled_ordered_and_deterministic() {
        for g in [
            PairGenerator::synthetic(PRINTABLE.to_vec()),
            PairGenerator::corpus(words(), PRINTABLE.to_vec()).unwrap(),
        ] {
            let batch = g.triplets(7, 3, 300, None);
            assert_eq!(batch.len(), 300);
            assert_eq!(batch, g.triplets(7, 3, 300, None));
            assert_ne!(batch, g.triplets(7, 4, 300, None));
            let mut graded = 0;
            for i in 0..batch.len() {
                let (a, p, n) = (&batch.a[i], &batch.p[i], &batch.n[i]);
                assert!(a.len() <= MAX_LEN && p.len() <= MAX_LEN && n.len() <= MAX_LEN);
                let [ap, an, pn] = batch.labels[i];
                assert_eq!([ap, an, pn], [dp(a, p), dp(a, n), dp(p, n)]);
                assert!(ap <= an, "the positive is the nearer partner");
                graded += usize::from(ap < an);
            }
            assert!(graded > 200, "only {graded} of 300 triplets have ap < an");
            // Tokens: anchors, then positives, then negatives; labels three a triplet.
            let tokens = batch.tokens();
            assert_eq!(tokens.len(), 3 * 300 * MAX_LEN);
            assert_eq!(
                &tokens[300 * MAX_LEN..][..batch.p[0].len()],
                &batch.p[0][..]
            );
            assert_eq!(batch.labels().len(), 900);
        }
    }

    #[test]
    fn corpus_pairs() {
        let corpus = words();
        let g = PairGenerator::corpus(corpus.clone(), b"abcdefghijklmnopqrstuvwxyz".to_vec());
        let g = g.unwrap();
        assert_eq!(g.source(), Source::Corpus);
        let batch = g.batch(3, 0, 2000, None);
        check_labels(&batch);
        let cut: Vec<&[u8]> = corpus.iter().map(|s| &s[..s.len().min(MAX_LEN)]).collect();
        assert!(batch.a.iter().all(|a| cut.contains(&a.as_slice())));
        let mut bins = [0usize; 10];
        for &l in &batch.labels {
            bins[(l as usize / 8).min(9)] += 1;
        }
        eprintln!("corpus (3,000 words) label histogram, 8-wide bins: {bins:?}");

        let rng = &mut StdRng::seed_from_u64(5);
        let near = (0..2000)
            .filter(|_| {
                let a = &corpus[rng.random_range(0..corpus.len() - 1)];
                (1..=3).contains(&levenshtein(a, &g.typo(rng, a)))
            })
            .count();
        eprintln!("typos within 1-3 edits: {near} of 2000");
        assert!(near >= 1700, "{near}");
        assert_eq!(keyboard_neighbours(b'G'), b"TYFHVB");
        assert_eq!(keyboard_neighbours(b'q'), b"12wa");
        assert!(keyboard_neighbours(b'-').is_empty());

        let one = PairGenerator::corpus(vec![b"hello".to_vec()], PRINTABLE.to_vec()).unwrap();
        let batch = one.batch(1, 1, 100, None);
        check_labels(&batch);
        assert!(batch.a.iter().all(|a| a == b"hello"));
        let err = PairGenerator::corpus(vec![], PRINTABLE.to_vec())
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "the training corpus is empty");
    }

    #[test]
    fn synthetic_share_mixes_random_anchors_into_training_only() {
        let lower = b"abcdefghijklmnopqrstuvwxyz".to_vec();
        let plain = PairGenerator::corpus(words(), lower.clone()).unwrap();
        let corpus: std::collections::HashSet<Vec<u8>> = plain.strings().iter().cloned().collect();
        let mixed = PairGenerator::corpus(words(), lower)
            .unwrap()
            .with_synthetic_share(0.3)
            .unwrap();
        let batch = mixed.batch(4, 2, 2000, None);
        check_labels(&batch);
        let random = batch.a.iter().filter(|a| !corpus.contains(*a)).count();
        assert!(
            (500..700).contains(&random),
            "{random} synthetic anchors of 2000"
        );
        let triplets = mixed.triplets(4, 2, 1000, None);
        let random = triplets.a.iter().filter(|a| !corpus.contains(*a)).count();
        assert!(
            (220..380).contains(&random),
            "{random} synthetic anchors of 1000"
        );
        // Validation pairs stay corpus pairs; a share of 0 draws exactly as before.
        assert_eq!(mixed.validation(4, 500), plain.validation(4, 500));
        let none = PairGenerator::corpus(words(), b"abc".to_vec()).unwrap();
        let zero = PairGenerator::corpus(words(), b"abc".to_vec()).unwrap();
        let zero = zero.with_synthetic_share(0.0).unwrap();
        assert_eq!(none.batch(4, 2, 300, None), zero.batch(4, 2, 300, None));
        for bad in [-0.1, 1.5, f64::NAN] {
            let g = PairGenerator::synthetic(b"ab".to_vec());
            assert!(g.with_synthetic_share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hard_partners_come_from_the_table() {
        let g = PairGenerator::corpus(words(), b"abcdefghijklmnopqrstuvwxyz".to_vec()).unwrap();
        let corpus = g.strings();
        // Pool slot s is corpus place 7s; its neighbours are slots s+1 and s+2 (mod 20).
        let table = Neighbours {
            step: 0,
            pool: (0..20).map(|s| 7 * s).collect(),
            lists: (0..20u32)
                .flat_map(|s| [(s + 1) % 20, (s + 2) % 20])
                .collect(),
            k: 2,
        };
        let hard_pairs = |batch: &PairBatch| {
            let (mut pooled, mut from_table) = (0, 0);
            for (a, b) in batch.a.iter().zip(&batch.b) {
                let Some(slot) = table.pool.iter().position(|&i| &corpus[i] == a) else {
                    continue;
                };
                pooled += 1;
                let listed = (0..table.k).map(|rank| table.neighbour(slot, rank));
                from_table += usize::from(listed.map(|j| &corpus[j]).any(|s| s == b));
            }
            (pooled, from_table)
        };
        let batch = g.batch(3, 0, 2000, Some(&table));
        check_labels(&batch);
        assert_eq!(batch, g.batch(3, 0, 2000, Some(&table)));
        // Half the anchors from the pool, their partners from its lists (a few other
        // anchors equal a pool string by chance).
        let half_hard = |batch: &PairBatch| {
            let (pooled, from_table) = hard_pairs(batch);
            assert!(
                (900..1100).contains(&pooled),
                "{pooled} pool anchors of 2000"
            );
            assert!(
                from_table + 40 >= pooled,
                "{from_table} table partners of {pooled}"
            );
        };
        half_hard(&batch);
        // Without the table: no more pool anchors than chance.
        let (pooled, _) = hard_pairs(&g.batch(3, 0, 2000, None));
        assert!(pooled < 100, "{pooled}");
        // Triplets draw both partners the same way.
        let triplets = g.triplets(3, 0, 1000, Some(&table));
        assert_eq!(triplets, g.triplets(3, 0, 1000, Some(&table)));
        let as_pairs = PairBatch {
            a: [triplets.a.clone(), triplets.a.clone()].concat(),
            b: [triplets.p.clone(), triplets.n.clone()].concat(),
            labels: Vec::new(),
        };
        half_hard(&as_pairs);
    }

    #[test]
    fn tokens_layout() {
        let batch = PairBatch {
            a: vec![b"ab".to_vec(), b"".to_vec()],
            b: vec![b"c".to_vec(), vec![b'z'; MAX_LEN]],
            labels: vec![2, 80],
        };
        let t = batch.tokens();
        assert_eq!(t.len(), 2 * 2 * MAX_LEN);
        assert_eq!(&t[..3], &[97, 98, 0]);
        assert!(t[MAX_LEN..2 * MAX_LEN].iter().all(|&c| c == 0));
        assert_eq!(&t[2 * MAX_LEN..2 * MAX_LEN + 2], &[99, 0]);
        assert!(t[3 * MAX_LEN..].iter().all(|&c| c == 122));
    }

    #[test]
    fn prefetch() {
        let g = Arc::new(PairGenerator::synthetic(PRINTABLE.to_vec()));
        let mut p = Prefetch::spawn(g.clone(), 9, 5..9, 64, 2);
        for step in 5..9 {
            let (got, batch) = p.next().unwrap();
            assert_eq!(got, step);
            assert_eq!(batch, g.batch(9, step, 64, None));
        }
        assert!(p.next().is_none());
        assert!(p.next().is_none());
        eprintln!("prefetch waited {:?}", p.waited());

        let start = Instant::now();
        let mut p = Prefetch::spawn(g, 9, 0..u64::MAX, 64, 2);
        p.next().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(p);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn throughput() {
        for g in [
            PairGenerator::synthetic(PRINTABLE.to_vec()),
            PairGenerator::corpus(words(), PRINTABLE.to_vec()).unwrap(),
        ] {
            g.batch(0, 0, 256, None);
            let start = Instant::now();
            let steps = 200;
            for step in 0..steps {
                g.batch(0, step, 256, None);
            }
            let rate = (steps * 256) as f64 / start.elapsed().as_secs_f64();
            eprintln!("{:?}: {rate:.0} pairs/s (batches of 256)", g.source());
        }
    }
}
