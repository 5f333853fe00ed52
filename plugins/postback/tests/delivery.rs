//! The postback target against a real HTTP server on 127.0.0.1: what arrives, and how each
//! kind of answer becomes an outcome.

use std::time::{Duration, Instant};

use exporter_core::{Batching, Exporter, Field, Outcome, OutcomeKind, Record};
use exporter_test_support::{Receiver, Reply};
use serde_json::{Value, json};

/// A postback exporter for `url` with a short timeout, plus any `extra` settings.
fn exporter(url: &str, extra: Value) -> Box<dyn Exporter> {
    let mut settings = json!({"url": url, "timeout_secs": 0.3});
    let settings = settings.as_object_mut().unwrap();
    settings.extend(extra.as_object().unwrap().clone());
    exporter_postback::build("leads", settings).unwrap()
}

fn record(delivery_id: &str, fields: &[(&str, &str)]) -> Record {
    let fields = fields
        .iter()
        .map(|(name, value)| Field {
            name: (*name).into(),
            value: (*value).into(),
            secret: false,
        })
        .collect();
    Record {
        delivery_id: delivery_id.into(),
        order_id: "A1".into(),
        fields,
    }
}

async fn deliver_one(exporter: &dyn Exporter, fields: &[(&str, &str)]) -> Outcome {
    let outcomes = exporter.deliver(&batch_of(&[record("d-1", fields)])).await;
    assert_eq!(outcomes.len(), 1);
    outcomes.into_iter().next().unwrap()
}

/// An exporter pointed at `/lead` whose answer is `reply`, and the outcome of one record.
async fn outcome_for(reply: Reply, extra: Value) -> (Receiver, Outcome) {
    let receiver = Receiver::start().await;
    receiver.respond("/lead", reply);
    let exporter = exporter(&receiver.url("/lead"), extra);
    let outcome = deliver_one(exporter.as_ref(), &[("a", "1")]).await;
    (receiver, outcome)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn sends_get_with_fields_in_the_query_in_order() {
    let receiver = Receiver::start().await;
    let url = format!("{}?source=crm#ignored", receiver.url("/lead"));
    let fields = [
        ("last", "O'Neil & Sons"),
        ("first", "José"),
        ("note", "1+1=2 #1 100%"),
        ("emoji", "🎉"),
    ];
    let outcome = deliver_one(exporter(&url, json!({})).as_ref(), &fields).await;
    assert_eq!(outcome, Outcome::delivered(Some(200), "OK"));

    let request = &receiver.requests()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/lead");
    let mut expected = vec![("source", "crm")];
    expected.extend(fields);
    assert_eq!(request.query_pairs(), owned(&expected));
    assert!(request.body.is_empty());
    assert_eq!(request.header("idempotency-key"), Some("d-1"));
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("order-exporter/")
    );
}

#[tokio::test]
async fn posts_a_form_body_when_a_header_is_mapped() {
    let receiver = Receiver::start().await;
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let fields = [
        ("first", "Ann"),
        ("header:X-Api-Key", "k-123"),
        ("amp", "a&b=c"),
    ];
    deliver_one(exporter.as_ref(), &fields).await;

    let request = &receiver.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.query, "");
    assert_eq!(request.header("x-api-key"), Some("k-123"));
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        request.form_pairs(),
        owned(&[("first", "Ann"), ("amp", "a&b=c")])
    );
}

#[tokio::test]
async fn posts_a_json_body_for_a_json_content_type() {
    let receiver = Receiver::start().await;
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let fields = [
        ("header:Content-Type", "application/json; charset=utf-8"),
        ("zip", "02134"),
        ("name", "\"Al\" 🎉"),
    ];
    deliver_one(exporter.as_ref(), &fields).await;

    let request = &receiver.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(request.body_text(), r#"{"zip":"02134","name":"\"Al\" 🎉"}"#);
    let parsed: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(parsed, json!({"zip": "02134", "name": "\"Al\" 🎉"}));
}

#[tokio::test]
async fn puts_when_http_method_says_so_without_sending_the_pseudo_headers() {
    let receiver = Receiver::start().await;
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let fields = [
        ("header:httpMethod", "put"),
        ("header:httpMethodType", "GET"),
        ("a", "1"),
    ];
    deliver_one(exporter.as_ref(), &fields).await;

    let request = &receiver.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.query_pairs(), owned(&[("a", "1")]));
    assert!(request.body.is_empty());
    assert_eq!(request.header("httpmethod"), None);
    assert_eq!(request.header("httpmethodtype"), None);
}

