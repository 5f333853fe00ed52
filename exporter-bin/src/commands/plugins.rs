//! `exporter plugins`: every export type the config can use, and where it comes from.

use std::path::Path;
use std::process::ExitCode;

use exporter_core::abi::{ABI_MAJOR, ABI_MINOR};

use super::{CONFIG_ERROR, table};
use crate::config::Config;
use crate::targets::{self, Targets};

/// Prints the built-in types, the loaded plugins and the refused libraries.
pub fn plugins(path: &Path) -> anyhow::Result<ExitCode> {
    let targets = match Config::load_targets(path) {
        Ok(targets) => targets,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(CONFIG_ERROR));
        }
    };
    print!("{}", listing(&targets));
    if targets.refused.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(CONFIG_ERROR))
    }
}

/// The table of types, then the folder and its refused libraries.
fn listing(targets: &Targets) -> String {
    let header = ["type", "source", "version", "abi"];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for name in targets::built_in_names() {
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let abi = format!("{ABI_MAJOR}.{ABI_MINOR}");
        rows.push(vec![name.to_owned(), "built in".to_owned(), version, abi]);
    }
    for plugin in &targets.plugins {
        let source = plugin.path.display().to_string();
        let row = [
            &plugin.name,
            &source,
            &plugin.version,
            &plugin.abi_version(),
        ];
        rows.push(row.map(String::clone).to_vec());
    }
    let mut text = table::render(&rows, &[]);
    match &targets.plugins_dir {
        Some(dir) => text.push_str(&format!("\nplugins folder: {}\n", dir.display())),
        None => text.push_str("\nno plugins_dir in the config: built-in types only\n"),
    }
    for refusal in &targets.refused {
        text.push_str(&format!("refused: {refusal}\n"));
    }
    text
}
