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
    assert!(stdout.contains("Call center partials (postback, delay 15 min"), "{stdout}");
    assert!(stdout.contains("route 1: triggers Partial; campaigns 12, 14"), "{stdout}");
}
