//! A real FTP server for tests: libunftp with its file system storage, on 127.0.0.1, serving
//! a folder the test owns, with one account ([`USER`], [`PASSWORD`]).
//!
//! It runs on a Tokio runtime of its own, so [`FtpServer::kill`] can drop every connection
//! and transfer at once, as a crashed server process would, and [`FtpServer::restart`] brings
//! it back on the same port over the same folder. A [`Policy`] makes it behave like servers
//! the tests need: folders it refuses writes in, no renaming onto an existing file (as Windows
//! servers do), and uploads that stall after some bytes (a server that stops answering).
//!
//! Also compiled into the end-to-end tests of the `exporter` binary (`tests/e2e/ftp.rs`).

#![allow(dead_code)]

use std::fmt::Debug;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libunftp::ServerBuilder;
use libunftp::options::{ActivePassiveMode, FtpsRequired};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Runtime;
use unftp_core::auth::{AuthenticationError, Authenticator, Credentials, Principal, UserDetail};
use unftp_core::storage::{Error, ErrorKind, Fileinfo, Result, StorageBackend};
use unftp_sbe_fs::{Filesystem, Meta};

/// The one account's name.
pub const USER: &str = "orders";

/// The one account's password.
pub const PASSWORD: &str = "s3cret-Pa55word";

/// How the server is set up; the default is plain FTP, passive mode only.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// PEM certificate chain and key files: offer `AUTH TLS` and require it for the login
    /// and every data connection.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Accept active mode (`PORT`/`EPRT`) besides passive mode.
    pub active: bool,
}

/// Behaviour switched at run time, shared by every connection, kept across restarts.
#[derive(Debug, Default)]
pub struct Policy {
    read_only: Mutex<Vec<String>>,
    no_rename_over: AtomicBool,
    stall_after: Mutex<Option<u64>>,
    stalled: AtomicBool,
    uploads: AtomicU64,
}

impl Policy {
    /// Refuses uploads and renames into the folder `dir` (as `/dir`) with `550`.
    pub fn make_read_only(&self, dir: &str) {
        let dir = dir.trim_matches('/').to_owned();
        self.read_only.lock().unwrap().push(dir);
    }

    /// Refuses to rename onto an existing file with `550`, as Windows servers do.
    pub fn refuse_rename_over_existing(&self) {
        self.no_rename_over.store(true, Ordering::SeqCst);
    }

    /// Stops taking the bytes of every upload after its first `bytes`, without a word.
    pub fn stall_uploads_after(&self, bytes: u64) {
        *self.stall_after.lock().unwrap() = Some(bytes);
    }

    /// Takes uploads whole again.
    pub fn stop_stalling(&self) {
        *self.stall_after.lock().unwrap() = None;
    }

    /// True once an upload has stalled.
    pub fn has_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// How many uploads the server has begun to store.
    pub fn uploads(&self) -> u64 {
        self.uploads.load(Ordering::SeqCst)
    }

    fn refuses_writes_in(&self, path: &Path) -> bool {
        let parent = path.parent().unwrap_or(Path::new(""));
        let parent = parent.to_string_lossy();
        let parent = parent.trim_matches('/');
        self.read_only
            .lock()
            .unwrap()
            .iter()
            .any(|dir| dir == parent)
    }
}

/// A running (or killed) test server.
pub struct FtpServer {
    /// The control connection's port on 127.0.0.1.
    pub port: u16,
    /// The folder served as `/`.
    pub root: PathBuf,
    /// Behaviour switches.
    pub policy: Arc<Policy>,
    options: Options,
    runtime: Option<Runtime>,
}

