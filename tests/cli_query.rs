//! `megashtein-gpu embed` into an index, then `query` end to end: exactness with
//! C = N, threshold search, output formats, and bad input.
mod common;

use common::{err, levenshtein, ok, run_bin as bin};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Corpus {
    dir: PathBuf,
    strings: Vec<Vec<u8>>,
}

impl Corpus {
    fn index(&self, precision: &str) -> String {
        self.dir
            .join(format!("corpus-{precision}.idx"))
            .to_str()
            .unwrap()
            .to_string()
    }
}

/// A small corpus with near duplicates, an empty line, tabs, backslashes and an
/// over-long line, embedded once into an f32 and an f16 index.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let words =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/words.txt"))
                .unwrap();
        let mut strings: Vec<Vec<u8>> = words
            .lines()
            .step_by(12)
            .map(|w| w.as_bytes().to_vec())
            .collect();
        strings.extend([
            b"".to_vec(),
            b"tab\there".to_vec(),
            b"back\\slash".to_vec(),
            b"accommodate".to_vec(),
            b"acommodate".to_vec(),
            b"accommodated".to_vec(),
            "x".repeat(120).into_bytes(),
        ]);
        let mut text = Vec::new();
        for s in &strings {
            text.extend_from_slice(s);
            text.push(b'\n');
        }
        let input = dir.join("corpus.txt");
        std::fs::write(&input, &text).unwrap();
        let c = Corpus { dir, strings };
        for precision in ["f32", "f16"] {
            ok(bin(
                &[
                    "embed",
                    "-i",
                    input.to_str().unwrap(),
                    "-o",
                    &c.index(precision),
                    "--precision",
                    precision,
                ],
                b"",
            ));
        }
        // The training-free CGK model's index (codes, searched by Hamming distance).
        let cgk = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cgk.safetensors");
        ok(bin(
            &[
                "embed",
                "-i",
                input.to_str().unwrap(),
                "-o",
                &c.index("cgk"),
                "--model",
                cgk,
            ],
            b"",
        ));
        c
    })
}

struct Row {
    query: u64,
    rank: usize,
    distance: u32,
    estimate: f32,
    id: usize,
}

fn parse_tsv(text: &str) -> Vec<Row> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(6, '\t').collect();
            Row {
                query: f[0].parse().unwrap(),
                rank: f[1].parse().unwrap(),
                distance: f[2].parse().unwrap(),
                estimate: f[3].parse().unwrap(),
                id: f[4].parse().unwrap(),
            }
        })
        .collect()
}

#[test]
fn with_all_rows_as_candidates_the_answer_is_the_exact_top_k() {
    let c = corpus();
    let n = c.strings.len().to_string();
    let queries = ["acomodate", "", "tab", "zzzzzz", "beleive"];
    for precision in ["f32", "f16", "cgk"] {
        let index = c.index(precision);
        let mut args = vec!["query", "--index", &index, "-k", "7", "-C", &n];
        args.extend(queries);
        let rows = parse_tsv(&ok(bin(&args, b"")));
        for (q, query) in queries.iter().enumerate() {
            let got: Vec<&Row> = rows.iter().filter(|r| r.query == q as u64 + 1).collect();
            assert_eq!(got.len(), 7);
            let mut exact: Vec<u32> = c
                .strings
                .iter()
                .map(|s| levenshtein(query.as_bytes(), s))
                .collect();
            for (rank, row) in got.iter().enumerate() {
                assert_eq!(row.rank, rank + 1);
                assert_eq!(
                    row.distance,
                    levenshtein(query.as_bytes(), &c.strings[row.id])
                );
            }
            // Ordered by (distance, estimate, id).
            for w in got.windows(2) {
                let key = |r: &Row| (r.distance, r.estimate, r.id);
                assert!(key(w[0]) <= key(w[1]), "hits out of order for {query:?}");
            }
            exact.sort();
            let got_d: Vec<u32> = got.iter().map(|r| r.distance).collect();
            assert_eq!(got_d, exact[..7], "query {query:?} ({precision})");
        }
        // More candidates than the GPU search keeps, covering the index: ranked on the CPU,
        // same answer.
        args[6] = "5000";
        let wide = parse_tsv(&ok(bin(&args, b"")));
        let key = |r: &Row| (r.query, r.rank, r.distance);
        assert_eq!(
            wide.iter().map(key).collect::<Vec<_>>(),
            rows.iter().map(key).collect::<Vec<_>>()
        );
    }
}

