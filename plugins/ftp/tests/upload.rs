//! The ftp target against a real FTP server (libunftp on 127.0.0.1, serving a temporary
//! folder): plain and explicit TLS, files read back through the server, and the failures an
//! operator meets — wrong password, unwritable folder, a server that stops answering or is
//! killed mid-upload.
//!
//! Timeouts are short (2 s; 0.5 or 1 s where a timeout is the point), so the whole file runs
//! in a few seconds.

mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exporter_core::{Batch, Exporter, Field, OutcomeKind, Record};
use exporter_ftp::{FtpConfig, FtpExporter, temp_name};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use server::{FtpServer, Options, PASSWORD, USER};
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsStream, ImplAsyncFtpStream};
use tokio::io::AsyncReadExt;

/// The profile every test uploads for.
const PROFILE: &str = "Fulfillment drop";

/// A test server and the folder it serves.
struct Site {
    _dir: tempfile::TempDir,
    server: FtpServer,
}

/// A server over a new folder that has an `incoming` folder.
fn site(options: Options) -> Site {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("incoming")).unwrap();
    let server = FtpServer::start(dir.path(), options);
    Site { _dir: dir, server }
}

/// The target for `server`, with `extra` keys over the defaults of these tests.
fn target(server: &FtpServer, extra: Value) -> FtpExporter {
    let mut settings = json!({
        "host": "127.0.0.1",
        "port": server.port,
        "username": USER,
        "password": PASSWORD,
        "remote_dir": "/incoming",
        "file_name": "orders_{profile}_{timestamp}_{seq}.csv",
        "timeout_secs": 2,
    });
    for (key, value) in extra.as_object().unwrap() {
        settings[key] = value.clone();
    }
    let config = FtpConfig::parse(settings.as_object().unwrap()).unwrap();
    FtpExporter::new(PROFILE, config).unwrap()
}

/// A batch of `orders` records, `O-1`, `O-2`...
fn batch(id: &str, orders: usize) -> Batch {
    let field = |name: &str, value: String| Field {
        name: name.into(),
        value,
        secret: false,
    };
    let records = (1..=orders)
        .map(|n| Record {
            delivery_id: format!("{id}-d{n}"),
            order_id: format!("O-{n}"),
            fields: vec![
                field("order_id", format!("O-{n}")),
                field("sku", format!("WIDGET-{}", n % 7)),
                field("ship_to", format!("Zoë Ørsted, \"Flat {n}\", 東京")),
            ],
        })
        .collect();
    Batch {
        id: id.into(),
        created_at_ms: 1_796_398_200_000,
        records,
    }
}

/// The CSV a batch of `orders` records makes.
fn csv_of(orders: usize) -> String {
    let mut text = "order_id,sku,ship_to\n".to_owned();
    for n in 1..=orders {
        let sku = n % 7;
        text.push_str(&format!(
            "O-{n},WIDGET-{sku},\"Zoë Ørsted, \"\"Flat {n}\"\", 東京\"\n"
        ));
    }
    text
}

/// Delivers `batch` and checks every record got one and the same outcome.
async fn deliver(target: &FtpExporter, batch: &Batch) -> exporter_core::Outcome {
    let outcomes = target.deliver(batch).await;
    assert_eq!(outcomes.len(), batch.records.len());
    assert!(outcomes.iter().all(|o| *o == outcomes[0]), "{outcomes:?}");
    outcomes[0].clone()
}

/// libunftp 0.24 switches a control connection to TLS a moment after it answers `AUTH TLS`
/// (a task it spawns tells the connection's loop to), so a client that starts the handshake
/// at once, as every client does, now and then has its hello read as a command: the
/// handshake then fails on a corrupt message or stalls. Servers that switch before answering
/// have no such race. Tests that start TLS try again when they meet it, up to this many times.
const TLS_RACE_TRIES: usize = 5;

/// True for a failure of the test server's `AUTH TLS` race (see [`TLS_RACE_TRIES`]).
fn tls_race(message: &str) -> bool {
    message.starts_with("start TLS (AUTH TLS)")
        && (message.contains("corrupt message") || message.contains("no answer within"))
}

/// Like [`deliver`], trying again when the test server's `AUTH TLS` race struck.
async fn deliver_over_tls(target: &FtpExporter, batch: &Batch) -> exporter_core::Outcome {
    for _ in 1..TLS_RACE_TRIES {
        let outcome = deliver(target, batch).await;
        if !tls_race(&outcome.message) {
            return outcome;
        }
        eprintln!("met the test server's AUTH TLS race; trying again: {outcome:?}");
    }
    deliver(target, batch).await
}

