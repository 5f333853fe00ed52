//! The host side of log forwarding: plugins write their log lines through [`forward`], which
//! records them in the host's tracing with the plugin's type and, when the line comes from a
//! call the host made, the profile. The config's secrets are masked in them, as in every log
//! line: a plugin may quote a setting it was given.

use std::cell::RefCell;
use std::ffi::c_void;
use std::panic::{self, AssertUnwindSafe};
use std::sync::RwLock;

use exporter_core::Redactor;
use exporter_core::abi::{ByteView, HostContext, level};
use tracing::level_filters::LevelFilter;
use tracing::{debug, error, info, trace, warn};

/// Who a library's log lines come from.
#[derive(Debug)]
pub struct LogSource {
    /// The plugin's type name.
    pub plugin: String,
}

/// The secrets of the loaded config, masked in every forwarded line.
static SECRETS: RwLock<Option<Redactor>> = RwLock::new(None);

/// Masks the secrets `redactor` knows in plugin log lines from now on.
pub fn mask_in_logs(redactor: &Redactor) {
    *SECRETS.write().unwrap_or_else(|p| p.into_inner()) = Some(redactor.clone());
}

fn masked(text: &str) -> String {
    match &*SECRETS.read().unwrap_or_else(|p| p.into_inner()) {
        Some(redactor) => redactor.redact(text).into_owned(),
        None => text.to_owned(),
    }
}

thread_local! {
    /// The profile whose call this thread is running, for lines logged during it.
    static PROFILE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The context a library's `create` calls get; leaked, because a plugin may keep it for good.
pub fn host_context(source: LogSource) -> &'static HostContext {
    let source: &'static LogSource = Box::leak(Box::new(source));
    Box::leak(Box::new(HostContext {
        log_context: std::ptr::from_ref(source).cast(),
        log: Some(forward),
        log_enabled: Some(enabled),
    }))
}

/// Marks this thread as running a call for `profile` until dropped.
pub struct CallScope {
    before: Option<String>,
}

impl CallScope {
    pub fn enter(profile: &str) -> CallScope {
        let before = PROFILE.replace(Some(profile.to_owned()));
        CallScope { before }
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        PROFILE.set(self.before.take());
    }
}

/// The ABI's level number as a filter level; `None` for numbers the ABI does not define.
fn filter(number: u32) -> Option<LevelFilter> {
    match number {
        level::ERROR => Some(LevelFilter::ERROR),
        level::WARN => Some(LevelFilter::WARN),
        level::INFO => Some(LevelFilter::INFO),
        level::DEBUG => Some(LevelFilter::DEBUG),
        level::TRACE => Some(LevelFilter::TRACE),
        _ => None,
    }
}

unsafe extern "C" fn enabled(_context: *const c_void, number: u32) -> bool {
    filter(number).is_some_and(|wanted| wanted <= LevelFilter::current())
}

unsafe extern "C" fn forward(
    context: *const c_void,
    number: u32,
    target: ByteView,
    message: ByteView,
) {
    // SAFETY: the plugin lends both texts for the duration of this call.
    let (target, message) = unsafe { (target.as_slice(), message.as_slice()) };
    // SAFETY: `context` is the `LogSource` leaked by `host_context` for this library, or null.
    let source = unsafe { context.cast::<LogSource>().as_ref() };
    // A panic must not unwind into the plugin; a line that cannot be written is dropped.
    let _ = panic::catch_unwind(AssertUnwindSafe(|| {
        let plugin = source.map_or("?", |s| s.plugin.as_str());
        let target = String::from_utf8_lossy(target);
        let message = masked(&String::from_utf8_lossy(message));
        PROFILE.with_borrow(|profile| {
            let profile = profile.as_deref();
            match filter(number) {
                Some(LevelFilter::ERROR) => {
                    error!(plugin, profile, module = %target, "{message}")
                }
                Some(LevelFilter::WARN) => warn!(plugin, profile, module = %target, "{message}"),
                Some(LevelFilter::INFO) => info!(plugin, profile, module = %target, "{message}"),
                Some(LevelFilter::DEBUG) => {
                    debug!(plugin, profile, module = %target, "{message}")
                }
                _ => trace!(plugin, profile, module = %target, "{message}"),
            }
        });
    }));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn masks_the_configs_secrets_in_forwarded_lines() {
        let mut redactor = Redactor::default();
        redactor.add("sk-live-8c1f77e2");
        mask_in_logs(&redactor);
        let host = host_context(LogSource {
            plugin: "leaky".into(),
        });
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || WriteTo(sink.clone()))
            .finish();
        let line = "connecting with key sk-live-8c1f77e2";
        tracing::subscriber::with_default(subscriber, || {
            let (target, message) = (
                ByteView::new(b"leaky::client"),
                ByteView::new(line.as_bytes()),
            );
            // SAFETY: the context and function come from `host_context`; the views outlive
            // the call.
            unsafe { (host.log.unwrap())(host.log_context, level::WARN, target, message) };
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert!(text.contains("connecting with key ***"), "{text}");
        assert!(text.contains("plugin=\"leaky\""), "{text}");
        assert!(!text.contains("sk-live"), "{text}");
    }

    struct WriteTo(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for WriteTo {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
