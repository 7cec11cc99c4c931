//! Importing PyTorch checkpoints and reading / writing model files, through the library.
//!
//! The released reference checkpoint (models/reference/megashtein_trained_model.pth, in
//! the repository) is used where a test needs it; every other test builds its own checkpoints by hand, in the
//! byte format `torch.save` writes (a zip of a protocol-2 pickle and raw storages).

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use megashtein_gpu::cli::import;
use megashtein_gpu::model::params::{NUM_BATCHES_TRACKED, RUNNING_MEAN, RUNNING_VAR, Widths};
use megashtein_gpu::model::pth::{self, DType, StateDict, Tensor};
use megashtein_gpu::model::weights::{self, REFERENCE_DISTANCE_SCALE, Weights};
use safetensors::tensor::{Dtype, TensorView};
use zip::write::SimpleFileOptions;

/// The released checkpoint, shipped in the repository.
fn reference_pth() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(megashtein_gpu::model::RELEASED_CHECKPOINT_PATH)
}

/// The names of the state_dict, in PyTorch's order.
fn state_dict_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = Widths::RELEASED.params().iter().map(|s| s.name).collect();
    names.extend([RUNNING_MEAN, RUNNING_VAR, NUM_BATCHES_TRACKED]);
    names
}

// --- writing checkpoints by hand -------------------------------------------------------

/// Pickle opcodes used below.
const PROTO: u8 = 0x80;
const GLOBAL: u8 = b'c';
const EMPTY_TUPLE: u8 = b')';
const REDUCE: u8 = b'R';
const MARK: u8 = b'(';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const BINUNICODE: u8 = b'X';
const BININT: u8 = b'J';
const BINPERSID: u8 = b'Q';
const NEWFALSE: u8 = 0x89;
const SETITEMS: u8 = b'u';
const STOP: u8 = b'.';

fn push_str(p: &mut Vec<u8>, s: &str) {
    p.push(BINUNICODE);
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

fn push_int(p: &mut Vec<u8>, i: usize) {
    p.push(BININT);
    p.extend((i as i32).to_le_bytes());
}

fn push_ints(p: &mut Vec<u8>, v: &[usize]) {
    p.push(MARK);
    for &i in v {
        push_int(p, i);
    }
    p.push(TUPLE);
}

/// The data.pkl torch.save writes for a state_dict: storage i holds tensor i.
fn state_dict_pickle(sd: &StateDict) -> Vec<u8> {
    let mut p = vec![PROTO, 2];
    p.push(GLOBAL);
    p.extend(b"collections\nOrderedDict\n");
    p.extend([EMPTY_TUPLE, REDUCE, MARK]);
    for (i, (name, t)) in sd.iter().enumerate() {
        let class = match t.dtype {
            DType::F32 => "FloatStorage",
            DType::I64 => "LongStorage",
            other => panic!("test writer has no storage class for {other}"),
        };
        push_str(&mut p, name);
        p.push(GLOBAL);
        p.extend(b"torch._utils\n_rebuild_tensor_v2\n");
        p.extend([MARK, MARK]);
        push_str(&mut p, "storage");
        p.push(GLOBAL);
        p.extend(format!("torch\n{class}\n").as_bytes());
        push_str(&mut p, &i.to_string());
        push_str(&mut p, "cpu");
        push_int(&mut p, t.numel());
        p.extend([TUPLE, BINPERSID]);
        push_int(&mut p, 0);
        push_ints(&mut p, &t.shape);
        let mut stride = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * t.shape[d + 1];
        }
        push_ints(&mut p, &stride);
        p.push(NEWFALSE);
        p.push(GLOBAL);
        p.extend(b"collections\nOrderedDict\n");
        p.extend([EMPTY_TUPLE, REDUCE, TUPLE, REDUCE]);
    }
    p.extend([SETITEMS, STOP]);
    p
}

