//! Session transitions inside `apply`: create, destroy, invalidation when a
//! bound check goes critical or away or the node is deregistered, and the
//! KV lock verbs. Like the rest of `apply`, nothing here reads a clock: keys
//! released by an invalidation are reported in [`Touched::lock_delays`] and
//! the state machine starts their lock-delay after the batch commits.

use super::apply::{put_kv, reject, Outcome, Touched};
use super::command::{Response, SessionOp};
use super::types::{HealthStatus, KvEntry, Session, SessionBehavior};
use crate::store::{node_scoped_key, Table, Tables, KEY_SEP};
use heed::RwTxn;

/// Consul's `MaxLockDelay`: no released key waits longer than this.
pub const MAX_LOCK_DELAY_NS: u64 = 60_000_000_000;

pub(super) fn apply_session(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &SessionOp,
    touched: &mut Touched,
) -> Outcome<Response> {
    match op {
        SessionOp::Create(sess) => create(tables, txn, index, sess, touched),
        SessionOp::Destroy { id } => {
            destroy(tables, txn, index, id, touched)?;
            Ok(Ok(Response::Bool(true)))
        }
        SessionOp::Renew { id } => Ok(Ok(Response::Session(tables.sessions.get(txn, id)?))),
    }
}

fn create(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    sess: &Session,
    touched: &mut Touched,
) -> Outcome<Response> {
    if sess.id.is_empty() {
        return reject("Missing session ID".into());
    }
    if sess.id.contains(KEY_SEP) {
        return reject(format!("Invalid session ID {:?}", sess.id));
    }
    if tables.nodes.get(txn, &sess.node)?.is_none() {
        return reject("Missing node registration".into());
    }
    for check_id in sess.check_ids() {
        match tables
            .checks
            .get(txn, &node_scoped_key(&sess.node, check_id))?
        {
            None => return reject(format!("Missing check '{check_id}' registration")),
            Some(c) if c.status == HealthStatus::Critical => {
                return reject(format!(
                    "Check '{check_id}' is in {} state",
                    c.status.as_str()
                ))
            }
            Some(_) => {}
        }
    }
    if tables.sessions.get(txn, &sess.id)?.is_some() {
        return reject(format!("session {:?} already exists", sess.id));
    }
    let mut stored = sess.clone();
    stored.create_index = index;
    stored.modify_index = index;
    tables.sessions.put(txn, &stored.id, &stored)?;
    tables.set_table_index(txn, Table::Sessions, index)?;
    touched.sessions = true;
    Ok(Ok(Response::Bool(true)))
}

/// Destroys a session and releases or deletes the keys it holds. Returns
/// whether it existed; destroying an unknown session is not an error.
pub(super) fn destroy(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    id: &str,
    touched: &mut Touched,
) -> Result<bool, heed::Error> {
    let Some(sess) = tables.sessions.get(txn, id)? else {
        return Ok(false);
    };
    tables.sessions.delete(txn, id)?;
    tables.set_table_index(txn, Table::Sessions, index)?;
    touched.sessions = true;
    super::prepared_query::delete_for_session(tables, txn, index, id, touched)?;

    let prefix = node_scoped_key(id, "");
    let held: Vec<String> = tables
        .session_keys
        .prefix_iter(txn, &prefix)?
        .map(|r| r.map(|(k, _)| k[prefix.len()..].to_string()))
        .collect::<Result<_, _>>()?;
    let delay = sess.lock_delay_ns.min(MAX_LOCK_DELAY_NS);
    for key in held {
        tables
            .session_keys
            .delete(txn, &node_scoped_key(id, &key))?;
        let Some(mut entry) = tables.kv.get(txn, &key)? else {
            continue;
        };
        if entry.session != id {
            continue;
        }
        match sess.behavior {
            SessionBehavior::Release => {
                entry.session.clear();
                entry.modify_index = index;
                tables.kv.put(txn, &key, &entry)?;
            }
            SessionBehavior::Delete => {
                tables.kv.delete(txn, &key)?;
            }
        }
        tables.set_table_index(txn, Table::Kvs, index)?;
        touched.kv_key(&key);
        if delay > 0 {
            touched.lock_delays.push((key, delay));
        }
    }
    Ok(true)
}

