//! `plugins_dir`: the folder whose shared libraries add export types. Like every path of the
//! config, it is relative to the working directory. Without it, no library is loaded.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Config, ConfigError, Loader};
use crate::targets::Targets;

impl Loader<'_> {
    /// Loads the plugins of the folder `value` names. A library that cannot be used is a
    /// problem at the `plugins_dir` line, naming the file and what is wrong with it.
    pub(super) fn plugins_dir(&mut self, value: Value) -> Targets {
        let targets = self.plugin_targets(value);
        for refusal in &targets.refused {
            self.problem_at("plugins_dir", None, refusal.to_string());
        }
        targets
    }

    /// The targets of the folder, refused libraries included; a problem only when the
    /// folder cannot be read.
    fn plugin_targets(&mut self, value: Value) -> Targets {
        let Value::String(dir) = value else {
            let message = "`plugins_dir` must be a folder such as \"plugins\"";
            self.problem_at("plugins_dir", None, message);
            return Targets::default();
        };
        let dir = PathBuf::from(dir);
        match Targets::with_plugins(&dir) {
            Ok(targets) => targets,
            Err(error) => {
                let message = format!("cannot read the plugins folder {}: {error}", dir.display());
                self.problem_at("plugins_dir", None, message);
                Targets::default()
            }
        }
    }
}

impl Config {
    /// The export types of the config file at `path`: the built-in ones and the libraries of
    /// its `plugins_dir`, refused ones included. Only `plugins_dir` is read, so this answers
    /// for a file whose profiles are invalid.
    pub fn load_targets(path: &Path) -> Result<Targets, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::single(path, None, None, format!("cannot read the file: {error}"))
        })?;
        let mut loader = Loader {
            path,
            text: &text,
            problems: Vec::new(),
            redactor: Default::default(),
            targets: Targets::default(),
        };
        let dir = match text.parse::<toml::Table>() {
            Ok(mut table) => table.remove("plugins_dir"),
            Err(error) => {
                let message = format!("not valid TOML: {}", error.message().trim());
                return Err(ConfigError::single(path, None, None, message));
            }
        };
        let targets = match dir {
            Some(dir) => loader.plugin_targets(super::toml_to_json(dir)),
            None => Targets::default(),
        };
        if loader.problems.is_empty() {
            Ok(targets)
        } else {
            Err(ConfigError {
                path: path.to_owned(),
                problems: loader.problems,
            })
        }
    }
}
