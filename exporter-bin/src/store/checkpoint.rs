//! Background checkpoints of the SQLite store's write-ahead log.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so one
//! request in a thousand pages waited for the copy of the whole log into the database and its
//! sync. Here a thread with its own connection copies the log after commits instead
//! (`PRAGMA wal_checkpoint(PASSIVE)`: it never blocks the writer, and the writer never waits
//! for it), at most every [`PAUSE`], so a page written by many commits is copied once. The
//! writer's own automatic checkpoint stays as a backstop at [`BACKSTOP_PAGES`], for a log the
//! thread cannot bring to an end while writes keep coming; by then most of it is copied.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::warn;

/// The least time between two background checkpoints.
const PAUSE: Duration = Duration::from_millis(200);

/// The log size (pages) at which a commit checkpoints by itself: 40 MiB of 4 KiB pages.
pub const BACKSTOP_PAGES: i64 = 10_000;

/// The thread that checkpoints a store's log, started at the first commit.
#[derive(Default)]
pub struct Checkpointer {
    running: Option<(SyncSender<()>, JoinHandle<()>)>,
}

impl Checkpointer {
    /// Tells the thread that a commit added to the log of the store at `path`, starting the
    /// thread the first time. A store that cannot start one keeps the backstop alone.
    pub fn committed(&mut self, path: &Path) {
        if self.running.is_none() {
            self.running = start(path.to_owned());
        }
        let Some((nudge, _)) = &self.running else {
            return;
        };
        match nudge.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => self.running = None,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Some((nudge, thread)) = self.running.take() {
            drop(nudge);
            let _ = thread.join();
        }
    }
}

fn start(path: PathBuf) -> Option<(SyncSender<()>, JoinHandle<()>)> {
    let conn = match Connection::open(&path) {
        Ok(conn) => conn,
        Err(error) => {
            warn!(
                store = %path.display(),
                %error,
                "cannot open a checkpoint connection; commits checkpoint the log themselves",
            );
            return None;
        }
    };
    let (nudge, nudges) = sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".to_owned())
        .spawn(move || run(&conn, &path, &nudges))
        .ok()?;
    Some((nudge, thread))
}

/// Checkpoints after a nudge, then pauses, until the store is dropped.
fn run(conn: &Connection, path: &Path, nudges: &Receiver<()>) {
    let mut nudged = nudges.recv().is_ok();
    while nudged {
        let checkpoint = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        if let Err(error) = checkpoint {
            warn!(
                store = %path.display(),
                %error,
                "a background checkpoint failed; the next commit's checkpoint copies the log",
            );
        }
        nudged = match pause(nudges) {
            Some(true) => true,
            Some(false) => nudges.recv().is_ok(),
            None => false,
        };
    }
}

/// Waits [`PAUSE`]: whether a nudge came meanwhile, or `None` once the store is dropped.
fn pause(nudges: &Receiver<()>) -> Option<bool> {
    let until = Instant::now() + PAUSE;
    let mut nudged = false;
    loop {
        match nudges.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(()) => nudged = true,
            Err(RecvTimeoutError::Timeout) => return Some(nudged),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_log_into_the_database_after_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB); INSERT INTO t VALUES (zeroblob(200000));")
            .unwrap();
        let size = || std::fs::metadata(&path).unwrap().len();
        assert!(size() < 200_000, "nothing is copied before a checkpoint");

        let mut checkpointer = Checkpointer::default();
        checkpointer.committed(&path);
        drop(checkpointer);

        assert!(size() >= 200_000, "the log is copied: {} bytes", size());
    }
}
