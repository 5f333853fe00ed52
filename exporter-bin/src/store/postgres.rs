//! The PostgreSQL store: one database schema shared by several exporter nodes.
//!
//! Invariants, beyond those of the queue (see the module docs of `store`):
//! - Every table, advisory lock and notification channel belongs to the connection's current
//!   schema, so stores in different schemas of one database never meet.
//! - Claims lock the rows they lease with `FOR UPDATE SKIP LOCKED` in one short transaction, so
//!   two nodes never lease the same delivery and never wait on each other's claims.
//! - An import takes an advisory lock per order (in one sorted statement, so no two imports
//!   deadlock) before it inserts anything: two nodes importing events of one order commit them
//!   in id order, which is the arrival order claims follow.
//! - A batch target's profile is flushed by one node at a time: `claim_batch` holds an advisory
//!   lock of the profile while it looks for a batch in flight and pins a new one.
//! - An outcome changes a delivery only while the node that recorded it still holds its lease
//!   (`lease_node`); a node whose lease lapsed and was taken keeps its attempt row only.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use postgres::error::Severity;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement, Transaction};
use sha2::{Digest, Sha256};
use tracing::warn;

use super::ledger::AttemptRow;
use super::pg_schema::{self, MIGRATIONS};
use super::{
    Attempted, Claim, ClaimedBatch, DeliveryFilter, DeliveryRow, Finished, Holdings, Imported,
    Lease, NewEvent, Next, Node, NodeStatus, ProfileStatus, QueueState, Selection, Store,
    StoreError,
};

/// How long opening a connection may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a node that stopped sending heartbeats stays listed.
const NODES_KEPT_MS: i64 = 7 * 24 * 3600 * 1000;

/// The listener's first pause after losing its connection, doubled up to the last.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LAST_PAUSE: Duration = Duration::from_secs(30);

/// How long the listener waits for a notification before it checks its connection.
const QUIET: Duration = Duration::from_secs(30);

/// The longest PostgreSQL identifier, which a channel name is.
const MAX_IDENTIFIER: usize = 63;

/// The store of several nodes.
pub struct PgStore {
    /// The connection; `None` only while the store is dropped.
    client: Option<Client>,
    /// Connection settings, for reconnecting and for the listener's own connection.
    config: Config,
    /// The URL without its password, for [`Store::name`] and every message.
    name: String,
    /// The notification channel of this store's schema.
    channel: String,
    /// The node working the queue, once joined; claims are leased to it.
    node: Option<Node>,
    /// Statements prepared on this connection, by their text.
    statements: HashMap<String, Statement>,
    /// Set when the connection failed: the next call connects again.
    broken: bool,
    /// The claims handed out and not yet settled.
    holdings: Holdings,
}

impl PgStore {
    /// Connects to the database at `url`, brings the schema of the connection's current schema
    /// up to date, and returns the store.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let name = masked_url(url);
        let fail = |what: &str, message: String| StoreError::Postgres {
            store: name.clone(),
            message: format!("{what}: {message}"),
        };
        let mut config: Config = url
            .parse()
            .map_err(|e| fail("not a valid PostgreSQL URL", describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // Named in pg_stat_activity; a peer that vanished is noticed in about 20 s, not hours.
        if config.get_application_name().is_none() {
            config.application_name("exporter");
        }
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(2);
        let mut client = connect(&config).map_err(|e| fail("cannot connect", describe(&e)))?;
        migrate(&mut client, &name)?;
        let schema: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .map_err(|e| fail("cannot read the current schema", describe(&e)))?
            .get(0);
        Ok(PgStore {
            client: Some(client),
            config,
            channel: channel_name(schema.as_deref().unwrap_or_default()),
            name,
            node: None,
            statements: HashMap::new(),
            broken: false,
            holdings: Holdings::default(),
        })
    }

    /// Runs `work` in one transaction, connecting again first if the connection was lost (a
    /// call that fails because the connection broke fails; the next one connects again).
    fn run<T>(
        &mut self,
        what: &str,
        work: impl FnOnce(&mut Session<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        if self.broken || self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.config).map_err(|e| self.error(what, &e))?);
            self.statements.clear();
            self.broken = false;
            warn!(store = %self.name, "the connection to the store was lost; connected again");
        }
        let client = self.client.as_mut().expect("connected above");
        transact(client, &mut self.statements, work).map_err(|error| {
            self.broken = breaks_the_connection(&error);
            self.error(what, &error)
        })
    }

    fn error(&self, what: &str, error: &postgres::Error) -> StoreError {
        StoreError::Postgres {
            store: self.name.clone(),
            message: format!("{what}: {}", describe(error)),
        }
    }

    fn node_id(&self) -> Option<String> {
        self.node.as_ref().map(|node| node.id.clone())
    }
}

impl Drop for PgStore {
    /// The client closes its connection by blocking on a runtime of its own, which panics on a
    /// thread that drives another runtime, where `serve` may drop the last handle to the store
    /// as it stops. There it is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::spawn(move || drop(client)).join();
        }
    }
}

impl Store for PgStore {
    fn name(&self) -> &str {
        &self.name
    }

