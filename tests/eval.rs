//! `eval`: every metric on hand-made cases worked out here, and the command end to end.
mod common;

use common::{err, ok};
use std::io::Cursor;
use std::path::Path;

use megashtein_gpu::eval::data;
use megashtein_gpu::eval::metrics::{self, LinearFit, ThresholdCount};
use megashtein_gpu::input::{LineReader, NonAscii};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---------------------------------------------------------------- metrics

#[test]
fn rank_rows_breaks_ties_by_row() {
    assert_eq!(metrics::rank_rows(&[1.0, 0.5, 1.0, 0.5]), vec![1, 3, 0, 2]);
    assert!(metrics::rank_rows(&[]).is_empty());
}

#[test]
fn recall_counts_ties_at_the_kth_distance() {
    // Sorted exact distances 1, 2, 2, 3, 5: the 2nd smallest is 2, so rows 1, 2 and 3
    // (distances 1, 2, 2) are all relevant, at most 2 of them count.
    let exact = [3, 1, 2, 2, 5];
    let order = [4, 2, 0, 3, 1];
    let r = metrics::recall_at(&exact, &order, 2, &[1, 2, 3, 4, 5]).unwrap();
    assert_eq!(r, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
    // k = 1: only row 1 (distance 1), found at position 5.
    let r = metrics::recall_at(&exact, &order, 1, &[1, 4, 5]).unwrap();
    assert_eq!(r, vec![0.0, 0.0, 1.0]);
    // Three rows tie at the smallest distance; k = 1 is met by any of them.
    let r = metrics::recall_at(&[0, 0, 0, 4], &[3, 2, 1, 0], 1, &[1, 2]).unwrap();
    assert_eq!(r, vec![0.0, 1.0]);
}

#[test]
fn recall_when_the_base_is_smaller_than_k_and_t() {
    // N = 2 < k = 10 < T: both rows are the top-k, recall is over k' = 2.
    let r = metrics::recall_at(&[1, 0], &[0, 1], 10, &[1, 2, 4, 8]).unwrap();
    assert_eq!(r, vec![0.5, 1.0, 1.0, 1.0]);
    assert_eq!(metrics::candidate_steps(5), vec![1, 2, 4, 5]);
    assert_eq!(
        metrics::candidate_steps(300),
        vec![1, 2, 4, 8, 10, 16, 32, 64, 100, 128, 256, 300]
    );
    assert_eq!(metrics::candidate_steps(4), vec![1, 2, 4]);
    assert_eq!(metrics::candidate_steps(1), vec![1]);
    assert_eq!(metrics::candidate_steps(0), vec![1]);
}

#[test]
fn metrics_on_an_empty_base() {
    assert_eq!(metrics::recall_at(&[], &[], 1, &[1]), None);
    assert_eq!(metrics::nearest_rank(&[], &[]), None);
    assert_eq!(metrics::kth_smallest(&[], 3), None);
    assert_eq!(metrics::rerank_top1(&[], &[], &[], 10), None);
    assert_eq!(
        metrics::threshold_count(&[], &[], 2, 2.0),
        ThresholdCount::default()
    );
}

#[test]
fn a_query_equal_to_a_base_string() {
    // Row 2 is the query itself (distance 0).
    let exact = [4, 1, 0, 1];
    let est = [3.0, 0.5, 0.25, 0.75];
    let order = metrics::rank_rows(&est);
    assert_eq!(order, vec![2, 1, 3, 0]);
    assert_eq!(metrics::nearest_rank(&exact, &order), Some(0));
    assert_eq!(
        metrics::recall_at(&exact, &order, 1, &[1, 4]).unwrap(),
        vec![1.0, 1.0]
    );
    // k = 2: distance 0 and the two rows at 1 are relevant; two count.
    assert_eq!(
        metrics::recall_at(&exact, &order, 2, &[1, 2, 3]).unwrap(),
        vec![0.5, 1.0, 1.0]
    );
    assert_eq!(metrics::rerank_top1(&exact, &est, &order, 1), Some(2));
}

#[test]
fn nearest_rank_and_exact_rerank() {
    assert_eq!(metrics::nearest_rank(&[2, 1, 1], &[0, 2, 1]), Some(1));
    let exact = [2, 1, 1, 0];
    let est = [0.1, 0.5, 0.2, 0.9];
    let order = metrics::rank_rows(&est);
    assert_eq!(order, vec![0, 2, 1, 3]);
    assert_eq!(metrics::rerank_top1(&exact, &est, &order, 1), Some(0));
    assert_eq!(metrics::rerank_top1(&exact, &est, &order, 2), Some(2));
    // Rows 2 and 1 tie at distance 1: the smaller estimate wins.
    assert_eq!(metrics::rerank_top1(&exact, &est, &order, 3), Some(2));
    assert_eq!(metrics::rerank_top1(&exact, &est, &order, 4), Some(3));
    // C beyond N is the whole base.
    assert_eq!(metrics::rerank_top1(&exact, &est, &order, 100), Some(3));
}

#[test]
fn threshold_search_counts() {
    let exact = [0, 1, 2, 3];
    let est = [0.5, 3.0, 1.0, 10.0];
    // D = 2: truth rows 0, 1, 2; mu = 1 keeps estimates <= 2: rows 0, 2.
    let c = metrics::threshold_count(&exact, &est, 2, 1.0);
    assert_eq!(
        c,
        ThresholdCount {
            truth: 3,
            candidates: 2,
            found: 2
        }
    );
    // mu = 2 keeps estimates <= 4: rows 0, 1, 2 (all of the truth).
    let c = metrics::threshold_count(&exact, &est, 2, 2.0);
    assert_eq!((c.truth, c.candidates, c.found), (3, 3, 3));
    // mu = 8: every row is a candidate.
    let c = metrics::threshold_count(&exact, &est, 2, 8.0);
    assert_eq!((c.truth, c.candidates, c.found), (3, 4, 3));
}

#[test]
fn linear_fit_spearman_and_pair_errors() {
    let g = LinearFit::fit(&[1.0, 2.0, 3.0], &[3.0, 5.0, 7.0]);
    assert!(close(g.slope, 2.0) && close(g.intercept, 1.0), "{g:?}");
    // Through the origin: sum(xy) / sum(x^2) = (1 + 6) / 5.
    let p = LinearFit::fit_proportional(&[1.0, 2.0], &[1.0, 3.0]);
    assert!(close(p.slope, 1.4) && close(p.intercept, 0.0));
    assert!(close(
        LinearFit::fit_proportional(&[0.0], &[1.0]).slope,
        1.0
    ));
    let flat = LinearFit::fit(&[2.0, 2.0], &[1.0, 3.0]);
    assert!(close(flat.slope, 0.0) && close(flat.intercept, 2.0));

    assert!(close(
        metrics::spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 90.0]).unwrap(),
        1.0
    ));
    assert!(close(
        metrics::spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
        -1.0
    ));
    // Ties get average ranks: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) give
    // 4.5 / sqrt(4.5 * 5).
    let s = metrics::spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    assert!(close(s, 4.5 / (4.5f64 * 5.0).sqrt()), "{s}");
    assert_eq!(metrics::spearman(&[1.0, 1.0], &[1.0, 2.0]), None);

    // Errors 0, 0, 2 against d = 1, 2, 2: MAE 2/3, MRE (0 + 0 + 1) / 3.
    let identity = LinearFit {
        slope: 1.0,
        intercept: 0.0,
    };
    let st = metrics::pair_stats(&[1.0, 2.0, 4.0], &[1.0, 2.0, 2.0], &identity);
    assert_eq!(st.pairs, 3);
    assert!(
        close(st.mae, 2.0 / 3.0) && close(st.mre, 1.0 / 3.0),
        "{st:?}"
    );
    // g is applied before the error: g(x) = x / 2 makes (2, 4, 4) exact.
    let half = LinearFit {
        slope: 0.5,
        intercept: 0.0,
    };
    let st = metrics::pair_stats(&[2.0, 4.0, 4.0], &[1.0, 2.0, 2.0], &half);
    assert!(close(st.mae, 0.0) && close(st.mre, 0.0));
}

