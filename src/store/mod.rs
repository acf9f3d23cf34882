//! LMDB storage through heed: the catalog tables of the state machine, and
//! (in `log`) the raft log and vote. Two environments so that log appends and
//! state-machine applies never wait on each other's single writer lock.

pub mod log;

use crate::acl::types::{Policy, Role, Token};
use crate::catalog::operator::ConfigEntry;
use crate::catalog::prepared_query::PreparedQuery;
use crate::catalog::types::{Check, KvEntry, Node, Service, Session};
use crate::coordinate::Coordinate;
use heed::types::{Bytes, SerdeBincode, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, RwTxn, WithoutTls};
use std::path::Path;

pub type StoreEnv = Env<WithoutTls>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lmdb: {0}")]
    Lmdb(#[from] heed::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("codec: {0}")]
    Codec(String),
}

/// Separator between the node name and the ID in composite keys. Node names
/// and IDs are not allowed to contain NUL.
pub const KEY_SEP: char = '\0';

pub fn node_scoped_key(node: &str, id: &str) -> String {
    let mut k = String::with_capacity(node.len() + id.len() + 1);
    k.push_str(node);
    k.push(KEY_SEP);
    k.push_str(id);
    k
}

/// Prefix that selects everything scoped to `node`.
pub fn node_prefix(node: &str) -> String {
    let mut k = String::with_capacity(node.len() + 1);
    k.push_str(node);
    k.push(KEY_SEP);
    k
}

/// Per-table modification indexes kept in `meta` (Consul's "index table").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Nodes,
    Services,
    Checks,
    Kvs,
    Sessions,
    /// Tokens, policies and roles together: one index, which the token
    /// resolver's cache is invalidated by.
    Acl,
    /// Network coordinates (Consul's `coordinates` index).
    Coordinates,
    /// Config entries (`/v1/config`).
    ConfigEntries,
    /// Prepared queries (Consul's `prepared-queries` table).
    PreparedQueries,
}

impl Table {
    pub fn meta_key(self) -> &'static str {
        match self {
            Table::Nodes => "index/nodes",
            Table::Services => "index/services",
            Table::Checks => "index/checks",
            Table::Kvs => "index/kvs",
            Table::Sessions => "index/sessions",
            Table::Acl => "index/acl",
            Table::Coordinates => "index/coordinates",
            Table::ConfigEntries => "index/config-entries",
            Table::PreparedQueries => "index/prepared-queries",
        }
    }
}

/// The catalog tables.
#[derive(Clone)]
pub struct Tables {
    pub env: StoreEnv,
    /// node name -> Node
    pub nodes: Database<'static, Str, SerdeBincode<Node>>,
    /// node \0 service id -> Service
    pub services: Database<'static, Str, SerdeBincode<Service>>,
    /// node \0 check id -> Check
    pub checks: Database<'static, Str, SerdeBincode<Check>>,
    /// key -> KvEntry
    pub kv: Database<'static, Str, SerdeBincode<KvEntry>>,
    /// session id -> Session
    pub sessions: Database<'static, Str, SerdeBincode<Session>>,
    /// session id \0 key -> (): the keys each session holds. Derived from
    /// `kv` (rebuilt on snapshot install), so invalidation need not scan KV.
    pub session_keys: Database<'static, Str, Bytes>,
    /// table indexes, last applied log id, membership
    pub meta: Database<'static, Str, Bytes>,
    /// lower-case accessor ID -> Token
    pub acl_tokens: Database<'static, Str, SerdeBincode<Token>>,
    /// secret ID -> lower-case accessor ID
    pub acl_secrets: Database<'static, Str, Str>,
    /// lower-case policy ID -> Policy
    pub acl_policies: Database<'static, Str, SerdeBincode<Policy>>,
    /// lower-case role ID -> Role
    pub acl_roles: Database<'static, Str, SerdeBincode<Role>>,
    /// node \0 segment -> Coordinate
    pub coordinates: Database<'static, Str, SerdeBincode<Coordinate>>,
    /// kind \0 name -> config entry
    pub config_entries: Database<'static, Str, SerdeBincode<ConfigEntry>>,
    /// lower-case query ID -> PreparedQuery
    pub prepared_queries: Database<'static, Str, SerdeBincode<PreparedQuery>>,
}

