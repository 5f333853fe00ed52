//! `exporter serve`: the ingest API as a client and an operator meet it.

use std::process::{Child, Stdio};
use std::time::Duration;

use exporter_test_support::Receiver;
use serde_json::{Value, json};

use crate::harness::{Scratch, query_page_file, text};

const TOKEN: &str = "test-token-0123456789";

/// A running `exporter serve` on a free loopback port.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    fn start(scratch: &Scratch) -> Server {
        let (child, base) = scratch.serve("EXPORTER_TOKEN", TOKEN, Stdio::piped());
        let _ = rustls::crypto::ring::default_provider().install_default();
        Server {
            child,
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, body: impl Into<reqwest::Body>, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/v1/events", self.base))
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("post");
        let status = response.status().as_u16();
        (status, json_of(response).await)
    }

    /// Stops with SIGTERM and returns the exit success and stderr.
    fn stop(self) -> (bool, String) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let output = self.child.wait_with_output().unwrap();
        (output.status.success(), text(&output).1)
    }
}

async fn json_of(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("answer body");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn config(extra: &str) -> String {
    format!(
        r#"
[server]
tokens = ["env:EXPORTER_TOKEN"]
max_body_bytes = 200000
max_batch_events = 50
{extra}

[[profile]]
name = "Refunds"
type = "csv"
dir = "out"
routes = [ {{ triggers = ["Full Refund", "Partial Refund", "Chargeback"] }} ]
mappings = [ {{ name = "order_id", field = "orderId" }} ]
"#
    )
}

fn event(order: &str, trigger: &str) -> Value {
    json!({"orderId": order, "customerType": trigger, "dateUpdated": "2026-11-02 06:00:00"})
}

#[tokio::test]
async fn refuses_requests_without_the_right_token_and_stores_nothing_of_them() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let body = event("A1", "Full Refund").to_string();

    let (missing, _) = server.post(body.clone(), None).await;
    let (wrong, answer) = server
        .post(body.clone(), Some("test-token-0123456780"))
        .await;
    assert_eq!((missing, wrong), (401, 401));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("not one of the configured tokens")
    );

    let (right, answer) = server.post(body, Some(TOKEN)).await;
    assert_eq!(right, 202);
    assert_eq!(
        answer["accepted"], 1,
        "the refused requests stored nothing: {answer}"
    );
    let (ok, stderr) = server.stop();
    assert!(ok, "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token is never logged");
}

#[tokio::test]
async fn accepts_one_event_an_array_json_lines_and_a_query_page() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let one = event("A1", "Full Refund").to_string();
    let array = json!([event("B1", "Chargeback"), event("B2", "Partial")]).to_string();
    let lines = format!(
        "{}\n{}\n",
        event("C1", "Full Refund"),
        event("C2", "Decline")
    );
    let page = std::fs::read(query_page_file(&scratch)).unwrap();
    let page_events = serde_json::from_slice::<Value>(&page).unwrap()["message"]["data"]
        .as_array()
        .unwrap()
        .len();

    let (status, answer) = server.post(one, Some(TOKEN)).await;
    assert_eq!((status, answer["accepted"].as_u64()), (202, Some(1)));
    let (_, answer) = server.post(array, Some(TOKEN)).await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["unmatched"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, answer) = server.post(lines, Some(TOKEN)).await;
    assert_eq!(answer["accepted"], 2);
    let (status, answer) = server.post(page, Some(TOKEN)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"].as_u64(), Some(page_events as u64));
    assert!(server.stop().0);
}

#[tokio::test]
async fn reports_bad_items_by_index_and_accepts_the_good_ones() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let body = format!(
        "{}\n{{\"orderId\": \"X\"\n{}\n{{\"customerType\": \"Chargeback\"}}\n",
        event("A1", "Full Refund"),
        event("A2", "Chargeback")
    );

    let (status, answer) = server.post(body, Some(TOKEN)).await;

    assert_eq!(status, 202);
    assert_eq!(answer["accepted"], 2);
    let rejected = answer["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(
        (rejected[0]["index"].as_u64(), rejected[0]["at"].as_str()),
        (Some(1), Some("line 2"))
    );
    assert!(
        rejected[1]["reason"].as_str().unwrap().contains("orderId"),
        "{answer}"
    );

    let (status, answer) = server.post("{nope\n[1]\n", Some(TOKEN)).await;
    assert_eq!(status, 400, "nothing good in it: {answer}");
    assert!(server.stop().0);
}

