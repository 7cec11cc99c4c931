//! `join`, `dedup`, `distance` and `export` end to end on a corpus of planted
//! near-duplicate groups, against exact answers computed here.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{err, levenshtein, ok, run_bin as bin};
use megashtein_gpu::model::weights::Weights;
use rand::Rng;

struct Corpus {
    dir: PathBuf,
    strings: Vec<Vec<u8>>,
    /// Planted group of each string (its base string's number).
    group: Vec<usize>,
}

impl Corpus {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

/// Random base strings far apart (20-40 letters), each with 0-3 variants of 1-2 edits,
/// shuffled: the groups within distance 4 are exactly the planted ones. Embedded into
/// an f32 and an f16 index, and in two halves for the cross join.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut rng = common::rng(7);
        let mut items: Vec<(Vec<u8>, usize)> = Vec::new();
        for g in 0..70 {
            let len = rng.random_range(20..=40);
            let base: Vec<u8> = (0..len).map(|_| rng.random_range(b'a'..=b'z')).collect();
            let variants = rng.random_range(0..=3);
            items.push((base.clone(), g));
            for _ in 0..variants {
                let mut v = base.clone();
                for _ in 0..rng.random_range(1..=2) {
                    let at = rng.random_range(0..v.len());
                    match rng.random_range(0..3) {
                        0 => v[at] = rng.random_range(b'0'..=b'9'),
                        1 => v.insert(at, rng.random_range(b'A'..=b'Z')),
                        _ => {
                            v.remove(at);
                        }
                    }
                }
                items.push((v, g));
            }
        }
        // An exact duplicate: distance 0 pairs and ties in the kNN.
        items.push(items[0].clone());
        for i in (1..items.len()).rev() {
            let j = rng.random_range(0..=i);
            items.swap(i, j);
        }
        let dir = tempfile::tempdir().unwrap().keep();
        let c = Corpus {
            dir,
            strings: items.iter().map(|(s, _)| s.clone()).collect(),
            group: items.iter().map(|&(_, g)| g).collect(),
        };
        let half = c.strings.len() / 2;
        write_lines(&c.path("all.txt"), &c.strings);
        write_lines(&c.path("a.txt"), &c.strings[..half]);
        write_lines(&c.path("b.txt"), &c.strings[half..]);
        for (input, output, precision) in [
            ("all.txt", "all.idx", "f32"),
            ("all.txt", "all16.idx", "f16"),
            ("a.txt", "a.idx", "f32"),
            ("b.txt", "b.idx", "f32"),
        ] {
            let (input, output) = (c.path(input), c.path(output));
            let args = [
                "embed",
                "-i",
                &input,
                "-o",
                &output,
                "--precision",
                precision,
            ];
            ok(bin(&args, b""));
        }
        c
    })
}

fn write_lines(path: &str, strings: &[Vec<u8>]) {
    let mut text = Vec::new();
    for s in strings {
        text.extend_from_slice(s);
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

/// (a_id, b_id, distance) of join TSV output, checking that each line's strings are
/// the rows' strings.
fn parse_pairs(out: &str, a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<(usize, usize, u32)> {
    out.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 8, "{line}");
            let (ai, bi): (usize, usize) = (f[0].parse().unwrap(), f[3].parse().unwrap());
            assert_eq!(f[1], (ai + 1).to_string());
            assert_eq!(f[2].as_bytes(), a[ai]);
            assert_eq!(f[4], (bi + 1).to_string());
            assert_eq!(f[5].as_bytes(), b[bi]);
            (ai, bi, f[6].parse().unwrap())
        })
        .collect()
}

fn exact_pairs(a: &[Vec<u8>], b: &[Vec<u8>], d: u32, within: bool) -> Vec<(usize, usize, u32)> {
    let mut pairs = Vec::new();
    for (i, x) in a.iter().enumerate() {
        let from = if within { i + 1 } else { 0 };
        for (j, y) in b.iter().enumerate().skip(from) {
            let distance = levenshtein(x, y);
            if distance <= d {
                pairs.push((i, j, distance));
            }
        }
    }
    pairs
}

fn sorted(mut pairs: Vec<(usize, usize, u32)>) -> Vec<(usize, usize, u32)> {
    pairs.sort();
    pairs
}

