//! Field mappings: the ordered list of (export name, value) that turns an order event into a
//! record. A value is an order field (`firstName`, `items.7.name`), or a template where
//! `[field]` tokens are replaced and the rest is literal (`[[` writes a literal `[`). A missing or
//! null field renders as the mapping's `default`, empty unless set.

use std::fmt;

use crate::error::MappingError;
use crate::event::OrderEvent;
use crate::record::{Field, Record};

/// One export column, parameter, JSON key or header.
#[derive(Clone, PartialEq, Eq)]
pub struct Mapping {
    name: String,
    source: MappingSource,
    default: String,
}

/// Where a mapping's value comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum MappingSource {
    /// An order field by dotted path.
    Field(String),
    /// Literal text and field tokens, in order.
    Template(Vec<Part>),
    /// A secret resolved from the environment at start; shown masked everywhere.
    Secret(String),
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Field(String),
}

impl Mapping {
    /// A mapping that copies one order field.
    pub fn field(name: &str, path: &str) -> Result<Self, MappingError> {
        check_name(name)?;
        check_path(name, path)?;
        let source = MappingSource::Field(path.trim().to_owned());
        Ok(Mapping {
            name: name.to_owned(),
            source,
            default: String::new(),
        })
    }

    /// A mapping from a template such as `[firstName] [lastName]` or a static `400`.
    pub fn template(name: &str, template: &str) -> Result<Self, MappingError> {
        check_name(name)?;
        let parts = parse_template(name, template)?;
        let source = MappingSource::Template(parts);
        Ok(Mapping {
            name: name.to_owned(),
            source,
            default: String::new(),
        })
    }

    /// A mapping whose value is a secret, already resolved.
    pub fn secret(name: &str, value: String) -> Result<Self, MappingError> {
        check_name(name)?;
        let source = MappingSource::Secret(value);
        Ok(Mapping {
            name: name.to_owned(),
            source,
            default: String::new(),
        })
    }

    /// Sets the text a missing or null field renders as.
    pub fn with_default(mut self, default: String) -> Self {
        self.default = default;
        self
    }

    /// The export name (`first_name`, `header:X-Api-Key`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the value comes from.
    pub fn source(&self) -> &MappingSource {
        &self.source
    }

    /// Renders this mapping for one event.
    pub fn render(&self, event: &OrderEvent) -> Field {
        let (value, secret) = match &self.source {
            MappingSource::Field(path) => (self.field_text(event, path), false),
            MappingSource::Secret(value) => (value.clone(), true),
            MappingSource::Template(parts) => {
                let mut text = String::new();
                for part in parts {
                    match part {
                        Part::Literal(literal) => text.push_str(literal),
                        Part::Field(path) => text.push_str(&self.field_text(event, path)),
                    }
                }
                (text, false)
            }
        };
        Field {
            name: self.name.clone(),
            value,
            secret,
        }
    }

    fn field_text(&self, event: &OrderEvent, path: &str) -> String {
        match event.text(path) {
            Some(text) => text.into_owned(),
            None => self.default.clone(),
        }
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            MappingSource::Field(path) => format!("field {path}"),
            MappingSource::Template(parts) => format!("template {parts:?}"),
            MappingSource::Secret(_) => "secret ***".to_owned(),
        };
        write!(f, "Mapping({} = {source})", self.name)
    }
}

/// Renders every mapping of a profile, in order, into a record.
pub fn render(mappings: &[Mapping], event: &OrderEvent, delivery_id: &str) -> Record {
    Record {
        delivery_id: delivery_id.to_owned(),
        order_id: event.order_id().to_owned(),
        fields: mappings
            .iter()
            .map(|mapping| mapping.render(event))
            .collect(),
    }
}

fn check_name(name: &str) -> Result<(), MappingError> {
    if name.trim().is_empty() {
        return Err(MappingError::EmptyName);
    }
    Ok(())
}

fn check_path(name: &str, path: &str) -> Result<(), MappingError> {
    if path
        .trim()
        .split('.')
        .any(|segment| segment.trim().is_empty())
    {
        let path = path.to_owned();
        return Err(MappingError::EmptyPath {
            name: name.to_owned(),
            path,
        });
    }
    Ok(())
}

