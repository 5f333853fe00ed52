//! Loading one plugin library: open it, find the entry symbol, check the descriptor.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use exporter_core::abi::{
    self, ABI_MAJOR, ByteBuffer, CreateFn, DeliverFn, DescriptorHeader, DestroyFn, EntryFn,
    FLAG_PANIC_UNWIND, FreeBufferFn, HostContext, MAGIC, PluginDescriptor, PreviewFn, ProbeFn,
};

use super::error::LoadError;
use super::log::{self, LogSource};

/// The major versions looked for when a library lacks this exporter's entry symbol, to tell
/// the operator which one it was built for.
const OTHER_MAJORS: std::ops::RangeInclusive<u16> = 0..=32;

/// The longest type name a plugin may have.
const MAX_NAME_CHARS: usize = 64;

/// A loaded, checked plugin library. Lives for the rest of the process: the library is never
/// unloaded.
#[derive(Debug)]
pub struct PluginLibrary {
    /// The file it was loaded from, as found in the plugins folder.
    pub path: PathBuf,
    /// The export type it provides.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The ABI version it was built with (the major is always [`ABI_MAJOR`]).
    pub abi_minor: u16,
    pub(super) functions: Functions,
    /// What every `create` gets; leaked, so it outlives every instance.
    pub(super) host: &'static HostContext,
}

/// The descriptor's functions, every one present.
#[derive(Debug, Clone, Copy)]
pub(super) struct Functions {
    pub create: CreateFn,
    pub deliver: DeliverFn,
    pub preview: PreviewFn,
    pub probe: ProbeFn,
    pub free_buffer: FreeBufferFn,
    pub destroy: DestroyFn,
}

impl PluginLibrary {
    /// The ABI version as text (`1.0`).
    pub fn abi_version(&self) -> String {
        format!("{ABI_MAJOR}.{}", self.abi_minor)
    }

    /// Copies a reply the plugin wrote and hands the buffer back to the plugin to free.
    pub(super) fn take(&self, reply: ByteBuffer) -> Vec<u8> {
        // SAFETY: `reply` is EMPTY or was filled by this plugin during the call that just
        // returned, and is freed below, once.
        let bytes = unsafe { reply.as_slice() }.to_vec();
        // SAFETY: as above; the buffer goes back to the allocator that made it.
        unsafe { (self.functions.free_buffer)(reply) };
        bytes
    }
}

/// Loads the plugin library at `path`, or says why it cannot be used.
///
/// Opening a library runs its initialization code, so only files of the operator's plugins
/// folder are ever passed here. Loading a file again (another config in the same process)
/// gets the same library from the system loader, which counts the opens; none is closed.
pub fn load(path: &Path) -> Result<&'static PluginLibrary, LoadError> {
    let library = open(path)?;
    let descriptor = describe(library)?;
    Ok(Box::leak(Box::new(check(path, descriptor)?)))
}

/// Opens the file and keeps it open for good.
fn open(path: &Path) -> Result<&'static libloading::Library, LoadError> {
    // SAFETY: loading a library runs its initializers; the operator put this file in the
    // plugins folder for the exporter to load, which is the trust the ABI relies on.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|error| LoadError::Open(error.to_string()))?;
    // Never unloaded: descriptors, names and functions stay valid for the process.
    Ok(Box::leak(Box::new(library)))
}

