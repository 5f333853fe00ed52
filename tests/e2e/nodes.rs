//! Several exporter nodes sharing one PostgreSQL database (127.0.0.1:5432, database `test`,
//! a schema of its own per test): events posted to all of them, one killed with SIGKILL while
//! it holds claims. Every acknowledged event reaches the receiver, every delivery id at least
//! once, a delivery id twice only if the killed node held its claim, and each order's events
//! arrive in the order they were posted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use exporter_test_support::{Receiver, Reply};
use serde_json::Value;

use crate::harness::{Scratch, orders_file};

const TOKEN: &str = "nodes-token-0123456789";

/// How many orders the test posts; each gets one event per step.
const ORDERS: usize = 300;

/// The events of one order, posted one step after another.
const STEPS: usize = 3;

/// A schema of its own in the `test` database, dropped at the end.
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub const SERVER: &str = "postgres://postgres@127.0.0.1:5432/test";

    pub fn new() -> PgSchema {
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let create = format!("CREATE SCHEMA {name}");
        off_runtime(move || Self::client().batch_execute(&create)).expect("create the schema");
        PgSchema { name }
    }

    /// A plain connection, failing loudly: the tests need the server CI starts.
    pub fn client() -> postgres::Client {
        postgres::Client::connect(Self::SERVER, postgres::NoTls).unwrap_or_else(|error| {
            panic!("PostgreSQL must be running on 127.0.0.1:5432 (database test): {error}")
        })
    }

    /// The store URL the exporter's config names.
    pub fn url(&self) -> String {
        format!("{}?options=-csearch_path%3D{}", Self::SERVER, self.name)
    }

    /// Runs a query in this schema.
    pub fn query(&self, sql: &str) -> Vec<postgres::Row> {
        let (schema, sql) = (self.name.clone(), sql.to_owned());
        off_runtime(move || {
            let mut client = Self::client();
            client.batch_execute(&format!("SET search_path TO {schema}"))?;
            client.query(&sql, &[])
        })
        .unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA {} CASCADE", self.name);
        let _ = off_runtime(move || {
            postgres::Client::connect(Self::SERVER, postgres::NoTls)?.batch_execute(&drop)
        });
    }
}

/// Runs blocking database work on a thread of its own: the synchronous client cannot run on
/// a thread that drives the test's async runtime.
fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(work).join().expect("database thread")
}

/// One exporter node: its process, base URL and process id.
struct NodeProcess {
    child: Child,
    base: String,
}

fn start_node(scratch: &Scratch, log: &str) -> NodeProcess {
    let stderr = std::fs::File::create(scratch.path(log)).unwrap();
    let (child, base) = scratch.serve("NODES_TOKEN", TOKEN, Stdio::from(stderr));
    NodeProcess { child, base }
}

/// The CRM's own events, `STEPS` per order under fresh order ids, each step a later update.
fn orders() -> Vec<Vec<Value>> {
    let file = std::fs::File::open(orders_file()).unwrap();
    let events: Vec<Value> = std::io::BufReader::new(file)
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect();
    // The bundled sample stands in when ../shared/data is absent; it is used again as needed.
    let mut events = events.into_iter().cycle();
    (0..ORDERS)
        .map(|order| {
            (0..STEPS)
                .map(|step| {
                    let mut event = events.next().expect("events");
                    event["orderId"] = format!("N{order}").into();
                    event["dateUpdated"] = format!("2026-12-04 10:00:0{step}").into();
                    event
                })
                .collect()
        })
        .collect()
}

