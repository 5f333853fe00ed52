//! Delivery as a user sees it: the `exporter` binary importing events and sending them to a
//! real HTTP receiver on 127.0.0.1 (or a CSV folder), then what arrived and what the summary
//! says.
//!
//! Profiles here retry after 0.2 s and give up on a request after a few seconds, so every run
//! stays short; waits poll with a deadline instead of sleeping for a guessed time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use exporter_test_support::{ReceivedRequest, Receiver, Reply};
use serde_json::{Value, json};

use crate::harness::{Members, Running, Scratch, orders_file, summary_row, text, utc_text};

/// The longest a `run --once` on a handful of events may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest the receiver is waited for.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A postback profile that gives up on a request after 2 s and retries 0.2 s after a failure
/// (the backoff cap keeps every retry at exactly 0.2 s), followed by `rest`.
fn postback(name: &str, url: &str, rest: &str) -> String {
    format!(
        "[[profile]]\nname = \"{name}\"\ntype = \"postback\"\nurl = \"{url}\"\n\
         timeout_secs = 2\nretry_initial_secs = 0.2\nretry_max_secs = 0.2\n{rest}\n\n"
    )
}

/// An order event in the CRM's shape, with `fields` set over the defaults.
fn event(order_id: &str, trigger: &str, fields: Value) -> Value {
    let mut event = json!({
        "customerType": trigger,
        "orderId": order_id,
        "dateCreated": "2026-11-02 06:00:32",
        "dateUpdated": "2026-11-02 06:00:33",
        "campaignId": 12,
        "campaignName": "Widgets & Gadgets EU",
        "firstName": "Jessica",
        "lastName": "Smith",
        "emailAddress": "jessica@example.net",
        "phoneNumber": "+1-735-428-5051",
        "cardType": "VISA",
        "cardLast4": "4242",
        "totalAmount": "108.99",
    });
    let Value::Object(fields) = fields else {
        panic!("fields must be an object")
    };
    for (name, value) in fields {
        event[name] = value;
    }
    event
}

/// Runs `exporter run --once --config exporter.toml` plus `args`; returns stdout and stderr,
/// failing the test unless it exits with 0.
fn run_once(scratch: &Scratch, args: &[&str]) -> (String, String) {
    run_once_with_env(scratch, args, &[])
}

/// [`run_once`] with environment variables set for the exporter.
fn run_once_with_env(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let mut command = scratch.command(&["run", "--once", "--config", "exporter.toml"]);
    command.args(args).envs(env.iter().copied());
    let output = Running::start(command).wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

/// The requests that arrived on `path`, in arrival order.
fn on_path(receiver: &Receiver, path: &str) -> Vec<ReceivedRequest> {
    let requests = receiver.requests();
    requests.into_iter().filter(|r| r.path == path).collect()
}

/// The value of `name` in decoded pairs.
fn pair<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    let found = pairs.iter().find(|(n, _)| n == name);
    found.map_or_else(|| panic!("no `{name}` in {pairs:?}"), |(_, v)| v.as_str())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn idempotency_key(request: &ReceivedRequest) -> String {
    let key = request.header("Idempotency-Key");
    key.unwrap_or_else(|| panic!("no Idempotency-Key on {request:?}"))
        .to_owned()
}

/// The summary note a profile gets when it has work left, such as
/// `Leads: 1 retrying, 0 failed; last error: ...`.
fn summary_notes<'a>(stdout: &'a str, profile: &str) -> Vec<&'a str> {
    let prefix = format!("{profile}: ");
    stdout.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// A one-field profile for `Partial` events on `url`, with `extra` keys.
fn lead_profile(url: &str, extra: &str) -> String {
    let rest = format!(
        "{extra}\nroutes = [ {{ triggers = [\"Partial\"] }} ]\n\
         mappings = [ {{ name = \"order_id\", field = \"orderId\" }} ]"
    );
    postback("Leads", url, &rest)
}

/// A scratch folder with `config` and an input `events.jsonl` of one partial, order `L-1`.
fn one_lead(config: &str) -> Scratch {
    let scratch = Scratch::new(config);
    scratch.write_events("events.jsonl", &[event("L-1", "Partial", json!({}))]);
    scratch
}

const WORK_THE_QUEUE: [&str; 5] = [
    "run",
    "--config",
    "exporter.toml",
    "--input",
    "events.jsonl",
];

const AWKWARD_MAPPINGS: &str = r#"mappings = [
  { name = "order_id", field = "orderId" },
  { name = "first_name", field = "firstName" },
  { name = "last_name", field = "lastName" },
  { name = "full_name", value = "[firstName] [lastName]" },
  { name = "note", field = "note" },
  { name = "city", field = "city" },
  { name = "phone", field = "phoneNumber" },
  { name = "company", field = "companyName", default = "n/a" },
  { name = "product", field = "items.8.name" },
  { name = "list_id", value = "400" },
]"#;

/// An order whose text needs every kind of escaping a query, a form or JSON has.
fn awkward_order() -> Value {
    event(
        "ENC-1",
        "Partial",
        json!({
            "firstName": "Zoë & Ana",
            "lastName": "O'Brien+Co=1 #2",
            "note": "100% sure? a=b&c=d / \"quoted\" \\ back",
            "city": "東京 🎉 Ørsted",
            "phoneNumber": null,
            "companyName": null,
            "items": { "8": { "productId": "8", "name": "Widget 90-day ½ price" } },
        }),
    )
}

/// What [`AWKWARD_MAPPINGS`] render for [`awkward_order`].
fn awkward_pairs() -> Vec<(String, String)> {
    pairs(&[
        ("order_id", "ENC-1"),
        ("first_name", "Zoë & Ana"),
        ("last_name", "O'Brien+Co=1 #2"),
        ("full_name", "Zoë & Ana O'Brien+Co=1 #2"),
        ("note", "100% sure? a=b&c=d / \"quoted\" \\ back"),
        ("city", "東京 🎉 Ørsted"),
        ("phone", ""),
        ("company", "n/a"),
        ("product", "Widget 90-day ½ price"),
        ("list_id", "400"),
    ])
}

#[test]
fn get_postback_sends_mapped_fields_as_query_in_mapping_order() {
    let receiver = Receiver::start_blocking();
    let url = receiver.url("/lead.php?source=crm&list=7");
    let routes = r#"routes = [ { triggers = ["Partial"] } ]"#;
    let scratch = Scratch::new(&postback(
        "Leads",
        &url,
        &format!("{routes}\n{AWKWARD_MAPPINGS}"),
    ));
    scratch.write_events("events.jsonl", &[awkward_order()]);

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let requests = on_path(&receiver, "/lead.php");
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    assert!(request.body.is_empty(), "{request:?}");
    assert!(
        request.query.starts_with("source=crm&list=7&order_id="),
        "the URL's own query comes first, then `&` and the fields: {}",
        request.query
    );
    let mut expected = pairs(&[("source", "crm"), ("list", "7")]);
    expected.extend(awkward_pairs());
    assert_eq!(request.query_pairs(), expected);
    assert_eq!(summary_row(&stdout, "Leads").delivered, 1, "{stdout}");
}

