//! One configuration source, key for key as Consul spells its config keys.
//!
//! A config file deserializes into a [`Source`], and `cairn agent`'s flags
//! parse into one too (`-http-port` sets `ports.http`, `-join` appends to
//! `start_join`), so there is one shape for every source and one function
//! (`Config::build`) that turns sources into a `Config`. Values stay as the
//! user wrote them: text addresses, text durations, a datacenter in any case;
//! they are checked and normalised in `Config::build`, once, whichever
//! source they came from.
//!
//! Every struct denies unknown fields: a key cairn does not know is a
//! startup error naming the file and the key, never silently ignored.
//! Lists (`retry_join`, `recursors`) append across sources and maps
//! (`node_meta`, `dns_config.service_ttl`) merge, as Consul merges them;
//! every other key takes the last source's value.

use serde::{de, Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// A duration as written: a Go duration string (`"30s"`), or a number of
/// nanoseconds as JSON encodes a Go `time.Duration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationSource {
    Text(String),
    Nanos(u64),
}

impl DurationSource {
    /// Parses the value of config key `key`.
    pub fn parse(&self, key: &str) -> Result<Duration, String> {
        match self {
            DurationSource::Text(s) => crate::duration::parse(s)
                .map_err(|e| format!("{key}: invalid duration: {s:?}: {e}")),
            DurationSource::Nanos(n) => Ok(Duration::from_nanos(*n)),
        }
    }
}

impl From<String> for DurationSource {
    fn from(s: String) -> Self {
        DurationSource::Text(s)
    }
}

