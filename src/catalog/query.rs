//! Read queries over one LMDB read transaction. Everything a read endpoint
//! or the DNS index needs, joined and filtered here so the edges only shape
//! output.

use super::types::{Check, HealthStatus, KvEntry, Node, Service, ServiceInstance, Session};
use crate::store::{node_prefix, node_scoped_key, Table, Tables};
use heed::{RoTxn, WithoutTls};
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub type QResult<T> = Result<T, heed::Error>;

/// A consistent read view: one LMDB read transaction.
pub struct Reader<'a> {
    pub(crate) tables: &'a Tables,
    pub(crate) txn: RoTxn<'a, WithoutTls>,
}

impl<'a> Reader<'a> {
    pub fn new(tables: &'a Tables) -> QResult<Reader<'a>> {
        Ok(Reader {
            tables,
            txn: tables.env.read_txn()?,
        })
    }

    /// Highest modification index of the given tables (never 0).
    pub fn index(&self, tables: &[Table]) -> QResult<u64> {
        self.tables.max_index(&self.txn, tables)
    }

    pub fn nodes(&self) -> QResult<Vec<Node>> {
        self.tables
            .nodes
            .iter(&self.txn)?
            .map(|r| r.map(|(_, n)| n))
            .collect()
    }

    pub fn node(&self, name: &str) -> QResult<Option<Node>> {
        self.tables.nodes.get(&self.txn, name)
    }

    pub fn node_services(&self, node: &str) -> QResult<Vec<Service>> {
        self.tables
            .services
            .prefix_iter(&self.txn, &node_prefix(node))?
            .map(|r| r.map(|(_, s)| s))
            .collect()
    }

    pub fn service(&self, node: &str, id: &str) -> QResult<Option<Service>> {
        self.tables
            .services
            .get(&self.txn, &node_scoped_key(node, id))
    }

    pub fn all_services(&self) -> QResult<Vec<Service>> {
        self.tables
            .services
            .iter(&self.txn)?
            .map(|r| r.map(|(_, s)| s))
            .collect()
    }

    /// Instances of one service, optionally required to carry every tag in
    /// `tags` (case-insensitive, as Consul's tag filter is). Sorted by node, then ID.
    pub fn services_named(&self, name: &str, tags: &[String]) -> QResult<Vec<Service>> {
        let mut out = Vec::new();
        for item in self.tables.services.iter(&self.txn)? {
            let (_, svc) = item?;
            if svc.name == name && has_tags(&svc, tags) {
                out.push(svc);
            }
        }
        Ok(out)
    }

    /// `/v1/catalog/services`: service name -> union of tags (sorted, unique).
    pub fn service_tags(&self) -> QResult<BTreeMap<String, BTreeSet<String>>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for item in self.tables.services.iter(&self.txn)? {
            let (_, svc) = item?;
            out.entry(svc.name).or_default().extend(svc.tags);
        }
        Ok(out)
    }

    pub fn node_checks(&self, node: &str) -> QResult<Vec<Check>> {
        self.tables
            .checks
            .prefix_iter(&self.txn, &node_prefix(node))?
            .map(|r| r.map(|(_, c)| c))
            .collect()
    }

    pub fn all_checks(&self) -> QResult<Vec<Check>> {
        self.tables
            .checks
            .iter(&self.txn)?
            .map(|r| r.map(|(_, c)| c))
            .collect()
    }

