//! The whole forward pass on the released checkpoint against the PyTorch fixture made by
//! tools/make_fixture.py (tests/fixtures/forward.safetensors), on the GPU and on the CPU
//! reference.
mod common;

use std::path::Path;

use megashtein_gpu::embed::Embedder;
use megashtein_gpu::input::tokenize_batch;
use megashtein_gpu::model::megashtein::Megashtein;
use megashtein_gpu::model::params::{MAX_LEN, Widths};
use megashtein_gpu::model::{pth, weights::Weights};
use megashtein_gpu::ops::Ops;
use megashtein_gpu::reference;
use rand::Rng;
use safetensors::SafeTensors;

const EMBED_DIM: usize = Widths::RELEASED.dim;

struct Fixture {
    strings: Vec<Vec<u8>>,
    tokens: Vec<u8>,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/forward.safetensors"
    ))
    .expect("fixture");
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let strings: Vec<String> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["strings"]).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tokens = st.tensor("tokens").unwrap();
    let tokens: Vec<u8> = tokens
        .data()
        .chunks_exact(8)
        .map(|c| u8::try_from(i64::from_le_bytes(c.try_into().unwrap())).unwrap())
        .collect();
    let embedding: Vec<f32> = st
        .tensor("embedding")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Fixture {
        strings: strings.into_iter().map(String::into_bytes).collect(),
        tokens,
        embedding,
    }
}

fn released() -> Weights {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/megashtein_trained_model.pth");
    let sd = pth::read_state_dict(&path).expect("released checkpoint");
    Weights::from_state_dict(&sd, "released").unwrap()
}

/// CONTRACTS.md tolerance for the forward pass: 1e-4 * (1 + |ref|).
fn assert_matches(what: &str, got: &[f32], want: &[f32], strings: &[Vec<u8>]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= 1e-4 * (1.0 + w.abs()),
            "{what}: string {:?} dim {}: got {g}, PyTorch {w}",
            String::from_utf8_lossy(&strings[i / EMBED_DIM]),
            i % EMBED_DIM
        );
    }
}

#[test]
fn tokenizer_matches_pytorch() {
    let f = fixture();
    assert!(f.strings.len() >= 150);
    assert!(f.strings.iter().any(|s| s.is_empty()));
    assert!(f.strings.iter().any(|s| s.len() > MAX_LEN));
    let mut tokens = Vec::new();
    tokenize_batch(f.strings.iter().map(Vec::as_slice), &mut tokens);
    assert_eq!(tokens, f.tokens);
}

#[test]
fn gpu_forward_matches_pytorch() {
    let f = fixture();
    let weights = released();
    let t = common::gpu();
    // A batch smaller than the fixture, so several GPU batches and a partial one run.
    let mut embedder = Embedder::new(&t.gpu, &weights, 64).unwrap();
    let texts: Vec<&[u8]> = f.strings.iter().map(Vec::as_slice).collect();
    let got = embedder.embed(&texts).unwrap();
    assert_matches("GPU", &got, &f.embedding, &f.strings);
    // Batch 1 gives the same numbers as a big batch (eval mode: no cross-talk).
    let one = embedder.embed(&texts[..1]).unwrap();
    assert_eq!(one, got[..EMBED_DIM]);
}

#[test]
fn cpu_reference_matches_pytorch() {
    let f = fixture();
    let got: Vec<f32> = reference_embeddings(&released(), &f.tokens)
        .iter()
        .map(|&v| v as f32)
        .collect();
    assert_matches("CPU reference", &got, &f.embedding, &f.strings);
}

/// `reference::megashtein_forward` of `weights` (eval mode).
fn reference_embeddings(weights: &Weights, tokens: &[u8]) -> Vec<f64> {
    let running: Vec<f64> = weights
        .running_mean
        .iter()
        .chain(&weights.running_var)
        .map(|&v| f64::from(v))
        .collect();
    let params = common::to_f64(&weights.params);
    reference::megashtein_forward(&weights.widths, &params, &running, tokens)
}

