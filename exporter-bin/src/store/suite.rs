//! The store's contract as tests, run against both stores: `sqlite::<test>` on a file in a
//! temporary folder, `postgres::<test>` in a schema of its own in the test database (dropped
//! afterwards), so the tests run in parallel. Tests named `sqlite_…` or `postgres_…` hold for
//! that store only.
//!
//! The PostgreSQL tests need the server CI starts: `postgres://postgres@127.0.0.1:5432/test`
//! with trust authentication, or the URL in `EXPORTER_TEST_POSTGRES`. They fail when it cannot
//! be reached; they are never skipped.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use ::postgres::{Client, NoTls};

use super::{
    ClaimedBatch, DeliveryFilter, Finished, Imported, NewDelivery, NewEvent, Next, Node, PgStore,
    Selection, SqliteStore, Store, StoreError,
};

/// The test database, unless `EXPORTER_TEST_POSTGRES` names another.
const TEST_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A week and a bit: nodes silent that long are forgotten at the next join.
const OVER_A_WEEK_MS: i64 = 7 * 24 * 3600 * 1000 + 1;

/// A new, empty store of one kind, which tests open one or more handles on.
trait Fresh {
    fn try_open(&self) -> Result<Box<dyn Store>, StoreError>;

    /// Whether several handles may join as nodes at once (SQLite: one worker per file).
    fn shared(&self) -> bool;

    /// Marks the store as written by an exporter that knows schema `version`.
    fn pretend_schema_version(&self, version: i64);

    fn open(&self) -> Box<dyn Store> {
        self.try_open().expect("the store opens")
    }
}

type Backend = fn() -> Box<dyn Fresh>;

struct SqliteFresh {
    dir: tempfile::TempDir,
}

impl SqliteFresh {
    fn path(&self) -> PathBuf {
        self.dir.path().join("q.db")
    }
}

impl Fresh for SqliteFresh {
    fn try_open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(SqliteStore::open(&self.path())?))
    }

    fn shared(&self) -> bool {
        false
    }

    fn pretend_schema_version(&self, version: i64) {
        let conn = rusqlite::Connection::open(self.path()).unwrap();
        conn.pragma_update(None, "user_version", version).unwrap();
    }
}

fn sqlite_store() -> Box<dyn Fresh> {
    Box::new(SqliteFresh {
        dir: tempfile::tempdir().unwrap(),
    })
}

/// A schema of its own in the test database, dropped with everything in it on drop.
struct PgFresh {
    admin: Client,
    schema: String,
    /// The store's URL: the test database with this schema first in the search path.
    url: String,
}

impl PgFresh {
    fn new() -> PgFresh {
        let base =
            std::env::var("EXPORTER_TEST_POSTGRES").unwrap_or_else(|_| TEST_POSTGRES.to_owned());
        let mut admin = Client::connect(&base, NoTls).unwrap_or_else(|error| {
            panic!(
                "the PostgreSQL store tests need a server at {base} (user postgres, trust \
                 authentication, database test), or another URL in EXPORTER_TEST_POSTGRES: \
                 {error}"
            )
        });
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        // Named after the schema too, so a test can find its own connections on the server.
        let url =
            format!("{base}{separator}options=-csearch_path%3D{schema}&application_name={schema}");
        PgFresh { admin, schema, url }
    }

    fn open_pg(&self) -> PgStore {
        PgStore::open(&self.url).expect("the store opens")
    }

    /// Ends this schema's connections whose last query starts with `query`; returns how many.
    fn terminate(&mut self, query: &str) -> i64 {
        let row = self
            .admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND query LIKE $2 || '%'",
                &[&self.schema, &query],
            )
            .unwrap();
        row.get(0)
    }
}

impl Drop for PgFresh {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        if let Err(error) = self.admin.batch_execute(&drop_schema) {
            eprintln!("cannot drop the test schema {}: {error}", self.schema);
        }
    }
}

impl Fresh for PgFresh {
    fn try_open(&self) -> Result<Box<dyn Store>, StoreError> {
        Ok(Box::new(PgStore::open(&self.url)?))
    }

    fn shared(&self) -> bool {
        true
    }

    fn pretend_schema_version(&self, version: i64) {
        let mut admin = Client::connect(&self.url, NoTls).unwrap();
        admin
            .execute(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)",
                &[&version],
            )
            .unwrap();
    }
}

fn postgres_store() -> Box<dyn Fresh> {
    Box::new(PgFresh::new())
}

/// Runs each test against both stores, as `sqlite::<test>` and `postgres::<test>`.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(super::sqlite_store);
                }
            )*
        }

        mod postgres {
            $(
                #[test]
                fn $test() {
                    super::$test(super::postgres_store);
                }
            )*
        }
    };
}

