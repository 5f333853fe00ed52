//! The one error type of the `csv` target: a file name template it cannot use, a batch it
//! cannot lay out as one table, or a file it could not write.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What went wrong, naming the template, delivery or path concerned.
#[derive(Debug, Error)]
pub enum CsvError {
    /// The `file_name` template is empty.
    #[error("file name template is empty; the default is `{{profile}}_{{timestamp}}_{{seq}}.csv`")]
    EmptyTemplate,

    /// The template names a placeholder that does not exist.
    #[error(
        "unknown placeholder `{{{name}}}` in `{template}`; \
         expected {{profile}}, {{timestamp}}, {{date}} or {{seq}}"
    )]
    UnknownPlaceholder { template: String, name: String },

    /// A `{` is never closed, or a `}` was never opened.
    #[error(
        "unmatched `{brace}` at column {column} of `{template}`; braces only surround \
         placeholders, as in `{{profile}}_{{date}}.csv`"
    )]
    UnmatchedBrace {
        template: String,
        brace: char,
        column: usize,
    },

    /// The template would leave the folder or hold characters no file name should.
    #[error("file name `{template}` {problem}; the folder goes in `dir`, the name in `file_name`")]
    UnsafeFileName {
        template: String,
        problem: &'static str,
    },

    /// A record's field names differ from the first record's, so the batch is not one table.
    /// The host renders one profile's mappings for every record, so this is a bug upstream.
    #[error(
        "delivery {delivery_id} has fields [{}] but the file's columns are [{}]",
        found.join(", "),
        expected.join(", ")
    )]
    ColumnsDiffer {
        delivery_id: String,
        expected: Vec<String>,
        found: Vec<String>,
    },

    /// The folder could not be created.
    #[error("create folder {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },

    /// The temporary file could not be created, written or synced to disk.
    #[error("write {}: {source}", path.display())]
    WriteTemp { path: PathBuf, source: io::Error },

    /// The finished file could not be given its final name.
    #[error("publish {}: {source}", path.display())]
    Publish { path: PathBuf, source: io::Error },

    /// Every candidate name was taken.
    #[error("no free file name in {}: tried {tries} names up to {}", dir.display(), last.display())]
    NoFreeName {
        dir: PathBuf,
        tries: usize,
        last: PathBuf,
    },

    /// The folder entry of the new file could not be synced to disk.
    #[error("sync folder {}: {source}", path.display())]
    SyncDir { path: PathBuf, source: io::Error },
}