/// Posts NDJSON `events` to the first node that takes them, starting at `first`. A node that
/// is down is skipped, as a load balancer would; a request it committed before dying is
/// recognised as duplicates by the next.
async fn post(client: &reqwest::Client, bases: &[String], first: usize, events: &[Value]) {
    let body: Vec<String> = events.iter().map(Value::to_string).collect();
    let body = body.join("\n");
    for attempt in 0..bases.len() * 3 {
        let base = &bases[(first + attempt) % bases.len()];
        let sent = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(TOKEN)
            .body(body.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = sent
            && response.status().as_u16() == 202
        {
            return;
        }
    }
    panic!("no node took a batch of {} events", events.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_nodes_deliver_everything_when_one_is_killed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let schema = PgSchema::new();
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight when the kill comes.
    receiver.set_default(Reply::ok().delay(Duration::from_millis(150)));
    let orders = orders();
    let triggers: BTreeSet<String> = orders
        .iter()
        .flatten()
        .map(|event| event["customerType"].as_str().unwrap().to_owned())
        .collect();
    let triggers: Vec<String> = triggers.iter().map(|t| format!("{t:?}")).collect();
    let config = format!(
        r#"
store = "{}"

[server]
tokens = ["env:NODES_TOKEN"]

[[profile]]
name = "Calls"
type = "postback"
url = "{}"
concurrency = 4
recheck = false
retry_initial_secs = 0.2
retry_max_secs = 1
routes = [ {{ triggers = [{}] }} ]
mappings = [
  {{ name = "order", field = "orderId" }},
  {{ name = "step", field = "dateUpdated" }},
]
"#,
        schema.url(),
        receiver.url("/call"),
        triggers.join(", ")
    );
    let scratch = Scratch::new(&config);
    let mut nodes: Vec<NodeProcess> = (0..3)
        .map(|n| start_node(&scratch, &format!("node{n}.log")))
        .collect();
    let bases: Vec<String> = nodes.iter().map(|node| node.base.clone()).collect();
    let victim_pid = nodes[2].child.id();

    // Step by step: every order's event of one step is acknowledged before its next step is
    // posted, so arrival order is defined. Batches of ten orders go to the nodes in turn.
    let client = reqwest::Client::new();
    let mut held_by_victim = BTreeSet::new();
    for step in 0..STEPS {
        let mut posts = Vec::new();
        for (batch, chunk) in orders.chunks(10).enumerate() {
            let events: Vec<Value> = chunk.iter().map(|order| order[step].clone()).collect();
            let (client, bases) = (client.clone(), bases.clone());
            posts.push(tokio::spawn(async move {
                post(&client, &bases, batch + step, &events).await
            }));
            if step == 1 && batch == 10 {
                // Kill the third node mid-run, once it holds claims; then note which it held.
                let deadline = Instant::now() + Duration::from_secs(30);
                while claims_held_by(&schema, victim_pid).is_empty() {
                    assert!(Instant::now() < deadline, "the third node never claimed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                nodes[2].child.kill().expect("SIGKILL");
                nodes[2].child.wait().unwrap();
                held_by_victim = claims_held_by(&schema, victim_pid);
            }
        }
        for posted in posts {
            posted.await.unwrap();
        }
    }
    assert!(
        !held_by_victim.is_empty(),
        "the killed node held no claim; the test proves nothing"
    );

    // Every delivery the store made is received at least once; leases of the killed node lapse
    // after 30 s and the survivors take them.
    let stored = schema.query("SELECT count(*) FROM deliveries");
    assert_eq!(
        stored[0].get::<_, i64>(0) as usize,
        ORDERS * STEPS,
        "one delivery per posted event"
    );
    // Test orders (the CRM's test cards) are stored but never sent.
    let sendable = schema.query("SELECT uid, order_id FROM deliveries WHERE state <> 'test_order'");
    let uids: BTreeSet<String> = sendable.iter().map(|row| row.get(0)).collect();
    let order_ids: BTreeSet<String> = sendable.iter().map(|row| row.get(1)).collect();
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let received: BTreeSet<String> = receiver
            .requests()
            .iter()
            .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
            .collect();
        let missing = uids.difference(&received).count();
        if missing == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let states = schema.query(
                "SELECT state || ' attempts=' || attempts || ' leased=' || (lease_until IS NOT NULL)
                        || ' node=' || coalesce(lease_node, '-') || ' n=' || count(*)
                 FROM deliveries GROUP BY state, attempts, lease_until IS NOT NULL, lease_node",
            );
            let states: Vec<String> = states.iter().map(|row| row.get(0)).collect();
            let logs: Vec<String> = (0..3)
                .map(|n| std::fs::read_to_string(scratch.path(&format!("node{n}.log"))).unwrap())
                .collect();
            panic!(
                "{missing} deliveries never arrived; store: {states:#?}\nlogs:\n{}",
                logs.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let requests = receiver.requests();
    let mut sends: BTreeMap<String, usize> = BTreeMap::new();
    let mut steps_by_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in &requests {
        let key = request.header("idempotency-key").unwrap().to_owned();
        *sends.entry(key).or_default() += 1;
        let pairs: BTreeMap<String, String> = request.query_pairs().into_iter().collect();
        steps_by_order
            .entry(pairs["order"].clone())
            .or_default()
            .push(pairs["step"].clone());
    }
    let twice: BTreeSet<&String> = sends
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, _)| k)
        .collect();
    for uid in &twice {
        assert!(
            held_by_victim.contains(*uid),
            "delivery {uid} was sent {} times but the killed node did not hold it",
            sends[*uid]
        );
    }
    for (order, steps) in &steps_by_order {
        assert!(
            steps.is_sorted(),
            "order {order}: events arrived out of order: {steps:?}"
        );
    }
    let received: BTreeSet<String> = steps_by_order.keys().cloned().collect();
    assert_eq!(received, order_ids);

    // Status lists the three nodes, the killed one holding nothing any more.
    let output = scratch.run(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&output.stdout).expect("status --json");
    let listed = status["nodes"].as_array().expect("nodes");
    assert_eq!(listed.len(), 3, "{status}");
    // The killed node turns `silent` a minute after its last heartbeat; none has stopped.
    assert!(
        listed
            .iter()
            .all(|node| node["state"] == "running" || node["state"] == "silent"),
        "{status}"
    );
    // The survivors stop cleanly on SIGTERM (the store's client was once dropped inside the
    // runtime and panicked on the way out).
    for (n, node) in nodes[..2].iter_mut().enumerate() {
        let pid = node.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = node.child.wait().unwrap();
        let log = std::fs::read_to_string(scratch.path(&format!("node{n}.log"))).unwrap();
        assert!(
            status.success() && !log.contains("panicked"),
            "{status}: {log}"
        );
    }
    eprintln!(
        "{} deliveries, {} requests, {} claims held by the killed node, {} sent twice",
        uids.len(),
        requests.len(),
        held_by_victim.len(),
        twice.len()
    );
}

/// The delivery ids the node with process id `pid` held a lease on.
fn claims_held_by(schema: &PgSchema, pid: u32) -> BTreeSet<String> {
    let rows = schema.query(&format!(
        "SELECT d.uid FROM deliveries d JOIN nodes n ON n.id = d.lease_node
         WHERE n.name LIKE '%:{pid}' AND d.state = 'pending' AND d.lease_until IS NOT NULL"
    ));
    rows.iter().map(|row| row.get(0)).collect()
}

/// A config on the store at `url` whose one profile holds its deliveries for an hour: the
/// tests that use it are about ingest, and nothing is ever sent.
fn holding_config(url: &str) -> String {
    format!(
        r#"
store = "{url}"

[server]
tokens = ["env:NODES_TOKEN"]

[[profile]]
name = "Calls"
type = "postback"
url = "http://127.0.0.1:9/never"
delay_minutes = 60
routes = [ {{ triggers = ["New Sale"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#
    )
}

/// A TCP relay on loopback to the test PostgreSQL server that can stop passing bytes while
/// keeping its connections open: a database that stopped answering.
struct StallingRelay {
    port: u16,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingRelay {
    async fn start() -> StallingRelay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stalled = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    ),
                    (Box::new(server_read), Box::new(client_write)),
                ] {
                    let flag = flag.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buffer = vec![0; 16 * 1024];
                        loop {
                            let Ok(read) = from.read(&mut buffer).await else {
                                return;
                            };
                            if read == 0 {
                                return;
                            }
                            while flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if to.write_all(&buffer[..read]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        StallingRelay { port, stalled }
    }

    fn stall(&self, stalled: bool) {
        self.stalled
            .store(stalled, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A database that stops answering (a stalled network) gets clients a 503 within the store
/// wait, not a request that hangs until the client gives up; once it answers again, so does
/// the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_stops_answering_gets_503_not_a_hang() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let schema = PgSchema::new();
    let relay = StallingRelay::start().await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/test?options=-csearch_path%3D{}",
        relay.port, schema.name
    );
    let scratch = Scratch::new(&holding_config(&url));
    let mut node = start_node(&scratch, "node.log");
    let client = reqwest::Client::new();
    let post = |order: &str| {
        client
            .post(format!("{}/v1/events", node.base))
            .bearer_auth(TOKEN)
            .body(format!(
                r#"{{"orderId":"{order}","customerType":"New Sale"}}"#
            ))
            .timeout(Duration::from_secs(60))
            .send()
    };
    assert_eq!(post("S1").await.unwrap().status().as_u16(), 202);

    relay.stall(true);
    let started = Instant::now();
    let answer = post("S2").await.expect("an answer, not a client timeout");
    let waited = started.elapsed();
    assert_eq!(answer.status().as_u16(), 503, "{:?}", answer.text().await);
    assert!(
        waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );

    relay.stall(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if post("S3").await.unwrap().status().as_u16() == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "the node never recovered");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    node.child.kill().unwrap();
    node.child.wait().unwrap();
}

/// The same request with one `Idempotency-Key`, posted at once several times to each of two
/// nodes: its events are stored once and every copy gets the same answer, the first one's
/// (once, each node answered for itself, and a replay could say "0 accepted").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_posted_to_two_nodes_at_once_gets_one_answer() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let schema = PgSchema::new();
    let scratch = Scratch::new(&holding_config(&schema.url()));
    let mut nodes: Vec<NodeProcess> = (0..2)
        .map(|n| start_node(&scratch, &format!("node{n}.log")))
        .collect();
    let client = reqwest::Client::new();
    let body = (0..50)
        .map(|i| format!(r#"{{"orderId":"I{i}","customerType":"New Sale"}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let posts: Vec<_> = (0..8)
        .map(|copy| {
            let request = client
                .post(format!("{}/v1/events", nodes[copy % 2].base))
                .bearer_auth(TOKEN)
                .header("idempotency-key", "one-request")
                .body(body.clone())
                .timeout(Duration::from_secs(60))
                .send();
            tokio::spawn(async move {
                let response = request.await.unwrap();
                let replayed = response.headers().contains_key("idempotent-replayed");
                (
                    response.status().as_u16(),
                    replayed,
                    response.text().await.unwrap(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for post in posts {
        answers.push(post.await.unwrap());
    }
    assert!(
        answers.iter().all(|(status, ..)| *status == 202),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "one copy is stored, the others replay its answer: {answers:?}"
    );
    let first: Value = serde_json::from_str(&answers[0].2).unwrap();
    assert_eq!(first["accepted"], 50, "{first}");
    assert!(
        answers.iter().all(|(.., text)| *text == answers[0].2),
        "{answers:?}"
    );
    let stored = schema.query("SELECT count(*) FROM events");
    assert_eq!(stored[0].get::<_, i64>(0), 50);
    for node in &mut nodes {
        node.child.kill().unwrap();
        node.child.wait().unwrap();
    }
}