on_both_stores!(
    stores_an_event_once,
    released_claims_are_claimed_again_at_once_with_no_attempt,
    claims_only_due_unleased_deliveries,
    keeps_arrival_order_per_order_and_profile,
    records_outcomes_and_attempts,
    a_failed_batch_is_claimed_again_whole_without_new_members,
    keeps_half_of_each_claim_for_first_attempts,
    the_latest_event_is_the_one_the_crm_updated_last,
    never_claims_test_orders,
    an_outcome_after_another_node_took_the_lease_leaves_the_delivery,
    a_heartbeat_renews_only_what_its_worker_holds,
    a_claim_whose_outcome_failed_to_commit_is_handed_back_at_the_next_heartbeat,
    leaving_releases_the_nodes_leases,
    lists_nodes_with_the_claims_they_hold,
    forgets_nodes_silent_for_a_week,
    claims_no_batch_while_another_batch_of_the_profile_is_leased,
    a_paused_profile_is_not_claimed,
    puts_failed_deliveries_back,
    replays_delivered_events_as_new_deliveries,
    keeps_the_first_answer_to_an_idempotency_key,
    reserves_an_idempotency_key_for_one_request_at_a_time,
    lists_deliveries_newest_first_with_their_attempts,
    reports_the_status_of_each_profile,
    next_due_skips_leased_deliveries,
    refuses_a_store_with_a_newer_schema,
);

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

fn node(id: &str) -> Node {
    Node {
        id: id.to_owned(),
        name: format!("{id}.example:1"),
    }
}

fn every_delivery() -> DeliveryFilter {
    DeliveryFilter {
        limit: 1_000,
        ..DeliveryFilter::default()
    }
}

fn orders_of(claims: &[super::Claim]) -> Vec<&str> {
    claims.iter().map(|c| c.order_id.as_str()).collect()
}

/// Each claim's delivery id and the attempts made before it.
fn ids_and_attempts(claims: &[super::Claim]) -> Vec<(i64, u32)> {
    claims.iter().map(|c| (c.id, c.attempts)).collect()
}

fn stores_an_event_once(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    let a = event("A", "Partial", "t1", &["p"], 0);
    let results = store.import(&[a.clone(), a.clone()]).unwrap();
    assert_eq!(results, [Imported::Stored, Imported::Duplicate]);
    assert_eq!(store.import(&[a]).unwrap(), [Imported::Duplicate]);
    assert!(store.import(&[]).unwrap().is_empty());
    assert_eq!(store.queue_state("p").unwrap().scheduled, 1);
}

fn released_claims_are_claimed_again_at_once_with_no_attempt(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 0),
        ])
        .unwrap();
    let claims = store.claim("p", 10, 10, 1_000).unwrap();
    assert_eq!(claims.len(), 2);
    store.release(&[claims[1].id]).unwrap();
    let again = store.claim("p", 20, 10, 1_000).unwrap();
    assert_eq!(
        ids_and_attempts(&again),
        [(claims[1].id, 0)],
        "only the released one, still unattempted"
    );
    assert_eq!(store.queue_state("p").unwrap().scheduled, 2);
}

fn claims_only_due_unleased_deliveries(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 100),
        ])
        .unwrap();
    let first = store.claim("p", 50, 10, 1_000).unwrap();
    assert_eq!(orders_of(&first), ["A"]);
    assert!(!first[0].body.is_empty() && !first[0].uid.is_empty());
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

