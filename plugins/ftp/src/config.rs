//! Settings of the `ftp` target, as an operator writes them under a profile's target keys.
//!
//! The file layout keys (`file_name`, `delimiter`, `bom`, `excel`, `flush_interval_minutes`)
//! mean exactly what they mean for the `csv` target and are checked by its code, so both
//! targets accept and refuse the same values with the same messages.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use exporter_core::{SettingsError, parse_settings_partial};
use exporter_csv::{CsvConfig, CsvFormat, FileNameTemplate};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The keys the `csv` target's code reads for the ftp target too.
const CSV_KEYS: [&str; 5] = [
    "file_name",
    "delimiter",
    "bom",
    "excel",
    "flush_interval_minutes",
];

/// The longest `timeout_secs` accepted: an hour. Longer is a typo, and would hold a batch's
/// lease far past any sensible answer.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// The checked settings of an `ftp` profile: where to log in, where to put files, and how
/// files look.
///
/// ```toml
/// host = "ftp.example.com"
/// port = 21
/// username = "orders"
/// password = "env:FTP_PASSWORD"
/// remote_dir = "/incoming"
/// file_name = "orders_{profile}_{timestamp}_{seq}.csv"
/// tls = "explicit"
/// flush_interval_minutes = 15
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct FtpConfig {
    /// The server's host name or IP address, without scheme or port.
    pub host: String,
    /// The control connection's port.
    pub port: u16,
    /// The account the files are uploaded with.
    pub username: String,
    /// The account's password; shown as `***` wherever it is printed.
    pub password: Password,
    /// The folder the files go in; `None` uploads to the folder the login lands in.
    pub remote_dir: Option<String>,
    /// Plain FTP or FTPS with `AUTH TLS`.
    pub tls: TlsMode,
    /// Passive data connections (the client connects to the server) instead of active ones.
    pub passive: bool,
    /// A PEM file of CA certificates trusted besides the system's, for servers whose
    /// certificate a private CA issued.
    pub ca_file: Option<PathBuf>,
    /// The longest wait for the server: for connecting, for each answer, and for each part of
    /// an upload to be taken.
    pub timeout: Duration,
    /// The name of each file; always holds `{seq}`, see [`crate::FtpExporter`].
    pub file_name: FileNameTemplate,
    /// How the CSV bytes are laid out.
    pub format: CsvFormat,
    /// How long records are gathered before they are uploaded as one file.
    pub flush_interval: Duration,
}

/// Whether and how the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain FTP: the password and the files cross the network readable.
    #[default]
    None,
    /// Explicit FTPS: connect to the FTP port, then `AUTH TLS` before logging in; the
    /// control and every data connection are encrypted and the server's certificate checked.
    Explicit,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "none",
            TlsMode::Explicit => "explicit",
        })
    }
}

/// A password that never shows in `Debug` or `Display` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself, for the `PASS` command only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The ftp target's own keys, as written; the CSV layout keys are read by the `csv` target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FtpKeys {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    username: String,
    password: String,
    #[serde(default)]
    remote_dir: Option<String>,
    #[serde(default, deserialize_with = "tls_mode")]
    tls: TlsMode,
    #[serde(default = "yes")]
    passive: bool,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    timeout_secs: f64,
}

fn default_port() -> u16 {
    21
}

fn yes() -> bool {
    true
}

fn default_timeout_secs() -> f64 {
    30.0
}

