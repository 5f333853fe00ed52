//! The `ftp` target as a new user meets it: the `exporter` binary uploading the CRM export to
//! a real FTP server on 127.0.0.1 (libunftp serving a temporary folder, started by the test),
//! `check --connect`, and `preview`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Running, Scratch, orders_file, summary_row, text};

#[path = "../../plugins/ftp/tests/server/mod.rs"]
mod ftp_server;

use ftp_server::{FtpServer, Options, PASSWORD};

/// The profile's name as the summary and the file names show it.
const PROFILE: &str = "Fulfillment drop";

/// The longest a run over the whole CRM export may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// A test server over a temporary folder with an `incoming` folder.
struct Site {
    _dir: tempfile::TempDir,
    server: FtpServer,
}

fn site() -> Site {
    let dir = tempfile::tempdir().expect("a folder to serve");
    std::fs::create_dir(dir.path().join("incoming")).expect("the incoming folder");
    let server = FtpServer::start(dir.path(), Options::default());
    Site { _dir: dir, server }
}

/// The README's FTP profile, aimed at the test server, its password read from
/// `FTP_PASSWORD`.
fn ftp_profile(port: u16) -> String {
    format!(
        r#"[[profile]]
name = "{PROFILE}"
type = "ftp"
host = "127.0.0.1"
port = {port}
username = "orders"
password = "env:FTP_PASSWORD"
remote_dir = "/incoming"
file_name = "orders_{{profile}}_{{timestamp}}_{{seq}}.csv"
timeout_secs = 5
routes = [ {{ triggers = ["New Sale", "Upsell"] }} ]
mappings = [
  {{ name = "order_id", field = "orderId" }},
  {{ name = "trigger", field = "customerType" }},
  {{ name = "updated", field = "dateUpdated" }},
  {{ name = "customer", value = "[firstName] [lastName]" }},
  {{ name = "total", field = "totalAmount" }},
]
"#
    )
}

/// Runs the exporter in `scratch` with `args` and `FTP_PASSWORD` set to `password`.
fn exporter(scratch: &Scratch, args: &[&str], password: &str) -> (bool, String, String) {
    let mut command = scratch.command(args);
    command.env("FTP_PASSWORD", password);
    let output = Running::start(command).wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&output);
    (output.status.success(), stdout, stderr)
}

