//! [`exporter_plugin!`](crate::exporter_plugin): the one line that makes a crate a plugin.

/// Exports a target as a plugin the `exporter` binary can load: writes the entry symbol
/// `exporter_plugin_v1` and the descriptor with every `extern "C"` function, so the crate
/// implements [`Exporter`](crate::Exporter) like a built-in target and has no `unsafe` of its
/// own.
///
/// `name` is the export type a profile's `type` names; `build` has the signature of a
/// built-in target's `build`. The crate is built as a `cdylib` and depends on `exporter-core`
/// with its `plugin` feature:
///
/// ```toml
/// [lib]
/// crate-type = ["cdylib"]
///
/// [dependencies]
/// exporter-core = { version = "0.1", features = ["plugin"] }
/// ```
///
/// ```ignore
/// exporter_core::exporter_plugin! {
///     name: "jsonl",
///     version: env!("CARGO_PKG_VERSION"),
///     build: crate::build,
/// }
/// ```
///
/// A crate calls it once: two calls in one library would export the symbol twice.
#[cfg(feature = "plugin")]
#[macro_export]
macro_rules! exporter_plugin {
    (name: $name:expr, version: $version:expr, build: $build:path $(,)?) => {
        #[doc(hidden)]
        pub struct ExporterPluginOfThisCrate;

        impl $crate::abi::plugin::Plugin for ExporterPluginOfThisCrate {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;

            fn build(
                profile: &str,
                settings: &$crate::abi::plugin::Settings,
            ) -> ::std::result::Result<
                ::std::boxed::Box<dyn $crate::Exporter>,
                $crate::SettingsError,
            > {
                $build(profile, settings)
            }
        }

        /// The plugin's entry symbol, called by the `exporter` binary when it loads the
        /// library.
        #[unsafe(no_mangle)]
        pub extern "C" fn exporter_plugin_v1() -> *const $crate::abi::PluginDescriptor {
            static DESCRIPTOR: $crate::abi::PluginDescriptor =
                $crate::abi::plugin::descriptor::<ExporterPluginOfThisCrate>();
            $crate::abi::plugin::entry(&DESCRIPTOR)
        }
    };
}

/// Without the `plugin` feature there is no plugin side to export; say how to get it.
#[cfg(not(feature = "plugin"))]
#[macro_export]
macro_rules! exporter_plugin {
    ($($anything:tt)*) => {
        ::std::compile_error!(
            "exporter_plugin! needs the `plugin` feature of exporter-core: \
             exporter-core = { version = \"0.1\", features = [\"plugin\"] }"
        );
    };
}
