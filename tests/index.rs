//! The index file: round trips, layout, and every way a bad file or path must fail
//! cleanly (an error naming the file, no panic, no temporary file left behind).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use half::f16;
use megashtein_gpu::input::Line;
use megashtein_gpu::search::index::{
    HEADER_LEN, Index, IndexHeader, IndexWriter, MAGIC, Precision, VERSION,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SCALE: f32 = 78.6 / 280.0;
const DIM: usize = megashtein_gpu::model::params::Widths::RELEASED.dim;

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn line(number: u64, text: &[u8]) -> Line {
    Line {
        number,
        text: text.to_vec(),
    }
}

/// Awkward strings with gappy line numbers, and embeddings that exercise f16 rounding.
fn corpus(n: usize, seed: u64) -> (Vec<Line>, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let specials: [&[u8]; 7] = [
        b"",
        b"a\0b",
        b"\ttab\tseparated\t",
        b"\\back\\slash\r",
        &[b'x'; 200],
        b"\x01\x7f control",
        b"plain",
    ];
    let mut number = 0;
    let lines = (0..n)
        .map(|i| {
            number += 1 + rng.random_range(0..3u64); // gaps, as from skipped lines
            let text = if i < specials.len() {
                specials[i].to_vec()
            } else {
                let len = rng.random_range(0..120);
                (0..len).map(|_| rng.random_range(0..128u8)).collect()
            };
            Line { number, text }
        })
        .collect();
    let emb = (0..n * DIM)
        .map(|i| match i % 7 {
            0 => rng.random_range(-1.0f32..1.0) * 1e-6, // f16 subnormals
            1 => rng.random_range(-300.0f32..300.0),
            _ => rng.random_range(-2.0f32..2.0),
        })
        .collect();
    (lines, emb)
}

/// Writes `lines` in batches of the given sizes (cycled).
fn write(path: &Path, precision: Precision, lines: &[Line], emb: &[f32], batches: &[usize]) -> u64 {
    let before = fs::read(path).ok();
    let mut w = IndexWriter::create(path, FP, SCALE, precision).unwrap();
    let mut start = 0;
    let mut k = 0;
    while start < lines.len() {
        let n = batches[k % batches.len()].min(lines.len() - start);
        w.push(
            &lines[start..start + n],
            &emb[start * DIM..(start + n) * DIM],
        )
        .unwrap();
        start += n;
        k += 1;
    }
    w.push(&[], &[]).unwrap();
    assert_eq!(w.rows(), lines.len() as u64);
    assert_eq!(
        fs::read(path).ok(),
        before,
        "destination untouched before finish"
    );
    w.finish().unwrap()
}

fn check_contents(idx: &Index, precision: Precision, lines: &[Line], emb: &[f32]) {
    assert_eq!(idx.len(), lines.len());
    assert_eq!(idx.is_empty(), lines.is_empty());
    assert_eq!(idx.dim(), DIM);
    assert_eq!(idx.precision(), precision);
    assert_eq!(idx.fingerprint(), FP);
    assert_eq!(idx.estimator().scale.to_bits(), SCALE.to_bits());
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(idx.string(i), &l.text[..], "row {i}");
        assert_eq!(idx.line(i), l.number, "row {i}");
    }
    // The raw section, as the GPU gets it.
    let raw = idx.embedding_bytes();
    let bytes = precision.bytes();
    assert_eq!(raw.len(), (lines.len() * DIM * bytes).div_ceil(4) * 4);
    let expected: Vec<f32> = match precision {
        Precision::F32 => {
            let want: Vec<u8> = emb.iter().flat_map(|v| v.to_le_bytes()).collect();
            assert_eq!(raw, &want[..]);
            emb.to_vec()
        }
        Precision::F16 => {
            let want: Vec<u8> = emb
                .iter()
                .flat_map(|&v| f16::from_f32(v).to_bits().to_le_bytes())
                .collect();
            assert_eq!(raw, &want[..]);
            emb.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
        }
        Precision::Codes => unreachable!("megashtein indexes hold floats"),
    };
    let all = idx.embeddings_f32();
    assert_eq!(all.len(), expected.len());
    for (a, b) in all.iter().zip(&expected) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    for i in 0..lines.len() {
        assert_eq!(idx.embedding(i), &expected[i * DIM..(i + 1) * DIM]);
    }
    if lines.len() >= 3 {
        assert_eq!(idx.embeddings_f32_rows(1..3), &expected[DIM..3 * DIM]);
    }
    // f16 stays within half precision of the input.
    if precision == Precision::F16 {
        for (a, b) in all.iter().zip(emb) {
            let tol = (b.abs() * 2f32.powi(-11)).max(2f32.powi(-25));
            assert!((a - b).abs() <= tol, "{a} vs {b}");
        }
    }
}

