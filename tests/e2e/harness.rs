//! Running the `exporter` binary in a scratch folder and reading what it did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch working directory with a config file in it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A new folder holding `exporter.toml` with `config` as its text.
    pub fn new(config: &str) -> Scratch {
        let dir = tempfile::tempdir().expect("scratch dir");
        std::fs::write(dir.path().join("exporter.toml"), config).expect("write config");
        Scratch { dir }
    }

    /// A path inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file inside the folder.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// A command running the exporter in this folder with `args`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_exporter"));
        command.args(args).current_dir(self.dir.path()).env_remove("RUST_LOG");
        command
    }

    /// Runs the exporter to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run exporter")
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The CRM's 5,000-event export, kept beside the repository in `../shared/data` (never copied
/// into it). Where that folder is absent, the 400-event sample bundled under `examples/` (the
/// first 400 lines of the same file) stands in, and the test says so.
pub fn orders_file() -> PathBuf {
    let shared = repo_root().join("../shared/data/orders.jsonl");
    if shared.exists() {
        return shared;
    }
    eprintln!("../shared/data/orders.jsonl not found; using examples/orders-sample.jsonl");
    repo_root().join("examples/orders-sample.jsonl")
}

/// Stdout and stderr as text, for assertions and failure messages.
pub fn text(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (stdout, stderr)
}
