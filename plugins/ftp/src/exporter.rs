//! [`FtpExporter`]: uploads each flush of a profile's records as one CSV file, so that a reader
//! of the remote folder sees every file whole under its final name, or not at all.
//!
//! One flush, one [`Batch`], one file:
//!
//! 1. The records are rendered by the `csv` target's code: the same bytes a `csv` profile
//!    with the same layout keys writes.
//! 2. The name comes from `file_name`, with `{timestamp}` the time the batch was formed and
//!    `{seq}` an 8-digit number derived from the batch id (see
//!    [`exporter_core::record::batch_seq`]). The host retries a failed batch whole, with the
//!    same id and time, so a retry uses the same name.
//! 3. The body is uploaded as `.NAME.part` (hidden, and not matching `*.csv`), replacing any
//!    leftover of an interrupted attempt of the same batch.
//! 4. `.NAME.part` is renamed to `NAME`, replacing a file of that name: only the same batch
//!    makes that name, so it is a copy whose success answer was lost. A server that refuses to
//!    rename onto an existing file (Windows servers do) gets that copy removed first.
//! 5. The records count as delivered only once the rename succeeded; every record of the
//!    batch gets the same outcome. A failure before leaves no file under the final name; the
//!    temporary file is removed when the server still answers, else the retry replaces it.
//!
//! Limits an operator may meet: a retry after an answer was lost writes the file again under
//! the same name, so a reader that already took the first copy away sees that name twice. A
//! server killed mid-upload may keep a hidden `.NAME.part` until the batch is retried.

use std::time::{SystemTime, UNIX_EPOCH};

use exporter_core::{Batch, Batching, BoxFuture, Exporter, Outcome, SettingsError};
use exporter_csv::{BOM, render_csv, render_csv_masked};
use jiff::Timestamp;
use tracing::debug;

use crate::config::{FtpConfig, TlsMode};
use crate::error::FtpError;
use crate::session::Session;

/// Longest file name accepted at build time, leaving room for the temporary name's dot and
/// `.part` under the usual 255-byte limit.
const MAX_NAME_BYTES: usize = 200;

/// What the probe file of `check --connect` holds.
const PROBE_BODY: &[u8] = b"exporter connection check; safe to delete\n";

/// The `ftp` target of one profile.
#[derive(Debug)]
pub struct FtpExporter {
    profile: String,
    config: FtpConfig,
}

impl FtpExporter {
    /// The target for `profile`; checks that its file names are usable, does no I/O.
    pub fn new(profile: &str, config: FtpConfig) -> Result<Self, SettingsError> {
        let sample = config
            .file_name
            .render(profile, Timestamp::now(), 10_000_000);
        if matches!(sample.as_str(), "" | "." | "..") || sample.len() > MAX_NAME_BYTES {
            let message = format!(
                "renders as {sample:?} for profile {profile:?}; a file name needs 1 to \
                 {MAX_NAME_BYTES} bytes and cannot be `.` or `..`"
            );
            return Err(SettingsError::invalid("file_name", message));
        }
        Ok(FtpExporter {
            profile: profile.to_owned(),
            config,
        })
    }

    /// The settings this target uploads with.
    pub fn config(&self) -> &FtpConfig {
        &self.config
    }

    /// The name of the batch's file: the same on every attempt of the batch.
    pub fn file_name(&self, batch: &Batch) -> String {
        let at = batch_time(batch);
        let seq = batch.seq();
        self.config.file_name.render(&self.profile, at, seq)
    }

    /// Uploads one batch as one file; the outcome of every record.
    async fn flush(&self, batch: &Batch) -> Outcome {
        let name = self.file_name(batch);
        let records = batch.records.len();
        let result = match render_csv(&batch.records, &self.config.format) {
            Ok(body) => self.publish(&name, &body).await.map(|()| body.len()),
            Err(error) => Err(FtpError::from(error)),
        };
        let server = self.config.server();
        match result {
            Ok(bytes) => {
                let path = self.remote_path(&name);
                debug!(profile = %self.profile, %server, path, records, bytes, "ftp file uploaded");
                Outcome::delivered(None, format!("uploaded {path} to {server}"))
            }
            Err(error) => {
                debug!(
                    profile = %self.profile,
                    %server,
                    batch = %batch.id,
                    %error,
                    "ftp flush failed",
                );
                if error.is_permanent() {
                    Outcome::failed(None, error.to_string())
                } else {
                    Outcome::retry(error.status(), error.to_string())
                }
            }
        }
    }