fn keeps_arrival_order_per_order_and_profile(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
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

fn records_outcomes_and_attempts(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
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

fn a_failed_batch_is_claimed_again_whole_without_new_members(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
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

fn keeps_half_of_each_claim_for_first_attempts(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
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
    let fresh_events: Vec<_> = (0..6)
        .map(|i| event(&format!("F{i}"), "Partial", "1", &["p"], 40))
        .collect();
    store.import(&fresh_events).unwrap();

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

fn the_latest_event_is_the_one_the_crm_updated_last(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    let sale = event("A", "New Sale", "2026-11-02 06:18:14", &[], 0);
    let partial = event("A", "Partial", "2026-11-02 06:00:33", &["p"], 0);
    store.import(&[sale, partial]).unwrap();
    let claim = store.claim("p", 10, 10, 100).unwrap().remove(0);
    assert_eq!(
        claim.latest.map(|l| l.0),
        Some(1),
        "the sale, though it arrived first"
    );

    let fresh = backend();
    let mut store = fresh.open();
    let partial = event("B", "Partial", "2026-11-02 06:00:33", &["p"], 0);
    let stale = event("B", "New Sale", "2026-11-02 05:00:00", &[], 0);
    store.import(&[partial, stale]).unwrap();
    let claim = store.claim("p", 10, 10, 100).unwrap().remove(0);
    assert_eq!(
        claim.latest, None,
        "an older update arriving later is not the latest"
    );
}

fn never_claims_test_orders(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    let mut test = event("T", "New Sale", "1", &["p"], 0);
    test.test_order = true;
    test.deliveries[0].test_order = true;
    store.import(&[test]).unwrap();
    assert!(store.claim("p", 10, 10, 100).unwrap().is_empty());
    assert!(store.claim_batch("p", 10, 10, 100).unwrap().is_none());
    assert_eq!(store.queue_state("p").unwrap().test_orders, 1);
    assert!(store.pending_profiles().unwrap().is_empty());
}

fn an_outcome_after_another_node_took_the_lease_leaves_the_delivery(backend: Backend) {
    let fresh = backend();
    let mut first = fresh.open();
    first.join(&node("first"), 0).unwrap();
    first
        .import(&[event("A", "Partial", "1", &["p"], 0)])
        .unwrap();
    let claim = first.claim("p", 10, 10, 20).unwrap().remove(0);

    // The first node stalls past its lease; another takes the delivery.
    let mut second = fresh.open();
    if fresh.shared() {
        second.join(&node("second"), 25).unwrap();
    }
    assert_eq!(second.claim("p", 30, 10, 100).unwrap().len(), 1);
    first
        .record(&[finished(claim.id, Next::Delivered)])
        .unwrap();
    let row = first.deliveries(&every_delivery()).unwrap().remove(0);
    assert_eq!(
        (row.state.as_str(), row.attempts, row.history.len()),
        ("pending", 0, 1),
        "the late outcome keeps its attempt but not the delivery"
    );
    assert!(
        first.claim("p", 40, 10, 100).unwrap().is_empty(),
        "still leased to the second node"
    );

    second
        .record(&[finished(claim.id, Next::Delivered)])
        .unwrap();
    let row = first.deliveries(&every_delivery()).unwrap().remove(0);
    assert_eq!((row.state.as_str(), row.attempts), ("delivered", 1));
}

fn a_heartbeat_renews_only_what_its_worker_holds(backend: Backend) {
    let fresh = backend();
    let mut first = fresh.open();
    first.join(&node("first"), 0).unwrap();
    let events: Vec<_> = ["A", "B", "C"]
        .iter()
        .map(|order| event(order, "Partial", "1", &["p"], 0))
        .collect();
    first.import(&events).unwrap();
    let a = first.claim("p", 10, 1, 20).unwrap().remove(0);
    assert_eq!(orders_of(&first.claim("p", 10, 1, 15).unwrap()), ["B"]);
    let mut second = fresh.open();
    if fresh.shared() {
        second.join(&node("second"), 10).unwrap();
    }
    assert_eq!(orders_of(&second.claim("p", 10, 1, 20).unwrap()), ["C"]);
    first.record(&[finished(a.id, Next::RetryAt(30))]).unwrap();

    first.heartbeat(17, 100).unwrap();
    let nodes = first.nodes(17).unwrap();
    let me = nodes.iter().find(|n| n.id == "first").unwrap();
    assert_eq!(
        (me.heartbeat_at, me.claims),
        (17, 1),
        "B is held; A was recorded"
    );

    let mut third = fresh.open();
    let mut free = orders_of(&third.claim("p", 35, 10, 200).unwrap())
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    free.sort();
    assert_eq!(
        free,
        ["A", "C"],
        "B's lease was renewed; A is due again, C's lease ended"
    );
}

/// An outcome that cannot be committed (here: one of the batch names a delivery that does not
/// exist) leaves its claims leased; the next heartbeat hands them back instead of renewing
/// them for as long as the node lives.
fn a_claim_whose_outcome_failed_to_commit_is_handed_back_at_the_next_heartbeat(backend: Backend) {
    let fresh = backend();
    let mut first = fresh.open();
    first.join(&node("first"), 0).unwrap();
    first
        .import(&[event("A", "Partial", "1", &["p"], 0)])
        .unwrap();
    let claim = first.claim("p", 10, 10, 1_000).unwrap().remove(0);
    let outcomes = [
        finished(claim.id, Next::Delivered),
        finished(987_654_321, Next::Delivered),
    ];
    assert!(first.record(&outcomes).is_err());
    let mut other = fresh.open();
    assert!(
        other.claim("p", 20, 10, 2_000).unwrap().is_empty(),
        "leased"
    );

    first.heartbeat(20, 2_000).unwrap();
    let again = other.claim("p", 30, 10, 2_000).unwrap();
    assert_eq!(
        ids_and_attempts(&again),
        [(claim.id, 0)],
        "handed back, unattempted"
    );
}

fn leaving_releases_the_nodes_leases(backend: Backend) {
    let fresh = backend();
    let mut first = fresh.open();
    first.join(&node("first"), 0).unwrap();
    first
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 0),
        ])
        .unwrap();
    assert_eq!(first.claim("p", 10, 10, 1_000).unwrap().len(), 2);
    first.leave(20).unwrap();
    let me = first.nodes(20).unwrap().remove(0);
    assert_eq!(
        (me.stopped_at, me.heartbeat_at, me.claims),
        (Some(20), 20, 0)
    );
    first.heartbeat(30, 2_000).unwrap();

    let mut second = fresh.open();
    assert_eq!(
        second.claim("p", 30, 10, 1_000).unwrap().len(),
        2,
        "released at once, before the lease would have ended"
    );
}

fn lists_nodes_with_the_claims_they_hold(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    assert!(store.nodes(0).unwrap().is_empty());
    store.join(&node("first"), 100).unwrap();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 0),
        ])
        .unwrap();
    store.claim("p", 150, 10, 1_000).unwrap();

    let listed = store.nodes(200).unwrap();
    assert_eq!(listed.len(), 1);
    let me = &listed[0];
    assert_eq!(
        (me.id.as_str(), me.name.as_str()),
        ("first", "first.example:1")
    );
    assert_eq!(
        (me.started_at, me.heartbeat_at, me.stopped_at),
        (100, 100, None)
    );
    assert_eq!(me.claims, 2);
    assert_eq!(store.nodes(1_000).unwrap()[0].claims, 0, "the leases ended");

    if fresh.shared() {
        let mut other = fresh.open();
        other.join(&node("second"), 300).unwrap();
        let ids: Vec<_> = store
            .nodes(300)
            .unwrap()
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, ["second", "first"], "newest heartbeat first");
    }
}

