//! The durable queue: events, the deliveries routed from them, and every attempt.
//!
//! Invariants:
//! - An event is acknowledged (counted as imported, answered 202) only after the transaction
//!   that stores it and all of its deliveries has committed. Events and their deliveries are
//!   written together or not at all.
//! - An event is stored once: a second copy with the same order id, trigger and `dateUpdated`
//!   is counted as a duplicate and creates no deliveries.
//! - A delivery is `pending` until it ends `delivered`, `failed` (attempt limit reached, or the
//!   target says it can never succeed), or `superseded` (the order's latest event no longer
//!   matches the profile). Test orders get `test_order` deliveries that are never attempted.
//!   Nothing is ever deleted.
//! - A worker claims due deliveries by setting a lease; a claimed delivery stays `pending`, so
//!   a crash between claim and outcome returns it to the queue when the lease ends (or at once
//!   when the next worker starts, since one worker process owns a SQLite store at a time). A
//!   worker releases the claims it will not attempt (shutdown, a target held by its breaker):
//!   they stay as they were, unattempted, and can be claimed again at once.
//! - No transaction is open while a target is called: claim commits, delivery happens, then the
//!   outcome and its attempt row commit together.
//! - A batch target's deliveries are claimed as a batch: a pinned batch id and creation time
//!   are set at its first claim, and a batch that fails is claimed again whole, without new
//!   members and without the route recheck, so its retry carries the same records.
//! - A paused profile's deliveries are not claimed; they stay pending, not failed.
//! - Per order and profile, a delivery is only claimed when no earlier delivery of the same
//!   order to the same profile is still pending, so targets see an order's events in arrival
//!   order.

mod checkpoint;
mod ingest_keys;
mod ledger;
mod pg_schema;
mod postgres;
mod schema;
mod sqlite;
#[cfg(test)]
mod suite;

use std::path::PathBuf;

use serde::Serialize;

use crate::config::StoreLocation;

pub use ledger::{DeliveryFilter, DeliveryRow, ProfileStatus, Selection};
pub use postgres::{PgStore, masked_url};
pub use sqlite::SqliteStore;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {path}: {error}")]
    Open {
        path: PathBuf,
        error: rusqlite::Error,
    },

    #[error("cannot open the store {path}: the folder {folder} does not exist; create it first")]
    NoFolder { path: PathBuf, folder: PathBuf },

    #[error(
        "the store {store} was written by a newer exporter (schema version {found}, this one knows \
            up to {known})"
    )]
    NewerSchema {
        store: String,
        found: i64,
        known: i64,
    },

    #[error(
        "another exporter is already working the store {path} (lock file {lock}); stop it first or \
            use another store"
    )]
    Busy { path: PathBuf, lock: PathBuf },

    #[error("cannot create the lock file {lock}: {error}")]
    Lock {
        lock: PathBuf,
        error: std::io::Error,
    },

    #[error("store {path}: {error}")]
    Sql {
        path: PathBuf,
        error: rusqlite::Error,
    },

    /// A PostgreSQL store failed; `store` is its URL without the password, `message` what the
    /// server or the connection said.
    #[error("store {store}: {message}")]
    Postgres { store: String, message: String },
}

/// A routed delivery of a new event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub profile: String,
    pub due_at: i64,
    pub test_order: bool,
}

/// An event to store, with the deliveries routing gave it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub order_id: String,
    pub trigger: String,
    /// Order id, trigger and `dateUpdated` (or the whole body when that is absent).
    pub dedup_key: String,
    pub test_order: bool,
    pub received_at: i64,
    pub body: String,
    /// The CRM's `dateUpdated`, which orders an order's events for the route recheck.
    pub date_updated: Option<String>,
    pub deliveries: Vec<NewDelivery>,
}

/// Claimed deliveries of a batch target that are delivered together. A batch that fails keeps
/// its id, creation time and members, so its retry writes the same file again.
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub id: String,
    pub created_at: i64,
    pub claims: Vec<Claim>,
}

/// What happened to one event on import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    Stored,
    Duplicate,
}

/// A delivery a worker has claimed, with what it needs to render it.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: i64,
    pub uid: String,
    pub order_id: String,
    pub event_id: i64,
    /// Attempts made before this one.
    pub attempts: u32,
    pub body: String,
    /// The order's latest event, when it is newer than this delivery's event.
    pub latest: Option<(i64, String)>,
}

/// The state a delivery ends an attempt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Still pending, due again at this time (unix ms).
    RetryAt(i64),
    Failed,
    Superseded,
}

/// The outcome of working one claimed delivery.
#[derive(Debug, Clone)]
pub struct Finished {
    pub id: i64,
    pub next: Next,
    /// False for a superseded delivery: nothing was sent.
    pub attempted: bool,
    /// `delivered`, `duplicate`, `retry`, `failed` or `superseded`, as kept in the ledger.
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub message: String,
    pub at: i64,
    pub duration_ms: i64,
}

