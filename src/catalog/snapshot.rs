//! The whole catalog as one value: what a raft snapshot carries and what
//! a client agent's view is resynchronised from. Dumped from one read
//! transaction, restored in one write transaction that replaces every
//! table, so either side sees the catalog at exactly one index.

use super::prepared_query::PreparedQuery;
use super::types::{Check, KvEntry, Node, Service, Session};
use crate::acl::types::{Policy, Role, Token};
use crate::coordinate::CoordinateEntry;
use crate::store::{node_scoped_key, Table, Tables};
use heed::{RoTxn, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};

/// Every table plus the table indexes. (`session_keys` is derived from
/// `kv` and rebuilt on restore.)
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogSnapshot {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub checks: Vec<Check>,
    pub kv: Vec<KvEntry>,
    pub indexes: Vec<(String, u64)>,
    pub sessions: Vec<Session>,
    /// ACL tokens, policies and roles; emptied before a snapshot is sent
    /// to a client agent's view (they carry secrets).
    pub acl: AclSnapshot,
    /// The autopilot configuration and config entries.
    pub operator: OperatorSnapshot,
    /// Network coordinates, read as empty when absent ([`TrailingCoordinates`]).
    #[serde(default)]
    pub coordinates: TrailingCoordinates,
    /// Prepared queries, their tokens redacted before a snapshot is sent
    /// to a client agent's view; last, and read as empty when absent, as
    /// the coordinates before them ([`TrailingQueries`]).
    #[serde(default)]
    pub prepared_queries: TrailingQueries,
}

/// The coordinates a snapshot carries. bincode is not self-describing: a
/// struct written before this field existed simply ends where the field
/// would begin, so decoding it runs out of input at exactly this point.
/// That (and only that, the fields after it running out too) reads as no
/// coordinates.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct TrailingCoordinates(pub Vec<CoordinateEntry>);

impl<'de> Deserialize<'de> for TrailingCoordinates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TrailingCoordinates(
            Vec::<CoordinateEntry>::deserialize(d).unwrap_or_default(),
        ))
    }
}

/// What `catalog::operator` keeps.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    pub autopilot: Option<super::operator::AutopilotConfig>,
    pub config_entries: Vec<super::operator::ConfigEntry>,
}

/// The snapshot body written before operator state and coordinates
/// existed; still decodable (bincode is not self-describing, so it needs
/// its own shape).
#[derive(Deserialize)]
pub struct SnapshotBeforeOperator {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub checks: Vec<Check>,
    pub kv: Vec<KvEntry>,
    pub indexes: Vec<(String, u64)>,
    pub sessions: Vec<Session>,
    pub acl: AclSnapshot,
}

impl From<SnapshotBeforeOperator> for CatalogSnapshot {
    fn from(s: SnapshotBeforeOperator) -> Self {
        CatalogSnapshot {
            nodes: s.nodes,
            services: s.services,
            checks: s.checks,
            kv: s.kv,
            indexes: s.indexes,
            sessions: s.sessions,
            acl: s.acl,
            operator: OperatorSnapshot::default(),
            coordinates: TrailingCoordinates::default(),
            prepared_queries: TrailingQueries::default(),
        }
    }
}

/// The prepared queries a snapshot carries; absent (a snapshot from
/// before them ends here) reads as none, as [`TrailingCoordinates`].
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct TrailingQueries(pub Vec<PreparedQuery>);

impl<'de> Deserialize<'de> for TrailingQueries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TrailingQueries(
            Vec::<PreparedQuery>::deserialize(d).unwrap_or_default(),
        ))
    }
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct AclSnapshot {
    pub tokens: Vec<Token>,
    pub policies: Vec<Policy>,
    pub roles: Vec<Role>,
    pub bootstrap_index: Option<u64>,
}

impl CatalogSnapshot {
    /// Replaces every prepared query's token with Consul's `<hidden>`, for
    /// a client agent's view, which holds no secrets.
    pub fn redact_query_tokens(&mut self) {
        for q in &mut self.prepared_queries.0 {
            if !q.token.is_empty() {
                q.token = super::prepared_query::REDACTED_TOKEN.to_string();
            }
        }
    }