    /// Checks of every instance of service `name`.
    pub fn service_checks(&self, name: &str) -> QResult<Vec<Check>> {
        let mut out = Vec::new();
        for item in self.tables.checks.iter(&self.txn)? {
            let (_, c) = item?;
            if !c.service_id.is_empty() && c.service_name == name {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// `/v1/health/state/<state>`; `None` = any.
    pub fn checks_in_state(&self, state: Option<HealthStatus>) -> QResult<Vec<Check>> {
        let mut out = Vec::new();
        for item in self.tables.checks.iter(&self.txn)? {
            let (_, c) = item?;
            if state.is_none_or(|s| s == c.status) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Instances of a service joined with their node and the node's and
    /// instance's checks (`/v1/health/service/<name>`).
    pub fn service_instances(&self, name: &str, tags: &[String]) -> QResult<Vec<ServiceInstance>> {
        let services = self.services_named(name, tags)?;
        let mut node_cache: HashMap<String, (Node, Vec<Check>)> = HashMap::new();
        let mut out = Vec::with_capacity(services.len());
        for svc in services {
            if !node_cache.contains_key(&svc.node) {
                let Some(node) = self.node(&svc.node)? else {
                    continue;
                };
                let checks = self.node_checks(&svc.node)?;
                node_cache.insert(svc.node.clone(), (node, checks));
            }
            let (node, checks) = &node_cache[&svc.node];
            let checks = checks
                .iter()
                .filter(|c| c.service_id.is_empty() || c.service_id == svc.id)
                .cloned()
                .collect();
            out.push(ServiceInstance {
                node: node.clone(),
                service: svc,
                checks,
            });
        }
        Ok(out)
    }

    /// The node, service and check tables whole, each read once: what the
    /// UI's summaries are computed from in one pass (`catalog::summary`).
    pub fn dump(&self) -> QResult<super::summary::CatalogDump> {
        Ok(super::summary::CatalogDump {
            nodes: self.nodes()?,
            services: self.all_services()?,
            checks: self.all_checks()?,
        })
    }

    pub fn kv_get(&self, key: &str) -> QResult<Option<KvEntry>> {
        self.tables.kv.get(&self.txn, key)
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub fn kv_list(&self, prefix: &str) -> QResult<Vec<KvEntry>> {
        if prefix.is_empty() {
            return self
                .tables
                .kv
                .iter(&self.txn)?
                .map(|r| r.map(|(_, e)| e))
                .collect();
        }
        self.tables
            .kv
            .prefix_iter(&self.txn, prefix)?
            .map(|r| r.map(|(_, e)| e))
            .collect()
    }

    /// `?keys&separator=`: keys under `prefix`, folded at the first separator
    /// after the prefix (`dir/`), unique, in order. Also returns the highest
    /// ModifyIndex among the matched entries.
    pub fn kv_keys(&self, prefix: &str, separator: &str) -> QResult<(Vec<String>, u64)> {
        let mut keys: Vec<String> = Vec::new();
        let mut max_index = 0;
        for e in self.kv_list(prefix)? {
            max_index = max_index.max(e.modify_index);
            let rest = &e.key[prefix.len()..];
            let folded = match (separator.is_empty(), rest.find(separator)) {
                (false, Some(pos)) => format!("{}{}", prefix, &rest[..pos + separator.len()]),
                _ => e.key.clone(),
            };
            if keys.last() != Some(&folded) {
                keys.push(folded);
            }
        }
        Ok((keys, max_index))
    }

    pub fn session(&self, id: &str) -> QResult<Option<Session>> {
        self.tables.sessions.get(&self.txn, id)
    }

    /// Every session, by ID.
    pub fn sessions(&self) -> QResult<Vec<Session>> {
        self.tables
            .sessions
            .iter(&self.txn)?
            .map(|r| r.map(|(_, s)| s))
            .collect()
    }

    pub fn node_sessions(&self, node: &str) -> QResult<Vec<Session>> {
        Ok(self
            .sessions()?
            .into_iter()
            .filter(|s| s.node == node)
            .collect())
    }

    /// Index of the last change to sessions (never 0).
    pub fn sessions_index(&self) -> QResult<u64> {
        self.index(&[Table::Sessions])
    }

    pub fn kv_count(&self) -> QResult<u64> {
        self.tables.kv.len(&self.txn)
    }

    pub fn counts(&self) -> QResult<(u64, u64, u64)> {
        Ok((
            self.tables.nodes.len(&self.txn)?,
            self.tables.services.len(&self.txn)?,
            self.tables.checks.len(&self.txn)?,
        ))
    }
}

fn has_tags(svc: &Service, tags: &[String]) -> bool {
    tags.iter()
        .all(|t| svc.tags.iter().any(|have| have.eq_ignore_ascii_case(t)))
}

/// ACL reads (servers only hold these tables' contents).
impl Reader<'_> {
    pub fn acl_token(&self, accessor: &str) -> QResult<Option<crate::acl::types::Token>> {
        self.tables
            .acl_tokens
            .get(&self.txn, &crate::acl::types::id_key(accessor))
    }

    pub fn acl_token_by_secret(&self, secret: &str) -> QResult<Option<crate::acl::types::Token>> {
        match self.tables.acl_secrets.get(&self.txn, secret)? {
            Some(acc) => self.tables.acl_tokens.get(&self.txn, acc),
            None => Ok(None),
        }
    }

    pub fn acl_tokens(&self) -> QResult<Vec<crate::acl::types::Token>> {
        self.tables
            .acl_tokens
            .iter(&self.txn)?
            .map(|r| r.map(|(_, t)| t))
            .collect()
    }

    pub fn acl_policy(&self, id: &str) -> QResult<Option<crate::acl::types::Policy>> {
        self.tables
            .acl_policies
            .get(&self.txn, &crate::acl::types::id_key(id))
    }

    pub fn acl_policies(&self) -> QResult<Vec<crate::acl::types::Policy>> {
        self.tables
            .acl_policies
            .iter(&self.txn)?
            .map(|r| r.map(|(_, p)| p))
            .collect()
    }

    pub fn acl_policy_named(&self, name: &str) -> QResult<Option<crate::acl::types::Policy>> {
        Ok(self.acl_policies()?.into_iter().find(|p| p.name == name))
    }

    pub fn acl_role(&self, id: &str) -> QResult<Option<crate::acl::types::Role>> {
        self.tables
            .acl_roles
            .get(&self.txn, &crate::acl::types::id_key(id))
    }

    pub fn acl_roles(&self) -> QResult<Vec<crate::acl::types::Role>> {
        self.tables
            .acl_roles
            .iter(&self.txn)?
            .map(|r| r.map(|(_, p)| p))
            .collect()
    }

    pub fn acl_role_named(&self, name: &str) -> QResult<Option<crate::acl::types::Role>> {
        Ok(self.acl_roles()?.into_iter().find(|p| p.name == name))
    }

    pub fn acl_bootstrap_index(&self) -> QResult<Option<u64>> {
        super::acl::bootstrap_index(self.tables, &self.txn)
    }
}
