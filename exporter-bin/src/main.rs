//! The `exporter` binary: wires the command line to the commands.

mod cli;
mod commands;
mod config;
mod ingest;
mod metrics;
mod plugins;
mod retry;
mod route;
mod server;
mod store;
mod targets;
mod worker;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// `exporter status | head` should stop when `head` has read enough, not panic. The commands
/// that only print get the default SIGPIPE action back; `run` and `serve`, which talk to
/// network peers, keep Rust's (ignored, as an error on the write).
fn die_quietly_on_a_closed_pipe() {
    // SAFETY: called before any thread is started, and SIG_DFL is a valid action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !matches!(
        cli.command,
        cli::Command::Run { .. } | cli::Command::Serve { .. }
    ) {
        die_quietly_on_a_closed_pipe();
    }
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match commands::execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
