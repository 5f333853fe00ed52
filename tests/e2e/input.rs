//! Bad config, bad input and previews, as an operator meets them: every problem is named with
//! its file and line, a bad config stops the exporter with exit code 2, and nothing already
//! stored or sent is touched.

use std::process::Output;

use exporter_test_support::{Receiver, Reply};

use crate::harness::{Scratch, line_with, lines_with, query_page_file, text};

/// A postback profile for partials and a CSV profile for new sales.
fn good_config(url: &str) -> String {
    format!(
        r#"[[profile]]
name = "Leads"
type = "postback"
url = "{url}"
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [
  {{ name = "order_id", field = "orderId" }},
  {{ name = "first_name", field = "firstName" }},
]

[[profile]]
name = "Sales sheet"
type = "csv"
dir = "exports"
routes = [ {{ triggers = ["New Sale"] }} ]
mappings = [
  {{ name = "order_id", field = "orderId" }},
  {{ name = "total", field = "totalAmount" }},
]
"#
    )
}

/// Two partials and a sale.
const ORDERS: &str = r#"{"orderId":"P-1","customerType":"Partial","dateUpdated":"2026-11-02 06:00:01","firstName":"Ana"}
{"orderId":"P-2","customerType":"Partial","dateUpdated":"2026-11-02 06:00:02","firstName":"Bo"}
{"orderId":"S-3","customerType":"New Sale","dateUpdated":"2026-11-02 06:00:03","totalAmount":"9.99"}
"#;

/// Orders the store has not seen: a run that imported them would send and write something.
const MORE_ORDERS: &str = r#"{"orderId":"P-7","customerType":"Partial","dateUpdated":"2026-11-02 07:00:01","firstName":"Cy"}
{"orderId":"S-8","customerType":"New Sale","dateUpdated":"2026-11-02 07:00:02","totalAmount":"5.00"}
"#;

/// A store that already holds delivered orders, the state a bad config or a bad input must
/// leave alone, with what was stored, sent and written at that point.
struct Stored {
    scratch: Scratch,
    receiver: Receiver,
    rows: Vec<String>,
    sent: usize,
    files: Vec<String>,
}

impl Stored {
    /// Imports and delivers [`ORDERS`] with [`good_config`].
    fn new() -> Stored {
        let receiver = Receiver::start_blocking();
        let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
        scratch.write("orders.jsonl", ORDERS);
        succeeds(&run_once(&scratch, &["orders.jsonl"]));

        let states = scratch.delivery_states();
        let expected = [("Leads", "delivered", 2), ("Sales sheet", "delivered", 1)];
        assert_eq!(states, owned(&expected));
        let sent = receiver.requests().len();
        assert_eq!(sent, 2);
        let files = scratch.files_in("exports");
        assert_eq!(files.len(), 1, "{files:?}");
        let rows = scratch.store_rows();
        Stored {
            scratch,
            receiver,
            rows,
            sent,
            files,
        }
    }

    /// The store holds exactly what it held, nothing more was sent, no file was written.
    fn assert_unchanged(&self) {
        assert_eq!(self.scratch.store_rows(), self.rows, "the store changed");
        let requests = self.receiver.requests();
        assert_eq!(requests.len(), self.sent, "sent more: {requests:#?}");
        assert_eq!(self.scratch.files_in("exports"), self.files);
    }
}

/// `exporter run --config exporter.toml --input ... --once`.
fn run_once(scratch: &Scratch, inputs: &[&str]) -> Output {
    let mut args = vec!["run", "--config", "exporter.toml", "--once"];
    for input in inputs {
        args.extend(["--input", input]);
    }
    scratch.run(&args)
}

