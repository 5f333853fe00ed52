//! Order events for the runs: the CRM export replicated with fresh order ids.
//!
//! Event `i` is line `i % lines` of the export with its order id `X` replaced by `X-k`, where
//! `k = i / lines`, wherever the quoted id appears (`orderId`, `clientOrderId`). Each copy of
//! the export is thus a new set of orders with the same shape: the same triggers, the same
//! orders with several events, the same test orders.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// One line of the export, split around its order id.
struct Template {
    /// The line's text between the occurrences of the quoted order id.
    parts: Vec<String>,
    order_id: String,
    test_order: bool,
}

/// The source export, ready to replicate.
pub struct Events {
    templates: Vec<Template>,
}

impl Events {
    /// Reads the export (JSON lines).
    pub fn load(path: &Path) -> anyhow::Result<Events> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the order export {}", path.display()))?;
        let mut templates = Vec::new();
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}", path.display(), number + 1))?;
            let order_id = value["orderId"]
                .as_str()
                .context("orderId is not text")?
                .to_owned();
            let quoted = format!("\"{order_id}\"");
            templates.push(Template {
                parts: line.split(&quoted).map(str::to_owned).collect(),
                test_order: value["cardType"].as_str() == Some("TESTCARD"),
                order_id,
            });
        }
        anyhow::ensure!(!templates.is_empty(), "{} holds no events", path.display());
        Ok(Events { templates })
    }

    /// Event `index` as one line of JSON, without a line end.
    pub fn event(&self, index: usize) -> String {
        let template = &self.templates[index % self.templates.len()];
        let copy = index / self.templates.len();
        let quoted = format!("\"{}-{copy}\"", template.order_id);
        template.parts.join(&quoted)
    }

    /// Events `range` as JSON lines, one request body.
    pub fn ndjson(&self, range: std::ops::Range<usize>) -> String {
        let mut body = String::with_capacity(range.len() * 1400);
        for index in range {
            body.push_str(&self.event(index));
            body.push('\n');
        }
        body
    }

    /// How many of the first `count` events are test orders, which are never sent.
    pub fn test_orders(&self, count: usize) -> usize {
        (0..count)
            .filter(|i| self.templates[i % self.templates.len()].test_order)
            .count()
    }

    /// Writes the first `count` events as JSON lines.
    pub fn write(&self, path: &Path, count: usize) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for index in 0..count {
            out.write_all(self.event(index).as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        Ok(())
    }
}
