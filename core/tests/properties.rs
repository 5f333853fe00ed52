//! Property tests of the template renderer and the route matcher: generated templates, mappings,
//! trigger spellings and campaign ids, each checked against what the docs promise.

use exporter_core::mapping::{parse_template, render};
use exporter_core::trigger::KNOWN;
use exporter_core::{Mapping, OrderEvent, Route, Trigger};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

/// 256 cases a property; no regression files, so a run leaves nothing behind to commit.
fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// An event with the trigger `trigger` and the extra fields `extra`.
fn event_with(trigger: &str, extra: Map<String, Value>) -> OrderEvent {
    let mut fields = extra;
    fields.insert("orderId".into(), json!("A1"));
    fields.insert("customerType".into(), json!(trigger));
    OrderEvent::from_value(Value::Object(fields)).unwrap()
}

fn event() -> OrderEvent {
    event_with("Partial", Map::new())
}

/// Text with the characters templates and encoders care about more often than chance gives.
fn text() -> impl Strategy<Value = String> {
    let special = ["[", "]", "[[", "]]", " ", ".", "\t", "\n", "é", "🎉", "\0"];
    let piece = prop_oneof![
        select(special.to_vec()).prop_map(String::from),
        any::<char>().prop_map(String::from),
        "[a-z]{1,3}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// Text without `[`, so a template of it is all literal.
fn literal() -> impl Strategy<Value = String> {
    text().prop_map(|text| text.replace('[', ""))
}

/// A top-level field name a `[token]` can reach: no brackets, no dots, no spaces around it,
/// and neither of the two fields every event has.
fn field_name() -> impl Strategy<Value = String> {
    text()
        .prop_map(|text| text.replace(['[', ']', '.'], "").trim().to_owned())
        .prop_filter("a name", |name| {
            !name.is_empty() && name != "orderId" && name != "customerType"
        })
}

/// A trigger as an operator or a CRM might spell it: each letter in either case, its own
/// spaces and `-` dropped, and at every gap, half the time, some spaces, `_` or `-`.
fn spelling(trigger: &'static str) -> impl Strategy<Value = String> {
    let chars: Vec<char> = trigger.chars().collect();
    let len = chars.len();
    let separator = prop_oneof![Just(""), select(vec![" ", "_", "-", "  ", "_-", " - "])];
    let separators = prop::collection::vec(separator, len + 1);
    let upper = prop::collection::vec(any::<bool>(), len);
    (separators, upper).prop_map(move |(separators, upper)| {
        let mut out = String::from(separators[0]);
        for (i, c) in chars.iter().enumerate() {
            if !matches!(c, ' ' | '-') {
                let c = if upper[i] {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                };
                out.push(c);
            }
            out.push_str(separators[i + 1]);
        }
        out
    })
}

/// A known trigger and two spellings of it.
fn two_spellings() -> impl Strategy<Value = (&'static str, String, String)> {
    select(KNOWN).prop_flat_map(|known| (Just(known), spelling(known), spelling(known)))
}

/// Some of the known triggers, and a trigger outside them: another known one in any spelling,
/// or text that is no known trigger at all.
fn triggers_and_another() -> impl Strategy<Value = (Vec<&'static str>, String)> {
    prop::sample::subsequence(KNOWN, 1..KNOWN.len()).prop_flat_map(|triggers| {
        let others: Vec<&'static str> = KNOWN
            .iter()
            .copied()
            .filter(|known| !triggers.contains(known))
            .collect();
        let unknown = text().prop_filter("an unknown trigger", |text| {
            !text.trim().is_empty() && Trigger::new(text).canonical().is_none()
        });
        let other = prop_oneof![select(others).prop_flat_map(spelling), unknown];
        (Just(triggers), other)
    })
}

fn route(triggers: &[&str], campaigns: Vec<String>) -> Route {
    Route {
        triggers: triggers.iter().map(|t| Trigger::new(t)).collect(),
        campaigns,
        ..Route::default()
    }
}

/// What a generated mapping should render as.
#[derive(Debug, Clone)]
enum Kind {
    /// A field mapping of an event field holding this text.
    Field(String),
    /// A template of literal text (its `[` escaped).
    Literal(String),
    /// A secret.
    Secret(String),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        text().prop_map(Kind::Field),
        text().prop_map(Kind::Literal),
        text().prop_map(Kind::Secret),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// A template with no `[` is literal text: it renders to itself.
    #[test]
    fn literal_templates_render_to_themselves(text in literal()) {
        let mapping = Mapping::template("note", &text).unwrap();
        prop_assert_eq!(mapping.render(&event()).value, text);
    }

    /// Escaping any text by doubling every `[` gives a template that renders to the text.
    #[test]
    fn doubled_brackets_round_trip(text in text()) {
        let template = text.replace('[', "[[");
        let mapping = Mapping::template("note", &template).unwrap();
        prop_assert_eq!(mapping.render(&event()).value, text);
    }

    /// A `[field]` token, with spaces inside the brackets or not, renders as the field's text
    /// between the literal text around it.
    #[test]
    fn a_field_token_renders_the_fields_text(
        before in literal(),
        after in literal(),
        name in field_name(),
        value in prop_oneof![text().prop_map(Value::from), any::<i64>().prop_map(Value::from)],
        pad in select(vec!["", " ", "  \t"]),
    ) {
        let expected_value = match &value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let event = event_with("Partial", Map::from_iter([(name.clone(), value)]));
        let template = format!("{before}[{pad}{name}{pad}]{after}");
        let mapping = Mapping::template("note", &template).unwrap();
        prop_assert_eq!(mapping.render(&event).value, format!("{before}{expected_value}{after}"));
    }

    /// A token of a field the event lacks renders as the mapping's default.
    #[test]
    fn a_missing_field_token_renders_the_default(
        name in field_name(),
        default in text(),
        before in literal(),
    ) {
        let template = format!("{before}[{name}]");
        let mapping = Mapping::template("note", &template).unwrap().with_default(default.clone());
        prop_assert_eq!(mapping.render(&event()).value, format!("{before}{default}"));
    }

    /// Parsing any text returns parts or an error, never panics; an error's column points at
    /// the `[` that opened the broken token; parts that parsed render without panicking.
    #[test]
    fn parsing_any_text_never_panics(template in prop_oneof![text(), any::<String>()]) {
        use exporter_core::MappingError::{EmptyToken, UnclosedToken};
        match parse_template("note", &template) {
            Ok(_) => {
                let mapping = Mapping::template("note", &template).unwrap();
                mapping.render(&event());
            }
            Err(UnclosedToken { column, .. } | EmptyToken { column, .. }) => {
                prop_assert_eq!(template.chars().nth(column - 1), Some('['));
            }
            Err(_) => {}
        }
    }

    /// Rendering a profile gives one field per mapping, in mapping order, each with its
    /// mapping's name and value, secrets flagged; the record carries the event's order id and
    /// the delivery id.
    #[test]
    fn every_mapping_appears_once_in_order(
        kinds in prop::collection::vec((field_name(), kind()), 0..8),
        delivery_id in text(),
    ) {
        let mut extra = Map::new();
        let mut mappings = Vec::new();
        for (i, (name, kind)) in kinds.iter().enumerate() {
            let mapping = match kind {
                Kind::Field(value) => {
                    let path = format!("f{i}");
                    extra.insert(path.clone(), json!(value));
                    Mapping::field(name, &path)
                }
                Kind::Literal(text) => Mapping::template(name, &text.replace('[', "[[")),
                Kind::Secret(value) => Mapping::secret(name, value.clone()),
            };
            mappings.push(mapping.unwrap());
        }
        let record = render(&mappings, &event_with("Partial", extra), &delivery_id);

        prop_assert_eq!(record.fields.len(), kinds.len());
        prop_assert_eq!(&record.order_id, "A1");
        prop_assert_eq!(&record.delivery_id, &delivery_id);
        for (field, (name, kind)) in record.fields.iter().zip(&kinds) {
            let (value, secret) = match kind {
                Kind::Field(v) | Kind::Literal(v) => (v, false),
                Kind::Secret(v) => (v, true),
            };
            prop_assert_eq!(&field.name, name);
            prop_assert_eq!(&field.value, value);
            prop_assert_eq!(field.secret, secret);
        }
    }

    /// A route matches an event whatever the case and the spaces, `_` and `-` in either's
    /// spelling of the trigger.
    #[test]
    fn trigger_spellings_match_alike((known, route_spelling, event_spelling) in two_spellings()) {
        let event = event_with(&event_spelling, Map::new());
        prop_assert!(route(&[known], Vec::new()).matches(&event));
        prop_assert!(route(&[&route_spelling], Vec::new()).matches(&event));
        prop_assert_eq!(Trigger::new(&route_spelling).canonical(), Some(known));
    }

    /// A campaign id sent as a number or as a string (spaces around it allowed) matches the
    /// same routes: those that list it.
    #[test]
    fn campaign_numbers_and_strings_agree(
        listed in prop::collection::vec(prop_oneof![0i64..20, any::<i64>()], 1..4),
        id in prop_oneof![0i64..20, any::<i64>()],
        pad in select(vec!["", " ", "\t "]),
    ) {
        let route = route(&["Partial"], listed.iter().map(i64::to_string).collect());
        let campaign = |value: Value| Map::from_iter([("campaignId".to_owned(), value)]);
        let as_number = event_with("Partial", campaign(json!(id)));
        let as_string = event_with("Partial", campaign(json!(format!("{pad}{id}{pad}"))));

        let expected = listed.contains(&id);
        prop_assert_eq!(route.matches(&as_number), expected);
        prop_assert_eq!(route.matches(&as_string), expected);
    }

    /// An event whose trigger is not one of a route's triggers never matches it, even when the
    /// route takes any campaign, product and field.
    #[test]
    fn other_triggers_never_match(
        (triggers, other) in triggers_and_another(),
        campaign in any::<i64>(),
    ) {
        let fields = Map::from_iter([("campaignId".to_owned(), json!(campaign))]);
        prop_assert!(!route(&triggers, Vec::new()).matches(&event_with(&other, fields)));
    }
}
