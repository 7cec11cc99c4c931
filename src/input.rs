//! The input-line rules of CONTRACTS.md ("Input strings"), shared by `embed`, `query`
//! and `train --corpus`:
//!
//! - one string per line; a line ends at `\n`, and one `\r` right before it is part of
//!   the line ending (a lone `\r` anywhere else, including at the very end of a file
//!   without a final newline, is an ordinary control character);
//! - a final newline does not add a row, a file without one loses nothing;
//! - an empty line is a valid, empty string;
//! - a non-ASCII line (any byte >= 128) is an error naming the source and line number,
//!   unless [`NonAscii::Skip`] (the line is dropped and counted) or
//!   [`NonAscii::Replace`] (each non-ASCII character becomes `?`) says otherwise;
//! - control characters and `\0` are ordinary input;
//! - a line longer than [`MAX_LEN`] characters is kept in full (for re-ranking and
//!   output) but cut to [`MAX_LEN`] by [`tokenize`], and counted in one warning at the
//!   end ([`InputStats::warnings`]).
//!
//! Reading is streaming: [`LineReader`] holds one line (or one batch) at a time, so a
//! corpus of any size never sits in memory at once.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::io::io_reason;

pub use crate::model::params::MAX_LEN;

/// The largest character code the model knows; every byte `c` maps to `min(c, MAX_CHAR)`.
pub const MAX_CHAR: u8 = 127;

/// The name used for standard input in messages.
pub const STDIN_NAME: &str = "<stdin>";

/// What to do with a line (or query) that holds a byte >= 128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum NonAscii {
    /// Stop with an error naming the file and line number.
    #[default]
    Error,
    /// Drop the line (it gets no row) and count it.
    Skip,
    /// Replace each non-ASCII character with `?` (a multi-byte UTF-8 character becomes
    /// one `?`; each byte that is not valid UTF-8 becomes one `?`).
    Replace,
    /// Accept any valid UTF-8 and stop at invalid UTF-8: the rule of models that read any
    /// alphabet (CNN-ED), chosen by the model rather than by a flag.
    #[cfg_attr(feature = "cli", value(skip))]
    Utf8,
}

impl NonAscii {
    /// The rule for `model`: [`NonAscii::Utf8`] for a model that reads any alphabet (an
    /// error if `--non-ascii` asked for something else), else `self`.
    pub fn for_model(self, model: &crate::model::Model) -> Result<NonAscii> {
        match (model.reads_unicode(), self) {
            (false, rule) => Ok(rule),
            (true, NonAscii::Error | NonAscii::Utf8) => Ok(NonAscii::Utf8),
            (true, _) => bail!(
                "--non-ascii does not apply to {} ({}), which reads any UTF-8",
                model.source(),
                model.arch_name()
            ),
        }
    }

    /// What to tell a user whose line broke this rule.
    fn hint(self) -> &'static str {
        match self {
            NonAscii::Utf8 => "this model reads any UTF-8; fix or drop the line",
            _ => {
                "use --non-ascii skip|replace to skip such lines or replace the characters with '?'"
            }
        }
    }
}

/// One accepted input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// 1-based line number in the source (skipped lines still count).
    pub number: u64,
    /// The full line without its line ending, pure ASCII (after `--non-ascii replace`),
    /// not cut to [`MAX_LEN`].
    pub text: Vec<u8>,
}

/// What reading a source found; reported once at the end with [`InputStats::warnings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputStats {
    /// Source lines read (accepted plus skipped).
    pub read: u64,
    /// Accepted lines (rows).
    pub lines: u64,
    /// Lines dropped by `--non-ascii skip`.
    pub skipped: u64,
    /// Lines in which `--non-ascii replace` replaced at least one character.
    pub replaced: u64,
    /// Accepted lines longer than the model reads (cut for it): [`MAX_LEN`] characters,
    /// or `cut_at` where the reader was told ([`LineReader::cutting_at`]).
    pub cut: u64,
    pub cut_at: Option<usize>,
    /// Source line number of the first skipped / replaced / cut line.
    pub first_skipped: Option<u64>,
    pub first_replaced: Option<u64>,
    pub first_cut: Option<u64>,
}

