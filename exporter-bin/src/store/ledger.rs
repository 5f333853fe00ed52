//! What operators read and steer: per-profile status, the delivery ledger with its attempts,
//! putting failed deliveries back in the queue, replaying delivered ones, pausing profiles.

use rusqlite::{OptionalExtension, params, params_from_iter};
use serde::Serialize;

use super::{SqliteStore, StoreError};

/// How one profile stands, for `exporter status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProfileStatus {
    pub profile: String,
    pub paused: bool,
    pub pending: u64,
    pub due_now: u64,
    pub retrying: u64,
    pub failed: u64,
    pub delivered_last_hour: u64,
    /// How long the oldest pending delivery has waited since its event arrived, in seconds.
    pub oldest_pending_secs: Option<u64>,
    /// How long the earliest due delivery has been due, in seconds (0 when none is due).
    pub oldest_due_secs: u64,
    pub last_error: Option<String>,
}

/// Which deliveries `exporter deliveries` lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub profile: Option<String>,
    pub state: Option<String>,
    pub order_id: Option<String>,
    pub limit: usize,
}

/// One delivery of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub profile: String,
    pub order_id: String,
    pub trigger: String,
    pub state: String,
    pub attempts: u32,
    pub created_at: i64,
    pub due_at: i64,
    pub updated_at: i64,
    pub last_status: Option<u16>,
    pub last_message: Option<String>,
    pub history: Vec<AttemptRow>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRow {
    pub at: i64,
    pub outcome: String,
    pub status: Option<u16>,
    pub duration_ms: i64,
    pub message: String,
}

/// Which failed deliveries `exporter retry` puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<String>),
    Profile(String),
    All,
}

/// The status of each named profile, and of any other profile the store has deliveries for.
pub(super) fn status(
    store: &SqliteStore,
    profiles: &[String],
    now: i64,
) -> Result<Vec<ProfileStatus>, StoreError> {
    let mut names = profiles.to_vec();
    for (name, _) in super::sqlite::pending_profiles(&store.conn).map_err(|e| store.sql(e))? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .iter()
        .map(|name| profile_status(store, name, now))
        .collect()
}

fn profile_status(
    store: &SqliteStore,
    profile: &str,
    now: i64,
) -> Result<ProfileStatus, StoreError> {
    let queue = super::sqlite::queue_state(&store.conn, profile).map_err(|e| store.sql(e))?;
    let row = store
        .conn
        .query_row(
            &format!(
                "SELECT
               ({due_now}),
               (SELECT count(*) FROM deliveries
                WHERE profile = ?1 AND state = 'delivered' AND updated_at >= ?2 - 3600000),
               (SELECT min(created_at) FROM deliveries WHERE profile = ?1 AND state = 'pending'),
               (SELECT paused FROM profile_controls WHERE profile = ?1)",
                due_now = super::sqlite::by_kind("sum", "count(*)", "AND due_at <= ?2"),
            ),
            params![profile, now],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                    row.get::<_, Option<bool>>(3)?,
                ))
            },
        )
        .map_err(|e| store.sql(e))?;
    let (due_now, delivered_last_hour, oldest, paused) = row;
    Ok(ProfileStatus {
        profile: profile.to_owned(),
        paused: paused.unwrap_or(false),
        pending: queue.scheduled + queue.retrying,
        due_now: due_now as u64,
        retrying: queue.retrying,
        failed: queue.failed,
        delivered_last_hour: delivered_last_hour as u64,
        oldest_pending_secs: oldest.map(|at| ((now - at).max(0) / 1000) as u64),
        oldest_due_secs: queue
            .next_due
            .map_or(0, |at| ((now - at).max(0) / 1000) as u64),
        last_error: queue.last_error,
    })
}

/// The newest deliveries matching `filter`, each with its attempts, oldest attempt first.
pub(super) fn deliveries(
    store: &SqliteStore,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut sql = String::from(
        "SELECT d.id, d.uid, d.profile, d.order_id, e.trigger, d.state, d.attempts,
                d.created_at, d.due_at, d.updated_at, d.last_status, d.last_message
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE 1 = 1",
    );
    let mut values: Vec<String> = Vec::new();
    // An order's deliveries are found through its events (`events_by_order`, then
    // `deliveries_by_event`), which spares the deliveries an index on the order id.
    for (condition, value) in [
        ("d.profile = ?N", &filter.profile),
        ("d.state = ?N", &filter.state),
        (
            "d.event_id IN (SELECT id FROM events WHERE order_id = ?N)",
            &filter.order_id,
        ),
    ] {
        if let Some(value) = value {
            values.push(value.clone());
            let number = format!("?{}", values.len());
            sql.push_str(&format!(" AND {}", condition.replace("?N", &number)));
        }
    }
    sql.push_str(&format!(
        " ORDER BY d.id DESC LIMIT {}",
        filter.limit.max(1)
    ));
    let mut query = store.conn.prepare(&sql).map_err(|e| store.sql(e))?;
    let rows = query
        .query_map(params_from_iter(values.iter()), |row| {
            let id: i64 = row.get(0)?;
            Ok((
                id,
                DeliveryRow {
                    delivery_id: row.get(1)?,
                    profile: row.get(2)?,
                    order_id: row.get(3)?,
                    trigger: row.get(4)?,
                    state: row.get(5)?,
                    attempts: row.get(6)?,
                    created_at: row.get(7)?,
                    due_at: row.get(8)?,
                    updated_at: row.get(9)?,
                    last_status: row.get(10)?,
                    last_message: row.get(11)?,
                    history: Vec::new(),
                },
            ))
        })
        .map_err(|e| store.sql(e))?;
    let mut deliveries = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(|e| store.sql(e))?;
    for (id, delivery) in &mut deliveries {
        delivery.history = attempts(store, *id)?;
    }
    Ok(deliveries
        .into_iter()
        .map(|(_, delivery)| delivery)
        .collect())
}

