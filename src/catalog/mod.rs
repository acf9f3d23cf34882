//! The replicated catalog: nodes, services, checks and KV, stored in LMDB and
//! changed only by applying raft-committed [`command::Command`]s.

pub mod apply;
pub mod command;
pub mod query;
pub mod types;

use crate::store::{StoreError, Tables};
use query::Reader;
use std::path::Path;
use tokio::sync::watch;

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
}

/// Shared handle to the catalog tables and their change feed.
pub struct Catalog {
    pub tables: Tables,
    changes: watch::Sender<Changes>,
}

impl Catalog {
    pub fn open(dir: &Path) -> Result<Catalog, StoreError> {
        let tables = Tables::open(dir)?;
        let (catalog_idx, kv_idx) = {
            let r = Reader::new(&tables)?;
            (
                r.index(&[
                    crate::store::Table::Nodes,
                    crate::store::Table::Services,
                    crate::store::Table::Checks,
                ])?,
                r.index(&[crate::store::Table::Kvs])?,
            )
        };
        let (changes, _) = watch::channel(Changes {
            applied: 0,
            catalog: catalog_idx,
            kv: kv_idx,
        });
        Ok(Catalog { tables, changes })
    }

    /// A consistent read view of the local replica.
    pub fn reader(&self) -> Result<Reader<'_>, heed::Error> {
        Reader::new(&self.tables)
    }

    pub fn subscribe(&self) -> watch::Receiver<Changes> {
        self.changes.subscribe()
    }

    pub fn changes(&self) -> Changes {
        *self.changes.borrow()
    }

    /// Called by the state machine after a batch commits.
    pub(crate) fn publish(&self, applied: u64, catalog: Option<u64>, kv: Option<u64>) {
        self.changes.send_modify(|c| {
            c.applied = c.applied.max(applied);
            if let Some(i) = catalog {
                c.catalog = c.catalog.max(i);
            }
            if let Some(i) = kv {
                c.kv = c.kv.max(i);
            }
        });
    }

    /// Called after a snapshot install replaced every table.
    pub(crate) fn publish_reset(&self, applied: u64) {
        self.changes.send_modify(|c| {
            c.applied = applied;
            c.catalog = applied;
            c.kv = applied;
        });
    }
}
