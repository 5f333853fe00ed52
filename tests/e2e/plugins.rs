//! Plugins as an operator uses them: build the example `jsonl` plugin, drop it in the plugins
//! folder, route profiles to it, and see what the exporter says about libraries it refuses.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::harness::{Scratch, orders_file, repo_root, summary_row, text};

/// The folder holding the plugin libraries the tests build (see
/// `tests/fixtures/plugins/packages.txt`), built once per test process.
fn built_plugins() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = repo_root();
        let list = std::fs::read_to_string(root.join("tests/fixtures/plugins/packages.txt"))
            .expect("read the plugin list");
        // target/<profile>/deps/e2e-HASH: a target folder of their own beside <profile>,
        // shared with exporter-bin's unit tests, since cargo holds the lock of this one.
        let exe = std::env::current_exe().expect("the test binary's path");
        let target = exe
            .ancestors()
            .nth(3)
            .expect("a target folder")
            .join("plugin-fixtures");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args(["build", "--locked", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        let packages = list.lines().map(str::trim);
        for package in packages.filter(|l| !l.is_empty() && !l.starts_with('#')) {
            command.args(["-p", package]);
        }
        let output = command.output().expect("run cargo");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "building the plugins failed:\n{stderr}"
        );
        target.join("debug")
    })
}

/// The file name of a library crate's shared library on this platform.
fn library_name(crate_name: &str) -> String {
    let (prefix, suffix) = (std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    format!("{prefix}{crate_name}{suffix}")
}

impl Scratch {
    /// Copies a built plugin library into the scratch's `plugins` folder, as the README says.
    fn install_plugin(&self, crate_name: &str) -> String {
        let name = library_name(crate_name);
        std::fs::create_dir_all(self.path("plugins")).expect("make the plugins folder");
        let to = self.path("plugins").join(&name);
        std::fs::copy(built_plugins().join(&name), to).expect("copy the plugin");
        format!("plugins/{name}")
    }
}

/// The sales feed of the README: new sales and upsells, every one of them, to a JSON lines
/// file through the `jsonl` plugin.
const SALES_FEED: &str = r#"plugins_dir = "plugins"

[[profile]]
name = "Sales feed"
type = "jsonl"
path = "feeds/sales.jsonl"
recheck = false
routes = [ { triggers = ["New Sale", "Upsell"] } ]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "type", field = "customerType" },
  { name = "total", field = "totalAmount" },
  { name = "email", field = "emailAddress" },
]
"#;

/// The events of `file` the sales feed should get: new sales and upsells that are not test
/// orders, each event once.
fn routed_sales(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).expect("read the orders");
    let mut seen = std::collections::HashSet::new();
    let mut sales = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).expect("an order event");
        let field = |name: &str| match &event[name] {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let trigger = field("customerType")
            .to_lowercase()
            .replace([' ', '_', '-'], "");
        let test = field("cardType").trim().eq_ignore_ascii_case("testcard");
        let key = (
            field("orderId"),
            field("customerType"),
            field("dateUpdated"),
        );
        if ["newsale", "upsell"].contains(&trigger.as_str()) && !test && seen.insert(key) {
            sales.push(event);
        }
    }
    sales
}

