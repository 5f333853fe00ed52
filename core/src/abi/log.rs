//! The plugin side of log forwarding: a tracing subscriber that sends each event of the
//! plugin, as one line of text, to the host's log callback.
//!
//! The subscriber is the global default of the library's own copy of `tracing`, installed by
//! the entry symbol; the callbacks come with the first `create`. Events before that, and
//! events at levels the host does not record, are dropped. Spans are not forwarded.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use super::{ByteView, HostContext, level};

/// The host's callback, from the first `create`.
static HOST: OnceLock<HostContext> = OnceLock::new();

thread_local! {
    /// True while this thread is inside the host's callback, so an event the host emits
    /// from there (in a test that runs host and plugin in one process) is not sent back.
    static FORWARDING: Cell<bool> = const { Cell::new(false) };
}

/// Remembers the host's callback; the first one given stays.
pub(super) fn attach(host: HostContext) {
    let _ = HOST.set(host);
}

/// Makes the forwarding subscriber the library's global default, once.
pub(super) fn install() {
    let _ = tracing::subscriber::set_global_default(Forwarder);
}

/// True when the host records `level`.
fn enabled(level: u32) -> bool {
    let Some(host) = HOST.get() else {
        return false;
    };
    match host.log_enabled {
        // SAFETY: the host keeps `log_enabled` and `log_context` valid for the life of the
        // process and accepts calls from any thread.
        Some(log_enabled) => unsafe { log_enabled(host.log_context, level) },
        None => host.log.is_some(),
    }
}

/// Sends one line to the host, when it records this level.
pub(super) fn write(level: u32, target: &str, message: &str) {
    let Some(host) = HOST.get() else {
        return;
    };
    let Some(log) = host.log else {
        return;
    };
    if !enabled(level) || FORWARDING.replace(true) {
        return;
    }
    let target = ByteView::new(target.as_bytes());
    let message = ByteView::new(message.as_bytes());
    // SAFETY: the host keeps `log` and `log_context` valid for the life of the process and
    // accepts calls from any thread; the views borrow strings that outlive the call.
    unsafe { log(host.log_context, level, target, message) };
    FORWARDING.set(false);
}

/// The ABI's number for a tracing level.
fn number(level: &Level) -> u32 {
    match *level {
        Level::ERROR => level::ERROR,
        Level::WARN => level::WARN,
        Level::INFO => level::INFO,
        Level::DEBUG => level::DEBUG,
        Level::TRACE => level::TRACE,
    }
}

/// The subscriber that forwards events to the host.
struct Forwarder;

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The host's level can change and is only known from the first `create`: ask at
        // every event.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && enabled(number(metadata.level()))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        let metadata = event.metadata();
        write(number(metadata.level()), metadata.target(), &line.finish());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event as one line: its message, then `name=value` for every other field.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }

    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if field.name() == "message" {
            let _ = self.message.write_fmt(value);
            return;
        }
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value}", field.name());
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_message_then_the_fields() {
        let line = Line {
            message: "file appended".into(),
            fields: "records=3 path=/tmp/x".into(),
        };
        assert_eq!(line.finish(), "file appended records=3 path=/tmp/x");
        let bare = Line {
            message: String::new(),
            fields: "records=3".into(),
        };
        assert_eq!(bare.finish(), "records=3");
    }
}