/// A zip of the given entries, stored uncompressed as torch.save does.
fn zip_bytes(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// The entries of a torch.save checkpoint of `sd` under the folder `top`.
fn checkpoint_entries(sd: &StateDict, top: &str) -> Vec<(String, Vec<u8>)> {
    let mut entries = vec![
        (format!("{top}/data.pkl"), state_dict_pickle(sd)),
        (format!("{top}/byteorder"), b"little".to_vec()),
    ];
    for (i, (_, t)) in sd.iter().enumerate() {
        entries.push((format!("{top}/data/{i}"), t.data.clone()));
    }
    entries.push((format!("{top}/version"), b"3\n".to_vec()));
    entries
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn write_safetensors(path: &Path, sd: &StateDict, meta: Option<HashMap<String, String>>) {
    let dtype = |d: DType| match d {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I64 => Dtype::I64,
        other => panic!("test writer has no dtype {other}"),
    };
    let views: Vec<(&str, TensorView)> = sd
        .iter()
        .map(|(n, t)| {
            (
                n,
                TensorView::new(dtype(t.dtype), t.shape.clone(), &t.data).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

fn model_metadata() -> HashMap<String, String> {
    HashMap::from([
        (
            "megashtein.arch".to_string(),
            "megashtein-cnn-v1".to_string(),
        ),
        ("megashtein.distance_scale".to_string(), "0.25".to_string()),
    ])
}

fn f32_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn assert_same_weights(a: &Weights, b: &Weights) {
    assert_eq!(f32_bits(&a.params), f32_bits(&b.params));
    assert_eq!(f32_bits(&a.running_mean), f32_bits(&b.running_mean));
    assert_eq!(f32_bits(&a.running_var), f32_bits(&b.running_var));
    assert_eq!(a.num_batches_tracked, b.num_batches_tracked);
    assert_eq!(a.distance_scale.to_bits(), b.distance_scale.to_bits());
    assert_eq!(a.arch, b.arch);
}

fn error_of<T: std::fmt::Debug>(r: anyhow::Result<T>) -> String {
    // `{}` (not `{:#}`): the top-level message alone must already say what is wrong.
    format!("{}", r.expect_err("expected an error"))
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "{message:?} does not mention {part:?}"
        );
    }
}

// --- the reference checkpoint -----------------------------------------------------------

#[test]
fn reference_checkpoint_imports_bit_for_bit() {
    let path = reference_pth();
    let sd = pth::read_state_dict(&path).unwrap();
    assert_eq!(sd.names().collect::<Vec<_>>(), state_dict_names());

    // Independently: the raw storages in the zip, data/i for the i-th tensor.
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let top = "megashtein_trained_model";
    let mut raw = Vec::new();
    for i in 0..state_dict_names().len() {
        let mut bytes = Vec::new();
        zip.by_name(&format!("{top}/data/{i}"))
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        raw.push(bytes);
    }
    let w = Weights::from_state_dict(&sd, &path.display().to_string()).unwrap();
    for (i, name) in state_dict_names().iter().enumerate() {
        let t = sd.get(name).unwrap();
        assert_eq!(t.data, raw[i], "{name}");
        if *name == NUM_BATCHES_TRACKED {
            assert_eq!((t.dtype, t.shape.len()), (DType::I64, 0));
        } else {
            assert_eq!(t.dtype, DType::F32);
            let ours: Vec<u8> = w
                .tensor(name)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            assert_eq!(ours, raw[i], "{name}");
        }
    }
    assert_eq!(raw[19], 10000i64.to_le_bytes());
    assert_eq!(w.num_batches_tracked, 10000);
    assert_eq!(w.params.len(), Widths::RELEASED.num_params());
}

#[test]
fn cli_import_writes_a_model_file_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = reference_pth();
    let output = dir.path().join("out.safetensors");
    let args = import::Args {
        input: input.clone(),
        output: output.clone(),
    };
    import::run(&args).unwrap();
    let loaded = Weights::load(&output).unwrap();
    let mut expected =
        Weights::from_state_dict(&pth::read_state_dict(&input).unwrap(), "x").unwrap();
    expected.distance_scale = REFERENCE_DISTANCE_SCALE;
    assert_same_weights(&loaded, &expected);
    assert_eq!(loaded.arch, "megashtein-cnn-v1");

    // Deterministic: importing again gives the same file, hence the same fingerprint.
    let first = weights::fingerprint(&output).unwrap();
    assert_eq!(first.len(), 64);
    assert!(
        first
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    import::run(&args).unwrap();
    assert_eq!(weights::fingerprint(&output).unwrap(), first);
    // Only the output is left in the directory (no temporary files).
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        files
            .iter()
            .all(|f| f == "out.safetensors" || f == "model.pth"),
        "{files:?}"
    );

    // Refuses to overwrite its input (a copy, so that a regression cannot clobber the
    // shipped checkpoint).
    let copy = dir.path().join("model.pth");
    std::fs::copy(&input, &copy).unwrap();
    let same = import::Args {
        input: copy.clone(),
        output: copy.clone(),
    };
    assert_mentions(&error_of(import::run(&same)), &["replace the input"]);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&input).unwrap()
    );
}

#[test]
fn built_in_released_checkpoint_is_the_shipped_file() {
    let path = reference_pth();
    assert_eq!(
        megashtein_gpu::model::RELEASED_CHECKPOINT,
        std::fs::read(&path).unwrap().as_slice()
    );
    let built_in = megashtein_gpu::model::released().unwrap();
    let from_file =
        Weights::from_state_dict(&pth::read_state_dict(&path).unwrap(), "file").unwrap();
    assert_same_weights(built_in.weights().unwrap(), &from_file);
    assert_eq!(built_in.fingerprint(), weights::fingerprint(&path).unwrap());
    assert_eq!(
        built_in.weights().unwrap().distance_scale,
        REFERENCE_DISTANCE_SCALE
    );

    // In-memory checkpoints are refused for the same reasons as files, naming the source.
    let e = error_of(pth::read_state_dict_bytes(b"", "in memory"));
    assert_mentions(&e, &["in memory", "empty"]);
    let e = error_of(pth::read_state_dict_bytes(b"hello", "in memory"));
    assert_mentions(&e, &["in memory", "not a zip"]);
}

// --- hand-made checkpoints --------------------------------------------------------------

#[test]
fn handmade_checkpoint_imports_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Weights::init(5);
    w.num_batches_tracked = 123;
    w.running_mean[7] = -0.0;
    w.running_var[3] = f32::from_bits(1); // subnormal
    let path = write(
        dir.path(),
        "x.pth",
        &zip_bytes(&checkpoint_entries(&w.to_state_dict(), "some_name")),
    );
    let sd = pth::read_state_dict(&path).unwrap();
    assert_eq!(sd, w.to_state_dict());
    assert_same_weights(&Weights::from_state_dict(&sd, "x.pth").unwrap(), &w);
}