fn attempts(store: &SqliteStore, delivery: i64) -> Result<Vec<AttemptRow>, StoreError> {
    let mut query = store
        .conn
        .prepare_cached(
            "SELECT at, outcome, status, duration_ms, message FROM attempts
             WHERE delivery_id = ?1 ORDER BY id",
        )
        .map_err(|e| store.sql(e))?;
    let rows = query
        .query_map([delivery], |row| {
            Ok(AttemptRow {
                at: row.get(0)?,
                outcome: row.get(1)?,
                status: row.get(2)?,
                duration_ms: row.get(3)?,
                message: row.get(4)?,
            })
        })
        .map_err(|e| store.sql(e))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(|e| store.sql(e))
}

/// Puts failed deliveries back in the queue, due at `now`, with a fresh attempt count (the
/// attempts already made stay in the ledger). Returns how many.
pub(super) fn retry_failed(
    store: &mut SqliteStore,
    selection: &Selection,
    now: i64,
) -> Result<usize, StoreError> {
    let update = "UPDATE deliveries
                  SET state = 'pending', due_at = ?1, attempts = 0, lease_until = NULL,
                      updated_at = ?1
                  WHERE state = 'failed'";
    let path = store.path.clone();
    let tx = store
        .conn
        .transaction()
        .map_err(|e| super::sqlite::sql(&path, e))?;
    let count = match selection {
        Selection::All => tx.execute(update, [now]),
        Selection::Profile(profile) => {
            tx.execute(&format!("{update} AND profile = ?2"), params![now, profile])
        }
        Selection::Ids(ids) => ids.iter().try_fold(0, |count, id| {
            let changed = tx.execute(&format!("{update} AND uid = ?2"), params![now, id])?;
            Ok(count + changed)
        }),
    }
    .map_err(|e| super::sqlite::sql(&path, e))?;
    tx.commit().map_err(|e| super::sqlite::sql(&path, e))?;
    Ok(count)
}

/// Queues the events delivered to `profile` between `since` and `until` (unix ms, by the
/// time they were delivered) again, as new deliveries with new ids, due at `now`.
pub(super) fn replay(
    store: &mut SqliteStore,
    profile: &str,
    since: i64,
    until: i64,
    now: i64,
) -> Result<usize, StoreError> {
    let path = store.path.clone();
    let sql = |e| super::sqlite::sql(&path, e);
    let tx = store.conn.transaction().map_err(sql)?;
    let events: Vec<(i64, String)> = {
        let mut query = tx
            .prepare(
                "SELECT event_id, order_id FROM deliveries
                 WHERE profile = ?1 AND state = 'delivered'
                   AND updated_at >= ?2 AND updated_at < ?3
                 ORDER BY id",
            )
            .map_err(sql)?;
        let rows = query
            .query_map(params![profile, since, until], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)?
    };
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO deliveries (uid, event_id, profile, order_id, state, due_at,
                                         created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?5)",
            )
            .map_err(sql)?;
        for (event_id, order_id) in &events {
            let uid = uuid::Uuid::now_v7().to_string();
            insert
                .execute(params![uid, event_id, profile, order_id, now])
                .map_err(sql)?;
        }
    }
    tx.commit().map_err(sql)?;
    Ok(events.len())
}

/// Holds (`true`) or releases a profile's deliveries. Returns the previous setting.
pub(super) fn set_paused(
    store: &mut SqliteStore,
    profile: &str,
    paused: bool,
    now: i64,
) -> Result<bool, StoreError> {
    let before = store
        .conn
        .query_row(
            "SELECT paused FROM profile_controls WHERE profile = ?1",
            [profile],
            |row| row.get::<_, bool>(0),
        )
        .optional()
        .map_err(|e| store.sql(e))?
        .unwrap_or(false);
    store
        .conn
        .execute(
            "INSERT INTO profile_controls (profile, paused, changed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (profile) DO UPDATE SET paused = ?2, changed_at = ?3",
            params![profile, paused, now],
        )
        .map_err(|e| store.sql(e))?;
    Ok(before)
}
