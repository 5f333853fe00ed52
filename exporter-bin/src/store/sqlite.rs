//! The SQLite store: one file in WAL mode, written through one connection (a second one
//! only copies the log into the database, see `checkpoint.rs`).

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::checkpoint::{BACKSTOP_PAGES, Checkpointer};
use super::schema::MIGRATIONS;
use super::{
    Attempted, Claim, ClaimedBatch, DeliveryFilter, DeliveryRow, Finished, Holdings, Imported,
    Lease, NewEvent, Next, Node, NodeStatus, ProfileStatus, QueueState, Selection, Store,
    StoreError,
};
use super::{ingest_keys, ledger};

/// The embedded store.
pub struct SqliteStore {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// The path as text, for [`Store::name`].
    name: String,
    /// The node working the queue, once joined; claims are leased to it.
    node: Option<Node>,
    /// The claims handed out and not yet settled.
    holdings: Holdings,
    /// Copies the write-ahead log into the database off the request path.
    checkpointer: Checkpointer,
    /// Held while this process works the queue; released on drop.
    _worker_lock: Option<File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let folder = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty());
        if let Some(folder) = folder.filter(|folder| !folder.is_dir()) {
            return Err(StoreError::NoFolder {
                path: path.to_owned(),
                folder: folder.to_owned(),
            });
        }
        let open_error = |error| StoreError::Open {
            path: path.to_owned(),
            error,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_error)?;
        // 32 MiB of page cache: the queue's indexes stay in memory at a backlog of millions.
        conn.pragma_update(None, "cache_size", -32_768)
            .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_error)?;
        // Checkpoints run in the background (`checkpoint.rs`); a commit only as a backstop.
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)
            .map_err(open_error)?;
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            name: path.display().to_string(),
            node: None,
            holdings: Holdings::default(),
            checkpointer: Checkpointer::default(),
            _worker_lock: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Takes the right to work this store's queue: one worker process per SQLite file. Leases
    /// left by a process that stopped are released, since no other worker can hold them.
    fn lock_for_work(&mut self) -> Result<usize, StoreError> {
        let lock = lock_path(&self.path);
        let file = File::create(&lock).map_err(|error| StoreError::Lock {
            lock: lock.clone(),
            error,
        })?;
        if file.try_lock().is_err() {
            return Err(StoreError::Busy {
                path: self.path.clone(),
                lock,
            });
        }
        self._worker_lock = Some(file);
        let released = self
            .conn
            .execute(
                "UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL",
                [],
            )
            .map_err(|e| self.sql(e))?;
        Ok(released)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| self.sql(e))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::NewerSchema {
                store: self.name.clone(),
                found: version,
                known,
            });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction().map_err(|e| sql(&self.path, e))?;
            tx.execute_batch(migration)
                .map_err(|e| sql(&self.path, e))?;
            tx.pragma_update(None, "user_version", index as i64 + 1)
                .map_err(|e| sql(&self.path, e))?;
            tx.commit().map_err(|e| sql(&self.path, e))?;
        }
        Ok(())
    }

    /// Runs `work` in one transaction and commits it, syncing the disk when `full` (see
    /// [`Self::durable`]); each commit nudges the background checkpoint.
    fn write<T>(
        &mut self,
        full: bool,
        work: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.durable(full)?;
        let tx = self.conn.transaction().map_err(|e| sql(&self.path, e))?;
        let value = work(&tx)
            .and_then(|value| tx.commit().map(|()| value))
            .map_err(|e| sql(&self.path, e))?;
        self.checkpointer.committed(&self.path);
        Ok(value)
    }

    /// The id of the joined node, which claims are leased to.
    fn node_id(&self) -> Option<String> {
        self.node.as_ref().map(|node| node.id.clone())
    }

    /// Sets how hard the next commits wait for the disk. Events are committed with a sync
    /// (`FULL`): they are acknowledged once stored, and must survive a power cut. Claims and
    /// outcomes skip it (`NORMAL`, still safe against a crash of the process): losing the last
    /// of them in a power cut only sends those deliveries again, with the same id.
    fn durable(&mut self, full: bool) -> Result<(), StoreError> {
        let level = if full { "FULL" } else { "NORMAL" };
        self.conn
            .pragma_update(None, "synchronous", level)
            .map_err(|e| sql(&self.path, e))
    }

    pub(super) fn sql(&self, source: rusqlite::Error) -> StoreError {
        sql(&self.path, source)
    }
}

