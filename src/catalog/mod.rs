//! The replicated catalog: nodes, services, checks, KV and sessions, stored
//! in LMDB and changed only by applying committed [`command::Command`]s.
//!
//! A server's catalog is its raft replica (applied by `raft::state_machine`);
//! a client agent's is a read-only view fed by a server's subscription
//! (`crate::feed`). Both apply entries through [`Catalog::apply_entries`],
//! so both hold the same tables at the same index.

pub mod acl;
pub mod apply;
pub mod command;
pub mod coordinates;
pub mod leases;
pub mod operator;
pub mod prepared_query;
pub mod query;
pub mod sessions;
pub mod snapshot;
pub mod summary;
pub mod txn;
pub mod types;
pub mod watch;

/// The catalog tables whose modification indexes reads report.
pub use crate::store::Table;
use crate::store::{StoreError, Tables};
use command::{Command, Response};
use heed::RwTxn;
use leases::Leases;
use query::Reader;
use serde::{Deserialize, Serialize};
use snapshot::CatalogSnapshot;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch as tokio_watch;
use watch::KvWatch;

/// Where in the raft log a catalog stands: the index and term of the last
/// entry applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPos {
    pub index: u64,
    pub term: u64,
}

/// `meta` key of the position the tables are at.
const APPLIED: &str = "catalog/applied";

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
    /// Index of the last change to ACL tokens, policies or roles.
    pub acl: u64,
    /// Index of the last change to prepared queries.
    pub prepared_queries: u64,
}

/// What one apply batch changed, for [`Catalog::publish_batch`].
#[derive(Debug, Default)]
pub struct BatchChanges {
    pub applied: u64,
    pub catalog: Option<u64>,
    pub kv: Option<u64>,
    pub sessions: Option<u64>,
    pub acl: Option<u64>,
    pub prepared_queries: Option<u64>,
    /// KV keys written, each with the index of its last change in the batch.
    pub kv_keys: Vec<(String, u64)>,
    /// The whole KV tree may have changed at this index.
    pub kv_all: Option<u64>,
}

/// Shared handle to the catalog tables and their change feed.
pub struct Catalog {
    pub(crate) tables: Tables,
    changes: tokio_watch::Sender<Changes>,
    /// Per-key wakeups for KV blocking queries.
    pub kv_watch: KvWatch,
    /// Lock-delays and TTL timers (in memory, clock-driven).
    pub leases: Leases,
    /// False on a client agent until its view first synced: DNS answers
    /// SERVFAIL until then rather than claim that nothing exists.
    ready: AtomicBool,
}

impl Catalog {
    /// Opens a server's replica (durable, ready at once).
    pub fn open(dir: &Path) -> Result<Catalog, StoreError> {
        Self::open_with(Tables::open(dir)?, true)
    }