#[test]
fn header_mapping_makes_a_form_post_and_keeps_the_secret_out_of_output() {
    const SECRET: &str = "sk_live_Zq9xR2mW7tK4";
    let receiver = Receiver::start_blocking();
    // One of the two requests is refused by a target that echoes the key back.
    let echo = format!("invalid key {SECRET}");
    receiver.respond("/lead", Reply::status(500).body(echo));
    let rest = r#"routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "header:X-Api-Key", value = "env:LEADS_API_KEY" },
  { name = "full_name", value = "[firstName] [lastName]" },
  { name = "note", field = "note" },
]"#;
    let scratch = Scratch::new(&postback("Leads", &receiver.url("/lead"), rest));
    let note = "a&b=c+d #1 ünï 🎉";
    scratch.write_events(
        "events.jsonl",
        &[
            event("F-1", "Partial", json!({ "note": note })),
            event("F-2", "Partial", json!({ "note": note })),
        ],
    );

    let args = ["--log", "debug", "--input", "events.jsonl"];
    let env = [("LEADS_API_KEY", SECRET)];
    let (stdout, stderr) = run_once_with_env(&scratch, &args, &env);

    let requests = on_path(&receiver, "/lead");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.query, "", "fields go in the body: {request:?}");
        assert_eq!(request.header("X-Api-Key"), Some(SECRET));
        assert_eq!(
            request.header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = request.form_pairs();
        let order = pair(&form, "order_id").to_owned();
        let expected = pairs(&[
            ("order_id", &order),
            ("full_name", "Jessica Smith"),
            ("note", note),
        ]);
        assert_eq!(form, expected, "the header is not a body field");
    }
    assert!(!stdout.contains(SECRET), "secret in stdout:\n{stdout}");
    assert!(!stderr.contains(SECRET), "secret in stderr:\n{stderr}");
    assert_not_stored(&scratch, SECRET);
    assert!(
        stderr.contains("DEBUG"),
        "--log debug logs per delivery:\n{stderr}"
    );
    let row = summary_row(&stdout, "Leads");
    assert_eq!((row.delivered, row.retrying), (1, 1), "{stdout}");
    let notes = summary_notes(&stdout, "Leads").join("\n");
    assert!(notes.contains("invalid key ***"), "{stdout}");
}

#[test]
fn keeps_a_secret_url_out_of_output_and_the_store() {
    const TOKEN: &str = "tok_9f8e7d6c5b4a3";
    let receiver = Receiver::start_blocking();
    receiver.respond("/lead", Reply::drop_connection());
    let secret_url = receiver.url(&format!("/lead?token={TOKEN}"));
    let scratch = Scratch::new(&lead_profile("env:LEADS_URL", ""));
    let events = [
        event("U-1", "Partial", json!({})),
        event("U-2", "Partial", json!({})),
    ];
    scratch.write_events("events.jsonl", &events);

    let args = ["--log", "debug", "--input", "events.jsonl"];
    let (stdout, stderr) = run_once_with_env(&scratch, &args, &[("LEADS_URL", &secret_url)]);

    let requests = on_path(&receiver, "/lead");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for request in &requests {
        assert_eq!(pair(&request.query_pairs(), "token"), TOKEN);
    }
    let row = summary_row(&stdout, "Leads");
    assert_eq!((row.delivered, row.retrying), (1, 1), "{stdout}");
    assert!(!stdout.contains(TOKEN), "secret in stdout:\n{stdout}");
    assert!(!stderr.contains(TOKEN), "secret in stderr:\n{stderr}");
    assert_not_stored(&scratch, TOKEN);
}

/// Checks that no file in the scratch folder (the store and its journal included) holds
/// `secret`.
fn assert_not_stored(scratch: &Scratch, secret: &str) {
    for file in std::fs::read_dir(scratch.dir.path()).unwrap() {
        let path = file.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the secret is stored in {}", path.display());
    }
}

#[test]
fn json_content_type_sends_a_json_object_in_mapping_order() {
    let receiver = Receiver::start_blocking();
    let routes = r#"routes = [ { triggers = ["Partial"] } ]"#;
    let json_mapping = |name: &str, value: &str| {
        AWKWARD_MAPPINGS.replacen(
            "mappings = [\n",
            &format!("mappings = [\n  {{ name = \"{name}\", value = \"{value}\" }},\n"),
            1,
        )
    };
    let mut config = postback(
        "Json",
        &receiver.url("/json"),
        &format!(
            "{routes}\n{}",
            json_mapping("header:Content-Type", "application/json; charset=utf-8")
        ),
    );
    // Name and value of the header are matched ignoring case.
    config += &postback(
        "Json shouting",
        &receiver.url("/json-shouting"),
        &format!(
            "{routes}\n{}",
            json_mapping("header:content-type", "Application/JSON")
        ),
    );
    let scratch = Scratch::new(&config);
    scratch.write_events("events.jsonl", &[awkward_order()]);

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let expected: Vec<(String, Value)> = awkward_pairs()
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    for (path, content_type) in [
        ("/json", "application/json; charset=utf-8"),
        ("/json-shouting", "Application/JSON"),
    ] {
        let requests = on_path(&receiver, path);
        assert_eq!(requests.len(), 1, "{path}: {requests:#?}");
        let request = &requests[0];
        assert_eq!(request.method, "POST", "{path}");
        assert_eq!(request.query, "", "{path}");
        assert_eq!(request.header("Content-Type"), Some(content_type), "{path}");
        let body = Members::parse(&request.body_text());
        assert_eq!(
            body.0, expected,
            "{path}: keys in mapping order, text values"
        );
    }
    assert_eq!(summary_row(&stdout, "Json").delivered, 1, "{stdout}");
    assert_eq!(
        summary_row(&stdout, "Json shouting").delivered,
        1,
        "{stdout}"
    );
}

