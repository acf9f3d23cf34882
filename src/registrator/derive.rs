//! Registrator's rules for turning one container into services, as
//! gliderlabs/registrator's `bridge` package applies them:
//!
//! - **Ports.** Every exposed port first counts as published on the same
//!   host port (what `--net=host` means), then Docker's runtime bindings
//!   (`NetworkSettings.Ports`) replace that; only the first binding of a
//!   port is read. Without `-internal`, a port that is not published is
//!   skipped. A container with no ports at all is ignored.
//! - **Attributes.** Environment variables, then labels, whose name starts
//!   with `SERVICE_`: the prefix is dropped and the rest lower-cased.
//!   `SERVICE_<port>_<key>` applies to that exposed port only and beats
//!   `SERVICE_<key>` whatever their order. `name`, `id`, `tags` and
//!   `ignore` are reserved; everything else (`check_http` included) becomes
//!   the service's Consul `Meta`.
//! - **Name.** `SERVICE_NAME`, else the image's last path element without
//!   its tag (`gliderlabs/foobar:1` is `foobar`). With more than one
//!   service port, a port without its own `SERVICE_<port>_NAME` gets
//!   `-<port>` appended.
//! - **ID.** `<hostname>:<container-name>:<exposed-port>`, plus `:udp` for
//!   UDP; `SERVICE_ID` replaces it.
//! - **Address and port.** The host binding's IP and port; a binding on all
//!   interfaces is the IP the hostname resolves to; a container on a
//!   user-defined network uses its IP on that network; `-ip` forces one;
//!   `-internal` uses the container's own IP and exposed port; a container
//!   sharing another's network (`--net container:<id>`) uses that one's IP.
//! - **Tags.** `SERVICE_TAGS`, then `-tags`, split on commas (`\,` keeps a
//!   comma), then `udp` for UDP ports.
//! - **Checks.** The first of `check_http`, `check_https`, `check_cmd`,
//!   `check_script`, `check_ttl`, `check_tcp`, `check_grpc` that is set.
//!
//! Values that Consul would refuse, or that cannot mean what they say (a
//! duration that does not parse, a metadata key with a dot), make that one
//! service [`Outcome::Malformed`], so the caller can log it and register the
//! others.

use super::container::{Container, ExposedPort, HostBinding, Protocol};
use super::service::{join_host_port, Check, CheckKind, InitialStatus, Origin, Registration};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

/// Registrator's default check interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The settings that shape every container's services.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// This host's name: the first part of every generated service ID.
    pub hostname: String,
    /// What the hostname resolves to: the address of ports published on
    /// all interfaces.
    pub host_ip: Option<IpAddr>,
    /// `-ip`: the address of every service.
    pub force_ip: Option<String>,
    /// `-internal`: the container's own IP and exposed port.
    pub internal: bool,
    /// `-tags`, already split.
    pub force_tags: Vec<String>,
}

/// What became of one exposed port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Service(Box<Registration>),
    /// Exposed but not published on the host (and not `-internal`).
    NotPublished(ExposedPort),
    /// `SERVICE_IGNORE` or `SERVICE_<port>_IGNORE`.
    Ignored(ExposedPort),
    /// A value that cannot be registered; the error names the variable.
    Malformed(ExposedPort, DeriveError),
}

/// A `SERVICE_*` value, or a port, that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("{var}={value:?}: {reason}")]
    Variable {
        var: String,
        value: String,
        reason: String,
    },
    #[error("published on {host_ip} and this host's name {hostname:?} does not resolve to an address; set -ip")]
    NoAddress { host_ip: String, hostname: String },
    #[error("port {0:?} is not a port number")]
    BadPort(String),
    #[error("no service name: the image name is empty and SERVICE_NAME is not set")]
    NoName,
    #[error("Service metadata cannot contain more than 64 key/value pairs")]
    TooManyMeta,
}

/// The services of one container, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Derived {
    /// Neither exposed nor published ports.
    NoPorts,
    Ports(Vec<Outcome>),
}

