//! `join`, `dedup` and `export` of a CNN-ED model end to end through the binary: DNA-like
//! families beside strings with ß, é, ü, CJK and emoji (some longer than the model's M,
//! one with a tab and a backslash, an empty one, exact copies), against exact Levenshtein
//! distances over code points computed here and the vectors `embed` writes.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{levenshtein, ok, random_cnn_ed, run_bin};
use rand::Rng;
use serde_json::Value;

/// The model's estimator line: estimate = max(0, SLOPE * ||e1 - e2|| + INTERCEPT). The
/// random network's distances are ~1e-3: the slope's term is a few units.
const SLOPE: f32 = 1500.0;
const INTERCEPT: f32 = 5.5;
/// The model's padded length: the longer DNA strings are cut for the model (and kept
/// whole for the exact distances).
const MAX_LEN: usize = 32;

struct Corpus {
    dir: PathBuf,
    strings: Vec<String>,
    /// Rows of `a.idx`: the first `half` strings; `b.idx` holds the rest.
    half: usize,
    /// The model's alphabet.
    alphabet: Vec<char>,
}

impl Corpus {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// Exact distance between strings `i` and `j`, over code points.
    fn distance(&self, i: usize, j: usize) -> u32 {
        let chars = |s: &str| s.chars().collect::<Vec<char>>();
        levenshtein(&chars(&self.strings[i]), &chars(&self.strings[j]))
    }

    /// (a, b, distance) of every pair within `d`: `a < b` over `rows` x `rows`, or every
    /// pair of `rows` x `with`.
    fn exact_pairs(&self, rows: &[usize], with: Option<&[usize]>, d: u32) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for (a, &i) in rows.iter().enumerate() {
            let (others, from) = match with {
                Some(w) => (w, 0),
                None => (rows, a + 1),
            };
            for (b, &j) in others.iter().enumerate().skip(from) {
                let distance = self.distance(i, j);
                if distance <= d {
                    pairs.push((a, b, distance));
                }
            }
        }
        pairs
    }
}

type Pair = (usize, usize, u32);

