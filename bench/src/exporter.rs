//! The `exporter` binary under test: built in release mode, given a config per run, and run
//! as a subprocess, `run --once` or `serve`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// Every trigger the CRM defines, so a profile takes every event.
const ALL_TRIGGERS: &str = concat!(
    r#"["Partial", "New Sale", "Upsell", "Subscription Started", "Pre-Billing", "#,
    r#""Recurring Order", "Decline", "Rebill Decline", "Recycle Failed", "Cancel", "Pause", "#,
    r#""Reactivate", "Partial Refund", "Full Refund", "Chargeback", "Fulfillment Shipped", "#,
    r#""Fulfillment Delivered", "RMA Issued", "RMA Returned"]"#,
);

/// The fields of a call center's lead postback, as in `examples/exporter.toml`.
const LEAD_MAPPINGS: &str = r#"[
  { name = "order_id", field = "orderId" },
  { name = "first_name", field = "firstName" },
  { name = "last_name", field = "lastName" },
  { name = "full_name", value = "[firstName] [lastName]" },
  { name = "phone", field = "phoneNumber" },
  { name = "email", field = "emailAddress" },
  { name = "total", field = "totalAmount" },
  { name = "list_id", value = "400" },
]"#;

/// Builds the release binary (a no-op when it is up to date) and returns its path.
pub fn build(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("building the exporter: cargo build --release -p exporter-bin");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "exporter-bin"])
        .current_dir(root)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("cargo build --release -p exporter-bin failed");
    }
    Ok(root.join("target/release/exporter"))
}

/// A profile of the bench configs.
pub enum Target<'a> {
    /// Every event to this URL, `delay_minutes` after it arrived.
    Postback { url: &'a str, delay_minutes: u32 },
    /// Every event as a row of a CSV file in `exports/`.
    Csv,
}

/// Writes `exporter.toml` in `dir` (store `exporter.db` beside it) with one profile.
pub fn write_config(dir: &Path, target: Target<'_>) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let profile = match target {
        Target::Postback { url, delay_minutes } => format!(
            "name = \"leads\"\ntype = \"postback\"\nurl = \"{url}\"\n\
             delay_minutes = {delay_minutes}\nretry_initial_secs = 1\nretry_max_secs = 2\n"
        ),
        Target::Csv => "name = \"sheet\"\ntype = \"csv\"\ndir = \"exports\"\n".to_owned(),
    };
    let text = format!(
        "store = \"sqlite://exporter.db\"\n\n[[profile]]\n{profile}recheck = false\n\
         routes = [ {{ triggers = {ALL_TRIGGERS} }} ]\nmappings = {LEAD_MAPPINGS}\n"
    );
    let path = dir.join("exporter.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// How long an `exporter run --once` took, and when its import had committed.
pub struct RunTimes {
    pub total: Duration,
    pub import: Option<Duration>,
    pub stdout: String,
}

/// Runs `exporter run --once --input FILE` in `dir` and times it.
pub fn run_once(exporter: &Path, dir: &Path, input: &Path) -> anyhow::Result<RunTimes> {
    let started = Instant::now();
    let mut child = Command::new(exporter)
        .args(["run", "--config", "exporter.toml", "--once", "--input"])
        .arg(input)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting exporter run")?;
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let watcher = std::thread::spawn(move || {
        let mut import = None;
        let mut errors = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            if import.is_none() && line.contains("import committed") {
                import = Some(started.elapsed());
            }
            if line.contains("ERROR") && errors.len() < 5 {
                errors.push(line);
            }
        }
        (import, errors)
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let total = started.elapsed();
    let (import, errors) = watcher.join().expect("stderr watcher");
    if !status.success() {
        bail!("exporter run failed ({status}): {}", errors.join("\n"));
    }
    Ok(RunTimes {
        total,
        import,
        stdout,
    })
}

/// An `exporter serve` process; stopped with SIGTERM (then killed) when dropped.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
}

impl Serve {
    /// Starts `exporter serve` in `dir` on a free loopback port.
    pub fn start(exporter: &Path, dir: &Path) -> anyhow::Result<Serve> {
        let log = std::fs::File::create(dir.join("serve.log"))?;
        let mut child = Command::new(exporter)
            .args([
                "serve",
                "--config",
                "exporter.toml",
                "--listen",
                "127.0.0.1:0",
            ])
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting exporter serve")?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            bail!(
                "exporter serve did not start (see {}/serve.log)",
                dir.display()
            );
        };
        let addr = addr.parse()?;
        Ok(Serve { child, addr })
    }

    pub fn events_url(&self) -> String {
        format!("http://{}/v1/events", self.addr)
    }

    /// The process's memory: (VmRSS, VmHWM) in KiB.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        memory(self.child.id())
    }

    /// Asks the server to stop (SIGTERM) and waits up to `limit` for it.
    pub fn stop(mut self, limit: Duration) -> anyhow::Result<()> {
        signal_term(self.child.id())?;
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("exporter serve did not stop within {limit:?}")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn signal_term(pid: u32) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
    Ok(())
}

/// VmRSS and VmHWM of process `pid`, in KiB, from `/proc/PID/status`.
pub fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// The ledger of profile `leads`: (delivery id, due time in unix ms) of up to `limit`
/// deliveries, from `exporter deliveries --json`.
pub fn due_times(exporter: &Path, dir: &Path, limit: usize) -> anyhow::Result<Vec<(String, i64)>> {
    let output = Command::new(exporter)
        .args([
            "deliveries",
            "--config",
            "exporter.toml",
            "--profile",
            "leads",
            "--json",
        ])
        .args(["--limit", &limit.to_string()])
        .current_dir(dir)
        .output()?;
    anyhow::ensure!(output.status.success(), "exporter deliveries failed");
    let rows: Value = serde_json::from_slice(&output.stdout)?;
    let rows = rows
        .as_array()
        .context("exporter deliveries --json is not an array")?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            Some((
                row["delivery_id"].as_str()?.to_owned(),
                row["due_at"].as_i64()?,
            ))
        })
        .collect())
}
