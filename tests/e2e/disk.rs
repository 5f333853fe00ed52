//! The store on a full filesystem (a small tmpfs the test mounts): ingest answers 503 and
//! keeps nothing it cannot store, the process keeps serving, and once space returns it
//! accepts again and delivers everything it acknowledged.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exporter_test_support::Receiver;
use serde_json::json;

use crate::harness::Scratch;

const TOKEN: &str = "disk-token-0123456789";

/// Unmounts the test's filesystem however the test ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(dir: &std::path::Path, size: &str, remount: bool) -> bool {
    let options = if remount {
        format!("remount,size={size}")
    } else {
        format!("size={size}")
    };
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
        .arg(dir)
        .stderr(Stdio::null())
        .status();
    status.is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gets_503_keeps_nothing_it_cannot_store_and_recovers() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let receiver = Receiver::start().await;
    let config = format!(
        r#"
store = "sqlite://store/exporter.db"

[server]
tokens = ["env:DISK_TOKEN"]

[[profile]]
name = "Sales"
type = "postback"
url = "{}"
recheck = false
retry_initial_secs = 0.2
retry_max_secs = 1
routes = [ {{ triggers = ["New Sale"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#,
        receiver.url("/sale")
    );
    let scratch = Scratch::new(&config);
    let dir = scratch.path("store");
    std::fs::create_dir_all(&dir).unwrap();
    if !mount(&dir, "1m", false) {
        // Mounting needs root, which CI and the development machines have.
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mounted = Mount(dir.clone());

    let (mut child, base) = scratch.serve("DISK_TOKEN", TOKEN, Stdio::null());
    let client = reqwest::Client::new();
    let post = |n: usize| {
        let ids: Vec<String> = (0..50).map(|i| format!("D{n}-{i}")).collect();
        let body: Vec<String> = ids
            .iter()
            .map(|id| {
                let pad = "x".repeat(2000);
                json!({"orderId": id, "customerType": "New Sale", "dateUpdated": "1", "pad": pad})
                    .to_string()
            })
            .collect();
        let request = client.post(format!("{base}/v1/events")).bearer_auth(TOKEN);
        (ids, request.body(body.join("\n")).send())
    };

    let mut acknowledged = BTreeSet::new();
    let mut refused = 0;
    for n in 0..40 {
        let (ids, sent) = post(n);
        match sent.await.unwrap().status().as_u16() {
            202 => acknowledged.extend(ids),
            503 => refused += 1,
            other => panic!("a full disk must be answered 503, got {other}"),
        }
        if refused >= 3 {
            break;
        }
    }
    assert!(refused >= 3, "the 1 MiB store never filled up");
    assert!(
        !acknowledged.is_empty(),
        "some posts fit before the disk filled"
    );

    assert!(mount(&dir, "64m", true), "growing the tmpfs");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ids, sent) = post(1000);
        if sent.await.unwrap().status().as_u16() == 202 {
            acknowledged.extend(ids);
            break;
        }
        assert!(Instant::now() < deadline, "ingest never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent: BTreeSet<String> = receiver
            .requests()
            .iter()
            .map(|r| r.query_pairs()[0].1.clone())
            .collect();
        if acknowledged.is_subset(&sent) {
            break;
        }
        let missing = acknowledged.difference(&sent).count();
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged events never delivered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(child.wait().unwrap().success());
    eprintln!(
        "{} acknowledged, {refused} refused with 503, all delivered",
        acknowledged.len()
    );
}
