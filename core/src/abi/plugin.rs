//! The plugin side of the ABI: the `extern "C"` functions [`exporter_plugin!`] exports, written
//! once here for every plugin.
//!
//! Each instance owns its [`Exporter`] and a tokio current-thread runtime, started at the
//! first call that needs one, on which `deliver` and `probe` run their futures with
//! `block_on`. The host calls from its blocking threads, several at once if it likes; a
//! current-thread runtime lets each caller drive its own future.
//!
//! [`exporter_plugin!`]: crate::exporter_plugin

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::runtime::Runtime;

use super::wire::{CreateRequest, InstanceInfo, ProbeReport, SettingsFault};
use super::{
    ABI_MAJOR, ABI_MINOR, ByteBuffer, ByteView, DescriptorHeader, FLAG_PANIC_UNWIND, HostContext,
    InstanceHandle, MAGIC, PluginDescriptor, Status, log,
};
use crate::error::SettingsError;
use crate::exporter::{Exporter, Outcome};
use crate::record::Batch;

/// A profile's target keys, as `build` gets them.
pub type Settings = Map<String, Value>;

/// A target built as a plugin: its type name, version and builder. [`exporter_plugin!`]
/// implements it from the arguments it is given.
///
/// [`exporter_plugin!`]: crate::exporter_plugin
pub trait Plugin: 'static {
    /// The export type a profile's `type` names.
    const NAME: &'static str;
    /// The plugin's version, shown by `exporter plugins`.
    const VERSION: &'static str;

    /// Checks a profile's target keys and builds its exporter, as a built-in target's `build`
    /// does. Does no I/O.
    fn build(profile: &str, settings: &Settings) -> Result<Box<dyn Exporter>, SettingsError>;
}

/// The descriptor of plugin `P`, for a `static` in the plugin (or in a test that calls a
/// plugin in-process).
pub const fn descriptor<P: Plugin>() -> PluginDescriptor {
    PluginDescriptor {
        header: DescriptorHeader {
            magic: MAGIC,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            size: size_of::<PluginDescriptor>() as u32,
        },
        flags: if cfg!(panic = "unwind") {
            FLAG_PANIC_UNWIND
        } else {
            0
        },
        name: ByteView::from_static(P::NAME),
        version: ByteView::from_static(P::VERSION),
        create: Some(create::<P>),
        deliver: Some(deliver),
        preview: Some(preview),
        probe: Some(probe),
        free_buffer: Some(free_buffer),
        destroy: Some(destroy),
    }
}

/// The body of the entry symbol: sets up the library once (its log lines and panic reports go
/// to the host from then on) and returns the descriptor.
///
/// Only a library's entry symbol calls this: it installs a global tracing subscriber and a
/// panic hook, which in a shared library belong to the library's own copy of `tracing` and
/// `std`.
pub fn entry(descriptor: &'static PluginDescriptor) -> *const PluginDescriptor {
    static SETUP: Once = Once::new();
    SETUP.call_once(|| {
        log::install();
        panic::set_hook(Box::new(note_panic));
    });
    descriptor
}

/// One target of one profile, as the host holds it.
struct Instance {
    exporter: Box<dyn Exporter>,
    runtime: OnceLock<Runtime>,
}

impl Instance {
    /// The instance's runtime, started at the first call that needs it.
    fn runtime(&self) -> Result<&Runtime, Failure> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Failure::failed(format!("cannot start a runtime: {error}")))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }

    /// Drops the exporter inside its runtime, then lets the runtime go without waiting for
    /// blocking work still running on it.
    fn close(self) {
        let Instance { exporter, runtime } = self;
        match runtime.into_inner() {
            Some(runtime) => {
                let entered = runtime.enter();
                drop(exporter);
                drop(entered);
                runtime.shutdown_background();
            }
            None => drop(exporter),
        }
    }
}

/// Why a call did not produce its result: the status and the reply to send instead.
struct Failure {
    status: Status,
    reply: Vec<u8>,
}

impl Failure {
    fn failed(message: impl Into<String>) -> Self {
        Failure {
            status: Status::FAILED,
            reply: message.into().into_bytes(),
        }
    }
}

fn json(value: &impl Serialize) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(value)
        .map_err(|error| Failure::failed(format!("cannot write JSON: {error}")))
}

