//! The config file: where the store is, which orders are test orders, and the export profiles.
//!
//! Loading validates everything without I/O and reports every problem at once, each naming the
//! file, line, profile and key. Host keys (name, type, delay, routes, mappings, retry) are read
//! here; every other key of a profile belongs to its target, which validates them itself.
//! `env:NAME` in a mapping value or a target setting is resolved here, at start, and the value
//! is remembered as a secret so it is masked wherever text is shown.

mod locate;
mod plugins_dir;
mod profile;
#[cfg(test)]
mod properties;
mod server;

use std::fmt;
use std::path::{Path, PathBuf};

use exporter_core::Redactor;
use serde_json::{Map, Value};

use crate::targets::Targets;

pub use profile::Profile;
pub use server::ServerConfig;

/// A loaded and validated config.
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Where deliveries are kept.
    pub store: StoreLocation,
    /// Card last-4 digits whose orders are test orders, besides `cardType` TESTCARD.
    pub test_cards: Vec<String>,
    /// Export profiles, in file order.
    pub profiles: Vec<Profile>,
    /// The ingest API of `exporter serve`.
    pub server: ServerConfig,
    /// Every secret the config resolved, for masking text shown to people.
    pub redactor: Redactor,
    /// The export types profiles can name: built in, and from `plugins_dir`.
    pub targets: Targets,
}

/// Where the durable queue lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file, worked by one process.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several nodes: its connection URL.
    Postgres(String),
}

impl StoreLocation {
    /// Reads `sqlite://PATH` (or `sqlite:PATH`) and `postgres://...` (or `postgresql://`).
    pub fn parse(text: &str) -> Result<StoreLocation, String> {
        let text = text.trim();
        if let Some(path) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err("`store` names no file: write \"sqlite://PATH\"".to_owned());
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            let authority = text.split("://").nth(1).unwrap_or_default();
            let authority = authority.split(['/', '?']).next().unwrap_or_default();
            if authority.matches('@').count() > 1 {
                return Err(
                    "`store`: a PostgreSQL URL with `@` in its user or password must \
                     write it as %40"
                        .to_owned(),
                );
            }
            // The client parses the rest; check it here so a typo is reported at load time.
            return match text.parse::<postgres::Config>() {
                Ok(_) => Ok(StoreLocation::Postgres(text.to_owned())),
                Err(error) => Err(format!(
                    "`store` is not a valid PostgreSQL URL ({}): {error}",
                    crate::store::masked_url(text)
                )),
            };
        }
        Err(
            "`store` must be \"sqlite://PATH\" (relative to the working directory) or \
             \"postgres://USER@HOST/DATABASE\""
                .to_owned(),
        )
    }

    /// The store as shown to people: the password of a URL is masked.
    pub fn display(&self) -> String {
        match self {
            StoreLocation::Sqlite(path) => format!("sqlite://{}", path.display()),
            StoreLocation::Postgres(url) => crate::store::masked_url(url),
        }
    }
}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::single(path, None, None, format!("cannot read the file: {error}"))
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let mut loader = Loader {
            path,
            text,
            problems: Vec::new(),
            redactor: Redactor::default(),
            targets: Targets::default(),
        };
        let config = loader.config();
        if !config.targets.plugins.is_empty() {
            crate::plugins::mask_in_logs(&config.redactor);
        }
        if loader.problems.is_empty() {
            Ok(config)
        } else {
            // A target may quote a setting in its message; the setting may be a secret.
            let mut problems = loader.problems;
            problems.sort_by_key(|problem| problem.line.unwrap_or(0));
            for problem in &mut problems {
                problem.message = config.redactor.redact(&problem.message).into_owned();
            }
            Err(ConfigError {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The profile with this name, ignoring case as profile names are unique that way.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name.trim()))
    }
}

/// What the operator commands need from a config: the store and the profile names. Read
/// without building targets or resolving `env:` secrets, so `exporter status` works on a
/// machine that does not hold the targets' passwords.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub store: StoreLocation,
    pub profiles: Vec<String>,
}

