//! Ingest: reads inputs, validates each event, routes it and commits it to the store in
//! batches. An event counts as imported only once its batch has committed.

pub mod input;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use exporter_core::{OrderEvent, Trigger};
use tracing::{info, warn};

use crate::config::Config;
use crate::route;
use crate::store::{Imported, NewEvent, Store, StoreError, now_ms};
pub use input::{Input, InputError};

/// Events per store transaction.
const BATCH: usize = 1000;

/// How often a long import reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportStats {
    /// Items read from the inputs, good or bad.
    pub read: u64,
    /// Events newly stored.
    pub stored: u64,
    /// Events already in the store (same order, trigger and `dateUpdated`).
    pub duplicates: u64,
    /// Items skipped as unreadable or not order events.
    pub bad: u64,
    /// Stored events that matched no profile.
    pub unmatched: u64,
    /// Per profile: deliveries queued, and test orders counted instead.
    pub profiles: BTreeMap<String, RoutedCounts>,
    /// Triggers no route can name, with how many events had them.
    pub unknown_triggers: BTreeMap<String, u64>,
}

/// Deliveries one import gave one profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoutedCounts {
    pub queued: u64,
    pub test_orders: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Imports every input in order. A bad item is reported and skipped; an unreadable input or a
/// store failure stops the import, keeping what was already committed.
pub fn import(
    config: &Config,
    store: &mut dyn Store,
    inputs: &[Input],
) -> Result<ImportStats, ImportError> {
    let mut importer = Importer {
        config,
        store,
        stats: ImportStats::default(),
        batch: Vec::new(),
        started: Instant::now(),
        reported: Instant::now(),
    };
    for input in inputs {
        let name = input.name();
        input::read(input, |position, item| importer.item(&name, position, item))??;
    }
    importer.flush()?;
    for (trigger, count) in &importer.stats.unknown_triggers {
        warn!(
            trigger = %trigger,
            events = count,
            "events with a trigger the CRM does not define match no profile",
        );
    }
    Ok(importer.stats)
}

struct Importer<'a> {
    config: &'a Config,
    store: &'a mut dyn Store,
    stats: ImportStats,
    batch: Vec<NewEvent>,
    started: Instant,
    reported: Instant,
}

impl Importer<'_> {
    fn item(
        &mut self,
        input: &str,
        position: input::Position,
        item: Result<serde_json::Value, String>,
    ) -> Result<(), StoreError> {
        self.stats.read += 1;
        let event = item.and_then(|value| OrderEvent::from_value(value).map_err(|e| e.to_string()));
        match event {
            Ok(event) => {
                if Trigger::new(event.trigger()).canonical().is_none() {
                    *self
                        .stats
                        .unknown_triggers
                        .entry(event.trigger().to_owned())
                        .or_default() += 1;
                }
                self.batch.push(route::plan(self.config, &event, now_ms()));
            }
            Err(reason) => {
                self.stats.bad += 1;
                warn!(
                    input,
                    %position,
                    reason = %reason,
                    "skipped an input item that is not a valid order event",
                );
            }
        }
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let results = self.store.import(&self.batch)?;
        for (event, result) in self.batch.drain(..).zip(results) {
            count(&mut self.stats, &event, result);
        }
        if self.reported.elapsed() >= PROGRESS_EVERY {
            self.reported = Instant::now();
            let rate = self.stats.read as f64 / self.started.elapsed().as_secs_f64();
            info!(
                read = self.stats.read,
                stored = self.stats.stored,
                per_sec = rate as u64,
                "importing"
            );
        }
        Ok(())
    }
}

/// An item of a request that is not a valid order event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// The item's place in the request, from 0.
    pub index: usize,
    /// Where it was: `line 3` or `item 3`.
    pub at: String,
    pub reason: String,
}

/// A request body checked and routed, ready to commit.
#[derive(Debug, Default)]
pub struct Planned {
    pub events: Vec<NewEvent>,
    pub rejected: Vec<Rejected>,
}

/// Why a request body was refused whole.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("the request holds more than {limit} events; send them in smaller batches")]
    TooMany { limit: usize },
}

/// Reads, validates and routes every event of a request body: JSON, a JSON array, JSON
/// lines or a query page.
pub fn plan_body(config: &Config, body: &[u8], limit: usize) -> Result<Planned, PlanError> {
    let mut planned = Planned::default();
    let mut index = 0;
    let received_at = now_ms();
    let read = input::read_from(Box::new(body), "request body", |position, item| {
        if index >= limit {
            return Err(PlanError::TooMany { limit });
        }
        match item.and_then(|value| OrderEvent::from_value(value).map_err(|e| e.to_string())) {
            Ok(event) => planned
                .events
                .push(route::plan(config, &event, received_at)),
            Err(reason) => planned.rejected.push(Rejected {
                index,
                at: position.to_string(),
                reason,
            }),
        }
        index += 1;
        Ok(())
    })?;
    read?;
    Ok(planned)
}

/// Adds one committed event to the counts.
pub fn count(stats: &mut ImportStats, event: &NewEvent, result: Imported) {
    if result == Imported::Duplicate {
        stats.duplicates += 1;
        return;
    }
    stats.stored += 1;
    if event.deliveries.is_empty() {
        stats.unmatched += 1;
    }
    for delivery in &event.deliveries {
        let counts = stats.profiles.entry(delivery.profile.clone()).or_default();
        if delivery.test_order {
            counts.test_orders += 1;
        } else {
            counts.queued += 1;
        }
    }
}