impl InputStats {
    /// Counts one accepted line (after non-ASCII handling). Under [`NonAscii::Utf8`]
    /// characters are code points, and nothing is counted as cut unless `cut_at` is
    /// set: such a model cuts at its own length, not at [`MAX_LEN`].
    pub fn record_line(&mut self, number: u64, text: &[u8], replaced: bool, mode: NonAscii) {
        self.read += 1;
        self.lines += 1;
        if replaced {
            self.replaced += 1;
            self.first_replaced.get_or_insert(number);
        }
        let cut = match (self.cut_at, mode) {
            (Some(n), NonAscii::Utf8) => String::from_utf8_lossy(text).chars().nth(n).is_some(),
            (Some(n), _) => text.len() > n,
            (None, NonAscii::Utf8) => false,
            (None, _) => text.len() > MAX_LEN,
        };
        if cut {
            self.cut += 1;
            self.first_cut.get_or_insert(number);
        }
    }

    /// Counts one skipped line.
    pub fn record_skipped(&mut self, number: u64) {
        self.read += 1;
        self.skipped += 1;
        self.first_skipped.get_or_insert(number);
    }

    /// Adds another source's counts (e.g. several query files).
    pub fn merge(&mut self, other: &InputStats) {
        self.read += other.read;
        self.lines += other.lines;
        self.skipped += other.skipped;
        self.replaced += other.replaced;
        self.cut += other.cut;
        self.cut_at = self.cut_at.or(other.cut_at);
        self.first_skipped = self.first_skipped.or(other.first_skipped);
        self.first_replaced = self.first_replaced.or(other.first_replaced);
        self.first_cut = self.first_cut.or(other.first_cut);
    }

    /// The end-of-run warnings, one line each, without a `warning: ` prefix; empty when
    /// there is nothing to say. For example
    /// `"3 lines were longer than 80 characters and were cut"`,
    /// `"2 lines contained non-ASCII characters and were skipped"`,
    /// `"1 line contained non-ASCII characters, replaced with '?'"`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cut > 0 {
            out.push(format!(
                "{} {} longer than {} characters and {} cut",
                self.cut,
                lines_were(self.cut),
                self.cut_at.unwrap_or(MAX_LEN),
                if self.cut == 1 { "was" } else { "were" },
            ));
        }
        if self.skipped > 0 {
            out.push(format!(
                "{} {} non-ASCII characters and {} skipped (first: line {})",
                self.skipped,
                lines_contained(self.skipped),
                if self.skipped == 1 { "was" } else { "were" },
                self.first_skipped.unwrap_or(0),
            ));
        }
        if self.replaced > 0 {
            out.push(format!(
                "{} {} non-ASCII characters, replaced with '?' (first: line {})",
                self.replaced,
                lines_contained(self.replaced),
                self.first_replaced.unwrap_or(0),
            ));
        }
        out
    }

    /// The cut warning alone ("N lines were longer than 80 characters and were cut"),
    /// or `None` when no line was cut.
    pub fn cut_warning(&self) -> Option<String> {
        (self.cut > 0).then(|| self.warnings().remove(0))
    }
}

fn lines_were(n: u64) -> &'static str {
    if n == 1 { "line was" } else { "lines were" }
}

fn lines_contained(n: u64) -> &'static str {
    if n == 1 {
        "line contained"
    } else {
        "lines contained"
    }
}

/// The result of applying the non-ASCII rule to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Pure ASCII, possibly after replacement (`replaced` is true when anything changed).
    Accepted { text: Vec<u8>, replaced: bool },
    /// Dropped by [`NonAscii::Skip`].
    Skipped,
}

/// Why a line was refused under [`NonAscii::Error`] (the first non-ASCII character) or
/// [`NonAscii::Utf8`] (the first byte that is not valid UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonAsciiFound {
    /// 1-based character column.
    pub column: usize,
    /// The offending bytes: one valid UTF-8 character, or a single invalid byte.
    pub bytes: Vec<u8>,
}

