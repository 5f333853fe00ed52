//! [`Session`]: one conversation with the FTP server — connect, TLS, log in, open the folder,
//! upload, rename, remove, quit — where every step waits at most the profile's timeout.
//!
//! A session is used for one flush (or one probe) and dropped; dropping it closes the
//! connections, so a step that timed out leaves nothing behind in this process. Data
//! connections go to the control connection's address whatever the server's `PASV` answer
//! names, so a server cannot point the exporter at another host.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsStream, ImplAsyncFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError as ClientError, Mode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::{FtpConfig, TlsMode};
use crate::error::{FtpError, Step};

/// The client type for plain and TLS sessions alike; a plain session never starts TLS.
type Client = ImplAsyncFtpStream<AsyncRustlsStream>;

/// The upload is written in parts of this size, each of which must be taken within the
/// timeout, so a large file over a slow link is fine and a stalled server is noticed.
const PART_BYTES: usize = 64 * 1024;

/// The most characters of a server reply kept in a message.
const MAX_REPLY_CHARS: usize = 300;

/// Reply codes that mean "I do not know that command": the server has no `EPSV`.
const UNKNOWN_COMMAND: [u32; 3] = [500, 501, 502];

/// A logged-in FTP session in the profile's folder.
pub struct Session<'a> {
    context: Context<'a>,
    client: Client,
}

/// What a step needs to bound its wait and word its error.
struct Context<'a> {
    config: &'a FtpConfig,
    server: String,
}

impl<'a> Session<'a> {
    /// Connects, starts TLS when configured, logs in, switches to binary mode and opens
    /// `remote_dir`.
    pub async fn open(config: &'a FtpConfig) -> Result<Session<'a>, FtpError> {
        let context = Context {
            config,
            server: config.server(),
        };
        let stream = context.connect().await?;
        let mut client = context
            .within(Step::Connect, Client::connect_with_stream(stream))
            .await?;
        if config.tls == TlsMode::Explicit {
            let connector = context.tls_connector().await?;
            let secured = client.into_secure(connector, &config.host);
            client = context.within(Step::StartTls, secured).await?;
        }
        client.set_passive_nat_workaround(true);
        let client = if config.passive {
            client.set_mode(Mode::ExtendedPassive);
            client
        } else {
            client.active_mode(config.timeout)
        };
        let mut session = Session { context, client };
        session.login().await?;
        if let Some(dir) = &config.remote_dir {
            let step = Step::OpenFolder { dir: dir.clone() };
            let cwd = session.client.cwd(dir);
            session.context.within(step, cwd).await?;
        }
        Ok(session)
    }

    /// `host:port` of the server.
    pub fn server(&self) -> &str {
        &self.context.server
    }

    async fn login(&mut self) -> Result<(), FtpError> {
        let config = self.context.config;
        let step = Step::Login {
            username: config.username.clone(),
        };
        let login = self
            .client
            .login(config.username.as_str(), config.password.expose());
        self.context.within(step, login).await?;
        let binary = self.client.transfer_type(FileType::Binary);
        self.context.within(Step::BinaryMode, binary).await
    }

    /// Stores `body` as `name` in the folder, replacing a file of that name.
    pub async fn upload(&mut self, name: &str, body: &[u8]) -> Result<(), FtpError> {
        let step = || Step::Upload {
            name: name.to_owned(),
        };
        let mut transfer = self.open_upload(name).await?;
        for part in body.chunks(PART_BYTES) {
            self.context
                .within(step(), transfer.write_all(part))
                .await?;
        }
        self.context.within(step(), transfer.finish()).await
    }

    /// Sends `STOR`; when the server refuses `EPSV`, falls back to `PASV` for the session.
    async fn open_upload(
        &mut self,
        name: &str,
    ) -> Result<suppaftp::tokio::TransferStream<AsyncRustlsStream>, FtpError> {
        let step = Step::Upload {
            name: name.to_owned(),
        };
        let timeout = self.context.config.timeout;
        let opened = tokio::time::timeout(timeout, self.client.put_with_stream(name)).await;
        match opened {
            Ok(Err(ClientError::UnexpectedResponse(reply)))
                if self.context.config.passive
                    && UNKNOWN_COMMAND.contains(&reply.status.code()) =>
            {
                debug!(server = %self.context.server, "the server refuses EPSV; using PASV");
                self.client.set_mode(Mode::Passive);
                let stor = self.client.put_with_stream(name);
                self.context.within(step, stor).await
            }
            Ok(result) => result.map_err(|cause| self.context.error(step, cause.into())),
            Err(_) => Err(self.context.timeout(step)),
        }
    }

    /// Renames `from` to `to` in the folder.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<(), FtpError> {
        let step = Step::Rename {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.context
            .within(step, self.client.rename(from, to))
            .await
    }

    /// Removes `name` from the folder.
    pub async fn remove(&mut self, name: &str) -> Result<(), FtpError> {
        let step = Step::Remove {
            name: name.to_owned(),
        };
        self.context.within(step, self.client.rm(name)).await
    }

    /// Says goodbye; the work is done whatever the answer, so errors are ignored.
    pub async fn quit(mut self) {
        let timeout = self.context.config.timeout;
        let _ = tokio::time::timeout(timeout, self.client.quit()).await;
    }
}

/// Why a step failed, before it is worded.
enum Cause {
    Client(ClientError),
    Io(io::Error),
}

impl From<ClientError> for Cause {
    fn from(error: ClientError) -> Self {
        Cause::Client(error)
    }
}

impl From<io::Error> for Cause {
    fn from(error: io::Error) -> Self {
        Cause::Io(error)
    }
}

impl Context<'_> {
    /// Runs one step, giving up after the timeout.
    async fn within<T, E: Into<Cause>>(
        &self,
        step: Step,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, FtpError> {
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(cause)) => Err(self.error(step, cause.into())),
            Err(_) => Err(self.timeout(step)),
        }
    }

    /// Resolves the host and connects to the first address that answers.
    async fn connect(&self) -> Result<TcpStream, FtpError> {
        let host = (self.config.host.as_str(), self.config.port);
        let found = tokio::net::lookup_host(host);
        let addresses: Vec<SocketAddr> = self.within(Step::Connect, found).await?.collect();
        let mut last = None;
        for address in addresses {
            let attempt = TcpStream::connect(address);
            match self.within(Step::Connect, attempt).await {
                Ok(stream) => return Ok(stream),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            let source = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
            self.error(Step::Connect, Cause::Io(source))
        }))
    }

    /// The TLS client: the system's trusted CAs plus those of `ca_file`, checked against
    /// `host`. Reads files, so it runs on a blocking thread.
    async fn tls_connector(&self) -> Result<AsyncRustlsConnector, FtpError> {
        let ca_file = self.config.ca_file.clone();
        let server = self.server.clone();
        let built = tokio::task::spawn_blocking(move || tls_config(ca_file, &server)).await;
        let config = built.unwrap_or_else(|join| {
            Err(FtpError::TlsSetup {
                server: self.server.clone(),
                message: join.to_string(),
            })
        })?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(AsyncRustlsConnector::from(connector))
    }

    fn timeout(&self, step: Step) -> FtpError {
        FtpError::Timeout {
            server: self.server.clone(),
            step,
            timeout: self.config.timeout,
        }
    }

    fn error(&self, step: Step, cause: Cause) -> FtpError {
        let server = self.server.clone();
        let error = match cause {
            Cause::Io(source) | Cause::Client(ClientError::ConnectionError(source)) => {
                return FtpError::Network {
                    server,
                    step,
                    source,
                };
            }
            Cause::Client(error) => error,
        };
        match error {
            ClientError::UnexpectedResponse(reply) => FtpError::Refused {
                server,
                step,
                code: reply.status.code() as u16,
                text: self.reply_text(&reply.body),
            },
            ClientError::SecureError(message) => FtpError::Tls {
                server,
                step,
                // The client wraps its TLS errors in its own prefix, sometimes twice.
                message: self.mask(message.trim_start_matches("Secure error: ")),
            },
            ClientError::BadResponse => FtpError::Protocol {
                server,
                step,
                message: "the server's answer is not an FTP reply".to_owned(),
            },
            other => FtpError::Protocol {
                server,
                step,
                message: self.mask(&other.to_string()),
            },
        }
    }

    /// The reply's text without its codes, on one line, shortened, the password masked.
    fn reply_text(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let lines: Vec<&str> = text
            .lines()
            .map(|line| strip_code(line).trim())
            .filter(|line| !line.is_empty())
            .collect();
        let text: String = lines
            .join(" ")
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let mut short: String = text.chars().take(MAX_REPLY_CHARS).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        self.mask(&short)
    }

    /// Masks the password should a server ever echo it.
    fn mask(&self, text: &str) -> String {
        let password = self.config.password.expose();
        if password.chars().count() >= 4 {
            text.replace(password, "***")
        } else {
            text.to_owned()
        }
    }
}

