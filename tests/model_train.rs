//! One training step against PyTorch (made by tools/make_train_fixture.py): of the
//! released checkpoint (tests/fixtures/train_step.safetensors) and of a fresh model of
//! other widths (train_step_widths.safetensors): train-mode embeddings, loss,
//! whole-model gradients, BatchNorm running statistics, and two AdamW steps fed
//! PyTorch's own gradients. Also the hard-example table against a CPU search.
mod common;

use std::collections::HashMap;
use std::path::Path;

use megashtein_gpu::model::params::{RUNNING_MEAN, RUNNING_VAR, Widths};
use megashtein_gpu::model::{pth, weights::Weights};
use megashtein_gpu::ops::adamw::AdamWStep;
use megashtein_gpu::ops::{Ops, TileReads};
use megashtein_gpu::train::data::{Examples, PRINTABLE, PairBatch, PairGenerator};
use megashtein_gpu::train::hard::{HardConfig, Neighbours};
use megashtein_gpu::train::trainer::{Objective, TrainState, Trainer, slab_len};
use safetensors::SafeTensors;

/// The fixtures: the released model, and a fresh one whose hidden layer (232) also takes
/// the linear layer's split reduction.
const FIXTURES: [&str; 2] = ["train_step", "train_step_widths"];

struct Fixture {
    name: &'static str,
    weights: Weights,
    batch: PairBatch,
    tensors: HashMap<String, Vec<f32>>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn get(&self, name: &str) -> &[f32] {
        &self.tensors[name]
    }

    fn number(&self, key: &str) -> f64 {
        self.meta[key].parse().unwrap()
    }

    /// The named per-parameter tensors (`grad.*`, `after.*`) as one slab.
    fn slab(&self, prefix: &str) -> Vec<f32> {
        self.weights
            .widths
            .params()
            .iter()
            .flat_map(|s| self.get(&format!("{prefix}.{}", s.name)).to_vec())
            .collect()
    }

    fn widths(&self) -> Widths {
        self.weights.widths
    }
}

fn fixture(name: &'static str) -> Fixture {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{name}.safetensors"));
    let bytes = std::fs::read(path).expect("fixture");
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let a: Vec<String> = serde_json::from_str(&meta["a"]).unwrap();
    let b: Vec<String> = serde_json::from_str(&meta["b"]).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let tensors: HashMap<String, Vec<f32>> = st
        .tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == safetensors::Dtype::F32)
        .map(|(name, v)| {
            let values = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name, values)
        })
        .collect();
    let labels = tensors["labels"].iter().map(|&d| d as u32).collect();
    let cut = |s: String| s.into_bytes().into_iter().take(80).collect();
    let batch = PairBatch {
        a: a.into_iter().map(cut).collect(),
        b: b.into_iter().map(cut).collect(),
        labels,
    };
    // The released checkpoint, or the fixture's own starting point at its widths.
    let weights = match meta.get("widths") {
        None => released(),
        Some(widths) => {
            let mut w = Weights::init_with(serde_json::from_str(widths).unwrap(), 0);
            let names: Vec<&str> = w.widths.params().iter().map(|s| s.name).collect();
            for name in names.into_iter().chain([RUNNING_MEAN, RUNNING_VAR]) {
                w.tensor_mut(name)
                    .copy_from_slice(&tensors[&format!("init.{name}")]);
            }
            w
        }
    };
    Fixture {
        name,
        weights,
        batch,
        tensors,
        meta,
    }
}

fn released() -> Weights {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/reference/megashtein_trained_model.pth");
    Weights::from_state_dict(&pth::read_state_dict(&path).unwrap(), "released").unwrap()
}

/// `||got - want|| <= tol * ||want||` per tensor, naming the worst.
fn assert_relative_to_norm(what: &str, got: &[f32], want: &[f32], tol: f64) {
    let norm = want
        .iter()
        .map(|&w| f64::from(w).powi(2))
        .sum::<f64>()
        .sqrt();
    let err = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (f64::from(g) - f64::from(w)).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        err <= tol * norm.max(1e-30),
        "{what}: error norm {err:e} vs reference norm {norm:e}"
    );
}

#[test]
fn one_step_matches_pytorch() {
    let t = common::gpu();
    for name in FIXTURES {
        one_step_matches(t, &fixture(name));
    }
}

