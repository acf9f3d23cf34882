//! Replicated operator settings kept beside the catalog: the autopilot
//! configuration (`/v1/operator/autopilot/configuration`), one value in
//! `meta`. Like every other replicated state it changes only through a
//! command ([`OperatorOp`]) applied at a raft index, which becomes its
//! `CreateIndex`/`ModifyIndex`, and it travels in snapshots.

use super::apply::{Outcome, Touched};
use super::command::Response;
use super::query::Reader;
use crate::store::Tables;
use heed::RwTxn;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `meta` key of the autopilot configuration (bincode).
const AUTOPILOT_KEY: &str = "operator/autopilot";

/// Consul's `structs.AutopilotConfig`, with its defaults
/// (`agent/config/default.go`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    /// Remove failed servers from raft (left ones are always removed).
    pub cleanup_dead_servers: bool,
    /// How long a server may go without contact from the leader and stay healthy.
    pub last_contact_threshold: Duration,
    /// How many entries a server may trail the leader by and stay healthy.
    pub max_trailing_logs: u64,
    /// Below this many voters, dead servers are not removed.
    pub min_quorum: u32,
    /// How long a server must be healthy before it counts as stable.
    pub server_stabilization_time: Duration,
    /// Enterprise settings, kept and echoed as Consul's CE does.
    pub redundancy_zone_tag: String,
    pub disable_upgrade_migration: bool,
    pub upgrade_version_tag: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    fn default() -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// How an autopilot write is conditioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutopilotWrite {
    /// `PUT` without `?cas`: always.
    Set,
    /// `?cas=<index>`: only if the stored `ModifyIndex` is `index` (a
    /// configuration that was never written never matches, as in Consul).
    Cas(u64),
    /// The leader's first write of the defaults: only if none is stored.
    Init,
}

/// Operator commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorOp {
    Autopilot {
        config: AutopilotConfig,
        write: AutopilotWrite,
    },
}

pub(super) fn apply_operator(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &OperatorOp,
    _touched: &mut Touched,
) -> Outcome<Response> {
    let done = match op {
        OperatorOp::Autopilot { config, write } => {
            apply_autopilot(tables, txn, index, config, *write)?
        }
    };
    Ok(Ok(Response::Bool(done)))
}

fn apply_autopilot(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    config: &AutopilotConfig,
    write: AutopilotWrite,
) -> Result<bool, heed::Error> {
    let existing = read_autopilot(tables, txn)?;
    let go = match (write, &existing) {
        (AutopilotWrite::Set, _) => true,
        (AutopilotWrite::Cas(cas), Some(e)) => e.modify_index == cas,
        (AutopilotWrite::Cas(_), None) => false,
        (AutopilotWrite::Init, e) => e.is_none(),
    };
    if !go {
        return Ok(false);
    }
    let mut stored = config.clone();
    stored.create_index = existing.map_or(index, |e| e.create_index);
    stored.modify_index = index;
    put_autopilot(tables, txn, &stored)?;
    Ok(true)
}

fn codec(e: bincode::Error) -> heed::Error {
    heed::Error::Encoding(e)
}

pub(super) fn read_autopilot(
    tables: &Tables,
    txn: &heed::RoTxn<heed::WithoutTls>,
) -> Result<Option<AutopilotConfig>, heed::Error> {
    match tables.meta.get(txn, AUTOPILOT_KEY)? {
        Some(b) => bincode::deserialize(b).map(Some).map_err(codec),
        None => Ok(None),
    }
}

pub(super) fn put_autopilot(
    tables: &Tables,
    txn: &mut RwTxn,
    config: &AutopilotConfig,
) -> Result<(), heed::Error> {
    let bytes = bincode::serialize(config).map_err(codec)?;
    tables.meta.put(txn, AUTOPILOT_KEY, &bytes)
}

impl Reader<'_> {
    /// The stored autopilot configuration (None until the first leader
    /// has written the defaults).
    pub fn autopilot(&self) -> Result<Option<AutopilotConfig>, heed::Error> {
        read_autopilot(self.tables, &self.txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::apply::apply;
    use crate::catalog::command::Command;

    fn write(t: &Tables, index: u64, config: &AutopilotConfig, write: AutopilotWrite) -> bool {
        let mut txn = t.env.write_txn().unwrap();
        let cmd = Command::Operator(OperatorOp::Autopilot {
            config: config.clone(),
            write,
        });
        let (resp, _) = apply(t, &mut txn, index, &cmd).unwrap();
        txn.commit().unwrap();
        resp == Response::Bool(true)
    }

    #[test]
    fn autopilot_init_once_then_cas_on_modify_index() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        let defaults = AutopilotConfig::default();
        assert!(
            !write(&t, 3, &defaults, AutopilotWrite::Cas(0)),
            "nothing stored: no cas matches"
        );
        assert!(write(&t, 4, &defaults, AutopilotWrite::Init));
        assert!(!write(&t, 5, &defaults, AutopilotWrite::Init));
        let changed = AutopilotConfig {
            cleanup_dead_servers: false,
            ..defaults.clone()
        };
        assert!(!write(&t, 6, &changed, AutopilotWrite::Cas(3)));
        assert!(write(&t, 7, &changed, AutopilotWrite::Cas(4)));
        let r = Reader::new(&t).unwrap();
        let stored = r.autopilot().unwrap().unwrap();
        assert!(!stored.cleanup_dead_servers);
        assert_eq!((stored.create_index, stored.modify_index), (4, 7));
        drop(r);
        assert!(write(&t, 8, &defaults, AutopilotWrite::Set));
        let r = Reader::new(&t).unwrap();
        assert_eq!(r.autopilot().unwrap().unwrap().modify_index, 8);
    }
}