/// Splits a template into literal text and `[field]` tokens.
pub fn parse_template(name: &str, template: &str) -> Result<Vec<Part>, MappingError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '[' {
            literal.push(c);
            continue;
        }
        if chars.next_if(|&(_, next)| next == '[').is_some() {
            literal.push('[');
            continue;
        }
        let column = template[..start].chars().count() + 1;
        let mut token = String::new();
        loop {
            match chars.next() {
                Some((_, ']')) => break,
                Some((_, c)) => token.push(c),
                None => {
                    return Err(MappingError::UnclosedToken {
                        name: name.into(),
                        column,
                    });
                }
            }
        }
        let path = token.trim();
        if path.is_empty() {
            return Err(MappingError::EmptyToken {
                name: name.into(),
                column,
            });
        }
        check_path(name, path)?;
        if !literal.is_empty() {
            parts.push(Part::Literal(std::mem::take(&mut literal)));
        }
        parts.push(Part::Field(path.to_owned()));
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> OrderEvent {
        OrderEvent::from_value(json!({
            "orderId": "A1", "customerType": "Partial", "firstName": "Ana", "lastName": "Li",
            "companyName": null, "items": {"7": {"name": "Widget"}}
        }))
        .unwrap()
    }

    #[test]
    fn renders_fields_templates_and_static_text() {
        let e = order();
        let field = Mapping::field("first_name", "firstName").unwrap();
        assert_eq!(field.render(&e).value, "Ana");
        let full = Mapping::template("full_name", "[firstName] [lastName]").unwrap();
        assert_eq!(full.render(&e).value, "Ana Li");
        let nested = Mapping::template("item", "item: [ items.7.name ]").unwrap();
        assert_eq!(nested.render(&e).value, "item: Widget");
        let fixed = Mapping::template("list_id", "400").unwrap();
        assert_eq!(fixed.render(&e).value, "400");
    }

    #[test]
    fn double_bracket_writes_a_literal_bracket() {
        let m = Mapping::template("note", "[[x] [firstName]]").unwrap();
        assert_eq!(m.render(&order()).value, "[x] Ana]");
    }

    #[test]
    fn missing_and_null_fields_render_as_default() {
        let e = order();
        let missing = Mapping::field("phone", "phoneNumber").unwrap();
        assert_eq!(missing.render(&e).value, "");
        let null = Mapping::field("company", "companyName")
            .unwrap()
            .with_default("n/a".into());
        assert_eq!(null.render(&e).value, "n/a");
        let token = Mapping::template("t", "<[nope]>")
            .unwrap()
            .with_default("-".into());
        assert_eq!(token.render(&e).value, "<->");
    }

    #[test]
    fn rejects_broken_templates_with_the_column() {
        let unclosed = Mapping::template("x", "ab [firstName").unwrap_err();
        assert_eq!(
            unclosed,
            MappingError::UnclosedToken {
                name: "x".into(),
                column: 4
            }
        );
        let empty = Mapping::template("x", "a[ ]").unwrap_err();
        assert_eq!(
            empty,
            MappingError::EmptyToken {
                name: "x".into(),
                column: 2
            }
        );
        assert!(matches!(
            Mapping::field("x", "items..name"),
            Err(MappingError::EmptyPath { .. })
        ));
        assert_eq!(Mapping::field(" ", "a"), Err(MappingError::EmptyName));
    }

    #[test]
    fn secrets_are_flagged_and_hidden_from_debug() {
        let m = Mapping::secret("header:X-Api-Key", "s3cr3t".into()).unwrap();
        let field = m.render(&order());
        assert!(field.secret);
        assert_eq!(field.value, "s3cr3t");
        assert!(!format!("{m:?}").contains("s3cr3t"));
    }

    #[test]
    fn renders_mappings_in_order() {
        let mappings = [
            Mapping::field("b", "lastName").unwrap(),
            Mapping::field("a", "firstName").unwrap(),
        ];
        let record = render(&mappings, &order(), "d1");
        let names: Vec<_> = record.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b", "a"]);
        assert_eq!(record.order_id, "A1");
    }
}
