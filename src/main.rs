use clap::Parser;

/// Exit statuses, as grep's: 0 found, 1 a search found nothing, 2 an error (clap's
/// usage errors exit 2 too), so that scripts can tell "no match" from a failure.
fn main() -> std::process::ExitCode {
    quiet_software_vulkan();
    let cli = megashtein_gpu::cli::Cli::parse();
    match megashtein_gpu::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if err.is::<megashtein_gpu::cli::NoMatch>() => std::process::ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Mesa's drivers complain on every start when XDG_RUNTIME_DIR is unset (common on
/// servers and in containers); give them a private directory instead.
fn quiet_software_vulkan() {
    if cfg!(target_os = "linux") && std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let user = std::env::var("USER").unwrap_or_else(|_| "user".to_string());
        let dir = std::env::temp_dir().join(format!("megashtein-gpu-runtime-{user}"));
        if std::fs::create_dir_all(&dir).is_ok() {
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}