impl FtpServer {
    /// Starts a server for `root` on a free port of 127.0.0.1.
    pub fn start(root: &Path, options: Options) -> FtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test FTP server");
        let port = listener.local_addr().unwrap().port();
        let mut server = FtpServer {
            port,
            root: root.to_owned(),
            policy: Arc::default(),
            options,
            runtime: None,
        };
        server.serve(listener);
        server
    }

    /// Drops every connection and transfer at once, like a crash of the server process.
    pub fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    /// Kills the server if it runs, then starts it again on the same port and folder.
    pub fn restart(&mut self) {
        self.kill();
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(address) {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("port {} not free yet: {error}", self.port);
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!("rebind the test FTP server: {error}"),
            }
        };
        self.serve(listener);
    }

    /// Reads a file of the served folder from disk, as the server stored it.
    pub fn read(&self, path: &str) -> Vec<u8> {
        std::fs::read(self.root.join(path.trim_start_matches('/'))).expect("read a served file")
    }

    /// The names in a served folder, from disk, sorted; hidden names included.
    pub fn names_in(&self, dir: &str) -> Vec<String> {
        let path = self.root.join(dir.trim_start_matches('/'));
        let Ok(entries) = std::fs::read_dir(path) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn serve(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the test FTP server's runtime");
        let root = self.root.clone();
        let policy = self.policy.clone();
        let options = self.options.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let server = build(&root, &policy, &options);
                tokio::spawn(server.service(stream));
            }
        });
        self.runtime = Some(runtime);
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn build(
    root: &Path,
    policy: &Arc<Policy>,
    options: &Options,
) -> libunftp::Server<Storage, unftp_core::auth::DefaultUser> {
    let root = root.to_owned();
    let policy = policy.clone();
    let storage = move || Storage {
        inner: Filesystem::new(root.clone()).expect("serve the test folder"),
        policy: policy.clone(),
    };
    let mut builder = ServerBuilder::with_authenticator(Box::new(storage), Arc::new(OneAccount))
        .greeting("exporter test FTP server")
        .idle_session_timeout(60);
    if let Some((certs, key)) = &options.tls {
        builder = builder
            .ftps(certs.clone(), key.clone())
            .ftps_required(FtpsRequired::All, FtpsRequired::All);
    }
    if options.active {
        builder = builder.active_passive_mode(ActivePassiveMode::ActiveAndPassive);
    }
    builder.build().expect("build the test FTP server")
}

/// Accepts [`USER`] with [`PASSWORD`], nobody else.
#[derive(Debug)]
struct OneAccount;

#[async_trait::async_trait]
impl Authenticator for OneAccount {
    async fn authenticate(
        &self,
        username: &str,
        credentials: &Credentials,
    ) -> std::result::Result<Principal, AuthenticationError> {
        if username != USER {
            return Err(AuthenticationError::BadUser);
        }
        if credentials.password.as_deref() != Some(PASSWORD) {
            return Err(AuthenticationError::BadPassword);
        }
        Ok(Principal {
            username: username.to_owned(),
        })
    }
}

/// The file system storage with the [`Policy`] in front.
#[derive(Debug)]
struct Storage {
    inner: Filesystem,
    policy: Arc<Policy>,
}

#[async_trait::async_trait]
impl<User: UserDetail + 'static> StorageBackend<User> for Storage {
    type Metadata = Meta;

    fn supported_features(&self) -> u32 {
        StorageBackend::<User>::supported_features(&self.inner)
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<Meta> {
        self.inner.metadata(user, path).await
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Meta>>>
    where
        Meta: unftp_core::storage::Metadata,
    {
        self.inner.list(user, path).await
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        self.inner.get(user, path, start_pos).await
    }

    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &User,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        if self.policy.refuses_writes_in(path.as_ref()) {
            return Err(Error::from(ErrorKind::PermissionDenied));
        }
        self.policy.uploads.fetch_add(1, Ordering::SeqCst);
        let limit = *self.policy.stall_after.lock().unwrap();
        let input = Stalling {
            inner: input,
            left: limit,
            policy: self.policy.clone(),
        };
        self.inner.put(user, input, path, start_pos).await
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        if self.policy.refuses_writes_in(path.as_ref()) {
            return Err(Error::from(ErrorKind::PermissionDenied));
        }
        self.inner.del(user, path).await
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        self.inner.mkd(user, path).await
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &User,
        from: P,
        to: P,
    ) -> Result<()> {
        if self.policy.refuses_writes_in(to.as_ref()) {
            return Err(Error::from(ErrorKind::PermissionDenied));
        }
        let exists = self.inner.metadata(user, to.as_ref()).await.is_ok();
        if exists && self.policy.no_rename_over.load(Ordering::SeqCst) {
            let error = io::Error::new(io::ErrorKind::AlreadyExists, "file exists");
            return Err(Error::new(ErrorKind::PermanentFileNotAvailable, error));
        }
        self.inner.rename(user, from, to).await
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        self.inner.rmd(user, path).await
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &User, path: P) -> Result<()> {
        self.inner.cwd(user, path).await
    }
}

/// An upload's bytes, which stop coming after `left` bytes (never, with `None`).
struct Stalling<R> {
    inner: R,
    left: Option<u64>,
    policy: Arc<Policy>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Stalling<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.left {
            None => Pin::new(&mut self.inner).poll_read(cx, buf),
            Some(0) => {
                // Never woken: the server just stops reading, as a hung server does.
                self.policy.stalled.store(true, Ordering::SeqCst);
                Poll::Pending
            }
            Some(left) => {
                let room = buf.remaining().min(left as usize);
                let mut scratch = vec![0; room];
                let mut part = ReadBuf::new(&mut scratch);
                let polled = Pin::new(&mut self.inner).poll_read(cx, &mut part);
                let read = part.filled().len();
                buf.put_slice(part.filled());
                self.left = Some(left - read as u64);
                polled
            }
        }
    }
}
