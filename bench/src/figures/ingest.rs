//! 2. Ingest: events per second `POST /v1/events` accepts, durably committed, in NDJSON
//!    batches of 1,000 and as single-event posts from 64 clients, against the same requests
//!    posted to the bare receiver (the HTTP floor), and the disk's durable-write rate.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Bench, pending, say, secs};
use crate::exporter::{self, Serve, Target};
use crate::load;
use crate::receiver::ReceiverProcess;
use crate::report::{Row, per_sec, times};

/// Events per batch request.
const BATCH: usize = 1000;

/// Clients posting batches at once.
const BATCH_CLIENTS: usize = 4;

/// Clients posting single events at once.
const SINGLE_CLIENTS: usize = 64;

pub fn measure(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let dir = bench.dir("ingest")?;
    let receiver = ReceiverProcess::start(0)?;
    let bare_url = receiver.url("/ingest");
    // Deliveries are routed and stored, but not due during the run: this measures ingest.
    let lead = receiver.url("/lead");
    exporter::write_config(
        &dir,
        Target::Postback {
            url: &lead,
            delay_minutes: 60,
        },
    )?;
    let serve = Serve::start(&bench.exporter, &dir)?;
    let url = serve.events_url();
    let (batched, singles) = (bench.count, (bench.count / 4).max(1000));
    let events = bench.events.clone();
    let rt = &bench.runtime;
    let client = &bench.client;

    say(&format!(
        "ingest: {batched} events in batches of {BATCH} from {BATCH_CLIENTS} clients"
    ));
    let post = |url: &str, status| {
        let post = load::post_batches(
            client,
            url,
            events.clone(),
            0,
            batched,
            BATCH,
            BATCH_CLIENTS,
            status,
        );
        rt.block_on(post)
    };
    let bare_batches = post(&bare_url, 200)?;
    let batches = post(&url, 202)?;

    say(&format!(
        "ingest: {singles} single-event posts from {SINGLE_CLIENTS} clients"
    ));
    let post = |url: &str, status| {
        let post = load::post_singles(
            client,
            url,
            events.clone(),
            batched,
            singles,
            SINGLE_CLIENTS,
            status,
        );
        rt.block_on(post)
    };
    let bare_singles = post(&bare_url, 200)?;
    let single = post(&url, 202)?;
    serve.stop(Duration::from_secs(60))?;

    let total = batched + singles;
    let stored = pending(&bench.exporter, &dir)?;
    let expected = bench.sendable(total) as u64;
    anyhow::ensure!(
        stored == expected,
        "the store holds {stored} pending deliveries, expected {expected}"
    );
    let syncs = fsync_rate(&dir)?;

    let row = |name: String, count: usize, took: Duration, bare: Duration, floor: f64| {
        let rate = count as f64 / secs(took);
        Row::new(name, per_sec(count, secs(took)))
            .baseline(format!("{} bare HTTP", per_sec(count, secs(bare))))
            .ratio(times(rate, count as f64 / secs(bare)))
            .target(format!(">= {floor:.0}/s"), rate >= floor)
    };
    Ok(vec![
        row(
            format!("2a. ingest, NDJSON batches of {BATCH} ({BATCH_CLIENTS} clients)"),
            batched,
            batches,
            bare_batches,
            50_000.0,
        ),
        row(
            format!("2b. ingest, single-event posts ({SINGLE_CLIENTS} clients)"),
            singles,
            single,
            bare_singles,
            10_000.0,
        ),
        Row::new(
            "    durable commits this disk allows (4 KiB write + fdatasync)",
            format!("{syncs:.0}/s"),
        ),
    ])
}

/// How many 4 KiB append + fdatasync rounds per second the disk under `dir` takes.
fn fsync_rate(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(2) {
        file.write_all(&block)?;
        file.sync_data()?;
        rounds += 1;
    }
    let rate = rounds as f64 / secs(started.elapsed());
    std::fs::remove_file(path)?;
    Ok(rate)
}
