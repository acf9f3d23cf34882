//! Agent configuration: Consul's defaults, `-dev`, JSON config files (with
//! Consul's key names; an unknown key is a startup error) and command-line
//! flags, merged in that order.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Error parsing {path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// A duration given as a Go duration string or a number of nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            N(u64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => crate::duration::parse(&s)
                .map(GoDuration)
                .map_err(serde::de::Error::custom),
            Raw::N(n) => Ok(GoDuration(Duration::from_nanos(n))),
        }
    }
}

/// `dns_config.soa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaConfig {
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub min_ttl: u32,
}

impl Default for SoaConfig {
    fn default() -> Self {
        SoaConfig {
            refresh: 3600,
            retry: 600,
            expire: 86400,
            min_ttl: 0,
        }
    }
}

/// `dns_config` with Consul's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub allow_stale: bool,
    pub max_stale: Duration,
    pub node_ttl: Duration,
    /// Exact service name, `prefix*`, or `*` -> TTL.
    pub service_ttl: BTreeMap<String, Duration>,
    pub enable_truncate: bool,
    pub only_passing: bool,
    pub udp_answer_limit: usize,
    /// 0 = unlimited.
    pub a_record_limit: usize,
    pub disable_compression: bool,
    pub enable_additional_node_meta_txt: bool,
    pub recursor_timeout: Duration,
    pub soa: SoaConfig,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            allow_stale: true,
            max_stale: Duration::from_secs(87600 * 3600),
            node_ttl: Duration::ZERO,
            service_ttl: BTreeMap::new(),
            enable_truncate: false,
            only_passing: false,
            udp_answer_limit: 3,
            a_record_limit: 0,
            disable_compression: false,
            enable_additional_node_meta_txt: true,
            recursor_timeout: Duration::from_secs(2),
            soa: SoaConfig::default(),
        }
    }
}

impl DnsConfig {
    /// TTL for a service: exact name, then the longest matching `prefix*`, then `*`.
    pub fn service_ttl_for(&self, name: &str) -> Duration {
        if let Some(t) = self.service_ttl.get(name) {
            return *t;
        }
        let mut best: Option<(usize, Duration)> = None;
        for (pat, ttl) in &self.service_ttl {
            if let Some(prefix) = pat.strip_suffix('*') {
                if name.starts_with(prefix) && best.is_none_or(|(len, _)| prefix.len() > len) {
                    best = Some((prefix.len(), *ttl));
                }
            }
        }
        best.map(|(_, t)| t).unwrap_or(Duration::ZERO)
    }
}

/// Ports; -1 disables a listener (Consul's convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    pub dns: i32,
    pub http: i32,
    pub https: i32,
    pub grpc: i32,
    pub serf_lan: i32,
    pub serf_wan: i32,
    pub server: i32,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            dns: 8600,
            http: 8500,
            https: -1,
            grpc: -1,
            serf_lan: 8301,
            serf_wan: 8302,
            server: 8300,
        }
    }
}

/// The resolved agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub dev: bool,
    pub server: bool,
    pub bootstrap: bool,
    pub bootstrap_expect: u32,
    /// None with `-dev`: a temporary directory is made at startup.
    pub data_dir: Option<PathBuf>,
    pub node_name: String,
    pub node_id: Option<String>,
    pub node_meta: BTreeMap<String, String>,
    pub datacenter: String,
    /// With trailing dot, lower-case: `consul.`
    pub domain: String,
    pub alt_domain: Option<String>,
    pub client_addrs: Vec<IpAddr>,
    pub bind_addr: IpAddr,
    pub advertise_addr: Option<IpAddr>,
    pub ports: Ports,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub dns: DnsConfig,
    pub recursors: Vec<String>,
    pub log_level: String,
    pub pid_file: Option<PathBuf>,
    pub ui: bool,
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    pub retry_max: u32,
    pub rejoin_after_leave: bool,
    pub encrypt: Option<String>,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    /// `telemetry.prometheus_retention_time`; 0 turns the Prometheus format off (415).
    pub prometheus_retention: Duration,
    pub disable_hostname: bool,
    pub kv_max_value_size: u64,
    pub default_query_time: Duration,
    pub max_query_time: Duration,
    /// Directory of extra static zone files served beside the catalog.
    pub zones_dir: Option<PathBuf>,
    /// `raft_snapshot_threshold`: log entries between snapshots.
    pub raft_snapshot_threshold: u64,
    /// `raft_trailing_logs`: entries kept behind a snapshot for slow followers.
    pub raft_trailing_logs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dev: false,
            server: false,
            bootstrap: false,
            bootstrap_expect: 0,
            data_dir: None,
            node_name: default_node_name(),
            node_id: None,
            node_meta: BTreeMap::new(),
            datacenter: "dc1".into(),
            domain: "consul.".into(),
            alt_domain: None,
            client_addrs: vec![IpAddr::from([127, 0, 0, 1])],
            bind_addr: IpAddr::from([0, 0, 0, 0]),
            advertise_addr: None,
            ports: Ports::default(),
            enable_script_checks: false,
            enable_local_script_checks: false,
            dns: DnsConfig::default(),
            recursors: vec![],
            log_level: "info".into(),
            pid_file: None,
            ui: false,
            retry_join: vec![],
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
            rejoin_after_leave: false,
            encrypt: None,
            leave_on_terminate: None,
            skip_leave_on_interrupt: None,
            prometheus_retention: Duration::from_secs(60),
            disable_hostname: false,
            kv_max_value_size: 512 * 1024,
            default_query_time: Duration::from_secs(300),
            max_query_time: Duration::from_secs(600),
            zones_dir: None,
            raft_snapshot_threshold: 16384,
            raft_trailing_logs: 10240,
        }
    }
}