impl Store for SqliteStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn join(&mut self, node: &Node, now: i64) -> Result<usize, StoreError> {
        let released = self.lock_for_work()?;
        self.conn
            .execute(
                "DELETE FROM nodes WHERE heartbeat_at < ?1",
                [now - NODES_KEPT_MS],
            )
            .map_err(|e| self.sql(e))?;
        self.conn
            .execute(
                "INSERT INTO nodes (id, name, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?3)",
                params![node.id, node.name, now],
            )
            .map_err(|e| self.sql(e))?;
        self.node = Some(node.clone());
        Ok(released)
    }

    fn heartbeat(&mut self, now: i64, lease_until: i64) -> Result<(), StoreError> {
        let Some(node) = &self.node else {
            return Ok(());
        };
        let id = node.id.clone();
        let (held, orphaned) = (self.holdings.held(), self.holdings.orphaned());
        self.write(false, |tx| {
            tx.execute(
                "UPDATE nodes SET heartbeat_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            let mut renew = tx.prepare_cached(
                "UPDATE deliveries SET lease_until = ?3
                 WHERE id = ?2 AND lease_node = ?1 AND state = 'pending'",
            )?;
            for delivery in &held {
                renew.execute(params![id, delivery, lease_until])?;
            }
            let mut release = tx.prepare_cached(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id = ?2 AND lease_node = ?1 AND state = 'pending'",
            )?;
            for delivery in &orphaned {
                release.execute(params![id, delivery])?;
            }
            Ok(())
        })?;
        self.holdings.orphaned.clear();
        Ok(())
    }

    fn leave(&mut self, now: i64) -> Result<(), StoreError> {
        let Some(node) = self.node.take() else {
            return Ok(());
        };
        self.write(false, |tx| {
            tx.execute(
                "UPDATE nodes SET heartbeat_at = ?2, stopped_at = ?2 WHERE id = ?1",
                params![node.id, now],
            )?;
            tx.execute(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE lease_node = ?1 AND state = 'pending' AND lease_until IS NOT NULL",
                [&node.id],
            )?;
            Ok(())
        })
    }

    fn nodes(&mut self, now: i64) -> Result<Vec<NodeStatus>, StoreError> {
        nodes(&self.conn, now).map_err(|e| self.sql(e))
    }

    fn listen(&mut self, _wake: std::sync::Arc<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        Ok(())
    }

    /// Stores events and their deliveries in one transaction.
    fn import(&mut self, events: &[NewEvent]) -> Result<Vec<Imported>, StoreError> {
        self.write(true, |tx| insert_events(tx, events))
    }

    /// Claims up to `limit` due deliveries of `profile`, leasing them until `lease_until`.
    fn claim(
        &mut self,
        profile: &str,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        let node = self.node_id();
        let lease = Lease {
            until: lease_until,
            node: node.as_deref(),
        };
        let claims = self.write(false, |tx| {
            let mut claims = claim_fairly(tx, profile, now, limit, lease)?;
            load_bodies(tx, &mut claims, true)?;
            Ok(claims)
        })?;
        self.holdings.claimed(claims.iter().map(|c| c.id));
        Ok(claims)
    }

    fn release(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let node = self.node_id();
        let released = self.write(false, |tx| {
            let mut release = tx.prepare_cached(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id = ?1 AND state = 'pending' AND lease_node IS ?2",
            )?;
            for id in ids {
                release.execute(params![id, node])?;
            }
            Ok(())
        });
        self.holdings.settled(ids.iter().copied(), released.is_ok());
        released
    }

    /// Claims the next batch of a batch target: a failed batch that is due again, whole, or
    /// else up to `limit` due deliveries, pinned together under a new batch id.
    fn claim_batch(
        &mut self,
        profile: &str,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Option<ClaimedBatch>, StoreError> {
        let node = self.node_id();
        let lease = Lease {
            until: lease_until,
            node: node.as_deref(),
        };
        let batch = self.write(false, |tx| claim_batch(tx, profile, now, limit, lease))?;
        if let Some(batch) = &batch {
            self.holdings.claimed(batch.claims.iter().map(|c| c.id));
        }
        Ok(batch)
    }

    /// Records the outcome of claimed deliveries and their attempts in one transaction.
    fn record(&mut self, finished: &[Finished]) -> Result<(), StoreError> {
        let node = self.node_id();
        let recorded = self.write(false, |tx| record_outcomes(tx, finished, node.as_deref()));
        self.holdings
            .settled(finished.iter().map(|f| f.id), recorded.is_ok());
        recorded
    }

    /// The earliest time a pending, unclaimed delivery of `profile` becomes due.
    fn next_due(&mut self, profile: &str) -> Result<Option<i64>, StoreError> {
        let sql = by_kind("min", "min(due_at)", "AND lease_until IS NULL");
        let mut query = self.conn.prepare_cached(&sql).map_err(|e| self.sql(e))?;
        query
            .query_row(params![profile], |row| row.get(0))
            .map_err(|e| self.sql(e))
    }

    fn pending_profiles(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        pending_profiles(&self.conn).map_err(|e| self.sql(e))
    }

    /// How the deliveries of `profile` stand.
    fn queue_state(&mut self, profile: &str) -> Result<QueueState, StoreError> {
        queue_state(&self.conn, profile).map_err(|e| self.sql(e))
    }

    fn status(&mut self, profiles: &[String], now: i64) -> Result<Vec<ProfileStatus>, StoreError> {
        ledger::status(self, profiles, now)
    }

    fn deliveries(&mut self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        ledger::deliveries(self, filter)
    }

    fn retry_failed(&mut self, selection: &Selection, now: i64) -> Result<usize, StoreError> {
        ledger::retry_failed(self, selection, now)
    }

    fn replay(
        &mut self,
        profile: &str,
        since: i64,
        until: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        ledger::replay(self, profile, since, until, now)
    }

    fn set_paused(&mut self, profile: &str, paused: bool, now: i64) -> Result<bool, StoreError> {
        ledger::set_paused(self, profile, paused, now)
    }

    fn find_response(&mut self, key: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        ingest_keys::find_response(self, key)
    }

    fn reserve_key(
        &mut self,
        key: &str,
        body_hash: &str,
        at: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        ingest_keys::reserve_key(self, key, body_hash, at, stale_before)
    }

    fn release_key(&mut self, key: &str) -> Result<(), StoreError> {
        ingest_keys::release_key(self, key)
    }

    fn save_response(
        &mut self,
        key: &str,
        body_hash: &str,
        response: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        ingest_keys::save_response(self, key, body_hash, response, at)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        ingest_keys::ping(self)
    }
}

