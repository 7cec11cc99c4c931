//! The CGK model: its walk against a plain implementation of the definition and the
//! lower bound, the GPU encoder bit for bit against the CPU, the model file, and a CGK
//! index answering queries exactly when every row is a candidate.
mod common;

use common::{gpu, levenshtein};
use megashtein_gpu::eval::data;
use megashtein_gpu::model::cgk::{self, Cgk, PAD};
use megashtein_gpu::model::cgk_encoder::CgkEncoder;
use megashtein_gpu::model::{Architecture, Estimator, Model};
use megashtein_gpu::search::index::{Index, Precision};
use megashtein_gpu::search::query::{QueryOptions, Searcher};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Algorithm 1 of seed 002 written out as stated: i = 1, for j = 1..3n: a_j = x_i,
/// i = i + h_j(x_i); past the end of x the walk reads the padding symbol.
fn cgk_plain(x: &[u8], n: usize, h: &dyn Fn(usize, u8) -> bool) -> Vec<u8> {
    let x: Vec<u8> = x.iter().take(n).map(|&c| c.min(127)).collect();
    let mut a = Vec::with_capacity(3 * n);
    let mut i = 1;
    for j in 1..=3 * n {
        let xi = if i <= x.len() { x[i - 1] } else { PAD };
        a.push(xi); // a_j
        i += usize::from(h(j - 1, xi));
    }
    a
}

/// Walks `[reps][3n]` as a code: step j of walk r at `j * reps + r`.
fn interleave(walks: &[Vec<u8>]) -> Vec<u8> {
    (0..walks[0].len())
        .flat_map(|j| walks.iter().map(move |w| w[j]))
        .collect()
}

fn random_ascii(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random_range(0..128u8)).collect()
}

#[test]
fn cgk_matches_its_definition_on_fixed_random_bits() {
    let mut rng = StdRng::seed_from_u64(7);
    for &(n, reps) in &[(1, 1), (5, 2), (12, 3), (80, 2)] {
        // A table of random bits, one per (rep, step, symbol).
        let table: Vec<Vec<Vec<bool>>> = (0..reps)
            .map(|_| {
                (0..3 * n)
                    .map(|_| (0..cgk::SYMBOLS).map(|_| rng.random()).collect())
                    .collect()
            })
            .collect();
        let c = Cgk::from_fn(n, reps, |r, j, s| table[r][j][s as usize]);
        assert_eq!(c.width(), reps * 3 * n);
        for _ in 0..50 {
            let len = rng.random_range(0..=n + 3);
            let x = random_ascii(&mut rng, len);
            let mut got = Vec::new();
            c.embed_into(&x, &mut got);
            let walks: Vec<Vec<u8>> = (0..reps)
                .map(|r| cgk_plain(&x, n, &|j, s| table[r][j][s as usize]))
                .collect();
            assert_eq!(got, interleave(&walks), "n {n}, x {x:?}");
        }
        // Bits drawn from a seed agree with the same definition through `hash`.
        let c = Cgk::new(n, reps, 99);
        let x = random_ascii(&mut rng, n);
        let mut got = Vec::new();
        c.embed_into(&x, &mut got);
        let walks: Vec<Vec<u8>> = (0..reps)
            .map(|r| cgk_plain(&x, n, &|j, s| c.hash(r, j, s)))
            .collect();
        assert_eq!(got, interleave(&walks));
    }
    // Each character is copied at least once, in order, then padding.
    let c = Cgk::new(4, 1, 3);
    let out = c.embed_all(&[b"ab"]);
    let mut dedup = out.clone();
    dedup.dedup();
    assert_eq!(dedup, vec![b'a', b'b', PAD]);
}

/// Random pairs over all lengths 1..=80, with up to 40 random edits.
fn random_pairs(seed: u64, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(1..=80);
            let alphabet: &[u8] = if rng.random() { b"ab" } else { b"abcdefghij" };
            let a: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let k = rng.random_range(0..=40);
            let mut b = data::typo(&mut rng, &a, k, alphabet);
            b.truncate(80);
            (a, b)
        })
        .collect()
}