    /// Registers the node. Nothing is released: other nodes' leases end on their own.
    fn join(&mut self, node: &Node, now: i64) -> Result<usize, StoreError> {
        self.run("registering this node", |s| {
            s.execute(
                "DELETE FROM nodes WHERE heartbeat_at < $1",
                &[&(now - NODES_KEPT_MS)],
            )?;
            s.execute(
                "INSERT INTO nodes (id, name, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)",
                &[&node.id, &node.name, &now],
            )
        })?;
        self.node = Some(node.clone());
        Ok(0)
    }

    fn heartbeat(&mut self, now: i64, lease_until: i64) -> Result<(), StoreError> {
        let Some(id) = self.node_id() else {
            return Ok(());
        };
        let (held, orphaned) = (self.holdings.held(), self.holdings.orphaned());
        self.run("renewing this node's leases", |s| {
            s.relax_durability()?;
            s.execute(
                "UPDATE nodes SET heartbeat_at = $2 WHERE id = $1",
                &[&id, &now],
            )?;
            s.execute(
                "UPDATE deliveries SET lease_until = $3
                 WHERE id = ANY($2) AND lease_node = $1 AND state = 'pending'",
                &[&id, &held, &lease_until],
            )?;
            s.execute(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id = ANY($2) AND lease_node = $1 AND state = 'pending'",
                &[&id, &orphaned],
            )
        })?;
        self.holdings.orphaned.clear();
        Ok(())
    }

    fn leave(&mut self, now: i64) -> Result<(), StoreError> {
        let Some(id) = self.node_id() else {
            return Ok(());
        };
        self.run("marking this node stopped", |s| {
            s.execute(
                "UPDATE nodes SET heartbeat_at = $2, stopped_at = $2 WHERE id = $1",
                &[&id, &now],
            )?;
            s.execute(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE lease_node = $1 AND state = 'pending' AND lease_until IS NOT NULL",
                &[&id],
            )
        })?;
        self.node = None;
        Ok(())
    }

    fn nodes(&mut self, now: i64) -> Result<Vec<NodeStatus>, StoreError> {
        self.run("listing nodes", |s| nodes(s, now))
    }

    /// Starts a thread with its own connection that listens on this schema's channel.
    fn listen(&mut self, wake: Arc<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        let listener = Listener {
            config: self.config.clone(),
            name: self.name.clone(),
            channel: self.channel.clone(),
            wake,
        };
        std::thread::Builder::new()
            .name("store-listener".to_owned())
            .spawn(move || listener.run())
            .map(drop)
            .map_err(|error| StoreError::Postgres {
                store: self.name.clone(),
                message: format!("cannot start the thread that listens for new events: {error}"),
            })
    }