fn roundtrip(n: usize, precision: Precision, batches: &[usize]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("corpus.idx");
    let (lines, emb) = corpus(n, n as u64 + 7);
    assert_eq!(write(&path, precision, &lines, &emb, batches), n as u64);
    assert_eq!(
        entries(dir.path()),
        vec!["corpus.idx"],
        "no temp files left"
    );
    let idx = Index::open(&path).unwrap();
    check_contents(&idx, precision, &lines, &emb);

    // The layout: sections 64-byte aligned, the embeddings right after the header.
    let h = idx.header();
    assert_eq!(h.version, VERSION);
    assert_eq!(h.embeddings_offset, HEADER_LEN as u64);
    for off in [h.lines_offset, h.offsets_offset, h.strings_offset] {
        assert_eq!(off % 64, 0);
    }
    assert_eq!(h.file_len, fs::metadata(&path).unwrap().len());
    let total: usize = lines.iter().map(|l| l.text.len()).sum();
    assert_eq!(h.strings_size, total as u64);
    assert_eq!(h.file_len, h.strings_offset + total as u64);
    let bytes = fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], &MAGIC);
    assert_eq!(
        u32::from_le_bytes(bytes[160..164].try_into().unwrap()),
        crc32fast::hash(&bytes[HEADER_LEN..])
    );
    assert_eq!(IndexHeader::parse(&bytes).unwrap(), *h);
    assert_eq!(h.to_bytes()[..], bytes[..HEADER_LEN]);
}

#[test]
fn roundtrip_f32_bit_exact() {
    roundtrip(1, Precision::F32, &[1]);
    roundtrip(7, Precision::F32, &[7]);
    roundtrip(500, Precision::F32, &[1, 3, 64, 2, 100]);
}

#[test]
fn roundtrip_f16() {
    roundtrip(1, Precision::F16, &[1]);
    roundtrip(7, Precision::F16, &[2]);
    roundtrip(500, Precision::F16, &[5, 1, 97]);
}

#[test]
fn empty_corpus_is_a_valid_index() {
    for precision in [Precision::F32, Precision::F16] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.idx");
        let w = IndexWriter::create(&path, FP, SCALE, precision).unwrap();
        assert_eq!(w.finish().unwrap(), 0);
        let idx = Index::open(&path).unwrap();
        assert!(idx.is_empty());
        assert_eq!(idx.len(), 0);
        assert_eq!(idx.dim(), DIM);
        assert!(idx.embedding_bytes().is_empty());
        assert!(idx.embeddings_f32().is_empty());
        assert_eq!(idx.header().file_len, 320);
        assert_eq!(entries(dir.path()), vec!["empty.idx"]);
    }
}

#[test]
fn default_precision_is_f32() {
    assert_eq!(Precision::default(), Precision::F32);
    assert_eq!(Precision::F16.to_string(), "f16");
    use clap::ValueEnum;
    assert_eq!(Precision::from_str("f16", false).unwrap(), Precision::F16);
}

#[test]
fn fingerprint_is_lowercased_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    let w = IndexWriter::create(&path, &FP.to_uppercase(), SCALE, Precision::F32).unwrap();
    w.finish().unwrap();
    assert_eq!(Index::open(&path).unwrap().fingerprint(), FP);
    for bad in ["", "abc", &FP[1..], &format!("{}g", &FP[1..])] {
        let err = IndexWriter::create(&path, bad, SCALE, Precision::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not 64 hex digits"), "{err}");
    }
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(IndexWriter::create(&path, FP, bad, Precision::F32).is_err());
    }
    assert_eq!(entries(dir.path()), vec!["x.idx"]);
}

