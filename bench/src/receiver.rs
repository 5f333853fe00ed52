//! The receiver: a bare HTTP server in its own process that answers `200 OK` to everything,
//! counts requests, timestamps each by its `Idempotency-Key`, and keeps the first requests so
//! the baseline can replay exactly what the exporter sent.
//!
//! Control paths, under `/__bench/`: `stats` (the count), `arrivals` (key → arrival time, µs
//! since the Unix epoch), `captured` (the kept requests as JSON lines) and `reset`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};

/// Requests kept for the baseline to replay; it cycles through them past this many.
const CAPTURE_LIMIT: usize = 100_000;

/// Requests with a larger body (ingest batches) are counted, not kept.
const CAPTURE_BODY_BYTES: usize = 4096;

/// A request as it arrived, enough to send it again.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Default)]
struct Shared {
    count: AtomicU64,
    arrivals: Mutex<HashMap<String, u64>>,
    captured: Mutex<Vec<Captured>>,
}

/// Runs the receiver until killed: prints `listening on ADDR`, then serves.
pub fn serve(port: u16) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let app = Router::new()
            .route("/__bench/stats", axum::routing::get(stats))
            .route("/__bench/arrivals", axum::routing::get(arrivals))
            .route("/__bench/captured", axum::routing::get(captured))
            .route("/__bench/reset", axum::routing::post(reset))
            .fallback(receive)
            .with_state(Arc::<Shared>::default());
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let at = crate::clock::now_micros();
    shared.count.fetch_add(1, Ordering::Relaxed);
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        let mut arrivals = shared.arrivals.lock().expect("arrivals lock");
        arrivals.entry(key.to_owned()).or_insert(at);
    }
    let mut captured = shared.captured.lock().expect("capture lock");
    if captured.len() < CAPTURE_LIMIT && body.len() <= CAPTURE_BODY_BYTES {
        captured.push(capture(&method, &uri, &headers, &body));
    }
    "OK"
}

fn capture(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Captured {
    let kept = ["content-type", "idempotency-key", "user-agent"];
    let headers = kept
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    Captured {
        method: method.to_string(),
        target: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    axum::Json(json!({ "count": shared.count.load(Ordering::Relaxed) }))
}

async fn arrivals(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let arrivals = shared.arrivals.lock().expect("arrivals lock").clone();
    axum::Json(json!(arrivals))
}

async fn captured(State(shared): State<Arc<Shared>>) -> String {
    let captured = shared.captured.lock().expect("capture lock");
    let mut lines = String::new();
    for request in captured.iter() {
        let headers: Vec<[&str; 2]> = request
            .headers
            .iter()
            .map(|(n, v)| [n.as_str(), v.as_str()])
            .collect();
        let line = json!({
            "method": request.method,
            "target": request.target,
            "headers": headers,
            "body": request.body,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    lines
}

async fn reset(State(shared): State<Arc<Shared>>) -> &'static str {
    shared.count.store(0, Ordering::Relaxed);
    shared.arrivals.lock().expect("arrivals lock").clear();
    shared.captured.lock().expect("capture lock").clear();
    "OK"
}

/// A receiver process started by the bench; killed when dropped.
pub struct ReceiverProcess {
    child: Child,
    pub addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl ReceiverProcess {
    /// Starts this binary's `receiver` subcommand on `port` (0: a free one).
    pub fn start(port: u16) -> anyhow::Result<ReceiverProcess> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let mut child = Command::new(exe)
            .args(["receiver", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the receiver")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the receiver did not start: {line:?}");
        };
        let addr = addr.parse()?;
        Ok(ReceiverProcess {
            child,
            addr,
            _stdout: stdout,
        })
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Talks to a receiver's control paths.
#[derive(Clone)]
pub struct Control {
    client: reqwest::Client,
    base: String,
}

impl Control {
    pub fn new(client: &reqwest::Client, receiver: &ReceiverProcess) -> Control {
        Control {
            client: client.clone(),
            base: receiver.url("/__bench"),
        }
    }

    pub async fn count(&self) -> anyhow::Result<u64> {
        let stats: Value = self.json(&format!("{}/stats", self.base)).await?;
        Ok(stats["count"].as_u64().unwrap_or(0))
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        self.client
            .post(format!("{}/reset", self.base))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn arrivals(&self) -> anyhow::Result<HashMap<String, u64>> {
        self.json(&format!("{}/arrivals", self.base)).await
    }

    pub async fn captured(&self) -> anyhow::Result<Vec<Captured>> {
        let text = self
            .get(&format!("{}/captured", self.base))
            .await?
            .text()
            .await?;
        text.lines().map(parse_captured).collect()
    }

    /// Waits until the receiver has counted `want` requests, or `limit` has passed.
    pub async fn wait_for(&self, want: u64, limit: std::time::Duration) -> anyhow::Result<u64> {
        let started = std::time::Instant::now();
        loop {
            let count = self.count().await?;
            if count >= want || started.elapsed() > limit {
                return Ok(count);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        let bytes = self.get(url).await?.bytes().await?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn get(&self, url: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self.client.get(url).send().await?.error_for_status()?)
    }
}

fn parse_captured(line: &str) -> anyhow::Result<Captured> {
    let value: Value = serde_json::from_str(line)?;
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let headers = value["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned())))
        .collect();
    Ok(Captured {
        method: text("method"),
        target: text("target"),
        headers,
        body: text("body"),
    })
}