unsafe extern "C" fn create<P: Plugin>(
    request: ByteView,
    host: *const HostContext,
    _timeout_ms: u64,
    instance: *mut *mut InstanceHandle,
    reply: *mut ByteBuffer,
) -> Status {
    // SAFETY: the host lends the request's bytes for this call.
    let request = unsafe { request.as_slice() };
    // SAFETY: the host context is valid for the life of the process, or null.
    let host = unsafe { host.as_ref() }.copied();
    let answer = guarded(|| {
        if let Some(host) = host {
            log::attach(host);
        }
        if instance.is_null() {
            return Err(Failure::failed("create was given no instance slot"));
        }
        let request: CreateRequest = serde_json::from_slice(request)
            .map_err(|error| Failure::failed(format!("cannot read the settings: {error}")))?;
        let exporter = P::build(&request.profile, &request.settings).map_err(settings_failure)?;
        let info = json(&InstanceInfo {
            batching: exporter.batching().into(),
            probe: exporter.probe().is_some(),
        })?;
        let made = Box::into_raw(Box::new(Instance {
            exporter,
            runtime: OnceLock::new(),
        }));
        // SAFETY: `instance` is the host's slot for the new instance, checked non-null above.
        unsafe { instance.write(made.cast()) };
        Ok(info)
    });
    // SAFETY: `reply` is the host's reply slot for this call.
    unsafe { answer.send(reply) }
}

fn settings_failure(error: SettingsError) -> Failure {
    match json(&SettingsFault::from(error)) {
        Ok(reply) => Failure {
            status: Status::SETTINGS,
            reply,
        },
        Err(failure) => failure,
    }
}

unsafe extern "C" fn deliver(
    instance: *const InstanceHandle,
    batch: ByteView,
    timeout_ms: u64,
    reply: *mut ByteBuffer,
) -> Status {
    // SAFETY: the host lends the batch's bytes for this call.
    let batch = unsafe { batch.as_slice() };
    // SAFETY: `instance` was made by `create` and is not destroyed while a call runs.
    let instance = unsafe { instance.cast::<Instance>().as_ref() };
    let answer = guarded(|| {
        let instance = instance.ok_or_else(|| Failure::failed("deliver was given no instance"))?;
        let batch: Batch = serde_json::from_slice(batch)
            .map_err(|error| Failure::failed(format!("cannot read the batch: {error}")))?;
        let limit = Duration::from_millis(timeout_ms);
        // The timer belongs to the runtime: make it inside `block_on`.
        let work = async { tokio::time::timeout(limit, instance.exporter.deliver(&batch)).await };
        let outcomes = instance.runtime()?.block_on(work).unwrap_or_else(|_| {
            let message = format!("the plugin did not finish within {limit:?}");
            vec![Outcome::retry(None, message); batch.records.len()]
        });
        json(&outcomes)
    });
    // SAFETY: `reply` is the host's reply slot for this call.
    unsafe { answer.send(reply) }
}

unsafe extern "C" fn preview(
    instance: *const InstanceHandle,
    batch: ByteView,
    reply: *mut ByteBuffer,
) -> Status {
    // SAFETY: the host lends the batch's bytes for this call.
    let batch = unsafe { batch.as_slice() };
    // SAFETY: `instance` was made by `create` and is not destroyed while a call runs.
    let instance = unsafe { instance.cast::<Instance>().as_ref() };
    let answer = guarded(|| {
        let instance = instance.ok_or_else(|| Failure::failed("preview was given no instance"))?;
        let batch: Batch = serde_json::from_slice(batch)
            .map_err(|error| Failure::failed(format!("cannot read the batch: {error}")))?;
        Ok(instance.exporter.preview(&batch).into_bytes())
    });
    // SAFETY: `reply` is the host's reply slot for this call.
    unsafe { answer.send(reply) }
}

unsafe extern "C" fn probe(
    instance: *const InstanceHandle,
    timeout_ms: u64,
    reply: *mut ByteBuffer,
) -> Status {
    // SAFETY: `instance` was made by `create` and is not destroyed while a call runs.
    let instance = unsafe { instance.cast::<Instance>().as_ref() };
    let answer = guarded(|| {
        let instance = instance.ok_or_else(|| Failure::failed("probe was given no instance"))?;
        let Some(check) = instance.exporter.probe() else {
            return json(&ProbeReport::Nothing);
        };
        let limit = Duration::from_millis(timeout_ms);
        let work = async { tokio::time::timeout(limit, check).await };
        let report = match instance.runtime()?.block_on(work) {
            Ok(Ok(message)) => ProbeReport::Checked { message },
            Ok(Err(message)) => ProbeReport::Failed { message },
            Err(_) => ProbeReport::Failed {
                message: format!("the check did not finish within {limit:?}"),
            },
        };
        json(&report)
    });
    // SAFETY: `reply` is the host's reply slot for this call.
    unsafe { answer.send(reply) }
}