/// A client of the test server, logged in, in binary mode; over TLS when `ca` is given.
async fn client(server: &FtpServer, ca: Option<&Path>) -> ImplAsyncFtpStream<AsyncRustlsStream> {
    let address = format!("127.0.0.1:{}", server.port);
    let mut tries = 0;
    let mut ftp = loop {
        tries += 1;
        let ftp = ImplAsyncFtpStream::<AsyncRustlsStream>::connect(&address)
            .await
            .unwrap();
        let Some(ca) = ca else {
            break ftp;
        };
        let secured = ftp.into_secure(connector(ca), "127.0.0.1");
        match tokio::time::timeout(Duration::from_secs(2), secured).await {
            Ok(Ok(ftp)) => break ftp,
            Ok(Err(error)) if tries < TLS_RACE_TRIES && error.to_string().contains("corrupt") => {}
            Err(_) if tries < TLS_RACE_TRIES => {}
            other => panic!(
                "start TLS with the test server: {:?}",
                other.map(|r| r.err())
            ),
        }
        eprintln!("met the test server's AUTH TLS race; trying again");
    };
    ftp.login(USER, PASSWORD).await.unwrap();
    ftp.transfer_type(suppaftp::types::FileType::Binary)
        .await
        .unwrap();
    ftp
}

fn connector(ca: &Path) -> AsyncRustlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The names in `/incoming` as the server lists them (`NLST`), sorted.
async fn listing(server: &FtpServer, ca: Option<&Path>) -> Vec<String> {
    let mut ftp = client(server, ca).await;
    let mut names: Vec<String> = ftp.nlst(Some("/incoming")).await.unwrap();
    names = names
        .into_iter()
        .map(|n| n.rsplit('/').next().unwrap().to_owned())
        .collect();
    names.sort();
    let _ = ftp.quit().await;
    names
}

/// A file of `/incoming`, downloaded through the server (`RETR`).
async fn download(server: &FtpServer, ca: Option<&Path>, name: &str) -> String {
    let mut ftp = client(server, ca).await;
    let mut stream = ftp
        .retr_as_stream(format!("/incoming/{name}"))
        .await
        .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    stream.finish().await.unwrap();
    let _ = ftp.quit().await;
    String::from_utf8(bytes).unwrap()
}

/// A private CA and a server certificate it issued for 127.0.0.1, as PEM files.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let name = &mut ca_params.distinguished_name;
    name.push(DnType::CommonName, "exporter test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    let server_cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();

    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Certs {
        ca: write("ca.pem", ca.pem()),
        chain: write("server.pem", server_cert.pem()),
        key: write("server.key", server_key.serialize_pem()),
        _dir: dir,
    }
}

#[tokio::test]
async fn uploads_a_batch_as_one_csv_file_over_plain_ftp() {
    let site = site(Options::default());
    let target = target(&site.server, json!({}));
    let batch = batch("batch-1", 3);

    let outcome = deliver(&target, &batch).await;

    assert_eq!(outcome.kind, OutcomeKind::Delivered, "{outcome:?}");
    let name = target.file_name(&batch);
    assert!(
        name.starts_with("orders_Fulfillment_drop_20261204T153000Z_") && name.ends_with(".csv"),
        "{name}"
    );
    assert!(
        outcome.message.contains(&format!("/incoming/{name}")),
        "{outcome:?}"
    );
    assert_eq!(listing(&site.server, None).await, [name.as_str()]);
    assert_eq!(download(&site.server, None, &name).await, csv_of(3));
}

#[tokio::test]
async fn uploads_over_explicit_tls_trusting_a_private_ca() {
    let certs = certs();
    let tls = Some((certs.chain.clone(), certs.key.clone()));
    let site = site(Options { tls, active: false });
    let settings = json!({"tls": "explicit", "ca_file": certs.ca, "excel": true});
    let target = target(&site.server, settings);
    let batch = batch("batch-tls", 2);

    let outcome = deliver_over_tls(&target, &batch).await;

    assert_eq!(outcome.kind, OutcomeKind::Delivered, "{outcome:?}");
    let name = target.file_name(&batch);
    let ca = Some(certs.ca.as_path());
    assert_eq!(listing(&site.server, ca).await, [name.as_str()]);
    let excel = format!("\u{feff}{}", csv_of(2).replace('\n', "\r\n"));
    assert_eq!(download(&site.server, ca, &name).await, excel);
}

