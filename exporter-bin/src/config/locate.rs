//! Finds the line of a key in the config text, so errors can point at it.

use toml::de::{DeTable, DeValue};

/// One step of a path into the config: a key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Splits a path such as `profile[2].routes[0].triggers` into steps.
pub fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            steps.push(Step::Key(key.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(index) = index.parse() {
                steps.push(Step::Index(index));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    steps
}

/// The 1-based line of the deepest part of `steps` found in `text`.
pub fn line_of(text: &str, steps: &[Step]) -> Option<usize> {
    let root = DeTable::parse(text).ok()?;
    let mut span = None;
    let mut table = Some(root.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for step in steps {
        let value = match (step, table, array) {
            (Step::Key(key), Some(t), _) => {
                let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref().as_ref() == key.as_str())
                else {
                    break;
                };
                span = Some(k.span().start);
                v
            }
            (Step::Index(i), _, Some(items)) => {
                let Some(v) = items.get(*i) else { break };
                span = Some(v.span().start);
                v
            }
            _ => break,
        };
        (table, array) = match value.get_ref() {
            DeValue::Table(t) => (Some(t), None),
            DeValue::Array(a) => (None, Some(a.as_ref())),
            _ => (None, None),
        };
    }
    span.map(|offset| text[..offset.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "store = \"x\"\n\n[[profile]]\nname = \"a\"\n\n[[profile]]\nname = \"b\"\nurl = 1\nroutes = [\n  { triggers = [\"x\"] },\n  { triggers = [\"y\"] },\n]\n";

    #[test]
    fn finds_keys_inside_arrays_of_tables() {
        assert_eq!(line_of(TEXT, &parse_path("store")), Some(1));
        assert_eq!(line_of(TEXT, &parse_path("profile[1].url")), Some(8));
        assert_eq!(
            line_of(TEXT, &parse_path("profile[1].routes[1].triggers")),
            Some(11)
        );
        assert_eq!(line_of(TEXT, &parse_path("profile[0].name")), Some(4));
    }

    #[test]
    fn falls_back_to_the_deepest_part_found() {
        assert_eq!(line_of(TEXT, &parse_path("profile[1].nope")), Some(6));
        assert_eq!(
            line_of(TEXT, &parse_path("profile[1].routes[1].nope")),
            Some(11)
        );
        let steps = parse_path("profile[1].routes[7]");
        assert_eq!(steps.len(), 4);
    }
}