/// Calls the entry symbol and returns the descriptor, once its header has been checked.
fn describe(library: &'static libloading::Library) -> Result<&'static PluginDescriptor, LoadError> {
    // SAFETY: a plugin's `exporter_plugin_v1` is an `EntryFn` by the ABI's definition.
    let entry = unsafe { library.get::<EntryFn>(abi::ENTRY_SYMBOL) };
    let Ok(entry) = entry else {
        return Err(other_version(library)
            .map_or(LoadError::NoEntry, |found| LoadError::AbiVersion { found }));
    };
    // SAFETY: the entry function takes nothing and returns a pointer to static data.
    let descriptor = unsafe { entry() };
    // SAFETY: the pointer comes from the entry symbol of a library that is never unloaded.
    unsafe { checked_header(descriptor) }
}

/// The major version of another entry symbol the library exports, if any.
fn other_version(library: &libloading::Library) -> Option<u16> {
    OTHER_MAJORS
        .filter(|major| *major != ABI_MAJOR)
        .find(|major| {
            // SAFETY: only the symbol's presence is checked; it is never called.
            unsafe { library.get::<*const c_void>(abi::entry_symbol(*major)) }.is_ok()
        })
}

/// Reads the header at `descriptor` and, when it is one this exporter can use, returns the
/// whole descriptor.
///
/// # Safety
///
/// `descriptor` must be null or point to at least a [`DescriptorHeader`]'s worth of readable
/// static memory, and to a whole [`PluginDescriptor`] when that header says so.
pub(super) unsafe fn checked_header(
    descriptor: *const PluginDescriptor,
) -> Result<&'static PluginDescriptor, LoadError> {
    if descriptor.is_null() {
        return Err(bad("the entry function returned no descriptor"));
    }
    // SAFETY: the caller guarantees a header's worth of readable memory; it may be unaligned.
    let header = unsafe { descriptor.cast::<DescriptorHeader>().read_unaligned() };
    if header.magic != MAGIC {
        return Err(bad("it does not start with the descriptor's magic bytes"));
    }
    if header.abi_major != ABI_MAJOR {
        return Err(LoadError::AbiVersion {
            found: header.abi_major,
        });
    }
    let needed = size_of::<PluginDescriptor>();
    if (header.size as usize) < needed {
        let size = header.size;
        return Err(bad(format!(
            "it is {size} bytes, ABI {ABI_MAJOR} needs {needed}"
        )));
    }
    if !descriptor.is_aligned() {
        return Err(bad("it is not aligned"));
    }
    // SAFETY: the header promises a whole, aligned descriptor in static memory of a library
    // that is never unloaded.
    Ok(unsafe { &*descriptor })
}

/// Checks the descriptor's flags, functions and texts, and makes the library's host context.
pub(super) fn check(
    path: &Path,
    descriptor: &'static PluginDescriptor,
) -> Result<PluginLibrary, LoadError> {
    if descriptor.flags & FLAG_PANIC_UNWIND == 0 {
        return Err(LoadError::PanicAborts);
    }
    let functions = functions(descriptor)?;
    // SAFETY: the descriptor's texts are static bytes of a library that is never unloaded.
    let name = unsafe { descriptor.name.as_slice() };
    // SAFETY: as above.
    let version = unsafe { descriptor.version.as_slice() };
    let name = String::from_utf8(name.to_vec()).map_err(|_| bad("its name is not UTF-8"))?;
    check_name(&name)?;
    let version = String::from_utf8(version.to_vec())
        .map_err(|_| bad("its version is not UTF-8"))?
        .trim()
        .to_owned();
    let source = LogSource {
        plugin: name.clone(),
    };
    Ok(PluginLibrary {
        path: path.to_owned(),
        name,
        version: if version.is_empty() {
            "?".into()
        } else {
            version
        },
        abi_minor: descriptor.header.abi_minor,
        functions,
        host: log::host_context(source),
    })
}

fn functions(descriptor: &PluginDescriptor) -> Result<Functions, LoadError> {
    let missing = |name: &str| bad(format!("it has no `{name}` function"));
    Ok(Functions {
        create: descriptor.create.ok_or_else(|| missing("create"))?,
        deliver: descriptor.deliver.ok_or_else(|| missing("deliver"))?,
        preview: descriptor.preview.ok_or_else(|| missing("preview"))?,
        probe: descriptor.probe.ok_or_else(|| missing("probe"))?,
        free_buffer: descriptor
            .free_buffer
            .ok_or_else(|| missing("free_buffer"))?,
        destroy: descriptor.destroy.ok_or_else(|| missing("destroy"))?,
    })
}

/// A type name is what a profile's `type` holds: a lowercase ASCII letter, then letters,
/// digits, `-` and `_`.
fn check_name(name: &str) -> Result<(), LoadError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
    if first_ok && rest_ok && name.len() <= MAX_NAME_CHARS {
        return Ok(());
    }
    Err(bad(format!(
        "its type name {name:?} is not a lowercase letter followed by up to {} letters, digits, \
         `-` or `_`",
        MAX_NAME_CHARS - 1
    )))
}

fn bad(reason: impl Into<String>) -> LoadError {
    LoadError::BadDescriptor(reason.into())
}

/// A descriptor of this process, checked as a loaded library's would be: for tests that call
/// a plugin in-process through the ABI.
#[cfg(test)]
pub fn from_static(
    label: &str,
    descriptor: &'static PluginDescriptor,
) -> Result<&'static PluginLibrary, LoadError> {
    // SAFETY: a `&'static PluginDescriptor` is a whole descriptor in static memory.
    let descriptor = unsafe { checked_header(descriptor) }?;
    Ok(Box::leak(Box::new(check(Path::new(label), descriptor)?)))
}
