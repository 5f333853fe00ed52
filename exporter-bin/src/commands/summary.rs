//! The summary `run` prints when it ends: what this run did per profile, and how each
//! profile's queue stands now.

use std::collections::BTreeMap;

use super::table;
use crate::config::Config;
use crate::ingest::{ImportStats, Input};
use crate::store::{Store, StoreError, now_ms};
use crate::worker::RunCounts;

/// The count columns of the table.
const NUMERIC: [&str; 7] = [
    "delivered",
    "duplicate",
    "superseded",
    "test orders",
    "scheduled",
    "retrying",
    "failed",
];

/// Prints the import line, the per-profile table and a note per profile with work left.
pub fn print(
    inputs: &[Input],
    stats: &ImportStats,
    config: &Config,
    store: &mut dyn Store,
    counts: &BTreeMap<String, RunCounts>,
) -> Result<(), StoreError> {
    if !inputs.is_empty() {
        let names: Vec<String> = inputs.iter().map(Input::name).collect();
        println!(
            "Imported {} of {} events read from {}: {} already in the store, {} bad items skipped, \
                {} matched no profile.",
            stats.stored,
            stats.read,
            names.join(", "),
            stats.duplicates,
            stats.bad,
            stats.unmatched,
        );
        println!();
    }
    let mut rows = vec![
        [
            "profile",
            "type",
            "delivered",
            "duplicate",
            "superseded",
            "test orders",
            "scheduled",
            "retrying",
            "failed",
        ]
        .map(str::to_owned),
    ];
    let mut notes = Vec::new();
    for profile in &config.profiles {
        let run = counts.get(&profile.name).cloned().unwrap_or_default();
        let routed = stats
            .profiles
            .get(&profile.name)
            .cloned()
            .unwrap_or_default();
        let queue = store.queue_state(&profile.name)?;
        rows.push([
            profile.name.clone(),
            profile.target_type.clone(),
            run.delivered.to_string(),
            run.duplicates.to_string(),
            run.superseded.to_string(),
            routed.test_orders.to_string(),
            queue.scheduled.to_string(),
            queue.retrying.to_string(),
            queue.failed.to_string(),
        ]);
        if queue.scheduled > 0 {
            let next = queue.next_due.map(format_time).unwrap_or_default();
            let when = match queue.next_due {
                // Due already: held behind an earlier event of the same order, or the run
                // stopped before reaching them.
                Some(at) if at <= now_ms() => format!(
                    "due since {next} (waiting behind an earlier event of the same order that \
                     is retrying, or for the next run)"
                ),
                _ => format!("next due {next}"),
            };
            notes.push(format!(
                "{}: {} not attempted yet, {when}",
                profile.name, queue.scheduled
            ));
        }
        if queue.retrying + queue.failed > 0 {
            let error = queue.last_error.unwrap_or_default();
            notes.push(format!(
                "{}: {} retrying, {} failed; last error: {error}",
                profile.name, queue.retrying, queue.failed
            ));
        }
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    print!("{}", table::render(&rows, &NUMERIC));
    println!(
        "(delivered, duplicate, superseded and test orders: this run; scheduled, retrying and \
            failed: the queue now)"
    );
    for note in notes {
        println!("{note}");
    }
    Ok(())
}

/// A store time (unix ms) as UTC text.
pub fn format_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => ms.to_string(),
    }
}
