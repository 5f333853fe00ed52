//! The plugin ABI: how the `exporter` binary loads an export target built as a shared library.
//!
//! Rust has no stable ABI, so the host and a plugin share only what C can describe: `#[repr(C)]`
//! structs of integers, pointers and byte buffers, and `extern "C"` functions. Everything richer
//! (settings, batches, outcomes, errors) crosses as UTF-8 JSON in byte buffers, in the shapes of
//! [`wire`] and of the serde forms of [`Batch`](crate::Batch) and [`Outcome`](crate::Outcome).
//!
//! A plugin author does not use this module directly: they implement the same
//! [`Exporter`](crate::Exporter) trait as the built-in targets and call
//! [`exporter_plugin!`](crate::exporter_plugin), which writes the entry symbol and every
//! `extern "C"` function (`plugin` feature).
//!
//! # Invariants
//!
//! - **One entry symbol, versioned by name.** A plugin exports [`ENTRY_SYMBOL`]
//!   (`exporter_plugin_v1`), an `extern "C" fn() -> *const PluginDescriptor` that returns the
//!   same pointer to a descriptor in static memory on every call. A change that breaks the
//!   layout or the meaning of anything here bumps [`ABI_MAJOR`] and with it the symbol's name,
//!   so a host never calls into a plugin built for another major version. Additions that old
//!   hosts can ignore (a field at the end of the descriptor, an optional JSON member, a flag)
//!   bump [`ABI_MINOR`].
//! - **The descriptor is checked before it is used.** The host reads the
//!   [`DescriptorHeader`] first and refuses the library unless the magic is [`MAGIC`], the
//!   major version is [`ABI_MAJOR`] and `size` covers the whole [`PluginDescriptor`] it knows;
//!   then every function pointer must be present and the name and version must be UTF-8. A
//!   plugin built with `panic = "abort"` (no [`FLAG_PANIC_UNWIND`]) is refused too: a panic in
//!   it would end the host.
//! - **Whoever allocates frees.** A [`ByteView`] lends the callee bytes for the duration of
//!   one call; the callee copies what it keeps. A [`ByteBuffer`] that a plugin writes into a
//!   reply slot belongs to the plugin's allocator: the host copies it and hands it back to the
//!   plugin's `free_buffer`, exactly once. An instance made by `create` is freed only by the
//!   same plugin's `destroy`, exactly once, when no call on it is running.
//! - **Panics never cross the boundary.** Every plugin function catches a panic and returns
//!   [`Status::PANICKED`] with the panic message as its reply. The instance may then be in any
//!   state: the host destroys it and creates a new one before delivering again. The host's log
//!   callback catches its own panics the same way.
//! - **Threads.** An instance may be called from any thread and from several threads at once
//!   (it wraps an `Exporter`, which is `Send + Sync`). The host calls plugins only from threads
//!   that are not running its async runtime, because a call blocks until it is done.
//! - **Deadlines.** `create`, `deliver` and `probe` get the milliseconds the host will wait.
//!   The plugin side stops a delivery or a check at the deadline and answers "retry" for its
//!   records; the host stops waiting shortly after it in any case and retries the records
//!   itself. `create` only reads settings and `preview` only renders: neither does I/O, and
//!   `preview` takes no deadline.
//! - **Libraries stay loaded.** The host never unloads a library, so pointers to the
//!   plugin's static data (the descriptor, its name and version) stay valid for the life of
//!   the process, and the host's [`HostContext`] is never freed either.

mod types;
pub mod wire;

#[cfg(feature = "plugin")]
mod log;
#[cfg(feature = "plugin")]
pub mod plugin;

mod macros;

pub use types::{
    ByteBuffer, ByteView, CreateFn, DeliverFn, DescriptorHeader, DestroyFn, EntryFn, FreeBufferFn,
    HostContext, InstanceHandle, LogEnabledFn, LogFn, PluginDescriptor, PreviewFn, ProbeFn, Status,
};

/// The major version of the ABI; part of the entry symbol's name.
pub const ABI_MAJOR: u16 = 1;

/// The minor version: additions a host of the same major version may ignore.
pub const ABI_MINOR: u16 = 0;

/// The name of the entry function every plugin exports.
pub const ENTRY_SYMBOL: &str = "exporter_plugin_v1";

/// The entry function's name for another major version, to tell an operator which version a
/// library was built for when it lacks [`ENTRY_SYMBOL`].
pub fn entry_symbol(major: u16) -> String {
    format!("exporter_plugin_v{major}")
}

/// The first bytes of every descriptor.
pub const MAGIC: [u8; 8] = *b"ORDEXPRT";

/// Set when the plugin was built with `panic = "unwind"`, so its panics can be caught.
pub const FLAG_PANIC_UNWIND: u64 = 1;

/// Log levels of [`HostContext::log`], most severe first.
pub mod level {
    /// Something went wrong and needs an operator.
    pub const ERROR: u32 = 1;
    /// Unexpected, nothing lost.
    pub const WARN: u32 = 2;
    /// Lifecycle.
    pub const INFO: u32 = 3;
    /// Per item.
    pub const DEBUG: u32 = 4;
    /// Everything.
    pub const TRACE: u32 = 5;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_symbol_carries_the_major_version() {
        assert_eq!(entry_symbol(ABI_MAJOR), ENTRY_SYMBOL);
        assert_eq!(entry_symbol(2), "exporter_plugin_v2");
    }
}
