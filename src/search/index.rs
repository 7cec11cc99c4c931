//! The index file: embeddings of a corpus, with its strings and line numbers, in one
//! versioned, checksummed file that is read by memory-mapping it.
//!
//! # Layout (format version 4)
//!
//! All integers are little-endian; every checksum is CRC-32 (IEEE, as zlib's `crc32`
//! and Python's `zlib.crc32`). The file is a fixed 256-byte header followed by four
//! sections, each starting at a multiple of 64 bytes, with zero bytes between them.
//!
//! | Offset | Size | Type    | Field |
//! |-------:|-----:|---------|-------|
//! |      0 |    8 | bytes   | magic `MGSHTIDX` |
//! |      8 |    4 | u32     | format version, 4 (versions 1 to 3 are read too) |
//! |     12 |    4 | u32     | header length, 256 |
//! |     16 |   64 | ASCII   | model fingerprint: lowercase hex SHA-256 of the model file |
//! |     80 |    4 | f32     | distance scale s (d_hat = s * (d / divisor)^exponent + offset, d the embedding distance) |
//! |     84 |    4 | u32     | precision: bits per stored value, 16 (f16), 32 (f32) or 8 (CGK code symbols) |
//! |     88 |    4 | u32     | dim, values per embedding (the model's: 80 released, or a CGK code's bytes) |
//! |     92 |    4 | u32     | reserved, 0 |
//! |     96 |    8 | u64     | N, rows |
//! |    104 |    8 | u64     | embeddings offset, 256 |
//! |    112 |    8 | u64     | embeddings size: N * dim * (2 or 4) bytes, rounded up to a multiple of 4 |
//! |    120 |    8 | u64     | line-numbers offset |
//! |    128 |    8 | u64     | string-offsets offset |
//! |    136 |    8 | u64     | string-data offset |
//! |    144 |    8 | u64     | string-data size |
//! |    152 |    8 | u64     | file length |
//! |    160 |    4 | u32     | body checksum: CRC-32 of bytes [256, file length) |
//! |    164 |    8 | u64     | model offset (0 when the index holds no model) |
//! |    172 |    8 | u64     | model size (0 when the index holds no model) |
//! |    180 |    4 | f32     | estimate divisor (1; CGK: its repetitions) |
//! |    184 |    4 | f32     | estimate exponent (1; CGK: its fitted curve's) |
//! |    188 |    4 | u32     | metric: 0 squared Euclidean, 1 Hamming (CGK codes), 2 Euclidean (CNN-ED) |
//! |    192 |    4 | f32     | estimate offset (0; CNN-ED: its fitted line's intercept) |
//! |    196 |   56 | bytes   | reserved, 0 |
//! |    252 |    4 | u32     | header checksum: CRC-32 of bytes [0, 252) |
//!
//! | Section | Starts at | Contents |
//! |---------|-----------|----------|
//! | embeddings | 256 | N x dim values, row-major, in input order: f32, IEEE half (`half::f16::to_bits`) or CGK symbols (u8, compared by Hamming distance), then zero padding to a multiple of 4 bytes (so f16 data reads as packed u32 pairs) |
//! | line numbers | next multiple of 64 | N x u64: each row's 1-based source line number |
//! | string offsets | next multiple of 64 | N + 1 x u64: string i is bytes [off\[i\], off\[i+1\]) of the string data; off\[0\] = 0, non-decreasing, off\[N\] = string-data size |
//! | string data | next multiple of 64 | the strings in full (not cut to 80 characters), back to back, no separators; without a model the file ends right after them |
//! | model | next multiple of 64 (only if its size is not 0) | the bytes of the model file that made the index (its SHA-256 is the fingerprint), so that searching needs no model file; the file ends right after them |
//!
//! Version 3 is the same with bytes 188..252 reserved (0): the metric follows the
//! precision (Hamming for codes, else squared Euclidean) and the offset is 0.
//! Version 2 is the same with bytes 180..252 reserved (0): divisor and exponent 1.
//! Version 1 is also without the model section (bytes 164..252 are 0); such files are
//! read as indexes without a model.
//!
//! The section offsets are fixed by N, dim, precision and the string-data size; the
//! header states them anyway so other readers need not recompute them, and
//! [`Index::open`] rejects a header whose table differs from that layout. An empty
//! corpus gives a valid index of 320 bytes (N = 0, one string offset).
//!
//! Writing streams ([`IndexWriter`]): embeddings go straight into a temporary file
//! beside the destination; line numbers, string offsets and strings are spooled to
//! three more temporary files there and appended by [`IndexWriter::finish`], which
//! then writes the header and renames the file into place. Nothing is left behind on
//! an error or a drop without `finish`.
//!
//! Reading ([`Index::open`]) maps the file and checks the magic, the version, the
//! header checksum, every header field, the section table against the file length,
//! the body checksum and the string offsets before handing out any slice, so that no
//! accessor can read out of bounds. The file must not be modified while it is open.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::embed::{DEFAULT_BATCH, Embedder};
use crate::gpu::Gpu;
use crate::input::Line;
use crate::io::{TempFile, io_reason};
use crate::model::params::Widths;
use crate::model::{Estimator, Metric, Model};
use crate::ops::knn::Database;

/// The magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"MGSHTIDX";

/// [`Model::open_or_builtin`], with an index given as the model named as such: the
/// model layer knows no index format, so commands open their `--model` through this.
pub fn open_model(path: Option<&Path>) -> Result<Model> {
    if let Some(path) = path {
        refuse_index_as_model(path)?;
    }
    Model::open_or_builtin(path)
}

/// An error naming `path` as an index where a model file was expected; Ok otherwise.
pub fn refuse_index_as_model(path: &Path) -> Result<()> {
    if is_index_file(path) {
        bail!(
            "{} is a megashtein-gpu index, not a model file; give the model it was built \
             with, or query the index directly",
            path.display()
        );
    }
    Ok(())
}

/// Whether the file at `path` is a regular file that starts with [`MAGIC`]: an index,
/// for a clear message where a model file was expected. Unreadable: false.
fn is_index_file(path: &Path) -> bool {
    let mut start = [0u8; MAGIC.len()];
    // Only a regular file: peeking at a pipe would take bytes from its reader.
    path.is_file()
        && File::open(path)
            .and_then(|mut f| f.read_exact(&mut start))
            .is_ok()
        && start == MAGIC
}