fn forgets_nodes_silent_for_a_week(backend: Backend) {
    let fresh = backend();
    let mut old = fresh.open();
    old.join(&node("old"), 0).unwrap();
    old.leave(0).unwrap();
    drop(old);
    let mut store = fresh.open();
    store.join(&node("new"), OVER_A_WEEK_MS).unwrap();
    let ids: Vec<_> = store
        .nodes(OVER_A_WEEK_MS)
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, ["new"]);
}

fn claims_no_batch_while_another_batch_of_the_profile_is_leased(backend: Backend) {
    let fresh = backend();
    let mut first = fresh.open();
    first
        .import(&[
            event("A", "Refund", "1", &["p"], 0),
            event("B", "Refund", "1", &["p"], 0),
        ])
        .unwrap();
    let batch = first.claim_batch("p", 10, 1, 100).unwrap().unwrap();
    assert_eq!(orders_of(&batch.claims), ["A"]);

    let mut second = fresh.open();
    assert!(
        second.claim_batch("p", 20, 10, 100).unwrap().is_none(),
        "one flush of a profile at a time"
    );
    assert!(first.claim_batch("p", 20, 10, 100).unwrap().is_none());
    let again = second.claim_batch("p", 200, 10, 300).unwrap().unwrap();
    assert_eq!(
        (again.id.as_str(), orders_of(&again.claims)),
        (batch.id.as_str(), vec!["A"]),
        "the lapsed batch is taken whole, without B"
    );
}

fn a_paused_profile_is_not_claimed(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Refund", "1", &["sheet"], 0),
        ])
        .unwrap();
    assert!(!store.set_paused("p", true, 5).unwrap());
    assert!(store.set_paused("p", true, 6).unwrap());
    assert!(!store.set_paused("sheet", true, 5).unwrap());
    assert!(store.claim("p", 10, 10, 100).unwrap().is_empty());
    assert!(store.claim_batch("sheet", 10, 10, 100).unwrap().is_none());
    let status = store.status(&["p".to_owned()], 10).unwrap();
    assert!(status[0].paused && status[0].pending == 1);
    assert_eq!(
        store.queue_state("p").unwrap().scheduled,
        1,
        "held, not failed"
    );

    assert!(store.set_paused("p", false, 20).unwrap());
    assert_eq!(store.claim("p", 30, 10, 100).unwrap().len(), 1);
}

fn puts_failed_deliveries_back(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 0),
            event("C", "Partial", "1", &["p", "q"], 0),
        ])
        .unwrap();
    let mut claims = store.claim("p", 10, 10, 100).unwrap();
    claims.extend(store.claim("q", 10, 10, 100).unwrap());
    let failed: Vec<_> = claims
        .iter()
        .map(|c| finished(c.id, Next::Failed))
        .collect();
    store.record(&failed).unwrap();
    assert_eq!(store.queue_state("p").unwrap().failed, 3);

    let one = Selection::Ids(vec![claims[0].uid.clone(), "no-such-delivery".to_owned()]);
    assert_eq!(store.retry_failed(&one, 100).unwrap(), 1);
    assert_eq!(
        store.retry_failed(&one, 100).unwrap(),
        0,
        "no longer failed"
    );
    let profile = Selection::Profile("p".to_owned());
    assert_eq!(store.retry_failed(&profile, 100).unwrap(), 2);
    assert_eq!(store.retry_failed(&Selection::All, 100).unwrap(), 1);

    let rows = store.deliveries(&every_delivery()).unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        assert_eq!(
            (
                row.state.as_str(),
                row.attempts,
                row.due_at,
                row.history.len()
            ),
            ("pending", 0, 100, 1),
            "{row:?}"
        );
    }
    assert_eq!(store.claim("p", 100, 10, 200).unwrap().len(), 3);
}