impl StoreConfig {
    /// Reads the store location and profile names of the config at `path`.
    pub fn load(path: &Path) -> Result<StoreConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::single(path, None, None, format!("cannot read the file: {error}"))
        })?;
        let table = text.parse::<toml::Table>().map_err(|error| {
            let line = error.span().map(|span| line_at(&text, span.start));
            let message = format!("not valid TOML: {}", error.message().trim());
            ConfigError::single(path, line, None, message)
        })?;
        let store = match table.get("store").and_then(toml::Value::as_str) {
            None => StoreLocation::Sqlite(PathBuf::from("exporter.db")),
            Some(store) => {
                let fail = |message| ConfigError::single(path, None, None, message);
                let store = match store.trim().strip_prefix("env:") {
                    None => store.to_owned(),
                    Some(name) => match std::env::var(name.trim()) {
                        Ok(value) if !value.is_empty() => value,
                        _ => {
                            let name = name.trim();
                            return Err(fail(format!("environment variable {name} is not set")));
                        }
                    },
                };
                StoreLocation::parse(&store).map_err(fail)?
            }
        };
        let profiles = table
            .get("profile")
            .and_then(toml::Value::as_array)
            .map(|profiles| {
                let names = profiles.iter().filter_map(|p| p.get("name")?.as_str());
                names.map(|name| name.trim().to_owned()).collect()
            })
            .unwrap_or_default();
        Ok(StoreConfig { store, profiles })
    }
}

/// Everything wrong with a config file.
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