/// Whether `b` starts like a safetensors file: a little-endian header length that fits
/// in the file, then the JSON header's `{`.
fn looks_like_safetensors(b: &[u8]) -> bool {
    let Some((length, rest)) = b.split_first_chunk::<8>() else {
        return false;
    };
    rest.first() == Some(&b'{') && u64::from_le_bytes(*length) <= rest.len() as u64
}

/// The format version this build writes; it reads this one and version 1.
pub const VERSION: u32 = 4;
/// Length of the fixed header; the body checksum covers everything after it.
pub const HEADER_LEN: usize = 256;
/// Every section starts at a multiple of this.
pub const SECTION_ALIGN: u64 = 64;

/// The metric's number in the header (format 4).
fn metric_code(metric: Metric) -> u32 {
    match metric {
        Metric::SquaredEuclidean => 0,
        Metric::Hamming => 1,
        Metric::Euclidean => 2,
    }
}

fn metric_of_code(code: u32) -> Option<Metric> {
    [Metric::SquaredEuclidean, Metric::Hamming, Metric::Euclidean]
        .into_iter()
        .find(|&m| metric_code(m) == code)
}

/// Where the header checksum sits; it covers the bytes before it.
const HEADER_CRC_AT: usize = HEADER_LEN - 4;
/// Characters of a model fingerprint (hex SHA-256).
const FINGERPRINT_LEN: usize = 64;

/// How the embeddings are stored in an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    /// IEEE half precision (2 bytes a value): half the size, about 3 significant digits.
    F16,
    /// IEEE single precision (4 bytes a value): the model's outputs exactly.
    #[default]
    F32,
    /// One byte a value: the symbols of a CGK code (always, for a CGK model).
    #[cfg_attr(feature = "cli", value(skip))]
    Codes,
}

impl Precision {
    /// Bytes per stored value.
    pub fn bytes(self) -> usize {
        match self {
            Precision::Codes => 1,
            Precision::F16 => 2,
            Precision::F32 => 4,
        }
    }

    /// Bits per stored value, as in the header.
    pub fn bits(self) -> u32 {
        self.bytes() as u32 * 8
    }

    /// The precision with this many bits per value, if any.
    pub fn from_bits(bits: u32) -> Option<Precision> {
        match bits {
            8 => Some(Precision::Codes),
            16 => Some(Precision::F16),
            32 => Some(Precision::F32),
            _ => None,
        }
    }

    /// `"f16"`, `"f32"` or `"codes"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Codes => "codes",
            Precision::F16 => "f16",
            Precision::F32 => "f32",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The header of an index file (see the module documentation for the layout).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexHeader {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Lowercase hex SHA-256 of the model file (64 characters).
    pub fingerprint: String,
    /// Distance scale s of the model.
    pub distance_scale: f32,
    /// The estimate's divisor (format 3; 1 before).
    pub estimate_divisor: f32,
    /// The estimate's exponent (format 3; 1 before).
    pub estimate_exponent: f32,
    /// How embeddings are compared (format 4; before, by the precision).
    pub metric: Metric,
    /// The estimate's offset (format 4; 0 before).
    pub estimate_offset: f32,
    /// How the embeddings are stored.
    pub precision: Precision,
    /// Values per embedding.
    pub dim: u32,
    /// Rows.
    pub len: u64,
    /// Byte offset of the embeddings section ([`HEADER_LEN`]).
    pub embeddings_offset: u64,
    /// Bytes of embeddings: `len * dim * precision.bytes()` rounded up to a multiple of 4.
    pub embeddings_size: u64,
    /// Byte offset of the line numbers (`len` u64 values).
    pub lines_offset: u64,
    /// Byte offset of the string offsets (`len + 1` u64 values).
    pub offsets_offset: u64,
    /// Byte offset of the string data.
    pub strings_offset: u64,
    /// Bytes of string data.
    pub strings_size: u64,
    /// Total file length.
    pub file_len: u64,
    /// CRC-32 of bytes `[HEADER_LEN, file_len)`.
    pub body_crc: u32,
    /// Byte offset of the model file's bytes (0 without a model).
    pub model_offset: u64,
    /// Bytes of the model file (0 without a model).
    pub model_size: u64,
}

/// The section table that N, dim, precision and the string-data size imply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    embeddings_offset: u64,
    embeddings_size: u64,
    lines_offset: u64,
    offsets_offset: u64,
    strings_offset: u64,
    model_offset: u64,
    file_len: u64,
}

fn align_up(x: u64, to: u64) -> Option<u64> {
    x.checked_add(to - 1).map(|v| v / to * to)
}

impl Layout {
    /// `None` when the sizes overflow u64.
    fn new(
        len: u64,
        dim: u64,
        precision: Precision,
        strings_size: u64,
        model_size: u64,
    ) -> Option<Layout> {
        let embeddings_offset = HEADER_LEN as u64;
        let raw = len
            .checked_mul(dim)?
            .checked_mul(precision.bytes() as u64)?;
        let embeddings_size = align_up(raw, 4)?;
        let lines_offset = align_up(
            embeddings_offset.checked_add(embeddings_size)?,
            SECTION_ALIGN,
        )?;
        let offsets_offset = align_up(
            lines_offset.checked_add(len.checked_mul(8)?)?,
            SECTION_ALIGN,
        )?;
        let offsets_size = len.checked_add(1)?.checked_mul(8)?;
        let strings_offset = align_up(offsets_offset.checked_add(offsets_size)?, SECTION_ALIGN)?;
        let strings_end = strings_offset.checked_add(strings_size)?;
        let (model_offset, file_len) = if model_size == 0 {
            (0, strings_end)
        } else {
            let at = align_up(strings_end, SECTION_ALIGN)?;
            (at, at.checked_add(model_size)?)
        };
        Some(Layout {
            embeddings_offset,
            embeddings_size,
            lines_offset,
            offsets_offset,
            strings_offset,
            model_offset,
            file_len,
        })
    }
}

