//! The state machine's transition function. `apply` takes a write
//! transaction, the command's raft index and the command; it reads no clock
//! and does no I/O beyond the transaction, so replicas that apply the same
//! log reach the same tables. A rejected command writes nothing: every
//! command runs in a nested transaction that is aborted on rejection.

use super::command::{
    Command, Deregistration, KvOp, Registration, Response, TxnError, TxnOp, TxnResult,
};
use super::sessions;
use super::types::{Check, HealthStatus, KvEntry};
use crate::store::{node_prefix, node_scoped_key, Table, Tables};
use heed::RwTxn;

/// What a command touched, so the caller can wake watchers, invalidate
/// caches and start lock-delays.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Touched {
    pub catalog: bool,
    pub kv: bool,
    pub sessions: bool,
    /// Tokens, policies or roles changed.
    pub acl: bool,
    /// Prepared queries changed.
    pub prepared_queries: bool,
    /// KV keys written or deleted (for per-key blocking queries).
    pub kv_keys: Vec<String>,
    /// Every KV key may have changed (a delete of the whole tree).
    pub kv_all: bool,
    /// The whole state was replaced (a snapshot restore): in-memory
    /// session state (TTL timers, lock-delays) starts over.
    pub restored: bool,
    /// Keys released or deleted by a session invalidation, with the
    /// session's lock-delay in nanoseconds. The state machine stamps them
    /// with its clock after commit; apply itself reads no clock.
    pub lock_delays: Vec<(String, u64)>,
}

impl Touched {
    pub(super) fn kv_key(&mut self, key: &str) {
        self.kv = true;
        self.kv_keys.push(key.to_string());
    }
}

