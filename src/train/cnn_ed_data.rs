//! CNN-ED's training data (the official code's datasets.py): a sample of the user's
//! strings, their all-pairs exact edit distances (computed once, on CPU threads), each
//! string's others ranked by distance, and epochs of triplets drawn from near ranks.
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rayon::prelude::*;

use crate::edit_distance::Exact;

/// The official code's neighbour pool: positives and negatives from ranks 1..=2k, k = 100.
pub const DEFAULT_NEIGHBOURS: usize = 100;

/// An anchor, a positive no farther from it than the negative, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triplet {
    pub anchor: usize,
    pub positive: usize,
    pub negative: usize,
}

/// The training strings and everything derived from their distances.
pub struct TripletData {
    strings: Vec<String>,
    /// `[n, n]` Levenshtein distances over code points.
    distances: Vec<u32>,
    /// For each string, every index ordered by (distance, index): rank 0 is the string
    /// itself unless it has duplicates.
    ranks: Vec<Vec<u32>>,
    /// The mean of the whole distance matrix, diagonal included: targets are ED / avg.
    average: f64,
    /// Triplet partners come from ranks 1..=pool.
    pool: usize,
    /// `[n, n]` distances of the whole strings where some were cut to the model's M
    /// ([`TripletData::with_whole_strings`]): what the estimator's line is fitted on.
    whole_distances: Option<Vec<u32>>,
}

impl TripletData {
    /// `strings` (at least two) with partners from ranks 1..=2 `neighbours`; the
    /// distances are computed on rayon's threads, each pair once.
    pub fn new(strings: Vec<String>, neighbours: usize) -> Self {
        let n = strings.len();
        assert!(n >= 2, "triplets need at least two strings");
        let bytes: Vec<&[u8]> = strings.iter().map(|s| s.as_bytes()).collect();
        // Each pair once (the distance is symmetric): string i against those after it.
        let later: Vec<Vec<u32>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let exact = Exact::new(bytes[i]);
                bytes[i + 1..]
                    .iter()
                    .map(|b| exact.distance(b) as u32)
                    .collect()
            })
            .collect();
        let mut distances = vec![0; n * n];
        for (i, row) in later.iter().enumerate() {
            for (j, &d) in (i + 1..n).zip(row) {
                distances[i * n + j] = d;
                distances[j * n + i] = d;
            }
        }
        let ranks = (0..n)
            .into_par_iter()
            .map(|i| {
                let row = &distances[i * n..(i + 1) * n];
                let mut order: Vec<u32> = (0..n as u32).collect();
                order.sort_by_key(|&j| (row[j as usize], j));
                order
            })
            .collect();
        let average = distances.iter().map(|&d| f64::from(d)).sum::<f64>() / (n * n) as f64;
        TripletData {
            strings,
            distances,
            ranks,
            average,
            pool: (2 * neighbours).clamp(1, n - 1),
            whole_distances: None,
        }
    }

    pub fn strings(&self) -> &[String] {
        &self.strings
    }

    /// The exact distance of strings `i` and `j`.
    pub fn distance(&self, i: usize, j: usize) -> u32 {
        self.distances[i * self.strings.len() + j]
    }

    /// The strings as they were before being cut to the model's M (`whole[i]` begins
    /// with `strings()[i]`): the estimator's line is then fitted on their distances, the
    /// ones a search compares, while the triplets' targets stay those of the cut strings
    /// the network reads. Only the pairs with a cut string are computed again.
    pub fn with_whole_strings(mut self, whole: &[String]) -> Self {
        let n = self.strings.len();
        assert_eq!(whole.len(), n, "one whole string for each string");
        let cut: Vec<usize> = (0..n).filter(|&i| whole[i] != self.strings[i]).collect();
        if cut.is_empty() {
            return self;
        }
        let rows: Vec<Vec<u32>> = cut
            .par_iter()
            .map(|&i| {
                let exact = Exact::new(whole[i].as_bytes());
                whole
                    .iter()
                    .map(|w| exact.distance(w.as_bytes()) as u32)
                    .collect()
            })
            .collect();
        let mut distances = self.distances.clone();
        for (&i, row) in cut.iter().zip(rows) {
            for (j, d) in row.into_iter().enumerate() {
                distances[i * n + j] = d;
                distances[j * n + i] = d;
            }
        }
        self.whole_distances = Some(distances);
        self
    }

    /// Every pair of strings `i < j` with the exact distance an estimator's line is
    /// fitted on: of the whole strings, where [`TripletData::with_whole_strings`] gave
    /// them.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize, u32)> + '_ {
        let n = self.strings.len();
        let distances = self.whole_distances.as_ref().unwrap_or(&self.distances);
        (0..n)
            .flat_map(move |i| (i + 1..n).map(move |j| (i, j)))
            .map(move |(i, j)| (i, j, distances[i * n + j]))
    }

    /// The mean distance over all pairs (the targets' unit).
    pub fn average(&self) -> f64 {
        self.average
    }

    /// One epoch: every string once as anchor, in an order shuffled by `rng`, with a
    /// positive and a negative each drawn from its ranks 1..=pool and swapped when the
    /// positive is the farther (ties stay).
    pub fn epoch(&self, rng: &mut StdRng) -> Vec<Triplet> {
        let mut anchors: Vec<usize> = (0..self.strings.len()).collect();
        anchors.shuffle(rng);
        anchors
            .into_iter()
            .map(|anchor| {
                let mut pick = || self.ranks[anchor][rng.random_range(1..=self.pool)] as usize;
                let (mut positive, mut negative) = (pick(), pick());
                if self.distance(anchor, positive) > self.distance(anchor, negative) {
                    std::mem::swap(&mut positive, &mut negative);
                }
                Triplet {
                    anchor,
                    positive,
                    negative,
                }
            })
            .collect()
    }

    /// The loss head's targets of `triplet`: ED(a, p), ED(a, n), ED(p, n) over the average.
    pub fn targets(&self, t: Triplet) -> [f32; 3] {
        let unit = |i, j| (f64::from(self.distance(i, j)) / self.average) as f32;
        [
            unit(t.anchor, t.positive),
            unit(t.anchor, t.negative),
            unit(t.positive, t.negative),
        ]
    }
}

