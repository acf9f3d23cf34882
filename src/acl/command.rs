//! What a replicated write needs from the token that asked for it. A
//! server checks this before proposing a write a client agent forwarded,
//! so an agent cannot write past the ACLs by talking RPC itself (Consul
//! authorizes every RPC on the server).

use super::{Access, Authorizer, Global, Resource};
use crate::catalog::acl::AclOp;
use crate::catalog::command::{changes_node, Command, KvOp, SessionOp, TxnOp};
use crate::catalog::operator::OperatorOp;
use crate::catalog::query::Reader;

/// The write a transaction's node, service or check operation needs, for
/// every verb (Consul's `vetNodeTxnOp`, `vetServiceTxnOp`, `vetCheckTxnOp`):
/// `node:write` on the node, `service:write` on the service (a check's
/// service for service checks). A service named only by ID is the stored
/// one's.
pub fn catalog_txn_need(op: &TxnOp, r: &Reader<'_>) -> Option<(Resource, String)> {
    let stored_name = |node: &str, id: &str| {
        r.service(node, id)
            .ok()
            .flatten()
            .map(|s| s.name)
            .unwrap_or_default()
    };
    match op {
        TxnOp::Node { node, .. } => Some((Resource::Node, node.name.clone())),
        TxnOp::Service { node, service, .. } => {
            let name = if service.name.is_empty() {
                stored_name(node, &service.id)
            } else {
                service.name.clone()
            };
            Some((Resource::Service, name))
        }
        TxnOp::Check { check, .. } if check.service_id.is_empty() => {
            Some((Resource::Node, check.node.clone()))
        }
        TxnOp::Check { check, .. } => {
            let name = if check.service_name.is_empty() {
                stored_name(&check.node, &check.service_id)
            } else {
                check.service_name.clone()
            };
            Some((Resource::Service, name))
        }
        _ => None,
    }
}