/// The register tile's two readers (`ops::TileReads`) give the same step, bit for bit:
/// CI's lavapipe runs the subgroup reader everywhere else, so this is what tests the
/// shared one (every GPU's).
#[test]
fn either_tile_reader_gives_the_same_step() {
    let t = common::gpu();
    // CI's lavapipe (Vulkan; through GL it has no subgroups) tests the other reader.
    if t.gpu.info.name.contains("llvmpipe") && t.gpu.info.backend == wgpu::Backend::Vulkan {
        assert_eq!(TileReads::for_device(&t.gpu), TileReads::Subgroup);
    }
    let shared = Ops::with_tile_reads(&t.gpu, TileReads::Shared);
    for name in FIXTURES {
        let f = fixture(name);
        let state = TrainState::new(&f.weights, f.number("distance_scale") as f32);
        let step = |ops: &Ops| {
            let mut trainer =
                Trainer::new(&t.gpu, ops, &state, f.batch.len(), false, Objective::Pnll).unwrap();
            trainer.gradients(&f.batch).unwrap();
            (
                trainer.read_embeddings().unwrap(),
                trainer.read_grads().unwrap(),
            )
        };
        let (mine, theirs) = (step(&t.ops), step(&shared));
        assert!(
            mine.0 == theirs.0,
            "{name}: embeddings differ between readers"
        );
        assert!(
            mine.1 == theirs.1,
            "{name}: gradients differ between readers"
        );
    }
}

fn one_step_matches(t: &common::TestGpu, f: &Fixture) {
    let scale = f.number("distance_scale") as f32;
    let state = TrainState::new(&f.weights, scale);
    let mut trainer = Trainer::new(
        &t.gpu,
        &t.ops,
        &state,
        f.batch.len(),
        false,
        Objective::Pnll,
    )
    .unwrap();
    trainer.gradients(&f.batch).unwrap();

    let e = trainer.read_embeddings().unwrap();
    common::assert_close(
        "train-mode embeddings",
        &e,
        &common::to_f64(f.get("embedding")),
        1e-4,
        1e-4,
    );
    let loss = trainer.losses(0, 1).unwrap()[0];
    let want = f.get("loss")[0];
    assert!(
        (loss - want).abs() <= 1e-4 * (1.0 + want.abs()),
        "loss {loss}, PyTorch {want}"
    );

    // Gradients within 1e-4 of their norm, per tensor. BN's beta and fc2's bias have an
    // exact gradient of 0 (beta cancels in e1 - e2, and BN removes fc2's bias), so
    // PyTorch's values there are rounding noise: ours must be 0 within 1e-4 of the
    // whole gradient's norm.
    let widths = f.widths();
    let grads = trainer.read_grads().unwrap();
    assert_eq!(grads.len(), slab_len(&widths));
    let params = widths.num_params();
    let want_all = f.slab("grad");
    assert_relative_to_norm("all gradients", &grads[..params], &want_all, 1e-4);
    let norm = want_all
        .iter()
        .map(|&g| f64::from(g).powi(2))
        .sum::<f64>()
        .sqrt();
    for spec in widths.params() {
        let got = &grads[widths.range_of(spec.name)];
        let want = f.get(&format!("grad.{}", spec.name));
        let what = format!("{}: {}", f.name, spec.name);
        if spec.name == "fc_layers.3.bias" || spec.name == "fc_layers.2.bias" {
            common::assert_close(&what, got, &vec![0.0; got.len()], 1e-4 * norm, 0.0);
        } else {
            assert_relative_to_norm(&what, got, want, 1e-4);
        }
    }

    let after = trainer.state().unwrap();
    common::assert_close(
        "running statistics",
        &after.running,
        &common::to_f64(&[f.get("running_mean"), f.get("running_var")].concat()),
        1e-5,
        1e-5,
    );
}

#[test]
fn adamw_matches_pytorch_fed_its_gradients() {
    let t = common::gpu();
    let f = fixture("train_step");
    let state = TrainState::new(&f.weights, f.number("distance_scale") as f32);
    let mut trainer = Trainer::new(
        &t.gpu,
        &t.ops,
        &state,
        f.batch.len(),
        false,
        Objective::Pnll,
    )
    .unwrap();
    let mut grads = f.slab("grad");
    grads.push(0.0);
    for step in 1..=f.number("adamw_steps") as u64 {
        trainer.write_grads(&grads);
        trainer
            .update(&AdamWStep {
                lr: f.number("lr"),
                weight_decay: f.number("weight_decay"),
                beta1: f.number("beta1"),
                beta2: f.number("beta2"),
                eps: f.number("eps"),
                step,
                clip: 0.0,
            })
            .unwrap();
    }
    let got = trainer.state().unwrap().params;
    let params = f.widths().num_params();
    common::assert_close(
        "weights after AdamW",
        &got[..params],
        &common::to_f64(&f.slab("after")),
        1e-5,
        0.0,
    );
    // log_s is not learned here: untouched.
    assert_eq!(got[params], state.params[params]);
}

