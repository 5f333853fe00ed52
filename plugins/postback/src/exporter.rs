//! [`PostbackExporter`]: sends each record of a batch as its own HTTP request and judges the
//! answer. It never retries by itself; the host schedules the next attempt.

use std::error::Error as _;
use std::io;
use std::time::SystemTime;

use base64::Engine as _;
use exporter_core::{
    Batch, Batching, BoxFuture, Exporter, Outcome, Record, Redactor, SettingsError,
};
use futures_util::stream::{self, StreamExt};
use reqwest::header::{LOCATION, RETRY_AFTER};
use reqwest::{Client, Method, Response, redirect};
use url::Url;

use crate::config::Target;
use crate::error::PostbackError;
use crate::request::{HttpMethod, PostbackRequest, Values, build_request};
use crate::response::{Answer, judge};

/// The most bytes of an answer's body read: enough for any excerpt or body rule, and a
/// target that streams without end cannot exhaust memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Delivers records of one profile to its postback URL.
#[derive(Debug)]
pub struct PostbackExporter {
    profile: String,
    target: Target,
    client: Client,
}

impl PostbackExporter {
    /// An exporter for `profile` with checked settings.
    ///
    /// The HTTP client ignores proxy settings from the environment, follows no redirects and
    /// gives up on connecting, and on the whole request, after the profile's timeout.
    pub fn new(profile: &str, target: Target) -> Result<Self, SettingsError> {
        // Another part of the process may have installed a provider first; either one works.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .no_proxy()
            .redirect(redirect::Policy::none())
            .timeout(target.timeout)
            .connect_timeout(target.timeout)
            .build()
            .map_err(|error| {
                let message = format!("cannot set up an HTTP client for it: {error}");
                SettingsError::invalid("url", message)
            })?;
        Ok(PostbackExporter {
            profile: profile.to_owned(),
            target,
            client,
        })
    }

    /// Sends one record and judges the answer.
    async fn send(&self, record: &Record) -> Outcome {
        let outcome = match self.attempt(record).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_permanent() => Outcome::failed(None, error.to_string()),
            Err(error) => Outcome::retry(None, error.to_string()),
        };
        let outcome = redact(&self.target.url, record, outcome);
        tracing::debug!(
            profile = %self.profile,
            order_id = %record.order_id,
            delivery_id = %record.delivery_id,
            outcome = ?outcome.kind,
            status = outcome.status,
            "postback attempt finished"
        );
        outcome
    }

    async fn attempt(&self, record: &Record) -> Result<Outcome, PostbackError> {
        let mut request = build_request(&self.target.url, record, Values::Sent)?;
        let body = request.body.clone();
        self.sign(&mut request, record, body);
        let response = self.request(request).send().await;
        let mut response = response.map_err(|error| self.transport_error(&error))?;

        let status = response.status().as_u16();
        let location = header_text(&response, LOCATION.as_str());
        let retry_after = header_text(&response, RETRY_AFTER.as_str());
        let body = match read_body(&mut response).await {
            Ok(body) => body,
            Err(error) => {
                return Ok(Outcome::retry(
                    Some(status),
                    self.transport_error(&error).to_string(),
                ));
            }
        };

        let answer = Answer {
            status,
            body: &body,
            location: location.as_deref(),
            retry_after: retry_after.as_deref(),
        };
        Ok(judge(&self.target, &answer, SystemTime::now()))
    }

    fn request(&self, request: PostbackRequest) -> reqwest::RequestBuilder {
        let mut builder = self.client.request(method(request.method), request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        match request.body {
            Some(body) => builder.body(body),
            None => builder,
        }
    }

    /// Adds the Standard Webhooks headers when the profile signs its requests.
    fn sign(&self, request: &mut PostbackRequest, record: &Record, body: Option<String>) {
        if let Some(key) = &self.target.signing {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
            let timestamp = now.map_or(0, |d| d.as_secs() as i64);
            let body = body.unwrap_or_default();
            request
                .headers
                .extend(key.headers(&record.delivery_id, timestamp, &body));
        }
    }

    /// Names what went wrong on the way, from the most telling error in the source chain.
    /// The URL is left out: its query may hold secrets.
    fn transport_error(&self, error: &reqwest::Error) -> PostbackError {
        let after = self.target.timeout;
        if error.is_timeout() {
            return PostbackError::TimedOut { after };
        }
        let mut detail = None;
        let mut source = error.source();
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => return PostbackError::ConnectionRefused,
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe => return PostbackError::ConnectionReset,
                    io::ErrorKind::TimedOut => return PostbackError::TimedOut { after },
                    _ => {}
                }
            }
            detail = Some(cause.to_string());
            source = cause.source();
        }

        let detail = detail.unwrap_or_else(|| "no further detail".to_owned());
        if error.is_connect() {
            PostbackError::Connect { detail }
        } else if error.is_body() || error.is_decode() {
            PostbackError::Body { detail }
        } else {
            PostbackError::Request { detail }
        }
    }
}

