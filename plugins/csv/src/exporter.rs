//! [`CsvExporter`]: writes each flush of a profile's records as one new file, atomically.
//!
//! A file appears under its final name complete or not at all: it is written under a hidden
//! temporary name in the same folder, synced, then hard-linked to the first free final name
//! (a link never replaces an existing file, even when two exporters race for one name), the
//! temporary name is removed and the folder synced. Any failure removes what was written.
//!
//! Limits an operator may meet: the folder must be on a file system with hard links (any
//! local Unix file system or NFS; not FAT or exFAT). A crash in the middle of a flush can leave
//! a hidden `.NAME.tmp-PID-N` file, which no reader of `*.csv` picks up and which is safe to
//! delete; its records are delivered again by the next attempt.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use exporter_core::{Batch, Batching, BoxFuture, Exporter, Outcome, SettingsError};
use jiff::Timestamp;
use tracing::{debug, warn};

use crate::config::CsvConfig;
use crate::error::CsvError;
use crate::writer::{self, BOM, CsvFormat, FileNameTemplate};

/// How many names a flush tries before giving up on finding a free one.
const NAME_TRIES: usize = 1000;

/// Longest file name accepted at build time, leaving room for the temporary name's prefix
/// and suffix under the usual 255-byte limit.
const MAX_NAME_BYTES: usize = 200;

/// Numbers temporary files, so concurrent flushes in one process never share one.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The `csv` target of one profile.
#[derive(Debug)]
pub struct CsvExporter {
    profile: String,
    dir: PathBuf,
    file_name: FileNameTemplate,
    format: CsvFormat,
    flush_interval: Duration,
}

impl CsvExporter {
    /// The target for `profile`; checks that its file names are usable, does no I/O.
    pub fn new(profile: &str, config: CsvConfig) -> Result<Self, SettingsError> {
        let sample = config.file_name.render(profile, Timestamp::now(), 1);
        if matches!(sample.as_str(), "" | "." | "..") || sample.len() > MAX_NAME_BYTES {
            let message = format!(
                "renders as {sample:?} for profile {profile:?}; a file name needs 1 to \
                 {MAX_NAME_BYTES} bytes and cannot be `.` or `..`"
            );
            return Err(SettingsError::invalid("file_name", message));
        }
        Ok(CsvExporter {
            profile: profile.to_owned(),
            format: config.format(),
            flush_interval: config.flush_interval(),
            dir: config.dir,
            file_name: config.file_name,
        })
    }

    fn flush_for(&self, body: Vec<u8>, batch: &Batch) -> Flush {
        Flush {
            dir: self.dir.clone(),
            file_name: self.file_name.clone(),
            profile: self.profile.clone(),
            at: batch_time(batch),
            seq: batch.seq(),
            body,
        }
    }

    /// The path a flush of `batch` would try first, and how its bytes are laid out.
    fn preview_heading(&self, batch: &Batch) -> String {
        let name = self
            .file_name
            .render(&self.profile, batch_time(batch), batch.seq());
        let path = self.dir.join(name);
        let bom = if self.format.bom { " with BOM" } else { "" };
        let line_ends = if self.format.crlf { "CRLF" } else { "LF" };
        format!(
            "file {} (UTF-8{bom}, {line_ends} line ends)",
            path.display()
        )
    }

    fn written(&self, path: &Path, records: usize) -> Outcome {
        let path = path.display();
        debug!(profile = %self.profile, %path, records, "csv file written");
        Outcome::delivered(None, path.to_string())
    }

    async fn write(&self, batch: &Batch) -> Vec<Outcome> {
        let records = &batch.records;
        let body = match writer::render_csv(records, &self.format) {
            Ok(body) => body,
            Err(error) => return vec![Outcome::failed(None, error.to_string()); records.len()],
        };
        let flush = self.flush_for(body, batch);
        let outcome = match tokio::task::spawn_blocking(move || flush.run()).await {
            Ok(Ok(path)) => self.written(&path, records.len()),
            Ok(Err(error)) => Outcome::retry(None, error.to_string()),
            Err(join) => {
                let message = format!("write csv file in {}: {join}", self.dir.display());
                Outcome::retry(None, message)
            }
        };
        vec![outcome; records.len()]
    }
}

