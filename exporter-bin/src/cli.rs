//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Routes CRM order events to export profiles and delivers them to postback URLs and CSV
/// folders, after each profile's delay, retrying until the target accepts them.
///
/// Events are committed to the store (SQLite by default, `exporter.db` in the working
/// directory) before anything is sent, so an interrupted run loses nothing: run again and it
/// resumes where it stopped.
#[derive(Debug, Parser)]
#[command(name = "exporter", version, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. `info`, `debug`, `exporter=debug` (also read from RUST_LOG).
    #[arg(long, global = true, default_value = "info", env = "RUST_LOG")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import order events, then deliver them.
    ///
    /// Each input is JSON lines, a JSON array, or a page of the CRM's order query API; `-` reads
    /// stdin. A bad item is reported with its line number and skipped. With no input, works the
    /// deliveries already in the store.
    Run {
        /// The config file.
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// An input file of order events (`-` for stdin); repeat for several.
        #[arg(long, short)]
        input: Vec<String>,

        /// Deliver what is due now, once, print a summary and exit, instead of working the queue
        /// until interrupted (Ctrl-C).
        #[arg(long)]
        once: bool,
    },

    /// Show exactly what a profile would send for the given orders, sending nothing.
    ///
    /// Prints the method, URL, headers (secrets masked) and body of each postback request, or
    /// the file name and rows a CSV flush would write.
    Preview {
        /// The config file.
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// The profile to preview, by name.
        #[arg(long, short)]
        profile: String,

        /// A file with one or more order events (`-` for stdin).
        #[arg(long, short)]
        input: String,
    },

    /// Run the ingest API, the scheduler and the workers in one process.
    ///
    /// `POST /v1/events` takes one event, a JSON array, JSON lines or a CRM query page and
    /// answers 202 once the events are committed; `GET /v1/events?orderId=...&customerType=...`
    /// takes a CRM-style postback; `GET /healthz` reports whether the store answers. Requests
    /// need `Authorization: Bearer TOKEN` when `[server] tokens` is set, which it must be to
    /// listen beyond loopback. SIGINT or SIGTERM stops accepting, finishes what is in flight
    /// and exits.
    Serve {
        /// The config file.
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// Listen here instead of `[server] listen` (port 0 picks a free port; the address
        /// is printed on stdout).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },

    /// Validate the config and list its profiles and routes.
    Check {
        /// The config file.
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,
    },
}