/// The strings, the model (a random CNN-ED over 37 letters with ä ö ü ß é è ñ 中 文 字 😀,
/// and the line above), and its indexes: `all.idx` (f32) and `all16.idx` (f16) of every
/// string, `a.idx` and `b.idx` of the two halves, `all.npy` from `embed` for comparison.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut rng = common::rng(21);
        let mut strings: Vec<String> = Vec::new();
        // DNA-like families: roots of 20-44 letters, variants of 1-3 edits, some of
        // which bring in é or ü.
        let dna: Vec<char> = "acgt".chars().collect();
        for _ in 0..8 {
            let len = rng.random_range(20..=44);
            let root: Vec<char> = (0..len).map(|_| dna[rng.random_range(0..4)]).collect();
            strings.push(root.iter().collect());
            for _ in 0..rng.random_range(0..=3) {
                let mut v = root.clone();
                for _ in 0..rng.random_range(1..=3) {
                    let at = rng.random_range(0..v.len());
                    let c = ['a', 'c', 'g', 't', 'é', 'ü'][rng.random_range(0..6)];
                    match rng.random_range(0..3) {
                        0 => v[at] = c,
                        1 => v.insert(at, c),
                        _ => {
                            v.remove(at);
                        }
                    }
                }
                strings.push(v.into_iter().collect());
            }
        }
        // Near duplicates whose lengths in bytes and in code points differ, characters
        // outside the model's alphabet (S, ï, the space, the tab, the backslash: read as
        // padding), an empty string, and exact copies.
        for s in [
            "straße",
            "strasse",
            "strase",
            "Straße",
            "straßen",
            "café crème",
            "cafe creme",
            "naïve café",
            "中文字",
            "中文",
            "中文ab",
            "😀😀😀😀😀😀",
            "😀😀😀😀",
            "😀😀abc",
            "😀abc",
            "aéé",
            "aaaa",
            "ü\tzé\\x",
            "ü\tze\\x",
            "",
        ] {
            strings.push(s.to_string());
        }
        strings.push("straße".to_string());
        strings.push("café crème".to_string());
        strings.push(strings[0].clone());
        for i in (1..strings.len()).rev() {
            let j = rng.random_range(0..=i);
            strings.swap(i, j);
        }
        let dir = tempfile::tempdir().unwrap().keep();
        let half = strings.len() / 2;
        let mut model = random_cnn_ed(4, 37, MAX_LEN, 5, 0);
        let alphabet = model.alphabet().to_vec();
        let c = Corpus {
            dir,
            strings,
            half,
            alphabet,
        };
        // Centred as `train` leaves a model, so that the embeddings' differences are not
        // lost next to their common part (in the f16 index above all).
        model.center_on(&model.embed_all(&c.strings));
        model.set_estimator(SLOPE, INTERCEPT);
        model.save(Path::new(&c.path("model.safetensors"))).unwrap();
        write_lines(&c.path("all.txt"), &c.strings);
        write_lines(&c.path("a.txt"), &c.strings[..half]);
        write_lines(&c.path("b.txt"), &c.strings[half..]);
        for (input, output, precision) in [
            ("all.txt", "all.idx", Some("f32")),
            ("all.txt", "all16.idx", Some("f16")),
            ("a.txt", "a.idx", Some("f32")),
            ("b.txt", "b.idx", Some("f32")),
            ("all.txt", "all.npy", None),
        ] {
            let model = c.path("model.safetensors");
            let (input, output) = (c.path(input), c.path(output));
            let mut args = vec!["embed", "--model", &model, "-i", &input, "-o", &output];
            if let Some(precision) = precision {
                args.extend(["--precision", precision]);
            }
            let out = run_bin(&args, b"");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            ok(out);
            if input.ends_with("all.txt") {
                assert!(stderr.contains(&unseen_warning(&c)), "{stderr}");
            }
        }
        c
    })
}

fn write_lines(path: &str, strings: &[String]) {
    std::fs::write(path, strings.join("\n") + "\n").unwrap();
}

/// Records of `--format json` output, one a line.
fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A TSV field back as the string (query TSV's escapes: \t \n \r \\).
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            other => panic!("{field:?}: unknown escape {other:?}"),
        }
    }
    out
}

/// Run a command that must succeed; its stdout.
fn bin(args: &[&str]) -> String {
    ok(run_bin(args, b""))
}

/// The embeddings `embed` wrote to `all.npy`, row by row.
fn embed_rows(c: &Corpus) -> Vec<Vec<f32>> {
    let (shape, values) = megashtein_gpu::io::read_npy_f32(Path::new(&c.path("all.npy"))).unwrap();
    assert_eq!(shape, [c.strings.len(), 128]);
    values.chunks(128).map(<[f32]>::to_vec).collect()
}

fn euclidean(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// One pair of `join --format json` output.
struct Joined {
    a: usize,
    b: usize,
    distance: u32,
    estimate: f32,
}

/// `join` of `index` (rows `left` of the corpus) with itself, or `--with` (rows `right`),
/// in JSON, each record's lines and strings checked against its rows.
fn join(
    c: &Corpus,
    index: &str,
    with: Option<(&str, &[usize])>,
    left: &[usize],
    extra: &[&str],
) -> Vec<Joined> {
    let index = c.path(index);
    let mut args = vec!["join", "--index", &index, "--format", "json"];
    let with_path = with.map(|(name, _)| c.path(name));
    if let Some(path) = &with_path {
        args.extend(["--with", path]);
    }
    let right = with.map_or(left, |(_, rows)| rows);
    let out = bin(&[&args[..], extra].concat());
    json_lines(&out)
        .iter()
        .map(|r| {
            let (a, b) = (id(&r["a_id"]), id(&r["b_id"]));
            assert_eq!(r["a_line"], a as u64 + 1, "{r}");
            assert_eq!(r["b_line"], b as u64 + 1, "{r}");
            assert_eq!(r["a_string"], c.strings[left[a]], "{r}");
            assert_eq!(r["b_string"], c.strings[right[b]], "{r}");
            Joined {
                a,
                b,
                distance: r["distance"].as_u64().unwrap() as u32,
                estimate: r["estimate"].as_f64().unwrap() as f32,
            }
        })
        .collect()
}

fn id(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("not an id: {v}")) as usize
}