/// How a profile's deliveries stand in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    pub delivered: u64,
    pub superseded: u64,
    pub test_orders: u64,
    pub failed: u64,
    /// Pending and never attempted.
    pub scheduled: u64,
    /// Pending after at least one failed attempt.
    pub retrying: u64,
    /// The earliest due time of a pending delivery (unix ms).
    pub next_due: Option<i64>,
    /// The message of the most recently failed attempt of a pending or failed delivery.
    pub last_error: Option<String>,
}

/// One exporter process working a store's queue. Its id is new at every start, so the claims
/// of a process that died are never mistaken for those of the one that replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// A UUID, new for each process.
    pub id: String,
    /// What operators recognise: the host name and process id.
    pub name: String,
}

impl Node {
    /// This process.
    pub fn this_process() -> Node {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Node {
            id: uuid::Uuid::now_v7().to_string(),
            name: format!("{host}:{}", std::process::id()),
        }
    }
}

/// How a node stands, for `exporter status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub id: String,
    pub name: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// Set when the node stopped cleanly.
    pub stopped_at: Option<i64>,
    /// Pending deliveries it holds a lease on that has not ended.
    pub claims: u64,
}

/// The durable queue, whatever keeps it. Every method is one transaction (or one statement)
/// and none is open across a call to a target. Times are unix milliseconds, given by the caller.
///
/// Implementations: [`SqliteStore`] (one file, one working process) and [`PgStore`] (one
/// PostgreSQL database shared by several nodes). The shared suite in `suite.rs` runs against
/// both.
pub trait Store: Send {
    /// The store as shown to people: a file path, or a URL without its password.
    fn name(&self) -> &str;

    /// Starts working the queue as `node`: registers it, and where the store has one worker
    /// at a time (SQLite), takes the lock and releases the leases a stopped process left.
    /// Returns how many leases were released. Claims made afterwards are leased to `node`.
    fn join(&mut self, node: &Node, now: i64) -> Result<usize, StoreError>;

    /// Marks the joined node alive at `now` and extends to `lease_until` the leases of the
    /// claims this handle gave out and has not seen recorded or released, so a slow delivery
    /// keeps its claim while a dead node's lapse. Claims whose outcome failed to commit are
    /// released here, so they return to the queue at once.
    fn heartbeat(&mut self, now: i64, lease_until: i64) -> Result<(), StoreError>;

    /// Marks the joined node stopped and releases the leases it still holds.
    fn leave(&mut self, now: i64) -> Result<(), StoreError>;

    /// Every node that has worked this store recently, newest heartbeat first.
    fn nodes(&mut self, now: i64) -> Result<Vec<NodeStatus>, StoreError>;

