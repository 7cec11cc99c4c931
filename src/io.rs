//! Output that never appears partially: every file is written to a temporary file in
//! the destination's directory, flushed, fsynced and renamed over the destination. On
//! any error (or a panic, or a drop without finishing) the temporary file is removed and
//! the destination is left as it was. Temporary files and folders not yet renamed into
//! place are also tracked, so that an interrupt (Ctrl-C, SIGTERM) can remove them
//! before the process exits ([`remove_temporaries`]).
//!
//! Also a streaming `.npy` writer (float32, C order, `[N, D]` with N not known in
//! advance) and a `.npy` reader for tests and tools.

use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Result, anyhow, bail};

/// An I/O error's message without Rust's " (os error N)" suffix, for messages like
/// "cannot open input file X: No such file or directory".
pub fn io_reason(err: &io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// An error when writing `output` would replace the input file `input` (`what` names
/// it: "corpus", "index"): the same path, or two names of one file. An input `-` is
/// standard input, which no output replaces.
pub fn refuse_overwriting_input(output: &Path, input: &Path, what: &str) -> Result<()> {
    if input.as_os_str() != "-" && same_file(output, input) {
        bail!(
            "the output {} would replace the input {what}; choose another path",
            output.display()
        );
    }
    Ok(())
}

/// Whether `a` and `b` name one file: the same path, two names of one existing file
/// (links, hard links on Unix), or (for files not yet written) one name in one folder
/// reached two ways (`m`, `./m`).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b))
            && (x.dev(), x.ino()) == (y.dev(), y.ino())
        {
            return true;
        }
    }
    let canonical = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            Some(dir.canonicalize().ok()?.join(p.file_name()?))
        })
    };
    a == b || matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// An error unless `path` can be written as [`write_atomic`] writes it: its folder exists
/// and takes a new file, and it is not a folder itself. For outputs written only after
/// long work, so a bad path fails at once instead of losing the work.
pub fn check_can_create(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "cannot create output file {}: it is a folder",
            path.display()
        );
    }
    TempFile::create(path).map(drop)
}

/// Whether `path` exists and is neither a regular file nor a folder: a device (such as
/// `/dev/null`), a pipe or a socket.
pub fn is_special_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Temporary paths that exist now: removed by [`remove_temporaries`].
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Marks `path` (a temporary file or folder) for removal on interrupt while it lives.
pub struct Tracked(PathBuf);

impl Tracked {
    pub fn new(path: &Path) -> Tracked {
        temporaries().push(path.to_path_buf());
        Tracked(path.to_path_buf())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut live = temporaries();
        if let Some(i) = live.iter().rposition(|p| *p == self.0) {
            live.swap_remove(i);
        }
    }
}

fn temporaries() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remove every tracked temporary file and folder: what an interrupt handler calls
/// before exiting, so that no `.NAME.tmp-*` is left behind.
pub fn remove_temporaries() {
    for path in temporaries().drain(..) {
        let _ = fs::remove_file(&path).or_else(|_| fs::remove_dir_all(&path));
    }
}

/// A temporary file beside its destination; removed on drop unless persisted.
/// Also usable as a scratch (spool) file that is never persisted: create it for the
/// destination it serves and just drop it.
pub struct TempFile {
    path: PathBuf,
    dest: PathBuf,
    armed: bool,
    _tracked: Tracked,
}