impl Exporter for CsvExporter {
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            if batch.records.is_empty() {
                return Vec::new();
            }
            self.write(batch).await
        })
    }

    fn preview(&self, batch: &Batch) -> String {
        let records = &batch.records;
        if records.is_empty() {
            return "no records, so no file would be written\n".to_owned();
        }
        match writer::render_csv_masked(records, &self.format) {
            Ok(body) => {
                let text = String::from_utf8_lossy(body.strip_prefix(BOM).unwrap_or(&body));
                format!("{}\n{text}", self.preview_heading(batch))
            }
            Err(error) => format!("no file would be written: {error}\n"),
        }
    }

    fn batching(&self) -> Batching {
        Batching::Flush {
            interval: self.flush_interval,
        }
    }
}

/// When the batch was formed: the `{timestamp}` of its file, the same on every retry.
fn batch_time(batch: &Batch) -> Timestamp {
    Timestamp::from_millisecond(batch.created_at_ms).unwrap_or_else(|_| Timestamp::now())
}

/// One flush's file, owned so it can be written on a blocking thread.
struct Flush {
    dir: PathBuf,
    file_name: FileNameTemplate,
    profile: String,
    at: Timestamp,
    seq: u64,
    body: Vec<u8>,
}

impl Flush {
    /// Writes the file; returns its path.
    fn run(self) -> Result<PathBuf, CsvError> {
        fs::create_dir_all(&self.dir).map_err(|source| CsvError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;

        let first = self.file_name.render(&self.profile, self.at, self.seq);
        let temp = self.write_temp(&first)?;
        let published = self.publish(&temp);
        remove_leftover(&temp);
        let path = published?;

        if let Err(source) = sync_dir(&self.dir) {
            remove_leftover(&path);
            return Err(CsvError::SyncDir {
                path: self.dir,
                source,
            });
        }
        Ok(path)
    }

    /// Writes and syncs the body under a new hidden name; removes it again on failure.
    fn write_temp(&self, name: &str) -> Result<PathBuf, CsvError> {
        let (path, mut file) = self.create_temp(name)?;
        let written = file.write_all(&self.body).and_then(|()| file.sync_all());
        drop(file);
        match written {
            Ok(()) => Ok(path),
            Err(source) => {
                remove_leftover(&path);
                Err(CsvError::WriteTemp { path, source })
            }
        }
    }

    fn create_temp(&self, name: &str) -> Result<(PathBuf, File), CsvError> {
        loop {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self
                .dir
                .join(format!(".{name}.tmp-{}-{n}", std::process::id()));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                // A leftover of a crashed run with the same process id: take the next number.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(CsvError::WriteTemp { path, source }),
            }
        }
    }

    /// Links the temporary file to the first free final name.
    ///
    /// A file already there with exactly this body is this batch's own, written by an attempt
    /// whose success was never recorded: it counts as written, so a retry adds no copy.
    fn publish(&self, temp: &Path) -> Result<PathBuf, CsvError> {
        let mut last = PathBuf::new();
        let candidates = self.file_name.candidates(&self.profile, self.at, self.seq);
        for (_, name) in candidates.take(NAME_TRIES) {
            let path = self.dir.join(name);
            match fs::hard_link(temp, &path) {
                Ok(()) => return Ok(path),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    if fs::read(&path).is_ok_and(|existing| existing == self.body) {
                        return Ok(path);
                    }
                    last = path;
                }
                Err(source) => return Err(CsvError::Publish { path, source }),
            }
        }
        Err(CsvError::NoFreeName {
            dir: self.dir.clone(),
            tries: NAME_TRIES,
            last,
        })
    }
}

/// Removes a file this flush made; a failure leaves a hidden or duplicate file, not a loss.
fn remove_leftover(path: &Path) {
    if let Err(error) = fs::remove_file(path) {
        warn!(path = %path.display(), %error, "could not remove a file left by a csv flush");
    }
}

/// Makes the new folder entry durable, so a crash after success cannot lose the file.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Other systems cannot open a folder to sync it; the file itself is synced.
#[cfg(not(unix))]
fn sync_dir(_: &Path) -> io::Result<()> {
    Ok(())
}
