//! 4. Latency from an event's due time to its first attempt, at a steady moderate rate:
//!    events are posted one by one to `exporter serve` (delay 0, so due when stored); the
//!    receiver timestamps each request by its `Idempotency-Key`, the ledger gives each
//!    delivery's due time. The baseline is the round trip of the same posts to the bare
//!    receiver at the same rate.

use std::time::Duration;

use super::{Bench, say};
use crate::exporter::{self, Serve, Target};
use crate::load;
use crate::receiver::{Control, ReceiverProcess};
use crate::report::{Row, quantile};

/// Events per second.
const RATE: u32 = 200;

/// How long the steady rate is held.
const SECONDS: u32 = 15;

pub fn measure(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let dir = bench.dir("latency")?;
    let receiver = ReceiverProcess::start(0)?;
    let control = Control::new(&bench.client, &receiver);
    let url = receiver.url("/lead");
    exporter::write_config(
        &dir,
        Target::Postback {
            url: &url,
            delay_minutes: 0,
        },
    )?;
    let count = (RATE * SECONDS) as usize;
    let rt = &bench.runtime;

    say(&format!(
        "latency: baseline, {count} posts to the bare receiver at {RATE}/s"
    ));
    let bare = rt.block_on(load::post_paced(
        &bench.client,
        &url,
        &bench.events,
        0,
        count,
        RATE,
        200,
    ))?;
    let mut bare: Vec<f64> = bare.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    bare.sort_by(f64::total_cmp);
    rt.block_on(control.reset())?;

    say(&format!(
        "latency: {count} events posted to exporter serve at {RATE}/s"
    ));
    let serve = Serve::start(&bench.exporter, &dir)?;
    let events_url = serve.events_url();
    rt.block_on(load::post_paced(
        &bench.client,
        &events_url,
        &bench.events,
        0,
        count,
        RATE,
        202,
    ))?;
    let expected = bench.sendable(count) as u64;
    let got = rt.block_on(control.wait_for(expected, Duration::from_secs(60)))?;
    serve.stop(Duration::from_secs(60))?;
    anyhow::ensure!(
        got == expected,
        "the receiver got {got} of {expected} deliveries"
    );

    let arrivals = rt.block_on(control.arrivals())?;
    let due = exporter::due_times(&bench.exporter, &dir, count)?;
    let mut waits: Vec<f64> = due
        .iter()
        .filter_map(|(id, due_ms)| Some(*arrivals.get(id)? as f64 / 1000.0 - *due_ms as f64))
        .collect();
    anyhow::ensure!(
        waits.len() as u64 == expected,
        "matched {} of {expected} deliveries",
        waits.len()
    );
    waits.sort_by(f64::total_cmp);

    let (p50, p99) = (quantile(&waits, 0.5), quantile(&waits, 0.99));
    let (b50, b99) = (quantile(&bare, 0.5), quantile(&bare, 0.99));
    Ok(vec![
        Row::new(
            format!("4a. due to first attempt, p50 ({RATE} events/s)"),
            format!("{p50:.1} ms"),
        )
        .baseline(format!("{b50:.1} ms bare round trip")),
        Row::new(
            format!("4b. due to first attempt, p99 ({RATE} events/s)"),
            format!("{p99:.1} ms"),
        )
        .baseline(format!("{b99:.1} ms bare round trip"))
        .target("< 100 ms", p99 < 100.0),
        Row::new(
            "    due to first attempt, max",
            format!("{:.1} ms", waits[waits.len() - 1]),
        ),
    ])
}
