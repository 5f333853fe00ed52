//! Target settings: each target owns its schema. The host passes a profile's target keys as a
//! JSON object; [`parse_settings`] refuses keys the target's settings struct does not declare,
//! naming the key and the keys it expected, then deserializes it, naming the key of any value
//! error, so the host can point at the line in the config file.

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use crate::error::SettingsError;

/// Deserializes a target's settings struct `T` from the profile's target keys.
///
/// `T` must be a plain struct with named fields (no `flatten`), so its keys can be listed.
/// Every unknown key is reported, together with a value error of the known ones.
pub fn parse_settings<T: DeserializeOwned>(
    settings: &Map<String, Value>,
) -> Result<T, SettingsError> {
    match parse_settings_partial(settings) {
        (Some(value), problems) if problems.is_empty() => Ok(value),
        (_, problems) => Err(SettingsError::from_all(problems).expect("a problem was found")),
    }
}

/// Like [`parse_settings`], but also returns the settings when only unknown keys are wrong,
/// so a target can go on checking values and report every problem in one run.
pub fn parse_settings_partial<T: DeserializeOwned>(
    settings: &Map<String, Value>,
) -> (Option<T>, Vec<SettingsError>) {
    let expected = field_names::<T>();
    let mut known = Map::new();
    let mut problems = Vec::new();
    for (key, value) in settings {
        if expected.contains(&key.as_str()) {
            known.insert(key.clone(), value.clone());
            continue;
        }
        let mut expected: Vec<String> = expected.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        problems.push(SettingsError::UnknownKey {
            key: key.clone(),
            expected,
        });
    }
    match serde_path_to_error::deserialize(Value::Object(known)) {
        Ok(value) => (Some(value), problems),
        Err(error) => {
            let key = error.path().to_string();
            let message = plain_types(&error.into_inner().to_string());
            problems.push(match message.strip_prefix("missing field `") {
                Some(rest) if key == "." => SettingsError::MissingKey {
                    key: rest.trim_end_matches('`').to_owned(),
                },
                _ => SettingsError::Invalid { key, message },
            });
            (None, problems)
        }
    }
}

/// Serde names Rust types in its messages (`expected f64`); operators write TOML.
fn plain_types(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
        ("expected a string", "expected text"),
    ];
    let mut message = message.to_owned();
    for (rust, plain) in WORDS {
        message = message.replace(rust, plain);
    }
    message
}

/// The field names a derived `Deserialize` struct declares.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames {
        fields: &mut fields,
    });
    fields
}

/// A deserializer that only records the fields `deserialize_struct` is asked for.
struct FieldNames<'a> {
    fields: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.fields = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        url: String,
        #[serde(default)]
        timeout_secs: Option<u64>,
    }

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn parses_known_keys() {
        let parsed: Example =
            parse_settings(&map(json!({"url": "http://x", "timeout_secs": 5}))).unwrap();
        assert_eq!(
            parsed,
            Example {
                url: "http://x".into(),
                timeout_secs: Some(5)
            }
        );
    }

    #[test]
    fn names_an_unknown_key_and_the_expected_ones() {
        let error = parse_settings::<Example>(&map(json!({"url": "x", "timeout": 5}))).unwrap_err();
        let expected = vec!["timeout_secs".to_owned(), "url".to_owned()];
        assert_eq!(
            error,
            SettingsError::UnknownKey {
                key: "timeout".into(),
                expected
            }
        );
    }

    #[test]
    fn names_a_missing_key() {
        let error = parse_settings::<Example>(&map(json!({}))).unwrap_err();
        assert_eq!(error, SettingsError::MissingKey { key: "url".into() });
    }

    #[test]
    fn names_the_key_of_a_wrong_value() {
        let error =
            parse_settings::<Example>(&map(json!({"url": "x", "timeout_secs": "5"}))).unwrap_err();
        assert_eq!(error.key(), "timeout_secs");
        assert!(
            error.to_string().contains("expected a whole number"),
            "{error}"
        );
    }
}
