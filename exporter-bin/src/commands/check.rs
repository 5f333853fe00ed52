//! `exporter check`: validates the config and lists what it defines; with `--connect`, also
//! checks that every target that can be checked is reachable and writable.

use std::process::ExitCode;

use exporter_core::MappingSource;
use exporter_core::mapping::Part;
use futures_util::future::join_all;

use crate::config::Config;

/// Prints the profiles, their routes and mappings.
pub fn check(config: &Config) {
    let count = config.profiles.len();
    println!(
        "{} is valid: {count} profile(s), store {}",
        config.path.display(),
        config.store.display()
    );
    if !config.test_cards.is_empty() {
        println!(
            "test cards (last 4 digits): {}",
            config.test_cards.join(", ")
        );
    }
    for profile in &config.profiles {
        let minutes = profile.delay.as_secs_f64() / 60.0;
        let recheck = if profile.recheck { "on" } else { "off" };
        let attempts = profile
            .retry
            .max_attempts
            .map_or("forever".to_owned(), |n| format!("up to {n} attempts"));
        println!();
        println!(
            "{} ({}, delay {minutes} min, recheck {recheck}, retry {attempts})",
            profile.name, profile.target_type
        );
        for (index, route) in profile.routes.iter().enumerate() {
            let mut parts = vec![format!(
                "triggers {}",
                join(route.triggers.iter().map(|t| t.to_string()))
            )];
            if !route.campaigns.is_empty() {
                parts.push(format!("campaigns {}", route.campaigns.join(", ")));
            }
            if !route.products.is_empty() {
                parts.push(format!("products {}", route.products.join(", ")));
            }
            for (path, allowed) in &route.conditions {
                parts.push(format!("{path} in {}", allowed.join(", ")));
            }
            println!("  route {}: {}", index + 1, parts.join("; "));
        }
        for mapping in &profile.mappings {
            let source = match mapping.source() {
                MappingSource::Field(path) => format!("field {path}"),
                MappingSource::Template(parts) => format!("value \"{}\"", template_text(parts)),
                MappingSource::Secret(_) => "secret from the environment".to_owned(),
            };
            println!("  {} <- {source}", mapping.name());
        }
    }
}

/// Runs every profile's connection check at once and prints one line per profile, in config
/// order. Fails (exit status 1) when any check failed; each check is bounded by its target's
/// own timeout.
pub fn connect(config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probes = config.profiles.iter().map(|profile| async move {
        match profile.exporter.probe() {
            Some(probe) => Some(probe.await),
            None => None,
        }
    });
    let results = runtime.block_on(join_all(probes));

    println!();
    println!("connection checks:");
    let mut failed = 0;
    for (profile, result) in config.profiles.iter().zip(results) {
        let label = format!("{} ({})", profile.name, profile.target_type);
        let line = match result {
            None => format!(
                "not checked: the {} target has no check",
                profile.target_type
            ),
            Some(Ok(checked)) => format!("ok: {checked}"),
            Some(Err(problem)) => {
                failed += 1;
                format!("FAILED: {problem}")
            }
        };
        println!("  {label}: {}", config.redactor.redact(&line));
    }
    if failed > 0 {
        println!("{failed} connection check(s) failed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// A template as it would be written in the config.
fn template_text(parts: &[Part]) -> String {
    parts
        .iter()
        .map(|part| match part {
            Part::Literal(text) => text.replace('[', "[["),
            Part::Field(path) => format!("[{path}]"),
        })
        .collect()
}