pub(super) fn sql(path: &Path, error: rusqlite::Error) -> StoreError {
    StoreError::Sql {
        path: path.to_owned(),
        error,
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// How long a node that stopped sending heartbeats stays listed.
const NODES_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// A profile's pending deliveries in the three kinds that have an index of their own (schema
/// versions 2 and 7): first attempts and retries outside batches, and batch members.
const PENDING_KINDS: [&str; 3] = [
    "batch_id IS NULL AND attempts = 0",
    "batch_id IS NULL AND attempts > 0",
    "batch_id IS NOT NULL",
];

/// A statement that computes `value` over each kind of pending delivery of profile `?1` that
/// passes `filter`, and combines the three with the aggregate `total` (`min`, `sum`): each
/// kind is read through its own index, where one statement over all pending deliveries would
/// read the whole backlog through `deliveries_state`.
pub(super) fn by_kind(total: &str, value: &str, filter: &str) -> String {
    let kinds = PENDING_KINDS.map(|kind| {
        format!(
            "SELECT (SELECT {value} FROM deliveries
                     WHERE profile = CAST(?1 AS TEXT) AND state = 'pending' AND {kind} {filter})
                    AS value"
        )
    });
    format!("SELECT {total}(value) FROM ({})", kinds.join(" UNION ALL "))
}

/// Every profile with pending deliveries, and how many.
pub(super) fn pending_profiles(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut query = conn.prepare_cached(
        "SELECT profile, count(*) FROM deliveries WHERE state = 'pending' GROUP BY profile",
    )?;
    let rows = query.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
    rows.collect()
}

fn nodes(conn: &Connection, now: i64) -> rusqlite::Result<Vec<NodeStatus>> {
    let mut query = conn.prepare_cached(
        "SELECT n.id, n.name, n.started_at, n.heartbeat_at, n.stopped_at,
                (SELECT count(*) FROM deliveries d
                 WHERE d.lease_node = n.id AND d.state = 'pending' AND d.lease_until > ?1)
         FROM nodes n ORDER BY n.heartbeat_at DESC",
    )?;
    let rows = query.query_map([now], |row| {
        Ok(NodeStatus {
            id: row.get(0)?,
            name: row.get(1)?,
            started_at: row.get(2)?,
            heartbeat_at: row.get(3)?,
            stopped_at: row.get(4)?,
            claims: row.get::<_, i64>(5)? as u64,
        })
    })?;
    rows.collect()
}

fn insert_events(tx: &Transaction<'_>, events: &[NewEvent]) -> rusqlite::Result<Vec<Imported>> {
    let mut insert_event = tx.prepare_cached(
        "INSERT INTO events (order_id, trigger, dedup_key, test_order, received_at, body,
                             date_updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (dedup_key) DO NOTHING",
    )?;
    let mut insert_delivery = tx.prepare_cached(
        "INSERT INTO deliveries (uid, event_id, profile, order_id, state, due_at, created_at,
                                 updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?;
    let mut results = Vec::with_capacity(events.len());
    for event in events {
        let inserted = insert_event.execute(params![
            event.order_id,
            event.trigger,
            event.dedup_key,
            event.test_order,
            event.received_at,
            event.body,
            event.date_updated
        ])?;
        if inserted == 0 {
            results.push(Imported::Duplicate);
            continue;
        }
        let event_id = tx.last_insert_rowid();
        for delivery in &event.deliveries {
            let state = if delivery.test_order {
                "test_order"
            } else {
                "pending"
            };
            let uid = uuid::Uuid::now_v7().to_string();
            insert_delivery.execute(params![
                uid,
                event_id,
                delivery.profile,
                event.order_id,
                state,
                delivery.due_at,
                event.received_at
            ])?;
        }
        results.push(Imported::Stored);
    }
    Ok(results)
}

/// Leases up to `limit` due deliveries that belong to no batch, oldest due first, skipping any
/// whose order has an earlier delivery to this profile still pending. Bodies are not loaded.
fn claim_due(
    tx: &Transaction<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
    attempted: Attempted,
) -> rusqlite::Result<Vec<Claim>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut claim = tx.prepare_cached(&claim_sql(attempted))?;
    let values = params![profile, now, limit as i64, lease.until, lease.node];
    let rows = claim.query_map(values, claim_row)?;
    let mut claims = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    claims.sort_by_key(|c| c.id);
    Ok(claims)
}

/// The claim statement of one kind. Each kind has its own partial index (schema version 7), so
/// a claim reads only the deliveries it can take instead of scanning the whole backlog.
///
/// The profile and the limit are cast: SQLite plans with the values bound to a bare `?` there
/// (the profile against the partial indexes' `state = 'pending'`, the limit as a constant) and
/// then re-prepares the statement each time it is used again: over a third of a claim's time.
pub(super) fn claim_sql(attempted: Attempted) -> String {
    let kind = match attempted {
        Attempted::Any => "",
        Attempted::Never => "AND d.attempts = 0",
        Attempted::Before => "AND d.attempts > 0",
    };
    format!(
        "UPDATE deliveries SET lease_until = ?4, lease_node = ?5
         WHERE id IN (
             SELECT d.id FROM deliveries d
             WHERE d.profile = CAST(?1 AS TEXT) AND d.state = 'pending'
               AND d.batch_id IS NULL {kind}
               AND d.due_at <= ?2
               AND (d.lease_until IS NULL OR d.lease_until <= ?2)
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries e
                   WHERE e.profile = d.profile AND e.order_id = d.order_id
                     AND e.state = 'pending' AND e.id < d.id)
             ORDER BY d.due_at, d.id
             LIMIT CAST(?3 AS INTEGER))
         RETURNING id, uid, order_id, event_id, attempts"
    )
}

