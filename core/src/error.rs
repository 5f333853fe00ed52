//! Errors of the core crate, one enum per concern, each naming what was wrong and where.

use thiserror::Error;

/// Why an input object is not an order event.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    /// The JSON value is an array, a string or a number instead of an object.
    #[error("expected a JSON object with the order's fields, found {found}")]
    NotAnObject { found: &'static str },

    /// A field every event needs is absent, null or empty.
    #[error("missing required field `{field}`")]
    MissingField { field: &'static str },

    /// A required field holds a value of the wrong kind.
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
}

/// Why a field mapping in the config cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MappingError {
    /// The mapping has no export name.
    #[error("mapping has an empty `name`")]
    EmptyName,

    /// Both or neither of `field` and `value` were given.
    #[error("mapping `{name}` needs exactly one of `field` or `value`")]
    SourceCount { name: String },

    /// A template has a `[` that is never closed.
    #[error(
        "mapping `{name}`: unclosed `[` at column {column} of the template (write `[[` for a literal `[`)"
    )]
    UnclosedToken { name: String, column: usize },

    /// A template holds `[]` or a token made of spaces.
    #[error("mapping `{name}`: empty field token `[]` at column {column} of the template")]
    EmptyToken { name: String, column: usize },

    /// `field = ""` or a path with an empty segment such as `items..name`.
    #[error("mapping `{name}`: field path `{path}` has an empty segment")]
    EmptyPath { name: String, path: String },
}

/// Why a target refused its settings. `key` names the offending setting when there is one, so
/// the caller can point at its line in the config file.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingsError {
    /// A key the target does not know, usually a typo.
    #[error("unknown key `{key}`; expected one of: {}", expected.join(", "))]
    UnknownKey { key: String, expected: Vec<String> },

    /// A key the target needs is absent.
    #[error("missing required key `{key}`")]
    MissingKey { key: String },

    /// A key holds a value the target cannot use.
    #[error("key `{key}`: {message}")]
    Invalid { key: String, message: String },

    /// More than one of the above, so one run reports them all.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<SettingsError>),
}

impl SettingsError {
    /// The setting this error is about (the first one's, for [`SettingsError::Several`]).
    pub fn key(&self) -> &str {
        match self {
            SettingsError::UnknownKey { key, .. }
            | SettingsError::MissingKey { key }
            | SettingsError::Invalid { key, .. } => key,
            SettingsError::Several(errors) => errors.first().map_or("", SettingsError::key),
        }
    }

    /// One error for a list of them: `None` when the list is empty.
    pub fn from_all(mut errors: Vec<SettingsError>) -> Option<SettingsError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(SettingsError::Several(errors)),
        }
    }

    /// Every single error this one holds.
    pub fn into_list(self) -> Vec<SettingsError> {
        match self {
            SettingsError::Several(errors) => {
                errors.into_iter().flat_map(Self::into_list).collect()
            }
            single => vec![single],
        }
    }

    /// A value error for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
