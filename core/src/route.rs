//! Routes: the rules that send an event to a profile. A route matches when the event's trigger
//! is one of its triggers and, when given, its campaign, one of its products and each of its
//! field conditions agree. An event goes to every profile with at least one matching route.

use crate::event::OrderEvent;
use crate::trigger::Trigger;

/// One routing rule of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// Normalized triggers; at least one.
    pub triggers: Vec<Trigger>,
    /// Campaign ids as text; empty means any campaign.
    pub campaigns: Vec<String>,
    /// Product ids as text; empty means any product.
    pub products: Vec<String>,
    /// Extra conditions: the field at the path must render as one of the listed texts.
    pub conditions: Vec<(String, Vec<String>)>,
}

impl Route {
    /// True when the event passes every part of this route.
    pub fn matches(&self, event: &OrderEvent) -> bool {
        let trigger = Trigger::new(event.trigger());
        if !self.triggers.contains(&trigger) {
            return false;
        }
        if !self.campaigns.is_empty() {
            let campaign = event.campaign_id();
            if !campaign.is_some_and(|c| self.campaigns.iter().any(|want| *want == c)) {
                return false;
            }
        }
        if !self.products.is_empty() {
            let products = event.product_ids();
            if !products
                .iter()
                .any(|p| self.products.iter().any(|want| want == p.trim()))
            {
                return false;
            }
        }
        self.conditions.iter().all(|(path, allowed)| {
            let text = event.text(path).unwrap_or_default();
            allowed.iter().any(|want| *want == text)
        })
    }
}

/// True when any of `routes` matches.
pub fn any_matches(routes: &[Route], event: &OrderEvent) -> bool {
    routes.iter().any(|route| route.matches(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn event(value: Value) -> OrderEvent {
        OrderEvent::from_value(value).unwrap()
    }

    fn route(triggers: &[&str]) -> Route {
        Route {
            triggers: triggers.iter().map(|t| Trigger::new(t)).collect(),
            ..Route::default()
        }
    }

    #[test]
    fn matches_triggers_ignoring_spelling() {
        let r = route(&["new_sale", "Upsell"]);
        assert!(r.matches(&event(json!({"orderId": "1", "customerType": "New Sale"}))));
        assert!(r.matches(&event(json!({"orderId": "1", "customerType": "UPSELL"}))));
        assert!(!r.matches(&event(json!({"orderId": "1", "customerType": "Partial"}))));
    }

    #[test]
    fn campaigns_match_as_text() {
        let r = Route {
            campaigns: vec!["12".into(), "14".into()],
            ..route(&["Partial"])
        };
        assert!(r.matches(&event(
            json!({"orderId": "1", "customerType": "Partial", "campaignId": 12})
        )));
        assert!(r.matches(&event(
            json!({"orderId": "1", "customerType": "Partial", "campaignId": "14"})
        )));
        assert!(!r.matches(&event(
            json!({"orderId": "1", "customerType": "Partial", "campaignId": 21})
        )));
        assert!(!r.matches(&event(json!({"orderId": "1", "customerType": "Partial"}))));
    }

    #[test]
    fn products_match_any_item() {
        let r = Route {
            products: vec!["7".into()],
            ..route(&["New Sale"])
        };
        let hit = json!({"orderId": "1", "customerType": "New Sale",
            "items": {"3": {"productId": "3"}, "7": {"productId": 7}}});
        let miss =
            json!({"orderId": "1", "customerType": "New Sale", "items": {"3": {"productId": "3"}}});
        assert!(r.matches(&event(hit)));
        assert!(!r.matches(&event(miss)));
    }

    #[test]
    fn field_conditions_must_all_hold() {
        let r = Route {
            conditions: vec![("country".into(), vec!["US".into(), "CA".into()])],
            ..route(&["Decline"])
        };
        assert!(r.matches(&event(
            json!({"orderId": "1", "customerType": "Decline", "country": "CA"})
        )));
        assert!(!r.matches(&event(
            json!({"orderId": "1", "customerType": "Decline", "country": "JP"})
        )));
        assert!(!r.matches(&event(json!({"orderId": "1", "customerType": "Decline"}))));
    }
}
