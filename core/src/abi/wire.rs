//! The JSON messages of the plugin ABI, besides [`Batch`](crate::Batch) (what `deliver` and
//! `preview` take) and a list of [`Outcome`](crate::Outcome)s (what `deliver` answers).
//!
//! Readers ignore members they do not know, so a minor version may add optional ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SettingsError;
use crate::exporter::Batching;

/// What `create` is given: the profile and its target keys, `env:` secrets already resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The profile's name, for the plugin's logs and file names.
    pub profile: String,
    /// The profile's keys that belong to the target.
    pub settings: Map<String, Value>,
}

/// What `create` answers about the instance it made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// How the host should hand records to the instance.
    pub batching: BatchingMode,
    /// True when `probe` checks something.
    #[serde(default)]
    pub probe: bool,
}

/// [`Batching`] in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchingMode {
    /// Up to `max_in_flight` records per call, sent as they become due.
    Stream { max_in_flight: usize },
    /// Everything due, every `interval_secs`.
    Flush { interval_secs: f64 },
}

impl From<Batching> for BatchingMode {
    fn from(batching: Batching) -> Self {
        match batching {
            Batching::Stream { max_in_flight } => BatchingMode::Stream { max_in_flight },
            Batching::Flush { interval } => BatchingMode::Flush {
                interval_secs: interval.as_secs_f64(),
            },
        }
    }
}

impl BatchingMode {
    /// The batching, or why it cannot be used: no records per call, or an interval that is
    /// not a positive number of seconds.
    pub fn to_batching(self) -> Result<Batching, String> {
        match self {
            BatchingMode::Stream { max_in_flight: 0 } => {
                Err("asks for 0 records per call".to_owned())
            }
            BatchingMode::Stream { max_in_flight } => Ok(Batching::Stream { max_in_flight }),
            BatchingMode::Flush { interval_secs } => Duration::try_from_secs_f64(interval_secs)
                .ok()
                .filter(|interval| !interval.is_zero())
                .map(|interval| Batching::Flush { interval })
                .ok_or_else(|| format!("asks for a flush every {interval_secs} seconds")),
        }
    }
}

/// A [`SettingsError`] in JSON: what `create` answers with [`Status::SETTINGS`].
///
/// [`Status::SETTINGS`]: super::Status::SETTINGS
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettingsFault {
    UnknownKey { key: String, expected: Vec<String> },
    MissingKey { key: String },
    Invalid { key: String, message: String },
    Several { errors: Vec<SettingsFault> },
}

impl From<SettingsError> for SettingsFault {
    fn from(error: SettingsError) -> Self {
        match error {
            SettingsError::UnknownKey { key, expected } => {
                SettingsFault::UnknownKey { key, expected }
            }
            SettingsError::MissingKey { key } => SettingsFault::MissingKey { key },
            SettingsError::Invalid { key, message } => SettingsFault::Invalid { key, message },
            SettingsError::Several(errors) => SettingsFault::Several {
                errors: errors.into_iter().map(SettingsFault::from).collect(),
            },
        }
    }
}

impl From<SettingsFault> for SettingsError {
    fn from(fault: SettingsFault) -> Self {
        match fault {
            SettingsFault::UnknownKey { key, expected } => {
                SettingsError::UnknownKey { key, expected }
            }
            SettingsFault::MissingKey { key } => SettingsError::MissingKey { key },
            SettingsFault::Invalid { key, message } => SettingsError::Invalid { key, message },
            SettingsFault::Several { errors } => {
                SettingsError::Several(errors.into_iter().map(SettingsError::from).collect())
            }
        }
    }
}

/// What `probe` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeReport {
    /// The target has nothing to check.
    Nothing,
    /// What was checked.
    Checked { message: String },
    /// What failed.
    Failed { message: String },
}

impl ProbeReport {
    /// The report as [`Exporter::probe`](crate::Exporter::probe) answers it.
    pub fn into_result(self) -> Option<Result<String, String>> {
        match self {
            ProbeReport::Nothing => None,
            ProbeReport::Checked { message } => Some(Ok(message)),
            ProbeReport::Failed { message } => Some(Err(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One settings error of each kind.
    fn samples() -> Vec<SettingsError> {
        vec![
            SettingsError::UnknownKey {
                key: "pth".into(),
                expected: vec!["path".into()],
            },
            SettingsError::MissingKey { key: "path".into() },
            SettingsError::invalid("path", "must not be empty"),
            SettingsError::Several(vec![
                SettingsError::MissingKey { key: "path".into() },
                SettingsError::invalid("sync", "expected a boolean"),
            ]),
        ]
    }

    #[test]
    fn settings_errors_survive_the_round_trip() {
        for (error, expected) in samples().into_iter().zip(samples()) {
            let text = serde_json::to_string(&SettingsFault::from(error)).unwrap();
            let back: SettingsFault = serde_json::from_str(&text).unwrap();
            assert_eq!(SettingsError::from(back), expected);
        }
    }

    #[test]
    fn batching_has_a_stable_json_form() {
        let stream = BatchingMode::from(Batching::Stream { max_in_flight: 8 });
        assert_eq!(
            serde_json::to_value(stream).unwrap(),
            json!({"kind": "stream", "max_in_flight": 8})
        );
        let flush = BatchingMode::from(Batching::Flush {
            interval: Duration::from_secs(900),
        });
        assert_eq!(
            serde_json::to_value(flush).unwrap(),
            json!({"kind": "flush", "interval_secs": 900.0})
        );
        assert_eq!(
            flush.to_batching(),
            Ok(Batching::Flush {
                interval: Duration::from_secs(900)
            })
        );
    }

    #[test]
    fn refuses_batching_it_cannot_schedule() {
        let bad = [
            BatchingMode::Stream { max_in_flight: 0 },
            BatchingMode::Flush { interval_secs: 0.0 },
            BatchingMode::Flush {
                interval_secs: -1.0,
            },
            BatchingMode::Flush {
                interval_secs: f64::NAN,
            },
        ];
        for mode in bad {
            assert!(mode.to_batching().is_err(), "{mode:?}");
        }
    }

    #[test]
    fn instance_info_ignores_members_it_does_not_know() {
        let info: InstanceInfo = serde_json::from_value(json!({
            "batching": {"kind": "stream", "max_in_flight": 1},
            "added_in_a_later_minor_version": true
        }))
        .unwrap();
        assert!(!info.probe);
    }
}
