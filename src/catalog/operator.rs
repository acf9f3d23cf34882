//! Replicated operator settings kept beside the catalog: the autopilot
//! configuration (`/v1/operator/autopilot/configuration`), one value in
//! `meta`, and config entries (`/v1/config`), a table of JSON documents
//! keyed by kind and name. Like every other replicated state they change
//! only through a command ([`OperatorOp`]) applied at a raft index, which
//! becomes their `CreateIndex`/`ModifyIndex`, and they travel in snapshots.
//! The HTTP edge validates a document (`http::config`); here it is only
//! stored.

use super::apply::{Outcome, Touched};
use super::command::Response;
use super::query::Reader;
use crate::store::{node_prefix, node_scoped_key, Table, Tables};
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

/// A config entry: its kind and name, and the rest of its document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Canonical kind (`service-defaults`, ...).
    pub kind: String,
    pub name: String,
    /// The document's other top-level fields, a JSON object as text
    /// (bincode cannot carry `serde_json::Value`).
    pub body: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Operator commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OperatorOp {
    Autopilot {
        config: AutopilotConfig,
        write: AutopilotWrite,
    },
    /// Upsert; with `cas`, only if the stored entry's `ModifyIndex` is
    /// `cas` (0: only if there is none), as Consul's `EnsureConfigEntryCAS`.
    SetConfigEntry {
        entry: ConfigEntry,
        cas: Option<u64>,
    },
    /// Delete; with `cas`, only if the entry exists with that `ModifyIndex`.
    DeleteConfigEntry {
        kind: String,
        name: String,
        cas: Option<u64>,
    },
}

pub(super) fn apply_operator(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &OperatorOp,
    touched: &mut Touched,
) -> Outcome<Response> {
    let done = match op {
        OperatorOp::Autopilot { config, write } => {
            apply_autopilot(tables, txn, index, config, *write)?
        }
        OperatorOp::SetConfigEntry { entry, cas } => {
            set_entry(tables, txn, index, entry, *cas, touched)?
        }
        OperatorOp::DeleteConfigEntry { kind, name, cas } => {
            delete_entry(tables, txn, index, kind, name, *cas, touched)?
        }
    };
    Ok(Ok(Response::Bool(done)))
}

fn set_entry(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    entry: &ConfigEntry,
    cas: Option<u64>,
    touched: &mut Touched,
) -> Result<bool, heed::Error> {
    let key = node_scoped_key(&entry.kind, &entry.name);
    let existing = tables.config_entries.get(txn, &key)?;
    if let Some(cas) = cas {
        if existing.as_ref().map_or(0, |e| e.modify_index) != cas {
            return Ok(false);
        }
    }
    let mut stored = entry.clone();
    stored.create_index = existing.map_or(index, |e| e.create_index);
    stored.modify_index = index;
    tables.config_entries.put(txn, &key, &stored)?;
    tables.set_table_index(txn, Table::ConfigEntries, index)?;
    // Blocking config-entry reads wait on the catalog's change counter.
    touched.catalog = true;
    Ok(true)
}