pub fn apply(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    cmd: &Command,
) -> Result<(Response, Touched), heed::Error> {
    let mut child = tables.env.nested_write_txn(txn)?;
    let mut touched = Touched::default();
    let outcome = match cmd {
        Command::Register(reg) => apply_register(tables, &mut child, index, reg, &mut touched),
        Command::Deregister(dereg) => {
            apply_deregister(tables, &mut child, index, dereg, &mut touched)
        }
        Command::Kv(op) => {
            apply_kv(tables, &mut child, index, op, &mut touched).map(|r| r.map(Response::Bool))
        }
        Command::Txn(ops) => apply_txn(tables, &mut child, index, ops, &mut touched),
        Command::Session(op) => {
            sessions::apply_session(tables, &mut child, index, op, &mut touched)
        }
        Command::Acl(op) => super::acl::apply_acl(tables, &mut child, index, op, &mut touched),
        Command::Coordinates(updates) => {
            super::coordinates::apply_batch(tables, &mut child, index, updates)
        }
        Command::Operator(op) => {
            super::operator::apply_operator(tables, &mut child, index, op, &mut touched)
        }
        Command::PreparedQuery(op) => {
            super::prepared_query::apply(tables, &mut child, index, op, &mut touched)
        }
        Command::Restore(snap) => super::snapshot::apply_restore(tables, &mut child, index, snap)
            .map(|()| {
                touched = Touched {
                    catalog: true,
                    kv: true,
                    sessions: true,
                    acl: true,
                    prepared_queries: true,
                    kv_all: true,
                    restored: true,
                    ..Touched::default()
                };
                Ok(Response::Bool(true))
            }),
    };
    match outcome? {
        Ok(resp) => {
            child.commit()?;
            Ok((resp, touched))
        }
        Err(reason) => {
            child.abort();
            let resp = match cmd {
                Command::Txn(_) => Response::Txn(Err(reason)),
                _ => Response::Rejected(
                    reason
                        .into_iter()
                        .map(|e| e.what)
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            };
            Ok((resp, Touched::default()))
        }
    }
}

pub(super) type Outcome<T> = Result<Result<T, Vec<TxnError>>, heed::Error>;

pub(super) fn reject<T>(what: String) -> Outcome<T> {
    Ok(Err(vec![TxnError { op_index: 0, what }]))
}

pub(super) fn apply_register(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    reg: &Registration,
    touched: &mut Touched,
) -> Outcome<Response> {
    let name = reg.node.name.as_str();
    if name.is_empty() {
        return reject("Must provide node".into());
    }
    if name.contains(crate::store::KEY_SEP) {
        return reject(format!("Invalid node name {name:?}"));
    }
    // A node ID may not move to another name while its owner is registered
    // (Consul: "Error while renaming Node ID").
    if !reg.node.id.is_empty() {
        for item in tables.nodes.iter(txn)? {
            let (other_name, other) = item?;
            if other_name != name && other.id.eq_ignore_ascii_case(&reg.node.id) {
                return reject(format!(
                    "failed inserting node: Error while renaming Node ID: \"{}\": Node name {} is reserved by node {} with name {} ({})",
                    reg.node.id, other_name, other.id, other_name, other.address
                ));
            }
        }
    }

    let existing = tables.nodes.get(txn, name)?;
    match existing {
        Some(_) if reg.skip_node_update => {}
        Some(mut cur) => {
            let mut next = reg.node.clone();
            if next.id.is_empty() {
                next.id = cur.id.clone();
            }
            next.create_index = cur.create_index;
            next.modify_index = cur.modify_index;
            if next != cur {
                next.modify_index = index;
                cur = next;
                tables.nodes.put(txn, name, &cur)?;
                tables.set_table_index(txn, Table::Nodes, index)?;
                touched.catalog = true;
            }
        }
        None => {
            let mut node = reg.node.clone();
            node.create_index = index;
            node.modify_index = index;
            tables.nodes.put(txn, name, &node)?;
            tables.set_table_index(txn, Table::Nodes, index)?;
            touched.catalog = true;
        }
    }

    if let Some(svc) = &reg.service {
        if svc.id.is_empty() {
            return reject("Must provide service ID".into());
        }
        if svc.id.contains(crate::store::KEY_SEP) {
            return reject(format!("Invalid service ID {:?}", svc.id));
        }
        let key = node_scoped_key(name, &svc.id);
        let cur = tables.services.get(txn, &key)?;
        let mut next = svc.clone();
        next.node = name.to_string();
        match &cur {
            Some(cur) => {
                next.create_index = cur.create_index;
                next.modify_index = cur.modify_index;
            }
            None => {
                next.create_index = index;
                next.modify_index = index;
            }
        }
        if cur.as_ref() != Some(&next) {
            next.modify_index = index;
            tables.services.put(txn, &key, &next)?;
            tables.set_table_index(txn, Table::Services, index)?;
            touched.catalog = true;
            // Service checks carry the service's name and tags.
            let prefix = node_prefix(name);
            let mut updates = Vec::new();
            for item in tables.checks.prefix_iter(txn, &prefix)? {
                let (k, mut chk) = item?;
                if chk.service_id == next.id
                    && (chk.service_name != next.name || chk.service_tags != next.tags)
                {
                    chk.service_name = next.name.clone();
                    chk.service_tags = next.tags.clone();
                    chk.modify_index = index;
                    updates.push((k.to_string(), chk));
                }
            }
            for (k, chk) in updates {
                tables.checks.put(txn, &k, &chk)?;
                tables.set_table_index(txn, Table::Checks, index)?;
            }
        }
    }

    for chk in &reg.checks {
        if chk.check_id.is_empty() {
            return reject("Missing check ID".into());
        }
        if chk.check_id.contains(crate::store::KEY_SEP) {
            return reject(format!("Invalid check ID {:?}", chk.check_id));
        }
        let mut next = chk.clone();
        next.node = name.to_string();
        if !next.service_id.is_empty() {
            let Some(svc) = tables
                .services
                .get(txn, &node_scoped_key(name, &next.service_id))?
            else {
                return reject(format!(
                    "failed inserting check: Unknown service ID \"{}\" for check ID \"{}\"",
                    next.service_id, next.check_id
                ));
            };
            next.service_name = svc.name;
            next.service_tags = svc.tags;
        } else {
            next.service_name.clear();
            next.service_tags.clear();
        }
        let key = node_scoped_key(name, &next.check_id);
        let cur = tables.checks.get(txn, &key)?;
        match &cur {
            Some(cur) => {
                next.create_index = cur.create_index;
                next.modify_index = cur.modify_index;
            }
            None => {
                next.create_index = index;
                next.modify_index = index;
            }
        }
        if cur.as_ref() != Some(&next) {
            next.modify_index = index;
            tables.checks.put(txn, &key, &next)?;
            tables.set_table_index(txn, Table::Checks, index)?;
            touched.catalog = true;
        }
        // A session bound to a check that is critical is invalidated, in
        // the same command that records the status.
        if next.status == HealthStatus::Critical {
            sessions::invalidate_for_checks(
                tables,
                txn,
                index,
                name,
                &[next.check_id.as_str()],
                touched,
            )?;
        }
    }
    Ok(Ok(Response::Bool(true)))
}

pub(super) fn apply_deregister(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    d: &Deregistration,
    touched: &mut Touched,
) -> Outcome<Response> {
    if d.node.is_empty() {
        return reject("Must provide node".into());
    }
    let prefix = node_prefix(&d.node);
    match (&d.service_id, &d.check_id) {
        (None, None) => {
            sessions::invalidate_node(tables, txn, index, &d.node, touched)?;
            if tables.nodes.delete(txn, &d.node)? {
                tables.set_table_index(txn, Table::Nodes, index)?;
                touched.catalog = true;
            }
            if delete_prefix(&tables.services, txn, &prefix, |_| true)? > 0 {
                tables.set_table_index(txn, Table::Services, index)?;
                touched.catalog = true;
            }
            if delete_prefix(&tables.checks, txn, &prefix, |_| true)? > 0 {
                tables.set_table_index(txn, Table::Checks, index)?;
                touched.catalog = true;
            }
            // Consul drops a deleted node's coordinates with it.
            if delete_prefix(&tables.coordinates, txn, &prefix, |_| true)? > 0 {
                tables.set_table_index(txn, Table::Coordinates, index)?;
            }
        }
        (Some(sid), _) => {
            let check_ids: Vec<String> = tables
                .checks
                .prefix_iter(txn, &prefix)?
                .filter_map(|r| r.ok())
                .filter(|(_, c)| &c.service_id == sid)
                .map(|(_, c)| c.check_id)
                .collect();
            let ids: Vec<&str> = check_ids.iter().map(String::as_str).collect();
            sessions::invalidate_for_checks(tables, txn, index, &d.node, &ids, touched)?;
            if tables
                .services
                .delete(txn, &node_scoped_key(&d.node, sid))?
            {
                tables.set_table_index(txn, Table::Services, index)?;
                touched.catalog = true;
            }
            if delete_prefix(&tables.checks, txn, &prefix, |c: &Check| {
                &c.service_id == sid
            })? > 0
            {
                tables.set_table_index(txn, Table::Checks, index)?;
                touched.catalog = true;
            }
        }
        (None, Some(cid)) => {
            sessions::invalidate_for_checks(tables, txn, index, &d.node, &[cid.as_str()], touched)?;
            if tables.checks.delete(txn, &node_scoped_key(&d.node, cid))? {
                tables.set_table_index(txn, Table::Checks, index)?;
                touched.catalog = true;
            }
        }
    }
    Ok(Ok(Response::Bool(true)))
}

fn delete_prefix<V>(
    db: &heed::Database<'static, heed::types::Str, heed::types::SerdeBincode<V>>,
    txn: &mut RwTxn,
    prefix: &str,
    pred: impl Fn(&V) -> bool,
) -> Result<usize, heed::Error>
where
    V: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut doomed = Vec::new();
    for item in db.prefix_iter(txn, prefix)? {
        let (k, v) = item?;
        if pred(&v) {
            doomed.push(k.to_string());
        }
    }
    for k in &doomed {
        db.delete(txn, k)?;
    }
    Ok(doomed.len())
}

