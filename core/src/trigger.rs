//! Triggers: the kind of an order event (`customerType`), compared ignoring case, spaces, `_`
//! and `-`, so `New Sale`, `new_sale` and `NEWSALE` are one trigger.

use std::fmt;

/// The triggers the model CRM sends. A route naming anything else is a config error; an event
/// with another trigger is stored and matches no route.
pub const KNOWN: &[&str] = &[
    "Partial",
    "New Sale",
    "Upsell",
    "Subscription Started",
    "Pre-Billing",
    "Recurring Order",
    "Decline",
    "Rebill Decline",
    "Recycle Failed",
    "Cancel",
    "Pause",
    "Reactivate",
    "Partial Refund",
    "Full Refund",
    "Chargeback",
    "Fulfillment Shipped",
    "Fulfillment Delivered",
    "RMA Issued",
    "RMA Returned",
];

/// A trigger in its normalized form (lower case, without spaces, `_` and `-`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Trigger(String);

impl Trigger {
    /// Normalizes a trigger name as written in an event or a config.
    pub fn new(name: &str) -> Self {
        let key = name
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-') && !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        Trigger(key)
    }

    /// The canonical spelling when this is one of the [`KNOWN`] triggers.
    pub fn canonical(&self) -> Option<&'static str> {
        KNOWN
            .iter()
            .copied()
            .find(|known| Trigger::new(known) == *self)
    }

    /// The normalized key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical().unwrap_or(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignores_case_spaces_underscores_and_dashes() {
        assert_eq!(Trigger::new("New Sale"), Trigger::new("new_sale"));
        assert_eq!(Trigger::new("Pre-Billing"), Trigger::new("PREBILLING"));
        assert_eq!(Trigger::new(" rma  issued "), Trigger::new("RMA Issued"));
        assert_ne!(Trigger::new("Partial"), Trigger::new("Partial Refund"));
    }

    #[test]
    fn knows_the_crm_triggers() {
        assert_eq!(Trigger::new("full-refund").canonical(), Some("Full Refund"));
        assert_eq!(Trigger::new("Refund").canonical(), None);
        assert_eq!(
            Trigger::new("fulfillment_shipped").to_string(),
            "Fulfillment Shipped"
        );
    }
}
