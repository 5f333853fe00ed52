//! Running the `exporter` binary in a scratch folder and reading what it did.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG");
        command
    }

    /// Runs the exporter to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run exporter")
    }
}

/// A page of the CRM's order query API: the one kept in `../shared/data`, or, where that folder
/// is absent, a page made in `scratch` from the first 25 events of the bundled sample.
pub fn query_page_file(scratch: &Scratch) -> PathBuf {
    let shared = repo_root().join("../shared/data/orders-query-page.json");
    if shared.exists() {
        return shared;
    }
    eprintln!("../shared/data/orders-query-page.json not found; making a page from the sample");
    let sample = std::fs::read_to_string(repo_root().join("examples/orders-sample.jsonl"))
        .expect("bundled sample");
    let data: Vec<serde_json::Value> = sample
        .lines()
        .take(25)
        .map(|line| serde_json::from_str(line).expect("sample line"))
        .collect();
    let page = serde_json::json!({"result": "SUCCESS", "message": {"page": 1, "data": data}});
    scratch.write("orders-query-page.json", &page.to_string())
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

impl Scratch {
    /// Writes `events` as a JSON lines input file inside the folder.
    pub fn write_events(&self, name: &str, events: &[serde_json::Value]) -> PathBuf {
        let lines: Vec<String> = events.iter().map(|event| event.to_string()).collect();
        self.write(name, &(lines.join("\n") + "\n"))
    }

    /// Starts the exporter in this folder with `args`, without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Running {
        Running::start(self.command(args))
    }
}

/// An exporter process the test started. Dropping it kills the process if it still runs, so a
/// failing test leaves nothing behind.
pub struct Running {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Spawns `command` with its output collected in the background, so a chatty process never
    /// blocks on a full pipe.
    pub fn start(mut command: Command) -> Running {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("start exporter");
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {pid} failed");
    }

