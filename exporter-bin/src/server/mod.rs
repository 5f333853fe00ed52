//! The HTTP API of `exporter serve`: ingest, metrics, and health of the store.
//!
//! An event is answered 202 only after the transaction holding it has committed (see
//! [`commit`]); a request the store cannot take is answered 503 and nothing of it is kept.

mod auth;
mod commit;
mod ingest;
mod metrics;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::warn;

use crate::config::Config;
use crate::store::{SharedStore, Store, StoreError, now_ms};
use crate::worker::Engine;
pub use commit::Committer;

/// The longest a request waits for the store before it is answered 503: a store that stopped
/// answering (a stalled network to PostgreSQL) must not hold clients until they give up.
pub(crate) const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// How long an `Idempotency-Key` stays reserved for a request that never got its answer (its
/// node died while storing it) before another request with the key takes it over.
const KEY_RESERVATION: std::time::Duration = std::time::Duration::from_secs(60);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: SharedStore,
    pub committer: Committer,
    pub engine: Engine,
    pub ingest: Arc<IngestCounts>,
}

/// What the ingest API has taken since start.
#[derive(Debug, Default)]
pub struct IngestCounts {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
}

impl AppState {
    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Response> {
        let store = self.store.clone();
        let task =
            tokio::task::spawn_blocking(move || work(store.lock().expect("store lock").as_mut()));
        let unavailable =
            |message: &str| (StatusCode::SERVICE_UNAVAILABLE, error_body(message)).into_response();
        match tokio::time::timeout(STORE_WAIT, task).await {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(error))) => Err(unavailable(&error.to_string())),
            Ok(Err(_)) => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                error_body("store task failed"),
            )
                .into_response()),
            Err(_) => {
                let wait = STORE_WAIT.as_secs();
                warn!(wait_secs = wait, "the store did not answer; answering 503");
                Err(unavailable(&format!(
                    "the store did not answer within {wait} s"
                )))
            }
        }
    }

    async fn find_response(
        &self,
        key: String,
    ) -> Result<Option<(String, Option<String>)>, Response> {
        self.with_store(move |store| store.find_response(&key))
            .await
    }

    async fn reserve_key(&self, key: String, hash: String) -> Result<bool, Response> {
        let now = now_ms();
        let stale_before = now - KEY_RESERVATION.as_millis() as i64;
        self.with_store(move |store| store.reserve_key(&key, &hash, now, stale_before))
            .await
    }

    async fn release_key(&self, key: String) -> Result<(), Response> {
        self.with_store(move |store| store.release_key(&key)).await
    }

    async fn save_response(&self, key: String, hash: String, text: String) -> Result<(), Response> {
        self.with_store(move |store| store.save_response(&key, &hash, &text, now_ms()))
            .await
    }
}

/// The routes of the API.
pub fn router(state: AppState) -> Router {
    let events = Router::new()
        .route(
            "/v1/events",
            get(ingest::get_event).post(ingest::post_events),
        )
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .merge(events)
        .route("/healthz", get(healthz))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// How long requests in flight may take to finish once shutdown began.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the API on `listener` until `shutdown` turns true, then lets requests in flight
/// finish, for at most [`DRAIN_LIMIT`]: a client that stalls mid-body cannot hold the exit.
/// A request cut off then was never answered 202, so nothing acknowledged is lost.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut stopping = shutdown.clone();
    let mut draining = shutdown;
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let served = axum::serve(listener, router(state)).with_graceful_shutdown(stop);
    let limit = async move {
        let _ = draining.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    tokio::select! {
        result = served.into_future() => result,
        () = limit => {
            warn!(
                "requests still unanswered after 30 s of shutdown are closed; they were not \
                    acknowledged",
            );
            Ok(())
        }
    }
}

/// Starts the group committer; each commit wakes the workers.
pub fn committer(store: SharedStore, engine: &Engine) -> Committer {
    let engine = engine.clone();
    Committer::start(store, move || engine.wake())
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.with_store(|store| store.ping()).await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok", "store": "ok"})),
        )
            .into_response(),
        Err(response) => response,
    }
}

/// A JSON error answer: `{"error": "..."}`.
pub fn error_body(message: &str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "error": message }))
}
