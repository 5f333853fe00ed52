//! [`PluginExporter`]: a plugin's target behind the [`Exporter`] trait, so the worker, preview
//! and check treat it like a built-in one.
//!
//! Calls run on tokio's blocking pool, at most [`CALL_SLOTS`] per profile at a time. Each gets
//! a deadline; the host stops waiting [`GRACE`] after it and retries the batch's records, and
//! a call that never returns keeps its slot until it does. After a panic or an abandoned call
//! the instance is retired: the next call creates a new one, and the old one is destroyed
//! when its last call has returned.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use exporter_core::abi::wire::ProbeReport;
use exporter_core::{Batch, Batching, BoxFuture, Exporter, Outcome, SettingsError};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{error, warn};

use super::error::{CallError, CreateError};
use super::instance::Instance;
use super::library::PluginLibrary;
use super::log::CallScope;

/// How long one delivery may take. Well inside the worker's lease on the deliveries, so a
/// late answer is recorded before anyone else may claim them.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the host waits past the deadline for the plugin's own answer.
pub const GRACE: Duration = Duration::from_secs(2);

/// Calls in flight per profile, abandoned ones included; past that, batches are retried
/// without calling the plugin until a slot frees up.
pub const CALL_SLOTS: usize = 4;

/// The time a plugin's `create` is told it has; it reads settings and does no I/O.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// One profile's target provided by a plugin.
pub struct PluginExporter {
    shared: Arc<Shared>,
    batching: Batching,
    probe: bool,
}

/// What calls on the blocking pool share with the exporter.
struct Shared {
    library: &'static PluginLibrary,
    profile: String,
    /// The target keys, kept to create a new instance after a panic. May hold secrets; never
    /// logged.
    settings: Map<String, Value>,
    slot: Mutex<Slot>,
    calls: Arc<Semaphore>,
    call_timeout: Duration,
}

/// The instance in use, and a number that changes whenever it is retired.
struct Slot {
    generation: u64,
    instance: Option<Arc<Instance>>,
}

impl PluginExporter {
    /// Creates the profile's first instance, which checks the settings.
    pub fn build(
        library: &'static PluginLibrary,
        profile: &str,
        settings: &Map<String, Value>,
    ) -> Result<Self, SettingsError> {
        let instance = Instance::create(library, profile, settings, CREATE_TIMEOUT)
            .map_err(|error| settings_error(library, error))?;
        let exporter = PluginExporter {
            batching: instance.batching(),
            probe: instance.has_probe(),
            shared: Arc::new(Shared {
                library,
                profile: profile.to_owned(),
                settings: settings.clone(),
                slot: Mutex::new(Slot {
                    generation: 0,
                    instance: Some(Arc::new(instance)),
                }),
                calls: Arc::new(Semaphore::new(CALL_SLOTS)),
                call_timeout: CALL_TIMEOUT,
            }),
        };
        Ok(exporter)
    }

    /// The same target with another deadline per call, for tests of slow plugins.
    #[cfg(test)]
    pub fn with_call_timeout(self, call_timeout: Duration) -> Self {
        let shared = Arc::into_inner(self.shared).expect("not shared yet");
        PluginExporter {
            shared: Arc::new(Shared {
                call_timeout,
                ..shared
            }),
            ..self
        }
    }
}

/// The error a profile's config gets when its first instance cannot be made.
fn settings_error(library: &PluginLibrary, error: CreateError) -> SettingsError {
    let plugin = format!("the `{}` plugin ({})", library.name, library.path.display());
    match error {
        CreateError::Settings(error) => error,
        CreateError::Panicked(message) => SettingsError::invalid(
            "type",
            format!("{plugin} panicked while reading the settings: {message}"),
        ),
        CreateError::Failed(message) => SettingsError::invalid(
            "type",
            format!("{plugin} failed while reading the settings: {message}"),
        ),
    }
}

impl Exporter for PluginExporter {
    fn deliver<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let count = batch.records.len();
            if count == 0 {
                return Vec::new();
            }
            match self.shared.clone().deliver(batch).await {
                Ok(outcomes) if outcomes.len() == count => outcomes,
                Ok(outcomes) => {
                    let message = format!(
                        "the plugin answered {} outcomes for {count} records",
                        outcomes.len()
                    );
                    vec![Outcome::retry(None, message); count]
                }
                Err(message) => vec![Outcome::retry(None, message); count],
            }
        })
    }

    fn preview(&self, batch: &Batch) -> String {
        match self.shared.preview(batch) {
            Ok(text) => text,
            Err(message) => format!("the plugin cannot show a preview: {message}\n"),
        }
    }

    fn probe(&self) -> Option<BoxFuture<'_, Result<String, String>>> {
        if !self.probe {
            return None;
        }
        let shared = self.shared.clone();
        Some(Box::pin(async move {
            match shared.probe().await {
                Ok(report) => report
                    .into_result()
                    .unwrap_or_else(|| Ok("nothing to check".to_owned())),
                Err(message) => Err(message),
            }
        }))
    }

    fn batching(&self) -> Batching {
        self.batching
    }
}

