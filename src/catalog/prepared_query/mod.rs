//! Prepared queries: stored service lookups that clients run by ID or name
//! (`/v1/query`, `<name>.query.consul`), replicated as a catalog table.
//!
//! The table is keyed by the lower-cased query ID. Names are unique without
//! regard to case, as Consul's `name` index is lower-cased; a template's
//! name is a prefix that selects it (the longest one wins, and one template
//! may have the empty name as a catch-all). Applying a definition checks
//! what Consul's state store checks inside its transaction (the name does
//! not alias another query's name or ID, the session exists, the template
//! compiles); what Consul checks before proposing (a service name, the DNS
//! TTL, `NearestN`) is checked by the HTTP layer ([`validate`]).
//!
//! - [`template`] compiles and renders `name_prefix_match` templates;
//! - [`execute`] runs a (rendered) query against the catalog's instances.

pub mod execute;
pub mod template;

use super::apply::{reject, Outcome, Touched};
use super::command::Response;
use crate::store::{Table, Tables};
use heed::{RoTxn, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What `Template.Type` must be for a query to be a template.
pub const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// What Consul shows instead of a query's token to a reader without
/// `acl:write`.
pub const REDACTED_TOKEN: &str = "<hidden>";

/// A stored prepared query (Consul's `structs.PreparedQuery`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedQuery {
    pub id: String,
    pub name: String,
    /// A session the query lives as long as (destroying it deletes the query).
    pub session: String,
    /// The token the query executes with; empty: the caller's.
    pub token: String,
    pub template: QueryTemplate,
    pub service: ServiceQuery,
    pub dns: QueryDns,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryTemplate {
    /// `Template.Type`: empty (not a template) or `name_prefix_match`.
    pub kind: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

/// `Service`: what instances the query selects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceQuery {
    pub service: String,
    pub sameness_group: String,
    pub failover: QueryFailover,
    pub only_passing: bool,
    pub ignore_check_ids: Vec<String>,
    /// A node name, `_agent` or `_ip`: sort the results by distance from it.
    pub near: String,
    /// Required tags; `!tag` forbids one.
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    pub connect: bool,
    pub peer: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFailover {
    pub nearest_n: i64,
    pub datacenters: Vec<String>,
    pub targets: Vec<FailoverTarget>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverTarget {
    pub peer: String,
    pub datacenter: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryDns {
    /// A Go duration; empty: the agent's service TTL.
    pub ttl: String,
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// Consul's `GetACLPrefix`: the name `query:` rules are matched
    /// against, or `None` for an unnamed (session-bound) query, which no
    /// prefix rule governs.
    pub fn acl_prefix(&self) -> Option<&str> {
        (!self.name.is_empty() || self.is_template()).then_some(self.name.as_str())
    }
}

/// Prepared-query verbs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreparedQueryOp {
    /// Create or replace the query with this ID (chosen by the proposer).
    Set(Box<PreparedQuery>),
    /// Delete by ID; an unknown ID changes nothing.
    Delete { id: String },
}

impl PreparedQueryOp {
    /// The op as a client agent's view may hold it: without the query's
    /// token, which views never carry (they hold no secrets).
    pub fn redacted(&self) -> PreparedQueryOp {
        match self {
            PreparedQueryOp::Set(q) if !q.token.is_empty() => {
                let mut q = q.clone();
                q.token = REDACTED_TOKEN.to_string();
                PreparedQueryOp::Set(q)
            }
            op => op.clone(),
        }
    }
}

/// The key a query is stored under.
pub fn id_key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// Consul's `isUUID`: 8-4-4-4-12 hex digits, any case.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Consul's `parseQuery`: what the endpoint refuses before proposing,
/// each text prefixed `Invalid prepared query: ` by the caller.
pub fn validate(q: &PreparedQuery) -> Result<(), String> {
    if q.name.is_empty() && !q.is_template() && q.session.is_empty() {
        return Err("Must be bound to a session".into());
    }
    if q.token == REDACTED_TOKEN {
        return Err(format!(
            "Bad Token '{}', it looks like a query definition with a redacted token was submitted",
            q.token
        ));
    }
    if q.service.service.is_empty() {
        return Err("Must provide a Service name to query".into());
    }
    if q.service.failover.nearest_n < 0 {
        return Err(format!(
            "Bad NearestN '{}', must be >= 0",
            q.service.failover.nearest_n
        ));
    }
    if !q.dns.ttl.is_empty() {
        crate::duration::parse(&q.dns.ttl)
            .map_err(|e| format!("Bad DNS TTL '{}': {e}", q.dns.ttl))?;
    }
    Ok(())
}

pub(crate) fn apply(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &PreparedQueryOp,
    touched: &mut Touched,
) -> Outcome<Response> {
    match op {
        PreparedQueryOp::Set(q) => set(tables, txn, index, q, touched),
        PreparedQueryOp::Delete { id } => {
            if tables.prepared_queries.delete(txn, &id_key(id))? {
                tables.set_table_index(txn, Table::PreparedQueries, index)?;
                touched.prepared_queries = true;
            }
            Ok(Ok(Response::Bool(true)))
        }
    }
}

/// Consul's `preparedQuerySetTxn`, its checks in its order.
fn set(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    q: &PreparedQuery,
    touched: &mut Touched,
) -> Outcome<Response> {
    if q.id.is_empty() {
        return reject("Missing query ID".into());
    }
    let key = id_key(&q.id);
    let existing = tables.prepared_queries.get(txn, &key)?;
    let mut next = q.clone();
    next.create_index = existing.as_ref().map_or(index, |e| e.create_index);
    next.modify_index = index;
    let others = all(tables, txn)?;
    let other_than_this = |o: &&PreparedQuery| id_key(&o.id) != key;
    if !next.name.is_empty() {
        let lower = next.name.to_lowercase();
        if others
            .iter()
            .filter(other_than_this)
            .any(|o| o.name.to_lowercase() == lower)
        {
            return reject(format!(
                "name '{}' aliases an existing query name",
                next.name
            ));
        }
    } else if next.is_template()
        && others
            .iter()
            .filter(other_than_this)
            .any(|o| o.is_template() && o.name.is_empty())
    {
        return reject("a query template with an empty name already exists".into());
    }
    if is_uuid(&next.name)
        && tables
            .prepared_queries
            .get(txn, &id_key(&next.name))?
            .is_some()
    {
        return reject(format!("name '{}' aliases an existing query ID", next.name));
    }
    if !next.session.is_empty() && tables.sessions.get(txn, &next.session)?.is_none() {
        return reject(format!("invalid session {:?}", next.session));
    }
    if next.is_template() {
        if let Err(e) = template::Compiled::compile(&next) {
            return reject(format!("failed compiling template: {e}"));
        }
    }
    tables.prepared_queries.put(txn, &key, &next)?;
    tables.set_table_index(txn, Table::PreparedQueries, index)?;
    touched.prepared_queries = true;
    Ok(Ok(Response::Bool(true)))
}

/// Deletes the queries bound to a destroyed session, as Consul's session
/// delete does.
pub(crate) fn delete_for_session(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    session: &str,
    touched: &mut Touched,
) -> Result<(), heed::Error> {
    let bound: Vec<String> = all(tables, txn)?
        .into_iter()
        .filter(|q| q.session == session)
        .map(|q| id_key(&q.id))
        .collect();
    for key in &bound {
        tables.prepared_queries.delete(txn, key)?;
    }
    if !bound.is_empty() {
        tables.set_table_index(txn, Table::PreparedQueries, index)?;
        touched.prepared_queries = true;
    }
    Ok(())
}

/// Every query, in ID order.
pub fn all(tables: &Tables, txn: &RoTxn<WithoutTls>) -> Result<Vec<PreparedQuery>, heed::Error> {
    tables
        .prepared_queries
        .iter(txn)?
        .map(|r| r.map(|(_, q)| q))
        .collect()
}

/// One query by ID.
pub fn get(
    tables: &Tables,
    txn: &RoTxn<WithoutTls>,
    id: &str,
) -> Result<Option<PreparedQuery>, heed::Error> {
    tables.prepared_queries.get(txn, &id_key(id))
}

/// Why a name or ID resolved to no query that can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("Query not found")]
    NotFound,
    /// Consul's text, answered as a 500.
    #[error("{0}")]
    Invalid(String),
}

/// Consul's `PreparedQueryResolve`: an ID (a template is refused by ID),
/// else a name (case-insensitive), else the template whose name is the
/// longest prefix of `id_or_name`. A template is returned rendered for
/// `id_or_name`.
pub fn resolve(queries: &[PreparedQuery], id_or_name: &str) -> Result<PreparedQuery, ResolveError> {
    if id_or_name.is_empty() {
        return Err(ResolveError::Invalid("Missing query ID".into()));
    }
    if is_uuid(id_or_name) {
        let key = id_key(id_or_name);
        if let Some(q) = queries.iter().find(|q| id_key(&q.id) == key) {
            if q.is_template() {
                return Err(ResolveError::Invalid(
                    "prepared query templates can only be resolved up by name, not by ID".into(),
                ));
            }
            return Ok(q.clone());
        }
    }
    let lower = id_or_name.to_lowercase();
    let found = queries
        .iter()
        .find(|q| !q.name.is_empty() && q.name.to_lowercase() == lower)
        .or_else(|| {
            queries
                .iter()
                .filter(|q| q.is_template() && lower.starts_with(&q.name.to_lowercase()))
                .max_by_key(|q| q.name.len())
        })
        .ok_or(ResolveError::NotFound)?;
    if !found.is_template() {
        return Ok(found.clone());
    }
    let compiled = template::Compiled::compile(found).map_err(ResolveError::Invalid)?;
    compiled.render(id_or_name).map_err(ResolveError::Invalid)
}

/// Consul's denial for prepared queries: `acl.ErrPermissionDenied`, no detail.
pub const PERMISSION_DENIED: &str = "Permission denied";

/// Consul's `PreparedQuery.Apply` ACL checks: `query:write` on the name of
/// the query proposed and on that of the query it replaces or deletes,
/// each only where a name governs it. `Err` is the denial text.
pub fn authorize(
    authz: &crate::acl::Authorizer,
    op: &PreparedQueryOp,
    r: &crate::catalog::query::Reader<'_>,
) -> Result<(), String> {
    use crate::acl::{Access, Resource};
    let may_write = |q: &PreparedQuery| {
        q.acl_prefix()
            .is_none_or(|p| authz.allows(Resource::Query, p, Access::Write))
    };
    let id = match op {
        PreparedQueryOp::Set(q) => {
            if !may_write(q) {
                return Err(PERMISSION_DENIED.into());
            }
            &q.id
        }
        PreparedQueryOp::Delete { id } => id,
    };
    match r.prepared_query(id) {
        Ok(Some(existing)) if !may_write(&existing) => Err(PERMISSION_DENIED.into()),
        _ => Ok(()),
    }
}

impl crate::catalog::query::Reader<'_> {
    /// A prepared query by ID.
    pub fn prepared_query(&self, id: &str) -> Result<Option<PreparedQuery>, heed::Error> {
        get(self.tables, &self.txn, id)
    }

    /// Every prepared query, in ID order.
    pub fn prepared_queries(&self) -> Result<Vec<PreparedQuery>, heed::Error> {
        all(self.tables, &self.txn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::command::Command;

    fn tables() -> (tempfile::TempDir, Tables) {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        (dir, t)
    }

    fn run(t: &Tables, index: u64, op: PreparedQueryOp) -> Response {
        let mut txn = t.env.write_txn().unwrap();
        let (resp, _) =
            crate::catalog::apply::apply(t, &mut txn, index, &Command::PreparedQuery(op)).unwrap();
        txn.commit().unwrap();
        resp
    }

    fn query(id: &str, name: &str) -> PreparedQuery {
        PreparedQuery {
            id: id.into(),
            name: name.into(),
            service: ServiceQuery {
                service: "web".into(),
                ..ServiceQuery::default()
            },
            ..PreparedQuery::default()
        }
    }

    const ID1: &str = "11111111-2222-3333-4444-555555555555";
    const ID2: &str = "aaaaaaaa-2222-3333-4444-555555555555";

    fn stored(t: &Tables) -> Vec<PreparedQuery> {
        all(t, &t.env.read_txn().unwrap()).unwrap()
    }

    #[test]
    fn set_keeps_create_index_and_refuses_aliases() {
        let (_d, t) = tables();
        assert_eq!(
            run(&t, 3, PreparedQueryOp::Set(Box::new(query(ID1, "web")))),
            Response::Bool(true)
        );
        run(&t, 4, PreparedQueryOp::Set(Box::new(query(ID1, "web2"))));
        let q = &stored(&t)[0];
        assert_eq!(
            (q.create_index, q.modify_index, q.name.as_str()),
            (3, 4, "web2")
        );
        assert_eq!(
            run(&t, 5, PreparedQueryOp::Set(Box::new(query(ID2, "WEB2")))),
            Response::Rejected("name 'WEB2' aliases an existing query name".into())
        );
        assert_eq!(
            run(&t, 6, PreparedQueryOp::Set(Box::new(query(ID2, ID1)))),
            Response::Rejected(format!("name '{ID1}' aliases an existing query ID"))
        );
        let mut bound = query(ID2, "");
        bound.session = "nope".into();
        assert_eq!(
            run(&t, 7, PreparedQueryOp::Set(Box::new(bound))),
            Response::Rejected("invalid session \"nope\"".into())
        );
        run(
            &t,
            8,
            PreparedQueryOp::Delete {
                id: ID1.to_uppercase(),
            },
        );
        assert!(stored(&t).is_empty());
    }

    #[test]
    fn destroying_its_session_deletes_a_bound_query() {
        use crate::catalog::command::{Registration, SessionOp};
        use crate::catalog::types::{Node, Session};
        let (_d, t) = tables();
        let mut txn = t.env.write_txn().unwrap();
        let reg = Command::Register(Registration {
            node: Node {
                name: "n1".into(),
                ..Node::default()
            },
            service: None,
            checks: vec![],
            skip_node_update: false,
        });
        crate::catalog::apply::apply(&t, &mut txn, 2, &reg).unwrap();
        let sess = Session {
            id: "s1".into(),
            node: "n1".into(),
            ..Session::default()
        };
        let create = Command::Session(SessionOp::Create(sess));
        crate::catalog::apply::apply(&t, &mut txn, 3, &create).unwrap();
        txn.commit().unwrap();
        let mut bound = query(ID1, "");
        bound.session = "s1".into();
        assert_eq!(
            run(&t, 4, PreparedQueryOp::Set(Box::new(bound))),
            Response::Bool(true)
        );
        run(&t, 5, PreparedQueryOp::Set(Box::new(query(ID2, "kept"))));
        let mut txn = t.env.write_txn().unwrap();
        let destroy = Command::Session(SessionOp::Destroy { id: "s1".into() });
        let (_, touched) = crate::catalog::apply::apply(&t, &mut txn, 6, &destroy).unwrap();
        txn.commit().unwrap();
        assert!(touched.prepared_queries);
        let left: Vec<String> = stored(&t).into_iter().map(|q| q.name).collect();
        assert_eq!(left, ["kept"]);
    }

    #[test]
    fn templates_must_compile_and_only_one_may_be_unnamed() {
        let (_d, t) = tables();
        let mut tpl = query(ID1, "");
        tpl.template.kind = NAME_PREFIX_MATCH.into();
        assert_eq!(
            run(&t, 3, PreparedQueryOp::Set(Box::new(tpl.clone()))),
            Response::Bool(true)
        );
        tpl.id = ID2.into();
        assert_eq!(
            run(&t, 4, PreparedQueryOp::Set(Box::new(tpl.clone()))),
            Response::Rejected("a query template with an empty name already exists".into())
        );
        tpl.name = "geo-".into();
        tpl.template.regexp = "^geo-(".into();
        let Response::Rejected(why) = run(&t, 5, PreparedQueryOp::Set(Box::new(tpl))) else {
            panic!("accepted a bad regexp");
        };
        assert!(
            why.starts_with(
                "failed compiling template: Bad Regexp: error parsing regexp: missing closing )"
            ),
            "{why}"
        );
    }

    #[test]
    fn resolve_by_id_name_then_longest_template_prefix() {
        let mut a = query(ID1, "web");
        a.service.service = "static".into();
        let mut catch_all = query("bbbbbbbb-2222-3333-4444-555555555555", "");
        catch_all.template.kind = NAME_PREFIX_MATCH.into();
        catch_all.service.service = "${name.full}".into();
        let mut geo = query(ID2, "geo-");
        geo.template.kind = NAME_PREFIX_MATCH.into();
        geo.service.service = "${name.suffix}".into();
        let all = vec![a, catch_all, geo];
        assert_eq!(resolve(&all, ID1).unwrap().service.service, "static");
        assert_eq!(resolve(&all, "WEB").unwrap().service.service, "static");
        assert_eq!(resolve(&all, "geo-db").unwrap().service.service, "db");
        assert_eq!(resolve(&all, "other").unwrap().service.service, "other");
        assert!(matches!(resolve(&all, ID2), Err(ResolveError::Invalid(_))));
        assert_eq!(resolve(&all[..1], "nothing"), Err(ResolveError::NotFound));
    }

    #[test]
    fn validation_texts_are_consuls() {
        let mut q = query(ID1, "");
        assert_eq!(validate(&q).unwrap_err(), "Must be bound to a session");
        q.name = "x".into();
        q.service.service.clear();
        assert_eq!(
            validate(&q).unwrap_err(),
            "Must provide a Service name to query"
        );
        q.service.service = "web".into();
        q.service.failover.nearest_n = -1;
        assert_eq!(validate(&q).unwrap_err(), "Bad NearestN '-1', must be >= 0");
        q.service.failover.nearest_n = 0;
        q.dns.ttl = "soon".into();
        assert!(validate(&q)
            .unwrap_err()
            .starts_with("Bad DNS TTL 'soon': "));
        q.dns.ttl = "10s".into();
        assert_eq!(validate(&q), Ok(()));
    }
}
