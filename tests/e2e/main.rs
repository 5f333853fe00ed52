//! End-to-end tests: the `exporter` binary, run as a user runs it, against real HTTP servers
//! on 127.0.0.1 and real folders.

mod commands;
mod crash;
mod delivery;
mod disk;
mod ftp;
// Not every test uses every helper of the harness.
#[allow(dead_code)]
mod harness;
mod input;
mod nodes;
mod operate;
mod outage;
mod plugins;
mod serve;
