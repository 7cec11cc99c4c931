//! Shared test helpers: one GPU per test binary, seeded random data, tolerant comparison.
#![allow(dead_code)]
use std::sync::OnceLock;

use megashtein_gpu::gpu::{Gpu, GpuOptions};
use megashtein_gpu::ops::Ops;
use rand::{Rng, SeedableRng, rngs::StdRng};

pub struct TestGpu {
    pub gpu: Gpu,
    pub ops: Ops,
}

/// The device every test in this binary shares (lavapipe in CI).
pub fn gpu() -> &'static TestGpu {
    static GPU: OnceLock<TestGpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new(&GpuOptions::default()).expect("tests need a GPU adapter");
        let ops = Ops::new(&gpu);
        TestGpu { gpu, ops }
    })
}

/// A second device whose calls wrap into the grid's second dimension past 4 workgroups
/// (a real device's limit is 65,535 or more): small tests reach the shaders' 2-D indexing.
pub fn narrow_grid_gpu() -> &'static TestGpu {
    static GPU: OnceLock<TestGpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let mut gpu = Gpu::new(&GpuOptions::default()).expect("tests need a GPU adapter");
        gpu.limits.max_compute_workgroups_per_dimension = 4;
        let ops = Ops::new(&gpu);
        TestGpu { gpu, ops }
    })
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// Assert `|got - want| <= atol + rtol * |want|` elementwise, naming the first offender.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{what}: element {i}: got {g}, want {w} (error {err:e})"
        );
    }
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central differences of `f` at up to 24 random coordinates of `x` against `grad`.
pub fn finite_differences(
    what: &str,
    r: &mut StdRng,
    x: &[f64],
    grad: &[f64],
    f: impl Fn(&[f64]) -> f64,
) {
    let h = 1e-6;
    for _ in 0..24.min(x.len()) {
        let i = r.random_range(0..x.len());
        let mut xp = x.to_vec();
        xp[i] += h;
        let mut xm = x.to_vec();
        xm[i] -= h;
        let fd = (f(&xp) - f(&xm)) / (2.0 * h);
        assert!(
            (fd - grad[i]).abs() <= 1e-6 + 1e-5 * fd.abs(),
            "{what}: coordinate {i}: finite difference {fd}, backward {}",
            grad[i]
        );
    }
}

/// Plain dynamic-programming Levenshtein distance over any symbols (bytes, or code
/// points), independent of the crate the library uses, to check it.
pub fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> u32 {
    let mut row: Vec<u32> = (0..=b.len() as u32).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i as u32 + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + u32::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Run the `megashtein-gpu` binary with `args`, feeding it `stdin`.
pub fn run_bin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_megashtein-gpu"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Stdout of a run that must succeed.
pub fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Stderr of a run that must fail cleanly (no panic).
pub fn err(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// The same index in format version 1: the stored model cut off, version 1, no model
/// fields, checksums recomputed (what older megashtein-gpu builds wrote).
pub fn as_format_1(index: &[u8]) -> Vec<u8> {
    use megashtein_gpu::search::index::{HEADER_LEN, IndexHeader};
    let mut header = IndexHeader::parse(index).expect("a valid index");
    let end = (header.strings_offset + header.strings_size) as usize;
    let mut out = index[..end].to_vec();
    header.version = 1;
    header.model_offset = 0;
    header.model_size = 0;
    header.file_len = end as u64;
    header.body_crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    out
}

/// A CNN-ED network with seeded random weights over the first `alphabet` (at most 37) of
/// a fixed list of letters, some outside ASCII: padded length `max_len`, `layers` blocks,
/// a ReLU after the blocks of the mask `relu`.
pub fn random_cnn_ed(
    seed: u64,
    alphabet: usize,
    max_len: usize,
    layers: usize,
    relu: u32,
) -> megashtein_gpu::model::cnn_ed::CnnEd {
    use megashtein_gpu::model::cnn_ed::{CnnEd, CnnEdShape};
    let letters: Vec<char> = "abcdefghijklmnopqrstuvwxyzäöüßéèñ中文字😀"
        .chars()
        .collect();
    let shape = CnnEdShape {
        layers,
        relu,
        ..CnnEdShape::official(alphabet, max_len)
    };
    CnnEd::random(letters[..alphabet].to_vec(), shape, seed).unwrap()
}