#[test]
fn cgk_hamming_respects_the_lower_bound() {
    // Seed 002, Theorem 1(2) (and CGK's main theorem): ED(x, y) / 2 <= Ham(f(x), f(y)).
    // When both walks read their whole strings (all but an exponentially rare choice of
    // bits) the argument in cgk.rs gives even ED <= Ham; we check both.
    let pairs = random_pairs(11, 600);
    let mut whole = 0;
    for seed in 0..5 {
        let c = Cgk::new(80, 1, seed);
        for (a, b) in &pairs {
            let ed = levenshtein(a, b);
            let e = c.embed_all(&[a, b]);
            let ham = cgk::hamming(&e[..c.width()], &e[c.width()..]);
            assert!(2 * ham >= ed, "seed {seed}: ham {ham} < ed {ed} / 2");
            if c.reads_whole(a) && c.reads_whole(b) {
                whole += 1;
                assert!(ham >= ed, "seed {seed}: ham {ham} < ed {ed}");
            }
        }
    }
    assert!(whole > 2900, "{whole}");
}

#[test]
fn cgk_lower_bound_needs_the_walk_to_finish() {
    // Bits that never advance on 'a' stop the walk before the end of "aaab"; the
    // strings' embeddings then agree although their edit distance is 1.
    let c = Cgk::from_fn(4, 1, |_, _, s| s != b'a');
    let e = c.embed_all(&[b"aaab", b"aaac"]);
    assert_eq!(cgk::hamming(&e[..12], &e[12..]), 0);
    assert!(!c.reads_whole(b"aaab"));
}

/// Strings that exercise the encoder: empty, one character, exactly and over 80, the
/// bytes 0 and 127 (and above, read as 127), and random lengths.
fn encoder_cases(rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut cases = vec![
        Vec::new(),
        b"a".to_vec(),
        vec![0u8; 5],
        vec![127u8, 200, 255, 0],
        random_ascii(rng, 80),
        random_ascii(rng, 81),
        random_ascii(rng, 200),
    ];
    for _ in 0..300 {
        let len = rng.random_range(0..=90);
        // Small alphabets too, so that walks see repeated symbols.
        let top = if rng.random() { 3 } else { 128 };
        cases.push((0..len).map(|_| rng.random_range(0..top)).collect());
    }
    cases
}

#[test]
fn gpu_codes_equal_the_cpu_codes_bit_for_bit() {
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(5);
    let cases = encoder_cases(&mut rng);
    let texts: Vec<&[u8]> = cases.iter().map(Vec::as_slice).collect();
    for reps in 1..=cgk::MAX_REPS {
        let c = Cgk::new(80, reps, 1000 + reps as u64);
        // A capacity below the case count: several batches through one encoder.
        let mut encoder = CgkEncoder::new(&t.gpu, &c, 128).unwrap();
        let mut got = Vec::new();
        for chunk in texts.chunks(encoder.capacity()) {
            got.extend(encoder.encode(&t.gpu, chunk).unwrap());
        }
        let want = c.embed_all(&texts);
        for (i, (g, w)) in got
            .chunks(c.width())
            .zip(want.chunks(c.width()))
            .enumerate()
        {
            assert_eq!(g, w, "reps {reps}, string {i} {:?}", cases[i]);
        }
        assert_eq!(got.len(), want.len());
    }
    // A walk shorter than 80 characters (a model file may set the length).
    let c = Cgk::from_fn(12, 3, |r, j, s| {
        !(r * 7 + j * 3 + s as usize).is_multiple_of(3)
    });
    let mut encoder = CgkEncoder::new(&t.gpu, &c, 512).unwrap();
    assert_eq!(encoder.encode(&t.gpu, &texts).unwrap(), c.embed_all(&texts));
}