#[test]
fn http_method_pseudo_headers_pick_verb_and_parameter_place() {
    let receiver = Receiver::start_blocking();
    let routes = r#"routes = [ { triggers = ["Partial"] } ]"#;
    let profile = |name: &str, path: &str, headers: &str| {
        let mappings = format!(
            "mappings = [\n  {{ name = \"order_id\", field = \"orderId\" }},\n{headers}\n  \
             {{ name = \"name\", value = \"[firstName] [lastName]\" }},\n]"
        );
        postback(name, &receiver.url(path), &format!("{routes}\n{mappings}"))
    };
    let config = [
        profile(
            "Put",
            "/put",
            r#"  { name = "header:httpMethod", value = "PUT" },"#,
        ),
        profile(
            "Post in url",
            "/post-in-url",
            r#"  { name = "header:httpMethodType", value = "GET" },
  { name = "header:X-Source", value = "crm" },"#,
        ),
        profile(
            "Delete in url",
            "/delete",
            r#"  { name = "header:httpMethod", value = "delete" },
  { name = "header:httpMethodType", value = "GET" },"#,
        ),
    ]
    .concat();
    let scratch = Scratch::new(&config);
    scratch.write_events("events.jsonl", &[event("M-1", "Partial", json!({}))]);

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let fields = pairs(&[("order_id", "M-1"), ("name", "Jessica Smith")]);
    let put = on_path(&receiver, "/put");
    assert_eq!(put.len(), 1, "{put:#?}");
    assert_eq!(put[0].method, "PUT");
    assert_eq!(put[0].query, "");
    assert_eq!(
        put[0].form_pairs(),
        fields,
        "PUT carries the fields in its body"
    );

    let post = on_path(&receiver, "/post-in-url");
    assert_eq!(post.len(), 1, "{post:#?}");
    assert_eq!(post[0].method, "POST", "a header makes it a POST");
    assert_eq!(
        post[0].query_pairs(),
        fields,
        "httpMethodType GET: fields in the URL"
    );
    assert!(post[0].body.is_empty(), "{:?}", post[0]);
    assert_eq!(post[0].header("X-Source"), Some("crm"));

    let delete = on_path(&receiver, "/delete");
    assert_eq!(delete.len(), 1, "{delete:#?}");
    assert_eq!(delete[0].method, "DELETE");
    assert_eq!(delete[0].query_pairs(), fields);

    for request in [&put[0], &post[0], &delete[0]] {
        let names: Vec<&str> = request.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            !names.contains(&"httpmethod") && !names.contains(&"httpmethodtype"),
            "pseudo-headers are not sent: {names:?}"
        );
    }
    for profile in ["Put", "Post in url", "Delete in url"] {
        assert_eq!(summary_row(&stdout, profile).delivered, 1, "{stdout}");
    }
}

#[test]
fn body_rules_retry_an_error_answer_and_count_a_duplicate_as_delivered() {
    let receiver = Receiver::start_blocking();
    receiver.respond("/leads", Reply::ok().body("ERROR: invalid phone number"));
    receiver.respond("/leads", Reply::ok().body("SUCCESS lead 1234"));
    receiver.respond("/dupes", Reply::ok().body("DUPLICATE lead"));
    receiver.respond("/dupes", Reply::status(409).body("DUPLICATE lead"));
    let routes = r#"routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "order_id", field = "orderId" } ]"#;
    let config = [
        postback(
            "Leads",
            &receiver.url("/leads"),
            &format!("success_body = \"^SUCCESS\"\n{routes}"),
        ),
        postback(
            "Dupes",
            &receiver.url("/dupes"),
            &format!("success_body = \"^SUCCESS\"\nduplicate_body = \"DUPLICATE\"\n{routes}"),
        ),
    ]
    .concat();
    let scratch = Scratch::new(&config);
    let events: Vec<Value> = ["B-1", "B-2"]
        .iter()
        .map(|id| event(id, "Partial", json!({})))
        .collect();
    scratch.write_events("events.jsonl", &events);

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    assert_eq!(on_path(&receiver, "/leads").len(), 2);
    assert_eq!(on_path(&receiver, "/dupes").len(), 2);
    let leads = summary_row(&stdout, "Leads");
    assert_eq!(
        (leads.delivered, leads.retrying),
        (1, 1),
        "the 200 saying ERROR is retried, the one saying SUCCESS delivered:\n{stdout}"
    );
    let notes = summary_notes(&stdout, "Leads").join("\n");
    assert!(
        notes.contains("ERROR: invalid phone number"),
        "the last error is shown:\n{stdout}"
    );
    let dupes = summary_row(&stdout, "Dupes");
    assert_eq!(
        (
            dupes.duplicate,
            dupes.delivered,
            dupes.retrying,
            dupes.failed
        ),
        (2, 0, 0, 0),
        "a 200 and a 409 saying DUPLICATE both count as delivered:\n{stdout}"
    );
}

/// Runs the exporter without `--once` against a receiver whose first answer is `first`, waits
/// for the second attempt, stops the exporter with Ctrl-C, and checks it was delivered.
fn retries_until_accepted(first: Reply) {
    let receiver = Receiver::start_blocking();
    receiver.respond("/lead", first);
    let scratch = one_lead(&lead_profile(&receiver.url("/lead"), ""));

    let running = scratch.spawn(&WORK_THE_QUEUE);
    let requests = receiver.wait_for_requests_blocking(2, ARRIVAL_TIMEOUT);
    running.interrupt();
    let output = running.wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&output);

    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let row = summary_row(&stdout, "Leads");
    assert_eq!((row.delivered, row.retrying), (1, 0), "{stdout}\n{stderr}");
    assert_eq!(
        receiver.requests().len(),
        2,
        "no attempt after the accepted one"
    );
    let keys: Vec<String> = requests.iter().map(idempotency_key).collect();
    assert!(!keys[0].is_empty());
    assert_eq!(keys[0], keys[1], "every attempt carries the delivery's key");
    for request in &requests {
        assert_eq!(request.query_pairs(), pairs(&[("order_id", "L-1")]));
    }
}

#[test]
fn retries_after_a_server_error_with_the_same_idempotency_key() {
    retries_until_accepted(Reply::status(500).body("database is down"));
}

#[test]
fn retries_after_a_dropped_connection_with_the_same_idempotency_key() {
    retries_until_accepted(Reply::drop_connection());
}

#[test]
fn a_restart_delivers_queued_retries_once_with_their_first_key() {
    let receiver = Receiver::start_blocking();
    receiver.set_default(Reply::status(500).body("maintenance"));
    let rest = r#"routes = [ { triggers = ["New Sale"] } ]
mappings = [ { name = "order_id", field = "orderId" } ]"#;
    let scratch = Scratch::new(&postback("Sales", &receiver.url("/sales"), rest));
    let orders = ["Q-1", "Q-2", "Q-3"];
    let events: Vec<Value> = orders
        .iter()
        .map(|id| event(id, "New Sale", json!({})))
        .collect();
    scratch.write_events("events.jsonl", &events);

    let (first, _) = run_once(&scratch, &["--input", "events.jsonl"]);
    let row = summary_row(&first, "Sales");
    assert_eq!((row.delivered, row.retrying), (0, 3), "{first}");
    assert!(
        summary_notes(&first, "Sales").join("\n").contains("500"),
        "the last error is shown:\n{first}"
    );
    assert_eq!(receiver.requests().len(), 3);

    // The retries are due 0.2 s after the first attempts; wait well past that.
    std::thread::sleep(Duration::from_secs(1));
    receiver.set_default(Reply::ok());
    let (second, _) = run_once(&scratch, &[]);

    let row = summary_row(&second, "Sales");
    assert_eq!(
        (row.delivered, row.retrying, row.failed),
        (3, 0, 0),
        "{second}"
    );
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        6,
        "one attempt per run per order: {requests:#?}"
    );
    for order in orders {
        let attempts: Vec<&ReceivedRequest> = requests
            .iter()
            .filter(|r| pair(&r.query_pairs(), "order_id") == order)
            .collect();
        assert_eq!(attempts.len(), 2, "{order}: {attempts:#?}");
        assert_eq!(
            idempotency_key(attempts[0]),
            idempotency_key(attempts[1]),
            "{order}: the retry after the restart keeps the key"
        );
    }

    let (third, _) = run_once(&scratch, &["--input", "events.jsonl"]);
    assert_eq!(
        receiver.requests().len(),
        6,
        "nothing is sent twice:\n{third}"
    );
    assert!(
        third.contains("3 already in the store"),
        "importing again is recognised:\n{third}"
    );
}

