//! Errors of the `jsonl` target.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Why a batch could not be appended; its records are retried.
#[derive(Debug, Error)]
pub enum JsonlError {
    /// The file's folder is missing and cannot be made.
    #[error("cannot create the folder {}: {source}", path.display())]
    CreateFolder { path: PathBuf, source: io::Error },

    /// The file cannot be opened, written or flushed.
    #[error("cannot append to {}: {source}", path.display())]
    Append { path: PathBuf, source: io::Error },
}
