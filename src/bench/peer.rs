//! The Python peers in `tools/`: find a script, run it, read its JSON lines.
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `tools/NAME` relative to the working directory, else in the source tree this binary
/// was built from.
pub fn find_tool(name: &str) -> Result<PathBuf> {
    [
        PathBuf::from("tools").join(name),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tools")
            .join(name),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .with_context(|| format!("cannot find tools/{name} (run from the repository root)"))
}

/// Run `python tools/SCRIPT ARGS...` and parse every non-empty line of its standard
/// output as one JSON value. Its standard error passes through to ours (progress).
pub fn run_json_lines<I, S>(python: &Path, script: &str, args: I) -> Result<Vec<serde_json::Value>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let script = find_tool(script)?;
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({})",
            python.display(),
            script.display(),
            out.status
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("unexpected output from {}: {line}", script.display()))
        })
        .collect()
}
