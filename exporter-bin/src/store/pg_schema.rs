//! The PostgreSQL schema and its migrations, numbered in the `schema_version` table.
//!
//! The tables are created unqualified, so they land in the connection's current schema (the
//! first entry of `search_path`); several stores can share a database, one per schema.
//! Migrations run at open, in one transaction holding an advisory lock keyed by the schema, so
//! nodes that start together apply each version once.

/// Each entry upgrades the schema from its index to the next version. Version 1 is the whole
/// schema of SQLite version 8 in PostgreSQL's types: identity ids, BIGINT unix milliseconds,
/// BOOLEAN flags.
pub const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE events (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     TEXT    NOT NULL,
    trigger      TEXT    NOT NULL,
    dedup_key    TEXT    NOT NULL UNIQUE,
    test_order   BOOLEAN NOT NULL,
    received_at  BIGINT  NOT NULL,
    body         TEXT    NOT NULL,
    -- Compared byte by byte, as SQLite does, to find an order's latest event.
    date_updated TEXT COLLATE "C"
);
CREATE INDEX events_by_order ON events (order_id, id);

CREATE TABLE deliveries (
    id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid          TEXT    NOT NULL UNIQUE,
    event_id     BIGINT  NOT NULL REFERENCES events (id),
    profile      TEXT    NOT NULL,
    order_id     TEXT    NOT NULL,
    state        TEXT    NOT NULL
        CHECK (state IN ('pending', 'delivered', 'failed', 'superseded', 'test_order')),
    due_at       BIGINT  NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  BIGINT,
    lease_node   TEXT,
    last_status  INTEGER,
    last_message TEXT,
    batch_id     TEXT,
    batch_at     BIGINT,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (profile, due_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_fresh ON deliveries (profile, due_at, id)
    WHERE state = 'pending' AND batch_id IS NULL AND attempts = 0;
CREATE INDEX deliveries_retrying ON deliveries (profile, due_at, id)
    WHERE state = 'pending' AND batch_id IS NULL AND attempts > 0;
CREATE INDEX deliveries_batch ON deliveries (profile, batch_id)
    WHERE state = 'pending' AND batch_id IS NOT NULL;
CREATE INDEX deliveries_order ON deliveries (profile, order_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (profile, state);
CREATE INDEX deliveries_delivered ON deliveries (profile, updated_at) WHERE state = 'delivered';
CREATE INDEX deliveries_by_order ON deliveries (order_id);
CREATE INDEX deliveries_leased ON deliveries (lease_node)
    WHERE state = 'pending' AND lease_until IS NOT NULL;

CREATE TABLE attempts (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT  NOT NULL REFERENCES deliveries (id),
    at          BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL,
    outcome     TEXT    NOT NULL,
    status      INTEGER,
    message     TEXT    NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);

CREATE TABLE ingest_keys (
    key        TEXT   PRIMARY KEY,
    response   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    body_hash  TEXT
);

CREATE TABLE profile_controls (
    profile    TEXT    PRIMARY KEY,
    paused     BOOLEAN NOT NULL,
    changed_at BIGINT  NOT NULL
);

CREATE TABLE nodes (
    id           TEXT   PRIMARY KEY,
    name         TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    stopped_at   BIGINT
);
"#];

/// Takes the migration lock of the current schema until the transaction ends.
pub const LOCK: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/migrate', 0))";

/// Creates the version table on first use; one row per version applied.
pub const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version    BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";

/// The version the schema is at (0 when empty).
pub const VERSION: &str = "SELECT coalesce(max(version), 0) FROM schema_version";

/// Records a version as applied.
pub const APPLIED: &str = "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)";