/// `Ok` when `authz` may make `cmd`; else Consul's denial text.
pub fn authorize(authz: &Authorizer, cmd: &Command, r: &Reader<'_>) -> Result<(), String> {
    let need = |res: Resource, name: &str, a: Access| -> Result<(), String> {
        if authz.allows(res, name, a) {
            Ok(())
        } else {
            Err(text(authz, &format!("{}:{}", res.word(), a.word()), name))
        }
    };
    match cmd {
        Command::Register(reg) => {
            // As the HTTP handler vets it: re-posting the node as stored
            // (what an agent's service sync does) needs no `node:write`.
            let existing = r.node(&reg.node.name).ok().flatten();
            if existing.as_ref().is_none_or(|old| changes_node(reg, old)) {
                need(Resource::Node, &reg.node.name, Access::Write)?;
            }
            if let Some(s) = &reg.service {
                need(Resource::Service, &s.name, Access::Write)?;
            }
            for c in &reg.checks {
                if c.service_id.is_empty() {
                    need(Resource::Node, &c.node, Access::Write)?;
                } else {
                    need(Resource::Service, &c.service_name, Access::Write)?;
                }
            }
            Ok(())
        }
        Command::Deregister(d) => match (&d.service_id, &d.check_id) {
            (Some(id), _) => {
                let name = r
                    .service(&d.node, id)
                    .ok()
                    .flatten()
                    .map(|s| s.name)
                    .unwrap_or_default();
                need(Resource::Service, &name, Access::Write)
            }
            // A service's check is the service's to remove (as the HTTP
            // handler vets it); a node check, or the whole node, the node's.
            (None, Some(check_id)) => {
                let owner = r
                    .node_checks(&d.node)
                    .ok()
                    .and_then(|cs| cs.into_iter().find(|c| &c.check_id == check_id))
                    .filter(|c| !c.service_id.is_empty());
                match owner {
                    Some(c) => need(Resource::Service, &c.service_name, Access::Write),
                    None => need(Resource::Node, &d.node, Access::Write),
                }
            }
            (None, None) => need(Resource::Node, &d.node, Access::Write),
        },
        Command::Kv(op) => kv(authz, op),
        Command::Txn(ops) => {
            for op in ops {
                match op {
                    TxnOp::Write(w) => kv(authz, w)?,
                    TxnOp::Get { key }
                    | TxnOp::GetOrEmpty { key }
                    | TxnOp::CheckIndex { key, .. }
                    | TxnOp::CheckNotExists { key }
                    | TxnOp::CheckSession { key, .. } => need(Resource::Key, key, Access::Read)?,
                    TxnOp::GetTree { prefix } => need(Resource::Key, prefix, Access::Read)?,
                    TxnOp::Node { .. } | TxnOp::Service { .. } | TxnOp::Check { .. } => {
                        if let Some((res, name)) = catalog_txn_need(op, r) {
                            need(res, &name, Access::Write)?;
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Session(op) => {
            let node = match op {
                SessionOp::Create(s) => s.node.clone(),
                SessionOp::Destroy { id } | SessionOp::Renew { id } => r
                    .session(id)
                    .ok()
                    .flatten()
                    .map(|s| s.node)
                    .unwrap_or_default(),
            };
            need(Resource::Session, &node, Access::Write)
        }
        // Consul's `Coordinate.Update`: node:write on each node.
        Command::Coordinates(updates) => {
            for u in updates {
                need(Resource::Node, &u.node, Access::Write)?;
            }
            Ok(())
        }
        Command::PreparedQuery(op) => crate::catalog::prepared_query::authorize(authz, op, r),
        // Bootstrap is open to anyone, once (apply refuses a second).
        Command::Acl(AclOp::Bootstrap(_)) => Ok(()),
        // A restore replaces ACL state too: management only, as Consul's
        // snapshot endpoint requires `acl = "write"`.
        Command::Acl(_) | Command::Restore(_) => {
            if authz.allows_global(Global::Acl, Access::Write) {
                Ok(())
            } else {
                Err(text(authz, "acl:write", ""))
            }
        }
        Command::Operator(op) => operator(authz, op),
    }
}

/// Autopilot writes need `operator:write`, as in Consul; config entries
/// what their kind needs (`crate::http::config`).
fn operator(authz: &Authorizer, op: &OperatorOp) -> Result<(), String> {
    let (kind, name) = match op {
        OperatorOp::Autopilot { .. } => {
            return if authz.allows_global(Global::Operator, Access::Write) {
                Ok(())
            } else {
                Err(text(authz, "operator:write", ""))
            };
        }
        OperatorOp::SetConfigEntry { entry, .. } => (entry.kind.as_str(), entry.name.as_str()),
        OperatorOp::DeleteConfigEntry { kind, name, .. } => (kind.as_str(), name.as_str()),
    };
    let kind = crate::http::config::lookup(kind)?;
    if kind.allows(authz, name, Access::Write) {
        return Ok(());
    }
    match kind.write {
        crate::http::config::Rule::Service => Err(text(authz, "service:write", name)),
        _ => Err(text(authz, "operator:write", "")),
    }
}

fn kv(authz: &Authorizer, op: &KvOp) -> Result<(), String> {
    let (key, ok) = match op {
        KvOp::DeleteTree { prefix } => (prefix, authz.key_write_prefix(prefix)),
        KvOp::Set { key, .. }
        | KvOp::Cas { key, .. }
        | KvOp::Delete { key }
        | KvOp::DeleteCas { key, .. }
        | KvOp::Lock { key, .. }
        | KvOp::Unlock { key, .. } => (key, authz.allows(Resource::Key, key, Access::Write)),
    };
    if ok {
        Ok(())
    } else {
        Err(text(authz, "key:write", key))
    }
}

fn text(authz: &Authorizer, permission: &str, name: &str) -> String {
    match super::denied(authz, permission, name) {
        crate::http::wire::ApiError::Status(_, m) => m,
        other => format!("{other:?}"),
    }
}