#[test]
fn push_refuses_bad_rows_without_breaking_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    let mut w = IndexWriter::create(&path, FP, SCALE, Precision::F16).unwrap();
    let l = [line(1, b"a"), line(2, b"b")];
    assert!(w.push(&l, &[0.0; DIM]).is_err()); // wrong count
    assert!(w.push(&[line(0, b"a")], &[0.0; DIM]).is_err()); // line 0
    let mut e = vec![0.5; 2 * DIM];
    e[DIM + 3] = f32::NAN;
    let err = w.push(&l, &e).unwrap_err().to_string();
    assert!(err.starts_with("line 2: "), "{err}");
    e[DIM + 3] = 1e6; // beyond f16
    let err = w.push(&l, &e).unwrap_err().to_string();
    assert!(err.contains("--precision f32"), "{err}");
    e[DIM + 3] = 65504.0;
    w.push(&l, &e).unwrap();
    assert_eq!(w.finish().unwrap(), 2);
    let idx = Index::open(&path).unwrap();
    assert_eq!(idx.embedding(1)[3], 65504.0);
    assert_eq!(idx.string(1), b"b");
}

/// A small valid index's bytes.
fn sample(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("good.idx");
    let (lines, emb) = corpus(5, 1);
    write(&path, Precision::F16, &lines, &emb, &[2]);
    let bytes = fs::read(&path).unwrap();
    (path, bytes)
}

fn open_err(path: &Path, bytes: &[u8]) -> String {
    fs::write(path, bytes).unwrap();
    match Index::open(path) {
        Ok(_) => panic!("a damaged index opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = sample(dir.path());
    let path = dir.path().join("cut.idx");
    let name = path.display().to_string();
    for cut in 1..good.len() {
        let err = open_err(&path, &good[..cut]);
        assert!(
            err.contains(&name) && err.contains("truncated"),
            "cut at {cut}: {err}"
        );
    }
    let err = open_err(&path, &good[..good.len() - 1]);
    assert_eq!(
        err,
        format!(
            "index {name} is truncated ({} bytes, expected {})",
            good.len() - 1,
            good.len()
        )
    );
    let err = open_err(&path, &good[..100]);
    assert_eq!(
        err,
        format!("index {name} is truncated (100 bytes, shorter than the 256-byte header)")
    );
    let err = open_err(&path, &[]);
    assert_eq!(
        err,
        format!("{name} is empty (0 bytes), not a megashtein-gpu index")
    );
    // Trailing data is refused too.
    let mut long = good.clone();
    long.push(0);
    let err = open_err(&path, &long);
    assert!(err.contains("is corrupt") && err.contains(&name), "{err}");
}

#[test]
fn flipped_body_byte_fails_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = sample(dir.path());
    let path = dir.path().join("flip.idx");
    let name = path.display().to_string();
    for at in HEADER_LEN..good.len() {
        let mut b = good.clone();
        b[at] ^= 0x10;
        let err = open_err(&path, &b);
        assert_eq!(
            err,
            format!("index {name} is corrupt (checksum mismatch)"),
            "byte {at}"
        );
    }
}

#[test]
fn flipped_header_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = sample(dir.path());
    let path = dir.path().join("flip.idx");
    let name = path.display().to_string();
    for at in 0..HEADER_LEN {
        for bit in [0x01, 0x80] {
            let mut b = good.clone();
            b[at] ^= bit;
            let err = open_err(&path, &b);
            assert!(err.contains(&name), "byte {at}: {err}");
            let expected = match at {
                0..8 => "not a megashtein-gpu index (bad magic)",
                // A version this build reads (3 -> 2) fails on the checksum instead.
                8..12 if b[8..12] != [2, 0, 0, 0] => "format version",
                _ => "is corrupt (header checksum mismatch)",
            };
            assert!(err.contains(expected), "byte {at}: {err}");
        }
    }
}