fn sorted_pairs(joined: &[Joined]) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = joined.iter().map(|j| (j.a, j.b, j.distance)).collect();
    pairs.sort();
    pairs
}

fn every_row(c: &Corpus) -> Vec<usize> {
    (0..c.strings.len()).collect()
}

/// With every row a candidate and no screen, the join is the exact one over code points,
/// in either precision, and each estimate is the model's line on `embed`'s vectors.
#[test]
fn join_with_every_row_a_candidate_is_the_exact_join() {
    let c = corpus();
    let all = every_row(c);
    let n = all.len().to_string();
    let vectors = embed_rows(c);
    for (index, d) in [("all.idx", 0u32), ("all.idx", 3), ("all16.idx", 3)] {
        let ds = d.to_string();
        let extra = ["--max-distance", &ds, "-C", &n, "--blowup", "inf"];
        let joined = join(c, index, None, &all, &extra);
        let want = c.exact_pairs(&all, None, d);
        assert!(want.iter().any(|p| p.2 == d), "D = {d}: no pair at D");
        // Distances of whole strings, not of the model's first M characters.
        let long = |row: usize| c.strings[row].chars().count() > MAX_LEN;
        assert!(
            d == 0 || want.iter().any(|p| long(p.0) && p.2 > 0),
            "D = {d}: no pair of a string longer than M"
        );
        assert_eq!(sorted_pairs(&joined), want, "{index}, D = {d}");
        // The slope's term to 1e-5 (f32 rows) or 2e-3 (f16 rows), beside the intercept.
        let tolerance = if index == "all.idx" { 1e-5 } else { 2e-3 };
        for j in &joined {
            let term = f64::from(SLOPE) * euclidean(&vectors[j.a], &vectors[j.b]);
            let want = term + f64::from(INTERCEPT);
            assert!(
                (f64::from(j.estimate) - want).abs() <= tolerance * term + 1e-6 * want,
                "{index}: rows {} and {}: estimate {}, want {want}",
                j.a,
                j.b,
                j.estimate
            );
        }
    }
}

/// TSV carries the same pairs, its strings escaped as in query TSV (the tab and the
/// backslash of "ü\tzé\\x" too): eight fields a line.
#[test]
fn join_tsv_escapes_the_strings_of_the_json_pairs() {
    let c = corpus();
    let all = every_row(c);
    let n = all.len().to_string();
    let extra = ["--max-distance", "2", "-C", &n, "--blowup", "inf"];
    let want = sorted_pairs(&join(c, "all.idx", None, &all, &extra));
    let index = c.path("all.idx");
    let out = bin(&[&["join", "--index", &index, "--format", "tsv"][..], &extra].concat());
    let mut got: Vec<Pair> = out
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 8, "{line:?}");
            let (a, b) = (f[0].parse().unwrap(), f[3].parse().unwrap());
            assert_eq!(unescape(f[2]), c.strings[a], "{line:?}");
            assert_eq!(unescape(f[5]), c.strings[b], "{line:?}");
            (a, b, f[6].parse().unwrap())
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    let escaped = c.strings.iter().position(|s| s == "ü\tzé\\x").unwrap();
    assert!(
        want.iter().any(|p| p.0 == escaped || p.1 == escaped),
        "the escaped string joins nothing at D = 2"
    );
}