    fn import(&mut self, events: &[NewEvent]) -> Result<Vec<Imported>, StoreError> {
        let channel = self.channel.clone();
        self.run("storing events", |s| insert_events(s, events, &channel))
    }

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
        let claims = self.run("claiming deliveries", |s| {
            s.relax_durability()?;
            let mut claims = claim_fairly(s, profile, now, limit, lease)?;
            load_bodies(s, &mut claims, true)?;
            Ok(claims)
        })?;
        self.holdings.claimed(claims.iter().map(|c| c.id));
        Ok(claims)
    }

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
        let batch = self.run("claiming a batch", |s| {
            s.relax_durability()?;
            claim_batch(s, profile, now, limit, lease)
        })?;
        if let Some(batch) = &batch {
            self.holdings.claimed(batch.claims.iter().map(|c| c.id));
        }
        Ok(batch)
    }

    fn release(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let node = self.node_id();
        let released = self.run("releasing claims", |s| {
            s.relax_durability()?;
            s.execute(
                "UPDATE deliveries SET lease_until = NULL
                 WHERE id = ANY($1) AND state = 'pending'
                   AND lease_node IS NOT DISTINCT FROM $2",
                &[&ids, &node],
            )
            .map(drop)
        });
        self.holdings.settled(ids.iter().copied(), released.is_ok());
        released
    }

    /// Records outcomes and their attempts. Each delivery appears at most once in `finished`.
    fn record(&mut self, finished: &[Finished]) -> Result<(), StoreError> {
        let node = self.node_id();
        let recorded = self.run("recording outcomes", |s| {
            s.relax_durability()?;
            record_outcomes(s, finished, node.as_deref())
        });
        let ids = finished.iter().map(|f| f.id);
        self.holdings.settled(ids, recorded.is_ok());
        recorded
    }

    fn next_due(&mut self, profile: &str) -> Result<Option<i64>, StoreError> {
        self.run("reading the next due time", |s| {
            let row = s.query_one(
                "SELECT min(due_at) FROM deliveries
                 WHERE profile = $1 AND state = 'pending' AND lease_until IS NULL",
                &[&profile],
            )?;
            Ok(row.get(0))
        })
    }

    fn pending_profiles(&mut self) -> Result<Vec<(String, u64)>, StoreError> {
        self.run("counting pending deliveries", pending_profiles)
    }

    fn queue_state(&mut self, profile: &str) -> Result<QueueState, StoreError> {
        self.run("reading a profile's queue", |s| queue_state(s, profile))
    }

    fn status(&mut self, profiles: &[String], now: i64) -> Result<Vec<ProfileStatus>, StoreError> {
        self.run("reading the status", |s| {
            let mut names = profiles.to_vec();
            for (name, _) in pending_profiles(s)? {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            names
                .iter()
                .map(|name| profile_status(s, name, now))
                .collect()
        })
    }

    fn deliveries(&mut self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        self.run("listing deliveries", |s| deliveries(s, filter))
    }

    fn retry_failed(&mut self, selection: &Selection, now: i64) -> Result<usize, StoreError> {
        let update = "UPDATE deliveries
                      SET state = 'pending', due_at = $1, attempts = 0, lease_until = NULL,
                          updated_at = $1
                      WHERE state = 'failed'";
        self.run("putting failed deliveries back", |s| {
            let count = match selection {
                Selection::All => s.execute(update, &[&now])?,
                Selection::Profile(profile) => {
                    s.execute(&format!("{update} AND profile = $2"), &[&now, profile])?
                }
                Selection::Ids(ids) => {
                    s.execute(&format!("{update} AND uid = ANY ($2)"), &[&now, ids])?
                }
            };
            Ok(count as usize)
        })
    }

    fn replay(
        &mut self,
        profile: &str,
        since: i64,
        until: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.run("replaying deliveries", |s| {
            replay(s, profile, since, until, now)
        })
    }

    fn set_paused(&mut self, profile: &str, paused: bool, now: i64) -> Result<bool, StoreError> {
        self.run("pausing a profile", |s| {
            let before = s
                .query_opt(
                    "SELECT paused FROM profile_controls WHERE profile = $1",
                    &[&profile],
                )?
                .is_some_and(|row| row.get(0));
            s.execute(
                "INSERT INTO profile_controls (profile, paused, changed_at) VALUES ($1, $2, $3)
                 ON CONFLICT (profile) DO UPDATE SET paused = $2, changed_at = $3",
                &[&profile, &paused, &now],
            )?;
            Ok(before)
        })
    }

    fn find_response(&mut self, key: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.run("reading a saved answer", |s| {
            let row = s.query_opt(
                "SELECT response, body_hash FROM ingest_keys WHERE key = $1",
                &[&key],
            )?;
            Ok(row.map(|row| (row.get(0), row.get(1))))
        })
    }

    fn reserve_key(
        &mut self,
        key: &str,
        body_hash: &str,
        at: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        self.run("reserving an Idempotency-Key", |s| {
            s.execute(
                "INSERT INTO ingest_keys (key, response, created_at, body_hash)
                 VALUES ($1, '', $2, $3)
                 ON CONFLICT (key) DO UPDATE
                 SET created_at = excluded.created_at, body_hash = excluded.body_hash
                 WHERE ingest_keys.response = '' AND ingest_keys.created_at < $4",
                &[&key, &at, &body_hash, &stale_before],
            )
        })
        .map(|changed| changed == 1)
    }

    fn release_key(&mut self, key: &str) -> Result<(), StoreError> {
        self.run("releasing an Idempotency-Key", |s| {
            s.execute(
                "DELETE FROM ingest_keys WHERE key = $1 AND response = ''",
                &[&key],
            )
        })
        .map(drop)
    }

    fn save_response(
        &mut self,
        key: &str,
        body_hash: &str,
        response: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.run("saving an answer", |s| {
            s.execute(
                "INSERT INTO ingest_keys (key, response, created_at, body_hash)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (key) DO UPDATE SET response = excluded.response
                 WHERE ingest_keys.response = ''",
                &[&key, &response, &at, &body_hash],
            )
        })
        .map(drop)
    }

    fn ping(&mut self) -> Result<(), StoreError> {
        self.run("checking the connection", |s| s.execute("SELECT 1", &[]))
            .map(drop)
    }
}

/// One transaction, with the statements prepared on its connection.
struct Session<'a> {
    tx: Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

impl Session<'_> {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.tx.query(&statement, params)
    }

    fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.tx.query_one(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.tx.query_opt(&statement, params)
    }

    fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.tx.execute(&statement, params)
    }

    /// Commits this transaction without waiting for the disk. Claims, outcomes and heartbeats
    /// use it, as SQLite's store does: losing the last of them in a crash of the server only
    /// sends those deliveries again, with the same id. Events are always committed durably.
    fn relax_durability(&mut self) -> Result<(), postgres::Error> {
        self.tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
    }
}