/// Rewrites a header field and its checksum, as a buggy or future writer would.
fn patch(good: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
    let mut b = good.to_vec();
    b[at..at + value.len()].copy_from_slice(value);
    let crc = crc32fast::hash(&b[..HEADER_LEN - 4]);
    b[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn bad_header_fields_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, good) = sample(dir.path());
    let path = dir.path().join("bad.idx");
    let name = path.display().to_string();

    let err = open_err(&path, &patch(&good, 8, &5u32.to_le_bytes()));
    assert_eq!(
        err,
        format!(
            "index {name} has format version 5, newer than this megashtein-gpu reads \
             (version 4); upgrade megashtein-gpu or rebuild the index with it"
        )
    );
    let err = open_err(&path, &patch(&good, 8, &0u32.to_le_bytes()));
    assert!(err.contains("corrupt (format version 0"), "{err}");

    let cases: [(usize, Vec<u8>, &str); 16] = [
        (200, vec![1], "reserved bytes"),
        (172, 64u64.to_le_bytes().to_vec(), "section table"),
        (12, 128u32.to_le_bytes().to_vec(), "header length"),
        (16, b"G".to_vec(), "fingerprint"),
        (80, 0f32.to_le_bytes().to_vec(), "distance scale"),
        (80, f32::NAN.to_le_bytes().to_vec(), "distance scale"),
        (84, 12u32.to_le_bytes().to_vec(), "precision"),
        // Codes stated with the float metric of this header.
        (84, 8u32.to_le_bytes().to_vec(), "codes go with Hamming"),
        (188, 3u32.to_le_bytes().to_vec(), "metric is not 0, 1 or 2"),
        (
            192,
            f32::INFINITY.to_le_bytes().to_vec(),
            "offset is not finite",
        ),
        (180, 0f32.to_le_bytes().to_vec(), "divisor"),
        (184, f32::NAN.to_le_bytes().to_vec(), "exponent"),
        (88, 0u32.to_le_bytes().to_vec(), "dim is 0"),
        (96, u64::MAX.to_le_bytes().to_vec(), "overflow"),
        (96, 6u64.to_le_bytes().to_vec(), "section table"),
        (120, 0u64.to_le_bytes().to_vec(), "section table"),
    ];
    for (at, value, what) in cases {
        let err = open_err(&path, &patch(&good, at, &value));
        assert!(
            err.starts_with(&format!("index {name} is corrupt (bad header: "))
                && err.contains(what),
            "field at {at}: {err}"
        );
    }
    // A consistent header that claims more data than there is.
    let h = IndexHeader::parse(&good).unwrap();
    let more = IndexHeader {
        strings_size: h.strings_size + 1000,
        file_len: h.file_len + 1000,
        ..h.clone()
    };
    let mut b = good.clone();
    b[..HEADER_LEN].copy_from_slice(&more.to_bytes());
    let err = open_err(&path, &b);
    assert!(err.contains("is truncated"), "{err}");

    // String offsets out of order, with a valid checksum: refused, not a panic later.
    let mut b = good.clone();
    let at = h.offsets_offset as usize + 8;
    b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32fast::hash(&b[HEADER_LEN..]);
    let fixed = IndexHeader {
        body_crc: crc,
        ..h.clone()
    };
    b[..HEADER_LEN].copy_from_slice(&fixed.to_bytes());
    let err = open_err(&path, &b);
    assert_eq!(err, format!("index {name} is corrupt (bad string offsets)"));
}

#[test]
fn not_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    let name = path.display().to_string();
    let err = open_err(
        &path,
        b"hello, this is a text file and not an index at all\n",
    );
    assert_eq!(
        err,
        format!("{name} is not a megashtein-gpu index (bad magic)")
    );
    let err = open_err(&path, b"ab");
    assert_eq!(
        err,
        format!("{name} is not a megashtein-gpu index (bad magic)")
    );
    let err = open_err(&path, b"MGSH");
    assert_eq!(err, format!("index {name} is truncated (4 bytes)"));

    let npy = dir.path().join("e.npy");
    let w = megashtein_gpu::io::NpyWriter::create(&npy, DIM).unwrap();
    w.finish().unwrap();
    let err = Index::open(&npy).unwrap_err().to_string();
    assert!(err.contains("is a .npy file"), "{err}");
}

#[test]
fn missing_file_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.idx");
    let err = Index::open(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "cannot open index {}: No such file or directory",
            path.display()
        )
    );
    let err = Index::open(dir.path()).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "cannot open index {}: it is a directory",
            dir.path().display()
        )
    );
}

