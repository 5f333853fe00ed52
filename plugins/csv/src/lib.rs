//! The `csv` target: every flush of a profile's records becomes one new CSV file in a folder,
//! for spreadsheets and for systems that pick files up from a shared drive.
//!
//! Each file is RFC 4180, UTF-8, with a header row of the mapping names and one row per
//! delivery, columns in mapping order. Files appear atomically under their final name and an
//! existing file is never overwritten (see [`CsvExporter`] for how, and for the limits).
//! [`render_csv`] and [`FileNameTemplate`] are pure, so other file targets produce the same
//! bytes under the same names.

mod config;
mod error;
mod exporter;
mod writer;

use exporter_core::{Exporter, SettingsError};
use serde_json::{Map, Value};

pub use config::CsvConfig;
pub use error::CsvError;
pub use exporter::CsvExporter;
pub use writer::{BOM, CsvFormat, FileNameTemplate, file_safe, render_csv, render_csv_masked};

/// The `type` that selects this target in a profile.
pub const TYPE: &str = "csv";

/// Builds the target of `profile` from its target keys; does no I/O (the folder is created at
/// the first flush).
pub fn build(
    profile: &str,
    settings: &Map<String, Value>,
) -> Result<Box<dyn Exporter>, SettingsError> {
    let config = CsvConfig::parse(settings)?;
    Ok(Box::new(CsvExporter::new(profile, config)?))
}