// ---------------------------------------------------------------- data

fn reader(text: &str, mode: NonAscii) -> LineReader<Cursor<Vec<u8>>> {
    LineReader::new(Cursor::new(text.as_bytes().to_vec()), "pairs.tsv", mode)
}

#[test]
fn pairs_files_reject_missing_tabs_and_follow_the_non_ascii_rules() {
    let (ok, warnings) =
        data::read_pairs(reader("teh\tthe\nrecieve\treceive\n", NonAscii::Error)).unwrap();
    assert_eq!(ok.len(), 2);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(ok[1].wrong, b"recieve");
    assert_eq!(ok[1].correct, b"receive");

    let e = data::read_pairs(reader("teh\tthe\nrecieve receive\n", NonAscii::Error))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pairs.tsv:2:") && e.contains("no tab"), "{e}");
    let e = data::read_pairs(reader("\tthe\n", NonAscii::Error))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pairs.tsv:1:") && e.contains("empty"), "{e}");

    let text = "teh\tthe\ncaf\u{e9}\tcafe\n";
    let e = format!(
        "{:#}",
        data::read_pairs(reader(text, NonAscii::Error)).unwrap_err()
    );
    assert!(e.contains("pairs.tsv:2:"), "{e}");
    // Dropped lines are counted for a warning, like `embed`'s.
    let (skipped, warnings) = data::read_pairs(reader(text, NonAscii::Skip)).unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        warnings,
        ["1 line contained non-ASCII characters and was skipped (first: line 2)"]
    );
    let (replaced, _) = data::read_pairs(reader(text, NonAscii::Replace)).unwrap();
    assert_eq!(replaced[1].wrong, b"caf?");
}