#[test]
fn join_with_every_candidate_is_the_exact_join() {
    let c = corpus();
    let n = c.strings.len().to_string();
    for index in ["all.idx", "all16.idx"] {
        for d in [0u32, 2, 4] {
            let ds = d.to_string();
            let args = ["join", "--index", &c.path(index), "--max-distance", &ds];
            let out = ok(bin(
                &[&args[..], &["-C", &n, "--blowup", "inf"]].concat(),
                b"",
            ));
            let got = parse_pairs(&out, &c.strings, &c.strings);
            let want = exact_pairs(&c.strings, &c.strings, d, true);
            assert_eq!(sorted(got), want, "{index}, D = {d}");
        }
    }
}

#[test]
fn join_with_few_candidates_finds_only_true_pairs_each_once() {
    let c = corpus();
    let want: BTreeSet<_> = exact_pairs(&c.strings, &c.strings, 4, true)
        .into_iter()
        .collect();
    for (candidates, blowup) in [("1", "inf"), ("3", "inf"), ("100", "3")] {
        let args = ["join", "--index", &c.path("all.idx"), "--max-distance", "4"];
        let extra = ["-C", candidates, "--blowup", blowup, "--threads", "1"];
        let out = ok(bin(&[&args[..], &extra].concat(), b""));
        let got = parse_pairs(&out, &c.strings, &c.strings);
        let unique: BTreeSet<_> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "a pair written twice at C = {candidates}"
        );
        assert!(got.iter().all(|&(a, b, _)| a < b));
        assert!(unique.is_subset(&want), "C = {candidates}");
    }
}

#[test]
fn cross_join_is_the_exact_cross_join() {
    let c = corpus();
    let half = c.strings.len() / 2;
    let (a, b) = (&c.strings[..half], &c.strings[half..]);
    let args = [
        "join",
        "--index",
        &c.path("a.idx"),
        "--with",
        &c.path("b.idx"),
    ];
    let extra = [
        "--max-distance",
        "3",
        "-C",
        "1000",
        "--blowup",
        "inf",
        "--format",
        "tsv",
    ];
    let out = ok(bin(&[&args[..], &extra].concat(), b""));
    assert_eq!(sorted(parse_pairs(&out, a, b)), exact_pairs(a, b, 3, false));
}

#[test]
fn equal_strings_join_at_distance_0_with_the_default_screen_in_either_precision() {
    let c = corpus();
    let join_at_0 = |indexes: &[&str]| {
        let args = [&["join"][..], indexes, &["--max-distance", "0"]].concat();
        ok(bin(&args, b""))
    };
    let out = join_at_0(&["--index", &c.path("all16.idx")]);
    let want = exact_pairs(&c.strings, &c.strings, 0, true);
    assert!(!want.is_empty(), "the corpus plants a duplicate");
    assert_eq!(sorted(parse_pairs(&out, &c.strings, &c.strings)), want);
    // f32 rows against their own f16 copies: every string finds itself.
    let (f32_rows, f16_rows) = (c.path("all.idx"), c.path("all16.idx"));
    let out = join_at_0(&["--index", &f32_rows, "--with", &f16_rows]);
    let want = exact_pairs(&c.strings, &c.strings, 0, false);
    assert_eq!(sorted(parse_pairs(&out, &c.strings, &c.strings)), want);
}