/// How much of each commit reaches the disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Data and meta page fsynced (LMDB's default).
    Full,
    /// MDB_NOMETASYNC: the second fsync of each commit is skipped; a system
    /// crash may undo the last commits but never corrupts the environment.
    /// The state machine uses it because the raft log, fully synced,
    /// replays whatever a crash undid.
    NoMetaSync,
    /// MDB_NOSYNC: nothing is fsynced. Only for data rebuilt from elsewhere
    /// after a restart (a client agent's view of the catalog).
    None,
}

/// Opens an LMDB environment.
pub fn open_env(dir: &Path, max_dbs: u32, durability: Durability) -> Result<StoreEnv, StoreError> {
    std::fs::create_dir_all(dir)?;
    // SAFETY: each environment directory is opened once per process (the
    // agent holds it for its lifetime), which is what LMDB requires.
    let mut opts = EnvOpenOptions::new().read_txn_without_tls();
    opts.map_size(16 * 1024 * 1024 * 1024).max_dbs(max_dbs);
    let flags = match durability {
        Durability::Full => None,
        Durability::NoMetaSync => Some(heed::EnvFlags::NO_META_SYNC),
        Durability::None => Some(heed::EnvFlags::NO_SYNC | heed::EnvFlags::NO_META_SYNC),
    };
    if let Some(flags) = flags {
        // SAFETY: these flags trade durability of the last commits for
        // speed, as documented on `Durability`.
        unsafe {
            opts.flags(flags);
        }
    }
    let env = unsafe { opts.open(dir)? };
    Ok(env)
}

impl Tables {
    /// The catalog tables of a server's replica.
    pub fn open(dir: &Path) -> Result<Tables, StoreError> {
        Self::open_with(dir, Durability::NoMetaSync)
    }

    /// Tables whose commits are never fsynced (a client agent's view).
    pub fn open_unsynced(dir: &Path) -> Result<Tables, StoreError> {
        Self::open_with(dir, Durability::None)
    }

    fn open_with(dir: &Path, durability: Durability) -> Result<Tables, StoreError> {
        let env = open_env(dir, 16, durability)?;
        let wtxn = env.write_txn()?;
        let (
            nodes,
            services,
            checks,
            kv,
            meta,
            sessions,
            session_keys,
            acl,
            (coordinates, config_entries, prepared_queries),
        ) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> Result<_, heed::Error> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("nodes"))?,
                    dbo.create_database(wtxn, Some("services"))?,
                    dbo.create_database(wtxn, Some("checks"))?,
                    dbo.create_database(wtxn, Some("kv"))?,
                    dbo.create_database(wtxn, Some("meta"))?,
                    dbo.create_database(wtxn, Some("sessions"))?,
                    dbo.create_database(wtxn, Some("session_keys"))?,
                    (
                        dbo.create_database(wtxn, Some("acl_tokens"))?,
                        dbo.create_database(wtxn, Some("acl_secrets"))?,
                        dbo.create_database(wtxn, Some("acl_policies"))?,
                        dbo.create_database(wtxn, Some("acl_roles"))?,
                    ),
                    (
                        dbo.create_database(wtxn, Some("coordinates"))?,
                        dbo.create_database(wtxn, Some("config_entries"))?,
                        dbo.create_database(wtxn, Some("prepared_queries"))?,
                    ),
                )))
            })?
            .unwrap_commit();
        Ok(Tables {
            env: env.clone(),
            nodes,
            services,
            checks,
            kv,
            meta,
            sessions,
            session_keys,
            acl_tokens: acl.0,
            acl_secrets: acl.1,
            acl_policies: acl.2,
            acl_roles: acl.3,
            coordinates,
            config_entries,
            prepared_queries,
        })
    }

    pub fn table_index(&self, txn: &RoTxn, table: Table) -> Result<u64, heed::Error> {
        Ok(self
            .meta
            .get(txn, table.meta_key())?
            .and_then(|b| b.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    pub fn set_table_index(
        &self,
        txn: &mut RwTxn,
        table: Table,
        index: u64,
    ) -> Result<(), heed::Error> {
        self.meta.put(txn, table.meta_key(), &index.to_be_bytes())
    }

    /// Highest index over several tables, at least 1 (Consul never returns 0).
    pub fn max_index(&self, txn: &RoTxn, tables: &[Table]) -> Result<u64, heed::Error> {
        let mut max = 1;
        for t in tables {
            max = max.max(self.table_index(txn, *t)?);
        }
        Ok(max)
    }
}