unsafe extern "C" fn free_buffer(buffer: ByteBuffer) {
    if buffer.ptr.is_null() {
        return;
    }
    // SAFETY: a non-null buffer holds the parts of a `Vec<u8>` that `put` gave away, and the
    // host frees each buffer once.
    drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.capacity) });
}

unsafe extern "C" fn destroy(instance: *mut InstanceHandle) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` came from `Box::into_raw` in `create`, and the host destroys it once,
    // when no call on it is running.
    let instance = unsafe { Box::from_raw(instance.cast::<Instance>()) };
    let closed = panic::catch_unwind(AssertUnwindSafe(move || instance.close()));
    if let Err(payload) = closed {
        let message = panic_text(payload);
        log::write(super::level::ERROR, module_path!(), &message);
    }
}

thread_local! {
    /// True while this thread runs a guarded call, whose caller reports a panic itself.
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic on this thread happened, noted by the panic hook.
    static PANIC_PLACE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `call`, catching a panic: the reply is the result, or why there is none.
fn guarded(call: impl FnOnce() -> Result<Vec<u8>, Failure>) -> Answer {
    PANIC_PLACE.set(None);
    let was_in_call = IN_CALL.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(call));
    IN_CALL.set(was_in_call);
    match result {
        Ok(Ok(reply)) => Answer {
            status: Status::OK,
            reply,
        },
        Ok(Err(Failure { status, reply })) => Answer { status, reply },
        Err(payload) => Answer {
            status: Status::PANICKED,
            reply: panic_text(payload).into_bytes(),
        },
    }
}

/// What a call answers: its status and the bytes for the reply slot.
struct Answer {
    status: Status,
    reply: Vec<u8>,
}

impl Answer {
    /// Writes the reply to the host's slot and returns the status.
    ///
    /// # Safety
    ///
    /// `reply` must be null or valid for a write of a [`ByteBuffer`].
    unsafe fn send(self, reply: *mut ByteBuffer) -> Status {
        // SAFETY: the caller guarantees `reply` is null or writable.
        unsafe { put(reply, self.reply) };
        self.status
    }
}

/// Hands `bytes` to the host through a reply slot; the host gives them back to
/// [`free_buffer`].
///
/// # Safety
///
/// `reply` must be null or valid for a write of a [`ByteBuffer`].
unsafe fn put(reply: *mut ByteBuffer, bytes: Vec<u8>) {
    if reply.is_null() {
        return;
    }
    let mut bytes = ManuallyDrop::new(bytes);
    let buffer = ByteBuffer {
        ptr: bytes.as_mut_ptr(),
        len: bytes.len(),
        capacity: bytes.capacity(),
    };
    // SAFETY: the caller guarantees `reply` is writable.
    unsafe { reply.write(buffer) };
}

/// The panic's message and, when the hook noted it, where it happened.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = payload_text(payload.as_ref())
        .unwrap_or("a panic without a message")
        .to_owned();
    // A payload whose drop panics would unwind from here; keep it instead.
    std::mem::forget(payload);
    match PANIC_PLACE.take() {
        Some(place) => format!("{message} (at {place})"),
        None => message,
    }
}

/// The text of a panic's payload, when it is text.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    match payload.downcast_ref::<&str>() {
        Some(text) => Some(text),
        None => payload.downcast_ref::<String>().map(String::as_str),
    }
}

/// The library's panic hook: notes where a panic happened for the call that catches it, and
/// sends a panic outside any call (on a thread of the plugin's own) to the host's log instead
/// of the process's stderr.
fn note_panic(info: &panic::PanicHookInfo<'_>) {
    let place = info.location().map(|at| at.to_string());
    if IN_CALL.get() {
        PANIC_PLACE.set(place);
        return;
    }
    let message = match (payload_text(info.payload()), place) {
        (Some(message), Some(place)) => format!("panicked at {place}: {message}"),
        (Some(message), None) => format!("panicked: {message}"),
        (None, Some(place)) => format!("panicked at {place}"),
        (None, None) => "panicked".to_owned(),
    };
    log::write(super::level::ERROR, module_path!(), &message);
}