#[test]
fn join_dedup_and_distance_refuse_an_output_that_would_replace_an_input() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let path = dir.path().join(name);
        std::fs::copy(c.path(name), &path).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (index, corpus) = (copy("all.idx"), copy("all.txt"));
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, "abc\tabd\n").unwrap();
    let pairs = pairs.to_str().unwrap();
    let d = ["--max-distance", "1"];
    for (args, what) in [
        (vec!["join", "--index", &index, "-o", &index], "index"),
        (vec!["dedup", "--index", &index, "-o", &index], "index"),
        (vec!["dedup", "--input", &corpus, "-o", &corpus], "corpus"),
    ] {
        let e = err(bin(&[&args[..], &d].concat(), b""));
        assert!(
            e.contains(&format!("would replace the input {what}")),
            "{e}"
        );
    }
    // An index holds its model: --model and --non-ascii are --input's.
    for extra in [["-m", &corpus], ["--non-ascii", "skip"]] {
        let args = ["dedup", "--index", &index, "--max-distance", "1"];
        let e = err(bin(&[&args[..], &extra].concat(), b""));
        assert!(e.contains("cannot be used with"), "{e}");
    }
    let e = err(bin(&["distance", "--pairs", pairs, "-o", pairs], b""));
    assert!(e.contains("would replace the input pairs file"), "{e}");
    assert_eq!(
        std::fs::read(c.path("all.idx")).unwrap(),
        std::fs::read(&index).unwrap()
    );
    assert_eq!(
        std::fs::read(c.path("all.txt")).unwrap(),
        std::fs::read(&corpus).unwrap()
    );
    assert_eq!(std::fs::read_to_string(pairs).unwrap(), "abc\tabd\n");
}

#[test]
fn copies_of_a_string_take_no_candidate_places_and_join_in_every_pair() {
    // 40 copies of each of three strings, two of them one edit apart, and a stray:
    // with 5 candidates a row's list could hold only copies of itself, were they searched.
    let mut strings: Vec<Vec<u8>> = Vec::new();
    for i in 0..40 {
        strings.extend([b"copied string".to_vec(), b"copied strung".to_vec()]);
        strings.push(b"another line".to_vec());
        if i == 7 {
            strings.push(b"stray".to_vec());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_lines(&path("copies.txt"), &strings);
    ok(bin(
        &[
            "embed",
            "-i",
            &path("copies.txt"),
            "-o",
            &path("copies.idx"),
        ],
        b"",
    ));
    let join = [
        "join",
        "--index",
        &path("copies.idx"),
        "--max-distance",
        "1",
    ];
    let out = bin(&[&join[..], &["-C", "5"]].concat(), b"");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("raise --candidates"));
    let got = parse_pairs(&ok(out), &strings, &strings);
    assert_eq!(sorted(got), exact_pairs(&strings, &strings, 1, true));
    // Between two indexes (here the same file twice) copies on either side count once.
    let index = path("copies.idx");
    let across = [&join[..], &["--with", &index, "-C", "5"]].concat();
    let out = bin(&across, b"");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("raise --candidates"));
    let got = parse_pairs(&ok(out), &strings, &strings);
    assert_eq!(sorted(got), exact_pairs(&strings, &strings, 1, false));
    // dedup groups the two near strings' 80 rows, the other's 40 and the stray.
    let out = bin(
        &[
            "dedup",
            "--index",
            &path("copies.idx"),
            "--max-distance",
            "1",
            "-C",
            "5",
        ],
        b"",
    );
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(summary.contains("in 3 clusters"), "{summary}");
    assert!(summary.contains("largest 80"), "{summary}");
}

#[test]
fn copies_under_capped_lists_are_written_once_and_exactly_when_c_covers_the_strings() {
    // 40 distinct strings within distance 2 of each other, 3 rows each: with C = 20 every
    // list is capped, so the rule that writes a pair once meets the copies' expansion.
    let strings: Vec<Vec<u8>> = (0..120)
        .map(|i| format!("x{:02}", i % 40).into_bytes())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    write_lines(&path("near.txt"), &strings);
    ok(bin(
        &["embed", "-i", &path("near.txt"), "-o", &path("near.idx")],
        b"",
    ));
    let want = exact_pairs(&strings, &strings, 2, true);
    for (candidates, exact) in [("20", false), ("50", true)] {
        let args = ["join", "--index", &path("near.idx"), "--max-distance", "2"];
        let extra = ["-C", candidates, "--blowup", "inf"];
        let got = parse_pairs(
            &ok(bin(&[&args[..], &extra].concat(), b"")),
            &strings,
            &strings,
        );
        let unique: BTreeSet<_> = got.iter().copied().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "a pair written twice at C = {candidates}"
        );
        if exact {
            assert_eq!(sorted(got), want);
        } else {
            assert!(unique.iter().all(|p| want.contains(p)), "C = {candidates}");
        }
    }
}

