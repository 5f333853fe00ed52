//! `GET /metrics`: events accepted, delivery outcomes, attempt durations, queue depth and the
//! age of the oldest due delivery per profile.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::metrics::Text;
use crate::store::now_ms;

pub async fn metrics(State(state): State<AppState>) -> Response {
    let profiles: Vec<String> = state
        .config
        .profiles
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let statuses = match state
        .with_store(move |store| store.status(&profiles, now_ms()))
        .await
    {
        Ok(statuses) => statuses,
        Err(response) => return response,
    };
    let mut text = Text::default();
    let ingest = &state.ingest;
    text.family(
        "exporter_events_accepted_total",
        "counter",
        "Events committed by the ingest API.",
    )
    .sample(
        "exporter_events_accepted_total",
        &[],
        ingest.accepted.load(Ordering::Relaxed) as f64,
    );
    text.family(
        "exporter_events_duplicate_total",
        "counter",
        "Events the store already had.",
    )
    .sample(
        "exporter_events_duplicate_total",
        &[],
        ingest.duplicates.load(Ordering::Relaxed) as f64,
    );
    text.family(
        "exporter_events_rejected_total",
        "counter",
        "Items that were not valid order events.",
    )
    .sample(
        "exporter_events_rejected_total",
        &[],
        ingest.rejected.load(Ordering::Relaxed) as f64,
    );

    let name = "exporter_deliveries_total";
    text.family(
        name,
        "counter",
        "Delivery attempts since start, by profile and outcome.",
    );
    for (profile, counts) in state.engine.counts() {
        for (outcome, count) in [
            ("delivered", counts.delivered),
            ("duplicate", counts.duplicates),
            ("superseded", counts.superseded),
            ("retry", counts.retries),
            ("failed", counts.failed),
        ] {
            text.sample(
                name,
                &[("profile", &profile), ("outcome", outcome)],
                count as f64,
            );
        }
    }
    let name = "exporter_attempt_duration_seconds";
    text.family(
        name,
        "histogram",
        "How long a call to the target took, per delivery.",
    );
    for (profile, histogram) in state.engine.durations() {
        text.histogram(name, &[("profile", &profile)], &histogram);
    }
    let depth = "exporter_queue_depth";
    text.family(depth, "gauge", "Pending deliveries, by profile.");
    for status in &statuses {
        text.sample(
            depth,
            &[("profile", &status.profile)],
            status.pending as f64,
        );
    }
    let age = "exporter_oldest_due_age_seconds";
    text.family(
        age,
        "gauge",
        "How long the earliest due delivery has waited past its due time.",
    );
    for status in &statuses {
        text.sample(
            age,
            &[("profile", &status.profile)],
            status.oldest_due_secs as f64,
        );
    }
    let paused = "exporter_profile_paused";
    text.family(paused, "gauge", "1 while a profile is paused.");
    for status in &statuses {
        text.sample(
            paused,
            &[("profile", &status.profile)],
            f64::from(u8::from(status.paused)),
        );
    }
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text.finish()).into_response()
}