#[tokio::test]
async fn refuses_a_certificate_no_trusted_ca_issued() {
    let certs = certs();
    let tls = Some((certs.chain.clone(), certs.key.clone()));
    let site = site(Options { tls, active: false });
    let target = target(&site.server, json!({"tls": "explicit"}));

    let outcome = deliver_over_tls(&target, &batch("batch-untrusted", 1)).await;

    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    assert!(
        outcome
            .message
            .starts_with("start TLS (AUTH TLS) on 127.0.0.1:"),
        "{outcome:?}"
    );
    let untrusted = "TLS failed: invalid peer certificate: UnknownIssuer";
    assert!(outcome.message.contains(untrusted), "{outcome:?}");
    assert_eq!(site.server.policy.uploads(), 0);
}

#[tokio::test]
async fn a_retried_batch_replaces_its_own_file_instead_of_adding_one() {
    let site = site(Options::default());
    let target = target(&site.server, json!({}));
    let first = batch("batch-a", 2);

    for _ in 0..3 {
        let outcome = deliver(&target, &first).await;
        assert_eq!(outcome.kind, OutcomeKind::Delivered, "{outcome:?}");
    }
    let second = batch("batch-b", 1);
    assert!(deliver(&target, &second).await.is_delivered());

    let mut expected = vec![target.file_name(&first), target.file_name(&second)];
    expected.sort();
    assert_ne!(expected[0], expected[1]);
    assert_eq!(listing(&site.server, None).await, expected);
    let first_body = download(&site.server, None, &target.file_name(&first)).await;
    assert_eq!(first_body, csv_of(2));
}

#[tokio::test]
async fn replaces_its_own_file_on_a_server_that_will_not_rename_over_one() {
    let site = site(Options::default());
    site.server.policy.refuse_rename_over_existing();
    let target = target(&site.server, json!({}));
    let batch = batch("batch-windows", 2);

    assert!(deliver(&target, &batch).await.is_delivered());
    let outcome = deliver(&target, &batch).await;

    assert_eq!(outcome.kind, OutcomeKind::Delivered, "{outcome:?}");
    let name = target.file_name(&batch);
    assert_eq!(listing(&site.server, None).await, [name.as_str()]);
    assert_eq!(download(&site.server, None, &name).await, csv_of(2));
}

#[tokio::test]
async fn reports_a_wrong_password_with_the_reply_code() {
    let site = site(Options::default());
    let target = target(&site.server, json!({"password": "not-the-password"}));

    let outcome = deliver(&target, &batch("batch-login", 1)).await;

    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    assert_eq!(outcome.status, Some(530), "{outcome:?}");
    let expected = format!(
        "log in as `orders` on 127.0.0.1:{}: the server replied 530 ",
        site.server.port
    );
    assert!(outcome.message.starts_with(&expected), "{outcome:?}");
    assert!(!outcome.message.contains("not-the-password"), "{outcome:?}");
    assert!(site.server.names_in("incoming").is_empty());
}

#[tokio::test]
async fn reports_an_unwritable_folder_with_the_reply_code() {
    let site = site(Options::default());
    site.server.policy.make_read_only("incoming");
    let target = target(&site.server, json!({}));
    let batch = batch("batch-denied", 1);

    let outcome = deliver(&target, &batch).await;

    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    assert_eq!(outcome.status, Some(550), "{outcome:?}");
    let temp = temp_name(&target.file_name(&batch));
    let expected = format!("upload `{temp}` on 127.0.0.1:");
    assert!(outcome.message.starts_with(&expected), "{outcome:?}");
    assert!(outcome.message.contains("550"), "{outcome:?}");
    assert!(site.server.names_in("incoming").is_empty());
}