    /// Logs in, uploads under the temporary name, renames, and says goodbye.
    async fn publish(&self, name: &str, body: &[u8]) -> Result<(), FtpError> {
        let mut session = Session::open(&self.config).await?;
        let temp = temp_name(name);
        let placed = place(&mut session, &temp, name, body).await;
        if let Err(error) = &placed {
            if !error.session_usable() {
                return placed;
            }
            if let Err(cleanup) = session.remove(&temp).await {
                debug!(
                    profile = %self.profile,
                    error = %cleanup,
                    "could not remove the temporary file of a failed upload; the retry replaces it",
                );
            }
        }
        session.quit().await;
        placed
    }

    /// Logs in, writes and removes a probe file in the folder.
    async fn check(&self) -> Result<String, FtpError> {
        let mut session = Session::open(&self.config).await?;
        let name = probe_name();
        if let Err(error) = session.upload(&name, PROBE_BODY).await {
            if error.session_usable() {
                let _ = session.remove(&name).await;
                session.quit().await;
            }
            return Err(error);
        }
        session.remove(&name).await?;
        let server = session.server().to_owned();
        session.quit().await;
        Ok(format!(
            "logged in to {server} as `{}` ({}), wrote and removed {}",
            self.config.username,
            self.describe_connection(),
            self.remote_path(&name)
        ))
    }

    /// Where `name` lands: in `remote_dir`, or in the folder the login lands in.
    fn remote_path(&self, name: &str) -> String {
        match &self.config.remote_dir {
            Some(dir) if dir.ends_with('/') => format!("{dir}{name}"),
            Some(dir) => format!("{dir}/{name}"),
            None => format!("{name} (in the login folder)"),
        }
    }

    fn describe_connection(&self) -> String {
        let tls = match self.config.tls {
            TlsMode::None => "plain FTP, no TLS",
            TlsMode::Explicit => "explicit TLS",
        };
        let mode = if self.config.passive {
            "passive"
        } else {
            "active"
        };
        format!("{tls}, {mode} data connections")
    }

    fn preview_heading(&self, batch: &Batch) -> String {
        let name = self.file_name(batch);
        let format = &self.config.format;
        let bom = if format.bom { " with BOM" } else { "" };
        let line_ends = if format.crlf { "CRLF" } else { "LF" };
        format!(
            "upload to ftp://{}@{} ({}), password ***\n\
             file {} (UTF-8{bom}, {line_ends} line ends), written as {} then renamed; \
             {{seq}} is derived from each batch\n",
            self.config.username,
            self.config.server(),
            self.describe_connection(),
            self.remote_path(&name),
            temp_name(&name),
        )
    }
}

impl Exporter for FtpExporter {
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            if batch.records.is_empty() {
                return Vec::new();
            }
            let outcome = self.flush(batch).await;
            vec![outcome; batch.records.len()]
        })
    }

    fn preview(&self, batch: &Batch) -> String {
        if batch.records.is_empty() {
            return "no records, so no file would be uploaded\n".to_owned();
        }
        match render_csv_masked(&batch.records, &self.config.format) {
            Ok(body) => {
                let text = String::from_utf8_lossy(body.strip_prefix(BOM).unwrap_or(&body));
                format!("{}{text}", self.preview_heading(batch))
            }
            Err(error) => format!("no file would be uploaded: {error}\n"),
        }
    }

    fn probe(&self) -> Option<BoxFuture<'_, Result<String, String>>> {
        Some(Box::pin(async move {
            self.check().await.map_err(|error| error.to_string())
        }))
    }

    fn batching(&self) -> Batching {
        Batching::Flush {
            interval: self.config.flush_interval,
        }
    }
}

/// Uploads as `temp`, then renames to `name`, replacing an earlier copy of the same batch.
async fn place(
    session: &mut Session<'_>,
    temp: &str,
    name: &str,
    body: &[u8],
) -> Result<(), FtpError> {
    session.upload(temp, body).await?;
    match session.rename(temp, name).await {
        Err(refused @ FtpError::Refused { .. }) => {
            // Some servers refuse to rename onto an existing file. Only this batch makes this
            // name, so an existing file is this batch's copy from an attempt whose answer was
            // lost: replace it. When there is none to remove, the refusal stands.
            if session.remove(name).await.is_err() {
                return Err(refused);
            }
            session.rename(temp, name).await
        }
        other => other,
    }
}

