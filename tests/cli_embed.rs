//! `megashtein-gpu embed` end to end through the binary: input rules, errors, atomic output.
use std::path::Path;
use std::process::Output;

use megashtein_gpu::io::read_npy_f32;

mod common;

fn embed(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let args: Vec<&str> = std::iter::once("embed")
        .chain(args.iter().copied())
        .collect();
    common::run_bin(&args, stdin.unwrap_or_default())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_string()
}

/// The values of a little-endian int64 .npy vector.
fn read_npy_i64(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'<i8'"), "{header}");
    bytes[10 + header_len..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// No file but `keep` in `dir`: no temporary leftovers, no partial output.
fn assert_only(dir: &Path, keep: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut want: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn embeds_every_line_in_order_with_empty_and_long_lines() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(100);
    let corpus = format!("hello\r\n\nworld\n{long}\n{}\n", &long[..80]);
    let input = write(dir.path(), "corpus.txt", corpus.as_bytes());
    let output = dir.path().join("out.npy");
    let out = embed(
        &[
            "--input",
            &input,
            "--output",
            output.to_str().unwrap(),
            "--batch",
            "2",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 line was longer than 80 characters and was cut"),
        "{}",
        stderr(&out)
    );
    let (shape, data) = read_npy_f32(&output).unwrap();
    assert_eq!(shape, vec![5, 80]);
    let row = |i: usize| &data[i * 80..(i + 1) * 80];
    // The over-long line is cut to its 80-character prefix for the model.
    assert_eq!(row(3), row(4));
    // "\r\n" is a line ending: "hello" embeds like "hello" from stdin.
    let stdin_out = dir.path().join("stdin.npy");
    let out = embed(
        &["-i", "-", "-o", stdin_out.to_str().unwrap()],
        Some(b"hello"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (shape, single) = read_npy_f32(&stdin_out).unwrap();
    assert_eq!(shape, vec![1, 80]);
    assert_eq!(single, row(0));
    assert_ne!(row(0), row(1));
    assert_only(dir.path(), &["corpus.txt", "out.npy", "stdin.npy"]);
}

#[test]
fn non_ascii_line_is_an_error_unless_skipped_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "corpus.txt",
        "caf\u{e9}\nabc\nna\u{ef}ve\n".as_bytes(),
    );
    let output = dir.path().join("out.npy");
    let out_arg = output.to_str().unwrap();
    let out = embed(&["-i", &input, "-o", out_arg], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("corpus.txt:1:") && err.contains("non-ASCII"),
        "{err}"
    );
    assert_only(dir.path(), &["corpus.txt"]);

    let out = embed(&["-i", &input, "-o", out_arg, "--non-ascii", "skip"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_npy_f32(&output).unwrap().0, vec![1, 80]);
    // Lines were skipped: out.lines.npy maps the one row to its source line, 2.
    let lines = dir.path().join("out.lines.npy");
    assert_eq!(read_npy_i64(&lines), [2]);

    let out = embed(
        &["-i", &input, "-o", out_arg, "--non-ascii", "replace"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (shape, data) = read_npy_f32(&output).unwrap();
    assert_eq!(shape, vec![3, 80]);
    // Nothing skipped: the stale line map is gone.
    assert!(!lines.exists());
    let replaced_dir = tempfile::tempdir().unwrap();
    let plain = write(replaced_dir.path(), "plain.txt", b"caf?\n");
    let plain_out = replaced_dir.path().join("plain.npy");
    assert!(
        embed(&["-i", &plain, "-o", plain_out.to_str().unwrap()], None)
            .status
            .success()
    );
    assert_eq!(read_npy_f32(&plain_out).unwrap().1, data[..80]);
}

#[test]
fn empty_file_gives_an_empty_array() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "empty.txt", b"");
    let output = dir.path().join("out.npy");
    let out = embed(&["-i", &input, "-o", output.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_npy_f32(&output).unwrap().0, vec![0, 80]);
}

#[test]
fn missing_input_and_unwritable_output_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.txt");
    let output = dir.path().join("out.npy");
    let out = embed(
        &[
            "-i",
            missing.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nope.txt") && stderr(&out).contains("No such file"),
        "{}",
        stderr(&out)
    );

    let input = write(dir.path(), "corpus.txt", b"abc\n");
    let bad = dir.path().join("no/such/dir/out.npy");
    let out = embed(&["-i", &input, "-o", bad.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot create output file"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));

    let missing_model = dir.path().join("model.safetensors");
    let out = embed(
        &[
            "-m",
            missing_model.to_str().unwrap(),
            "-i",
            &input,
            "-o",
            output.to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("model.safetensors"),
        "{}",
        stderr(&out)
    );
    assert_only(dir.path(), &["corpus.txt"]);
}

#[test]
fn output_to_stdout_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", b"abc\n");
    let out = embed(&["-i", &input, "-o", "-"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("give a file name"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_output_that_would_replace_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", b"abc\n");
    // The same file by another name too.
    let other_name = dir.path().join(".").join("corpus.txt");
    for output in [input.as_str(), other_name.to_str().unwrap()] {
        let out = embed(&["-i", &input, "-o", output], None);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("would replace the input corpus"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(std::fs::read(&input).unwrap(), b"abc\n");
}

/// Ctrl-C (SIGINT) or SIGTERM in the middle of `embed` exits with 130 and leaves
/// neither the destination nor a temporary file.
#[cfg(unix)]
#[test]
fn an_interrupted_embed_leaves_no_temporary_file() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    for (signal, output) in [("-INT", "out.npy"), ("-TERM", "out.idx")] {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join(output);
        let mut child = Command::new(env!("CARGO_BIN_EXE_megashtein-gpu"))
            .args(["embed", "-i", "-", "-o", dest.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Lines arrive and stdin stays open: the run is under way, its output temporary.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&b"some line\n".repeat(5000)).unwrap();
        let started = std::time::Instant::now();
        while std::fs::read_dir(dir.path()).unwrap().count() == 0 {
            assert!(
                started.elapsed().as_secs() < 60,
                "no temporary file appeared"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(130), "{signal}: {}", stderr(&out));
        drop(stdin);
        assert_only(dir.path(), &[]);
    }
}

/// `bench embed --input` reads its lines by the embed rules: a non-ASCII line is an error
/// naming the file and line unless skipped, an empty file an error, and --torch (whose
/// peer draws its own strings) is refused beside it.
#[test]
fn bench_embed_reads_its_input_by_the_embed_rules() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "words.txt",
        "kitten\ncaf\u{e9}\nsitting\n".as_bytes(),
    );
    let bench = |extra: &[&str]| {
        let args = ["bench", "embed", "--input", &input, "--batch-sizes", "2"];
        let seconds = ["--seconds", "0.01", "--json"];
        common::run_bin(&[&args[..], &seconds, extra].concat(), b"")
    };
    let refused = stderr(&bench(&[]));
    assert!(
        refused.contains("words.txt:2:") && refused.contains("non-ASCII"),
        "{refused}"
    );
    // Skipped: the batch of 2 is kitten and sitting, 6.5 characters on average.
    let out = bench(&["--non-ascii", "skip"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["result"]["chars_per_string"], 6.5, "{row}");
    let refused = stderr(&bench(&["--torch", "python3"]));
    assert!(refused.contains("cannot be used with"), "{refused}");
    let empty = write(dir.path(), "empty.txt", b"");
    let out = common::run_bin(&["bench", "embed", "--input", &empty], b"");
    assert!(
        stderr(&out).contains("empty.txt: no lines to embed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn precision_is_refused_where_it_does_not_apply() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", b"abc\n");
    let npy = dir.path().join("x.npy");
    let out = embed(
        &[
            "-i",
            &input,
            "-o",
            npy.to_str().unwrap(),
            "--precision",
            "f16",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("a .npy array is always float32"),
        "{}",
        stderr(&out)
    );
    let cgk = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cgk.safetensors");
    let index = dir.path().join("x.idx");
    let out = embed(
        &[
            "-i",
            &input,
            "-o",
            index.to_str().unwrap(),
            "-m",
            cgk,
            "--precision",
            "f16",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stores codes as bytes"),
        "{}",
        stderr(&out)
    );
    assert_only(dir.path(), &["corpus.txt"]);
}

#[test]
fn an_index_given_as_the_model_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "corpus.txt", b"abc\n");
    // Only the magic matters: the file is recognized before it is read as a model.
    let mut fake_index = megashtein_gpu::search::index::MAGIC.to_vec();
    fake_index.extend([0; 64]);
    let index = write(dir.path(), "words.idx", &fake_index);
    let output = dir.path().join("x.idx");
    let out = embed(
        &["-i", &input, "-o", output.to_str().unwrap(), "-m", &index],
        None,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("words.idx is a megashtein-gpu index, not a model file"),
        "{}",
        stderr(&out)
    );
}