/// One thing wrong with a config file.
#[derive(Debug)]
pub struct Problem {
    pub line: Option<usize>,
    pub profile: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn single(path: &Path, line: Option<usize>, profile: Option<String>, message: String) -> Self {
        let problems = vec![Problem {
            line,
            profile,
            message,
        }];
        ConfigError {
            path: path.to_owned(),
            problems,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let plural = if count == 1 { "problem" } else { "problems" };
        write!(f, "{count} {plural} in config {}:", self.path.display())?;
        for problem in &self.problems {
            write!(f, "\n  {}", self.path.display())?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
            }
            if let Some(profile) = &problem.profile {
                write!(f, ": profile \"{profile}\"")?;
            }
            write!(f, ": {}", problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Keys allowed at the top of the file.
const TOP_KEYS: &[&str] = &["store", "test_cards", "server", "plugins_dir", "profile"];

/// Collects problems while reading one file.
struct Loader<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
    redactor: Redactor,
    targets: Targets,
}

impl Loader<'_> {
    fn config(&mut self) -> Config {
        let mut config = Config {
            path: self.path.to_owned(),
            store: StoreLocation::Sqlite(PathBuf::from("exporter.db")),
            test_cards: Vec::new(),
            profiles: Vec::new(),
            server: ServerConfig::default(),
            redactor: Redactor::default(),
            targets: Targets::default(),
        };
        let table = match self.text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(error) => {
                let line = error.span().map(|span| line_at(self.text, span.start));
                let message = error.message().trim().to_owned();
                self.problem(line, None, format!("not valid TOML: {message}"));
                return config;
            }
        };
        let top = toml_to_json(toml::Value::Table(table));
        let Value::Object(mut top) = top else {
            unreachable!("a table converts to an object")
        };
        for key in top.keys() {
            if !TOP_KEYS.contains(&key.as_str()) {
                let message = format!(
                    "unknown key `{key}`; expected one of: {}",
                    TOP_KEYS.join(", ")
                );
                self.problem_at(key, None, message);
            }
        }
        if let Some(store) = top.remove("store") {
            config.store = self.store(store);
        }
        if let Some(server) = top.remove("server") {
            config.server = self.server(server);
        }
        if let Some(cards) = top.remove("test_cards") {
            config.test_cards = self.test_cards(cards);
        }
        if let Some(dir) = top.remove("plugins_dir") {
            self.targets = self.plugins_dir(dir);
        }
        let profiles = match top.remove("profile") {
            Some(Value::Array(profiles)) => profiles,
            Some(_) => {
                self.problem_at(
                    "profile",
                    None,
                    "`profile` must be written as [[profile]] tables",
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        if profiles.is_empty() && self.problems.is_empty() {
            self.problem(
                None,
                None,
                "no [[profile]] defined; see the example config".into(),
            );
        }
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (index, profile) in profiles.into_iter().enumerate() {
            let name = profile.get("name").and_then(Value::as_str).map(str::trim);
            if let Some(name) = name.filter(|name| !name.is_empty()) {
                if let Some((_, first)) = seen.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                    self.duplicate_name(name, *first, index);
                    continue;
                }
                seen.push((name.to_owned(), index));
            }
            if let Some(profile) = self.profile(index, profile) {
                config.profiles.push(profile);
            }
        }
        config.redactor = std::mem::take(&mut self.redactor);
        config.targets = std::mem::take(&mut self.targets);
        config
    }

    fn duplicate_name(&mut self, name: &str, first: usize, index: usize) {
        let first_line =
            locate::line_of(self.text, &locate::parse_path(&format!("profile[{first}]")));
        let at = first_line
            .map(|line| format!(" (line {line})"))
            .unwrap_or_default();
        let message = format!(
            "another profile{at} already has this name; profile names must be unique, ignoring case"
        );
        let path = format!("profile[{index}].name");
        self.problem_at(&path, Some(name.to_owned()), message);
    }

    fn store(&mut self, store: Value) -> StoreLocation {
        let default = StoreLocation::Sqlite(PathBuf::from("exporter.db"));
        let Value::String(store) = store else {
            self.problem_at(
                "store",
                None,
                "`store` must be a string such as \"sqlite://exporter.db\"",
            );
            return default;
        };
        let store = match self.resolve_env(&store) {
            Ok(store) => store,
            Err(message) => {
                self.problem_at("store", None, message);
                return default;
            }
        };
        match StoreLocation::parse(&store) {
            Ok(location) => {
                // The password is a secret; the rest of the query (a schema, a timeout) is not.
                let url = match &location {
                    StoreLocation::Postgres(url) => url::Url::parse(url).ok(),
                    StoreLocation::Sqlite(_) => None,
                };
                if let Some(url) = url {
                    let in_query = url.query_pairs().filter(|(key, _)| key == "password");
                    let passwords = url.password().map(str::to_owned).into_iter();
                    for password in passwords.chain(in_query.map(|(_, value)| value.into_owned())) {
                        self.redactor.add(&password);
                    }
                }
                location
            }
            Err(message) => {
                self.problem_at("store", None, message);
                default
            }
        }
    }

    fn test_cards(&mut self, cards: Value) -> Vec<String> {
        let cards = match cards {
            Value::Array(cards) => cards,
            _ => {
                self.problem_at(
                    "test_cards",
                    None,
                    "`test_cards` must be a list such as [\"1111\"]",
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for card in cards {
            let text = match &card {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => format!("{n:0>4}"),
                _ => String::new(),
            };
            if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
                out.push(text);
            } else {
                let message =
                    format!("test card `{card}` must be the last 4 digits, like \"1111\"");
                self.problem_at("test_cards", None, message);
            }
        }
        out
    }

    /// Resolves `env:NAME` to the variable's value and remembers it as a secret.
    /// Masks a URL's password and query values wherever text is shown.
    fn add_url_secrets(&mut self, text: &str) {
        if let Ok(url) = url::Url::parse(text) {
            if let Some(password) = url.password() {
                self.redactor.add(password);
            }
            for (_, query_value) in url.query_pairs() {
                self.redactor.add(&query_value);
            }
        }
    }

    fn resolve_env(&mut self, text: &str) -> Result<String, String> {
        let Some(name) = text.strip_prefix("env:") else {
            return Ok(text.to_owned());
        };
        let name = name.trim();
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => {
                self.redactor.add(&value);
                // A secret URL's password and query values are secrets on their own too.
                self.add_url_secrets(&value);
                Ok(value)
            }
            Ok(_) => Err(format!("environment variable {name} is empty")),
            Err(_) => Err(format!("environment variable {name} is not set")),
        }
    }

    /// Resolves `env:` in every string of a target's settings.
    fn resolve_settings(
        &mut self,
        settings: &mut Map<String, Value>,
    ) -> Result<(), (String, String)> {
        fn walk(
            loader: &mut Loader<'_>,
            value: &mut Value,
            path: String,
        ) -> Result<(), (String, String)> {
            match value {
                Value::String(s) => {
                    *s = loader.resolve_env(s).map_err(|message| (path, message))?;
                }
                Value::Array(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        walk(loader, item, format!("{path}[{i}]"))?;
                    }
                }
                Value::Object(map) => {
                    for (key, item) in map.iter_mut() {
                        walk(loader, item, format!("{path}.{key}"))?;
                    }
                }
                _ => {}
            }
            Ok(())
        }
        for (key, value) in settings.iter_mut() {
            walk(self, value, key.clone())?;
        }
        Ok(())
    }

    fn problem(&mut self, line: Option<usize>, profile: Option<String>, message: String) {
        self.problems.push(Problem {
            line,
            profile,
            message,
        });
    }

    /// Records a problem at the key path (`profile[2].routes[0].triggers`).
    fn problem_at(&mut self, path: &str, profile: Option<String>, message: impl Into<String>) {
        let line = locate::line_of(self.text, &locate::parse_path(path));
        self.problem(line, profile, message.into());
    }
}

/// The 1-based line of a byte offset.
/// An offset at the very end of a file that ends in a newline is on the last line.
fn line_at(text: &str, offset: usize) -> usize {
    let line = text[..offset.min(text.len())].matches('\n').count() + 1;
    line.min(text.lines().count().max(1))
}

/// Converts TOML to JSON, the form targets and the store take. Datetimes become text.
pub fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(store: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "store = \"{store}\"\n[[profile]]\nname = \"p\"\ntype = \"csv\"\ndir = \"out\"\n\
             routes = [ {{ triggers = [\"New Sale\"] }} ]\n\
             mappings = [ {{ name = \"order\", field = \"orderId\" }} ]\n"
        );
        Config::parse(Path::new("exporter.toml"), &text)
    }

    #[test]
    fn a_postgres_store_keeps_its_password_out_of_sight() {
        let config = load("postgres://exporter:s3cret-pw@127.0.0.1:5432/test").unwrap();
        assert_eq!(
            config.store,
            StoreLocation::Postgres("postgres://exporter:s3cret-pw@127.0.0.1:5432/test".into())
        );
        let shown = config.store.display();
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("127.0.0.1:5432/test"), "{shown}");
        let masked = config.redactor.redact("FATAL: password s3cret-pw is wrong");
        assert!(!masked.contains("s3cret-pw"), "{masked}");

        let config = load("postgresql://exporter@127.0.0.1/test?password=qu3ry-pw").unwrap();
        assert!(!config.store.display().contains("qu3ry-pw"));
        assert!(!config.redactor.redact("qu3ry-pw").contains("qu3ry-pw"));
    }

    #[test]
    fn a_schema_in_the_url_is_not_taken_for_a_secret() {
        let config = load("postgres://u@127.0.0.1/test?options=-csearch_path%3Dpublic").unwrap();
        assert_eq!(config.redactor.redact("public"), "public");
    }

    #[test]
    fn a_store_that_is_neither_sqlite_nor_postgres_is_refused_by_name() {
        for (store, expected) in [
            ("mysql://127.0.0.1/db", "must be \"sqlite://PATH\""),
            ("sqlite://", "names no file"),
            (
                "postgres://u:pw@127.0.0.1:notaport/db",
                "not a valid PostgreSQL URL",
            ),
            ("postgres://u:p@w@127.0.0.1/db", "write it as %40"),
        ] {
            let error = load(store).err().expect(store).to_string();
            assert!(error.contains(expected), "{store}: {error}");
            assert!(!error.contains(":pw@"), "{store}: {error}");
        }
    }
}