#[test]
fn builtin_set_and_held_out_queries() {
    let base = data::builtin_base();
    let pairs = data::builtin_pairs();
    assert!(base.len() >= 1000 && pairs.len() >= 100);
    let set: std::collections::HashSet<&Vec<u8>> = base.iter().collect();
    for p in &pairs {
        assert!(set.contains(&p.correct) && !set.contains(&p.wrong));
    }
    let q = data::held_out_queries(5, &base, 300);
    assert_eq!(q.len(), 300);
    assert!(q.iter().all(|s| !set.contains(s)));
    assert_eq!(q, data::held_out_queries(5, &base, 300), "seeded");
    assert!(data::held_out_queries(5, &[], 10).is_empty());
    let syn = data::synthetic_pairs(1, 500);
    assert!(
        syn.iter()
            .all(|(a, b)| a != b && a.len() <= 80 && b.len() <= 80)
    );
    let lens: std::collections::HashSet<usize> = syn.iter().map(|p| p.0.len()).collect();
    assert!(lens.len() > 60, "lengths cover 1..=80");
    assert!(
        syn.iter()
            .flat_map(|(a, b)| a.iter().chain(b))
            .all(u8::is_ascii_lowercase)
    );
    // The printable set: the same shapes over printable ASCII, all of it in use.
    let printable = data::printable_pairs(1, 500);
    assert!(
        printable
            .iter()
            .all(|(a, b)| a != b && a.len() <= 80 && b.len() <= 80 && !b.is_empty())
    );
    let bytes: std::collections::HashSet<u8> = printable
        .iter()
        .flat_map(|(a, b)| a.iter().chain(b).copied())
        .collect();
    assert_eq!(bytes.len(), 95, "{bytes:?}");
    assert!(bytes.iter().all(|&c| (b' '..=b'~').contains(&c)));
}

// ---------------------------------------------------------------- end to end

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

fn model<'a>(r: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    r["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
}

