//! The SQLite schema and its migrations, numbered by `PRAGMA user_version`.

/// Each entry upgrades the schema from its index to the next version. Version 2 pins the
/// deliveries of a batch target's batch together, so a failed batch is retried whole. Version 3
/// keeps the answer given to each `Idempotency-Key` of the ingest API. Version 4 holds paused
/// profiles and indexes the ledger for operators. Version 5 keeps a hash of the request each
/// `Idempotency-Key` answered, so a key reused for another request is refused. Version 6 keeps
/// each event's `dateUpdated`, which orders an order's events for the route recheck. Version 7
/// indexes first attempts and retries apart, so a claim of either reads only what it takes.
/// Version 8 lists the nodes (processes) that work the store and which node holds each lease.
/// Version 9 drops two indexes every new delivery paid for: `deliveries_due`, whose readers now
/// go through the indexes of version 7 and `deliveries_batch`, and `deliveries_by_order`, a
/// text key at a random place per insert, for one on the event id, which only grows at its end.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    order_id    TEXT    NOT NULL,
    trigger     TEXT    NOT NULL,
    dedup_key   TEXT    NOT NULL UNIQUE,
    test_order  INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX events_by_order ON events (order_id, id);

CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY,
    uid          TEXT    NOT NULL UNIQUE,
    event_id     INTEGER NOT NULL REFERENCES events (id),
    profile      TEXT    NOT NULL,
    order_id     TEXT    NOT NULL,
    state        TEXT    NOT NULL
        CHECK (state IN ('pending', 'delivered', 'failed', 'superseded', 'test_order')),
    due_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  INTEGER,
    last_status  INTEGER,
    last_message TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (profile, due_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_order ON deliveries (profile, order_id, id) WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (profile, state);

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    at          INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    status      INTEGER,
    message     TEXT    NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
"#,
    r#"
ALTER TABLE deliveries ADD COLUMN batch_id TEXT;
ALTER TABLE deliveries ADD COLUMN batch_at INTEGER;
CREATE INDEX deliveries_batch ON deliveries (profile, batch_id)
    WHERE state = 'pending' AND batch_id IS NOT NULL;
"#,
    r#"
CREATE TABLE ingest_keys (
    key        TEXT    PRIMARY KEY,
    response   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE profile_controls (
    profile    TEXT    PRIMARY KEY,
    paused     INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
);
CREATE INDEX deliveries_delivered ON deliveries (profile, updated_at) WHERE state = 'delivered';
CREATE INDEX deliveries_by_order ON deliveries (order_id);
"#,
    r#"
ALTER TABLE ingest_keys ADD COLUMN body_hash TEXT;
"#,
    r#"
ALTER TABLE events ADD COLUMN date_updated TEXT;
"#,
    r#"
CREATE INDEX deliveries_fresh ON deliveries (profile, due_at, id)
    WHERE state = 'pending' AND batch_id IS NULL AND attempts = 0;
CREATE INDEX deliveries_retrying ON deliveries (profile, due_at, id)
    WHERE state = 'pending' AND batch_id IS NULL AND attempts > 0;
"#,
    r#"
CREATE TABLE nodes (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    stopped_at   INTEGER
);
ALTER TABLE deliveries ADD COLUMN lease_node TEXT;
CREATE INDEX deliveries_leased ON deliveries (lease_node)
    WHERE state = 'pending' AND lease_until IS NOT NULL;
"#,
    r#"
DROP INDEX deliveries_due;
DROP INDEX deliveries_by_order;
CREATE INDEX deliveries_by_event ON deliveries (event_id);
"#,
];