/// Claims up to `limit` due deliveries, half of them (rounded up) kept for first attempts, so
/// a backlog of retries never starves fresh events; a share one kind does not use goes to the
/// other.
fn claim_fairly(
    tx: &Transaction<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
) -> rusqlite::Result<Vec<Claim>> {
    if paused(tx, profile)? {
        return Ok(Vec::new());
    }
    let mut claims = claim_due(tx, profile, now, limit.div_ceil(2), lease, Attempted::Never)?;
    let room = limit - claims.len();
    claims.extend(claim_due(tx, profile, now, room, lease, Attempted::Before)?);
    let room = limit - claims.len();
    claims.extend(claim_due(tx, profile, now, room, lease, Attempted::Never)?);
    claims.sort_by_key(|c| c.id);
    Ok(claims)
}

fn paused(tx: &Transaction<'_>, profile: &str) -> rusqlite::Result<bool> {
    let mut query = tx.prepare_cached("SELECT paused FROM profile_controls WHERE profile = ?1")?;
    Ok(query
        .query_row([profile], |row| row.get(0))
        .optional()?
        .unwrap_or(false))
}

fn claim_batch(
    tx: &Transaction<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
) -> rusqlite::Result<Option<ClaimedBatch>> {
    if paused(tx, profile)? {
        return Ok(None);
    }
    // One flush of a profile at a time: a batch whose lease holds is still being written.
    let in_flight: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM deliveries
                        WHERE profile = ?1 AND state = 'pending' AND batch_id IS NOT NULL
                          AND lease_until > ?2)",
        params![profile, now],
        |row| row.get(0),
    )?;
    if in_flight {
        return Ok(None);
    }
    let retried = tx
        .query_row(
            "SELECT batch_id, batch_at FROM deliveries
             WHERE profile = ?1 AND state = 'pending' AND batch_id IS NOT NULL AND due_at <= ?2
               AND (lease_until IS NULL OR lease_until <= ?2)
             ORDER BY due_at LIMIT 1",
            params![profile, now],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )
        .optional()?;
    let (id, created_at, claims) = match retried {
        Some((id, created_at)) => {
            let mut claim = tx.prepare_cached(
                "UPDATE deliveries SET lease_until = ?3, lease_node = ?4
                 WHERE profile = ?1 AND batch_id = ?2 AND state = 'pending'
                 RETURNING id, uid, order_id, event_id, attempts",
            )?;
            let values = params![profile, id, lease.until, lease.node];
            let rows = claim.query_map(values, claim_row)?;
            (id, created_at, rows.collect::<rusqlite::Result<Vec<_>>>()?)
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let mut claims = claim_due(tx, profile, now, limit, lease, Attempted::Any)?;
            let mut pin = tx.prepare_cached(
                "UPDATE deliveries SET batch_id = ?2, batch_at = ?3 WHERE id = ?1",
            )?;
            for claim in &claims {
                pin.execute(params![claim.id, id, now])?;
            }
            load_bodies(tx, &mut claims, true)?;
            return Ok((!claims.is_empty()).then_some(ClaimedBatch {
                id,
                created_at: now,
                claims,
            }));
        }
    };
    let mut claims = claims;
    claims.sort_by_key(|c| c.id);
    load_bodies(tx, &mut claims, false)?;
    Ok((!claims.is_empty()).then_some(ClaimedBatch {
        id,
        created_at,
        claims,
    }))
}