impl FtpConfig {
    /// Parses and checks a profile's target keys, reporting every problem at once; does no
    /// I/O.
    pub fn parse(settings: &Map<String, Value>) -> Result<Self, SettingsError> {
        let (csv, own): (Map<_, _>, Map<_, _>) = settings
            .clone()
            .into_iter()
            .partition(|(key, _)| CSV_KEYS.contains(&key.as_str()));
        let (keys, unknown) = parse_settings_partial::<FtpKeys>(&own);
        let mut problems: Vec<SettingsError> = unknown.into_iter().map(with_csv_keys).collect();
        let layout = note(csv_layout(csv), &mut problems);
        let file_name = layout
            .as_ref()
            .and_then(|layout| note(check_seq(layout.file_name.clone()), &mut problems));
        let Some(keys) = keys else {
            return Err(SettingsError::from_all(problems).expect("a problem was found"));
        };
        let checked = (
            note(check_host(keys.host), &mut problems),
            note(check_port(keys.port), &mut problems),
            note(check_line("username", keys.username), &mut problems),
            note(check_password(keys.password), &mut problems),
            note(check_remote_dir(keys.remote_dir), &mut problems),
            note(check_timeout(keys.timeout_secs), &mut problems),
        );
        if keys.ca_file.is_some() && keys.tls == TlsMode::None {
            let message = "only applies with `tls = \"explicit\"`; remove it or turn TLS on";
            problems.push(SettingsError::invalid("ca_file", message));
        }
        match (checked, layout, file_name) {
            (
                (Some(host), Some(port), Some(username), Some(password), Some(dir), Some(timeout)),
                Some(layout),
                Some(file_name),
            ) if problems.is_empty() => Ok(FtpConfig {
                host,
                port,
                username,
                password: Password(password),
                remote_dir: dir,
                tls: keys.tls,
                passive: keys.passive,
                ca_file: keys.ca_file,
                timeout,
                file_name,
                format: layout.format(),
                flush_interval: layout.flush_interval(),
            }),
            _ => Err(SettingsError::from_all(problems).expect("a check failed")),
        }
    }

    /// `host:port`, as logs and messages name the server.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The value of a check, or `None` with its problem noted.
fn note<T>(checked: Result<T, SettingsError>, problems: &mut Vec<SettingsError>) -> Option<T> {
    checked
        .map_err(|error| problems.extend(error.into_list()))
        .ok()
}

/// An unknown key's message lists the CSV layout keys too, as they are valid here.
fn with_csv_keys(error: SettingsError) -> SettingsError {
    match error {
        SettingsError::UnknownKey { key, mut expected } => {
            expected.extend(CSV_KEYS.iter().map(|k| (*k).to_owned()));
            expected.sort();
            SettingsError::UnknownKey { key, expected }
        }
        other => other,
    }
}

/// Reads the CSV layout keys with the `csv` target's own checks. Its `dir` has no meaning
/// here: the folder is `remote_dir`.
fn csv_layout(mut csv: Map<String, Value>) -> Result<CsvConfig, SettingsError> {
    csv.insert("dir".to_owned(), Value::String(".".to_owned()));
    CsvConfig::parse(&csv).map_err(|error| {
        let errors = error.into_list().into_iter().map(|error| match error {
            SettingsError::Invalid { key, message } => {
                let message = message.replace("in `dir`", "in `remote_dir`");
                SettingsError::Invalid { key, message }
            }
            other => other,
        });
        SettingsError::from_all(errors.collect()).expect("the csv target named a problem")
    })
}

fn tls_mode<'de, D: Deserializer<'de>>(d: D) -> Result<TlsMode, D::Error> {
    let text = String::deserialize(d)?;
    match text.as_str() {
        "none" => Ok(TlsMode::None),
        "explicit" => Ok(TlsMode::Explicit),
        "implicit" => Err(serde::de::Error::custom(
            "implicit FTPS (port 990) is not supported; most servers offer explicit FTPS on \
             port 21: `tls = \"explicit\"`",
        )),
        _ => Err(serde::de::Error::custom(format!(
            "must be \"none\" or \"explicit\" (AUTH TLS); found {text:?}"
        ))),
    }
}

fn check_host(host: String) -> Result<String, SettingsError> {
    let host = host.trim();
    let problem = if host.is_empty() {
        "must name the server, such as \"ftp.example.com\""
    } else if host.contains("://") {
        "is a host name only, such as \"ftp.example.com\", without `ftp://`"
    } else if host.contains(['/', '@']) || host.contains(char::is_whitespace) {
        "is a host name or IP address only, such as \"ftp.example.com\"; the folder goes in \
         `remote_dir` and the account in `username`"
    } else {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return Ok(host.to_owned());
    };
    Err(SettingsError::invalid(
        "host",
        format!("{problem}; found {host:?}"),
    ))
}

fn check_port(port: u16) -> Result<u16, SettingsError> {
    if port == 0 {
        let message = "must be from 1 to 65535, such as 21";
        return Err(SettingsError::invalid("port", message));
    }
    Ok(port)
}

/// A value sent on the control connection must be one line of printable text.
fn check_line(key: &str, value: String) -> Result<String, SettingsError> {
    if value.is_empty() {
        return Err(SettingsError::invalid(key, "must not be empty"));
    }
    if value.contains(char::is_control) {
        let message = format!("must not hold line breaks or other control characters: {value:?}");
        return Err(SettingsError::invalid(key, message));
    }
    Ok(value)
}

/// Like [`check_line`], without ever echoing the value.
fn check_password(password: String) -> Result<String, SettingsError> {
    if password.contains(char::is_control) {
        let message = "must not hold line breaks or other control characters";
        return Err(SettingsError::invalid("password", message));
    }
    Ok(password)
}

fn check_remote_dir(dir: Option<String>) -> Result<Option<String>, SettingsError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    if dir.trim().is_empty() {
        let message = "must name a folder, such as \"/incoming\"; leave it out to upload to \
                       the folder the login lands in";
        return Err(SettingsError::invalid("remote_dir", message));
    }
    check_line("remote_dir", dir).map(Some)
}