impl Exporter for PostbackExporter {
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Vec<Outcome>> {
        let sends = stream::iter(&batch.records).map(|record| self.send(record));
        Box::pin(sends.buffered(self.target.concurrency).collect())
    }

    fn preview(&self, batch: &Batch) -> String {
        let previews: Vec<String> = batch
            .records
            .iter()
            .map(|record| {
                let head = format!(
                    "# order {}, delivery {}",
                    record.order_id, record.delivery_id
                );
                let sent = build_request(&self.target.url, record, Values::Sent);
                match build_request(&self.target.url, record, Values::Shown) {
                    Ok(mut request) => {
                        // The signature covers the body as sent, secrets included.
                        let body = sent.ok().and_then(|sent| sent.body);
                        self.sign(&mut request, record, body);
                        format!("{head}\n{request}")
                    }
                    Err(error) => format!("{head}\nnot sendable: {error}\n"),
                }
            })
            .collect();
        previews.join("\n")
    }

    fn batching(&self) -> Batching {
        Batching::Stream {
            max_in_flight: self.target.concurrency,
        }
    }
}

fn method(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
    }
}

fn header_text(response: &Response, name: &str) -> Option<String> {
    let value = response.headers().get(name)?;
    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Reads at most [`MAX_BODY_BYTES`] of the body.
async fn read_body(response: &mut Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < MAX_BODY_BYTES {
        match response.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => break,
        }
    }
    body.truncate(MAX_BODY_BYTES);
    Ok(body)
}

/// Masks the record's secrets in the outcome's message, as sent and as URL-encoded, in case
/// the target echoes the request back.
fn redact(url: &Url, record: &Record, mut outcome: Outcome) -> Outcome {
    let mut redactor = Redactor::default();
    for field in record.fields.iter().filter(|field| field.secret) {
        redactor.add(&field.value);
    }
    if let Some(password) = url.password() {
        redactor.add(password);
        // The HTTP client sends a URL's user and password as a Basic authorization header,
        // which a target may echo back.
        let credentials = format!("{}:{password}", url.username());
        redactor.add(&base64::engine::general_purpose::STANDARD.encode(credentials));
    }
    outcome.message = redactor.redact(&outcome.message).into_owned();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter_core::Field;

    #[test]
    fn masks_secrets_echoed_in_an_answer() {
        let secret = Field {
            name: "token".into(),
            value: "p@ss word".into(),
            secret: true,
        };
        let record = Record {
            delivery_id: "d".into(),
            order_id: "o".into(),
            fields: vec![secret],
        };
        let url = Url::parse("http://user:url-pass-77@127.0.0.1/x").unwrap();
        let basic = "dXNlcjp1cmwtcGFzcy03Nw==";
        let message =
            format!("bad token p@ss word / p%40ss+word / \"p@ss word\" url-pass-77 {basic} / p@s…");
        let outcome = Outcome::retry(Some(400), message);
        let expected = "bad token *** / *** / \"***\" *** *** / ***…";
        assert_eq!(redact(&url, &record, outcome).message, expected);
    }
}