    /// Calls `wake` whenever another process commits new events, until the process ends.
    /// A store with one process (SQLite) does nothing: its committer wakes the workers itself.
    fn listen(&mut self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Result<(), StoreError>;

    /// Stores events and their deliveries in one transaction, durably.
    fn import(&mut self, events: &[NewEvent]) -> Result<Vec<Imported>, StoreError>;

    /// Claims up to `limit` due deliveries of `profile` (not in a batch), leasing them until
    /// `lease_until`, half of them (rounded up) kept for first attempts, skipping any whose
    /// order has an earlier delivery to this profile still pending. Returns them by id.
    fn claim(
        &mut self,
        profile: &str,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Claims the next batch of a batch target: a failed batch that is due again, whole, or
    /// else up to `limit` due deliveries pinned together under a new batch id. Returns `None`
    /// while another claim of this profile's batch holds a lease, so one node at a time flushes
    /// a profile.
    fn claim_batch(
        &mut self,
        profile: &str,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Option<ClaimedBatch>, StoreError>;

    /// Ends the leases of claimed deliveries that were not attempted (the breaker opened, the
    /// node is stopping), so the next claim may take them at once. Nothing else about them
    /// changes and no attempt is written.
    fn release(&mut self, ids: &[i64]) -> Result<(), StoreError>;

    /// Records outcomes and their attempts in one transaction. An outcome of a delivery whose
    /// lease another node has taken since keeps its attempt row but does not change the
    /// delivery.
    fn record(&mut self, finished: &[Finished]) -> Result<(), StoreError>;

    /// The earliest due time of a pending, unleased delivery of `profile`.
    fn next_due(&mut self, profile: &str) -> Result<Option<i64>, StoreError>;

    /// Every profile with pending deliveries, and how many.
    fn pending_profiles(&mut self) -> Result<Vec<(String, u64)>, StoreError>;

    /// How the deliveries of `profile` stand.
    fn queue_state(&mut self, profile: &str) -> Result<QueueState, StoreError>;

    /// The status of each named profile, and of any other profile with pending deliveries.
    fn status(&mut self, profiles: &[String], now: i64) -> Result<Vec<ProfileStatus>, StoreError>;

    /// The newest deliveries matching `filter`, each with its attempts, oldest attempt first.
    fn deliveries(&mut self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError>;

    /// Puts failed deliveries back in the queue, due at `now`, with a fresh attempt count.
    fn retry_failed(&mut self, selection: &Selection, now: i64) -> Result<usize, StoreError>;

    /// Queues the events delivered to `profile` between `since` and `until` again, as new
    /// deliveries with new ids, due at `now`.
    fn replay(
        &mut self,
        profile: &str,
        since: i64,
        until: i64,
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Holds (`true`) or releases a profile's deliveries. Returns the previous setting.
    fn set_paused(&mut self, profile: &str, paused: bool, now: i64) -> Result<bool, StoreError>;

    /// The answer saved for an `Idempotency-Key` and the hash of the request it answered. The
    /// answer is empty while the key is reserved by a request whose events are being stored.
    fn find_response(&mut self, key: &str) -> Result<Option<(String, Option<String>)>, StoreError>;

    /// Reserves an `Idempotency-Key` for the request with `body_hash` before its events are
    /// stored, so two copies of one request (on two nodes, say) are stored by one and answered
    /// alike. True when this request is the first to use the key, or takes over a reservation
    /// made before `stale_before` that never got its answer (its node died); false when
    /// another request holds or has answered it ([`Store::find_response`] tells which).
    fn reserve_key(
        &mut self,
        key: &str,
        body_hash: &str,
        at: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError>;

    /// Gives up a reservation whose request got no answer (its events could not be stored).
    fn release_key(&mut self, key: &str) -> Result<(), StoreError>;

    /// Saves the answer given to an `Idempotency-Key`, reserved or not; the first answer saved
    /// wins.
    fn save_response(
        &mut self,
        key: &str,
        body_hash: &str,
        response: &str,
        at: i64,
    ) -> Result<(), StoreError>;

    /// Checks that the store answers a query.
    fn ping(&mut self) -> Result<(), StoreError>;
}

/// A store shared by the tasks of one process.
pub type SharedStore = std::sync::Arc<std::sync::Mutex<Box<dyn Store>>>;

/// The claims a store handle has handed out and not yet seen settled. A heartbeat renews only
/// these, so a claim whose outcome could not be recorded (a full disk, a lost connection) is
/// not renewed for as long as the node lives: the next heartbeat that reaches the store hands
/// it back to the queue, and failing that its lease ends.
#[derive(Debug, Default)]
struct Holdings {
    held: std::collections::BTreeSet<i64>,
    /// Claims whose outcome or release failed to commit: released at the next heartbeat.
    orphaned: std::collections::BTreeSet<i64>,
}

impl Holdings {
    fn claimed(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.held.extend(ids);
    }

    /// The claims `ids` are settled (recorded or released), or, when `committed` is false,
    /// left to be released at the next heartbeat.
    fn settled(&mut self, ids: impl IntoIterator<Item = i64>, committed: bool) {
        for id in ids {
            self.held.remove(&id);
            if !committed {
                self.orphaned.insert(id);
            }
        }
    }

    fn held(&self) -> Vec<i64> {
        self.held.iter().copied().collect()
    }

    fn orphaned(&self) -> Vec<i64> {
        self.orphaned.iter().copied().collect()
    }
}

/// Until when, and for which node, a claim holds its deliveries.
#[derive(Debug, Clone, Copy)]
struct Lease<'a> {
    until: i64,
    node: Option<&'a str>,
}

/// Which pending deliveries a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempted {
    Any,
    Never,
    Before,
}

impl QueueState {
    /// Counts `count` deliveries in `state`, `tried` when attempted at least once.
    fn add(&mut self, state: &str, tried: bool, count: u64) {
        match (state, tried) {
            ("delivered", _) => self.delivered += count,
            ("superseded", _) => self.superseded += count,
            ("test_order", _) => self.test_orders += count,
            ("failed", _) => self.failed += count,
            ("pending", false) => self.scheduled += count,
            ("pending", true) => self.retrying += count,
            _ => {}
        }
    }
}

/// Milliseconds since the Unix epoch, the time unit of the store.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Opens (creating if needed) the store at `location` and brings its schema up to date.
pub fn open(location: &StoreLocation) -> Result<Box<dyn Store>, StoreError> {
    Ok(match location {
        StoreLocation::Sqlite(path) => Box::new(SqliteStore::open(path)?),
        StoreLocation::Postgres(url) => Box::new(PgStore::open(url)?),
    })
}