fn default_node_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cairn".into())
}

impl Config {
    /// Consul's `-dev`: a bootstrapped single server with the UI on.
    pub fn apply_dev(&mut self) {
        self.dev = true;
        self.server = true;
        self.bootstrap = true;
        self.ui = true;
        self.bind_addr = IpAddr::from([127, 0, 0, 1]);
        self.disable_hostname = true;
        self.enable_script_checks = false;
    }

    /// The address other agents reach this one on.
    pub fn advertise(&self) -> IpAddr {
        if let Some(a) = self.advertise_addr {
            return a;
        }
        if !self.bind_addr.is_unspecified() {
            return self.bind_addr;
        }
        first_private_ipv4().unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    pub fn domain_no_dot(&self) -> &str {
        self.domain.trim_end_matches('.')
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.dev && self.data_dir.is_none() {
            return Err(ConfigError::Invalid("data_dir cannot be empty".into()));
        }
        if self.bootstrap && self.bootstrap_expect > 0 {
            return Err(ConfigError::Invalid(
                "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive".into(),
            ));
        }
        if (self.bootstrap || self.bootstrap_expect > 0) && !self.server {
            return Err(ConfigError::Invalid(
                "'bootstrap_expect > 0' or 'bootstrap = true' require server mode".into(),
            ));
        }
        if self.node_name.is_empty()
            || self
                .node_name
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\0')
        {
            return Err(ConfigError::Invalid(format!(
                "node_name {:?} is invalid",
                self.node_name
            )));
        }
        if let Some(id) = &self.node_id {
            if uuid::Uuid::parse_str(id).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "node_id {id:?} is not a valid UUID"
                )));
            }
        }
        if self.server && self.ports.server <= 0 {
            return Err(ConfigError::Invalid(
                "ports.server must be a valid port for servers".into(),
            ));
        }
        Ok(())
    }

    /// Merges one JSON config file.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let err = |msg: String| ConfigError::File {
            path: path.display().to_string(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext == "hcl" {
            return Err(err("HCL config files are not supported; use JSON".into()));
        }
        let file: FileConfig = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        file.merge_into(self).map_err(err)
    }

    /// Merges every `*.json` file of a directory in lexical order, as Consul does.
    pub fn merge_dir(&mut self, dir: &Path) -> Result<(), ConfigError> {
        let rd = std::fs::read_dir(dir).map_err(|e| ConfigError::File {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json") | Some("hcl")
                    )
            })
            .collect();
        files.sort();
        for f in files {
            self.merge_file(&f)?;
        }
        Ok(())
    }
}