#[tokio::test]
async fn sends_the_same_idempotency_key_on_every_attempt() {
    let receiver = Receiver::start().await;
    receiver.respond("/lead", Reply::status(500));
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let batch = [record("delivery-7", &[("a", "1")])];
    assert_eq!(
        exporter.deliver(&batch_of(&batch)).await[0].kind,
        OutcomeKind::Retry
    );
    assert_eq!(
        exporter.deliver(&batch_of(&batch)).await[0].kind,
        OutcomeKind::Delivered
    );

    let keys: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        [Some("delivery-7".to_owned()), Some("delivery-7".to_owned())]
    );
}

#[tokio::test]
async fn retries_when_success_body_does_not_match() {
    let reply = Reply::ok().body("ERROR: phone is required");
    let (_receiver, outcome) = outcome_for(reply, json!({"success_body": "^OK"})).await;
    assert_eq!(outcome.kind, OutcomeKind::Retry);
    assert_eq!(outcome.status, Some(200));
    assert!(
        outcome
            .message
            .contains("did not match success_body: ERROR: phone is required"),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn counts_a_duplicate_body_as_duplicate() {
    let reply = Reply::status(409).body("Duplicate lead 991");
    let settings = json!({"success_body": "^OK", "duplicate_body": "(?i)duplicate"});
    let (_receiver, outcome) = outcome_for(reply, settings).await;
    assert_eq!(outcome, Outcome::duplicate(Some(409), "Duplicate lead 991"));
}

#[tokio::test]
async fn retries_on_server_error() {
    let reply = Reply::status(500).body("database down");
    let (_receiver, outcome) = outcome_for(reply, json!({})).await;
    assert_eq!(
        outcome,
        Outcome::retry(Some(500), "500 Internal Server Error: database down")
    );
}

#[tokio::test]
async fn honours_retry_after_on_too_many_requests() {
    let reply = Reply::status(429).header("Retry-After", "7");
    let (_receiver, outcome) = outcome_for(reply, json!({})).await;
    assert_eq!(outcome.kind, OutcomeKind::Retry);
    assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn retries_a_redirect_naming_its_location_without_following_it() {
    let receiver = Receiver::start().await;
    let moved = receiver.url("/moved");
    receiver.respond("/lead", Reply::status(302).header("Location", &moved));
    let outcome = deliver_one(exporter(&receiver.url("/lead"), json!({})).as_ref(), &[]).await;

    assert_eq!(outcome.kind, OutcomeKind::Retry);
    assert_eq!(outcome.status, Some(302));
    assert_eq!(
        outcome.message,
        format!("redirected to {moved} (redirects are not followed)")
    );
    assert_eq!(
        receiver.requests().len(),
        1,
        "the redirect must not be followed"
    );
}

#[tokio::test]
async fn retries_when_the_connection_drops() {
    let (_receiver, outcome) = outcome_for(Reply::drop_connection(), json!({})).await;
    assert_eq!(outcome.kind, OutcomeKind::Retry);
    assert_eq!(outcome.status, None);
    assert!(
        outcome.message.starts_with("request failed: "),
        "{}",
        outcome.message
    );
}

#[tokio::test]
async fn retries_when_the_target_is_slower_than_the_timeout() {
    let started = Instant::now();
    let reply = Reply::ok().delay(Duration::from_secs(3));
    let (_receiver, outcome) = outcome_for(reply, json!({"timeout_secs": 0.2})).await;
    assert_eq!(outcome, Outcome::retry(None, "timed out after 0.2s"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retries_when_nothing_listens() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/lead", free.local_addr().unwrap());
    drop(free);
    let outcome = deliver_one(exporter(&url, json!({})).as_ref(), &[("a", "1")]).await;
    assert_eq!(outcome, Outcome::retry(None, "connection refused"));
}

#[tokio::test]
async fn fails_a_record_with_an_unknown_method_without_sending_it() {
    let receiver = Receiver::start().await;
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let outcome = deliver_one(exporter.as_ref(), &[("header:httpMethod", "FETCH")]).await;
    assert_eq!(outcome.kind, OutcomeKind::Failed);
    assert!(
        outcome.message.contains("httpMethod"),
        "{}",
        outcome.message
    );
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn returns_outcomes_in_batch_order() {
    let receiver = Receiver::start().await;
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let batch = [
        record("d-1", &[("a", "1")]),
        record("d-2", &[("header:httpMethod", "GRAB")]),
        record("d-3", &[("a", "3")]),
    ];
    let kinds: Vec<_> = exporter
        .deliver(&batch_of(&batch))
        .await
        .iter()
        .map(|o| o.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            OutcomeKind::Delivered,
            OutcomeKind::Failed,
            OutcomeKind::Delivered
        ]
    );
}

/// How long a batch of three records takes when each answer takes 200 ms.
async fn batch_time(concurrency: usize) -> Duration {
    let receiver = Receiver::start().await;
    receiver.set_default(Reply::ok().delay(Duration::from_millis(200)));
    let settings = json!({"timeout_secs": 5, "concurrency": concurrency});
    let exporter = exporter(&receiver.url("/lead"), settings);
    assert_eq!(
        exporter.batching(),
        Batching::Stream {
            max_in_flight: concurrency
        }
    );

    let batch: Vec<Record> = (1..=3).map(|n| record(&format!("d-{n}"), &[])).collect();
    let started = Instant::now();
    let outcomes = exporter.deliver(&batch_of(&batch)).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    started.elapsed()
}

#[tokio::test]
async fn sends_a_batch_concurrently() {
    let elapsed = batch_time(3).await;
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
}

#[tokio::test]
async fn keeps_at_most_concurrency_requests_in_flight() {
    let elapsed = batch_time(1).await;
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
}

#[tokio::test]
async fn previews_what_would_be_sent_with_secrets_masked() {
    let receiver = Receiver::start().await;
    let exporter = exporter(&receiver.url("/lead"), json!({}));
    let mut rec = record(
        "d-9",
        &[
            ("token", "tok-SECRET-1"),
            ("header:Authorization", "Bearer SECRET-2"),
            ("a", "1"),
        ],
    );
    rec.fields[0].secret = true;
    rec.fields[1].secret = true;

    let preview = exporter.preview(&batch_of(&[rec]));
    let expected = format!(
        "# order A1, delivery d-9\nPOST {}\nAuthorization: ***\n\
         Content-Type: application/x-www-form-urlencoded\nIdempotency-Key: d-9\nUser-Agent: {}\n\n\
         token=***&a=1\n",
        receiver.url("/lead"),
        exporter_postback::request::USER_AGENT,
    );
    assert_eq!(preview, expected);
    assert!(receiver.requests().is_empty(), "a preview sends nothing");
}

/// The records as one batch, as the host hands them over.
fn batch_of(records: &[exporter_core::Record]) -> exporter_core::Batch {
    exporter_core::Batch {
        id: "batch-1".to_owned(),
        created_at_ms: 1_764_000_000_000,
        records: records.to_vec(),
    }
}

/// Checks a Standard Webhooks signature with Python's own HMAC, an implementation that shares
/// no code with ours.
fn python_verifies(secret: &str, id: &str, timestamp: &str, body: &str, signature: &str) -> bool {
    let script = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, body, sig = sys.argv[1:6]
key = base64.b64decode(secret.removeprefix("whsec_"))
mac = hmac.new(key, f"{msg_id}.{ts}.{body}".encode(), hashlib.sha256).digest()
sys.exit(0 if sig == "v1," + base64.b64encode(mac).decode() else 1)
"#;
    let status = std::process::Command::new("python3")
        .args(["-c", script, secret, id, timestamp, body, signature])
        .status()
        .expect("python3 runs");
    status.success()
}

#[tokio::test]
async fn signs_requests_as_standard_webhooks_verified_independently() {
    let receiver = Receiver::start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let settings = json!({"signing_secret": secret});
    let exporter = exporter(&receiver.url("/lead"), settings);
    let fields = [
        ("header:Content-Type", "application/json"),
        ("name", "Zoë & Co"),
    ];

    let outcome = deliver_one(exporter.as_ref(), &fields).await;
    assert_eq!(outcome.kind, OutcomeKind::Delivered);

    let request = &receiver.requests()[0];
    let id = request.header("webhook-id").unwrap();
    let timestamp = request.header("webhook-timestamp").unwrap();
    let signature = request.header("webhook-signature").unwrap();
    assert_eq!(id, "d-1", "the delivery id, the same on every attempt");
    let age = unix_now_secs() - timestamp.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "a current timestamp");
    let body = request.body_text();
    assert!(python_verifies(secret, id, timestamp, &body, signature));
    assert!(
        !python_verifies(secret, id, timestamp, &(body + " "), signature),
        "a changed body fails"
    );
}

fn unix_now_secs() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    now.as_secs() as i64
}

#[test]
fn refuses_a_signing_secret_that_is_not_a_standard_webhooks_secret() {
    let settings = json!({"url": "http://127.0.0.1:9/x", "signing_secret": "hunter2"});
    let error = exporter_postback::build("leads", settings.as_object().unwrap())
        .err()
        .unwrap();
    assert_eq!(error.key(), "signing_secret");
    assert!(!error.to_string().contains("hunter2"));
}
