//! Answers given to requests with an `Idempotency-Key`, so a client that sends the same request
//! again gets the same answer and creates nothing new.
//!
//! The key is reserved (with an empty answer) before the request's events are stored, and its
//! answer saved after they have committed; a request that finds the key reserved waits for that
//! answer. A crash between the two leaves the reservation, which a re-sent request takes over
//! once it is stale: its events are then imported again and recognised as duplicates, so it
//! still creates no deliveries.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, StoreError};

/// The answer saved for `key` and the hash of the request it answered, if any.
pub(super) fn find_response(
    store: &SqliteStore,
    key: &str,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    store
        .conn
        .query_row(
            "SELECT response, body_hash FROM ingest_keys WHERE key = ?1",
            [key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(|e| store.sql(e))
}

/// Reserves `key` for a request: true when it was free, or reserved before `stale_before` and
/// never answered.
pub(super) fn reserve_key(
    store: &mut SqliteStore,
    key: &str,
    body_hash: &str,
    at: i64,
    stale_before: i64,
) -> Result<bool, StoreError> {
    store
        .conn
        .execute(
            "INSERT INTO ingest_keys (key, response, created_at, body_hash) VALUES (?1, '', ?2, ?3)
             ON CONFLICT (key) DO UPDATE
             SET created_at = excluded.created_at, body_hash = excluded.body_hash
             WHERE ingest_keys.response = '' AND ingest_keys.created_at < ?4",
            params![key, at, body_hash, stale_before],
        )
        .map(|changed| changed == 1)
        .map_err(|e| store.sql(e))
}

/// Drops the reservation of `key` if it has no answer.
pub(super) fn release_key(store: &mut SqliteStore, key: &str) -> Result<(), StoreError> {
    store
        .conn
        .execute(
            "DELETE FROM ingest_keys WHERE key = ?1 AND response = ''",
            [key],
        )
        .map(drop)
        .map_err(|e| store.sql(e))
}

/// Saves the answer given to `key`, filling its reservation; the first answer saved wins.
pub(super) fn save_response(
    store: &mut SqliteStore,
    key: &str,
    body_hash: &str,
    response: &str,
    at: i64,
) -> Result<(), StoreError> {
    store
        .conn
        .execute(
            "INSERT INTO ingest_keys (key, response, created_at, body_hash) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key) DO UPDATE SET response = excluded.response
             WHERE ingest_keys.response = ''",
            params![key, response, at, body_hash],
        )
        .map(drop)
        .map_err(|e| store.sql(e))
}

/// Checks that the store answers a query.
pub(super) fn ping(store: &SqliteStore) -> Result<(), StoreError> {
    store
        .conn
        .query_row("SELECT 1", [], |_| Ok(()))
        .map_err(|e| store.sql(e))
}
