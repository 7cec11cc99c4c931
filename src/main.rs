use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = megashtein_gpu::cli::Cli::parse();
    match megashtein_gpu::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
