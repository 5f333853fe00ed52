//! The operator commands: `status`, `deliveries`, `retry`, `replay`, `pause` and `resume`.

use exporter_test_support::{Receiver, Reply};
use serde_json::{Value, json};

use crate::harness::{Scratch, text};

fn config(url: &str) -> String {
    format!(
        r#"
[[profile]]
name = "Leads"
type = "postback"
url = "{url}"
max_attempts = 1
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]

[[profile]]
name = "Later"
type = "postback"
url = "{url}"
delay_minutes = 60
routes = [ {{ triggers = ["Decline"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#
    )
}

fn events() -> Vec<Value> {
    vec![
        json!({"orderId": "P1", "customerType": "Partial", "dateUpdated": "1"}),
        json!({"orderId": "P2", "customerType": "Partial", "dateUpdated": "1"}),
        json!({"orderId": "D1", "customerType": "Decline", "dateUpdated": "1"}),
    ]
}

/// Runs a command that must succeed; returns its stdout.
fn ok(scratch: &Scratch, args: &[&str]) -> String {
    let output = scratch.run(args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{args:?}\n{stdout}\n{stderr}");
    stdout
}

fn json_of(scratch: &Scratch, args: &[&str]) -> Value {
    serde_json::from_str(&ok(scratch, args)).expect("JSON output")
}

fn status_of<'a>(statuses: &'a Value, profile: &str) -> &'a Value {
    let list = statuses["profiles"].as_array().unwrap();
    list.iter()
        .find(|s| s["profile"] == profile)
        .expect("profile in status")
}

fn run_once(scratch: &Scratch) -> String {
    ok(scratch, &["run", "--config", "exporter.toml", "--once"])
}

/// Imports `orders.jsonl` and delivers what is due, once.
fn import_once(scratch: &Scratch) -> String {
    let args = [
        "run",
        "--config",
        "exporter.toml",
        "--input",
        "orders.jsonl",
        "--once",
    ];
    ok(scratch, &args)
}

#[test]
fn status_and_ledger_show_failures_then_retry_delivers_them() {
    let receiver = Receiver::start_blocking();
    receiver.set_default(Reply::status(500).body("database down"));
    let scratch = Scratch::new(&config(&receiver.url("/lead")));
    scratch.write_events("orders.jsonl", &events());
    import_once(&scratch);

    let statuses = json_of(&scratch, &["status", "--json"]);
    let leads = status_of(&statuses, "Leads");
    assert_eq!(
        (leads["failed"].as_u64(), leads["pending"].as_u64()),
        (Some(2), Some(0))
    );
    assert!(
        leads["last_error"]
            .as_str()
            .unwrap()
            .contains("database down"),
        "{leads}"
    );
    let later = status_of(&statuses, "Later");
    assert_eq!(
        (later["pending"].as_u64(), later["due_now"].as_u64()),
        (Some(1), Some(0))
    );
    let table = ok(&scratch, &["status"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("Leads") && l.contains("active")),
        "{table}"
    );

    let ledger = json_of(&scratch, &["deliveries", "--order", "P1", "--json"]);
    let attempt = &ledger[0]["history"][0];
    assert_eq!(
        (attempt["outcome"].as_str(), attempt["status"].as_u64()),
        (Some("failed"), Some(500))
    );
    assert_eq!(ledger[0]["state"], "failed");
    let failed = json_of(&scratch, &["deliveries", "--state", "failed", "--json"]);
    assert_eq!(failed.as_array().unwrap().len(), 2);
    let text_ledger = ok(&scratch, &["deliveries", "--profile", "Leads"]);
    assert!(text_ledger.contains("database down"), "{text_ledger}");

    let one = ledger[0]["delivery_id"].as_str().unwrap().to_owned();
    assert_eq!(
        json_of(&scratch, &["retry", "--id", &one, "--json"])["queued_again"],
        1
    );
    // An id that names no failed delivery (already queued again, or a typo) is said to be so.
    let again = scratch.run(&["retry", "--id", &one, "--id", "no-such-id"]);
    let (_, stderr) = text(&again);
    assert!(
        !again.status.success() && stderr.contains("no failed delivery has the id(s) given"),
        "{stderr}"
    );
    assert_eq!(
        json_of(&scratch, &["retry", "--profile", "Leads", "--json"])["queued_again"],
        1
    );
    receiver.set_default(Reply::ok());
    run_once(&scratch);

    let statuses = json_of(&scratch, &["status", "--json"]);
    let leads = status_of(&statuses, "Leads");
    assert_eq!(
        (
            leads["failed"].as_u64(),
            leads["delivered_last_hour"].as_u64()
        ),
        (Some(0), Some(2))
    );
    let keys: Vec<_> = receiver
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 4, "2 failed attempts, 2 retried");
    assert_eq!(
        keys[0..2].iter().collect::<std::collections::BTreeSet<_>>(),
        keys[2..4].iter().collect()
    );
}

#[test]
fn replay_sends_delivered_events_again_as_new_deliveries() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&config(&receiver.url("/lead")));
    scratch.write_events("orders.jsonl", &events());
    import_once(&scratch);
    assert_eq!(receiver.requests().len(), 2);

    let replayed = json_of(
        &scratch,
        &["replay", "--profile", "Leads", "--since", "1h", "--json"],
    );
    assert_eq!(replayed["replayed"], 2);
    run_once(&scratch);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    let orders: Vec<_> = requests
        .iter()
        .map(|r| r.query_pairs()[0].1.clone())
        .collect();
    assert_eq!(orders[2..].iter().filter(|o| o.starts_with('P')).count(), 2);
    let keys: std::collections::BTreeSet<_> = requests
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 4, "a replay is a new delivery with a new id");

    let none = json_of(
        &scratch,
        &[
            "replay",
            "--profile",
            "Leads",
            "--since",
            "2020-01-01",
            "--until",
            "2020-01-02",
            "--json",
        ],
    );
    assert_eq!(none["replayed"], 0);
}