/// What an index's rows hold: how they are stored, how many values each, and how an
/// embedding distance becomes an edit-distance estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowFormat {
    pub precision: Precision,
    pub dim: usize,
    pub estimator: Estimator,
}

impl RowFormat {
    /// Rows of `model`'s embeddings: codes for CGK, else floats at `precision`.
    pub fn for_model(model: &Model, precision: Precision) -> RowFormat {
        let estimator = model.estimator();
        RowFormat {
            precision: match estimator.metric {
                Metric::Hamming => Precision::Codes,
                Metric::SquaredEuclidean | Metric::Euclidean => precision,
            },
            dim: model.dim(),
            estimator,
        }
    }

    /// Rows of a megashtein model of the released widths with distance scale `scale`.
    pub fn megashtein(scale: f32, precision: Precision) -> RowFormat {
        RowFormat {
            precision,
            dim: Widths::RELEASED.dim,
            estimator: Estimator::linear(scale),
        }
    }

    /// An error unless the parts fit: codes exactly with Hamming distance, a positive
    /// finite estimate, and a code width in whole words.
    fn check(&self) -> std::result::Result<(), String> {
        let e = self.estimator;
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !(positive(e.scale) && positive(e.divisor) && positive(e.exponent)) {
            return Err(
                "the distance estimate's scale, divisor and exponent must be positive".into(),
            );
        }
        if !e.offset.is_finite() {
            return Err("the distance estimate's offset is not finite".into());
        }
        if (self.precision == Precision::Codes) != (e.metric == Metric::Hamming) {
            return Err("codes go with Hamming distance, floats with Euclidean".into());
        }
        if self.dim == 0 || (self.precision == Precision::Codes && !self.dim.is_multiple_of(4)) {
            return Err(format!("{} values a row", self.dim));
        }
        Ok(())
    }
}

