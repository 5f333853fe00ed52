//! Scripted answers of the receiver.

use std::time::Duration;

/// One answer the receiver gives: an HTTP response, or a connection closed without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code.
    pub status: u16,
    /// The response body.
    pub body: Vec<u8>,
    /// Extra response headers, in order.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering (or before closing the connection).
    pub delay: Duration,
    /// Close the TCP connection without sending any response.
    pub drop_connection: bool,
}

impl Reply {
    /// `200` with body `OK`, the receiver's default answer.
    pub fn ok() -> Self {
        Reply::status(200).body("OK")
    }

    /// An answer with this status and an empty body.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            body: Vec::new(),
            headers: Vec::new(),
            delay: Duration::ZERO,
            drop_connection: false,
        }
    }

    /// Closes the connection after reading the request, without any HTTP response.
    pub fn drop_connection() -> Self {
        Reply {
            drop_connection: true,
            ..Reply::ok()
        }
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a response header, such as `Retry-After` or `Location`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before answering.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl Default for Reply {
    fn default() -> Self {
        Reply::ok()
    }
}