    /// Re-dates the snapshot to a restore applied at raft index `index`:
    /// every entry's `ModifyIndex` becomes `index` (its `CreateIndex` is
    /// kept unless above `index`), and so does every table index. The
    /// restore is then one write, at `index`, of everything it holds, so
    /// no index a client saw before it is above what it sees after, and a
    /// snapshot from a cluster further along leaves no entry dated after
    /// the writes that follow. A table added here needs its entries
    /// re-dated too.
    pub fn restamp(&mut self, index: u64) {
        fn at(create: &mut u64, modify: &mut u64, index: u64) {
            *create = (*create).min(index);
            *modify = index;
        }
        for n in &mut self.nodes {
            at(&mut n.create_index, &mut n.modify_index, index);
        }
        for s in &mut self.services {
            at(&mut s.create_index, &mut s.modify_index, index);
        }
        for c in &mut self.checks {
            at(&mut c.create_index, &mut c.modify_index, index);
        }
        for e in &mut self.kv {
            at(&mut e.create_index, &mut e.modify_index, index);
        }
        for s in &mut self.sessions {
            at(&mut s.create_index, &mut s.modify_index, index);
        }
        for t in &mut self.acl.tokens {
            at(&mut t.create_index, &mut t.modify_index, index);
        }
        for p in &mut self.acl.policies {
            at(&mut p.create_index, &mut p.modify_index, index);
        }
        for r in &mut self.acl.roles {
            at(&mut r.create_index, &mut r.modify_index, index);
        }
        for q in &mut self.prepared_queries.0 {
            at(&mut q.create_index, &mut q.modify_index, index);
        }
        for (_, i) in &mut self.indexes {
            *i = index;
        }
        if let Some(b) = self.acl.bootstrap_index.as_mut() {
            *b = (*b).min(index);
        }
        if let Some(a) = self.operator.autopilot.as_mut() {
            at(&mut a.create_index, &mut a.modify_index, index);
        }
        for e in &mut self.operator.config_entries {
            at(&mut e.create_index, &mut e.modify_index, index);
        }
    }
}

/// `meta` keys that say where this replica stands (its applied position,
/// raft's log id and membership) rather than what the catalog holds: a
/// restore applied from the log keeps them.
const POSITION_KEYS: [&str; 2] = ["raft/", "catalog/"];

/// Applies a restore (`Command::Restore`) at raft index `index`, inside the
/// state machine's transaction: every table replaced by the snapshot's,
/// re-dated to `index` ([`CatalogSnapshot::restamp`]), the replica's
/// position kept.
pub fn apply_restore(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    snap: &CatalogSnapshot,
) -> Result<(), heed::Error> {
    let mut kept = Vec::new();
    for item in tables.meta.iter(txn)? {
        let (k, v) = item?;
        if POSITION_KEYS.iter().any(|p| k.starts_with(p)) {
            kept.push((k.to_string(), v.to_vec()));
        }
    }
    let mut snap = snap.clone();
    snap.restamp(index);
    restore(tables, txn, &snap)?;
    for (k, v) in kept {
        tables.meta.put(txn, &k, &v)?;
    }
    for t in INDEXED {
        tables.set_table_index(txn, t, index)?;
    }
    Ok(())
}

/// The tables whose indexes a snapshot carries.
const INDEXED: [Table; 9] = [
    Table::Nodes,
    Table::Services,
    Table::Checks,
    Table::Kvs,
    Table::Sessions,
    Table::Acl,
    Table::Coordinates,
    Table::ConfigEntries,
    Table::PreparedQueries,
];

pub fn dump(tables: &Tables, txn: &RoTxn<WithoutTls>) -> Result<CatalogSnapshot, heed::Error> {
    let mut snap = CatalogSnapshot::default();
    for r in tables.nodes.iter(txn)? {
        snap.nodes.push(r?.1);
    }
    for r in tables.services.iter(txn)? {
        snap.services.push(r?.1);
    }
    for r in tables.checks.iter(txn)? {
        snap.checks.push(r?.1);
    }
    for r in tables.kv.iter(txn)? {
        snap.kv.push(r?.1);
    }
    for r in tables.sessions.iter(txn)? {
        snap.sessions.push(r?.1);
    }
    for r in tables.acl_tokens.iter(txn)? {
        snap.acl.tokens.push(r?.1);
    }
    for r in tables.acl_policies.iter(txn)? {
        snap.acl.policies.push(r?.1);
    }
    for r in tables.acl_roles.iter(txn)? {
        snap.acl.roles.push(r?.1);
    }
    snap.acl.bootstrap_index = super::acl::bootstrap_index(tables, txn)?;
    for r in tables.coordinates.iter(txn)? {
        let (key, coord) = r?;
        let (node, segment) = key.split_once(crate::store::KEY_SEP).unwrap_or((key, ""));
        snap.coordinates.0.push(CoordinateEntry {
            node: node.to_string(),
            segment: segment.to_string(),
            coord,
        });
    }
    snap.operator.autopilot = super::operator::read_autopilot(tables, txn)?;
    for r in tables.config_entries.iter(txn)? {
        snap.operator.config_entries.push(r?.1);
    }
    snap.prepared_queries.0 = super::prepared_query::all(tables, txn)?;
    for t in INDEXED {
        snap.indexes
            .push((t.meta_key().to_string(), tables.table_index(txn, t)?));
    }
    Ok(snap)
}

