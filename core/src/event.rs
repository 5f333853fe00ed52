//! The order event: one JSON object in the CRM's order record shape, with its trigger in
//! `customerType`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::EventError;

/// One order event as the CRM sends it. Only `orderId` and `customerType` are required; every
/// other field is kept as it came and reached through [`OrderEvent::lookup`].
#[derive(Debug, Clone, PartialEq)]
pub struct OrderEvent {
    fields: Map<String, Value>,
    order_id: String,
}

impl OrderEvent {
    /// Checks that `value` is an object with an order id and a trigger.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Value::Object(fields) = value else {
            return Err(EventError::NotAnObject {
                found: kind_of(&value),
            });
        };
        let order_id = required_text(&fields, "orderId", true)?;
        required_text(&fields, "customerType", false)?;
        Ok(OrderEvent { fields, order_id })
    }

    /// The CRM's order id, as text (the CRM sends it as a string; a number is accepted).
    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    /// The trigger name exactly as the event spells it (`customerType`).
    pub fn trigger(&self) -> &str {
        self.fields["customerType"].as_str().unwrap_or_default()
    }

    /// All fields of the event.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Finds a field by dotted path: `firstName`, `items.7.name`, `items.0.sku` for an array.
    /// A top-level key that itself contains dots is found too.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        if let Some(value) = self.fields.get(path) {
            return Some(value);
        }
        let mut segments = path.split('.');
        let mut current = self.fields.get(segments.next()?)?;
        for segment in segments {
            current = match current {
                Value::Object(map) => map.get(segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// The field at `path` as text; `None` when it is missing or null.
    pub fn text(&self, path: &str) -> Option<Cow<'_, str>> {
        self.lookup(path).and_then(value_text)
    }

    /// The campaign id as text, so `12` and `"12"` compare equal.
    pub fn campaign_id(&self) -> Option<Cow<'_, str>> {
        self.text("campaignId").map(|text| match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
        })
    }

    /// The `productId` of every entry of `items` (an object keyed by product or an array).
    pub fn product_ids(&self) -> Vec<Cow<'_, str>> {
        let entries: Vec<&Value> = match self.fields.get("items") {
            Some(Value::Object(map)) => map.values().collect(),
            Some(Value::Array(items)) => items.iter().collect(),
            _ => Vec::new(),
        };
        entries
            .into_iter()
            .filter_map(|entry| entry.get("productId").and_then(value_text))
            .collect()
    }

    /// True for orders placed with a test card: `cardType` TESTCARD in any case, or a
    /// `cardLast4` listed in `test_cards`.
    pub fn is_test(&self, test_cards: &[String]) -> bool {
        let card_type = self.text("cardType");
        if card_type.is_some_and(|t| t.trim().eq_ignore_ascii_case("testcard")) {
            return true;
        }
        let last4 = self.text("cardLast4");
        last4.is_some_and(|last4| test_cards.iter().any(|card| card == last4.trim()))
    }

    /// The event as compact JSON, the form kept in the store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.fields).expect("a JSON map always serializes")
    }
}

/// Renders a JSON value as export text: strings as they are, numbers and booleans in JSON
/// notation, objects and arrays as compact JSON, null as `None`.
pub fn value_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// The JSON kind of a value, for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_text(
    fields: &Map<String, Value>,
    field: &'static str,
    number_allowed: bool,
) -> Result<String, EventError> {
    let text = match fields.get(field) {
        None | Some(Value::Null) => return Err(EventError::MissingField { field }),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) if number_allowed => n.to_string(),
        Some(other) => {
            let expected = if number_allowed {
                "a string or a number"
            } else {
                "a string"
            };
            return Err(EventError::WrongType {
                field,
                expected,
                found: kind_of(other),
            });
        }
    };
    if text.is_empty() {
        return Err(EventError::MissingField { field });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: Value) -> OrderEvent {
        OrderEvent::from_value(value).unwrap()
    }

    #[test]
    fn reaches_nested_values_by_dotted_path() {
        let e = event(json!({
            "orderId": "A1", "customerType": "New Sale",
            "items": {"7": {"name": "Widget"}}, "list": [{"sku": "S"}]
        }));
        assert_eq!(e.text("items.7.name").as_deref(), Some("Widget"));
        assert_eq!(e.text("list.0.sku").as_deref(), Some("S"));
        assert_eq!(e.text("items.8.name"), None);
        assert_eq!(e.text("orderId.x"), None);
    }

    #[test]
    fn renders_numbers_booleans_and_null() {
        let e = event(
            json!({"orderId": 42, "customerType": "Partial", "a": 1.5, "b": true, "c": null}),
        );
        assert_eq!(e.order_id(), "42");
        assert_eq!(e.text("a").as_deref(), Some("1.5"));
        assert_eq!(e.text("b").as_deref(), Some("true"));
        assert_eq!(e.text("c"), None);
    }

    #[test]
    fn rejects_events_without_order_id_or_trigger() {
        let missing = OrderEvent::from_value(json!({"customerType": "Partial"}));
        assert_eq!(missing, Err(EventError::MissingField { field: "orderId" }));
        let empty = OrderEvent::from_value(json!({"orderId": " ", "customerType": "Partial"}));
        assert_eq!(empty, Err(EventError::MissingField { field: "orderId" }));
        let wrong = OrderEvent::from_value(json!({"orderId": "A", "customerType": 3}));
        assert!(matches!(
            wrong,
            Err(EventError::WrongType {
                field: "customerType",
                ..
            })
        ));
        let array = OrderEvent::from_value(json!([1]));
        assert_eq!(array, Err(EventError::NotAnObject { found: "an array" }));
    }

    #[test]
    fn detects_test_cards_by_type_and_last_digits() {
        let by_type = event(json!({"orderId": "A", "customerType": "x", "cardType": "TestCard"}));
        assert!(by_type.is_test(&[]));
        let by_digits = event(json!({"orderId": "A", "customerType": "x", "cardLast4": "1111"}));
        assert!(by_digits.is_test(&["1111".into()]));
        assert!(!by_digits.is_test(&["2222".into()]));
    }

    #[test]
    fn collects_product_ids_from_object_or_array_items() {
        let object = event(json!({"orderId": "A", "customerType": "x",
            "items": {"7": {"productId": "7"}, "9": {"productId": 9}}}));
        assert_eq!(object.product_ids(), vec!["7", "9"]);
        let array =
            event(json!({"orderId": "A", "customerType": "x", "items": [{"productId": "3"}]}));
        assert_eq!(array.product_ids(), vec!["3"]);
    }
}
