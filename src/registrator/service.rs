//! What registrator registers for one published port: the service, its
//! optional check, and the container it came from, with the JSON body of
//! Consul's `PUT /v1/agent/service/register`.

use super::container::ExposedPort;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The container and port a service was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub container_id: String,
    pub container_name: String,
    pub port: ExposedPort,
}

/// One service for the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// `<hostname>:<container-name>:<exposed-port>[:udp]`, or `SERVICE_ID`.
    pub id: String,
    pub name: String,
    pub port: u16,
    /// Empty lets Consul use the node's address.
    pub address: String,
    pub tags: Vec<String>,
    /// Every other `SERVICE_*` attribute, key lower-cased without the prefix.
    pub meta: BTreeMap<String, String>,
    pub check: Option<Check>,
    pub origin: Origin,
}

/// A check's initial status (`SERVICE_CHECK_INITIAL_STATUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialStatus {
    Passing,
    Warning,
    Critical,
}

impl InitialStatus {
    pub fn parse(s: &str) -> Option<InitialStatus> {
        match s {
            "passing" => Some(InitialStatus::Passing),
            "warning" => Some(InitialStatus::Warning),
            "critical" => Some(InitialStatus::Critical),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            InitialStatus::Passing => "passing",
            InitialStatus::Warning => "warning",
            InitialStatus::Critical => "critical",
        }
    }
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// `SERVICE_CHECK_HTTP` or `SERVICE_CHECK_HTTPS`: a GET (or the given
    /// method) of the full URL.
    Http { url: String, method: Option<String> },
    /// `SERVICE_CHECK_TCP`: a connect to the service's address and port.
    Tcp { address: String },
    /// `SERVICE_CHECK_GRPC`: the gRPC health protocol.
    Grpc {
        address: String,
        use_tls: bool,
        tls_skip_verify: bool,
    },
    /// `SERVICE_CHECK_SCRIPT` or `SERVICE_CHECK_CMD`: a command the agent runs.
    Script { args: Vec<String> },
    /// `SERVICE_CHECK_TTL`: the service reports in itself.
    Ttl(Duration),
}

/// A service's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    /// Every kind but TTL has one (`SERVICE_CHECK_INTERVAL`, else 10s).
    pub interval: Option<Duration>,
    /// `SERVICE_CHECK_TIMEOUT`, for HTTP, TCP and gRPC checks.
    pub timeout: Option<Duration>,
    pub initial_status: Option<InitialStatus>,
    /// `SERVICE_CHECK_DEREGISTER_AFTER`.
    pub deregister_after: Option<Duration>,
}

/// `api.AgentServiceRegistration` as Consul's Go client sends it (empty
/// fields left out).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RegisterBody<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: &'a Vec<String>,
    port: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    address: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<CheckBody<'a>>,
}

/// `api.AgentServiceCheck`.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CheckBody<'a> {
    #[serde(rename = "HTTP", skip_serializing_if = "Option::is_none")]
    http: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(rename = "TCP", skip_serializing_if = "Option::is_none")]
    tcp: Option<&'a str>,
    #[serde(rename = "GRPC", skip_serializing_if = "Option::is_none")]
    grpc: Option<&'a str>,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "is_false")]
    grpc_use_tls: bool,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "is_false")]
    tls_skip_verify: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a Vec<String>>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deregister_critical_service_after: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Check {
    fn body(&self) -> CheckBody<'_> {
        let go = |d: Option<Duration>| d.map(crate::duration::format);
        let mut b = CheckBody {
            interval: go(self.interval),
            timeout: go(self.timeout),
            status: self.initial_status.map(InitialStatus::as_str),
            deregister_critical_service_after: go(self.deregister_after),
            ..CheckBody::default()
        };
        match &self.kind {
            CheckKind::Http { url, method } => {
                b.http = Some(url);
                b.method = method.as_deref();
            }
            CheckKind::Tcp { address } => b.tcp = Some(address),
            CheckKind::Grpc {
                address,
                use_tls,
                tls_skip_verify,
            } => {
                b.grpc = Some(address);
                b.grpc_use_tls = *use_tls;
                b.tls_skip_verify = *tls_skip_verify;
            }
            CheckKind::Script { args } => b.args = Some(args),
            CheckKind::Ttl(ttl) => b.ttl = Some(crate::duration::format(*ttl)),
        }
        b
    }
}

impl Registration {
    /// The body of `PUT /v1/agent/service/register`.
    pub fn register_body(&self) -> serde_json::Value {
        let body = RegisterBody {
            id: &self.id,
            name: &self.name,
            tags: &self.tags,
            port: self.port,
            address: &self.address,
            meta: &self.meta,
            check: self.check.as_ref().map(Check::body),
        };
        // Serializing plain strings, numbers and maps cannot fail.
        serde_json::to_value(body).unwrap_or(serde_json::Value::Null)
    }

    /// `address:port` (`[v6]:port`), as the KV backend stores it.
    pub fn host_port(&self) -> String {
        join_host_port(&self.address, self.port)
    }
}

/// Go's `net.JoinHostPort`: brackets around an IPv6 address.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registration(check: Option<Check>) -> Registration {
        Registration {
            id: "host:web-1:80".into(),
            name: "web".into(),
            port: 18080,
            address: "10.0.0.5".into(),
            tags: vec![],
            meta: BTreeMap::new(),
            check,
            origin: Origin {
                container_id: "abc".into(),
                container_name: "web-1".into(),
                port: ExposedPort::parse("80/tcp"),
            },
        }
    }

    #[test]
    fn empty_fields_are_left_out_as_the_go_client_does() {
        assert_eq!(
            registration(None).register_body(),
            json!({"ID": "host:web-1:80", "Name": "web", "Port": 18080, "Address": "10.0.0.5"})
        );
    }

    #[test]
    fn a_check_carries_go_durations() {
        let check = Check {
            kind: CheckKind::Http {
                url: "http://10.0.0.5:18080/health".into(),
                method: Some("HEAD".into()),
            },
            interval: Some(Duration::from_secs(10)),
            timeout: Some(Duration::from_millis(1500)),
            initial_status: Some(InitialStatus::Passing),
            deregister_after: Some(Duration::from_secs(90)),
        };
        assert_eq!(
            registration(Some(check)).register_body()["Check"],
            json!({
                "HTTP": "http://10.0.0.5:18080/health",
                "Method": "HEAD",
                "Interval": "10s",
                "Timeout": "1.5s",
                "Status": "passing",
                "DeregisterCriticalServiceAfter": "1m30s"
            })
        );
        let ttl = Check {
            kind: CheckKind::Ttl(Duration::from_secs(30)),
            interval: None,
            timeout: None,
            initial_status: None,
            deregister_after: None,
        };
        assert_eq!(
            registration(Some(ttl)).register_body()["Check"],
            json!({"TTL": "30s"})
        );
    }

    #[test]
    fn ipv6_host_ports_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(registration(None).host_port(), "10.0.0.5:18080");
    }
}
