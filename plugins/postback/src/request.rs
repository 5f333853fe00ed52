//! Turns a record into the HTTP request a postback sends, following the seed's rules:
//!
//! 1. By default the request is a GET of the profile's URL with every field as a URL-encoded
//!    query parameter, in field order, appended with `&` to a query the URL already has.
//! 2. A field named `header:NAME` is the header NAME, not a parameter. Any such field makes the
//!    request a POST, and the parameters then go in the body.
//! 3. When the `Content-Type` header is `application/json` (ignoring case and parameters such
//!    as `; charset=utf-8`), the body is a JSON object of the parameters, string values in
//!    field order. Otherwise it is the URL-encoded parameters, sent as
//!    `application/x-www-form-urlencoded` when no `Content-Type` header was mapped.
//! 4. `header:httpMethod` (GET, POST, PUT, PATCH, DELETE) picks the verb, and
//!    `header:httpMethodType` (GET or POST) picks whether the parameters ride in the URL or the
//!    body; by default they ride in the URL only for a GET. Neither is sent as a header.
//!
//! Every request also carries `Idempotency-Key` (the delivery id, the same on every attempt)
//! and `User-Agent`, unless the profile maps a header of the same name itself.
//!
//! Building is pure: the same function renders the request to send and, with secret fields
//! masked, the one a preview shows.

use std::fmt;

use exporter_core::{Field, Record};
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;
use url::form_urlencoded;

use crate::error::PostbackError;

/// The `User-Agent` every request carries.
pub const USER_AGENT: &str = concat!("order-exporter/", env!("CARGO_PKG_VERSION"));

/// The prefix that makes a field a header.
const HEADER_PREFIX: &str = "header:";

/// Which values a request is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// The real values, to send.
    Sent,
    /// Secret values as `***`, to show a person.
    Shown,
}

/// The HTTP verbs a profile may pick with `header:httpMethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    /// Reads a verb, ignoring case and surrounding spaces.
    pub fn parse(text: &str) -> Option<Self> {
        let verbs = [
            ("GET", HttpMethod::Get),
            ("POST", HttpMethod::Post),
            ("PUT", HttpMethod::Put),
            ("PATCH", HttpMethod::Patch),
            ("DELETE", HttpMethod::Delete),
        ];
        let text = text.trim();
        verbs
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
            .map(|(_, verb)| verb)
    }

    /// The verb as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// One request, ready to send or to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostbackRequest {
    /// The verb.
    pub method: HttpMethod,
    /// The full URL, parameters included when they ride in the URL.
    pub url: Url,
    /// Header names and values, in the order they are sent.
    pub headers: Vec<(String, String)>,
    /// The body, when the parameters ride in it.
    pub body: Option<String>,
}

/// A record's fields sorted into parameters, headers and the two pseudo-headers.
#[derive(Default)]
struct Sorted<'a> {
    params: Vec<&'a Field>,
    /// Each header field with its NAME.
    headers: Vec<(&'a str, &'a Field)>,
    method: Option<&'a Field>,
    method_type: Option<&'a Field>,
    any_header: bool,
}

/// Builds the request for `record` against the profile's `url`.
///
/// Fails when the record can never be sent as rendered: an unknown `httpMethod` or
/// `httpMethodType`, an invalid header name, or a header value with a control character.
/// Every decision uses the real values, so a preview shows and fails exactly as sending would.
pub fn build_request(
    url: &Url,
    record: &Record,
    values: Values,
) -> Result<PostbackRequest, PostbackError> {
    let sorted = sort_fields(&record.fields)?;
    let method = match sorted.method {
        Some(field) => parse_method(field)?,
        None if sorted.any_header => HttpMethod::Post,
        None => HttpMethod::Get,
    };
    let params_in_body = match sorted.method_type {
        Some(field) => parse_method_type(field)?,
        None => method != HttpMethod::Get,
    };

    let value = |field: &Field| match values {
        Values::Sent => field.value.clone(),
        Values::Shown => field.shown().to_owned(),
    };
    let params: Vec<(&str, String)> = sorted
        .params
        .iter()
        .map(|field| (field.name.as_str(), value(field)))
        .collect();
    let mut headers: Vec<(String, String)> = sorted
        .headers
        .iter()
        .map(|(name, field)| ((*name).to_owned(), value(field)))
        .collect();
    let content_type = sorted
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    let json = content_type.is_some_and(|(_, field)| is_json(&field.value));

    let mut url = url.clone();
    let mut body = None;
    if params_in_body {
        body = Some(if json {
            json_object(&params)
        } else {
            form_encode(&params)
        });
        if content_type.is_none() {
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
    } else {
        append_query(&mut url, &params);
    }

    add_default(&mut headers, "Idempotency-Key", &record.delivery_id);
    add_default(&mut headers, "User-Agent", USER_AGENT);
    Ok(PostbackRequest {
        method,
        url,
        headers,
        body,
    })
}

/// True when a `Content-Type` value is `application/json`, ignoring case and parameters.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default();
    essence.trim().eq_ignore_ascii_case("application/json")
}