/// Asserts exit status 0 and returns stdout and stderr.
fn succeeds(output: &Output) -> (String, String) {
    let (stdout, stderr) = text(output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Asserts a non-zero exit status and returns stdout and stderr.
fn fails(output: &Output) -> (String, String) {
    let (stdout, stderr) = text(output);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

fn owned(states: &[(&str, &str, i64)]) -> Vec<(String, String, i64)> {
    states
        .iter()
        .map(|(p, s, n)| ((*p).to_owned(), (*s).to_owned(), *n))
        .collect()
}

/// The order ids the receiver got, sorted: different orders are sent concurrently, so they
/// may arrive in any order.
fn sent_order_ids(receiver: &Receiver) -> Vec<String> {
    let mut ids: Vec<String> = receiver
        .requests()
        .iter()
        .flat_map(|request| request.query_pairs())
        .filter(|(name, _)| name == "order_id")
        .map(|(_, value)| value)
        .collect();
    ids.sort();
    ids
}

// Bad config.

/// Writes `bad` as `bad.toml` beside a store with delivered orders, then runs and checks with
/// it: both exit 2 with the same report, and nothing stored, sent or written changes. Returns
/// the report (stderr).
fn refuses_config(bad: &str) -> String {
    let stored = Stored::new();
    stored.scratch.write("bad.toml", bad);
    stored.scratch.write("more.jsonl", MORE_ORDERS);

    let args = [
        "run",
        "--config",
        "bad.toml",
        "--input",
        "more.jsonl",
        "--once",
    ];
    let run = stored.scratch.run(&args);
    let (stdout, stderr) = text(&run);
    assert_eq!(run.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    stored.assert_unchanged();

    let check = stored.scratch.run(&["check", "--config", "bad.toml"]);
    assert_eq!(check.status.code(), Some(2), "{:?}", text(&check));
    assert_eq!(text(&check).1, stderr, "check and run report alike");
    stderr
}

/// Asserts the report has a problem line `bad.toml:LINE: [profile "NAME": ]...` holding every
/// fragment.
fn assert_problem(report: &str, line: usize, profile: Option<&str>, fragments: &[&str]) {
    let mut prefix = format!("bad.toml:{line}: ");
    if let Some(profile) = profile {
        prefix.push_str(&format!("profile \"{profile}\": "));
    }
    let found = report
        .lines()
        .map(str::trim_start)
        .filter(|problem| problem.starts_with(&prefix))
        .any(|problem| fragments.iter().all(|f| problem.contains(f)));
    assert!(
        found,
        "expected a problem `{prefix}...` with {fragments:?} in:\n{report}"
    );
}

/// Asserts the report's heading counts `count` problems in `bad.toml`.
fn assert_problem_count(report: &str, count: usize) {
    let plural = if count == 1 { "problem" } else { "problems" };
    let heading = format!("error: {count} {plural} in config bad.toml:");
    assert!(report.starts_with(&heading), "{report}");
}

/// A profile for configs that need a second, valid one.
const VALID_PROFILE: &str = r#"
[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;

#[test]
fn refuses_an_unknown_top_level_key() {
    let bad = format!("stroe = \"sqlite://exporter.db\"\n{VALID_PROFILE}");
    let report = refuses_config(&bad);
    assert_problem_count(&report, 1);
    let expected = [
        "unknown key `stroe`",
        "expected one of:",
        "store",
        "test_cards",
        "profile",
    ];
    assert_problem(&report, 1, None, &expected);
}

#[test]
fn refuses_a_misspelled_profile_key_listing_the_expected_keys() {
    let bad = r#"[[profile]]
name = "Leads"
type = "postback"
url = "http://127.0.0.1:9/lead"
dely_minutes = 15
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let report = refuses_config(bad);
    assert_problem_count(&report, 1);
    let line = line_with(bad, "dely_minutes");
    let expected = [
        "unknown key `dely_minutes`",
        "expected one of:",
        "delay_minutes",
        "success_body",
        "url",
    ];
    assert_problem(&report, line, Some("Leads"), &expected);
}

/// A profile whose `delay_minutes` is text, not a number.
const DELAY_AS_TEXT: &str = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
delay_minutes = "15"
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;

#[test]
fn refuses_a_profile_key_of_the_wrong_type() {
    let report = refuses_config(DELAY_AS_TEXT);
    let line = line_with(DELAY_AS_TEXT, "delay_minutes");
    let expected = ["`delay_minutes`", "invalid type: string \"15\""];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn explains_a_wrong_typed_profile_key_in_operator_terms() {
    let report = refuses_config(DELAY_AS_TEXT);
    let line = line_with(DELAY_AS_TEXT, "delay_minutes");
    let expected = ["`delay_minutes`", "number of minutes", "delay_minutes = 15"];
    assert_problem(&report, line, Some("Sheet"), &expected);
    assert!(!report.contains("f64"), "{report}");
}

#[test]
fn refuses_an_unknown_key_in_a_route() {
    let bad = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [
  { triggers = ["New Sale"] },
  { triggers = ["Partial"], campains = [12] },
]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let report = refuses_config(bad);
    let line = line_with(bad, "campains");
    let expected = [
        "routes[1]",
        "unknown key `campains`",
        "campaigns, fields, products, triggers",
    ];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn refuses_an_unknown_key_in_a_mapping() {
    let bad = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "id", field = "orderId" },
  { name = "email", fild = "emailAddress" },
]
"#;
    let report = refuses_config(bad);
    let line = line_with(bad, "fild");
    let expected = [
        "mappings[1]",
        "unknown key `fild`",
        "default, field, name, value",
    ];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn refuses_an_unknown_trigger_listing_the_known_ones() {
    let bad = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [ { triggers = ["New Sale", "Partal"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let report = refuses_config(bad);
    let line = line_with(bad, "Partal");
    let expected = [
        "unknown trigger `Partal`",
        "known triggers: Partial, New Sale",
    ];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn refuses_a_mapping_with_both_field_and_value_or_neither() {
    let bad = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "both", field = "orderId", value = "400" },
  { name = "neither" },
]
"#;
    let report = refuses_config(bad);
    assert_problem_count(&report, 2);
    for (index, name) in [(0, "both"), (1, "neither")] {
        let expected = [
            format!("mappings[{index}]"),
            format!("mapping `{name}` needs exactly one of `field` or `value`"),
        ];
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        let line = line_with(bad, &format!("\"{name}\""));
        assert_problem(&report, line, Some("Sheet"), &expected);
    }
}

#[test]
fn refuses_an_unclosed_bracket_in_a_template_with_its_column() {
    let bad = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "id", field = "orderId" },
  { name = "full_name", value = "[firstName] [lastName" },
]
"#;
    let report = refuses_config(bad);
    let line = line_with(bad, "full_name");
    let expected = ["mapping `full_name`", "unclosed `[` at column 13", "`[[`"];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn refuses_duplicate_profile_names_ignoring_case() {
    let bad = format!(
        "{VALID_PROFILE}{}",
        VALID_PROFILE.replace("\"Sheet\"", "\"SHEET\"")
    );
    let report = refuses_config(&bad);
    assert_problem_count(&report, 1);
    let line = line_with(&bad, "\"SHEET\"");
    assert_problem(&report, line, Some("SHEET"), &["names must be unique"]);
}

#[test]
fn refuses_an_unknown_export_type_listing_the_known_ones() {
    let bad = VALID_PROFILE.replace("\"csv\"", "\"cvs\"");
    let report = refuses_config(&bad);
    let line = line_with(&bad, "cvs");
    let expected = ["unknown export type `cvs`", "known types: postback, csv"];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn refuses_a_postback_profile_without_url() {
    let bad = format!(
        r#"{VALID_PROFILE}
[[profile]]
name = "Leads"
type = "postback"
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [ {{ name = "id", field = "orderId" }} ]
"#
    );
    let report = refuses_config(&bad);
    assert_problem_count(&report, 1);
    let line = lines_with(&bad, "[[profile]]")[1];
    assert_problem(
        &report,
        line,
        Some("Leads"),
        &["missing required key `url`"],
    );
}

#[test]
fn refuses_a_url_that_is_not_http_or_not_a_url() {
    let bad = r#"[[profile]]
name = "Ftp"
type = "postback"
url = "ftp://leads.example.com/drop"
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]

[[profile]]
name = "Garbage"
type = "postback"
url = "leads dot example dot com"
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let report = refuses_config(bad);
    assert_problem_count(&report, 2);
    let line = line_with(bad, "ftp://");
    let expected = [
        "key `url`",
        "scheme `ftp` is not supported",
        "http or https",
    ];
    assert_problem(&report, line, Some("Ftp"), &expected);
    let line = line_with(bad, "dot com");
    let expected = [
        "key `url`",
        "not a valid URL",
        "for example `url = \"https://",
    ];
    assert_problem(&report, line, Some("Garbage"), &expected);
}

#[test]
fn refuses_an_invalid_success_body_regex() {
    let bad = r#"[[profile]]
name = "Leads"
type = "postback"
url = "http://127.0.0.1:9/lead"
success_body = "^(SUCCESS"
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let report = refuses_config(bad);
    let line = line_with(bad, "success_body");
    let expected = ["key `success_body`", "not a valid regular expression"];
    assert_problem(&report, line, Some("Leads"), &expected);
    assert!(report.contains("unclosed group"), "{report}");
}

/// An environment variable no test sets.
const UNSET: &str = "EXPORTER_E2E_NEVER_SET_TOKEN";

#[test]
fn refuses_a_mapping_from_an_unset_environment_variable() {
    let bad = format!(
        r#"[[profile]]
name = "Leads"
type = "postback"
url = "http://127.0.0.1:9/lead"
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [
  {{ name = "id", field = "orderId" }},
  {{ name = "header:X-Api-Key", value = "env:{UNSET}" }},
]
"#
    );
    let report = refuses_config(&bad);
    let line = line_with(&bad, UNSET);
    let expected = [
        "mappings[1]",
        &format!("environment variable {UNSET} is not set"),
    ];
    assert_problem(&report, line, Some("Leads"), &expected);
}

#[test]
fn refuses_a_target_setting_from_an_unset_environment_variable_naming_the_key() {
    let bad = format!(
        r#"[[profile]]
name = "Leads"
type = "postback"
url = "env:{UNSET}"
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [ {{ name = "id", field = "orderId" }} ]
"#
    );
    let report = refuses_config(&bad);
    let line = line_with(&bad, UNSET);
    let expected = [&format!("environment variable {UNSET} is not set"), "`url`"];
    assert_problem(&report, line, Some("Leads"), &expected);
}

#[test]
fn config_errors_never_show_a_secret_value() {
    let secret = "(sk-live-7f3a9c";
    let bad = r#"[[profile]]
name = "Leads"
type = "postback"
url = "http://127.0.0.1:9/lead"
success_body = "env:EXPORTER_E2E_RULE"
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let scratch = Scratch::new(bad);
    let output = scratch
        .command(&["check", "--config", "exporter.toml"])
        .env("EXPORTER_E2E_RULE", secret)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("key `success_body`"), "{stderr}");
    assert!(!stderr.contains("sk-live"), "{stderr}");
}

#[test]
fn refuses_a_csv_delimiter_that_is_not_one_character() {
    let bad = VALID_PROFILE.replace("dir = \"sheet\"", "dir = \"sheet\"\ndelimiter = \";;\"");
    let report = refuses_config(&bad);
    let line = line_with(&bad, "delimiter");
    let expected = ["key `delimiter`", "one ASCII character", "found \";;\""];
    assert_problem(&report, line, Some("Sheet"), &expected);
}

#[test]
fn refuses_invalid_toml_with_its_line() {
    let bad = VALID_PROFILE.replace("dir = \"sheet\"", "dir = = \"sheet\"");
    let report = refuses_config(&bad);
    assert_problem_count(&report, 1);
    let line = line_with(&bad, "dir = =");
    assert_problem(&report, line, None, &["not valid TOML"]);
}

#[test]
fn reports_every_problem_in_the_file_at_once() {
    let bad = r#"stroe = "x"

[[profile]]
name = "Leads"
type = "postback"
url = "ftp://leads.example.com/"
routes = [ { triggers = ["Partal"] } ]
mappings = [ { name = "id", fild = "orderId" } ]

[[profile]]
name = "Sheet"
type = "csv"
dir = "sheet"
delimiter = ""
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", value = "[orderId" } ]
"#;
    let report = refuses_config(bad);
    assert_problem_count(&report, 6);
    assert_problem(&report, 1, None, &["`stroe`"]);
    let leads = [
        ("ftp://", "`url`"),
        ("Partal", "`Partal`"),
        ("fild", "`fild`"),
    ];
    for (needle, fragment) in leads {
        assert_problem(&report, line_with(bad, needle), Some("Leads"), &[fragment]);
    }
    let sheet = [("delimiter", "`delimiter`"), ("[orderId", "unclosed `[`")];
    for (needle, fragment) in sheet {
        assert_problem(&report, line_with(bad, needle), Some("Sheet"), &[fragment]);
    }
}

#[test]
fn reports_every_problem_of_one_profiles_target_keys_at_once() {
    let bad = r#"[[profile]]
name = "Leads"
type = "postback"
url = "ftp://leads.example.com/"
success_body = "^(SUCCESS"
timeout = 10
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "id", field = "orderId" } ]
"#;
    let report = refuses_config(bad);
    assert_problem_count(&report, 3);
    let expected = [
        ("ftp://", "`url`"),
        ("^(", "`success_body`"),
        ("timeout", "`timeout`"),
    ];
    for (needle, fragment) in expected {
        assert_problem(&report, line_with(bad, needle), Some("Leads"), &[fragment]);
    }
}

#[test]
fn refuses_a_missing_config_file_naming_it() {
    let stored = Stored::new();
    let args = [
        "run",
        "--config",
        "no-such.toml",
        "--input",
        "orders.jsonl",
        "--once",
    ];
    let output = stored.scratch.run(&args);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("no-such.toml: cannot read the file"),
        "{stderr}"
    );
    assert!(stderr.contains("No such file"), "{stderr}");
    stored.assert_unchanged();
}

#[test]
fn a_missing_config_file_creates_no_store() {
    let scratch = Scratch::new("");
    std::fs::remove_file(scratch.path("exporter.toml")).unwrap();
    scratch.write("orders.jsonl", ORDERS);
    let output = run_once(&scratch, &["orders.jsonl"]);
    assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));
    assert!(!scratch.path("exporter.db").exists());
}

// Bad input.

/// A JSON lines file: good orders on lines 1 and 10, an array of one good order on line 5,
/// every kind of bad line between, and a last line cut off without its newline.
fn bad_lines() -> Vec<u8> {
    let mut bytes = Vec::new();
    let lines: [&[u8]; 11] = [
        br#"{"orderId":"G-1","customerType":"Partial","firstName":"Ana"}"#,
        br#"{"orderId":"T-2","customerType":"Partial","firstName":"Tr"#,
        b"orderId=N-3, customerType=Partial",
        b"{\"orderId\":\"U-4\",\"customerType\":\"Partial\",\"firstName\":\"\xff\xfe\"}",
        br#"[{"orderId":"A-5","customerType":"Partial"}]"#,
        b"42",
        br#"{"customerType":"Partial","firstName":"NoId"}"#,
        br#"{"orderId":"NT-8","firstName":"NoTrigger"}"#,
        br#"{"orderId":"NUM-9","customerType":3}"#,
        br#"{"orderId":"G-10","customerType":"Partial","firstName":"Bo"}"#,
        br#"{"orderId":"T-11","customerType":"Par"#,
    ];
    for (index, line) in lines.iter().enumerate() {
        bytes.extend_from_slice(line);
        if index + 1 < lines.len() {
            bytes.push(b'\n');
        }
    }
    bytes
}

#[test]
fn skips_bad_lines_naming_file_and_line_and_imports_the_good_ones() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    scratch.write_bytes("bad-lines.jsonl", &bad_lines());
    let (stdout, stderr) = succeeds(&run_once(&scratch, &["bad-lines.jsonl"]));

    let summary = "Imported 3 of 11 events read from bad-lines.jsonl: 0 already in the store, \
                   8 bad items skipped, 0 matched no profile.";
    assert!(stdout.contains(summary), "{stdout}");
    let expected = [
        (2, "invalid JSON"),
        (3, "invalid JSON"),
        (4, "not valid UTF-8"),
        (6, "found a number"),
        (7, "missing required field `orderId`"),
        (8, "missing required field `customerType`"),
        (9, "field `customerType` must be a string, found a number"),
        (11, "invalid JSON"),
    ];
    let skipped: Vec<&str> = stderr.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(skipped.len(), expected.len(), "{stderr}");
    for (line, reason) in expected {
        let position = format!("position=line {line} reason=");
        let found = skipped.iter().any(|warning| {
            warning.contains("input=\"bad-lines.jsonl\"")
                && warning.contains(&position)
                && warning.contains(reason)
        });
        assert!(found, "line {line} ({reason}) not reported in:\n{stderr}");
    }
    assert_eq!(sent_order_ids(&receiver), ["A-5", "G-1", "G-10"]);
    assert_eq!(
        scratch.delivery_states(),
        owned(&[("Leads", "delivered", 3)])
    );
}

#[test]
fn skips_a_broken_first_line_and_imports_the_rest() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    let input = concat!(
        r#"{"orderId":"T-1","customerType":"Partial","firstName":"Tr"#,
        "\n",
        r#"{"orderId":"G-2","customerType":"Partial","firstName":"Ana"}"#,
        "\n",
    );
    scratch.write("orders.jsonl", input);
    let (stdout, stderr) = succeeds(&run_once(&scratch, &["orders.jsonl"]));
    assert!(stdout.contains("Imported 1 of 2 events"), "{stdout}");
    assert!(
        stderr.contains("position=line 1 reason=invalid JSON"),
        "{stderr}"
    );
    assert_eq!(sent_order_ids(&receiver), ["G-2"]);
}