#[cfg(test)]
impl Derived {
    /// The registrations, without the ports that have none.
    pub fn services(&self) -> Vec<&Registration> {
        match self {
            Derived::NoPorts => vec![],
            Derived::Ports(outcomes) => outcomes
                .iter()
                .filter_map(|o| match o {
                    Outcome::Service(r) => Some(r.as_ref()),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// Derives a container's services. `network_container_ip` is the IP of the
/// container whose network this one shares, when it does.
pub fn derive(c: &Container, network_container_ip: Option<&str>, rules: &Rules) -> Derived {
    let ports = service_ports(c);
    if ports.is_empty() {
        return Derived::NoPorts;
    }
    let (published, unpublished): (Vec<_>, Vec<_>) = ports
        .into_iter()
        .partition(|(_, b)| rules.internal || !b.host_port.is_empty());
    let group = published.len() > 1;
    let mut outcomes: Vec<Outcome> = unpublished
        .into_iter()
        .map(|(p, _)| Outcome::NotPublished(p))
        .collect();
    for (port, binding) in published {
        let attrs = Attributes::of(c, &port.port);
        outcomes.push(if attrs.get("ignore").is_some_and(|v| !v.is_empty()) {
            Outcome::Ignored(port)
        } else {
            let service = ServicePort {
                container: c,
                port: &port,
                binding: &binding,
                attrs: &attrs,
                group,
            };
            match service.registration(network_container_ip, rules) {
                Ok(r) => Outcome::Service(Box::new(r)),
                Err(e) => Outcome::Malformed(port, e),
            }
        });
    }
    Derived::Ports(outcomes)
}

/// Each port with its host binding (`host_port` empty when unpublished).
fn service_ports(c: &Container) -> BTreeMap<ExposedPort, HostBinding> {
    let mut ports: BTreeMap<ExposedPort, HostBinding> = c
        .exposed
        .iter()
        .map(|p| {
            let b = HostBinding {
                host_ip: String::new(),
                host_port: p.port.clone(),
            };
            (p.clone(), b)
        })
        .collect();
    for (p, binding) in &c.published {
        let b = binding.clone().unwrap_or(HostBinding {
            host_ip: String::new(),
            host_port: String::new(),
        });
        ports.insert(p.clone(), b);
    }
    // A container on a user-defined network is reached at its IP there.
    if !matches!(c.network_mode.as_str(), "bridge" | "default" | "host" | "") {
        let ip = c.networks.get(&c.network_mode).cloned().unwrap_or_default();
        for b in ports.values_mut() {
            b.host_ip = ip.clone();
        }
    }
    ports
}

/// A container's `SERVICE_*` attributes as seen from one port.
struct Attributes {
    /// Key (lower-cased, without `SERVICE_` and the port) → (value, the
    /// variable or label it came from).
    values: BTreeMap<String, (String, String)>,
    /// Keys set by `SERVICE_<port>_<key>`.
    from_port: BTreeSet<String>,
}

impl Attributes {
    fn of(c: &Container, port: &str) -> Attributes {
        let mut a = Attributes {
            values: BTreeMap::new(),
            from_port: BTreeSet::new(),
        };
        let env = c.env.iter().filter_map(|kv| kv.split_once('='));
        let labels = c.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (var, value) in env.chain(labels) {
            let Some(rest) = var.strip_prefix("SERVICE_") else {
                continue;
            };
            let key = rest.to_lowercase();
            let source = (value.to_string(), var.to_string());
            match key.split_once('_') {
                Some((p, k)) if p.parse::<i64>().is_ok() => {
                    if p == port {
                        a.values.insert(k.to_string(), source);
                        a.from_port.insert(k.to_string());
                    }
                }
                _ if a.from_port.contains(&key) => {}
                _ => {
                    a.values.insert(key, source);
                }
            }
        }
        a
    }

    /// A value, empty counting as unset (registrator's `mapDefault`).
    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A Go duration value, if set.
    fn duration(&self, key: &str) -> Result<Option<Duration>, DeriveError> {
        let Some((value, var)) = self.values.get(key).filter(|(v, _)| !v.is_empty()) else {
            return Ok(None);
        };
        crate::duration::parse(value)
            .map(Some)
            .map_err(|reason| bad(var, value, reason))
    }

    fn var(&self, key: &str) -> (&str, &str) {
        self.values
            .get(key)
            .map(|(v, var)| (v.as_str(), var.as_str()))
            .unwrap_or_default()
    }
}

fn bad(var: &str, value: &str, reason: impl Into<String>) -> DeriveError {
    DeriveError::Variable {
        var: var.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// One port being turned into a service.
struct ServicePort<'a> {
    container: &'a Container,
    port: &'a ExposedPort,
    binding: &'a HostBinding,
    attrs: &'a Attributes,
    /// The container has more than one service port.
    group: bool,
}

impl ServicePort<'_> {
    fn registration(
        &self,
        network_container_ip: Option<&str>,
        rules: &Rules,
    ) -> Result<Registration, DeriveError> {
        let (address, port) = self.address(network_container_ip, rules)?;
        let udp = self.port.protocol == Protocol::Udp;
        let id = match self.attrs.get("id") {
            Some(id) => id.to_string(),
            None => {
                let udp = if udp { ":udp" } else { "" };
                format!(
                    "{}:{}:{}{udp}",
                    rules.hostname, self.container.name, self.port.port
                )
            }
        };
        let mut tags = split_tags(self.attrs.get("tags").unwrap_or(""));
        tags.extend(rules.force_tags.iter().cloned());
        if udp {
            tags.push("udp".to_string());
        }
        let meta: BTreeMap<String, String> = self
            .attrs
            .values
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "id" | "tags" | "name"))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        self.validate_meta(&meta)?;
        let check = self.check(&address, port)?;
        Ok(Registration {
            id,
            name: self.name()?,
            port,
            address,
            tags,
            meta,
            check,
            origin: Origin {
                container_id: self.container.id.clone(),
                container_name: self.container.name.clone(),
                port: self.port.clone(),
            },
        })
    }

    fn name(&self) -> Result<String, DeriveError> {
        let mut name = match self.attrs.get("name") {
            Some(n) => n.to_string(),
            None => default_name(&self.container.image).ok_or(DeriveError::NoName)?,
        };
        if self.group && !self.attrs.from_port.contains("name") {
            name = format!("{name}-{}", self.port.port);
        }
        Ok(name)
    }

    fn address(
        &self,
        network_container_ip: Option<&str>,
        rules: &Rules,
    ) -> Result<(String, u16), DeriveError> {
        let parse_port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| DeriveError::BadPort(p.to_string()))
        };
        let (mut address, port) = if rules.internal {
            let ip = self.container.ip().unwrap_or_default().to_string();
            (ip, parse_port(&self.port.port)?)
        } else {
            let ip = match &rules.force_ip {
                Some(ip) => ip.clone(),
                None => self.host_ip(rules)?,
            };
            (ip, parse_port(&self.binding.host_port)?)
        };
        if let (Some(ip), Some(_)) = (network_container_ip, self.container.network_container()) {
            address = ip.to_string();
        }
        Ok((address, port))
    }

    /// The binding's IP; all interfaces means the host's own address.
    fn host_ip(&self, rules: &Rules) -> Result<String, DeriveError> {
        let ip = match self.binding.host_ip.as_str() {
            "" => "0.0.0.0",
            ip => ip,
        };
        if ip != "0.0.0.0" && ip != "::" {
            return Ok(ip.to_string());
        }
        rules
            .host_ip
            .map(|a| a.to_string())
            .ok_or_else(|| DeriveError::NoAddress {
                host_ip: ip.to_string(),
                hostname: rules.hostname.clone(),
            })
    }

    /// Consul's rules for service metadata, so a bad key is reported here
    /// with the variable it came from rather than as the agent's 400.
    fn validate_meta(&self, meta: &BTreeMap<String, String>) -> Result<(), DeriveError> {
        if meta.len() > 64 {
            return Err(DeriveError::TooManyMeta);
        }
        for (k, v) in meta {
            let (_, var) = self.attrs.var(k);
            let reason = if !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                "metadata key contains invalid characters (letters, digits, _ and - only)"
            } else if k.len() > 128 {
                "metadata key is too long (limit: 128 characters)"
            } else if k.starts_with("consul-") {
                "metadata key prefix 'consul-' is reserved for internal use"
            } else if v.len() > 512 {
                "metadata value is too long (limit: 512 characters)"
            } else {
                continue;
            };
            return Err(bad(var, v, reason));
        }
        Ok(())
    }