/// Between two indexes: every pair of one row of each within D, b's ids its own.
#[test]
fn cross_join_is_the_exact_cross_join() {
    let c = corpus();
    let left: Vec<usize> = (0..c.half).collect();
    let right: Vec<usize> = (c.half..c.strings.len()).collect();
    let n = c.strings.len().to_string();
    let extra = ["--max-distance", "3", "-C", &n, "--blowup", "inf"];
    let joined = join(c, "a.idx", Some(("b.idx", &right)), &left, &extra);
    let want = c.exact_pairs(&left, Some(&right), 3);
    assert!(want.iter().any(|p| p.2 == 0), "no copy across the halves");
    assert_eq!(sorted_pairs(&joined), want);
}

/// The screen compares a CNN-ED estimate without its line's intercept: with a blowup
/// that just covers the largest slope term among the true pairs, every pair is found
/// (with the intercept of 5.5 counted, that pair and others would not be); just below
/// it, that pair is screened out.
#[test]
fn join_screens_without_the_intercept() {
    let c = corpus();
    let all = every_row(c);
    let n = all.len().to_string();
    let d = 3u32;
    let ds = d.to_string();
    let extra = ["--max-distance", &ds, "-C", &n, "--blowup", "inf"];
    let unscreened = join(c, "all.idx", None, &all, &extra);
    let want = c.exact_pairs(&all, None, d);
    // The screened value, as the join computes it: estimate - intercept, in f32.
    let (widest, term) = unscreened
        .iter()
        .filter(|j| j.distance > 0)
        .map(|j| ((j.a, j.b), j.estimate - INTERCEPT))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap();
    assert!(term > 0.0, "{term}");
    for (factor, complete) in [(1.0 + 1e-5, true), (1.0 - 1e-3, false)] {
        let blowup = (term / d as f32 * factor).to_string();
        let extra = ["--max-distance", &ds, "-C", &n, "--blowup", &blowup];
        let got = sorted_pairs(&join(c, "all.idx", None, &all, &extra));
        if complete {
            assert_eq!(got, want, "blowup {blowup}");
        } else {
            assert!(got.iter().all(|p| want.contains(p)), "blowup {blowup}");
            assert!(
                !got.iter().any(|p| (p.0, p.1) == widest),
                "blowup {blowup}: {widest:?} passed"
            );
        }
    }
}

/// How `dedup` should group: which pairs link, which member represents its cluster.
#[derive(Clone, Copy)]
enum Link {
    Distance(u32),
    /// distance <= R * the longer string's length, in code points, or in bytes (what the
    /// test makes sure the command does not do).
    Ratio(f64, Length),
}

#[derive(Clone, Copy, PartialEq)]
enum Length {
    CodePoints,
    Bytes,
}

impl Length {
    fn of(self, s: &str) -> usize {
        match self {
            Length::CodePoints => s.chars().count(),
            Length::Bytes => s.len(),
        }
    }
}

