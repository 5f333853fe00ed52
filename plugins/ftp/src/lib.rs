//! The `ftp` target: every flush of a profile's records becomes one CSV file uploaded to a
//! folder on an FTP or FTPS server, for fulfillment houses and other systems that pick files
//! up from a drop folder.
//!
//! The file is the one the `csv` target writes (its [`exporter_csv::render_csv`] renders it,
//! with the same layout keys). It appears under its final name whole or not at all, and a
//! retried batch lands under the same name instead of a second one: see [`FtpExporter`] for
//! how, and for the limits. Every step of a session waits at most `timeout_secs`, so a server
//! that stops answering fails the attempt instead of holding the worker.
//!
//! The host calls [`build`] with the profile's target keys (its own keys removed, `env:`
//! secrets resolved); see [`FtpConfig`] for the keys.

mod config;
mod error;
mod exporter;
mod session;

use exporter_core::{Exporter, SettingsError};
use serde_json::{Map, Value};

pub use config::{FtpConfig, MAX_TIMEOUT_SECS, Password, TlsMode};
pub use error::{FtpError, Step};
pub use exporter::{FtpExporter, temp_name};
pub use exporter_core::record::batch_seq;

/// The `type` that selects this target in a profile.
pub const TYPE: &str = "ftp";

/// Builds the target of `profile` from its target keys; does no I/O (the server is first
/// contacted at the first flush, or by `exporter check --connect`).
pub fn build(
    profile: &str,
    settings: &Map<String, Value>,
) -> Result<Box<dyn Exporter>, SettingsError> {
    let config = FtpConfig::parse(settings)?;
    Ok(Box::new(FtpExporter::new(profile, config)?))
}