#[test]
fn model_files_round_trip_and_bad_ones_are_refused_by_name() {
    let mut c = Cgk::new(80, 2, 77);
    c.set_estimator(Estimator::hamming(2, 0.8, 0.7));
    let bytes = c.to_safetensors().unwrap();
    let model = Model::from_bytes(bytes.clone(), "cgk.safetensors").unwrap();
    assert_eq!(model.arch_name(), cgk::ARCH);
    assert_eq!(model.dim(), 480);
    assert_eq!(model.estimator(), Estimator::hamming(2, 0.8, 0.7));
    match model.architecture() {
        Architecture::Cgk(back) => assert_eq!(back, &c),
        _ => panic!("read as a network"),
    }
    assert_eq!(c.to_safetensors().unwrap(), bytes, "deterministic bytes");
    let err = model.weights().unwrap_err().to_string();
    assert!(
        err.contains("cgk.safetensors") && err.contains("cgk-v1"),
        "{err}"
    );

    // Metadata edited to something invalid: each refused, naming the file and the key.
    let header_len = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..header_len].to_vec()).unwrap();
    for (from, to, key) in [
        (
            "\"megashtein.cgk.repetitions\":\"2\"",
            "\"megashtein.cgk.repetitions\":\"5\"",
            "repetitions",
        ),
        (
            "\"megashtein.cgk.length\":\"80\"",
            "\"megashtein.cgk.length\":\"81\"",
            "length",
        ),
        (
            "\"megashtein.estimate_exponent\":\"0.7\"",
            "\"megashtein.estimate_exponent\":\"-0.7\"",
            "exponent",
        ),
        ("ascii+pad", "utf-8+pad", "alphabet"),
    ] {
        assert!(header.contains(from), "{from}");
        let edited = header.replacen(from, to, 1);
        let mut file = (edited.len() as u64).to_le_bytes().to_vec();
        file.extend(edited.as_bytes());
        file.extend(&bytes[header_len..]);
        let err = Model::from_bytes(file, "bad.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.safetensors") && err.contains(key),
            "{key}: {err}"
        );
    }
}

#[test]
fn the_power_curve_fit_recovers_its_parameters() {
    let points: Vec<(f64, f64)> = (1..50)
        .map(|h| (f64::from(h), 1.7 * f64::from(h).powf(0.6)))
        .chain([(0.0, 0.0), (3.0, 0.0)])
        .collect();
    let (c, e) = cgk::fit_power_curve(&points).unwrap();
    assert!((c - 1.7).abs() < 1e-9 && (e - 0.6).abs() < 1e-9, "{c} {e}");
    assert!(cgk::fit_power_curve(&[(1.0, 1.0)]).is_none());
    let est = Estimator::hamming(4, 1.7, 0.6);
    assert_eq!(est.estimate(0.0), 0.0);
    assert!((est.estimate(8.0) - 1.7 * 2f32.powf(0.6)).abs() < 1e-6);
}

fn words(rng: &mut StdRng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.random_range(0..=14);
            (0..len)
                .map(|_| b"abcdefg"[rng.random_range(0..7)])
                .collect()
        })
        .collect()
}

