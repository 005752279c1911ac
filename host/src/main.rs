//! The `presence` binary: logging, then the command line (`presence::cli`).

use clap::Parser;

/// mimalloc keeps memory per connection lower than the system allocator:
/// many small, long-lived allocations per connection, freed in any order.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "presence=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match presence::cli::run(presence::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reason and its causes on one line; a backtrace (even with
        // RUST_BACKTRACE=1) tells an operator nothing they can act on.
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
