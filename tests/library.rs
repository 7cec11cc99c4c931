//! The public API at the crate root, as a library user calls it: an index built in
//! memory is the file `embed` writes, the library refuses another model's index and
//! non-ASCII text, and searches and estimates agree with what they are made of.
mod common;

use megashtein_gpu::gpu::{Gpu, GpuOptions};
use megashtein_gpu::input::Line;
use megashtein_gpu::model::Architecture;
use megashtein_gpu::model::cgk::Cgk;
use megashtein_gpu::model::params::Widths;
use megashtein_gpu::model::weights::Weights;
use megashtein_gpu::search::index::IndexWriter;
use megashtein_gpu::{Embedder, Index, Model, Precision, QueryOptions, Searcher};

const EMBED_DIM: usize = Widths::RELEASED.dim;
use rand::Rng;

const WORDS: &[&str] = &[
    "apple",
    "apply",
    "ample",
    "maple",
    "banana",
    "bandana",
    "cherry",
    "sherry",
    "orange",
    "grape",
    "grapes",
    "melon",
    "lemon",
    "lime",
    "",
    "a much longer string of words, \
     longer than the eighty characters the model reads, to check that it is kept whole",
];

fn lines(words: &[&str]) -> Vec<Line> {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| Line {
            number: i as u64 + 1,
            text: w.as_bytes().to_vec(),
        })
        .collect()
}

#[test]
fn an_index_built_in_memory_has_the_bytes_of_the_streamed_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = common::rng(7);
    for (model, precision) in [
        (Model::builtin().unwrap(), Precision::F32),
        (Model::builtin().unwrap(), Precision::F16),
        // No model file to store: the index then ends after its strings.
        (
            Model::imported(Weights::init(3), "ab".repeat(32), "imported".into()),
            Precision::F32,
        ),
        // CGK codes, one byte a value whatever the precision asked for.
        (
            Model::from_cgk(Cgk::new(80, 2, 4), "cgk").unwrap(),
            Precision::F16,
        ),
    ] {
        let dim = model.dim();
        let codes = matches!(model.architecture(), Architecture::Cgk(_));
        for n in [0, 1, 5, WORDS.len()] {
            let rows = lines(&WORDS[..n]);
            let embeddings: Vec<f32> = (0..n * dim)
                .map(|_| match codes {
                    true => r.random_range(0..=128u8) as f32,
                    false => r.random_range(-3.0f32..3.0),
                })
                .collect();
            let path = dir.path().join(format!("{n}-{precision}.idx"));
            let mut writer = IndexWriter::for_model(&path, &model, precision).unwrap();
            writer.push(&rows, &embeddings).unwrap();
            writer.finish().unwrap();

            let index = Index::from_rows(&model, &rows, &embeddings, precision).unwrap();
            let saved = dir.path().join(format!("{n}-{precision}-saved.idx"));
            index.save(&saved).unwrap();
            assert_eq!(
                std::fs::read(&saved).unwrap(),
                std::fs::read(&path).unwrap(),
                "{n} rows, {precision}, {}",
                model.source()
            );
            let reopened = Index::open(&saved).unwrap();
            assert_eq!(reopened.len(), n);
            assert_eq!(reopened.estimator(), model.estimator());
            if codes || precision == Precision::F32 {
                assert_eq!(reopened.embeddings_f32(), embeddings);
            }
            for (i, word) in WORDS[..n].iter().enumerate() {
                assert_eq!(reopened.string(i), word.as_bytes());
                assert_eq!(index.line(i), i as u64 + 1);
            }
        }
    }
}