#[test]
fn truncated_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = zip_bytes(&checkpoint_entries(&Weights::init(1).to_state_dict(), "m"));
    for cut in [
        0,
        1,
        3,
        100,
        full.len() / 2,
        full.len() - 30,
        full.len() - 1,
    ] {
        let path = write(dir.path(), "cut.pth", &full[..cut]);
        let e = error_of(pth::read_state_dict(&path));
        assert_mentions(
            &e,
            &[
                "cannot read PyTorch checkpoint",
                &path.display().to_string(),
            ],
        );
        if cut == 0 {
            assert_mentions(&e, &["empty"]);
        } else if cut >= 4 {
            assert_mentions(&e, &["truncated"]);
        }
    }
    // A damaged storage (one flipped byte) fails its CRC check.
    let mut bad = full.clone();
    let at = bad.windows(4).position(|w| w == b"data").unwrap() + 2000;
    bad[at] ^= 0x55;
    let path = write(dir.path(), "flip.pth", &bad);
    assert_mentions(&error_of(pth::read_state_dict(&path)), &["flip.pth"]);
}

#[test]
fn zip_without_data_pkl_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = zip_bytes(&[
        ("archive/byteorder".to_string(), b"little".to_vec()),
        ("archive/data/0".to_string(), vec![0; 16]),
    ]);
    let path = write(dir.path(), "nopkl.pth", &bytes);
    let e = error_of(pth::read_state_dict(&path));
    assert_mentions(
        &e,
        &["nopkl.pth", "no data.pkl", "not a torch.save checkpoint"],
    );
}

#[test]
fn pickle_naming_an_unexpected_global_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    // pickle of os.system("touch <marker>"), written by hand.
    let mut p = vec![PROTO, 2, GLOBAL];
    p.extend(b"os\nsystem\n");
    push_str(&mut p, &format!("touch {}", marker.display()));
    p.extend([TUPLE1, REDUCE, STOP]);
    let bytes = zip_bytes(&[
        ("evil/data.pkl".to_string(), p),
        ("evil/byteorder".to_string(), b"little".to_vec()),
    ]);
    let path = write(dir.path(), "evil.pth", &bytes);
    let e = error_of(pth::read_state_dict(&path));
    assert_mentions(&e, &["evil.pth", "refusing pickle global os.system"]);
    assert!(!marker.exists());
}