/// Each row's (cluster, representative row): clusters are the connected components of
/// the linked pairs, numbered in order of first appearance; `keep` as `--keep` with
/// lengths measured by `length`.
fn expected_dedup(c: &Corpus, link: Link, keep: &str, length: Length) -> Vec<(usize, usize)> {
    let n = c.strings.len();
    let distance: Vec<Vec<u32>> = (0..n)
        .map(|i| (0..n).map(|j| c.distance(i, j)).collect())
        .collect();
    let linked = |i: usize, j: usize| match link {
        Link::Distance(d) => distance[i][j] <= d,
        Link::Ratio(r, length) => {
            let longer = length.of(&c.strings[i]).max(length.of(&c.strings[j]));
            f64::from(distance[i][j]) <= r * longer as f64
        }
    };
    // Components by search from each unvisited row in order: clusters in order of first
    // appearance, members in row order.
    let mut cluster = vec![usize::MAX; n];
    let mut members: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if cluster[start] != usize::MAX {
            continue;
        }
        let id = members.len();
        cluster[start] = id;
        let mut found = vec![start];
        let mut todo = vec![start];
        while let Some(i) = todo.pop() {
            for (j, cluster_j) in cluster.iter_mut().enumerate() {
                if *cluster_j == usize::MAX && linked(i, j) {
                    *cluster_j = id;
                    found.push(j);
                    todo.push(j);
                }
            }
        }
        found.sort();
        members.push(found);
    }
    let representative: Vec<usize> = members
        .iter()
        .map(|rows| {
            // The smallest key; ties to the first row.
            let key = |r: usize| -> i64 {
                match keep {
                    "first" => 0,
                    "longest" => -(length.of(&c.strings[r]) as i64),
                    "most-central" => rows.iter().map(|&o| i64::from(distance[r][o])).sum(),
                    _ => unreachable!("{keep}"),
                }
            };
            rows.iter().map(|&r| (key(r), r)).min().unwrap().1
        })
        .collect();
    (0..n)
        .map(|row| (cluster[row], representative[cluster[row]]))
        .collect()
}

/// `dedup --format json` with every row a candidate and no screen: each row's (cluster,
/// representative row), its line and string checked; and its stderr.
fn dedup(c: &Corpus, source: &[&str], extra: &[&str]) -> (Vec<(usize, usize)>, String) {
    let n = c.strings.len().to_string();
    let args = ["dedup", "-C", &n, "--blowup", "inf", "--format", "json"];
    let out = run_bin(&[&args[..], source, extra].concat(), b"");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let records = json_lines(&ok(out));
    assert_eq!(records.len(), c.strings.len());
    let rows = records
        .iter()
        .enumerate()
        .map(|(row, r)| {
            assert_eq!(r["line"], row as u64 + 1, "{r}");
            assert_eq!(r["string"], c.strings[row], "{r}");
            (id(&r["cluster"]), id(&r["representative"]) - 1)
        })
        .collect();
    (rows, stderr)
}

/// The warning of `embed` (and of `dedup --input`) for the corpus's lines holding
/// characters outside the model's alphabet.
fn unseen_warning(c: &Corpus) -> String {
    let unseen: Vec<usize> = (0..c.strings.len())
        .filter(|&row| c.strings[row].chars().any(|ch| !c.alphabet.contains(&ch)))
        .collect();
    assert!(unseen.len() > 1);
    format!(
        "warning: {} lines held characters outside the model's alphabet, read as padding \
         (first: line {})",
        unseen.len(),
        unseen[0] + 1
    )
}

/// Groups at D = 2 from the file (embedded into a temporary index) and from the index,
/// with each --keep: the longest member counts code points (中文ab's 4 over 中文字's 9
/// bytes), the most central sums exact distances over code points.
#[test]
fn dedup_groups_the_exact_components_with_each_keep() {
    let c = corpus();
    let (input, model, index) = (
        c.path("all.txt"),
        c.path("model.safetensors"),
        c.path("all.idx"),
    );
    let from_file: &[&str] = &["--input", &input, "--model", &model];
    let from_index: &[&str] = &["--index", &index];
    let link = Link::Distance(2);
    let mut seen = Vec::new();
    for (source, keep) in [
        (from_file, "first"),
        (from_index, "first"),
        (from_index, "longest"),
        (from_file, "most-central"),
    ] {
        let (got, stderr) = dedup(c, source, &["--max-distance", "2", "--keep", keep]);
        let want = expected_dedup(c, link, keep, Length::CodePoints);
        assert_eq!(got, want, "{source:?} --keep {keep}");
        // Embedding the file, it warns as `embed` does.
        if source == from_file {
            assert!(stderr.contains(&unseen_warning(c)), "{stderr}");
        }
        seen.push(got);
    }
    // The groups are not trivial, and each rule picks differently somewhere.
    let sizes = |rows: &[(usize, usize)]| {
        let mut sizes = vec![0; c.strings.len()];
        rows.iter().for_each(|&(cluster, _)| sizes[cluster] += 1);
        sizes.into_iter().filter(|&s| s > 1).count()
    };
    assert!(sizes(&seen[0]) >= 5, "{:?}", seen[0]);
    assert_ne!(seen[0], seen[2], "longest picks as first does");
    assert_ne!(seen[0], seen[3], "most-central picks as first does");
    assert_ne!(
        seen[2],
        expected_dedup(c, link, "longest", Length::Bytes),
        "no cluster where bytes and code points choose differently"
    );
}