#[test]
fn unwritable_output_path() {
    let dir = tempfile::tempdir().unwrap();
    // Missing directory.
    let path = dir.path().join("missing").join("x.idx");
    let err = IndexWriter::create(&path, FP, SCALE, Precision::F32)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        format!(
            "cannot create output file {}: No such file or directory",
            path.display()
        )
    );
    // A parent that is a file.
    fs::write(dir.path().join("file"), "x").unwrap();
    let path = dir.path().join("file").join("x.idx");
    let err = IndexWriter::create(&path, FP, SCALE, Precision::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(&format!("cannot create output file {}: ", path.display())),
        "{err}"
    );
    // A destination that is a non-empty directory: the final rename fails.
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("f"), "x").unwrap();
    let (lines, emb) = corpus(3, 2);
    let mut w = IndexWriter::create(&sub, FP, SCALE, Precision::F16).unwrap();
    w.push(&lines, &emb).unwrap();
    let err = w.finish().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot write output file {}: ", sub.display())),
        "{err}"
    );
    assert_eq!(
        entries(dir.path()),
        vec!["file", "sub"],
        "no temp files left"
    );

    #[cfg(unix)]
    {
        // A read-only directory (root ignores permissions: checked only where they apply).
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        if fs::write(ro.join("probe"), "").is_err() {
            let path = ro.join("x.idx");
            let err = IndexWriter::create(&path, FP, SCALE, Precision::F32)
                .err()
                .unwrap()
                .to_string();
            assert_eq!(
                err,
                format!(
                    "cannot create output file {}: Permission denied",
                    path.display()
                )
            );
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    let (lines, emb) = corpus(50, 3);
    {
        let mut w = IndexWriter::create(&path, FP, SCALE, Precision::F32).unwrap();
        w.push(&lines, &emb).unwrap();
        assert_eq!(entries(dir.path()).len(), 4, "main file and three spools");
    }
    assert!(entries(dir.path()).is_empty());

    // An existing index is kept as it was.
    write(&path, Precision::F32, &lines[..2], &emb[..2 * DIM], &[1]);
    let before = fs::read(&path).unwrap();
    {
        let mut w = IndexWriter::create(&path, FP, SCALE, Precision::F16).unwrap();
        w.push(&lines, &emb).unwrap();
    }
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(entries(dir.path()), vec!["x.idx"]);

    // A panic while writing.
    let r = std::panic::catch_unwind(|| {
        let mut w = IndexWriter::create(&path, FP, SCALE, Precision::F16).unwrap();
        w.push(&lines, &emb).unwrap();
        panic!("boom");
    });
    assert!(r.is_err());
    assert_eq!(entries(dir.path()), vec!["x.idx"]);
}

#[test]
fn overwrite_replaces_an_existing_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    let (lines, emb) = corpus(20, 4);
    write(&path, Precision::F32, &lines, &emb, &[20]);
    let idx = Index::open(&path).unwrap();
    assert_eq!(idx.len(), 20);
    // Replace while the old one is still mapped: the mapping keeps the old contents.
    write(&path, Precision::F16, &lines[..3], &emb[..3 * DIM], &[3]);
    assert_eq!(idx.len(), 20);
    assert_eq!(idx.string(19), &lines[19].text[..]);
    let new = Index::open(&path).unwrap();
    assert_eq!(new.len(), 3);
    assert_eq!(new.precision(), Precision::F16);
}

#[test]
fn embedding_section_alignment() {
    // f16 data of any length reads as u32 pairs: the section is 16-byte aligned (in the
    // file, hence in the page-aligned mapping) and a multiple of 4 bytes long.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.idx");
    let (lines, emb) = corpus(3, 5);
    write(&path, Precision::F16, &lines, &emb, &[3]);
    let idx = Index::open(&path).unwrap();
    let raw = idx.embedding_bytes();
    assert_eq!(raw.as_ptr() as usize % 64, 0);
    assert_eq!(raw.len() % 4, 0);
    let words: &[u32] = bytemuck::cast_slice(raw);
    let lo = f16::from_bits((words[0] & 0xffff) as u16);
    let hi = f16::from_bits((words[0] >> 16) as u16);
    if cfg!(target_endian = "little") {
        assert_eq!(lo, f16::from_f32(emb[0]));
        assert_eq!(hi, f16::from_f32(emb[1]));
    }
}