#[test]
fn index_build_equals_the_embed_command() {
    let t = common::gpu();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("words.txt");
    std::fs::write(&input, WORDS.join("\n") + "\n").unwrap();
    let file = dir.path().join("words.idx");
    let out = common::run_bin(
        &[
            "embed",
            "-i",
            input.to_str().unwrap(),
            "-o",
            file.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let model = Model::builtin().unwrap();
    let index = Index::build(&t.gpu, &model, WORDS, Precision::F32).unwrap();
    let saved = dir.path().join("built.idx");
    index.save(&saved).unwrap();
    assert_eq!(std::fs::read(saved).unwrap(), std::fs::read(file).unwrap());
}

#[test]
fn searching_another_models_index_is_refused() {
    let t = common::gpu();
    let builtin = Model::builtin().unwrap();
    let index = Index::build(&t.gpu, &builtin, &WORDS[..4], Precision::F32).unwrap();
    let other = Model::from_weights(Weights::init(1), "a random model").unwrap();
    let err = Searcher::new(&t.gpu, &index, &other)
        .err()
        .expect("another model's index is refused")
        .to_string();
    assert!(
        err.contains("was made by model")
            && err.contains(&builtin.fingerprint()[..12])
            && err.contains("a random model"),
        "{err}"
    );
    assert!(index.check_model(&builtin).is_ok());
    // The index holds its model: loading it from the index gives the same one.
    let stored = index.load_model(None).unwrap();
    assert_eq!(stored.fingerprint(), builtin.fingerprint());
}

#[test]
fn search_with_default_options_reranks_by_exact_distance() {
    let t = common::gpu();
    let model = Model::builtin().unwrap();
    let index = Index::build(&t.gpu, &model, WORDS, Precision::F32).unwrap();
    let mut searcher = Searcher::new(&t.gpu, &index, &model).unwrap();
    let opts = QueryOptions::default();
    assert_eq!((opts.k, opts.max_distance, opts.rerank), (10, None, true));
    let queries = ["aple", "lemmon", "grap", ""];
    let answers = searcher.search(&queries, &opts).unwrap();
    assert_eq!(answers.len(), queries.len());
    for (query, answer) in queries.iter().zip(&answers) {
        // The default C covers this whole index: the top 10 are the exact top 10.
        let mut exact: Vec<u32> = (0..index.len())
            .map(|i| common::levenshtein(query.as_bytes(), index.string(i)))
            .collect();
        exact.sort_unstable();
        let got: Vec<u32> = answer.hits.iter().map(|h| h.distance.unwrap()).collect();
        assert_eq!(got, exact[..10], "{query}");
        for hit in &answer.hits {
            let want = common::levenshtein(query.as_bytes(), index.string(hit.id));
            assert_eq!(hit.distance, Some(want));
        }
    }
    assert_eq!(index.string(answers[1].hits[0].id), b"lemon");
}

#[test]
fn estimates_are_the_scaled_squared_distance_of_the_embeddings() {
    let t = common::gpu();
    let model = Model::builtin().unwrap();
    let mut embedder = Embedder::for_model(&t.gpu, &model).unwrap();
    let pairs = [("kitten", "sitting"), ("apple", "apple"), ("", "abc")];
    let estimates = embedder.estimates(&pairs).unwrap();
    for ((a, b), got) in pairs.iter().zip(&estimates) {
        let e = embedder.embed(&[a, b]).unwrap();
        let squared: f64 = e[..EMBED_DIM]
            .iter()
            .zip(&e[EMBED_DIM..])
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        let want = f64::from(model.weights().unwrap().distance_scale) * squared;
        assert!(
            (f64::from(*got) - want).abs() <= 1e-4 * (1.0 + want),
            "{a} {b}"
        );
    }
    assert_eq!(estimates[1], 0.0);
    assert_eq!(
        embedder.estimate("kitten", "sitting").unwrap(),
        estimates[0]
    );
}

#[test]
fn pipelines_are_built_once_per_device_however_many_embedders() {
    // A device of its own: the shared one's count moves with the other tests.
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let model = Model::builtin().unwrap();
    let first = Embedder::for_model(&gpu, &model)
        .unwrap()
        .embed(&["kitten"])
        .unwrap();
    let built = gpu.pipelines_built();
    assert!(built > 0);
    let second = Embedder::for_model(&gpu, &model)
        .unwrap()
        .embed(&["kitten"])
        .unwrap();
    assert_eq!(
        gpu.pipelines_built(),
        built,
        "a second embedder built pipelines again"
    );
    assert_eq!(first, second);
}

/// The kNN kernels are generated per plan; the device's cache compiles each once.
#[test]
fn knn_pipelines_are_built_once_per_device_however_many_searchers() {
    let gpu = Gpu::new(&GpuOptions::default()).unwrap();
    let model = Model::builtin().unwrap();
    let index = Index::build(&gpu, &model, WORDS, Precision::F32).unwrap();
    let search = || {
        Searcher::new(&gpu, &index, &model)
            .unwrap()
            .search(&["kiten"], &QueryOptions::default())
            .unwrap()
    };
    let first = search();
    let built = gpu.pipelines_built();
    let second = search();
    assert_eq!(
        gpu.pipelines_built(),
        built,
        "a second searcher built pipelines again"
    );
    assert_eq!(first, second);
}

#[test]
fn non_ascii_text_is_an_error_naming_it() {
    let t = common::gpu();
    let model = Model::builtin().unwrap();
    let mut embedder = Embedder::for_model(&t.gpu, &model).unwrap();
    let err = embedder.embed(&["fine", "café"]).unwrap_err().to_string();
    assert!(
        err.contains("string 2 \"café\"") && err.contains("U+00E9"),
        "{err}"
    );
    let err = Index::build(&t.gpu, &model, &["naïve"], Precision::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("string 1"), "{err}");
    let index = Index::build(&t.gpu, &model, &WORDS[..3], Precision::F32).unwrap();
    let mut searcher = Searcher::new(&t.gpu, &index, &model).unwrap();
    let err = searcher
        .search(&["ok", "Ünïcode"], &QueryOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("query 2"), "{err}");
}