impl<'de> Deserialize<'de> for DurationSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = DurationSource;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"10s\", or nanoseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<DurationSource, E> {
                Ok(DurationSource::Text(s.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<DurationSource, E> {
                Ok(DurationSource::Nanos(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<DurationSource, E> {
                u64::try_from(n)
                    .map(DurationSource::Nanos)
                    .map_err(|_| E::custom(format!("negative duration {n}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The top level of a config file, and what the agent's flags set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Source {
    pub datacenter: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub node_name: Option<String>,
    pub node_id: Option<String>,
    pub node_meta: BTreeMap<String, String>,
    pub server: Option<bool>,
    pub bootstrap: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    /// Space-separated addresses.
    pub client_addr: Option<String>,
    pub bind_addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub advertise_addr_wan: Option<String>,
    pub addresses: AddressesSource,
    pub ports: PortsSource,
    pub domain: Option<String>,
    pub alt_domain: Option<String>,
    pub recursors: Vec<String>,
    pub enable_script_checks: Option<bool>,
    pub enable_local_script_checks: Option<bool>,
    pub dns_config: DnsSource,
    pub log_level: Option<String>,
    pub log_json: Option<bool>,
    pub pid_file: Option<PathBuf>,
    pub ui: Option<bool>,
    pub ui_config: UiSource,
    /// Consul's older spellings of `ui_config.dir` and `ui_config.content_path`.
    pub ui_dir: Option<PathBuf>,
    pub ui_content_path: Option<String>,
    pub retry_join: Vec<String>,
    /// Joined like `retry_join` (`-join` sets it).
    pub start_join: Vec<String>,
    pub retry_interval: Option<DurationSource>,
    pub retry_max: Option<u32>,
    /// Servers only: WAN gossip addresses of other datacenters' servers.
    pub retry_join_wan: Vec<String>,
    /// Joined like `retry_join_wan` (`-join-wan` sets it).
    pub start_join_wan: Vec<String>,
    pub retry_interval_wan: Option<DurationSource>,
    pub retry_max_wan: Option<u32>,
    pub rejoin_after_leave: Option<bool>,
    pub encrypt: Option<String>,
    pub disable_keyring_file: Option<bool>,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    pub telemetry: TelemetrySource,
    pub limits: LimitsSource,
    pub performance: PerformanceSource,
    pub disable_host_node_id: Option<bool>,
    pub default_query_time: Option<DurationSource>,
    pub max_query_time: Option<DurationSource>,
    pub disable_update_check: Option<bool>,
    pub zones_dir: Option<PathBuf>,
    pub raft_snapshot_threshold: Option<u64>,
    pub raft_trailing_logs: Option<u64>,
    pub raft_snapshot_interval: Option<DurationSource>,
    /// How often an agent sends its network coordinate at least (Consul's
    /// `sync_coordinate_interval_min`, 15 s), and the updates per second
    /// all agents together aim at (`sync_coordinate_rate_target`, 64).
    pub sync_coordinate_interval_min: Option<DurationSource>,
    pub sync_coordinate_rate_target: Option<f64>,
    /// Consul's internal `consul { coordinate { ... } }` tunables.
    pub consul: ConsulSource,
    /// Service definitions (`service`, one or many; `services`, a list),
    /// kept as written: they are decoded and checked with the HTTP API's
    /// registration types in `Config::build`.
    #[serde(deserialize_with = "one_or_many")]
    pub service: Vec<serde_json::Value>,
    #[serde(deserialize_with = "one_or_many")]
    pub services: Vec<serde_json::Value>,
    /// Check definitions (`check`, `checks`), the same way.
    #[serde(deserialize_with = "one_or_many")]
    pub check: Vec<serde_json::Value>,
    #[serde(deserialize_with = "one_or_many")]
    pub checks: Vec<serde_json::Value>,
    pub acl: AclSource,
    pub primary_datacenter: Option<String>,
    /// Consul's pre-1.4 name for `primary_datacenter`.
    pub acl_datacenter: Option<String>,
    pub tls: super::tls::TlsConfig,
    /// Consul's pre-1.12 top-level TLS keys, mapped into `tls` with a
    /// deprecation warning (`config/tls.rs`).
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_cipher_suites: Option<String>,
    pub tls_min_version: Option<String>,
    pub tls_prefer_server_cipher_suites: Option<bool>,
    pub verify_incoming: Option<bool>,
    pub verify_incoming_https: Option<bool>,
    pub verify_incoming_rpc: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
}

impl Source {
    /// The deprecated top-level TLS keys this source sets.
    pub(super) fn deprecated_tls(&self) -> super::tls::DeprecatedTls {
        super::tls::DeprecatedTls {
            ca_file: self.ca_file.clone(),
            ca_path: self.ca_path.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            tls_cipher_suites: self.tls_cipher_suites.clone(),
            tls_min_version: self.tls_min_version.clone(),
            verify_incoming: self.verify_incoming,
            verify_incoming_https: self.verify_incoming_https,
            verify_incoming_rpc: self.verify_incoming_rpc,
            verify_outgoing: self.verify_outgoing,
            verify_server_hostname: self.verify_server_hostname,
            tls_prefer_server_cipher_suites: self.tls_prefer_server_cipher_suites,
        }
    }
}

/// `acl`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclSource {
    pub enabled: Option<bool>,
    pub default_policy: Option<String>,
    pub down_policy: Option<String>,
    pub enable_token_persistence: Option<bool>,
    pub enable_key_list_policy: Option<bool>,
    pub enable_token_replication: Option<bool>,
    pub token_ttl: Option<DurationSource>,
    pub policy_ttl: Option<DurationSource>,
    pub role_ttl: Option<DurationSource>,
    pub tokens: AclTokensSource,
}

/// `acl.tokens`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AclTokensSource {
    pub initial_management: Option<String>,
    /// Deprecated name of `initial_management`.
    pub master: Option<String>,
    pub agent: Option<String>,
    pub default: Option<String>,
    pub dns: Option<String>,
    pub agent_recovery: Option<String>,
    /// Deprecated name of `agent_recovery`.
    pub agent_master: Option<String>,
    pub replication: Option<String>,
    pub config_file_service_registration: Option<String>,
}

/// One object or a list of them. Consul's config decoding takes either
/// for its definition keys, and HCL gives one `service {}` block as an
/// object and repeated blocks as a list.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<serde_json::Value>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        one => vec![one],
    })
}

/// `addresses`: per-listener bind addresses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddressesSource {
    pub dns: Option<String>,
    pub http: Option<String>,
}

/// `ports`; -1 disables a listener.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortsSource {
    pub dns: Option<i32>,
    pub http: Option<i32>,
    pub https: Option<i32>,
    pub grpc: Option<i32>,
    pub grpc_tls: Option<i32>,
    pub serf_lan: Option<i32>,
    pub serf_wan: Option<i32>,
    pub server: Option<i32>,
}

/// `dns_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSource {
    pub allow_stale: Option<bool>,
    pub max_stale: Option<DurationSource>,
    pub node_ttl: Option<DurationSource>,
    pub service_ttl: BTreeMap<String, DurationSource>,
    pub enable_truncate: Option<bool>,
    pub only_passing: Option<bool>,
    pub udp_answer_limit: Option<usize>,
    pub a_record_limit: Option<usize>,
    pub disable_compression: Option<bool>,
    pub enable_additional_node_meta_txt: Option<bool>,
    pub recursor_strategy: Option<String>,
    pub recursor_timeout: Option<DurationSource>,
    pub soa: SoaSource,
    pub use_cache: Option<bool>,
    pub cache_max_age: Option<DurationSource>,
}

/// `dns_config.soa`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SoaSource {
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    pub min_ttl: Option<u32>,
}

/// `telemetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySource {
    pub prometheus_retention_time: Option<DurationSource>,
    pub disable_hostname: Option<bool>,
    pub metrics_prefix: Option<String>,
}

/// `ui_config`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSource {
    pub enabled: Option<bool>,
    pub dir: Option<PathBuf>,
    pub content_path: Option<String>,
}

/// `limits`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSource {
    pub kv_max_value_size: Option<u64>,
    pub http_max_conns_per_client: Option<u32>,
    pub rpc_max_conns_per_client: Option<u32>,
    pub https_handshake_timeout: Option<DurationSource>,
    pub rpc_handshake_timeout: Option<DurationSource>,
}

/// `consul`: internal tunables, as Consul accepts them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulSource {
    pub coordinate: CoordinateSource,
}

/// `consul.coordinate`: how servers batch coordinate updates into raft.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinateSource {
    pub update_period: Option<DurationSource>,
    pub update_batch_size: Option<usize>,
    pub update_max_batches: Option<usize>,
}

/// `performance`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformanceSource {
    pub raft_multiplier: Option<u32>,
}
