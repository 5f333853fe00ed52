//! The pipeline of a streaming target (postback): claims run ahead of the sends, up to
//! `max_in_flight` records stay in flight, and outcomes are recorded in groups.
//!
//! Invariants:
//! - At most `max_in_flight` records are in flight, in at most [`BATCHES`] batches of a
//!   [`BATCHES`]th of it each; a batch leaves as soon as it has room, so the slowest request of
//!   a batch holds back only that batch, and no claim or record waits for the sends.
//! - Claims run at most [`CLAIM_AHEAD`] × `max_in_flight` deliveries ahead; a claimed delivery
//!   is sent within moments, far inside its lease.
//! - One store transaction records outcomes at a time, taking every outcome finished since the
//!   last one began; while requests are in flight and claims still find work, it waits for
//!   `max_in_flight` outcomes or [`RECORD_WAIT`], so a transaction holds several batches.
//! - A claimed delivery is either sent, and its outcome recorded, or released unattempted when
//!   the breaker opens, shutdown begins or the store fails.
//! - `run --once` ends only once a claim that began after the last recorded outcome finds
//!   nothing more and nothing is in flight: an outcome can make an order's next delivery due.
//! - While the breaker is open nothing is sent but its probe, alone; the failures of batches
//!   sent before it opened are not counted again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use exporter_core::{Batch, BoxFuture, Outcome};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::breaker::{self, Breaker, Permit};
use super::{Engine, LEASE, Mode, deliver};
use crate::config::Profile;
use crate::store::{Claim, Finished, Next, StoreError, now_ms};

/// How far claims run ahead of the sends, in multiples of `max_in_flight`.
const CLAIM_AHEAD: usize = 4;

/// The longest an outcome waits for others to share its recording, while requests are in
/// flight and claims still find work.
const RECORD_WAIT: Duration = Duration::from_millis(20);

/// The most batches in flight at once. A plugin target runs four calls at a time, so its
/// batches do not queue for a call slot.
const BATCHES: usize = 4;

/// A store task: a claim (with how many it asked for, and the outcome groups recorded when it
/// began), or the recording of a group.
type Claiming = JoinHandle<Result<(Vec<Claim>, usize, u64), StoreError>>;
type Recording = JoinHandle<Result<(), StoreError>>;

/// A batch the target has answered.
struct Sent {
    claims: Vec<Claim>,
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    /// Sent alone while the breaker was open.
    probe: bool,
}

/// One profile's pipeline.
pub(super) struct Pipeline<'a> {
    engine: &'a Engine,
    profile: &'a Profile,
    mode: Mode,
    max_in_flight: usize,
    breaker: Breaker,
    /// Claimed and not yet sent, oldest first.
    ready: VecDeque<Claim>,
    /// Records handed to the target and not yet answered.
    in_flight: usize,
    /// Outcomes waiting for the next recording.
    unrecorded: Vec<Finished>,
    /// Outcome groups recorded so far.
    recorded: u64,
    /// The last claim found less than it asked for and nothing was recorded since it began.
    dry: bool,
    /// No more claims or sends: shutdown, or the store failed (`error`).
    stopping: bool,
    error: Option<StoreError>,
}

impl<'a> Pipeline<'a> {
    pub(super) fn new(
        engine: &'a Engine,
        profile: &'a Profile,
        mode: Mode,
        max_in_flight: usize,
    ) -> Self {
        Pipeline {
            engine,
            profile,
            mode,
            max_in_flight: max_in_flight.max(1),
            breaker: Breaker::new(profile.retry),
            ready: VecDeque::new(),
            in_flight: 0,
            unrecorded: Vec::new(),
            recorded: 0,
            dry: false,
            stopping: false,
            error: None,
        }
    }