#[test]
fn missing_storage_and_big_endian_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sd = Weights::init(2).to_state_dict();
    let mut entries = checkpoint_entries(&sd, "m");
    entries.retain(|(n, _)| n != "m/data/3");
    let path = write(dir.path(), "nostorage.pth", &zip_bytes(&entries));
    assert_mentions(
        &error_of(pth::read_state_dict(&path)),
        &["nostorage.pth", "m/data/3", "missing"],
    );

    let mut entries = checkpoint_entries(&sd, "m");
    entries[1].1 = b"big".to_vec();
    let path = write(dir.path(), "big.pth", &zip_bytes(&entries));
    assert_mentions(
        &error_of(pth::read_state_dict(&path)),
        &["big.pth", "big-endian"],
    );

    // A storage shorter than the pickle says.
    let mut entries = checkpoint_entries(&sd, "m");
    entries[2].1.truncate(100);
    let path = write(dir.path(), "short.pth", &zip_bytes(&entries));
    assert_mentions(
        &error_of(pth::read_state_dict(&path)),
        &["short.pth", "m/data/0 holds 100 bytes"],
    );
}

#[test]
fn checkpoint_of_another_model_names_every_problem() {
    let mut sd = StateDict::new();
    let t = |shape: &[usize]| Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: vec![0; shape.iter().product::<usize>() * 4],
    };
    for spec in Widths::RELEASED.params() {
        sd.insert(spec.name, t(&spec.shape));
    }
    sd.insert("conv_layers.0.weight", t(&[64, 141, 3]));
    sd.insert("head.weight", t(&[3]));
    let e = error_of(Weights::from_state_dict(&sd, "other.pth"));
    assert_mentions(
        &e,
        &[
            "other.pth is not a megashtein-cnn-v1 state_dict",
            "conv_layers.0.weight has shape [64, 141, 3], expected [64, 140, 3]",
            "missing tensor fc_layers.3.running_mean",
            "missing tensor fc_layers.3.num_batches_tracked",
            "unexpected tensor head.weight",
        ],
    );
}

// --- model files (safetensors) ----------------------------------------------------------

#[test]
fn save_load_round_trip_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Weights::init(11);
    w.distance_scale = 0.123_456_79;
    w.num_batches_tracked = -5;
    w.params[0] = f32::MAX;
    w.params[1] = -0.0;
    w.params[2] = -f32::MAX;
    w.running_mean[0] = f32::MIN_POSITIVE / 4.0; // subnormal
    let path = dir.path().join("m.safetensors");
    w.save(&path).unwrap();
    assert_same_weights(&Weights::load(&path).unwrap(), &w);
    // NaN and infinity are written faithfully but refused on load, by tensor and element.
    let mut bad = w.clone();
    bad.params[2] = f32::INFINITY;
    let bad_path = dir.path().join("bad.safetensors");
    bad.save(&bad_path).unwrap();
    let err = Weights::load(&bad_path).unwrap_err().to_string();
    assert!(err.contains("non-finite value (inf) at element 2"), "{err}");
    std::fs::remove_file(&bad_path).unwrap();
    // Saving again over the file replaces it with identical bytes, leaving nothing else.
    let before = std::fs::read(&path).unwrap();
    w.save(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // Tensors are named, shaped and typed as PyTorch's state_dict.
    let st = safetensors::SafeTensors::deserialize(&before).unwrap();
    assert_eq!(st.len(), 20);
    let nbt = st.tensor(NUM_BATCHES_TRACKED).unwrap();
    assert_eq!((nbt.dtype(), nbt.shape()), (Dtype::I64, &[][..]));
    assert_eq!(
        st.tensor("conv_layers.0.weight").unwrap().shape(),
        [64, 140, 3]
    );
}

#[test]
fn failed_save_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let good = Weights::init(1);
    good.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad.params.pop();
    assert_mentions(&error_of(bad.save(&path)), &["136311 parameters"]);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Into a directory that does not exist, and onto a directory.
    let e = error_of(good.save(&dir.path().join("nope/m.safetensors")));
    assert_mentions(&e, &["cannot create output file", "nope"]);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    assert!(good.save(&dir.path().join("sub")).is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn safetensors_with_wrong_shape_missing_or_extra_tensor_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = Weights::init(4).to_state_dict();
    let path = dir.path().join("bad.safetensors");

    let mut sd = base.clone();
    let mut t = sd.get("fc_layers.0.weight").unwrap().clone();
    t.shape = vec![128, 200];
    sd.insert("fc_layers.0.weight", t);
    write_safetensors(&path, &sd, Some(model_metadata()));
    assert_mentions(
        &error_of(Weights::load(&path)),
        &[
            "bad.safetensors",
            "fc_layers.0.weight has shape [128, 200], expected [200, 128]",
        ],
    );

    let mut sd = StateDict::new();
    for (n, t) in base.iter().filter(|(n, _)| *n != "conv_layers.6.bias") {
        sd.insert(n, t.clone());
    }
    write_safetensors(&path, &sd, Some(model_metadata()));
    assert_mentions(
        &error_of(Weights::load(&path)),
        &["bad.safetensors", "missing tensor conv_layers.6.bias"],
    );

    let mut sd = base.clone();
    sd.insert(
        "fc_layers.4.weight",
        sd.get("fc_layers.3.weight").unwrap().clone(),
    );
    write_safetensors(&path, &sd, Some(model_metadata()));
    assert_mentions(
        &error_of(Weights::load(&path)),
        &["bad.safetensors", "unexpected tensor fc_layers.4.weight"],
    );

    let mut sd = base.clone();
    sd.insert(
        NUM_BATCHES_TRACKED,
        Tensor {
            dtype: DType::F32,
            shape: vec![],
            data: vec![0; 4],
        },
    );
    let mut rm = sd.get(RUNNING_MEAN).unwrap().clone();
    rm.dtype = DType::F64;
    rm.shape = vec![40];
    sd.insert(RUNNING_MEAN, rm);
    write_safetensors(&path, &sd, Some(model_metadata()));
    assert_mentions(
        &error_of(Weights::load(&path)),
        &[
            "fc_layers.3.num_batches_tracked is float32 [], expected a 0-d int64",
            "fc_layers.3.running_mean has shape [40], expected [80]",
        ],
    );
}

