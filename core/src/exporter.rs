//! The [`Exporter`] trait every target implements, and the outcome of one delivery attempt.
//!
//! The host renders each due delivery into a [`Record`](crate::Record) and hands the target a
//! [`Batch`]. The target
//! returns exactly one [`Outcome`] per record, in the same order. It never retries on its own:
//! the host records the attempt and schedules the next one, so a crash between the two loses
//! nothing and a retry always carries the same delivery id.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::Batch;

/// A boxed future, so `Exporter` stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A delivery target: a postback URL, a CSV folder, an FTP server, a plugin.
pub trait Exporter: Send + Sync {
    /// Delivers a batch of records; returns one outcome per record, in order.
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Vec<Outcome>>;

    /// Shows exactly what [`Exporter::deliver`] would send for this batch, without sending;
    /// secret fields appear masked.
    fn preview(&self, batch: &Batch) -> String;

    /// Checks that the target can be reached and written to, delivering nothing, for
    /// `exporter check --connect`. Returns what was checked, or what failed. `None` when the
    /// target has nothing to check.
    fn probe(&self) -> Option<BoxFuture<'_, Result<String, String>>> {
        None
    }

    /// How the host should hand records to this target.
    fn batching(&self) -> Batching {
        Batching::Stream { max_in_flight: 16 }
    }
}

/// How a target takes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Each record is its own request; the host sends up to `max_in_flight` at once.
    Stream { max_in_flight: usize },
    /// Records are gathered and delivered together (one file per flush) every `interval`.
    Flush { interval: Duration },
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// The target accepted it.
    Delivered,
    /// The target already had it; counts as delivered.
    Duplicate,
    /// Not accepted this time; the host tries again later.
    Retry,
    /// Can never succeed as rendered; the host parks it as failed.
    Failed,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    /// The target's status code (HTTP status, FTP reply code), when it answered.
    #[serde(default)]
    pub status: Option<u16>,
    /// Why it failed, or a short excerpt of the target's answer.
    #[serde(default)]
    pub message: String,
    /// The target asked not to be called again before this much time.
    #[serde(default, with = "optional_secs")]
    pub retry_after: Option<Duration>,
}

impl Outcome {
    /// Accepted by the target.
    pub fn delivered(status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome::new(OutcomeKind::Delivered, status, message)
    }

    /// The target already had this record.
    pub fn duplicate(status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome::new(OutcomeKind::Duplicate, status, message)
    }

    /// Not accepted; try again later.
    pub fn retry(status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome::new(OutcomeKind::Retry, status, message)
    }

    /// Can never be accepted as rendered.
    pub fn failed(status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome::new(OutcomeKind::Failed, status, message)
    }

    /// Asks the host to wait at least `after` before the next attempt.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// True for delivered and duplicate.
    pub fn is_delivered(&self) -> bool {
        matches!(self.kind, OutcomeKind::Delivered | OutcomeKind::Duplicate)
    }

    fn new(kind: OutcomeKind, status: Option<u16>, message: impl Into<String>) -> Self {
        Outcome {
            kind,
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

mod optional_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        Ok(secs
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64))
    }
}
