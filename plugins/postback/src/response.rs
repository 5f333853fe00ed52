//! Judges the target's answer: delivered, duplicate or retry, with a short excerpt of the body
//! and the `Retry-After` the target asked for.
//!
//! A 2xx answer is delivered unless `success_body` is set and does not match. A 2xx or 4xx
//! answer whose body matches `duplicate_body` is a duplicate, which counts as delivered. Every
//! other answer is retried: redirects are not followed (a postback URL that moved is an
//! operator's fix, and following it would resend the record's data to a host nobody
//! configured), and a 4xx is retried too, since the operator may fix the target or the profile.

use std::time::{Duration, SystemTime};

use exporter_core::Outcome;
use reqwest::StatusCode;

use crate::config::Target;

/// The most characters of a body kept in an outcome's message.
pub const EXCERPT_CHARS: usize = 200;

/// What the target answered.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The HTTP status code.
    pub status: u16,
    /// The body as read (at most the first 64 KiB).
    pub body: &'a [u8],
    /// The `Location` header, for redirects.
    pub location: Option<&'a str>,
    /// The `Retry-After` header.
    pub retry_after: Option<&'a str>,
}

/// The outcome of one answer; `now` reads a `Retry-After` given as an HTTP date.
pub fn judge(target: &Target, answer: &Answer<'_>, now: SystemTime) -> Outcome {
    let status = Some(answer.status);
    let text = String::from_utf8_lossy(answer.body);
    let excerpt = excerpt(&text);
    let class = answer.status / 100;

    let duplicate = target
        .duplicate_body
        .as_ref()
        .is_some_and(|rule| rule.is_match(&text));
    if duplicate && matches!(class, 2 | 4) {
        return Outcome::duplicate(status, excerpt);
    }
    if class == 2 {
        return match &target.success_body {
            Some(rule) if !rule.is_match(&text) => Outcome::retry(
                status,
                format!(
                    "{} but the body did not match success_body: {excerpt}",
                    answer.status
                ),
            ),
            _ => Outcome::delivered(status, excerpt),
        };
    }

    let message = match (class, answer.location) {
        (3, Some(location)) => {
            format!("redirected to {location} (redirects are not followed)")
        }
        (3, None) => {
            format!(
                "{} redirect without a Location (redirects are not followed)",
                answer.status
            )
        }
        _ => format!("{}: {excerpt}", status_text(answer.status)),
    };
    let after = answer.retry_after.and_then(|value| retry_after(value, now));
    Outcome::retry(status, message).with_retry_after(after)
}

/// How long a `Retry-After` value asks to wait: whole seconds or an HTTP date. `None` when it
/// is unreadable or already past.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    date.duration_since(now).ok().filter(|wait| !wait.is_zero())
}

/// The start of a body as one line: whitespace runs collapsed, at most [`EXCERPT_CHARS`]
/// characters, `…` when cut, `(empty body)` when there is nothing to show.
pub fn excerpt(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return "(empty body)".to_owned();
    }
    let line = words.join(" ");
    match line.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// `503 Service Unavailable`, or the bare code when it has no standard reason.
fn status_text(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason());
    match reason {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter_core::OutcomeKind;
    use regex::Regex;
    use url::Url;

    fn target(success: Option<&str>, duplicate: Option<&str>) -> Target {
        Target {
            url: Url::parse("http://x.example/").unwrap(),
            timeout: Duration::from_secs(1),
            success_body: success.map(|rule| Regex::new(rule).unwrap()),
            duplicate_body: duplicate.map(|rule| Regex::new(rule).unwrap()),
            concurrency: 1,
            signing: None,
        }
    }

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status,
            body: body.as_bytes(),
            location: None,
            retry_after: None,
        }
    }

    fn judge_now(target: &Target, answer: &Answer<'_>) -> Outcome {
        judge(target, answer, SystemTime::now())
    }

    #[test]
    fn delivers_on_2xx_without_a_body_rule() {
        let outcome = judge_now(&target(None, None), &answer(201, "  created\n id=5 "));
        assert_eq!(outcome, Outcome::delivered(Some(201), "created id=5"));
    }

    #[test]
    fn retries_a_2xx_whose_body_does_not_match_success_body() {
        let t = target(Some("^OK"), None);
        assert_eq!(
            judge_now(&t, &answer(200, "OK 17")).kind,
            OutcomeKind::Delivered
        );
        let outcome = judge_now(&t, &answer(200, "ERROR: missing phone"));
        assert_eq!(outcome.kind, OutcomeKind::Retry);
        assert_eq!(
            outcome.message,
            "200 but the body did not match success_body: ERROR: missing phone"
        );
    }

    #[test]
    fn counts_a_duplicate_on_2xx_and_4xx_only() {
        let t = target(Some("^OK"), Some("(?i)duplicate"));
        assert_eq!(
            judge_now(&t, &answer(200, "ERROR: Duplicate lead")).kind,
            OutcomeKind::Duplicate
        );
        assert_eq!(
            judge_now(&t, &answer(409, "duplicate")).kind,
            OutcomeKind::Duplicate
        );
        assert_eq!(
            judge_now(&t, &answer(500, "duplicate")).kind,
            OutcomeKind::Retry
        );
    }

    #[test]
    fn retries_other_statuses_with_status_and_excerpt() {
        let outcome = judge_now(&target(None, None), &answer(500, "<h1>boom</h1>"));
        assert_eq!(
            outcome,
            Outcome::retry(Some(500), "500 Internal Server Error: <h1>boom</h1>")
        );
        let outcome = judge_now(&target(None, None), &answer(400, ""));
        assert_eq!(outcome.message, "400 Bad Request: (empty body)");
    }

    #[test]
    fn retries_a_redirect_naming_its_location() {
        let mut moved = answer(301, "");
        moved.location = Some("https://new.example/lead");
        let outcome = judge_now(&target(None, None), &moved);
        assert_eq!(outcome.kind, OutcomeKind::Retry);
        assert_eq!(
            outcome.message,
            "redirected to https://new.example/lead (redirects are not followed)"
        );
        let outcome = judge_now(&target(None, None), &answer(302, ""));
        assert!(
            outcome.message.contains("without a Location"),
            "{}",
            outcome.message
        );
    }

    #[test]
    fn honours_retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut busy = answer(429, "slow down");
        busy.retry_after = Some(" 120 ");
        assert_eq!(
            judge(&target(None, None), &busy, now).retry_after,
            Some(Duration::from_secs(120))
        );

        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&past, now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    #[test]
    fn cuts_long_bodies_on_a_character_boundary() {
        let long = "é".repeat(300);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(" \n\t "), "(empty body)");
    }

    #[test]
    fn reads_invalid_utf8_lossily() {
        let outcome = judge_now(
            &target(None, None),
            &Answer {
                body: b"ok \xff",
                ..answer(200, "")
            },
        );
        assert_eq!(outcome.message, "ok \u{fffd}");
    }
}