fn claim_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Claim> {
    Ok(Claim {
        id: row.get(0)?,
        uid: row.get(1)?,
        order_id: row.get(2)?,
        event_id: row.get(3)?,
        attempts: row.get(4)?,
        body: String::new(),
        latest: None,
    })
}

/// An order's latest event other than `?2`. The order id is cast for the reason given at
/// [`claim_sql`]: bound bare, it made SQLite re-prepare the statement at every claim.
pub(super) const NEWEST: &str = "SELECT id, body, coalesce(date_updated, '') FROM events
     WHERE order_id = CAST(?1 AS TEXT) AND id != ?2
     ORDER BY coalesce(date_updated, '') DESC, id DESC LIMIT 1";

/// Fills in each claim's event, and with `latest`, the order's latest event when it is another
/// one. The latest is the one the CRM updated last (`dateUpdated`), then the one that arrived
/// last, so a partial that arrives after its order's sale is still recognised as older.
fn load_bodies(tx: &Transaction<'_>, claims: &mut [Claim], latest: bool) -> rusqlite::Result<()> {
    let mut body = tx.prepare_cached("SELECT body, date_updated FROM events WHERE id = ?1")?;
    let mut newest = tx.prepare_cached(NEWEST)?;
    for claim in claims {
        let (text, updated): (String, Option<String>) =
            body.query_row([claim.event_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        claim.body = text;
        if !latest {
            continue;
        }
        let other: Option<(i64, String, String)> = newest
            .query_row(params![claim.order_id, claim.event_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        let mine = updated.unwrap_or_default();
        claim.latest = other
            .filter(|(id, _, other)| (other.as_str(), *id) > (mine.as_str(), claim.event_id))
            .map(|(id, body, _)| (id, body));
    }
    Ok(())
}

/// Records outcomes; a delivery whose lease another node took since it was claimed is left as
/// that node has it (its attempt is still kept).
fn record_outcomes(
    tx: &Transaction<'_>,
    finished: &[Finished],
    node: Option<&str>,
) -> rusqlite::Result<()> {
    let mut update = tx.prepare_cached(
        "UPDATE deliveries
         SET state = ?2, due_at = coalesce(?3, due_at), attempts = attempts + ?4,
             lease_until = NULL, last_status = ?5, last_message = ?6, updated_at = ?7
         WHERE id = ?1 AND lease_node IS ?8",
    )?;
    let mut attempt = tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, at, duration_ms, outcome, status, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for f in finished {
        let (state, due_at) = match f.next {
            Next::Delivered => ("delivered", None),
            Next::RetryAt(at) => ("pending", Some(at)),
            Next::Failed => ("failed", None),
            Next::Superseded => ("superseded", None),
        };
        let status = f.status.map(i64::from);
        update.execute(params![
            f.id,
            state,
            due_at,
            f.attempted as i64,
            status,
            f.message,
            f.at,
            node
        ])?;
        attempt.execute(params![
            f.id,
            f.at,
            f.duration_ms,
            f.outcome,
            status,
            f.message
        ])?;
    }
    Ok(())
}

pub(super) fn queue_state(conn: &Connection, profile: &str) -> rusqlite::Result<QueueState> {
    let mut state = QueueState::default();
    let mut counts = conn.prepare_cached(
        "SELECT state, attempts > 0, count(*) FROM deliveries WHERE profile = ?1 GROUP BY 1, 2",
    )?;
    let mut rows = counts.query([profile])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let tried: bool = row.get(1)?;
        let count = row.get::<_, i64>(2)? as u64;
        state.add(&name, tried, count);
    }
    let mut next_due = conn.prepare_cached(&by_kind("min", "min(due_at)", ""))?;
    state.next_due = next_due.query_row([profile], |row| row.get(0))?;
    state.last_error = conn
        .query_row(
            "SELECT last_message FROM deliveries
             WHERE profile = ?1 AND state IN ('pending', 'failed') AND attempts > 0
             ORDER BY updated_at DESC LIMIT 1",
            [profile],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    Ok(state)
}
