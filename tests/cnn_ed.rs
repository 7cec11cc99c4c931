//! The CNN-ED model: its forward pass against PyTorch (fixture made by
//! tools/make_cnn_ed_fixture.py), the folded table against the layered network, the GPU
//! table pass against the CPU, the model file, and an index of non-ASCII strings that
//! answers queries exactly when every row is a candidate.
mod common;

use common::{assert_close, err, gpu, levenshtein, ok, random_cnn_ed, run_bin};
use megashtein_gpu::embed::Embedder;
use megashtein_gpu::model::cnn_ed::{self, CnnEd, CnnEdShape};
use megashtein_gpu::model::{Architecture, Metric, Model};
use megashtein_gpu::reference;
use megashtein_gpu::search::index::{Index, Precision};
use megashtein_gpu::search::query::{QueryOptions, Searcher};
use megashtein_gpu::train::cnn_ed::{CnnEdLoss, CnnEdState};
use megashtein_gpu::train::cnn_ed_run::{CnnEdHooks, CnnEdOutcome, CnnEdStart, EpochReport};
use rand::{Rng, SeedableRng, rngs::StdRng};

const CASES: &str = include_str!("fixtures/cnn_ed_cases.json");

fn fixture_model(name: &str) -> (CnnEd, Vec<u8>) {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap();
    (CnnEd::from_safetensors(&bytes, &path).unwrap(), bytes)
}

/// The fixture's strings and PyTorch's embeddings for one model.
fn fixture_case(key: &str) -> (CnnEd, Vec<u8>, Vec<String>, Vec<Vec<f64>>) {
    let cases: serde_json::Value = serde_json::from_str(CASES).unwrap();
    let case = &cases[key];
    let (model, bytes) = fixture_model(case["model"].as_str().unwrap());
    let strings = serde_json::from_value(case["strings"].clone()).unwrap();
    let embeddings = serde_json::from_value(case["embeddings"].clone()).unwrap();
    (model, bytes, strings, embeddings)
}

/// At PyTorch's initialisation the string's part of an embedding is small next to the
/// bias (1e-4 to 1e-2 against ~0.1), so the part is what gets compared.
fn without_bias(model: &CnnEd, e: &[f64]) -> Vec<f64> {
    e.iter()
        .zip(model.fc_bias())
        .map(|(v, b)| v - f64::from(*b))
        .collect()
}

fn without_bias_f32(model: &CnnEd, e: &[f32]) -> Vec<f32> {
    e.iter().zip(model.fc_bias()).map(|(v, b)| v - b).collect()
}

/// dna and text are affine (folded on the CPU and the GPU); uniref has ReLUs after
/// blocks 1, 3 and 5 (layer by layer on both).
#[test]
fn forward_matches_pytorch_folded_layered_and_on_the_gpu() {
    let t = gpu();
    for key in ["dna", "text", "uniref"] {
        let (model, bytes, strings, want) = fixture_case(key);
        let folded = model.shape().is_affine().then(|| model.fold());
        let wrapped = Model::from_bytes(bytes, key).unwrap();
        let mut embedder = Embedder::for_model(&t.gpu, &wrapped).unwrap();
        let on_gpu = embedder.embed(&strings).unwrap();
        let dim = model.dim();
        for (i, (text, want)) in strings.iter().zip(&want).enumerate() {
            let what = format!("{key} string {i} {text:?}");
            let want = without_bias(&model, want);
            let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let reference = f32s(&reference::cnn_ed_forward(&model, text));
            let mut got = vec![
                ("reference", reference),
                ("layered", model.embed_layered(text)),
                ("GPU", on_gpu[i * dim..(i + 1) * dim].to_vec()),
            ];
            if let Some(folded) = &folded {
                got.push(("folded", folded.embed(model.token_ids(text))));
            }
            for (how, e) in got {
                let part = without_bias_f32(&model, &e);
                assert_close(&format!("{what} {how}"), &part, &want, 1e-6, 1e-4);
            }
        }
    }
}

/// The layered network on the GPU, which serves networks with ReLUs, equals the folded
/// table for affine ones (1e-4 relative) and the CPU reference for ones with ReLUs, in
/// batches of 1 and of several, on shapes with M not a power of two and alphabets of 4
/// and 37.
#[test]
fn the_layered_network_on_the_gpu_equals_the_table_and_the_reference() {
    use megashtein_gpu::model::cnn_ed_encoder::CnnEdEncoder;
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(12);
    // (alphabet, M, layers, ReLU mask, batch)
    for (c, max_len, layers, relu, batch) in [
        (4, 38, 5, 0, 1),
        (37, 250, 7, 0, 5),
        (4, 38, 5, 0b10101, 1),
        (37, 100, 6, 0b100100, 3),
        (5, 64, 6, 0b111111, 4),
    ] {
        let model = random_cnn_ed(rng.random(), c, max_len, layers, relu);
        let (shape, alphabet) = (model.shape(), model.alphabet().to_vec());
        let texts: Vec<String> = [0, 1, 7, max_len - 1, max_len, max_len + 3]
            .iter()
            .map(|&len| random_text(&mut rng, &alphabet, len))
            .collect();
        let mut encoder = CnnEdEncoder::layered(&t.gpu, &t.ops, &model, batch).unwrap();
        let folded = shape.is_affine().then(|| model.fold());
        for (b, chunk) in texts.chunks(batch).enumerate() {
            let bytes: Vec<&[u8]> = chunk.iter().map(|s| s.as_bytes()).collect();
            let pending = encoder.submit(&t.gpu, &bytes).unwrap();
            let got = encoder.collect(&t.gpu, pending).unwrap();
            for (i, text) in chunk.iter().enumerate() {
                let want: Vec<f64> = match &folded {
                    Some(folded) => folded
                        .embed(model.token_ids(text))
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect(),
                    None => reference::cnn_ed_forward(&model, text),
                };
                let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
                let what =
                    format!("C {c} M {max_len} L {layers} ReLU {relu:b} batch {b} string {i}");
                let row = &got[i * shape.dim..(i + 1) * shape.dim];
                assert_close(&what, row, &want, 1e-4 * norm, 0.0);
            }
        }
    }
}

