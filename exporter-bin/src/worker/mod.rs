//! Workers: one per profile, claiming due deliveries, checking the routes again, rendering,
//! handing the batch to the target and recording every outcome.
//!
//! Invariants:
//! - Claim, delivery and recording are three steps; no store transaction is open while the
//!   target is called, and a delivery is only marked delivered after the target said so.
//! - A target's answer is recorded for every claimed delivery, including when the target
//!   panics or returns the wrong number of outcomes (those become retries).
//! - Streaming targets (postback) keep up to their `max_in_flight` records in flight, in
//!   several batches, while claims and recording go on beside them (see [`stream`]); batch
//!   targets (CSV) get everything due at each flush, in one file.
//! - A streaming target that keeps failing is probed, not flooded (see [`breaker`]).
//! - Shutdown stops claiming, lets the batches in flight finish and be recorded, releases what
//!   was claimed but not sent, flushes batch targets one last time, then returns.

mod breaker;
mod stream;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exporter_core::mapping::render;
use exporter_core::route::any_matches;
use exporter_core::{Batch, Batching, OrderEvent, Outcome, OutcomeKind, Record, Redactor};
use futures_util::FutureExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Profile};
use crate::metrics::Histogram;
use crate::store::{Claim, ClaimedBatch, Finished, Next, SharedStore, Store, StoreError, now_ms};
use stream::Pipeline;

/// How long a claim is held before another node may take it. A node renews the leases of
/// what it is still delivering at every heartbeat, so a dead node's claims return to the queue
/// within this time while a slow delivery keeps its own.
const LEASE: Duration = Duration::from_secs(30);

/// How often a node tells the store it is alive and renews its leases.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// The longest a worker sleeps before looking at the queue again.
const POLL: Duration = Duration::from_secs(1);

/// How long a worker waits after a store failure before trying again.
const STORE_PAUSE: Duration = Duration::from_secs(5);

/// How often a long delivery run reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Records per file for batch targets.
const FLUSH_LIMIT: usize = 10_000;

/// The longest message kept in the ledger for one attempt.
const MESSAGE_CHARS: usize = 300;

/// What one run did per profile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunCounts {
    pub delivered: u64,
    pub duplicates: u64,
    pub superseded: u64,
    pub retries: u64,
    pub failed: u64,
}

/// Works the queue of every profile of a config.
#[derive(Clone)]
pub struct Engine {
    store: SharedStore,
    config: Arc<Config>,
    counts: Arc<Mutex<BTreeMap<String, RunCounts>>>,
    /// How long each call to a profile's target took.
    durations: Arc<Mutex<BTreeMap<String, Histogram>>>,
    /// Signalled when new deliveries were committed, so idle workers look at once.
    wake: Arc<Notify>,
}

/// Whether workers stop when nothing is due or keep waiting for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Deliver what is due at this time (unix ms), once, then return.
    Once(i64),
    Forever,
}

impl Engine {
    pub fn new(store: SharedStore, config: Arc<Config>) -> Self {
        Engine {
            store,
            config,
            counts: Arc::default(),
            durations: Arc::default(),
            wake: Arc::default(),
        }
    }

    /// Tells idle workers that new deliveries may be due.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// How long each call to each profile's target took: a batch's duration counts once for
    /// each record in it.
    pub fn durations(&self) -> BTreeMap<String, Histogram> {
        self.durations.lock().expect("durations lock").clone()
    }

    /// What this engine has done so far, per profile.
    pub fn counts(&self) -> BTreeMap<String, RunCounts> {
        self.counts.lock().expect("counts lock").clone()
    }

    /// Delivers everything due now, once per delivery, then returns.
    pub async fn run_once(&self) -> Result<(), StoreError> {
        let (_keep, shutdown) = watch::channel(false);
        self.run(Mode::Once(now_ms()), shutdown).await
    }

    /// Works the queue until `shutdown` turns true.
    pub async fn run_until(&self, shutdown: watch::Receiver<bool>) -> Result<(), StoreError> {
        self.run(Mode::Forever, shutdown).await
    }