impl TempFile {
    /// Creates `.NAME.tmp-PID-RANDOM` in `dest`'s directory, opened for reading and
    /// writing. Errors name `dest` ("cannot create output file X: ..."). A `dest` that is
    /// a device, pipe or socket is refused: renaming over it would replace it (as root,
    /// `/dev/null` itself) with a regular file.
    pub fn create(dest: &Path) -> Result<(TempFile, File)> {
        if is_special_file(dest) {
            bail!(
                "cannot create output file {}: it is a device, pipe or socket, not a \
                 regular file; write to a file",
                dest.display()
            );
        }
        let name = dest.file_name().ok_or_else(|| {
            anyhow!(
                "cannot create output file {}: not a file name",
                dest.display()
            )
        })?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut last_err = None;
        for _ in 0..16 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                h.write_u128(t.as_nanos());
            }
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".tmp-{}-{:016x}", std::process::id(), h.finish()));
            let path = dir.join(tmp_name);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    let temp = TempFile {
                        _tracked: Tracked::new(&path),
                        path,
                        dest: dest.to_path_buf(),
                        armed: true,
                    };
                    return Ok((temp, file));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    bail!(
                        "cannot create output file {}: {}",
                        dest.display(),
                        io_reason(&e)
                    )
                }
            }
        }
        let e = last_err.unwrap_or_else(|| io::Error::other("no free temporary name"));
        bail!(
            "cannot create output file {}: {}",
            dest.display(),
            io_reason(&e)
        )
    }

    /// "cannot write output file DEST: reason".
    pub fn write_error(&self, e: &io::Error) -> anyhow::Error {
        anyhow!(
            "cannot write output file {}: {}",
            self.dest.display(),
            io_reason(e)
        )
    }

    /// fsyncs `file`, renames the temp file over the destination and fsyncs the
    /// directory (best effort).
    pub fn persist(mut self, file: File) -> Result<()> {
        file.sync_all().map_err(|e| self.write_error(&e))?;
        drop(file);
        fs::rename(&self.path, &self.dest).map_err(|e| {
            anyhow!(
                "cannot write output file {}: {}",
                self.dest.display(),
                io_reason(&e)
            )
        })?;
        self.armed = false;
        if let Some(dir) = self.dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `path` atomically: `write` fills a buffered temporary file in the same
/// directory, which is then flushed, fsynced and renamed over `path`. On any error the
/// temporary file is removed and `path` is untouched. Errors of our own (and plain I/O
/// errors returned by `write`) name `path`, e.g. "cannot create output file X:
/// Permission denied"; other errors from `write` are returned unchanged.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
) -> Result<()> {
    let (temp, file) = TempFile::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    if let Err(e) = write(&mut out) {
        drop(out);
        drop(temp);
        return Err(match e.downcast_ref::<io::Error>() {
            Some(io_err) if e.chain().count() == 1 => anyhow!(
                "cannot write output file {}: {}",
                path.display(),
                io_reason(io_err)
            ),
            _ => e,
        });
    }
    let file = out.into_inner().map_err(|e| temp.write_error(e.error()))?;
    temp.persist(file)
}

/// Writes `bytes` to `path` atomically ([`write_atomic`]).
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |out| Ok(out.write_all(bytes)?))
}

/// The `.npy` magic string.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The header dictionary of a C-order array of `shape` and numpy type `descr` (`<f4`,
/// `<i8`), unpadded.
fn npy_dict_text(descr: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}")
}

/// [`npy_dict_text`] padded with spaces and a final `\n` so that the whole header
/// (magic, version, length and dictionary) is `total` bytes long.
fn npy_dict(descr: &str, shape: &str, total: usize) -> Vec<u8> {
    let mut dict = npy_dict_text(descr, shape).into_bytes();
    let target = total - 10;
    debug_assert!(dict.len() < target);
    dict.resize(target - 1, b' ');
    dict.push(b'\n');
    dict
}

/// The header size for a dictionary of `descr` and `shape`: magic, version, length,
/// dictionary and newline, rounded up to a multiple of 64.
fn npy_header_size(descr: &str, shape: &str) -> usize {
    (10 + npy_dict_text(descr, shape).len() + 1).div_ceil(64) * 64
}

/// [`NpyWriter`]'s float32 header, of a fixed size: enough for any row count up to
/// `u64::MAX`, so that the true count can be written at the end.
fn npy_header(rows: u64, cols: usize) -> Vec<u8> {
    let size = npy_header_size("<f4", &format!("({}, {cols})", u64::MAX));
    npy_header_of("<f4", &format!("({rows}, {cols})"), size)
}

fn npy_header_of(descr: &str, shape: &str, total: usize) -> Vec<u8> {
    let dict = npy_dict(descr, shape, total);
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(NPY_MAGIC);
    h.extend_from_slice(&[1, 0]);
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(&dict);
    debug_assert_eq!(h.len(), total);
    h
}

/// Streams a float32 C-order `[N, cols]` array into a `.npy` file (format 1.0) whose
/// N is known only at the end. The file appears at `path` only on [`NpyWriter::finish`];
/// dropped without it, the temporary file is removed.
pub struct NpyWriter {
    out: Option<BufWriter<File>>,
    temp: TempFile,
    cols: usize,
    rows: u64,
}