fn replays_delivered_events_as_new_deliveries(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 0),
        ])
        .unwrap();
    let first = store.claim("p", 5, 10, 100).unwrap();
    let done: Vec<_> = first
        .iter()
        .map(|c| finished(c.id, Next::Delivered))
        .collect();
    store.record(&done).unwrap();

    assert_eq!(
        store.replay("p", 11, 100, 50).unwrap(),
        0,
        "delivered at 10"
    );
    assert_eq!(store.replay("p", 0, 11, 50).unwrap(), 2);
    let state = store.queue_state("p").unwrap();
    assert_eq!((state.delivered, state.scheduled), (2, 2));

    let again = store.claim("p", 50, 10, 100).unwrap();
    let events = |claims: &[super::Claim]| claims.iter().map(|c| c.event_id).collect::<Vec<_>>();
    assert_eq!(events(&again), events(&first));
    assert!(
        again
            .iter()
            .zip(&first)
            .all(|(a, f)| a.uid != f.uid && a.id != f.id)
    );
}

fn keeps_the_first_answer_to_an_idempotency_key(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store.ping().unwrap();
    assert_eq!(store.find_response("key").unwrap(), None);
    store.save_response("key", "hash-1", "answer-1", 1).unwrap();
    store.save_response("key", "hash-2", "answer-2", 2).unwrap();
    assert_eq!(
        store.find_response("key").unwrap(),
        Some(("answer-1".to_owned(), Some("hash-1".to_owned())))
    );
}

fn reserves_an_idempotency_key_for_one_request_at_a_time(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    let pending = |hash: &str| Some((String::new(), Some(hash.to_owned())));
    assert!(store.reserve_key("key", "hash-1", 10, 0).unwrap());
    assert!(!store.reserve_key("key", "hash-1", 20, 0).unwrap(), "held");
    assert_eq!(store.find_response("key").unwrap(), pending("hash-1"));

    store.release_key("key").unwrap();
    assert_eq!(store.find_response("key").unwrap(), None);
    assert!(store.reserve_key("key", "hash-2", 30, 0).unwrap());
    store
        .save_response("key", "hash-2", "answer-2", 40)
        .unwrap();
    store.release_key("key").unwrap();
    assert!(
        !store.reserve_key("key", "hash-2", 1_000, 999).unwrap(),
        "an answered key is never taken over"
    );
    assert_eq!(
        store.find_response("key").unwrap(),
        Some(("answer-2".to_owned(), Some("hash-2".to_owned())))
    );

    assert!(store.reserve_key("lost", "hash-3", 10, 0).unwrap());
    assert!(
        !store.reserve_key("lost", "hash-3", 40, 5).unwrap(),
        "not stale yet"
    );
    assert!(
        store.reserve_key("lost", "hash-4", 100, 50).unwrap(),
        "a reservation that never got its answer is taken over"
    );
    assert_eq!(store.find_response("lost").unwrap(), pending("hash-4"));
}

fn lists_deliveries_newest_first_with_their_attempts(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p", "q"], 0),
            event("B", "New Sale", "1", &["p"], 0),
        ])
        .unwrap();
    let a = store.claim("p", 10, 1, 100).unwrap().remove(0);
    let mut retry = finished(a.id, Next::RetryAt(50));
    (retry.outcome, retry.status, retry.message) = ("retry", Some(500), "HTTP 500".into());
    store.record(&[retry]).unwrap();
    let again = store.claim("p", 50, 10, 100).unwrap();
    let a = again.iter().find(|c| c.order_id == "A").unwrap();
    let mut done = finished(a.id, Next::Delivered);
    (done.outcome, done.status, done.at) = ("delivered", Some(200), 60);
    store.record(&[done]).unwrap();

    let p = DeliveryFilter {
        profile: Some("p".to_owned()),
        limit: 10,
        ..DeliveryFilter::default()
    };
    let rows = store.deliveries(&p).unwrap();
    let orders: Vec<_> = rows.iter().map(|r| r.order_id.as_str()).collect();
    assert_eq!(orders, ["B", "A"], "newest first");
    let a = &rows[1];
    assert_eq!(
        (a.trigger.as_str(), a.state.as_str()),
        ("Partial", "delivered")
    );
    assert_eq!(
        (a.attempts, a.last_status, a.updated_at),
        (2, Some(200), 60)
    );
    let outcomes: Vec<_> = a
        .history
        .iter()
        .map(|h| (h.outcome.as_str(), h.status))
        .collect();
    assert_eq!(outcomes, [("retry", Some(500)), ("delivered", Some(200))]);
    assert_eq!(a.history[0].message, "HTTP 500");

    let order_a = DeliveryFilter {
        order_id: Some("A".to_owned()),
        limit: 10,
        ..DeliveryFilter::default()
    };
    assert_eq!(store.deliveries(&order_a).unwrap().len(), 2);
    let delivered = DeliveryFilter {
        state: Some("delivered".to_owned()),
        limit: 10,
        ..DeliveryFilter::default()
    };
    assert_eq!(store.deliveries(&delivered).unwrap().len(), 1);
    let newest = DeliveryFilter::default();
    let rows = store.deliveries(&newest).unwrap();
    assert_eq!(rows.len(), 1, "a limit of 0 lists one");
    assert_eq!(rows[0].order_id, "B");
}