    /// The first check attribute that is set, as registrator's Consul
    /// adapter picks it.
    fn check(&self, address: &str, port: u16) -> Result<Option<Check>, DeriveError> {
        let a = self.attrs;
        let target = join_host_port(address, port);
        let http = |scheme: &str, key: &str, method_key: &str| {
            let (path, var) = a.var(key);
            if !path.starts_with('/') {
                return Err(bad(var, path, "a check path must start with /"));
            }
            Ok(CheckKind::Http {
                url: format!("{scheme}://{target}{path}"),
                method: a.get(method_key).map(str::to_string),
            })
        };
        let kind = if a.get("check_http").is_some() {
            http("http", "check_http", "check_http_method")?
        } else if a.get("check_https").is_some() {
            http("https", "check_https", "check_https_method")?
        } else if let Some(cmd) = a.get("check_cmd") {
            CheckKind::Script {
                args: vec![
                    "check-cmd".to_string(),
                    self.container.short_id().to_string(),
                    self.port.port.clone(),
                    cmd.to_string(),
                ],
            }
        } else if let Some(script) = a.get("check_script") {
            let script = script
                .replace("$SERVICE_IP", address)
                .replace("$SERVICE_PORT", &port.to_string());
            // Registrator v7 sent this as Consul's old `Script`, which the
            // agent ran with a shell; `Args` is how that is said today.
            CheckKind::Script {
                args: vec!["/bin/sh".to_string(), "-c".to_string(), script],
            }
        } else if let Some(ttl) = a.duration("check_ttl")? {
            CheckKind::Ttl(ttl)
        } else if a.get("check_tcp").is_some() {
            CheckKind::Tcp { address: target }
        } else if a.get("check_grpc").is_some() {
            let use_tls = a.get("check_grpc_use_tls").is_some();
            CheckKind::Grpc {
                address: target,
                use_tls,
                tls_skip_verify: use_tls && a.get("check_tls_skip_verify").is_some(),
            }
        } else {
            return Ok(None);
        };
        let timed = matches!(
            kind,
            CheckKind::Http { .. } | CheckKind::Tcp { .. } | CheckKind::Grpc { .. }
        );
        let interval = match kind {
            CheckKind::Ttl(_) => None,
            _ => Some(a.duration("check_interval")?.unwrap_or(DEFAULT_INTERVAL)),
        };
        let initial_status = match a.get("check_initial_status") {
            None => None,
            Some(s) => Some(InitialStatus::parse(s).ok_or_else(|| {
                let (value, var) = a.var("check_initial_status");
                bad(var, value, "must be passing, warning or critical")
            })?),
        };
        Ok(Some(Check {
            timeout: if timed {
                a.duration("check_timeout")?
            } else {
                None
            },
            interval,
            initial_status,
            deregister_after: a.duration("check_deregister_after")?,
            kind,
        }))
    }
}

