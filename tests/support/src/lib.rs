//! Real servers the tests start on `127.0.0.1`, so targets are tested against the network.
//!
//! [`Receiver`] is an HTTP server on a free loopback port that records every request it gets
//! and answers from a script: `200 OK` by default, or the [`Reply`]s queued for a path, which
//! can set a status, a body, headers, a delay, or close the connection without answering.
//!
//! ```no_run
//! # async fn example() {
//! use exporter_test_support::{Receiver, Reply};
//!
//! let receiver = Receiver::start().await;
//! receiver.respond("/lead", Reply::status(503).header("Retry-After", "7"));
//! let url = receiver.url("/lead");
//! // ... point a target at `url`, deliver, then look at what arrived:
//! let requests = receiver.requests();
//! # }
//! ```

mod receiver;
mod reply;
mod request;

pub use receiver::Receiver;
pub use reply::Reply;
pub use request::{ReceivedRequest, decode_pairs};