#[test]
fn the_readme_sales_feed_gets_one_line_per_routed_event() {
    let scratch = Scratch::new(SALES_FEED);
    scratch.install_plugin("exporter_jsonl");
    let orders = orders_file();
    let orders = orders.to_str().expect("a UTF-8 path");
    let output = scratch.run(&[
        "run",
        "--config",
        "exporter.toml",
        "--input",
        orders,
        "--once",
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let expected = routed_sales(Path::new(orders));
    let feed = std::fs::read_to_string(scratch.path("feeds/sales.jsonl")).expect("the feed");
    let lines: Vec<&str> = feed.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    assert_eq!(
        summary_row(&stdout, "Sales feed").delivered,
        expected.len() as u64
    );

    let mut got: Vec<(String, String)> = lines
        .iter()
        .map(|line| {
            let keys: Vec<&str> = ["\"order_id\"", "\"type\"", "\"total\"", "\"email\""].into();
            let at: Vec<usize> = keys.iter().map(|k| line.find(k).expect(k)).collect();
            assert!(at.is_sorted(), "keys in mapping order: {line}");
            let object: Value = serde_json::from_str(line).expect("one JSON object per line");
            let id = object["order_id"].as_str().unwrap().to_owned();
            (id, object["type"].as_str().unwrap().to_owned())
        })
        .collect();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|e| {
            (
                e["orderId"].to_string().trim_matches('"').to_owned(),
                e["customerType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn plugins_lists_every_type_with_its_source_and_versions() {
    let scratch = Scratch::new(SALES_FEED);
    let jsonl = scratch.install_plugin("exporter_jsonl");
    let old = scratch.install_plugin("exporter_fixture_abi_v2");
    let output = scratch.run(&["plugins", "--config", "exporter.toml"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "a refused library: {stdout}\n{stderr}"
    );
    let row = |name: &str| {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{name} ")));
        line.unwrap_or_else(|| panic!("no row for {name}:\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(row("postback"), format!("postback built in {version} 1.0"));
    assert_eq!(row("csv"), format!("csv built in {version} 1.0"));
    assert_eq!(row("jsonl"), format!("jsonl {jsonl} {version} 1.0"));
    let refused = format!("refused: plugin {old}: was built for plugin ABI 2");
    assert!(stdout.contains(&refused), "{stdout}");
}

#[test]
fn a_broken_library_is_refused_by_name_and_the_rest_of_the_config_still_checked() {
    let config = format!(
        "{SALES_FEED}\n[[profile]]\nname = \"Sheet\"\ntype = \"csv\"\ndir = \"sheet\"\n\
         flush_every = 5\nroutes = [ {{ triggers = [\"Refund\"] }} ]\n\
         mappings = [ {{ name = \"id\", field = \"orderId\" }} ]\n"
    );
    let scratch = Scratch::new(&config);
    scratch.install_plugin("exporter_jsonl");
    let broken = scratch.install_plugin("exporter_fixture_no_entry");
    let output = scratch.run(&["check", "--config", "exporter.toml"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    let expected = format!(
        "exporter.toml:1: plugin {broken}: is not an exporter plugin: it has no \
         `exporter_plugin_v1` function"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("unknown key `flush_every`"), "{stderr}");
    assert!(stderr.contains("unknown trigger `Refund`"), "{stderr}");
    assert!(
        !stderr.contains("Sales feed"),
        "the jsonl profile is fine: {stderr}"
    );
}

#[test]
fn a_plugin_that_panics_does_not_stop_the_run() {
    let config = r#"plugins_dir = "plugins"

[[profile]]
name = "Fragile"
type = "misbehaving"
mode = "panic_once"
routes = [ { triggers = ["New Sale"] } ]
mappings = [ { name = "id", field = "orderId" } ]

[[profile]]
name = "Sales feed"
type = "jsonl"
path = "feeds/sales.jsonl"
routes = [ { triggers = ["New Sale"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let scratch = Scratch::new(config);
    scratch.install_plugin("exporter_jsonl");
    scratch.install_plugin("exporter_fixture_misbehaving");
    let events = [
        serde_json::json!({"orderId": "A1", "customerType": "New Sale"}),
        serde_json::json!({"orderId": "A2", "customerType": "New Sale"}),
    ];
    scratch.write_events("orders.jsonl", &events);
    let args = [
        "run",
        "--config",
        "exporter.toml",
        "--input",
        "orders.jsonl",
        "--once",
    ];
    let output = scratch.run(&args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("the plugin panicked"), "{stderr}");
    assert!(stderr.contains("boom in deliver"), "{stderr}");
    assert_eq!(summary_row(&stdout, "Fragile").retrying, 2, "{stdout}");
    assert_eq!(summary_row(&stdout, "Sales feed").delivered, 2, "{stdout}");
}