    async fn run(&self, mode: Mode, shutdown: watch::Receiver<bool>) -> Result<(), StoreError> {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.config.profiles.len() {
            let engine = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { engine.keep_working(index, mode, shutdown).await });
        }
        let reporter = tokio::spawn(self.clone().report_progress());
        let heartbeat = tokio::spawn(self.clone().keep_heartbeat());
        if mode == Mode::Forever {
            let wake = self.wake.clone();
            let wake = Arc::new(move || wake.notify_waiters());
            if let Err(error) = self.with_store(move |store| store.listen(wake)).await {
                warn!(%error, "cannot listen for new events; looking for them every second");
            }
        }
        let result = Self::join(tasks).await;
        reporter.abort();
        heartbeat.abort();
        // Nothing is in flight any more: hand back what this node still holds.
        if let Err(error) = self.with_store(|store| store.leave(now_ms())).await {
            warn!(%error, "could not mark this node stopped in the store");
        }
        result
    }

    /// Marks this node alive and renews its leases every [`HEARTBEAT`].
    async fn keep_heartbeat(self) {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let now = now_ms();
            let lease_until = now + LEASE.as_millis() as i64;
            if let Err(error) = self
                .with_store(move |store| store.heartbeat(now, lease_until))
                .await
            {
                warn!(%error, "could not renew this node's claims; another node may take them");
            }
        }
    }

    async fn join(
        mut tasks: tokio::task::JoinSet<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let mut result = Ok(());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(panic) => error!(error = %panic, "a profile worker stopped unexpectedly"),
            }
        }
        result
    }

    /// Works one profile; in `Forever` mode a store failure (a full disk, a locked file) is
    /// logged and the worker tries again after [`STORE_PAUSE`] instead of stopping.
    async fn keep_working(
        &self,
        index: usize,
        mode: Mode,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        loop {
            let error = match self.work_profile(index, mode, shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) if mode != Mode::Forever => return Err(error),
                Err(error) => error,
            };
            let profile = &self.config.profiles[index].name;
            error!(
                profile = %profile,
                error = %error,
                "the store failed; this profile's deliveries pause and resume when it works again",
            );
            tokio::select! {
                _ = tokio::time::sleep(STORE_PAUSE) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }

    /// Logs what has been delivered so far, every [`PROGRESS_EVERY`], while anything changes.
    async fn report_progress(self) {
        let mut last = BTreeMap::new();
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let counts = self.counts();
            if counts == last {
                continue;
            }
            for (profile, run) in &counts {
                info!(
                    profile = %profile,
                    delivered = run.delivered + run.duplicates,
                    retries = run.retries,
                    superseded = run.superseded,
                    failed = run.failed,
                    "delivering",
                );
            }
            last = counts;
        }
    }

    async fn work_profile(
        &self,
        index: usize,
        mode: Mode,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let profile = &self.config.profiles[index];
        match profile.exporter.batching() {
            Batching::Stream { max_in_flight } => {
                let pipeline = Pipeline::new(self, profile, mode, max_in_flight);
                pipeline.run(shutdown).await
            }
            Batching::Flush { interval } => loop {
                let cutoff = match mode {
                    Mode::Once(at) => at,
                    Mode::Forever => now_ms(),
                };
                self.flush(profile, cutoff).await?;
                if matches!(mode, Mode::Once(_)) || *shutdown.borrow() {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.changed() => {}
                }
            },
        }
    }

    /// Hands a batch target everything due, one file per [`FLUSH_LIMIT`] records.
    async fn flush(&self, profile: &Profile, cutoff: i64) -> Result<(), StoreError> {
        loop {
            let name = profile.name.clone();
            let lease_until = now_ms() + LEASE.as_millis() as i64;
            let claim = move |store: &mut dyn Store| {
                store.claim_batch(&name, cutoff, FLUSH_LIMIT, lease_until)
            };
            let Some(batch) = self.with_store(claim).await? else {
                return Ok(());
            };
            self.process(profile, batch).await?;
        }
    }

    async fn idle_wait(&self, profile: &Profile) -> Result<Duration, StoreError> {
        let name = profile.name.clone();
        let next = self.with_store(move |store| store.next_due(&name)).await?;
        let until_next = next.map(|at| Duration::from_millis((at - now_ms()).max(0) as u64));
        Ok(until_next
            .unwrap_or(POLL)
            .clamp(Duration::from_millis(10), POLL))
    }

    /// Rechecks, renders, delivers and records one claimed batch of a batch target.
    async fn process(&self, profile: &Profile, batch: ClaimedBatch) -> Result<(), StoreError> {
        let ClaimedBatch {
            id,
            created_at,
            claims,
        } = batch;
        let mut finished = Vec::with_capacity(claims.len());
        let (sending, records) = self.prepare_all(profile, claims, &mut finished);
        if !records.is_empty() {
            let started = Instant::now();
            let batch = Batch {
                id,
                created_at_ms: created_at,
                records,
            };
            let outcomes = deliver(profile, &batch).await;
            let settled = self.settle_all(profile, &sending, outcomes, started.elapsed());
            finished.extend(settled);
        }
        log_batch(profile, &finished);
        self.with_store(move |store| store.record(&finished)).await
    }

    /// Rechecks and renders claimed deliveries: returns those to send with their records, and
    /// adds the outcome of each one that is not sent (superseded, unreadable) to `finished`.
    fn prepare_all(
        &self,
        profile: &Profile,
        claims: Vec<Claim>,
        finished: &mut Vec<Finished>,
    ) -> (Vec<Claim>, Vec<Record>) {
        let mut sending = Vec::with_capacity(claims.len());
        let mut records = Vec::with_capacity(claims.len());
        for claim in claims {
            match prepare(profile, &claim) {
                Prepared::Send(record) => {
                    records.push(record);
                    sending.push(claim);
                }
                Prepared::Done(next, outcome, message) => {
                    let done = Finished {
                        id: claim.id,
                        next,
                        attempted: false,
                        outcome,
                        status: None,
                        message,
                        at: now_ms(),
                        duration_ms: 0,
                    };
                    finished.push(self.finish(profile, &claim, done));
                }
            }
        }
        (sending, records)
    }

    /// Settles the target's answers for the deliveries of one batch, which took `elapsed`.
    fn settle_all(
        &self,
        profile: &Profile,
        sent: &[Claim],
        outcomes: Vec<Outcome>,
        elapsed: Duration,
    ) -> Vec<Finished> {
        let mut durations = self.durations.lock().expect("durations lock");
        let histogram = durations.entry(profile.name.clone()).or_default();
        for _ in sent {
            histogram.observe(elapsed.as_secs_f64());
        }
        drop(durations);
        let duration_ms = elapsed.as_millis() as i64;
        sent.iter()
            .zip(outcomes)
            .map(|(claim, outcome)| self.settle(profile, claim, outcome, duration_ms))
            .collect()
    }

    /// Decides what an outcome means for the delivery: done, retry later, or parked.
    fn settle(
        &self,
        profile: &Profile,
        claim: &Claim,
        outcome: Outcome,
        duration_ms: i64,
    ) -> Finished {
        let attempt = claim.attempts + 1;
        let message = shorten(&self.config.redactor, &outcome.message);
        let (next, label) = match outcome.kind {
            OutcomeKind::Delivered => (Next::Delivered, "delivered"),
            OutcomeKind::Duplicate => (Next::Delivered, "duplicate"),
            OutcomeKind::Failed => (Next::Failed, "failed"),
            OutcomeKind::Retry if profile.retry.exhausted(attempt) => (Next::Failed, "failed"),
            OutcomeKind::Retry => {
                let wait = profile.retry.next_wait(attempt, outcome.retry_after);
                (Next::RetryAt(now_ms() + wait.as_millis() as i64), "retry")
            }
        };
        let attempted = Finished {
            id: claim.id,
            next,
            attempted: true,
            outcome: label,
            status: outcome.status,
            message,
            at: now_ms(),
            duration_ms,
        };
        self.finish(profile, claim, attempted)
    }

    /// Counts and logs what happened to one claimed delivery.
    fn finish(&self, profile: &Profile, claim: &Claim, finished: Finished) -> Finished {
        let mut counts = self.counts.lock().expect("counts lock");
        let counts = counts.entry(profile.name.clone()).or_default();
        match (finished.next, finished.outcome) {
            (Next::Delivered, "duplicate") => counts.duplicates += 1,
            (Next::Delivered, _) => counts.delivered += 1,
            (Next::Superseded, _) => counts.superseded += 1,
            (Next::RetryAt(_), _) => counts.retries += 1,
            (Next::Failed, _) => counts.failed += 1,
        }
        log_delivery(profile, claim, &finished);
        finished
    }

    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.spawn_store(work).await.expect("store task panicked")
    }

    /// Runs `work` on the store in the blocking pool, without waiting for it.
    fn spawn_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> JoinHandle<Result<T, StoreError>> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.lock().expect("store lock").as_mut()))
    }
}