impl Shared {
    /// Delivers on the blocking pool, waiting no longer than the deadline and [`GRACE`].
    async fn deliver(self: Arc<Self>, batch: &Batch) -> Result<Vec<Outcome>, String> {
        let json = serde_json::to_vec(batch).expect("a batch always serializes");
        self.call(move |shared, instance, remaining| {
            shared.answer(instance.deliver(&json, remaining), instance, "deliver")
        })
        .await
    }

    async fn probe(self: Arc<Self>) -> Result<ProbeReport, String> {
        self.call(|shared, instance, remaining| {
            shared.answer(instance.probe(remaining), instance, "probe")
        })
        .await
    }

    /// Runs `work` with the current instance on the blocking pool, within the deadline.
    async fn call<T: Send + 'static>(
        self: Arc<Self>,
        work: impl FnOnce(&Shared, &Arc<Instance>, Duration) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let deadline = Instant::now() + self.call_timeout;
        let permit = tokio::time::timeout_at(deadline, self.calls.clone().acquire_owned())
            .await
            .map_err(|_| {
                format!(
                    "the plugin still runs {CALL_SLOTS} calls past their deadline; it is not \
                     called again until one returns"
                )
            })?
            .expect("the semaphore is never closed");
        let generation = self.generation();
        let shared = self.clone();
        let call = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _scope = CallScope::enter(&shared.profile);
            let instance = shared.instance()?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            work(&shared, &instance, remaining)
        });
        match tokio::time::timeout_at(deadline + GRACE, call).await {
            Ok(Ok(result)) => result,
            Ok(Err(failed)) => Err(format!("the call into the plugin failed: {failed}")),
            Err(_) => {
                let secs = self.call_timeout.as_secs_f64();
                warn!(
                    plugin = %self.library.name,
                    profile = %self.profile,
                    timeout_secs = secs,
                    "the plugin did not answer in time; the call is abandoned and the instance \
                        replaced",
                );
                if let Some(old) = self.retire(generation) {
                    tokio::task::spawn_blocking(move || drop(old));
                }
                Err(format!(
                    "the plugin did not answer within {secs} s; the call was abandoned"
                ))
            }
        }
    }

    /// What the profile's records get from a call's result; a panic retires `instance`.
    fn answer<T>(
        &self,
        result: Result<T, CallError>,
        instance: &Arc<Instance>,
        call: &str,
    ) -> Result<T, String> {
        match result {
            Ok(value) => Ok(value),
            Err(CallError::Panicked(message)) => {
                error!(
                    plugin = %self.library.name,
                    profile = %self.profile,
                    call,
                    reason = %message,
                    "the plugin panicked; its instance is replaced and the records retried",
                );
                drop(self.retire_instance(instance));
                Err(format!("the plugin panicked: {message}"))
            }
            Err(CallError::Failed(message)) => Err(format!("the plugin failed: {message}")),
        }
    }

    /// Previews in the calling thread: a preview does no I/O.
    fn preview(&self, batch: &Batch) -> Result<String, String> {
        let json = serde_json::to_vec(batch).expect("a batch always serializes");
        let _scope = CallScope::enter(&self.profile);
        let instance = self.instance()?;
        self.answer(instance.preview(&json), &instance, "preview")
    }

    fn generation(&self) -> u64 {
        self.slot.lock().expect("plugin slot lock").generation
    }

    /// The instance in use, created first when the last one was retired. The slot's lock is
    /// never held while plugin code runs, so the async side never waits for a plugin.
    fn instance(&self) -> Result<Arc<Instance>, String> {
        if let Some(instance) = &self.slot.lock().expect("plugin slot lock").instance {
            return Ok(instance.clone());
        }
        let created = Instance::create(self.library, &self.profile, &self.settings, CREATE_TIMEOUT)
            .map_err(|error| {
                let reason = match error {
                    CreateError::Settings(error) => error.to_string(),
                    CreateError::Panicked(message) => format!("it panicked: {message}"),
                    CreateError::Failed(message) => message,
                };
                format!("cannot make a new instance of the plugin: {reason}")
            })?;
        let created = Arc::new(created);
        let mut slot = self.slot.lock().expect("plugin slot lock");
        let current = slot.instance.get_or_insert_with(|| created.clone()).clone();
        drop(slot);
        // When another call made one first, `created` is destroyed here, outside the lock.
        drop(created);
        Ok(current)
    }

    /// Takes `instance` out of use, unless that happened already.
    fn retire_instance(&self, instance: &Arc<Instance>) -> Option<Arc<Instance>> {
        let mut slot = self.slot.lock().expect("plugin slot lock");
        if !slot
            .instance
            .as_ref()
            .is_some_and(|i| Arc::ptr_eq(i, instance))
        {
            return None;
        }
        slot.generation += 1;
        slot.instance.take()
    }

    /// Takes the instance of `generation` out of use, unless that happened already. The
    /// caller drops what is returned away from the async runtime.
    fn retire(&self, generation: u64) -> Option<Arc<Instance>> {
        let mut slot = self.slot.lock().expect("plugin slot lock");
        if slot.generation != generation {
            return None;
        }
        slot.generation += 1;
        slot.instance.take()
    }
}
