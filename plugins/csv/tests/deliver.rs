//! Delivers batches into a temporary folder and reads the files back with a CSV reader.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use exporter_core::{Batching, Exporter, Field, OutcomeKind, Record};
use serde_json::{Map, Value, json};

fn exporter(profile: &str, settings: Value) -> Box<dyn Exporter> {
    let settings: Map<String, Value> = settings.as_object().unwrap().clone();
    exporter_csv::build(profile, &settings).unwrap()
}

fn record(id: u32, email: &str, note: &str) -> Record {
    let field = |name: &str, value: &str| Field {
        name: name.into(),
        value: value.into(),
        secret: false,
    };
    let fields = vec![
        field("orderId", &id.to_string()),
        field("email", email),
        field("note", note),
    ];
    Record {
        delivery_id: format!("d-{id}"),
        order_id: id.to_string(),
        fields,
    }
}

/// Every entry of a folder, hidden ones included, sorted by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The header and rows of a CSV file.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|row| row.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn delivered_path(outcomes: &[exporter_core::Outcome]) -> PathBuf {
    assert!(
        outcomes.iter().all(|o| o.kind == OutcomeKind::Delivered),
        "{outcomes:?}"
    );
    PathBuf::from(&outcomes[0].message)
}

#[tokio::test]
async fn writes_one_file_per_batch_with_header_and_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exporter("Partials US", json!({"dir": tmp.path()}));
    let batch = [
        record(1, "ann@example.com", "call after 5pm, \"urgent\""),
        record(2, "bo@example.com", "line one\nline two"),
        record(3, "zoë@example.com", "👍 ok"),
    ];

    let outcomes = target.deliver(&batch_of(&batch)).await;

    assert_eq!(outcomes.len(), 3);
    let path = delivered_path(&outcomes);
    assert!(outcomes.iter().all(|o| o.message == outcomes[0].message));
    assert_eq!(path.parent().unwrap(), tmp.path());
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("Partials_US_")
            && name.ends_with(&format!("Z_{}.csv", batch_of(&batch).seq())),
        "{name}"
    );
    assert_eq!(entries(tmp.path()), [name]);

    let (header, rows) = read_csv(&path);
    assert_eq!(header, ["orderId", "email", "note"]);
    assert_eq!(
        rows[0],
        ["1", "ann@example.com", "call after 5pm, \"urgent\""]
    );
    assert_eq!(rows[1], ["2", "bo@example.com", "line one\nline two"]);
    assert_eq!(rows[2], ["3", "zoë@example.com", "👍 ok"]);
}

#[tokio::test]
async fn creates_a_missing_folder_at_the_first_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("exports").join("partials");
    let target = exporter("p", json!({"dir": dir}));

    let outcomes = target.deliver(&batch_of(&[record(1, "a@x", "")])).await;

    let path = delivered_path(&outcomes);
    assert_eq!(path.parent().unwrap(), dir);
    assert_eq!(read_csv(&path).1, [["1", "a@x", ""]]);
}

#[tokio::test]
async fn writes_no_file_for_an_empty_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("out");
    let target = exporter("p", json!({"dir": dir}));

    let outcomes = target.deliver(&batch_of(&[])).await;

    assert!(outcomes.is_empty());
    assert!(!dir.exists());
}

#[tokio::test]
async fn names_each_flush_from_its_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exporter(
        "p",
        json!({"dir": tmp.path(), "file_name": "{profile}_{seq}.csv"}),
    );

    let mut expected = Vec::new();
    for id in 1..=3 {
        let batch = batch_of(&[record(id, "a@x", "")]);
        expected.push(format!("p_{}.csv", batch.seq()));
        delivered_path(&target.deliver(&batch).await);
    }

    expected.sort();
    assert_eq!(entries(tmp.path()), expected);
}

#[tokio::test]
async fn a_retried_batch_writes_no_second_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = json!({"dir": tmp.path()});
    let batch = batch_of(&[record(1, "a@x", ""), record(2, "b@x", "")]);

    // The first attempt wrote the file, but its success was never recorded (a crash, a full
    // disk under the store); a new process retries the same batch.
    let first = delivered_path(&exporter("p", settings.clone()).deliver(&batch).await);
    let again = delivered_path(&exporter("p", settings).deliver(&batch).await);

    assert_eq!(first, again);
    assert_eq!(entries(tmp.path()).len(), 1);
}

#[tokio::test]
async fn two_flushes_in_the_same_second_make_two_files() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = json!({"dir": tmp.path(), "file_name": "{profile}_{date}.csv"});
    let target = exporter("p", settings);

    let first = delivered_path(&target.deliver(&batch_of(&[record(1, "a@x", "")])).await);
    let second = delivered_path(&target.deliver(&batch_of(&[record(2, "b@x", "")])).await);

    assert_ne!(first, second);
    assert_eq!(entries(tmp.path()).len(), 2);
    assert_eq!(read_csv(&first).1, [["1", "a@x", ""]]);
    assert_eq!(read_csv(&second).1, [["2", "b@x", ""]]);
    let second_name = second.file_name().unwrap().to_str().unwrap();
    assert!(second_name.ends_with("-2.csv"), "{second_name}");
}

