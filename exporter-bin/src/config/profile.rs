//! One `[[profile]]`: host keys (name, type, delay, routes, mappings, retry) read here, target
//! keys handed to the target named by `type`.

use std::sync::Arc;
use std::time::Duration;

use exporter_core::mapping::Part;
use exporter_core::{
    Exporter, Mapping, MappingSource, Route, SettingsError, Trigger, parse_settings, trigger,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Loader;
use crate::retry::RetryPolicy;
use crate::targets::Targets;

/// A validated export profile with its target built.
pub struct Profile {
    /// Unique name; deliveries in the store refer to it.
    pub name: String,
    /// The export type (`postback`, `csv`).
    pub target_type: String,
    /// How long after its event arrived a delivery becomes due.
    pub delay: Duration,
    /// An event goes to this profile when any route matches.
    pub routes: Vec<Route>,
    /// The export fields, in order.
    pub mappings: Vec<Mapping>,
    /// Check the routes again against the order's latest event when a delivery is due.
    pub recheck: bool,
    /// Backoff between attempts and the optional attempt limit.
    pub retry: RetryPolicy,
    /// The target that delivers this profile's records.
    pub exporter: Arc<dyn Exporter>,
}

/// The keys the host reads from a profile; every other key belongs to the target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileKeys {
    name: String,
    #[serde(rename = "type")]
    target_type: String,
    #[serde(default)]
    delay_minutes: f64,
    routes: Vec<Value>,
    mappings: Vec<Value>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default = "yes")]
    recheck: bool,
    #[serde(default)]
    retry_initial_secs: Option<f64>,
    #[serde(default)]
    retry_max_secs: Option<f64>,
}

const HOST_KEYS: &[&str] = &[
    "name",
    "type",
    "delay_minutes",
    "routes",
    "mappings",
    "max_attempts",
    "recheck",
    "retry_initial_secs",
    "retry_max_secs",
];