#[test]
fn two_batches_in_flight_read_back_in_order() {
    let f = fixture();
    let weights = released();
    let t = common::gpu();
    let mut model = Megashtein::new(&t.gpu, &Ops::new(&t.gpu), &weights, 8).unwrap();
    let rows = |i: usize| &f.tokens[i * 8 * MAX_LEN..(i + 1) * 8 * MAX_LEN];
    let alone: Vec<Vec<f32>> = (0..3)
        .map(|i| model.forward(&t.gpu, rows(i)).unwrap())
        .collect();
    // Submit the second batch before reading the first: each keeps its own numbers.
    let first = model.submit(&t.gpu, rows(0)).unwrap();
    let second = model.submit(&t.gpu, rows(1)).unwrap();
    assert_eq!(model.collect(&t.gpu, first).unwrap(), alone[0]);
    let third = model.submit(&t.gpu, rows(2)).unwrap();
    assert_eq!(model.collect(&t.gpu, second).unwrap(), alone[1]);
    assert_eq!(model.collect(&t.gpu, third).unwrap(), alone[2]);
    // A batch whose staging buffer was reused by a later one is refused.
    let stale = model.submit(&t.gpu, rows(0)).unwrap();
    model.submit(&t.gpu, rows(1)).unwrap();
    model.submit(&t.gpu, rows(2)).unwrap();
    let err = model.collect(&t.gpu, stale).unwrap_err().to_string();
    assert!(err.contains("two later ones"), "{err}");
}

#[test]
fn non_finite_embeddings_are_errors_naming_the_string() {
    // Weights built in memory (a file with a NaN is refused at load, see model::weights).
    let mut weights = released();
    weights.tensor_mut("fc_layers.2.bias")[3] = f32::NAN;
    let t = common::gpu();
    let mut embedder = Embedder::new(&t.gpu, &weights, 8).unwrap();
    let err = embedder
        .embed(&[b"fine".as_slice(), b"also fine"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("string 1 (\"fine\")") && err.contains("non-finite"),
        "{err}"
    );
}

#[test]
fn a_query_with_non_finite_distances_is_an_error() {
    use megashtein_gpu::input::Line;
    use megashtein_gpu::{Index, Model, Precision, QueryOptions, Searcher};
    let t = common::gpu();
    let mut weights = released();
    weights.tensor_mut("fc_layers.2.bias")[3] = f32::INFINITY;
    let model = Model::from_weights(weights, "weights with an infinity").unwrap();
    let lines: Vec<Line> = ["alpha", "beta"]
        .iter()
        .enumerate()
        .map(|(i, s)| Line {
            number: i as u64 + 1,
            text: s.as_bytes().to_vec(),
        })
        .collect();
    let index = Index::from_rows(&model, &lines, &[0.5; 2 * EMBED_DIM], Precision::F32).unwrap();
    let mut searcher = Searcher::with_batch(&t.gpu, &index, &model, 8).unwrap();
    let opts = QueryOptions {
        k: 1,
        candidates: 2,
        max_distance: None,
        blowup: 2.0,
        rerank: true,
    };
    let err = searcher
        .search(&[b"alpa".as_slice()], &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("query \"alpa\"") && err.contains("not finite"),
        "{err}"
    );
}

/// Widths other than the released ones, on the GPU against the CPU reference (itself
/// checked against PyTorch above): one channel and one hidden unit; a hidden layer
/// wider than the linear tile's reduction (split); the 128-d embedding; odd widths.
#[test]
fn other_widths_match_the_cpu_reference() {
    let t = common::gpu();
    let mut rng = common::rng(14);
    let cases = [
        (1, 1, 1, 2),
        (12, 8, 232, 44),
        (140, 64, 200, 128),
        (33, 17, 300, 6),
    ];
    for (char_dim, channels, hidden, dim) in cases {
        let widths = Widths {
            char_dim,
            channels,
            hidden,
            dim,
        };
        let mut weights = Weights::init_with(widths, rng.random());
        // Running statistics other than 0 and 1, so the batch norm is really checked.
        let stats = common::uniform(&mut rng, 2 * dim);
        weights.running_mean = stats[..dim].to_vec();
        weights.running_var = stats[dim..].iter().map(|v| 1.5 + v).collect();
        let strings: Vec<Vec<u8>> = (0..7)
            .map(|i| {
                let len = [0, 1, 5, 40, 79, 80, 95][i];
                (0..len).map(|_| rng.random_range(32u8..127)).collect()
            })
            .collect();
        let texts: Vec<&[u8]> = strings.iter().map(Vec::as_slice).collect();
        let mut tokens = Vec::new();
        tokenize_batch(texts.iter().copied(), &mut tokens);
        let want = reference_embeddings(&weights, &tokens);
        // Batches of 3: a full one, another, and a partial one.
        let mut embedder = Embedder::new(&t.gpu, &weights, 3).unwrap();
        assert_eq!(embedder.dim(), dim);
        let got = embedder.embed(&texts).unwrap();
        common::assert_close(&format!("{widths}"), &got, &want, 1e-4, 1e-4);
    }
}