#[test]
fn model_file_round_trips_and_loads_as_a_model() {
    let (model, bytes) = fixture_model("cnn_ed_text.safetensors");
    let shape = model.shape();
    assert_eq!(
        (
            shape.alphabet,
            shape.max_len,
            shape.layers,
            shape.channels,
            shape.dim
        ),
        (37, 100, 4, 8, 32)
    );
    assert!(model.alphabet().contains(&'😀') && model.alphabet().contains(&'ß'));
    let again = CnnEd::from_safetensors(&model.to_safetensors().unwrap(), "again").unwrap();
    assert_eq!(again, model);
    let wrapped = Model::from_bytes(bytes, "text").unwrap();
    assert!(matches!(wrapped.architecture(), Architecture::CnnEd(_)));
    assert_eq!((wrapped.arch_name(), wrapped.dim()), (cnn_ed::ARCH, 32));
    let e = wrapped.estimator();
    assert_eq!(
        (e.metric, e.scale, e.offset),
        (Metric::Euclidean, 12.125, -0.5)
    );
    // d = 12.125 * sqrt(squared distance) - 0.5, never below 0.
    assert_eq!(e.estimate(4.0), 12.125 * 2.0 - 0.5);
    assert_eq!(e.estimate(0.0), 0.0);
    let err = wrapped.weights().unwrap_err().to_string();
    assert!(err.contains("is a cnn-ed-v1 model"), "{err}");
    // The ReLUs' blocks, 1-based in the file.
    let (uniref, _) = fixture_model("cnn_ed_uniref.safetensors");
    assert_eq!(uniref.shape().relu_blocks(), [1, 3, 5]);
    assert!(!uniref.shape().is_affine() && model.shape().is_affine());
    let again = CnnEd::from_safetensors(&uniref.to_safetensors().unwrap(), "again").unwrap();
    assert_eq!(again, uniref);
}

fn random_text(rng: &mut StdRng, alphabet: &[char], len: usize) -> String {
    (0..len)
        .map(|_| {
            // Now and then a character outside the alphabet (an all-zero column).
            if rng.random_range(0..20) == 0 {
                '#'
            } else {
                alphabet[rng.random_range(0..alphabet.len())]
            }
        })
        .collect()
}

#[test]
fn folded_table_equals_the_layered_network_on_random_shapes() {
    let mut rng = StdRng::seed_from_u64(5);
    // (alphabet, M, layers): M not a power of two, layers to the last one that fits.
    for (c, max_len, layers) in [
        (4, 38, 5),
        (37, 250, 7),
        (37, 100, 3),
        (4, 2, 1),
        (5, 64, 6),
    ] {
        let model = random_cnn_ed(rng.random(), c, max_len, layers, 0);
        let alphabet = model.alphabet().to_vec();
        let folded = model.fold();
        for len in [0, 1, 7, max_len - 1, max_len, max_len + 3] {
            let text = random_text(&mut rng, &alphabet, len);
            let want = reference::cnn_ed_forward(&model, &text);
            let got = folded.embed(model.token_ids(&text));
            // 1e-4 relative to the embedding's size.
            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert_close(
                &format!("C {c} M {max_len} L {layers} len {len}"),
                &got,
                &want,
                1e-4 * norm,
                0.0,
            );
        }
    }
}

#[test]
fn gpu_table_equals_the_cpu_table_in_batches() {
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(6);
    let alphabet: Vec<char> = "ACGT".chars().collect();
    let model = CnnEd::random(alphabet.clone(), CnnEdShape::official(4, 300), 9).unwrap();
    let folded = model.fold();
    let texts: Vec<String> = (0..70)
        .map(|i| random_text(&mut rng, &alphabet, (i * 37) % 330))
        .collect();
    let wrapped = Model::from_cnn_ed(model.clone(), "random").unwrap();
    // Batches of 16: several batches in flight, the last one short.
    let mut embedder = Embedder::with_batch(&t.gpu, &wrapped, 16).unwrap();
    let got = embedder.embed(&texts).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let want = folded.embed(model.token_ids(text));
        // The same sums in the same order: equal bit for bit.
        assert_eq!(&got[i * 128..(i + 1) * 128], &want[..], "string {i}");
    }
}

/// A table larger than one storage binding is uploaded in parts of whole characters and
/// summed part by part: here 37 characters in parts of 3 (the last one short), against
/// the CPU table, with strings of characters from every part and outside the alphabet.
/// A table over the encoder's limit runs layer by layer instead, to the same embeddings.
#[test]
fn a_table_split_into_parts_or_over_the_limit_equals_the_cpu_table() {
    use megashtein_gpu::model::cnn_ed_encoder::CnnEdEncoder;
    let t = gpu();
    let (model, _) = fixture_model("cnn_ed_text.safetensors");
    let shape = model.shape();
    let mut rng = StdRng::seed_from_u64(7);
    let pool: Vec<char> = model
        .alphabet()
        .iter()
        .copied()
        .chain(['q', '文'])
        .collect();
    let texts: Vec<String> = (0..20)
        .map(|i| random_text(&mut rng, &pool, (i * 13) % (shape.max_len + 9)))
        .collect();
    let part_bytes = (3 * shape.max_len * shape.dim * 4) as u64;
    let mut encoder = CnnEdEncoder::with_part_bytes(&t.gpu, &t.ops, &model, 8, part_bytes).unwrap();
    let folded = model.fold();
    for (b, batch) in texts.chunks(8).enumerate() {
        let bytes: Vec<&[u8]> = batch.iter().map(|s| s.as_bytes()).collect();
        let pending = encoder.submit(&t.gpu, &bytes).unwrap();
        let got = encoder.collect(&t.gpu, pending).unwrap();
        for (i, text) in batch.iter().enumerate() {
            let want: Vec<f64> = folded
                .embed(model.token_ids(text))
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let row = &got[i * shape.dim..(i + 1) * shape.dim];
            assert_close(&format!("batch {b} string {i}"), row, &want, 1e-5, 1e-5);
        }
    }
    // A table over the limit: the same model layer by layer, the same embeddings.
    let table_bytes = shape.table_bytes();
    let within = CnnEdEncoder::with_table_limit(&t.gpu, &t.ops, &model, 8, table_bytes).unwrap();
    assert!(within.runs_table());
    let mut layered =
        CnnEdEncoder::with_table_limit(&t.gpu, &t.ops, &model, 8, table_bytes - 1).unwrap();
    assert!(!layered.runs_table());
    let bytes: Vec<&[u8]> = texts[..8].iter().map(|s| s.as_bytes()).collect();
    let pending = layered.submit(&t.gpu, &bytes).unwrap();
    let got = layered.collect(&t.gpu, pending).unwrap();
    for (i, text) in texts[..8].iter().enumerate() {
        let want: Vec<f64> = folded
            .embed(model.token_ids(text))
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        let row = &got[i * shape.dim..(i + 1) * shape.dim];
        assert_close(&format!("layered string {i}"), row, &want, 1e-4 * norm, 0.0);
    }

    let too_small = (shape.max_len * shape.dim * 4 - 4) as u64;
    let e = CnnEdEncoder::with_part_bytes(&t.gpu, &t.ops, &model, 8, too_small)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("one character's rows"), "{e}");
}