/// Invalidates the sessions of `node` bound to any of `check_ids`.
pub(super) fn invalidate_for_checks(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    node: &str,
    check_ids: &[&str],
    touched: &mut Touched,
) -> Result<(), heed::Error> {
    if check_ids.is_empty() || tables.sessions.is_empty(txn)? {
        return Ok(());
    }
    let doomed: Vec<String> = tables
        .sessions
        .iter(txn)?
        .filter_map(|r| r.ok())
        .filter(|(_, s)| s.node == node && s.check_ids().any(|c| check_ids.contains(&c)))
        .map(|(id, _)| id.to_string())
        .collect();
    for id in doomed {
        destroy(tables, txn, index, &id, touched)?;
    }
    Ok(())
}

/// Invalidates every session of a node that is being deregistered.
pub(super) fn invalidate_node(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    node: &str,
    touched: &mut Touched,
) -> Result<(), heed::Error> {
    if tables.sessions.is_empty(txn)? {
        return Ok(());
    }
    let doomed: Vec<String> = tables
        .sessions
        .iter(txn)?
        .filter_map(|r| r.ok())
        .filter(|(_, s)| s.node == node)
        .map(|(id, _)| id.to_string())
        .collect();
    for id in doomed {
        destroy(tables, txn, index, &id, touched)?;
    }
    Ok(())
}

/// `?acquire`: takes the lock unless another session holds it. A holder
/// re-acquiring updates the value without counting a new acquisition.
#[allow(clippy::too_many_arguments)]
pub(super) fn lock(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    session: &str,
    touched: &mut Touched,
) -> Result<Result<Option<KvEntry>, String>, heed::Error> {
    if session.is_empty() {
        return Ok(Err("missing session".into()));
    }
    if tables.sessions.get(txn, session)?.is_none() {
        return Ok(Err(format!("invalid session {session:?}")));
    }
    let cur = tables.kv.get(txn, key)?;
    let lock_index = match &cur {
        Some(e) if e.session == session => e.lock_index,
        Some(e) if !e.session.is_empty() => return Ok(Ok(None)),
        Some(e) => e.lock_index + 1,
        None => 1,
    };
    let mut entry = put_kv(tables, txn, index, key, value, flags, cur)?;
    if entry.lock_index != lock_index || entry.session != session {
        entry.lock_index = lock_index;
        entry.session = session.to_string();
        tables.kv.put(txn, key, &entry)?;
    }
    tables
        .session_keys
        .put(txn, &node_scoped_key(session, key), &[])?;
    touched.kv_key(key);
    Ok(Ok(Some(entry)))
}

/// `?release`: drops the lock, only when `session` holds it.
#[allow(clippy::too_many_arguments)]
pub(super) fn unlock(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    key: &str,
    value: &[u8],
    flags: u64,
    session: &str,
    touched: &mut Touched,
) -> Result<Result<Option<KvEntry>, String>, heed::Error> {
    if session.is_empty() {
        return Ok(Err("missing session".into()));
    }
    let cur = match tables.kv.get(txn, key)? {
        Some(e) if e.session == session => e,
        _ => return Ok(Ok(None)),
    };
    let mut entry = put_kv(tables, txn, index, key, value, flags, Some(cur))?;
    entry.session.clear();
    tables.kv.put(txn, key, &entry)?;
    tables
        .session_keys
        .delete(txn, &node_scoped_key(session, key))?;
    touched.kv_key(key);
    Ok(Ok(Some(entry)))
}

