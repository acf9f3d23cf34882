//! Running a prepared query, as Consul's `PreparedQuery.Execute` does in
//! the local datacenter: the service's instances, without those whose
//! checks fail (critical, or anything but passing with `OnlyPassing`; the
//! checks in `IgnoreCheckIDs` do not count), kept only if they have the
//! node and service meta asked for and every tag asked for but none of the
//! `!tag`s, then what the token may read, shuffled, moved by distance from
//! the `Near` node (that node first if it is among the first ten), and cut
//! to the limit.
//!
//! Distances come from the network coordinates the agents report
//! (`crate::coordinate`).
//!
//! Failover to other datacenters is Consul's `queryFailover` with no other
//! datacenter known: nothing is tried and `Failovers` stays 0.

use super::{PreparedQuery, QueryDns, ServiceQuery};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::query::Reader;
use crate::catalog::types::{HealthStatus, ServiceInstance};
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

/// `Near` that means the agent answering the request.
pub const NEAR_AGENT: &str = "_agent";
/// `Near` that means the node whose address the request came from.
pub const NEAR_IP: &str = "_ip";

/// How far into the results Consul looks for the `Near` node to move it
/// first ("the local agent should never be further in than this").
const NEAR_SEARCH_DEPTH: usize = 10;

/// Who runs the query and from where.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `?near=`; empty: the query's own `Service.Near`.
    pub near: String,
    /// This agent's node name (for `_agent`).
    pub agent_node: String,
    /// The request's client address (for `_ip`).
    pub ip: Option<IpAddr>,
    /// `?limit=`; 0: no limit.
    pub limit: usize,
}

/// What executing a query found.
#[derive(Debug, Clone)]
pub struct Executed {
    pub service: String,
    pub instances: Vec<ServiceInstance>,
    pub dns: QueryDns,
    pub datacenter: String,
    /// Remote datacenters tried.
    pub failovers: u32,
    /// Instances were dropped because the token may not read them.
    pub filtered_by_acls: bool,
}

/// Runs the (rendered) query against the local catalog. `authz` is the
/// query's own token's authorizer if it has one, else the caller's.
pub fn execute(
    reader: &Reader,
    query: &PreparedQuery,
    source: &Source,
    authz: &Authorizer,
    datacenter: &str,
) -> Result<Executed, heed::Error> {
    let svc = &query.service;
    let mut instances = select(svc, reader.service_instances(&svc.service, &[])?);
    let before = instances.len();
    instances.retain(|i| {
        authz.allows(Resource::Service, &i.service.name, Access::Read)
            && authz.allows(Resource::Node, &i.node.name, Access::Read)
    });
    let filtered_by_acls = instances.len() != before;
    instances.shuffle(&mut rand::rng());
    if let Some(near) = near_node(reader, svc, source)? {
        sort_by_distance(reader, &near, &mut instances)?;
        move_first(&near, &mut instances);
    }
    if source.limit > 0 {
        instances.truncate(source.limit);
    }
    Ok(Executed {
        service: svc.service.clone(),
        instances,
        dns: query.dns.clone(),
        datacenter: datacenter.to_string(),
        failovers: 0,
        filtered_by_acls,
    })
}

/// The health, meta and tag filters (Consul's `FilterIgnore`,
/// `nodeMetaFilter`, `serviceMetaFilter` and `tagFilter`), in its order.
pub fn select(svc: &ServiceQuery, instances: Vec<ServiceInstance>) -> Vec<ServiceInstance> {
    let (must, must_not) = tag_rules(&svc.tags);
    instances
        .into_iter()
        .filter(|i| healthy(i, svc.only_passing, &svc.ignore_check_ids))
        .filter(|i| satisfies(&i.node.meta, &svc.node_meta))
        .filter(|i| satisfies(&i.service.meta, &svc.service_meta))
        .filter(|i| {
            let tags: HashSet<String> = i.service.tags.iter().map(|t| t.to_lowercase()).collect();
            must.iter().all(|t| tags.contains(t)) && !must_not.iter().any(|t| tags.contains(t))
        })
        .collect()
}

fn healthy(i: &ServiceInstance, only_passing: bool, ignore: &[String]) -> bool {
    i.checks
        .iter()
        .filter(|c| !ignore.contains(&c.check_id))
        .all(|c| match c.status {
            HealthStatus::Passing => true,
            HealthStatus::Warning => !only_passing,
            HealthStatus::Critical => false,
        })
}

/// Consul's `SatisfiesMetaFilters`: every pair present with that value.
fn satisfies(meta: &BTreeMap<String, String>, filters: &BTreeMap<String, String>) -> bool {
    filters.iter().all(|(k, v)| meta.get(k) == Some(v))
}

