//! `exporter serve`: the ingest API, the scheduler and the workers in one process.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use super::run::{SHUTDOWN_WAIT, open_for_work, stop_signal};
use crate::config::Config;
use crate::server::{self, AppState};
use crate::worker::Engine;

/// Serves until SIGINT or SIGTERM, then drains and exits.
pub fn serve(config: Config, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let addr = listen.unwrap_or(config.server.listen);
    if !addr.ip().is_loopback() && config.server.tokens.is_empty() {
        bail!(
            "refusing to listen on {addr} without a token: anyone who can reach it could post \
             orders. Set `tokens = [\"env:EXPORTER_TOKEN\"]` under [server] in {}, or listen on \
             127.0.0.1",
            config.path.display()
        );
    }
    let store = open_for_work(&config)?;
    let config = Arc::new(config);
    let store = Arc::new(Mutex::new(store));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async move {
        let listener = TcpListener::bind(addr).await;
        let listener = listener.with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local}");
        std::io::stdout().flush()?;
        info!(
            address = %local,
            profiles = config.profiles.len(),
            auth = !config.server.tokens.is_empty(),
            "serving",
        );

        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            stop_signal().await;
            info!(
                "stopping: no new requests; finishing requests and deliveries in flight (signal \
                    again to stop at once)",
            );
            let _ = stop.send(true);
            stop_signal().await;
            warn!(
                "stopped at once; deliveries in flight will be sent again at the next start \
                     (on PostgreSQL, by another node once their lease ends)"
            );
            std::process::exit(130);
        });

        let engine = Engine::new(store.clone(), config.clone());
        let committer = server::committer(store.clone(), &engine);
        let state = AppState {
            config: config.clone(),
            store: store.clone(),
            committer,
            engine: engine.clone(),
            ingest: Arc::default(),
        };
        let api = tokio::spawn(server::serve(listener, state, stopped.clone()));
        let worked = engine.run_until(stopped).await;
        api.await
            .context("the API task failed")?
            .context("the API stopped")?;
        worked?;
        info!("stopped cleanly");
        Ok(ExitCode::SUCCESS)
    });
    // A plugin call the worker gave up on may still hold a blocking thread; do not wait for it.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
    result
}