impl std::fmt::Display for NonAsciiFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hex = self.bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{}0x{b:02x}", if s.is_empty() { "" } else { " " });
            s
        });
        match std::str::from_utf8(&self.bytes) {
            Ok(s) => {
                let c = s.chars().next().unwrap_or('?');
                write!(
                    f,
                    "non-ASCII character {:?} (U+{:04X}, bytes {hex}) at column {}",
                    c, c as u32, self.column
                )
            }
            Err(_) => write!(
                f,
                "non-ASCII byte {hex} (not valid UTF-8) at column {}",
                self.column
            ),
        }
    }
}

/// Finds the first non-ASCII character of `text`, if any.
pub fn find_non_ascii(text: &[u8]) -> Option<NonAsciiFound> {
    let pos = text.iter().position(|&b| b >= 128)?;
    let rest = &text[pos..];
    let bytes = match rest.utf8_chunks().next() {
        Some(chunk) if !chunk.valid().is_empty() => {
            let c = chunk.valid().chars().next().unwrap();
            rest[..c.len_utf8()].to_vec()
        }
        _ => vec![rest[0]],
    };
    Some(NonAsciiFound {
        column: pos + 1,
        bytes,
    })
}

/// Replaces each non-ASCII character with `?`: a valid multi-byte UTF-8 character
/// becomes one `?`, each byte that is not part of valid UTF-8 becomes one `?`.
/// Returns the new text and whether anything was replaced.
pub fn replace_non_ascii(text: &[u8]) -> (Vec<u8>, bool) {
    if text.is_ascii() {
        return (text.to_vec(), false);
    }
    let mut out = Vec::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if c.is_ascii() { c as u8 } else { b'?' });
        }
        out.extend(std::iter::repeat_n(b'?', chunk.invalid().len()));
    }
    (out, true)
}

/// Applies the non-ASCII rule to one line's bytes (line ending already removed).
/// `Err` only under [`NonAscii::Error`], with the first offending character.
pub fn check_text(text: Vec<u8>, mode: NonAscii) -> std::result::Result<Checked, NonAsciiFound> {
    if text.is_ascii() {
        return Ok(Checked::Accepted {
            text,
            replaced: false,
        });
    }
    match mode {
        NonAscii::Error => Err(find_non_ascii(&text).expect("text is not ASCII")),
        NonAscii::Utf8 => match std::str::from_utf8(&text) {
            Ok(_) => Ok(Checked::Accepted {
                text,
                replaced: false,
            }),
            Err(e) => {
                let valid = &text[..e.valid_up_to()];
                Err(NonAsciiFound {
                    column: String::from_utf8_lossy(valid).chars().count() + 1,
                    bytes: vec![text[e.valid_up_to()]],
                })
            }
        },
        NonAscii::Skip => Ok(Checked::Skipped),
        NonAscii::Replace => {
            let (text, replaced) = replace_non_ascii(&text);
            Ok(Checked::Accepted { text, replaced })
        }
    }
}

/// An error unless every one of `texts` is ASCII, naming the first that is not by
/// `label` of its position: the model reads ASCII only, and bytes past 127 would all
/// look alike to it.
pub fn require_ascii<T: AsRef<[u8]>>(texts: &[T], label: impl Fn(usize) -> String) -> Result<()> {
    for (i, text) in texts.iter().enumerate() {
        if let Some(found) = find_non_ascii(text.as_ref()) {
            bail!(
                "{} {:?}: {found}; the model reads ASCII only: skip such strings or replace \
                 the characters first (the commands' --non-ascii skip|replace)",
                label(i),
                String::from_utf8_lossy(text.as_ref())
            );
        }
    }
    Ok(())
}

/// An error unless every one of `texts` is valid UTF-8 (what a model that reads any
/// alphabet, CNN-ED, takes), naming the first that is not by `label` of its position.
pub fn require_utf8<T: AsRef<[u8]>>(texts: &[T], label: impl Fn(usize) -> String) -> Result<()> {
    for (i, text) in texts.iter().enumerate() {
        if let Err(e) = std::str::from_utf8(text.as_ref()) {
            bail!(
                "{} {:?}: not valid UTF-8 (byte {} of the string)",
                label(i),
                String::from_utf8_lossy(text.as_ref()),
                e.valid_up_to() + 1
            );
        }
    }
    Ok(())
}

