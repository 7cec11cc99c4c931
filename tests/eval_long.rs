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

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// A row's threshold reports: one for each K; with a query that has a base string within
/// K, recall within [0, 1] and non-decreasing in mu, candidates per query non-decreasing
/// and at most the base, and recall 1 where every base string is a candidate; without
/// one, recall null.
fn check_threshold_search(row: &serde_json::Value, thresholds: &[f64], mus: &[f64], base: usize) {
    let reports = row["threshold"].as_array().unwrap();
    assert_eq!(reports.len(), thresholds.len(), "{}", row["name"]);
    for (t, &k) in reports.iter().zip(thresholds) {
        assert_eq!(t["d"].as_f64(), Some(k), "{t}");
        let (recall, candidates) = (numbers(&t["recall"]), numbers(&t["candidates"]));
        assert_eq!(
            (recall.len(), candidates.len()),
            (mus.len(), mus.len()),
            "{t}"
        );
        if t["queries"] == 0 {
            assert!(recall.iter().all(|r| r.is_nan()), "{t}");
            continue;
        }
        for w in recall.windows(2).chain(candidates.windows(2)) {
            assert!(
                w[0] <= w[1],
                "{}: not non-decreasing in mu: {t}",
                row["name"]
            );
        }
        for (&r, &c) in recall.iter().zip(&candidates) {
            assert!((0.0..=1.0).contains(&r) && c <= base as f64, "{t}");
            if c == base as f64 {
                assert_eq!(r, 1.0, "{}: every string a candidate: {t}", row["name"]);
            }
        }
    }
}

/// Recall and mean candidates of threshold search at K and mu over the queries with a
/// base string within K, recomputed from `distances` and `screens` (`[query][base]`): a
/// candidate has screen <= mu * K, or is equal to the query; `slack` widens the screen
/// both ways. Returns (queries, lowest (recall, candidates), highest).
fn threshold_search(
    distances: &[Vec<u32>],
    screens: &[Vec<f64>],
    k: f64,
    mu: f64,
    slack: f64,
) -> (usize, [f64; 2], [f64; 2]) {
    let mut sums = [[0.0; 2]; 2];
    let mut queries = 0;
    for (row, screen) in distances.iter().zip(screens) {
        let truth = row.iter().filter(|&&d| f64::from(d) <= k).count();
        if truth == 0 {
            continue;
        }
        queries += 1;
        for (bound, factor) in [1.0 + slack, 1.0 - slack].into_iter().enumerate() {
            let candidate = |j: usize| row[j] == 0 || screen[j] * factor <= mu * k;
            let found = (0..row.len())
                .filter(|&j| candidate(j) && f64::from(row[j]) <= k)
                .count();
            sums[bound][0] += found as f64 / truth as f64;
            sums[bound][1] += (0..row.len()).filter(|&j| candidate(j)).count() as f64;
        }
    }
    let mean = |s: [f64; 2]| s.map(|x| x / queries as f64);
    (queries, mean(sums[0]), mean(sums[1]))
}

/// The row's threshold reports against [`threshold_search`] at every K and mu.
fn check_threshold_values(
    row: &serde_json::Value,
    distances: &[Vec<u32>],
    screens: &[Vec<f64>],
    mus: &[f64],
    slack: f64,
) {
    let mut strictly_between = 0;
    for t in row["threshold"].as_array().unwrap() {
        let k = t["d"].as_f64().unwrap();
        let (recall, candidates) = (numbers(&t["recall"]), numbers(&t["candidates"]));
        for (mi, &mu) in mus.iter().enumerate() {
            let (queries, lo, hi) = threshold_search(distances, screens, k, mu, slack);
            assert_eq!(t["queries"], queries, "{t}");
            if queries == 0 {
                continue;
            }
            for (i, got) in [recall[mi], candidates[mi]].into_iter().enumerate() {
                assert!(
                    lo[i] - 1e-9 <= got && got <= hi[i] + 1e-9,
                    "{} K {k} mu {mu}: {got} outside [{}, {}]",
                    row["name"],
                    lo[i],
                    hi[i]
                );
            }
            strictly_between += usize::from(recall[mi] > 0.0 && recall[mi] < 1.0);
        }
    }
    // Some (K, mu) is neither none nor all, so the check above tells screens apart.
    assert!(strictly_between > 0, "{}", row["threshold"]);
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
    // About the slope the trainer would fit (the untrained distances are ~0.005 apart), so
    // that threshold search at small K is neither none nor all of the base.
    model.set_estimator(8000.0, 3.0);
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
    // Every (query, base) distance, for threshold search below.
    let mut distances: Vec<Vec<u32>> = Vec::new();
    for (q, query) in queries.iter().enumerate() {
        let exact = Exact::new(query.as_bytes());
        let mut errors = Vec::new();
        distances.push(Vec::new());
        for (j, b) in base.iter().enumerate() {
            let d = exact.distance(b.as_bytes()) as f64;
            distances[q].push(d as u32);
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

    // Threshold search: every row's report holds together; the exact scan's is the brute
    // force here, and the model's is that of its screen (its line less the intercept) from
    // the embeddings here, up to the GPU's rounding.
    let thresholds = numbers(&report["data"]["thresholds"]);
    let mus = numbers(&report["data"]["mus"]);
    assert!(
        thresholds.len() >= 3 && mus.len() >= 8,
        "{}",
        report["data"]
    );
    for m in report["models"].as_array().unwrap() {
        check_threshold_search(m, &thresholds, &mus, base.len());
    }
    let exact_screens: Vec<Vec<f64>> = distances
        .iter()
        .map(|row| row.iter().map(|&d| f64::from(d)).collect())
        .collect();
    check_threshold_values(&exact, &distances, &exact_screens, &mus, 0.0);
    let k100 = thresholds.iter().position(|&k| k == 100.0).unwrap();
    assert_eq!(
        exact["threshold"][k100]["candidates"][mus.len() - 1],
        base.len() as f64,
        "every base string is within 100: {}",
        exact["threshold"][k100]
    );
    let model_screens: Vec<Vec<f64>> = (0..queries.len())
        .map(|q| {
            (0..base.len())
                .map(|j| {
                    let row = |i: usize| &embeddings[i * dim..(i + 1) * dim];
                    let squared = e.metric.distance(row(q), row(queries.len() + j));
                    f64::from(e.screen(squared as f32))
                })
                .collect()
        })
        .collect();
    check_threshold_values(&row("model"), &distances, &model_screens, &mus, 1e-3);
    assert_eq!(report["data"]["error_pairs"], pairs);
    assert_eq!(row("model")["fit"]["slope"], 8000.0);

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
    let plots = ["recall_k1.png", "recall_k10.png", "recall_k50.png"].map(String::from);
    let threshold_plots = thresholds.iter().map(|k| format!("threshold_d{k}.png"));
    for name in plots.into_iter().chain(threshold_plots) {
        assert!(out.join(&name).is_file(), "{name}");
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
