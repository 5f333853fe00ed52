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
//!   when the next worker starts, since one worker process owns a SQLite store at a time).
//! - No transaction is open while a target is called: claim commits, delivery happens, then the
//!   outcome and its attempt row commit together.
//! - A batch target's deliveries are claimed as a batch: a pinned batch id and creation time
//!   are set at its first claim, and a batch that fails is claimed again whole, without new
//!   members and without the route recheck, so its retry carries the same records.
//! - A paused profile's deliveries are not claimed; they stay pending, not failed.
//! - Per order and profile, a delivery is only claimed when no earlier delivery of the same
//!   order to the same profile is still pending, so targets see an order's events in arrival
//!   order.

mod ingest_keys;
mod ledger;
mod schema;
mod sqlite;

pub use ledger::{DeliveryFilter, DeliveryRow, ProfileStatus, Selection};
pub use sqlite::{SqliteStore, StoreError};

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

/// Milliseconds since the Unix epoch, the time unit of the store.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
