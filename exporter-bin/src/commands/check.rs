//! `exporter check`: validates the config and lists what it defines.

use exporter_core::MappingSource;
use exporter_core::mapping::Part;

use crate::config::{Config, StoreLocation};

/// Prints the profiles, their routes and mappings.
pub fn check(config: &Config) {
    let StoreLocation::Sqlite(store) = &config.store;
    let count = config.profiles.len();
    println!(
        "{} is valid: {count} profile(s), store sqlite://{}",
        config.path.display(),
        store.display()
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
