//! `exporter run`: import inputs into the store, then deliver.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::watch;
use tracing::{info, warn};

use super::summary;
use crate::config::Config;
use crate::ingest::{self, ImportStats, Input};
use crate::store::{self, Node, Store, now_ms};
use crate::worker::Engine;

/// Imports every input, then delivers what is due: once, or until interrupted.
pub fn run(config: Config, inputs: &[String], once: bool) -> anyhow::Result<ExitCode> {
    let inputs: Vec<Input> = inputs.iter().map(|arg| Input::parse(arg)).collect();
    for input in &inputs {
        if let Input::File(path) = input {
            // Refuse a missing input before the store is created or touched.
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        }
    }
    let mut store = open_for_work(&config)?;

    let stats = if inputs.is_empty() {
        ImportStats::default()
    } else {
        let stats = ingest::import(&config, store.as_mut(), &inputs).context("import stopped")?;
        info!(
            read = stats.read,
            stored = stats.stored,
            duplicates = stats.duplicates,
            bad = stats.bad,
            "import committed"
        );
        stats
    };

    let config = Arc::new(config);
    let store = Arc::new(Mutex::new(store));
    let engine = Engine::new(store.clone(), config.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        if once {
            engine.run_once().await
        } else {
            info!(
                profiles = config.profiles.len(),
                "working the queue; press Ctrl-C to stop"
            );
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(async move {
                stop_signal().await;
                info!("stopping: finishing deliveries in flight (signal again to stop at once)");
                let _ = stop.send(true);
                stop_signal().await;
                warn!(
                    "stopped at once; deliveries in flight will be sent again at the next start \
                     (on PostgreSQL, by another node once their lease ends)"
                );
                std::process::exit(130);
            });
            engine.run_until(stopped).await
        }
    });
    // A plugin call the worker gave up on may still hold a blocking thread; do not wait for it.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    result?;
    let mut store = store.lock().expect("store lock");
    summary::print(&inputs, &stats, &config, store.as_mut(), &engine.counts())?;
    Ok(ExitCode::SUCCESS)
}

/// How long exit waits for blocking work that outlived the workers (a stuck plugin call).
pub(super) const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits for Ctrl-C (SIGINT) or SIGTERM.
pub(super) async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Opens the config's store and joins it as a node working its queue. A SQLite store takes one
/// such process, which releases the claims a stopped exporter left; a PostgreSQL store takes
/// several, and a dead node's claims return to the queue when their lease ends.
pub(super) fn open_for_work(config: &Config) -> anyhow::Result<Box<dyn Store>> {
    let mut store = store::open(&config.store)?;
    let node = Node::this_process();
    let released = store.join(&node, now_ms())?;
    info!(store = %store.name(), node = %node.name, "joined the store");
    if released > 0 {
        info!(
            claims = released,
            "released claims left by an exporter that stopped; they will be delivered again"
        );
    }
    warn_about_unknown_profiles(config, store.as_mut());
    Ok(store)
}

/// Pending deliveries of a profile the config no longer has stay in the store, untouched.
fn warn_about_unknown_profiles(config: &Config, store: &mut dyn Store) {
    let Ok(names) = store.pending_profiles() else {
        return;
    };
    for (name, pending) in names {
        if !config.profiles.iter().any(|profile| profile.name == name) {
            warn!(
                profile = %name,
                pending,
                "the store has pending deliveries for a profile that is not in the config; they \
                    are kept and not sent",
            );
        }
    }
}
