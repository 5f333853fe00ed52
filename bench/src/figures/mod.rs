//! The five measurements of issue 7, each with its baseline measured in the same run.

pub mod csv;
pub mod ingest;
pub mod latency;
pub mod memory;
pub mod postback;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::events::Events;

/// What every measurement shares.
pub struct Bench {
    pub exporter: PathBuf,
    /// A folder per measurement goes here; emptied at the start of each.
    pub out: PathBuf,
    pub events: Arc<Events>,
    /// Events per throughput run.
    pub count: usize,
    pub client: reqwest::Client,
    pub runtime: tokio::runtime::Runtime,
}

impl Bench {
    /// A fresh, empty folder for one measurement.
    pub fn dir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.out.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The first `count` events as a JSON lines file, written once per run.
    pub fn events_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.out.join(format!("events-{}.jsonl", self.count));
        if !path.exists() {
            self.events.write(&path, self.count)?;
        }
        Ok(path)
    }

    /// Events of the first `count` that are sent: test orders never are.
    pub fn sendable(&self, count: usize) -> usize {
        count - self.events.test_orders(count)
    }
}

/// Seconds of a duration, for rates.
pub fn secs(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64()
}

/// Progress for the person watching.
pub fn say(text: &str) {
    eprintln!("[bench] {text}");
}

/// The pending deliveries of profile `leads`, from `exporter status --json`.
pub fn pending(exporter: &Path, dir: &Path) -> anyhow::Result<u64> {
    let output = std::process::Command::new(exporter)
        .args(["status", "--config", "exporter.toml", "--json"])
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(output.status.success(), "exporter status failed");
    let statuses: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let leads = statuses["profiles"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["profile"] == "leads");
    Ok(leads.and_then(|s| s["pending"].as_u64()).unwrap_or(0))
}
