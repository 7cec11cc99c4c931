//! The `megashtein-gpu` commands: one module per command, each a thin layer over the
//! library. Every module exposes `Args` (clap) and `run(&Args) -> anyhow::Result<()>`.
pub mod bench;
pub mod dedup;
pub mod devices;
pub mod distance;
pub mod embed;
pub mod eval;
pub mod export;
pub mod import;
pub mod join;
pub mod make_cgk;
pub mod query;
pub mod table;
pub mod train;
pub mod train_cnn_ed;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use crate::gpu::{BackendChoice, Gpu, GpuOptions};

#[derive(Parser, Debug)]
#[command(
    name = "megashtein-gpu",
    version,
    about = "Fuzzy string search with a learned edit-distance embedding on the GPU"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List every GPU adapter wgpu can see, with its limits and features.
    Devices(devices::Args),
    /// Convert a PyTorch state_dict checkpoint (.pth) to safetensors, without Python.
    Import(import::Args),
    /// Embed a corpus (one string per line) into a search index or a .npy array.
    Embed(embed::Args),
    /// Train or fine-tune a model on the GPU (synthetic pairs or your own corpus).
    Train(Box<train::Args>),
    /// Fuzzy lookup in an index: nearest by embedding, re-ranked by exact distance.
    Query(query::Args),
    /// Every pair of strings within an exact edit distance, in one index or between two.
    Join(join::Args),
    /// Group near-duplicate lines: each line with its cluster id and representative.
    Dedup(dedup::Args),
    /// The model's estimate beside the exact edit distance of two strings or of pairs.
    Distance(distance::Args),
    /// Write an index as vectors.npy, strings.tsv and manifest.json for other tools.
    Export(export::Args),
    /// Accuracy report: the papers' metrics with plots, and the baselines.
    Eval(eval::Args),
    /// Write a CGK model file: a training-free embedding searched by Hamming distance.
    MakeCgk(make_cgk::Args),
    /// Measure throughput.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// `--also INDEX` of `query` and `bench query`: the index with the model stored in it.
fn open_also(
    path: Option<&std::path::Path>,
) -> anyhow::Result<Option<(crate::search::index::Index, crate::model::Model)>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let index = crate::search::index::Index::open(path)?;
    let model = index.load_model(None)?;
    Ok(Some((index, model)))
}

/// Device selection, shared by every command (`--backend`, `--adapter`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeviceArgs {
    /// GPU backend [env: WGPU_BACKEND].
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, global = true)]
    pub backend: BackendChoice,
    /// Use the first adapter whose name contains NAME, case-insensitive [env: WGPU_ADAPTER_NAME].
    #[arg(long, value_name = "NAME", global = true)]
    pub adapter: Option<String>,
}

impl DeviceArgs {
    /// The library's device selection.
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            backend: self.backend,
            adapter: self.adapter.clone(),
        }
    }

    /// Open the chosen device, with a note on standard error when the automatic choice
    /// fell back to a slow path.
    pub fn open(&self) -> anyhow::Result<Gpu> {
        let gpu = Gpu::new(&self.options())?;
        let info = &gpu.info;
        if let Some(note) = fallback_note(&info.name, info.backend, info.device_type, self.backend)
        {
            eprintln!("note: {note}");
        }
        Ok(gpu)
    }
}

/// Why a device chosen automatically runs slower than it could: llvmpipe through
/// OpenGL, which wgpu picks when Mesa's Vulkan driver is missing. There the kernels get
/// no subgroups and run 1.5-2x slower than on lavapipe (BENCHMARKS.md).
fn fallback_note(
    adapter: &str,
    backend: wgpu::Backend,
    device_type: wgpu::DeviceType,
    choice: BackendChoice,
) -> Option<String> {
    let gl_cpu = backend == wgpu::Backend::Gl && device_type == wgpu::DeviceType::Cpu;
    (gl_cpu && choice == BackendChoice::Auto).then(|| {
        format!(
            "running on {adapter} through OpenGL; Mesa's Vulkan driver runs the same work \
             1.5-2x faster on this CPU (Debian/Ubuntu: apt-get install mesa-vulkan-drivers \
             libvulkan1)"
        )
    })
}

