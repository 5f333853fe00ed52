//! Why a plugin library was refused, and why a call into a plugin did not produce its result.

use std::fmt;
use std::path::PathBuf;

use exporter_core::SettingsError;
use exporter_core::abi::{ABI_MAJOR, ENTRY_SYMBOL};
use thiserror::Error;

/// Why a library in the plugins folder cannot be used. Each message follows the file's path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    /// The system loader refused the file: not a shared library, built for another platform,
    /// or a library it needs is missing.
    #[error("cannot be loaded: {0}")]
    Open(String),

    /// No entry symbol of any version: some other library.
    #[error("is not an exporter plugin: it has no `{ENTRY_SYMBOL}` function")]
    NoEntry,

    /// Built against another major version of the ABI.
    #[error(
        "was built for plugin ABI {found} and this exporter speaks ABI {ABI_MAJOR}; rebuild the \
         plugin against the exporter-core of this exporter's version"
    )]
    AbiVersion { found: u16 },

    /// The entry symbol answered something that is not a usable descriptor.
    #[error("has a bad plugin descriptor: {0}")]
    BadDescriptor(String),

    /// Built with `panic = "abort"`: a panic in it would end the exporter.
    #[error(
        "was built with panic = \"abort\", so a panic in it would stop the exporter; build it \
         with the default panic = \"unwind\""
    )]
    PanicAborts,

    /// Its type is one of the targets built into the binary.
    #[error(
        "provides type `{name}`, which is built into this exporter; a plugin cannot replace it"
    )]
    BuiltIn { name: String },

    /// Another library of the folder provides the same type.
    #[error("provides type `{name}`, as {} does; keep one of them in the folder", other.display())]
    Duplicate { name: String, other: PathBuf },
}

/// A library of the plugins folder that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: PathBuf,
    pub error: LoadError,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: {}", self.path.display(), self.error)
    }
}

/// Why `create` made no instance.
#[derive(Debug)]
pub enum CreateError {
    /// The plugin refused the profile's settings.
    Settings(SettingsError),
    /// The plugin panicked.
    Panicked(String),
    /// The plugin could not read the request, or answered something unreadable.
    Failed(String),
}

/// Why a call on an instance produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The plugin panicked; the instance must be replaced.
    Panicked(String),
    /// The plugin could not do the call, or answered something unreadable.
    Failed(String),
}
