//! [`JsonlExporter`]: appends each batch to the feed file as one line per record.
//!
//! A batch is one write at the end of the file. When the write or the flush fails, the file is
//! cut back to its length before the batch, so a reader never sees half a line and the retry
//! does not repeat the records that did get written. That relies on this exporter being the
//! only writer of the file: give each profile a file of its own.
//!
//! Delivery is at least once, like every target: a crash after the write and before the host
//! records the outcome sends the batch again at the next start. Map a key that identifies the
//! event (`orderId` with `customerType`) when the reader must drop repeats.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use exporter_core::{Batch, Batching, BoxFuture, Exporter, Outcome, Record};
use tracing::{debug, warn};

use crate::config::JsonlConfig;
use crate::error::JsonlError;

/// Records per call: enough to amortize the flush, small enough to retry cheaply.
const BATCH_RECORDS: usize = 100;

/// The `jsonl` target of one profile.
#[derive(Debug)]
pub struct JsonlExporter {
    profile: String,
    path: PathBuf,
    sync: bool,
    /// Held while a batch is appended, so two batches never interleave or cut each other.
    writing: Mutex<()>,
}

impl JsonlExporter {
    /// The target for `profile`; does no I/O.
    pub fn new(profile: &str, config: JsonlConfig) -> Self {
        JsonlExporter {
            profile: profile.to_owned(),
            path: config.path,
            sync: config.sync,
            writing: Mutex::new(()),
        }
    }

    /// Appends `lines` whole, or leaves the file as it was.
    fn append(&self, lines: &[u8]) -> Result<(), JsonlError> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(folder) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(folder).map_err(|source| JsonlError::CreateFolder {
                path: folder.to_owned(),
                source,
            })?;
        }
        let failed = |source| JsonlError::Append {
            path: self.path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(failed)?;
        let before = file.metadata().map_err(failed)?.len();
        let written = file
            .write_all(lines)
            .and_then(|()| if self.sync { file.sync_data() } else { Ok(()) });
        if let Err(source) = written {
            self.cut_back(&file, before);
            return Err(failed(source));
        }
        Ok(())
    }

    /// Removes a partly written batch from the end of the file.
    fn cut_back(&self, file: &File, length: u64) {
        if let Err(error) = file.set_len(length) {
            let path = self.path.display();
            warn!(
                profile = %self.profile,
                %path,
                %error,
                "cannot remove a partly written batch; the file may end in half a line",
            );
        }
    }
}

impl Exporter for JsonlExporter {
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Vec<Outcome>> {
        // The host calls a plugin on a thread of its own, where blocking file I/O is fine.
        Box::pin(async move {
            let records = &batch.records;
            let mut lines = String::new();
            for record in records {
                lines.push_str(&render_line(record, false));
                lines.push('\n');
            }
            let outcome = match self.append(lines.as_bytes()) {
                Ok(()) => {
                    let path = self.path.display();
                    debug!(
                        profile = %self.profile,
                        %path,
                        records = records.len(),
                        "records appended",
                    );
                    Outcome::delivered(None, format!("appended to {path}"))
                }
                Err(error) => Outcome::retry(None, error.to_string()),
            };
            vec![outcome; records.len()]
        })
    }

    fn preview(&self, batch: &Batch) -> String {
        let mut text = format!("append to {}\n", self.path.display());
        for record in &batch.records {
            text.push_str(&render_line(record, true));
            text.push('\n');
        }
        text
    }

    fn batching(&self) -> Batching {
        Batching::Stream {
            max_in_flight: BATCH_RECORDS,
        }
    }
}

/// One record as a JSON object on one line: keys in mapping order, values as text; secret
/// values as `***` when `masked`.
pub fn render_line(record: &Record, masked: bool) -> String {
    let mut line = String::from("{");
    for (index, field) in record.fields.iter().enumerate() {
        if index > 0 {
            line.push(',');
        }
        let value = if masked { field.shown() } else { &field.value };
        line.push_str(&json_text(&field.name));
        line.push(':');
        line.push_str(&json_text(value));
    }
    line.push('}');
    line
}

/// A string as a JSON string literal; control characters, newlines included, are escaped.
fn json_text(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use exporter_core::{Field, OutcomeKind};

    fn record(id: &str, fields: &[(&str, &str)]) -> Record {
        let fields = fields
            .iter()
            .map(|(name, value)| Field {
                name: (*name).into(),
                value: (*value).into(),
                secret: false,
            })
            .collect();
        Record {
            delivery_id: id.into(),
            order_id: format!("order-{id}"),
            fields,
        }
    }

    fn batch(records: Vec<Record>) -> Batch {
        Batch {
            id: "b1".into(),
            created_at_ms: 0,
            records,
        }
    }

    fn exporter(path: PathBuf) -> JsonlExporter {
        JsonlExporter::new("Sales feed", JsonlConfig { path, sync: true })
    }

    fn deliver(exporter: &JsonlExporter, batch: &Batch) -> Vec<Outcome> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(exporter.deliver(batch))
    }

    #[test]
    fn keeps_mapping_order_and_escapes_every_value() {
        let line = render_line(
            &record("1", &[("z", "a\"b"), ("a", "l1\nl2"), ("m", "Zoë 👍")]),
            false,
        );
        assert_eq!(line, r#"{"z":"a\"b","a":"l1\nl2","m":"Zoë 👍"}"#);
    }

    #[test]
    fn masks_secrets_only_when_asked() {
        let mut with_secret = record("1", &[("token", "s3cr3t")]);
        with_secret.fields[0].secret = true;
        assert_eq!(render_line(&with_secret, false), r#"{"token":"s3cr3t"}"#);
        assert_eq!(render_line(&with_secret, true), r#"{"token":"***"}"#);
    }

    #[test]
    fn appends_one_line_per_record_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feeds/sales.jsonl");
        let exporter = exporter(path.clone());
        let first = batch(vec![
            record("1", &[("id", "A")]),
            record("2", &[("id", "B")]),
        ]);
        let outcomes = deliver(&exporter, &first);
        assert!(outcomes.iter().all(|o| o.kind == OutcomeKind::Delivered));
        deliver(&exporter, &batch(vec![record("3", &[("id", "C")])]));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"id\":\"A\"}\n{\"id\":\"B\"}\n{\"id\":\"C\"}\n");
    }

    #[test]
    fn retries_every_record_when_the_file_cannot_be_written() {
        let dir = tempfile::tempdir().unwrap();
        // The folder's place is taken by a file.
        fs::write(dir.path().join("feeds"), "").unwrap();
        let exporter = exporter(dir.path().join("feeds/sales.jsonl"));
        let outcomes = deliver(&exporter, &batch(vec![record("1", &[("id", "A")])]));
        assert_eq!(outcomes.len(), 1);
        assert_eq!(outcomes[0].kind, OutcomeKind::Retry);
        assert!(
            outcomes[0].message.contains("feeds"),
            "{}",
            outcomes[0].message
        );
    }

    #[test]
    fn preview_shows_the_file_and_masked_lines() {
        let exporter = exporter(PathBuf::from("feeds/sales.jsonl"));
        let mut secret = record("1", &[("id", "A"), ("key", "k-123")]);
        secret.fields[1].secret = true;
        assert_eq!(
            exporter.preview(&batch(vec![secret])),
            "append to feeds/sales.jsonl\n{\"id\":\"A\",\"key\":\"***\"}\n"
        );
    }
}
