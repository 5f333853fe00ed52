//! A target that is down, then recovers: probed, not flooded, and nothing lost.

use std::collections::BTreeSet;
use std::time::Duration;

use exporter_test_support::{Receiver, Reply};
use serde_json::json;

use crate::harness::{Scratch, text};

#[test]
fn a_target_that_is_down_is_probed_not_flooded_and_gets_everything_once_it_recovers() {
    let receiver = Receiver::start_blocking();
    receiver.set_default(Reply::status(503).body("maintenance"));
    let config = format!(
        r#"
[[profile]]
name = "Leads"
type = "postback"
url = "{}"
concurrency = 4
retry_initial_secs = 0.3
retry_max_secs = 1
routes = [ {{ triggers = ["New Sale"] }} ]
mappings = [ {{ name = "order", field = "orderId" }} ]
"#,
        receiver.url("/lead")
    );
    let scratch = Scratch::new(&config);
    let events: Vec<_> = (0..40)
        .map(
            |i| json!({"orderId": format!("S{i}"), "customerType": "New Sale", "dateUpdated": "1"}),
        )
        .collect();
    scratch.write_events("orders.jsonl", &events);
    let running = scratch.spawn(&[
        "run",
        "--config",
        "exporter.toml",
        "--input",
        "orders.jsonl",
    ]);

    std::thread::sleep(Duration::from_secs(3));
    let while_down = receiver.requests().len();
    // Without the breaker the 40 first attempts alone would arrive, then their retries.
    assert!(while_down >= 5, "it did try: {while_down}");
    assert!(
        while_down <= 20,
        "{while_down} requests in 3 s to a target that is down"
    );

    receiver.set_default(Reply::ok());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ok: BTreeSet<String> = receiver
            .requests()
            .iter()
            .skip(while_down)
            .map(|r| r.query_pairs()[0].1.clone())
            .collect();
        if ok.len() == 40 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} delivered",
            ok.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    running.interrupt();
    let output = running.wait(Duration::from_secs(20));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("the target keeps failing"), "{stderr}");
    assert!(stderr.contains("the target answered a probe"), "{stderr}");
    let after = receiver.requests().len() - while_down;
    assert!(
        after <= 41,
        "each order once after recovery (one more in flight at most): {after}"
    );
}