#[test]
fn threshold_search_with_all_candidates_returns_exactly_the_strings_within_d() {
    let c = corpus();
    let n = c.strings.len().to_string();
    for d in [0u32, 1, 3] {
        let ds = d.to_string();
        let out = bin(
            &[
                "query",
                "--index",
                &c.index("f32"),
                "--max-distance",
                &ds,
                "--blowup",
                "inf",
                "-C",
                &n,
                "accomodate",
            ],
            b"",
        );
        let want: Vec<usize> = (0..c.strings.len())
            .filter(|&i| levenshtein(b"accomodate", &c.strings[i]) <= d)
            .collect();
        if want.is_empty() {
            // Nothing within D: no output and exit status 1, like grep.
            assert_eq!(out.status.code(), Some(1), "D = {d}");
            assert!(out.stdout.is_empty() && out.stderr.is_empty());
            continue;
        }
        let mut got: Vec<usize> = parse_tsv(&ok(out)).iter().map(|r| r.id).collect();
        got.sort();
        assert_eq!(got, want, "D = {d}");
    }
    // An error is not "nothing found": it exits 2.
    let missing = bin(
        &[
            "query",
            "--index",
            "no-such.idx",
            "--max-distance",
            "1",
            "x",
        ],
        b"",
    );
    assert_eq!(
        missing.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn threshold_search_at_distance_0_finds_every_string_of_the_index_in_every_precision() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    // One query a line: the strings without a line break (the empty one included).
    let strings: Vec<&Vec<u8>> = c.strings.iter().collect();
    let queries = dir.path().join("queries.txt");
    std::fs::write(
        &queries,
        strings
            .iter()
            .flat_map(|s| [&s[..], b"\n"].concat())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    for precision in ["f32", "f16", "cgk"] {
        let out = bin(
            &[
                "query",
                "--index",
                &c.index(precision),
                "--max-distance",
                "0",
                "--queries",
                queries.to_str().unwrap(),
            ],
            b"",
        );
        let rows = parse_tsv(&ok(out));
        for (q, s) in strings.iter().enumerate() {
            let want: Vec<usize> = (0..c.strings.len())
                .filter(|&i| &c.strings[i] == *s)
                .collect();
            let mut got: Vec<usize> = rows
                .iter()
                .filter(|r| r.query == q as u64 + 1)
                .map(|r| r.id)
                .collect();
            got.sort();
            assert_eq!(
                got,
                want,
                "{precision}: query {:?}",
                String::from_utf8_lossy(s)
            );
        }
    }
}

#[test]
fn without_candidates_threshold_search_takes_up_to_the_gpu_limit_and_k_raises_c() {
    let c = corpus();
    let index = c.index("f32");
    // Every string is within 120 of "a" (none is longer), far more than the top-k
    // default of 50 candidates.
    let threshold = |candidates: &[&str]| {
        let mut args = vec!["query", "--index", &index, "--max-distance", "120"];
        args.extend(["--blowup", "inf"]);
        args.extend(candidates);
        args.push("a");
        bin(&args, b"")
    };
    let all = threshold(&[]);
    assert!(
        all.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert_eq!(parse_tsv(&ok(all)).len(), c.strings.len());
    let many = bin(&["query", "--index", &index, "-k", "80", "a"], b"");
    assert_eq!(parse_tsv(&ok(many)).len(), 80);
    let capped = threshold(&["-C", "20"]);
    assert!(String::from_utf8_lossy(&capped.stderr).contains("raise --candidates"));
    assert_eq!(parse_tsv(&ok(capped)).len(), 20);
}

#[test]
fn output_file_holds_what_standard_output_would() {
    let c = corpus();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hits.json");
    let index = c.index("f32");
    let args = [
        "query",
        "--index",
        &index,
        "--format",
        "json",
        "-k",
        "3",
        "accomodate",
        "recieve",
    ];
    let printed = ok(bin(&args, b""));
    let written = ok(bin(
        &[&args[..], &["-o", file.to_str().unwrap()]].concat(),
        b"",
    ));
    assert!(written.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    let e = err(bin(&["query", "--index", &index, "-o", &index, "x"], b""));
    assert!(e.contains("would replace the input index"), "{e}");
}

#[test]
fn json_lines_and_tsv_escapes() {
    let c = corpus();
    let out = ok(bin(
        &[
            "query",
            "--index",
            &c.index("f32"),
            "--format",
            "json",
            "-k",
            "3",
            "--queries",
            "-",
        ],
        b"tab\there\nback\\slash\n",
    ));
    // Keys in the documented order (README.md, "File formats"), not sorted.
    let first = out.lines().next().unwrap();
    let keys = [
        "\"query\"",
        "\"hits\"",
        "\"rank\"",
        "\"id\"",
        "\"line\"",
        "\"string\"",
        "\"distance\"",
        "\"estimate\"",
    ];
    let positions: Vec<usize> = keys.iter().map(|k| first.find(k).unwrap()).collect();
    assert!(positions.is_sorted(), "{first}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["query"], "tab\there");
    let top = &lines[0]["hits"][0];
    assert_eq!(top["rank"], 1);
    assert_eq!(top["string"], "tab\there");
    assert_eq!(top["distance"], 0);
    let id = top["id"].as_u64().unwrap() as usize;
    assert_eq!(top["line"], id as u64 + 1);
    assert!(top["estimate"].as_f64().unwrap() >= 0.0);
    let tsv = ok(bin(
        &[
            "query",
            "--index",
            &c.index("f32"),
            "-k",
            "1",
            "tab\there",
            "back\\slash",
        ],
        b"",
    ));
    let fields: Vec<Vec<&str>> = tsv.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(fields[0][5], "tab\\there");
    assert_eq!(fields[1][5], "back\\\\slash");
    // Without re-rank the distance is absent.
    let raw = ok(bin(
        &[
            "query",
            "--index",
            &c.index("f32"),
            "--no-rerank",
            "--format",
            "json",
            "-k",
            "2",
            "x",
        ],
        b"",
    ));
    let v: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    assert!(v["hits"][0]["distance"].is_null());
}

#[test]
fn bad_input_gives_clear_errors() {
    let c = corpus();
    let index = c.index("f32");
    let e = err(bin(&["query", "--index", "/nonexistent/x.idx", "abc"], b""));
    assert!(e.contains("x.idx"), "{e}");
    let e = err(bin(&["query", "--index", &index, "-k", "0", "abc"], b""));
    assert!(e.contains("-k"), "{e}");
    // -k is top-k search's: refused beside --max-distance, which C alone caps.
    let threshold = ["query", "--index", &index, "--max-distance", "4"];
    let e = err(bin(&[&threshold[..], &["-k", "2", "abc"]].concat(), b""));
    assert!(e.contains("-k") && e.contains("--max-distance"), "{e}");
    ok(bin(&[&threshold[..], &["-C", "5", "abc"]].concat(), b""));
    let e = err(bin(&[&threshold[..], &["-C", "0", "abc"]].concat(), b""));
    assert!(e.contains("--candidates must be at least 1"), "{e}");
    // Negative numbers are values out of range, not unknown flags.
    let e = err(bin(
        &["query", "--index", &index, "--max-distance", "-1", "abc"],
        b"",
    ));
    assert!(e.contains("-1 is not in 0..="), "{e}");
    let e = err(bin(
        &[&threshold[..], &["--blowup", "-1", "abc"]].concat(),
        b"",
    ));
    assert!(e.contains("--blowup must be a non-negative number"), "{e}");
    let e = err(bin(&["query", "--index", &index, "caf\u{e9}"], b""));
    assert!(e.contains("non-ASCII"), "{e}");
    let out = ok(bin(
        &[
            "query",
            "--index",
            &index,
            "--non-ascii",
            "skip",
            "caf\u{e9}",
            "cafe",
        ],
        b"",
    ));
    assert!(out.lines().all(|l| l.starts_with("2\t")), "{out}");
    let long = "y".repeat(100);
    let out = bin(&["query", "--index", &index, "-k", "1", &long], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than 80"));
    ok(out);

    // Truncated and corrupted copies of the index.
    let bytes = std::fs::read(&index).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.idx");
    std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
    err(bin(
        &["query", "--index", cut.to_str().unwrap(), "abc"],
        b"",
    ));
    let mut flipped = bytes.clone();
    let at = bytes.len() - 5;
    flipped[at] ^= 0x20;
    let bad = dir.path().join("bad.idx");
    std::fs::write(&bad, &flipped).unwrap();
    let e = err(bin(
        &["query", "--index", bad.to_str().unwrap(), "abc"],
        b"",
    ));
    assert!(e.contains("corrupt") || e.contains("checksum"), "{e}");
    // A model file where an index goes, and an index where a model goes.
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.safetensors");
    let e = err(bin(&["query", "--index", model, "abc"], b""));
    assert!(e.contains("is a model file (safetensors), not"), "{e}");
    let e = err(bin(&["query", "--index", &index, "-m", &index, "abc"], b""));
    assert!(
        e.contains("is a megashtein-gpu index, not a model file"),
        "{e}"
    );

    // An index made by another model, queried with the default one, and the reverse.
    let other = make_other_model(dir.path());
    let other_index = dir.path().join("other.idx");
    embed_with(&other, &c.dir.join("corpus.txt"), &other_index);
    // Query "abc" in `index`, with `--model model` when given.
    let query = |index: &Path, model: Option<&Path>| {
        let mut args = vec!["query", "--index", index.to_str().unwrap(), "abc"];
        if let Some(model) = model {
            args.extend(["-m", model.to_str().unwrap()]);
        }
        bin(&args, b"")
    };
    // The index holds its model (format 2): no --model needed, the same answers.
    let named = ok(query(&other_index, Some(&other)));
    assert_eq!(ok(query(&other_index, None)), named);
    // A format-1 index of another model holds none: the default model is refused.
    let old_index = dir.path().join("old.idx");
    std::fs::write(
        &old_index,
        common::as_format_1(&std::fs::read(&other_index).unwrap()),
    )
    .unwrap();
    let e = err(query(&old_index, None));
    assert!(e.contains("--model") && e.contains("format 1"), "{e}");
    assert_eq!(ok(query(&old_index, Some(&other))), named);
    // Another model than the index's is refused.
    let e = err(query(Path::new(&index), Some(&other)));
    assert!(e.contains("was made by model"), "{e}");
}

/// `embed` of `input` into `index` with `model`.
fn embed_with(model: &Path, input: &Path, index: &Path) {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (model, input, index) = (path(model), path(input), path(index));
    ok(bin(
        &["embed", "-m", &model, "-i", &input, "-o", &index],
        b"",
    ));
}

fn make_other_model(dir: &Path) -> PathBuf {
    let path = dir.join("random.safetensors");
    megashtein_gpu::model::weights::Weights::init(7)
        .save(&path)
        .unwrap();
    path
}

#[test]
fn csv_has_a_header_and_the_tsv_rows() {
    let c = corpus();
    let args = ["query", "--index", &c.index("f32"), "-k", "3", "acommodate"];
    let tsv = ok(bin(&args, b""));
    let csv = ok(bin(&[&args[..], &["--format", "csv"]].concat(), b""));
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("query,rank,distance,estimate,id,string"));
    let rows: Vec<String> = lines.map(|l| l.replace(',', "\t")).collect();
    assert_eq!(rows, tsv.lines().collect::<Vec<_>>());
}

#[test]
fn also_adds_the_candidates_of_a_second_index_of_the_corpus() {
    let c = corpus();
    let (learned, cgk) = (c.index("f32"), c.index("cgk"));
    let queries = ["acomodate", "beleive", "tab"];
    let mut args = vec![
        "query", "--index", &learned, "--also", &cgk, "-k", "3", "-C", "8",
    ];
    args.extend(queries);
    let rows = parse_tsv(&ok(bin(&args, b"")));
    assert_eq!(rows.len(), 9);
    for row in &rows {
        let query = queries[row.query as usize - 1].as_bytes();
        assert_eq!(row.distance, levenshtein(query, &c.strings[row.id]));
    }
    // 4 candidates from each: at least as close as 4 from the learned index alone.
    let alone = [
        "query",
        "--index",
        &learned,
        "-k",
        "1",
        "-C",
        "4",
        "acomodate",
    ];
    let alone = parse_tsv(&ok(bin(&alone, b"")));
    assert!(rows[0].distance <= alone[0].distance);
    // Threshold search keeps a row either model screens in, whichever index is first.
    let within = |first: &str, second: &str| {
        let args = [
            "query",
            "--index",
            first,
            "--also",
            second,
            "--max-distance",
            "1",
            "acommodate",
        ];
        let mut hits: Vec<(usize, u32)> = parse_tsv(&ok(bin(&args, b"")))
            .iter()
            .map(|r| (r.id, r.distance))
            .collect();
        hits.sort();
        hits
    };
    let learned_first = within(&learned, &cgk);
    assert!(learned_first.len() >= 2, "{learned_first:?}");
    assert_eq!(within(&cgk, &learned), learned_first);
    // A second index of another corpus is refused.
    let other = c.dir.join("other.idx");
    let words = c.dir.join("other.txt");
    std::fs::write(&words, "one\ntwo\n").unwrap();
    let cgk_model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cgk.safetensors");
    let embed = [
        "embed",
        "-i",
        words.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
        "-m",
        cgk_model,
    ];
    ok(bin(&embed, b""));
    let e = err(bin(
        &[
            "query",
            "--index",
            &learned,
            "--also",
            other.to_str().unwrap(),
            "x",
        ],
        b"",
    ));
    assert!(e.contains("same strings"), "{e}");
}

/// At least 1,000 `misspelling<TAB>word` lines: each word of tests/data/words.txt with
/// one letter dropped, those not strings of the corpus; written to `name` (each test its
/// own file, as tests run in parallel).
fn misspellings(c: &Corpus, name: &str) -> PathBuf {
    let words =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/words.txt"))
            .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut lines = String::new();
    for word in words.lines().filter(|w| w.len() >= 4) {
        let typo = format!("{}{}", &word[..word.len() / 2], &word[word.len() / 2 + 1..]);
        if !c.strings.contains(&typo.as_bytes().to_vec()) && seen.insert(typo.clone()) {
            lines.push_str(&format!("{typo}\t{word}\n"));
        }
    }
    assert!(seen.len() >= 1000, "{}", seen.len());
    let path = c.dir.join(name);
    std::fs::write(&path, lines).unwrap();
    path
}

/// The C that `query` printed with `--timings`.
fn candidates_used(out: std::process::Output) -> usize {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ok(out);
    let c = stderr.rsplit("C = ").next().unwrap().trim();
    c.parse().unwrap_or_else(|_| panic!("{stderr}"))
}

#[test]
fn bench_query_records_the_rule_default_and_query_uses_a_models_own_default() {
    use megashtein_gpu::model::Model;
    let c = corpus();
    let index = c.index("f32");
    let pairs = misspellings(c, "recorded.tsv");
    let recorded = c.dir.join("recorded.safetensors");
    let out = ok(bin(
        &[
            "bench",
            "query",
            "--index",
            &index,
            "--pairs",
            pairs.to_str().unwrap(),
            "--json",
            "--record-default",
            recorded.to_str().unwrap(),
        ],
        b"",
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["queries"], 1000, "{report}");
    // The rule: the smallest C measured with recall@1 >= 0.99, else 1,024.
    let rows = report["candidates"].as_array().unwrap();
    let want = rows
        .iter()
        .filter(|r| r["recall_at_1"].as_f64().unwrap() >= 0.99)
        .map(|r| r["candidates"].as_u64().unwrap() as usize)
        .min()
        .unwrap_or(1024);
    assert_eq!(report["recorded_default"]["candidates"], want, "{report}");
    assert_eq!(report["model_default_candidates"], serde_json::Value::Null);
    // The file is the index's model (the built-in one) with the default added.
    let builtin = Model::builtin().unwrap();
    let model = Model::open(&recorded).unwrap();
    assert_eq!(model.default_candidates(), Some(want));
    assert_eq!(builtin.default_candidates(), None);
    assert_eq!(model.weights().unwrap(), builtin.weights().unwrap());
    assert_ne!(model.fingerprint(), builtin.fingerprint());

    // An index made with a model that records C = 20 takes 20 candidates by default,
    // raised to -k; an explicit -C and the built-in model's index are unchanged.
    let twenty = c.dir.join("twenty.safetensors");
    builtin
        .with_default_candidates(20)
        .unwrap()
        .save(&twenty)
        .unwrap();
    let twenty_index = c.dir.join("twenty.idx");
    embed_with(&twenty, &c.dir.join("corpus.txt"), &twenty_index);
    let used = |index: &str, extra: &[&str]| {
        let mut args = vec!["query", "--index", index, "--timings", "acommodate"];
        args.extend(extra);
        candidates_used(bin(&args, b""))
    };
    let twenty_index = twenty_index.to_str().unwrap();
    let bench = ok(bin(
        &[
            "bench",
            "query",
            "--index",
            twenty_index,
            "--pairs",
            pairs.to_str().unwrap(),
            "--queries",
            "20",
            "-C",
            "20",
            "--json",
        ],
        b"",
    ));
    let bench: serde_json::Value = serde_json::from_str(&bench).unwrap();
    assert_eq!(bench["model_default_candidates"], 20, "{bench}");
    assert_eq!(used(twenty_index, &[]), 20);
    assert_eq!(used(twenty_index, &["-k", "30"]), 30);
    assert_eq!(used(twenty_index, &["-C", "100"]), 100);
    assert_eq!(used(&index, &[]), 50);
    // With --also, the larger of the two models' defaults, whichever index comes first
    // (the CGK file records 1,024).
    let cgk = c.index("cgk");
    assert_eq!(used(twenty_index, &["--also", &cgk]), 1024);
    assert_eq!(used(&cgk, &["--also", twenty_index]), 1024);
    // Same tensors, so the same answers as the built-in model's index at C = 20.
    let answer = |index: &str| ok(bin(&["query", "--index", index, "acommodate"], b""));
    let at_20 = ok(bin(
        &["query", "--index", &index, "-C", "20", "acommodate"],
        b"",
    ));
    assert_eq!(answer(twenty_index), at_20);
}

#[test]
fn a_recorded_default_needs_the_rules_measurement_and_a_c_the_gpu_takes() {
    use megashtein_gpu::model::Model;
    let c = corpus();
    let pairs = misspellings(c, "too-few.tsv");
    // Each refused before any measuring, and nothing written.
    let never = c.dir.join("never.safetensors");
    let record = |extra: &[&str], out: &Path| {
        let index = c.index("f32");
        let mut args = vec!["bench", "query", "--index", &index];
        args.extend(["--pairs", pairs.to_str().unwrap()]);
        args.extend(["--record-default", out.to_str().unwrap()]);
        args.extend(extra);
        err(bin(&args, b""))
    };
    let e = record(&["--queries", "999"], &never);
    assert!(e.contains("needs at least 1000 queries"), "{e}");
    // The rule's whole grid must be measured, and the output writable.
    let e = record(&["-C", "10,20,100,200,500,1024"], &never);
    assert!(e.contains("-C lacks 50"), "{e}");
    assert!(!never.exists());
    let e = record(&[], &c.dir.join("no/such/dir/m.safetensors"));
    assert!(e.contains("cannot create output file"), "{e}");
    for bad in [0, 1025] {
        let e = Model::builtin()
            .unwrap()
            .with_default_candidates(bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "megashtein.default_candidates is \"{bad}\", expected a whole number from 1 to \
                 1024"
            )),
            "{e}"
        );
    }
}
