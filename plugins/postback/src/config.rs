//! The postback target's settings as an operator writes them in a profile, and their checked
//! form.

use std::time::Duration;

use exporter_core::{SettingsError, parse_settings};
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::signing::SigningKey;

/// A postback profile's target keys.
///
/// ```toml
/// url = "https://leads.example.com/api/lead?source=crm"
/// timeout_secs = 10
/// success_body = "^OK"
/// duplicate_body = "(?i)duplicate"
/// concurrency = 8
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostbackConfig {
    /// Where each record is sent, `http` or `https`. On GET the record's parameters are
    /// appended to the query this URL may already have.
    pub url: String,

    /// How long one request may take, connecting and reading the answer included, before it
    /// counts as failed and is tried again later. Fractions are allowed.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: f64,

    /// A regular expression a 2xx answer's body must contain a match for to count as
    /// delivered: call-center lead APIs answer `200` with `ERROR: ...` in the body. Anchor it
    /// (`^OK$`) to match the whole body.
    #[serde(default)]
    pub success_body: Option<String>,

    /// A regular expression that marks a 2xx or 4xx answer as "the target already has this
    /// record", which counts as delivered instead of being retried forever.
    #[serde(default)]
    pub duplicate_body: Option<String>,

    /// At most this many requests in flight at once for this profile, so a backlog does not
    /// flood the target.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,

    /// A Standard Webhooks secret (`whsec_...`, best given as `env:NAME`): when set, every
    /// request carries `webhook-id`, `webhook-timestamp` and `webhook-signature`, so the
    /// receiver can check it came from this exporter.
    #[serde(default)]
    pub signing_secret: Option<String>,
}

/// The checked settings a [`crate::PostbackExporter`] delivers with.
#[derive(Debug, Clone)]
pub struct Target {
    /// The parsed base URL.
    pub url: Url,
    /// The whole-request timeout.
    pub timeout: Duration,
    /// The body rule for 2xx answers.
    pub success_body: Option<Regex>,
    /// The body rule for duplicate answers.
    pub duplicate_body: Option<Regex>,
    /// The most requests in flight.
    pub concurrency: usize,
    /// The key that signs every request, when signing is on.
    pub signing: Option<SigningKey>,
}

impl PostbackConfig {
    /// The longest `timeout_secs` accepted: an hour. Longer is a typo, and would hold a
    /// delivery's lease far past any sensible answer.
    pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

    /// The most requests in flight a profile may ask for.
    pub const MAX_CONCURRENCY: usize = 1024;

    /// Reads the profile's target keys, refusing unknown ones.
    pub fn from_settings(settings: &Map<String, Value>) -> Result<Self, SettingsError> {
        parse_settings(settings)
    }

    /// Checks every value and compiles the body rules, reporting every problem at once. Does
    /// no I/O.
    pub fn validate(&self) -> Result<Target, SettingsError> {
        let mut problems = Vec::new();
        let url = keep(&mut problems, check_url(&self.url));
        let timeout = keep(&mut problems, self.timeout());
        let success = compile("success_body", self.success_body.as_deref());
        let success_body = keep(&mut problems, success);
        let duplicate = compile("duplicate_body", self.duplicate_body.as_deref());
        let duplicate_body = keep(&mut problems, duplicate);
        let concurrency = keep(&mut problems, self.concurrency());
        let signing = keep(&mut problems, self.signing());
        if let Some(error) = SettingsError::from_all(problems) {
            return Err(error);
        }
        let checked = "every check passed";
        Ok(Target {
            url: url.expect(checked),
            timeout: timeout.expect(checked),
            success_body: success_body.expect(checked),
            duplicate_body: duplicate_body.expect(checked),
            concurrency: concurrency.expect(checked),
            signing: signing.expect(checked),
        })
    }

    fn signing(&self) -> Result<Option<SigningKey>, SettingsError> {
        let Some(secret) = &self.signing_secret else {
            return Ok(None);
        };
        SigningKey::parse(secret)
            .map(Some)
            .map_err(|message| SettingsError::invalid("signing_secret", message))
    }

    fn timeout(&self) -> Result<Duration, SettingsError> {
        let secs = self.timeout_secs;
        if !(secs > 0.0 && secs <= Self::MAX_TIMEOUT_SECS) {
            let message = format!(
                "must be more than 0 and at most {} seconds, found {secs}; for example \
                 `timeout_secs = 30`",
                Self::MAX_TIMEOUT_SECS
            );
            return Err(SettingsError::invalid("timeout_secs", message));
        }
        Ok(Duration::from_secs_f64(secs))
    }