#[test]
fn sends_an_event_repeated_in_the_input_once() {
    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&lead_profile(&receiver.url("/lead"), ""));
    let partial = event("L-1", "Partial", json!({}));
    // The same order, trigger and dateUpdated is the same event, even respelled.
    let respelled = event("L-1", "partial", json!({ "firstName": "Jess" }));
    let events = [partial.clone(), partial, respelled];
    scratch.write_events("events.jsonl", &events);

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    assert_eq!(receiver.requests().len(), 1, "{:#?}", receiver.requests());
    assert!(stdout.contains("Imported 1 of 3 events"), "{stdout}");
    assert!(stdout.contains("2 already in the store"), "{stdout}");
    assert_eq!(summary_row(&stdout, "Leads").delivered, 1, "{stdout}");
}

#[test]
fn partial_whose_order_became_a_sale_is_superseded_unless_recheck_is_off() {
    let receiver = Receiver::start_blocking();
    let rest = r#"routes = [ { triggers = ["Partial"] } ]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "trigger", field = "customerType" },
]"#;
    let config = [
        postback("Partials", &receiver.url("/partials"), rest),
        postback(
            "Partials unchecked",
            &receiver.url("/unchecked"),
            &format!("recheck = false\n{rest}"),
        ),
    ]
    .concat();
    let scratch = Scratch::new(&config);
    let updated = json!({ "dateUpdated": "2026-11-02 06:05:00" });
    scratch.write_events(
        "events.jsonl",
        &[
            event("S-1", "Partial", json!({})),
            event("S-2", "Partial", json!({})),
            event("S-1", "New Sale", updated),
        ],
    );

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let sent = |path| -> Vec<(String, String)> {
        let requests = on_path(&receiver, path);
        requests
            .iter()
            .map(|r| {
                let query = r.query_pairs();
                (
                    pair(&query, "order_id").into(),
                    pair(&query, "trigger").into(),
                )
            })
            .collect()
    };
    assert_eq!(
        sent("/partials"),
        pairs(&[("S-2", "Partial")]),
        "S-1 became a sale"
    );
    let mut unchecked = sent("/unchecked");
    unchecked.sort();
    assert_eq!(unchecked, pairs(&[("S-1", "Partial"), ("S-2", "Partial")]));
    let partials = summary_row(&stdout, "Partials");
    assert_eq!(
        (partials.delivered, partials.superseded),
        (1, 1),
        "{stdout}"
    );
    let unchecked = summary_row(&stdout, "Partials unchecked");
    assert_eq!(
        (unchecked.delivered, unchecked.superseded),
        (2, 0),
        "{stdout}"
    );
}

#[test]
fn never_sends_test_card_orders() {
    let receiver = Receiver::start_blocking();
    let rest = r#"routes = [ { triggers = ["New Sale"] } ]
mappings = [ { name = "order_id", field = "orderId" } ]"#;
    let config = format!(
        "test_cards = [\"1111\"]\n\n{}",
        postback("Sales", &receiver.url("/sales"), rest)
    );
    let scratch = Scratch::new(&config);
    let sale = |id: &str, card_type: &str, last4: &str| {
        event(
            id,
            "New Sale",
            json!({ "cardType": card_type, "cardLast4": last4 }),
        )
    };
    scratch.write_events(
        "events.jsonl",
        &[
            sale("T-1", "TESTCARD", "0000"),
            sale("T-2", "testcard", "0000"),
            sale("T-3", " TestCard ", "0000"),
            sale("T-4", "VISA", "1111"),
            sale("REAL-1", "VISA", "4242"),
        ],
    );

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let sent: Vec<String> = on_path(&receiver, "/sales")
        .iter()
        .map(|r| pair(&r.query_pairs(), "order_id").to_owned())
        .collect();
    assert_eq!(sent, ["REAL-1"]);
    let row = summary_row(&stdout, "Sales");
    assert_eq!((row.delivered, row.test_orders), (1, 4), "{stdout}");
    assert_eq!(
        (row.scheduled, row.retrying, row.failed),
        (0, 0, 0),
        "{stdout}"
    );
}

#[test]
fn delayed_profile_schedules_instead_of_sending() {
    let receiver = Receiver::start_blocking();
    let rest = r#"delay_minutes = 15
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "order_id", field = "orderId" } ]"#;
    let scratch = Scratch::new(&postback("Call center", &receiver.url("/cc"), rest));
    scratch.write_events("events.jsonl", &[event("D-1", "Partial", json!({}))]);

    let before = SystemTime::now();
    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);
    let after = SystemTime::now();

    assert!(receiver.requests().is_empty(), "{:#?}", receiver.requests());
    let row = summary_row(&stdout, "Call center");
    assert_eq!((row.delivered, row.scheduled), (0, 1), "{stdout}");
    let notes = summary_notes(&stdout, "Call center");
    let due = notes
        .iter()
        .find_map(|n| n.split("next due ").nth(1))
        .unwrap_or_else(|| panic!("no next due time:\n{stdout}"));
    let delay = Duration::from_secs(15 * 60);
    let (earliest, latest) = (utc_text(before + delay), utc_text(after + delay));
    assert!(
        earliest.as_str() <= due && due <= latest.as_str(),
        "due {due}, expected between {earliest} and {latest}"
    );
}

#[test]
fn delivers_an_orders_events_in_arrival_order() {
    let receiver = Receiver::start_blocking();
    let rest = r#"recheck = false
routes = [ { triggers = ["New Sale", "Upsell", "Recurring Order"] } ]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "trigger", field = "customerType" },
]"#;
    let scratch = Scratch::new(&postback("Orders", &receiver.url("/orders"), rest));
    let at = |minute: u32| json!({ "dateUpdated": format!("2026-11-02 06:{minute:02}:00") });
    let events = [
        event("A", "New Sale", at(1)),
        event("B", "New Sale", at(2)),
        event("A", "Upsell", at(3)),
        event("A", "Recurring Order", at(4)),
        event("B", "Upsell", at(5)),
    ];
    scratch.write_events("events.jsonl", &events);

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let mut arrived: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in on_path(&receiver, "/orders") {
        let query = request.query_pairs();
        let order = pair(&query, "order_id").to_owned();
        arrived
            .entry(order)
            .or_default()
            .push(pair(&query, "trigger").to_owned());
    }
    assert_eq!(arrived["A"], ["New Sale", "Upsell", "Recurring Order"]);
    assert_eq!(arrived["B"], ["New Sale", "Upsell"]);
    assert_eq!(summary_row(&stdout, "Orders").delivered, 5, "{stdout}");
}