    /// Opens a client agent's view: a fresh, empty environment whose commits
    /// skip fsync (a view is rebuilt from a server after any restart), not
    /// ready until it first synced.
    pub fn open_view(dir: &Path) -> Result<Catalog, StoreError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Self::open_with(Tables::open_unsynced(dir)?, false)
    }

    fn open_with(tables: Tables, ready: bool) -> Result<Catalog, StoreError> {
        let (applied, catalog_idx, kv_idx, sessions_idx, acl_idx, queries_idx) = {
            let r = Reader::new(&tables)?;
            (
                read_applied(&tables, &r.txn)?.index,
                r.index(&[Table::Nodes, Table::Services, Table::Checks])?,
                r.index(&[Table::Kvs])?,
                r.index(&[Table::Sessions])?,
                r.index(&[Table::Acl])?,
                r.index(&[Table::PreparedQueries])?,
            )
        };
        let (changes, _) = tokio_watch::channel(Changes {
            applied,
            catalog: catalog_idx,
            kv: kv_idx,
            sessions: sessions_idx,
            acl: acl_idx,
            prepared_queries: queries_idx,
        });
        Ok(Catalog {
            tables,
            changes,
            kv_watch: KvWatch::default(),
            leases: Leases::default(),
            ready: AtomicBool::new(ready),
        })
    }

    /// A consistent read view of the local catalog.
    pub fn reader(&self) -> Result<Reader<'_>, heed::Error> {
        Reader::new(&self.tables)
    }

    pub fn subscribe(&self) -> tokio_watch::Receiver<Changes> {
        self.changes.subscribe()
    }

    pub fn changes(&self) -> Changes {
        *self.changes.borrow()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The position the tables are at.
    pub fn applied(&self) -> Result<LogPos, StoreError> {
        let txn = self.tables.env.read_txn()?;
        Ok(read_applied(&self.tables, &txn)?)
    }

    /// Applies committed entries in one write transaction and publishes
    /// what changed. `None` entries (blank and membership entries) only
    /// move the position. `extra` writes its own keys in the same
    /// transaction (the raft state machine's log id and membership).
    /// Entries at or below the current position are skipped, so a batch
    /// that overlaps what was applied is harmless.
    pub fn apply_entries<'a, I>(
        &self,
        entries: I,
        extra: impl FnOnce(&Tables, &mut RwTxn) -> Result<(), heed::Error>,
    ) -> Result<Vec<Response>, StoreError>
    where
        I: IntoIterator<Item = (LogPos, Option<&'a Command>)>,
    {
        let tables = &self.tables;
        let mut txn = tables.env.write_txn()?;
        let current = read_applied(tables, &txn)?;
        let mut out = Vec::new();
        let mut last = None;
        let mut batch = BatchChanges::default();
        let mut lock_delays = Vec::new();
        let mut restored = false;
        for (pos, cmd) in entries {
            if pos.index <= current.index && current.index > 0 {
                out.push(Response::None);
                continue;
            }
            last = Some(pos);
            let Some(cmd) = cmd else {
                out.push(Response::None);
                continue;
            };
            let index = pos.index;
            let started = std::time::Instant::now();
            let (resp, touched) = apply::apply(tables, &mut txn, index, cmd)?;
            crate::metrics::fsm_apply(cmd.name(), started.elapsed());
            if touched.catalog {
                batch.catalog = Some(index);
            }
            if touched.kv {
                batch.kv = Some(index);
            }
            if touched.sessions {
                batch.sessions = Some(index);
            }
            if touched.acl {
                batch.acl = Some(index);
            }
            if touched.prepared_queries {
                batch.prepared_queries = Some(index);
            }
            if touched.kv_all {
                batch.kv_all = Some(index);
            }
            batch
                .kv_keys
                .extend(touched.kv_keys.into_iter().map(|k| (k, index)));
            if touched.restored {
                // What was noted before the restore is about state it replaced.
                restored = true;
                lock_delays.clear();
            }
            lock_delays.extend(touched.lock_delays);
            out.push(resp);
        }
        if let Some(last) = last {
            write_applied(tables, &mut txn, last)?;
        }
        extra(tables, &mut txn)?;
        txn.commit()?;
        // A restore drops every TTL timer and lock-delay; the leader's
        // session loop re-arms a full TTL for every restored session, as
        // Consul's leader does after a restore.
        if restored {
            self.leases.reset();
        }
        // Lock-delays run on this replica's clock from the moment the
        // release is durable (see catalog::leases).
        self.leases
            .start_lock_delays(&lock_delays, std::time::Instant::now());
        if let Some(last) = last {
            batch.applied = last.index;
            self.publish_batch(batch);
        }
        Ok(out)
    }

    /// The whole catalog and its position, from one read transaction, with
    /// `extra` reading more from the same transaction.
    pub fn dump<T>(
        &self,
        extra: impl FnOnce(&Tables, &heed::RoTxn<heed::WithoutTls>) -> Result<T, heed::Error>,
    ) -> Result<(LogPos, CatalogSnapshot, T), StoreError> {
        let txn = self.tables.env.read_txn()?;
        let pos = read_applied(&self.tables, &txn)?;
        let snap = snapshot::dump(&self.tables, &txn)?;
        let more = extra(&self.tables, &txn)?;
        Ok((pos, snap, more))
    }

    /// Replaces every table with `snap` at position `pos` in one write
    /// transaction (with `extra` writing its own keys in it), then wakes
    /// every watcher and marks the catalog ready.
    pub fn restore(
        &self,
        pos: LogPos,
        snap: &CatalogSnapshot,
        extra: impl FnOnce(&Tables, &mut RwTxn) -> Result<(), heed::Error>,
    ) -> Result<(), StoreError> {
        let tables = &self.tables;
        let mut txn = tables.env.write_txn()?;
        snapshot::restore(tables, &mut txn, snap)?;
        write_applied(tables, &mut txn, pos)?;
        extra(tables, &mut txn)?;
        txn.commit()?;
        self.publish_reset(pos.index);
        self.mark_ready();
        Ok(())
    }

    /// A client agent's view is current enough to answer from.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

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
            if let Some(i) = batch.acl {
                c.acl = c.acl.max(i);
            }
            if let Some(i) = batch.prepared_queries {
                c.prepared_queries = c.prepared_queries.max(i);
            }
        });
    }

    /// Called after a snapshot replaced every table.
    pub(crate) fn publish_reset(&self, applied: u64) {
        self.changes.send_modify(|c| {
            c.applied = applied;
            c.catalog = applied;
            c.kv = applied;
            c.sessions = applied;
            c.acl = applied;
            c.prepared_queries = applied;
        });
        self.kv_watch.notify_all(applied);
    }
}

fn read_applied(
    tables: &Tables,
    txn: &heed::RoTxn<heed::WithoutTls>,
) -> Result<LogPos, heed::Error> {
    Ok(match tables.meta.get(txn, APPLIED)? {
        Some(b) if b.len() == 16 => {
            let mut index = [0u8; 8];
            let mut term = [0u8; 8];
            index.copy_from_slice(&b[..8]);
            term.copy_from_slice(&b[8..]);
            LogPos {
                index: u64::from_be_bytes(index),
                term: u64::from_be_bytes(term),
            }
        }
        _ => LogPos::default(),
    })
}

fn write_applied(tables: &Tables, txn: &mut RwTxn, pos: LogPos) -> Result<(), heed::Error> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&pos.index.to_be_bytes());
    b[8..].copy_from_slice(&pos.term.to_be_bytes());
    tables.meta.put(txn, APPLIED, &b)
}