/// Sorts fields into parameters and headers, checking each header against what HTTP allows.
fn sort_fields(fields: &[Field]) -> Result<Sorted<'_>, PostbackError> {
    let mut sorted = Sorted::default();
    for field in fields {
        let Some(name) = header_name(&field.name) else {
            sorted.params.push(field);
            continue;
        };
        sorted.any_header = true;
        if name.eq_ignore_ascii_case("httpMethod") {
            sorted.method = Some(field);
        } else if name.eq_ignore_ascii_case("httpMethodType") {
            sorted.method_type = Some(field);
        } else {
            check_header(field, name)?;
            sorted.headers.push((name, field));
        }
    }
    Ok(sorted)
}

/// The NAME of a `header:NAME` field, `None` for a parameter. The prefix ignores case.
fn header_name(field_name: &str) -> Option<&str> {
    let prefix = field_name.get(..HEADER_PREFIX.len())?;
    prefix
        .eq_ignore_ascii_case(HEADER_PREFIX)
        .then(|| field_name[HEADER_PREFIX.len()..].trim())
}

fn check_header(field: &Field, name: &str) -> Result<(), PostbackError> {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(PostbackError::InvalidHeaderName {
            field: field.name.clone(),
        });
    }
    if HeaderValue::from_bytes(field.value.as_bytes()).is_err() {
        return Err(PostbackError::InvalidHeaderValue {
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn parse_method(field: &Field) -> Result<HttpMethod, PostbackError> {
    let value = field.shown().to_owned();
    HttpMethod::parse(&field.value).ok_or(PostbackError::UnknownMethod { value })
}

/// True when `httpMethodType` puts the parameters in the body.
fn parse_method_type(field: &Field) -> Result<bool, PostbackError> {
    match HttpMethod::parse(&field.value) {
        Some(HttpMethod::Get) => Ok(false),
        Some(HttpMethod::Post) => Ok(true),
        _ => Err(PostbackError::UnknownMethodType {
            value: field.shown().to_owned(),
        }),
    }
}

/// The first value of a header, the name matched ignoring case.
fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let found = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
    found.map(|(_, value)| value.as_str())
}

/// Adds a header unless the profile maps one of the same name.
fn add_default(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    if header_value(headers, name).is_none() {
        headers.push((name.to_owned(), value.to_owned()));
    }
}

/// The parameters as `application/x-www-form-urlencoded` text.
fn form_encode(params: &[(&str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// A JSON object of string values, keys in field order.
fn json_object(params: &[(&str, String)]) -> String {
    let members: Vec<String> = params
        .iter()
        .map(|(name, value)| format!("{}:{}", json_string(name), json_string(value)))
        .collect();
    format!("{{{}}}", members.join(","))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// Appends the parameters to the URL's query: after `&` when it has one, before any fragment.
fn append_query(url: &mut Url, params: &[(&str, String)]) {
    if params.is_empty() {
        return;
    }
    let encoded = form_encode(params);
    let query = match url.query() {
        None | Some("") => encoded,
        Some(existing) if existing.ends_with('&') => format!("{existing}{encoded}"),
        Some(existing) => format!("{existing}&{encoded}"),
    };
    url.set_query(Some(&query));
}

impl fmt::Display for PostbackRequest {
    /// The request as it goes on the wire, roughly: request line, headers, blank line, body.
    /// A password in the URL is shown as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        writeln!(f, "{} {url}", self.method.as_str())?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {value}")?;
        }
        if let Some(body) = &self.body {
            writeln!(f)?;
            writeln!(f, "{body}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://leads.example.com/api/lead";

    fn record(fields: &[(&str, &str)]) -> Record {
        let fields = fields
            .iter()
            .map(|(name, value)| Field {
                name: (*name).into(),
                value: (*value).into(),
                secret: false,
            })
            .collect();
        Record {
            delivery_id: "d-1".into(),
            order_id: "A1".into(),
            fields,
        }
    }

    fn build_at(base: &str, fields: &[(&str, &str)]) -> PostbackRequest {
        build_request(&Url::parse(base).unwrap(), &record(fields), Values::Sent).unwrap()
    }

    fn build(fields: &[(&str, &str)]) -> PostbackRequest {
        build_at(BASE, fields)
    }

    fn refused(fields: &[(&str, &str)]) -> PostbackError {
        build_request(&Url::parse(BASE).unwrap(), &record(fields), Values::Sent).unwrap_err()
    }

    fn header<'a>(request: &'a PostbackRequest, name: &str) -> Option<&'a str> {
        header_value(&request.headers, name)
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn sends_get_with_fields_as_query_in_field_order() {
        let request = build(&[("zeta", "1"), ("alpha", "Ann Lee"), ("mid", "x")]);
        assert_eq!(request.method, HttpMethod::Get);
        assert_eq!(
            request.url.as_str(),
            format!("{BASE}?zeta=1&alpha=Ann+Lee&mid=x")
        );
        assert_eq!(request.body, None);
        assert_eq!(header(&request, "content-type"), None);
    }

    #[test]
    fn sends_the_bare_url_when_there_are_no_fields() {
        assert_eq!(build(&[]).url.as_str(), BASE);
        assert_eq!(
            build_at(&format!("{BASE}?k=1"), &[]).url.as_str(),
            format!("{BASE}?k=1")
        );
    }

    #[test]
    fn appends_to_an_existing_query_with_an_ampersand() {
        let request = build_at(&format!("{BASE}?source=crm"), &[("a", "1")]);
        assert_eq!(request.url.as_str(), format!("{BASE}?source=crm&a=1"));
    }

    #[test]
    fn appends_after_a_trailing_question_mark_or_ampersand() {
        let request = build_at(&format!("{BASE}?"), &[("a", "1")]);
        assert_eq!(request.url.as_str(), format!("{BASE}?a=1"));
        let request = build_at(&format!("{BASE}?k=v&"), &[("a", "1")]);
        assert_eq!(request.url.as_str(), format!("{BASE}?k=v&a=1"));
    }

    #[test]
    fn puts_the_query_before_a_fragment() {
        let request = build_at(&format!("{BASE}?k=v#top"), &[("a", "1")]);
        assert_eq!(request.url.as_str(), format!("{BASE}?k=v&a=1#top"));
        let request = build_at(&format!("{BASE}#top"), &[("a", "1")]);
        assert_eq!(request.url.as_str(), format!("{BASE}?a=1#top"));
    }

    #[test]
    fn round_trips_nasty_values_in_the_query() {
        let nasty = [
            ("a&b=c", "x&y=z"),
            ("plus", "1+1 = 2"),
            ("hash", "#not-a-fragment?"),
            ("pct", "100%25 %"),
            ("name", "José Müller 日本"),
            ("emoji", "🎉👍🏽"),
            ("empty", ""),
            ("quote", "\"'<>\\"),
            ("line", "a\r\nb"),
        ];
        let request = build(&nasty);
        assert_eq!(request.url.fragment(), None);
        assert_eq!(pairs(request.url.query().unwrap()), owned(&nasty));
    }

    #[test]
    fn a_header_field_makes_a_post_with_a_form_body() {
        let request = build(&[
            ("first", "Ann"),
            ("header:X-Api-Key", "k1"),
            ("last", "O'Neil & Co"),
        ]);
        assert_eq!(request.method, HttpMethod::Post);
        assert_eq!(request.url.as_str(), BASE);
        assert_eq!(header(&request, "X-Api-Key"), Some("k1"));
        assert_eq!(
            header(&request, "Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        let body = request.body.unwrap();
        assert_eq!(
            pairs(&body),
            owned(&[("first", "Ann"), ("last", "O'Neil & Co")])
        );
        assert!(!body.contains("X-Api-Key"));
    }

    #[test]
    fn round_trips_nasty_values_in_a_form_body() {
        let nasty = [
            ("a&b", "c=d&e"),
            ("sp ace", "+ +"),
            ("uni", "Ωmega ✓ 🎉"),
            ("h", "#x"),
        ];
        let mut fields = nasty.to_vec();
        fields.push(("header:X-Key", "1"));
        assert_eq!(pairs(&build(&fields).body.unwrap()), owned(&nasty));
    }

    #[test]
    fn json_content_type_sends_a_json_object_in_field_order() {
        let request = build(&[
            ("zeta", "1"),
            ("header:Content-Type", "application/json"),
            ("alpha", "say \"hi\"\n🎉"),
        ]);
        assert_eq!(request.method, HttpMethod::Post);
        let body = request.body.clone().unwrap();
        assert_eq!(body, r#"{"zeta":"1","alpha":"say \"hi\"\n🎉"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["alpha"], "say \"hi\"\n🎉");
        assert_eq!(header(&request, "content-type"), Some("application/json"));
    }

    #[test]
    fn matches_json_content_type_ignoring_case_and_parameters() {
        for value in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
        ] {
            let request = build(&[("header:content-TYPE", value), ("a", "1")]);
            assert_eq!(request.body.as_deref(), Some(r#"{"a":"1"}"#), "{value}");
        }
        assert!(!is_json("application/json-patch+json"));
        assert!(!is_json("text/plain"));
    }

    #[test]
    fn other_content_types_get_a_form_body_under_their_own_type() {
        let request = build(&[("header:Content-Type", "text/plain"), ("a", "1 2")]);
        assert_eq!(request.body.as_deref(), Some("a=1+2"));
        let types: Vec<_> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .collect();
        assert_eq!(
            types,
            [&("Content-Type".to_owned(), "text/plain".to_owned())]
        );
    }

    #[test]
    fn http_method_picks_the_verb_and_is_not_sent() {
        let request = build(&[("header:httpMethod", "put"), ("a", "1")]);
        assert_eq!(request.method, HttpMethod::Put);
        assert_eq!(request.body.as_deref(), Some("a=1"));
        assert_eq!(request.url.as_str(), BASE);
        assert_eq!(header(&request, "httpMethod"), None);

        for (text, verb) in [
            ("PATCH", HttpMethod::Patch),
            (" Delete ", HttpMethod::Delete),
        ] {
            assert_eq!(build(&[("header:httpMethod", text)]).method, verb);
        }
    }

    #[test]
    fn http_method_get_with_headers_keeps_params_in_the_url() {
        let request = build(&[
            ("header:httpMethod", "GET"),
            ("header:X-Key", "k"),
            ("a", "1"),
        ]);
        assert_eq!(request.method, HttpMethod::Get);
        assert_eq!(request.url.query(), Some("a=1"));
        assert_eq!(request.body, None);
        assert_eq!(header(&request, "X-Key"), Some("k"));
    }

    #[test]
    fn http_method_type_picks_where_params_ride() {
        let request = build(&[("header:httpMethodType", "GET"), ("a", "1")]);
        assert_eq!(
            request.method,
            HttpMethod::Post,
            "a pseudo-header still makes a POST"
        );
        assert_eq!(request.url.query(), Some("a=1"));
        assert_eq!(request.body, None);
        assert_eq!(header(&request, "httpMethodType"), None);
        assert_eq!(header(&request, "content-type"), None);

        let request = build(&[
            ("header:httpMethod", "GET"),
            ("header:httpMethodType", "post"),
            ("a", "1"),
        ]);
        assert_eq!(request.method, HttpMethod::Get);
        assert_eq!(request.url.query(), None);
        assert_eq!(request.body.as_deref(), Some("a=1"));

        let request = build(&[
            ("header:httpMethod", "PUT"),
            ("header:httpMethodType", "GET"),
            ("a", "1"),
        ]);
        assert_eq!(request.method, HttpMethod::Put);
        assert_eq!(request.url.query(), Some("a=1"));
        assert_eq!(request.body, None);
    }

    #[test]
    fn json_with_params_in_the_url_has_no_body() {
        let request = build(&[
            ("header:Content-Type", "application/json"),
            ("header:httpMethodType", "GET"),
            ("a", "1"),
        ]);
        assert_eq!(request.url.query(), Some("a=1"));
        assert_eq!(request.body, None);
    }

    #[test]
    fn refuses_unknown_methods_and_method_types() {
        let error = refused(&[("header:httpMethod", "FETCH")]);
        assert_eq!(
            error,
            PostbackError::UnknownMethod {
                value: "FETCH".into()
            }
        );
        assert!(
            error
                .to_string()
                .contains("expected one of GET, POST, PUT, PATCH, DELETE")
        );
        let error = refused(&[("header:httpMethodType", "PUT")]);
        assert_eq!(
            error,
            PostbackError::UnknownMethodType {
                value: "PUT".into()
            }
        );
        let error = refused(&[("header:httpMethod", "")]);
        assert!(error.is_permanent());
    }

    #[test]
    fn refuses_invalid_header_names_and_values() {
        let error = refused(&[("header:Bad Name", "x")]);
        assert_eq!(
            error,
            PostbackError::InvalidHeaderName {
                field: "header:Bad Name".into()
            }
        );
        assert!(matches!(
            refused(&[("header:", "x")]),
            PostbackError::InvalidHeaderName { .. }
        ));
        let error = refused(&[("header:X-Note", "line\r\nInjected: yes")]);
        assert_eq!(
            error,
            PostbackError::InvalidHeaderValue {
                name: "X-Note".into()
            }
        );
    }

    #[test]
    fn sends_idempotency_key_and_user_agent() {
        let request = build(&[("a", "1")]);
        assert_eq!(header(&request, "Idempotency-Key"), Some("d-1"));
        assert_eq!(header(&request, "User-Agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("order-exporter/"));
    }

    #[test]
    fn a_mapped_user_agent_replaces_the_default() {
        let request = build(&[("header:user-agent", "LeadBot/2")]);
        let agents: Vec<_> = request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
            .collect();
        assert_eq!(agents, [&("user-agent".to_owned(), "LeadBot/2".to_owned())]);
    }

    #[test]
    fn preview_masks_secrets_in_query_headers_and_body() {
        let mut record = record(&[("token", "tok-SECRET"), ("a", "1")]);
        record.fields[0].secret = true;
        let url = Url::parse(BASE).unwrap();
        let shown = build_request(&url, &record, Values::Shown).unwrap();
        assert_eq!(shown.url.query(), Some("token=***&a=1"));
        let sent = build_request(&url, &record, Values::Sent).unwrap();
        assert_eq!(sent.url.query(), Some("token=tok-SECRET&a=1"));

        record.fields.push(Field {
            name: "header:Authorization".into(),
            value: "Bearer SECRET".into(),
            secret: true,
        });
        let text = build_request(&url, &record, Values::Shown)
            .unwrap()
            .to_string();
        assert!(text.contains("Authorization: ***"), "{text}");
        assert!(text.contains("token=***&a=1"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");

        record.fields.push(Field {
            name: "header:Content-Type".into(),
            value: "application/json".into(),
            secret: false,
        });
        let text = build_request(&url, &record, Values::Shown)
            .unwrap()
            .to_string();
        assert!(text.contains(r#"{"token":"***","a":"1"}"#), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn preview_decides_with_real_values_even_when_they_are_secret() {
        let mut record = record(&[
            ("header:httpMethod", "PATCH"),
            ("header:Content-Type", "application/json"),
            ("a", "1"),
        ]);
        record.fields[0].secret = true;
        record.fields[1].secret = true;
        let url = Url::parse(BASE).unwrap();
        let shown = build_request(&url, &record, Values::Shown).unwrap();
        assert_eq!(shown.method, HttpMethod::Patch);
        assert_eq!(shown.body.as_deref(), Some(r#"{"a":"1"}"#));
        assert_eq!(header(&shown, "content-type"), Some("***"));
    }

    #[test]
    fn a_preview_without_secrets_is_the_request_sent() {
        let record = record(&[("header:X-Key", "k"), ("a", "1 2"), ("b", "&")]);
        let url = Url::parse(BASE).unwrap();
        let sent = build_request(&url, &record, Values::Sent).unwrap();
        assert_eq!(build_request(&url, &record, Values::Shown).unwrap(), sent);
    }

    #[test]
    fn shows_a_request_line_headers_and_body() {
        let request = build(&[("header:X-Key", "k"), ("a", "1")]);
        let expected = format!(
            "POST {BASE}\nX-Key: k\nContent-Type: application/x-www-form-urlencoded\n\
             Idempotency-Key: d-1\nUser-Agent: {USER_AGENT}\n\na=1\n"
        );
        assert_eq!(request.to_string(), expected);
    }
}