#[test]
fn join_json_and_csv_carry_the_same_pairs() {
    let c = corpus();
    let args = ["join", "--index", &c.path("all.idx"), "--max-distance", "2"];
    let tsv = parse_pairs(&ok(bin(&args, b"")), &c.strings, &c.strings);
    let json = ok(bin(&[&args[..], &["--format", "json"]].concat(), b""));
    let from_json: Vec<(usize, usize, u32)> = json
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let id = |k: &str| v[k].as_u64().unwrap() as usize;
            assert_eq!(
                v["a_string"].as_str().unwrap().as_bytes(),
                c.strings[id("a_id")]
            );
            (
                id("a_id"),
                id("b_id"),
                v["distance"].as_u64().unwrap() as u32,
            )
        })
        .collect();
    assert_eq!(from_json, tsv);
    let csv = ok(bin(&[&args[..], &["--format", "csv"]].concat(), b""));
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "a_id,a_line,a_string,b_id,b_line,b_string,distance,estimate"
    );
    assert_eq!(lines.count(), tsv.len());
}

#[test]
fn join_refuses_indexes_of_different_models() {
    let c = corpus();
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.safetensors");
    let mut weights = Weights::load(&default).unwrap();
    weights.distance_scale *= 1.5;
    let other_model = c.path("other.safetensors");
    weights.save(Path::new(&other_model)).unwrap();
    let other = c.path("other.idx");
    let args = [
        "embed",
        "-i",
        &c.path("b.txt"),
        "-o",
        &other,
        "-m",
        &other_model,
    ];
    ok(bin(&args, b""));
    let args = [
        "join",
        "--index",
        &c.path("a.idx"),
        "--with",
        &other,
        "--max-distance",
        "1",
    ];
    let e = err(bin(&args, b""));
    assert!(e.contains("different models"), "{e}");
}