#[tokio::test]
async fn a_resent_event_or_request_creates_nothing_new() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let body = json!([event("A1", "Full Refund"), event("A2", "Chargeback")]).to_string();

    let (_, first) = server.post(body.clone(), Some(TOKEN)).await;
    let (_, again) = server.post(body.clone(), Some(TOKEN)).await;
    assert_eq!(
        (first["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(again["accepted"], 0);

    let keyed = json!([event("K1", "Full Refund")]).to_string();
    let url = format!("{}/v1/events", server.base);
    let send = || {
        server
            .client
            .post(&url)
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", "req-1")
            .body(keyed.clone())
            .send()
    };
    let first = send().await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_of(first).await;
    let replay = send().await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(replay).await, first, "the same answer again");
    assert!(server.stop().0);
}

#[tokio::test]
async fn refuses_bodies_and_batches_over_the_limits() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);

    let huge = "x".repeat(300_000);
    let (status, answer) = server.post(huge, Some(TOKEN)).await;
    assert_eq!(status, 413);
    assert!(
        answer["error"].as_str().unwrap().contains("200000 bytes"),
        "{answer}"
    );

    let many: Vec<Value> = (0..51)
        .map(|i| event(&format!("M{i}"), "Chargeback"))
        .collect();
    let (status, answer) = server
        .post(Value::Array(many).to_string(), Some(TOKEN))
        .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("more than 50 events"),
        "{answer}"
    );

    let one = event("M0", "Chargeback").to_string();
    let (_, answer) = server.post(one, Some(TOKEN)).await;
    assert_eq!(answer["accepted"], 1, "the refused batch stored nothing");
    assert!(server.stop().0);
}

#[tokio::test]
async fn takes_a_crm_style_get_postback_and_delivers_it() {
    let receiver = Receiver::start().await;
    let extra = format!(
        r#"
[[profile]]
name = "Leads"
type = "postback"
url = "{}"
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [ {{ name = "order", field = "orderId" }}, {{ name = "name", field = "firstName" }} ]
"#,
        receiver.url("/lead")
    );
    let scratch = Scratch::new(&(config("") + &extra));
    let server = Server::start(&scratch);

    let url = format!(
        "{}/v1/events?orderId=Q1&customerType=Partial&firstName=Zo%C3%AB",
        server.base
    );
    let response = server
        .client
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);

    let requests = receiver.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(
        requests[0].query_pairs(),
        [("order".into(), "Q1".into()), ("name".into(), "Zoë".into())]
    );
    let (ok, stderr) = server.stop();
    assert!(ok && stderr.contains("stopped cleanly"), "{stderr}");
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token() {
    let scratch = Scratch::new(&config("").replace("tokens = [\"env:EXPORTER_TOKEN\"]", ""));
    let output = scratch.run(&[
        "serve",
        "--config",
        "exporter.toml",
        "--listen",
        "0.0.0.0:0",
    ]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{stderr}"
    );
}