#[test]
fn eval_on_the_builtin_set_writes_the_report_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let stdout = ok(bin(&[
        "eval",
        "--out",
        out.to_str().unwrap(),
        "--queries",
        "60",
        "--synthetic-pairs",
        "600",
        "--typo-pairs",
        "300",
    ]));
    assert!(
        stdout.contains("random-cnn") && stdout.contains("exact"),
        "{stdout}"
    );
    let r = report(&out);
    assert_eq!(r["data"]["base_rows"], 3000);
    assert_eq!(r["data"]["queries"], 60);
    for name in ["model", "random-cnn", "cgk", "exact"] {
        assert!(model(&r, name).is_some(), "row {name}");
    }
    // The exact scan is the 100% line: min(T, k) / k.
    let exact = model(&r, "exact").unwrap();
    let ts = r["data"]["ts"].as_array().unwrap();
    for c in exact["search"]["curves"].as_array().unwrap() {
        let k = c["k"].as_f64().unwrap();
        for (t, x) in ts.iter().zip(c["recall"].as_array().unwrap()) {
            assert!(close(x.as_f64().unwrap(), t.as_f64().unwrap().min(k) / k));
        }
    }
    assert_eq!(exact["distance"]["all"]["mae"], 0.0);
    // The printable synthetic pairs are measured for every row, apart from the fit.
    for m in r["models"].as_array().unwrap() {
        let printable = &m["distance"]["synthetic_printable"];
        assert_eq!(printable["pairs"], 600, "{}", m["name"]);
        assert!(
            printable["mre"].as_f64().unwrap().is_finite(),
            "{}",
            m["name"]
        );
        assert_eq!(m["distance"]["fit_pairs"], 450, "{}", m["name"]);
    }
    assert_eq!(exact["distance"]["synthetic_printable"]["mae"], 0.0);
    assert!(
        stdout.contains("synthetic MRE, lower-case (the evaluation half) / printable (all): "),
        "{stdout}"
    );

    // The untrained network scores below the trained ones.
    let score = |m: &serde_json::Value| {
        let recall10 = m["search"]["curves"][1]["recall"][6].as_f64().unwrap(); // T = 64
        let correct = m["misspellings"]["correct_within"][2].as_f64().unwrap(); // C = 100
        let rho = m["distance"]["all"]["spearman"].as_f64().unwrap();
        (recall10, correct, rho)
    };
    let random = score(model(&r, "random-cnn").unwrap());
    let mut trained = vec![score(model(&r, "model").unwrap())];
    if let Some(released) = model(&r, "released") {
        trained.push(score(released));
    }
    for t in trained {
        assert!(
            t.0 > random.0 && t.1 > random.1 && t.2 > random.2,
            "{t:?} vs {random:?}"
        );
    }

    let mut plots = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                path.display()
            );
            assert!(
                bytes.len() > 20_000,
                "{} is {} bytes",
                path.display(),
                bytes.len()
            );
            plots += 1;
        }
    }
    for name in ["recall_k1.png", "recall_k10.png", "recall_k50.png"] {
        assert!(out.join(name).is_file(), "{name}");
    }
    assert!(out.join("relative_error_by_distance.png").is_file());
    assert!(out.join("estimate_model.png").is_file());
    assert!(plots >= 7, "{plots} plots");
}

#[test]
fn eval_skips_pairs_outside_the_base_and_handles_an_empty_base() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.txt");
    std::fs::write(&base, "receive\nthe\nseparate\nteh\n").unwrap();
    let pairs = dir.path().join("pairs.tsv");
    // Kept, correct word absent, misspelling in the base (a valid word).
    std::fs::write(
        &pairs,
        "recieve\treceive\nacommodate\taccommodate\nteh\tthe\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let common = [
        "--no-baselines",
        "--queries",
        "5",
        "--synthetic-pairs",
        "20",
        "--typo-pairs",
        "4",
    ];
    let mut args = vec![
        "eval",
        "--base",
        base.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(common);
    ok(bin(&args));
    let r = report(&out);
    assert_eq!(r["data"]["misspellings_read"], 3);
    assert_eq!(r["data"]["misspellings_used"], 1);
    assert_eq!(r["data"]["skipped_correct_not_in_base"], 1);
    assert_eq!(r["data"]["skipped_wrong_in_base"], 1);
    let m = model(&r, "model").unwrap();
    // One pair against a 4-word base: the exact scan's top-1 is "receive".
    assert_eq!(m["misspellings"]["exact_top1_correct"], 1.0);
    assert_eq!(m["misspellings"]["correct_within"][3], 1.0); // C = 1000 > N

    // An empty base: a report with no queries, no panic.
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let out2 = dir.path().join("out2");
    let mut args = vec![
        "eval",
        "--base",
        empty.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ];
    args.extend(common);
    ok(bin(&args));
    let r = report(&out2);
    assert_eq!(r["data"]["base_rows"], 0);
    assert_eq!(r["data"]["queries"], 0);
    assert_eq!(r["data"]["skipped_correct_not_in_base"], 3);
}

