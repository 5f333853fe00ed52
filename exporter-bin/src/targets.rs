//! The export types this binary knows, by the name a profile's `type` gives.

use exporter_core::{Exporter, SettingsError};
use serde_json::{Map, Value};

/// Builds a target from a profile name and its target keys.
pub type BuildFn = fn(&str, &Map<String, Value>) -> Result<Box<dyn Exporter>, SettingsError>;

/// The targets linked into the binary.
const BUILT_IN: &[(&str, BuildFn)] = &[
    (exporter_postback::TYPE, exporter_postback::build),
    (exporter_csv::TYPE, exporter_csv::build),
    (exporter_ftp::TYPE, exporter_ftp::build),
];

/// The builder for an export type.
pub fn find(name: &str) -> Option<BuildFn> {
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, build)| *build)
}

/// Every known export type.
pub fn names() -> Vec<&'static str> {
    BUILT_IN.iter().map(|(name, _)| *name).collect()
}
