//! The `#[repr(C)]` types and function signatures of the plugin ABI.

use std::ffi::c_void;
use std::marker::{PhantomData, PhantomPinned};

/// Bytes lent for the duration of one call. The borrower copies what it keeps.
///
/// `ptr` is null only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ByteView {
    pub ptr: *const u8,
    pub len: usize,
}

impl ByteView {
    /// Lends `bytes`; the view must not outlive them.
    pub fn new(bytes: &[u8]) -> Self {
        ByteView {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// A view of static bytes, usable in a `static` descriptor.
    pub const fn from_static(text: &'static str) -> Self {
        ByteView {
            ptr: text.as_ptr(),
            len: text.len(),
        }
    }

    /// The bytes viewed.
    ///
    /// # Safety
    ///
    /// `ptr` must point to `len` initialized bytes that stay valid and unchanged for `'a`
    /// (or be null with `len` 0).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr` points to `len` valid bytes for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Bytes allocated by a plugin and handed to the host, which gives them back to the plugin's
/// `free_buffer` once it has copied them. The parts of a `Vec<u8>` of the plugin.
#[repr(C)]
#[derive(Debug)]
pub struct ByteBuffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub capacity: usize,
}

impl ByteBuffer {
    /// No bytes; freeing it does nothing.
    pub const EMPTY: ByteBuffer = ByteBuffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        capacity: 0,
    };

    /// The bytes of the buffer, without taking ownership.
    ///
    /// # Safety
    ///
    /// The buffer must have been filled by a plugin and not been freed yet.
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: a filled buffer is the parts of a live `Vec<u8>` of `len` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// An instance of a plugin's target, opaque to the host.
#[repr(C)]
pub struct InstanceHandle {
    _opaque: [u8; 0],
    _not_send_sync_or_unpin: PhantomData<(*mut u8, PhantomPinned)>,
}

/// What a call answered. Any value other than the constants here is treated as a failure.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// Done; the reply holds the result.
    pub const OK: Status = Status(0);
    /// `create` only: the settings are wrong; the reply is a [`wire::SettingsFault`] in JSON.
    ///
    /// [`wire::SettingsFault`]: super::wire::SettingsFault
    pub const SETTINGS: Status = Status(1);
    /// The plugin panicked; the reply is the panic message. The instance must be destroyed.
    pub const PANICKED: Status = Status(2);
    /// The plugin could not read what the host sent, or could not set itself up; the reply
    /// says why.
    pub const FAILED: Status = Status(3);
}

/// What the host gives a plugin at `create`. It and everything it points to stay valid for the
/// life of the process, so a plugin may keep a copy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostContext {
    /// Passed back as the first argument of `log` and `log_enabled`.
    pub log_context: *const c_void,
    /// Writes one log line of the plugin into the host's log. Callable from any thread.
    pub log: Option<LogFn>,
    /// True when the host records lines of this [`level`](super::level) at all, so the plugin
    /// can skip formatting the others. Callable from any thread.
    pub log_enabled: Option<LogEnabledFn>,
}

// SAFETY: a `HostContext` is plain data; the host guarantees that `log` may be called from any
// thread with `log_context`, which the host never frees or mutates.
unsafe impl Send for HostContext {}
// SAFETY: as above; nothing in it is ever written after it is made.
unsafe impl Sync for HostContext {}

/// The first fields of every descriptor, the same in every major version.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeader {
    /// [`MAGIC`](super::MAGIC).
    pub magic: [u8; 8],
    /// [`ABI_MAJOR`](super::ABI_MAJOR) of the `exporter-core` the plugin was built with.
    pub abi_major: u16,
    /// [`ABI_MINOR`](super::ABI_MINOR) of the `exporter-core` the plugin was built with.
    pub abi_minor: u16,
    /// `size_of::<PluginDescriptor>()` as the plugin was built, header included.
    pub size: u32,
}

/// What a plugin's entry symbol returns: who it is and its functions.
#[repr(C)]
#[derive(Debug)]
pub struct PluginDescriptor {
    pub header: DescriptorHeader,
    /// [`FLAG_PANIC_UNWIND`](super::FLAG_PANIC_UNWIND); unknown bits are ignored.
    pub flags: u64,
    /// The export type a profile's `type` names, UTF-8 (`jsonl`).
    pub name: ByteView,
    /// The plugin's own version, UTF-8 (`0.1.0`).
    pub version: ByteView,
    pub create: Option<CreateFn>,
    pub deliver: Option<DeliverFn>,
    pub preview: Option<PreviewFn>,
    pub probe: Option<ProbeFn>,
    pub free_buffer: Option<FreeBufferFn>,
    pub destroy: Option<DestroyFn>,
}

// SAFETY: a descriptor is immutable static data: its pointers lead to static bytes and to
// functions, which any thread may read and call.
unsafe impl Sync for PluginDescriptor {}
// SAFETY: as above.
unsafe impl Send for PluginDescriptor {}

/// The entry symbol's type.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// Makes an instance from a [`wire::CreateRequest`](super::wire::CreateRequest) in JSON.
///
/// On [`Status::OK`] writes the instance to `instance` and a
/// [`wire::InstanceInfo`](super::wire::InstanceInfo) in JSON to `reply`. `host` stays valid
/// for the life of the process. `timeout_ms` is how long the host waits.
pub type CreateFn = unsafe extern "C" fn(
    request: ByteView,
    host: *const HostContext,
    timeout_ms: u64,
    instance: *mut *mut InstanceHandle,
    reply: *mut ByteBuffer,
) -> Status;

/// Delivers a [`Batch`](crate::Batch) in JSON; on [`Status::OK`] the reply is a JSON array
/// with one [`Outcome`](crate::Outcome) per record, in order. Gives up after `timeout_ms`.
pub type DeliverFn = unsafe extern "C" fn(
    instance: *const InstanceHandle,
    batch: ByteView,
    timeout_ms: u64,
    reply: *mut ByteBuffer,
) -> Status;

/// Shows what `deliver` would send for a [`Batch`](crate::Batch) in JSON, as text, without
/// sending. No I/O.
pub type PreviewFn = unsafe extern "C" fn(
    instance: *const InstanceHandle,
    batch: ByteView,
    reply: *mut ByteBuffer,
) -> Status;

/// Checks that the target can be reached; the reply is a
/// [`wire::ProbeReport`](super::wire::ProbeReport) in JSON.
pub type ProbeFn = unsafe extern "C" fn(
    instance: *const InstanceHandle,
    timeout_ms: u64,
    reply: *mut ByteBuffer,
) -> Status;

/// Frees a buffer the plugin wrote into a reply slot.
pub type FreeBufferFn = unsafe extern "C" fn(buffer: ByteBuffer);

/// Frees an instance made by `create`.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut InstanceHandle);

/// Writes one log line: a [`level`](super::level), the plugin's module path, the text.
pub type LogFn =
    unsafe extern "C" fn(context: *const c_void, level: u32, target: ByteView, message: ByteView);

/// Whether the host records a [`level`](super::level).
pub type LogEnabledFn = unsafe extern "C" fn(context: *const c_void, level: u32) -> bool;
