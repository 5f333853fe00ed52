//! The table of figures: each beside its baseline, the ratio, the target and whether it holds.

use std::fmt::Write;

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub baseline: String,
    /// The value over the baseline, or another comparison.
    pub ratio: String,
    pub target: String,
    /// `None` for a figure without a target.
    pub pass: Option<bool>,
}

impl Row {
    pub fn new(figure: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            value: value.into(),
            ..Row::default()
        }
    }

    pub fn baseline(mut self, baseline: impl Into<String>) -> Row {
        self.baseline = baseline.into();
        self
    }

    pub fn ratio(mut self, ratio: impl Into<String>) -> Row {
        self.ratio = ratio.into();
        self
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Row {
        self.target = target.into();
        self.pass = Some(pass);
        self
    }
}

/// The table as Markdown, also readable as plain text.
pub fn markdown(rows: &[Row]) -> String {
    let header = ["figure", "value", "baseline", "ratio", "target", "result"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let result = match row.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "",
            };
            [
                &row.figure,
                &row.value,
                &row.baseline,
                &row.ratio,
                &row.target,
            ]
            .map(|cell| cell.to_string())
            .into_iter()
            .chain([result.to_owned()])
            .collect::<Vec<_>>()
            .try_into()
            .expect("six cells")
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let line = |text: &mut String, cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(text, "| {} |", padded.join(" | "));
    };
    line(&mut text, &header.map(str::to_owned));
    line(&mut text, &widths.map(|w| "-".repeat(w)));
    for row in &cells {
        line(&mut text, row);
    }
    text
}

/// A rate per second, rounded.
pub fn per_sec(count: usize, seconds: f64) -> String {
    format!("{:.0}/s", count as f64 / seconds)
}

/// A ratio, such as `0.62x`.
pub fn times(value: f64, baseline: f64) -> String {
    format!("{:.2}x", value / baseline)
}

/// KiB as MiB.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The `q` quantile (0..=1) of sorted values.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> T {
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}
