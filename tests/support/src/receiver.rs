//! The HTTP receiver: a server on a free loopback port that records each request and answers
//! it from a script.
//!
//! Each connection is served by hyper with an axum router in its own task. A
//! [`Reply::drop_connection`] answer makes the handler signal its connection task, which drops
//! the connection future: the socket closes with no response bytes written.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};

use crate::reply::Reply;
use crate::request::ReceivedRequest;

/// An HTTP server on `127.0.0.1` that records every request and answers from a script.
///
/// It accepts any method on any path. Dropping the receiver stops the server and closes its
/// connections.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Server,
}

/// Where the server runs: a task on the caller's runtime, or a runtime of its own.
enum Server {
    Task(AbortHandle),
    Runtime(Option<Runtime>),
}

/// What the handlers and the test share.
#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<ReceivedRequest>>,
    script: Mutex<Script>,
}

/// Queued replies per path, and the answer once a path's queue is empty.
#[derive(Default)]
struct Script {
    queues: HashMap<String, VecDeque<Reply>>,
    default: Reply,
}

/// The handler's state for one connection.
#[derive(Clone)]
struct Connection {
    shared: Arc<Shared>,
    hang_up: Arc<Notify>,
}

impl Receiver {
    /// Starts a receiver on the current tokio runtime (use from `#[tokio::test]`).
    pub async fn start() -> Receiver {
        let (listener, addr) = bind();
        let shared = Arc::<Shared>::default();
        let task = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Receiver {
            addr,
            shared,
            server: Server::Task(task.abort_handle()),
        }
    }

    /// Starts a receiver on a runtime of its own, for plain `#[test]`s such as those that run
    /// the `exporter` binary as a subprocess.
    pub fn start_blocking() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-receiver")
            .enable_all()
            .build()
            .expect("a tokio runtime for the test receiver");
        let (listener, addr) = bind();
        let shared = Arc::<Shared>::default();
        runtime.spawn(serve(listener, Arc::clone(&shared)));
        Receiver {
            addr,
            shared,
            server: Server::Runtime(Some(runtime)),
        }
    }

    /// The address the receiver listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The full URL of `path` on this receiver, such as `http://127.0.0.1:41234/lead`.
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{slash}{path}", self.addr)
    }

    /// Queues `reply` as the next answer for requests to `path` (the path without a query).
    /// Queued replies are used once each, in order; then the default answer applies.
    pub fn respond(&self, path: &str, reply: Reply) {
        let mut script = lock(&self.shared.script);
        script
            .queues
            .entry(path.to_owned())
            .or_default()
            .push_back(reply);
    }

    /// Sets the answer for every request without a queued reply (initially `200 OK`).
    pub fn set_default(&self, reply: Reply) {
        lock(&self.shared.script).default = reply;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until at least `count` requests have arrived and returns them all.
    ///
    /// # Panics
    ///
    /// When they have not arrived within `timeout`.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(requests) = self.requests_by(count, deadline, timeout) {
                return requests;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Receiver::wait_for_requests`] for code outside an async runtime.
    pub fn wait_for_requests_blocking(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Vec<ReceivedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(requests) = self.requests_by(count, deadline, timeout) {
                return requests;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The requests once there are `count`; `None` to keep waiting; panics past the deadline.
    fn requests_by(
        &self,
        count: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> Option<Vec<ReceivedRequest>> {
        let requests = self.requests();
        if requests.len() >= count {
            return Some(requests);
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} requests within {timeout:?}, got {}: {requests:#?}",
            requests.len()
        );
        None
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Task(task) => task.abort(),
            Server::Runtime(runtime) => {
                if let Some(runtime) = runtime.take() {
                    runtime.shutdown_background();
                }
            }
        }
    }
}

impl Shared {
    fn record(&self, request: ReceivedRequest) {
        lock(&self.requests).push(request);
    }

    fn next_reply(&self, path: &str) -> Reply {
        let mut script = lock(&self.script);
        let queued = script.queues.get_mut(path).and_then(VecDeque::pop_front);
        queued.unwrap_or_else(|| script.default.clone())
    }
}

/// Binds a free loopback port; the listener is handed to the runtime that serves it.
fn bind() -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let addr = listener.local_addr().expect("the listener's address");
    (listener, addr)
}

/// Accepts connections until aborted; aborting drops the set, which aborts every connection.
async fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let listener = TcpListener::from_std(listener).expect("a tokio listener");
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(serve_connection(stream, Arc::clone(&shared)));
    }
}

/// Serves one connection until it ends or a reply asks to hang up.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let hang_up = Arc::new(Notify::new());
    let state = Connection {
        shared,
        hang_up: Arc::clone(&hang_up),
    };
    let router = Router::new().fallback(answer).with_state(state);

    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
    tokio::select! {
        _ = connection => {}
        // Dropping the connection future closes the socket without writing a response.
        _ = hang_up.notified() => {}
    }
}

/// Records the request, then answers with the next scripted reply for its path.
async fn answer(
    State(connection): State<Connection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    connection.shared.record(ReceivedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });

    let reply = connection.shared.next_reply(&path);
    tokio::time::sleep(reply.delay).await;
    if reply.drop_connection {
        connection.hang_up.notify_one();
        return std::future::pending().await;
    }
    response(reply)
}

fn response(reply: Reply) -> Response {
    let mut builder = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        builder = builder.header(name, value);
    }
    builder
        .body(Body::from(reply.body))
        .expect("a scripted reply with a valid status and headers")
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not hide what was recorded.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