pub(super) fn put_kv(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    cur: Option<KvEntry>,
) -> Result<KvEntry, heed::Error> {
    let entry = match cur {
        Some(mut e) => {
            e.value = value.to_vec();
            e.flags = flags;
            e.modify_index = index;
            e
        }
        None => KvEntry {
            key: key.to_string(),
            value: value.to_vec(),
            flags,
            lock_index: 0,
            session: String::new(),
            create_index: index,
            modify_index: index,
        },
    };
    tables.kv.put(txn, key, &entry)?;
    tables.set_table_index(txn, Table::Kvs, index)?;
    Ok(entry)
}

/// Deletes one key, dropping its lock bookkeeping. Returns whether it existed.
pub(super) fn delete_kv(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    key: &str,
    touched: &mut Touched,
) -> Result<bool, heed::Error> {
    let Some(e) = tables.kv.get(txn, key)? else {
        return Ok(false);
    };
    if !e.session.is_empty() {
        tables
            .session_keys
            .delete(txn, &node_scoped_key(&e.session, key))?;
    }
    tables.kv.delete(txn, key)?;
    tables.set_table_index(txn, Table::Kvs, index)?;
    touched.kv_key(key);
    Ok(true)
}

/// Applies one KV write. `Ok(Ok(false))` is a failed CAS or lock.
fn apply_kv(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &KvOp,
    touched: &mut Touched,
) -> Outcome<bool> {
    match kv_write(tables, txn, index, op, touched)? {
        Ok(done) => Ok(Ok(done.is_some())),
        Err(what) => reject(what),
    }
}