#[test]
fn holds_an_orders_later_event_while_an_earlier_one_is_retrying() {
    let receiver = Receiver::start_blocking();
    receiver.respond("/orders", Reply::status(503));
    let rest = r#"recheck = false
routes = [ { triggers = ["New Sale", "Upsell"] } ]
mappings = [
  { name = "order_id", field = "orderId" },
  { name = "trigger", field = "customerType" },
]"#;
    let scratch = Scratch::new(&postback("Orders", &receiver.url("/orders"), rest));
    let updated = json!({ "dateUpdated": "2026-11-02 06:09:00" });
    let events = [
        event("H-1", "New Sale", json!({})),
        event("H-1", "Upsell", updated),
    ];
    scratch.write_events("events.jsonl", &events);

    let (first, _) = run_once(&scratch, &["--input", "events.jsonl"]);
    let row = summary_row(&first, "Orders");
    assert_eq!((row.retrying, row.scheduled), (1, 1), "{first}");
    // The retry is due 0.2 s after the first attempt; wait well past that.
    std::thread::sleep(Duration::from_secs(1));
    let (second, _) = run_once(&scratch, &[]);

    let triggers: Vec<String> = on_path(&receiver, "/orders")
        .iter()
        .map(|r| pair(&r.query_pairs(), "trigger").to_owned())
        .collect();
    assert_eq!(triggers, ["New Sale", "New Sale", "Upsell"]);
    assert_eq!(summary_row(&second, "Orders").delivered, 2, "{second}");
}

#[test]
fn a_killed_exporter_resends_in_flight_deliveries_with_the_same_key() {
    let slow = Receiver::start_blocking();
    slow.set_default(Reply::ok().delay(Duration::from_secs(3)));
    let rest = r#"routes = [ { triggers = ["New Sale"] } ]
mappings = [ { name = "order_id", field = "orderId" } ]"#;
    // The slow answers must not time out: the process is killed while they are pending.
    let config =
        |url: &str| postback("Sales", url, rest).replace("timeout_secs = 2", "timeout_secs = 10");
    let scratch = Scratch::new(&config(&slow.url("/sales")));
    let orders: Vec<String> = (1..=20).map(|n| format!("K-{n}")).collect();
    let events: Vec<Value> = orders
        .iter()
        .map(|id| event(id, "New Sale", json!({})))
        .collect();
    scratch.write_events("events.jsonl", &events);

    let mut running = scratch.spawn(&[
        "run",
        "--config",
        "exporter.toml",
        "--input",
        "events.jsonl",
    ]);
    slow.wait_for_requests_blocking(1, ARRIVAL_TIMEOUT);
    running.kill();

    let fast = Receiver::start_blocking();
    scratch.write("exporter.toml", &config(&fast.url("/sales")));
    let (stdout, _) = run_once(&scratch, &[]);

    assert_eq!(summary_row(&stdout, "Sales").delivered, 20, "{stdout}");
    let resent: HashMap<String, String> = fast
        .requests()
        .iter()
        .map(|r| {
            (
                pair(&r.query_pairs(), "order_id").to_owned(),
                idempotency_key(r),
            )
        })
        .collect();
    assert_eq!(
        fast.requests().len(),
        20,
        "each order once after the restart"
    );
    let expected: HashSet<&String> = orders.iter().collect();
    assert_eq!(resent.keys().collect::<HashSet<_>>(), expected);
    let in_flight = slow.requests();
    assert!(!in_flight.is_empty());
    for request in &in_flight {
        let query = request.query_pairs();
        let order = pair(&query, "order_id");
        assert_eq!(
            resent[order],
            idempotency_key(request),
            "{order} was sent again with another key"
        );
    }
}

#[test]
fn honours_retry_after_between_attempts() {
    let receiver = Receiver::start_blocking();
    receiver.respond("/lead", Reply::status(503).header("Retry-After", "2"));
    let scratch = one_lead(&lead_profile(&receiver.url("/lead"), ""));

    let running = scratch.spawn(&WORK_THE_QUEUE);
    receiver.wait_for_requests_blocking(1, ARRIVAL_TIMEOUT);
    let first = Instant::now();
    receiver.wait_for_requests_blocking(2, ARRIVAL_TIMEOUT);
    let waited = first.elapsed();
    running.interrupt();
    let output = running.wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&output);

    // Without the header the retry would come after retry_initial_secs, 0.2 s. The margin
    // allows for noticing the first request late.
    assert!(
        waited >= Duration::from_millis(1500),
        "the second attempt came {waited:?} after the first"
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(summary_row(&stdout, "Leads").delivered, 1, "{stdout}");
}

#[test]
fn parks_a_delivery_as_failed_after_max_attempts() {
    let receiver = Receiver::start_blocking();
    receiver.set_default(Reply::status(500).body("still broken"));
    let scratch = one_lead(&lead_profile(&receiver.url("/lead"), "max_attempts = 2"));

    let (first, _) = run_once(&scratch, &["--input", "events.jsonl"]);
    let row = summary_row(&first, "Leads");
    assert_eq!((row.retrying, row.failed), (1, 0), "{first}");
    // Each retry is due 0.2 s after the attempt before; wait well past that.
    std::thread::sleep(Duration::from_secs(1));
    let (second, _) = run_once(&scratch, &[]);
    let row = summary_row(&second, "Leads");
    assert_eq!((row.retrying, row.failed), (0, 1), "{second}");
    let notes = summary_notes(&second, "Leads").join("\n");
    assert!(notes.contains("still broken"), "the last error:\n{second}");
    std::thread::sleep(Duration::from_secs(1));
    let (third, _) = run_once(&scratch, &[]);

    assert_eq!(
        receiver.requests().len(),
        2,
        "a parked delivery is not tried again"
    );
    assert_eq!(summary_row(&third, "Leads").failed, 1, "{third}");
}

#[test]
fn does_not_follow_redirects() {
    let receiver = Receiver::start_blocking();
    let elsewhere = receiver.url("/elsewhere");
    receiver.respond("/lead", Reply::status(302).header("Location", &elsewhere));
    let scratch = one_lead(&lead_profile(&receiver.url("/lead"), ""));

    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    assert!(on_path(&receiver, "/elsewhere").is_empty());
    assert_eq!(summary_row(&stdout, "Leads").retrying, 1, "{stdout}");
    let notes = summary_notes(&stdout, "Leads").join("\n");
    assert!(
        notes.contains(&elsewhere),
        "the error names the location:\n{stdout}"
    );
}

