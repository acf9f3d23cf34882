//! The replicated catalog: nodes, services, checks and KV, stored in LMDB and
//! changed only by applying raft-committed [`command::Command`]s.

pub mod apply;
pub mod command;
pub mod leases;
pub mod query;
pub mod sessions;
pub mod types;
pub mod watch;

use crate::store::{StoreError, Tables};
use leases::Leases;
use query::Reader;
use std::path::Path;
use tokio::sync::watch as tokio_watch;
use watch::KvWatch;

/// Indexes of the latest applied changes, published after every apply batch.
/// Blocking queries and the DNS cache wait on this; nothing polls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Last applied raft log index.
    pub applied: u64,
    /// Index of the last change to nodes/services/checks.
    pub catalog: u64,
    /// Index of the last change to KV.
    pub kv: u64,
    /// Index of the last change to sessions.
    pub sessions: u64,
}

/// What one apply batch changed, for [`Catalog::publish`].
#[derive(Debug, Default)]
pub struct BatchChanges {
    pub applied: u64,
    pub catalog: Option<u64>,
    pub kv: Option<u64>,
    pub sessions: Option<u64>,
    /// KV keys written, each with the index of its last change in the batch.
    pub kv_keys: Vec<(String, u64)>,
    /// The whole KV tree may have changed at this index.
    pub kv_all: Option<u64>,
}

/// Shared handle to the catalog tables and their change feed.
pub struct Catalog {
    pub tables: Tables,
    changes: tokio_watch::Sender<Changes>,
    /// Per-key wakeups for KV blocking queries.
    pub kv_watch: KvWatch,
    /// Lock-delays and TTL timers (in memory, clock-driven).
    pub leases: Leases,
}

impl Catalog {
    pub fn open(dir: &Path) -> Result<Catalog, StoreError> {
        let tables = Tables::open(dir)?;
        let (catalog_idx, kv_idx, sessions_idx) = {
            let r = Reader::new(&tables)?;
            (
                r.index(&[
                    crate::store::Table::Nodes,
                    crate::store::Table::Services,
                    crate::store::Table::Checks,
                ])?,
                r.index(&[crate::store::Table::Kvs])?,
                r.index(&[crate::store::Table::Sessions])?,
            )
        };
        let (changes, _) = tokio_watch::channel(Changes {
            applied: 0,
            catalog: catalog_idx,
            kv: kv_idx,
            sessions: sessions_idx,
        });
        Ok(Catalog {
            tables,
            changes,
            kv_watch: KvWatch::default(),
            leases: Leases::default(),
        })
    }

    /// A consistent read view of the local replica.
    pub fn reader(&self) -> Result<Reader<'_>, heed::Error> {
        Reader::new(&self.tables)
    }

    pub fn subscribe(&self) -> tokio_watch::Receiver<Changes> {
        self.changes.subscribe()
    }

    pub fn changes(&self) -> Changes {
        *self.changes.borrow()
    }

    /// Called by the state machine after a batch commits.
    /// Publishes catalog/KV index moves without per-key detail.
    #[allow(dead_code)] // used by tests of index consumers
    pub(crate) fn publish(&self, applied: u64, catalog: Option<u64>, kv: Option<u64>) {
        self.publish_batch(BatchChanges {
            applied,
            catalog,
            kv,
            kv_all: kv,
            ..BatchChanges::default()
        });
    }

    pub(crate) fn publish_batch(&self, batch: BatchChanges) {
        if let Some(i) = batch.kv_all {
            self.kv_watch.notify_all(i);
        }
        for (key, index) in &batch.kv_keys {
            self.kv_watch.notify(std::slice::from_ref(key), *index);
        }
        self.changes.send_modify(|c| {
            c.applied = c.applied.max(batch.applied);
            if let Some(i) = batch.catalog {
                c.catalog = c.catalog.max(i);
            }
            if let Some(i) = batch.kv {
                c.kv = c.kv.max(i);
            }
            if let Some(i) = batch.sessions {
                c.sessions = c.sessions.max(i);
            }
        });
    }

    /// Called after a snapshot install replaced every table.
    pub(crate) fn publish_reset(&self, applied: u64) {
        self.changes.send_modify(|c| {
            c.applied = applied;
            c.catalog = applied;
            c.kv = applied;
            c.sessions = applied;
        });
        self.kv_watch.notify_all(applied);
    }
}
