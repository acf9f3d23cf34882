//! Agent configuration: the resolved [`Config`] every module reads, with
//! Consul's defaults, and [`load`], which builds it the way Consul does:
//! defaults, then `-dev`, then config files and directories in the order
//! given, then the command-line flags.
//!
//! Every source has one shape, [`Source`] (`source.rs`), keyed as Consul
//! spells config keys: a JSON file deserializes into it (`file.rs`) and
//! `cairn agent`'s flags parse into it. One function, [`Config::build`]
//! (`build.rs`), lays the sources over the defaults and normalises their
//! values, so a flag and a config key can never mean different things.

mod build;
mod definitions;
mod file;
mod source;
mod tls;

pub use build::Origin;
pub use definitions::{FileCheck, FileService, SCRIPTS_DISABLED_LOCAL};
pub use source::{
    AddressesSource, DnsSource, DurationSource, LimitsSource, PerformanceSource, PortsSource,
    SoaSource, Source, TelemetrySource, UiSource,
};
pub use tls::{TlsConfig, TlsInterface, TlsVersion};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("Error parsing {path}: {msg}")]
    File { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
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

/// `limits`: Consul's per-client connection caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `limits.http_max_conns_per_client`: concurrent HTTP connections from one client IP.
    pub http_max_conns_per_client: u32,
    /// `limits.rpc_max_conns_per_client`: concurrent server RPC connections from one client IP.
    pub rpc_max_conns_per_client: u32,
    /// `limits.https_handshake_timeout`: how long an HTTPS client may take
    /// to finish its TLS handshake.
    pub https_handshake_timeout: Duration,
    /// `limits.rpc_handshake_timeout`: how long an RPC connection may take
    /// to finish its TLS handshake and name its protocol.
    pub rpc_handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_max_conns_per_client: 200,
            rpc_max_conns_per_client: 100,
            https_handshake_timeout: Duration::from_secs(5),
            rpc_handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// `acl.down_policy`: what a client agent does when no server answers a
/// token lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownPolicy {
    Allow,
    Deny,
    /// Keep using cached authorizers past their TTL (Consul's default).
    ExtendCache,
    /// As `ExtendCache`; Consul refreshes in the background.
    AsyncCache,
}

/// `acl.tokens`: the agent's own tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclTokens {
    /// `initial_management` (or the deprecated `master`): made a
    /// management token by the leader.
    pub initial_management: Option<String>,
    /// Used for the agent's own writes (anti-entropy, check sync).
    pub agent: Option<String>,
    /// Used for requests that carry no token.
    pub default: Option<String>,
    /// Used for DNS lookups.
    pub dns: Option<String>,
    pub agent_recovery: Option<String>,
    pub replication: Option<String>,
    pub config_file_service_registration: Option<String>,
}

/// `acl {}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    pub enabled: bool,
    /// `default_policy = "allow"` (Consul's default) or `"deny"`.
    pub default_allow: bool,
    pub down_policy: DownPolicy,
    pub enable_token_persistence: bool,
    pub enable_key_list_policy: bool,
    pub token_ttl: Duration,
    pub policy_ttl: Duration,
    pub role_ttl: Duration,
    pub tokens: AclTokens,
}

