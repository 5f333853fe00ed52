//! Settings of the `jsonl` target, as an operator writes them under a profile's target keys.

use std::path::PathBuf;

use exporter_core::{SettingsError, parse_settings};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Settings of a `jsonl` profile.
///
/// ```toml
/// path = "feeds/sales.jsonl"
/// sync = true
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// The file every record is appended to, relative to the exporter's working directory.
    /// It and its folder are created when missing, so a feed that was rotated away starts
    /// again.
    pub path: PathBuf,

    /// Flush the file to disk before a batch counts as delivered, so a power cut loses
    /// nothing the exporter recorded as sent. Turn off for a feed on a slow disk that can
    /// afford to lose its last lines.
    #[serde(default = "yes")]
    pub sync: bool,
}

impl JsonlConfig {
    /// Parses and checks a profile's target keys; does no I/O.
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, SettingsError> {
        let config: JsonlConfig = parse_settings(settings)?;
        if config.path.file_name().is_none() {
            let message = format!(
                "{:?} does not name a file; for example `path = \"feeds/sales.jsonl\"`",
                config.path
            );
            return Err(SettingsError::invalid("path", message));
        }
        Ok(config)
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<JsonlConfig, SettingsError> {
        JsonlConfig::parse(value.as_object().unwrap())
    }

    #[test]
    fn needs_a_path_and_syncs_by_default() {
        let config = parse(json!({"path": "feeds/sales.jsonl"})).unwrap();
        assert_eq!(config.path, PathBuf::from("feeds/sales.jsonl"));
        assert!(config.sync);
        let missing = parse(json!({})).unwrap_err();
        assert_eq!(missing, SettingsError::MissingKey { key: "path".into() });
    }

    #[test]
    fn refuses_unknown_keys_and_paths_without_a_file_name() {
        let typo = parse(json!({"path": "a.jsonl", "fsync": false})).unwrap_err();
        assert_eq!(typo.key(), "fsync");
        for path in ["", "feeds/..", "/"] {
            let error = parse(json!({ "path": path })).unwrap_err();
            assert_eq!(error.key(), "path", "{path:?}");
        }
    }
}