/// A trigger as routes compare it: without case, spaces, `_` and `-`.
fn trigger_key(trigger: &str) -> String {
    trigger
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn field(event: &Value, name: &str) -> String {
    match &event[name] {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An event as the upload shows it: order, trigger and `dateUpdated`.
type Row = (String, String, String);

/// What the profile must upload from `events`, and how many are superseded: each stored
/// event (the first of each order, trigger and `dateUpdated`) with a routed trigger and no
/// test card, unless its order's latest stored event is no longer routed.
fn expected_rows(events: &[Value]) -> (BTreeSet<Row>, usize) {
    let routed = |event: &Value| {
        let trigger = trigger_key(&field(event, "customerType"));
        trigger == "newsale" || trigger == "upsell"
    };
    let mut seen = HashSet::new();
    let stored: Vec<&Value> = events
        .iter()
        .filter(|event| {
            let key = (
                field(event, "orderId"),
                trigger_key(&field(event, "customerType")),
                field(event, "dateUpdated"),
            );
            seen.insert(key)
        })
        .collect();
    // The latest event of an order: the last updated (`dateUpdated`), then the last in the file.
    let mut latest: HashMap<String, usize> = HashMap::new();
    for (index, event) in stored.iter().enumerate() {
        let key = |i: usize| (field(stored[i], "dateUpdated"), i);
        let entry = latest.entry(field(event, "orderId")).or_insert(index);
        if key(index) > key(*entry) {
            *entry = index;
        }
    }
    let mut rows = BTreeSet::new();
    let mut superseded = 0;
    for (index, event) in stored.iter().enumerate() {
        let test_card = field(event, "cardType")
            .trim()
            .eq_ignore_ascii_case("testcard");
        if !routed(event) || test_card {
            continue;
        }
        let last = latest[&field(event, "orderId")];
        if last != index && !routed(stored[last]) {
            superseded += 1;
            continue;
        }
        let row = (
            field(event, "orderId"),
            field(event, "customerType"),
            field(event, "dateUpdated"),
        );
        rows.insert(row);
    }
    (rows, superseded)
}

/// Every row of every uploaded file, checking each file's header.
fn uploaded_rows(server: &FtpServer, files: &[String]) -> Vec<Row> {
    let mut rows = Vec::new();
    for name in files {
        let body = server.read(&format!("incoming/{name}"));
        let mut reader = csv::Reader::from_reader(body.as_slice());
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            header,
            ["order_id", "trigger", "updated", "customer", "total"]
        );
        for record in reader.records() {
            let record = record.unwrap_or_else(|e| panic!("{name} is not CSV: {e}"));
            rows.push((
                record[0].to_owned(),
                record[1].to_owned(),
                record[2].to_owned(),
            ));
        }
    }
    rows
}

#[test]
fn new_user_run_uploads_every_routed_order_once() {
    let input_text = std::fs::read_to_string(orders_file()).expect("the CRM export");
    let events: Vec<Value> = input_text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let (expected, superseded) = expected_rows(&events);
    let site = site();
    let scratch = Scratch::new(&ftp_profile(site.server.port));
    let input = orders_file().display().to_string();
    let args = [
        "run",
        "--once",
        "--config",
        "exporter.toml",
        "--input",
        &input,
        "--log",
        "trace",
    ];

    let (ok, stdout, stderr) = exporter(&scratch, &args, PASSWORD);

    assert!(ok, "{stdout}\n{stderr}");
    let files = site.server.names_in("incoming");
    assert!(!files.is_empty(), "nothing uploaded:\n{stdout}\n{stderr}");
    for name in &files {
        let pattern = name.starts_with("orders_Fulfillment_drop_") && name.ends_with(".csv");
        assert!(pattern, "unexpected file {name:?} in {files:?}");
    }
    let rows = uploaded_rows(&site.server, &files);
    let distinct: BTreeSet<Row> = rows.iter().cloned().collect();
    assert_eq!(distinct.len(), rows.len(), "an order was uploaded twice");
    assert_eq!(distinct, expected);
    let summary = summary_row(&stdout, PROFILE);
    assert_eq!(summary.delivered as usize, expected.len(), "{stdout}");
    assert_eq!(summary.superseded as usize, superseded, "{stdout}");
    assert_eq!(summary.retrying + summary.failed, 0, "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    let (ok, stdout, stderr) = exporter(&scratch, &args, PASSWORD);

    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        site.server.names_in("incoming"),
        files,
        "the second run uploaded again"
    );
    assert_eq!(summary_row(&stdout, PROFILE).delivered, 0, "{stdout}");
}

#[test]
fn check_connect_logs_in_and_reports_per_profile() {
    let site = site();
    let csv_profile = "[[profile]]\nname = \"Sheet\"\ntype = \"csv\"\ndir = \"sheets\"\n\
                       routes = [ { triggers = [\"Decline\"] } ]\n\
                       mappings = [ { name = \"order_id\", field = \"orderId\" } ]\n";
    let config = format!("{}\n{csv_profile}", ftp_profile(site.server.port));
    let scratch = Scratch::new(&config);
    let args = ["check", "--config", "exporter.toml", "--connect"];

    let (ok, stdout, stderr) = exporter(&scratch, &args, PASSWORD);

    assert!(ok, "{stdout}\n{stderr}");
    let expected = format!(
        "  {PROFILE} (ftp): ok: logged in to 127.0.0.1:{} as `orders`",
        site.server.port
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(
        stdout.contains("wrote and removed /incoming/.exporter-probe-"),
        "{stdout}"
    );
    assert!(stdout.contains("  Sheet (csv): not checked"), "{stdout}");
    assert!(site.server.names_in("incoming").is_empty());

    let (ok, stdout, stderr) = exporter(&scratch, &args, "wrong-password");

    assert!(
        !ok,
        "a failed check must fail the command:\n{stdout}\n{stderr}"
    );
    let expected = format!(
        "  {PROFILE} (ftp): FAILED: log in as `orders` on 127.0.0.1:{}: the server replied 530",
        site.server.port
    );
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(!stdout.contains("wrong-password") && !stderr.contains("wrong-password"));
}

#[test]
fn preview_shows_the_file_an_upload_would_write() {
    let site = site();
    let scratch = Scratch::new(&ftp_profile(site.server.port));
    let order = r#"{"customerType": "New Sale", "orderId": "XMRHCGYJD8", "dateUpdated": "2026-11-02 06:03:39", "firstName": "拓真", "lastName": "斎藤", "totalAmount": "108.99"}"#;
    scratch.write("order.json", order);
    let args = [
        "preview",
        "--config",
        "exporter.toml",
        "--profile",
        PROFILE,
        "--input",
        "order.json",
    ];

    let (ok, stdout, stderr) = exporter(&scratch, &args, PASSWORD);

    assert!(ok, "{stdout}\n{stderr}");
    let heading = format!("upload to ftp://orders@127.0.0.1:{} (", site.server.port);
    assert!(stdout.starts_with(&heading), "{stdout}");
    assert!(
        stdout.contains("file /incoming/orders_Fulfillment_drop_"),
        "{stdout}"
    );
    let body = "order_id,trigger,updated,customer,total\n\
                XMRHCGYJD8,New Sale,2026-11-02 06:03:39,拓真 斎藤,108.99\n";
    assert!(stdout.contains(body), "{stdout}");
    assert!(!stdout.contains(PASSWORD));
    assert_eq!(site.server.policy.uploads(), 0, "a preview sends nothing");
}