#[test]
fn a_paused_profile_keeps_its_deliveries_until_resumed() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&config(&receiver.url("/lead")));
    scratch.write_events("orders.jsonl", &events());
    let paused = ok(&scratch, &["pause", "--profile", "Leads"]);
    assert!(paused.contains("is paused"), "{paused}");

    import_once(&scratch);
    assert!(receiver.requests().is_empty());
    let statuses = json_of(&scratch, &["status", "--json"]);
    let leads = status_of(&statuses, "Leads");
    assert_eq!(
        (leads["paused"].as_bool(), leads["pending"].as_u64()),
        (Some(true), Some(2))
    );

    ok(&scratch, &["resume", "--profile", "Leads"]);
    run_once(&scratch);
    assert_eq!(receiver.requests().len(), 2);
}

#[test]
fn refuses_an_unknown_profile_and_a_missing_store() {
    let scratch = Scratch::new(&config("http://127.0.0.1:9/none"));
    let output = scratch.run(&["status"]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("does not exist yet"), "{stderr}");

    scratch.write_events("orders.jsonl", &events()[2..]);
    import_once(&scratch);
    let output = scratch.run(&["pause", "--profile", "Leeds"]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no profile named \"Leeds\"; profiles: Leads, Later"),
        "{stderr}"
    );
}

#[test]
fn status_works_while_another_exporter_holds_the_store() {
    let receiver = Receiver::start_blocking();
    receiver.set_default(Reply::status(503));
    let scratch = Scratch::new(&config(&receiver.url("/lead")).replace("max_attempts = 1", ""));
    scratch.write_events("orders.jsonl", &events());
    let running = scratch.spawn(&[
        "run",
        "--config",
        "exporter.toml",
        "--input",
        "orders.jsonl",
    ]);
    receiver.wait_for_requests_blocking(2, std::time::Duration::from_secs(10));

    // The answers arrived; their outcomes are recorded a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let statuses = json_of(&scratch, &["status", "--json"]);
        if status_of(&statuses, "Leads")["retrying"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never 2 retrying: {statuses}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    running.interrupt();
    let output = running.wait(std::time::Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", text(&output));
}