    fn concurrency(&self) -> Result<usize, SettingsError> {
        if !(1..=Self::MAX_CONCURRENCY).contains(&self.concurrency) {
            let message = format!(
                "must be from 1 to {}, found {}; for example `concurrency = 16`",
                Self::MAX_CONCURRENCY,
                self.concurrency
            );
            return Err(SettingsError::invalid("concurrency", message));
        }
        Ok(self.concurrency)
    }
}

fn default_timeout_secs() -> f64 {
    30.0
}

fn default_concurrency() -> usize {
    16
}

/// An absolute `http` or `https` URL with a host.
fn check_url(text: &str) -> Result<Url, SettingsError> {
    const EXAMPLE: &str = "for example `url = \"https://leads.example.com/api/lead\"`";
    let url = Url::parse(text.trim()).map_err(|error| {
        SettingsError::invalid("url", format!("not a valid URL ({error}); {EXAMPLE}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        let message = format!(
            "scheme `{}` is not supported, use http or https; {EXAMPLE}",
            url.scheme()
        );
        return Err(SettingsError::invalid("url", message));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(SettingsError::invalid(
            "url",
            format!("has no host; {EXAMPLE}"),
        ));
    }
    Ok(url)
}

fn compile(key: &str, pattern: Option<&str>) -> Result<Option<Regex>, SettingsError> {
    let Some(pattern) = pattern else {
        return Ok(None);
    };
    Regex::new(pattern).map(Some).map_err(|error| {
        SettingsError::invalid(key, format!("not a valid regular expression: {error}"))
    })
}

/// The value of a check, keeping its error for the report instead.
fn keep<T>(problems: &mut Vec<SettingsError>, result: Result<T, SettingsError>) -> Option<T> {
    result.map_err(|error| problems.push(error)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(value: Value) -> Result<Target, SettingsError> {
        PostbackConfig::from_settings(value.as_object().unwrap())?.validate()
    }

    fn invalid_key(value: Value) -> String {
        let error = validate(value).unwrap_err();
        assert!(matches!(error, SettingsError::Invalid { .. }), "{error}");
        error.key().to_owned()
    }

    #[test]
    fn applies_defaults() {
        let target = validate(json!({"url": "https://x.example/lead"})).unwrap();
        assert_eq!(target.timeout, Duration::from_secs(30));
        assert_eq!(target.concurrency, 16);
        assert!(target.success_body.is_none() && target.duplicate_body.is_none());
    }

    #[test]
    fn accepts_fractional_timeouts_and_body_rules() {
        let target = validate(json!({
            "url": "http://127.0.0.1:8080/p?a=1", "timeout_secs": 0.5,
            "success_body": "^OK", "duplicate_body": "(?i)duplicate", "concurrency": 1
        }))
        .unwrap();
        assert_eq!(target.timeout, Duration::from_millis(500));
        assert!(target.success_body.unwrap().is_match("OK 123"));
        assert_eq!(target.concurrency, 1);
    }

    #[test]
    fn requires_a_url() {
        let error = validate(json!({})).unwrap_err();
        assert_eq!(error, SettingsError::MissingKey { key: "url".into() });
    }

    #[test]
    fn refuses_unknown_keys() {
        let error = validate(json!({"url": "http://x", "timeout": 5})).unwrap_err();
        assert!(matches!(error, SettingsError::UnknownKey { ref key, .. } if key == "timeout"));
    }

    #[test]
    fn refuses_urls_that_are_not_http_with_a_host() {
        for url in [
            "leads.example.com/api",
            "ftp://x.example/",
            "file:///tmp/x",
            "http://",
            "",
        ] {
            assert_eq!(invalid_key(json!({"url": url})), "url", "{url}");
        }
    }

    #[test]
    fn refuses_timeouts_out_of_range() {
        for secs in [json!(0), json!(-1), json!(1e9), json!("30")] {
            assert_eq!(
                invalid_key(json!({"url": "http://x", "timeout_secs": secs})),
                "timeout_secs"
            );
        }
    }

    #[test]
    fn refuses_concurrency_out_of_range() {
        for n in [0, 1025] {
            assert_eq!(
                invalid_key(json!({"url": "http://x", "concurrency": n})),
                "concurrency"
            );
        }
    }

    #[test]
    fn names_the_key_of_an_invalid_regex() {
        assert_eq!(
            invalid_key(json!({"url": "http://x", "success_body": "(unclosed"})),
            "success_body"
        );
        assert_eq!(
            invalid_key(json!({"url": "http://x", "duplicate_body": "["})),
            "duplicate_body"
        );
    }
}