#[test]
fn retries_a_request_that_outlasts_timeout_secs() {
    let receiver = Receiver::start_blocking();
    receiver.set_default(Reply::ok().delay(Duration::from_secs(10)));
    let config = lead_profile(&receiver.url("/lead"), "");
    let scratch = one_lead(&config.replace("timeout_secs = 2", "timeout_secs = 0.5"));

    let started = Instant::now();
    let (stdout, _) = run_once(&scratch, &["--input", "events.jsonl"]);

    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "gave up at the timeout, not after {took:?}"
    );
    let row = summary_row(&stdout, "Leads");
    assert_eq!((row.delivered, row.retrying), (0, 1), "{stdout}");
    let notes = summary_notes(&stdout, "Leads").join("\n");
    assert!(notes.contains("timed out"), "{stdout}");
}

#[test]
fn ctrl_c_lets_the_request_in_flight_finish() {
    let receiver = Receiver::start_blocking();
    receiver.respond("/lead", Reply::ok().delay(Duration::from_secs(1)));
    let scratch = one_lead(&lead_profile(&receiver.url("/lead"), ""));

    let running = scratch.spawn(&WORK_THE_QUEUE);
    receiver.wait_for_requests_blocking(1, ARRIVAL_TIMEOUT);
    running.interrupt();
    let output = running.wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&output);

    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let row = summary_row(&stdout, "Leads");
    assert_eq!((row.delivered, row.retrying), (1, 0), "{stdout}\n{stderr}");
    let (again, _) = run_once(&scratch, &[]);
    assert_eq!(
        receiver.requests().len(),
        1,
        "recorded as delivered:\n{again}"
    );
}

#[test]
fn sends_a_delayed_delivery_once_it_is_due() {
    let receiver = Receiver::start_blocking();
    // 0.02 minutes: due 1.2 s after the event arrived.
    let scratch = one_lead(&lead_profile(
        &receiver.url("/lead"),
        "delay_minutes = 0.02",
    ));

    let started = Instant::now();
    let running = scratch.spawn(&WORK_THE_QUEUE);
    receiver.wait_for_requests_blocking(1, ARRIVAL_TIMEOUT);
    let waited = started.elapsed();
    running.interrupt();
    let output = running.wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&output);

    assert!(
        waited >= Duration::from_millis(1200),
        "sent after {waited:?}"
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(summary_row(&stdout, "Leads").delivered, 1, "{stdout}");
}

#[test]
fn partial_is_superseded_by_a_sale_that_arrives_during_its_delay() {
    let receiver = Receiver::start_blocking();
    // 0.02 minutes: the partial is due 1.2 s after it arrived.
    let config = lead_profile(&receiver.url("/lead"), "delay_minutes = 0.02");
    let scratch = one_lead(&config);
    let updated = json!({ "dateUpdated": "2026-11-02 06:05:00" });
    scratch.write_events("sale.jsonl", &[event("L-1", "New Sale", updated)]);

    let (first, _) = run_once(&scratch, &["--input", "events.jsonl"]);
    assert_eq!(summary_row(&first, "Leads").scheduled, 1, "{first}");
    let (second, _) = run_once(&scratch, &["--input", "sale.jsonl"]);
    // Wait until the partial is due for sure.
    std::thread::sleep(Duration::from_millis(1500));
    let (third, _) = run_once(&scratch, &[]);

    assert!(receiver.requests().is_empty(), "{:#?}", receiver.requests());
    let rows = [summary_row(&second, "Leads"), summary_row(&third, "Leads")];
    let superseded = rows[0].superseded + rows[1].superseded;
    assert_eq!(superseded, 1, "{second}\n{third}");
    assert_eq!(rows[1].scheduled, 0, "{third}");
}

#[test]
fn a_second_exporter_on_the_same_store_stops_with_a_clear_message() {
    let receiver = Receiver::start_blocking();
    // The first exporter stays busy with this answer while the second one starts.
    receiver.respond("/lead", Reply::ok().delay(Duration::from_secs(1)));
    let scratch = one_lead(&lead_profile(&receiver.url("/lead"), ""));
    let running = scratch.spawn(&WORK_THE_QUEUE);
    receiver.wait_for_requests_blocking(1, ARRIVAL_TIMEOUT);

    let mut args = vec!["run", "--once", "--config", "exporter.toml"];
    args.extend(["--input", "events.jsonl"]);
    let second = scratch.spawn(&args).wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&second);

    assert_eq!(second.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("another exporter is already working the store"),
        "{stderr}"
    );
    running.interrupt();
    let first = running.wait(RUN_TIMEOUT);
    let (stdout, stderr) = text(&first);
    assert_eq!(first.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(summary_row(&stdout, "Leads").delivered, 1, "{stdout}");
    assert_eq!(
        receiver.requests().len(),
        1,
        "the second exporter sent nothing"
    );
}

/// The config a new user writes for the CRM's export: five profiles on one receiver.
fn new_user_config(receiver: &Receiver) -> String {
    let partials = receiver.url("/partials.php?source=crm");
    let sales = receiver.url("/sales");
    let declines = receiver.url("/declines");
    let cancels = receiver.url("/cancels");
    format!(
        r#"# Abandoned checkouts of two campaigns, to the call center's lead API.
[[profile]]
name = "Partials postback"
type = "postback"
url = "{partials}"
timeout_secs = 5
routes = [ {{ triggers = ["Partial"], campaigns = [12, "14"] }} ]
mappings = [
  {{ name = "order_id", field = "orderId" }},
  {{ name = "first_name", field = "firstName" }},
  {{ name = "last_name", field = "lastName" }},
  {{ name = "full_name", value = "[firstName] [lastName]" }},
  {{ name = "email", field = "emailAddress" }},
  {{ name = "phone", field = "phoneNumber" }},
  {{ name = "campaign", field = "campaignId" }},
  {{ name = "list_id", value = "400" }},
]

[[profile]]
name = "Sales JSON"
type = "postback"
url = "{sales}"
timeout_secs = 5
routes = [ {{ triggers = ["new_sale", "UPSELL"] }} ]
mappings = [
  {{ name = "header:Content-Type", value = "application/json; charset=utf-8" }},
  {{ name = "order_id", field = "orderId" }},
  {{ name = "type", field = "customerType" }},
  {{ name = "customer", field = "name" }},
  {{ name = "city", field = "city" }},
  {{ name = "total", field = "totalAmount" }},
  {{ name = "campaign", field = "campaignName" }},
]

[[profile]]
name = "Declines form"
type = "postback"
url = "{declines}"
timeout_secs = 5
routes = [ {{ triggers = ["Decline", "rebill-decline"] }} ]
mappings = [
  {{ name = "header:X-Source", value = "crm" }},
  {{ name = "order_id", field = "orderId" }},
  {{ name = "event", field = "customerType" }},
  {{ name = "name", value = "[firstName] [lastName]" }},
  {{ name = "address", field = "address1" }},
  {{ name = "email", field = "emailAddress" }},
]

[[profile]]
name = "Refunds sheet"
type = "csv"
dir = "exports/refunds"
routes = [ {{ triggers = ["Full Refund", "Partial Refund", "Chargeback"] }} ]
mappings = [
  {{ name = "order_id", field = "orderId" }},
  {{ name = "event", field = "customerType" }},
  {{ name = "customer", field = "name" }},
  {{ name = "address", field = "address1" }},
  {{ name = "total", field = "totalAmount" }},
]

[[profile]]
name = "Cancels postback"
type = "postback"
url = "{cancels}"
delay_minutes = 60
routes = [ {{ triggers = ["Cancel"] }} ]
mappings = [ {{ name = "order_id", field = "orderId" }} ]
"#
    )
}

