//! The export types a config can use, by the name a profile's `type` gives: the targets built
//! into the binary, and the plugins loaded from the config's `plugins_dir`.

use std::io;
use std::path::{Path, PathBuf};

use exporter_core::{Exporter, SettingsError};
use serde_json::{Map, Value};

use crate::plugins::{self, LoadError, PluginExporter, PluginLibrary, Refusal};

/// Builds a target from a profile name and its target keys.
pub type BuildFn = fn(&str, &Map<String, Value>) -> Result<Box<dyn Exporter>, SettingsError>;

/// The targets linked into the binary.
const BUILT_IN: &[(&str, BuildFn)] = &[
    (exporter_postback::TYPE, exporter_postback::build),
    (exporter_csv::TYPE, exporter_csv::build),
    (exporter_ftp::TYPE, exporter_ftp::build),
];

/// Where an export type comes from, and how to build it.
#[derive(Clone, Copy)]
pub enum Target {
    /// Linked into the binary.
    BuiltIn(BuildFn),
    /// Provided by a plugin library.
    Plugin(&'static PluginLibrary),
}

impl Target {
    /// Checks a profile's target keys and builds its exporter.
    pub fn build(
        &self,
        profile: &str,
        settings: &Map<String, Value>,
    ) -> Result<Box<dyn Exporter>, SettingsError> {
        match self {
            Target::BuiltIn(build) => build(profile, settings),
            Target::Plugin(library) => {
                let exporter = PluginExporter::build(library, profile, settings)?;
                Ok(Box::new(exporter))
            }
        }
    }
}

/// The export types of one config.
#[derive(Default)]
pub struct Targets {
    /// The plugins folder, when the config names one.
    pub plugins_dir: Option<PathBuf>,
    /// The plugins that loaded, in file name order.
    pub plugins: Vec<&'static PluginLibrary>,
    /// The libraries of the folder that were refused, and why.
    pub refused: Vec<Refusal>,
}

impl Targets {
    /// The built-in targets and the plugins in `dir`. Fails only when the folder cannot be
    /// read; a library that cannot be used is in [`Targets::refused`].
    pub fn with_plugins(dir: &Path) -> io::Result<Targets> {
        let folder = plugins::load_folder(dir)?;
        let mut targets = Targets {
            plugins_dir: Some(dir.to_owned()),
            plugins: Vec::new(),
            refused: folder.refused,
        };
        for library in folder.loaded {
            match targets.conflict(&library.name) {
                Some(error) => targets.refused.push(Refusal {
                    path: library.path.clone(),
                    error,
                }),
                None => targets.plugins.push(library),
            }
        }
        Ok(targets)
    }

    /// Why a plugin of type `name` cannot be added, if it cannot.
    fn conflict(&self, name: &str) -> Option<LoadError> {
        if BUILT_IN.iter().any(|(built_in, _)| *built_in == name) {
            return Some(LoadError::BuiltIn { name: name.into() });
        }
        let other = self.plugins.iter().find(|p| p.name == name)?;
        Some(LoadError::Duplicate {
            name: name.into(),
            other: other.path.clone(),
        })
    }

    /// The target of an export type.
    pub fn find(&self, name: &str) -> Option<Target> {
        let built_in = BUILT_IN.iter().find(|(n, _)| *n == name);
        if let Some((_, build)) = built_in {
            return Some(Target::BuiltIn(*build));
        }
        let plugin = self.plugins.iter().find(|p| p.name == name);
        plugin.map(|library| Target::Plugin(library))
    }

    /// Every export type of the config: built in first, then the plugins.
    pub fn names(&self) -> Vec<&str> {
        let plugins = self.plugins.iter().map(|p| p.name.as_str());
        built_in_names().chain(plugins).collect()
    }
}

/// The types linked into the binary.
pub fn built_in_names() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().map(|(name, _)| *name)
}
