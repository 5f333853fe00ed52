//! The receiver against raw TCP clients: what it records, how it follows its script.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use exporter_test_support::{Receiver, Reply};

/// Sends one HTTP/1.1 request with `Connection: close` and returns all the bytes answered.
fn exchange(receiver: &Receiver, head: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(receiver.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "{head}\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn records_method_path_query_headers_and_body() {
    let receiver = Receiver::start_blocking();
    let answer = exchange(
        &receiver,
        "PUT /lead?a=1+2&b=%26 HTTP/1.1\r\nX-Token: t",
        "x=1",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");

    let request = &receiver.requests()[0];
    assert_eq!(request.method, "PUT");
    assert_eq!(request.path, "/lead");
    assert_eq!(request.query, "a=1+2&b=%26");
    assert_eq!(
        request.query_pairs(),
        [("a".into(), "1 2".into()), ("b".into(), "&".into())]
    );
    assert_eq!(request.header("x-token"), Some("t"));
    assert_eq!(request.form_pairs(), [("x".to_owned(), "1".to_owned())]);
}

#[test]
fn answers_queued_replies_in_order_then_the_default() {
    let receiver = Receiver::start_blocking();
    receiver.respond(
        "/a",
        Reply::status(503).header("Retry-After", "7").body("busy"),
    );
    receiver.respond("/a", Reply::status(201));
    receiver.set_default(Reply::status(204));

    let first = exchange(&receiver, "GET /a HTTP/1.1", "");
    assert!(first.starts_with("HTTP/1.1 503"), "{first}");
    assert!(
        first.to_ascii_lowercase().contains("retry-after: 7"),
        "{first}"
    );
    assert!(first.ends_with("busy"), "{first}");
    assert!(exchange(&receiver, "GET /a HTTP/1.1", "").starts_with("HTTP/1.1 201"));
    assert!(exchange(&receiver, "GET /a HTTP/1.1", "").starts_with("HTTP/1.1 204"));
    assert!(exchange(&receiver, "GET /b HTTP/1.1", "").starts_with("HTTP/1.1 204"));
}

#[test]
fn drops_the_connection_without_answering() {
    let receiver = Receiver::start_blocking();
    receiver.respond("/gone", Reply::drop_connection());
    assert_eq!(exchange(&receiver, "POST /gone HTTP/1.1", "x=1"), "");
    assert_eq!(
        receiver.requests().len(),
        1,
        "a dropped request is still recorded"
    );
}

#[test]
fn delays_an_answer() {
    let receiver = Receiver::start_blocking();
    receiver.respond("/slow", Reply::ok().delay(Duration::from_millis(200)));
    let started = Instant::now();
    exchange(&receiver, "GET /slow HTTP/1.1", "");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn runs_on_the_callers_runtime_and_waits_for_requests() {
    let receiver = Receiver::start().await;
    let url = receiver.url("lead");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/lead"),
        "{url}"
    );

    let addr = receiver.addr();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /lead HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let _ = stream.read(&mut [0; 64]);
    });
    let requests = receiver.wait_for_requests(1, Duration::from_secs(5)).await;
    assert_eq!(requests[0].path, "/lead");
}
