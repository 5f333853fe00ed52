//! The built-in `csv` target as a shared library: the same code, loaded through the plugin ABI.
//! A library of this type in the plugins folder is refused while the binary has `csv` built in.

exporter_core::exporter_plugin! {
    name: exporter_csv::TYPE,
    version: env!("CARGO_PKG_VERSION"),
    build: exporter_csv::build,
}