#[test]
fn a_cgk_index_with_every_row_a_candidate_answers_exactly() {
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(9);
    let base = words(&mut rng, 700);
    let model = Model::from_cgk(Cgk::new(80, 2, 3), "cgk test model").unwrap();
    let index = Index::build(&t.gpu, &model, &base, Precision::F32).unwrap();
    assert_eq!(index.precision(), Precision::Codes);
    assert_eq!(index.dim(), 480);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cgk.idx");
    index.save(&path).unwrap();
    let saved = Index::open(&path).unwrap();
    assert_eq!(saved.embedding_bytes(), index.embedding_bytes());
    assert_eq!(saved.estimator(), model.estimator());
    assert_eq!(
        saved.load_model(None).unwrap().fingerprint(),
        model.fingerprint()
    );
    let queries = words(&mut rng, 40);
    let mut searcher = Searcher::new(&t.gpu, &index, &model).unwrap();
    // C = N: the GPU kNN (N <= 1,024) and the CPU ranking of every row (N > 1,024 is
    // covered by a larger C on a smaller index: C >= N ranks all).
    for candidates in [base.len(), 5000] {
        let opts = QueryOptions {
            k: 5,
            candidates,
            ..QueryOptions::default()
        };
        let answers = searcher.search(&queries, &opts).unwrap();
        for (q, answer) in queries.iter().zip(&answers) {
            let mut exact: Vec<(u32, usize)> = base
                .iter()
                .enumerate()
                .map(|(i, b)| (levenshtein(q, b), i))
                .collect();
            exact.sort();
            let got: Vec<u32> = answer.hits.iter().map(|h| h.distance.unwrap()).collect();
            let want: Vec<u32> = exact[..5].iter().map(|e| e.0).collect();
            assert_eq!(got, want, "C {candidates}, query {q:?}");
        }
        // Threshold search with an unbounded blowup: every row within D, exactly.
        let threshold = QueryOptions {
            max_distance: Some(2),
            blowup: f32::INFINITY,
            ..opts
        };
        let answers = searcher.search(&queries, &threshold).unwrap();
        for (q, answer) in queries.iter().zip(&answers) {
            let mut got: Vec<usize> = answer.hits.iter().map(|h| h.id).collect();
            got.sort();
            let want: Vec<usize> = (0..base.len())
                .filter(|&i| levenshtein(q, &base[i]) <= 2)
                .collect();
            assert_eq!(got, want, "C {candidates}, query {q:?}");
        }
    }
    // Hamming estimates: identical strings estimate 0, and hits carry the curve's value.
    let answers = searcher
        .search(
            &[&base[0]],
            &QueryOptions {
                k: 1,
                ..QueryOptions::default()
            },
        )
        .unwrap();
    assert_eq!(answers[0].hits[0].distance, Some(0));
    assert_eq!(answers[0].hits[0].estimate, 0.0);
}

#[test]
fn another_models_index_is_refused() {
    let t = gpu();
    let a = Model::from_cgk(Cgk::new(80, 1, 1), "a").unwrap();
    let b = Model::from_cgk(Cgk::new(80, 1, 2), "b").unwrap();
    let index = Index::build(&t.gpu, &a, &["x", "y"], Precision::F32).unwrap();
    let err = Searcher::new(&t.gpu, &index, &b).err().unwrap().to_string();
    assert!(err.contains("made by model"), "{err}");
}

#[test]
fn also_joins_the_candidates_of_two_indexes_of_one_corpus() {
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(21);
    let base = words(&mut rng, 600);
    let learned = Model::builtin().unwrap();
    let cgk = Model::from_cgk(Cgk::new(80, 1, 8), "cgk").unwrap();
    let a = Index::build(&t.gpu, &learned, &base, Precision::F32).unwrap();
    let b = Index::build(&t.gpu, &cgk, &base, Precision::F32).unwrap();
    let queries = words(&mut rng, 30);
    let all = |index: &Index, model: &Model, c: usize| {
        let opts = QueryOptions {
            k: c,
            candidates: c,
            ..QueryOptions::default()
        };
        Searcher::new(&t.gpu, index, model)
            .unwrap()
            .search(&queries, &opts)
            .unwrap()
    };
    // C = 40: the 20 nearest by each model, re-ranked together.
    let (from_a, from_b) = (all(&a, &learned, 20), all(&b, &cgk, 20));
    let mut both = Searcher::new(&t.gpu, &a, &learned)
        .unwrap()
        .also(&b, &cgk)
        .unwrap();
    let opts = QueryOptions {
        k: 5,
        candidates: 40,
        ..QueryOptions::default()
    };
    let answers = both.search(&queries, &opts).unwrap();
    for (q, answer) in answers.iter().enumerate() {
        let mut rows: Vec<(u32, usize)> = from_a[q]
            .hits
            .iter()
            .chain(&from_b[q].hits)
            .map(|h| (h.distance.unwrap(), h.id))
            .collect();
        rows.sort();
        rows.dedup();
        let want: Vec<u32> = rows.iter().take(5).map(|r| r.0).collect();
        let got: Vec<u32> = answer.hits.iter().map(|h| h.distance.unwrap()).collect();
        assert_eq!(got, want, "query {:?}", queries[q]);
    }
    // Another corpus is refused, naming both indexes.
    let other = Index::build(&t.gpu, &cgk, &base[1..], Precision::F32).unwrap();
    let err = Searcher::new(&t.gpu, &a, &learned)
        .unwrap()
        .also(&other, &cgk)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("same strings"), "{err}");
}