/// An index can carry the model file that made it (format 2): stored and read back
/// byte for byte, checked against the fingerprint when written and when opened.
#[test]
fn the_model_is_stored_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("with_model.idx");
    let model = megashtein_gpu::model::DEFAULT_MODEL.to_vec();
    let fingerprint = megashtein_gpu::model::hex_sha256(&model);
    let mut w = IndexWriter::create(&path, &fingerprint, SCALE, Precision::F32).unwrap();
    assert!(w.store_model(b"not the model".to_vec()).is_err());
    w.store_model(model.clone()).unwrap();
    w.push(&[line(1, b"abc")], &[0.5; DIM]).unwrap();
    w.finish().unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.model_bytes(), Some(&model[..]));
    assert_eq!(index.header().model_offset % 64, 0);
    assert_eq!(
        index.header().file_len,
        index.header().model_offset + model.len() as u64
    );

    // A flipped model byte with valid checksums is still caught by the fingerprint.
    let good = std::fs::read(&path).unwrap();
    let h = IndexHeader::parse(&good).unwrap();
    let mut b = good.clone();
    b[h.model_offset as usize + 100] ^= 1;
    let fixed = IndexHeader {
        body_crc: crc32fast::hash(&b[HEADER_LEN..]),
        ..h.clone()
    };
    b[..HEADER_LEN].copy_from_slice(&fixed.to_bytes());
    let err = open_err(&dir.path().join("flipped.idx"), &b);
    assert!(
        err.contains("its model does not match its fingerprint"),
        "{err}"
    );
}

/// Indexes of format version 1 (no model section) still open, rows and all.
#[test]
fn version_1_files_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let (good_path, good) = sample(dir.path());
    let old = common::as_format_1(&good);
    let path = dir.path().join("v1.idx");
    std::fs::write(&path, &old).unwrap();
    let v1 = Index::open(&path).unwrap();
    let v2 = Index::open(&good_path).unwrap();
    assert_eq!(v1.header().version, 1);
    assert_eq!(v1.model_bytes(), None);
    assert_eq!(v1.len(), v2.len());
    for i in 0..v1.len() {
        assert_eq!(v1.string(i), v2.string(i));
        assert_eq!(v1.embedding(i), v2.embedding(i));
    }
    // Version 1 with model fields set is corrupt.
    let err = open_err(&path, &patch(&old, 172, &64u64.to_le_bytes()));
    assert!(err.contains("reserved bytes"), "{err}");
}

/// Indexes of format version 2 (bytes 180..252 reserved) still open, with the linear
/// estimate; a version 2 header with anything there is corrupt.
#[test]
fn version_2_files_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let (good_path, good) = sample(dir.path());
    let mut header = IndexHeader::parse(&good).unwrap();
    header.version = 2;
    let mut old = good.clone();
    old[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    assert!(old[180..188].iter().all(|&b| b == 0));
    let path = dir.path().join("v2.idx");
    std::fs::write(&path, &old).unwrap();
    let v2 = Index::open(&path).unwrap();
    let current = Index::open(&good_path).unwrap();
    assert_eq!(v2.header().version, 2);
    assert_eq!(v2.estimator(), current.estimator());
    assert_eq!(v2.embeddings_f32(), current.embeddings_f32());
    let err = open_err(&path, &patch(&old, 184, &1f32.to_le_bytes()));
    assert!(err.contains("reserved bytes"), "{err}");
}

/// Indexes of format version 3 (bytes 188..252 reserved: the metric follows the
/// precision, no offset) still open; a version 3 header with anything there is corrupt.
#[test]
fn version_3_files_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let (good_path, good) = sample(dir.path());
    let mut header = IndexHeader::parse(&good).unwrap();
    header.version = 3;
    let mut old = good.clone();
    old[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    let path = dir.path().join("v3.idx");
    std::fs::write(&path, &old).unwrap();
    let v3 = Index::open(&path).unwrap();
    let current = Index::open(&good_path).unwrap();
    assert_eq!(v3.header().version, 3);
    assert_eq!(v3.estimator(), current.estimator());
    let err = open_err(&path, &patch(&old, 188, &2u32.to_le_bytes()));
    assert!(err.contains("reserved bytes"), "{err}");
}