/// Checks one query given on the command line with the same rules as an input line.
/// `label` names it in the error (e.g. `query 2`). `Ok(None)`: skipped
/// ([`NonAscii::Skip`]). The returned text is pure ASCII; it is not cut (see
/// [`tokenize`]), and may hold any ASCII byte, control characters included.
pub fn check_query(text: &[u8], label: &str, mode: NonAscii) -> Result<Option<Vec<u8>>> {
    match check_text(text.to_vec(), mode) {
        Ok(Checked::Accepted { text, .. }) => Ok(Some(text)),
        Ok(Checked::Skipped) => Ok(None),
        Err(found) => Err(anyhow!(
            "{label} {:?}: {found}; {}",
            String::from_utf8_lossy(text),
            mode.hint()
        )),
    }
}

/// The name of an input path in messages: `<stdin>` for `-`, else the path.
pub fn source_name(path: &Path) -> String {
    if is_stdin(path) {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Opens an input for reading: `-` is standard input, anything else a file. A missing,
/// unreadable or directory path is an error naming the path.
pub fn open_input(path: &Path) -> Result<Box<dyn BufRead>> {
    if is_stdin(path) {
        return Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            io::stdin().lock(),
        )));
    }
    let file = File::open(path).map_err(|e| {
        anyhow!(
            "cannot open input file {}: {}",
            path.display(),
            io_reason(&e)
        )
    })?;
    match file.metadata() {
        Ok(m) if m.is_dir() => {
            return Err(anyhow!(
                "cannot open input file {}: it is a directory",
                path.display()
            ));
        }
        _ => {}
    }
    Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
}

/// Streams the accepted lines of one source, applying every input rule.
///
/// ```no_run
/// # use megashtein_gpu::input::*;
/// # fn main() -> anyhow::Result<()> {
/// let mut reader = LineReader::open(std::path::Path::new("corpus.txt"), NonAscii::Error)?;
/// let mut batch = Vec::new();
/// while reader.next_batch(4096, &mut batch)? > 0 {
///     // embed `batch`
/// }
/// for w in reader.stats().warnings() {
///     eprintln!("warning: {w}");
/// }
/// # Ok(()) }
/// ```
pub struct LineReader<R> {
    src: R,
    name: String,
    mode: NonAscii,
    number: u64,
    stats: InputStats,
    buf: Vec<u8>,
    done: bool,
}

impl LineReader<Box<dyn BufRead>> {
    /// Opens `path` (`-` for stdin) with [`open_input`].
    pub fn open(path: &Path, mode: NonAscii) -> Result<Self> {
        Ok(LineReader::new(open_input(path)?, source_name(path), mode))
    }
}

/// Every line of `path` as a string: any valid UTF-8, as CNN-ED models read (invalid
/// UTF-8 is an error naming the file and line).
pub fn read_utf8_lines(path: &Path) -> Result<Vec<String>> {
    let (lines, _) = LineReader::open(path, NonAscii::Utf8)?.read_all()?;
    Ok(lines
        .into_iter()
        .map(|l| String::from_utf8(l.text).expect("the UTF-8 rule checked every line"))
        .collect())
}

impl<R: BufRead> LineReader<R> {
    /// Reads from `src`; `name` (a file path or `<stdin>`) names it in errors.
    pub fn new(src: R, name: impl Into<String>, mode: NonAscii) -> Self {
        LineReader {
            src,
            name: name.into(),
            mode,
            number: 0,
            stats: InputStats::default(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// Count the lines longer than `chars` characters as cut (the model's length,
    /// [`crate::model::Model::reads_up_to`]) instead of longer than [`MAX_LEN`].
    pub fn cutting_at(mut self, chars: usize) -> Self {
        self.stats.cut_at = Some(chars);
        self
    }

    /// The source's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts so far (complete once [`LineReader::next_line`] returned `None`).
    pub fn stats(&self) -> &InputStats {
        &self.stats
    }

    /// The next accepted line, or `None` at the end of the input. After an error the
    /// reader is finished.
    pub fn next_line(&mut self) -> Result<Option<Line>> {
        while !self.done {
            self.buf.clear();
            let n = match self.src.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Err(anyhow!(
                        "cannot read {} after line {}: {}",
                        self.name,
                        self.number,
                        io_reason(&e)
                    ));
                }
            };
            if n == 0 {
                self.done = true;
                break;
            }
            self.number += 1;
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
            }
            let text = std::mem::take(&mut self.buf);
            match check_text(text, self.mode) {
                Ok(Checked::Accepted { text, replaced }) => {
                    self.stats
                        .record_line(self.number, &text, replaced, self.mode);
                    return Ok(Some(Line {
                        number: self.number,
                        text,
                    }));
                }
                Ok(Checked::Skipped) => self.stats.record_skipped(self.number),
                Err(found) => {
                    self.done = true;
                    return Err(anyhow!(
                        "{}:{}: {found}; {}",
                        self.name,
                        self.number,
                        self.mode.hint()
                    ));
                }
            }
        }
        Ok(None)
    }