/// Where a column of the new-user config takes its value from, as this test renders it.
#[derive(Clone, Copy)]
enum Source {
    Field(&'static str),
    FullName,
    Text(&'static str),
}

/// One profile of [`new_user_config`], restated for the test's own routing and rendering.
struct Expected {
    name: &'static str,
    triggers: &'static [&'static str],
    campaigns: &'static [&'static str],
    delayed: bool,
    /// The query the profile's URL has of its own, which a GET sends before the fields.
    url_query: &'static [(&'static str, &'static str)],
    columns: &'static [(&'static str, Source)],
}

const NEW_USER_PROFILES: [Expected; 5] = [
    Expected {
        name: "Partials postback",
        triggers: &["Partial"],
        campaigns: &["12", "14"],
        delayed: false,
        url_query: &[("source", "crm")],
        columns: &[
            ("order_id", Source::Field("orderId")),
            ("first_name", Source::Field("firstName")),
            ("last_name", Source::Field("lastName")),
            ("full_name", Source::FullName),
            ("email", Source::Field("emailAddress")),
            ("phone", Source::Field("phoneNumber")),
            ("campaign", Source::Field("campaignId")),
            ("list_id", Source::Text("400")),
        ],
    },
    Expected {
        name: "Sales JSON",
        triggers: &["New Sale", "Upsell"],
        campaigns: &[],
        delayed: false,
        url_query: &[],
        columns: &[
            ("order_id", Source::Field("orderId")),
            ("type", Source::Field("customerType")),
            ("customer", Source::Field("name")),
            ("city", Source::Field("city")),
            ("total", Source::Field("totalAmount")),
            ("campaign", Source::Field("campaignName")),
        ],
    },
    Expected {
        name: "Declines form",
        triggers: &["Decline", "Rebill Decline"],
        campaigns: &[],
        delayed: false,
        url_query: &[],
        columns: &[
            ("order_id", Source::Field("orderId")),
            ("event", Source::Field("customerType")),
            ("name", Source::FullName),
            ("address", Source::Field("address1")),
            ("email", Source::Field("emailAddress")),
        ],
    },
    Expected {
        name: "Refunds sheet",
        triggers: &["Full Refund", "Partial Refund", "Chargeback"],
        campaigns: &[],
        delayed: false,
        url_query: &[],
        columns: &[
            ("order_id", Source::Field("orderId")),
            ("event", Source::Field("customerType")),
            ("customer", Source::Field("name")),
            ("address", Source::Field("address1")),
            ("total", Source::Field("totalAmount")),
        ],
    },
    Expected {
        name: "Cancels postback",
        triggers: &["Cancel"],
        campaigns: &[],
        delayed: true,
        url_query: &[],
        columns: &[("order_id", Source::Field("orderId"))],
    },
];

impl Expected {
    fn routes(&self, event: &Value) -> bool {
        let trigger = trigger_key(event["customerType"].as_str().unwrap_or_default());
        let trigger_matches = self.triggers.iter().any(|t| trigger_key(t) == trigger);
        let campaign = field_text(event, "campaignId");
        let campaign_matches =
            self.campaigns.is_empty() || self.campaigns.contains(&campaign.trim());
        trigger_matches && campaign_matches
    }

    fn render(&self, event: &Value) -> Vec<(String, String)> {
        let value = |source: Source| match source {
            Source::Field(name) => field_text(event, name),
            Source::FullName => {
                let first = field_text(event, "firstName");
                format!("{first} {}", field_text(event, "lastName"))
            }
            Source::Text(text) => text.to_owned(),
        };
        let columns = self.columns.iter();
        columns
            .map(|(name, source)| ((*name).to_owned(), value(*source)))
            .collect()
    }
}

/// A trigger name with case, spaces, `_` and `-` ignored.
fn trigger_key(name: &str) -> String {
    let kept = name.chars().filter(|c| !matches!(c, ' ' | '_' | '-'));
    kept.flat_map(char::to_lowercase).collect()
}

/// A field as export text: strings as they are, numbers as written, missing or null empty.
fn field_text(event: &Value, name: &str) -> String {
    match &event[name] {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn is_test_card(event: &Value) -> bool {
    let card_type = field_text(event, "cardType");
    card_type.trim().eq_ignore_ascii_case("testcard")
}

/// What one profile should do with the CRM export, worked out by the test.
#[derive(Default)]
struct Outcome<'a> {
    sent: Vec<&'a Value>,
    superseded: u64,
    test_orders: u64,
    scheduled: u64,
}

/// The events the store keeps: the first of each (order, trigger, `dateUpdated`), file order.
fn stored_events(all: &[Value]) -> Vec<&Value> {
    let mut seen = HashSet::new();
    let mut stored = Vec::new();
    for event in all {
        let key = (
            field_text(event, "orderId"),
            trigger_key(&field_text(event, "customerType")),
            field_text(event, "dateUpdated"),
        );
        if seen.insert(key) {
            stored.push(event);
        }
    }
    stored
}

/// Routes every stored event: test orders are counted, delayed ones wait, and an event whose
/// order's latest stored event (the last updated, `dateUpdated`, then the last in the file) no
/// longer matches the profile is superseded.
fn expected_outcome<'a>(profile: &Expected, stored: &[&'a Value]) -> Outcome<'a> {
    let mut latest: HashMap<String, usize> = HashMap::new();
    for (index, event) in stored.iter().enumerate() {
        let key = |i: usize| (field_text(stored[i], "dateUpdated"), i);
        let entry = latest.entry(field_text(event, "orderId")).or_insert(index);
        if key(index) > key(*entry) {
            *entry = index;
        }
    }
    let mut outcome = Outcome::default();
    for (index, event) in stored.iter().enumerate() {
        if !profile.routes(event) {
            continue;
        }
        let last = latest[&field_text(event, "orderId")];
        if is_test_card(event) {
            outcome.test_orders += 1;
        } else if profile.delayed {
            outcome.scheduled += 1;
        } else if last != index && !profile.routes(stored[last]) {
            outcome.superseded += 1;
        } else {
            outcome.sent.push(event);
        }
    }
    outcome
}

/// The fields a postback request carried, from its query, form body or JSON body.
fn sent_fields(request: &ReceivedRequest) -> Vec<(String, String)> {
    if request.method == "GET" {
        return request.query_pairs();
    }
    if request.header("Content-Type") == Some("application/x-www-form-urlencoded") {
        return request.form_pairs();
    }
    let members = Members::parse(&request.body_text()).0;
    let text = |value: Value| match value {
        Value::String(text) => text,
        other => panic!("JSON values are text, found {other}"),
    };
    members.into_iter().map(|(k, v)| (k, text(v))).collect()
}

