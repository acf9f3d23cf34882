//! The part of `docker inspect` that service derivation reads, taken out of
//! the Docker client's model once, at the edge, so the rules in `derive.rs`
//! see plain typed values and their unit tests can start from the JSON that
//! `docker inspect` prints.

use bollard::models::ContainerInspectResponse;
use std::collections::BTreeMap;
use std::fmt;

/// A container's transport for one exposed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    /// `sctp` and anything newer: registered like TCP, as registrator does
    /// (only `udp` changes the ID and tags).
    Other,
}

/// An exposed port, `80/tcp` in Docker's spelling.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExposedPort {
    /// The port number as Docker wrote it: `SERVICE_<port>_*` variables and
    /// service IDs use this text.
    pub port: String,
    pub protocol: Protocol,
}

impl ExposedPort {
    /// `80/tcp`, `53/udp`, or a bare `80` (TCP).
    pub fn parse(key: &str) -> ExposedPort {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => Protocol::Other,
        };
        ExposedPort {
            port: port.to_string(),
            protocol,
        }
    }
}

impl fmt::Display for ExposedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Other => "other",
        };
        write!(f, "{}/{proto}", self.port)
    }
}

/// Where Docker published a port on the host (the first binding only, as
/// registrator reads it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBinding {
    /// Empty when Docker left it out (all interfaces).
    pub host_ip: String,
    /// Empty when the port is exposed but not published.
    pub host_port: String,
}

/// A container as service derivation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    /// `Config.Image` as the user gave it (`gliderlabs/foobar:1`).
    pub image: String,
    /// `Config.Env`, in order.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Every port the container exposes (`Config.ExposedPorts`).
    pub exposed: Vec<ExposedPort>,
    /// `NetworkSettings.Ports`: the runtime bindings, `None` for a port that
    /// is exposed but not published.
    pub published: BTreeMap<ExposedPort, Option<HostBinding>>,
    /// `HostConfig.NetworkMode`: `default`, `bridge`, `host`, `none`,
    /// `container:<id>` or a user-defined network's name.
    pub network_mode: String,
    /// IP address on each network the container is attached to.
    pub networks: BTreeMap<String, String>,
    pub running: bool,
    pub exit_code: i64,
}

/// `docker inspect` output that is missing what every container has.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("container inspect data has no {0}")]
pub struct IncompleteInspect(&'static str);

impl TryFrom<ContainerInspectResponse> for Container {
    type Error = IncompleteInspect;

    fn try_from(c: ContainerInspectResponse) -> Result<Container, IncompleteInspect> {
        let id =
            c.id.filter(|i| !i.is_empty())
                .ok_or(IncompleteInspect("Id"))?;
        let name = c.name.ok_or(IncompleteInspect("Name"))?;
        let name = name.strip_prefix('/').unwrap_or(&name).to_string();
        let config = c.config.ok_or(IncompleteInspect("Config"))?;
        let settings = c.network_settings.unwrap_or_default();
        let state = c.state.unwrap_or_default();
        let mut exposed: Vec<ExposedPort> = config
            .exposed_ports
            .unwrap_or_default()
            .iter()
            .map(|k| ExposedPort::parse(k))
            .collect();
        exposed.sort();
        let published = settings
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|(key, bindings)| {
                let first = bindings
                    .and_then(|b| b.into_iter().next())
                    .map(|b| HostBinding {
                        host_ip: b.host_ip.unwrap_or_default(),
                        host_port: b.host_port.unwrap_or_default(),
                    });
                (ExposedPort::parse(&key), first)
            })
            .collect();
        let networks = settings
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|(net, endpoint)| (net, endpoint.ip_address.unwrap_or_default()))
            .collect();
        Ok(Container {
            id,
            name,
            image: config.image.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            exposed,
            published,
            network_mode: c
                .host_config
                .and_then(|h| h.network_mode)
                .unwrap_or_default(),
            networks,
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code.unwrap_or(0),
        })
    }
}

impl Container {
    /// The first 12 characters of the ID, as Docker and registrator print it.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// The container's own IP address: on the network its network mode
    /// names (`default` is the `bridge` network), else on `bridge`, else on
    /// the first network by name. Registrator read the legacy top-level
    /// `NetworkSettings.IPAddress`, which is the `bridge` network's address.
    pub fn ip(&self) -> Option<&str> {
        let primary = match self.network_mode.as_str() {
            "default" | "" => "bridge",
            m => m,
        };
        [primary, "bridge"]
            .iter()
            .filter_map(|n| self.networks.get(*n))
            .chain(self.networks.values())
            .map(String::as_str)
            .find(|ip| !ip.is_empty())
    }

    /// The container whose network stack this one shares (`--net container:<id>`).
    pub fn network_container(&self) -> Option<&str> {
        self.network_mode
            .strip_prefix("container:")
            .filter(|id| !id.is_empty())
    }
}

/// The first 12 characters of a container ID.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A fixture: `docker inspect` output (an array of one container).
    pub fn fixture(name: &str) -> Container {
        let path = format!(
            "{}/src/registrator/fixtures/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("fixture");
        let mut list: Vec<ContainerInspectResponse> =
            serde_json::from_str(&text).expect("docker inspect JSON");
        Container::try_from(list.remove(0)).expect("complete inspect data")
    }

    #[test]
    fn inspect_output_of_a_published_container() {
        let c = fixture("published");
        assert_eq!(c.name, "web-1");
        assert_eq!(c.short_id(), "7233e3f90ffc");
        assert_eq!(c.image, "fixture/web:1");
        assert!(c.running);
        assert_eq!(c.network_mode, "default");
        assert_eq!(c.ip(), Some("172.17.0.2"));
        assert_eq!(c.exposed, [ExposedPort::parse("8080/tcp")]);
        assert_eq!(
            c.published[&ExposedPort::parse("8080/tcp")],
            Some(HostBinding {
                host_ip: "0.0.0.0".into(),
                host_port: "18080".into()
            }),
            "the first binding (IPv4) is the one read"
        );
        assert!(c.env.contains(&"SERVICE_OWNER=team-a".to_string()));
        let multi = fixture("multiport");
        assert_eq!(
            multi.published[&ExposedPort::parse("8080/tcp")],
            None,
            "exposed only"
        );
        assert_eq!(multi.labels["SERVICE_VERSION"], "2");
    }

    #[test]
    fn ports_parse_with_their_protocol() {
        assert_eq!(ExposedPort::parse("53/udp").protocol, Protocol::Udp);
        assert_eq!(ExposedPort::parse("80").protocol, Protocol::Tcp);
        assert_eq!(ExposedPort::parse("9/sctp").protocol, Protocol::Other);
        assert_eq!(ExposedPort::parse("53/udp").port, "53");
    }

    #[test]
    fn missing_essentials_are_an_error_not_a_panic() {
        let empty = ContainerInspectResponse::default();
        assert_eq!(
            Container::try_from(empty).unwrap_err(),
            IncompleteInspect("Id")
        );
    }

    #[test]
    fn the_ip_follows_the_network_mode() {
        let mut c = fixture("published");
        c.networks.insert("backend".into(), "10.1.0.7".into());
        assert_eq!(c.ip(), Some("172.17.0.2"), "default means bridge");
        c.network_mode = "backend".into();
        assert_eq!(c.ip(), Some("10.1.0.7"));
        c.network_mode = "container:abc".into();
        assert_eq!(c.network_container(), Some("abc"));
        assert_eq!(short_id("abc"), "abc");
    }
}
