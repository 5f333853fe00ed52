//! Settings of the `csv` target, as an operator writes them under a profile's target keys.

use std::path::PathBuf;
use std::time::Duration;

use exporter_core::{SettingsError, parse_settings};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::writer::{CsvFormat, FileNameTemplate};

/// Settings of a `csv` profile: every flush of its records becomes one new file in `dir`.
///
/// ```toml
/// dir = "/srv/exports/partials"
/// file_name = "{profile}_{timestamp}_{seq}.csv"
/// delimiter = ";"
/// excel = true
/// flush_interval_minutes = 15
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Folder the files go in. Created with its parents at a flush when missing, so a folder
    /// that is cleaned away or mounted late still receives files.
    #[serde(deserialize_with = "folder")]
    pub dir: PathBuf,

    /// Name of each file, with `{profile}`, `{timestamp}`, `{date}` and `{seq}` placeholders.
    /// A name already taken is never overwritten: the next `{seq}`, or a `-2` suffix, is used;
    /// a file there with the very same body is this batch's own, from an attempt whose success
    /// was not recorded, and counts as written.
    #[serde(default, deserialize_with = "template")]
    pub file_name: FileNameTemplate,

    /// The cell separator; `;` suits spreadsheets in locales that write `1,5`.
    #[serde(default = "comma", deserialize_with = "delimiter")]
    pub delimiter: u8,

    /// Starts each file with a UTF-8 byte order mark, for readers that guess the encoding.
    #[serde(default)]
    pub bom: bool,

    /// Writes files for Excel: BOM and CRLF whatever `bom` says, and cells that Excel would run
    /// as formulas (starting with `=`, `+`, `-`, `@`, tab, CR) get a leading `'`.
    #[serde(default)]
    pub excel: bool,

    /// How long records are gathered before they are written as one file.
    #[serde(default = "fifteen", deserialize_with = "minutes")]
    pub flush_interval_minutes: f64,
}

impl CsvConfig {
    /// Parses and checks a profile's target keys; does no I/O.
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, SettingsError> {
        parse_settings(settings)
    }

    /// The layout of the files.
    pub fn format(&self) -> CsvFormat {
        if self.excel {
            CsvFormat::excel(self.delimiter)
        } else {
            CsvFormat {
                delimiter: self.delimiter,
                bom: self.bom,
                ..CsvFormat::default()
            }
        }
    }

    /// `flush_interval_minutes` as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs_f64(self.flush_interval_minutes * 60.0)
    }
}

fn comma() -> u8 {
    b','
}

fn fifteen() -> f64 {
    15.0
}

fn folder<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let dir = PathBuf::deserialize(d)?;
    if dir.as_os_str().is_empty() {
        return Err(D::Error::custom(
            "must name a folder, such as \"/srv/exports/orders\"",
        ));
    }
    Ok(dir)
}

fn template<'de, D: Deserializer<'de>>(d: D) -> Result<FileNameTemplate, D::Error> {
    String::deserialize(d)?.parse().map_err(D::Error::custom)
}

fn delimiter<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_bytes() {
        [byte] if byte.is_ascii() && !matches!(byte, b'"' | b'\r' | b'\n') => Ok(*byte),
        _ => Err(D::Error::custom(format!(
            "must be one ASCII character other than `\"`, CR and LF, such as \",\", \";\" or \
             \"\\t\"; found {text:?}"
        ))),
    }
}

fn minutes<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let minutes = f64::deserialize(d)?;
    if minutes > 0.0 && Duration::try_from_secs_f64(minutes * 60.0).is_ok() {
        Ok(minutes)
    } else {
        Err(D::Error::custom(format!(
            "must be a number of minutes greater than 0, such as 15 or 0.5; found {minutes}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<CsvConfig, SettingsError> {
        CsvConfig::parse(value.as_object().unwrap())
    }

    #[test]
    fn fills_in_defaults() {
        let config = parse(json!({"dir": "/tmp/out"})).unwrap();
        assert_eq!(config.dir, PathBuf::from("/tmp/out"));
        assert_eq!(config.file_name.as_str(), "{profile}_{timestamp}_{seq}.csv");
        assert_eq!(config.format(), CsvFormat::default());
        assert_eq!(config.flush_interval(), Duration::from_secs(15 * 60));
    }

    #[test]
    fn reads_every_key() {
        let config = parse(json!({
            "dir": "out", "file_name": "{date}.csv", "delimiter": "\t", "bom": true,
            "excel": false, "flush_interval_minutes": 0.5,
        }))
        .unwrap();
        assert_eq!(config.file_name.as_str(), "{date}.csv");
        let format = CsvFormat {
            delimiter: b'\t',
            bom: true,
            ..CsvFormat::default()
        };
        assert_eq!(config.format(), format);
        assert_eq!(config.flush_interval(), Duration::from_secs(30));
    }

    #[test]
    fn excel_implies_bom_crlf_and_formula_guard() {
        let config = parse(json!({"dir": "out", "excel": true, "bom": false})).unwrap();
        assert_eq!(config.format(), CsvFormat::excel(b','));
    }

    #[test]
    fn names_an_unknown_key_and_the_expected_ones() {
        let error = parse(json!({"dir": "out", "delimeter": ";"})).unwrap_err();
        assert_eq!(error.key(), "delimeter");
        let message = error.to_string();
        let expected = "bom, delimiter, dir, excel, file_name, flush_interval_minutes";
        assert!(message.ends_with(expected), "{message}");
    }

    #[test]
    fn requires_dir() {
        let error = parse(json!({})).unwrap_err();
        assert_eq!(error, SettingsError::MissingKey { key: "dir".into() });
        assert_eq!(parse(json!({"dir": ""})).unwrap_err().key(), "dir");
    }

    #[test]
    fn refuses_a_delimiter_that_is_not_one_ascii_character() {
        for bad in ["", ";;", "\"", "\n", "\r", "§"] {
            let error = parse(json!({"dir": "out", "delimiter": bad})).unwrap_err();
            assert_eq!(error.key(), "delimiter", "{bad:?}");
            assert!(error.to_string().contains("such as \",\""), "{error}");
        }
    }

    #[test]
    fn refuses_a_bad_file_name_naming_the_key() {
        for bad in [
            "{profile}_{time}.csv",
            "../{seq}.csv",
            "a/b.csv",
            "a\\b.csv",
            "{seq",
        ] {
            let error = parse(json!({"dir": "out", "file_name": bad})).unwrap_err();
            assert!(
                matches!(error, SettingsError::Invalid { .. }),
                "{bad:?}: {error}"
            );
            assert_eq!(error.key(), "file_name", "{bad:?}");
        }
    }

    #[test]
    fn refuses_a_flush_interval_that_is_not_positive() {
        for bad in [json!(0), json!(-1), json!(1e300), json!("15")] {
            let error = parse(json!({"dir": "out", "flush_interval_minutes": bad})).unwrap_err();
            assert_eq!(error.key(), "flush_interval_minutes", "{bad}");
        }
    }
}