#[test]
fn hard_example_table_holds_each_strings_nearest_under_the_model() {
    let t = common::gpu();
    let mut rng = common::rng(5);
    let words: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let len = rand::Rng::random_range(&mut rng, 1..12);
            (0..len)
                .map(|_| b'a' + rand::Rng::random_range(&mut rng, 0..6u8))
                .collect()
        })
        .collect();
    let generator = PairGenerator::corpus(words, PRINTABLE.to_vec()).unwrap();
    let weights = Weights::init_with(Widths::RELEASED, 3);
    let config = HardConfig {
        every: 10,
        pool: 120,
        k: 5,
    };
    let table = Neighbours::build(&t.gpu, &t.ops, &weights, &generator, &config, 9, 20).unwrap();
    let corpus = generator.strings();
    assert_eq!(table.pool, Neighbours::pool(&config, 9, 20, corpus));
    assert_eq!(table.pool.len(), 120);
    assert!(
        table.pool.windows(2).all(|w| w[0] < w[1]),
        "distinct places"
    );
    assert_ne!(table.pool, Neighbours::pool(&config, 9, 30, corpus));
    // Each slot's list: other slots, at the k smallest distances of a CPU search over
    // the pool's embeddings.
    let pool: Vec<&[u8]> = table.pool.iter().map(|&i| corpus[i].as_slice()).collect();
    let mut embedder = megashtein_gpu::Embedder::new(&t.gpu, &weights, 128).unwrap();
    let e = embedder.embed(&pool).unwrap();
    let dim = weights.widths.dim;
    let row = |i: usize| &e[i * dim..(i + 1) * dim];
    let d = |i: usize, j: usize| -> f64 {
        row(i)
            .iter()
            .zip(row(j))
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum()
    };
    for slot in 0..120 {
        let list = &table.lists[slot * 5..(slot + 1) * 5];
        assert!(
            list.iter().all(|&s| s as usize != slot),
            "slot {slot} lists itself"
        );
        let mut all: Vec<f64> = (0..120)
            .filter(|&j| j != slot)
            .map(|j| d(slot, j))
            .collect();
        all.sort_by(f64::total_cmp);
        for (rank, &s) in list.iter().enumerate() {
            let (got, want) = (d(slot, s as usize), all[rank]);
            assert!(
                (got - want).abs() <= 1e-4 + 1e-4 * want,
                "slot {slot} rank {rank}: {got} vs {want}"
            );
        }
        for (rank, &s) in list.iter().enumerate() {
            assert_eq!(table.neighbour(slot, rank), table.pool[s as usize]);
        }
    }
    // A checkpoint's copy restores the same table; a corrupt one is refused.
    let saved = table.saved();
    assert_eq!(
        Neighbours::restored(&config, 9, corpus, &saved).unwrap(),
        table
    );
    let mut bad = saved.clone();
    bad.lists[3] = 120;
    assert!(Neighbours::restored(&config, 9, corpus, &bad).is_err());
    bad.lists.pop();
    assert!(Neighbours::restored(&config, 9, corpus, &bad).is_err());

    // A corpus of three different strings, repeated: a pool of those three, k cut to 2.
    let repeated: Vec<Vec<u8>> = (0..60)
        .map(|i| [&b"ab"[..], b"cd", b"xyz"][i % 3].to_vec())
        .collect();
    let generator = PairGenerator::corpus(repeated, PRINTABLE.to_vec()).unwrap();
    let table = Neighbours::build(&t.gpu, &t.ops, &weights, &generator, &config, 9, 20).unwrap();
    assert_eq!(table.pool, [0, 20, 40]);
    assert_eq!(table.k, 2);
    assert_eq!(table.lists.len(), 6);
    let one = PairGenerator::corpus(vec![b"same".to_vec(); 5], PRINTABLE.to_vec()).unwrap();
    let e = Neighbours::build(&t.gpu, &t.ops, &weights, &one, &config, 9, 20).unwrap_err();
    assert!(
        e.to_string()
            .contains("at least 2 different corpus strings"),
        "{e}"
    );
}
