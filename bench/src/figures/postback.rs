//! 1. Postback deliveries per second end to end, `exporter run --once` from import to the
//!    recorded outcome, against a plain reqwest client replaying the same requests at the same
//!    concurrency to the same receiver, with no store.

use std::sync::Arc;
use std::time::Duration;

use super::{Bench, say, secs};
use crate::exporter::{self, Target};
use crate::load;
use crate::receiver::{Control, ReceiverProcess};
use crate::report::{Row, per_sec, times};

/// The postback target's default `concurrency`, which the profile keeps.
const CONCURRENCY: usize = 16;

pub fn measure(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let dir = bench.dir("postback")?;
    let input = bench.events_file()?;
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

    say(&format!(
        "postback: exporter run --once, {} events",
        bench.count
    ));
    let run = exporter::run_once(&bench.exporter, &dir, &input)?;
    let expected = bench.sendable(bench.count) as u64;
    let received = bench.runtime.block_on(control.count())?;
    anyhow::ensure!(
        received == expected,
        "the receiver got {received} requests, expected {expected}:\n{}",
        run.stdout
    );

    say("postback: baseline, the same requests from a plain reqwest client");
    let captured = Arc::new(bench.runtime.block_on(control.captured())?);
    bench.runtime.block_on(control.reset())?;
    let base = receiver.url("");
    let replay = load::replay(
        &bench.client,
        &base,
        captured,
        expected as usize,
        CONCURRENCY,
    );
    let bare = bench.runtime.block_on(replay)?;

    let rate = expected as f64 / secs(run.total);
    let bare_rate = expected as f64 / secs(bare);
    let mut rows = vec![
        Row::new(
            format!(
                "1. postback deliveries, end to end ({expected} requests, {CONCURRENCY} in flight)"
            ),
            per_sec(expected as usize, secs(run.total)),
        )
        .baseline(format!(
            "{} bare reqwest",
            per_sec(expected as usize, secs(bare))
        ))
        .ratio(times(rate, bare_rate))
        .target(">= 0.50x", rate >= bare_rate / 2.0),
    ];
    if let Some(import) = run.import {
        let sending = run
            .total
            .saturating_sub(import)
            .max(Duration::from_millis(1));
        rows.push(Row::new(
            "   of which import (parse, route, commit)",
            format!(
                "{:.1} s, {}",
                secs(import),
                per_sec(bench.count, secs(import))
            ),
        ));
        rows.push(
            Row::new(
                "   of which claim, render, send, record",
                format!(
                    "{:.1} s, {}",
                    secs(sending),
                    per_sec(expected as usize, secs(sending))
                ),
            )
            .baseline(format!("{:.1} s bare", secs(bare)))
            .ratio(times(expected as f64 / secs(sending), bare_rate)),
        );
    }
    Ok(rows)
}
