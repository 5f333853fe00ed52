//! The postback target: delivers each record as one HTTP request to a call center's lead API,
//! an affiliate network or any other URL, and judges the answer per profile.
//!
//! How a record becomes a request (GET with a query by default; `header:NAME` fields, JSON
//! bodies and `httpMethod`/`httpMethodType`) is described in [`request`]; how an answer
//! becomes an outcome (2xx, body rules, redirects, `Retry-After`) in [`response`]. Every
//! request carries the delivery id as `Idempotency-Key`, the same on every attempt.
//!
//! The host calls [`build`] with the profile's target keys (its own keys removed, `env:`
//! secrets resolved); see [`PostbackConfig`] for the keys.

pub mod config;
pub mod error;
pub mod exporter;
pub mod request;
pub mod response;
pub mod signing;

use exporter_core::{Exporter, SettingsError, parse_settings_partial};
use serde_json::{Map, Value};

pub use config::{PostbackConfig, Target};
pub use error::PostbackError;
pub use exporter::PostbackExporter;

/// The export type that selects this target in a profile.
pub const TYPE: &str = "postback";

/// Checks a profile's target keys and builds its exporter. Does no network I/O.
pub fn build(
    profile: &str,
    settings: &Map<String, Value>,
) -> Result<Box<dyn Exporter>, SettingsError> {
    let (config, mut problems) = parse_settings_partial::<PostbackConfig>(settings);
    if let Some(config) = config {
        match config.validate() {
            Ok(target) if problems.is_empty() => {
                return Ok(Box::new(PostbackExporter::new(profile, target)?));
            }
            Ok(_) => {}
            Err(error) => problems.extend(error.into_list()),
        }
    }
    Err(SettingsError::from_all(problems).expect("a problem was found"))
}
