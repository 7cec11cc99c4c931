//! The evaluation data: the built-in set, user files, and the seeded generators of
//! synthetic pairs, typo'd pairs and held-out queries.
use std::collections::HashSet;
use std::io::{BufRead, Cursor};
use std::path::Path;

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::input::{LineReader, NonAscii};
use crate::model::params::MAX_LEN;
use crate::train::data::PRINTABLE;

/// Built-in base: 3,000 words of the CNN-ED word list (`cnned_word.txt`, shipped with the
/// CNN-ED code).
pub const BUILTIN_BASE: &str = include_str!("../../tests/data/eval_base.txt");
/// Built-in misspellings: 300 codespell pairs whose correct word is in the base and whose
/// misspelling is not.
pub const BUILTIN_PAIRS: &str = include_str!("../../tests/data/eval_pairs.tsv");

/// A real misspelling and its correction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misspelling {
    pub wrong: Vec<u8>,
    pub correct: Vec<u8>,
    /// 1-based line in its file.
    pub line: u64,
}

/// The strings of a base file (the input rules of `embed`), with the warnings of
/// reading it (lines skipped, replaced or cut, as `embed` reports them).
pub fn read_base<R: BufRead>(reader: LineReader<R>) -> Result<(Vec<Vec<u8>>, Vec<String>)> {
    let (lines, stats) = reader.read_all()?;
    let strings = lines.into_iter().map(|l| l.text).collect();
    Ok((strings, stats.warnings()))
}

pub fn read_base_file(path: &Path, mode: NonAscii) -> Result<(Vec<Vec<u8>>, Vec<String>)> {
    read_base(LineReader::open(path, mode)?)
}

pub fn builtin_base() -> Vec<Vec<u8>> {
    read_base(LineReader::new(
        Cursor::new(BUILTIN_BASE.as_bytes()),
        "the built-in base",
        NonAscii::Error,
    ))
    .expect("the built-in base is valid")
    .0
}

/// Lines `misspelling<TAB>correct` (the first tab splits; the correct word is the rest of
/// the line). A line without a tab, or with an empty side, is an error naming the source
/// and line; non-ASCII lines follow `mode` like `embed`'s input.
/// Also returns the warnings of reading them (lines skipped, replaced or cut).
pub fn read_pairs<R: BufRead>(reader: LineReader<R>) -> Result<(Vec<Misspelling>, Vec<String>)> {
    let name = reader.name().to_string();
    let (lines, stats) = reader.read_all()?;
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let Some(tab) = line.text.iter().position(|&b| b == b'\t') else {
            bail!(
                "{name}:{}: expected misspelling<TAB>correct, found no tab in {:?}",
                line.number,
                String::from_utf8_lossy(&line.text)
            );
        };
        let (wrong, correct) = (&line.text[..tab], &line.text[tab + 1..]);
        if wrong.is_empty() || correct.is_empty() {
            bail!(
                "{name}:{}: expected misspelling<TAB>correct, one side is empty",
                line.number
            );
        }
        out.push(Misspelling {
            wrong: wrong.to_vec(),
            correct: correct.to_vec(),
            line: line.number,
        });
    }
    Ok((out, stats.warnings()))
}

pub fn read_pairs_file(path: &Path, mode: NonAscii) -> Result<(Vec<Misspelling>, Vec<String>)> {
    read_pairs(LineReader::open(path, mode)?)
}

pub fn builtin_pairs() -> Vec<Misspelling> {
    read_pairs(LineReader::new(
        Cursor::new(BUILTIN_PAIRS.as_bytes()),
        "the built-in misspellings",
        NonAscii::Error,
    ))
    .expect("the built-in misspellings are valid")
    .0
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// `edits` random single-character edits (substitute, insert, delete) over `alphabet`.
pub fn typo(rng: &mut StdRng, s: &[u8], edits: usize, alphabet: &[u8]) -> Vec<u8> {
    let mut out = s.to_vec();
    for _ in 0..edits {
        let op = if out.is_empty() {
            1
        } else {
            rng.random_range(0..3)
        };
        let c = alphabet[rng.random_range(0..alphabet.len())];
        match op {
            0 => {
                let i = rng.random_range(0..out.len());
                out[i] = c;
            }
            1 => {
                let i = rng.random_range(0..=out.len());
                out.insert(i, c);
            }
            _ => {
                let i = rng.random_range(0..out.len());
                out.remove(i);
            }
        }
    }
    out
}

fn random_string(rng: &mut StdRng, len: usize, alphabet: &[u8]) -> Vec<u8> {
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

/// Synthetic pairs over all lengths 1..=80 and all distances: a random lower-case
/// string of uniform length, and either k uniform random edits of it (k uniform in
/// 1..=length) or, one time in five, an independent random string. Identical pairs are
/// drawn again. Both sides stay within 80 characters.
pub fn synthetic_pairs(seed: u64, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    random_pairs(seed, n, LOWER)
}

/// [`synthetic_pairs`] over printable ASCII (`train`'s synthetic alphabet).
pub fn printable_pairs(seed: u64, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    random_pairs(seed, n, PRINTABLE)
}

fn random_pairs(seed: u64, n: usize, alphabet: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = rng.random_range(1..=MAX_LEN);
        let a = random_string(&mut rng, len, alphabet);
        let b = if rng.random_range(0..5) == 0 {
            let len = rng.random_range(1..=MAX_LEN);
            random_string(&mut rng, len, alphabet)
        } else {
            let k = rng.random_range(1..=len);
            typo(&mut rng, &a, k, alphabet)
        };
        if a != b && !b.is_empty() && b.len() <= MAX_LEN {
            out.push((a, b));
        }
    }
    out
}

/// Pairs (base string, 1-3 random edits of it), different strings.
pub fn typo_pairs(seed: u64, base: &[Vec<u8>], n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    if base.is_empty() {
        return out;
    }
    let mut tries = 0;
    while out.len() < n && tries < 100 * n {
        tries += 1;
        let s = &base[rng.random_range(0..base.len())];
        let k = rng.random_range(1..=3);
        let t = typo(&mut rng, s, k, LOWER);
        if &t != s {
            out.push((s.clone(), t));
        }
    }
    out
}

/// Held-out queries: 1-3 random edits of random base strings, none of them a base
/// string, no two alike. Fewer than `n` only if the base leaves too few.
pub fn held_out_queries(seed: u64, base: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let in_base: HashSet<&[u8]> = base.iter().map(|s| s.as_slice()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    if base.is_empty() {
        return out;
    }
    let mut tries = 0;
    while out.len() < n && tries < 100 * n {
        tries += 1;
        let s = &base[rng.random_range(0..base.len())];
        let k = rng.random_range(1..=3);
        let t = typo(&mut rng, s, k, LOWER);
        if !in_base.contains(t.as_slice()) && seen.insert(t.clone()) {
            out.push(t);
        }
    }
    out
}
