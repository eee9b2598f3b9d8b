use std::process::ExitCode;

use clap::Parser;
use thumbnails::cli::{Cli, Command};
use thumbnails::config::{Config, ConfigError};
use thumbnails::{app, telemetry};

/// jemalloc keeps freed pages for reuse (glibc's malloc gave each upload's
/// decode buffers back to the kernel and faulted them in again: ~25 % of
/// the sidecar's CPU per upload in the benchmark).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        // `cutouts draw` needs no database: without a config file it runs
        // on the built-in defaults (and the environment).
        Err(ConfigError::Missing(_)) if matches!(cli.command, Command::Cutouts(_)) => {
            match Config::defaults_and_env() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(config.log.format);
    match app::dispatch(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line at the edge, with the cause chain (each cause once).
            let line = app::one_line(&e);
            tracing::error!("{line}");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