fn reports_the_status_of_each_profile(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    let mut later = event("B", "Partial", "1", &["p"], 0);
    later.deliveries[0].due_at = 5_000;
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            later,
            event("C", "Partial", "1", &["p"], 0),
        ])
        .unwrap();
    let c = store.claim("p", 1_000, 2, 2_000).unwrap();
    let mut done = finished(c[0].id, Next::Delivered);
    done.at = 2_500;
    let mut retry = finished(c[1].id, Next::RetryAt(2_000));
    retry.message = "HTTP 503".into();
    store.record(&[done, retry]).unwrap();

    let status = store.status(&["idle".to_owned()], 3_000).unwrap();
    let names: Vec<_> = status.iter().map(|s| s.profile.as_str()).collect();
    assert_eq!(names, ["idle", "p"]);
    assert_eq!(
        status[0],
        super::ProfileStatus {
            profile: "idle".to_owned(),
            ..super::ProfileStatus::default()
        }
    );
    let p = &status[1];
    assert_eq!((p.pending, p.due_now, p.retrying, p.failed), (2, 1, 1, 0));
    assert_eq!(p.delivered_last_hour, 1);
    assert_eq!((p.oldest_pending_secs, p.oldest_due_secs), (Some(3), 1));
    assert_eq!(p.last_error.as_deref(), Some("HTTP 503"));
}

fn next_due_skips_leased_deliveries(backend: Backend) {
    let fresh = backend();
    let mut store = fresh.open();
    store
        .import(&[
            event("A", "Partial", "1", &["p"], 0),
            event("B", "Partial", "1", &["p"], 50),
            event("C", "Partial", "1", &["q"], 10),
        ])
        .unwrap();
    assert_eq!(store.next_due("p").unwrap(), Some(0));
    store.claim("p", 10, 10, 100).unwrap();
    assert_eq!(store.next_due("p").unwrap(), Some(50));
    assert_eq!(store.next_due("none").unwrap(), None);
    let mut pending = store.pending_profiles().unwrap();
    pending.sort();
    assert_eq!(pending, [("p".to_owned(), 2), ("q".to_owned(), 1)]);
}

fn refuses_a_store_with_a_newer_schema(backend: Backend) {
    let fresh = backend();
    drop(fresh.open());
    fresh.pretend_schema_version(1_000);
    match fresh.try_open() {
        Err(StoreError::NewerSchema { found, known, .. }) => {
            assert_eq!(found, 1_000);
            assert!(known < found);
        }
        Err(other) => panic!("expected NewerSchema, got {other}"),
        Ok(_) => panic!("a store of a newer exporter was opened"),
    }
}

#[test]
fn sqlite_one_worker_per_store_and_stale_leases_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let mut first = SqliteStore::open(&path).unwrap();
    first
        .import(&[event("A", "Partial", "1", &["p"], 0)])
        .unwrap();
    first.claim("p", 10, 10, i64::MAX).unwrap();
    assert_eq!(first.join(&node("first"), 20).unwrap(), 1);
    let mut second = SqliteStore::open(&path).unwrap();
    assert!(matches!(
        second.join(&node("second"), 30),
        Err(StoreError::Busy { .. })
    ));
    drop(first);
    assert_eq!(second.join(&node("second"), 40).unwrap(), 0);
}

/// SQLite plans a statement with the values bound where it compares with a partial index's
/// condition or reads a `LIMIT`, and then re-prepares it at every new binding; the claim casts
/// them so it is planned once.
#[test]
fn sqlite_claims_of_any_size_reuse_the_prepared_statement() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("q.db")).unwrap();
    let events: Vec<_> = (0..20)
        .map(|i| event(&format!("O{i}"), "Partial", "1", &["p"], 0))
        .collect();
    store.import(&events).unwrap();
    for limit in [1, 2, 3, 5, 9] {
        assert_eq!(store.claim("p", 10, limit, 100).unwrap().len(), limit);
    }
    let sql = super::sqlite::claim_sql(super::Attempted::Never);
    let claim = store.conn.prepare_cached(&sql).unwrap();
    let reprepared = claim.get_status(rusqlite::StatementStatus::RePrepare);
    assert_eq!(
        reprepared, 0,
        "the claim is planned once, whatever its limit"
    );
    let newest = store.conn.prepare_cached(super::sqlite::NEWEST).unwrap();
    let reprepared = newest.get_status(rusqlite::StatementStatus::RePrepare);
    assert_eq!(
        reprepared, 0,
        "and so is the query for each order's latest event"
    );
}