#[test]
fn skips_the_items_of_a_first_line_array_that_are_not_orders_and_imports_the_rest() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    let input = concat!(
        "[1, 2]\n",
        r#"{"orderId":"G-2","customerType":"Partial","firstName":"Ana"}"#,
        "\n",
    );
    scratch.write("orders.jsonl", input);
    let (stdout, stderr) = succeeds(&run_once(&scratch, &["orders.jsonl"]));
    assert!(stdout.contains("Imported 1 of 3 events"), "{stdout}");
    assert!(
        stderr.contains("position=line 1 item 2 reason="),
        "{stderr}"
    );
    assert_eq!(sent_order_ids(&receiver), ["G-2"]);
}

#[test]
fn imports_a_json_array() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    let array = format!("[\n  {}\n]\n", ORDERS.trim_end().replace('\n', ",\n  "));
    scratch.write("orders.json", &array);
    let (stdout, _) = succeeds(&run_once(&scratch, &["orders.json"]));
    assert!(
        stdout.contains("Imported 3 of 3 events read from orders.json"),
        "{stdout}"
    );
    assert_eq!(sent_order_ids(&receiver), ["P-1", "P-2"]);
    let expected = [("Leads", "delivered", 2), ("Sales sheet", "delivered", 1)];
    assert_eq!(scratch.delivery_states(), owned(&expected));
}