/// The image's last path element without its tag: `gliderlabs/foobar:1`
/// is `foobar`.
fn default_name(image: &str) -> Option<String> {
    let base = image.rsplit('/').next().unwrap_or(image);
    let name = base.split(':').next().unwrap_or(base);
    (!name.is_empty()).then(|| name.to_string())
}

/// Splits a tag list on commas; `\,` is a comma inside a tag, and empty
/// tags are dropped.
pub fn split_tags(s: &str) -> Vec<String> {
    let mut tags = Vec::new();
    let mut tag = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                tag.push(',');
                chars.next();
            }
            ',' => tags.push(std::mem::take(&mut tag)),
            c => tag.push(c),
        }
    }
    tags.push(tag);
    tags.retain(|t| !t.is_empty());
    tags
}

#[cfg(test)]
mod tests {
    use super::super::container::tests::fixture;
    use super::*;
    use std::net::Ipv4Addr;

    fn rules() -> Rules {
        Rules {
            hostname: "dock1".into(),
            host_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))),
            ..Rules::default()
        }
    }

    fn services(c: &Container, rules: &Rules) -> Vec<Registration> {
        derive(c, None, rules)
            .services()
            .into_iter()
            .cloned()
            .collect()
    }

    fn only(c: &Container, rules: &Rules) -> Registration {
        let mut s = services(c, rules);
        assert_eq!(s.len(), 1, "{s:#?}");
        s.remove(0)
    }

    fn by_id<'a>(s: &'a [Registration], id: &str) -> &'a Registration {
        s.iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no {id} in {s:#?}"))
    }

    #[test]
    fn a_published_port_registers_on_the_hosts_address() {
        let r = only(&fixture("published"), &rules());
        assert_eq!(r.id, "dock1:web-1:8080");
        assert_eq!(r.name, "web");
        assert_eq!(r.address, "10.0.0.5", "0.0.0.0 is the host's own address");
        assert_eq!(r.port, 18080, "the host port, not the exposed one");
        assert_eq!(r.tags, ["blue", "v1"]);
        assert_eq!(
            r.meta,
            BTreeMap::from([
                ("check_http".into(), "/health".into()),
                ("check_interval".into(), "5s".into()),
                ("owner".into(), "team-a".into()),
            ]),
            "every other SERVICE_* attribute is metadata"
        );
        assert_eq!(
            r.check,
            Some(Check {
                kind: CheckKind::Http {
                    url: "http://10.0.0.5:18080/health".into(),
                    method: None
                },
                interval: Some(Duration::from_secs(5)),
                timeout: None,
                initial_status: None,
                deregister_after: None,
            })
        );
        assert_eq!(r.origin.container_name, "web-1");
    }

    #[test]
    fn internal_uses_the_container_ip_and_exposed_port() {
        let internal = Rules {
            internal: true,
            ..rules()
        };
        let r = only(&fixture("published"), &internal);
        assert_eq!((r.address.as_str(), r.port), ("172.17.0.2", 8080));
        assert_eq!(
            r.check.map(|c| c.kind),
            Some(CheckKind::Http {
                url: "http://172.17.0.2:8080/health".into(),
                method: None
            })
        );
        // -internal also registers exposed ports that are not published.
        let s = services(&fixture("multiport"), &internal);
        assert!(s.iter().any(|r| r.id == "dock1:multi:8080"), "{s:#?}");
    }

    #[test]
    fn forced_ip_and_tags_apply_to_every_service() {
        let forced = Rules {
            force_ip: Some("192.0.2.1".into()),
            force_tags: split_tags("dc1,cairn"),
            ..rules()
        };
        let r = only(&fixture("published"), &forced);
        assert_eq!(r.address, "192.0.2.1");
        assert_eq!(r.tags, ["blue", "v1", "dc1", "cairn"]);
    }

    #[test]
    fn several_ports_tcp_and_udp_with_per_port_overrides() {
        let c = fixture("multiport");
        let derived = derive(&c, None, &rules());
        let Derived::Ports(outcomes) = &derived else {
            panic!("{derived:?}")
        };
        assert!(outcomes.contains(&Outcome::NotPublished(ExposedPort::parse("8080/tcp"))));
        assert!(outcomes.contains(&Outcome::Ignored(ExposedPort::parse("9001/tcp"))));
        let s = services(&c, &rules());
        assert_eq!(s.len(), 2, "{s:#?}");
        let api = by_id(&s, "dock1:multi:9000");
        assert_eq!(api.name, "api", "a per-port name gets no suffix");
        assert_eq!(api.tags, ["rest"], "the per-port tags beat SERVICE_TAGS");
        assert_eq!(api.port, 19000);
        let dns = by_id(&s, "dock1:multi:5353:udp");
        assert_eq!(dns.name, "multi-5353", "a group's port is suffixed");
        assert_eq!(dns.tags, ["edge", "udp"]);
        assert_eq!(dns.port, 15353);
        assert_eq!(
            dns.meta,
            BTreeMap::from([("version".into(), "2".into())]),
            "labels count like environment variables"
        );
        assert!(
            !api.meta.contains_key("9001_ignore") && !api.meta.contains_key("ignore"),
            "another port's attributes stay with it: {:?}",
            api.meta
        );
    }

    #[test]
    fn host_networking_registers_every_exposed_port() {
        let c = fixture("host_network");
        let s = services(&c, &rules());
        assert_eq!(s.len(), 2, "{s:#?}");
        let r = by_id(&s, "dock1:hostnet:18081");
        assert_eq!(r.name, "web-18081", "the image basename, suffixed");
        assert_eq!((r.address.as_str(), r.port), ("10.0.0.5", 18081));
        let check = r.check.clone().expect("a TCP check");
        assert_eq!(
            check.kind,
            CheckKind::Tcp {
                address: "10.0.0.5:18081".into()
            }
        );
        assert_eq!(check.timeout, Some(Duration::from_secs(2)));
        assert_eq!(check.interval, Some(DEFAULT_INTERVAL));
    }

    #[test]
    fn a_user_defined_network_uses_the_ip_there_and_service_id_overrides() {
        let r = only(&fixture("user_network"), &rules());
        assert_eq!(r.id, "custom-id");
        assert_eq!(r.address, "172.18.0.2");
        assert_eq!(r.port, 18082);
        assert_eq!(r.tags, ["a,b", "c"], "an escaped comma stays in its tag");
    }

    #[test]
    fn a_malformed_variable_skips_the_service_and_names_the_variable() {
        let c = fixture("malformed");
        let Derived::Ports(outcomes) = derive(&c, None, &rules()) else {
            panic!()
        };
        let [Outcome::Malformed(port, e)] = outcomes.as_slice() else {
            panic!("{outcomes:#?}")
        };
        assert_eq!(port.port, "8080");
        assert!(
            e.to_string()
                .starts_with("SERVICE_com.example.team=\"x\": "),
            "{e}"
        );
    }

    /// The published fixture with extra environment variables.
    fn with_env(vars: &[&str]) -> Container {
        let mut c = fixture("published");
        c.env.retain(|v| !v.starts_with("SERVICE_CHECK"));
        c.env.extend(vars.iter().map(|v| v.to_string()));
        c
    }

    fn error(vars: &[&str]) -> String {
        match derive(&with_env(vars), None, &rules()) {
            Derived::Ports(o) => match o.as_slice() {
                [Outcome::Malformed(_, e)] => e.to_string(),
                other => panic!("{vars:?}: {other:#?}"),
            },
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn malformed_values() {
        assert_eq!(
            error(&["SERVICE_CHECK_TCP=1", "SERVICE_CHECK_INTERVAL=soon"]),
            "SERVICE_CHECK_INTERVAL=\"soon\": time: invalid duration \"soon\""
        );
        assert!(error(&["SERVICE_CHECK_TTL=30"]).contains("missing unit"));
        assert!(error(&["SERVICE_CHECK_HTTP=health"]).contains("must start with /"));
        assert!(
            error(&["SERVICE_CHECK_TTL=5s", "SERVICE_CHECK_INITIAL_STATUS=ok"])
                .contains("passing, warning or critical")
        );
        assert!(
            error(&["SERVICE_8080_CHECK_TCP=1", "SERVICE_8080_CHECK_TIMEOUT=x"])
                .starts_with("SERVICE_8080_CHECK_TIMEOUT=")
        );
        assert!(error(&["SERVICE_CONSUL-X=1"]).contains("'consul-' is reserved"));
        let long = format!("SERVICE_NOTE={}", "x".repeat(513));
        assert!(error(&[&long]).contains("value is too long"));
    }

    #[test]
    fn values_a_check_does_not_use_are_not_checked() {
        // The interval of a TTL check is not sent, as registrator does not.
        let r = only(
            &with_env(&["SERVICE_CHECK_TTL=30s", "SERVICE_CHECK_INTERVAL=soon"]),
            &rules(),
        );
        let check = r.check.expect("a TTL check");
        assert_eq!(check.kind, CheckKind::Ttl(Duration::from_secs(30)));
        assert_eq!(check.interval, None);
    }

    #[test]
    fn check_kinds_in_registrators_order() {
        let kind = |vars: &[&str]| only(&with_env(vars), &rules()).check.map(|c| c.kind);
        assert_eq!(
            kind(&["SERVICE_CHECK_TCP=1", "SERVICE_CHECK_HTTP=/a"]),
            Some(CheckKind::Http {
                url: "http://10.0.0.5:18080/a".into(),
                method: None
            }),
            "HTTP comes first"
        );
        assert_eq!(
            kind(&["SERVICE_CHECK_HTTPS=/a", "SERVICE_CHECK_HTTPS_METHOD=HEAD"]),
            Some(CheckKind::Http {
                url: "https://10.0.0.5:18080/a".into(),
                method: Some("HEAD".into())
            })
        );
        assert_eq!(
            kind(&["SERVICE_CHECK_SCRIPT=nc -z $SERVICE_IP $SERVICE_PORT"]),
            Some(CheckKind::Script {
                args: vec!["/bin/sh".into(), "-c".into(), "nc -z 10.0.0.5 18080".into()]
            })
        );
        assert_eq!(
            kind(&["SERVICE_CHECK_CMD=/bin/true"]),
            Some(CheckKind::Script {
                args: vec![
                    "check-cmd".into(),
                    "7233e3f90ffc".into(),
                    "8080".into(),
                    "/bin/true".into()
                ]
            })
        );
        assert_eq!(
            kind(&["SERVICE_CHECK_GRPC=1", "SERVICE_CHECK_GRPC_USE_TLS=1"]),
            Some(CheckKind::Grpc {
                address: "10.0.0.5:18080".into(),
                use_tls: true,
                tls_skip_verify: false
            })
        );
        assert_eq!(kind(&[]), None);
        let full = only(
            &with_env(&[
                "SERVICE_CHECK_TCP=1",
                "SERVICE_CHECK_INITIAL_STATUS=passing",
                "SERVICE_CHECK_DEREGISTER_AFTER=10m",
            ]),
            &rules(),
        )
        .check
        .expect("check");
        assert_eq!(full.initial_status, Some(InitialStatus::Passing));
        assert_eq!(full.deregister_after, Some(Duration::from_secs(600)));
    }

    #[test]
    fn ignore_and_per_port_overrides() {
        let ignored = derive(&with_env(&["SERVICE_IGNORE=true"]), None, &rules());
        assert_eq!(
            ignored,
            Derived::Ports(vec![Outcome::Ignored(ExposedPort::parse("8080/tcp"))])
        );
        // An empty SERVICE_IGNORE does not ignore.
        assert_eq!(services(&with_env(&["SERVICE_IGNORE="]), &rules()).len(), 1);
        // The per-port value wins whichever comes first.
        let r = only(
            &with_env(&["SERVICE_8080_NAME=port", "SERVICE_NAME=generic"]),
            &rules(),
        );
        assert_eq!(r.name, "port");
        // Another port's override does not apply.
        let r = only(&with_env(&["SERVICE_9999_NAME=other"]), &rules());
        assert_eq!(r.name, "web");
    }

    #[test]
    fn the_default_name_is_the_image_basename_without_its_tag() {
        assert_eq!(
            default_name("gliderlabs/foobar:1").as_deref(),
            Some("foobar")
        );
        assert_eq!(default_name("registry:5000/a/b:2").as_deref(), Some("b"));
        assert_eq!(default_name("redis").as_deref(), Some("redis"));
        assert_eq!(default_name(""), None);
        let mut c = fixture("published");
        c.env.retain(|v| !v.starts_with("SERVICE_NAME"));
        assert_eq!(only(&c, &rules()).name, "web", "fixture/web:1");
    }

    #[test]
    fn no_ports_and_unresolvable_hosts() {
        let mut c = fixture("published");
        c.exposed.clear();
        c.published.clear();
        assert_eq!(derive(&c, None, &rules()), Derived::NoPorts);
        let unresolved = Rules {
            host_ip: None,
            ..rules()
        };
        let d = derive(&fixture("published"), None, &unresolved);
        let Derived::Ports(o) = d else { panic!() };
        assert!(
            matches!(
                &o[..],
                [Outcome::Malformed(_, DeriveError::NoAddress { .. })]
            ),
            "{o:?}"
        );
    }

    #[test]
    fn a_shared_network_stack_uses_the_other_containers_ip() {
        let mut c = fixture("published");
        c.network_mode = "container:0123456789abcdef".into();
        let d = derive(&c, Some("172.17.0.9"), &rules());
        assert_eq!(d.services()[0].address, "172.17.0.9");
    }

    #[test]
    fn udp_ports_get_an_id_suffix_and_tag() {
        let mut c = fixture("published");
        c.exposed = vec![ExposedPort::parse("53/udp")];
        c.published = BTreeMap::from([(
            ExposedPort::parse("53/udp"),
            Some(HostBinding {
                host_ip: "127.0.0.1".into(),
                host_port: "5300".into(),
            }),
        )]);
        let r = only(&c, &rules());
        assert_eq!(r.id, "dock1:web-1:53:udp");
        assert_eq!(r.address, "127.0.0.1");
        assert_eq!(r.tags, ["blue", "v1", "udp"]);
    }

    #[test]
    fn tag_lists() {
        assert_eq!(split_tags(""), Vec::<String>::new());
        assert_eq!(split_tags("a,,b,"), ["a", "b"]);
        assert_eq!(split_tags(r"a\,b,c"), ["a,b", "c"]);
        assert_eq!(split_tags(r"a\b"), [r"a\b"]);
    }
}
