//! The catalog's domain types, as stored in LMDB and passed through the core.
//! They carry no wire concerns: Consul's JSON shapes live in `http`, its DNS
//! shapes in `dns`. Durations are nanoseconds so the types stay `bincode`-able.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A check's state. Consul's aggregation: any critical => critical, else any
/// warning => warning, else passing.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum HealthStatus {
    #[default]
    Passing,
    Warning,
    Critical,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Passing => "passing",
            HealthStatus::Warning => "warning",
            HealthStatus::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<HealthStatus> {
        match s {
            "passing" => Some(HealthStatus::Passing),
            "warning" => Some(HealthStatus::Warning),
            "critical" => Some(HealthStatus::Critical),
            _ => None,
        }
    }

    /// Worst of a set of statuses; `Passing` for none.
    pub fn aggregate<'a>(statuses: impl IntoIterator<Item = &'a HealthStatus>) -> HealthStatus {
        statuses
            .into_iter()
            .copied()
            .max()
            .unwrap_or(HealthStatus::Passing)
    }
}

/// A catalog node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Node {
    /// UUID node ID (may be empty for nodes registered through the catalog API without one).
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// An address/port pair for a service's tagged addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceAddress {
    pub address: String,
    pub port: u16,
}

/// SRV weights by aggregated status. Consul's default is 1/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    pub passing: u32,
    pub warning: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// A service instance on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Service {
    pub node: String,
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// Empty means "use the node's address".
    pub address: String,
    pub tagged_addresses: BTreeMap<String, ServiceAddress>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub weights: Weights,
    pub enable_tag_override: bool,
    /// Empty for a typical service; `connect-proxy`, `mesh-gateway`, ... otherwise.
    pub kind: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// How a check is run, as registered. Durations in nanoseconds, 0 = unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CheckDefinition {
    pub http: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub disable_redirects: bool,
    pub tls_server_name: String,
    pub tls_skip_verify: bool,
    pub tcp: String,
    pub tcp_use_tls: bool,
    pub udp: String,
    pub grpc: String,
    pub grpc_use_tls: bool,
    pub h2ping: String,
    pub h2ping_use_tls: bool,
    pub os_service: String,
    pub alias_node: String,
    pub alias_service: String,
    pub script_args: Vec<String>,
    pub docker_container_id: String,
    pub shell: String,
    pub ttl_ns: u64,
    pub interval_ns: u64,
    pub timeout_ns: u64,
    pub deregister_critical_service_after_ns: u64,
    pub output_max_size: u64,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

impl CheckDefinition {
    /// Consul's `CheckType.Type()`.
    pub fn kind(&self) -> &'static str {
        if !self.grpc.is_empty() {
            "grpc"
        } else if !self.http.is_empty() {
            "http"
        } else if self.ttl_ns > 0 {
            "ttl"
        } else if !self.tcp.is_empty() {
            "tcp"
        } else if !self.udp.is_empty() {
            "udp"
        } else if !self.alias_node.is_empty() || !self.alias_service.is_empty() {
            "alias"
        } else if !self.docker_container_id.is_empty() {
            "docker"
        } else if !self.script_args.is_empty() {
            "script"
        } else if !self.h2ping.is_empty() {
            "h2ping"
        } else if !self.os_service.is_empty() {
            "os_service"
        } else {
            ""
        }
    }
}

/// A health check as it sits in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Check {
    pub node: String,
    pub check_id: String,
    pub name: String,
    pub status: HealthStatus,
    pub notes: String,
    pub output: String,
    /// Empty for node checks.
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub kind: String,
    pub definition: CheckDefinition,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A KV entry. Keys are arbitrary strings (Consul accepts any key but path traversal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KvEntry {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: u64,
    pub lock_index: u64,
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What happens to the keys a session holds when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SessionBehavior {
    /// Keys are kept, unlocked (Consul's default).
    #[default]
    Release,
    /// Keys are deleted.
    Delete,
}

impl SessionBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionBehavior::Release => "release",
            SessionBehavior::Delete => "delete",
        }
    }
}

/// A service check a session is bound to (`ServiceChecks: [{"ID": ...}]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceCheckRef {
    pub id: String,
    pub namespace: String,
}

/// A session: a node-bound lease that KV locks hang on. It is invalidated
/// (destroyed, its keys released or deleted) when its node goes, when one of
/// its checks goes critical or away, or when its TTL lapses unrenewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Session {
    /// UUID, chosen before the create command is proposed.
    pub id: String,
    pub name: String,
    pub node: String,
    /// Nanoseconds during which released keys cannot be re-acquired.
    pub lock_delay_ns: u64,
    pub behavior: SessionBehavior,
    /// As sent (`"30s"`); empty for no TTL.
    pub ttl: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<ServiceCheckRef>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Session {
    /// Every check ID the session is bound to.
    pub fn check_ids(&self) -> impl Iterator<Item = &str> {
        self.node_checks
            .iter()
            .map(String::as_str)
            .chain(self.service_checks.iter().map(|c| c.id.as_str()))
    }

    /// The TTL as a duration; `None` when unset or zero.
    pub fn ttl(&self) -> Option<std::time::Duration> {
        if self.ttl.is_empty() {
            return None;
        }
        crate::duration::parse(&self.ttl)
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// A service instance joined with its node and all checks that bear on it
/// (node checks and the instance's own service checks), as `/v1/health/service`
/// and DNS see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    pub node: Node,
    pub service: Service,
    pub checks: Vec<Check>,
}

impl ServiceInstance {
    pub fn status(&self) -> HealthStatus {
        HealthStatus::aggregate(self.checks.iter().map(|c| &c.status))
    }

    /// The address clients should connect to: the service's own if set, else the node's.
    pub fn address(&self) -> &str {
        if self.service.address.is_empty() {
            &self.node.address
        } else {
            &self.service.address
        }
    }
}

/// The well-known node check that gossip failure detection drives.
pub const SERF_HEALTH_CHECK_ID: &str = "serfHealth";
/// Node maintenance check (Consul's `structs.NodeMaint`).
pub const NODE_MAINT_CHECK_ID: &str = "_node_maintenance";
/// Service maintenance check prefix (`_service_maintenance:<id>`).
pub const SERVICE_MAINT_CHECK_PREFIX: &str = "_service_maintenance:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_is_worst_status() {
        use HealthStatus::*;
        assert_eq!(HealthStatus::aggregate(&[]), Passing);
        assert_eq!(HealthStatus::aggregate(&[Passing, Warning]), Warning);
        assert_eq!(
            HealthStatus::aggregate(&[Warning, Critical, Passing]),
            Critical
        );
    }
}