    /// Clears `batch` and fills it with up to `max` (at least 1) accepted lines.
    /// Returns how many; 0 means the input is exhausted.
    pub fn next_batch(&mut self, max: usize, batch: &mut Vec<Line>) -> Result<usize> {
        batch.clear();
        let max = max.max(1);
        while batch.len() < max {
            match self.next_line()? {
                Some(line) => batch.push(line),
                None => break,
            }
        }
        Ok(batch.len())
    }

    /// Iterates over batches of up to `max` lines; see [`Batches`].
    pub fn batches(self, max: usize) -> Batches<R> {
        Batches { reader: self, max }
    }

    /// Reads the rest of the input into memory. Only for small inputs (query files).
    pub fn read_all(mut self) -> Result<(Vec<Line>, InputStats)> {
        let mut lines = Vec::new();
        while let Some(line) = self.next_line()? {
            lines.push(line);
        }
        Ok((lines, self.stats))
    }
}

impl<R: BufRead> Iterator for LineReader<R> {
    type Item = Result<Line>;

    fn next(&mut self) -> Option<Result<Line>> {
        self.next_line().transpose()
    }
}

/// An iterator over batches of up to `max` accepted lines (never empty).
pub struct Batches<R> {
    reader: LineReader<R>,
    max: usize,
}

impl<R: BufRead> Batches<R> {
    /// Counts so far; complete once the iterator returned `None`.
    pub fn stats(&self) -> &InputStats {
        &self.reader.stats
    }

    pub fn reader(&self) -> &LineReader<R> {
        &self.reader
    }
}

impl<R: BufRead> Iterator for Batches<R> {
    type Item = Result<Vec<Line>>;

    fn next(&mut self) -> Option<Result<Vec<Line>>> {
        let mut batch = Vec::new();
        match self.reader.next_batch(self.max, &mut batch) {
            Ok(0) => None,
            Ok(_) => Some(Ok(batch)),
            Err(e) => Some(Err(e)),
        }
    }
}

/// Streams `path` (`-` for stdin) in batches of up to `batch_size` lines, calling `f` on
/// each (never with an empty batch). Returns the counts for the end-of-run warnings.
pub fn read_batches(
    path: &Path,
    mode: NonAscii,
    batch_size: usize,
    mut f: impl FnMut(&[Line]) -> Result<()>,
) -> Result<InputStats> {
    let mut reader = LineReader::open(path, mode)?;
    let mut batch = Vec::new();
    while reader.next_batch(batch_size, &mut batch)? > 0 {
        f(&batch)?;
    }
    Ok(*reader.stats())
}

/// Reads a whole (small) input, e.g. a query file. Not for corpora: use [`LineReader`].
pub fn read_lines(path: &Path, mode: NonAscii) -> Result<(Vec<Line>, InputStats)> {
    LineReader::open(path, mode)?.read_all()
}

/// The model's input for one string: cut to [`MAX_LEN`], each byte `c` as
/// `min(c, 127)`, padded with 0. Returns true when the text was cut.
pub fn tokenize(text: &[u8], out: &mut [u8; MAX_LEN]) -> bool {
    let n = text.len().min(MAX_LEN);
    for (o, &c) in out[..n].iter_mut().zip(text) {
        *o = c.min(MAX_CHAR);
    }
    out[n..].fill(0);
    text.len() > MAX_LEN
}