#[test]
fn bad_model_files_and_input_are_clear_errors() {
    let (model, _) = fixture_model("cnn_ed_dna.safetensors");
    let shape = model.shape();
    let odd = CnnEdShape {
        max_len: 37,
        ..shape
    };
    let err = CnnEd::random(model.alphabet().to_vec(), odd, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_len is 37, expected an even length"),
        "{err}"
    );
    let deep = CnnEdShape { layers: 6, ..shape };
    let err = CnnEd::random(model.alphabet().to_vec(), deep, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 layers for max_len 38"), "{err}");
    let twice = vec!['A', 'C', 'A', 'T'];
    let err = CnnEd::random(twice, shape, 1).unwrap_err().to_string();
    assert!(err.contains("lists a character twice"), "{err}");
    // A tensor of the wrong shape: the text model's tensors under the dna metadata.
    let (text, _) = fixture_model("cnn_ed_text.safetensors");
    let mut bytes = text.to_safetensors().unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
    let edited = header.replace(
        "\"megashtein.cnn_ed.layers\":\"4\"",
        "\"megashtein.cnn_ed.layers\":\"3\"",
    );
    assert_ne!(edited, header);
    bytes.splice(8..8 + header_len, edited.into_bytes());
    let err = CnnEd::from_safetensors(&bytes, "edited.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("edited.safetensors: a cnn-ed-v1 model of this shape holds tensors"),
        "{err}"
    );
    // ReLU blocks outside the network.
    let (uniref, _) = fixture_model("cnn_ed_uniref.safetensors");
    let header_of = |bytes: &[u8]| {
        let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        (len, String::from_utf8(bytes[8..8 + len].to_vec()).unwrap())
    };
    for (relu_after, message) in [
        ("[1,3,7]", "a ReLU after block 7, but the network has 6"),
        ("[0]", "block 0: blocks are numbered 1 to 12"),
        ("3", "not a JSON list of block numbers"),
    ] {
        let mut bytes = uniref.to_safetensors().unwrap();
        let (len, header) = header_of(&bytes);
        let edited = header.replace(
            "\"megashtein.cnn_ed.relu_after\":\"[1,3,5]\"",
            // Padded to the length of "[1,3,5]": the header keeps its length.
            &format!("\"megashtein.cnn_ed.relu_after\":\"{relu_after:<7}\""),
        );
        assert_ne!(edited, header);
        bytes.splice(8..8 + len, edited.into_bytes());
        let err = CnnEd::from_safetensors(&bytes, "relu.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("relu.safetensors: ") && err.contains(message),
            "{err}"
        );
    }
    // Invalid UTF-8 is an error naming the string; any valid UTF-8 is input.
    let t = gpu();
    let wrapped = Model::from_cnn_ed(model, "dna").unwrap();
    let mut embedder = Embedder::for_model(&t.gpu, &wrapped).unwrap();
    let err = embedder
        .embed(&[b"ACGT".as_slice(), b"AC\xffGT"])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("string 2 \"AC\u{fffd}GT\": not valid UTF-8"),
        "{err}"
    );
    assert_eq!(
        embedder.embed(&["ACGT", "naïve 中文"]).unwrap().len(),
        2 * 128
    );
}

