//! Shared vocabulary of the order exporter: order events, triggers, routes, field mappings,
//! rendered records, delivery outcomes, the [`Exporter`] trait every target implements, and
//! the [`abi`] through which the binary loads targets built as shared libraries.
//!
//! This crate does no I/O of its own; the `exporter` binary owns the store, the scheduler and
//! the workers, and each target crate under `plugins/` owns its delivery.

pub mod abi;
pub mod error;
pub mod event;
pub mod exporter;
pub mod mapping;
pub mod record;
pub mod redact;
pub mod route;
pub mod settings;
pub mod trigger;

pub use error::{EventError, MappingError, SettingsError};
pub use event::OrderEvent;
pub use exporter::{Batching, BoxFuture, Exporter, Outcome, OutcomeKind};
pub use mapping::{Mapping, MappingSource};
pub use record::{Batch, Field, Record};
pub use redact::Redactor;
pub use route::Route;
pub use settings::{parse_settings, parse_settings_partial};
pub use trigger::Trigger;
