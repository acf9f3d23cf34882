// openraft fixes the error type of storage callbacks (`StorageError`), so the
// large-Err lint cannot be acted on here.
#![allow(clippy::result_large_err)]

//! openraft's state machine over the catalog tables. A batch of committed
//! entries is applied in one LMDB write transaction together with the last
//! applied log id and membership, so the tables and the applied position
//! can never disagree after a crash.

use super::{NodeId, TypeConfig};
use crate::catalog::command::Response;
use crate::catalog::snapshot::CatalogSnapshot;
use crate::catalog::types::{Check, KvEntry, Node, Service};
use crate::catalog::{Catalog, LogPos};
use crate::feed::publisher::Publisher;
use crate::feed::FeedEntry;
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

/// The snapshot body written before sessions existed; still installable.
#[derive(Deserialize)]
struct SnapshotBodyV1 {
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    kv: Vec<KvEntry>,
    indexes: Vec<(String, u64)>,
}

/// The snapshot body written before ACLs existed; still installable.
#[derive(Deserialize)]
struct SnapshotBodyV2 {
    nodes: Vec<Node>,
    services: Vec<Service>,
    checks: Vec<Check>,
    kv: Vec<KvEntry>,
    indexes: Vec<(String, u64)>,
    sessions: Vec<crate::catalog::types::Session>,
}

fn decode_body(data: &[u8]) -> Result<CatalogSnapshot, bincode::Error> {
    bincode::deserialize(data).or_else(|e| {
        if let Ok(v3) =
            bincode::deserialize::<crate::catalog::snapshot::SnapshotBeforeOperator>(data)
        {
            return Ok(v3.into());
        }
        if let Ok(v2) = bincode::deserialize::<SnapshotBodyV2>(data) {
            return Ok(CatalogSnapshot {
                nodes: v2.nodes,
                services: v2.services,
                checks: v2.checks,
                kv: v2.kv,
                indexes: v2.indexes,
                sessions: v2.sessions,
                acl: Default::default(),
                coordinates: Default::default(),
                operator: Default::default(),
                prepared_queries: Default::default(),
            });
        }
        let v1: SnapshotBodyV1 = bincode::deserialize(data).map_err(|_| e)?;
        Ok(CatalogSnapshot {
            nodes: v1.nodes,
            services: v1.services,
            checks: v1.checks,
            kv: v1.kv,
            indexes: v1.indexes,
            sessions: Vec::new(),
            acl: Default::default(),
            coordinates: Default::default(),
            operator: Default::default(),
            prepared_queries: Default::default(),
        })
    })
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
    /// Applied batches go here for client agents' subscriptions.
    feed: Arc<Publisher>,
}

fn sm_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

fn codec_err(e: bincode::Error) -> heed::Error {
    heed::Error::Encoding(e)
}

fn pos_of(l: &LogId<NodeId>) -> LogPos {
    LogPos {
        index: l.index,
        term: l.leader_id.term,
    }
}

fn read_raft_meta(
    tables: &crate::store::Tables,
    txn: &heed::RoTxn<heed::WithoutTls>,
) -> Result<(Option<LogId<NodeId>>, Membership), heed::Error> {
    let applied = match tables.meta.get(txn, LAST_APPLIED)? {
        Some(b) => bincode::deserialize(b).map_err(codec_err)?,
        None => None,
    };
    let membership = match tables.meta.get(txn, MEMBERSHIP)? {
        Some(b) => bincode::deserialize(b).map_err(codec_err)?,
        None => Membership::default(),
    };
    Ok((applied, membership))
}

impl StateMachine {
    pub fn new(
        catalog: Arc<Catalog>,
        snapshot_path: PathBuf,
        feed: Arc<Publisher>,
    ) -> StateMachine {
        StateMachine {
            catalog,
            snapshot_path,
            feed,
        }
    }

