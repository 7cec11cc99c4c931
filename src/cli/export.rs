//! `megashtein-gpu export`: an index as plain files other tools read: `vectors.npy`,
//! `strings.tsv` and `manifest.json`, written into a folder that appears complete or
//! not at all.
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

use super::table::{escape_tsv, f32_value};
use crate::io::{NpyWriter, Tracked, write_atomic};
use crate::model::{Metric, cgk, cnn_ed, weights};
use crate::search::index::Index;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Index made by `megashtein-gpu embed`.
    #[arg(long)]
    pub index: PathBuf,
    /// Folder to create (it must not exist, or be empty).
    #[arg(long, short)]
    pub output: PathBuf,
}

/// Rows converted and written per step, so memory stays bounded.
const ROWS_PER_STEP: usize = 65_536;

pub fn run(args: &Args) -> Result<()> {
    let index = Index::open(&args.index)?;
    let dest = &args.output;
    if dest.exists() && std::fs::read_dir(dest).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "cannot export to {}: it exists and is not an empty folder",
            dest.display()
        );
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| anyhow!("cannot export to {}: not a folder name", dest.display()))?;
    // Filled beside the destination, then renamed into place in one step.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", name.to_string_lossy()))
        .tempdir_in(parent)
        .map_err(|e| anyhow!("cannot create a folder beside {}: {e}", dest.display()))?;
    let _tracked = Tracked::new(staging.path());
    write_files(&index, staging.path())?;
    let staged = staging.keep();
    std::fs::rename(&staged, dest).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        anyhow!("cannot move the export into {}: {e}", dest.display())
    })?;
    eprintln!(
        "exported {} rows of {} values to {} (vectors.npy, strings.tsv, manifest.json)",
        index.len(),
        index.dim(),
        dest.display()
    );
    Ok(())
}

fn write_files(index: &Index, dir: &Path) -> Result<()> {
    let mut vectors = NpyWriter::create(&dir.join("vectors.npy"), index.dim())?;
    for start in (0..index.len()).step_by(ROWS_PER_STEP) {
        let end = (start + ROWS_PER_STEP).min(index.len());
        vectors.write_rows(&index.embeddings_f32_rows(start..end))?;
    }
    vectors.finish()?;
    write_atomic(&dir.join("strings.tsv"), |out| {
        for row in 0..index.len() {
            let string = escape_tsv(index.string(row));
            writeln!(out, "{row}\t{}\t{string}", index.line(row))?;
        }
        Ok(())
    })?;
    let estimator = index.estimator();
    let scale = f32_value(estimator.scale);
    let (architecture, estimator) = match estimator.metric {
        Metric::SquaredEuclidean => (
            weights::ARCH,
            Estimator {
                metric: Metric::SquaredEuclidean.name(),
                formula: "estimate = scale * sum((a - b)^2)",
                scale,
                divisor: None,
                exponent: None,
                offset: None,
            },
        ),
        Metric::Hamming => (
            cgk::ARCH,
            Estimator {
                metric: Metric::Hamming.name(),
                formula: "estimate = scale * (count(a != b) / divisor)^exponent",
                scale,
                divisor: Some(f32_value(estimator.divisor)),
                exponent: Some(f32_value(estimator.exponent)),
                offset: None,
            },
        ),
        Metric::Euclidean => (
            cnn_ed::ARCH,
            Estimator {
                metric: Metric::Euclidean.name(),
                formula: "estimate = max(0, scale * sqrt(sum((a - b)^2)) + offset)",
                scale,
                divisor: None,
                exponent: None,
                offset: Some(f32_value(estimator.offset)),
            },
        ),
    };
    let manifest = Manifest {
        model_fingerprint: index.fingerprint(),
        architecture,
        dim: index.dim(),
        rows: index.len(),
        precision: index.precision().name(),
        estimator,
        files: Files {
            vectors: "float32 [rows, dim], row i = index row i",
            strings: "id <TAB> 1-based source line <TAB> string; \\t \\n \\r \\\\ escaped",
        },
    };
    write_atomic(&dir.join("manifest.json"), |out| {
        serde_json::to_writer_pretty(&mut *out, &manifest)?;
        writeln!(out)?;
        Ok(())
    })
}

/// `manifest.json`. Structs, not `json!`, so the keys keep the order written here
/// (serde_json's map would sort them).
#[derive(serde::Serialize)]
struct Manifest<'a> {
    model_fingerprint: &'a str,
    architecture: &'static str,
    dim: usize,
    rows: usize,
    precision: &'static str,
    estimator: Estimator,
    files: Files,
}

/// The model's estimator: the coefficients its metric uses, and only those.
#[derive(serde::Serialize)]
struct Estimator {
    metric: &'static str,
    formula: &'static str,
    scale: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    divisor: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exponent: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<serde_json::Value>,
}

#[derive(serde::Serialize)]
struct Files {
    #[serde(rename = "vectors.npy")]
    vectors: &'static str,
    #[serde(rename = "strings.tsv")]
    strings: &'static str,
}