#[test]
fn index_of_unicode_strings_answers_exactly_with_every_row_a_candidate() {
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(8);
    let alphabet: Vec<char> = "aeiouäöüßstrnlkmé中".chars().collect();
    let base: Vec<String> = (0..300)
        .map(|_| {
            let len = rng.random_range(3..40);
            random_text(&mut rng, &alphabet, len)
        })
        .collect();
    let model = CnnEd::random(
        cnn_ed::alphabet_of(base.iter().map(String::as_str)),
        CnnEdShape::official(
            cnn_ed::alphabet_of(base.iter().map(String::as_str)).len(),
            40,
        ),
        3,
    )
    .unwrap();
    let model = Model::from_cnn_ed(model, "random").unwrap();
    let index = Index::build(&t.gpu, &model, &base, Precision::F32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn-ed.idx");
    index.save(&path).unwrap();
    let saved = Index::open(&path).unwrap();
    assert_eq!(saved.estimator(), model.estimator());
    let queries: Vec<String> = base[..20]
        .iter()
        .map(|s| {
            let mut chars: Vec<char> = s.chars().collect();
            let at = rng.random_range(0..chars.len());
            chars[at] = 'ß';
            chars.into_iter().collect()
        })
        .collect();
    let mut searcher = Searcher::new(&t.gpu, &saved, &model).unwrap();
    let opts = QueryOptions {
        k: 5,
        candidates: base.len(),
        ..QueryOptions::default()
    };
    let answers = searcher.search(&queries, &opts).unwrap();
    let code_points = |s: &str| s.chars().map(|c| c as u32).collect::<Vec<u32>>();
    for (q, answer) in queries.iter().zip(&answers) {
        // Levenshtein over code points, by plain dynamic programming.
        let mut exact: Vec<(u32, usize)> = base
            .iter()
            .enumerate()
            .map(|(i, s)| (levenshtein(&code_points(q), &code_points(s)), i))
            .collect();
        exact.sort();
        let got: Vec<u32> = answer.hits.iter().map(|h| h.distance.unwrap()).collect();
        let want: Vec<u32> = exact[..5].iter().map(|e| e.0).collect();
        assert_eq!(got, want, "query {q:?}");
    }
}

#[test]
fn triplet_epochs_follow_the_official_sampler() {
    use megashtein_gpu::train::cnn_ed_data::{TripletData, sample};
    let mut rng = StdRng::seed_from_u64(12);
    let alphabet: Vec<char> = "ACGTé".chars().collect();
    let corpus: Vec<String> = (0..80)
        .map(|_| {
            let len = rng.random_range(0..30);
            random_text(&mut rng, &alphabet, len)
        })
        .collect();
    let strings = sample(&corpus, 50, 4);
    assert_eq!(strings, sample(&corpus, 50, 4), "seeded");
    assert_eq!(strings.len(), 50);
    let data = TripletData::new(strings.clone(), 5);
    let code_points = |s: &str| s.chars().map(|c| c as u32).collect::<Vec<u32>>();
    let mut total = 0.0;
    for (i, a) in strings.iter().enumerate() {
        for (j, b) in strings.iter().enumerate() {
            let d = levenshtein(&code_points(a), &code_points(b));
            assert_eq!(data.distance(i, j), d, "{a:?} {b:?}");
            total += f64::from(d);
        }
    }
    assert!((data.average() - total / 2500.0).abs() < 1e-9);
    let epoch = data.epoch(&mut StdRng::seed_from_u64(1));
    let mut anchors: Vec<usize> = epoch.iter().map(|t| t.anchor).collect();
    anchors.sort_unstable();
    assert_eq!(
        anchors,
        (0..50).collect::<Vec<_>>(),
        "each string once as anchor"
    );
    for t in &epoch {
        let (ap, an) = (
            data.distance(t.anchor, t.positive),
            data.distance(t.anchor, t.negative),
        );
        assert!(ap <= an, "{t:?}");
        // Partners come from ranks 1..=10: at most 10 strings are nearer than each.
        for partner in [t.positive, t.negative] {
            let d = data.distance(t.anchor, partner);
            let nearer = (0..50)
                .filter(|&j| j != t.anchor && data.distance(t.anchor, j) < d)
                .count();
            assert!(nearer < 10, "{t:?}: {nearer} nearer");
        }
        let [tap, tan, tpn] = data.targets(*t);
        assert_eq!(tap, (f64::from(ap) / data.average()) as f32);
        assert_eq!(tan, (f64::from(an) / data.average()) as f32);
        assert_eq!(
            tpn,
            (f64::from(data.distance(t.positive, t.negative)) / data.average()) as f32
        );
    }
    assert_ne!(epoch, data.epoch(&mut StdRng::seed_from_u64(2)));
}

/// Strings cut to the model's M train on their cut distances, while the estimator's line
/// is fitted on the whole strings' (code points).
#[test]
fn the_line_is_fitted_on_whole_strings() {
    use megashtein_gpu::train::cnn_ed_data::TripletData;
    let whole: Vec<String> = ["ACGTACGTAé", "ACGT", "TTTT", "ACGTTTTTTTTT"]
        .map(String::from)
        .to_vec();
    let chars = |s: &str| s.chars().collect::<Vec<_>>();
    let cut: Vec<String> = whole.iter().map(|s| s.chars().take(6).collect()).collect();
    let data = TripletData::new(cut.clone(), 1).with_whole_strings(&whole);
    for (i, j, d) in data.pairs() {
        assert_eq!(d, levenshtein(&chars(&whole[i]), &chars(&whole[j])));
        assert_eq!(
            data.distance(i, j),
            levenshtein(&chars(&cut[i]), &chars(&cut[j]))
        );
    }
    assert!(data.pairs().any(|(i, j, d)| d != data.distance(i, j)));
    // Without whole strings, the line's pairs are the training distances.
    let plain = TripletData::new(cut, 1);
    assert!(plain.pairs().all(|(i, j, d)| d == plain.distance(i, j)));
}

/// The estimator's line: least squares while it rises, else the line through 0.
#[test]
fn the_estimator_line_rises_or_goes_through_zero() {
    use megashtein_gpu::stats::LinearFit;
    use megashtein_gpu::train::cnn_ed_data::fit_estimate;
    let line = LinearFit::least_squares(&[1.0, 2.0, 4.0], &[3.5, 5.5, 9.5]).unwrap();
    assert!((line.slope - 2.0).abs() < 1e-12 && (line.intercept - 1.5).abs() < 1e-12);
    assert_eq!(LinearFit::least_squares(&[1.0, 1.0], &[1.0, 2.0]), None);
    let rising = fit_estimate(&[(1.0, 3.5), (2.0, 5.5), (4.0, 9.5)]).unwrap();
    assert!(!rising.through_zero && (rising.slope - 2.0).abs() < 1e-12);
    assert!((rising.correlation - 1.0).abs() < 1e-12);
    let falling = fit_estimate(&[(1.0, 8.0), (2.0, 6.0), (3.0, 7.0)]).unwrap();
    assert!(falling.through_zero && falling.intercept == 0.0);
    assert!((falling.slope - (8.0 + 12.0 + 21.0) / 14.0).abs() < 1e-12);
    assert!((falling.correlation + 0.5).abs() < 1e-12);
    let level = fit_estimate(&[(2.0, 4.0), (2.0, 6.0)]).unwrap();
    assert!(level.through_zero && (level.slope - 2.5).abs() < 1e-12);
    assert_eq!(fit_estimate(&[(0.0, 4.0), (0.0, 6.0)]), None);
}

#[test]
fn commands_read_utf8_with_a_cnn_ed_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = format!(
        "{}/tests/fixtures/cnn_ed_text.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "straße\n中文字\nnaïve café\nstrasse\ncafe\n").unwrap();
    let index = dir.path().join("words.idx");
    let (input, index) = (input.to_str().unwrap(), index.to_str().unwrap());
    let embedded = run_bin(&["embed", "--model", &model, "-i", input, "-o", index], b"");
    // Characters outside the fixture's alphabet (中, 文, 字, ï, é) read as padding: said.
    let warned = String::from_utf8_lossy(&embedded.stderr).into_owned();
    ok(embedded);
    assert!(
        warned.contains(
            "2 lines held characters outside the model's alphabet, read as padding (first: line 2)"
        ),
        "{warned}"
    );
    // Every row a candidate: exact distances over code points, strings written as UTF-8;
    // ties (the fixture's estimates are all 0) by row.
    let out = ok(run_bin(
        &[
            "query",
            "--index",
            index,
            "-k",
            "2",
            "-C",
            "5",
            "strase",
            "naive cafe",
        ],
        b"",
    ));
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    let hits: Vec<(&str, &str, &str)> = rows.iter().map(|r| (r[0], r[2], r[5])).collect();
    assert_eq!(
        hits,
        [
            ("1", "1", "straße"),
            ("1", "1", "strasse"),
            ("2", "2", "naïve café"),
            ("2", "6", "cafe")
        ]
    );
    let out = ok(run_bin(
        &["distance", "--model", &model, "straße", "strasse"],
        b"",
    ));
    assert!(out.starts_with("straße\tstrasse\t2\t"), "{out}");
    let distance = run_bin(&["distance", "--model", &model, "naïve", "中文"], b"");
    let warned = String::from_utf8_lossy(&distance.stderr).into_owned();
    ok(distance);
    assert!(
        warned.contains("2 strings held characters outside the model's alphabet"),
        "{warned}"
    );
    // bench query samples non-ASCII queries for this model and scans over code points:
    // with every row a candidate, recall is exact.
    let pairs = dir.path().join("pairs.tsv");
    std::fs::write(
        &pairs,
        "strase\tstraße\n中文\t中文字\nnaive café\tnaïve café\n",
    )
    .unwrap();
    let out = ok(run_bin(
        &[
            "bench",
            "query",
            "--index",
            index,
            "--pairs",
            pairs.to_str().unwrap(),
            "-k",
            "2",
            "-C",
            "5",
            "--json",
        ],
        b"",
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["sample"]["eligible"], 3, "{report}");
    let row = &report["candidates"][0];
    assert_eq!(
        (row["recall_at_1"].as_f64(), row["recall_at_k"].as_f64()),
        (Some(1.0), Some(1.0)),
        "{report}"
    );
    // bench embed feeds the model strings of its full length M, and has no PyTorch peer
    // for it.
    let out = ok(run_bin(
        &[
            "bench",
            "embed",
            "--model",
            &model,
            "--batch-sizes",
            "1,3",
            "--seconds",
            "0.01",
            "--json",
        ],
        b"",
    ));
    let max_len = fixture_model("cnn_ed_text.safetensors").0.shape().max_len;
    for line in out.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(row["result"]["chars_per_string"], max_len as f64, "{line}");
    }
    assert_eq!(out.lines().count(), 2, "{out}");
    // With --input it embeds the file's lines in order, wrapping around: batch 3 is the
    // first three (6 + 3 + 10 code points), batch 5 all five (30).
    let out = ok(run_bin(
        &[
            "bench",
            "embed",
            "--model",
            &model,
            "--input",
            input,
            "--batch-sizes",
            "3,5",
            "--seconds",
            "0.01",
            "--json",
        ],
        b"",
    ));
    let means: Vec<f64> = out
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["result"]["chars_per_string"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(means, [19.0 / 3.0, 6.0], "{out}");
    // --profile times each kernel: the table pass, or the folded blocks and the layers after
    // them of a network with ReLUs.
    for (fixture, kernels) in [
        ("cnn_ed_text", &["cnn_ed.table_embed"][..]),
        (
            "cnn_ed_uniref",
            &["cnn_ed_prefix.forward", "conv8.forward", "linear.forward"],
        ),
    ] {
        let path = format!(
            "{}/tests/fixtures/{fixture}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let args = ["bench", "embed", "--model", &path, "--batch-sizes", "2"];
        let out = ok(run_bin(
            &[&args[..], &["--seconds", "0.01", "--profile"]].concat(),
            b"",
        ));
        assert!(out.contains("the forward pass of 2 strings"), "{out}");
        assert!(kernels.iter().all(|k| out.contains(k)), "{fixture}: {out}");
    }
    let refused = err(run_bin(
        &["bench", "embed", "--model", &model, "--torch", "python3"],
        b"",
    ));
    assert!(refused.contains("megashtein network"), "{refused}");
    // Invalid UTF-8 names the file and line; --non-ascii does not apply.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"ok\n\xffno\n").unwrap();
    let bad = bad.to_str().unwrap();
    let out = dir.path().join("bad.idx");
    let e = err(run_bin(
        &[
            "embed",
            "--model",
            &model,
            "-i",
            bad,
            "-o",
            out.to_str().unwrap(),
        ],
        b"",
    ));
    assert!(
        e.contains(&format!(
            "{bad}:2: non-ASCII byte 0xff (not valid UTF-8) at column 1"
        )),
        "{e}"
    );
}

#[test]
fn beside_an_ascii_model_non_ascii_queries_follow_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let cnn_ed = format!(
        "{}/tests/fixtures/cnn_ed_text.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let words = path("words.txt");
    std::fs::write(&words, "strasse\ncafe\nnaive\n").unwrap();
    for (model, index) in [(cnn_ed.as_str(), "cnn.idx"), ("default", "ascii.idx")] {
        let out = path(index);
        let mut args = vec!["embed", "-i", &words, "-o", &out];
        if model != "default" {
            args.extend(["--model", model]);
        }
        ok(run_bin(&args, b""));
    }
    let (cnn, ascii) = (path("cnn.idx"), path("ascii.idx"));
    let query = ["query", "--index", &cnn, "--also", &ascii, "-k", "1"];
    let e = err(run_bin(&[&query[..], &["café"]].concat(), b""));
    assert!(e.contains("--non-ascii skip|replace"), "{e}");
    let out = ok(run_bin(
        &[&query[..], &["--non-ascii", "replace", "café"]].concat(),
        b"",
    ));
    assert!(out.starts_with("1\t1\t1\t"), "{out}");
}

/// The text case's head reduces over 37 x 8 x 6 = 1,776 inputs: the linear layer's
/// split-K path, forward and backward.
#[test]
fn one_training_step_matches_pytorch() {
    use megashtein_gpu::train::cnn_ed::Formulation;
    for key in ["dna", "text"] {
        for formulation in [Formulation::Strings, Formulation::Table] {
            check_training_step(key, formulation);
        }
    }
    // With ReLUs, through the strings only: such a network does not fold.
    check_training_step("uniref", Formulation::Strings);
}

#[test]
fn a_network_with_relus_does_not_train_through_the_table() {
    use megashtein_gpu::train::cnn_ed::Formulation;
    let t = gpu();
    let (model, _) = fixture_model("cnn_ed_uniref.safetensors");
    let shape = model.shape();
    assert_eq!(
        Formulation::cheaper(&t.gpu, &shape, 64, shape.max_len as f64).unwrap(),
        Formulation::Strings
    );
    let err = trainer_error(&model, Formulation::Table, 4);
    assert!(err.contains("does not fold into a table"), "{err}");
}

/// The error of making a trainer of `triplets` per step for `model` run as
/// `formulation`, which must fail.
fn trainer_error(
    model: &CnnEd,
    formulation: megashtein_gpu::train::cnn_ed::Formulation,
    triplets: usize,
) -> String {
    use megashtein_gpu::train::cnn_ed::{CnnEdTrainer, LossWeights};
    let t = gpu();
    let weights = LossWeights {
        hinge: 1.0,
        approx: 1.0,
        absolute: 0.0,
    };
    let state = CnnEdState::new(model);
    let trainer = CnnEdTrainer::new(
        &t.gpu,
        &t.ops,
        model.shape(),
        formulation,
        &state,
        triplets,
        weights,
    );
    trainer.err().expect("the trainer is refused").to_string()
}

fn check_training_step(key: &str, formulation: megashtein_gpu::train::cnn_ed::Formulation) {
    use megashtein_gpu::train::cnn_ed::{CnnEdState, CnnEdTrainer, LossWeights};
    use megashtein_gpu::train::cnn_ed_data::Triplet;
    let t = gpu();
    let (model, _, strings, _) = fixture_case(key);
    let cases: serde_json::Value = serde_json::from_str(CASES).unwrap();
    let step = &cases[key]["step"];
    let triplets: Vec<[usize; 3]> = serde_json::from_value(step["triplets"].clone()).unwrap();
    let targets: Vec<[f32; 3]> = serde_json::from_value(step["targets"].clone()).unwrap();
    let batch: Vec<(Triplet, [f32; 3])> = triplets
        .iter()
        .zip(&targets)
        .map(|(&[anchor, positive, negative], &t)| {
            let triplet = Triplet {
                anchor,
                positive,
                negative,
            };
            (triplet, t)
        })
        .collect();
    let weights = LossWeights {
        hinge: step["lambda"].as_f64().unwrap() as f32,
        approx: step["rho"].as_f64().unwrap() as f32,
        absolute: 0.0,
    };
    let state = CnnEdState::new(&model);
    let mut trainer = CnnEdTrainer::new(
        &t.gpu,
        &t.ops,
        model.shape(),
        formulation,
        &state,
        batch.len(),
        weights,
    )
    .unwrap();
    let loss = trainer.gradients(&model, &strings, &batch).unwrap();
    let want_loss = step["loss"].as_f64().unwrap();
    assert!(
        (f64::from(loss) - want_loss).abs() <= 1e-4 * want_loss,
        "{key} {formulation:?}: loss {loss} vs {want_loss}"
    );
    let grads = trainer.read_grads().unwrap();
    let mut at = 0;
    for (name, dims) in model.shape().tensors() {
        let n: usize = dims.iter().product();
        let want: Vec<f64> = serde_json::from_value(step["grads"][&name].clone()).unwrap();
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        // 1e-4 of the gradient's norm. fc.bias's is 0 in exact arithmetic (the loss sees
        // only differences of embeddings), so there f32 rounding of terms of size ~1 shows.
        let what = format!("{key} {formulation:?} {name}");
        assert_close(&what, &grads[at..at + n], &want, 1e-4 * norm.max(0.01), 0.0);
        at += n;
    }
    assert_eq!(grads[at], 0.0, "{key}: log s is not learned");
}

/// A step whose activations outgrow one storage binding is refused before anything is
/// allocated, with what to change.
#[test]
fn a_step_too_large_for_the_device_is_a_clear_error() {
    use megashtein_gpu::train::cnn_ed::Formulation;
    // 192 strings x 37 rows x 8 channels x 2,500 places x 4 bytes: 541 MiB.
    let model = random_cnn_ed(3, 37, 5_000, 10, 0);
    let err = trainer_error(&model, Formulation::Strings, 64);
    assert!(
        err.starts_with(
            "64 triplets per step of 37 characters x 5000 places (Strings) need 541 MiB"
        ) && err.contains("use fewer triplets per step (--batch) or a shorter --max-len")
            && !err.contains("  "),
        "{err}"
    );
    // Through the table, activations do not grow with the batch; the strings' ids and
    // embeddings do: 3 x 10^6 strings x 128 values x 4 bytes.
    let model = random_cnn_ed(4, 4, 16, 4, 0);
    let err = trainer_error(&model, Formulation::Table, 1_000_000);
    assert!(
        err.contains("1464 MiB for the strings' ids or embeddings"),
        "{err}"
    );
}

/// The two formulations of a step agree on a batch much shorter than M, where the table
/// formulation runs only the impulses of the places the batch holds.
#[test]
fn formulations_agree_on_short_batches() {
    use megashtein_gpu::train::cnn_ed::{CnnEdTrainer, Formulation, LossWeights};
    use megashtein_gpu::train::cnn_ed_data::Triplet;
    let t = gpu();
    let (model, _) = fixture_model("cnn_ed_text.safetensors");
    let mut rng = StdRng::seed_from_u64(9);
    let strings: Vec<String> = (0..12)
        .map(|i| random_text(&mut rng, model.alphabet(), 3 + 3 * i))
        .collect();
    let batch: Vec<(Triplet, [f32; 3])> = (0..4)
        .map(|i| {
            let triplet = Triplet {
                anchor: 3 * i,
                positive: 3 * i + 1,
                negative: 3 * i + 2,
            };
            (triplet, [0.5, 1.5, 1.0])
        })
        .collect();
    let weights = LossWeights {
        hinge: 1.0,
        approx: 1.0,
        absolute: 0.5,
    };
    let state = CnnEdState::new(&model);
    let mut results = Vec::new();
    for formulation in [Formulation::Strings, Formulation::Table] {
        let mut trainer = CnnEdTrainer::new(
            &t.gpu,
            &t.ops,
            model.shape(),
            formulation,
            &state,
            4,
            weights,
        )
        .unwrap();
        let loss = trainer.gradients(&model, &strings, &batch).unwrap();
        results.push((loss, trainer.read_grads().unwrap()));
    }
    let (want_loss, want) = &results[0];
    let (loss, got) = &results[1];
    assert!(
        (loss - want_loss).abs() <= 1e-5 * want_loss.abs(),
        "{loss} vs {want_loss}"
    );
    let want: Vec<f64> = want.iter().map(|&v| f64::from(v)).collect();
    let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(norm > 0.0);
    assert_close("table vs strings", got, &want, 1e-5 * norm, 0.0);
}

/// DNA-like strings around a few random bases, each with a few random edits.
fn dna_family(rng: &mut StdRng, count: usize) -> Vec<String> {
    let letters = ['A', 'C', 'G', 'T'];
    let bases: Vec<Vec<char>> = (0..6)
        .map(|_| (0..90).map(|_| letters[rng.random_range(0..4)]).collect())
        .collect();
    (0..count)
        .map(|_| {
            let mut s = bases[rng.random_range(0..bases.len())].clone();
            for _ in 0..rng.random_range(0..25) {
                let at = rng.random_range(0..s.len());
                match rng.random_range(0..3) {
                    0 => s[at] = letters[rng.random_range(0..4)],
                    1 => s.insert(at, letters[rng.random_range(0..4)]),
                    _ => {
                        s.remove(at);
                    }
                }
            }
            s.into_iter().collect()
        })
        .collect()
}

#[test]
fn a_short_run_lowers_the_held_out_relative_error() {
    use megashtein_gpu::train::cnn_ed_data::TripletData;
    use megashtein_gpu::train::cnn_ed_run::{CnnEdRun, fit_estimator, relative_error, train};
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(31);
    let strings = dna_family(&mut rng, 260);
    let (training, held_out) = strings.split_at(200);
    let alphabet = cnn_ed::alphabet_of(training.iter().map(String::as_str));
    let longest = training.iter().map(|s| s.chars().count()).max().unwrap();
    let data = TripletData::new(training.to_vec(), 100);
    let held_out = TripletData::new(held_out.to_vec(), 100);
    // The affine net, and one with ReLUs after blocks 3 and 6 (trained as strings).
    for relu in [0, 0b100100] {
        let shape = CnnEdShape {
            relu,
            ..CnnEdShape::official(alphabet.len(), cnn_ed::padded_len(longest))
        };
        let mut untrained = CnnEd::random(alphabet.clone(), shape, 7).unwrap();
        fit_estimator(&mut untrained, &data).unwrap();
        let before = relative_error(&untrained, &held_out).unwrap();
        let run = CnnEdRun {
            epochs: 20,
            triplets: 16,
            lr: 5e-3,
            seed: 1,
            loss: CnnEdLoss::Official,
        };
        let mut hooks = Recorder::default();
        let start = CnnEdStart::fresh(&untrained);
        let trained = finished(train(
            &t.gpu, &t.ops, &untrained, &data, &run, &start, &mut hooks,
        ));
        let after = relative_error(&trained, &held_out).unwrap();
        assert_eq!(hooks.epochs.len(), 20);
        assert_eq!(
            hooks.checkpoints.len(),
            20,
            "a checkpoint after every epoch"
        );
        // The random network with a fitted line is a real baseline (0.38 here); 20 short
        // epochs must cut it by a quarter at least.
        assert!(
            after < 0.75 * before,
            "ReLU {relu:b}: held-out relative error {before:.3} -> {after:.3}"
        );
        // Centred on its training strings: their mean embedding is 0 (distances as
        // before).
        let mean = trained.mean_embedding(training);
        assert!(mean.iter().all(|m| m.abs() < 1e-5), "{mean:?}");
        // The trained model round-trips.
        let again = CnnEd::from_safetensors(&trained.to_safetensors().unwrap(), "trained").unwrap();
        assert_eq!(again, trained);
    }
}

/// Records what a run reports; stops after `stop_at` steps.
#[derive(Default)]
struct Recorder {
    epochs: Vec<EpochReport>,
    checkpoints: Vec<CnnEdStart>,
    stop_at: Option<u64>,
}

impl CnnEdHooks for Recorder {
    fn step(&mut self, _: u64, _: u64) {}

    fn epoch(&mut self, report: &EpochReport) -> anyhow::Result<()> {
        self.epochs.push(*report);
        Ok(())
    }

    fn checkpoint(&mut self, step: u64, epoch_loss: f64, state: &CnnEdState) -> anyhow::Result<()> {
        self.checkpoints.push(CnnEdStart {
            step,
            epoch_loss,
            state: state.clone(),
        });
        Ok(())
    }

    fn stop(&self, step: u64) -> bool {
        self.stop_at == Some(step)
    }
}

fn finished(outcome: anyhow::Result<CnnEdOutcome>) -> CnnEd {
    match outcome.unwrap() {
        CnnEdOutcome::Finished { model, .. } => *model,
        CnnEdOutcome::Stopped { step } => panic!("stopped at step {step}"),
    }
}

/// A run stopped mid-epoch (and one stopped at an epoch's end), then continued from its
/// checkpoint, ends with the same model, bit for bit, and logs the same epoch losses as
/// the run done in one go.
#[test]
fn a_resumed_run_equals_the_run_in_one_go() {
    use megashtein_gpu::train::cnn_ed_data::TripletData;
    use megashtein_gpu::train::cnn_ed_run::{CnnEdRun, train};
    let t = gpu();
    let mut rng = StdRng::seed_from_u64(32);
    let strings = dna_family(&mut rng, 40);
    let alphabet = cnn_ed::alphabet_of(strings.iter().map(String::as_str));
    let longest = strings.iter().map(|s| s.chars().count()).max().unwrap();
    let shape = CnnEdShape::official(alphabet.len(), cnn_ed::padded_len(longest));
    let model = CnnEd::random(alphabet, shape, 8).unwrap();
    let data = TripletData::new(strings, 10);
    // 3 steps an epoch (16 + 16 + 8 triplets), 9 in all.
    let run = CnnEdRun {
        epochs: 3,
        triplets: 16,
        lr: 5e-3,
        seed: 2,
        loss: CnnEdLoss::Paper,
    };
    let fresh = CnnEdStart::fresh(&model);
    let mut whole = Recorder::default();
    let want = finished(train(
        &t.gpu, &t.ops, &model, &data, &run, &fresh, &mut whole,
    ));
    for stop_at in [4, 6] {
        let mut first = Recorder {
            stop_at: Some(stop_at),
            ..Recorder::default()
        };
        let outcome = train(&t.gpu, &t.ops, &model, &data, &run, &fresh, &mut first).unwrap();
        assert!(matches!(outcome, CnnEdOutcome::Stopped { step } if step == stop_at));
        let start = first.checkpoints.pop().unwrap();
        assert_eq!(start.step, stop_at);
        let mut rest = Recorder::default();
        let got = finished(train(
            &t.gpu, &t.ops, &model, &data, &run, &start, &mut rest,
        ));
        assert_eq!(got, want, "stopped at step {stop_at}");
        let losses = |r: &Recorder| r.epochs.iter().map(|e| e.loss).collect::<Vec<_>>();
        let joined = [losses(&first), losses(&rest)].concat();
        assert_eq!(joined, losses(&whole), "stopped at step {stop_at}");
    }
}

#[test]
fn train_arch_cnn_ed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let mut rng = StdRng::seed_from_u64(41);
    let corpus = dna_family(&mut rng, 40).join("\n") + "\n";
    std::fs::write(path("dna.txt"), &corpus).unwrap();
    let train = |corpus: &str, extra: &[&str]| {
        let mut args = vec!["train", "--arch", "cnn-ed", "--corpus", corpus];
        let output = path("dna.safetensors");
        args.extend(["--output", &output, "--epochs", "2", "--batch", "16"]);
        args.extend(extra);
        run_bin(&args, b"")
    };
    let out = train(&path("dna.txt"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    // Fewer strings than --train-strings (1,000): all 40, said so.
    assert!(
        stderr.contains("the corpus has 40 strings, fewer than --train-strings 1000"),
        "{stderr}"
    );
    let model = Model::open(path("dna.safetensors")).unwrap();
    let Architecture::CnnEd(trained) = model.architecture() else {
        panic!("not a CNN-ED model");
    };
    assert_eq!(trained.alphabet().len(), 4);
    assert!(model.estimator().scale > 0.0);
    let log = std::fs::read_to_string(path("dna.safetensors.log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "one line per epoch");
    // ReLUs after blocks 2 and 3: recorded in the model, which embeds layer by layer.
    let out = train(&path("dna.txt"), &["--layers", "4", "--relu-after", "2,3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let model = Model::open(path("dna.safetensors")).unwrap();
    let Architecture::CnnEd(relu) = model.architecture() else {
        panic!("not a CNN-ED model");
    };
    assert_eq!(relu.shape().relu_blocks(), [2, 3]);
    let first = corpus.lines().next().unwrap();
    let mut embedder = Embedder::for_model(&gpu().gpu, &model).unwrap();
    let e = embedder.embed(&[first]).unwrap();
    assert_close(
        "embed with ReLUs",
        &e,
        &reference::cnn_ed_forward(relu, first),
        1e-5,
        1e-4,
    );
    // Bad input: clear errors, no panic.
    std::fs::write(path("empty.txt"), "").unwrap();
    let e = err(train(&path("empty.txt"), &[]));
    assert!(
        e.contains("has 0 strings; CNN-ED's triplets need at least 3"),
        "{e}"
    );
    std::fs::write(path("bad.txt"), b"ACGT\nAC\xc3GT\n").unwrap();
    let e = err(train(&path("bad.txt"), &[]));
    assert!(
        e.contains("bad.txt:2: non-ASCII byte 0xc3 (not valid UTF-8) at column 3"),
        "{e}"
    );
    let e = err(train(&path("dna.txt"), &["--steps", "10"]));
    assert!(e.contains("--steps is for the megashtein trainer"), "{e}");
    let e = err(train(&path("dna.txt"), &["--step-overlap", "on"]));
    assert!(
        e.contains("--step-overlap is for the megashtein trainer"),
        "{e}"
    );
    let e = err(train(&path("dna.txt"), &["--max-len", "7"]));
    assert!(
        e.contains("--max-len must be an even length from 2 to 5000, got 7"),
        "{e}"
    );
    let e = err(train(
        &path("dna.txt"),
        &["--layers", "4", "--relu-after", "5"],
    ));
    assert!(
        e.contains("a ReLU after block 5, but the network has 4"),
        "{e}"
    );
    let e = err(train(&path("dna.txt"), &["--relu-after", "0"]));
    assert!(
        e.contains("--relu-after: block 0: blocks are numbered 1 to 12"),
        "{e}"
    );
    let e = err(run_bin(
        &["train", "--output", &path("x.safetensors"), "--epochs", "3"],
        b"",
    ));
    assert!(
        e.contains("--epochs is an option of train --arch cnn-ed"),
        "{e}"
    );
}

/// `--stop-after` leaves a checkpoint and no model; `--resume` finishes the run (with the
/// paper's loss, kept in the checkpoint) into the same model file, byte for byte, as the
/// run done in one go. Settings cannot be given with --resume, and a changed corpus is
/// refused.
#[test]
fn train_cnn_ed_stops_and_resumes_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let mut rng = StdRng::seed_from_u64(42);
    std::fs::write(path("dna.txt"), dna_family(&mut rng, 40).join("\n")).unwrap();
    let corpus = path("dna.txt");
    let fresh = |output: &str, extra: &[&str]| {
        let mut args = vec!["train", "--arch", "cnn-ed", "--corpus", &corpus, "--output"];
        args.extend([output, "--epochs", "2", "--batch", "16", "--seed", "5"]);
        args.extend(["--cnn-ed-loss", "paper"]);
        args.extend(extra);
        run_bin(&args, b"")
    };
    // Stderr of a run that must succeed.
    let succeeded = |out: std::process::Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    succeeded(fresh(&path("whole.safetensors"), &[]));
    let stopped = succeeded(fresh(&path("split.safetensors"), &["--stop-after", "2"]));
    assert!(stopped.contains("stopped at step 2"), "{stopped}");
    assert!(!dir.path().join("split.safetensors").exists());
    let checkpoint = path("split.safetensors.ckpt");
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", "--output"];
        let output = path("split.safetensors");
        args.extend([output.as_str(), "--resume", &checkpoint]);
        args.extend(extra);
        run_bin(&args, b"")
    };
    let e = err(resume(&["--epochs", "3"]));
    assert!(e.contains("cannot be used with"), "{e}");
    let resumed = succeeded(resume(&[]));
    assert!(resumed.contains("from step 2"), "{resumed}");
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert!(read("split.safetensors") == read("whole.safetensors"));
    // The resumed run kept the paper's loss and appended its epochs to the log.
    let log = String::from_utf8(read("split.safetensors.log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(
        log.lines().all(|l| l.contains("\"absolute_weight\":0.1")),
        "{log}"
    );
    std::fs::write(path("dna.txt"), "ACGT\nACGA\nTTTT\n").unwrap();
    let e = err(resume(&[]));
    assert!(e.contains("has changed since the run started"), "{e}");
}

#[test]
fn threshold_search_reaches_equal_strings_under_a_positive_intercept() {
    let t = gpu();
    let base: Vec<String> = ["straße", "strasse", "中文字", "naïve café", "cafe"]
        .map(String::from)
        .to_vec();
    let alphabet = cnn_ed::alphabet_of(base.iter().map(String::as_str));
    let mut model = CnnEd::random(
        alphabet.clone(),
        CnnEdShape::official(alphabet.len(), 12),
        2,
    )
    .unwrap();
    // A fitted line far above 0: every estimate is at least 40.
    model.set_estimator(1.0, 40.0);
    let model = Model::from_cnn_ed(model, "intercept").unwrap();
    let index = Index::build(&t.gpu, &model, &base, Precision::F32).unwrap();
    let mut searcher = Searcher::new(&t.gpu, &index, &model).unwrap();
    let opts = QueryOptions {
        k: 5,
        candidates: 5,
        max_distance: Some(1),
        ..QueryOptions::default()
    };
    let answers = searcher.search(&["straße", "cafe"], &opts).unwrap();
    let hits: Vec<Vec<usize>> = answers
        .iter()
        .map(|a| a.hits.iter().map(|h| h.id).collect())
        .collect();
    assert_eq!(hits, [vec![0], vec![4]]);
    // --non-ascii does not apply to such a model: refused by name.
    let dir = tempfile::tempdir().unwrap();
    let idx = dir.path().join("u.idx");
    index.save(&idx).unwrap();
    let e = err(run_bin(
        &[
            "query",
            "--index",
            idx.to_str().unwrap(),
            "--non-ascii",
            "skip",
            "cafe",
        ],
        b"",
    ));
    assert!(e.contains("--non-ascii does not apply to"), "{e}");
}
