//! The one error type of the `ftp` target: what went wrong, at which step of the conversation
//! with which server, and the server's reply code and text when it answered.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use exporter_csv::CsvError;
use thiserror::Error;

/// One step of an FTP session, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Resolving the host, connecting and reading the greeting.
    Connect,
    /// `AUTH TLS`, the handshake, `PBSZ` and `PROT P`.
    StartTls,
    /// `USER` and `PASS`.
    Login { username: String },
    /// `TYPE I`, so the bytes arrive unchanged.
    BinaryMode,
    /// `CWD` into the remote folder.
    OpenFolder { dir: String },
    /// `STOR` and the data connection.
    Upload { name: String },
    /// `RNFR` and `RNTO`.
    Rename { from: String, to: String },
    /// `DELE`.
    Remove { name: String },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Connect => f.write_str("connect"),
            Step::StartTls => f.write_str("start TLS (AUTH TLS)"),
            Step::Login { username } => write!(f, "log in as `{username}`"),
            Step::BinaryMode => f.write_str("switch to binary mode (TYPE I)"),
            Step::OpenFolder { dir } => write!(f, "open folder `{dir}`"),
            Step::Upload { name } => write!(f, "upload `{name}`"),
            Step::Rename { from, to } => write!(f, "rename `{from}` to `{to}`"),
            Step::Remove { name } => write!(f, "remove `{name}`"),
        }
    }
}

/// What went wrong, naming the server and the step.
#[derive(Debug, Error)]
pub enum FtpError {
    /// The server answered a command with a reply that means no.
    #[error("{step} on {server}: the server replied {code} {text}")]
    Refused {
        server: String,
        step: Step,
        code: u16,
        text: String,
    },

    /// The server did not answer, or did not take the upload's bytes, in time.
    #[error("{step} on {server}: no answer within {} s (timeout_secs)", timeout.as_secs_f64())]
    Timeout {
        server: String,
        step: Step,
        timeout: Duration,
    },

    /// The connection could not be made, or broke.
    #[error("{step} on {server}: {source}")]
    Network {
        server: String,
        step: Step,
        source: io::Error,
    },

    /// The TLS handshake failed, for instance on a certificate the client does not trust.
    #[error("{step} on {server}: TLS failed: {message}")]
    Tls {
        server: String,
        step: Step,
        message: String,
    },

    /// The server's answer is not FTP as the client understands it.
    #[error("{step} on {server}: {message}")]
    Protocol {
        server: String,
        step: Step,
        message: String,
    },

    /// The `ca_file` could not be read or holds no certificate.
    #[error("ca_file {}: {message}", path.display())]
    CaFile { path: PathBuf, message: String },

    /// The TLS settings could not be put together.
    #[error("TLS setup for {server}: {message}")]
    TlsSetup { server: String, message: String },

    /// The batch cannot be laid out as one CSV table; retrying cannot help.
    #[error(transparent)]
    Render(#[from] CsvError),
}

impl FtpError {
    /// The server's reply code, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            FtpError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when the session can still carry commands after this error: the server said no,
    /// and the connection is fine.
    pub fn session_usable(&self) -> bool {
        matches!(self, FtpError::Refused { .. })
    }

    /// True when trying again later cannot help, whatever the server does.
    pub fn is_permanent(&self) -> bool {
        matches!(self, FtpError::Render(_))
    }
}
