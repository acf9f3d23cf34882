//! The catalog's verbs in a transaction (`PUT /v1/txn` `Node`, `Service`
//! and `Check` operations), as Consul's state store runs them: `get`,
//! `set`, `cas` (against the entity's `ModifyIndex`; 0 means "only if
//! absent"), `delete` and `delete-cas`. Writes go through the same register
//! and deregister transitions as `PUT /v1/catalog/register`, so indexes,
//! watchers and session invalidation behave alike. An error fails the
//! whole transaction (the caller aborts it); its text is Consul's.

use super::apply::{apply_deregister, apply_register, Touched};
use super::command::{CatalogVerb, Deregistration, Registration, TxnOp, TxnResult};
use super::types::{Check, Node, Service};
use crate::store::{node_scoped_key, Tables};
use heed::RwTxn;

/// Consul's `ErrMissingNode`.
const MISSING_NODE: &str = "Missing node registration";
/// Consul's `ErrMissingService`.
const MISSING_SERVICE: &str = "Missing service registration";

type OpOutcome = Result<Result<Option<TxnResult>, String>, heed::Error>;

/// Applies one node, service or check operation; `Ok(Err(_))` is the
/// operation's error. Other operations are not this module's (`Ok(Ok(None))`).
pub(super) fn apply_catalog_op(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &TxnOp,
    touched: &mut Touched,
) -> OpOutcome {
    match op {
        TxnOp::Node { verb, node } => node_op(tables, txn, index, *verb, node, touched),
        TxnOp::Service {
            verb,
            node,
            service,
        } => service_op(tables, txn, index, *verb, node, service, touched),
        TxnOp::Check { verb, check } => check_op(tables, txn, index, *verb, check, touched),
        _ => Ok(Ok(None)),
    }
}

/// Whether a CAS against `want` may go ahead given the current entity's
/// modify index (`None` when absent).
fn cas_allows(current: Option<u64>, want: u64) -> bool {
    match current {
        None => want == 0,
        Some(cur) => want != 0 && cur == want,
    }
}

/// Runs a register or deregister transition; its rejection becomes the
/// operation's error.
fn transition(
    outcome: super::apply::Outcome<super::command::Response>,
) -> Result<Result<(), String>, heed::Error> {
    Ok(outcome?.map(|_| ()).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| e.what)
            .collect::<Vec<_>>()
            .join("; ")
    }))
}

fn node_by_id(tables: &Tables, txn: &RwTxn, id: &str) -> Result<Option<Node>, heed::Error> {
    for item in tables.nodes.iter(txn)? {
        let (_, node) = item?;
        if node.id.eq_ignore_ascii_case(id) {
            return Ok(Some(node));
        }
    }
    Ok(None)
}

fn node_op(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    verb: CatalogVerb,
    node: &Node,
    touched: &mut Touched,
) -> OpOutcome {
    let name = node.name.as_str();
    let lookup = |txn: &RwTxn| -> Result<Option<Node>, heed::Error> {
        if node.id.is_empty() {
            tables.nodes.get(txn, &node.name)
        } else {
            node_by_id(tables, txn, &node.id)
        }
    };
    let current = tables.nodes.get(txn, name)?.map(|n| n.modify_index);
    match verb {
        CatalogVerb::Get => {}
        CatalogVerb::Cas if !cas_allows(current, node.modify_index) => {
            return Ok(Err(format!("failed to set node {name:?}, index is stale")));
        }
        CatalogVerb::Set | CatalogVerb::Cas => {
            let reg = Registration {
                node: node.clone(),
                service: None,
                checks: Vec::new(),
                skip_node_update: false,
            };
            if let Err(what) = transition(apply_register(tables, txn, index, &reg, touched))? {
                return Ok(Err(what));
            }
        }
        CatalogVerb::DeleteCas if current != Some(node.modify_index) => {
            return Ok(Err(format!(
                "failed to delete node {name:?}, index is stale"
            )));
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            let d = Deregistration {
                node: name.to_string(),
                service_id: None,
                check_id: None,
            };
            return Ok(
                transition(apply_deregister(tables, txn, index, &d, touched))?.map(|()| None),
            );
        }
    }
    Ok(match lookup(txn)? {
        Some(found) => Ok(Some(TxnResult::Node(found))),
        None => Err(format!("node {name:?} doesn't exist")),
    })
}

