//! 3. CSV: events per second from `exporter run --once --input` to rows in files, against a
//!    bare pipeline in this process (read, parse, pick the same columns, write, sync) that
//!    stores nothing.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use super::{Bench, say, secs};
use crate::exporter::{self, Target};
use crate::report::{Row, per_sec, times};

pub fn measure(bench: &Bench) -> anyhow::Result<Vec<Row>> {
    let dir = bench.dir("csv")?;
    let input = bench.events_file()?;
    exporter::write_config(&dir, Target::Csv)?;

    say(&format!("csv: exporter run --once, {} events", bench.count));
    let run = exporter::run_once(&bench.exporter, &dir, &input)?;
    let rows = count_rows(&dir.join("exports"))?;
    let expected = bench.sendable(bench.count);
    anyhow::ensure!(
        rows == expected,
        "the CSV files hold {rows} rows, expected {expected}"
    );

    say("csv: baseline, a bare pipeline writing the same columns");
    let started = Instant::now();
    let bare_rows = bare_pipeline(&input, &dir.join("bare.csv"))?;
    let bare = started.elapsed();
    anyhow::ensure!(
        bare_rows == expected,
        "the bare pipeline wrote {bare_rows} rows"
    );

    let rate = bench.count as f64 / secs(run.total);
    let bare_rate = bench.count as f64 / secs(bare);
    Ok(vec![
        Row::new(
            format!("3. CSV, import to rows in files ({rows} rows)"),
            per_sec(bench.count, secs(run.total)),
        )
        .baseline(format!(
            "{} bare pipeline",
            per_sec(bench.count, secs(bare))
        ))
        .ratio(times(rate, bare_rate)),
    ])
}

/// Data rows in the finished files of `dir` (hidden temporary files left out).
fn count_rows(dir: &Path) -> anyhow::Result<usize> {
    let mut rows = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let lines = BufReader::new(std::fs::File::open(entry.path())?)
            .lines()
            .count();
        rows += lines.saturating_sub(1);
    }
    Ok(rows)
}

/// Reads events, skips test orders, writes the profile's columns as CSV and syncs the file.
fn bare_pipeline(input: &Path, output: &Path) -> anyhow::Result<usize> {
    let reader = BufReader::new(std::fs::File::open(input)?);
    let file = std::fs::File::create(output)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    writeln!(
        out,
        "order_id,first_name,last_name,full_name,phone,email,total,list_id"
    )?;
    let mut rows = 0;
    for line in reader.lines() {
        let event: Value = serde_json::from_str(&line?)?;
        if event["cardType"] == "TESTCARD" {
            continue;
        }
        let text = |key: &str| match &event[key] {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let full = format!("{} {}", text("firstName"), text("lastName"));
        let cells = [
            text("orderId"),
            text("firstName"),
            text("lastName"),
            full,
            text("phoneNumber"),
            text("emailAddress"),
            text("totalAmount"),
            "400".to_owned(),
        ];
        let cells: Vec<String> = cells.iter().map(|cell| quote(cell)).collect();
        writeln!(out, "{}", cells.join(","))?;
        rows += 1;
    }
    out.into_inner()?.sync_all()?;
    Ok(rows)
}

fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}