/// Appends [`MAX_LEN`] tokens per text to `out` (row-major `[texts, MAX_LEN]`), ready
/// for upload as one batch.
pub fn tokenize_batch<'a>(texts: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for text in texts {
        let start = out.len();
        out.resize(start + MAX_LEN, 0);
        let row: &mut [u8; MAX_LEN] = (&mut out[start..]).try_into().unwrap();
        tokenize(text, row);
    }
}

/// Read `path` (`-` for stdin) on a thread and hand `answer` batches of the accepted
/// lines that have arrived: it waits for one line, then takes the ones already read, up
/// to `max`. A pipe fed one line at a time gets each line answered as it comes; a file
/// comes in full batches. Returns the input's statistics.
pub fn stream_batches(
    path: &Path,
    mode: NonAscii,
    max: usize,
    mut answer: impl FnMut(&[Line]) -> Result<()>,
) -> Result<InputStats> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Line>>(max.max(1) * 2);
    let path = path.to_path_buf();
    let reader = std::thread::spawn(move || -> Result<InputStats> {
        let mut lines = LineReader::open(&path, mode)?;
        while let Some(line) = lines.next_line().transpose() {
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                break;
            }
        }
        Ok(*lines.stats())
    });
    let mut batch = Vec::with_capacity(max);
    while let Ok(first) = rx.recv() {
        batch.clear();
        batch.push(first?);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(line) => batch.push(line?),
                Err(_) => break,
            }
        }
        answer(&batch)?;
    }
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the input reader thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(data: &[u8], mode: NonAscii) -> Result<(Vec<Line>, InputStats)> {
        LineReader::new(Cursor::new(data.to_vec()), "input.txt", mode).read_all()
    }

    fn texts(data: &[u8], mode: NonAscii) -> Vec<Vec<u8>> {
        read(data, mode)
            .unwrap()
            .0
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    fn v(items: &[&str]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn line_endings() {
        assert_eq!(texts(b"a\nb\n", NonAscii::Error), v(&["a", "b"]));
        assert_eq!(texts(b"a\nb", NonAscii::Error), v(&["a", "b"]));
        assert_eq!(texts(b"a\r\nb\r\n", NonAscii::Error), v(&["a", "b"]));
        assert_eq!(texts(b"a\r\nb", NonAscii::Error), v(&["a", "b"]));
        // Only one \r belongs to the ending; a lone \r elsewhere is ordinary input.
        assert_eq!(
            texts(b"a\r\r\nb\rc\n", NonAscii::Error),
            v(&["a\r", "b\rc"])
        );
        assert_eq!(texts(b"a\r", NonAscii::Error), v(&["a\r"]));
        assert_eq!(texts(b"\r\n", NonAscii::Error), v(&[""]));
    }

    #[test]
    fn empty_lines_and_files() {
        assert_eq!(texts(b"", NonAscii::Error), Vec::<Vec<u8>>::new());
        assert_eq!(texts(b"\n", NonAscii::Error), v(&[""]));
        assert_eq!(texts(b"\n\n", NonAscii::Error), v(&["", ""]));
        assert_eq!(
            texts(b"a\n\nb\n\n", NonAscii::Error),
            v(&["a", "", "b", ""])
        );
        let (lines, stats) = read(b"a\n\nb", NonAscii::Error).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(stats.lines, 3);
        assert!(stats.warnings().is_empty());
    }

    #[test]
    fn control_characters_are_input() {
        let data = b"a\0b\n\0\n\t\x1b\x7f\n";
        assert_eq!(
            texts(data, NonAscii::Error),
            vec![b"a\0b".to_vec(), b"\0".to_vec(), b"\t\x1b\x7f".to_vec()]
        );
        let mut t = [9u8; MAX_LEN];
        tokenize(b"\0\x01\x7f", &mut t);
        assert_eq!(&t[..4], &[0, 1, 127, 0]);
    }

    #[test]
    fn non_ascii_error() {
        let err = read("ok\ncafé\n".as_bytes(), NonAscii::Error).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("input.txt:2: non-ASCII character"), "{msg}");
        assert!(msg.contains("0xc3 0xa9"), "{msg}");
        assert!(msg.contains("at column 4"), "{msg}");
        assert!(msg.contains("--non-ascii skip|replace"), "{msg}");

        let err = read(b"a\nb\nxy\xff\n", NonAscii::Error).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("input.txt:3: non-ASCII byte 0xff (not valid UTF-8) at column 3"),
            "{msg}"
        );
    }

    #[test]
    fn non_ascii_skip() {
        let data = "a\ncafé\nb\n\u{20ac}\nc".as_bytes();
        let (lines, stats) = read(data, NonAscii::Skip).unwrap();
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.number, l.text.clone()))
                .collect::<Vec<_>>(),
            vec![(1, b"a".to_vec()), (3, b"b".to_vec()), (5, b"c".to_vec())]
        );
        assert_eq!(stats.skipped, 2);
        assert_eq!(stats.lines, 3);
        assert_eq!(stats.read, 5);
        assert_eq!(stats.first_skipped, Some(2));
        assert_eq!(
            stats.warnings(),
            vec!["2 lines contained non-ASCII characters and were skipped (first: line 2)"]
        );
    }

    #[test]
    fn non_ascii_replace() {
        // 2-, 3- and 4-byte characters each become one '?'.
        assert_eq!(
            texts("café €1 😀!\n".as_bytes(), NonAscii::Replace),
            v(&["caf? ?1 ?!"])
        );
        // Each invalid byte becomes '?', valid text around it is kept.
        assert_eq!(texts(b"a\xffb\xfe\xfdc", NonAscii::Replace), v(&["a?b??c"]));
        // A truncated multi-byte sequence: each of its bytes is invalid.
        assert_eq!(texts(b"x\xe2\x82", NonAscii::Replace), v(&["x??"]));
        // A lone continuation byte.
        assert_eq!(texts(b"\x80z", NonAscii::Replace), v(&["?z"]));
        let (_, stats) = read("a\né\nb\né\n".as_bytes(), NonAscii::Replace).unwrap();
        assert_eq!(stats.replaced, 2);
        assert_eq!(stats.first_replaced, Some(2));
        assert_eq!(stats.lines, 4);
    }

    #[test]
    fn long_lines_are_counted_not_cut() {
        let long = "x".repeat(81);
        let exact = "y".repeat(80);
        let data = format!("{long}\n{exact}\n{long}{long}\nshort");
        let (lines, stats) = read(data.as_bytes(), NonAscii::Error).unwrap();
        assert_eq!(lines[0].text.len(), 81, "the full string is kept");
        assert_eq!(lines[2].text.len(), 162);
        assert_eq!(stats.cut, 2);
        assert_eq!(stats.first_cut, Some(1));
        assert_eq!(
            stats.warnings(),
            vec!["2 lines were longer than 80 characters and were cut"]
        );
        let (_, stats) = read(long.as_bytes(), NonAscii::Error).unwrap();
        assert_eq!(
            stats.cut_warning().unwrap(),
            "1 line was longer than 80 characters and was cut"
        );
        // A replaced line is measured after replacement: 80 '?' from 80 two-byte chars.
        let (_, stats) = read("é".repeat(80).as_bytes(), NonAscii::Replace).unwrap();
        assert_eq!(stats.cut, 0);
    }

    #[test]
    fn a_model_that_reads_m_characters_counts_lines_past_m_as_cut() {
        // Code points under the UTF-8 rule: "ééé" is 3 characters in 6 bytes.
        let data = "ééé\néééé\nab\nabcd\n".as_bytes();
        let reader = LineReader::new(Cursor::new(data.to_vec()), "input.txt", NonAscii::Utf8);
        let (_, stats) = reader.cutting_at(3).read_all().unwrap();
        assert_eq!((stats.cut, stats.first_cut), (2, Some(2)));
        assert_eq!(
            stats.warnings(),
            vec!["2 lines were longer than 3 characters and were cut"]
        );
        // Without a length, lines under the UTF-8 rule are not counted.
        assert_eq!(read(data, NonAscii::Utf8).unwrap().1.cut, 0);
    }

    #[test]
    fn tokenize_cuts_and_pads() {
        let mut t = [7u8; MAX_LEN];
        assert!(!tokenize(b"", &mut t));
        assert!(t.iter().all(|&c| c == 0));
        assert!(!tokenize(b"AB", &mut t));
        assert_eq!(&t[..3], &[65, 66, 0]);
        let long: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        assert!(tokenize(&long, &mut t));
        assert_eq!(&t[..], &long[..80]);
        // Bytes >= 128 never reach tokenize through the reader, but are clamped anyway.
        tokenize(&[200, 255, 127], &mut t);
        assert_eq!(&t[..4], &[127, 127, 127, 0]);

        let mut out = vec![];
        tokenize_batch([b"a".as_slice(), b"", b"bc"], &mut out);
        assert_eq!(out.len(), 3 * MAX_LEN);
        assert_eq!(out[0], 97);
        assert_eq!(out[MAX_LEN], 0);
        assert_eq!(&out[2 * MAX_LEN..2 * MAX_LEN + 3], &[98, 99, 0]);
    }

    #[test]
    fn batches() {
        let data: String = (0..10).map(|i| format!("s{i}\n")).collect();
        let mut reader = LineReader::new(Cursor::new(data.clone()), "x", NonAscii::Error);
        let mut batch = Vec::new();
        let mut sizes = vec![];
        while reader.next_batch(4, &mut batch).unwrap() > 0 {
            sizes.push(batch.len());
        }
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(reader.stats().lines, 10);
        assert_eq!(reader.next_batch(4, &mut batch).unwrap(), 0);

        let reader = LineReader::new(Cursor::new(data), "x", NonAscii::Error);
        let all: Vec<Line> = reader
            .batches(3)
            .collect::<Result<Vec<_>>>()
            .unwrap()
            .concat();
        assert_eq!(all.len(), 10);
        assert_eq!(all[9].number, 10);
        assert_eq!(all[9].text, b"s9");

        let empty = LineReader::new(Cursor::new(""), "x", NonAscii::Error);
        assert_eq!(empty.batches(3).count(), 0);
    }

    #[test]
    fn batch_error_stops() {
        let data = b"a\nb\n\xc3\xa9\nc\n";
        let mut it = LineReader::new(Cursor::new(data.to_vec()), "f", NonAscii::Error).batches(2);
        assert_eq!(it.next().unwrap().unwrap().len(), 2);
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn files_and_stdin_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, b"a\r\nb\xff\n").unwrap();
        let err = read_lines(&path, NonAscii::Error).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:2: non-ASCII byte 0xff", path.display())),
            "{err}"
        );
        let (lines, _) = read_lines(&path, NonAscii::Replace).unwrap();
        assert_eq!(lines[1].text, b"b?");

        let mut seen = vec![];
        let stats = read_batches(&path, NonAscii::Skip, 10, |b| {
            seen.extend(b.iter().map(|l| l.text.clone()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, v(&["a"]));
        assert_eq!(stats.skipped, 1);

        let missing = dir.path().join("nope.txt");
        let err = open_input(&missing).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "cannot open input file {}: No such file or directory",
                missing.display()
            )
        );
        let err = open_input(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert_eq!(source_name(Path::new("-")), "<stdin>");
        assert_eq!(source_name(&path), path.display().to_string());
    }

    #[test]
    fn queries() {
        assert_eq!(
            check_query(b"hello\tx", "query 1", NonAscii::Error).unwrap(),
            Some(b"hello\tx".to_vec())
        );
        assert_eq!(
            check_query(b"", "query 1", NonAscii::Error).unwrap(),
            Some(vec![])
        );
        let err = check_query("naïve".as_bytes(), "query 2", NonAscii::Error)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("query 2 \"naïve\": non-ASCII character 'ï'"),
            "{err}"
        );
        assert!(err.contains("column 3"), "{err}");
        assert_eq!(
            check_query("naïve".as_bytes(), "q", NonAscii::Skip).unwrap(),
            None
        );
        assert_eq!(
            check_query("naïve".as_bytes(), "q", NonAscii::Replace).unwrap(),
            Some(b"na?ve".to_vec())
        );
    }

    #[cfg(feature = "cli")]
    #[test]
    fn value_enum_names() {
        use clap::ValueEnum;
        let names: Vec<_> = NonAscii::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(names, vec!["error", "skip", "replace"]);
        assert_eq!(NonAscii::default(), NonAscii::Error);
    }
}