fn transact<T>(
    client: &mut Client,
    statements: &mut HashMap<String, Statement>,
    work: impl FnOnce(&mut Session<'_>) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    let tx = client.transaction()?;
    let mut session = Session { tx, statements };
    let value = work(&mut session)?;
    session.tx.commit()?;
    Ok(value)
}

fn connect(config: &Config) -> Result<Client, postgres::Error> {
    config.connect(NoTls)
}

/// Brings the schema up to date in one transaction that holds the schema's migration lock, so
/// nodes that open the store at once apply each version once.
fn migrate(client: &mut Client, name: &str) -> Result<(), StoreError> {
    let fail = |what: String, error: postgres::Error| StoreError::Postgres {
        store: name.to_owned(),
        message: format!("{what}: {}", describe(&error)),
    };
    let reading = |error: postgres::Error| {
        // A search_path naming a schema that does not exist leaves nowhere to create tables.
        let missing = error.code() == Some(&postgres::error::SqlState::INVALID_SCHEMA_NAME);
        let what = if missing {
            "cannot create the tables: the schema the URL's search_path names does not exist \
             (create it with CREATE SCHEMA)"
        } else {
            "cannot read the schema version"
        };
        fail(what.to_owned(), error)
    };
    let mut tx = client.transaction().map_err(reading)?;
    tx.batch_execute(pg_schema::LOCK).map_err(reading)?;
    tx.batch_execute(pg_schema::VERSION_TABLE)
        .map_err(reading)?;
    let found: i64 = tx
        .query_one(pg_schema::VERSION, &[])
        .map_err(reading)?
        .get(0);
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::NewerSchema {
            store: name.to_owned(),
            found,
            known,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let failed = |error| {
            fail(
                format!("cannot migrate the schema to version {version}"),
                error,
            )
        };
        tx.batch_execute(migration).map_err(failed)?;
        tx.execute(pg_schema::APPLIED, &[&version, &super::now_ms()])
            .map_err(failed)?;
    }
    tx.commit()
        .map_err(|error| fail("cannot commit the schema".to_owned(), error))
}

/// Whether the connection is unusable after `error`: it failed below SQL (I/O, a closed
/// connection, a protocol error) or the server ended the session (FATAL, PANIC).
fn breaks_the_connection(error: &postgres::Error) -> bool {
    match error.as_db_error() {
        Some(db) => matches!(
            db.parsed_severity(),
            Some(Severity::Fatal | Severity::Panic)
        ),
        None => true,
    }
}

/// What went wrong, from the server's own words when it answered: a `postgres::Error` shown
/// alone is often only "db error".
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            let _ = write!(text, "; {detail}");
        }
        if let Some(hint) = db.hint() {
            let _ = write!(text, "; hint: {hint}");
        }
        let _ = write!(text, " (SQLSTATE {})", db.code().code());
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// The URL as shown to people: its password, in the user part or the query, is `***`. A
/// connection string that is not a URL is shown as the URL of what it connects to.
pub fn masked_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.parse::<Config>() {
            Ok(config) => config_address(&config),
            Err(_) => "(an unreadable PostgreSQL connection string)".to_owned(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".into()
                } else {
                    value
                };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

fn config_address(config: &Config) -> String {
    let user = config.get_user().unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => String::new(),
    };
    let database = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}@{host}/{database}")
}

/// The notification channel of a schema: its name when that fits an identifier, else a hash.
fn channel_name(schema: &str) -> String {
    let readable = format!("exporter.{schema}");
    if readable.len() <= MAX_IDENTIFIER {
        return readable;
    }
    let hash = Sha256::digest(schema.as_bytes());
    let hex: String = hash[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("exporter.{hex}")
}

/// An identifier in double quotes, as `LISTEN` takes it.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The thread that wakes the workers when another node commits events.
struct Listener {
    config: Config,
    name: String,
    channel: String,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Listener {
    /// Listens until the process ends, connecting again after a pause that grows from
    /// [`FIRST_PAUSE`] to [`LAST_PAUSE`] while the server cannot be reached.
    fn run(self) {
        let mut pause = FIRST_PAUSE;
        let mut reconnecting = false;
        loop {
            let problem = match self.connect() {
                Ok(mut client) => {
                    pause = FIRST_PAUSE;
                    if reconnecting {
                        // Events may have been committed while this thread was away.
                        (self.wake)();
                    }
                    self.wait(&mut client)
                }
                Err(error) => describe(&error),
            };
            warn!(
                store = %self.name,
                error = %problem,
                pause_secs = pause.as_secs(),
                "cannot listen for new events; trying again after a pause"
            );
            reconnecting = true;
            std::thread::sleep(pause);
            pause = (pause * 2).min(LAST_PAUSE);
        }
    }

    fn connect(&self) -> Result<Client, postgres::Error> {
        let mut client = connect(&self.config)?;
        client.batch_execute(&format!("LISTEN {}", quoted(&self.channel)))?;
        Ok(client)
    }

    /// Wakes the workers on every notification until the connection fails; returns why.
    fn wait(&self, client: &mut Client) -> String {
        loop {
            let next = client.notifications().timeout_iter(QUIET).next();
            match next {
                Ok(Some(_)) => (self.wake)(),
                // Quiet for a while, or closed: a query tells which.
                Ok(None) => {
                    if let Err(error) = client.is_valid(CONNECT_TIMEOUT) {
                        return describe(&error);
                    }
                }
                Err(error) => return describe(&error),
            }
        }
    }
}

fn nodes(s: &mut Session<'_>, now: i64) -> Result<Vec<NodeStatus>, postgres::Error> {
    let rows = s.query(
        "SELECT n.id, n.name, n.started_at, n.heartbeat_at, n.stopped_at,
                (SELECT count(*) FROM deliveries d
                 WHERE d.lease_node = n.id AND d.state = 'pending' AND d.lease_until > $1)
         FROM nodes n ORDER BY n.heartbeat_at DESC",
        &[&now],
    )?;
    Ok(rows
        .iter()
        .map(|row| NodeStatus {
            id: row.get(0),
            name: row.get(1),
            started_at: row.get(2),
            heartbeat_at: row.get(3),
            stopped_at: row.get(4),
            claims: row.get::<_, i64>(5) as u64,
        })
        .collect())
}

/// Takes the lock of each distinct order, in one sorted order for every node.
const LOCK_ORDERS: &str = "SELECT pg_advisory_xact_lock(key)
     FROM unnest(ARRAY(
         SELECT DISTINCT hashtextextended(current_schema() || '/order/' || order_id, 0)
         FROM unnest($1::text[]) AS order_id
         ORDER BY 1)) AS key";

const INSERT_EVENTS: &str = "INSERT INTO events (order_id, trigger, dedup_key, test_order,
                         received_at, body, date_updated)
     SELECT order_id, trigger, dedup_key, test_order, received_at, body, date_updated
     FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::int8[], $6::text[],
                 $7::text[])
          WITH ORDINALITY
          AS e (order_id, trigger, dedup_key, test_order, received_at, body, date_updated, n)
     ORDER BY n
     ON CONFLICT (dedup_key) DO NOTHING
     RETURNING id, dedup_key";

