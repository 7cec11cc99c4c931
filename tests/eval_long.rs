//! `eval` of a CNN-ED model (the long-string report): on a small DNA-like set of families,
//! the exact row's recall is 1, the model's relative error is the one computed here from
//! its embeddings, the untrained baseline's line is the trainer's fit, and missing or bad
//! input is a clear error.
mod common;

use std::path::Path;

use common::{err, ok};
use megashtein_gpu::edit_distance::Exact;
use megashtein_gpu::model::cnn_ed::{CnnEd, CnnEdShape};
use megashtein_gpu::train::cnn_ed_data::TripletData;
use megashtein_gpu::train::cnn_ed_run::fit_estimator;
use rand::{Rng, SeedableRng, rngs::StdRng};

const LETTERS: &[u8] = b"ACGT";

fn mutate(rng: &mut StdRng, s: &[u8], edits: usize) -> Vec<u8> {
    let mut s = s.to_vec();
    for _ in 0..edits {
        let at = rng.random_range(0..s.len());
        let c = LETTERS[rng.random_range(0..4)];
        match rng.random_range(0..3) {
            0 => s[at] = c,
            1 => s.insert(at, c),
            _ => {
                s.remove(at);
            }
        }
    }
    s
}

/// `n` strings in families: copies of 40 random ~100-letter roots with 0-9 edits each.
fn families(rng: &mut StdRng, n: usize) -> Vec<String> {
    let roots: Vec<Vec<u8>> = (0..40)
        .map(|_| {
            let len = rng.random_range(90..110);
            (0..len).map(|_| LETTERS[rng.random_range(0..4)]).collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            let root = &roots[rng.random_range(0..roots.len())];
            let edits = rng.random_range(0..10);
            String::from_utf8(mutate(rng, root, edits)).unwrap()
        })
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn bin(args: &[&str]) -> std::process::Output {
    common::run_bin(args, b"")
}

#[test]
fn eval_reports_a_cnn_ed_model_on_long_strings() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let strings = families(&mut rng, 380);
    let (train, rest) = strings.split_at(60);
    let (queries, base) = rest.split_at(20);
    let path = |name: &str| dir.path().join(name);
    write_lines(&path("train.txt"), train);
    write_lines(&path("queries.txt"), queries);
    write_lines(&path("base.txt"), base);

    let alphabet: Vec<char> = "ACGT".chars().collect();
    let mut model = CnnEd::random(alphabet.clone(), CnnEdShape::official(4, 128), 7).unwrap();
    model.set_estimator(40.0, 3.0);
    model.save(&path("model.safetensors")).unwrap();

    let out = path("out");
    let p = |name: &str| path(name).to_str().unwrap().to_string();
    let stdout = ok(bin(&[
        "eval",
        "--model",
        &p("model.safetensors"),
        "--train",
        &p("train.txt"),
        "--queries",
        &p("queries.txt"),
        "--base",
        &p("base.txt"),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        stdout.contains("rel.err") && stdout.contains("random-cnn-ed"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let row = |name: &str| {
        report["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no row {name}"))
            .clone()
    };
    let names: Vec<&str> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["model", "random-cnn-ed", "cgk", "exact"]);
    assert_eq!(report["data"]["base_rows"], 300);
    assert_eq!(report["data"]["queries"], 20);

    // The exact scan's first T candidates are all in the exact top-k: recall min(T, k) / k.
    let exact = row("exact");
    let ts = exact["search"]["ts"].as_array().unwrap();
    for curve in exact["search"]["curves"].as_array().unwrap() {
        let k = curve["k"].as_u64().unwrap();
        for (t, r) in ts.iter().zip(curve["recall"].as_array().unwrap()) {
            let want = t.as_u64().unwrap().min(k) as f64 / k as f64;
            assert!((r.as_f64().unwrap() - want).abs() < 1e-12, "{curve}");
        }
    }
    assert_eq!(exact["top10_within_100"], 1.0);
    assert_eq!(exact["relative_error"], 0.0);

    // The model's relative error, from its embeddings and its stored line.
    let embeddings = model.embed_all(&[queries, base].concat());
    let dim = model.dim();
    let e = model.estimator();
    let (mut sum, mut pairs) = (0.0, 0usize);
    // ... and over each query's exact 10 nearest (ties by base order) at d > 0.
    let (mut near_sum, mut near_pairs) = (0.0, 0usize);
    for (q, query) in queries.iter().enumerate() {
        let exact = Exact::new(query.as_bytes());
        let mut errors = Vec::new();
        for (j, b) in base.iter().enumerate() {
            let d = exact.distance(b.as_bytes()) as f64;
            if d > 0.0 {
                let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
                let estimate = f64::from(e.between(row(q), row(queries.len() + j)));
                sum += (estimate - d).abs() / d;
                pairs += 1;
                errors.push(((estimate - d).abs() / d, d as u32, j));
            } else {
                errors.push((0.0, 0, j));
            }
        }
        errors.sort_by_key(|&(_, d, j)| (d, j));
        for &(error, d, _) in &errors[..10] {
            if d > 0 {
                near_sum += error;
                near_pairs += 1;
            }
        }
    }
    let want = sum / pairs as f64;
    let got = row("model")["relative_error"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-4 * want,
        "relative error {got}, want {want}"
    );
    let want = near_sum / near_pairs as f64;
    let got = row("model")["near_relative_error"].as_f64().unwrap();
    assert!(
        (got - want).abs() <= 1e-4 * want,
        "near relative error {got}, want {want}"
    );
    assert_eq!(exact["near_relative_error"], 0.0);
    assert_eq!(report["data"]["error_pairs"], pairs);
    assert_eq!(row("model")["fit"]["slope"], 40.0);

    // The untrained baseline's line is the trainer's fit on the training pairs.
    let shape = model.shape();
    let mut random = CnnEd::random(alphabet, shape, megashtein_gpu::eval::RANDOM_SEED).unwrap();
    fit_estimator(&mut random, &TripletData::new(train.to_vec(), 1)).unwrap();
    let slope = row("random-cnn-ed")["fit"]["slope"].as_f64().unwrap();
    let want = f64::from(random.estimator().scale);
    assert!(
        (slope - want).abs() <= 1e-6 * want,
        "slope {slope}, want {want}"
    );
    for name in ["recall_k1.png", "recall_k10.png", "recall_k50.png"] {
        assert!(out.join(name).is_file(), "{name}");
    }

    // A seeded sample of the queries.
    let out2 = path("out2");
    ok(bin(&[
        "eval",
        "--model",
        &p("model.safetensors"),
        "--train",
        &p("train.txt"),
        "--queries",
        &p("queries.txt"),
        "--base",
        &p("base.txt"),
        "--max-queries",
        "5",
        "--no-baselines",
        "--out",
        out2.to_str().unwrap(),
    ]));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["data"]["queries"], 5);
    assert_eq!(report["data"]["query_rows"], 20);
    assert_eq!(report["models"].as_array().unwrap().len(), 2);
}

#[test]
fn eval_of_a_cnn_ed_model_needs_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let model = CnnEd::random("ACGT".chars().collect(), CnnEdShape::official(4, 64), 3).unwrap();
    let model_file = path("m.safetensors");
    model.save(Path::new(&model_file)).unwrap();
    std::fs::write(path("s.txt"), "ACGT\nACGA\nTTTT\n").unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["eval", "--model", &model_file];
        args.extend(extra);
        err(bin(&args))
    };
    let s = path("s.txt");
    let out = path("out");
    for args in [
        vec!["--queries", &s, "--base", &s, "--out", &out],
        vec!["--train", &s, "--base", &s, "--out", &out],
        vec!["--train", &s, "--queries", &s, "--out", &out],
    ] {
        let e = run(&args);
        assert!(
            e.contains("--train FILE") && e.contains("--queries FILE"),
            "{args:?}: {e}"
        );
    }
    let e = run(&[
        "--train",
        &s,
        "--queries",
        "20",
        "--base",
        &s,
        "--out",
        &out,
    ]);
    assert!(
        e.contains("--queries 20") && e.contains("--max-queries"),
        "{e}"
    );
    let e = run(&[
        "--train",
        &s,
        "--queries",
        &s,
        "--base",
        &s,
        "--max-queries",
        "0",
        "--out",
        &out,
    ]);
    assert!(e.contains("--max-queries must be positive"), "{e}");

    // Invalid UTF-8 names the file and line; an empty base is refused.
    std::fs::write(path("bad.txt"), b"ACGT\nAC\xffGT\n").unwrap();
    let e = run(&[
        "--train",
        &s,
        "--queries",
        &path("bad.txt"),
        "--base",
        &s,
        "--out",
        &out,
    ]);
    assert!(e.contains("bad.txt:2"), "{e}");
    std::fs::write(path("empty.txt"), "").unwrap();
    let e = run(&[
        "--train",
        &s,
        "--queries",
        &s,
        "--base",
        &path("empty.txt"),
        "--out",
        &out,
    ]);
    assert!(e.contains("empty.txt") && e.contains("no strings"), "{e}");
    assert!(!Path::new(&out).join("report.json").exists());

    // A megashtein model does not take a query file or --train.
    let e = err(bin(&["eval", "--queries", &s, "--out", &out]));
    assert!(e.contains("CNN-ED"), "{e}");
    let e = err(bin(&["eval", "--train", &s, "--out", &out]));
    assert!(e.contains("--train"), "{e}");
}
