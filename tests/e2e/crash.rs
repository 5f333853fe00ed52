//! The promise under the worst failure: `serve` killed with SIGKILL again and again while
//! clients post and deliveries are in flight. Every event answered 202 reaches the target; an
//! event sent twice was in flight at a kill and carries the same idempotency key both times.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use exporter_test_support::{Receiver, Reply};
use serde_json::json;

use crate::harness::Scratch;

const TOKEN: &str = "crash-token-0123456789";

/// How many times the server is killed; `EXPORTER_CRASH_KILLS` runs a longer soak.
fn kills() -> usize {
    std::env::var("EXPORTER_CRASH_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

fn start(scratch: &Scratch) -> (Child, String) {
    scratch.serve("CRASH_TOKEN", TOKEN, Stdio::null())
}

/// Posts batches of new orders until the server stops answering; returns the acknowledged ids.
async fn post_until_killed(base: String, first: usize) -> Vec<String> {
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for batch in 0.. {
        let ids: Vec<String> = (0..10)
            .map(|i| format!("K{}", first + batch * 10 + i))
            .collect();
        let lines: Vec<String> = ids
            .iter()
            .map(|id| {
                json!({"orderId": id, "customerType": "New Sale", "dateUpdated": "1"}).to_string()
            })
            .collect();
        let sent = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(TOKEN)
            .body(lines.join("\n"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match sent {
            Ok(response) if response.status().as_u16() == 202 => acknowledged.extend(ids),
            _ => return acknowledged,
        }
        // A steady client, not a flood: the test is about the kills.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_repeated_sigkill() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receiver = Receiver::start().await;
    // Slow answers keep deliveries in flight when the kill comes.
    receiver.set_default(Reply::ok().delay(Duration::from_millis(10)));
    let config = format!(
        r#"
[server]
tokens = ["env:CRASH_TOKEN"]

[[profile]]
name = "Sales"
type = "postback"
url = "{}"
concurrency = 8
recheck = false
retry_initial_secs = 0.2
retry_max_secs = 1
routes = [ {{ triggers = ["New Sale"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#,
        receiver.url("/sale")
    );
    let scratch = Scratch::new(&config);
    let mut acknowledged = BTreeSet::new();

    for round in 0..kills() {
        let (mut child, base) = start(&scratch);
        let client = tokio::spawn(post_until_killed(base, round * 100_000));
        // Kill at a moment that varies from round to round.
        tokio::time::sleep(Duration::from_millis(150 + (round as u64 * 37) % 250)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let answered = client.await.unwrap();
        acknowledged.extend(answered);
    }

    // One last start delivers whatever the kills left in the queue.
    assert!(
        acknowledged.len() > 100,
        "the clients got through: {}",
        acknowledged.len()
    );
    let (mut child, _) = start(&scratch);
    let deadline = Instant::now() + Duration::from_secs(120);
    let keys_by_order = loop {
        let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for request in receiver.requests() {
            let order = request.query_pairs()[0].1.clone();
            let key = request.header("idempotency-key").unwrap().to_owned();
            keys.entry(order).or_default().insert(key);
        }
        if acknowledged.iter().all(|id| keys.contains_key(id)) {
            break keys;
        }
        let missing = acknowledged
            .iter()
            .filter(|id| !keys.contains_key(*id))
            .count();
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged events never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();

    let requests = receiver.requests().len();
    let duplicates = requests - keys_by_order.len();
    for (order, keys) in &keys_by_order {
        assert_eq!(
            keys.len(),
            1,
            "order {order} was sent under several delivery ids: {keys:?}"
        );
    }
    eprintln!(
        "{} kills, {} acknowledged events, {} requests, {} sent again after a kill",
        kills(),
        acknowledged.len(),
        requests,
        duplicates
    );
}
