//! The one mapping from [`Source`]s to a [`Config`]: Consul's defaults,
//! then `-dev`, then each source in order (config files and directories as
//! given on the command line, then the flags). Each source's values are
//! checked and normalised here, in the same way whichever source they came
//! from: the datacenter is lower-cased, domains get one trailing dot,
//! addresses and durations are parsed.

use super::source::{AclSource, DnsSource, DurationSource, PortsSource, Source};
use super::{definitions, normalize_domain, Config, ConfigError, DownPolicy};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a source came from, to say so in its errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Flags,
}

impl Origin {
    fn error(&self, msg: String) -> ConfigError {
        match self {
            Origin::File(path) => ConfigError::File {
                path: path.display().to_string(),
                msg,
            },
            Origin::Flags => ConfigError::Invalid(msg),
        }
    }
}

/// Log levels Consul accepts.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "err", "error"];

impl Config {
    /// Builds the agent's configuration from `sources`, in order, over the
    /// defaults and (with `dev`) Consul's `-dev` settings, then validates it.
    pub fn build(
        dev: bool,
        sources: impl IntoIterator<Item = (Origin, Source)>,
    ) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if dev {
            c.apply_dev();
        }
        for (origin, source) in sources {
            c.apply(&source).map_err(|msg| origin.error(msg))?;
        }
        if !LOG_LEVELS.contains(&c.log_level.to_ascii_lowercase().as_str()) {
            return Err(ConfigError::Invalid(format!(
                "Invalid log level: {}",
                c.log_level
            )));
        }
        // Consul: a UI directory turns the UI on whatever `enabled` says.
        if c.ui_dir.is_some() {
            c.ui = true;
        }
        c.validate()?;
        c.tls.validate().map_err(ConfigError::Invalid)?;
        c.check_script_definitions()?;
        Ok(c)
    }

    /// Consul refuses a script check in a config file unless
    /// `enable_local_script_checks` (which `enable_script_checks` implies)
    /// is on.
    fn check_script_definitions(&self) -> Result<(), ConfigError> {
        if self.enable_local_script_checks || self.enable_script_checks {
            return Ok(());
        }
        let refuse = |what: String| {
            ConfigError::Invalid(format!("{what}: {}", super::SCRIPTS_DISABLED_LOCAL))
        };
        if let Some(s) = self.services.iter().find(|s| s.runs_commands) {
            return Err(refuse(format!(
                "Failed to register service {:?}",
                s.service.name
            )));
        }
        if let Some(c) = self.checks.iter().find(|c| c.runs_commands) {
            return Err(refuse(format!(
                "Failed to register check {:?}",
                c.check.name
            )));
        }
        Ok(())
    }

    /// Lays one source over the configuration built so far.
    fn apply(&mut self, s: &Source) -> Result<(), String> {
        self.apply_node(s);
        self.apply_addresses(s)?;
        self.apply_ports(&s.ports);
        self.apply_dns(s)?;
        self.apply_join(s)?;
        self.apply_agent(s)?;
        self.apply_limits(s)?;
        self.apply_acl(&s.acl)?;
        if let Some(dc) = &s.acl_datacenter {
            self.warnings.push(
                "The 'acl_datacenter' field is deprecated. Use the 'primary_datacenter' field instead."
                    .into(),
            );
            if s.primary_datacenter.is_none() {
                self.primary_datacenter = dc.to_ascii_lowercase();
            }
        }
        if let Some(dc) = &s.primary_datacenter {
            self.primary_datacenter = dc.to_ascii_lowercase();
        }
        let tls_warnings = self.tls.apply(&s.tls, &s.deprecated_tls());
        self.warnings.extend(tls_warnings);
        self.apply_definitions(s)
    }

    /// `acl {}`, with Consul's deprecated token names accepted and warned
    /// about.
    fn apply_acl(&mut self, a: &AclSource) -> Result<(), String> {
        let c = &mut self.acl;
        set(&mut c.enabled, &a.enabled);
        if let Some(p) = &a.default_policy {
            c.default_allow = match p.as_str() {
                "allow" => true,
                "deny" => false,
                other => return Err(format!("Invalid ACL default policy: {other:?}")),
            };
        }
        if let Some(p) = &a.down_policy {
            c.down_policy = match p.as_str() {
                "allow" => DownPolicy::Allow,
                "deny" => DownPolicy::Deny,
                "extend-cache" => DownPolicy::ExtendCache,
                "async-cache" => DownPolicy::AsyncCache,
                other => return Err(format!("Invalid ACL down policy: {other:?}")),
            };
        }
        set(&mut c.enable_token_persistence, &a.enable_token_persistence);
        set(&mut c.enable_key_list_policy, &a.enable_key_list_policy);
        set_duration(&mut c.token_ttl, "acl.token_ttl", &a.token_ttl)?;
        set_duration(&mut c.policy_ttl, "acl.policy_ttl", &a.policy_ttl)?;
        set_duration(&mut c.role_ttl, "acl.role_ttl", &a.role_ttl)?;
        let t = &a.tokens;
        if t.master.is_some() {
            self.warnings.push(
                "The 'acl.tokens.master' field is deprecated. Use the 'acl.tokens.initial_management' field instead."
                    .into(),
            );
        }
        if t.agent_master.is_some() {
            self.warnings.push(
                "The 'acl.tokens.agent_master' field is deprecated. Use the 'acl.tokens.agent_recovery' field instead."
                    .into(),
            );
        }
        let c = &mut self.acl.tokens;
        set_some(&mut c.initial_management, &t.master);
        set_some(&mut c.initial_management, &t.initial_management);
        set_some(&mut c.agent_recovery, &t.agent_master);
        set_some(&mut c.agent_recovery, &t.agent_recovery);
        set_some(&mut c.agent, &t.agent);
        set_some(&mut c.default, &t.default);
        set_some(&mut c.dns, &t.dns);
        set_some(&mut c.replication, &t.replication);
        set_some(
            &mut c.config_file_service_registration,
            &t.config_file_service_registration,
        );
        // Empty strings mean unset, as in Consul.
        for v in [
            &mut c.initial_management,
            &mut c.agent,
            &mut c.default,
            &mut c.dns,
            &mut c.agent_recovery,
            &mut c.replication,
            &mut c.config_file_service_registration,
        ] {
            if v.as_deref() == Some("") {
                *v = None;
            }
        }
        Ok(())
    }

    /// Service and check definitions append across sources, as Consul
    /// collects them from every file.
    fn apply_definitions(&mut self, s: &Source) -> Result<(), String> {
        for def in s.service.iter().chain(&s.services) {
            self.services.push(definitions::service(def.clone())?);
        }
        for def in s.check.iter().chain(&s.checks) {
            self.checks.push(definitions::check(def.clone())?);
        }
        Ok(())
    }

    /// Who this agent is: node, datacenter, role.
    fn apply_node(&mut self, s: &Source) {
        if let Some(dc) = &s.datacenter {
            self.datacenter = dc.to_ascii_lowercase();
        }
        set_some(&mut self.data_dir, &s.data_dir);
        set(&mut self.node_name, &s.node_name);
        set_some(&mut self.node_id, &s.node_id);
        self.node_meta
            .extend(s.node_meta.iter().map(|(k, v)| (k.clone(), v.clone())));
        set(&mut self.server, &s.server);
        set(&mut self.bootstrap, &s.bootstrap);
        set(&mut self.bootstrap_expect, &s.bootstrap_expect);
    }

    fn apply_addresses(&mut self, s: &Source) -> Result<(), String> {
        if let Some(a) = &s.client_addr {
            self.client_addrs = parse_ips("client_addr", a)?;
        }
        if let Some(a) = &s.bind_addr {
            self.bind_addr = parse_ip("bind_addr", a)?;
        }
        if let Some(a) = &s.advertise_addr {
            self.advertise_addr = Some(parse_ip("advertise_addr", a)?);
        }
        if let Some(a) = &s.advertise_addr_wan {
            self.advertise_addr_wan = Some(parse_ip("advertise_addr_wan", a)?);
        }
        // The HTTP and DNS listeners share one set of client addresses.
        match (&s.addresses.http, &s.addresses.dns) {
            (Some(a), _) => self.client_addrs = parse_ips("addresses.http", a)?,
            (None, Some(a)) => self.client_addrs = parse_ips("addresses.dns", a)?,
            (None, None) => {}
        }
        Ok(())
    }

    fn apply_ports(&mut self, p: &PortsSource) {
        let t = &mut self.ports;
        set(&mut t.dns, &p.dns);
        set(&mut t.http, &p.http);
        set(&mut t.https, &p.https);
        set(&mut t.grpc, &p.grpc);
        set(&mut t.serf_lan, &p.serf_lan);
        set(&mut t.serf_wan, &p.serf_wan);
        set(&mut t.server, &p.server);
        // `grpc_tls` is accepted; cairn serves no gRPC.
    }

    fn apply_dns(&mut self, s: &Source) -> Result<(), String> {
        if let Some(d) = &s.domain {
            self.domain = normalize_domain(d);
        }
        if let Some(d) = &s.alt_domain {
            self.alt_domain = Some(normalize_domain(d));
        }
        self.recursors.extend(s.recursors.iter().cloned());
        self.apply_dns_config(&s.dns_config)
    }

    fn apply_dns_config(&mut self, d: &DnsSource) -> Result<(), String> {
        let t = &mut self.dns;
        set(&mut t.allow_stale, &d.allow_stale);
        set_duration(&mut t.max_stale, "dns_config.max_stale", &d.max_stale)?;
        set_duration(&mut t.node_ttl, "dns_config.node_ttl", &d.node_ttl)?;
        for (name, ttl) in &d.service_ttl {
            let key = format!("dns_config.service_ttl[{name:?}]");
            t.service_ttl.insert(name.clone(), ttl.parse(&key)?);
        }
        set(&mut t.enable_truncate, &d.enable_truncate);
        set(&mut t.only_passing, &d.only_passing);
        set(&mut t.udp_answer_limit, &d.udp_answer_limit);
        set(&mut t.a_record_limit, &d.a_record_limit);
        set(&mut t.disable_compression, &d.disable_compression);
        set(
            &mut t.enable_additional_node_meta_txt,
            &d.enable_additional_node_meta_txt,
        );
        set_duration(
            &mut t.recursor_timeout,
            "dns_config.recursor_timeout",
            &d.recursor_timeout,
        )?;
        if let Some(s) = &d.recursor_strategy {
            if s != "sequential" && s != "random" {
                return Err(format!("dns_config.recursor_strategy: invalid value {s:?}"));
            }
        }
        // Accepted and checked; answers are never cached.
        duration("dns_config.cache_max_age", &d.cache_max_age)?;
        set(&mut t.soa.refresh, &d.soa.refresh);
        set(&mut t.soa.retry, &d.soa.retry);
        set(&mut t.soa.expire, &d.soa.expire);
        set(&mut t.soa.min_ttl, &d.soa.min_ttl);
        Ok(())
    }

    /// Joining the cluster and leaving it.
    fn apply_join(&mut self, s: &Source) -> Result<(), String> {
        self.retry_join.extend(s.retry_join.iter().cloned());
        self.retry_join.extend(s.start_join.iter().cloned());
        set_duration(
            &mut self.retry_interval,
            "retry_interval",
            &s.retry_interval,
        )?;
        set(&mut self.retry_max, &s.retry_max);
        self.retry_join_wan.extend(s.retry_join_wan.iter().cloned());
        self.retry_join_wan.extend(s.start_join_wan.iter().cloned());
        set_duration(
            &mut self.retry_interval_wan,
            "retry_interval_wan",
            &s.retry_interval_wan,
        )?;
        set(&mut self.retry_max_wan, &s.retry_max_wan);
        set(&mut self.rejoin_after_leave, &s.rejoin_after_leave);
        set_some(&mut self.encrypt, &s.encrypt);
        set(&mut self.disable_keyring_file, &s.disable_keyring_file);
        set_some(&mut self.leave_on_terminate, &s.leave_on_terminate);
        set_some(
            &mut self.skip_leave_on_interrupt,
            &s.skip_leave_on_interrupt,
        );
        Ok(())
    }

    /// Logging, UI, checks, telemetry, blocking queries, raft and zones.
    fn apply_agent(&mut self, s: &Source) -> Result<(), String> {
        set(&mut self.log_level, &s.log_level);
        set_some(&mut self.pid_file, &s.pid_file);
        set(&mut self.ui, &s.ui);
        set(&mut self.ui, &s.ui_config.enabled);
        set_some(&mut self.ui_dir, &s.ui_dir);
        set_some(&mut self.ui_dir, &s.ui_config.dir);
        for path in [&s.ui_content_path, &s.ui_config.content_path]
            .into_iter()
            .flatten()
        {
            self.ui_content_path = content_path(path)?;
        }
        set(&mut self.enable_script_checks, &s.enable_script_checks);
        set(
            &mut self.enable_local_script_checks,
            &s.enable_local_script_checks,
        );
        set_duration(
            &mut self.prometheus_retention,
            "telemetry.prometheus_retention_time",
            &s.telemetry.prometheus_retention_time,
        )?;
        set(&mut self.disable_hostname, &s.telemetry.disable_hostname);
        set_duration(
            &mut self.default_query_time,
            "default_query_time",
            &s.default_query_time,
        )?;
        set_duration(
            &mut self.max_query_time,
            "max_query_time",
            &s.max_query_time,
        )?;
        set_some(&mut self.zones_dir, &s.zones_dir);
        if let Some(t) = s.raft_snapshot_threshold {
            if t == 0 {
                return Err("raft_snapshot_threshold must be positive".into());
            }
            self.raft_snapshot_threshold = t;
        }
        set(&mut self.raft_trailing_logs, &s.raft_trailing_logs);
        // Accepted and checked; snapshots are taken by entry count.
        duration("raft_snapshot_interval", &s.raft_snapshot_interval)?;
        self.apply_coordinates(s)?;
        // Also accepted without effect: log_json, telemetry.metrics_prefix,
        // performance.raft_multiplier (raft timing is fixed for a LAN),
        // disable_host_node_id (node IDs are random) and disable_update_check.
        Ok(())
    }

    fn apply_coordinates(&mut self, s: &Source) -> Result<(), String> {
        let c = &mut self.coordinates;
        set_duration(
            &mut c.sync_interval_min,
            "sync_coordinate_interval_min",
            &s.sync_coordinate_interval_min,
        )?;
        if let Some(rate) = s.sync_coordinate_rate_target {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("sync_coordinate_rate_target must be positive".into());
            }
            c.sync_rate_target = rate;
        }
        let u = &s.consul.coordinate;
        set_duration(
            &mut c.update_period,
            "consul.coordinate.update_period",
            &u.update_period,
        )?;
        for (dst, key, src) in [
            (
                &mut c.update_batch_size,
                "consul.coordinate.update_batch_size",
                u.update_batch_size,
            ),
            (
                &mut c.update_max_batches,
                "consul.coordinate.update_max_batches",
                u.update_max_batches,
            ),
        ] {
            match src {
                Some(0) => return Err(format!("{key} must be positive")),
                Some(n) => *dst = n,
                None => {}
            }
        }
        if c.sync_interval_min.is_zero() || c.update_period.is_zero() {
            return Err(
                "sync_coordinate_interval_min and consul.coordinate.update_period must be positive"
                    .into(),
            );
        }
        Ok(())
    }

    fn apply_limits(&mut self, s: &Source) -> Result<(), String> {
        let l = &s.limits;
        set_duration(
            &mut self.limits.https_handshake_timeout,
            "limits.https_handshake_timeout",
            &l.https_handshake_timeout,
        )?;
        set_duration(
            &mut self.limits.rpc_handshake_timeout,
            "limits.rpc_handshake_timeout",
            &l.rpc_handshake_timeout,
        )?;
        set(&mut self.kv_max_value_size, &l.kv_max_value_size);
        set(
            &mut self.limits.http_max_conns_per_client,
            &l.http_max_conns_per_client,
        );
        set(
            &mut self.limits.rpc_max_conns_per_client,
            &l.rpc_max_conns_per_client,
        );
        Ok(())
    }
}

