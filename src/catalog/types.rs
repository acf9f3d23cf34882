//! The catalog's domain types, as stored in LMDB and passed through the core.
//! They carry no wire concerns: Consul's JSON shapes live in `http`, its DNS
//! shapes in `dns`. They are stored with `bincode`, so no field may be
//! skipped when serializing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

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

/// How a check is run, as registered: what kind of check it is, with that
/// kind's own settings, and the settings every kind shares. A zero duration
/// is unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CheckDefinition {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub deregister_critical_service_after: Duration,
    pub output_max_size: u64,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

impl CheckDefinition {
    /// A check nothing runs, of the given `Type` (`"maintenance"`, or `""`).
    pub fn undefined(type_name: &str) -> CheckDefinition {
        CheckDefinition {
            kind: CheckKind::Undefined {
                type_name: type_name.to_string(),
            },
            ..CheckDefinition::default()
        }
    }
}

/// What kind of check a definition is, with exactly that kind's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// Critical unless its owner reports within `ttl`.
    Ttl {
        ttl: Duration,
    },
    Http(HttpCheck),
    Tcp {
        address: String,
        use_tls: bool,
        tls_server_name: String,
        tls_skip_verify: bool,
    },
    Udp {
        address: String,
    },
    /// `target` is `host:port[/service]`.
    Grpc {
        target: String,
        use_tls: bool,
        tls_server_name: String,
        tls_skip_verify: bool,
    },
    H2ping {
        address: String,
        use_tls: bool,
        tls_server_name: String,
        tls_skip_verify: bool,
    },
    /// A command run on the agent's host; `args` is never empty.
    Script {
        args: Vec<String>,
    },
    /// A command run in a container (`docker exec`).
    Docker {
        container_id: String,
        shell: String,
        args: Vec<String>,
    },
    /// A systemd (or Windows) service's state.
    OsService {
        service: String,
    },
    /// Mirrors another node's or service instance's health; an empty node
    /// is the agent's own.
    Alias {
        node: String,
        service: String,
    },
    /// No definition to run: catalog registrations without one, maintenance
    /// checks and `serfHealth`, whose status is whatever their owner writes.
    /// `type_name` is the `Type` they were registered with.
    Undefined {
        type_name: String,
    },
}

impl Default for CheckKind {
    fn default() -> Self {
        CheckKind::Undefined {
            type_name: String::new(),
        }
    }
}

impl CheckKind {
    /// Consul's `CheckType.Type()`, as `HealthCheck.Type` shows it.
    pub fn type_name(&self) -> &str {
        match self {
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Http(_) => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Udp { .. } => "udp",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::H2ping { .. } => "h2ping",
            CheckKind::Script { .. } => "script",
            CheckKind::Docker { .. } => "docker",
            CheckKind::OsService { .. } => "os_service",
            CheckKind::Alias { .. } => "alias",
            CheckKind::Undefined { type_name } => type_name,
        }
    }

    /// Whether this is a TTL check, the only kind `/v1/agent/check/update` takes.
    pub fn is_ttl(&self) -> bool {
        matches!(self, CheckKind::Ttl { .. })
    }
}

/// An HTTP check: one request to `url` per interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpCheck {
    pub url: String,
    /// Empty for GET.
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub disable_redirects: bool,
    pub tls_server_name: String,
    pub tls_skip_verify: bool,
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
    /// How it runs; its kind is also its `Type`.
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

    fn every_kind() -> Vec<CheckKind> {
        let s = |v: &str| v.to_string();
        vec![
            CheckKind::Ttl {
                ttl: Duration::from_secs(30),
            },
            CheckKind::Http(HttpCheck {
                url: s("https://web/health"),
                method: s("POST"),
                header: [(s("X-A"), vec![s("1"), s("2")])].into(),
                body: s("{}"),
                disable_redirects: true,
                tls_server_name: s("web.internal"),
                tls_skip_verify: true,
            }),
            CheckKind::Tcp {
                address: s("db:5432"),
                use_tls: true,
                tls_server_name: s("db"),
                tls_skip_verify: false,
            },
            CheckKind::Udp {
                address: s("dns:53"),
            },
            CheckKind::Grpc {
                target: s("rpc:1/svc"),
                use_tls: false,
                tls_server_name: String::new(),
                tls_skip_verify: true,
            },
            CheckKind::H2ping {
                address: s("h2:443"),
                use_tls: true,
                tls_server_name: String::new(),
                tls_skip_verify: false,
            },
            CheckKind::Script {
                args: vec![s("/bin/check"), s("-q")],
            },
            CheckKind::Docker {
                container_id: s("f00"),
                shell: s("/bin/sh"),
                args: vec![s("ok")],
            },
            CheckKind::OsService { service: s("sshd") },
            CheckKind::Alias {
                node: s("n2"),
                service: s("web"),
            },
            CheckKind::Undefined {
                type_name: s("maintenance"),
            },
        ]
    }

    #[test]
    fn type_names_are_consuls() {
        let kinds = every_kind();
        let names: Vec<&str> = kinds.iter().map(CheckKind::type_name).collect();
        assert_eq!(
            names,
            [
                "ttl",
                "http",
                "tcp",
                "udp",
                "grpc",
                "h2ping",
                "script",
                "docker",
                "os_service",
                "alias",
                "maintenance"
            ]
        );
        assert_eq!(Check::default().definition.kind.type_name(), "");
        assert_eq!(
            CheckDefinition::undefined("maintenance").kind,
            CheckKind::Undefined {
                type_name: "maintenance".into()
            }
        );
    }

    #[test]
    fn checks_round_trip_through_bincode_and_json() {
        for kind in every_kind() {
            let check = Check {
                node: "n1".into(),
                check_id: "c1".into(),
                name: "c".into(),
                status: HealthStatus::Warning,
                service_id: "web1".into(),
                definition: CheckDefinition {
                    kind,
                    interval: Duration::from_millis(1500),
                    timeout: Duration::from_nanos(7),
                    deregister_critical_service_after: Duration::from_secs(90 * 60),
                    output_max_size: 100,
                    success_before_passing: 1,
                    failures_before_warning: 2,
                    failures_before_critical: 3,
                },
                create_index: 4,
                modify_index: 5,
                ..Check::default()
            };
            let raft = bincode::serialize(&check).expect("serializes");
            let back: Check = bincode::deserialize(&raft).expect("deserializes");
            assert_eq!(back, check);
            // Local state is kept as JSON.
            let local = serde_json::to_vec(&check).expect("serializes");
            let back: Check = serde_json::from_slice(&local).expect("deserializes");
            assert_eq!(back, check);
        }
    }
}
