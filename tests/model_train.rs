//! One training step of the released checkpoint against PyTorch
//! (tests/fixtures/train_step.safetensors, made by tools/make_train_fixture.py):
//! train-mode embeddings, loss, whole-model gradients, BatchNorm running statistics,
//! and two AdamW steps fed PyTorch's own gradients.
mod common;

use std::collections::HashMap;
use std::path::Path;

use megashtein_gpu::model::params::{NUM_PARAMS, PARAMS, range_of};
use megashtein_gpu::model::{pth, weights::Weights};
use megashtein_gpu::ops::adamw::AdamWStep;
use megashtein_gpu::train::data::{Examples, PairBatch};
use megashtein_gpu::train::trainer::{Objective, SLAB, TrainState, Trainer};
use safetensors::SafeTensors;

struct Fixture {
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
        PARAMS
            .iter()
            .flat_map(|s| self.get(&format!("{prefix}.{}", s.name)).to_vec())
            .collect()
    }
}

fn fixture() -> Fixture {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/train_step.safetensors"
    ))
    .expect("fixture");
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
    Fixture {
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
    let f = fixture();
    let weights = released();
    let scale = f.number("distance_scale") as f32;
    let state = TrainState::new(&weights, scale);
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
    // PyTorch's values there are rounding noise: they are checked absolutely.
    let grads = trainer.read_grads().unwrap();
    assert_eq!(grads.len(), SLAB);
    for spec in PARAMS {
        let got = &grads[range_of(spec.name)];
        let want = f.get(&format!("grad.{}", spec.name));
        if spec.name == "fc_layers.3.bias" || spec.name == "fc_layers.2.bias" {
            common::assert_close(spec.name, got, &common::to_f64(want), 1e-4, 0.0);
        } else {
            assert_relative_to_norm(spec.name, got, want, 1e-4);
        }
    }
    assert_relative_to_norm("all gradients", &grads[..NUM_PARAMS], &f.slab("grad"), 1e-4);

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
    let f = fixture();
    let weights = released();
    let state = TrainState::new(&weights, f.number("distance_scale") as f32);
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
    common::assert_close(
        "weights after AdamW",
        &got[..NUM_PARAMS],
        &common::to_f64(&f.slab("after")),
        1e-5,
        0.0,
    );
    // log_s is not learned here: untouched.
    assert_eq!(got[NUM_PARAMS], state.params[NUM_PARAMS]);
}