/// `count` strings of `corpus` drawn without replacement by a `StdRng` seeded with
/// `seed`, in corpus order (the official code's split: a seeded shuffle, the first
/// `count` train).
pub fn sample(corpus: &[String], count: usize, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut picked =
        rand::seq::index::sample(&mut rng, corpus.len(), count.min(corpus.len())).into_vec();
    picked.sort_unstable();
    picked.into_iter().map(|i| corpus[i].clone()).collect()
}

/// An estimator's line `ED = slope * distance + intercept`, fitted on training pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimateFit {
    pub slope: f64,
    pub intercept: f64,
    /// Pearson's correlation of the pairs' embedding and edit distances.
    pub correlation: f64,
    /// The least-squares line did not rise (the distances do not follow the edit
    /// distances), so this is the least-squares line through 0 instead.
    pub through_zero: bool,
}

/// CNN-ED's estimator: the least-squares line through the points `(distance, ED)`; when it
/// does not rise (or every distance is the same), the least-squares line through 0, which
/// does, so that a model comes out of every run and threshold search still screens by
/// distance (the caller warns: such estimates are rough). `None` when every distance or
/// every ED is 0.
pub fn fit_estimate(points: &[(f64, f64)]) -> Option<EstimateFit> {
    use crate::stats::{LinearFit, pearson};
    let (xs, ys): (Vec<f64>, Vec<f64>) = points.iter().copied().unzip();
    let correlation = pearson(&xs, &ys).unwrap_or(0.0);
    let rises = |line: &LinearFit| line.slope > 0.0;
    let (line, through_zero) = match LinearFit::least_squares(&xs, &ys).filter(rises) {
        Some(line) => (line, false),
        None => (LinearFit::through_origin(&xs, &ys).filter(rises)?, true),
    };
    Some(EstimateFit {
        slope: line.slope,
        intercept: line.intercept,
        correlation,
        through_zero,
    })
}