#[test]
fn imports_a_page_of_the_crm_order_query() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    let page_path = query_page_file(&scratch);
    let page: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&page_path).unwrap()).unwrap();
    let orders = page["message"]["data"].as_array().unwrap();
    let count = |trigger: &str| {
        let matching = orders.iter().filter(|o| o["customerType"] == trigger);
        matching.count() as i64
    };
    let (partials, sales) = (count("Partial"), count("New Sale"));
    assert!(partials > 0 && sales > 0);

    let page_arg = page_path.to_str().unwrap();
    let (stdout, _) = succeeds(&run_once(&scratch, &[page_arg]));
    let total = orders.len();
    let unmatched = total as i64 - partials - sales;
    let summary = format!(
        "Imported {total} of {total} events read from {page_arg}: 0 already in the store, \
         0 bad items skipped, {unmatched} matched no profile."
    );
    assert!(stdout.contains(&summary), "{stdout}");

    let states = scratch.delivery_states();
    let routed = |profile: &str| {
        let rows = states.iter().filter(|(p, _, _)| p == profile);
        rows.map(|(_, _, n)| n).sum::<i64>()
    };
    assert_eq!((routed("Leads"), routed("Sales sheet")), (partials, sales));
    let delivered = states
        .iter()
        .find(|(p, s, _)| p == "Leads" && s == "delivered")
        .map_or(0, |(_, _, n)| *n);
    assert_eq!(receiver.requests().len() as i64, delivered, "{states:?}");
}

