//! The operator commands: `status`, `deliveries`, `retry`, `replay`, `pause` and `resume`.
//! They work on the same store as a running `run` or `serve`, without the worker lock.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;

use super::summary::format_time;
use super::table;
use crate::config::{StoreConfig, StoreLocation};
use crate::store::{
    self, DeliveryFilter, DeliveryRow, NodeStatus, ProfileStatus, Selection, Store, now_ms,
};

/// Opens the store the config names; only `pause` and `resume` may create a SQLite file.
fn open(config: &Path, create: bool) -> anyhow::Result<(StoreConfig, Box<dyn Store>)> {
    let config = StoreConfig::load(config)?;
    if let StoreLocation::Sqlite(path) = &config.store
        && !create
        && !path.exists()
    {
        bail!(
            "the store {} does not exist yet; `exporter run` or `serve` creates it",
            path.display()
        );
    }
    let store = store::open(&config.store)?;
    Ok((config, store))
}

/// Refuses a profile name that neither the config nor the store knows.
fn known_profile(config: &StoreConfig, store: &mut dyn Store, profile: &str) -> anyhow::Result<()> {
    let in_store = store
        .pending_profiles()?
        .iter()
        .any(|(name, _)| name == profile);
    if config.profiles.iter().any(|name| name == profile) || in_store {
        return Ok(());
    }
    bail!(
        "no profile named \"{profile}\"; profiles: {}",
        config.profiles.join(", ")
    )
}

