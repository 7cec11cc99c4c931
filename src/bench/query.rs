//! End-to-end fuzzy search against an exact scan: the number users care about.
//!
//! Queries are real misspellings (column 1 of `misspelling<TAB>correct` lines, e.g.
//! codespell's list) or any near-duplicates, sampled with a fixed seed, leaving out ones
//! the model cannot read (non-ASCII for the ASCII models, invalid UTF-8 for CNN-ED) and
//! ones that are themselves strings of the index. The exact answer is an exhaustive scan
//! of every index string with rapidfuzz's bit-parallel Levenshtein on all CPU threads
//! ([`exact_scan`], timed: it is the exact-search peer; over code points where a string
//! is not ASCII, as the re-rank counts). For each candidate count C,
//! [`Searcher::search`] answers the whole sample end to end (embedding, GPU kNN, exact
//! re-rank of C candidates) and is scored tie-aware against the scan:
//! - recall@1: the top hit's exact distance equals the smallest distance in the index;
//! - recall@k: |hits with distance <= the k-th smallest distance in the index|, capped
//!   at k, over k (k = min(k, index size)).
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use rayon::prelude::*;

use crate::edit_distance::Exact;
use crate::search::index::Index;
use crate::search::query::{Answer, MAX_GPU_CANDIDATES, QueryOptions, Searcher};

/// Queries drawn from a pairs file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QuerySample {
    #[serde(skip)]
    pub queries: Vec<Vec<u8>>,
    /// Lines of the pairs file (empty lines and repeated misspellings included).
    pub lines: usize,
    /// Distinct usable misspellings the sample was drawn from.
    pub eligible: usize,
    /// Left out because the model cannot read them (non-ASCII, or invalid UTF-8).
    pub skipped_non_ascii: usize,
    pub skipped_in_index: usize,
    pub seed: u64,
}

/// Up to `n` distinct misspellings (column 1) of the `pairs` file, chosen with `seed`,
/// skipping empty ones, ones the model cannot read (non-ASCII; with `unicode`, invalid
/// UTF-8 only) and ones that are strings of `index`.
pub fn sample_queries(
    pairs: &Path,
    index: &Index,
    n: usize,
    seed: u64,
    unicode: bool,
) -> Result<QuerySample> {
    let data = std::fs::read(pairs).with_context(|| format!("cannot read {}", pairs.display()))?;
    let in_index: HashSet<&[u8]> = (0..index.len()).map(|i| index.string(i)).collect();
    let mut seen = HashSet::new();
    let mut eligible = Vec::new();
    let (mut lines, mut non_ascii, mut skipped_in_index) = (0, 0, 0);
    let body = data.strip_suffix(b"\n").unwrap_or(&data);
    for line in body.split(|&c| c == b'\n') {
        lines += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let query = line.split(|&c| c == b'\t').next().unwrap_or_default();
        if query.is_empty() || !seen.insert(query) {
            continue;
        }
        let readable = query.is_ascii() || (unicode && std::str::from_utf8(query).is_ok());
        if !readable {
            non_ascii += 1;
        } else if in_index.contains(query) {
            skipped_in_index += 1;
        } else {
            eligible.push(query);
        }
    }
    let total = eligible.len();
    eligible.shuffle(&mut StdRng::seed_from_u64(seed));
    eligible.truncate(n);
    Ok(QuerySample {
        queries: eligible.into_iter().map(<[u8]>::to_vec).collect(),
        lines,
        eligible: total,
        skipped_non_ascii: non_ascii,
        skipped_in_index,
        seed,
    })
}

/// The exact answer for every query, and how long the scan took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExactScan {
    /// Smallest exact distance to any index string, per query.
    #[serde(skip)]
    pub min: Vec<u32>,
    /// The k-th smallest exact distance (k = min(k, index size)), per query.
    #[serde(skip)]
    pub kth: Vec<u32>,
    pub k: usize,
    pub threads: usize,
    pub seconds: f64,
    pub queries_per_s: f64,
    /// Query-string pairs compared per second.
    pub pairs_per_s: f64,
}