fn delete_entry(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    kind: &str,
    name: &str,
    cas: Option<u64>,
    touched: &mut Touched,
) -> Result<bool, heed::Error> {
    let key = node_scoped_key(kind, name);
    let Some(existing) = tables.config_entries.get(txn, &key)? else {
        // Deleting nothing succeeds, but a conditional delete does not.
        return Ok(cas.is_none());
    };
    if cas.is_some_and(|c| c != existing.modify_index) {
        return Ok(false);
    }
    tables.config_entries.delete(txn, &key)?;
    tables.set_table_index(txn, Table::ConfigEntries, index)?;
    touched.catalog = true;
    Ok(true)
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

    pub fn config_entry(&self, kind: &str, name: &str) -> Result<Option<ConfigEntry>, heed::Error> {
        self.tables
            .config_entries
            .get(&self.txn, &node_scoped_key(kind, name))
    }

    /// The entries of one kind, by name.
    pub fn config_entries(&self, kind: &str) -> Result<Vec<ConfigEntry>, heed::Error> {
        let mut out = Vec::new();
        for r in self
            .tables
            .config_entries
            .prefix_iter(&self.txn, &node_prefix(kind))?
        {
            out.push(r?.1);
        }
        Ok(out)
    }

    pub fn config_entries_index(&self) -> Result<u64, heed::Error> {
        self.tables.max_index(&self.txn, &[Table::ConfigEntries])
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

    fn entry(kind: &str, name: &str) -> ConfigEntry {
        ConfigEntry {
            kind: kind.into(),
            name: name.into(),
            body: "{}".into(),
            create_index: 0,
            modify_index: 0,
        }
    }

    fn run(t: &Tables, index: u64, op: OperatorOp) -> bool {
        let mut txn = t.env.write_txn().unwrap();
        let (resp, _) = apply(t, &mut txn, index, &Command::Operator(op)).unwrap();
        txn.commit().unwrap();
        resp == Response::Bool(true)
    }

    #[test]
    fn config_entries_cas_on_write_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        let set = |cas| OperatorOp::SetConfigEntry {
            entry: entry("service-defaults", "web"),
            cas,
        };
        assert!(!run(&t, 2, set(Some(1))), "cas on a missing entry");
        assert!(run(&t, 3, set(Some(0))), "cas 0 creates");
        assert!(!run(&t, 4, set(Some(0))), "cas 0 only creates");
        assert!(run(&t, 5, set(Some(3))));
        assert!(run(&t, 6, set(None)));
        assert!(run(
            &t,
            7,
            OperatorOp::SetConfigEntry {
                entry: entry("service-defaults", "api"),
                cas: None
            }
        ));
        let r = Reader::new(&t).unwrap();
        let web = r.config_entry("service-defaults", "web").unwrap().unwrap();
        assert_eq!((web.create_index, web.modify_index), (3, 6));
        let names: Vec<_> = r
            .config_entries("service-defaults")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["api", "web"]);
        assert!(r.config_entries("service-router").unwrap().is_empty());
        assert_eq!(r.config_entries_index().unwrap(), 7);
        drop(r);
        let del = |name: &str, cas| OperatorOp::DeleteConfigEntry {
            kind: "service-defaults".into(),
            name: name.into(),
            cas,
        };
        assert!(!run(&t, 8, del("web", Some(5))));
        assert!(run(&t, 9, del("web", Some(6))));
        assert!(!run(&t, 10, del("web", Some(6))), "cas delete of nothing");
        assert!(run(&t, 11, del("web", None)), "plain delete of nothing");
        let r = Reader::new(&t).unwrap();
        assert!(r.config_entry("service-defaults", "web").unwrap().is_none());
        assert_eq!(r.config_entries_index().unwrap(), 9);
    }

    #[test]
    fn snapshots_carry_operator_state_and_older_ones_still_decode() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        assert!(write(
            &t,
            2,
            &AutopilotConfig::default(),
            AutopilotWrite::Init
        ));
        let set = OperatorOp::SetConfigEntry {
            entry: entry("mesh", "mesh"),
            cas: None,
        };
        assert!(run(&t, 3, set));
        let snap = {
            let txn = t.env.read_txn().unwrap();
            crate::catalog::snapshot::dump(&t, &txn).unwrap()
        };
        assert_eq!(snap.operator.config_entries.len(), 1);
        let other = tempfile::tempdir().unwrap();
        let t2 = Tables::open(other.path()).unwrap();
        let mut txn = t2.env.write_txn().unwrap();
        crate::catalog::snapshot::restore(&t2, &mut txn, &snap).unwrap();
        txn.commit().unwrap();
        let r = Reader::new(&t2).unwrap();
        assert_eq!(r.autopilot().unwrap().unwrap().modify_index, 2);
        assert_eq!(
            r.config_entry("mesh", "mesh")
                .unwrap()
                .unwrap()
                .modify_index,
            3
        );
        drop(r);

        // An archive's state from before the operator state and the
        // coordinates: the same encoding without its trailing (empty)
        // operator and coordinate parts.
        let mut old = crate::catalog::snapshot::CatalogSnapshot::default();
        old.kv.push(crate::catalog::types::KvEntry {
            key: "k".into(),
            ..Default::default()
        });
        let mut bytes = crate::snapshot::encode_state(&old).unwrap();
        let trailing = 1 + 8 + 8 + 8; // no autopilot, config entries, coordinates, queries
        bytes.truncate(bytes.len() - trailing);
        let back = crate::snapshot::decode_state(&bytes).unwrap();
        assert_eq!(back, old);
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