    fn read_applied(&self) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let tables = &self.catalog.tables;
        let txn = tables.env.read_txn().map_err(sm_err)?;
        read_raft_meta(tables, &txn).map_err(sm_err)
    }

    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (_, body, (applied, membership)) =
            self.catalog.dump(read_raft_meta).map_err(snap_err)?;
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
        let body = decode_body(data).map_err(snap_err)?;
        let applied = bincode::serialize(&meta.last_log_id).map_err(snap_err)?;
        let membership = bincode::serialize(&meta.last_membership).map_err(snap_err)?;
        let pos = meta.last_log_id.as_ref().map(pos_of).unwrap_or_default();
        self.catalog
            .restore(pos, &body, |tables, txn| {
                tables.meta.put(txn, LAST_APPLIED, &applied)?;
                tables.meta.put(txn, MEMBERSHIP, &membership)
            })
            .map_err(snap_err)?;
        self.persist(meta, data)?;
        self.feed.reset(pos);
        tracing::info!(
            index = pos.index,
            "raft: installed snapshot {}",
            meta.snapshot_id
        );
        Ok(())
    }

    fn apply_batch(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError<NodeId>> {
        let mut last = None;
        let mut membership = None;
        let mut feed = Vec::with_capacity(entries.len());
        for entry in entries {
            last = Some(entry.log_id);
            let cmd = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(cmd) => Some(cmd),
                EntryPayload::Membership(m) => {
                    membership = Some(Membership::new(Some(entry.log_id), m));
                    None
                }
            };
            feed.push(FeedEntry {
                pos: pos_of(&entry.log_id),
                cmd,
            });
        }
        let last_bytes = bincode::serialize(&last).map_err(sm_err)?;
        let membership_bytes = match &membership {
            Some(m) => Some(bincode::serialize(m).map_err(sm_err)?),
            None => None,
        };
        let out = self
            .catalog
            .apply_entries(
                feed.iter().map(|e| (e.pos, e.cmd.as_ref())),
                |tables, txn| {
                    if last.is_some() {
                        tables.meta.put(txn, LAST_APPLIED, &last_bytes)?;
                    }
                    if let Some(m) = &membership_bytes {
                        tables.meta.put(txn, MEMBERSHIP, m)?;
                    }
                    Ok(())
                },
            )
            .map_err(sm_err)?;
        // ACL commands carry secrets: client agents' views get the
        // position only (they resolve tokens by asking a server).
        // A restore reaches them with its ACL tables emptied, as the
        // snapshot a view is seeded from is.
        for e in feed.iter_mut() {
            match &mut e.cmd {
                Some(crate::catalog::command::Command::Acl(_)) => e.cmd = None,
                Some(crate::catalog::command::Command::Restore(snap)) => {
                    snap.acl = Default::default();
                    snap.redact_query_tokens();
                }
                // Views hold no secrets: a query reaches them without its token.
                Some(crate::catalog::command::Command::PreparedQuery(op)) => {
                    *op = op.redacted();
                }
                _ => {}
            }
        }
        self.feed.publish(feed);
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
            let feed = Publisher::new(catalog.clone());
            let sm = StateMachine::new(catalog, dir.path().join("snapshot.bin"), feed);
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
        let body = decode_body(&bincode::serialize(&old).unwrap()).unwrap();
        assert_eq!(body.nodes.len(), 1);
        assert_eq!(body.kv[0].key, "k");
        assert!(body.sessions.is_empty());
    }

    /// A body written before the operator state and coordinates existed
    /// still decodes.
    #[test]
    fn snapshots_from_before_operator_state_and_coordinates_still_decode() {
        #[derive(Serialize)]
        struct BodyV3 {
            nodes: Vec<Node>,
            services: Vec<Service>,
            checks: Vec<Check>,
            kv: Vec<KvEntry>,
            indexes: Vec<(String, u64)>,
            sessions: Vec<crate::catalog::types::Session>,
            acl: crate::catalog::snapshot::AclSnapshot,
        }
        let old = BodyV3 {
            nodes: vec![Node {
                name: "n1".into(),
                ..Node::default()
            }],
            services: vec![],
            checks: vec![],
            kv: vec![],
            indexes: vec![("index/nodes".into(), 3)],
            sessions: vec![],
            acl: Default::default(),
        };
        let body = decode_body(&bincode::serialize(&old).unwrap()).unwrap();
        assert_eq!(body.nodes[0].name, "n1");
        assert!(body.coordinates.0.is_empty());
    }

    /// openraft's storage conformance suite against the LMDB log and state machine.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("storage suite");
    }
}