/// Exhaustive exact scan: the Levenshtein distance of every query to every one of
/// `choices`, queries spread over rayon's threads, one [`Exact`] (rapidfuzz's
/// `BatchComparator` for ASCII) per query. Keeps a histogram of distances per query for
/// the smallest and k-th smallest.
pub fn exact_scan(choices: &[&[u8]], queries: &[&[u8]], k: usize) -> ExactScan {
    let k = k.min(choices.len()).max(1);
    let longest = choices.iter().map(|c| c.len()).max().unwrap_or(0);
    let start = Instant::now();
    let (min, kth): (Vec<u32>, Vec<u32>) = queries
        .par_iter()
        .map(|q| {
            let exact = Exact::new(q);
            let mut histogram = vec![0usize; longest.max(q.len()) + 1];
            for c in choices {
                histogram[exact.distance(c)] += 1;
            }
            let min = histogram.iter().position(|&n| n > 0).unwrap_or(0);
            let mut seen = 0;
            let kth = histogram
                .iter()
                .position(|&n| {
                    seen += n;
                    seen >= k
                })
                .unwrap_or(0);
            (min as u32, kth as u32)
        })
        .unzip();
    let seconds = start.elapsed().as_secs_f64();
    let queries_per_s = queries.len() as f64 / seconds;
    ExactScan {
        min,
        kth,
        k,
        threads: rayon::current_num_threads(),
        seconds,
        queries_per_s,
        pairs_per_s: queries_per_s * choices.len() as f64,
    }
}

/// Tie-aware recall@1 and recall@k of `answers` against `exact` (see the module docs).
pub fn recall(answers: &[Answer], exact: &ExactScan) -> (f64, f64) {
    if answers.is_empty() {
        return (0.0, 0.0);
    }
    let (mut at1, mut atk) = (0usize, 0usize);
    for (i, answer) in answers.iter().enumerate() {
        let top = answer.hits.first().and_then(|h| h.distance);
        at1 += usize::from(top == Some(exact.min[i]));
        atk += answer
            .hits
            .iter()
            .take(exact.k)
            .filter(|h| h.distance.is_some_and(|d| d <= exact.kth[i]))
            .count()
            .min(exact.k);
    }
    let n = answers.len() as f64;
    (at1 as f64 / n, atk as f64 / (n * exact.k as f64))
}

/// One candidate count of the end-to-end benchmark.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CandidateRow {
    pub candidates: usize,
    /// `Searcher::search` over the whole sample, one call: embedding + kNN + re-rank.
    pub seconds: f64,
    pub queries_per_s: f64,
    /// Of `seconds`: embedding the queries on the GPU.
    pub embed_seconds: f64,
    /// Of `seconds`: the GPU kNN with its readback (the CPU ranking of every row where
    /// C covers the index).
    pub knn_seconds: f64,
    /// Of `seconds`: the exact re-rank of C candidates per query on CPU threads.
    pub rerank_seconds: f64,
    pub recall_at_1: f64,
    pub recall_at_k: f64,
}

/// CONTRACTS.md's rule for a default `--candidates`: the smallest C of this grid ...
pub const RULE_GRID: [usize; 7] = [10, 20, 50, 100, 200, 500, MAX_GPU_CANDIDATES];
/// ... reaching this tie-aware recall@1 ...
pub const RULE_RECALL_AT_1: f64 = 0.99;
/// ... over at least this many queries, or the grid's last C where none does
/// ([`rule_candidates`]).
pub const RULE_QUERIES: usize = 1000;

