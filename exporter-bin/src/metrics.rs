//! Metrics in the Prometheus text format, served at `GET /metrics` by `exporter serve`.

use std::fmt::Write;

/// Upper bounds of the attempt duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or under each bound of [`BUCKETS`], not cumulative.
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Adds one observation of `seconds`.
    pub fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.counts[bucket] += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// Builds the text of one scrape.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` are name and value pairs.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let _ = writeln!(self.out, "{name}{} {}", label_text(labels), number(value));
        self
    }

    /// The samples of a histogram with the given labels.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(histogram.counts) {
            cumulative += count;
            let le = number(*bound);
            let with_le = [labels, &[("le", le.as_str())]].concat();
            self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        let with_inf = [labels, &[("le", "+Inf")]].concat();
        self.sample(&format!("{name}_bucket"), &with_inf, histogram.count as f64);
        self.sample(&format!("{name}_sum"), labels, histogram.sum);
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn label_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(name, value)| {
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{name}=\"{value}\"")
        })
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_samples_and_escaped_labels() {
        let mut text = Text::default();
        text.family("x_total", "counter", "Things.").sample(
            "x_total",
            &[("profile", "a \"b\"\\")],
            3.0,
        );
        assert_eq!(
            text.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\n\
             x_total{profile=\"a \\\"b\\\"\\\\\"} 3\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_and_end_with_inf() {
        let mut histogram = Histogram::default();
        histogram.observe(0.003);
        histogram.observe(0.2);
        histogram.observe(99.0);
        let mut text = Text::default();
        text.histogram("d", &[], &histogram);
        let text = text.finish();
        assert!(text.contains("d_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("d_bucket{le=\"0.25\"} 2\n"), "{text}");
        assert!(text.contains("d_bucket{le=\"30\"} 2\n"), "{text}");
        assert!(text.contains("d_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("d_count 3\n"), "{text}");
    }
}