impl NpyWriter {
    /// Starts `path` with rows of `cols` (> 0) float32 values.
    pub fn create(path: &Path, cols: usize) -> Result<NpyWriter> {
        if cols == 0 {
            bail!(
                "cannot create {}: a .npy row needs at least one column",
                path.display()
            );
        }
        let (temp, file) = TempFile::create(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // Reserve the header; rewritten with the true row count by finish().
        out.write_all(&npy_header(0, cols))
            .map_err(|e| temp.write_error(&e))?;
        Ok(NpyWriter {
            out: Some(out),
            temp,
            cols,
            rows: 0,
        })
    }

    /// Columns per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends whole rows: `data.len()` must be a multiple of `cols`.
    pub fn write_rows(&mut self, data: &[f32]) -> Result<()> {
        if !data.len().is_multiple_of(self.cols) {
            bail!(
                "internal error: {} values is not a whole number of {}-value rows",
                data.len(),
                self.cols
            );
        }
        let out = self.out.as_mut().expect("NpyWriter used after an error");
        let res = if cfg!(target_endian = "little") {
            out.write_all(bytemuck::cast_slice(data))
        } else {
            data.iter()
                .try_for_each(|v| out.write_all(&v.to_le_bytes()))
        };
        res.map_err(|e| self.temp.write_error(&e))?;
        self.rows += (data.len() / self.cols) as u64;
        Ok(())
    }

    /// Writes the true shape into the header, fsyncs and renames the file into place.
    /// Returns the number of rows.
    pub fn finish(mut self) -> Result<u64> {
        let out = self.out.take().expect("NpyWriter used after an error");
        let mut file = out
            .into_inner()
            .map_err(|e| self.temp.write_error(e.error()))?;
        let header = npy_header(self.rows, self.cols);
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header))
            .map_err(|e| self.temp.write_error(&e))?;
        let rows = self.rows;
        self.temp.persist(file)?;
        Ok(rows)
    }
}

