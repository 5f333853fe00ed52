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

    /// Per profile: pending, due now, retrying, failed, delivered in the last hour, the oldest
    /// pending age and the last error. Works while `run` or `serve` is running.
    Status {
        /// The config file (only its store and profile names are read).
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// Print JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },

    /// The delivery ledger, newest first: each delivery with every attempt (time, outcome,
    /// status, response excerpt), for reconciliation with a target.
    Deliveries {
        /// The config file (only its store and profile names are read).
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// Only this profile's deliveries.
        #[arg(long, short)]
        profile: Option<String>,

        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "delivered", "failed", "superseded", "test_order"])]
        state: Option<String>,

        /// Only this order's deliveries.
        #[arg(long)]
        order: Option<String>,

        /// At most this many deliveries.
        #[arg(long, default_value_t = 50)]
        limit: usize,

        /// Print JSON for scripts instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Put failed deliveries back in the queue, due now, with a fresh attempt count.
    Retry {
        /// The config file (only its store and profile names are read).
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// A delivery id (see `exporter deliveries`); repeat for several.
        #[arg(
            long = "id",
            required_unless_present_any = ["profile", "all"],
            conflicts_with_all = ["profile", "all"]
        )]
        ids: Vec<String>,

        /// Every failed delivery of this profile.
        #[arg(long, short, conflicts_with = "all")]
        profile: Option<String>,

        /// Every failed delivery of every profile.
        #[arg(long)]
        all: bool,

        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },

    /// Send events already delivered to a profile again, as new deliveries (for example after
    /// the target lost data).
    Replay {
        /// The config file (only its store and profile names are read).
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// The profile whose deliveries to replay.
        #[arg(long, short)]
        profile: String,

        /// Replay what was delivered from this time: `2026-12-04T15:00:00Z`, `2026-12-04 15:00`
        /// (UTC) or an age such as `2h` or `3d`.
        #[arg(long)]
        since: String,

        /// ... up to this time (default: now), in the same forms.
        #[arg(long)]
        until: Option<String>,

        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },

    /// Hold a profile's deliveries, for a target under maintenance; nothing is failed or lost.
    Pause {
        /// The config file (only its store and profile names are read).
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// The profile to pause.
        #[arg(long, short)]
        profile: String,

        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },

    /// Release a paused profile's deliveries.
    Resume {
        /// The config file (only its store and profile names are read).
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// The profile to resume.
        #[arg(long, short)]
        profile: String,

        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },

    /// Validate the config and list its profiles and routes.
    ///
    /// With `--connect`, also checks every target that can be checked without sending
    /// anything: for an FTP profile, log in, write a probe file in its folder and remove it.
    /// One line per profile says what was checked or what failed; the exit status is 1 when
    /// any check failed.
    Check {
        /// The config file.
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,

        /// Connect to each profile's target and report per profile whether it works.
        #[arg(long)]
        connect: bool,
    },

    /// List every export type the config can use: built in, or loaded from `plugins_dir`.
    ///
    /// One line per type with where it comes from (built in, or the library file), its
    /// version and the plugin ABI version; then every library of the folder that was refused,
    /// with the reason. Only `plugins_dir` is read from the config, so this works while a
    /// profile is invalid. The exit status is 2 when a library was refused.
    Plugins {
        /// The config file.
        #[arg(long, short, env = "EXPORTER_CONFIG", default_value = "exporter.toml")]
        config: PathBuf,
    },
}
