//! Exact Levenshtein distance from one string to many (re-ranking, joins, training
//! labels): over bytes while both strings are ASCII (the common case, and rapidfuzz's
//! fastest path), over Unicode code points otherwise, as CONTRACTS.md defines the
//! distance for models that read any alphabet.
use rapidfuzz::distance::levenshtein::{self, Args, BatchComparator};

pub struct Exact<'a> {
    text: &'a [u8],
    /// The pattern cached for ASCII partners, when `text` is ASCII.
    ascii: Option<BatchComparator<u8>>,
}

impl<'a> Exact<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Exact {
            text,
            ascii: text
                .is_ascii()
                .then(|| BatchComparator::new(text.iter().copied())),
        }
    }

    /// The edit distance to `other`.
    pub fn distance(&self, other: &[u8]) -> usize {
        match &self.ascii {
            Some(exact) if other.is_ascii() => exact.distance(other.iter().copied()),
            _ => levenshtein::distance(chars(self.text), chars(other)),
        }
    }

    /// The edit distance to `other` if it is at most `max`.
    pub fn distance_within(&self, other: &[u8], max: usize) -> Option<usize> {
        let cutoff = Args::default().score_cutoff(max);
        match &self.ascii {
            Some(exact) if other.is_ascii() => {
                exact.distance_with_args(other.iter().copied(), &cutoff)
            }
            _ => levenshtein::distance_with_args(chars(self.text), chars(other), &cutoff),
        }
    }
}

/// The code points of UTF-8 `text` (an invalid byte counts as one U+FFFD).
fn chars(text: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(text).chars().collect()
}

/// The length the distance counts: bytes of ASCII, code points otherwise.
pub fn char_len(text: &[u8]) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        String::from_utf8_lossy(text).chars().count()
    }
}
