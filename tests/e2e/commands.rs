//! `check` and `preview` as a user runs them.

use crate::harness::{Scratch, repo_root, text};

#[test]
fn check_accepts_the_example_config() {
    let example = std::fs::read_to_string(repo_root().join("examples/exporter.toml")).unwrap();
    let scratch = Scratch::new(&example);
    let output = scratch.run(&["check", "--config", "exporter.toml"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 profile(s)"), "{stdout}");
    assert!(
        stdout.contains("Call center partials (postback, delay 15 min"),
        "{stdout}"
    );
    assert!(
        stdout.contains("route 1: triggers Partial; campaigns 12, 14"),
        "{stdout}"
    );
}

/// Two profiles, one with a secret header from `EXPORTER_E2E_CHECK_KEY`.
const TWO_PROFILES: &str = r#"test_cards = ["1111"]

[[profile]]
name = "Leads"
type = "postback"
url = "http://127.0.0.1:9/lead"
delay_minutes = 5
max_attempts = 3
routes = [
  { triggers = ["Partial"], campaigns = [12, "14"] },
  { triggers = ["decline"], fields = { country = ["US", "CA"] } },
]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "full_name", value = "[firstName] [lastName]" },
  { name = "header:X-Api-Key", value = "env:EXPORTER_E2E_CHECK_KEY" },
]

[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [ { triggers = ["New Sale"], products = [8] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;

#[test]
fn check_lists_profiles_routes_and_mappings_without_secret_values() {
    let secret = "sk-check-41c7e0";
    let scratch = Scratch::new(TWO_PROFILES);
    let output = scratch
        .command(&["check", "--config", "exporter.toml"])
        .env("EXPORTER_E2E_CHECK_KEY", secret)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let expected = [
        "exporter.toml is valid: 2 profile(s)",
        "test cards (last 4 digits): 1111",
        "Leads (postback, delay 5 min, recheck on, retry up to 3 attempts)",
        "  route 1: triggers Partial; campaigns 12, 14",
        "  route 2: triggers Decline; country in US, CA",
        "  order_id <- field orderId",
        "  full_name <- value \"[firstName] [lastName]\"",
        "  header:X-Api-Key <- secret from the environment",
        "Sheet (csv, delay 0 min, recheck on, retry forever)",
        "  route 1: triggers New Sale; products 8",
    ];
    for line in expected {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
    assert!(!stdout.contains(secret) && !stderr.contains(secret));
}

#[test]
fn check_refuses_an_invalid_config_with_exit_code_2_listing_every_problem() {
    let bad = TWO_PROFILES
        .replace("delay_minutes = 5", "delay_minuts = 5")
        .replace("dir = \"sheet\"", "dir = \"sheet\"\nexcel = \"yes\"");
    let scratch = Scratch::new(&bad);
    let output = scratch
        .command(&["check", "--config", "exporter.toml"])
        .env("EXPORTER_E2E_CHECK_KEY", "sk-check-41c7e0")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("error: 2 problems in config exporter.toml:"),
        "{stderr}"
    );
    let typo = "exporter.toml:7: profile \"Leads\": unknown key `delay_minuts`";
    assert!(stderr.contains(typo), "{stderr}");
    let excel = "exporter.toml:23: profile \"Sheet\": key `excel`";
    assert!(stderr.contains(excel), "{stderr}");
}

#[test]
fn check_stops_quietly_when_its_reader_closes_the_pipe() {
    let example = std::fs::read_to_string(repo_root().join("examples/exporter.toml")).unwrap();
    let scratch = Scratch::new(&example);
    let mut child = scratch
        .command(&["check", "--config", "exporter.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let (_, stderr) = text(&output);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
