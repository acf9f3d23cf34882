// openraft fixes the error type of storage callbacks (`StorageError`), so the
// large-Err lint cannot be acted on here.
#![allow(clippy::result_large_err)]

//! The raft log and vote in their own LMDB environment. An append returns to
//! openraft only after the write transaction has committed, and LMDB's
//! default commit fsyncs: an acknowledged write is on disk.

use super::{open_env, StoreEnv, StoreError};
use crate::raft::{NodeId, TypeConfig};
use heed::byteorder::BigEndian;
use heed::types::{Bytes, SerdeBincode, Str, U64};
use heed::{CommitOrAbort, Database};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, StorageError, StorageIOError, Vote};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

type Logs = Database<'static, U64<BigEndian>, SerdeBincode<Entry<TypeConfig>>>;
type Meta = Database<'static, Str, Bytes>;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

#[derive(Clone)]
pub struct LogStore {
    env: StoreEnv,
    logs: Logs,
    meta: Meta,
}

fn io_err<E: std::error::Error + 'static>(e: E) -> AnyError {
    AnyError::new(&e)
}

fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::read_logs(io_err(e)).into()
}

fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError<NodeId> {
    StorageIOError::write_logs(io_err(e)).into()
}

impl LogStore {
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        let env = open_env(dir, 4)?;
        let wtxn = env.write_txn()?;
        let (logs, meta) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> Result<_, heed::Error> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("logs"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                )))
            })?
            .unwrap_commit();
        Ok(LogStore { env, logs, meta })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let txn = self.env.read_txn().map_err(read_err)?;
        match self.meta.get(&txn, key).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => bincode::deserialize(bytes).map(Some).map_err(read_err),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = bincode::serialize(value).map_err(write_err)?;
        let mut txn = self.env.write_txn().map_err(write_err)?;
        self.meta.put(&mut txn, key, &bytes).map_err(write_err)?;
        txn.commit().map_err(write_err)
    }

    /// Runs blocking LMDB work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(LogStore) -> Result<T, StorageError<NodeId>> + Send + 'static,
    ) -> Result<T, StorageError<NodeId>> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(write_err)?
    }

    /// Highest log index stored (for `info` and list-peers).
    pub fn last_index(&self) -> u64 {
        self.env
            .read_txn()
            .ok()
            .and_then(|t| self.logs.last(&t).ok().flatten().map(|(k, _)| k))
            .unwrap_or(0)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(s) => Bound::Included(*s),
            Bound::Excluded(s) => Bound::Excluded(*s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(s) => Bound::Included(*s),
            Bound::Excluded(s) => Bound::Excluded(*s),
            Bound::Unbounded => Bound::Unbounded,
        };
        self.blocking(move |me| {
            let txn = me.env.read_txn().map_err(read_err)?;
            let mut out = Vec::new();
            for item in me.logs.range(&txn, &(start, end)).map_err(read_err)? {
                let (_, entry) = item.map_err(read_err)?;
                out.push(entry);
            }
            Ok(out)
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let txn = self.env.read_txn().map_err(read_err)?;
        let last = self
            .logs
            .last(&txn)
            .map_err(read_err)?
            .map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let vote = *vote;
        self.blocking(move |me| me.put_meta(VOTE, &vote)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not fsync-critical: losing it only delays re-applying committed entries.
        self.blocking(move |me| me.put_meta(COMMITTED, &committed))
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let res = self
            .blocking(move |me| {
                let mut txn = me.env.write_txn().map_err(write_err)?;
                for e in &entries {
                    me.logs
                        .put(&mut txn, &e.log_id.index, e)
                        .map_err(write_err)?;
                }
                txn.commit().map_err(write_err)
            })
            .await;
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |me| {
            let mut txn = me.env.write_txn().map_err(write_err)?;
            me.logs
                .delete_range(&mut txn, &(log_id.index..))
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |me| {
            let bytes = bincode::serialize(&log_id).map_err(write_err)?;
            let mut txn = me.env.write_txn().map_err(write_err)?;
            me.meta
                .put(&mut txn, LAST_PURGED, &bytes)
                .map_err(write_err)?;
            me.logs
                .delete_range(&mut txn, &(..=log_id.index))
                .map_err(write_err)?;
            txn.commit().map_err(write_err)
        })
        .await
    }
}