#[test]
fn eval_rejects_bad_input_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("bad.tsv");
    std::fs::write(&pairs, "teh\tthe\nrecieve receive\n").unwrap();
    let out = dir.path().join("out");
    let e = err(bin(&[
        "eval",
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(e.contains("bad.tsv:2:") && e.contains("no tab"), "{e}");

    let base = dir.path().join("base.txt");
    std::fs::write(&base, "ok\ncaf\u{e9}\n").unwrap();
    let e = err(bin(&[
        "eval",
        "--base",
        base.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        e.contains("base.txt:2:") && e.contains("--non-ascii"),
        "{e}"
    );

    // An index given as the reference model is named as one (the magic is enough).
    let index = dir.path().join("words.idx");
    std::fs::write(&index, b"MGSHTIDX and the rest of an index").unwrap();
    let e = err(bin(&[
        "eval",
        "--reference",
        index.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(
        e.contains("words.idx is a megashtein-gpu index, not a model file"),
        "{e}"
    );
    assert!(!out.join("report.json").exists());
}

// ---------------------------------------------------------------- CPU ranking vs GPU kNN

#[test]
fn cpu_ranking_agrees_with_the_gpu_search() {
    use megashtein_gpu::embed::Embedder;
    use megashtein_gpu::gpu::{Gpu, GpuOptions};
    use megashtein_gpu::ops::knn::{Database, Knn};

    // eval ranks candidates on the CPU (so that T can reach N); the query path ranks them
    // with the GPU kNN. Both must give the same candidates up to float near-ties.
    let gpu = Gpu::new(&GpuOptions::default()).expect("a GPU adapter");
    let model = megashtein_gpu::Model::builtin().unwrap();
    let base: Vec<Vec<u8>> = data::builtin_base().into_iter().step_by(10).collect();
    let queries = data::held_out_queries(3, &base, 8);
    let mut embedder = Embedder::new(&gpu, model.weights().unwrap(), 512).unwrap();
    let texts: Vec<&[u8]> = base.iter().map(|s| s.as_slice()).collect();
    let emb = embedder.embed(&texts).unwrap();
    let qtexts: Vec<&[u8]> = queries.iter().map(|s| s.as_slice()).collect();
    let qemb = embedder.embed(&qtexts).unwrap();
    let db = Database::upload(&gpu, bytemuck::cast_slice(&emb), 80, false, None).unwrap();
    let k = 32;
    let found = Knn::new(&gpu).search(&gpu, &db, &qemb, k).unwrap();
    for (q, hits) in found.iter().enumerate() {
        let qv = &qemb[q * 80..(q + 1) * 80];
        let est: Vec<f32> = (0..base.len())
            .map(|j| {
                let b = &emb[j * 80..(j + 1) * 80];
                qv.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
            })
            .collect();
        let order = metrics::rank_rows(&est);
        for (pos, hit) in hits.iter().enumerate() {
            let cpu = order[pos];
            let gap = (est[cpu] - hit.distance).abs();
            assert!(
                hit.row == cpu || gap <= 1e-4 * est[cpu].max(1.0),
                "query {q} position {pos}: GPU row {} ({}), CPU row {cpu} ({})",
                hit.row,
                hit.distance,
                est[cpu]
            );
        }
    }
}

fn bin(args: &[&str]) -> std::process::Output {
    common::run_bin(args, b"")
}