/// Logs one delivery's outcome: a failure of a per-record target at warn or error level, the
/// rest (and a batch target's records, logged once per batch by [`log_batch`]) at debug.
fn log_delivery(profile: &Profile, claim: &Claim, f: &Finished) {
    let attempt = claim.attempts + u32::from(f.attempted);
    let (name, order_id, delivery_id) = (&profile.name, &claim.order_id, &claim.uid);
    match f.next {
        Next::RetryAt(at) if per_record(profile) => warn!(
            profile = name,
            order_id,
            delivery_id,
            attempt,
            status = f.status,
            retry_in_secs = (at - now_ms()).max(0) / 1000,
            reason = %f.message,
            "delivery attempt failed; will retry",
        ),
        Next::Failed if per_record(profile) => error!(
            profile = name,
            order_id,
            delivery_id,
            attempt,
            status = f.status,
            reason = %f.message,
            "delivery failed and is parked; `exporter retry` puts it back once the cause is fixed",
        ),
        _ => debug!(
            profile = name,
            order_id,
            delivery_id,
            attempt,
            status = f.status,
            outcome = f.outcome,
            reason = %f.message,
            "delivery outcome recorded",
        ),
    }
}

/// True for targets that take records one request at a time; a batch target's failure is
/// logged once per batch, not once per record.
fn per_record(profile: &Profile) -> bool {
    matches!(profile.exporter.batching(), Batching::Stream { .. })
}

