//! `POST /v1/events` and the CRM-style `GET /v1/events?orderId=...`.

use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::{AppState, error_body};
use crate::ingest::{self, ImportStats, PlanError, Planned, Rejected};
use crate::store::Imported;

/// The answer to an accepted request.
#[derive(Debug, Serialize)]
struct Accepted {
    /// Events newly stored (test orders and unmatched ones included).
    accepted: u64,
    /// Of those, test orders: counted, never sent.
    test_orders: u64,
    /// Of those, events that matched no profile.
    unmatched: u64,
    /// Events the store already had (same order, trigger and `dateUpdated`); not stored again.
    duplicates: u64,
    /// Items that are not valid order events, by position; the others were accepted.
    rejected: Vec<Rejected>,
}

/// How much of a body over the limit is read and dropped before the 413 is sent, so a client
/// still writing it reads the answer instead of a broken connection.
const DRAIN_BYTES: usize = 16 << 20;

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a body of at most `limit` bytes. A longer one is read on (and dropped) up to
/// [`DRAIN_BYTES`], then refused.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        seen += chunk.len();
        if seen > limit {
            if seen > DRAIN_BYTES {
                break;
            }
            kept = Vec::new();
            continue;
        }
        kept.extend_from_slice(&chunk);
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(Bytes::from(kept))
}

/// Accepts one event, a JSON array, JSON lines or a query page.
pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = state.config.server.max_body_bytes;
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, read_body(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => {
            let message = format!(
                "the request body is larger than the limit of {limit} bytes; send smaller batches"
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, error_body(&message)).into_response();
        }
        Ok(Err(BodyError::Broken)) => {
            let message = "the request body could not be read";
            return (StatusCode::BAD_REQUEST, error_body(message)).into_response();
        }
        Err(_) => {
            let message = format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            );
            return (StatusCode::REQUEST_TIMEOUT, error_body(&message)).into_response();
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| (key.to_owned(), body_hash(&bytes)));
    if let Some((key, hash)) = &key
        && let Err(answer) = saved_answer(&state, key, hash).await
    {
        return answer;
    }
    if bytes.trim_ascii().is_empty() {
        let message = "the request body holds no events";
        return (StatusCode::BAD_REQUEST, error_body(message)).into_response();
    }
    let bytes = if is_form(&headers) && !looks_like_json(&bytes) {
        form_event(&bytes)
    } else {
        bytes.to_vec()
    };
    let config = state.config.clone();
    let max = config.server.max_batch_events;
    let planned = match tokio::task::spawn_blocking(move || ingest::plan_body(&config, &bytes, max))
        .await
    {
        Ok(Ok(planned)) => planned,
        Ok(Err(PlanError::TooMany { limit })) => {
            let message =
                format!("the request holds more than {limit} events; send them in smaller batches");
            return (StatusCode::BAD_REQUEST, error_body(&message)).into_response();
        }
        Ok(Err(PlanError::Input(error))) => {
            return (StatusCode::BAD_REQUEST, error_body(&error.to_string())).into_response();
        }
        Err(_) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body("reading the request failed"),
            )
                .into_response();
        }
    };
    accept(&state, planned, key).await
}