#[tokio::test]
async fn a_second_run_never_overwrites_the_files_of_a_first() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = json!({"dir": tmp.path(), "file_name": "{profile}_{seq}.csv"});
    let first_run = exporter("p", settings.clone());
    let second_run = exporter("p", settings);

    let first = delivered_path(&first_run.deliver(&batch_of(&[record(1, "a@x", "")])).await);
    let second = delivered_path(&second_run.deliver(&batch_of(&[record(2, "b@x", "")])).await);
    let third = delivered_path(&second_run.deliver(&batch_of(&[record(3, "c@x", "")])).await);

    assert_eq!(entries(tmp.path()).len(), 3);
    assert_eq!(read_csv(&first).1, [["1", "a@x", ""]]);
    assert_eq!(read_csv(&second).1, [["2", "b@x", ""]]);
    assert_eq!(read_csv(&third).1, [["3", "c@x", ""]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_flushes_each_get_their_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = json!({"dir": tmp.path(), "file_name": "{profile}.csv"});
    let target: Arc<dyn Exporter> = Arc::from(exporter("p", settings));

    let flushes: Vec<_> = (1..=8)
        .map(|id| {
            let target = Arc::clone(&target);
            tokio::spawn(async move { target.deliver(&batch_of(&[record(id, "a@x", "")])).await })
        })
        .collect();
    let mut ids = Vec::new();
    for flush in flushes {
        let path = delivered_path(&flush.await.unwrap());
        ids.push(read_csv(&path).1[0][0].clone());
    }

    ids.sort();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    assert_eq!(entries(tmp.path()).len(), 8);
}

#[tokio::test]
async fn an_unwritable_folder_gives_retries_naming_the_path_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let blocker = tmp.path().join("not-a-folder");
    fs::write(&blocker, "x").unwrap();
    let dir = blocker.join("exports");
    let target = exporter("p", json!({"dir": dir}));

    let outcomes = target
        .deliver(&batch_of(&[record(1, "a@x", ""), record(2, "b@x", "")]))
        .await;

    assert_eq!(outcomes.len(), 2);
    for outcome in &outcomes {
        assert_eq!(outcome.kind, OutcomeKind::Retry);
        let expected = format!("create folder {}: ", dir.display());
        assert!(
            outcome.message.starts_with(&expected),
            "{}",
            outcome.message
        );
    }
    assert_eq!(entries(tmp.path()), ["not-a-folder"]);
}

#[tokio::test]
async fn excel_files_read_back_with_the_formula_guard() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exporter(
        "p",
        json!({"dir": tmp.path(), "excel": true, "delimiter": ";"}),
    );

    let outcomes = target
        .deliver(&batch_of(&[record(1, "=HYPERLINK(\"x\")", "-5")]))
        .await;

    let path = delivered_path(&outcomes);
    let bytes = fs::read(&path).unwrap();
    assert!(
        bytes.starts_with(b"\xEF\xBB\xBForderId;email;note\r\n"),
        "{bytes:?}"
    );
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_path(&path)
        .unwrap();
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(
        row.iter().collect::<Vec<_>>(),
        ["1", "'=HYPERLINK(\"x\")", "'-5"]
    );
}

#[tokio::test]
async fn secrets_go_in_the_file_but_not_in_the_preview() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exporter(
        "p",
        json!({"dir": tmp.path(), "file_name": "{profile}_{seq}.csv"}),
    );
    let mut batch = [record(1, "a@x", "api-key-123456")];
    batch[0].fields[2].secret = true;

    let preview = target.preview(&batch_of(&batch));
    let outcomes = target.deliver(&batch_of(&batch)).await;

    let expected_path = tmp.path().join(format!("p_{}.csv", batch_of(&batch).seq()));
    assert!(preview.starts_with(&format!("file {} (UTF-8, LF", expected_path.display())));
    assert!(
        preview.ends_with("orderId,email,note\n1,a@x,***\n"),
        "{preview}"
    );
    assert!(!preview.contains("api-key-123456"));
    assert!(!outcomes[0].message.contains("api-key-123456"));
    assert_eq!(read_csv(&expected_path).1, [["1", "a@x", "api-key-123456"]]);
}

#[tokio::test]
async fn records_with_other_fields_fail_without_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exporter("p", json!({"dir": tmp.path()}));
    let mut odd = record(2, "b@x", "");
    odd.fields.pop();

    let outcomes = target
        .deliver(&batch_of(&[record(1, "a@x", ""), odd]))
        .await;

    assert!(
        outcomes.iter().all(|o| o.kind == OutcomeKind::Failed),
        "{outcomes:?}"
    );
    assert!(
        outcomes[0].message.contains("delivery d-2"),
        "{}",
        outcomes[0].message
    );
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn flushes_on_the_configured_interval() {
    let target = exporter("p", json!({"dir": "out", "flush_interval_minutes": 0.5}));
    let expected = Batching::Flush {
        interval: Duration::from_secs(30),
    };
    assert_eq!(target.batching(), expected);
}

#[test]
fn build_refuses_unknown_keys_and_unusable_names() {
    let settings = |value: Value| value.as_object().unwrap().clone();
    let error = exporter_csv::build("p", &settings(json!({"dir": "out", "folder": "x"})));
    assert_eq!(error.err().unwrap().key(), "folder");
    let error = exporter_csv::build(
        "..",
        &settings(json!({"dir": "out", "file_name": "{profile}"})),
    );
    assert_eq!(error.err().unwrap().key(), "file_name");
}

/// The records as one batch, as the host hands them over.
fn batch_of(records: &[exporter_core::Record]) -> exporter_core::Batch {
    // The same records make the same batch, as a retry does; other records another one.
    let ids: Vec<&str> = records.iter().map(|r| r.delivery_id.as_str()).collect();
    exporter_core::Batch {
        id: format!("batch-{}", ids.join("-")),
        created_at_ms: 1_764_000_000_000,
        records: records.to_vec(),
    }
}