/// The smallest C of `rows` within the GPU search's limit that reaches
/// [`RULE_RECALL_AT_1`].
pub fn smallest_reaching(rows: &[CandidateRow]) -> Option<usize> {
    rows.iter()
        .filter(|r| r.candidates <= MAX_GPU_CANDIDATES && r.recall_at_1 >= RULE_RECALL_AT_1)
        .map(|r| r.candidates)
        .min()
}

/// The rule's C from `rows`, which must cover [`RULE_GRID`].
pub fn rule_candidates(rows: &[CandidateRow]) -> usize {
    smallest_reaching(rows).unwrap_or(MAX_GPU_CANDIDATES)
}

/// Answer `queries` with `searcher` (over `index`) for each of `candidates` (one
/// untimed warm-up first), timing embedding, kNN and re-rank apart, and score each
/// against `exact`. `report` sees each row as soon as it is measured.
pub fn candidate_sweep(
    mut searcher: Searcher,
    index: &Index,
    queries: &[&[u8]],
    exact: &ExactScan,
    candidates: &[usize],
    mut report: impl FnMut(&CandidateRow),
) -> Result<Vec<CandidateRow>> {
    if index.is_empty() || queries.is_empty() {
        bail!("the benchmark needs a non-empty index and at least one query");
    }
    for &c in candidates {
        if c < exact.k {
            bail!("--candidates {c} is below -k {}", exact.k);
        }
        if c > MAX_GPU_CANDIDATES && c < index.len() {
            bail!(
                "--candidates {c} is above the GPU search's limit of {MAX_GPU_CANDIDATES} \
                 (and below the index size {})",
                index.len()
            );
        }
    }
    let opts = |c: usize| QueryOptions {
        k: exact.k,
        candidates: c,
        max_distance: None,
        blowup: crate::search::query::DEFAULT_BLOWUP,
        rerank: true,
    };
    searcher.set_timed(true);
    let mut rows = Vec::new();
    for &c in candidates {
        let warm = &queries[..queries.len().min(16)];
        searcher.search(warm, &opts(c))?;
        let before = searcher.timings();
        let start = Instant::now();
        let answers = searcher.search(queries, &opts(c))?;
        let seconds = start.elapsed().as_secs_f64();
        let after = searcher.timings();
        let (recall_at_1, recall_at_k) = recall(&answers, exact);
        let row = CandidateRow {
            candidates: c,
            seconds,
            queries_per_s: queries.len() as f64 / seconds,
            embed_seconds: (after.embed - before.embed).as_secs_f64(),
            knn_seconds: (after.knn - before.knn).as_secs_f64(),
            rerank_seconds: (after.rerank - before.rerank).as_secs_f64(),
            recall_at_1,
            recall_at_k,
        };
        report(&row);
        rows.push(row);
    }
    Ok(rows)
}

/// `tools/bench_rapidfuzz.py`: `rapidfuzz.process.cdist` of the queries against the
/// choices with `workers=-1`, as a Python user would run the exact scan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RapidfuzzPeer {
    pub name: String,
    pub seconds: f64,
    pub queries_per_s: f64,
    pub pairs_per_s: f64,
    /// Queries whose smallest distance differs from [`ExactScan::min`] (should be 0).
    pub disagreements: usize,
}