/// When the batch was formed: the `{timestamp}` of its file, the same on every retry.
fn batch_time(batch: &Batch) -> Timestamp {
    Timestamp::from_millisecond(batch.created_at_ms).unwrap_or_else(|_| Timestamp::now())
}

/// The hidden name a file is uploaded under before it is renamed.
pub fn temp_name(name: &str) -> String {
    format!(".{name}.part")
}

/// A probe file name no flush uses and no other probe is likely to.
fn probe_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(".exporter-probe-{}-{nanos}.tmp", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter_core::record::batch_seq;
    use exporter_core::{Field, Record};
    use serde_json::json;

    fn exporter(settings: serde_json::Value) -> FtpExporter {
        let config = FtpConfig::parse(settings.as_object().unwrap()).unwrap();
        FtpExporter::new("Fulfillment drop", config).unwrap()
    }

    fn settings() -> serde_json::Value {
        json!({
            "host": "ftp.example.com", "username": "orders", "password": "pw-secret-1",
            "remote_dir": "/incoming", "tls": "explicit",
            "file_name": "orders_{profile}_{timestamp}_{seq}.csv",
        })
    }

    fn batch(id: &str) -> Batch {
        let field = |name: &str, value: &str, secret| Field {
            name: name.into(),
            value: value.into(),
            secret,
        };
        Batch {
            id: id.into(),
            created_at_ms: 1_796_398_200_000,
            records: vec![Record {
                delivery_id: "d1".into(),
                order_id: "1001".into(),
                fields: vec![
                    field("order_id", "1001", false),
                    field("token", "tok-9999", true),
                ],
            }],
        }
    }

    #[test]
    fn seq_is_eight_digits_and_stable() {
        let id = "0190f5c2-8a6e-7d3b-9c1f-2b4e6a8c0d1e";
        assert_eq!(batch_seq(id), batch_seq(id));
        assert_ne!(
            batch_seq(id),
            batch_seq("0190f5c2-8a6e-7d3b-9c1f-2b4e6a8c0d1f")
        );
        for id in ["", "a", "preview", id] {
            assert_eq!(batch_seq(id).to_string().len(), 8, "{id:?}");
        }
        // Fixed by FNV-1a's definition: a change here renames retried batches' files.
        assert_eq!(batch_seq("preview"), 31_126_455);
    }

    #[test]
    fn names_a_batch_the_same_on_every_attempt() {
        let target = exporter(settings());
        let name = target.file_name(&batch("b-1"));
        assert_eq!(name, target.file_name(&batch("b-1")));
        assert_ne!(name, target.file_name(&batch("b-2")));
        let seq = batch_seq("b-1");
        assert_eq!(
            name,
            format!("orders_Fulfillment_drop_20261204T153000Z_{seq}.csv")
        );
        assert_eq!(temp_name(&name), format!(".{name}.part"));
    }

    #[test]
    fn previews_name_connection_and_masked_body() {
        let preview = exporter(settings()).preview(&batch("b-1"));
        assert!(
            preview.starts_with("upload to ftp://orders@ftp.example.com:21 (explicit TLS"),
            "{preview}"
        );
        assert!(
            preview.contains("file /incoming/orders_Fulfillment_drop_"),
            "{preview}"
        );
        assert!(preview.ends_with("order_id,token\n1001,***\n"), "{preview}");
        assert!(!preview.contains("pw-secret-1"), "{preview}");
        assert!(!preview.contains("tok-9999"), "{preview}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", exporter(settings()));
        assert!(!shown.contains("pw-secret-1"), "{shown}");
    }

    #[test]
    fn refuses_a_file_name_too_long_for_servers() {
        let mut settings = settings();
        settings["file_name"] = json!(format!("{}_{{seq}}.csv", "x".repeat(250)));
        let config = FtpConfig::parse(settings.as_object().unwrap()).unwrap();
        let error = FtpExporter::new("p", config).unwrap_err();
        assert_eq!(error.key(), "file_name");
    }

    #[test]
    fn flushes_on_the_configured_interval() {
        let mut settings = settings();
        settings["flush_interval_minutes"] = json!(5);
        let target = exporter(settings);
        let interval = std::time::Duration::from_secs(300);
        assert_eq!(target.batching(), Batching::Flush { interval });
    }
}