/// Returns the written entry (None for a failed CAS/lock/unlock; a delete
/// yields Some(default)); `Err` is a hard error such as an unknown session.
fn kv_write(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &KvOp,
    touched: &mut Touched,
) -> Result<Result<Option<KvEntry>, String>, heed::Error> {
    match op {
        KvOp::Set { key, value, flags } => {
            let cur = tables.kv.get(txn, key)?;
            touched.kv_key(key);
            Ok(Ok(Some(put_kv(
                tables, txn, index, key, value, *flags, cur,
            )?)))
        }
        KvOp::Cas {
            key,
            value,
            flags,
            index: want,
        } => {
            let cur = tables.kv.get(txn, key)?;
            let ok = match &cur {
                None => *want == 0,
                Some(e) => *want != 0 && e.modify_index == *want,
            };
            if !ok {
                return Ok(Ok(None));
            }
            touched.kv_key(key);
            Ok(Ok(Some(put_kv(
                tables, txn, index, key, value, *flags, cur,
            )?)))
        }
        KvOp::Delete { key } => {
            delete_kv(tables, txn, index, key, touched)?;
            Ok(Ok(Some(KvEntry::default())))
        }
        KvOp::DeleteCas { key, index: want } => match tables.kv.get(txn, key)? {
            None => Ok(Ok(Some(KvEntry::default()))),
            Some(e) if e.modify_index == *want => {
                delete_kv(tables, txn, index, key, touched)?;
                Ok(Ok(Some(KvEntry::default())))
            }
            Some(_) => Ok(Ok(None)),
        },
        KvOp::DeleteTree { prefix } => {
            if prefix.is_empty() {
                if tables.kv.len(txn)? > 0 {
                    tables.kv.clear(txn)?;
                    tables.session_keys.clear(txn)?;
                    tables.set_table_index(txn, Table::Kvs, index)?;
                    touched.kv = true;
                    touched.kv_all = true;
                }
            } else {
                let keys: Vec<String> = tables
                    .kv
                    .prefix_iter(txn, prefix)?
                    .map(|r| r.map(|(k, _)| k.to_string()))
                    .collect::<Result<_, _>>()?;
                for k in &keys {
                    delete_kv(tables, txn, index, k, touched)?;
                }
            }
            Ok(Ok(Some(KvEntry::default())))
        }
        KvOp::Lock {
            key,
            value,
            flags,
            session,
        } => sessions::lock(tables, txn, index, key, value, *flags, session, touched),
        KvOp::Unlock {
            key,
            value,
            flags,
            session,
        } => sessions::unlock(tables, txn, index, key, value, *flags, session, touched),
    }
}