impl Default for AclConfig {
    fn default() -> Self {
        AclConfig {
            enabled: false,
            default_allow: true,
            down_policy: DownPolicy::ExtendCache,
            enable_token_persistence: false,
            enable_key_list_policy: false,
            token_ttl: Duration::from_secs(30),
            policy_ttl: Duration::from_secs(30),
            role_ttl: Duration::from_secs(30),
            tokens: AclTokens::default(),
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
    /// Servers: the address other datacenters' servers reach this one on
    /// (WAN gossip and RPC); the advertise address when unset.
    pub advertise_addr_wan: Option<IpAddr>,
    pub ports: Ports,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub dns: DnsConfig,
    pub recursors: Vec<String>,
    pub log_level: String,
    pub pid_file: Option<PathBuf>,
    /// The web UI is served: `-ui`, `ui_config.enabled`, `-dev`, or a
    /// `ui_config.dir` (Consul turns the UI on when a directory is given).
    pub ui: bool,
    /// `ui_config.dir` / `-ui-dir`: serve the UI from this directory instead
    /// of the files built into the binary.
    pub ui_dir: Option<PathBuf>,
    /// `ui_config.content_path` / `-ui-content-path`: where the UI is served,
    /// with a leading and a trailing `/` (`/ui/`).
    pub ui_content_path: String,
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    pub retry_max: u32,
    /// Servers: other datacenters' servers to join over WAN gossip.
    pub retry_join_wan: Vec<String>,
    pub retry_interval_wan: Duration,
    pub retry_max_wan: u32,
    pub rejoin_after_leave: bool,
    pub encrypt: Option<String>,
    /// `disable_keyring_file`: keep the gossip keyring in memory only, not
    /// in `<data_dir>/serf/local.keyring` (on under `-dev`).
    pub disable_keyring_file: bool,
    pub leave_on_terminate: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    /// `telemetry.prometheus_retention_time`; 0 turns the Prometheus format off (415).
    pub prometheus_retention: Duration,
    pub disable_hostname: bool,
    /// `limits.kv_max_value_size`.
    pub kv_max_value_size: u64,
    pub limits: Limits,
    pub default_query_time: Duration,
    pub max_query_time: Duration,
    /// Directory of extra static zone files served beside the catalog.
    pub zones_dir: Option<PathBuf>,
    /// `raft_snapshot_threshold`: log entries between snapshots.
    pub raft_snapshot_threshold: u64,
    /// `raft_trailing_logs`: entries kept behind a snapshot for slow followers.
    pub raft_trailing_logs: u64,
    /// Network coordinate timings.
    pub coordinates: crate::coordinate::Timings,
    /// Services defined in config files (`service`, `services`), in order.
    pub services: Vec<FileService>,
    /// Stand-alone checks defined in config files (`check`, `checks`).
    pub checks: Vec<FileCheck>,
    pub acl: AclConfig,
    /// The datacenter authoritative for ACLs; empty means this one.
    pub primary_datacenter: String,
    /// `tls {}`, merged across sources; `tls.internal_rpc()` and
    /// `tls.https()` resolve an interface's settings.
    pub tls: TlsConfig,
    /// Deprecation warnings met while building, logged at startup as
    /// Consul logs them.
    pub warnings: Vec<String>,
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
            advertise_addr_wan: None,
            ports: Ports::default(),
            enable_script_checks: false,
            enable_local_script_checks: false,
            dns: DnsConfig::default(),
            recursors: vec![],
            log_level: "info".into(),
            pid_file: None,
            ui: false,
            ui_dir: None,
            ui_content_path: "/ui/".into(),
            retry_join: vec![],
            retry_interval: Duration::from_secs(30),
            retry_max: 0,
            retry_join_wan: vec![],
            retry_interval_wan: Duration::from_secs(30),
            retry_max_wan: 0,
            rejoin_after_leave: false,
            encrypt: None,
            disable_keyring_file: false,
            leave_on_terminate: None,
            skip_leave_on_interrupt: None,
            prometheus_retention: Duration::from_secs(60),
            disable_hostname: false,
            kv_max_value_size: 512 * 1024,
            limits: Limits::default(),
            default_query_time: Duration::from_secs(300),
            max_query_time: Duration::from_secs(600),
            zones_dir: None,
            raft_snapshot_threshold: 16384,
            raft_trailing_logs: 10240,
            coordinates: crate::coordinate::Timings::default(),
            services: Vec::new(),
            checks: Vec::new(),
            acl: AclConfig::default(),
            primary_datacenter: String::new(),
            tls: TlsConfig::default(),
            warnings: vec![],
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
    /// With ACLs on in a secondary datacenter, the primary datacenter,
    /// whose policies, roles and global tokens are replicated here.
    pub fn acl_primary(&self) -> Option<&str> {
        let p = self.primary_datacenter.as_str();
        (self.acl.enabled && !p.is_empty() && p != self.datacenter).then_some(p)
    }

    /// Consul's `-dev`: a bootstrapped single server with the UI on.
    pub fn apply_dev(&mut self) {
        self.dev = true;
        self.server = true;
        self.bootstrap = true;
        self.ui = true;
        self.bind_addr = IpAddr::from([127, 0, 0, 1]);
        self.disable_hostname = true;
        self.enable_script_checks = false;
        self.disable_keyring_file = true;
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

    /// The address other datacenters' servers reach this one on.
    pub fn advertise_wan(&self) -> IpAddr {
        self.advertise_addr_wan.unwrap_or_else(|| self.advertise())
    }

    pub fn domain_no_dot(&self) -> &str {
        self.domain.trim_end_matches('.')
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        // Consul's rule: the datacenter is a DNS label (`web.service.dc1.consul`).
        if self.datacenter.is_empty() {
            return Err(ConfigError::Invalid("datacenter cannot be empty".into()));
        }
        if !self
            .datacenter
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid(
                "datacenter can only contain lowercase alphanumeric, - or _ characters.".into(),
            ));
        }
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
        // Checked here rather than when the UI is first served, so a typo
        // stops the agent before it binds or joins anything.
        if let Some(dir) = &self.ui_dir {
            if !dir.is_dir() {
                return Err(ConfigError::Invalid(format!(
                    "ui_config.dir {}: not a directory",
                    dir.display()
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
}

/// Builds the agent's configuration in Consul's order: defaults, `-dev`,
/// each config file or directory of `paths` in turn, then `flags`.
pub fn load(dev: bool, paths: &[PathBuf], flags: Source) -> Result<Config, ConfigError> {
    let mut sources = file_sources(paths)?;
    sources.push((Origin::Flags, flags));
    Config::build(dev, sources)
}

fn file_sources(paths: &[PathBuf]) -> Result<Vec<(Origin, Source)>, ConfigError> {
    let mut sources = Vec::new();
    for path in paths {
        for f in file::read_path(path)? {
            sources.push((Origin::File(f.path), f.source));
        }
    }
    Ok(sources)
}

/// `cairn validate`: builds a configuration from `paths` alone, as the
/// agent would, without starting anything. A data dir is assumed unless
/// the files name one, as the files may be only part of the agent's
/// configuration.
pub fn validate_files(paths: &[PathBuf]) -> Result<Config, ConfigError> {
    let assumed = Source {
        data_dir: Some(std::env::temp_dir()),
        ..Source::default()
    };
    let mut sources = vec![(Origin::Flags, assumed)];
    sources.extend(file_sources(paths)?);
    Config::build(false, sources)
}

/// `cairn services register|deregister FILE...`: the service definitions
/// of `paths`, each as the HTTP API's registration body (Go field names)
/// with its decoded form. The files are first built as a whole, as
/// `validate_files` does, so a bad file is refused with the agent's error.
pub fn service_registrations(
    paths: &[PathBuf],
) -> Result<Vec<(serde_json::Value, FileService)>, ConfigError> {
    validate_files(paths)?;
    let mut out = Vec::new();
    for (_, source) in file_sources(paths)? {
        for def in source.service.iter().chain(&source.services) {
            let decoded = definitions::service(def.clone()).map_err(ConfigError::Invalid)?;
            out.push((definitions::api_body(def.clone()), decoded));
        }
    }
    Ok(out)
}

/// How the agent's configuration was given, kept so that `reload` can
/// build it again from the same files and flags.
#[derive(Debug, Clone)]
pub struct Loader {
    pub dev: bool,
    pub paths: Vec<PathBuf>,
    pub flags: Source,
}

impl Loader {
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(self.dev, &self.paths, self.flags.clone())
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

/// `Consul.` and `consul` both become `consul.`.
pub fn normalize_domain(d: &str) -> String {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{d}.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(dir: &Path, name: &str, json: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    fn json(text: &str) -> Source {
        serde_json::from_str(text).unwrap()
    }

    fn build(sources: &[&str]) -> Result<Config, ConfigError> {
        Config::build(true, sources.iter().map(|s| (Origin::Flags, json(s))))
    }

    #[test]
    fn file_keys_map_onto_config() {
        let c = build(
            &[r#"{"ports":{"http":18500,"dns":18600,"https":-1,"grpc":-1},
                "dns_config":{"node_ttl":"30s","service_ttl":{"*":"5s","web*":"10s"},
                              "only_passing":true,"udp_answer_limit":5,"max_stale":1000000000},
                "enable_script_checks":true,"client_addr":"127.0.0.1 ::1",
                "domain":"Example.COM","alt_domain":"alt.","retry_interval":"5s"}"#],
        )
        .unwrap();
        assert_eq!(c.ports.http, 18500);
        assert_eq!(c.ports.dns, 18600);
        assert_eq!(c.dns.node_ttl, Duration::from_secs(30));
        assert_eq!(c.dns.max_stale, Duration::from_secs(1), "nanoseconds");
        assert!(c.dns.only_passing);
        assert_eq!(c.dns.udp_answer_limit, 5);
        assert!(c.enable_script_checks);
        assert_eq!(c.dns.service_ttl_for("webapp"), Duration::from_secs(10));
        assert_eq!(c.dns.service_ttl_for("db"), Duration::from_secs(5));
        assert_eq!(c.client_addrs.len(), 2);
        assert_eq!(c.domain, "example.com.");
        assert_eq!(c.alt_domain.as_deref(), Some("alt."));
        assert_eq!(c.retry_interval, Duration::from_secs(5));
    }

    #[test]
    fn coordinate_timings_default_to_consuls_and_can_be_set() {
        let c = build(&["{}"]).unwrap();
        assert_eq!(c.coordinates, crate::coordinate::Timings::default());
        assert_eq!(c.coordinates.sync_interval_min, Duration::from_secs(15));
        assert_eq!(c.coordinates.update_period, Duration::from_secs(5));
        let c = build(&[r#"{"sync_coordinate_interval_min":"2s","sync_coordinate_rate_target":8.5,
            "consul":{"coordinate":{"update_period":"250ms","update_batch_size":3,"update_max_batches":2}}}"#])
        .unwrap();
        let t = &c.coordinates;
        assert_eq!(
            (t.sync_interval_min, t.sync_rate_target, t.update_period),
            (Duration::from_secs(2), 8.5, Duration::from_millis(250))
        );
        assert_eq!((t.update_batch_size, t.update_max_batches), (3, 2));
        for bad in [
            r#"{"sync_coordinate_rate_target":0}"#,
            r#"{"sync_coordinate_interval_min":"0s"}"#,
            r#"{"consul":{"coordinate":{"update_batch_size":0}}}"#,
        ] {
            assert!(build(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn ui_keys_turn_the_ui_on_and_normalise_the_path() {
        let off = Config::build(false, [(Origin::Flags, json(r#"{"data_dir":"/d"}"#))]).unwrap();
        assert!(!off.ui);
        assert_eq!(off.ui_content_path, "/ui/");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let c = Config::build(
            false,
            [(
                Origin::Flags,
                json(&format!(
                    r#"{{"data_dir":"/d","ui_config":{{"dir":"{d}","content_path":"/a/b"}}}}"#
                )),
            )],
        )
        .unwrap();
        assert!(c.ui, "a UI directory enables the UI, as in Consul");
        assert_eq!(c.ui_dir.as_deref(), Some(dir.path()));
        assert_eq!(c.ui_content_path, "/a/b/");
        let legacy = build(&[&format!(
            r#"{{"ui_dir":"{d}","ui_content_path":"console"}}"#
        )])
        .unwrap();
        assert_eq!(legacy.ui_dir.as_deref(), Some(dir.path()));
        assert_eq!(legacy.ui_content_path, "/console/");
        let missing = dir.path().join("nope");
        let e = build(&[&format!(r#"{{"ui_dir":"{}"}}"#, missing.display())]).unwrap_err();
        assert!(e.to_string().contains("ui_config.dir"), "{e}");
        for bad in ["/", "/v1/", "/v1/ui"] {
            let src = format!(r#"{{"ui_config":{{"content_path":"{bad}"}}}}"#);
            assert!(build(&[&src]).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_consuls() {
        let c = build(&[]).unwrap();
        assert_eq!(c.retry_interval, Duration::from_secs(30));
        assert_eq!(c.limits.http_max_conns_per_client, 200);
        assert_eq!(c.limits.rpc_max_conns_per_client, 100);
        assert_eq!(c.kv_max_value_size, 512 * 1024);
        assert_eq!(c.datacenter, "dc1");
        assert!(c.dev && c.server && c.bootstrap);
    }

    #[test]
    fn limits_keys() {
        let c = build(&[
            r#"{"limits":{"http_max_conns_per_client":50,"rpc_max_conns_per_client":7,
                          "kv_max_value_size":1024}}"#,
        ])
        .unwrap();
        assert_eq!(c.limits.http_max_conns_per_client, 50);
        assert_eq!(c.limits.rpc_max_conns_per_client, 7);
        assert_eq!(c.kv_max_value_size, 1024);
        let e = serde_json::from_str::<Source>(r#"{"limits":{"http_max_conns_per_client":-1}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid value: integer `-1`"), "{e}");
    }

    #[test]
    fn later_sources_override_scalars_and_append_lists() {
        let c = build(&[
            r#"{"node_name":"a","datacenter":"one","retry_join":["j1"],"recursors":["r1"],
                "node_meta":{"k":"1","x":"1"},"start_join":["s1"]}"#,
            r#"{"node_name":"b","retry_join":["j2"],"recursors":["r2"],"node_meta":{"k":"2"}}"#,
        ])
        .unwrap();
        assert_eq!(c.node_name, "b");
        assert_eq!(c.datacenter, "one", "a key a later source lacks is kept");
        assert_eq!(c.retry_join, ["j1", "s1", "j2"]);
        assert_eq!(c.recursors, ["r1", "r2"]);
        assert_eq!(c.node_meta.get("k").map(String::as_str), Some("2"));
        assert_eq!(c.node_meta.get("x").map(String::as_str), Some("1"));
    }

    #[test]
    fn datacenter_is_lower_cased_from_any_source() {
        assert_eq!(
            build(&[r#"{"datacenter":"EU-West_1"}"#])
                .unwrap()
                .datacenter,
            "eu-west_1"
        );
        let e = build(&[r#"{"datacenter":"eu.west"}"#])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "datacenter can only contain lowercase alphanumeric, - or _ characters."
        );
    }

    #[test]
    fn load_reads_files_and_dirs_in_order_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).unwrap();
        file(
            &d,
            "10-a.json",
            r#"{"node_name":"dir-a","retry_join":["d1"]}"#,
        );
        file(
            &d,
            "20-b.json",
            r#"{"node_name":"dir-b","datacenter":"DirDC"}"#,
        );
        let first = file(
            dir.path(),
            "first.json",
            r#"{"node_name":"first","log_level":"debug"}"#,
        );
        let last = file(
            dir.path(),
            "last.json",
            r#"{"retry_join":["l1"],"ports":{"http":1}}"#,
        );
        let flags = Source {
            retry_join: vec!["f1".into()],
            ports: PortsSource {
                http: Some(2),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = load(true, &[first, d, last], flags).unwrap();
        assert_eq!(c.node_name, "dir-b", "the directory came after first.json");
        assert_eq!(c.datacenter, "dirdc");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.retry_join, ["d1", "l1", "f1"]);
        assert_eq!(c.ports.http, 2, "flags override files");
    }

    #[test]
    fn errors_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let bad = file(dir.path(), "bad.json", r#"{"bind_addr":"nowhere"}"#);
        let e = load(true, std::slice::from_ref(&bad), Source::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Error parsing {}: bind_addr: invalid address \"nowhere\"",
                bad.display()
            )
        );
        let flags = Source {
            retry_interval: Some("soon".to_string().into()),
            ..Default::default()
        };
        let e = load(true, &[], flags).unwrap_err().to_string();
        assert!(
            e.starts_with("retry_interval: invalid duration: \"soon\""),
            "{e}"
        );
        let e = build(&[r#"{"log_level":"loud"}"#]).unwrap_err().to_string();
        assert_eq!(e, "Invalid log level: loud");
        let e = build(&[r#"{"raft_snapshot_threshold":0}"#])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "raft_snapshot_threshold must be positive");
    }

    #[test]
    fn unknown_key_in_a_file_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "agent.json", r#"{"datacenter":"x","bogus":1}"#);
        let e = load(true, std::slice::from_ref(&p), Source::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "Error parsing {}: invalid config key bogus",
                p.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn service_definitions_append_across_files_and_scripts_need_permission() {
        let dir = tempfile::tempdir().unwrap();
        file(
            dir.path(),
            "a.hcl",
            "service {\n  name = \"web\"\n  port = 80\n}\n",
        );
        file(
            dir.path(),
            "b.json",
            r#"{"services":[{"name":"db","check":{"args":["/bin/true"],"interval":"10s"}}],
                "check":{"name":"mem","ttl":"1m"}}"#,
        );
        let paths = [dir.path().to_path_buf()];
        let e = load(true, &paths, Source::default())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!("Failed to register service \"db\": {SCRIPTS_DISABLED_LOCAL}")
        );
        let flags = Source {
            enable_local_script_checks: Some(true),
            ..Source::default()
        };
        let c = load(true, &paths, flags).unwrap();
        let ids: Vec<_> = c.services.iter().map(|s| s.service.id.as_str()).collect();
        assert_eq!(ids, ["web", "db"]);
        assert!(c.services[1].runs_commands);
        assert_eq!(c.checks[0].check.check_id, "mem");
        let e = validate_files(&paths).unwrap_err().to_string();
        assert!(e.contains("Scripts are disabled"), "{e}");
    }

    #[test]
    fn validate_rejects_what_consul_rejects() {
        let mut c = Config::default();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "data_dir cannot be empty"
        );
        c.data_dir = Some("/tmp/x".into());
        c.bootstrap_expect = 3;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("require server mode"));
        c.server = true;
        c.bootstrap = true;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("mutually exclusive"));
    }
}
