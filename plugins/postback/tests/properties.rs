//! Property tests of the request builder: whatever names and values a record holds, the query
//! string, the form body and the JSON body carry exactly those pairs, in field order.

use std::fmt;

use exporter_core::{Field, Record};
use exporter_postback::request::{HttpMethod, PostbackRequest, Values, build_request};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::Config;
use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use url::{Url, form_urlencoded};

/// 256 cases a property; no regression files, so a run leaves nothing behind to commit.
fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

type Pairs = Vec<(String, String)>;

/// Text rich in what URLs and JSON treat specially: `&`, `+`, `=`, `#`, `%`, `?`, spaces,
/// quotes, backslashes, emoji, control characters, and any other character.
fn text() -> impl Strategy<Value = String> {
    let special = [
        "&", "+", "=", "#", "%", "%2", "%25", "?", "/", ";", " ", "  ", "\"", "'", "\\", "é",
        "日本", "🎉", "👍🏽", "\0", "\r\n", "\t", "\u{7f}", "\u{2028}", "header:",
    ];
    let piece = prop_oneof![
        select(special.to_vec()).prop_map(String::from),
        any::<char>().prop_map(String::from),
        "[a-zA-Z0-9]{1,4}",
    ];
    let built = prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat());
    prop_oneof![4 => built, 1 => any::<String>()]
}

/// A parameter name: any text the builder does not take for a `header:NAME` field.
fn param_name() -> impl Strategy<Value = String> {
    text().prop_filter("a parameter, not a header", |name| {
        !name
            .get(..7)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("header:"))
    })
}

/// Parameters, with repeated names now and then.
fn params() -> impl Strategy<Value = Pairs> {
    let pair = (param_name(), text());
    prop::collection::vec(pair, 0..8).prop_flat_map(|pairs| {
        let len = pairs.len();
        let repeats = prop::collection::vec((0..len.max(1), 0..len.max(1)), 0..2);
        (Just(pairs), repeats).prop_map(|(mut pairs, repeats)| {
            for (from, to) in repeats {
                if from < pairs.len() && to < pairs.len() {
                    pairs[to].0 = pairs[from].0.clone();
                }
            }
            pairs
        })
    })
}

/// The profile URL: with no query, an empty one, an encoded one or a raw one, and sometimes
/// a fragment.
fn base_url() -> impl Strategy<Value = Url> {
    let encoded = prop::collection::vec((text(), text()), 1..3).prop_map(|pairs| {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("?{query}")
    });
    let query = prop_oneof![
        Just(String::new()),
        Just("?".to_owned()),
        select(vec![
            "?source=crm",
            "?k=v&",
            "?a",
            "?a=1&&b=%2B",
            "?x=%zz&y"
        ])
        .prop_map(String::from),
        encoded,
    ];
    let fragment = select(vec!["", "#top", "#a=b&c"]);
    (query, fragment).prop_map(|(query, fragment)| {
        let url = format!("https://leads.example.com/api/lead{query}{fragment}");
        Url::parse(&url).unwrap()
    })
}

fn field(name: &str, value: &str) -> Field {
    Field {
        name: name.to_owned(),
        value: value.to_owned(),
        secret: false,
    }
}

/// A record of the parameters with the header fields put in at the given positions.
fn record(params: &Pairs, headers: &[(usize, &str, &str)]) -> Record {
    let mut fields: Vec<Field> = params.iter().map(|(n, v)| field(n, v)).collect();
    for (at, name, value) in headers {
        fields.insert((*at).min(fields.len()), field(name, value));
    }
    Record {
        delivery_id: "d-1".into(),
        order_id: "A1".into(),
        fields,
    }
}

fn build(url: &Url, record: &Record) -> PostbackRequest {
    build_request(url, record, Values::Sent).unwrap()
}

fn decode(text: &str) -> Pairs {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

fn header<'a>(request: &'a PostbackRequest, name: &str) -> Option<&'a str> {
    let found = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name));
    found.map(|(_, value)| value.as_str())
}

/// A JSON object's members as written: every one, in order, repeated names included.
struct Members(Pairs);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}

proptest! {
    #![proptest_config(config())]

    /// A GET carries the parameters in the query: decoding the query gives the URL's own pairs
    /// and then every field as (name, value), in field order, and the fragment stays.
    #[test]
    fn query_decodes_to_the_fields_in_order(url in base_url(), params in params()) {
        let request = build(&url, &record(&params, &[]));
        prop_assert_eq!(request.method, HttpMethod::Get);
        prop_assert_eq!(&request.body, &None);
        prop_assert_eq!(request.url.fragment(), url.fragment());

        let mut expected = decode(url.query().unwrap_or_default());
        expected.extend(params.iter().cloned());
        prop_assert_eq!(decode(request.url.query().unwrap_or_default()), expected);
    }

    /// The query survives the trip through text: the URL as sent parses back to the same URL.
    #[test]
    fn query_url_parses_back_to_itself(url in base_url(), params in params()) {
        let request = build(&url, &record(&params, &[]));
        prop_assert_eq!(Url::parse(request.url.as_str()).unwrap(), request.url);
    }

    /// A header field makes a POST with a form body: decoding the body gives every other
    /// field as (name, value), in field order, and the URL is left as it was.
    #[test]
    fn form_body_decodes_to_the_fields_in_order(
        url in base_url(),
        params in params(),
        at in 0usize..9,
    ) {
        let request = build(&url, &record(&params, &[(at, "header:X-Api-Key", "k1")]));
        prop_assert_eq!(request.method, HttpMethod::Post);
        prop_assert_eq!(&request.url, &url);
        prop_assert_eq!(
            header(&request, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        prop_assert_eq!(decode(request.body.as_deref().unwrap()), params);
    }

    /// With a JSON `Content-Type`, the body is one JSON object whose members are every other
    /// field as (name, value), in field order. A name mapped twice is written twice, not merged:
    /// the members stay exactly the fields, and a reader that keeps one value per name (as
    /// `serde_json::Value` does) sees the last.
    #[test]
    fn json_body_parses_to_the_fields_in_order(
        params in params(),
        at in 0usize..9,
        content_type in select(vec!["application/json", "Application/JSON; charset=utf-8"]),
    ) {
        let url = Url::parse("https://leads.example.com/api/lead").unwrap();
        let request = build(&url, &record(&params, &[(at, "header:Content-Type", content_type)]));
        let body = request.body.unwrap();

        let Members(members) = serde_json::from_str(&body).unwrap();
        prop_assert_eq!(&members, &params);

        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&body).unwrap();
        for (name, value) in &object {
            let last = params.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v);
            prop_assert_eq!(value.as_str(), last.map(String::as_str));
        }
        let mut names: Vec<&String> = params.iter().map(|(n, _)| n).collect();
        names.sort();
        names.dedup();
        prop_assert_eq!(object.len(), names.len());
    }
}