const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (uid, event_id, profile, order_id, state,
                             due_at, created_at, updated_at)
     SELECT uid, event_id, profile, order_id, state, due_at, created_at, created_at
     FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int8[],
                 $7::int8[])
          WITH ORDINALITY
          AS d (uid, event_id, profile, order_id, state, due_at, created_at, n)
     ORDER BY n";

/// Stores events and their deliveries, ids in the order given, and tells the listening nodes.
fn insert_events(
    s: &mut Session<'_>,
    events: &[NewEvent],
    channel: &str,
) -> Result<Vec<Imported>, postgres::Error> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let orders: Vec<&str> = events.iter().map(|e| e.order_id.as_str()).collect();
    s.execute(LOCK_ORDERS, &[&orders])?;
    let triggers: Vec<&str> = events.iter().map(|e| e.trigger.as_str()).collect();
    let keys: Vec<&str> = events.iter().map(|e| e.dedup_key.as_str()).collect();
    let tests: Vec<bool> = events.iter().map(|e| e.test_order).collect();
    let received: Vec<i64> = events.iter().map(|e| e.received_at).collect();
    let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
    let updated: Vec<Option<&str>> = events.iter().map(|e| e.date_updated.as_deref()).collect();
    let params: [&(dyn ToSql + Sync); 7] = [
        &orders, &triggers, &keys, &tests, &received, &bodies, &updated,
    ];
    let mut stored: HashMap<String, i64> = s
        .query(INSERT_EVENTS, &params)?
        .iter()
        .map(|row| (row.get(1), row.get(0)))
        .collect();
    if stored.is_empty() {
        return Ok(vec![Imported::Duplicate; events.len()]);
    }

    let mut results = Vec::with_capacity(events.len());
    let mut rows = NewDeliveries::default();
    for event in events {
        // The first copy of a key in `events` is the one stored; later copies are duplicates.
        let Some(event_id) = stored.remove(&event.dedup_key) else {
            results.push(Imported::Duplicate);
            continue;
        };
        for delivery in &event.deliveries {
            rows.push(event, event_id, delivery);
        }
        results.push(Imported::Stored);
    }
    if !rows.uids.is_empty() {
        let params: [&(dyn ToSql + Sync); 7] = [
            &rows.uids,
            &rows.event_ids,
            &rows.profiles,
            &rows.order_ids,
            &rows.states,
            &rows.due_at,
            &rows.created_at,
        ];
        s.execute(INSERT_DELIVERIES, &params)?;
    }
    s.execute("SELECT pg_notify($1, '')", &[&channel])?;
    Ok(results)
}

/// The columns of the deliveries an import inserts, one array each.
#[derive(Default)]
struct NewDeliveries<'a> {
    uids: Vec<String>,
    event_ids: Vec<i64>,
    profiles: Vec<&'a str>,
    order_ids: Vec<&'a str>,
    states: Vec<&'static str>,
    due_at: Vec<i64>,
    created_at: Vec<i64>,
}

impl<'a> NewDeliveries<'a> {
    fn push(&mut self, event: &'a NewEvent, event_id: i64, delivery: &'a super::NewDelivery) {
        let state = if delivery.test_order {
            "test_order"
        } else {
            "pending"
        };
        self.uids.push(uuid::Uuid::now_v7().to_string());
        self.event_ids.push(event_id);
        self.profiles.push(&delivery.profile);
        self.order_ids.push(&event.order_id);
        self.states.push(state);
        self.due_at.push(delivery.due_at);
        self.created_at.push(event.received_at);
    }
}

/// Leases up to `limit` due deliveries that belong to no batch, oldest due first, skipping any
/// whose order has an earlier delivery to this profile still pending, and any another
/// transaction is claiming. Bodies are not loaded.
fn claim_due(
    s: &mut Session<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
    attempted: Attempted,
) -> Result<Vec<Claim>, postgres::Error> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One statement per kind, each matching its own partial index.
    let kind = match attempted {
        Attempted::Any => "",
        Attempted::Never => "AND d.attempts = 0",
        Attempted::Before => "AND d.attempts > 0",
    };
    let sql = format!(
        "UPDATE deliveries SET lease_until = $4, lease_node = $5
         WHERE id IN (
             SELECT d.id FROM deliveries d
             WHERE d.profile = $1 AND d.state = 'pending' AND d.batch_id IS NULL {kind}
               AND d.due_at <= $2
               AND (d.lease_until IS NULL OR d.lease_until <= $2)
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries e
                   WHERE e.profile = d.profile AND e.order_id = d.order_id
                     AND e.state = 'pending' AND e.id < d.id)
             ORDER BY d.due_at, d.id
             LIMIT $3
             FOR UPDATE OF d SKIP LOCKED)
         RETURNING id, uid, order_id, event_id, attempts"
    );
    let rows = s.query(
        &sql,
        &[&profile, &now, &(limit as i64), &lease.until, &lease.node],
    )?;
    let mut claims: Vec<Claim> = rows.iter().map(claim_row).collect();
    claims.sort_by_key(|c| c.id);
    Ok(claims)
}