#[cfg(test)]
mod tests {
    use crate::catalog::apply::{apply, Touched};
    use crate::catalog::command::Deregistration;
    use crate::catalog::command::{Command, KvOp, Registration, Response, SessionOp, TxnOp};
    use crate::catalog::query::Reader;
    use crate::catalog::types::{
        Check, HealthStatus, KvEntry, Node, Session, SessionBehavior, SERF_HEALTH_CHECK_ID,
    };
    use crate::store::Tables;

    fn tables() -> (tempfile::TempDir, Tables) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        (dir, t)
    }

    fn run(t: &Tables, index: u64, cmd: Command) -> (Response, Touched) {
        let mut txn = t.env.write_txn().unwrap();
        let out = apply(t, &mut txn, index, &cmd).unwrap();
        txn.commit().unwrap();
        out
    }

    fn register_node(t: &Tables, index: u64, node: &str, serf: HealthStatus) {
        let cmd = Command::Register(Registration {
            node: Node {
                name: node.into(),
                address: "10.0.0.1".into(),
                ..Node::default()
            },
            service: None,
            checks: vec![Check {
                check_id: SERF_HEALTH_CHECK_ID.into(),
                name: "Serf Health Status".into(),
                status: serf,
                ..Check::default()
            }],
            skip_node_update: false,
        });
        run(t, index, cmd);
    }

    fn session(id: &str, node: &str, behavior: SessionBehavior) -> Session {
        Session {
            id: id.into(),
            node: node.into(),
            lock_delay_ns: 15_000_000_000,
            behavior,
            node_checks: vec![SERF_HEALTH_CHECK_ID.into()],
            ..Session::default()
        }
    }

    fn create(t: &Tables, index: u64, s: Session) -> Response {
        run(t, index, Command::Session(SessionOp::Create(s))).0
    }

    fn acquire(t: &Tables, index: u64, key: &str, value: &str, session: &str) -> Response {
        run(
            t,
            index,
            Command::Kv(KvOp::Lock {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                flags: 0,
                session: session.into(),
            }),
        )
        .0
    }

    fn release(t: &Tables, index: u64, key: &str, session: &str) -> Response {
        run(
            t,
            index,
            Command::Kv(KvOp::Unlock {
                key: key.into(),
                value: vec![],
                flags: 0,
                session: session.into(),
            }),
        )
        .0
    }

    fn kv(t: &Tables, key: &str) -> Option<KvEntry> {
        Reader::new(t).unwrap().kv_get(key).unwrap()
    }

    #[test]
    fn create_validates_node_and_checks() {
        let (_d, t) = tables();
        assert_eq!(
            create(&t, 1, session("s1", "n1", SessionBehavior::Release)),
            Response::Rejected("Missing node registration".into())
        );
        register_node(&t, 2, "n1", HealthStatus::Passing);
        let mut s = session("s1", "n1", SessionBehavior::Release);
        s.node_checks.push("nope".into());
        assert_eq!(
            create(&t, 3, s),
            Response::Rejected("Missing check 'nope' registration".into())
        );
        register_node(&t, 4, "n2", HealthStatus::Critical);
        assert_eq!(
            create(&t, 5, session("s2", "n2", SessionBehavior::Release)),
            Response::Rejected("Check 'serfHealth' is in critical state".into())
        );
        assert_eq!(
            create(&t, 6, session("s1", "n1", SessionBehavior::Release)),
            Response::Bool(true)
        );
        let r = Reader::new(&t).unwrap();
        let stored = r.session("s1").unwrap().unwrap();
        assert_eq!((stored.create_index, stored.modify_index), (6, 6));
        assert_eq!(r.sessions_index().unwrap(), 6);
    }

    #[test]
    fn acquire_and_release_count_lock_index() {
        let (_d, t) = tables();
        register_node(&t, 1, "n1", HealthStatus::Passing);
        create(&t, 2, session("s1", "n1", SessionBehavior::Release));
        create(&t, 3, session("s2", "n1", SessionBehavior::Release));

        assert_eq!(acquire(&t, 4, "lock", "a", "s1"), Response::Bool(true));
        let e = kv(&t, "lock").unwrap();
        assert_eq!((e.lock_index, e.session.as_str()), (1, "s1"));

        // The holder re-acquiring updates the value, not the LockIndex.
        assert_eq!(acquire(&t, 5, "lock", "b", "s1"), Response::Bool(true));
        let e = kv(&t, "lock").unwrap();
        assert_eq!(
            (e.lock_index, e.value.as_slice(), e.modify_index),
            (1, &b"b"[..], 5)
        );

        // Another session cannot take it, nor release it.
        assert_eq!(acquire(&t, 6, "lock", "c", "s2"), Response::Bool(false));
        assert_eq!(release(&t, 7, "lock", "s2"), Response::Bool(false));
        assert_eq!(kv(&t, "lock").unwrap().session, "s1");

        assert_eq!(release(&t, 8, "lock", "s1"), Response::Bool(true));
        let e = kv(&t, "lock").unwrap();
        assert_eq!((e.lock_index, e.session.as_str()), (1, ""));

        assert_eq!(acquire(&t, 9, "lock", "d", "s2"), Response::Bool(true));
        assert_eq!(kv(&t, "lock").unwrap().lock_index, 2, "a new holder counts");

        // Unknown and missing sessions are errors, as Consul's are.
        assert_eq!(
            acquire(&t, 10, "other", "x", "ghost"),
            Response::Rejected("invalid session \"ghost\"".into())
        );
        assert_eq!(
            acquire(&t, 11, "other", "x", ""),
            Response::Rejected("missing session".into())
        );
        assert!(kv(&t, "other").is_none());
    }

    #[test]
    fn destroy_releases_or_deletes_by_behavior_with_lock_delay() {
        let (_d, t) = tables();
        register_node(&t, 1, "n1", HealthStatus::Passing);
        create(&t, 2, session("rel", "n1", SessionBehavior::Release));
        let mut del = session("del", "n1", SessionBehavior::Delete);
        del.lock_delay_ns = 0;
        create(&t, 3, del);
        acquire(&t, 4, "a", "1", "rel");
        acquire(&t, 5, "b", "2", "del");

        let (resp, touched) = run(
            &t,
            6,
            Command::Session(SessionOp::Destroy { id: "rel".into() }),
        );
        assert_eq!(resp, Response::Bool(true));
        let a = kv(&t, "a").unwrap();
        assert_eq!(
            (a.session.as_str(), a.modify_index, a.lock_index),
            ("", 6, 1)
        );
        assert_eq!(touched.lock_delays, vec![("a".to_string(), 15_000_000_000)]);
        assert_eq!(touched.kv_keys, vec!["a".to_string()]);

        let (_, touched) = run(
            &t,
            7,
            Command::Session(SessionOp::Destroy { id: "del".into() }),
        );
        assert!(kv(&t, "b").is_none(), "delete behavior removes the key");
        assert!(touched.lock_delays.is_empty(), "no lock-delay when 0");
        assert!(Reader::new(&t).unwrap().sessions().unwrap().is_empty());

        // Destroying an unknown session is not an error.
        let (resp, _) = run(
            &t,
            8,
            Command::Session(SessionOp::Destroy { id: "rel".into() }),
        );
        assert_eq!(resp, Response::Bool(true));
    }

    #[test]
    fn critical_check_invalidates_sessions_bound_to_it() {
        let (_d, t) = tables();
        register_node(&t, 1, "n1", HealthStatus::Passing);
        register_node(&t, 2, "n2", HealthStatus::Passing);
        create(&t, 3, session("s1", "n1", SessionBehavior::Release));
        create(&t, 4, session("s2", "n2", SessionBehavior::Release));
        let mut unbound = session("s3", "n1", SessionBehavior::Release);
        unbound.node_checks.clear();
        create(&t, 5, unbound);
        acquire(&t, 6, "leader", "me", "s1");

        register_node(&t, 7, "n1", HealthStatus::Critical);
        let r = Reader::new(&t).unwrap();
        assert!(
            r.session("s1").unwrap().is_none(),
            "bound session invalidated"
        );
        assert!(r.session("s2").unwrap().is_some(), "other node untouched");
        assert!(
            r.session("s3").unwrap().is_some(),
            "session without checks stays"
        );
        let e = r.kv_get("leader").unwrap().unwrap();
        assert_eq!((e.session.as_str(), e.modify_index), ("", 7));
    }

    #[test]
    fn node_deregistration_invalidates_its_sessions() {
        let (_d, t) = tables();
        register_node(&t, 1, "n1", HealthStatus::Passing);
        let mut s = session("s1", "n1", SessionBehavior::Delete);
        s.node_checks.clear();
        create(&t, 2, s);
        acquire(&t, 3, "k", "v", "s1");
        let (_, touched) = run(
            &t,
            4,
            Command::Deregister(Deregistration {
                node: "n1".into(),
                service_id: None,
                check_id: None,
            }),
        );
        assert!(touched.sessions && touched.kv);
        let r = Reader::new(&t).unwrap();
        assert!(r.session("s1").unwrap().is_none());
        assert!(r.kv_get("k").unwrap().is_none());
    }

    #[test]
    fn txn_lock_unlock_and_check_session() {
        let (_d, t) = tables();
        register_node(&t, 1, "n1", HealthStatus::Passing);
        create(&t, 2, session("s1", "n1", SessionBehavior::Release));
        create(&t, 3, session("s2", "n1", SessionBehavior::Release));
        let ops = vec![
            TxnOp::Write(KvOp::Lock {
                key: "k".into(),
                value: b"v".to_vec(),
                flags: 0,
                session: "s1".into(),
            }),
            TxnOp::CheckSession {
                key: "k".into(),
                session: "s1".into(),
            },
        ];
        match run(&t, 4, Command::Txn(ops)).0 {
            Response::Txn(Ok(results)) => assert_eq!(results.len(), 2),
            other => panic!("{other:?}"),
        }
        let ops = vec![
            TxnOp::Write(KvOp::Lock {
                key: "k".into(),
                value: vec![],
                flags: 0,
                session: "s2".into(),
            }),
            TxnOp::Write(KvOp::Unlock {
                key: "k".into(),
                value: vec![],
                flags: 0,
                session: "s2".into(),
            }),
            TxnOp::CheckSession {
                key: "k".into(),
                session: "s2".into(),
            },
        ];
        match run(&t, 5, Command::Txn(ops)).0 {
            Response::Txn(Err(errs)) => {
                let what: Vec<&str> = errs.iter().map(|e| e.what.as_str()).collect();
                assert_eq!(
                    what,
                    vec![
                        "failed to lock key \"k\", lock is already held",
                        "failed to unlock key \"k\", lock isn't held, or is held by another session",
                        "failed session check for key \"k\", current session \"s1\" != \"s2\"",
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deleting_a_held_key_drops_the_lock_bookkeeping() {
        let (_d, t) = tables();
        register_node(&t, 1, "n1", HealthStatus::Passing);
        create(&t, 2, session("s1", "n1", SessionBehavior::Release));
        acquire(&t, 3, "dir/k", "v", "s1");
        run(
            &t,
            4,
            Command::Kv(KvOp::DeleteTree {
                prefix: "dir/".into(),
            }),
        );
        // Re-created unlocked; invalidating s1 must not touch it.
        run(
            &t,
            5,
            Command::Kv(KvOp::Set {
                key: "dir/k".into(),
                value: vec![],
                flags: 0,
            }),
        );
        let (_, touched) = run(
            &t,
            6,
            Command::Session(SessionOp::Destroy { id: "s1".into() }),
        );
        assert!(touched.kv_keys.is_empty());
        assert_eq!(kv(&t, "dir/k").unwrap().modify_index, 5);
    }
}