fn check_timeout(secs: f64) -> Result<Duration, SettingsError> {
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        let message = format!(
            "must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds, found {secs}; for \
             example `timeout_secs = 30`"
        );
        return Err(SettingsError::invalid("timeout_secs", message));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A retried batch must land under the name its first attempt used, and two batches of the
/// same second under different names: `{seq}` (derived from the batch) gives both.
fn check_seq(template: FileNameTemplate) -> Result<FileNameTemplate, SettingsError> {
    if !template.has_seq() {
        let message = format!(
            "`{template}` has no `{{seq}}`; the ftp target needs it to give every batch its own \
             name and a retried batch the same one, for example \
             \"orders_{{profile}}_{{timestamp}}_{{seq}}.csv\""
        );
        return Err(SettingsError::invalid("file_name", message));
    }
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<FtpConfig, SettingsError> {
        FtpConfig::parse(value.as_object().unwrap())
    }

    fn minimal() -> Value {
        json!({"host": "ftp.example.com", "username": "orders", "password": "pw-secret"})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut settings = minimal();
        settings[key] = value;
        settings
    }

    #[test]
    fn fills_in_defaults() {
        let config = parse(minimal()).unwrap();
        assert_eq!(config.server(), "ftp.example.com:21");
        assert_eq!(config.remote_dir, None);
        assert_eq!(config.tls, TlsMode::None);
        assert!(config.passive);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert_eq!(config.file_name.as_str(), FileNameTemplate::DEFAULT);
        assert_eq!(config.format, CsvFormat::default());
        assert_eq!(config.flush_interval, Duration::from_secs(15 * 60));
    }

    #[test]
    fn reads_every_key() {
        let config = parse(json!({
            "host": "10.0.0.5", "port": 2121, "username": "u", "password": "p",
            "remote_dir": "/in box", "file_name": "o_{seq}.txt", "tls": "explicit",
            "passive": false, "ca_file": "ca.pem", "timeout_secs": 2.5,
            "delimiter": ";", "bom": true, "excel": false, "flush_interval_minutes": 1,
        }))
        .unwrap();
        assert_eq!(config.server(), "10.0.0.5:2121");
        assert_eq!(config.remote_dir.as_deref(), Some("/in box"));
        assert_eq!(config.file_name.as_str(), "o_{seq}.txt");
        assert_eq!(config.tls, TlsMode::Explicit);
        assert!(!config.passive);
        assert_eq!(config.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.format.delimiter, b';');
        assert!(config.format.bom);
        assert_eq!(config.flush_interval, Duration::from_secs(60));
    }

    #[test]
    fn excel_means_what_it_means_for_csv() {
        let config = parse(with("excel", json!(true))).unwrap();
        assert_eq!(config.format, CsvFormat::excel(b','));
    }

    #[test]
    fn never_shows_the_password() {
        let config = parse(minimal()).unwrap();
        assert_eq!(config.password.expose(), "pw-secret");
        let shown = format!("{config:?} {}", config.password);
        assert!(!shown.contains("pw-secret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");

        let error = parse(with("password", json!("pw-secret\r\nDELE x"))).unwrap_err();
        assert_eq!(error.key(), "password");
        assert!(!error.to_string().contains("pw-secret"), "{error}");
    }

    #[test]
    fn names_an_unknown_key_and_lists_the_csv_keys_too() {
        let error = parse(with("remote_folder", json!("/in"))).unwrap_err();
        assert_eq!(error.key(), "remote_folder");
        let message = error.to_string();
        for key in [
            "remote_dir",
            "delimiter",
            "excel",
            "flush_interval_minutes",
            "ca_file",
        ] {
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    fn requires_host_username_and_password() {
        for key in ["host", "username", "password"] {
            let mut settings = minimal();
            settings.as_object_mut().unwrap().remove(key);
            let error = parse(settings).unwrap_err();
            assert_eq!(error, SettingsError::MissingKey { key: key.into() });
        }
    }

    #[test]
    fn refuses_a_host_that_is_a_url_or_path() {
        for bad in [
            "",
            "ftp://ftp.example.com",
            "ftp.example.com/in",
            "a b",
            "me@host",
        ] {
            let error = parse(with("host", json!(bad))).unwrap_err();
            assert_eq!(error.key(), "host", "{bad:?}");
        }
        let config = parse(with("host", json!("[::1]"))).unwrap();
        assert_eq!(config.server(), "[::1]:21");
    }

    #[test]
    fn refuses_bad_values_naming_the_key() {
        let cases = [
            ("port", json!(0)),
            ("port", json!(70000)),
            ("username", json!("")),
            ("username", json!("a\nb")),
            ("remote_dir", json!(" ")),
            ("tls", json!("ssl")),
            ("tls", json!("implicit")),
            ("passive", json!("yes")),
            ("timeout_secs", json!(0)),
            ("timeout_secs", json!(4000)),
            ("delimiter", json!(";;")),
            ("flush_interval_minutes", json!(0)),
        ];
        for (key, bad) in cases {
            let error = parse(with(key, bad.clone())).unwrap_err();
            assert_eq!(error.key(), key, "{key} = {bad}: {error}");
        }
    }

    #[test]
    fn reports_every_problem_at_once() {
        let mut settings = with("port", json!(0));
        settings["delimiter"] = json!(";;");
        settings["remote_folder"] = json!("/in");
        settings["timeout_secs"] = json!(-1);
        let errors = parse(settings).unwrap_err().into_list();
        let mut keys: Vec<&str> = errors.iter().map(SettingsError::key).collect();
        keys.sort();
        assert_eq!(keys, ["delimiter", "port", "remote_folder", "timeout_secs"]);
    }

    #[test]
    fn explains_that_implicit_ftps_is_not_supported() {
        let error = parse(with("tls", json!("implicit"))).unwrap_err();
        assert!(error.to_string().contains("tls = \"explicit\""), "{error}");
    }

    #[test]
    fn needs_seq_in_the_file_name() {
        let error = parse(with("file_name", json!("{profile}_{timestamp}.csv"))).unwrap_err();
        assert_eq!(error.key(), "file_name");
        assert!(error.to_string().contains("{seq}"), "{error}");
    }

    #[test]
    fn points_a_folder_in_the_file_name_at_remote_dir() {
        let error = parse(with("file_name", json!("in/{seq}.csv"))).unwrap_err();
        assert_eq!(error.key(), "file_name");
        assert!(error.to_string().contains("`remote_dir`"), "{error}");
    }

    #[test]
    fn ca_file_needs_tls() {
        let error = parse(with("ca_file", json!("ca.pem"))).unwrap_err();
        assert_eq!(error.key(), "ca_file");
    }
}