fn first_private_ipv4() -> Option<IpAddr> {
    // Without interface enumeration, learn the outbound-facing address by
    // "connecting" a UDP socket (no packet is sent).
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("10.255.255.255:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    if ip.is_unspecified() {
        None
    } else {
        Some(ip)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsFile {
    dns: Option<i32>,
    http: Option<i32>,
    https: Option<i32>,
    grpc: Option<i32>,
    grpc_tls: Option<i32>,
    serf_lan: Option<i32>,
    serf_wan: Option<i32>,
    server: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SoaFile {
    refresh: Option<u32>,
    retry: Option<u32>,
    expire: Option<u32>,
    min_ttl: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsConfigFile {
    allow_stale: Option<bool>,
    max_stale: Option<GoDuration>,
    node_ttl: Option<GoDuration>,
    service_ttl: Option<BTreeMap<String, GoDuration>>,
    enable_truncate: Option<bool>,
    only_passing: Option<bool>,
    udp_answer_limit: Option<usize>,
    a_record_limit: Option<usize>,
    disable_compression: Option<bool>,
    enable_additional_node_meta_txt: Option<bool>,
    recursor_strategy: Option<String>,
    recursor_timeout: Option<GoDuration>,
    soa: Option<SoaFile>,
    use_cache: Option<bool>,
    cache_max_age: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryFile {
    prometheus_retention_time: Option<GoDuration>,
    disable_hostname: Option<bool>,
    metrics_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UiConfigFile {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressesFile {
    dns: Option<String>,
    http: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    kv_max_value_size: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceFile {
    raft_multiplier: Option<u32>,
}

/// A config file, key for key as Consul spells them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    datacenter: Option<String>,
    data_dir: Option<PathBuf>,
    node_name: Option<String>,
    node_id: Option<String>,
    node_meta: Option<BTreeMap<String, String>>,
    server: Option<bool>,
    bootstrap: Option<bool>,
    bootstrap_expect: Option<u32>,
    client_addr: Option<String>,
    bind_addr: Option<String>,
    advertise_addr: Option<String>,
    addresses: Option<AddressesFile>,
    ports: Option<PortsFile>,
    domain: Option<String>,
    alt_domain: Option<String>,
    recursors: Option<Vec<String>>,
    enable_script_checks: Option<bool>,
    enable_local_script_checks: Option<bool>,
    dns_config: Option<DnsConfigFile>,
    log_level: Option<String>,
    log_json: Option<bool>,
    pid_file: Option<PathBuf>,
    ui: Option<bool>,
    ui_config: Option<UiConfigFile>,
    retry_join: Option<Vec<String>>,
    start_join: Option<Vec<String>>,
    retry_interval: Option<GoDuration>,
    retry_max: Option<u32>,
    rejoin_after_leave: Option<bool>,
    encrypt: Option<String>,
    leave_on_terminate: Option<bool>,
    skip_leave_on_interrupt: Option<bool>,
    telemetry: Option<TelemetryFile>,
    limits: Option<LimitsFile>,
    performance: Option<PerformanceFile>,
    disable_host_node_id: Option<bool>,
    default_query_time: Option<GoDuration>,
    max_query_time: Option<GoDuration>,
    disable_update_check: Option<bool>,
    zones_dir: Option<PathBuf>,
    raft_snapshot_threshold: Option<u64>,
    raft_trailing_logs: Option<u64>,
    raft_snapshot_interval: Option<GoDuration>,
}

fn parse_ips(s: &str) -> Result<Vec<IpAddr>, String> {
    s.split_whitespace()
        .map(|p| {
            p.parse::<IpAddr>()
                .map_err(|_| format!("invalid address {p:?}"))
        })
        .collect()
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse::<IpAddr>()
        .map_err(|_| format!("invalid address {s:?}"))
}

pub fn normalize_domain(d: &str) -> String {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{d}.")
}

impl FileConfig {
    fn merge_into(self, c: &mut Config) -> Result<(), String> {
        macro_rules! set {
            ($src:expr => $dst:expr) => {
                if let Some(v) = $src {
                    $dst = v;
                }
            };
        }
        set!(self.datacenter => c.datacenter);
        if let Some(d) = self.data_dir {
            c.data_dir = Some(d);
        }
        set!(self.node_name => c.node_name);
        if self.node_id.is_some() {
            c.node_id = self.node_id;
        }
        if let Some(m) = self.node_meta {
            c.node_meta.extend(m);
        }
        set!(self.server => c.server);
        set!(self.bootstrap => c.bootstrap);
        set!(self.bootstrap_expect => c.bootstrap_expect);
        if let Some(a) = self.client_addr {
            c.client_addrs = parse_ips(&a)?;
        }
        if let Some(a) = self.bind_addr {
            c.bind_addr = parse_ip(&a)?;
        }
        if let Some(a) = self.advertise_addr {
            c.advertise_addr = Some(parse_ip(&a)?);
        }
        if let Some(a) = self.addresses {
            // Per-listener addresses: both listeners share client_addr here.
            if let Some(h) = a.http.or(a.dns) {
                c.client_addrs = parse_ips(&h)?;
            }
        }
        if let Some(p) = self.ports {
            set!(p.dns => c.ports.dns);
            set!(p.http => c.ports.http);
            set!(p.https => c.ports.https);
            set!(p.grpc => c.ports.grpc);
            let _ = p.grpc_tls;
            set!(p.serf_lan => c.ports.serf_lan);
            set!(p.serf_wan => c.ports.serf_wan);
            set!(p.server => c.ports.server);
        }
        if let Some(d) = self.domain {
            c.domain = normalize_domain(&d);
        }
        if let Some(d) = self.alt_domain {
            c.alt_domain = Some(normalize_domain(&d));
        }
        if let Some(r) = self.recursors {
            c.recursors.extend(r);
        }
        set!(self.enable_script_checks => c.enable_script_checks);
        set!(self.enable_local_script_checks => c.enable_local_script_checks);
        if let Some(d) = self.dns_config {
            let t = &mut c.dns;
            set!(d.allow_stale => t.allow_stale);
            set!(d.max_stale.map(|g| g.0) => t.max_stale);
            set!(d.node_ttl.map(|g| g.0) => t.node_ttl);
            if let Some(m) = d.service_ttl {
                t.service_ttl.extend(m.into_iter().map(|(k, v)| (k, v.0)));
            }
            set!(d.enable_truncate => t.enable_truncate);
            set!(d.only_passing => t.only_passing);
            set!(d.udp_answer_limit => t.udp_answer_limit);
            set!(d.a_record_limit => t.a_record_limit);
            set!(d.disable_compression => t.disable_compression);
            set!(d.enable_additional_node_meta_txt => t.enable_additional_node_meta_txt);
            set!(d.recursor_timeout.map(|g| g.0) => t.recursor_timeout);
            if let Some(s) = d.recursor_strategy {
                if s != "sequential" && s != "random" {
                    return Err(format!("dns_config.recursor_strategy: invalid value {s:?}"));
                }
            }
            let _ = (d.use_cache, d.cache_max_age);
            if let Some(soa) = d.soa {
                set!(soa.refresh => t.soa.refresh);
                set!(soa.retry => t.soa.retry);
                set!(soa.expire => t.soa.expire);
                set!(soa.min_ttl => t.soa.min_ttl);
            }
        }
        set!(self.log_level => c.log_level);
        let _ = self.log_json;
        if self.pid_file.is_some() {
            c.pid_file = self.pid_file;
        }
        set!(self.ui => c.ui);
        if let Some(u) = self.ui_config {
            set!(u.enabled => c.ui);
        }
        if let Some(j) = self.retry_join {
            c.retry_join.extend(j);
        }
        if let Some(j) = self.start_join {
            c.retry_join.extend(j);
        }
        set!(self.retry_interval.map(|g| g.0) => c.retry_interval);
        set!(self.retry_max => c.retry_max);
        set!(self.rejoin_after_leave => c.rejoin_after_leave);
        if self.encrypt.is_some() {
            c.encrypt = self.encrypt;
        }
        if self.leave_on_terminate.is_some() {
            c.leave_on_terminate = self.leave_on_terminate;
        }
        if self.skip_leave_on_interrupt.is_some() {
            c.skip_leave_on_interrupt = self.skip_leave_on_interrupt;
        }
        if let Some(t) = self.telemetry {
            set!(t.prometheus_retention_time.map(|g| g.0) => c.prometheus_retention);
            set!(t.disable_hostname => c.disable_hostname);
            let _ = t.metrics_prefix;
        }
        if let Some(l) = self.limits {
            set!(l.kv_max_value_size => c.kv_max_value_size);
        }
        let _ = (
            self.performance.map(|p| p.raft_multiplier),
            self.disable_host_node_id,
            self.disable_update_check,
        );
        set!(self.default_query_time.map(|g| g.0) => c.default_query_time);
        set!(self.max_query_time.map(|g| g.0) => c.max_query_time);
        if self.zones_dir.is_some() {
            c.zones_dir = self.zones_dir;
        }
        if let Some(t) = self.raft_snapshot_threshold {
            if t == 0 {
                return Err("raft_snapshot_threshold must be positive".into());
            }
            c.raft_snapshot_threshold = t;
        }
        set!(self.raft_trailing_logs => c.raft_trailing_logs);
        let _ = self.raft_snapshot_interval;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_an_error() {
        let r: Result<FileConfig, _> = serde_json::from_str(r#"{"datacenter":"x","bogus":1}"#);
        assert!(r.unwrap_err().to_string().contains("unknown field `bogus`"));
    }

    #[test]
    fn file_keys_merge() {
        let f: FileConfig = serde_json::from_str(
            r#"{"ports":{"http":18500,"dns":18600,"https":-1,"grpc":-1},"dns_config":{"node_ttl":"30s","service_ttl":{"*":"5s","web*":"10s"},"only_passing":true,"udp_answer_limit":5},"enable_script_checks":true}"#,
        )
        .unwrap();
        let mut c = Config::default();
        f.merge_into(&mut c).unwrap();
        assert_eq!(c.ports.http, 18500);
        assert_eq!(c.ports.dns, 18600);
        assert_eq!(c.dns.node_ttl, Duration::from_secs(30));
        assert!(c.dns.only_passing);
        assert_eq!(c.dns.udp_answer_limit, 5);
        assert!(c.enable_script_checks);
        assert_eq!(c.dns.service_ttl_for("webapp"), Duration::from_secs(10));
        assert_eq!(c.dns.service_ttl_for("db"), Duration::from_secs(5));
    }
}
