//! 5. Peak RSS of `exporter serve` while a backlog of deliveries builds up with the target
//!    down (its port closed), sampled as it grows, then after the target comes back and the
//!    backlog drains. The baseline is the same process idle with an empty store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Bench, pending, say, secs};
use crate::exporter::{self, Serve, Target};
use crate::load;
use crate::receiver::{Control, ReceiverProcess};
use crate::report::{Row, mib, per_sec};

/// Times the backlog is sampled as it grows.
const STEPS: usize = 10;

/// The RSS target with a backlog of a million, in KiB.
const PEAK_KIB: u64 = 150 * 1024;

/// Growth from the first to the last sample still called flat, in KiB.
const FLAT_KIB: u64 = 15 * 1024;

pub fn measure(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let dir = bench.dir("memory")?;
    let port = closed_port()?;
    let url = format!("http://127.0.0.1:{port}/lead");
    exporter::write_config(
        &dir,
        Target::Postback {
            url: &url,
            delay_minutes: 0,
        },
    )?;
    let serve = Serve::start(&bench.exporter, &dir)?;
    std::thread::sleep(Duration::from_millis(500));
    let (idle, _) = serve.memory()?;
    let count = bench.count;

    say(&format!(
        "memory: {count} events posted with the target down"
    ));
    let mut samples = Vec::new();
    let step = count.div_ceil(STEPS);
    for first in (0..count).step_by(step) {
        let size = step.min(count - first);
        let events = Arc::clone(&bench.events);
        let url = serve.events_url();
        let post = load::post_batches(&bench.client, &url, events, first, size, 1000, 4, 202);
        bench.runtime.block_on(post)?;
        samples.push(serve.memory()?);
    }
    let (_, peak_pending) = serve.memory()?;
    let held = pending(&bench.exporter, &dir)?;

    say("memory: the target comes back; draining the backlog");
    let receiver = ReceiverProcess::start(port)?;
    let control = Control::new(&bench.client, &receiver);
    let expected = bench.sendable(count) as u64;
    let started = Instant::now();
    let wait = control.wait_for(expected, Duration::from_secs(3600));
    let got = bench.runtime.block_on(wait)?;
    let drain = started.elapsed();
    anyhow::ensure!(
        got >= expected,
        "only {got} of {expected} deliveries arrived"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (after, peak_drain) = serve.memory()?;
    serve.stop(Duration::from_secs(60))?;

    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
    let grew = last.saturating_sub(first);
    let flat = format!("growth < {}", mib(FLAT_KIB));
    Ok(vec![
        Row::new(
            format!("5a. peak RSS, {held} deliveries pending, target down"),
            mib(peak_pending),
        )
        .baseline(format!("{} idle", mib(idle)))
        .ratio(format!("+{}", mib(peak_pending.saturating_sub(idle))))
        .target("< 150 MiB", peak_pending < PEAK_KIB),
        Row::new(
            format!("    RSS at {} and at {} pending", step, count),
            format!("{} -> {}", mib(first), mib(last)),
        )
        .ratio(format!("+{}", mib(grew)))
        .target(flat, grew < FLAT_KIB),
        Row::new("5b. RSS after the backlog drained", mib(after))
            .baseline(format!("{} idle", mib(idle)))
            .ratio(format!("peak while draining {}", mib(peak_drain)))
            .target("< 150 MiB", peak_drain < PEAK_KIB),
        Row::new(
            "    drain rate, exporter serve",
            per_sec(expected as usize, secs(drain)),
        ),
    ])
}

/// A loopback port nothing listens on (until the receiver takes it for the drain).
fn closed_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