#[tokio::test]
async fn metrics_count_events_deliveries_durations_and_the_queue() {
    let receiver = Receiver::start().await;
    let extra = format!(
        r#"
[[profile]]
name = "Leads"
type = "postback"
url = "{}"
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#,
        receiver.url("/lead")
    );
    let scratch = Scratch::new(&(config("") + &extra));
    let server = Server::start(&scratch);
    let body = json!([
        event("L1", "Partial"),
        event("L2", "Partial"),
        event("R1", "Decline")
    ]);
    let (status, _) = server.post(body.to_string(), Some(TOKEN)).await;
    assert_eq!(status, 202);
    receiver.wait_for_requests(2, Duration::from_secs(10)).await;

    let url = format!("{}/metrics", server.base);
    let refused = server.client.get(&url).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401, "metrics need the token too");
    let scrape = || async {
        let response = server
            .client
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    };
    let mut text = scrape().await;
    for _ in 0..100 {
        // The counters move as answers arrive; the queue once their outcomes are committed.
        let delivered = "exporter_deliveries_total{profile=\"Leads\",outcome=\"delivered\"} 2";
        if text.contains(delivered) && text.contains("exporter_queue_depth{profile=\"Leads\"} 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape().await;
    }
    for expected in [
        "# TYPE exporter_events_accepted_total counter\nexporter_events_accepted_total 3\n",
        "exporter_deliveries_total{profile=\"Leads\",outcome=\"delivered\"} 2\n",
        "exporter_attempt_duration_seconds_count{profile=\"Leads\"} 2\n",
        "exporter_queue_depth{profile=\"Leads\"} 0\n",
        "exporter_queue_depth{profile=\"Refunds\"} 0\n",
        "exporter_oldest_due_age_seconds{profile=\"Leads\"} 0\n",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
    assert!(server.stop().0);
}

#[tokio::test]
async fn the_crm_export_posted_in_batches_and_one_by_one_drains_to_zero() {
    let receiver = Receiver::start().await;
    let extra = format!(
        r#"
[[profile]]
name = "Sales"
type = "postback"
url = "{}"
concurrency = 32
# Every sale, also of orders whose later refund arrives before the sale is sent.
recheck = false
routes = [ {{ triggers = ["New Sale", "Upsell"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#,
        receiver.url("/sale")
    );
    let limits = config("")
        .replace("max_batch_events = 50", "")
        .replace("max_body_bytes = 200000", "");
    let scratch = Scratch::new(&(limits + &extra));
    let server = Server::start(&scratch);
    let text = std::fs::read_to_string(crate::harness::orders_file()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (singles, rest) = lines.split_at(64);

    // 64 concurrent single-event posts, sharing commits, each acknowledged once stored.
    let posts = singles
        .iter()
        .map(|line| server.post(line.to_string(), Some(TOKEN)));
    let answers = futures_util::future::join_all(posts).await;
    assert!(
        answers
            .iter()
            .all(|(status, answer)| *status == 202 && answer["accepted"] == 1)
    );
    // The rest in batches of 1,000 JSON lines.
    let mut accepted = 64;
    for chunk in rest.chunks(1000) {
        let (status, answer) = server.post(chunk.join("\n"), Some(TOKEN)).await;
        assert_eq!(status, 202, "{answer}");
        accepted += answer["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, lines.len() as u64);

    let expected: std::collections::BTreeSet<String> = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| matches!(e["customerType"].as_str(), Some("New Sale" | "Upsell")))
        .filter(|e| {
            !e["cardType"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case("testcard"))
        })
        .map(|e| e["orderId"].as_str().unwrap().to_owned())
        .collect();
    // A generous bound: it drains in seconds, but CI machines can be busy.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let output = scratch.run(&["status", "--json"]);
        let statuses: Value = serde_json::from_slice(&output.stdout).unwrap();
        let sales = statuses["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["profile"] == "Sales")
            .unwrap();
        if sales["pending"] == 0 && receiver.requests().len() >= expected.len() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not drained: {sales}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.query_pairs()[0].1.clone())
        .collect();
    let unique: std::collections::BTreeSet<String> = sent.iter().cloned().collect();
    assert_eq!(unique, expected, "every routed non-test sale");
    let one = expected.iter().next().unwrap();
    let ledger = scratch.run(&["deliveries", "--order", one, "--json"]);
    let ledger: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    assert_eq!(ledger[0]["history"][0]["outcome"], "delivered");
    assert!(server.stop().0);
}

#[tokio::test]
async fn refuses_an_idempotency_key_reused_for_other_events() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let url = format!("{}/v1/events", server.base);
    let send = |body: String| {
        let request = server.client.post(&url).bearer_auth(TOKEN);
        request
            .header("Idempotency-Key", "batch-1")
            .body(body)
            .send()
    };
    let first = send(event("IK-A", "Chargeback").to_string()).await.unwrap();
    assert_eq!(first.status().as_u16(), 202);
    let other = send(event("IK-B", "Chargeback").to_string()).await.unwrap();
    assert_eq!(other.status().as_u16(), 422);
    let answer = json_of(other).await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("different request"),
        "{answer}"
    );

    let (_, answer) = server
        .post(event("IK-B", "Chargeback").to_string(), Some(TOKEN))
        .await;
    assert_eq!(answer["accepted"], 1, "the refused request stored nothing");
    assert!(server.stop().0);
}

#[tokio::test]
async fn takes_a_form_post_and_a_lowercase_scheme_and_refuses_an_empty_body() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let url = format!("{}/v1/events", server.base);
    let form = server
        .client
        .post(&url)
        .header("Authorization", format!("bearer {TOKEN}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("orderId=F1&customerType=Full+Refund&firstName=Zo%C3%AB")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 202);
    assert_eq!(json_of(form).await["accepted"], 1);

    let (status, answer) = server.post("  \n", Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().contains("no events"),
        "{answer}"
    );
    assert!(server.stop().0);
}

#[tokio::test]
async fn reads_json_posted_with_curls_default_form_content_type() {
    let scratch = Scratch::new(&config(""));
    let server = Server::start(&scratch);
    let response = server
        .client
        .post(format!("{}/v1/events", server.base))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(event("C1", "Chargeback").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(json_of(response).await["accepted"], 1);
    assert!(server.stop().0);
}
