//! Answers given to requests with an `Idempotency-Key`, so a client that sends the same request
//! again gets the same answer and creates nothing new.
//!
//! The key is saved after the request's events have committed. A crash between the two loses
//! only the saved answer: a re-sent request is then imported again, and every event in it is
//! recognised as a duplicate, so it still creates no deliveries.

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

/// Saves the answer given to `key`; the first answer saved wins.
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
             ON CONFLICT (key) DO NOTHING",
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