    /// Works the profile until nothing is due (`run --once`) or `shutdown` turns true.
    pub(super) async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let mut sending: FuturesUnordered<BoxFuture<'a, Sent>> = FuturesUnordered::new();
        let mut claiming: Option<Claiming> = None;
        let mut recording: Option<Recording> = None;
        let mut listening = true;
        let mut record_by = None;
        loop {
            self.stopping |= *shutdown.borrow();
            let permit = self.breaker.permit(Instant::now());
            if self.stopping || matches!(permit, Permit::Wait(_)) {
                self.release().await;
            }
            self.dispatch(permit, &mut sending);
            if claiming.is_none()
                && let Some(limit) = self.claim_limit(permit)
            {
                claiming = Some(self.claim(limit));
            }
            if self.unrecorded.is_empty() {
                record_by = None;
            } else if recording.is_none() {
                let by = *record_by.get_or_insert_with(|| Instant::now() + RECORD_WAIT);
                let waiting = !sending.is_empty() && !self.dry && !self.stopping;
                if !waiting || self.unrecorded.len() >= self.max_in_flight || Instant::now() >= by {
                    recording = Some(self.record());
                    record_by = None;
                }
            }

            if sending.is_empty() && claiming.is_none() && recording.is_none() {
                if self.stopping {
                    return self.error.map_or(Ok(()), Err);
                }
                if let Permit::Wait(wait) = permit {
                    if self.mode != Mode::Forever {
                        return Ok(());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                if self.mode != Mode::Forever {
                    return Ok(());
                }
                self.idle(&mut shutdown).await?;
                continue;
            }

            tokio::select! {
                Some(sent) = sending.next(), if !sending.is_empty() => self.settle(sent),
                claimed = finish(&mut claiming), if claiming.is_some() => {
                    claiming = None;
                    match claimed {
                        Ok((claims, limit, recorded)) => {
                            self.dry = claims.len() < limit && recorded == self.recorded;
                            self.ready.extend(claims);
                        }
                        Err(error) => self.fail(error),
                    }
                }
                done = finish(&mut recording), if recording.is_some() => {
                    recording = None;
                    match done {
                        Ok(()) => {
                            self.recorded += 1;
                            self.dry = false;
                        }
                        Err(error) => self.fail(error),
                    }
                }
                changed = shutdown.changed(), if listening && !self.stopping => {
                    listening = changed.is_ok();
                }
                _ = sleep_until(record_by), if recording.is_none() && record_by.is_some() => {}
            }
        }
    }

    /// Hands ready deliveries to the target while there is room: a share of `max_in_flight`
    /// per batch, or one probe alone while the breaker is open.
    fn dispatch(&mut self, permit: Permit, sending: &mut FuturesUnordered<BoxFuture<'a, Sent>>) {
        if self.stopping {
            return;
        }
        match permit {
            Permit::Wait(_) => {}
            Permit::Probe => {
                if self.in_flight == 0
                    && let Some(claim) = self.ready.pop_front()
                {
                    self.send(vec![claim], true, sending);
                }
            }
            Permit::Normal => {
                let share = self.max_in_flight.div_ceil(BATCHES);
                while !self.ready.is_empty() && sending.len() < BATCHES {
                    let take = share.min(self.ready.len());
                    if self.in_flight + take > self.max_in_flight {
                        break;
                    }
                    let claims = self.ready.drain(..take).collect();
                    self.send(claims, false, sending);
                }
            }
        }
    }

    /// Renders and sends one batch; deliveries that are not sent get their outcome at once.
    fn send(
        &mut self,
        claims: Vec<Claim>,
        probe: bool,
        sending: &mut FuturesUnordered<BoxFuture<'a, Sent>>,
    ) {
        let (claims, records) = self
            .engine
            .prepare_all(self.profile, claims, &mut self.unrecorded);
        if records.is_empty() {
            return;
        }
        self.in_flight += records.len();
        let batch = Batch {
            id: uuid::Uuid::now_v7().to_string(),
            created_at_ms: now_ms(),
            records,
        };
        let profile = self.profile;
        sending.push(Box::pin(async move {
            let started = Instant::now();
            let outcomes = deliver(profile, &batch).await;
            Sent {
                claims,
                outcomes,
                elapsed: started.elapsed(),
                probe,
            }
        }));
    }

    /// How many deliveries to claim now, if any.
    fn claim_limit(&self, permit: Permit) -> Option<usize> {
        if self.stopping || self.dry {
            return None;
        }
        let idle = self.in_flight == 0 && self.ready.is_empty();
        match permit {
            Permit::Wait(_) => None,
            Permit::Probe => idle.then_some(1),
            Permit::Normal if self.ready.len() >= self.max_in_flight => None,
            Permit::Normal => {
                let held = self.ready.len() + self.in_flight;
                Some(CLAIM_AHEAD * self.max_in_flight - held)
            }
        }
    }

    fn claim(&self, limit: usize) -> Claiming {
        let name = self.profile.name.clone();
        let cutoff = match self.mode {
            Mode::Once(at) => at,
            Mode::Forever => now_ms(),
        };
        let lease_until = now_ms() + LEASE.as_millis() as i64;
        let recorded = self.recorded;
        self.engine.spawn_store(move |store| {
            let claims = store.claim(&name, cutoff, limit, lease_until)?;
            Ok((claims, limit, recorded))
        })
    }

    /// Records every outcome finished so far, in one transaction.
    fn record(&mut self) -> Recording {
        let group = std::mem::take(&mut self.unrecorded);
        self.engine.spawn_store(move |store| store.record(&group))
    }

    /// Ends the leases of the deliveries claimed but not sent, so they wait in the store.
    async fn release(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let ids: Vec<i64> = self.ready.drain(..).map(|claim| claim.id).collect();
        let claims = ids.len();
        if let Err(error) = self
            .engine
            .with_store(move |store| store.release(&ids))
            .await
        {
            warn!(
                profile = %self.profile.name,
                claims,
                error = %error,
                "could not release claimed deliveries; they are sent once their lease ends",
            );
        }
    }

    /// Settles a batch the target answered and tells the breaker.
    fn settle(&mut self, sent: Sent) {
        self.in_flight -= sent.claims.len();
        let finished =
            self.engine
                .settle_all(self.profile, &sent.claims, sent.outcomes, sent.elapsed);
        let delivered = finished.iter().filter(|f| f.next == Next::Delivered);
        let delivered = delivered.count() as u32;
        let failed = finished.len() as u32 - delivered;
        self.unrecorded.extend(finished);
        if self.breaker.is_open() && !sent.probe && delivered == 0 {
            // Sent before the breaker opened; its failures already counted.
            return;
        }
        let was_open = self.breaker.is_open();
        let profile = &self.profile.name;
        if let Some(wait) = self.breaker.record(delivered, failed, Instant::now()) {
            let wait_secs = wait.as_secs_f64().round() as u64;
            warn!(
                profile = %profile,
                failures_in_a_row = breaker::THRESHOLD,
                wait_secs,
                "the target keeps failing; holding this profile's deliveries and probing with one",
            );
        } else if was_open && !self.breaker.is_open() {
            info!(
                profile = %profile,
                "the target answered a probe; delivering again",
            );
        }
    }

    /// Waits, with nothing claimed or in flight, until deliveries may be due or shutdown.
    async fn idle(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), StoreError> {
        // Listen before looking, so a commit between the two is not missed.
        let woken = self.engine.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let wait = self.engine.idle_wait(self.profile).await?;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = woken => {}
            _ = shutdown.changed() => {}
        }
        self.dry = false;
        Ok(())
    }

    /// Stops claiming and sending after a store failure; what is in flight still finishes.
    fn fail(&mut self, error: StoreError) {
        self.stopping = true;
        self.error.get_or_insert(error);
    }
}

/// Sleeps until `at`; polled only when there is one.
async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Waits for a running store task.
async fn finish<T>(task: &mut Option<JoinHandle<Result<T, StoreError>>>) -> Result<T, StoreError> {
    let task = task.as_mut().expect("only polled while running");
    task.await.expect("store task panicked")
}