/// One line for a batch target's batch that was not delivered.
fn log_batch(profile: &Profile, finished: &[Finished]) {
    let retried = finished
        .iter()
        .filter(|f| matches!(f.next, Next::RetryAt(_)))
        .count();
    let parked = finished
        .iter()
        .filter(|f| f.attempted && f.next == Next::Failed)
        .count();
    let first = finished
        .iter()
        .find(|f| f.attempted && f.next != Next::Delivered);
    let Some(first) = first else { return };
    if parked > 0 {
        error!(
            profile = %profile.name,
            records = parked,
            reason = %first.message,
            "a batch failed and its records are parked; `exporter retry` puts them back once the \
                cause is fixed",
        );
    }
    if retried > 0 {
        warn!(
            profile = %profile.name,
            records = retried,
            reason = %first.message,
            "a batch could not be delivered; its records will be retried",
        );
    }
}

enum Prepared {
    Send(Record),
    Done(Next, &'static str, String),
}

/// Checks the routes again against the order's latest event and renders the record.
fn prepare(profile: &Profile, claim: &Claim) -> Prepared {
    let event = match parse_stored(&claim.body) {
        Ok(event) => event,
        Err(reason) => {
            return Prepared::Done(
                Next::Failed,
                "failed",
                format!("stored event is unreadable: {reason}"),
            );
        }
    };
    if let Some((latest_id, latest)) = superseding(profile, claim) {
        let message = format!(
            "superseded: the order's latest event (#{latest_id}, {}) no longer matches this \
             profile's routes",
            latest.trigger()
        );
        return Prepared::Done(Next::Superseded, "superseded", message);
    }
    Prepared::Send(render(&profile.mappings, &event, &claim.uid))
}

/// The order's latest event, when rechecking is on and it no longer matches the profile.
fn superseding(profile: &Profile, claim: &Claim) -> Option<(i64, OrderEvent)> {
    let (latest_id, body) = claim.latest.as_ref().filter(|_| profile.recheck)?;
    let latest = parse_stored(body).ok()?;
    (!any_matches(&profile.routes, &latest)).then_some((*latest_id, latest))
}

fn parse_stored(body: &str) -> Result<OrderEvent, String> {
    let value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    OrderEvent::from_value(value).map_err(|e| e.to_string())
}

/// Calls the target, turning a panic or a wrong number of outcomes into retries.
async fn deliver(profile: &Profile, batch: &Batch) -> Vec<Outcome> {
    let records = &batch.records;
    let call = AssertUnwindSafe(profile.exporter.deliver(batch))
        .catch_unwind()
        .await;
    let mut outcomes = match call {
        Ok(outcomes) => outcomes,
        Err(_) => {
            error!(
                profile = %profile.name,
                records = records.len(),
                "the target panicked; the batch will be retried",
            );
            return vec![
                Outcome::retry(None, "the target panicked while delivering");
                records.len()
            ];
        }
    };
    if outcomes.len() != records.len() {
        error!(
            profile = %profile.name,
            records = records.len(),
            outcomes = outcomes.len(),
            "the target returned the wrong number of outcomes; the batch will be retried",
        );
        let message = format!(
            "the target returned {} outcomes for {} records",
            outcomes.len(),
            records.len()
        );
        outcomes = vec![Outcome::retry(None, message); records.len()];
    }
    outcomes
}

/// Masks secrets and keeps the first [`MESSAGE_CHARS`] characters.
///
/// A target's words reach operators' terminals, so control characters (an escape sequence
/// could retitle or recolor the terminal) are shown escaped, as `\u{1b}`.
fn shorten(redactor: &Redactor, message: &str) -> String {
    let redacted = redactor.redact(message);
    let mut chars = redacted.chars();
    let mut short = String::new();
    for c in chars.by_ref().take(MESSAGE_CHARS) {
        if c.is_control() {
            short.extend(c.escape_unicode());
        } else {
            short.push(c);
        }
    }
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_messages_mask_secrets_and_escape_control_characters() {
        let mut redactor = Redactor::default();
        redactor.add("tok-12345");
        let message = "bad \u{1b}]0;pwned\u{7} token=tok-12345";
        assert_eq!(
            shorten(&redactor, message),
            "bad \\u{1b}]0;pwned\\u{7} token=***"
        );
        let long = "x".repeat(MESSAGE_CHARS + 5);
        assert_eq!(shorten(&redactor, &long).chars().count(), MESSAGE_CHARS + 1);
    }
}