/// Replaces every table (and the `meta` table, which the caller refills
/// with its own keys afterwards) with the snapshot's contents.
pub fn restore(
    tables: &Tables,
    txn: &mut RwTxn,
    snap: &CatalogSnapshot,
) -> Result<(), heed::Error> {
    tables.nodes.clear(txn)?;
    tables.services.clear(txn)?;
    tables.checks.clear(txn)?;
    tables.kv.clear(txn)?;
    tables.sessions.clear(txn)?;
    tables.session_keys.clear(txn)?;
    tables.meta.clear(txn)?;
    tables.acl_tokens.clear(txn)?;
    tables.acl_secrets.clear(txn)?;
    tables.acl_policies.clear(txn)?;
    tables.acl_roles.clear(txn)?;
    tables.coordinates.clear(txn)?;
    for e in &snap.coordinates.0 {
        tables
            .coordinates
            .put(txn, &node_scoped_key(&e.node, &e.segment), &e.coord)?;
    }
    tables.config_entries.clear(txn)?;
    for e in &snap.operator.config_entries {
        tables
            .config_entries
            .put(txn, &node_scoped_key(&e.kind, &e.name), e)?;
    }
    tables.prepared_queries.clear(txn)?;
    for q in &snap.prepared_queries.0 {
        tables
            .prepared_queries
            .put(txn, &super::prepared_query::id_key(&q.id), q)?;
    }
    for t in &snap.acl.tokens {
        let key = crate::acl::types::id_key(&t.accessor_id);
        tables.acl_secrets.put(txn, &t.secret_id, &key)?;
        tables.acl_tokens.put(txn, &key, t)?;
    }
    for p in &snap.acl.policies {
        tables
            .acl_policies
            .put(txn, &crate::acl::types::id_key(&p.id), p)?;
    }
    for r in &snap.acl.roles {
        tables
            .acl_roles
            .put(txn, &crate::acl::types::id_key(&r.id), r)?;
    }
    if let Some(i) = snap.acl.bootstrap_index {
        tables
            .meta
            .put(txn, super::acl::BOOTSTRAP_KEY, &i.to_be_bytes())?;
    }
    for n in &snap.nodes {
        tables.nodes.put(txn, &n.name, n)?;
    }
    for s in &snap.services {
        tables
            .services
            .put(txn, &node_scoped_key(&s.node, &s.id), s)?;
    }
    for c in &snap.checks {
        tables
            .checks
            .put(txn, &node_scoped_key(&c.node, &c.check_id), c)?;
    }
    for e in &snap.kv {
        tables.kv.put(txn, &e.key, e)?;
        if !e.session.is_empty() {
            tables
                .session_keys
                .put(txn, &node_scoped_key(&e.session, &e.key), &[])?;
        }
    }
    for s in &snap.sessions {
        tables.sessions.put(txn, &s.id, s)?;
    }
    for (k, v) in &snap.indexes {
        tables.meta.put(txn, k, &v.to_be_bytes())?;
    }
    if let Some(a) = &snap.operator.autopilot {
        super::operator::put_autopilot(tables, txn, a)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::apply::apply;
    use crate::catalog::command::{Command, KvOp};
    use crate::catalog::query::Reader;

    fn set(t: &Tables, index: u64, key: &str, value: &str) {
        let mut txn = t.env.write_txn().unwrap();
        let cmd = Command::Kv(KvOp::Set {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            flags: 0,
        });
        apply(t, &mut txn, index, &cmd).unwrap();
        txn.commit().unwrap();
    }

    fn dump_of(t: &Tables) -> CatalogSnapshot {
        let txn = t.env.read_txn().unwrap();
        dump(t, &txn).unwrap()
    }

    #[test]
    fn a_restore_replaces_everything_and_dates_it_at_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        set(&t, 5, "keep", "old");
        set(&t, 6, "gone", "x");
        let mut snap = dump_of(&t);
        snap.kv.retain(|e| e.key == "keep");
        snap.kv[0].value = b"restored".to_vec();
        // An entry dated past the restore (a snapshot from a cluster
        // further along).
        snap.kv.push(KvEntry {
            key: "later".into(),
            value: b"v".to_vec(),
            create_index: 900,
            modify_index: 950,
            ..KvEntry::default()
        });
        set(&t, 7, "new", "y");
        {
            let mut txn = t.env.write_txn().unwrap();
            t.meta.put(&mut txn, "raft/membership", b"m").unwrap();
            txn.commit().unwrap();
        }
        let mut txn = t.env.write_txn().unwrap();
        let (resp, touched) = apply(&t, &mut txn, 10, &Command::Restore(Box::new(snap))).unwrap();
        txn.commit().unwrap();
        assert_eq!(resp, crate::catalog::command::Response::Bool(true));
        assert!(touched.restored && touched.kv_all && touched.catalog);

        let r = Reader::new(&t).unwrap();
        let keys: Vec<_> = r
            .kv_list("")
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.create_index, e.modify_index))
            .collect();
        assert_eq!(
            keys,
            [("keep".to_string(), 5, 10), ("later".to_string(), 10, 10)]
        );
        assert_eq!(r.kv_get("keep").unwrap().unwrap().value, b"restored");
        for table in INDEXED {
            assert_eq!(r.index(&[table]).unwrap(), 10, "{table:?}");
        }
        drop(r);
        let txn = t.env.read_txn().unwrap();
        assert_eq!(
            t.meta.get(&txn, "raft/membership").unwrap(),
            Some(&b"m"[..])
        );
    }
}