/// How long a client may take to send a request body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SHA-256 of a request body, in hex: what an `Idempotency-Key` is remembered with.
fn body_hash(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// True for a form-encoded body, as a CRM export profile with a header mapping posts.
fn is_form(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    content_type.is_some_and(|value| {
        let essence = value.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

/// True for a body that starts like JSON: clients such as curl label any posted data as a form
/// unless told otherwise, and a JSON event read as a form would lose every field.
fn looks_like_json(body: &[u8]) -> bool {
    matches!(body.trim_ascii_start().first(), Some(b'{' | b'['))
}

/// One event, as JSON, from URL-encoded name and value pairs.
fn form_event(pairs: &[u8]) -> Vec<u8> {
    let mut event = Map::new();
    for (name, value) in url::form_urlencoded::parse(pairs) {
        event.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    serde_json::to_vec(&Value::Object(event)).expect("a map serializes")
}

/// Builds one event from the query string, as a CRM export profile sends a postback.
pub async fn get_event(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let body = form_event(query.as_bytes());
    let config = state.config.clone();
    match ingest::plan_body(&config, &body, 1) {
        Ok(planned) => accept(&state, planned, None).await,
        Err(error) => (StatusCode::BAD_REQUEST, error_body(&error.to_string())).into_response(),
    }
}

/// Commits the planned events and answers with what happened to them.
async fn accept(state: &AppState, planned: Planned, key: Option<(String, String)>) -> Response {
    let Planned { events, rejected } = planned;
    if events.is_empty() && !rejected.is_empty() {
        let body = Accepted {
            accepted: 0,
            test_orders: 0,
            unmatched: 0,
            duplicates: 0,
            rejected,
        };
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    if let Some((key, hash)) = &key
        && let Err(answer) = reserve(state, key, hash).await
    {
        return answer;
    }
    let mut stats = ImportStats::default();
    let (events, results) = match state.committer.commit(events).await {
        Ok(committed) => committed,
        Err(reason) => {
            if let Some((key, _)) = &key
                && state.release_key(key.clone()).await.is_err()
            {
                warn!("could not release an Idempotency-Key; it is taken over once stale");
            }
            let message =
                format!("the events could not be stored, and none of them was accepted: {reason}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                error_body(&message),
            )
                .into_response();
        }
    };
    let mut test_orders = 0;
    for (event, result) in events.iter().zip(&results) {
        ingest::count(&mut stats, event, *result);
        if event.test_order && *result == Imported::Stored {
            test_orders += 1;
        }
    }
    for item in &rejected {
        warn!(
            index = item.index,
            at = %item.at,
            reason = %item.reason,
            "rejected an item of an ingest request",
        );
    }
    let counts = &state.ingest;
    counts.accepted.fetch_add(stats.stored, Ordering::Relaxed);
    counts
        .duplicates
        .fetch_add(stats.duplicates, Ordering::Relaxed);
    counts
        .rejected
        .fetch_add(rejected.len() as u64, Ordering::Relaxed);
    let answer = Accepted {
        accepted: stats.stored,
        test_orders,
        unmatched: stats.unmatched,
        duplicates: stats.duplicates,
        rejected,
    };
    debug!(
        accepted = answer.accepted,
        duplicates = answer.duplicates,
        rejected = answer.rejected.len(),
        "ingest request committed"
    );
    let text = serde_json::to_string(&answer).expect("the answer serializes");
    let saved = match key {
        Some((key, hash)) => state.save_response(key, hash, text.clone()).await.is_ok(),
        None => true,
    };
    if !saved {
        warn!(
            "could not save the answer to an Idempotency-Key; a re-send is still deduplicated by \
                its events"
        );
    }
    json_response(StatusCode::ACCEPTED, text)
}

/// Answers a request whose `Idempotency-Key` has an answer saved: that answer, or 422 when the
/// key answered another request. `Ok` when the key has no answer yet.
async fn saved_answer(state: &AppState, key: &str, hash: &str) -> Result<(), Response> {
    match state.find_response(key.to_owned()).await? {
        Some((_, Some(saved_hash))) if saved_hash != hash => {
            let message = "this Idempotency-Key was already used for a different request; \
                send new events with a new key";
            Err((StatusCode::UNPROCESSABLE_ENTITY, error_body(message)).into_response())
        }
        Some((saved, _)) if !saved.is_empty() => Err(replayed(saved)),
        _ => Ok(()),
    }
}

/// Reserves the request's `Idempotency-Key` before its events are stored. When another copy
/// of the request (on this node or another) holds it, waits for that one's answer and gives it
/// back; a copy still being stored after the store's wait gets 409.
async fn reserve(state: &AppState, key: &str, hash: &str) -> Result<(), Response> {
    let deadline = tokio::time::Instant::now() + super::STORE_WAIT;
    loop {
        if state.reserve_key(key.to_owned(), hash.to_owned()).await? {
            return Ok(());
        }
        saved_answer(state, key, hash).await?;
        if tokio::time::Instant::now() >= deadline {
            let message = "another request with this Idempotency-Key is still being stored; \
                send it again in a few seconds";
            return Err((StatusCode::CONFLICT, error_body(message)).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn replayed(saved: String) -> Response {
    let mut response = json_response(StatusCode::ACCEPTED, saved);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn json_response(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}
