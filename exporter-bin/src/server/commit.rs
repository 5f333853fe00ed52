//! Group commit: concurrent requests hand their events to one committer task, which stores
//! everything waiting in a single transaction. Many small posts then share one fsync, and each
//! request is answered only after the transaction holding its events has committed.

use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::STORE_WAIT;
use crate::store::{Imported, NewEvent, SharedStore};

/// The most events one group commit stores.
const GROUP_EVENTS: usize = 20_000;

/// Requests waiting for the committer.
const QUEUE: usize = 1024;

/// The events handed back with what happened to each, or why none was stored.
type Reply = oneshot::Sender<Result<(Vec<NewEvent>, Vec<Imported>), String>>;

/// A handle to the committer task.
#[derive(Clone)]
pub struct Committer {
    queue: mpsc::Sender<(Vec<NewEvent>, Reply)>,
}

impl Committer {
    /// Starts the committer on `store`; `committed` is called after every commit.
    pub fn start(store: SharedStore, committed: impl Fn() + Send + 'static) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, requests, committed));
        Committer { queue }
    }

    /// Stores `events`; returns them with what happened to each, once committed.
    pub async fn commit(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<(Vec<NewEvent>, Vec<Imported>), String> {
        let (reply, answer) = oneshot::channel();
        let stopped = || "the exporter is shutting down".to_owned();
        self.queue
            .send((events, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    store: SharedStore,
    mut requests: mpsc::Receiver<(Vec<NewEvent>, Reply)>,
    committed: impl Fn() + Send + 'static,
) {
    while let Some(first) = requests.recv().await {
        let mut group = vec![first];
        let mut events = group[0].0.len();
        while events < GROUP_EVENTS {
            let Ok(next) = requests.try_recv() else { break };
            events += next.0.len();
            group.push(next);
        }
        let (batches, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        let all: Vec<NewEvent> = batches.into_iter().flatten().collect();
        let store = store.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = store.lock().expect("store lock").import(&all);
            (all, result)
        });
        let (all, result) = match tokio::time::timeout(STORE_WAIT, task).await {
            Ok(joined) => joined.expect("commit task panicked"),
            Err(_) => {
                error!(
                    events,
                    wait_secs = STORE_WAIT.as_secs(),
                    "the store did not answer; the requests are answered 503 (their events may \
                     still be stored when it does: sent again, they create no duplicates)",
                );
                let message = format!(
                    "the store did not answer within {} s; send the events again",
                    STORE_WAIT.as_secs()
                );
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
                continue;
            }
        };
        match result {
            Ok(results) => {
                committed();
                let mut events = all.into_iter();
                let mut results = results.into_iter();
                for (size, reply) in sizes.into_iter().zip(replies) {
                    let mine = events.by_ref().take(size).collect();
                    let _ = reply.send(Ok((mine, results.by_ref().take(size).collect())));
                }
            }
            Err(e) => {
                error!(
                    error = %e,
                    events,
                    "could not commit events; the requests are answered 503 and nothing of them is \
                        kept",
                );
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