/// Claims everything due for `profile` in rounds of ten, returning the delivery ids.
fn claim_until_empty(store: &mut PgStore, profile: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        let claims = store.claim(profile, 10, 10, i64::MAX).unwrap();
        if claims.is_empty() {
            return ids;
        }
        ids.extend(claims.iter().map(|c| c.id));
    }
}

#[test]
fn postgres_two_nodes_never_claim_the_same_delivery() {
    let fresh = PgFresh::new();
    let events: Vec<_> = (0..500)
        .map(|i| event(&format!("O{i}"), "Partial", "1", &["p"], 0))
        .collect();
    fresh.open_pg().import(&events).unwrap();

    let start = Arc::new(Barrier::new(2));
    let workers: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let mut store = fresh.open_pg();
            store.join(&node(name), 0).unwrap();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                claim_until_empty(&mut store, "p")
            })
        })
        .collect();
    let claimed: Vec<Vec<i64>> = workers.into_iter().map(|w| w.join().unwrap()).collect();

    let mut all = HashSet::new();
    for id in claimed.iter().flatten() {
        assert!(all.insert(*id), "delivery {id} was claimed twice");
    }
    assert_eq!(
        all.len(),
        500,
        "claimed {} and {}",
        claimed[0].len(),
        claimed[1].len()
    );
    assert!(fresh.open_pg().claim("p", 10, 10, 100).unwrap().is_empty());
}

#[test]
fn postgres_two_nodes_never_flush_a_profile_at_once() {
    const ROUNDS: usize = 20;
    let fresh = PgFresh::new();
    let events: Vec<_> = (0..ROUNDS * 4)
        .map(|i| {
            event(
                &format!("O{i}"),
                "Refund",
                "1",
                &[&format!("p{}", i % ROUNDS)],
                0,
            )
        })
        .collect();
    fresh.open_pg().import(&events).unwrap();

    let start = Arc::new(Barrier::new(2));
    let nodes: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            let mut store = fresh.open_pg();
            store.join(&node(name), 0).unwrap();
            let start = start.clone();
            std::thread::spawn(move || {
                (0..ROUNDS)
                    .map(|round| {
                        start.wait();
                        let batch = store.claim_batch(&format!("p{round}"), 10, 2, 1_000);
                        batch.unwrap().is_some()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let flushed: Vec<Vec<bool>> = nodes.into_iter().map(|n| n.join().unwrap()).collect();
    for (round, (first, second)) in flushed[0].iter().zip(&flushed[1]).enumerate() {
        assert!(
            first ^ second,
            "round {round}: exactly one node gets the batch, got {first} and {second}"
        );
    }
}

#[test]
fn postgres_nodes_opening_a_fresh_schema_at_once_migrate_it_once() {
    let mut fresh = PgFresh::new();
    let start = Arc::new(Barrier::new(3));
    let openers: Vec<_> = (0..3)
        .map(|_| {
            let (url, start) = (fresh.url.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&url).map(drop)
            })
        })
        .collect();
    for opener in openers {
        if let Err(error) = opener.join().unwrap() {
            panic!("a node could not open the store: {error}");
        }
    }
    let versions = format!(
        "SELECT count(*), max(version) FROM {}.schema_version",
        fresh.schema
    );
    let row = fresh.admin.query_one(&versions, &[]).unwrap();
    let known = super::pg_schema::MIGRATIONS.len() as i64;
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (known, known));
}

#[test]
fn postgres_imports_of_one_order_by_two_nodes_are_claimed_in_id_order() {
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 5;
    let fresh = PgFresh::new();
    let start = Arc::new(Barrier::new(3));
    let importers: Vec<_> = (0..2)
        .map(|importer| {
            let mut store = fresh.open_pg();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for batch in 0..BATCHES {
                    let events: Vec<_> = (0..PER_BATCH)
                        .map(|i| {
                            let updated = format!("{importer}-{batch}-{i}");
                            event("A", "Partial", &updated, &["p"], 0)
                        })
                        .collect();
                    store.import(&events).unwrap();
                }
            })
        })
        .collect();

    let mut claimer = fresh.open_pg();
    claimer.join(&node("claimer"), 0).unwrap();
    start.wait();
    let mut seen: Vec<i64> = Vec::new();
    let total = 2 * BATCHES * PER_BATCH;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            Instant::now() < deadline,
            "claimed {} of {total}",
            seen.len()
        );
        let claims = claimer.claim("p", 10, 10, i64::MAX).unwrap();
        assert!(claims.len() <= 1, "one delivery of an order at a time");
        for claim in claims {
            if let Some(last) = seen.last() {
                assert!(
                    claim.event_id > *last,
                    "event {} was claimed after event {last}",
                    claim.event_id
                );
            }
            seen.push(claim.event_id);
            claimer
                .record(&[finished(claim.id, Next::Delivered)])
                .unwrap();
        }
    }
    for importer in importers {
        importer.join().unwrap();
    }
}