/// Run the rapidfuzz peer with `python` on the same queries and choices (passed through
/// temporary files, one string per line) and compare its smallest distances to `exact`.
pub fn rapidfuzz_peer(
    python: &Path,
    choices: &[&[u8]],
    queries: &[&[u8]],
    exact: &ExactScan,
) -> Result<RapidfuzzPeer> {
    let dir = TempDir::new()?;
    let queries_file = dir.write_lines("queries.txt", queries)?;
    let choices_file = dir.write_lines("choices.txt", choices)?;
    let values = super::peer::run_json_lines(
        python,
        "bench_rapidfuzz.py",
        [
            "--queries".as_ref(),
            queries_file.as_os_str(),
            "--choices".as_ref(),
            choices_file.as_os_str(),
        ],
    )?;
    let v = values
        .last()
        .context("tools/bench_rapidfuzz.py printed nothing")?;
    let (Some(seconds), Some(mins)) = (v["seconds"].as_f64(), v["min_distances"].as_array()) else {
        bail!("unexpected output from tools/bench_rapidfuzz.py: {v}");
    };
    if mins.len() != queries.len() {
        bail!(
            "tools/bench_rapidfuzz.py answered {} queries, not {}",
            mins.len(),
            queries.len()
        );
    }
    let disagreements = mins
        .iter()
        .zip(&exact.min)
        .filter(|(theirs, ours)| theirs.as_u64() != Some(u64::from(**ours)))
        .count();
    let queries_per_s = queries.len() as f64 / seconds;
    Ok(RapidfuzzPeer {
        name: format!(
            "rapidfuzz {} (Python {}), process.cdist workers=-1 on {} threads",
            v["rapidfuzz"].as_str().unwrap_or("?"),
            v["python"].as_str().unwrap_or("?"),
            v["threads"]
        ),
        seconds,
        queries_per_s,
        pairs_per_s: queries_per_s * choices.len() as f64,
        disagreements,
    })
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "megashtein-bench-{}-{nanos:08x}",
            std::process::id()
        ));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }

    fn write_lines(&self, name: &str, lines: &[&[u8]]) -> Result<PathBuf> {
        let path = self.0.join(name);
        let mut data = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            data.extend_from_slice(line);
            data.push(b'\n');
        }
        std::fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::query::Hit;

    fn hit(id: usize, distance: u32) -> Hit {
        Hit {
            id,
            distance: Some(distance),
            estimate: 0.0,
        }
    }

    #[test]
    fn exact_scan_finds_smallest_and_kth_distances() {
        let choices: Vec<&[u8]> = vec![b"kitten", b"sitting", b"mitten", b"", b"kitchen"];
        let queries: Vec<&[u8]> = vec![b"kitten", b"xyz"];
        let scan = exact_scan(&choices, &queries, 2);
        assert_eq!(scan.k, 2);
        // kitten: 0 (kitten), 1 (mitten), 2 (kitchen), 3 (sitting), 6 ("").
        assert_eq!(scan.min, vec![0, 3]);
        assert_eq!(scan.kth[0], 1);
        // xyz: 3 to "", 6 to kitten and mitten, ...: the 2nd smallest is 6.
        assert_eq!(scan.kth[1], 6);
        // k above the number of choices is capped.
        assert_eq!(exact_scan(&choices, &queries, 50).k, 5);
        // Non-ASCII strings are compared by code point: 中 is 1 edit from 中文, not 3.
        let choices: Vec<&[u8]> = vec!["中文".as_bytes(), "straße".as_bytes()];
        let queries: Vec<&[u8]> = vec!["中".as_bytes(), "strase".as_bytes()];
        assert_eq!(exact_scan(&choices, &queries, 1).min, vec![1, 1]);
    }

    #[test]
    fn recall_is_tie_aware() {
        let exact = ExactScan {
            min: vec![1, 2],
            kth: vec![2, 3],
            k: 3,
            threads: 1,
            seconds: 1.0,
            queries_per_s: 2.0,
            pairs_per_s: 2.0,
        };
        let answers = vec![
            // Another string at the minimum distance counts; 2 of 3 within the 3rd smallest.
            Answer {
                hits: vec![hit(7, 1), hit(3, 2), hit(9, 4)],
                capped: false,
            },
            // Top hit above the minimum; every hit within the 3rd smallest distance.
            Answer {
                hits: vec![hit(1, 3), hit(2, 3), hit(4, 3)],
                capped: false,
            },
        ];
        let (at1, atk) = recall(&answers, &exact);
        assert_eq!(at1, 0.5);
        assert!((atk - 5.0 / 6.0).abs() < 1e-12);
    }
}