/// `exporter status`.
pub fn status(config: &Path, json: bool) -> anyhow::Result<()> {
    let (config, mut store) = open(config, false)?;
    let now = now_ms();
    let statuses = store.status(&config.profiles, now)?;
    let nodes = store.nodes(now)?;
    if json {
        let nodes: Vec<_> = nodes
            .iter()
            .map(|node| {
                let mut value = serde_json::to_value(node).expect("a node as JSON");
                value["state"] = node_state(node, now).into();
                value
            })
            .collect();
        return print_json(&serde_json::json!({"profiles": statuses, "nodes": nodes}));
    }
    let mut rows = vec![
        [
            "profile",
            "state",
            "pending",
            "due now",
            "retrying",
            "failed",
            "delivered 1h",
            "oldest pending",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for s in &statuses {
        rows.push(vec![
            s.profile.clone(),
            if s.paused { "paused" } else { "active" }.to_owned(),
            s.pending.to_string(),
            s.due_now.to_string(),
            s.retrying.to_string(),
            s.failed.to_string(),
            s.delivered_last_hour.to_string(),
            s.oldest_pending_secs
                .map(age)
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let numeric = [
        "pending",
        "due now",
        "retrying",
        "failed",
        "delivered 1h",
        "oldest pending",
    ];
    print!("{}", table::render(&rows, &numeric));
    for ProfileStatus {
        profile,
        last_error,
        ..
    } in &statuses
    {
        if let Some(error) = last_error {
            println!("{profile}: last error: {error}");
        }
    }
    print_nodes(&nodes, now);
    Ok(())
}

/// `running`, `stopped`, or `silent`: heartbeats come every few seconds, so a minute of
/// silence means the node is gone (killed, or cut off from the store).
fn node_state(node: &NodeStatus, now: i64) -> &'static str {
    match node.stopped_at {
        Some(_) => "stopped",
        None if now - node.heartbeat_at > 60_000 => "silent",
        None => "running",
    }
}

/// The nodes that worked the store, with how long ago each was last heard from.
fn print_nodes(nodes: &[NodeStatus], now: i64) {
    // A node that stopped over an hour ago is history (`--json` still lists it).
    let recent: Vec<_> = nodes
        .iter()
        .filter(|node| node.stopped_at.is_none_or(|at| now - at < 3_600_000))
        .collect();
    if recent.is_empty() {
        return;
    }
    println!();
    let mut rows = vec![
        ["node", "state", "started", "last heartbeat", "claims held"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for node in recent {
        rows.push(vec![
            node.name.clone(),
            node_state(node, now).to_owned(),
            format_time(node.started_at),
            format!(
                "{} ago",
                age(((now - node.heartbeat_at).max(0) / 1000) as u64)
            ),
            node.claims.to_string(),
        ]);
    }
    print!("{}", table::render(&rows, &["claims held"]));
}

/// `exporter deliveries`.
pub fn deliveries(config: &Path, filter: DeliveryFilter, json: bool) -> anyhow::Result<()> {
    let (_, mut store) = open(config, false)?;
    let rows = store.deliveries(&filter)?;
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("no deliveries match");
        return Ok(());
    }
    for DeliveryRow {
        delivery_id,
        profile,
        order_id,
        trigger,
        state,
        attempts,
        created_at,
        due_at,
        history,
        ..
    } in &rows
    {
        println!(
            "{delivery_id}  {profile}  order {order_id} ({trigger})  {state}, {attempts} \
                attempt(s), created {}, due {}",
            format_time(*created_at),
            format_time(*due_at)
        );
        for attempt in history {
            let status = attempt.status.map(|s| format!(" {s}")).unwrap_or_default();
            println!(
                "    {}  {}{status}  {} ms  {}",
                format_time(attempt.at),
                attempt.outcome,
                attempt.duration_ms,
                attempt.message
            );
        }
    }
    Ok(())
}

/// `exporter retry`.
pub fn retry(config: &Path, selection: Selection, json: bool) -> anyhow::Result<()> {
    let (config, mut store) = open(config, false)?;
    if let Selection::Profile(profile) = &selection {
        known_profile(&config, store.as_mut(), profile)?;
    }
    let count = store.retry_failed(&selection, now_ms())?;
    if let Selection::Ids(ids) = &selection
        && count < ids.len()
    {
        let hint = "`exporter deliveries --state failed` lists the failed ones";
        if count == 0 {
            bail!(
                "no failed delivery has the id(s) given ({}); {hint}",
                ids.join(", ")
            );
        }
        eprintln!(
            "{} of the {} ids given name no failed delivery; {hint}",
            ids.len() - count,
            ids.len()
        );
    }
    report(
        json,
        "queued_again",
        count,
        &format!("{count} failed deliveries are queued again, due now"),
    )
}

/// `exporter replay`.
pub fn replay(
    config: &Path,
    profile: &str,
    since: &str,
    until: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let (config, mut store) = open(config, false)?;
    known_profile(&config, store.as_mut(), profile)?;
    let now = now_ms();
    let since_ms = parse_time(since, now).with_context(|| format!("--since {since}"))?;
    let until_ms = match until {
        Some(until) => parse_time(until, now).with_context(|| format!("--until {until}"))?,
        None => now,
    };
    if until_ms <= since_ms {
        bail!("--until must be later than --since");
    }
    let count = store.replay(profile, since_ms, until_ms, now)?;
    let message = format!(
        "{count} deliveries of \"{profile}\" delivered between {} and {} are queued again as \
            new deliveries",
        format_time(since_ms),
        format_time(until_ms)
    );
    report(json, "replayed", count, &message)
}

/// `exporter pause` and `exporter resume`.
pub fn pause(config: &Path, profile: &str, paused: bool, json: bool) -> anyhow::Result<()> {
    let (config, mut store) = open(config, true)?;
    known_profile(&config, store.as_mut(), profile)?;
    let before = store.set_paused(profile, paused, now_ms())?;
    let message = match (before, paused) {
        (true, true) => format!("\"{profile}\" was already paused"),
        (false, true) => format!(
            "\"{profile}\" is paused: its deliveries are kept and wait for `exporter resume`"
        ),
        (true, false) => format!("\"{profile}\" is resumed"),
        (false, false) => format!("\"{profile}\" was not paused"),
    };
    if json {
        return print_json(&serde_json::json!({"profile": profile, "paused": paused}));
    }
    println!("{message}");
    Ok(())
}

fn report(json: bool, key: &str, count: usize, message: &str) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({ key: count }));
    }
    println!("{message}");
    Ok(())
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A duration in seconds as `3d 4h`, `5h 2m`, `4m 10s` or `12s`.
fn age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A time given on the command line: RFC 3339 (`2026-12-04T15:00:00Z`), a UTC date and time
/// (`2026-12-04 15:00`, `2026-12-04`), or an age before `now` (`90m`, `2h`, `3d`).
fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    let text = text.trim();
    if let Some(ms) = age_ms(text) {
        return Ok(now - ms);
    }
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond());
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| {
            let date = text.parse::<jiff::civil::Date>()?;
            Ok::<_, jiff::Error>(date.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "expected a time such as 2026-12-04T15:00:00Z, \"2026-12-04 15:00\" (UTC) or an \
                 age such as 2h"
            )
        })?;
    Ok(jiff::tz::TimeZone::UTC
        .to_timestamp(civil)?
        .as_millisecond())
}

/// `90m`, `2h`, `3d` in milliseconds.
fn age_ms(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.parse::<i64>().ok()?.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_and_ages() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_time("2026-12-04T15:00:00Z", now).unwrap(),
            1_796_396_400_000
        );
        assert_eq!(
            parse_time("2026-12-04 15:00", now).unwrap(),
            1_796_396_400_000
        );
        assert_eq!(parse_time("2026-12-04", now).unwrap(), 1_796_342_400_000);
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn writes_ages_for_people() {
        assert_eq!(age(12), "12s");
        assert_eq!(age(250), "4m 10s");
        assert_eq!(age(3 * 3600 + 120), "3h 2m");
        assert_eq!(age(2 * 86_400 + 3600), "2d 1h");
    }
}