#[test]
fn postgres_listen_wakes_on_an_import_by_another_node() {
    let fresh = PgFresh::new();
    let (woken, wakes) = mpsc::channel();
    let mut listening = fresh.open_pg();
    listening
        .listen(Arc::new(move || {
            let _ = woken.send(());
        }))
        .unwrap();

    // The listener connects in the background: import until it has heard one.
    let mut other = fresh.open_pg();
    let started = Instant::now();
    for n in 0.. {
        other
            .import(&[event(&format!("L{n}"), "Partial", "1", &["p"], 0)])
            .unwrap();
        if wakes.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "listen() heard no import within 5 s"
        );
    }
    while wakes.recv_timeout(Duration::from_millis(100)).is_ok() {}

    let elsewhere = PgFresh::new();
    elsewhere
        .open_pg()
        .import(&[event("X", "Partial", "1", &["p"], 0)])
        .unwrap();
    assert!(
        wakes.recv_timeout(Duration::from_secs(1)).is_err(),
        "an import into another schema woke this store's listener"
    );
    other
        .import(&[event("Y", "Partial", "1", &["p"], 0)])
        .unwrap();
    assert!(wakes.recv_timeout(Duration::from_secs(5)).is_ok());
}

#[test]
fn postgres_listen_connects_again_after_losing_its_connection() {
    let mut fresh = PgFresh::new();
    let (woken, wakes) = mpsc::channel();
    fresh
        .open_pg()
        .listen(Arc::new(move || {
            let _ = woken.send(());
        }))
        .unwrap();
    let started = Instant::now();
    while fresh.terminate("LISTEN") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the listener never connected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        wakes.recv_timeout(Duration::from_secs(5)).is_ok(),
        "the listener wakes the workers when it is back"
    );
    fresh
        .open_pg()
        .import(&[event("A", "Partial", "1", &["p"], 0)])
        .unwrap();
    assert!(wakes.recv_timeout(Duration::from_secs(5)).is_ok());
}

#[test]
fn postgres_a_store_connects_again_after_losing_its_connection() {
    let mut fresh = PgFresh::new();
    let mut store = fresh.open_pg();
    store.ping().unwrap();
    assert_eq!(fresh.terminate(""), 1);
    let _ = store.ping();
    store.ping().expect("connected again");
    store
        .import(&[event("A", "Partial", "1", &["p"], 0)])
        .unwrap();
    assert_eq!(store.claim("p", 10, 10, 100).unwrap().len(), 1);
}

#[test]
fn postgres_imports_a_thousand_events_in_well_under_a_second() {
    let fresh = PgFresh::new();
    let mut store = fresh.open_pg();
    let events: Vec<_> = (0..1_000)
        .map(|i| event(&format!("O{i}"), "New Sale", "1", &["p", "q"], 0))
        .collect();
    let started = Instant::now();
    let results = store.import(&events).unwrap();
    let took = started.elapsed();
    eprintln!("imported 1,000 events with 2,000 deliveries in {took:?}");
    assert!(results.iter().all(|r| *r == Imported::Stored));
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert_eq!(store.queue_state("q").unwrap().scheduled, 1_000);
}

#[test]
fn postgres_errors_and_names_never_show_the_password() {
    let fresh = PgFresh::new();
    let with_password = fresh.url.replacen("://postgres@", "://postgres:s3cret@", 1);
    assert_ne!(
        with_password, fresh.url,
        "the test URL names the user postgres"
    );
    let store = PgStore::open(&with_password).unwrap();
    assert!(store.name().contains("postgres:***@"), "{}", store.name());
    assert!(!store.name().contains("s3cret"));

    let mut missing = url::Url::parse(&with_password).unwrap();
    missing.set_path("/no_such_database");
    let error = PgStore::open(missing.as_str())
        .err()
        .expect("no such database");
    let text = error.to_string();
    assert!(
        text.contains("no_such_database") && text.contains("***"),
        "{text}"
    );
    assert!(
        text.contains("does not exist"),
        "the server's words: {text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

/// A search_path naming a schema that does not exist is an operator's typo: the error says so
/// instead of PostgreSQL's "no schema has been selected to create in".
#[test]
fn postgres_a_missing_schema_is_named_as_the_problem() {
    let url = format!("{TEST_POSTGRES}?options=-csearch_path%3Dno_such_schema_for_exporter");
    let error = match PgStore::open(&url) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("opened a store in a schema that does not exist"),
    };
    assert!(
        error.contains("does not exist") && error.contains("CREATE SCHEMA"),
        "{error}"
    );
}
