//! The `[server]` table: where `exporter serve` listens and who may post events.

use std::net::SocketAddr;

use exporter_core::parse_settings;
use serde::Deserialize;
use serde_json::Value;

use super::Loader;

/// Settings of the ingest API.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Bearer tokens that may post events; empty means no authentication, allowed only on a
    /// loopback address.
    pub tokens: Vec<String>,
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// The most events one request may carry.
    pub max_batch_events: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Vec::new(),
            max_body_bytes: 16 * 1024 * 1024,
            max_batch_events: 10_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerKeys {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
    #[serde(default)]
    max_batch_events: Option<usize>,
}

impl Loader<'_> {
    /// Reads `[server]`; records problems and falls back to the defaults.
    pub(super) fn server(&mut self, value: Value) -> ServerConfig {
        let mut server = ServerConfig::default();
        let Value::Object(table) = value else {
            self.problem_at("server", None, "`server` must be a table: [server]");
            return server;
        };
        let keys = match parse_settings::<ServerKeys>(&table) {
            Ok(keys) => keys,
            Err(error) => {
                self.problem_at(
                    &format!("server.{}", error.key()),
                    None,
                    format!("server: {error}"),
                );
                return server;
            }
        };
        if let Some(listen) = keys.listen {
            match listen.parse() {
                Ok(addr) => server.listen = addr,
                Err(_) => {
                    let message = format!(
                        "server.listen `{listen}` must be an address and port such as \"127.0.0.1:8080\""
                    );
                    self.problem_at("server.listen", None, message);
                }
            }
        }
        for (index, token) in keys.tokens.iter().enumerate() {
            match self.resolve_env(token) {
                Ok(token) if token.len() >= 16 => {
                    self.redactor.add(&token);
                    server.tokens.push(token);
                }
                Ok(_) => {
                    let message = "server.tokens: a token must be at least 16 characters";
                    self.problem_at(&format!("server.tokens[{index}]"), None, message);
                }
                Err(message) => {
                    self.problem_at("server.tokens", None, format!("server.tokens: {message}"))
                }
            }
        }
        if let Some(bytes) = keys.max_body_bytes {
            server.max_body_bytes = bytes.max(1);
        }
        if let Some(events) = keys.max_batch_events {
            server.max_batch_events = events.max(1);
        }
        server
    }
}