#[test]
fn refuses_a_query_page_whose_result_is_error() {
    let stored = Stored::new();
    let page = r#"{"result":"ERROR","message":"Invalid login credentials"}"#;
    stored.scratch.write("page.json", page);
    let (_, stderr) = fails(&run_once(&stored.scratch, &["page.json"]));
    assert!(
        stderr.contains("page.json: the CRM answered result `ERROR`"),
        "{stderr}"
    );
    assert!(stderr.contains("Invalid login credentials"), "{stderr}");
    stored.assert_unchanged();
}

#[test]
fn reads_orders_from_stdin() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    let args = ["run", "--config", "exporter.toml", "--input", "-", "--once"];
    let output = scratch.run_with_stdin(&args, ORDERS.as_bytes());
    let (stdout, _) = succeeds(&output);
    assert!(
        stdout.contains("Imported 3 of 3 events read from stdin"),
        "{stdout}"
    );
    assert_eq!(sent_order_ids(&receiver), ["P-1", "P-2"]);
    assert_eq!(scratch.files_in("exports").len(), 1);
}

#[test]
fn refuses_a_missing_input_file_and_changes_nothing() {
    let stored = Stored::new();
    let (_, stderr) = fails(&run_once(&stored.scratch, &["missing.jsonl"]));
    assert!(stderr.contains("cannot read missing.jsonl"), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
    stored.assert_unchanged();
}

#[test]
fn names_the_cause_of_an_unreadable_input_once() {
    let scratch = Scratch::new(VALID_PROFILE);
    let (_, stderr) = fails(&run_once(&scratch, &["missing.jsonl"]));
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn an_empty_input_imports_nothing() {
    let stored = Stored::new();
    stored.scratch.write("empty.jsonl", "");
    let (stdout, _) = succeeds(&run_once(&stored.scratch, &["empty.jsonl"]));
    assert!(
        stdout.contains("Imported 0 of 0 events read from empty.jsonl"),
        "{stdout}"
    );
    stored.assert_unchanged();
}

#[test]
fn importing_the_same_file_again_sends_nothing() {
    let stored = Stored::new();
    let (stdout, _) = succeeds(&run_once(&stored.scratch, &["orders.jsonl"]));
    let summary = "Imported 0 of 3 events read from orders.jsonl: 3 already in the store";
    assert!(stdout.contains(summary), "{stdout}");
    stored.assert_unchanged();
}

// Secrets.

const SECRET: &str = "sk-live-5d1f9a27";

/// A GET profile that sends the secret as a query parameter and a POST profile that sends it
/// as a header, both read from `EXPORTER_E2E_KEY`.
fn secret_config(receiver: &Receiver, extra: &str) -> String {
    format!(
        r#"[[profile]]
name = "Get leads"
type = "postback"
url = "{get}"
{extra}
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [
  {{ name = "first_name", field = "firstName" }},
  {{ name = "token", value = "env:EXPORTER_E2E_KEY" }},
]

[[profile]]
name = "Post leads"
type = "postback"
url = "{post}"
{extra}
routes = [ {{ triggers = ["Partial"] }} ]
mappings = [
  {{ name = "first_name", field = "firstName" }},
  {{ name = "full_name", value = "[firstName] [lastName]" }},
  {{ name = "header:X-Api-Key", value = "env:EXPORTER_E2E_KEY" }},
]
"#,
        get = receiver.url("/get.php?src=crm"),
        post = receiver.url("/post.php"),
    )
}

const PARTIAL: &str =
    r#"{"orderId":"P-1","customerType":"Partial","firstName":"Ana","lastName":"Lee & Co"}"#;

#[test]
fn secrets_never_appear_in_logs_summaries_or_the_attempt_log() {
    let receiver = Receiver::start_blocking();
    let echo = Reply::status(500).body(format!("ERROR: key {SECRET} is revoked"));
    receiver.set_default(echo);
    let scratch = Scratch::new(&secret_config(&receiver, "max_attempts = 1"));
    scratch.write("orders.jsonl", PARTIAL);
    let args = [
        "run",
        "--config",
        "exporter.toml",
        "--input",
        "orders.jsonl",
        "--once",
        "--log",
        "debug",
    ];
    let output = scratch
        .command(&args)
        .env("EXPORTER_E2E_KEY", SECRET)
        .output()
        .unwrap();
    let (stdout, stderr) = succeeds(&output);

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests.iter().any(|r| r.query.contains(SECRET)));
    assert!(
        requests
            .iter()
            .any(|r| r.header("x-api-key") == Some(SECRET))
    );
    assert!(
        stdout.contains("is revoked"),
        "the last error is shown: {stdout}"
    );
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    let rows = scratch.store_rows();
    assert!(
        rows.iter().any(|row| row.contains("is revoked")),
        "{rows:#?}"
    );
    assert!(!rows.iter().any(|row| row.contains(SECRET)), "{rows:#?}");
}

// Preview.

/// Runs `exporter preview` for `profile` on `input`, with the secret in the environment.
fn preview(scratch: &Scratch, profile: &str, input: &str) -> Output {
    let args = [
        "preview",
        "--config",
        "exporter.toml",
        "--profile",
        profile,
        "--input",
        input,
    ];
    let mut command = scratch.command(&args);
    command.env("EXPORTER_E2E_KEY", SECRET).output().unwrap()
}

#[test]
fn previews_a_post_with_headers_and_body_masking_the_secret() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&secret_config(&receiver, ""));
    scratch.write("order.json", PARTIAL);
    let (stdout, stderr) = succeeds(&preview(&scratch, "Post leads", "order.json"));

    let expected = format!(
        "POST {}\nX-Api-Key: ***\nContent-Type: application/x-www-form-urlencoded\n",
        receiver.url("/post.php")
    );
    assert!(stdout.contains("# order P-1"), "{stdout}");
    assert!(stdout.contains(&expected), "{stdout}");
    assert!(stdout.contains("Idempotency-Key: "), "{stdout}");
    assert!(
        stdout.contains("\n\nfirst_name=Ana&full_name=Ana+Lee+%26+Co\n"),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    assert!(receiver.requests().is_empty(), "a preview sends nothing");
    assert!(
        !scratch.path("exporter.db").exists(),
        "a preview stores nothing"
    );
}

