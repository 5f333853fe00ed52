//! The SQLite store: one file in WAL mode, written through one connection.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::schema::MIGRATIONS;
use super::{Claim, ClaimedBatch, Finished, Imported, NewEvent, Next, QueueState};

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
        "the store {path} was written by a newer exporter (schema version {found}, this one knows up to {known})"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },

    #[error(
        "another exporter is already working the store {path} (lock file {lock}); stop it first or use another store"
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
}

/// The embedded store.
pub struct SqliteStore {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
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
        let mut store = SqliteStore {
            conn,
            path: path.to_owned(),
            _worker_lock: None,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Takes the right to work this store's queue: one worker process per SQLite file. Leases
    /// left by a process that stopped are released, since no other worker can hold them.
    pub fn lock_for_work(&mut self) -> Result<usize, StoreError> {
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
                path: self.path.clone(),
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

    /// Stores events and their deliveries in one transaction.
    pub fn import(&mut self, events: &[NewEvent]) -> Result<Vec<Imported>, StoreError> {
        let path = self.path.clone();
        self.durable(true)?;
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        let results = insert_events(&tx, events).map_err(|e| sql(&path, e))?;
        tx.commit().map_err(|e| sql(&path, e))?;
        Ok(results)
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

    /// Claims up to `limit` due deliveries of `profile`, leasing them until `lease_until`.
    pub fn claim(
        &mut self,
        profile: &str,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        let path = self.path.clone();
        self.durable(false)?;
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        let claims = claim_fairly(&tx, profile, now, limit, lease_until)
            .and_then(|mut claims| load_bodies(&tx, &mut claims, true).map(|()| claims))
            .map_err(|e| sql(&path, e))?;
        tx.commit().map_err(|e| sql(&path, e))?;
        Ok(claims)
    }

    /// Claims the next batch of a batch target: a failed batch that is due again, whole, or
    /// else up to `limit` due deliveries, pinned together under a new batch id.
    pub fn claim_batch(
        &mut self,
        profile: &str,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Option<ClaimedBatch>, StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        let batch =
            claim_batch(&tx, profile, now, limit, lease_until).map_err(|e| sql(&path, e))?;
        tx.commit().map_err(|e| sql(&path, e))?;
        Ok(batch)
    }

    /// Records the outcome of claimed deliveries and their attempts in one transaction.
    pub fn record(&mut self, finished: &[Finished]) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.durable(false)?;
        let tx = self.conn.transaction().map_err(|e| sql(&path, e))?;
        record_outcomes(&tx, finished).map_err(|e| sql(&path, e))?;
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// The earliest time a pending, unclaimed delivery of `profile` becomes due.
    pub fn next_due(&self, profile: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(due_at) FROM deliveries
                 WHERE profile = ?1 AND state = 'pending' AND lease_until IS NULL",
                [profile],
                |row| row.get(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Every profile with pending deliveries, and how many.
    pub fn pending_profiles(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut query = self
            .conn
            .prepare(
                "SELECT profile, count(*) FROM deliveries WHERE state = 'pending' GROUP BY profile",
            )
            .map_err(|e| self.sql(e))?;
        let rows = query
            .query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.sql(e))
    }

    /// How the deliveries of `profile` stand.
    pub fn queue_state(&self, profile: &str) -> Result<QueueState, StoreError> {
        queue_state(&self.conn, profile).map_err(|e| self.sql(e))
    }

    pub(super) fn sql(&self, source: rusqlite::Error) -> StoreError {
        sql(&self.path, source)
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

/// Which pending deliveries a claim takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempted {
    Any,
    Never,
    Before,
}

/// Leases up to `limit` due deliveries that belong to no batch, oldest due first, skipping any
/// whose order has an earlier delivery to this profile still pending. Bodies are not loaded.
fn claim_due(
    tx: &Transaction<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease_until: i64,
    attempted: Attempted,
) -> rusqlite::Result<Vec<Claim>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One statement per kind, each with its own partial index (schema version 7), so a claim
    // reads only the deliveries it can take instead of scanning the whole backlog.
    let kind = match attempted {
        Attempted::Any => "",
        Attempted::Never => "AND d.attempts = 0",
        Attempted::Before => "AND d.attempts > 0",
    };
    let mut claim = tx.prepare_cached(&format!(
        "UPDATE deliveries SET lease_until = ?4
         WHERE id IN (
             SELECT d.id FROM deliveries d
             WHERE d.profile = ?1 AND d.state = 'pending' AND d.batch_id IS NULL {kind}
               AND d.due_at <= ?2
               AND (d.lease_until IS NULL OR d.lease_until <= ?2)
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries e
                   WHERE e.profile = d.profile AND e.order_id = d.order_id
                     AND e.state = 'pending' AND e.id < d.id)
             ORDER BY d.due_at, d.id
             LIMIT ?3)
         RETURNING id, uid, order_id, event_id, attempts"
    ))?;
    let values = params![profile, now, limit as i64, lease_until];
    let rows = claim.query_map(values, claim_row)?;
    let mut claims = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    claims.sort_by_key(|c| c.id);
    Ok(claims)
}

/// Claims up to `limit` due deliveries, half of them (rounded up) kept for first attempts, so
/// a backlog of retries never starves fresh events; a share one kind does not use goes to the
/// other.
fn claim_fairly(
    tx: &Transaction<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease_until: i64,
) -> rusqlite::Result<Vec<Claim>> {
    if paused(tx, profile)? {
        return Ok(Vec::new());
    }
    let mut claims = claim_due(
        tx,
        profile,
        now,
        limit.div_ceil(2),
        lease_until,
        Attempted::Never,
    )?;
    let room = limit - claims.len();
    claims.extend(claim_due(
        tx,
        profile,
        now,
        room,
        lease_until,
        Attempted::Before,
    )?);
    let room = limit - claims.len();
    claims.extend(claim_due(
        tx,
        profile,
        now,
        room,
        lease_until,
        Attempted::Never,
    )?);
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
    lease_until: i64,
) -> rusqlite::Result<Option<ClaimedBatch>> {
    if paused(tx, profile)? {
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
                "UPDATE deliveries SET lease_until = ?3
                 WHERE profile = ?1 AND batch_id = ?2 AND state = 'pending'
                 RETURNING id, uid, order_id, event_id, attempts",
            )?;
            let rows = claim.query_map(params![profile, id, lease_until], claim_row)?;
            (id, created_at, rows.collect::<rusqlite::Result<Vec<_>>>()?)
        }
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let mut claims = claim_due(tx, profile, now, limit, lease_until, Attempted::Any)?;
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

/// Fills in each claim's event, and with `latest`, the order's latest event when it is another
/// one. The latest is the one the CRM updated last (`dateUpdated`), then the one that arrived
/// last, so a partial that arrives after its order's sale is still recognised as older.
fn load_bodies(tx: &Transaction<'_>, claims: &mut [Claim], latest: bool) -> rusqlite::Result<()> {
    let mut body = tx.prepare_cached("SELECT body, date_updated FROM events WHERE id = ?1")?;
    let mut newest = tx.prepare_cached(
        "SELECT id, body, coalesce(date_updated, '') FROM events
         WHERE order_id = ?1 AND id != ?2
         ORDER BY coalesce(date_updated, '') DESC, id DESC LIMIT 1",
    )?;
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

fn record_outcomes(tx: &Transaction<'_>, finished: &[Finished]) -> rusqlite::Result<()> {
    let mut update = tx.prepare_cached(
        "UPDATE deliveries
         SET state = ?2, due_at = coalesce(?3, due_at), attempts = attempts + ?4,
             lease_until = NULL, last_status = ?5, last_message = ?6, updated_at = ?7
         WHERE id = ?1",
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
            f.at
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

fn queue_state(conn: &Connection, profile: &str) -> rusqlite::Result<QueueState> {
    let mut state = QueueState::default();
    let mut counts = conn.prepare_cached(
        "SELECT state, attempts > 0, count(*) FROM deliveries WHERE profile = ?1 GROUP BY 1, 2",
    )?;
    let mut rows = counts.query([profile])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let tried: bool = row.get(1)?;
        let count = row.get::<_, i64>(2)? as u64;
        match (name.as_str(), tried) {
            ("delivered", _) => state.delivered += count,
            ("superseded", _) => state.superseded += count,
            ("test_order", _) => state.test_orders += count,
            ("failed", _) => state.failed += count,
            ("pending", false) => state.scheduled += count,
            ("pending", true) => state.retrying += count,
            _ => {}
        }
    }
    state.next_due = conn.query_row(
        "SELECT min(due_at) FROM deliveries WHERE profile = ?1 AND state = 'pending'",
        [profile],
        |row| row.get(0),
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDelivery;

    fn event(order: &str, trigger: &str, updated: &str, profiles: &[&str], at: i64) -> NewEvent {
        NewEvent {
            order_id: order.into(),
            trigger: trigger.into(),
            dedup_key: format!("{order}|{trigger}|{updated}"),
            test_order: false,
            received_at: at,
            body: format!(r#"{{"orderId":"{order}","customerType":"{trigger}"}}"#),
            date_updated: Some(updated.to_owned()),
            deliveries: profiles
                .iter()
                .map(|p| NewDelivery {
                    profile: (*p).into(),
                    due_at: at,
                    test_order: false,
                })
                .collect(),
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("q.db")).unwrap();
        (dir, store)
    }

    fn finished(id: i64, next: Next) -> Finished {
        Finished {
            id,
            next,
            attempted: true,
            outcome: "x",
            status: None,
            message: String::new(),
            at: 10,
            duration_ms: 1,
        }
    }

    #[test]
    fn stores_an_event_once() {
        let (_dir, mut store) = store();
        let a = event("A", "Partial", "t1", &["p"], 0);
        let results = store.import(&[a.clone(), a]).unwrap();
        assert_eq!(results, [Imported::Stored, Imported::Duplicate]);
        assert_eq!(store.queue_state("p").unwrap().scheduled, 1);
    }

    #[test]
    fn claims_only_due_unleased_deliveries() {
        let (_dir, mut store) = store();
        store
            .import(&[
                event("A", "Partial", "1", &["p"], 0),
                event("B", "Partial", "1", &["p"], 100),
            ])
            .unwrap();
        let first = store.claim("p", 50, 10, 1_000).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].order_id, "A");
        assert!(
            store.claim("p", 50, 10, 1_000).unwrap().is_empty(),
            "leased"
        );
        assert_eq!(
            store.claim("p", 1_000, 10, 2_000).unwrap().len(),
            2,
            "lease ended, B due"
        );
    }

    #[test]
    fn keeps_arrival_order_per_order_and_profile() {
        let (_dir, mut store) = store();
        let events = [
            event("A", "Partial", "1", &["p"], 0),
            event("A", "New Sale", "2", &["p"], 0),
        ];
        store.import(&events).unwrap();
        let first = store.claim("p", 10, 10, 100).unwrap();
        assert_eq!(first.len(), 1, "the second waits for the first");
        assert_eq!(first[0].latest.as_ref().map(|l| l.0), Some(2));
        store
            .record(&[finished(first[0].id, Next::RetryAt(20))])
            .unwrap();
        assert!(
            store
                .claim("p", 30, 10, 100)
                .unwrap()
                .iter()
                .all(|c| c.id == first[0].id)
        );
    }

    #[test]
    fn records_outcomes_and_attempts() {
        let (_dir, mut store) = store();
        store
            .import(&[event("A", "Partial", "1", &["p"], 0)])
            .unwrap();
        let claim = store.claim("p", 10, 10, 100).unwrap().remove(0);
        let mut retry = finished(claim.id, Next::RetryAt(500));
        retry.message = "HTTP 500".into();
        store.record(&[retry]).unwrap();
        let state = store.queue_state("p").unwrap();
        assert_eq!((state.retrying, state.next_due), (1, Some(500)));
        assert_eq!(state.last_error.as_deref(), Some("HTTP 500"));
        let claim = store.claim("p", 500, 10, 600).unwrap().remove(0);
        assert_eq!(claim.attempts, 1);
        store
            .record(&[finished(claim.id, Next::Delivered)])
            .unwrap();
        assert_eq!(store.queue_state("p").unwrap().delivered, 1);
    }

    #[test]
    fn one_worker_per_store_and_stale_leases_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let mut first = SqliteStore::open(&path).unwrap();
        first
            .import(&[event("A", "Partial", "1", &["p"], 0)])
            .unwrap();
        first.claim("p", 10, 10, i64::MAX).unwrap();
        assert_eq!(first.lock_for_work().unwrap(), 1);
        let mut second = SqliteStore::open(&path).unwrap();
        assert!(matches!(
            second.lock_for_work(),
            Err(StoreError::Busy { .. })
        ));
        drop(first);
        assert_eq!(second.lock_for_work().unwrap(), 0);
    }

    #[test]
    fn a_failed_batch_is_claimed_again_whole_without_new_members() {
        let (_dir, mut store) = store();
        store
            .import(&[
                event("A", "Refund", "1", &["p"], 0),
                event("B", "Refund", "1", &["p"], 0),
            ])
            .unwrap();
        let first = store.claim_batch("p", 10, 100, 20).unwrap().unwrap();
        assert_eq!(first.claims.len(), 2);
        let retry: Vec<_> = first
            .claims
            .iter()
            .map(|c| finished(c.id, Next::RetryAt(50)))
            .collect();
        store.record(&retry).unwrap();
        store
            .import(&[event("C", "Refund", "1", &["p"], 40)])
            .unwrap();

        let again = store.claim_batch("p", 60, 100, 70).unwrap().unwrap();
        assert_eq!((&again.id, again.created_at), (&first.id, 10));
        let ids = |b: &ClaimedBatch| b.claims.iter().map(|c| c.id).collect::<Vec<_>>();
        assert_eq!(ids(&again), ids(&first));
        assert!(
            again
                .claims
                .iter()
                .all(|c| c.latest.is_none() && !c.body.is_empty())
        );

        let done: Vec<_> = again
            .claims
            .iter()
            .map(|c| finished(c.id, Next::Delivered))
            .collect();
        store.record(&done).unwrap();
        let next = store.claim_batch("p", 80, 100, 90).unwrap().unwrap();
        assert_ne!(next.id, first.id);
        assert_eq!(next.claims.len(), 1, "C forms a new batch");
    }

    #[test]
    fn keeps_half_of_each_claim_for_first_attempts() {
        let (_dir, mut store) = store();
        let old: Vec<_> = (0..6)
            .map(|i| event(&format!("R{i}"), "Partial", "1", &["p"], 0))
            .collect();
        store.import(&old).unwrap();
        let first = store.claim("p", 10, 6, 20).unwrap();
        let retry: Vec<_> = first
            .iter()
            .map(|c| finished(c.id, Next::RetryAt(30)))
            .collect();
        store.record(&retry).unwrap();
        let fresh: Vec<_> = (0..6)
            .map(|i| event(&format!("F{i}"), "Partial", "1", &["p"], 40))
            .collect();
        store.import(&fresh).unwrap();

        let mixed = store.claim("p", 50, 4, 60).unwrap();
        let retries = mixed.iter().filter(|c| c.attempts > 0).count();
        assert_eq!(
            (mixed.len(), retries),
            (4, 2),
            "the older retries do not take every slot"
        );
        let rest = store.claim("p", 50, 100, 60).unwrap();
        assert_eq!(
            rest.len(),
            8,
            "a share one kind leaves is used by the other"
        );
    }

    #[test]
    fn the_latest_event_is_the_one_the_crm_updated_last() {
        let (_dir, mut store) = store();
        let sale = event("A", "New Sale", "2026-11-02 06:18:14", &[], 0);
        let partial = event("A", "Partial", "2026-11-02 06:00:33", &["p"], 0);
        store.import(&[sale, partial]).unwrap();
        let claim = store.claim("p", 10, 10, 100).unwrap().remove(0);
        assert_eq!(
            claim.latest.map(|l| l.0),
            Some(1),
            "the sale, though it arrived first"
        );

        let (_dir, mut store) = self::store();
        let partial = event("B", "Partial", "2026-11-02 06:00:33", &["p"], 0);
        let stale = event("B", "New Sale", "2026-11-02 05:00:00", &[], 0);
        store.import(&[partial, stale]).unwrap();
        let claim = store.claim("p", 10, 10, 100).unwrap().remove(0);
        assert_eq!(
            claim.latest, None,
            "an older update arriving later is not the latest"
        );
    }
}