/// `530 Login incorrect` and `530-first line` without `530` and the separator.
fn strip_code(line: &str) -> &str {
    let bytes = line.as_bytes();
    let coded = bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && matches!(bytes[3], b' ' | b'-');
    if coded { &line[4..] } else { line }
}

fn tls_config(ca_file: Option<std::path::PathBuf>, server: &str) -> Result<ClientConfig, FtpError> {
    let setup = |message: String| FtpError::TlsSetup {
        server: server.to_owned(),
        message,
    };
    let extra_roots = match ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|error| setup(format!("cannot load the trusted CA certificates: {error}")))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| setup(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

fn read_ca_file(path: std::path::PathBuf) -> Result<Vec<CertificateDer<'static>>, FtpError> {
    let error = |message: String| FtpError::CaFile {
        path: path.clone(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not a PEM file of certificates: {e}")))?;
    if certs.is_empty() {
        let message = "holds no `-----BEGIN CERTIFICATE-----` block".to_owned();
        return Err(error(message));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_reply_codes() {
        assert_eq!(strip_code("530 Login incorrect."), "Login incorrect.");
        assert_eq!(strip_code("550-No such folder"), "No such folder");
        assert_eq!(strip_code(" plain continuation"), " plain continuation");
        assert_eq!(strip_code("55"), "55");
    }

    #[test]
    fn reports_a_missing_or_empty_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = read_ca_file(missing).unwrap_err();
        assert!(error.to_string().starts_with("ca_file "), "{error}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let error = read_ca_file(empty).unwrap_err();
        assert!(error.to_string().contains("BEGIN CERTIFICATE"), "{error}");
    }
}
