//! `bench`: throughput, latency and memory of the `exporter` binary, each figure beside a
//! baseline measured in the same run (see BENCHMARKS.md). Run from the repository root:
//! `cargo run --release -p exporter-bench`.

mod clock;
mod events;
mod exporter;
mod figures;
mod load;
mod receiver;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use figures::Bench;
use report::Row;

/// Benchmarks the exporter: postback and CSV throughput, ingest, latency and memory, each
/// against a baseline measured in the same run. Everything runs on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    /// Events per throughput run and pending backlog.
    #[arg(long, default_value_t = 100_000)]
    events: usize,

    /// Use a million events (overrides --events).
    #[arg(long)]
    million: bool,

    /// Only these measurements (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Figure>,

    /// The exporter binary to measure, instead of building target/release/exporter.
    #[arg(long)]
    exporter: Option<PathBuf>,

    /// The CRM order export to replicate (JSON lines).
    #[arg(long)]
    data: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve as the bench's HTTP receiver (the bench starts it itself).
    #[command(hide = true)]
    Receiver {
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Figure {
    Postback,
    Ingest,
    Csv,
    Latency,
    Memory,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Receiver { port }) = cli.command {
        return receiver::serve(port);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.canonicalize()?;
    let exporter = match &cli.exporter {
        Some(path) => path.canonicalize()?,
        None => exporter::build(&root)?,
    };
    let data = cli
        .data
        .clone()
        .unwrap_or_else(|| root.join("../shared/data/orders.jsonl"));
    let count = if cli.million { 1_000_000 } else { cli.events };
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let bench = Bench {
        exporter,
        out: out.clone(),
        events: Arc::new(events::Events::load(&data)?),
        count,
        client: load::client()?,
        runtime: tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };

    let started = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let all = [
        Figure::Postback,
        Figure::Ingest,
        Figure::Csv,
        Figure::Latency,
        Figure::Memory,
    ];
    for figure in all
        .into_iter()
        .filter(|f| cli.only.is_empty() || cli.only.contains(f))
    {
        let measured = match figure {
            Figure::Postback => figures::postback::measure(&bench),
            Figure::Ingest => figures::ingest::measure(&bench),
            Figure::Csv => figures::csv::measure(&bench),
            Figure::Latency => figures::latency::measure(&bench),
            Figure::Memory => figures::memory::measure(&bench),
        };
        match measured {
            Ok(measured) => rows.extend(measured),
            Err(error) => rows.push(
                Row::new(
                    format!("{figure:?}: could not measure"),
                    format!("{error:#}"),
                )
                .target("measured", false),
            ),
        }
    }

    let table = report::markdown(&rows);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!("\n{count} events, {cores} cores, {minutes:.1} min\n\n{table}");
    std::fs::write(out.join("results.md"), &table)?;
    eprintln!(
        "[bench] the table is also in {}",
        out.join("results.md").display()
    );
    Ok(())
}
