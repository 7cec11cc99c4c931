//! Record output shared by `query`, `join`, `dedup` and `distance`: TSV (no header,
//! strings escaped), CSV (a header line, RFC 4180 quoting) or JSON lines (one object per
//! record, the column names as keys).
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tab-separated, no header; tabs, newlines, carriage returns and backslashes in
    /// strings written as `\t`, `\n`, `\r`, `\\`.
    Tsv,
    /// Comma-separated with a header line; fields quoted when they need it.
    Csv,
    /// One JSON object per line.
    Json,
}

/// Where and how a command writes its records (`join`, `dedup`, `distance`).
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    #[arg(long, value_enum, default_value_t = Format::Tsv)]
    pub format: Format,
    /// Write the records to FILE (atomically) instead of standard output.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
}

impl OutputArgs {
    /// An error when `--output` would replace one of the command's `inputs` (`what`
    /// each is: "index", "corpus"), before any work.
    pub fn refuse_overwriting(&self, inputs: &[(&std::path::Path, &str)]) -> Result<()> {
        match &self.output {
            Some(output) => inputs.iter().try_for_each(|(input, what)| {
                crate::io::refuse_overwriting_input(output, input, what)
            }),
            None => Ok(()),
        }
    }

    /// Run `write` with a [`Table`] of `columns` on the chosen output (see
    /// [`write_output`]).
    pub fn write(
        &self,
        columns: &'static [&'static str],
        write: impl FnOnce(&mut Table<&mut dyn Write>) -> Result<()>,
    ) -> Result<()> {
        write_output(self.output.as_deref(), |out| {
            let mut table = Table::new(out, self.format, columns)?;
            write(&mut table)?;
            table.flush()
        })
    }
}

/// Writes records of fixed columns in one [`Format`].
pub struct Table<W: Write> {
    out: W,
    format: Format,
    columns: &'static [&'static str],
}

impl<W: Write> Table<W> {
    /// A table on `out`; CSV writes its header now, so an empty result still has one.
    pub fn new(mut out: W, format: Format, columns: &'static [&'static str]) -> Result<Self> {
        if format == Format::Csv {
            writeln!(out, "{}", columns.join(",")).context("cannot write output")?;
        }
        Ok(Table {
            out,
            format,
            columns,
        })
    }

    /// One record: a value per column (strings, numbers or null).
    pub fn row(&mut self, values: &[Value]) -> Result<()> {
        debug_assert_eq!(values.len(), self.columns.len());
        let line = match self.format {
            Format::Tsv => join_fields(values, '\t', |s| escape_tsv(s.as_bytes())),
            Format::Csv => join_fields(values, ',', quote_csv),
            // Keys in column order (serde_json's map would sort them).
            Format::Json => {
                let fields: Vec<String> = self
                    .columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| format!("{}:{v}", Value::from(*c)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
        };
        writeln!(self.out, "{line}").context("cannot write output")
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().context("cannot write output")
    }
}

/// Run `write` on `output` (written atomically: complete or absent) or, without one,
/// on standard output, where a closed pipe (`| head`) ends the output quietly. An
/// `output` that is a device or pipe (`/dev/null`, a FIFO) is written in place.
pub fn write_output(
    output: Option<&Path>,
    write: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match output {
        Some(path) if crate::io::is_special_file(path) => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot open output {}: {}",
                        path.display(),
                        crate::io::io_reason(&e)
                    )
                })?;
            let mut out = BufWriter::new(file);
            write(&mut out)?;
            Ok(out.flush()?)
        }
        Some(path) => crate::io::write_atomic(path, |out| write(out)),
        None => {
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            match write(&mut out).and_then(|()| Ok(out.flush()?)) {
                Err(e) if is_broken_pipe(&e) => Ok(()),
                other => other,
            }
        }
    }
}

/// Whether `err` is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn join_fields(values: &[Value], separator: char, text: impl Fn(&str) -> String) -> String {
    let mut line = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            line.push(separator);
        }
        match value {
            Value::String(s) => line.push_str(&text(s)),
            Value::Null => line.push('-'),
            other => line.push_str(&other.to_string()),
        }
    }
    line
}

/// TSV escapes: backslash, tab and newline (and carriage return) as `\\`, `\t`, `\n`, `\r`.
pub fn escape_tsv(text: &[u8]) -> String {
    let mut s = String::with_capacity(text.len());
    for c in String::from_utf8_lossy(text).chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\t' => s.push_str("\\t"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            _ => s.push(c),
        }
    }
    s
}

/// RFC 4180: a field holding a comma, quote, CR or LF is quoted, quotes doubled. A field
/// starting or ending with a space is quoted too, so spreadsheets keep it.
fn quote_csv(field: &str) -> String {
    let needs =
        field.contains([',', '"', '\n', '\r']) || field.starts_with(' ') || field.ends_with(' ');
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// An f32 as the shortest decimal that reads back as the same f32 (`1.3`, not the
/// f64 widening `1.2999999523162842`); null when not finite.
pub fn f32_value(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Index strings and queries are ASCII, or UTF-8 for models that read any alphabet
/// (CNN-ED), by construction.
pub fn as_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: Format, rows: &[Vec<Value>]) -> String {
        let mut out = Vec::new();
        {
            let mut table = Table::new(&mut out, format, &["id", "string", "distance"]).unwrap();
            for row in rows {
                table.row(row).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_escape_and_quote() {
        let rows = vec![
            vec![json!(0), json!("a,\"b\"\tc\\"), json!(1)],
            vec![json!(1), json!(" x"), Value::Null],
        ];
        assert_eq!(
            render(Format::Tsv, &rows),
            "0\ta,\"b\"\\tc\\\\\t1\n1\t x\t-\n"
        );
        assert_eq!(
            render(Format::Csv, &rows),
            "id,string,distance\n0,\"a,\"\"b\"\"\tc\\\",1\n1,\" x\",-\n"
        );
        assert_eq!(
            render(Format::Json, &rows[..1]),
            "{\"id\":0,\"string\":\"a,\\\"b\\\"\\tc\\\\\",\"distance\":1}\n"
        );
        assert_eq!(render(Format::Csv, &[]), "id,string,distance\n");
        assert_eq!(f32_value(1.3).to_string(), "1.3");
        assert_eq!(f32_value(f32::NAN), Value::Null);
    }
}
