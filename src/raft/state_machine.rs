// openraft fixes the error type of storage callbacks (`StorageError`), so the
// large-Err lint cannot be acted on here.
#![allow(clippy::result_large_err)]

//! openraft's state machine over the catalog tables. A batch of committed
//! entries is applied in one LMDB write transaction together with the last
//! applied log id and membership, so the tables and the applied position
//! can never disagree after a crash.

use super::{NodeId, TypeConfig};
use crate::catalog::apply::apply;
use crate::catalog::command::Response;
use crate::catalog::types::{Check, KvEntry, Node, Service, Session};
use crate::catalog::{BatchChanges, Catalog};
use crate::store::Table;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

const LAST_APPLIED: &str = "raft/last_applied";
const MEMBERSHIP: &str = "raft/membership";

type Membership = StoredMembership<NodeId, BasicNode>;

/// Everything a snapshot carries: every table plus the table indexes.
/// (`session_keys` is derived from `kv` and rebuilt on install.)
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    kv: Vec<KvEntry>,
    indexes: Vec<(String, u64)>,
    sessions: Vec<Session>,
}

/// The snapshot body written before sessions existed; still installable.
#[derive(Deserialize)]
struct SnapshotBodyV1 {
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    kv: Vec<KvEntry>,
    indexes: Vec<(String, u64)>,
}