#[test]
fn safetensors_metadata_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let sd = Weights::init(4).to_state_dict();
    let path = dir.path().join("meta.safetensors");

    write_safetensors(&path, &sd, Some(model_metadata()));
    assert_eq!(Weights::load(&path).unwrap().distance_scale, 0.25);

    write_safetensors(&path, &sd, None);
    assert_mentions(
        &error_of(Weights::load(&path)),
        &["meta.safetensors", "no megashtein.arch metadata"],
    );

    let mut meta = model_metadata();
    meta.insert("megashtein.arch".into(), "megashtein-cnn-v9".into());
    write_safetensors(&path, &sd, Some(meta));
    assert_mentions(&error_of(Weights::load(&path)), &["megashtein-cnn-v9"]);

    for bad in ["-1", "nan", "inf", "abc", "0"] {
        let mut meta = model_metadata();
        meta.insert("megashtein.distance_scale".into(), bad.into());
        write_safetensors(&path, &sd, Some(meta));
        assert_mentions(
            &error_of(Weights::load(&path)),
            &["megashtein.distance_scale", bad],
        );
    }
}

// --- paths that are not model files -----------------------------------------------------

#[test]
fn non_files_and_garbage_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist.pth");
    for path in [dir.path().to_path_buf(), missing.clone()] {
        let shown = path.display().to_string();
        assert_mentions(&error_of(pth::read_state_dict(&path)), &[&shown]);
        assert_mentions(&error_of(Weights::load(&path)), &[&shown]);
        assert_mentions(&error_of(weights::fingerprint(&path)), &[&shown]);
    }
    assert_mentions(&error_of(pth::read_state_dict(dir.path())), &["directory"]);
    assert_mentions(&error_of(Weights::load(dir.path())), &["directory"]);

    // Deterministic garbage.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = write(dir.path(), "garbage.bin", &garbage);
    assert_mentions(
        &error_of(pth::read_state_dict(&path)),
        &["garbage.bin", "not a zip archive"],
    );
    assert_mentions(
        &error_of(Weights::load(&path)),
        &["garbage.bin", "not a valid safetensors file"],
    );

    let mut pk = b"PK\x03\x04".to_vec();
    pk.extend(&garbage);
    let path = write(dir.path(), "pk.bin", &pk);
    assert_mentions(
        &error_of(pth::read_state_dict(&path)),
        &["pk.bin", "damaged or truncated"],
    );

    let path = write(dir.path(), "legacy.pth", &[0x80, 0x02, 0x8a, 0x0a]);
    assert_mentions(
        &error_of(pth::read_state_dict(&path)),
        &["legacy.pth", "legacy"],
    );

    // A checkpoint is not a model file, nor the other way round.
    let pth_path = write(
        dir.path(),
        "m.pth",
        &zip_bytes(&checkpoint_entries(&Weights::init(1).to_state_dict(), "m")),
    );
    assert_mentions(
        &error_of(Weights::load(&pth_path)),
        &[
            "m.pth",
            "not a valid safetensors file",
            "megashtein-gpu import",
        ],
    );
    let st_path = dir.path().join("m.safetensors");
    Weights::init(1).save(&st_path).unwrap();
    assert_mentions(
        &error_of(pth::read_state_dict(&st_path)),
        &["m.safetensors", "not a zip archive"],
    );
}