/// --max-ratio R: distance <= R x the longer length in code points (😀😀😀😀 and
/// 😀😀😀😀😀😀, 2 apart, stay apart at R = 0.2: 1.2 code points, though 4.8 bytes).
#[test]
fn dedup_by_ratio_measures_lengths_in_code_points() {
    let c = corpus();
    let index = c.path("all.idx");
    let (got, _) = dedup(c, &["--index", &index], &["--max-ratio", "0.2"]);
    let link = |length| Link::Ratio(0.2, length);
    let want = expected_dedup(c, link(Length::CodePoints), "first", Length::CodePoints);
    assert_eq!(got, want);
    assert_ne!(
        want,
        expected_dedup(c, link(Length::Bytes), "first", Length::CodePoints)
    );
}

/// Lowercase hex SHA-256 of a file: the model fingerprint.
fn sha256(path: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// `export` of the f32 and f16 indexes: the vectors are `embed`'s (to f16 rounding in
/// the f16 one), strings.tsv gives back every string (tab and backslash escaped, the
/// empty one included), and the manifest names the Euclidean line of the model.
#[test]
fn export_writes_embed_vectors_the_strings_and_the_line() {
    let c = corpus();
    let want = embed_rows(c);
    for (index, precision, tolerance) in [("all.idx", "f32", 0.0), ("all16.idx", "f16", 1e-3)] {
        let dir = c.path(&format!("export-{precision}"));
        bin(&["export", "--index", &c.path(index), "--output", &dir]);
        let dir = Path::new(&dir);
        let (shape, vectors) = megashtein_gpu::io::read_npy_f32(&dir.join("vectors.npy")).unwrap();
        assert_eq!(shape, [c.strings.len(), 128], "{index}");
        for (row, (got, want)) in vectors.chunks(128).zip(&want).enumerate() {
            let norm = euclidean(want, &[0.0; 128]);
            assert!(
                euclidean(got, want) <= tolerance * norm,
                "{index}: row {row}: {got:?} against {want:?}"
            );
        }
        let tsv = std::fs::read_to_string(dir.join("strings.tsv")).unwrap();
        assert_eq!(tsv.lines().count(), c.strings.len(), "{tsv}");
        for (row, line) in tsv.lines().enumerate() {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "{line:?}");
            assert_eq!(fields[..2], [row.to_string(), (row + 1).to_string()]);
            assert_eq!(unescape(fields[2]), c.strings[row], "{line:?}");
        }
        assert!(tsv.contains("\tü\\tzé\\\\x\n"), "{tsv}");
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        let fingerprint = sha256(&c.path("model.safetensors"));
        assert_eq!(manifest["model_fingerprint"], fingerprint.as_str());
        assert_eq!(manifest["architecture"], "cnn-ed-v1");
        assert_eq!(manifest["dim"], 128);
        assert_eq!(manifest["rows"], c.strings.len());
        assert_eq!(manifest["precision"], precision);
        let estimator = manifest["estimator"].as_object().unwrap();
        assert_eq!(estimator["metric"], "euclidean");
        assert_eq!(estimator["scale"], f64::from(SLOPE));
        assert_eq!(estimator["offset"], f64::from(INTERCEPT));
        let mut keys: Vec<&str> = estimator.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["formula", "metric", "offset", "scale"], "{manifest}");
    }
}