impl SnapshotBody {
    fn decode(data: &[u8]) -> Result<SnapshotBody, bincode::Error> {
        bincode::deserialize(data).or_else(|e| {
            let v1: SnapshotBodyV1 = bincode::deserialize(data).map_err(|_| e)?;
            Ok(SnapshotBody {
                nodes: v1.nodes,
                services: v1.services,
                checks: v1.checks,
                kv: v1.kv,
                indexes: v1.indexes,
                sessions: Vec::new(),
            })
        })
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    catalog: Arc<Catalog>,
    snapshot_path: PathBuf,
}

fn sm_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl StateMachine {
    pub fn new(catalog: Arc<Catalog>, snapshot_path: PathBuf) -> StateMachine {
        StateMachine {
            catalog,
            snapshot_path,
        }
    }

    fn read_applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let tables = &self.catalog.tables;
        let txn = tables.env.read_txn().map_err(sm_err)?;
        let applied = match tables.meta.get(&txn, LAST_APPLIED).map_err(sm_err)? {
            Some(b) => bincode::deserialize(b).map_err(sm_err)?,
            None => None,
        };
        let membership = match tables.meta.get(&txn, MEMBERSHIP).map_err(sm_err)? {
            Some(b) => bincode::deserialize(b).map_err(sm_err)?,
            None => Membership::default(),
        };
        Ok((applied, membership))
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let tables = &self.catalog.tables;
        let txn = tables.env.read_txn().map_err(snap_err)?;
        let applied: Option<LogId<NodeId>> =
            match tables.meta.get(&txn, LAST_APPLIED).map_err(snap_err)? {
                Some(b) => bincode::deserialize(b).map_err(snap_err)?,
                None => None,
            };
        let membership: Membership = match tables.meta.get(&txn, MEMBERSHIP).map_err(snap_err)? {
            Some(b) => bincode::deserialize(b).map_err(snap_err)?,
            None => Membership::default(),
        };
        let mut body = SnapshotBody {
            nodes: vec![],
            services: vec![],
            checks: vec![],
            kv: vec![],
            indexes: vec![],
            sessions: vec![],
        };
        for r in tables.nodes.iter(&txn).map_err(snap_err)? {
            body.nodes.push(r.map_err(snap_err)?.1);
        }
        for r in tables.services.iter(&txn).map_err(snap_err)? {
            body.services.push(r.map_err(snap_err)?.1);
        }
        for r in tables.checks.iter(&txn).map_err(snap_err)? {
            body.checks.push(r.map_err(snap_err)?.1);
        }
        for r in tables.kv.iter(&txn).map_err(snap_err)? {
            body.kv.push(r.map_err(snap_err)?.1);
        }
        for r in tables.sessions.iter(&txn).map_err(snap_err)? {
            body.sessions.push(r.map_err(snap_err)?.1);
        }
        for t in [
            Table::Nodes,
            Table::Services,
            Table::Checks,
            Table::Kvs,
            Table::Sessions,
        ] {
            body.indexes.push((
                t.meta_key().to_string(),
                tables.table_index(&txn, t).map_err(snap_err)?,
            ));
        }
        drop(txn);
        let data = bincode::serialize(&body).map_err(snap_err)?;
        let snapshot_id = match &applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("0-0-{}", data.len()),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        self.persist(&meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Keeps the latest snapshot on disk (write to a temp file, fsync, rename).
    fn persist(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError<NodeId>> {
        use std::io::Write;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let bytes = bincode::serialize(&stored).map_err(snap_err)?;
        let tmp = self.snapshot_path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(snap_err)?;
        f.write_all(&bytes).map_err(snap_err)?;
        f.sync_all().map_err(snap_err)?;
        std::fs::rename(&tmp, &self.snapshot_path).map_err(snap_err)?;
        Ok(())
    }

    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError<NodeId>> {
        let body = SnapshotBody::decode(data).map_err(snap_err)?;
        let tables = &self.catalog.tables;
        let mut txn = tables.env.write_txn().map_err(snap_err)?;
        tables.nodes.clear(&mut txn).map_err(snap_err)?;
        tables.services.clear(&mut txn).map_err(snap_err)?;
        tables.checks.clear(&mut txn).map_err(snap_err)?;
        tables.kv.clear(&mut txn).map_err(snap_err)?;
        tables.sessions.clear(&mut txn).map_err(snap_err)?;
        tables.session_keys.clear(&mut txn).map_err(snap_err)?;
        tables.meta.clear(&mut txn).map_err(snap_err)?;
        for n in &body.nodes {
            tables.nodes.put(&mut txn, &n.name, n).map_err(snap_err)?;
        }
        for s in &body.services {
            tables
                .services
                .put(&mut txn, &crate::store::node_scoped_key(&s.node, &s.id), s)
                .map_err(snap_err)?;
        }
        for c in &body.checks {
            tables
                .checks
                .put(
                    &mut txn,
                    &crate::store::node_scoped_key(&c.node, &c.check_id),
                    c,
                )
                .map_err(snap_err)?;
        }
        for e in &body.kv {
            tables.kv.put(&mut txn, &e.key, e).map_err(snap_err)?;
            if !e.session.is_empty() {
                tables
                    .session_keys
                    .put(
                        &mut txn,
                        &crate::store::node_scoped_key(&e.session, &e.key),
                        &[],
                    )
                    .map_err(snap_err)?;
            }
        }
        for sess in &body.sessions {
            tables
                .sessions
                .put(&mut txn, &sess.id, sess)
                .map_err(snap_err)?;
        }
        for (k, v) in &body.indexes {
            tables
                .meta
                .put(&mut txn, k, &v.to_be_bytes())
                .map_err(snap_err)?;
        }
        let applied = bincode::serialize(&meta.last_log_id).map_err(snap_err)?;
        tables
            .meta
            .put(&mut txn, LAST_APPLIED, &applied)
            .map_err(snap_err)?;
        let membership = bincode::serialize(&meta.last_membership).map_err(snap_err)?;
        tables
            .meta
            .put(&mut txn, MEMBERSHIP, &membership)
            .map_err(snap_err)?;
        txn.commit().map_err(snap_err)?;
        self.persist(meta, data)?;
        self.catalog
            .publish_reset(meta.last_log_id.map(|l| l.index).unwrap_or(0));
        tracing::info!(
            index = meta.last_log_id.map(|l| l.index).unwrap_or(0),
            "raft: installed snapshot {}",
            meta.snapshot_id
        );
        Ok(())
    }

    fn apply_batch(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError<NodeId>> {
        let tables = &self.catalog.tables;
        let mut txn = tables.env.write_txn().map_err(sm_err)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut last = None;
        let mut batch = BatchChanges::default();
        let mut lock_delays = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Response::None),
                EntryPayload::Normal(cmd) => {
                    let started = std::time::Instant::now();
                    let (resp, touched) = apply(tables, &mut txn, index, &cmd).map_err(sm_err)?;
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
                    if touched.kv_all {
                        batch.kv_all = Some(index);
                    }
                    batch
                        .kv_keys
                        .extend(touched.kv_keys.into_iter().map(|k| (k, index)));
                    lock_delays.extend(touched.lock_delays);
                    out.push(resp);
                }
                EntryPayload::Membership(m) => {
                    let stored = Membership::new(Some(entry.log_id), m);
                    let bytes = bincode::serialize(&stored).map_err(sm_err)?;
                    tables
                        .meta
                        .put(&mut txn, MEMBERSHIP, &bytes)
                        .map_err(sm_err)?;
                    out.push(Response::None);
                }
            }
        }
        if let Some(last) = last {
            let bytes = bincode::serialize(&Some(last)).map_err(sm_err)?;
            tables
                .meta
                .put(&mut txn, LAST_APPLIED, &bytes)
                .map_err(sm_err)?;
        }
        txn.commit().map_err(sm_err)?;
        // Lock-delays run on this replica's clock from the moment the
        // release is durable (see catalog::leases).
        self.catalog
            .leases
            .start_lock_delays(&lock_delays, std::time::Instant::now());
        if let Some(last) = last {
            batch.applied = last.index;
            self.catalog.publish_batch(batch);
        }
        Ok(out)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.build())
            .await
            .map_err(snap_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        self.read_applied()
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.apply_batch(entries))
            .await
            .map_err(sm_err)?
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let me = self.clone();
        let meta = meta.clone();
        let data = snapshot.into_inner();
        tokio::task::spawn_blocking(move || me.install(&meta, &data))
            .await
            .map_err(snap_err)?
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let bytes = match std::fs::read(&self.snapshot_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(snap_err(e)),
        };
        let stored: StoredSnapshot = bincode::deserialize(&bytes).map_err(snap_err)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::log::LogStore;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir().map_err(sm_err)?;
            let catalog = Arc::new(
                Catalog::open(&dir.path().join("state"))
                    .map_err(|e| sm_err(std::io::Error::other(e.to_string())))?,
            );
            let log = LogStore::open(&dir.path().join("raft"))
                .map_err(|e| sm_err(std::io::Error::other(e.to_string())))?;
            let sm = StateMachine::new(catalog, dir.path().join("snapshot.bin"));
            Ok((dir, log, sm))
        }
    }

    #[derive(Serialize)]
    struct OldBody {
        nodes: Vec<Node>,
        services: Vec<Service>,
        checks: Vec<Check>,
        kv: Vec<KvEntry>,
        indexes: Vec<(String, u64)>,
    }

    #[test]
    fn snapshots_from_before_sessions_still_decode() {
        let old = OldBody {
            nodes: vec![Node {
                name: "n1".into(),
                ..Node::default()
            }],
            services: vec![],
            checks: vec![],
            kv: vec![KvEntry {
                key: "k".into(),
                ..KvEntry::default()
            }],
            indexes: vec![("index/kvs".into(), 7)],
        };
        let body = SnapshotBody::decode(&bincode::serialize(&old).unwrap()).unwrap();
        assert_eq!(body.nodes.len(), 1);
        assert_eq!(body.kv[0].key, "k");
        assert!(body.sessions.is_empty());
    }

    /// openraft's storage conformance suite against the LMDB log and state machine.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("storage suite");
    }
}