    /// Kills the process at once (SIGKILL), as a crash or an out-of-memory kill would, and
    /// waits for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill exporter");
        self.child.wait().expect("reap exporter");
    }

    /// Waits for the process to exit and returns its status and output.
    ///
    /// # Panics
    ///
    /// When it is still running after `timeout` (it is killed first).
    pub fn wait(mut self, timeout: Duration) -> Output {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll exporter") {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                let output = self.output(ExitStatus::default());
                let (stdout, stderr) = text(&output);
                panic!("exporter still running after {timeout:?}\n{stdout}\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.output(status)
    }

    fn output(&mut self, status: ExitStatus) -> Output {
        let join = |handle: Option<JoinHandle<Vec<u8>>>| {
            handle.map_or_else(Vec::new, |h| h.join().expect("output reader"))
        };
        Output {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// One profile's row of the table `run` prints at the end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SummaryRow {
    pub delivered: u64,
    pub duplicate: u64,
    pub superseded: u64,
    pub test_orders: u64,
    pub scheduled: u64,
    pub retrying: u64,
    pub failed: u64,
}

/// The summary row of `profile` in a run's stdout.
///
/// # Panics
///
/// When the table has no row for it.
pub fn summary_row(stdout: &str, profile: &str) -> SummaryRow {
    let row = stdout
        .lines()
        .filter_map(|line| line.strip_prefix(profile))
        .find(|rest| rest.starts_with("  "))
        .unwrap_or_else(|| panic!("no summary row for profile {profile:?} in:\n{stdout}"));
    let cells: Vec<u64> = row
        .split_whitespace()
        .skip(1)
        .map(|cell| cell.parse().expect("a count"))
        .collect();
    let [
        delivered,
        duplicate,
        superseded,
        test_orders,
        scheduled,
        retrying,
        failed,
    ] = cells[..]
    else {
        panic!("a summary row has 7 counts after the type: {row:?}");
    };
    SummaryRow {
        delivered,
        duplicate,
        superseded,
        test_orders,
        scheduled,
        retrying,
        failed,
    }
}

/// A time as the summary prints it: `2026-12-04 15:30:00 UTC`.
pub fn utc_text(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days as i64);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
}

/// The proleptic Gregorian date `days` after 1970-01-01, counted in 400-year eras that start
/// on March 1st so the leap day falls at the end of each year.
fn civil_date(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Inputs that are not text, stdin, and what the store holds.
impl Scratch {
    /// Writes raw bytes inside the folder, for inputs that are not valid UTF-8.
    pub fn write_bytes(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write file");
        path
    }

    /// Runs the exporter to completion with `stdin` piped to it.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        use std::process::Stdio;

        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start exporter");
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(stdin).expect("write stdin");
        drop(pipe);
        child.wait_with_output().expect("run exporter")
    }

    /// Every row of the default store (`exporter.db`): events, deliveries and attempts, one
    /// text line each, in id order. Comparing two of these shows whether a run changed
    /// anything stored. Empty when there is no store.
    pub fn store_rows(&self) -> Vec<String> {
        let path = self.path("exporter.db");
        if !path.exists() {
            return Vec::new();
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
        let conn = rusqlite::Connection::open_with_flags(&path, flags).expect("open the store");
        let mut rows = Vec::new();
        for table in ["events", "deliveries", "attempts"] {
            let sql = format!("SELECT * FROM {table} ORDER BY id");
            let mut statement = conn.prepare(&sql).expect("query the store");
            let columns = statement.column_count();
            let mut found = statement.query([]).expect("query the store");
            while let Some(row) = found.next().expect("read the store") {
                let cells: Vec<String> = (0..columns)
                    .map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect();
                rows.push(format!("{table}: {}", cells.join(" | ")));
            }
        }
        rows
    }

    /// How many deliveries of each (profile, state) the default store holds.
    pub fn delivery_states(&self) -> Vec<(String, String, i64)> {
        let path = self.path("exporter.db");
        let conn = rusqlite::Connection::open(&path).expect("open the store");
        let sql = "SELECT profile, state, count(*) FROM deliveries \
                   GROUP BY profile, state ORDER BY profile, state";
        let mut statement = conn.prepare(sql).expect("query the store");
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("query the store")
            .map(|row| row.expect("read the store"))
            .collect()
    }

    /// The names of the files directly inside `dir` (a folder of the scratch), sorted; empty
    /// when the folder does not exist.
    pub fn files_in(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.path(dir)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| entry.expect("list folder").file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The 1-based numbers of the lines of `text` that contain `needle`.
pub fn lines_with(text: &str, needle: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains(needle))
        .map(|(index, _)| index + 1)
        .collect()
}

/// The 1-based number of the only line of `text` that contains `needle`.
pub fn line_with(text: &str, needle: &str) -> usize {
    let lines = lines_with(text, needle);
    assert_eq!(
        lines.len(),
        1,
        "`{needle}` should be on exactly one line of:\n{text}"
    );
    lines[0]
}

/// A JSON object's members in the order they were written, which `serde_json::Map` forgets.
#[derive(Debug, Clone, PartialEq)]
pub struct Members(pub Vec<(String, serde_json::Value)>);

impl Members {
    /// Parses `text` as one JSON object.
    pub fn parse(text: &str) -> Members {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not a JSON object ({e}): {text}"))
    }
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> serde::de::Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}

impl Scratch {
    /// Starts `exporter serve` on a free loopback port with `token` in the environment
    /// variable `token_env`; returns the process and its base URL, read from its first line.
    pub fn serve(&self, token_env: &str, token: &str, stderr: Stdio) -> (Child, String) {
        let mut child = self
            .command(&[
                "serve",
                "--config",
                "exporter.toml",
                "--listen",
                "127.0.0.1:0",
            ])
            .env(token_env, token)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start serve");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect("address line");
        (child, base.to_owned())
    }
}