/// Lines holding characters outside a CNN-ED model's alphabet, which it reads as padding
/// (documented, but silent otherwise: a file of another alphabet embeds to one point).
#[derive(Default)]
pub struct UnseenChars {
    lines: u64,
    first: Option<u64>,
}

impl UnseenChars {
    pub fn record(&mut self, model: &crate::model::Model, lines: &[crate::input::Line]) {
        for line in lines.iter().filter(|l| model.reads_unseen_chars(&l.text)) {
            self.lines += 1;
            self.first.get_or_insert(line.number);
        }
    }

    /// `what`: the noun of a line ("line", "query").
    pub fn warning(&self, what: &str) -> Option<String> {
        let first = self.first?;
        Some(format!(
            "warning: {} held characters outside the model's alphabet, read as padding \
             (first: {what} {first})",
            count(self.lines, what)
        ))
    }
}

/// The warning for searches whose every candidate passed the estimate screen: the
/// `-C` nearest may not hold every match. `who` counts them ("3 queries").
pub fn capped_warning(who: &str, candidates: usize, blowup: f32, max_distance: u32) -> String {
    format!(
        "warning: for {who} all {candidates} candidates passed the estimate screen \
         (blowup x D = {}), so more matches may lie past them; raise --candidates",
        blowup * max_distance as f32
    )
}

/// The error a search returns when it found nothing, like grep: the process exits with
/// status 1 and prints no message.
#[derive(Debug)]
pub struct NoMatch;

impl std::fmt::Display for NoMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nothing found")
    }
}

impl std::error::Error for NoMatch {}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    on_interrupt_remove_temporaries();
    match &cli.command {
        Command::Devices(args) => devices::run(args),
        Command::Import(args) => import::run(args),
        Command::Embed(args) => embed::run(args),
        Command::Train(args) => train::run(args),
        Command::Query(args) => query::run(args),
        Command::Join(args) => join::run(args),
        Command::Dedup(args) => dedup::run(args),
        Command::Distance(args) => distance::run(args),
        Command::Export(args) => export::run(args),
        Command::Eval(args) => eval::run(args),
        Command::MakeCgk(args) => make_cgk::run(args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// Set by the first Ctrl-C (or SIGTERM) while a command asked to stop cleanly itself
/// (`train`, which finishes its step and writes a checkpoint).
static STOP_REQUESTED: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Ctrl-C and SIGTERM remove every temporary file and folder not yet renamed into
/// place, then exit with status 130; destinations are never touched. A command that
/// called [`stop_flag`] gets the first signal as a request instead.
fn on_interrupt_remove_temporaries() {
    let _ = ctrlc::set_handler(|| {
        if STOP_REQUESTED
            .get()
            .is_some_and(|flag| !flag.swap(true, Ordering::SeqCst))
        {
            return;
        }
        crate::io::remove_temporaries();
        exit_now(130);
    });
}

/// End the process from the interrupt handler's thread. `std::process::exit` runs atexit
/// handlers (Mesa's teardown among them) while other threads are mid-work, which can
/// corrupt the heap and abort instead of exiting; `_exit` skips them. Output files are
/// safe either way: only renamed files are ever complete.
fn exit_now(code: i32) -> ! {
    #[cfg(unix)]
    // SAFETY: `_exit` takes no pointers and never returns.
    unsafe {
        libc::_exit(code)
    }
    #[cfg(not(unix))]
    std::process::exit(code)
}

/// The flag the first interrupt sets instead of exiting (a second one exits).
pub fn stop_flag() -> Arc<AtomicBool> {
    STOP_REQUESTED
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

/// `n` and `noun`, plural unless `n` is 1: "1 string", "3 strings" (for nouns whose
/// plural adds an s).
pub fn count<N: std::fmt::Display + PartialEq + From<u8>>(n: N, noun: &str) -> String {
    if n == N::from(1) {
        return format!("{n} {noun}");
    }
    match noun.strip_suffix('y') {
        Some(stem) => format!("{n} {stem}ies"),
        None => format!("{n} {noun}s"),
    }
}

/// A progress bar over input bytes with rate and ETA, or a spinner when the size is
/// unknown (standard input). Hidden when stderr is not a terminal.
pub fn progress_bytes(total: Option<u64>, what: &str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n).with_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        ),
        None => indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {spinner} {bytes} {bytes_per_sec} {msg}",
            )
            .expect("valid template"),
        ),
    };
    bar.set_prefix(what.to_string());
    bar
}