#[tokio::test]
async fn reports_a_missing_folder_by_name() {
    let site = site(Options::default());
    let target = target(&site.server, json!({"remote_dir": "/outgoing"}));

    let outcome = deliver(&target, &batch("batch-nowhere", 1)).await;

    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    assert_eq!(outcome.status, Some(550), "{outcome:?}");
    assert!(
        outcome
            .message
            .starts_with("open folder `/outgoing` on 127.0.0.1:"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn reports_a_server_that_is_not_there() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let site = site(Options::default());
    let mut target_settings = json!({"port": port});
    target_settings["timeout_secs"] = json!(1);
    let target = target(&site.server, target_settings);

    let outcome = deliver(&target, &batch("batch-refused", 1)).await;

    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    assert_eq!(outcome.status, None);
    let expected = format!("connect on 127.0.0.1:{port}: ");
    assert!(outcome.message.starts_with(&expected), "{outcome:?}");
}

#[tokio::test]
async fn gives_up_on_a_server_that_never_greets() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let site = site(Options::default());
    let target = target(&site.server, json!({"port": port, "timeout_secs": 0.5}));
    let started = Instant::now();

    let outcome = deliver(&target, &batch("batch-silent", 1)).await;

    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    let expected = format!("connect on 127.0.0.1:{port}: no answer within 0.5 s");
    assert!(outcome.message.starts_with(&expected), "{outcome:?}");
    accepting.abort();
}

#[tokio::test]
async fn gives_up_on_a_server_that_stops_answering_mid_upload() {
    let site = site(Options::default());
    site.server.policy.stall_uploads_after(64 * 1024);
    let target = target(&site.server, json!({"timeout_secs": 1}));
    let batch = batch("batch-stalled", 50_000);
    let started = Instant::now();

    let outcome = deliver(&target, &batch).await;

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(site.server.policy.has_stalled());
    assert_eq!(outcome.kind, OutcomeKind::Retry, "{outcome:?}");
    let name = target.file_name(&batch);
    let expected = format!("upload `{}` on 127.0.0.1:", temp_name(&name));
    assert!(outcome.message.starts_with(&expected), "{outcome:?}");
    assert!(
        outcome
            .message
            .ends_with("no answer within 1 s (timeout_secs)"),
        "{outcome:?}"
    );
    assert!(!site.server.names_in("incoming").contains(&name));
}

#[tokio::test]
async fn a_batch_cut_off_by_a_server_crash_lands_once_after_the_restart() {
    let mut site = site(Options::default());
    site.server.policy.stall_uploads_after(256 * 1024);
    let target = Arc::new(target(&site.server, json!({"timeout_secs": 10})));
    let batch = Arc::new(batch("batch-crash", 50_000));
    let name = target.file_name(&batch);

    let uploading = {
        let (target, batch) = (target.clone(), batch.clone());
        tokio::spawn(async move { deliver(&target, &batch).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !site.server.policy.has_stalled() {
        assert!(
            Instant::now() < deadline,
            "the upload never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    site.server.kill();
    let cut = uploading.await.unwrap();

    assert_eq!(cut.kind, OutcomeKind::Retry, "{cut:?}");
    let left = site.server.names_in("incoming");
    assert_eq!(
        left,
        [temp_name(&name)],
        "only the partial temporary file is left"
    );

    site.server.policy.stop_stalling();
    site.server.restart();
    let retried = deliver(&target, &batch).await;

    assert_eq!(retried.kind, OutcomeKind::Delivered, "{retried:?}");
    assert_eq!(listing(&site.server, None).await, [name.as_str()]);
    let body = site.server.read(&format!("incoming/{name}"));
    assert_eq!(String::from_utf8(body).unwrap(), csv_of(50_000));
}

#[tokio::test]
async fn uploads_in_active_mode() {
    let options = Options {
        tls: None,
        active: true,
    };
    let site = site(options);
    let target = target(&site.server, json!({"passive": false}));
    let batch = batch("batch-active", 2);

    let outcome = deliver(&target, &batch).await;

    assert_eq!(outcome.kind, OutcomeKind::Delivered, "{outcome:?}");
    let name = target.file_name(&batch);
    assert_eq!(site.server.names_in("incoming"), [name.as_str()]);
    assert_eq!(download(&site.server, None, &name).await, csv_of(2));
}

#[tokio::test]
async fn probe_logs_in_and_writes_and_removes_a_file() {
    let site = site(Options::default());
    let target = target(&site.server, json!({}));

    let checked = target.probe().expect("the ftp target has a check").await;

    let checked = checked.unwrap();
    let expected = format!("logged in to 127.0.0.1:{} as `orders`", site.server.port);
    assert!(checked.starts_with(&expected), "{checked}");
    assert!(
        checked.contains("wrote and removed /incoming/.exporter-probe-"),
        "{checked}"
    );
    assert_eq!(site.server.policy.uploads(), 1);
    assert!(site.server.names_in("incoming").is_empty());
}

#[tokio::test]
async fn probe_reports_what_failed() {
    let site = site(Options::default());
    site.server.policy.make_read_only("incoming");
    let target = target(&site.server, json!({}));

    let problem = target.probe().unwrap().await.unwrap_err();

    assert!(problem.starts_with("upload `.exporter-probe-"), "{problem}");
    assert!(problem.contains("the server replied 550"), "{problem}");
}