/// `ui_config.content_path` normalised as Consul does (`/a/b` is `/a/b/`,
/// `a` is `/a/`). The root and the API's own `/v1/` are refused: the UI
/// there would shadow `/` or the endpoints.
fn content_path(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    let path = format!("/{trimmed}/");
    if trimmed.is_empty() || path == "/v1/" || path.starts_with("/v1/") {
        return Err(format!(
            "ui_config.content_path: {raw:?} would hide the HTTP API"
        ));
    }
    Ok(path)
}

/// A scalar key: the source's value, when it has one, replaces the current one.
fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
    if let Some(v) = src {
        *dst = v.clone();
    }
}

/// The same for a setting that is unset by default.
fn set_some<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
    if src.is_some() {
        *dst = src.clone();
    }
}

fn set_duration(dst: &mut Duration, key: &str, src: &Option<DurationSource>) -> Result<(), String> {
    set(dst, &duration(key, src)?);
    Ok(())
}

fn duration(key: &str, src: &Option<DurationSource>) -> Result<Option<Duration>, String> {
    src.as_ref().map(|d| d.parse(key)).transpose()
}

/// Space-separated addresses, as Consul's `client_addr` takes them.
fn parse_ips(key: &str, s: &str) -> Result<Vec<IpAddr>, String> {
    let ips: Vec<IpAddr> = s
        .split_whitespace()
        .map(|p| parse_ip(key, p))
        .collect::<Result<_, _>>()?;
    if ips.is_empty() {
        return Err(format!("{key}: no address given"));
    }
    Ok(ips)
}

fn parse_ip(key: &str, s: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse::<IpAddr>()
        .map_err(|_| format!("{key}: invalid address {s:?}"))
}