#[test]
fn dedup_recovers_the_planted_groups() {
    let c = corpus();
    let n = c.strings.len().to_string();
    let run = |keep: &str| {
        let args = [
            "dedup",
            "--index",
            &c.path("all.idx"),
            "--max-distance",
            "4",
        ];
        let extra = [
            "-C", &n, "--blowup", "inf", "--keep", keep, "--format", "json",
        ];
        let out = ok(bin(&[&args[..], &extra].concat(), b""));
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let records = run("first");
    assert_eq!(records.len(), c.strings.len());
    // Cluster ids number groups in order of first appearance, so two rows share a
    // cluster exactly when they share a planted group.
    let mut first_seen = Vec::new();
    for (row, r) in records.iter().enumerate() {
        assert_eq!(r["line"], row as u64 + 1);
        assert_eq!(r["string"].as_str().unwrap().as_bytes(), c.strings[row]);
        let g = c.group[row];
        if !first_seen.contains(&g) {
            first_seen.push(g);
        }
        let want = first_seen.iter().position(|&x| x == g).unwrap();
        assert_eq!(r["cluster"], want as u64, "row {row}");
        let first = c.group.iter().position(|&x| x == g).unwrap();
        assert_eq!(r["representative"], first as u64 + 1);
    }
    // Longest: the representative is a longest member, the first of equals.
    for r in run("longest") {
        let rep = r["representative"].as_u64().unwrap() as usize - 1;
        let members: Vec<usize> = (0..c.strings.len())
            .filter(|&i| c.group[i] == c.group[rep])
            .collect();
        let longest = members.iter().map(|&i| c.strings[i].len()).max().unwrap();
        let want = *members
            .iter()
            .find(|&&i| c.strings[i].len() == longest)
            .unwrap();
        assert_eq!(rep, want);
    }
    // Deterministic: a second run gives the same records.
    assert_eq!(run("most-central"), run("most-central"));
}

#[test]
fn distance_matches_query_estimate_and_exact_distance() {
    let c = corpus();
    let (a, b) = (&c.strings[0], &c.strings[1]);
    let (a, b) = (
        std::str::from_utf8(a).unwrap(),
        std::str::from_utf8(b).unwrap(),
    );
    let out = ok(bin(&["distance", a, b], b""));
    let f: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!((f[0], f[1]), (a, b));
    let want = levenshtein(a.as_bytes(), b.as_bytes());
    assert_eq!(f[2].parse::<u32>().unwrap(), want);
    let estimate: f32 = f[3].parse().unwrap();
    // `query` of a against the f32 index: the hit for row 1 carries its estimate.
    let n = c.strings.len().to_string();
    let hits = ok(bin(
        &[
            "query",
            "--index",
            &c.path("all.idx"),
            "-k",
            &n,
            "-C",
            &n,
            a,
        ],
        b"",
    ));
    let hit = hits
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .find(|h| h[4] == "1")
        .unwrap();
    let from_query: f32 = hit[3].parse().unwrap();
    assert!(
        (estimate - from_query).abs() <= 1e-3 * from_query.abs().max(1.0),
        "distance says {estimate}, query says {from_query}"
    );
    // Pairs from stdin, in input order, and a malformed line named.
    let out = ok(bin(
        &["distance", "--pairs", "-"],
        b"abc\tabd\nkitten\tsitting\n",
    ));
    let distances: Vec<&str> = out.lines().map(|l| l.split('\t').nth(2).unwrap()).collect();
    assert_eq!(distances, ["1", "3"]);
    let e = err(bin(&["distance", "--pairs", "-"], b"abc\tabd\nonly one\n"));
    assert!(
        e.contains("<stdin> line 2") && e.contains("two tab-separated"),
        "{e}"
    );
    // Non-ASCII strings: an error that names the way out, which distance takes.
    let e = err(bin(&["distance", "caf\u{e9}", "cafe"], b""));
    assert!(e.contains("--non-ascii skip|replace"), "{e}");
    let out = ok(bin(
        &["distance", "--non-ascii", "replace", "caf\u{e9}", "cafe"],
        b"",
    ));
    assert!(out.starts_with("caf?\tcafe\t1\t"), "{out}");
    let pairs = "abc\tabd\ncaf\u{e9}\tcafe\nkitten\tsitting\n";
    let out = ok(bin(
        &["distance", "--non-ascii", "skip", "--pairs", "-"],
        pairs.as_bytes(),
    ));
    let kept: Vec<&str> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(kept, ["abc", "kitten"]);
}

#[test]
fn export_reproduces_the_index_rows() {
    let c = corpus();
    for index in ["all.idx", "all16.idx"] {
        let dir = c.path(&format!("export-{index}"));
        ok(bin(
            &["export", "--index", &c.path(index), "--output", &dir],
            b"",
        ));
        let (shape, vectors) =
            megashtein_gpu::io::read_npy_f32(&Path::new(&dir).join("vectors.npy")).unwrap();
        assert_eq!(shape, [c.strings.len(), 80]);
        let opened = megashtein_gpu::search::index::Index::open(Path::new(&c.path(index))).unwrap();
        let stored = opened.embeddings_f32();
        assert_eq!(
            vectors.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            stored.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let tsv = std::fs::read_to_string(Path::new(&dir).join("strings.tsv")).unwrap();
        let rows: Vec<&str> = tsv.lines().collect();
        assert_eq!(rows.len(), c.strings.len());
        for (i, row) in rows.iter().enumerate() {
            let want = format!("{i}\t{}\t{}", i + 1, String::from_utf8_lossy(&c.strings[i]));
            assert_eq!(*row, want);
        }
        let text = std::fs::read_to_string(Path::new(&dir).join("manifest.json")).unwrap();
        // Keys in the documented order (README), not sorted.
        let keys = [
            "model_fingerprint",
            "architecture",
            "dim",
            "rows",
            "estimator",
        ];
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| text.find(&format!("\"{k}\"")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "{text}");
        let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(manifest["rows"], c.strings.len() as u64);
        assert_eq!(manifest["dim"], 80);
        assert_eq!(manifest["model_fingerprint"], opened.fingerprint());
        // A second export into the same folder is refused, leaving it as it was.
        let e = err(bin(
            &["export", "--index", &c.path(index), "--output", &dir],
            b"",
        ));
        assert!(e.contains("not an empty folder"), "{e}");
    }
}

#[test]
fn join_past_the_gpu_candidate_limit_checks_every_pair() {
    // 2,458 words: -C at least the index size takes the exhaustive path (no kNN).
    let c = corpus();
    let words = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/words.txt");
    let strings: Vec<Vec<u8>> = std::fs::read_to_string(words)
        .unwrap()
        .lines()
        .map(|w| w.as_bytes().to_vec())
        .collect();
    let index = c.path("words.idx");
    ok(bin(&["embed", "-i", words, "-o", &index], b""));
    let join = |candidates: &str, extra: &[&str]| {
        let args = [
            "join",
            "--index",
            &index,
            "--max-distance",
            "1",
            "-C",
            candidates,
        ];
        bin(&[&args[..], extra].concat(), b"")
    };
    let got = parse_pairs(&ok(join("3000", &["--blowup", "inf"])), &strings, &strings);
    assert_eq!(sorted(got), exact_pairs(&strings, &strings, 1, true));
    let e = err(join("2000", &[]));
    assert!(
        e.contains("limit of 1023 in a join within one index") && e.contains("own slot"),
        "{e}"
    );
}

#[test]
fn bench_exact_join_with_length_pruning_is_the_brute_force_join() {
    let c = corpus();
    let index = megashtein_gpu::search::index::Index::open(Path::new(&c.path("all.idx"))).unwrap();
    for d in [0, 2, 4] {
        let exact = megashtein_gpu::bench::join::exact_join(&index, d);
        let got: BTreeSet<(usize, usize)> = exact.pairs.iter().copied().collect();
        let want: BTreeSet<(usize, usize)> = exact_pairs(&c.strings, &c.strings, d, true)
            .into_iter()
            .map(|(a, b, _)| (a, b))
            .collect();
        assert_eq!(got, want, "D = {d}");
        // Planted groups are the only groups at D = 4.
        if d == 4 {
            let planted = (0..c.group.len())
                .filter(|&i| c.group.iter().filter(|&&g| g == c.group[i]).count() > 1)
                .map(|i| c.group[i])
                .collect::<BTreeSet<_>>()
                .len();
            assert_eq!(exact.groups, planted);
        }
    }
}

#[test]
fn dedup_by_ratio_counts_the_pairs_within_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("lines.txt");
    // Ratio 0.1: the longest line (30) makes the join's bound 3; of its two pairs at
    // distance 1 only the 10-character one is within the ratio.
    let long = "a".repeat(30);
    let text = format!("abcdefghij\nabcdefghik\nxyz\nxyw\n{long}\n");
    std::fs::write(&input, text).unwrap();
    let out = bin(
        &[
            "dedup",
            "-i",
            input.to_str().unwrap(),
            "--max-ratio",
            "0.1",
            "--blowup",
            "inf",
        ],
        b"",
    );
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        e.contains("1 pair within ratio 0.1 (of 2 within distance 3"),
        "{e}"
    );
    assert!(
        e.contains(
            "5 lines in 4 clusters: 1 group of near-duplicates (2 lines, largest 2), 3 singletons"
        ),
        "{e}"
    );
    // A negative ratio is a value out of range, not an unknown flag.
    let e = err(bin(
        &[
            "dedup",
            "-i",
            input.to_str().unwrap(),
            "--max-ratio",
            "-0.1",
        ],
        b"",
    ));
    assert!(e.contains("--max-ratio must be at least 0"), "{e}");
    // No pair within the ratio: no group, and no "largest".
    let out = bin(
        &["dedup", "-i", input.to_str().unwrap(), "--max-ratio", "0"],
        b"",
    );
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        e.contains("5 lines in 5 clusters: 0 groups of near-duplicates (0 lines), 5 singletons"),
        "{e}"
    );
}

#[test]
fn distance_warns_of_skipped_pairs_and_cut_strings() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(&pairs, "cafe\tcaf\u{e9}\nabc\tabd\nna\u{ef}ve\tnaive\n").unwrap();
    let out = bin(
        &[
            "distance",
            "--pairs",
            pairs.to_str().unwrap(),
            "--non-ascii",
            "skip",
        ],
        b"",
    );
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(ok(out).lines().count(), 1);
    assert!(
        e.contains(
            "warning: 2 pairs contained non-ASCII characters and were skipped (first: line 1)"
        ),
        "{e}"
    );
    let long = "x".repeat(100);
    let out = bin(&["distance", &long, "xx"], b"");
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    assert!(
        e.contains("warning: 1 string was longer than 80 characters"),
        "{e}"
    );
}