#[test]
fn previews_a_get_with_the_query_masking_the_secret() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&secret_config(&receiver, ""));
    scratch.write("order.json", PARTIAL);
    let (stdout, stderr) = succeeds(&preview(&scratch, "Get leads", "order.json"));

    let url = receiver.url("/get.php?src=crm&first_name=Ana&token=***");
    assert!(stdout.contains(&format!("GET {url}\n")), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    assert!(receiver.requests().is_empty(), "a preview sends nothing");
}

#[test]
fn previews_a_csv_profile_as_the_file_it_would_write() {
    let config = r#"[[profile]]
name = "Sheet"
type = "csv"
dir = "sheets"
file_name = "partials_{seq}.csv"
delimiter = ";"
routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "name", value = "[firstName] [lastName]" },
]
"#;
    let scratch = Scratch::new(config);
    let orders = format!("{PARTIAL}\n{}\n", PARTIAL.replace("P-1", "P-2"));
    scratch.write("orders.jsonl", &orders);
    let (stdout, _) = succeeds(&preview(&scratch, "Sheet", "orders.jsonl"));

    let expected = "file sheets/partials_31126455.csv (UTF-8, LF line ends)\n\
                    order_id;name\nP-1;Ana Lee & Co\nP-2;Ana Lee & Co\n";
    assert!(stdout.contains(expected), "{stdout}");
    assert!(!scratch.path("sheets").exists(), "a preview writes no file");
}

