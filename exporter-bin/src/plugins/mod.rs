//! Targets loaded at run time: shared libraries in the config's `plugins_dir` that speak the
//! plugin ABI of [`exporter_core::abi`] (whose module docs state the ABI's own invariants).
//!
//! Invariants on this side:
//! - Libraries are loaded only from the configured folder: the files directly in it whose
//!   extension is the platform's (`.so`, `.dylib`, `.dll`), nothing else and nowhere else.
//! - A library is never unloaded, so nothing it handed out can dangle; a refused one stays
//!   loaded too, since its initializers have run, but nothing in it is called again.
//! - A refused library is reported with its path and what is wrong, and the rest of the config
//!   is still checked, so one run lists every problem.
//! - Plugin code runs on tokio's blocking pool, never on the async runtime's threads (at
//!   config load it runs on the main thread, before the runtime starts), at most
//!   [`exporter::CALL_SLOTS`] calls per profile at once, each with a deadline the host also
//!   enforces by no longer waiting.
//! - After a panic, the instance is dropped and a new one made for the next call; the batch's
//!   records are retried like any failed attempt.
//! - A plugin's log lines go into the host's tracing, with the plugin's type and the profile,
//!   and the config's secrets masked.

mod error;
mod exporter;
mod instance;
mod library;
mod log;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use error::{LoadError, Refusal};
pub use exporter::PluginExporter;
pub use library::{PluginLibrary, load};
pub use log::mask_in_logs;

/// What loading a plugins folder found, in file name order.
pub struct Folder {
    /// The libraries that can be used.
    pub loaded: Vec<&'static PluginLibrary>,
    /// The libraries that cannot, with the reason.
    pub refused: Vec<Refusal>,
}

/// Loads every library directly in `dir`. Fails only when the folder cannot be read.
pub fn load_folder(dir: &Path) -> io::Result<Folder> {
    let mut folder = Folder {
        loaded: Vec::new(),
        refused: Vec::new(),
    };
    for path in library_files(dir)? {
        match load(&path) {
            Ok(library) => folder.loaded.push(library),
            Err(error) => folder.refused.push(Refusal { path, error }),
        }
    }
    Ok(folder)
}

/// The files in `dir` with the platform's shared library extension, sorted by name.
fn library_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_library = path
            .extension()
            .is_some_and(|ext| ext == std::env::consts::DLL_EXTENSION);
        if is_library && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