/// Lower-cased required and forbidden (`!tag`) tags.
fn tag_rules(tags: &[String]) -> (Vec<String>, Vec<String>) {
    let mut must = Vec::new();
    let mut must_not = Vec::new();
    for t in tags {
        let t = t.to_lowercase();
        match t.strip_prefix('!') {
            Some(rest) => must_not.push(rest.to_string()),
            None => must.push(t),
        }
    }
    (must, must_not)
}

/// The node the results are sorted near: `?near=` over the query's
/// `Near`, `_agent` this agent, `_ip` the node at the request's address
/// (none when no node has it).
fn near_node(
    reader: &Reader,
    svc: &ServiceQuery,
    source: &Source,
) -> Result<Option<String>, heed::Error> {
    let near = if source.near.is_empty() {
        svc.near.as_str()
    } else {
        source.near.as_str()
    };
    Ok(match near {
        "" => None,
        NEAR_AGENT => Some(source.agent_node.clone()),
        NEAR_IP => match source.ip {
            Some(ip) => {
                let ip = ip.to_string();
                reader
                    .nodes()?
                    .into_iter()
                    .find(|n| n.address == ip)
                    .map(|n| n.name)
            }
            None => None,
        },
        node => Some(node.to_string()),
    })
}

/// Orders `instances` by estimated round-trip time from the node `near`,
/// nearest first, nodes without a coordinate last. When `near` has no
/// coordinate the instances keep the shuffled order they come in, as
/// Consul's `sortNodesByDistanceFrom` leaves them.
pub fn sort_by_distance(
    reader: &Reader,
    near: &str,
    instances: &mut Vec<ServiceInstance>,
) -> Result<(), heed::Error> {
    let coords = reader.coordinate_map()?;
    let Some(from) = coords.get(near) else {
        return Ok(());
    };
    crate::coordinate::sort_by_distance(instances, from, |i| coords.get(&i.node.name).cloned());
    Ok(())
}

/// Puts the instance on node `near` first when it is among the first ten.
fn move_first(near: &str, instances: &mut [ServiceInstance]) {
    let depth = instances.len().min(NEAR_SEARCH_DEPTH);
    if let Some(at) = instances[..depth].iter().position(|i| i.node.name == near) {
        instances.swap(0, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::{Check, Node, Service};

    fn instance(node: &str, tags: &[&str], checks: &[(&str, HealthStatus)]) -> ServiceInstance {
        ServiceInstance {
            node: Node {
                name: node.into(),
                meta: BTreeMap::from([("rack".into(), node.into())]),
                ..Node::default()
            },
            service: Service {
                node: node.into(),
                id: "web".into(),
                name: "web".into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Service::default()
            },
            checks: checks
                .iter()
                .map(|(id, status)| Check {
                    node: node.into(),
                    check_id: id.to_string(),
                    status: *status,
                    ..Check::default()
                })
                .collect(),
        }
    }

    fn nodes(v: &[ServiceInstance]) -> Vec<&str> {
        v.iter().map(|i| i.node.name.as_str()).collect()
    }

    #[test]
    fn health_filters_follow_only_passing_and_ignored_checks() {
        use HealthStatus::*;
        let all = vec![
            instance("ok", &[], &[("serfHealth", Passing)]),
            instance("warn", &[], &[("c", Warning)]),
            instance("crit", &[], &[("c", Critical)]),
            instance("ignored", &[], &[("flaky", Critical)]),
        ];
        let mut svc = ServiceQuery::default();
        assert_eq!(nodes(&select(&svc, all.clone())), ["ok", "warn"]);
        svc.only_passing = true;
        assert_eq!(nodes(&select(&svc, all.clone())), ["ok"]);
        svc.ignore_check_ids = vec!["flaky".into()];
        assert_eq!(nodes(&select(&svc, all)), ["ok", "ignored"]);
    }

    #[test]
    fn tags_are_required_or_forbidden_without_regard_to_case() {
        let all = vec![
            instance("a", &["Primary", "v1"], &[]),
            instance("b", &["primary", "canary"], &[]),
            instance("c", &["v1"], &[]),
        ];
        let svc = ServiceQuery {
            tags: vec!["PRIMARY".into(), "!Canary".into()],
            ..ServiceQuery::default()
        };
        assert_eq!(nodes(&select(&svc, all.clone())), ["a"]);
        let svc = ServiceQuery {
            node_meta: BTreeMap::from([("rack".into(), "c".into())]),
            ..ServiceQuery::default()
        };
        assert_eq!(nodes(&select(&svc, all)), ["c"]);
    }

    #[test]
    fn the_near_node_moves_first_only_from_the_first_ten() {
        let mut v: Vec<_> = (0..12)
            .map(|i| instance(&format!("n{i}"), &[], &[]))
            .collect();
        move_first("n3", &mut v);
        assert_eq!(v[0].node.name, "n3");
        move_first("n11", &mut v);
        assert_eq!(v[0].node.name, "n3");
    }
}
