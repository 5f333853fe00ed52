//! The `jsonl` target, an example plugin: appends each record as one JSON object per line to a
//! file, a feed that data tools (`jq`, DuckDB, pandas, a log shipper) read as it grows.
//!
//! It is built only as a shared library and loaded by the `exporter` binary from its
//! `plugins_dir`; it is also the template for a new target: the same files as a built-in target
//! (`config.rs` for the settings, `exporter.rs` for the [`Exporter`], `error.rs`), and one
//! [`exporter_plugin!`](exporter_core::exporter_plugin) call that exports it.
//!
//! Each line is an object of the mapped fields, keys in mapping order, values as text:
//!
//! ```text
//! {"order_id":"A100","type":"New Sale","total":"49.95"}
//! ```

mod config;
mod error;
mod exporter;

use exporter_core::{Exporter, SettingsError};
use serde_json::{Map, Value};

pub use config::JsonlConfig;
pub use error::JsonlError;
pub use exporter::{JsonlExporter, render_line};

/// The `type` that selects this target in a profile.
pub const TYPE: &str = "jsonl";

exporter_core::exporter_plugin! {
    name: TYPE,
    version: env!("CARGO_PKG_VERSION"),
    build: build,
}

/// Checks a profile's target keys and builds its exporter; does no I/O (the file and its
/// folder are created at the first delivery).
pub fn build(
    profile: &str,
    settings: &Map<String, Value>,
) -> Result<Box<dyn Exporter>, SettingsError> {
    let config = JsonlConfig::parse(settings)?;
    Ok(Box::new(JsonlExporter::new(profile, config)))
}