impl Layout {
    /// The header of a file with this layout.
    fn header(
        &self,
        format: &RowFormat,
        fingerprint: String,
        len: u64,
        strings_size: u64,
        body_crc: u32,
    ) -> IndexHeader {
        IndexHeader {
            version: VERSION,
            fingerprint,
            distance_scale: format.estimator.scale,
            estimate_divisor: format.estimator.divisor,
            estimate_exponent: format.estimator.exponent,
            metric: format.estimator.metric,
            estimate_offset: format.estimator.offset,
            precision: format.precision,
            dim: format.dim as u32,
            len,
            embeddings_offset: self.embeddings_offset,
            embeddings_size: self.embeddings_size,
            lines_offset: self.lines_offset,
            offsets_offset: self.offsets_offset,
            strings_offset: self.strings_offset,
            strings_size,
            file_len: self.file_len,
            body_crc,
            model_offset: self.model_offset,
            model_size: if self.model_offset == 0 {
                0
            } else {
                self.file_len - self.model_offset
            },
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The first 12 hex digits of a fingerprint, as messages show it.
pub fn short_fingerprint(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(12)]
}

fn is_fingerprint(s: &[u8]) -> bool {
    s.len() == FINGERPRINT_LEN && s.iter().all(|&c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

impl IndexHeader {
    /// The 256 header bytes, header checksum included.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        let fp = self.fingerprint.as_bytes();
        let n = fp.len().min(FINGERPRINT_LEN);
        b[16..16 + n].copy_from_slice(&fp[..n]);
        b[80..84].copy_from_slice(&self.distance_scale.to_le_bytes());
        b[84..88].copy_from_slice(&self.precision.bits().to_le_bytes());
        b[88..92].copy_from_slice(&self.dim.to_le_bytes());
        b[96..104].copy_from_slice(&self.len.to_le_bytes());
        b[104..112].copy_from_slice(&self.embeddings_offset.to_le_bytes());
        b[112..120].copy_from_slice(&self.embeddings_size.to_le_bytes());
        b[120..128].copy_from_slice(&self.lines_offset.to_le_bytes());
        b[128..136].copy_from_slice(&self.offsets_offset.to_le_bytes());
        b[136..144].copy_from_slice(&self.strings_offset.to_le_bytes());
        b[144..152].copy_from_slice(&self.strings_size.to_le_bytes());
        b[152..160].copy_from_slice(&self.file_len.to_le_bytes());
        b[160..164].copy_from_slice(&self.body_crc.to_le_bytes());
        b[164..172].copy_from_slice(&self.model_offset.to_le_bytes());
        b[172..180].copy_from_slice(&self.model_size.to_le_bytes());
        if self.version >= 3 {
            b[180..184].copy_from_slice(&self.estimate_divisor.to_le_bytes());
            b[184..188].copy_from_slice(&self.estimate_exponent.to_le_bytes());
        }
        if self.version >= 4 {
            b[188..192].copy_from_slice(&metric_code(self.metric).to_le_bytes());
            b[192..196].copy_from_slice(&self.estimate_offset.to_le_bytes());
        }
        let crc = crc32fast::hash(&b[..HEADER_CRC_AT]);
        b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header (the first [`HEADER_LEN`] or more bytes of a file):
    /// magic, version, header checksum, every field and the section table. `Err` is the
    /// reason alone (e.g. "corrupt (header checksum mismatch)"); the file length and
    /// the body are not checked here.
    pub fn parse(b: &[u8]) -> std::result::Result<IndexHeader, String> {
        if b.len() < MAGIC.len() || b[..MAGIC.len()] != MAGIC {
            if b.len() < MAGIC.len() && b == &MAGIC[..b.len()] {
                return Err(format!("truncated ({} bytes)", b.len()));
            }
            return Err("not a megashtein-gpu index (bad magic)".into());
        }
        if b.len() < 12 {
            return Err(format!("truncated ({} bytes)", b.len()));
        }
        let version = u32_at(b, 8);
        if version > VERSION {
            return Err(format!(
                "has format version {version}, newer than this megashtein-gpu reads \
                 (version {VERSION}); upgrade megashtein-gpu or rebuild the index with it"
            ));
        }
        if version == 0 {
            return Err(format!(
                "corrupt (format version {version}; this megashtein-gpu reads versions 1 to {VERSION})"
            ));
        }
        if b.len() < HEADER_LEN {
            return Err(format!(
                "truncated ({} bytes, shorter than the {HEADER_LEN}-byte header)",
                b.len()
            ));
        }
        let b = &b[..HEADER_LEN];
        if crc32fast::hash(&b[..HEADER_CRC_AT]) != u32_at(b, HEADER_CRC_AT) {
            return Err("corrupt (header checksum mismatch)".into());
        }
        let bad = |what: &str| Err(format!("corrupt (bad header: {what})"));
        if u32_at(b, 12) as usize != HEADER_LEN {
            return bad("header length");
        }
        let fp = &b[16..16 + FINGERPRINT_LEN];
        if !is_fingerprint(fp) {
            return bad("model fingerprint is not 64 lowercase hex digits");
        }
        let distance_scale = f32::from_le_bytes(b[80..84].try_into().unwrap());
        if !(distance_scale.is_finite() && distance_scale > 0.0) {
            return bad("distance scale is not a positive number");
        }
        let Some(precision) = Precision::from_bits(u32_at(b, 84)) else {
            return bad("precision is not 8, 16 or 32 bits");
        };
        let (estimate_divisor, estimate_exponent) = if version >= 3 {
            let f32_at = |at: usize| f32::from_le_bytes(b[at..at + 4].try_into().unwrap());
            (f32_at(180), f32_at(184))
        } else {
            (1.0, 1.0)
        };
        let (metric, estimate_offset) = if version >= 4 {
            let Some(metric) = metric_of_code(u32_at(b, 188)) else {
                return bad("metric is not 0, 1 or 2");
            };
            (metric, f32::from_le_bytes(b[192..196].try_into().unwrap()))
        } else if precision == Precision::Codes {
            (Metric::Hamming, 0.0)
        } else {
            (Metric::SquaredEuclidean, 0.0)
        };
        let dim = u32_at(b, 88);
        if dim == 0 {
            return bad("dim is 0");
        }
        let h = IndexHeader {
            version,
            fingerprint: String::from_utf8(fp.to_vec()).unwrap(),
            distance_scale,
            estimate_divisor,
            estimate_exponent,
            metric,
            estimate_offset,
            precision,
            dim,
            len: u64_at(b, 96),
            embeddings_offset: u64_at(b, 104),
            embeddings_size: u64_at(b, 112),
            lines_offset: u64_at(b, 120),
            offsets_offset: u64_at(b, 128),
            strings_offset: u64_at(b, 136),
            strings_size: u64_at(b, 144),
            file_len: u64_at(b, 152),
            body_crc: u32_at(b, 160),
            model_offset: u64_at(b, 164),
            model_size: u64_at(b, 172),
        };
        let reserved_from = match version {
            4.. => 196,
            3 => 188,
            _ => 180,
        };
        if b[reserved_from..HEADER_CRC_AT].iter().any(|&x| x != 0)
            || (version == 1 && (h.model_offset != 0 || h.model_size != 0))
        {
            return bad("reserved bytes are not 0");
        }
        if let Err(what) = h.row_format().check() {
            return bad(&what);
        }
        match Layout::new(h.len, dim as u64, precision, h.strings_size, h.model_size) {
            Some(l) if l == h.layout() => Ok(h),
            Some(_) => bad("section table"),
            None => bad("section sizes overflow"),
        }
    }

    /// The rows' format this header states.
    pub fn row_format(&self) -> RowFormat {
        RowFormat {
            precision: self.precision,
            dim: self.dim as usize,
            estimator: Estimator {
                metric: self.metric,
                scale: self.distance_scale,
                divisor: self.estimate_divisor,
                exponent: self.estimate_exponent,
                offset: self.estimate_offset,
            },
        }
    }

    fn layout(&self) -> Layout {
        Layout {
            embeddings_offset: self.embeddings_offset,
            embeddings_size: self.embeddings_size,
            lines_offset: self.lines_offset,
            offsets_offset: self.offsets_offset,
            strings_offset: self.strings_offset,
            model_offset: self.model_offset,
            file_len: self.file_len,
        }
    }
}

/// A file being written (or spooled to) through a buffer, with its temporary file.
struct Spool {
    temp: TempFile,
    out: BufWriter<File>,
}

impl Spool {
    fn create(dest: &Path) -> Result<Spool> {
        let (temp, file) = TempFile::create(dest)?;
        Ok(Spool {
            temp,
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| self.temp.write_error(&e))
    }

    /// Flushes and rewinds the spool, returning its file for reading.
    fn rewind(self) -> Result<(TempFile, File)> {
        let Spool { temp, out } = self;
        let mut file = match out.into_inner() {
            Ok(f) => f,
            Err(e) => return Err(temp.write_error(e.error())),
        };
        file.seek(SeekFrom::Start(0))
            .map_err(|e| temp.write_error(&e))?;
        Ok((temp, file))
    }
}

/// The main temporary file, with the running body checksum and position.
struct Body {
    out: BufWriter<File>,
    crc: crc32fast::Hasher,
    pos: u64,
}

impl Body {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.crc.update(bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn pad_to(&mut self, align: u64) -> io::Result<()> {
        let n = (align - self.pos % align) % align;
        self.write(&vec![0u8; n as usize])
    }

    /// Appends the whole of `src` (a rewound spool); returns the bytes copied.
    fn append(&mut self, src: File) -> io::Result<u64> {
        let mut src = BufReader::with_capacity(1 << 20, src);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write(&buf[..n])?;
            total += n as u64;
        }
    }
}

/// Lines and embeddings fit together: `dim` values a line, line numbers from 1.
fn check_rows(lines: &[Line], embeddings: &[f32], dim: usize) -> Result<()> {
    if embeddings.len() != lines.len() * dim {
        bail!(
            "internal error: {} embedding values for {} lines (expected {dim} per line)",
            embeddings.len(),
            lines.len(),
        );
    }
    if let Some(l) = lines.iter().find(|l| l.number == 0) {
        bail!(
            "internal error: line number 0 (line numbers start at 1) for {:?}",
            String::from_utf8_lossy(&l.text)
        );
    }
    Ok(())
}

/// Appends the stored bytes of `embeddings` (one row per line of `lines`) to `out`,
/// refusing a value that is not finite or, for f16, too large for half precision (or,
/// for codes, not a symbol 0..=255).
fn encode_rows(
    format: &RowFormat,
    lines: &[Line],
    embeddings: &[f32],
    half: &mut Vec<f16>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let dim = format.dim;
    if let Some(i) = embeddings.iter().position(|v| !v.is_finite()) {
        bail!(
            "line {}: the model gave a non-finite embedding value ({})",
            lines[i / dim].number,
            embeddings[i]
        );
    }
    match format.precision {
        Precision::Codes => {
            let symbol = |v: f32| (0.0..=255.0).contains(&v) && v.fract() == 0.0;
            if let Some(i) = embeddings.iter().position(|&v| !symbol(v)) {
                bail!(
                    "line {}: code value {} is not a symbol 0..=255",
                    lines[i / dim].number,
                    embeddings[i]
                );
            }
            out.extend(embeddings.iter().map(|&v| v as u8));
        }
        Precision::F32 => {
            if cfg!(target_endian = "little") {
                out.extend_from_slice(bytemuck::cast_slice(embeddings));
            } else {
                for v in embeddings {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        Precision::F16 => {
            half.clear();
            half.resize(embeddings.len(), f16::ZERO);
            half.convert_from_f32_slice(embeddings);
            if let Some(i) = half.iter().position(|h| h.is_infinite()) {
                bail!(
                    "line {}: embedding value {} is too large for --precision f16 \
                         (at most {}); use --precision f32",
                    lines[i / dim].number,
                    embeddings[i],
                    f16::MAX
                );
            }
            for h in half.iter() {
                out.extend_from_slice(&h.to_bits().to_le_bytes());
            }
        }
    }
    Ok(())
}

/// Streams an index file whose row count is known only at the end.
///
/// The file appears at its path only when [`IndexWriter::finish`] succeeds; on an
/// error, or dropped without `finish`, every temporary file is removed and an existing
/// file at the path is left as it was.
pub struct IndexWriter {
    path: PathBuf,
    fingerprint: String,
    format: RowFormat,
    rows: u64,
    strings_size: u64,
    /// The model file's bytes, stored at the end ([`IndexWriter::store_model`]).
    model: Vec<u8>,
    /// Set after a failed write: the temporary files are no longer trustworthy.
    failed: bool,
    body: Body,
    lines: Spool,
    offsets: Spool,
    strings: Spool,
    scratch: Vec<u8>,
    half: Vec<f16>,
    // Last, so that the buffered writers above are dropped first.
    temp: TempFile,
}

impl IndexWriter {
    /// Starts an index at `path` for a megashtein model of the released widths with this
    /// `fingerprint` (hex
    /// SHA-256 of the model file) and distance scale, storing embeddings at `precision`.
    pub fn create(
        path: &Path,
        fingerprint: &str,
        distance_scale: f32,
        precision: Precision,
    ) -> Result<IndexWriter> {
        let format = RowFormat::megashtein(distance_scale, precision);
        IndexWriter::with_format(path, fingerprint, format)
    }

    /// Starts an index at `path` of `model`'s embeddings (floats at `precision`, or codes
    /// for CGK), with the model stored in it when it has a model file.
    pub fn for_model(path: &Path, model: &Model, precision: Precision) -> Result<IndexWriter> {
        let format = RowFormat::for_model(model, precision);
        let mut writer = IndexWriter::with_format(path, model.fingerprint(), format)?;
        if let Some(bytes) = model.file_bytes() {
            writer.store_model(bytes.to_vec())?;
        }
        Ok(writer)
    }

    fn with_format(path: &Path, fingerprint: &str, format: RowFormat) -> Result<IndexWriter> {
        let fingerprint = fingerprint.to_ascii_lowercase();
        if !is_fingerprint(fingerprint.as_bytes()) {
            bail!(
                "cannot create index {}: model fingerprint {fingerprint:?} is not 64 hex digits",
                path.display()
            );
        }
        if let Err(reason) = format.check() {
            bail!("cannot create index {}: {reason}", path.display());
        }
        let (temp, file) = TempFile::create(path)?;
        let mut body = Body {
            out: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            pos: 0,
        };
        // Reserve the header (not part of the body checksum); finish() writes it.
        body.out
            .write_all(&[0u8; HEADER_LEN])
            .map_err(|e| temp.write_error(&e))?;
        body.pos = HEADER_LEN as u64;
        let lines = Spool::create(path)?;
        let offsets = Spool::create(path)?;
        let strings = Spool::create(path)?;
        Ok(IndexWriter {
            path: path.to_path_buf(),
            fingerprint,
            format,
            rows: 0,
            strings_size: 0,
            model: Vec::new(),
            failed: false,
            body,
            lines,
            offsets,
            strings,
            scratch: Vec::new(),
            half: Vec::new(),
            temp,
        })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store the model file's `bytes` in the index, so that searching it needs no model
    /// file. They must be the file the fingerprint was taken of.
    pub fn store_model(&mut self, bytes: Vec<u8>) -> Result<()> {
        if crate::model::hex_sha256(&bytes) != self.fingerprint {
            bail!(
                "cannot store the model in index {}: its bytes do not match the fingerprint",
                self.path.display()
            );
        }
        self.model = bytes;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The storage precision.
    pub fn precision(&self) -> Precision {
        self.format.precision
    }

    /// Appends rows: `lines[i]` with embedding `embeddings[i * dim..(i + 1) * dim]`
    /// (raw model outputs; converted to f16 if the index stores f16). A wrong number of
    /// values, a line number of 0, a value that is not finite or (for f16) too large
    /// for half precision is refused before anything is written. After a write error
    /// the writer refuses every further call; drop it.
    pub fn push(&mut self, lines: &[Line], embeddings: &[f32]) -> Result<()> {
        if self.failed {
            bail!(
                "cannot write index {}: an earlier write failed",
                self.path.display()
            );
        }
        check_rows(lines, embeddings, self.format.dim)?;
        self.scratch.clear();
        encode_rows(
            &self.format,
            lines,
            embeddings,
            &mut self.half,
            &mut self.scratch,
        )?;
        let res = self.write_rows(lines);
        if res.is_err() {
            self.failed = true;
        }
        res
    }

    fn write_rows(&mut self, lines: &[Line]) -> Result<()> {
        self.body
            .write(&self.scratch)
            .map_err(|e| self.temp.write_error(&e))?;
        for line in lines {
            self.lines.write(&line.number.to_le_bytes())?;
            self.strings.write(&line.text)?;
            self.strings_size += line.text.len() as u64;
            self.offsets.write(&self.strings_size.to_le_bytes())?;
        }
        self.rows += lines.len() as u64;
        Ok(())
    }

    /// Appends the spooled sections, writes the header, fsyncs and renames the file
    /// into place. Returns the number of rows.
    pub fn finish(self) -> Result<u64> {
        if self.failed {
            bail!(
                "cannot write index {}: an earlier write failed",
                self.path.display()
            );
        }
        let IndexWriter {
            path,
            fingerprint,
            format,
            rows,
            strings_size,
            model,
            failed: _,
            mut body,
            lines,
            offsets,
            strings,
            scratch: _,
            half: _,
            temp,
        } = self;
        let model_size = model.len() as u64;
        let layout = Layout::new(
            rows,
            format.dim as u64,
            format.precision,
            strings_size,
            model_size,
        )
        .ok_or_else(|| anyhow!("cannot write index {}: too large", path.display()))?;
        let werr = |e: io::Error| temp.write_error(&e);
        let section = |body: &mut Body, at: u64, spool: Spool, size: u64| -> Result<()> {
            debug_assert_eq!(body.pos, at);
            let (spool_temp, file) = spool.rewind()?;
            let copied = body.append(file).map_err(|e| temp.write_error(&e))?;
            drop(spool_temp);
            if copied != size {
                bail!(
                    "cannot write index {}: a temporary file holds {copied} bytes, expected {size}",
                    path.display()
                );
            }
            body.pad_to(SECTION_ALIGN).map_err(|e| temp.write_error(&e))
        };
        // Embeddings: padded to a multiple of 4, then to the next section.
        body.pad_to(4).map_err(werr)?;
        debug_assert_eq!(body.pos, layout.embeddings_offset + layout.embeddings_size);
        body.pad_to(SECTION_ALIGN).map_err(werr)?;
        section(&mut body, layout.lines_offset, lines, rows * 8)?;
        debug_assert_eq!(body.pos, layout.offsets_offset);
        body.write(&0u64.to_le_bytes()).map_err(werr)?;
        section(&mut body, layout.offsets_offset + 8, offsets, rows * 8)?;
        // The string data, then the model if there is one; the file ends right after.
        debug_assert_eq!(body.pos, layout.strings_offset);
        let (spool_temp, file) = strings.rewind()?;
        let copied = body.append(file).map_err(werr)?;
        drop(spool_temp);
        if copied != strings_size {
            bail!(
                "cannot write index {}: a temporary file holds {copied} bytes, expected {strings_size}",
                path.display()
            );
        }
        if !model.is_empty() {
            body.pad_to(SECTION_ALIGN).map_err(werr)?;
            debug_assert_eq!(body.pos, layout.model_offset);
            body.write(&model).map_err(werr)?;
        }
        debug_assert_eq!(body.pos, layout.file_len);
        let header = layout.header(
            &format,
            fingerprint,
            rows,
            strings_size,
            body.crc.finalize(),
        );
        let mut file = body
            .out
            .into_inner()
            .map_err(|e| temp.write_error(e.error()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header.to_bytes()))
            .map_err(werr)?;
        temp.persist(file)?;
        Ok(rows)
    }
}

/// Where an index's bytes live: a mapped file, or memory ([`Index::build`]).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// What an in-memory index calls itself in messages.
const IN_MEMORY: &str = "(in memory)";

/// An index, checked (see the module documentation): a memory-mapped file
/// ([`Index::open`]) or built in memory ([`Index::build`]).
pub struct Index {
    path: PathBuf,
    map: Bytes,
    header: IndexHeader,
    len: usize,
    dim: usize,
    embeddings: Range<usize>,
    lines_at: usize,
    offsets_at: usize,
    strings_at: usize,
    /// The stored model file's bytes (empty without one).
    model: Range<usize>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Index {
    /// Maps and checks the index at `path`. Every error names the file and the reason,
    /// e.g. "index X is corrupt (checksum mismatch)", "index X is truncated (...)",
    /// "X is not a megashtein-gpu index (bad magic)".
    pub fn open(path: &Path) -> Result<Index> {
        let file = File::open(path)
            .map_err(|e| anyhow!("cannot open index {}: {}", path.display(), io_reason(&e)))?;
        let meta = file
            .metadata()
            .map_err(|e| anyhow!("cannot open index {}: {}", path.display(), io_reason(&e)))?;
        if meta.is_dir() {
            bail!("cannot open index {}: it is a directory", path.display());
        }
        if meta.len() == 0 {
            bail!(
                "{} is empty (0 bytes), not a megashtein-gpu index",
                path.display()
            );
        }
        // SAFETY: the mapping is read-only; like every reader of a mapped file we rely
        // on the file not being modified while it is open (documented above).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| anyhow!("cannot map index {}: {}", path.display(), io_reason(&e)))?;
        Index::check(path, Bytes::Mapped(map))
    }

    /// An index from the bytes of an index file, with the checks of [`Index::open`];
    /// `name` stands for the file in messages.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Index> {
        Index::check(Path::new(name), Bytes::Owned(bytes))
    }

    /// An index of `strings` in memory, embedded by `model` on `gpu`: row `i` is
    /// `strings[i]` (line number `i + 1`), with the model stored in it when it has a model
    /// file. Strings must be ASCII; like every index, it holds them in full and embeds
    /// their first 80 characters.
    pub fn build<S: AsRef<[u8]>>(
        gpu: &Gpu,
        model: &Model,
        strings: &[S],
        precision: Precision,
    ) -> Result<Index> {
        let lines: Vec<Line> = strings
            .iter()
            .enumerate()
            .map(|(i, s)| Line {
                number: i as u64 + 1,
                text: s.as_ref().to_vec(),
            })
            .collect();
        let batch = lines.len().clamp(1, DEFAULT_BATCH);
        let mut embedder = Embedder::with_batch(gpu, model, batch)?;
        let texts: Vec<&[u8]> = lines.iter().map(|l| l.text.as_slice()).collect();
        let embeddings = embedder.embed(&texts)?;
        Index::from_rows(model, &lines, &embeddings, precision)
    }

    /// An index in memory of `lines` with their `embeddings` (raw outputs of `model`,
    /// `lines.len() * model.dim()` values): the bytes [`IndexWriter`] would write.
    /// `precision` applies to float embeddings; CGK codes are stored as bytes.
    pub fn from_rows(
        model: &Model,
        lines: &[Line],
        embeddings: &[f32],
        precision: Precision,
    ) -> Result<Index> {
        let format = RowFormat::for_model(model, precision);
        check_rows(lines, embeddings, format.dim)?;
        let too_large = || anyhow!("cannot build an index in memory: too large");
        let strings_size: usize = lines.iter().map(|l| l.text.len()).sum();
        let stored = model.file_bytes().unwrap_or_default();
        let layout = Layout::new(
            lines.len() as u64,
            format.dim as u64,
            format.precision,
            strings_size as u64,
            stored.len() as u64,
        )
        .ok_or_else(too_large)?;
        let at = |offset: u64| usize::try_from(offset).map_err(|_| too_large());
        let mut b = Vec::with_capacity(at(layout.file_len)?);
        b.resize(HEADER_LEN, 0);
        encode_rows(&format, lines, embeddings, &mut Vec::new(), &mut b)?;
        b.resize(at(layout.lines_offset)?, 0);
        for line in lines {
            b.extend_from_slice(&line.number.to_le_bytes());
        }
        b.resize(at(layout.offsets_offset)?, 0);
        let mut end = 0u64;
        b.extend_from_slice(&end.to_le_bytes());
        for line in lines {
            end += line.text.len() as u64;
            b.extend_from_slice(&end.to_le_bytes());
        }
        b.resize(at(layout.strings_offset)?, 0);
        for line in lines {
            b.extend_from_slice(&line.text);
        }
        if !stored.is_empty() {
            b.resize(at(layout.model_offset)?, 0);
            b.extend_from_slice(stored);
        }
        debug_assert_eq!(b.len() as u64, layout.file_len);
        let header = layout.header(
            &format,
            model.fingerprint().to_string(),
            lines.len() as u64,
            strings_size as u64,
            crc32fast::hash(&b[HEADER_LEN..]),
        );
        b[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        Index::from_bytes(b, IN_MEMORY)
    }

    /// Writes the index to `path` atomically (a file that [`Index::open`] reads back
    /// as this index).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_file_atomic(path, &self.map)
    }

    /// An error unless `model` made this index: another model's embeddings live in
    /// another space, and searching them would give wrong answers without a sign.
    pub fn check_model(&self, model: &Model) -> Result<()> {
        if model.fingerprint() != self.fingerprint() {
            bail!(
                "index {} was made by model {}, but {} is {}",
                self.path.display(),
                short_fingerprint(self.fingerprint()),
                model.source(),
                short_fingerprint(model.fingerprint())
            );
        }
        Ok(())
    }

    /// The model to search this index with: the model file at `path` when given (it
    /// must be the one that made the index), else the model stored in the index, else
    /// the built-in default (indexes of format 1 hold no model).
    pub fn load_model(&self, path: Option<&Path>) -> Result<Model> {
        let model = match (path, self.model_bytes()) {
            (None, Some(bytes)) => {
                let source = format!("the model stored in {}", self.path.display());
                return Model::from_bytes(bytes.to_vec(), source);
            }
            (path, _) => open_model(path)?,
        };
        self.check_model(&model).map_err(|e| {
            let hint = if path.is_some() {
                "pass the model the index was made with, or none: indexes made by `embed` \
                 since format 2 hold their model"
            } else {
                "it holds no model (an index of format 1): pass --model FILE, or rebuild it \
                 with `megashtein-gpu embed` to store the model in it"
            };
            anyhow!("{e}; {hint}")
        })?;
        Ok(model)
    }

    fn check(path: &Path, map: Bytes) -> Result<Index> {
        let b: &[u8] = &map;
        let name = path.display();
        if b.starts_with(&crate::io::NPY_MAGIC[..]) {
            bail!("{name} is a .npy file, not a megashtein-gpu index");
        }
        if looks_like_safetensors(b) {
            bail!(
                "{name} is a model file (safetensors), not a megashtein-gpu index; make an \
                 index with it (`megashtein-gpu embed -m {name} -i CORPUS -o INDEX`) and give \
                 that"
            );
        }
        let header = IndexHeader::parse(b).map_err(|reason| {
            if reason.starts_with("not a") {
                anyhow!("{name} is {reason}")
            } else if reason.starts_with("has") {
                anyhow!("index {name} {reason}")
            } else {
                anyhow!("index {name} is {reason}")
            }
        })?;
        let actual = b.len() as u64;
        if actual < header.file_len {
            bail!(
                "index {name} is truncated ({actual} bytes, expected {})",
                header.file_len
            );
        }
        if actual > header.file_len {
            bail!(
                "index {name} is corrupt ({actual} bytes, expected {}: data after the end)",
                header.file_len
            );
        }
        let too_large = || anyhow!("index {name} is too large for this platform");
        let usz = |v: u64| usize::try_from(v).map_err(|_| too_large());
        if crc32fast::hash(&b[HEADER_LEN..]) != header.body_crc {
            bail!("index {name} is corrupt (checksum mismatch)");
        }
        let len = usz(header.len)?;
        let dim = header.dim as usize;
        let emb_at = usz(header.embeddings_offset)?;
        let embeddings = emb_at..emb_at + usz(header.embeddings_size)?;
        let lines_at = usz(header.lines_offset)?;
        let offsets_at = usz(header.offsets_offset)?;
        let strings_at = usz(header.strings_offset)?;
        // The string offsets must stay within the string data: then no accessor can
        // slice out of bounds.
        let mut prev = 0u64;
        for i in 0..=len {
            let off = u64_at(b, offsets_at + 8 * i);
            if (i == 0 && off != 0) || off < prev || off > header.strings_size {
                bail!("index {name} is corrupt (bad string offsets)");
            }
            prev = off;
        }
        if prev != header.strings_size {
            bail!("index {name} is corrupt (bad string offsets)");
        }
        let model_at = usz(header.model_offset)?;
        let model = model_at..model_at + usz(header.model_size)?;
        if !model.is_empty() && crate::model::hex_sha256(&b[model.clone()]) != header.fingerprint {
            bail!("index {name} is corrupt (its model does not match its fingerprint)");
        }
        Ok(Index {
            path: path.to_path_buf(),
            header,
            len,
            dim,
            embeddings,
            lines_at,
            offsets_at,
            strings_at,
            model,
            map,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checked header.
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// The bytes of the model file that made the index, when it holds them (format
    /// version 2 written by `embed`); their SHA-256 is [`Index::fingerprint`].
    pub fn model_bytes(&self) -> Option<&[u8]> {
        (!self.model.is_empty()).then(|| &self.map[self.model.clone()])
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No rows (an empty corpus).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How the embeddings are stored.
    pub fn precision(&self) -> Precision {
        self.header.precision
    }

    /// Lowercase hex SHA-256 of the model file the index was built with.
    pub fn fingerprint(&self) -> &str {
        &self.header.fingerprint
    }

    /// How the embeddings are compared, and an embedding distance becomes an
    /// edit-distance estimate.
    pub fn estimator(&self) -> Estimator {
        self.header.row_format().estimator
    }

    /// The embeddings on `gpu`, ready for the kNN.
    pub fn upload(&self, gpu: &Gpu) -> Result<Database> {
        self.upload_bytes(gpu, self.embedding_bytes())
    }

    /// [`Index::upload`] of the rows `rows` only, in that order: the database's row `j`
    /// is row `rows[j]` of the index.
    pub fn upload_rows(&self, gpu: &Gpu, rows: &[usize]) -> Result<Database> {
        let row_bytes = self.dim * self.precision().bytes();
        let all = self.embedding_bytes();
        let mut bytes = Vec::with_capacity(rows.len() * row_bytes);
        for &row in rows {
            bytes.extend_from_slice(&all[row * row_bytes..(row + 1) * row_bytes]);
        }
        self.upload_bytes(gpu, &bytes)
    }

    /// Rows of this index's embeddings (`bytes`, as [`Index::embedding_bytes`] lays them
    /// out) as a kNN database.
    fn upload_bytes(&self, gpu: &Gpu, bytes: &[u8]) -> Result<Database> {
        match self.precision() {
            Precision::Codes => Database::upload_codes(gpu, bytes, self.dim, None),
            Precision::F16 => Database::upload(gpu, bytes, self.dim, true, None),
            Precision::F32 => Database::upload(gpu, bytes, self.dim, false, None),
        }
    }

    /// The raw embeddings section for GPU upload: `len * dim` little-endian f32 or f16
    /// values (or code bytes), row-major, zero-padded to a multiple of 4 bytes (f16 rows then read as
    /// packed u32 pairs, low half first). Starts 64-byte aligned in the mapping.
    pub fn embedding_bytes(&self) -> &[u8] {
        &self.map[self.embeddings.clone()]
    }

    /// Row `i`'s embedding as f32 (f16 values widened exactly). Panics if `i >= len()`.
    pub fn embedding(&self, i: usize) -> Vec<f32> {
        assert!(i < self.len, "row {i} out of range ({} rows)", self.len);
        self.embeddings_f32_rows(i..i + 1)
    }

    /// Every embedding as f32, row-major (`len * dim` values).
    pub fn embeddings_f32(&self) -> Vec<f32> {
        self.embeddings_f32_rows(0..self.len)
    }

    /// Rows `rows` of the embeddings as f32, row-major. Panics if the range is out of
    /// bounds.
    pub fn embeddings_f32_rows(&self, rows: Range<usize>) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * self.dim);
        self.for_each_value(rows, |_, x| out.push(x));
        out
    }

    /// The embedding distance of `query` and row `i` (`sum((query - row)^2)`, or for
    /// codes the places that differ), read in place, in index order: for two rows'
    /// embeddings the value is the same either way round.
    pub fn distance(&self, i: usize, query: &[f32]) -> f32 {
        let mut sum = 0.0;
        match self.precision() {
            Precision::Codes => {
                self.for_each_value(i..i + 1, |k, x| sum += f32::from(u8::from(query[k] != x)))
            }
            Precision::F16 | Precision::F32 => {
                self.for_each_value(i..i + 1, |k, x| sum += (query[k] - x) * (query[k] - x))
            }
        }
        sum
    }

    /// `f(k, value)` for the values of rows `rows` in order (f16 widened exactly), `k`
    /// counting from 0. Panics if the range is out of bounds.
    fn for_each_value(&self, rows: Range<usize>, mut f: impl FnMut(usize, f32)) {
        assert!(
            rows.start <= rows.end && rows.end <= self.len,
            "rows {rows:?} out of range ({} rows)",
            self.len
        );
        let bytes = self.precision().bytes();
        let start = self.embeddings.start + rows.start * self.dim * bytes;
        let end = self.embeddings.start + rows.end * self.dim * bytes;
        let raw = &self.map[start..end];
        match self.precision() {
            Precision::Codes => raw
                .iter()
                .enumerate()
                .for_each(|(k, &x)| f(k, f32::from(x))),
            Precision::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .enumerate()
                .for_each(|(k, x)| f(k, x)),
            Precision::F16 => raw
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .enumerate()
                .for_each(|(k, x)| f(k, x)),
        }
    }

    /// Row `i`'s string, in full. Panics if `i >= len()`.
    pub fn string(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "row {i} out of range ({} rows)", self.len);
        // Checked by open(): 0 <= off[i] <= off[i + 1] <= strings_size.
        let a = u64_at(&self.map, self.offsets_at + 8 * i) as usize;
        let b = u64_at(&self.map, self.offsets_at + 8 * (i + 1)) as usize;
        &self.map[self.strings_at + a..self.strings_at + b]
    }

    /// Row `i`'s 1-based source line number. Panics if `i >= len()`.
    pub fn line(&self, i: usize) -> u64 {
        assert!(i < self.len, "row {i} out of range ({} rows)", self.len);
        u64_at(&self.map, self.lines_at + 8 * i)
    }
}
