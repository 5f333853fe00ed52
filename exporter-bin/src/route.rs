//! Routing: which profiles an event goes to, and when each delivery becomes due.

use exporter_core::route::any_matches;
use exporter_core::{OrderEvent, Trigger};

use crate::config::Config;
use crate::store::{NewDelivery, NewEvent};

/// Turns a validated event into what the store keeps: the event and one delivery per profile
/// with a matching route, due at `received_at` plus the profile's delay. A test order gets
/// `test_order` deliveries, which count it per profile and are never attempted.
pub fn plan(config: &Config, event: &OrderEvent, received_at: i64) -> NewEvent {
    let test_order = event.is_test(&config.test_cards);
    let deliveries = config
        .profiles
        .iter()
        .filter(|profile| any_matches(&profile.routes, event))
        .map(|profile| NewDelivery {
            profile: profile.name.clone(),
            due_at: received_at.saturating_add(profile.delay.as_millis() as i64),
            test_order,
        })
        .collect();
    NewEvent {
        order_id: event.order_id().to_owned(),
        trigger: event.trigger().to_owned(),
        dedup_key: dedup_key(event),
        test_order,
        received_at,
        body: event.to_json(),
        date_updated: event.text("dateUpdated").map(|text| text.into_owned()),
        deliveries,
    }
}

/// The same order, trigger and `dateUpdated` is the same event. Without `dateUpdated`, the
/// whole body decides.
fn dedup_key(event: &OrderEvent) -> String {
    let trigger = Trigger::new(event.trigger());
    let order = event.order_id();
    match event.text("dateUpdated") {
        Some(updated) => format!("{order}\u{1f}{}\u{1f}{updated}", trigger.as_str()),
        None => format!("{order}\u{1f}{}\u{1f}{}", trigger.as_str(), event.to_json()),
    }
}