/// Claims up to `limit` due deliveries, half of them (rounded up) kept for first attempts, so
/// a backlog of retries never starves fresh events; a share one kind does not use goes to the
/// other.
fn claim_fairly(
    s: &mut Session<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
) -> Result<Vec<Claim>, postgres::Error> {
    if paused(s, profile)? {
        return Ok(Vec::new());
    }
    let first = limit.div_ceil(2);
    let mut claims = claim_due(s, profile, now, first, lease, Attempted::Never)?;
    let room = limit - claims.len();
    claims.extend(claim_due(s, profile, now, room, lease, Attempted::Before)?);
    let room = limit - claims.len();
    claims.extend(claim_due(s, profile, now, room, lease, Attempted::Never)?);
    claims.sort_by_key(|c| c.id);
    Ok(claims)
}

fn paused(s: &mut Session<'_>, profile: &str) -> Result<bool, postgres::Error> {
    let row = s.query_opt(
        "SELECT paused FROM profile_controls WHERE profile = $1",
        &[&profile],
    )?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// Claims a failed batch that is due again, whole, or else pins a new one. The profile's
/// advisory lock makes the look for a batch in flight and the pinning one step for all nodes.
fn claim_batch(
    s: &mut Session<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
) -> Result<Option<ClaimedBatch>, postgres::Error> {
    if paused(s, profile)? {
        return Ok(None);
    }
    s.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || '/batch/' || $1, 0))",
        &[&profile],
    )?;
    // One flush of a profile at a time: a batch whose lease holds is still being written.
    let in_flight: bool = s
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM deliveries
                            WHERE profile = $1 AND state = 'pending' AND batch_id IS NOT NULL
                              AND lease_until > $2)",
            &[&profile, &now],
        )?
        .get(0);
    if in_flight {
        return Ok(None);
    }
    let retried = s.query_opt(
        "SELECT batch_id, batch_at FROM deliveries
         WHERE profile = $1 AND state = 'pending' AND batch_id IS NOT NULL AND due_at <= $2
           AND (lease_until IS NULL OR lease_until <= $2)
         ORDER BY due_at, id LIMIT 1",
        &[&profile, &now],
    )?;
    let Some(retried) = retried else {
        return pin_new_batch(s, profile, now, limit, lease);
    };
    let (id, created_at): (String, i64) = (retried.get(0), retried.get(1));
    let rows = s.query(
        "UPDATE deliveries SET lease_until = $3, lease_node = $4
         WHERE profile = $1 AND batch_id = $2 AND state = 'pending'
         RETURNING id, uid, order_id, event_id, attempts",
        &[&profile, &id, &lease.until, &lease.node],
    )?;
    let mut claims: Vec<Claim> = rows.iter().map(claim_row).collect();
    claims.sort_by_key(|c| c.id);
    load_bodies(s, &mut claims, false)?;
    Ok((!claims.is_empty()).then_some(ClaimedBatch {
        id,
        created_at,
        claims,
    }))
}

fn pin_new_batch(
    s: &mut Session<'_>,
    profile: &str,
    now: i64,
    limit: usize,
    lease: Lease<'_>,
) -> Result<Option<ClaimedBatch>, postgres::Error> {
    let mut claims = claim_due(s, profile, now, limit, lease, Attempted::Any)?;
    if claims.is_empty() {
        return Ok(None);
    }
    let id = uuid::Uuid::now_v7().to_string();
    let ids: Vec<i64> = claims.iter().map(|c| c.id).collect();
    s.execute(
        "UPDATE deliveries SET batch_id = $2, batch_at = $3 WHERE id = ANY ($1)",
        &[&ids, &id, &now],
    )?;
    load_bodies(s, &mut claims, true)?;
    Ok(Some(ClaimedBatch {
        id,
        created_at: now,
        claims,
    }))
}

fn claim_row(row: &Row) -> Claim {
    Claim {
        id: row.get(0),
        uid: row.get(1),
        order_id: row.get(2),
        event_id: row.get(3),
        attempts: row.get::<_, i32>(4) as u32,
        body: String::new(),
        latest: None,
    }
}