fn service_op(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    verb: CatalogVerb,
    node: &str,
    service: &Service,
    touched: &mut Touched,
) -> OpOutcome {
    let id = service.id.as_str();
    let key = node_scoped_key(node, id);
    let current = tables.services.get(txn, &key)?.map(|s| s.modify_index);
    match verb {
        CatalogVerb::Get => {}
        CatalogVerb::Cas if !cas_allows(current, service.modify_index) => {
            return Ok(Err(format!(
                "failed to set service {id:?} on node {node:?}, index is stale"
            )));
        }
        CatalogVerb::Set | CatalogVerb::Cas => {
            let Some(owner) = tables.nodes.get(txn, node)? else {
                return Ok(Err(MISSING_NODE.into()));
            };
            let reg = Registration {
                node: owner,
                service: Some(service.clone()),
                checks: Vec::new(),
                skip_node_update: true,
            };
            if let Err(what) = transition(apply_register(tables, txn, index, &reg, touched))? {
                return Ok(Err(what));
            }
        }
        CatalogVerb::DeleteCas if current != Some(service.modify_index) => {
            return Ok(Err(format!(
                "failed to delete service {id:?} on node {node:?}, index is stale"
            )));
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            let d = Deregistration {
                node: node.to_string(),
                service_id: Some(id.to_string()),
                check_id: None,
            };
            return Ok(
                transition(apply_deregister(tables, txn, index, &d, touched))?.map(|()| None),
            );
        }
    }
    Ok(match tables.services.get(txn, &key)? {
        Some(found) => Ok(Some(TxnResult::Service(found))),
        None => Err(format!("service {id:?} on node {node:?} doesn't exist")),
    })
}

fn check_op(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    verb: CatalogVerb,
    check: &Check,
    touched: &mut Touched,
) -> OpOutcome {
    let (node, id) = (check.node.as_str(), check.check_id.as_str());
    let key = node_scoped_key(node, id);
    let current = tables.checks.get(txn, &key)?.map(|c| c.modify_index);
    match verb {
        CatalogVerb::Get => {}
        CatalogVerb::Cas if !cas_allows(current, check.modify_index) => {
            return Ok(Err(format!(
                "failed to set check {id:?} on node {node:?}, index is stale"
            )));
        }
        CatalogVerb::Set | CatalogVerb::Cas => {
            let Some(owner) = tables.nodes.get(txn, node)? else {
                return Ok(Err(MISSING_NODE.into()));
            };
            if !check.service_id.is_empty()
                && tables
                    .services
                    .get(txn, &node_scoped_key(node, &check.service_id))?
                    .is_none()
            {
                return Ok(Err(MISSING_SERVICE.into()));
            }
            let reg = Registration {
                node: owner,
                service: None,
                checks: vec![check.clone()],
                skip_node_update: true,
            };
            if let Err(what) = transition(apply_register(tables, txn, index, &reg, touched))? {
                return Ok(Err(what));
            }
        }
        CatalogVerb::DeleteCas if current != Some(check.modify_index) => {
            return Ok(Err(format!(
                "failed to delete check {id:?} on node {node:?}, index is stale"
            )));
        }
        CatalogVerb::Delete | CatalogVerb::DeleteCas => {
            let d = Deregistration {
                node: node.to_string(),
                service_id: None,
                check_id: Some(id.to_string()),
            };
            return Ok(
                transition(apply_deregister(tables, txn, index, &d, touched))?.map(|()| None),
            );
        }
    }
    Ok(match tables.checks.get(txn, &key)? {
        Some(found) => Ok(Some(TxnResult::Check(found))),
        None => Err(format!("check {id:?} on node {node:?} doesn't exist")),
    })
}
