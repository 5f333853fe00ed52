//! One instance of a plugin's target: the raw handle `create` made, and the calls on it. Every
//! call into plugin code made after loading is in this file.

use std::ptr::NonNull;
use std::time::Duration;

use exporter_core::abi::wire::{CreateRequest, InstanceInfo, ProbeReport, SettingsFault};
use exporter_core::abi::{ByteBuffer, ByteView, InstanceHandle, Status};
use exporter_core::{Batching, Outcome, SettingsError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{CallError, CreateError};
use super::library::PluginLibrary;

/// An instance `create` made; `destroy`ed when dropped.
#[derive(Debug)]
pub struct Instance {
    library: &'static PluginLibrary,
    handle: NonNull<InstanceHandle>,
    batching: Batching,
    probe: bool,
}

// SAFETY: the ABI requires an instance to accept calls from any thread, several at once (the
// plugin side wraps a `Send + Sync` exporter). The handle is only freed by `Drop`, which runs
// once, after every call holding a reference has returned.
unsafe impl Send for Instance {}
// SAFETY: as above; `&Instance` only makes calls the ABI allows concurrently.
unsafe impl Sync for Instance {}

impl Instance {
    /// Makes an instance for `profile` from its target keys.
    pub fn create(
        library: &'static PluginLibrary,
        profile: &str,
        settings: &Map<String, Value>,
        timeout: Duration,
    ) -> Result<Instance, CreateError> {
        let request = CreateRequest {
            profile: profile.to_owned(),
            settings: settings.clone(),
        };
        let request = serde_json::to_vec(&request).expect("a JSON map always serializes");
        let mut handle = std::ptr::null_mut();
        let mut reply = ByteBuffer::EMPTY;
        // SAFETY: `create` is a checked function of a loaded library; the request is lent for
        // the call, the host context lives for the process, and both slots are writable.
        let status = unsafe {
            (library.functions.create)(
                ByteView::new(&request),
                library.host,
                millis(timeout),
                &mut handle,
                &mut reply,
            )
        };
        let reply = library.take(reply);
        let handle = NonNull::new(handle);
        match status {
            Status::OK => {
                let handle = handle.ok_or_else(|| {
                    CreateError::Failed("create succeeded but made no instance".into())
                })?;
                Instance::with_info(library, handle, &reply)
            }
            Status::SETTINGS => Err(settings_error(&reply)),
            Status::PANICKED => Err(CreateError::Panicked(text(reply))),
            _ => Err(CreateError::Failed(text(reply))),
        }
    }

    /// Takes ownership of `handle` and reads the instance's description.
    fn with_info(
        library: &'static PluginLibrary,
        handle: NonNull<InstanceHandle>,
        reply: &[u8],
    ) -> Result<Instance, CreateError> {
        let mut instance = Instance {
            library,
            handle,
            batching: Batching::Stream { max_in_flight: 1 },
            probe: false,
        };
        // From here on, dropping `instance` destroys the handle.
        let info: InstanceInfo = parse(reply).map_err(CreateError::Failed)?;
        instance.batching = info
            .batching
            .to_batching()
            .map_err(|reason| CreateError::Failed(format!("the instance {reason}")))?;
        instance.probe = info.probe;
        Ok(instance)
    }

    /// How the host should hand records to this instance.
    pub fn batching(&self) -> Batching {
        self.batching
    }

    /// True when the target has something to check.
    pub fn has_probe(&self) -> bool {
        self.probe
    }

    /// Delivers a batch given as JSON; one outcome per record. Blocks for up to `timeout`.
    pub fn deliver(&self, batch: &[u8], timeout: Duration) -> Result<Vec<Outcome>, CallError> {
        let mut reply = ByteBuffer::EMPTY;
        // SAFETY: a checked function of a loaded library, called with a live instance, a
        // batch lent for the call and a writable reply slot.
        let status = unsafe {
            (self.library.functions.deliver)(
                self.handle.as_ptr(),
                ByteView::new(batch),
                millis(timeout),
                &mut reply,
            )
        };
        self.answer(status, reply, parse)
    }

    /// What the target would send for a batch given as JSON.
    pub fn preview(&self, batch: &[u8]) -> Result<String, CallError> {
        let mut reply = ByteBuffer::EMPTY;
        // SAFETY: as in `deliver`.
        let status = unsafe {
            (self.library.functions.preview)(self.handle.as_ptr(), ByteView::new(batch), &mut reply)
        };
        self.answer(status, reply, |bytes| Ok(text(bytes.to_vec())))
    }

    /// Checks the target. Blocks for up to `timeout`.
    pub fn probe(&self, timeout: Duration) -> Result<ProbeReport, CallError> {
        let mut reply = ByteBuffer::EMPTY;
        // SAFETY: a checked function of a loaded library, called with a live instance and a
        // writable reply slot.
        let status = unsafe {
            (self.library.functions.probe)(self.handle.as_ptr(), millis(timeout), &mut reply)
        };
        self.answer(status, reply, parse)
    }

    /// Frees the reply and turns the status into the result.
    fn answer<T>(
        &self,
        status: Status,
        reply: ByteBuffer,
        read: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, CallError> {
        let reply = self.library.take(reply);
        match status {
            Status::OK => read(&reply).map_err(CallError::Failed),
            Status::PANICKED => Err(CallError::Panicked(text(reply))),
            _ => Err(CallError::Failed(text(reply))),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the handle came from this library's `create`, and this is its only
        // `destroy`: an `Instance` is dropped once, when no call holds it.
        unsafe { (self.library.functions.destroy)(self.handle.as_ptr()) };
    }
}

fn settings_error(reply: &[u8]) -> CreateError {
    match parse::<SettingsFault>(reply) {
        Ok(fault) => CreateError::Settings(SettingsError::from(fault)),
        Err(message) => CreateError::Failed(message),
    }
}

fn parse<T: DeserializeOwned>(reply: &[u8]) -> Result<T, String> {
    serde_json::from_slice(reply).map_err(|error| format!("unreadable answer: {error}"))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A timeout in whole milliseconds, at least 1 so a plugin never sees "no time at all".
fn millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