fn apply_txn(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    ops: &[TxnOp],
    touched: &mut Touched,
) -> Outcome<Response> {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let err = |what: String| TxnError { op_index: i, what };
        match op {
            TxnOp::Write(w) => {
                let out = match kv_write(tables, txn, index, w, touched)? {
                    Ok(out) => out,
                    Err(what) => {
                        errors.push(err(what));
                        continue;
                    }
                };
                match (w, out) {
                    (
                        KvOp::Set { .. }
                        | KvOp::Cas { .. }
                        | KvOp::Lock { .. }
                        | KvOp::Unlock { .. },
                        Some(entry),
                    ) => {
                        results.push(TxnResult::Kv {
                            entry,
                            include_value: false,
                        });
                    }
                    (KvOp::Cas { key, .. }, None) => {
                        errors.push(err(format!("failed to set key {key:?}, index is stale")))
                    }
                    (KvOp::DeleteCas { key, .. }, None) => {
                        errors.push(err(format!("failed to delete key {key:?}, index is stale")))
                    }
                    (KvOp::Lock { key, .. }, None) => errors.push(err(format!(
                        "failed to lock key {key:?}, lock is already held"
                    ))),
                    (KvOp::Unlock { key, .. }, None) => errors.push(err(format!(
                        "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                    ))),
                    _ => {}
                }
            }
            TxnOp::Get { key } => match tables.kv.get(txn, key)? {
                Some(entry) => results.push(TxnResult::Kv {
                    entry,
                    include_value: true,
                }),
                None => errors.push(err(format!("key {key:?} doesn't exist"))),
            },
            TxnOp::GetOrEmpty { key } => {
                let entry = tables.kv.get(txn, key)?.unwrap_or_else(|| KvEntry {
                    key: key.clone(),
                    ..KvEntry::default()
                });
                results.push(TxnResult::Kv {
                    entry,
                    include_value: true,
                });
            }
            TxnOp::GetTree { prefix } => {
                for item in tables.kv.prefix_iter(txn, prefix)? {
                    let (_, entry) = item?;
                    results.push(TxnResult::Kv {
                        entry,
                        include_value: true,
                    });
                }
            }
            TxnOp::CheckIndex { key, index: want } => match tables.kv.get(txn, key)? {
                Some(entry) if entry.modify_index == *want => results.push(TxnResult::Kv {
                    entry,
                    include_value: false,
                }),
                Some(entry) => errors.push(err(format!(
                    "failed index check for key {key:?}, current modify index {} != {}",
                    entry.modify_index, want
                ))),
                None => errors.push(err(format!(
                    "failed to check index, key {key:?} doesn't exist"
                ))),
            },
            TxnOp::CheckSession { key, session } => match tables.kv.get(txn, key)? {
                Some(entry) if entry.session == *session => results.push(TxnResult::Kv {
                    entry,
                    include_value: false,
                }),
                Some(entry) => errors.push(err(format!(
                    "failed session check for key {key:?}, current session {:?} != {:?}",
                    entry.session, session
                ))),
                None => errors.push(err(format!(
                    "failed to check session, key {key:?} doesn't exist"
                ))),
            },
            TxnOp::CheckNotExists { key } => {
                if tables.kv.get(txn, key)?.is_some() {
                    errors.push(err(format!("key {key:?} exists")));
                }
            }
            TxnOp::Node { .. } | TxnOp::Service { .. } | TxnOp::Check { .. } => {
                match super::txn::apply_catalog_op(tables, txn, index, op, touched)? {
                    Ok(Some(result)) => results.push(result),
                    Ok(None) => {}
                    Err(what) => errors.push(err(what)),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(Ok(Response::Txn(Ok(results))))
    } else {
        Ok(Err(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::query::Reader;
    use crate::catalog::types::{HealthStatus, Node, Service};

    fn tables() -> (tempfile::TempDir, Tables) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        (dir, t)
    }

    fn run(t: &Tables, index: u64, cmd: Command) -> Response {
        let mut txn = t.env.write_txn().unwrap();
        let (resp, _) = apply(t, &mut txn, index, &cmd).unwrap();
        txn.commit().unwrap();
        resp
    }

    fn reg(node: &str, svc: Option<(&str, &str)>, checks: Vec<Check>) -> Command {
        Command::Register(Registration {
            node: Node {
                name: node.into(),
                address: "10.0.0.1".into(),
                datacenter: "dc1".into(),
                ..Node::default()
            },
            service: svc.map(|(id, name)| Service {
                id: id.into(),
                name: name.into(),
                port: 80,
                ..Service::default()
            }),
            checks,
            skip_node_update: false,
        })
    }

    #[test]
    fn register_assigns_indexes_and_unchanged_rewrite_keeps_them() {
        let (_d, t) = tables();
        assert_eq!(
            run(&t, 5, reg("n1", Some(("web1", "web")), vec![])),
            Response::Bool(true)
        );
        run(&t, 9, reg("n1", Some(("web1", "web")), vec![]));
        let r = Reader::new(&t).unwrap();
        let s = r.service("n1", "web1").unwrap().unwrap();
        assert_eq!(
            (s.create_index, s.modify_index),
            (5, 5),
            "an identical re-registration changes nothing"
        );
        assert_eq!(r.index(&[Table::Services]).unwrap(), 5);
    }

    #[test]
    fn check_for_unknown_service_rejects_whole_registration() {
        let (_d, t) = tables();
        let bad = Check {
            check_id: "c1".into(),
            service_id: "nope".into(),
            ..Check::default()
        };
        let resp = run(&t, 3, reg("n1", Some(("web1", "web")), vec![bad]));
        assert!(
            matches!(resp, Response::Rejected(ref m) if m.contains("Unknown service ID")),
            "{resp:?}"
        );
        let r = Reader::new(&t).unwrap();
        assert!(
            r.node("n1").unwrap().is_none(),
            "a rejected command writes nothing"
        );
        assert!(r.service("n1", "web1").unwrap().is_none());
    }

    #[test]
    fn service_checks_join_instances_and_deregister_cascades() {
        let (_d, t) = tables();
        let c = Check {
            check_id: "service:web1".into(),
            service_id: "web1".into(),
            status: HealthStatus::Critical,
            ..Check::default()
        };
        run(&t, 2, reg("n1", Some(("web1", "web")), vec![c]));
        {
            let r = Reader::new(&t).unwrap();
            let inst = r.service_instances("web", &[]).unwrap();
            assert_eq!(inst.len(), 1);
            assert_eq!(inst[0].status(), HealthStatus::Critical);
            assert_eq!(inst[0].checks[0].service_name, "web");
        }
        run(
            &t,
            3,
            Command::Deregister(Deregistration {
                node: "n1".into(),
                service_id: Some("web1".into()),
                check_id: None,
            }),
        );
        let r = Reader::new(&t).unwrap();
        assert!(r.service_instances("web", &[]).unwrap().is_empty());
        assert!(r.node_checks("n1").unwrap().is_empty());
        assert!(r.node("n1").unwrap().is_some());
    }

    #[test]
    fn kv_cas_semantics() {
        let (_d, t) = tables();
        let cas = |key: &str, index| {
            Command::Kv(KvOp::Cas {
                key: key.into(),
                value: b"v".to_vec(),
                flags: 0,
                index,
            })
        };
        assert_eq!(
            run(&t, 1, cas("a", 0)),
            Response::Bool(true),
            "cas=0 creates"
        );
        assert_eq!(
            run(&t, 2, cas("a", 0)),
            Response::Bool(false),
            "cas=0 fails when present"
        );
        assert_eq!(
            run(&t, 3, cas("a", 7)),
            Response::Bool(false),
            "stale index fails"
        );
        assert_eq!(run(&t, 4, cas("a", 1)), Response::Bool(true));
        let r = Reader::new(&t).unwrap();
        let e = r.kv_get("a").unwrap().unwrap();
        assert_eq!((e.create_index, e.modify_index), (1, 4));
    }

    #[test]
    fn txn_is_atomic() {
        let (_d, t) = tables();
        let ops = vec![
            TxnOp::Write(KvOp::Set {
                key: "x".into(),
                value: b"1".to_vec(),
                flags: 0,
            }),
            TxnOp::Get {
                key: "missing".into(),
            },
        ];
        let resp = run(&t, 1, Command::Txn(ops));
        match resp {
            Response::Txn(Err(errs)) => {
                assert_eq!(errs[0].op_index, 1);
                assert!(errs[0].what.contains("doesn't exist"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Reader::new(&t).unwrap().kv_get("x").unwrap().is_none(),
            "failed txn wrote nothing"
        );
    }

    #[test]
    fn kv_keys_fold_at_separator() {
        let (_d, t) = tables();
        for (i, k) in ["a/b/c", "a/b/d", "a/e", "f"].iter().enumerate() {
            run(
                &t,
                i as u64 + 1,
                Command::Kv(KvOp::Set {
                    key: k.to_string(),
                    value: vec![],
                    flags: 0,
                }),
            );
        }
        let r = Reader::new(&t).unwrap();
        let (keys, idx) = r.kv_keys("a/", "/").unwrap();
        assert_eq!(keys, vec!["a/b/", "a/e"]);
        assert_eq!(idx, 3);
        run(
            &t,
            9,
            Command::Kv(KvOp::DeleteTree {
                prefix: "a/".into(),
            }),
        );
        let r = Reader::new(&t).unwrap();
        assert_eq!(r.kv_list("").unwrap().len(), 1);
        assert_eq!(r.index(&[Table::Kvs]).unwrap(), 9);
    }
}
