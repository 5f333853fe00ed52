//! `exporter preview`: shows what a profile would send for some orders, sending nothing.

use std::process::ExitCode;

use anyhow::bail;
use exporter_core::mapping::render;
use exporter_core::route::any_matches;
use exporter_core::{Batch, OrderEvent};

use crate::config::Config;
use crate::ingest::Input;
use crate::ingest::input;
use crate::store::now_ms;

/// Prints the target's preview of every order in `input` for the named profile.
pub fn preview(config: &Config, profile: &str, input: &str) -> anyhow::Result<ExitCode> {
    let Some(profile) = config.profile(profile) else {
        let names: Vec<&str> = config.profiles.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "no profile named \"{profile}\" in {}; profiles: {}",
            config.path.display(),
            names.join(", ")
        );
    };
    let input = Input::parse(input);
    let mut records = Vec::new();
    let mut notes = Vec::new();
    input::read(&input, |position, item| {
        let event = item.and_then(|value| OrderEvent::from_value(value).map_err(|e| e.to_string()));
        match event {
            Ok(event) => {
                let order = event.order_id().to_owned();
                if !any_matches(&profile.routes, &event) {
                    let trigger = event.trigger();
                    notes.push(format!(
                        "note: order {order} ({trigger}) matches no route of this profile; \
                         it would not be sent"
                    ));
                }
                if event.is_test(&config.test_cards) {
                    notes.push(format!(
                        "note: order {order} is a test order; it would be counted, not sent"
                    ));
                }
                let delivery_id = format!("preview-{}", records.len() + 1);
                records.push(render(&profile.mappings, &event, &delivery_id));
            }
            Err(reason) => notes.push(format!("skipped {} {position}: {reason}", input.name())),
        }
        Ok::<_, std::convert::Infallible>(())
    })?
    .ok();
    for note in &notes {
        eprintln!("{note}");
    }
    if records.is_empty() {
        bail!("{} holds no order event to preview", input.name());
    }
    let batch = Batch {
        id: "preview".to_owned(),
        created_at_ms: now_ms(),
        records,
    };
    let text = profile.exporter.preview(&batch);
    println!("{}", config.redactor.redact(&text));
    Ok(ExitCode::SUCCESS)
}