/// Writes `values` as a little-endian int64 `.npy` vector, atomically.
pub fn write_npy_i64(path: &Path, values: &[i64]) -> Result<()> {
    let shape = format!("({},)", values.len());
    let header = npy_header_of("<i8", &shape, npy_header_size("<i8", &shape));
    write_atomic(path, |out| {
        out.write_all(&header)?;
        for v in values {
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// Reads a little- or big-endian float32 `.npy` file (format 1.0, 2.0 or 3.0, C order)
/// into its shape and values. For tests and tools: the whole file is read into memory.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes =
        fs::read(path).map_err(|e| anyhow!("cannot read {}: {}", path.display(), io_reason(&e)))?;
    parse_npy_f32(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// [`read_npy_f32`] on bytes in memory.
pub fn parse_npy_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        bail!("not a .npy file (no \\x93NUMPY magic)");
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (dict_len, dict_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("truncated .npy header");
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        _ => bail!("unsupported .npy format version {major}.{minor}"),
    };
    let data_start = dict_start + dict_len;
    if bytes.len() < data_start {
        bail!("truncated .npy header");
    }
    let dict = std::str::from_utf8(&bytes[dict_start..data_start])
        .map_err(|_| anyhow!("bad .npy header (not text)"))?;
    let header = parse_header(dict).map_err(|e| anyhow!("bad .npy header {dict:?}: {e}"))?;
    let big_endian = match header.descr.as_str() {
        "<f4" => false,
        ">f4" => true,
        "|f4" | "=f4" => cfg!(target_endian = "big"),
        other => bail!("unsupported dtype '{other}', expected float32 ('<f4')"),
    };
    if header.fortran_order {
        bail!("Fortran-order arrays are not supported");
    }
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| anyhow!("shape {:?} is too large", header.shape))?;
    let data = &bytes[data_start..];
    if data.len() != count {
        bail!(
            "shape {:?} needs {count} bytes of data, the file has {}",
            header.shape,
            data.len()
        );
    }
    let values = data
        .chunks_exact(4)
        .map(|c| {
            let b = [c[0], c[1], c[2], c[3]];
            if big_endian {
                f32::from_be_bytes(b)
            } else {
                f32::from_le_bytes(b)
            }
        })
        .collect();
    Ok((header.shape, values))
}

struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of a `.npy` header.
fn parse_header(text: &str) -> Result<NpyHeader> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    p.expect(b'{')?;
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran_order = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => bail!("unexpected key '{other}'"),
        }
        p.ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    Ok(NpyHeader {
        descr: descr.ok_or_else(|| anyhow!("no 'descr'"))?,
        fortran_order: fortran_order.ok_or_else(|| anyhow!("no 'fortran_order'"))?,
        shape: shape.ok_or_else(|| anyhow!("no 'shape'"))?,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.eat(c) {
            Ok(())
        } else {
            bail!("expected '{}' at offset {}", c as char, self.i)
        }
    }

    fn string(&mut self) -> Result<String> {
        self.ws();
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => bail!("expected a string at offset {}", self.i),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i == self.s.len() {
            bail!("unterminated string");
        }
        let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(out)
    }

    fn boolean(&mut self) -> Result<bool> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            bail!("expected True or False at offset {}", self.i)
        }
    }

    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                break;
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            // Python 2 era files may write "3L".
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap();
            let _ = self.eat(b'L');
            let d: usize = digits
                .parse()
                .map_err(|_| anyhow!("expected a dimension at offset {start}"))?;
            dims.push(d);
            self.ws();
            if !self.eat(b',') {
                self.expect(b')')?;
                break;
            }
        }
        Ok(dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn same_file_sees_one_file_under_two_names() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(
            same_file(&a, &dir.path().join("sub/../a")),
            "not yet written"
        );
        assert!(!same_file(&a, &b));
        fs::write(&a, b"x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&a, &b).unwrap();
            assert!(same_file(&a, &b), "a link to the file");
            let hard = dir.path().join("hard");
            fs::hard_link(&a, &hard).unwrap();
            assert!(same_file(&a, &hard), "a hard link to the file");
        }
    }

    /// A special file (here a socket: a device such as /dev/null would be replaced on
    /// the test machine itself if this failed) is refused, never renamed over.
    #[cfg(unix)]
    #[test]
    fn a_special_file_is_never_renamed_over() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let e = write_atomic(&socket, |out| Ok(out.write_all(b"x")?)).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(
            fs::symlink_metadata(&socket)
                .unwrap()
                .file_type()
                .is_socket()
        );
        assert!(check_can_create(&socket).is_err());
        assert_eq!(entries(dir.path()), ["socket"]);
    }

    #[test]
    fn check_can_create_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        check_can_create(&dir.path().join("out")).unwrap();
        assert!(entries(dir.path()).is_empty());
        let e = check_can_create(&dir.path().join("nodir/out")).unwrap_err();
        assert!(e.to_string().contains("nodir/out"), "{e}");
        let e = check_can_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("it is a folder"), "{e}");
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, |w| {
            w.write_all(b"new contents")?;
            Ok(())
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new contents");
        assert_eq!(entries(dir.path()), vec!["out.txt"]);
    }

    #[test]
    fn atomic_write_error_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let err = write_atomic(&path, |w| {
            w.write_all(&[1u8; 200_000])?;
            bail!("input.txt:3: something went wrong")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "input.txt:3: something went wrong");
        assert!(entries(dir.path()).is_empty());

        // An existing file is kept as it was.
        fs::write(&path, "old").unwrap();
        let err =
            write_atomic(&path, |_| Err(io::Error::other("disk on fire").into())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot write output file {}: disk on fire", path.display())
        );
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["out.txt"]);
    }

    #[test]
    fn atomic_write_panic_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let r = std::panic::catch_unwind(|| {
            let _ = write_atomic(&path, |w| {
                w.write_all(b"x")?;
                panic!("boom")
            });
        });
        assert!(r.is_err());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn atomic_write_bad_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("out.txt");
        let err = write_atomic(&path, |_| Ok(())).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "cannot create output file {}: No such file or directory",
                path.display()
            )
        );
        // A destination that is a directory: the rename fails, the temp file goes.
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("f"), "x").unwrap();
        let err = write_atomic(&sub, |w| Ok(w.write_all(b"x")?))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot write output file"), "{err}");
        assert_eq!(entries(dir.path()), vec!["sub"]);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_read_only_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let path = ro.join("out.npy");
        // root ignores directory permissions; only check where they apply.
        if OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(ro.join("probe"))
            .is_err()
        {
            let err = write_atomic(&path, |_| Ok(())).unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "cannot create output file {}: Permission denied",
                    path.display()
                )
            );
            let err = NpyWriter::create(&path, 80).err().unwrap().to_string();
            assert!(err.contains("Permission denied"), "{err}");
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn relative_path_in_current_directory() {
        // A bare file name has an empty parent: the temp file goes in ".".
        let (temp, _file) = TempFile::create(Path::new("megashtein-io-test.bin")).unwrap();
        assert!(temp.path.starts_with("."));
        let name = temp
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with(&format!(
                ".megashtein-io-test.bin.tmp-{}-",
                std::process::id()
            )),
            "{name}"
        );
        assert!(temp.path.exists());
        let p = temp.path.clone();
        drop(temp);
        assert!(!p.exists());
    }

    fn roundtrip(rows: usize, cols: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        let values: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.25).collect();
        let mut w = NpyWriter::create(&path, cols).unwrap();
        assert!(!path.exists(), "nothing at the destination before finish");
        // Uneven chunks of whole rows.
        let mut rest = values.as_slice();
        let mut k = 1;
        while !rest.is_empty() {
            let n = (k * cols).min(rest.len());
            w.write_rows(&rest[..n]).unwrap();
            rest = &rest[n..];
            k = k % 7 + 1;
        }
        assert_eq!(w.rows(), rows as u64);
        assert_eq!(w.finish().unwrap(), rows as u64);
        let bytes = fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes[10 + header_len - 1], b'\n');
        assert_eq!(bytes.len(), 10 + header_len + rows * cols * 4);
        let (shape, got) = read_npy_f32(&path).unwrap();
        assert_eq!(shape, vec![rows, cols]);
        assert_eq!(got, values);
        assert_eq!(entries(dir.path()), vec!["e.npy"]);
    }

    #[test]
    fn npy_roundtrip() {
        roundtrip(0, 80);
        roundtrip(1, 80);
        roundtrip(1000, 80);
        roundtrip(3, 1);
    }

    #[test]
    fn npy_header_fits_any_row_count() {
        for cols in [1, 80, 123456] {
            let size = npy_header(0, cols).len();
            assert_eq!(size % 64, 0);
            for rows in [0, 1, 999, u64::MAX] {
                let h = npy_header(rows, cols);
                assert_eq!(h.len(), size);
                let dict = std::str::from_utf8(&h[10..]).unwrap();
                assert!(dict.starts_with(&format!(
                    "{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
                )));
                assert!(dict.ends_with(" \n"));
            }
        }
    }

    #[test]
    fn npy_dropped_without_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        fs::write(&path, "old").unwrap();
        let mut w = NpyWriter::create(&path, 4).unwrap();
        w.write_rows(&[1.0; 400]).unwrap();
        assert!(w.write_rows(&[1.0; 3]).is_err());
        drop(w);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(entries(dir.path()), vec!["e.npy"]);
    }

    #[test]
    fn npy_reader_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let err = read_npy_f32(&path).unwrap_err().to_string();
        assert!(err.starts_with("cannot read"), "{err}");

        fs::write(&path, b"hello world, not numpy").unwrap();
        let err = read_npy_f32(&path).unwrap_err().to_string();
        assert!(err.contains("not a .npy file"), "{err}");

        let mut w = NpyWriter::create(&path, 2).unwrap();
        w.write_rows(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        w.finish().unwrap();
        let good = fs::read(&path).unwrap();
        fs::write(&path, &good[..good.len() - 1]).unwrap();
        let err = read_npy_f32(&path).unwrap_err().to_string();
        assert!(
            err.contains("needs 16 bytes of data, the file has 15"),
            "{err}"
        );

        let replace = |from: &[u8], to: &[u8]| {
            let i = good.windows(from.len()).position(|w| w == from).unwrap();
            let mut b = good.clone();
            b[i..i + to.len()].copy_from_slice(to);
            b
        };
        let f8 = replace(b"<f4", b"<f8");
        fs::write(&path, f8).unwrap();
        let err = read_npy_f32(&path).unwrap_err().to_string();
        assert!(err.contains("unsupported dtype '<f8'"), "{err}");

        let fo = replace(b"False", b"True ");
        fs::write(&path, fo).unwrap();
        let err = read_npy_f32(&path).unwrap_err().to_string();
        assert!(err.contains("Fortran"), "{err}");
    }

    #[test]
    fn npy_reader_accepts_numpy_variants() {
        // As numpy writes them: version 1.0, 1-D and 0-D shapes, no trailing comma.
        fn file(dict: &str, data: &[f32], be: bool) -> Vec<u8> {
            let mut d = dict.as_bytes().to_vec();
            while !(10 + d.len() + 1).is_multiple_of(64) {
                d.push(b' ');
            }
            d.push(b'\n');
            let mut b = NPY_MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(d.len() as u16).to_le_bytes());
            b.extend_from_slice(&d);
            for v in data {
                b.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
            }
            b
        }
        let b = file(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
            &[1.0, 2.0, 3.0],
            false,
        );
        assert_eq!(parse_npy_f32(&b).unwrap(), (vec![3], vec![1.0, 2.0, 3.0]));
        let b = file(
            "{'descr': '<f4', 'fortran_order': False, 'shape': ()}",
            &[7.0],
            false,
        );
        assert_eq!(parse_npy_f32(&b).unwrap(), (vec![], vec![7.0]));
        let b = file(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 2), }",
            &[1.5, -2.0],
            true,
        );
        assert_eq!(parse_npy_f32(&b).unwrap(), (vec![1, 2], vec![1.5, -2.0]));
    }
}