/// A progress bar over `total` rows with rate and ETA. Hidden when stderr is not a
/// terminal.
pub fn progress_rows(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total).with_style(bar_style(
        "{prefix} [{bar:30}] {pos}/{len} rows {rate} ETA {eta} {msg}",
    ));
    bar.set_prefix(what.to_string());
    bar
}

/// A bar's style from `template`, whose `{rate}` is items a second with three
/// significant digits or so (indicatif's `{per_sec}` prints four decimals, as in
/// "1064893.5297/s").
pub fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .expect("valid template")
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = state.per_sec();
                let decimals = if rate >= 100.0 {
                    0
                } else if rate >= 10.0 {
                    1
                } else {
                    2
                };
                let _ = write!(w, "{rate:.decimals$}/s");
            },
        )
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap refuses two options of one command with the same name only in debug builds
    /// (the tests run in release), and only for the subcommand parsed: check them all.
    #[test]
    fn no_two_options_of_a_command_share_a_name() {
        fn check(command: &clap::Command) {
            let mut seen = std::collections::HashSet::new();
            for arg in command.get_arguments() {
                let shorts = arg.get_short_and_visible_aliases().unwrap_or_default();
                let longs = arg.get_long_and_visible_aliases().unwrap_or_default();
                let names = shorts.iter().map(|c| format!("-{c}"));
                for name in names.chain(longs.iter().map(|l| format!("--{l}"))) {
                    assert!(
                        seen.insert(name.clone()),
                        "{}: {name} twice",
                        command.get_name()
                    );
                }
            }
            command.get_subcommands().for_each(check);
        }
        let mut cli = <Cli as clap::CommandFactory>::command();
        cli.build();
        check(&cli);
    }

    #[test]
    fn counts_are_singular_only_for_one() {
        assert_eq!(count(0u64, "pair"), "0 pairs");
        assert_eq!(count(1u64, "pair"), "1 pair");
        assert_eq!(count(2usize, "string"), "2 strings");
        assert_eq!(count(3u64, "query"), "3 queries");
        assert_eq!(count(1u64, "query"), "1 query");
    }

    #[test]
    fn only_an_automatic_choice_of_llvmpipe_through_opengl_gets_the_note() {
        use wgpu::{Backend, DeviceType};
        let name = "llvmpipe (LLVM 15.0.6, 256 bits)";
        let note = fallback_note(name, Backend::Gl, DeviceType::Cpu, BackendChoice::Auto).unwrap();
        assert!(
            note.contains(name) && note.contains("mesa-vulkan-drivers"),
            "{note}"
        );
        // Asked for by name: no note.
        assert_eq!(
            fallback_note(name, Backend::Gl, DeviceType::Cpu, BackendChoice::Gl),
            None
        );
        for (backend, device_type) in [
            (Backend::Vulkan, DeviceType::Cpu),
            (Backend::Gl, DeviceType::DiscreteGpu),
            (Backend::Gl, DeviceType::IntegratedGpu),
        ] {
            let note = fallback_note(name, backend, device_type, BackendChoice::Auto);
            assert_eq!(note, None, "{backend:?} {device_type:?}");
        }
    }
}
