//! `<name>.query[.<dc>].<domain>`: prepared queries over DNS, as Consul's
//! `preparedQueryLookup`. The query is resolved (ID, name, or template by
//! longest prefix) and executed against the local catalog, near the node
//! at the client's address for `Near = "_ip"`; its instances are answered
//! in the order the execution left them (shuffled, or by distance), with
//! the records a service lookup would give them: A/AAAA (or a CNAME) for
//! address questions, SRV with the targets' addresses in the additional
//! section. The TTL is the query's `DNS.TTL` when it has one, else the
//! agent's service TTL for the service's name.
//!
//! Nothing found, an unknown query, or no instance left: NXDOMAIN, as
//! Consul. A query that cannot run (a template asked for by ID) is
//! SERVFAIL. The instances are filtered with the DNS token's rules.

use super::answer::{self, Answer, Question};
use super::index::Index;
use super::name::{self, Lookup, Zone};
use super::Settings;
use crate::acl::Authorizer;
use crate::catalog::prepared_query::execute::{self, Executed, Source};
use crate::catalog::prepared_query::{self as pq, ResolveError};
use crate::catalog::Catalog;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

/// Who is asking: for `_agent` and `_ip`.
pub struct Asker<'a> {
    pub agent_node: &'a str,
    pub ip: Option<IpAddr>,
}

/// The answer to `q` when it names a prepared query; `None` otherwise.
pub fn answer(
    settings: &Settings,
    catalog: &Catalog,
    q: &Question<'_>,
    max_answers: usize,
    authz: &Authorizer,
    asker: &Asker<'_>,
) -> Option<Answer> {
    // Most questions are service and node lookups: leave them at once.
    if !q.labels.contains(&"query") {
        return None;
    }
    if matches!(
        q.qtype,
        RecordType::SOA | RecordType::NS | RecordType::AXFR | RecordType::IXFR
    ) {
        return None;
    }
    let Zone::Catalog { domain, labels } = name::zone(&q.labels, &settings.domain_labels) else {
        return None;
    };
    let Lookup::Query {
        name: query_name,
        datacenter,
    } = name::parse(labels, q.qtype == RecordType::SRV)
    else {
        return None;
    };
    if !answer::local_dc(settings, datacenter) {
        // Executed by the datacenter named (`super::remote`).
        return Some(Answer {
            remote: datacenter.map(str::to_string),
            ..Answer::nxdomain(settings, domain)
        });
    }
    let executed = match run(catalog, &query_name, authz, asker, &settings.datacenter) {
        Ok(Some((e, query))) if e.instances.is_empty() => {
            let policy = &query.service.failover;
            if policy.nearest_n > 0 || !policy.datacenters.is_empty() {
                // Tried in other datacenters (`super::remote`).
                return Some(Answer {
                    failover: Some(Box::new(query)),
                    ..Answer::nxdomain(settings, domain)
                });
            }
            e
        }
        Ok(Some((e, _))) => e,
        Ok(None) => return Some(Answer::nxdomain(settings, domain)),
        Err(()) => return Some(Answer::error(ResponseCode::ServFail)),
    };
    Some(records(settings, q, domain, &executed, max_answers))
}

/// Resolves and executes; `Ok(None)` when no such query exists.
fn run(
    catalog: &Catalog,
    query_name: &str,
    authz: &Authorizer,
    asker: &Asker<'_>,
    datacenter: &str,
) -> Result<Option<(Executed, pq::PreparedQuery)>, ()> {
    let reader = catalog.reader().map_err(drop)?;
    let queries = reader.prepared_queries().map_err(drop)?;
    let query = match pq::resolve(&queries, query_name) {
        Ok(q) => q,
        Err(ResolveError::NotFound) => return Ok(None),
        Err(ResolveError::Invalid(why)) => {
            tracing::debug!("dns: prepared query {query_name:?}: {why}");
            return Err(());
        }
    };
    let source = Source {
        near: String::new(),
        agent_node: asker.agent_node.to_string(),
        ip: asker.ip,
        limit: 0,
    };
    let mut executed =
        execute::execute(&reader, &query, &source, authz, datacenter).map_err(drop)?;
    // Checks the query ignores must not drop an instance when the answer's
    // records are built from its rows either.
    for i in &mut executed.instances {
        i.checks
            .retain(|c| !query.service.ignore_check_ids.contains(&c.check_id));
    }
    Ok(Some((executed, query)))
}

/// The records of the executed instances, in their order.
fn records(
    settings: &Settings,
    q: &Question<'_>,
    domain: usize,
    executed: &Executed,
    max_answers: usize,
) -> Answer {
    if executed.instances.is_empty() {
        return Answer::nxdomain(settings, domain);
    }
    let mut seen = HashSet::new();
    let nodes = executed
        .instances
        .iter()
        .filter(|i| seen.insert(i.node.name.clone()))
        .map(|i| i.node.clone())
        .collect();
    let services = executed
        .instances
        .iter()
        .map(|i| i.service.clone())
        .collect();
    let checks = executed
        .instances
        .iter()
        .flat_map(|i| i.checks.iter().cloned())
        .collect();
    let rows = Rows {
        service: &executed.service,
        ttl: &executed.dns.ttl,
        nodes,
        services,
        checks,
    };
    rows_answer(settings, q, domain, rows, max_answers)
}

/// An executed query's instances (in the order execution left them) as
/// catalog rows, with the query's service and `DNS.TTL`.
pub(super) struct Rows<'a> {
    pub service: &'a str,
    pub ttl: &'a str,
    pub nodes: Vec<crate::catalog::types::Node>,
    pub services: Vec<crate::catalog::types::Service>,
    pub checks: Vec<crate::catalog::types::Check>,
}

/// The records of a query's instances: the query decided health, so the
/// agent's `only_passing` does not apply; its TTL is the query's when it
/// has one.
pub(super) fn rows_answer(
    settings: &Settings,
    q: &Question<'_>,
    domain: usize,
    rows: Rows<'_>,
    max_answers: usize,
) -> Answer {
    if rows.services.is_empty() {
        return Answer::nxdomain(settings, domain);
    }
    let mut local = settings.clone();
    local.dns.only_passing = false;
    if let Ok(ttl) = crate::duration::parse(rows.ttl) {
        local.dns.service_ttl = BTreeMap::from([("*".to_string(), ttl)]);
    }
    let index = Index::build(&local, 0, rows.nodes, rows.services, rows.checks);
    let Some(entry) = index.service(&rows.service.to_lowercase()) else {
        return Answer::nxdomain(settings, domain);
    };
    let max_answers = max_answers.max(1);
    let mut a = Answer::new(ResponseCode::NoError);
    if q.qtype == RecordType::SRV {
        answer::srv_records(
            &mut a,
            q,
            domain,
            entry,
            entry.instances.iter(),
            max_answers,
        );
    } else {
        answer::address_records(
            &mut a,
            &local,
            q,
            entry,
            entry.instances.iter(),
            max_answers,
        );
    }
    if a.answers.is_empty() {
        return Answer::nodata(settings, domain);
    }
    a
}