#[test]
fn previewing_an_unknown_profile_lists_the_profiles() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&secret_config(&receiver, ""));
    scratch.write("order.json", PARTIAL);
    let (stdout, stderr) = fails(&preview(&scratch, "Leads", "order.json"));
    assert!(stdout.is_empty(), "{stdout}");
    let expected = "no profile named \"Leads\" in exporter.toml; profiles: Get leads, Post leads";
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn previewing_an_order_that_matches_no_route_says_so() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&secret_config(&receiver, ""));
    scratch.write("order.json", &PARTIAL.replace("Partial", "New Sale"));
    let (stdout, stderr) = succeeds(&preview(&scratch, "Get leads", "order.json"));
    let note = "order P-1 (New Sale) matches no route of this profile; it would not be sent";
    assert!(stderr.contains(note), "{stderr}");
    assert!(
        stdout.contains("GET "),
        "the request is still shown: {stdout}"
    );
    assert!(receiver.requests().is_empty(), "a preview sends nothing");
}

#[test]
fn refuses_mappings_that_would_replace_protocol_headers_or_name_an_unknown_method() {
    let bad = r#"[[profile]]
name = "Leads"
type = "postback"
url = "http://127.0.0.1:9/lead"
routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "id", field = "orderId" },
  { name = "header:Content-Length", value = "5" },
  { name = "header:idempotency-key", value = "mine" },
  { name = "header:httpMethod", value = "FETCH" },
]
"#;
    let report = refuses_config(bad);
    assert_problem_count(&report, 3);
    let expected = [
        ("Content-Length", "computed from the body"),
        ("idempotency-key", "the delivery's own id"),
        ("FETCH", "expected one of GET, POST, PUT, PATCH, DELETE"),
    ];
    for (needle, fragment) in expected {
        assert_problem(&report, line_with(bad, needle), Some("Leads"), &[fragment]);
    }
}

#[test]
fn skips_deeply_nested_lines_and_unknown_triggers_and_imports_the_rest() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&good_config(&receiver.url("/lead")));
    let deep = format!(
        r#"{{"orderId":"N-1","customerType":"Partial","x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let lines = [
        deep.as_str(),
        r#"{"orderId":"U-2","customerType":"Refund Requested"}"#,
        r#"{"orderId":"G-3","customerType":"Partial","firstName":"Zoë 👍 \u0007"}"#,
    ];
    scratch.write("orders.jsonl", &(lines.join("\n") + "\n"));
    let (stdout, stderr) = succeeds(&run_once(&scratch, &["orders.jsonl"]));

    assert!(stdout.contains("Imported 2 of 3 events"), "{stdout}");
    assert!(
        stdout.contains("1 bad items skipped, 1 matched no profile"),
        "{stdout}"
    );
    assert!(stderr.contains("position=line 1"), "{stderr}");
    assert!(
        stderr.contains("Refund Requested"),
        "the unknown trigger is named: {stderr}"
    );
    assert_eq!(sent_order_ids(&receiver), ["G-3"]);
}
