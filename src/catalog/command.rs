//! Commands: the only way replicated state changes. Each is proposed to raft,
//! and its log index becomes the Consul index of what it writes.

use super::types::{Check, KvEntry, Node, Service, Session};
use serde::{Deserialize, Serialize};

/// A catalog registration: a node, optionally one service on it, and checks.
/// Agent anti-entropy and `PUT /v1/catalog/register` both produce this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// `create_index`/`modify_index` are ignored; apply assigns them.
    pub node: Node,
    pub service: Option<Service>,
    pub checks: Vec<Check>,
    /// Leave the node's address/meta as they are if it exists.
    pub skip_node_update: bool,
}

/// `PUT /v1/catalog/deregister`: the whole node, one service (with its
/// checks), or one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deregistration {
    pub node: String,
    pub service_id: Option<String>,
    pub check_id: Option<String>,
}

/// One KV write verb. Reads in a transaction are `TxnOp::Kv` with a read verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KvOp {
    /// Unconditional set.
    Set {
        key: String,
        value: Vec<u8>,
        flags: u64,
    },
    /// Set only if the key's ModifyIndex equals `index` (0 = only if absent).
    Cas {
        key: String,
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    Delete {
        key: String,
    },
    /// Delete only if ModifyIndex equals `index`.
    DeleteCas {
        key: String,
        index: u64,
    },
    /// Delete every key with this prefix.
    DeleteTree {
        prefix: String,
    },
    /// `?acquire=<session>`: set the key and take its lock for `session`
    /// unless another session holds it. LockIndex counts acquisitions.
    Lock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    /// `?release=<session>`: set the key and drop the lock, only by its holder.
    Unlock {
        key: String,
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
}

impl KvOp {
    /// The key an acquire would lock (for the leader's lock-delay check).
    pub fn lock_key(&self) -> Option<&str> {
        match self {
            KvOp::Lock { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// Session verbs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionOp {
    /// The session's ID is chosen by the proposer; apply must not invent one.
    Create(Session),
    /// Destroy (or invalidate, from the leader's TTL timers) a session,
    /// releasing or deleting its keys per its behavior.
    Destroy { id: String },
    /// Answered by the leader before proposal (it resets the session's TTL
    /// timer there) and never entered into the log; applying it changes nothing.
    Renew { id: String },
}

/// A transaction operation (`PUT /v1/txn`): KV verbs, and the catalog's
/// node, service and check verbs (`catalog::txn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnOp {
    Write(KvOp),
    Get {
        key: String,
    },
    GetOrEmpty {
        key: String,
    },
    GetTree {
        prefix: String,
    },
    CheckIndex {
        key: String,
        index: u64,
    },
    CheckNotExists {
        key: String,
    },
    CheckSession {
        key: String,
        session: String,
    },
    /// The CAS verbs compare with `node.modify_index`, as Consul's do.
    Node {
        verb: CatalogVerb,
        node: Node,
    },
    /// `service.modify_index` for the CAS verbs; the service is on `node`.
    Service {
        verb: CatalogVerb,
        node: String,
        service: Service,
    },
    /// `check.node` names the node; `check.modify_index` for the CAS verbs.
    Check {
        verb: CatalogVerb,
        check: Check,
    },
}

/// The verbs of a transaction's node, service and check operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogVerb {
    Get,
    Set,
    Cas,
    Delete,
    DeleteCas,
}

impl CatalogVerb {
    pub fn parse(verb: &str) -> Option<CatalogVerb> {
        Some(match verb {
            "get" => CatalogVerb::Get,
            "set" => CatalogVerb::Set,
            "cas" => CatalogVerb::Cas,
            "delete" => CatalogVerb::Delete,
            "delete-cas" => CatalogVerb::DeleteCas,
            _ => return None,
        })
    }

    pub fn writes(self) -> bool {
        self != CatalogVerb::Get
    }
}

/// Commands are built once and moved into the raft log, so the size gap
/// between variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Register(Registration),
    Deregister(Deregistration),
    Kv(KvOp),
    Txn(Vec<TxnOp>),
    Session(SessionOp),
    /// Tokens, policies and roles. Never fed to client agents' views
    /// (they carry secrets).
    Acl(super::acl::AclOp),
    /// `PUT /v1/snapshot`: replace the whole replicated state with a
    /// snapshot's (`catalog::snapshot::apply_restore`). Fed to client
    /// agents' views with its ACL tables emptied.
    Restore(Box<super::snapshot::CatalogSnapshot>),
    /// A batch of network coordinates (Consul's `CoordinateBatchUpdate`),
    /// as a server collected them from agents.
    Coordinates(Vec<crate::coordinate::CoordinateEntry>),
    /// Autopilot configuration and config entries.
    Operator(super::operator::OperatorOp),
    /// Prepared queries (`/v1/query`). Fed to client agents' views
    /// without their tokens.
    PreparedQuery(super::prepared_query::PreparedQueryOp),
}

impl Command {
    /// Metric/log label.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Register(_) => "register",
            Command::Deregister(_) => "deregister",
            Command::Kv(_) => "kv",
            Command::Txn(_) => "txn",
            Command::Session(_) => "session",
            Command::Acl(_) => "acl",
            Command::Restore(_) => "restore",
            Command::Coordinates(_) => "coordinate-batch-update",
            Command::Operator(_) => "operator",
            Command::PreparedQuery(_) => "prepared_query",
        }
    }
}

/// One result of a transaction: an entry touched or read. Consul returns a
/// KV entry without its value for writes, with it for reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnResult {
    Kv { entry: KvEntry, include_value: bool },
    Node(Node),
    Service(Service),
    Check(Check),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// What applying a command returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Response {
    /// Non-command log entries (blank, membership).
    #[default]
    None,
    /// Done; for KV verbs `false` means a failed CAS.
    Bool(bool),
    Txn(Result<Vec<TxnResult>, Vec<TxnError>>),
    /// A session renewal: the session, or none when it does not exist.
    Session(Option<Session>),
    /// The command was rejected by the state machine (nothing written).
    Rejected(String),
}

/// Consul's `ChangesNode`: whether registering `new` would rewrite the
/// stored node `old`. A registration that only re-posts the node's current
/// data (as every service registration does) needs no `node:write`.
pub fn changes_node(new: &Registration, old: &super::types::Node) -> bool {
    if new.skip_node_update {
        return false;
    }
    let n = &new.node;
    (!n.id.is_empty() && n.id != old.id)
        || n.address != old.address
        || n.datacenter != old.datacenter
        || n.tagged_addresses != old.tagged_addresses
        || n.meta != old.meta
}
