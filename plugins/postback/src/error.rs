//! Why a record could not be sent: a rendering the target can never accept, or a transport
//! failure worth another try.

use std::time::Duration;

use thiserror::Error;

/// Why one record did not reach the target.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PostbackError {
    /// `header:httpMethod` holds something other than a supported verb.
    #[error("header:httpMethod is {value:?}; expected one of GET, POST, PUT, PATCH, DELETE")]
    UnknownMethod { value: String },

    /// `header:httpMethodType` holds something other than GET or POST.
    #[error(
        "header:httpMethodType is {value:?}; expected GET (parameters in the URL) or POST \
         (parameters in the body)"
    )]
    UnknownMethodType { value: String },

    /// A `header:NAME` mapping whose NAME is not a valid HTTP header name.
    #[error(
        "mapping {field:?} does not name a valid HTTP header (expected `header:NAME`, NAME a \
         token such as `X-Api-Key`)"
    )]
    InvalidHeaderName { field: String },

    /// A header value with a line break or another control character.
    #[error(
        "header {name:?} has a value HTTP cannot carry (a line break or another control character)"
    )]
    InvalidHeaderValue { name: String },

    /// No answer within the profile's `timeout_secs`.
    #[error("timed out after {}s", .after.as_secs_f64())]
    TimedOut { after: Duration },

    /// Nothing listens at the target's address.
    #[error("connection refused")]
    ConnectionRefused,

    /// The target reset the connection.
    #[error("connection reset by the target")]
    ConnectionReset,

    /// Connecting failed for another reason: DNS, TLS, an unreachable network.
    #[error("could not connect: {detail}")]
    Connect { detail: String },

    /// The request was sent but no complete answer came back.
    #[error("request failed: {detail}")]
    Request { detail: String },

    /// The answer's body broke off while it was read.
    #[error("reading the answer failed: {detail}")]
    Body { detail: String },
}

impl PostbackError {
    /// True when the record can never be sent as rendered, so trying again is pointless.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            PostbackError::UnknownMethod { .. }
                | PostbackError::UnknownMethodType { .. }
                | PostbackError::InvalidHeaderName { .. }
                | PostbackError::InvalidHeaderValue { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_the_timeout_in_seconds() {
        let error = PostbackError::TimedOut {
            after: Duration::from_millis(250),
        };
        assert_eq!(error.to_string(), "timed out after 0.25s");
        let error = PostbackError::TimedOut {
            after: Duration::from_secs(30),
        };
        assert_eq!(error.to_string(), "timed out after 30s");
    }

    #[test]
    fn only_rendering_errors_are_permanent() {
        assert!(
            PostbackError::UnknownMethod {
                value: "GRAB".into()
            }
            .is_permanent()
        );
        assert!(!PostbackError::ConnectionRefused.is_permanent());
    }
}