/// Checks that `requests` carry exactly the expected records, each order once.
fn assert_sent(profile: &Expected, expected: &Outcome<'_>, requests: &[ReceivedRequest]) {
    let mut by_order: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for request in requests {
        let fields = sent_fields(request);
        let order = pair(&fields, "order_id").to_owned();
        let again = by_order.insert(order.clone(), fields);
        assert!(again.is_none(), "{}: {order} sent twice", profile.name);
    }
    assert_eq!(by_order.len(), expected.sent.len(), "{}", profile.name);
    for event in &expected.sent {
        let order = field_text(event, "orderId");
        let fields = by_order.get(&order);
        let fields = fields.unwrap_or_else(|| panic!("{}: {order} not sent", profile.name));
        let mut wanted = pairs(profile.url_query);
        wanted.extend(profile.render(event));
        assert_eq!(*fields, wanted, "{}: {order}", profile.name);
    }
}

/// The rows of the one CSV file a `--once` run wrote into `dir`, header first.
fn csv_rows(dir: &std::path::Path) -> Vec<Vec<String>> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("the CSV folder")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "one file, no leftovers: {names:?}");
    assert!(
        names[0].ends_with(".csv") && !names[0].starts_with('.'),
        "{names:?}"
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(dir.join(&names[0]))
        .expect("open the CSV file");
    let rows = reader.records().map(|row| {
        let row = row.expect("a well-formed CSV row");
        row.iter().map(str::to_owned).collect()
    });
    rows.collect()
}

#[test]
fn new_user_run_delivers_the_crm_export_to_five_profiles() {
    let text_of_file = std::fs::read_to_string(orders_file()).expect("the CRM export");
    let all: Vec<Value> = text_of_file
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let stored = stored_events(&all);
    let outcomes: Vec<Outcome<'_>> = NEW_USER_PROFILES
        .iter()
        .map(|profile| expected_outcome(profile, &stored))
        .collect();
    let unmatched = stored
        .iter()
        .filter(|event| !NEW_USER_PROFILES.iter().any(|p| p.routes(event)))
        .count();

    let receiver = Receiver::start_blocking();
    let scratch = Scratch::new(&new_user_config(&receiver));
    let input = orders_file().display().to_string();
    let output = scratch
        .spawn(&[
            "run",
            "--once",
            "--config",
            "exporter.toml",
            "--input",
            &input,
        ])
        .wait(Duration::from_secs(60));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let imported = format!(
        "Imported {} of {} events read from {input}: {} already in the store, 0 bad items \
         skipped, {unmatched} matched no profile.",
        stored.len(),
        all.len(),
        all.len() - stored.len()
    );
    assert!(
        stdout.contains(&imported),
        "expected {imported:?} in:\n{stdout}"
    );

    let paths = ["/partials.php", "/sales", "/declines"];
    for ((profile, expected), path) in NEW_USER_PROFILES.iter().zip(&outcomes).zip(paths) {
        assert_sent(profile, expected, &on_path(&receiver, path));
    }
    for request in on_path(&receiver, "/partials.php") {
        assert_eq!(request.method, "GET");
        assert!(
            request.query.starts_with("source=crm&order_id="),
            "{}",
            request.query
        );
    }
    for request in on_path(&receiver, "/sales") {
        assert_eq!(request.method, "POST");
        let content_type = request.header("Content-Type");
        assert_eq!(content_type, Some("application/json; charset=utf-8"));
    }
    for request in on_path(&receiver, "/declines") {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("X-Source"), Some("crm"));
    }
    assert!(
        on_path(&receiver, "/cancels").is_empty(),
        "the cancels wait an hour"
    );
    let keys: HashSet<String> = receiver.requests().iter().map(idempotency_key).collect();
    assert_eq!(
        keys.len(),
        receiver.requests().len(),
        "one key per delivery"
    );
    let sent = paths
        .iter()
        .map(|p| on_path(&receiver, p).len())
        .sum::<usize>();
    assert_eq!(
        receiver.requests().len(),
        sent,
        "no request to any other path"
    );

    let refunds = &NEW_USER_PROFILES[3];
    let rows = csv_rows(&scratch.path("exports/refunds"));
    let header: Vec<&str> = refunds.columns.iter().map(|(name, _)| *name).collect();
    assert_eq!(rows[0], header);
    let mut written = rows[1..].to_vec();
    let mut expected: Vec<Vec<String>> = outcomes[3]
        .sent
        .iter()
        .map(|event| refunds.render(event).into_iter().map(|(_, v)| v).collect())
        .collect();
    written.sort();
    expected.sort();
    assert_eq!(
        written, expected,
        "the refunds sheet holds exactly the refunds"
    );

    let non_ascii = outcomes[1]
        .sent
        .iter()
        .filter(|event| !field_text(event, "name").is_ascii())
        .count();
    assert!(non_ascii > 0, "the sales include names beyond ASCII");

    for (profile, expected) in NEW_USER_PROFILES.iter().zip(&outcomes) {
        let row = summary_row(&stdout, profile.name);
        let counts = (
            row.delivered,
            row.duplicate,
            row.superseded,
            row.test_orders,
            row.scheduled,
            row.retrying,
            row.failed,
        );
        let wanted = (
            expected.sent.len() as u64,
            0,
            expected.superseded,
            expected.test_orders,
            expected.scheduled,
            0,
            0,
        );
        assert_eq!(counts, wanted, "{}:\n{stdout}", profile.name);
    }
}

#[test]
fn masks_a_token_inside_a_secret_url_and_escapes_control_characters_from_the_target() {
    let receiver = Receiver::start_blocking();
    let echo = "nope: token=urltok-ZXCV-4321 \u{1b}]0;pwned-title\u{7}";
    receiver.set_default(Reply::status(400).body(echo));
    let config = r#"
[[profile]]
name = "Leads"
type = "postback"
url = "env:E2E_SECRET_URL"
max_attempts = 1
routes = [ { triggers = ["Partial"] } ]
mappings = [ { name = "o", field = "orderId" } ]
"#;
    let scratch = Scratch::new(config);
    let events = [json!({"orderId": "A1", "customerType": "Partial"})];
    scratch.write_events("orders.jsonl", &events);
    let url = format!("{}?token=urltok-ZXCV-4321", receiver.url("/lead"));
    let output = scratch
        .command(&[
            "run",
            "--config",
            "exporter.toml",
            "--input",
            "orders.jsonl",
            "--once",
        ])
        .env("E2E_SECRET_URL", &url)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        receiver.requests()[0].query_pairs()[0].1,
        "urltok-ZXCV-4321"
    );
    for shown in [&stdout, &stderr, &scratch.store_rows().join("\n")] {
        assert!(!shown.contains("urltok-ZXCV-4321"), "{shown}");
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{shown:?}"
        );
    }
    assert!(stdout.contains("token=***"), "{stdout}");
}
