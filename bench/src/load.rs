//! The client side: a plain reqwest client replaying requests, posting events, and pacing
//! requests at a steady rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::events::Events;
use crate::receiver::Captured;

/// A client for loopback HTTP: no proxy, a connection pool as wide as any run's concurrency.
pub fn client() -> anyhow::Result<reqwest::Client> {
    // Either provider works if something installed one first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()?;
    Ok(client)
}

/// Sends `total` requests, cycling through `requests`, from `concurrency` tasks; returns how
/// long it took.
pub async fn replay(
    client: &reqwest::Client,
    base: &str,
    requests: Arc<Vec<Captured>>,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    anyhow::ensure!(!requests.is_empty(), "nothing to replay");
    let base = base.to_owned();
    let send = move |client: reqwest::Client, index: usize| {
        let request = requests[index % requests.len()].clone();
        let url = format!("{base}{}", request.target);
        async move {
            let method = reqwest::Method::from_bytes(request.method.as_bytes())?;
            let mut builder = client.request(method, url);
            for (name, value) in &request.headers {
                builder = builder.header(name, value);
            }
            if !request.body.is_empty() {
                builder = builder.body(request.body);
            }
            check(builder.send().await?, 200).await
        }
    };
    spread(client, total, concurrency, send).await
}

/// Posts events `first..first + count` as JSON lines, `batch` per request, from `clients`
/// tasks.
#[allow(clippy::too_many_arguments)]
pub async fn post_batches(
    client: &reqwest::Client,
    url: &str,
    events: Arc<Events>,
    first: usize,
    count: usize,
    batch: usize,
    clients: usize,
    expect: u16,
) -> anyhow::Result<Duration> {
    let url = url.to_owned();
    let requests = count.div_ceil(batch);
    let send = move |client: reqwest::Client, index: usize| {
        let range = first + index * batch..first + ((index + 1) * batch).min(count);
        let body = events.ndjson(range);
        let url = url.clone();
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await?;
            check(response, expect).await
        }
    };
    spread(client, requests, clients, send).await
}

/// Posts events `first..first + count` one per request, from `clients` tasks.
#[allow(clippy::too_many_arguments)]
pub async fn post_singles(
    client: &reqwest::Client,
    url: &str,
    events: Arc<Events>,
    first: usize,
    count: usize,
    clients: usize,
    expect: u16,
) -> anyhow::Result<Duration> {
    let url = url.to_owned();
    let send = move |client: reqwest::Client, index: usize| {
        let body = events.event(first + index);
        let url = url.clone();
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            check(response, expect).await
        }
    };
    spread(client, count, clients, send).await
}

/// Posts events `first..first + count` one per request at `rate` per second, each in its own
/// task so a slow answer does not delay the next; returns each request's round trip.
pub async fn post_paced(
    client: &reqwest::Client,
    url: &str,
    events: &Events,
    first: usize,
    count: usize,
    rate: u32,
    expect: u16,
) -> anyhow::Result<Vec<Duration>> {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut tasks = tokio::task::JoinSet::new();
    for index in first..first + count {
        ticks.tick().await;
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .body(events.event(index));
        tasks.spawn(async move {
            let started = Instant::now();
            check(request.send().await?, expect).await?;
            anyhow::Ok(started.elapsed())
        });
    }
    let mut round_trips = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        round_trips.push(done??);
    }
    Ok(round_trips)
}

/// Runs `send(client, i)` for every `i` in `0..total` from `concurrency` tasks.
async fn spread<F, Fut>(
    client: &reqwest::Client,
    total: usize,
    concurrency: usize,
    send: F,
) -> anyhow::Result<Duration>
where
    F: Fn(reqwest::Client, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (next, send, client) = (next.clone(), send.clone(), client.clone());
        tasks.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return anyhow::Ok(());
                }
                send(client.clone(), index).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a client task panicked")??;
    }
    Ok(started.elapsed())
}

async fn check(response: reqwest::Response, expect: u16) -> anyhow::Result<()> {
    let status = response.status().as_u16();
    let body = response.bytes().await?;
    if status != expect {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        bail!("expected HTTP {expect}, got {status}: {text}");
    }
    Ok(())
}