/// Fills in each claim's event, and with `latest`, the order's latest event when it is another
/// one: the one the CRM updated last (`dateUpdated`, compared byte by byte), then the one that
/// arrived last. One statement for all the claims.
fn load_bodies(
    s: &mut Session<'_>,
    claims: &mut [Claim],
    latest: bool,
) -> Result<(), postgres::Error> {
    if claims.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<i64> = claims.iter().map(|c| c.event_id).collect();
    let order_ids: Vec<&str> = claims.iter().map(|c| c.order_id.as_str()).collect();
    let rows = s.query(
        r#"SELECT c.n, e.body, l.id, l.body
           FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS c (event_id, order_id, n)
           JOIN events e ON e.id = c.event_id
           LEFT JOIN LATERAL (
               SELECT o.id, o.body FROM events o
               WHERE $3 AND o.order_id = c.order_id AND o.id <> c.event_id
                 AND (coalesce(o.date_updated, '') COLLATE "C", o.id)
                     > (coalesce(e.date_updated, '') COLLATE "C", e.id)
               ORDER BY coalesce(o.date_updated, '') COLLATE "C" DESC, o.id DESC
               LIMIT 1) AS l ON true"#,
        &[&event_ids, &order_ids, &latest],
    )?;
    let mut bodies: Vec<Option<Row>> = claims.iter().map(|_| None).collect();
    for row in rows {
        let n: i64 = row.get(0);
        bodies[n as usize - 1] = Some(row);
    }
    for (claim, row) in claims.iter_mut().zip(bodies) {
        let Some(row) = row else { continue };
        claim.body = row.get(1);
        let other: Option<i64> = row.get(2);
        claim.latest = other.map(|id| (id, row.get(3)));
    }
    Ok(())
}

const RECORD: &str = "UPDATE deliveries AS d
     SET state = f.state, due_at = coalesce(f.due_at, d.due_at),
         attempts = d.attempts + f.tried, lease_until = NULL, last_status = f.status,
         last_message = f.message, updated_at = f.at
     FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int4[], $5::int4[], $6::text[],
                 $7::int8[])
          AS f (id, state, due_at, tried, status, message, at)
     WHERE d.id = f.id AND d.lease_node IS NOT DISTINCT FROM $8";

const INSERT_ATTEMPTS: &str = "INSERT INTO attempts (delivery_id, at, duration_ms, outcome,
                           status, message)
     SELECT delivery_id, at, duration_ms, outcome, status, message
     FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::int4[], $6::text[])
          WITH ORDINALITY AS a (delivery_id, at, duration_ms, outcome, status, message, n)
     ORDER BY n";

/// Records outcomes; a delivery whose lease another node took since it was claimed is left as
/// that node has it (its attempt is still kept).
fn record_outcomes(
    s: &mut Session<'_>,
    finished: &[Finished],
    node: Option<&str>,
) -> Result<(), postgres::Error> {
    if finished.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = finished.iter().map(|f| f.id).collect();
    let (states, due_at): (Vec<&str>, Vec<Option<i64>>) = finished
        .iter()
        .map(|f| match f.next {
            Next::Delivered => ("delivered", None),
            Next::RetryAt(at) => ("pending", Some(at)),
            Next::Failed => ("failed", None),
            Next::Superseded => ("superseded", None),
        })
        .unzip();
    let tried: Vec<i32> = finished.iter().map(|f| f.attempted as i32).collect();
    let statuses: Vec<Option<i32>> = finished.iter().map(|f| f.status.map(i32::from)).collect();
    let messages: Vec<&str> = finished.iter().map(|f| f.message.as_str()).collect();
    let at: Vec<i64> = finished.iter().map(|f| f.at).collect();
    let params: [&(dyn ToSql + Sync); 8] = [
        &ids, &states, &due_at, &tried, &statuses, &messages, &at, &node,
    ];
    s.execute(RECORD, &params)?;

    let durations: Vec<i64> = finished.iter().map(|f| f.duration_ms).collect();
    let outcomes: Vec<&str> = finished.iter().map(|f| f.outcome).collect();
    let params: [&(dyn ToSql + Sync); 6] = [&ids, &at, &durations, &outcomes, &statuses, &messages];
    s.execute(INSERT_ATTEMPTS, &params).map(drop)
}

fn pending_profiles(s: &mut Session<'_>) -> Result<Vec<(String, u64)>, postgres::Error> {
    let rows = s.query(
        "SELECT profile, count(*) FROM deliveries WHERE state = 'pending'
         GROUP BY profile ORDER BY profile",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
        .collect())
}

fn queue_state(s: &mut Session<'_>, profile: &str) -> Result<QueueState, postgres::Error> {
    let mut state = QueueState::default();
    let counts = s.query(
        "SELECT state, attempts > 0, count(*) FROM deliveries WHERE profile = $1 GROUP BY 1, 2",
        &[&profile],
    )?;
    for row in counts {
        let name: String = row.get(0);
        let tried: bool = row.get(1);
        let count = row.get::<_, i64>(2) as u64;
        state.add(&name, tried, count);
    }
    let row = s.query_one(
        "SELECT
           (SELECT min(due_at) FROM deliveries WHERE profile = $1 AND state = 'pending'),
           (SELECT last_message FROM deliveries
            WHERE profile = $1 AND state IN ('pending', 'failed') AND attempts > 0
            ORDER BY updated_at DESC, id DESC LIMIT 1)",
        &[&profile],
    )?;
    state.next_due = row.get(0);
    state.last_error = row.get(1);
    Ok(state)
}