/// A host key's problem, with an example of a correct value.
fn host_key_problem(error: &SettingsError) -> At {
    let key = error.key();
    let example = match key {
        "name" => "a name, such as `name = \"Refunds sheet\"`",
        "type" => "an export type, such as `type = \"postback\"`",
        "delay_minutes" => "a number of minutes, such as `delay_minutes = 15`",
        "max_attempts" => "a whole number of attempts, such as `max_attempts = 10`",
        "recheck" => "true or false, such as `recheck = false`",
        "retry_initial_secs" => "a number of seconds, such as `retry_initial_secs = 30`",
        "retry_max_secs" => "a number of seconds, such as `retry_max_secs = 900`",
        "routes" => "a list of routes, such as `routes = [ { triggers = [\"New Sale\"] } ]`",
        "mappings" => {
            "a list of mappings, such as \
             `mappings = [ { name = \"order_id\", field = \"orderId\" } ]`"
        }
        _ => return At::new(key, error.to_string()),
    };
    At::new(key, format!("{error}; `{key}` is {example}"))
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteKeys {
    triggers: Vec<String>,
    #[serde(default)]
    campaigns: Vec<Value>,
    #[serde(default)]
    products: Vec<Value>,
    #[serde(default)]
    fields: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingKeys {
    name: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    default: Option<Value>,
}

/// Where in the file a profile problem is, and what it is.
struct At {
    path: String,
    message: String,
}

impl At {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        At {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl Loader<'_> {
    /// Validates the profile at `index`; records problems and returns `None` when it has any.
    pub(super) fn profile(&mut self, index: usize, table: Value) -> Option<Profile> {
        let prefix = format!("profile[{index}]");
        let Value::Object(table) = table else {
            self.problem_at(&prefix, None, "a profile must be a [[profile]] table");
            return None;
        };
        let name = table.get("name").and_then(Value::as_str).map(str::to_owned);
        let label = name.clone().or_else(|| Some(format!("#{}", index + 1)));
        let mut problems = Vec::new();
        let profile = self.build_profile(table, &mut problems);
        for At { path, message } in problems {
            let path = if path.is_empty() {
                prefix.clone()
            } else {
                format!("{prefix}.{path}")
            };
            self.problem_at(&path, label.clone(), message);
        }
        profile
    }

    fn build_profile(
        &mut self,
        table: Map<String, Value>,
        problems: &mut Vec<At>,
    ) -> Option<Profile> {
        let (host, mut settings): (Map<_, _>, Map<_, _>) = table
            .into_iter()
            .partition(|(key, _)| HOST_KEYS.contains(&key.as_str()));
        let keys = match parse_settings::<ProfileKeys>(&host) {
            Ok(keys) => keys,
            Err(error) => {
                problems.push(host_key_problem(&error));
                self.check_rest(&host, &mut settings, problems);
                return None;
            }
        };
        let name = keys.name.trim().to_owned();
        if name.is_empty() {
            problems.push(At::new("name", "`name` must not be empty"));
        }
        let routes = routes(&keys.routes, problems);
        let mappings = self.mappings(&keys.mappings, problems);
        let retry = retry_policy(&keys, problems);
        let delay = minutes(keys.delay_minutes, "delay_minutes", problems);
        let exporter = self.target(&name, &keys.target_type, &mut settings, problems);
        if !problems.is_empty() {
            return None;
        }
        Some(Profile {
            name,
            target_type: keys.target_type,
            delay: delay?,
            routes,
            mappings,
            recheck: keys.recheck,
            retry: retry?,
            exporter: exporter?,
        })
    }

    /// Resolves `env:` in the target keys and builds the target.
    fn target(
        &mut self,
        name: &str,
        target_type: &str,
        settings: &mut Map<String, Value>,
        problems: &mut Vec<At>,
    ) -> Option<Arc<dyn Exporter>> {
        match self.resolve_settings(settings) {
            Ok(()) => build_target(&self.targets, name, target_type, settings, problems),
            Err((path, message)) => {
                problems.push(At::new(path.clone(), format!("`{path}`: {message}")));
                None
            }
        }
    }

    /// Checks the routes, mappings and target of a profile whose host keys are wrong, so one
    /// run reports as many problems as it can.
    fn check_rest(
        &mut self,
        host: &Map<String, Value>,
        settings: &mut Map<String, Value>,
        problems: &mut Vec<At>,
    ) {
        if let Some(Value::Array(list)) = host.get("routes") {
            routes(list, problems);
        }
        if let Some(Value::Array(list)) = host.get("mappings") {
            self.mappings(list, problems);
        }
        let name = host.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some(Value::String(target_type)) = host.get("type") {
            self.target(name, target_type, settings, problems);
        }
    }

    fn mappings(&mut self, list: &[Value], problems: &mut Vec<At>) -> Vec<Mapping> {
        if list.is_empty() {
            problems.push(At::new(
                "mappings",
                "at least one mapping is needed, such as \
                { name = \"order_id\", field = \"orderId\" }",
            ));
        }
        let mut mappings = Vec::new();
        for (i, value) in list.iter().enumerate() {
            let path = format!("mappings[{i}]");
            match self.mapping(value) {
                Ok(mapping) => mappings.push(mapping),
                Err(At { path: key, message }) => {
                    let path = if key.is_empty() {
                        path
                    } else {
                        format!("{path}.{key}")
                    };
                    problems.push(At::new(path, format!("mappings[{i}]: {message}")));
                }
            }
        }
        mappings
    }

    fn mapping(&mut self, value: &Value) -> Result<Mapping, At> {
        let Value::Object(table) = value else {
            return Err(At::new(
                "",
                "a mapping is a table such as { name = \"x\", field = \"y\" }",
            ));
        };
        let keys =
            parse_settings::<MappingKeys>(table).map_err(|e| At::new(e.key(), e.to_string()))?;
        let name = keys.name.trim();
        if let Some(header) = name.strip_prefix("header:") {
            check_header_name(header)?;
        }
        let mapping = match (&keys.field, &keys.value) {
            (Some(field), None) => Mapping::field(name, field),
            (None, Some(value)) => {
                let text = scalar_text(value)
                    .ok_or_else(|| At::new("value", "`value` must be text or a number"))?;
                match text.strip_prefix("env:") {
                    Some(_) => {
                        let secret = self.resolve_env(&text).map_err(|m| At::new("value", m))?;
                        Mapping::secret(name, secret)
                    }
                    None => Mapping::template(name, &text),
                }
            }
            _ => {
                let message = format!("mapping `{name}` needs exactly one of `field` or `value`");
                return Err(At::new("", message));
            }
        };
        let mapping = mapping.map_err(|e| At::new("", e.to_string()))?;
        check_pseudo_header(&mapping)?;
        match &keys.default {
            None => Ok(mapping),
            Some(value) => match scalar_text(value) {
                Some(default) => Ok(mapping.with_default(default)),
                None => Err(At::new("default", "`default` must be text or a number")),
            },
        }
    }
}

fn routes(list: &[Value], problems: &mut Vec<At>) -> Vec<Route> {
    if list.is_empty() {
        problems.push(At::new(
            "routes",
            "at least one route is needed, such as \
            { triggers = [\"New Sale\"] }",
        ));
    }
    let mut routes = Vec::new();
    for (i, value) in list.iter().enumerate() {
        match route(value) {
            Ok(route) => routes.push(route),
            Err(At { path, message }) => {
                let full = if path.is_empty() {
                    format!("routes[{i}]")
                } else {
                    format!("routes[{i}].{path}")
                };
                problems.push(At::new(full, format!("routes[{i}]: {message}")));
            }
        }
    }
    routes
}

fn route(value: &Value) -> Result<Route, At> {
    let Value::Object(table) = value else {
        return Err(At::new(
            "",
            "a route is a table such as { triggers = [\"New Sale\"] }",
        ));
    };
    let keys = parse_settings::<RouteKeys>(table).map_err(|e| At::new(e.key(), e.to_string()))?;
    if keys.triggers.is_empty() {
        return Err(At::new(
            "triggers",
            "`triggers` must name at least one trigger",
        ));
    }
    let mut triggers = Vec::new();
    for name in &keys.triggers {
        let trigger = Trigger::new(name);
        if trigger.canonical().is_none() {
            let known = trigger::KNOWN.join(", ");
            return Err(At::new(
                "triggers",
                format!("unknown trigger `{name}`; known triggers: {known}"),
            ));
        }
        triggers.push(trigger);
    }
    let campaigns = texts(&keys.campaigns, "campaigns")?;
    let products = texts(&keys.products, "products")?;
    let mut conditions = Vec::new();
    for (path, allowed) in keys.fields {
        let allowed = match allowed {
            Value::Array(items) => texts(&items, &format!("fields.{path}"))?,
            one => texts(&[one], &format!("fields.{path}"))?,
        };
        conditions.push((path, allowed));
    }
    Ok(Route {
        triggers,
        campaigns,
        products,
        conditions,
    })
}

fn texts(values: &[Value], key: &str) -> Result<Vec<String>, At> {
    values
        .iter()
        .map(|v| {
            scalar_text(v)
                .ok_or_else(|| At::new(key, format!("`{key}` entries must be text or numbers")))
        })
        .collect()
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Headers the exporter sets itself: a mapping cannot replace them.
const RESERVED_HEADERS: &[(&str, &str)] = &[
    ("content-length", "it is computed from the body"),
    ("transfer-encoding", "it is set by the HTTP client"),
    ("connection", "it is set by the HTTP client"),
    ("host", "it comes from `url`"),
    (
        "idempotency-key",
        "it is the delivery's own id, the same on every attempt",
    ),
];

fn check_header_name(name: &str) -> Result<(), At> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        let message = format!("`header:{name}` is not a valid HTTP header name");
        return Err(At::new("name", message));
    }
    if let Some((_, why)) = RESERVED_HEADERS
        .iter()
        .find(|(h, _)| h.eq_ignore_ascii_case(name))
    {
        let message = format!("`header:{name}` cannot be mapped: {why}");
        return Err(At::new("name", message));
    }
    Ok(())
}

/// A static `header:httpMethod` or `header:httpMethodType` must name a value the postback
/// rules know; one built from order fields is checked when it is sent.
fn check_pseudo_header(mapping: &Mapping) -> Result<(), At> {
    let allowed: &[&str] = match mapping.name().to_ascii_lowercase().as_str() {
        "header:httpmethod" => &["GET", "POST", "PUT", "PATCH", "DELETE"],
        "header:httpmethodtype" => &["GET", "POST"],
        _ => return Ok(()),
    };
    let MappingSource::Template(parts) = mapping.source() else {
        return Ok(());
    };
    let literal: Option<String> = parts
        .iter()
        .map(|part| match part {
            Part::Literal(text) => Some(text.as_str()),
            Part::Field(_) => None,
        })
        .collect();
    match literal {
        Some(value) if !allowed.iter().any(|a| a.eq_ignore_ascii_case(value.trim())) => {
            let message = format!(
                "`{}` is \"{value}\"; expected one of {}",
                mapping.name(),
                allowed.join(", ")
            );
            Err(At::new("value", message))
        }
        _ => Ok(()),
    }
}

fn minutes(value: f64, key: &str, problems: &mut Vec<At>) -> Option<Duration> {
    if (0.0..=60.0 * 24.0 * 366.0).contains(&value) {
        return Some(Duration::from_secs_f64(value * 60.0));
    }
    problems.push(At::new(
        key,
        format!("`{key}` must be a number of minutes from 0 up to a year"),
    ));
    None
}

fn retry_policy(keys: &ProfileKeys, problems: &mut Vec<At>) -> Option<RetryPolicy> {
    let mut policy = RetryPolicy::default();
    if let Some(secs) = keys.retry_initial_secs {
        if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
            problems.push(At::new(
                "retry_initial_secs",
                "`retry_initial_secs` must be more than 0 and at most 86400",
            ));
            return None;
        }
        policy.initial = Duration::from_secs_f64(secs);
    }
    if let Some(secs) = keys.retry_max_secs {
        if !(secs.is_finite() && secs > 0.0 && secs <= 7.0 * 86_400.0) {
            problems.push(At::new(
                "retry_max_secs",
                "`retry_max_secs` must be more than 0 and at most 604800",
            ));
            return None;
        }
        policy.max = Duration::from_secs_f64(secs);
    }
    if policy.max < policy.initial {
        problems.push(At::new(
            "retry_max_secs",
            "`retry_max_secs` must not be less than `retry_initial_secs`",
        ));
        return None;
    }
    if keys.max_attempts == Some(0) {
        problems.push(At::new(
            "max_attempts",
            "`max_attempts` must be at least 1 (leave it out to retry forever)",
        ));
        return None;
    }
    policy.max_attempts = keys.max_attempts;
    Some(policy)
}

fn build_target(
    targets: &Targets,
    profile: &str,
    target_type: &str,
    settings: &Map<String, Value>,
    problems: &mut Vec<At>,
) -> Option<Arc<dyn Exporter>> {
    let Some(target) = targets.find(target_type) else {
        let known = targets.names().join(", ");
        problems.push(At::new(
            "type",
            format!("unknown export type `{target_type}`; known types: {known}"),
        ));
        return None;
    };
    let errors = match target.build(profile, settings) {
        Ok(exporter) => return Some(Arc::from(exporter)),
        Err(error) => error.into_list(),
    };
    for error in errors {
        let error = match error {
            // The profile also takes the host's keys; list them too.
            SettingsError::UnknownKey { key, mut expected } => {
                expected.extend(HOST_KEYS.iter().map(|k| (*k).to_owned()));
                expected.sort();
                SettingsError::UnknownKey { key, expected }
            }
            other => other,
        };
        problems.push(At::new(error.key().to_owned(), error.to_string()));
    }
    None
}