fn profile_status(
    s: &mut Session<'_>,
    profile: &str,
    now: i64,
) -> Result<ProfileStatus, postgres::Error> {
    let queue = queue_state(s, profile)?;
    let row = s.query_one(
        "SELECT
           (SELECT count(*) FROM deliveries
            WHERE profile = $1 AND state = 'pending' AND due_at <= $2),
           (SELECT count(*) FROM deliveries
            WHERE profile = $1 AND state = 'delivered' AND updated_at >= $2 - 3600000),
           (SELECT min(created_at) FROM deliveries WHERE profile = $1 AND state = 'pending'),
           (SELECT paused FROM profile_controls WHERE profile = $1)",
        &[&profile, &now],
    )?;
    let oldest: Option<i64> = row.get(2);
    let paused: Option<bool> = row.get(3);
    let secs = |at: i64| ((now - at).max(0) / 1000) as u64;
    Ok(ProfileStatus {
        profile: profile.to_owned(),
        paused: paused.unwrap_or(false),
        pending: queue.scheduled + queue.retrying,
        due_now: row.get::<_, i64>(0) as u64,
        retrying: queue.retrying,
        failed: queue.failed,
        delivered_last_hour: row.get::<_, i64>(1) as u64,
        oldest_pending_secs: oldest.map(secs),
        oldest_due_secs: queue.next_due.map_or(0, secs),
        last_error: queue.last_error,
    })
}

/// The newest deliveries matching `filter`, each with its attempts, oldest attempt first.
fn deliveries(
    s: &mut Session<'_>,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRow>, postgres::Error> {
    let mut sql = String::from(
        "SELECT d.id, d.uid, d.profile, d.order_id, e.trigger, d.state, d.attempts,
                d.created_at, d.due_at, d.updated_at, d.last_status, d.last_message
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE true",
    );
    let mut values: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for (column, value) in [
        ("d.profile", &filter.profile),
        ("d.state", &filter.state),
        ("d.order_id", &filter.order_id),
    ] {
        if let Some(value) = value {
            values.push(value);
            let _ = write!(sql, " AND {column} = ${}", values.len());
        }
    }
    let limit = filter.limit.max(1) as i64;
    values.push(&limit);
    let _ = write!(sql, " ORDER BY d.id DESC LIMIT ${}", values.len());
    let rows = s.query(&sql, &values)?;

    let ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let mut history: HashMap<i64, Vec<AttemptRow>> = HashMap::new();
    let attempts = s.query(
        "SELECT delivery_id, at, outcome, status, duration_ms, message FROM attempts
         WHERE delivery_id = ANY ($1) ORDER BY id",
        &[&ids],
    )?;
    for row in attempts {
        history.entry(row.get(0)).or_default().push(AttemptRow {
            at: row.get(1),
            outcome: row.get(2),
            status: row.get::<_, Option<i32>>(3).map(|status| status as u16),
            duration_ms: row.get(4),
            message: row.get(5),
        });
    }
    Ok(rows
        .iter()
        .map(|row| DeliveryRow {
            delivery_id: row.get(1),
            profile: row.get(2),
            order_id: row.get(3),
            trigger: row.get(4),
            state: row.get(5),
            attempts: row.get::<_, i32>(6) as u32,
            created_at: row.get(7),
            due_at: row.get(8),
            updated_at: row.get(9),
            last_status: row.get::<_, Option<i32>>(10).map(|status| status as u16),
            last_message: row.get(11),
            history: history.remove(&row.get::<_, i64>(0)).unwrap_or_default(),
        })
        .collect())
}

/// Queues the events delivered to `profile` between `since` and `until` (unix ms, by the
/// time they were delivered) again, as new deliveries with new ids, due at `now`.
fn replay(
    s: &mut Session<'_>,
    profile: &str,
    since: i64,
    until: i64,
    now: i64,
) -> Result<usize, postgres::Error> {
    let rows = s.query(
        "SELECT event_id, order_id FROM deliveries
         WHERE profile = $1 AND state = 'delivered' AND updated_at >= $2 AND updated_at < $3
         ORDER BY id",
        &[&profile, &since, &until],
    )?;
    if rows.is_empty() {
        return Ok(0);
    }
    let event_ids: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    let order_ids: Vec<String> = rows.iter().map(|row| row.get(1)).collect();
    let uids: Vec<String> = rows
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    s.execute(
        "INSERT INTO deliveries (uid, event_id, profile, order_id, state, due_at, created_at,
                                 updated_at)
         SELECT uid, event_id, $4, order_id, 'pending', $5, $5, $5
         FROM unnest($1::text[], $2::int8[], $3::text[]) WITH ORDINALITY
              AS r (uid, event_id, order_id, n)
         ORDER BY n",
        &[&uids, &event_ids, &order_ids, &profile, &now],
    )?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_the_password_of_a_url() {
        let url = "postgres://app:s3cret@db.example:5432/queue?options=-csearch_path%3Dx";
        let shown = masked_url(url);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.starts_with("postgres://app:***@db.example:5432/queue"),
            "{shown}"
        );

        let shown = masked_url("postgres://app@db.example/queue?password=s3cret&sslmode=disable");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("password=***"), "{shown}");

        let shown = masked_url("host=db.example user=app password=s3cret dbname=queue");
        assert_eq!(shown, "postgres://app@db.example/queue");
    }

    #[test]
    fn a_long_schema_gets_a_hashed_channel() {
        assert_eq!(channel_name("t_1"), "exporter.t_1");
        let long = "s".repeat(80);
        let channel = channel_name(&long);
        assert!(channel.len() <= MAX_IDENTIFIER, "{channel}");
        assert_ne!(channel, channel_name(&"s".repeat(81)));
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
