//! What a filter may select on each endpoint: the Go types Consul hands
//! go-bexpr, written out field by field. go-bexpr derives its selectors by
//! reflection over every exported field not tagged `bexpr:"-"` (so
//! `RaftIndex`, `EnterpriseMeta`, `Locality`, `HealthCheck.Definition` and
//! the opaque `Config` maps are not selectable), with the Go field name as
//! the selector, case-sensitive. The JSON each endpoint renders uses the
//! same names, which is what evaluation reads.
//!
//! The Connect fields (`Proxy`, `Connect`, upstreams, ...) are selectable as
//! in Consul 1.22 even though cairn has no service mesh: they hold zero
//! values, so a filter on them validates and matches as it would on a
//! Consul cluster without Connect.

/// The type of one field, as go-bexpr's field configuration sees it.
#[derive(Debug)]
pub enum Kind {
    /// `string` (and string types such as `ServiceKind`).
    Str,
    Bool,
    /// `int`, `int64`, and Go `int` enums such as `serf.MemberStatus`.
    Int,
    /// An unsigned integer of the given width in bits.
    Uint(u32),
    /// `net.IP`: to go-bexpr a `[]uint8`; rendered as text in JSON.
    Ip,
    Struct(&'static [Field]),
    /// `map[string]V`.
    Map(&'static Kind),
    /// `[]V`.
    Slice(&'static Kind),
}

#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

impl Kind {
    /// A primitive: selectable only as a whole.
    pub fn is_primitive(&self) -> bool {
        matches!(self, Kind::Str | Kind::Bool | Kind::Int | Kind::Uint(_))
    }

    /// The named fields a selector may continue with (a struct's, or a
    /// slice of structs' element fields).
    pub fn fields(&self) -> Option<&'static [Field]> {
        match self {
            Kind::Struct(fields) => Some(fields),
            Kind::Slice(Kind::Struct(fields)) => Some(fields),
            _ => None,
        }
    }

    pub fn field(&self, name: &[u8]) -> Option<&'static Field> {
        self.fields()?.iter().find(|f| f.name.as_bytes() == name)
    }
}

use Kind::{Bool, Int, Ip, Map, Slice, Str, Struct, Uint};

const STRINGS: Kind = Slice(&Str);
const STRING_MAP: Kind = Map(&Str);

const WEIGHTS: &[Field] = &[f("Passing", Int), f("Warning", Int)];

const SERVICE_ADDRESS: &[Field] = &[f("Address", Str), f("Port", Int)];

const MESH_GATEWAY: &[Field] = &[f("Mode", Str)];

const TRANSPARENT_PROXY: &[Field] = &[f("OutboundListenerPort", Int), f("DialedDirectly", Bool)];

const ACCESS_LOGS: &[Field] = &[
    f("Enabled", Bool),
    f("DisableListenerLogs", Bool),
    f("Type", Str),
    f("Path", Str),
    f("JSONFormat", Str),
    f("TextFormat", Str),
];

const EXPOSE_PATH: &[Field] = &[
    f("ListenerPort", Int),
    f("Path", Str),
    f("LocalPathPort", Int),
    f("Protocol", Str),
    f("ParsedFromCheck", Bool),
];

const EXPOSE: &[Field] = &[f("Checks", Bool), f("Paths", Slice(&Struct(EXPOSE_PATH)))];

const ENVOY_EXTENSION: &[Field] = &[
    f("Name", Str),
    f("Required", Bool),
    f("ConsulVersion", Str),
    f("EnvoyVersion", Str),
];

/// `structs.Upstream` and `api.Upstream` (the same selectable fields).
const UPSTREAM: &[Field] = &[
    f("DestinationType", Str),
    f("DestinationNamespace", Str),
    f("DestinationPartition", Str),
    f("DestinationPeer", Str),
    f("DestinationName", Str),
    f("Datacenter", Str),
    f("LocalBindAddress", Str),
    f("LocalBindPort", Int),
    f("LocalBindSocketPath", Str),
    f("LocalBindSocketMode", Str),
    f("MeshGateway", Struct(MESH_GATEWAY)),
];

/// `structs.ConnectProxyConfig` and `api.AgentServiceConnectProxyConfig`.
const PROXY: &[Field] = &[
    f("EnvoyExtensions", Slice(&Struct(ENVOY_EXTENSION))),
    f("DestinationServiceName", Str),
    f("DestinationServiceID", Str),
    f("LocalServiceAddress", Str),
    f("LocalServicePort", Int),
    f("LocalServiceSocketPath", Str),
    f("Mode", Str),
    f("Upstreams", Slice(&Struct(UPSTREAM))),
    f("MeshGateway", Struct(MESH_GATEWAY)),
    f("Expose", Struct(EXPOSE)),
    f("TransparentProxy", Struct(TRANSPARENT_PROXY)),
    f("AccessLogs", Struct(ACCESS_LOGS)),
];

const SERVICE_CONNECT: &[Field] = &[f("Native", Bool)];

/// `structs.Node`: `/v1/catalog/nodes`.
pub const NODE: &[Field] = &[
    f("ID", Str),
    f("Node", Str),
    f("Address", Str),
    f("Datacenter", Str),
    f("Partition", Str),
    f("PeerName", Str),
    f("TaggedAddresses", STRING_MAP),
    f("Meta", STRING_MAP),
];

/// `structs.NodeService`: `/v1/catalog/node/:n` and `node-services/:n`.
pub const NODE_SERVICE: &[Field] = &[
    f("Kind", Str),
    f("ID", Str),
    f("Service", Str),
    f("Tags", STRINGS),
    f("Address", Str),
    f("TaggedAddresses", Map(&Struct(SERVICE_ADDRESS))),
    f("Meta", STRING_MAP),
    f("Port", Int),
    f("SocketPath", Str),
    f("Weights", Struct(WEIGHTS)),
    f("EnableTagOverride", Bool),
    f("Proxy", Struct(PROXY)),
    f("Connect", Struct(SERVICE_CONNECT)),
    f("PeerName", Str),
];

/// `structs.ServiceNode`: `/v1/catalog/service/:s` and `/v1/catalog/services`.
pub const SERVICE_NODE: &[Field] = &[
    f("ID", Str),
    f("Node", Str),
    f("Address", Str),
    f("Datacenter", Str),
    f("TaggedAddresses", STRING_MAP),
    f("NodeMeta", STRING_MAP),
    f("ServiceKind", Str),
    f("ServiceID", Str),
    f("ServiceName", Str),
    f("ServiceTags", STRINGS),
    f("ServiceAddress", Str),
    f("ServiceTaggedAddresses", Map(&Struct(SERVICE_ADDRESS))),
    f("ServiceWeights", Struct(WEIGHTS)),
    f("ServiceMeta", STRING_MAP),
    f("ServicePort", Int),
    f("ServiceSocketPath", Str),
    f("ServiceEnableTagOverride", Bool),
    f("ServiceProxy", Struct(PROXY)),
    f("ServiceConnect", Struct(SERVICE_CONNECT)),
    f("PeerName", Str),
];

/// `structs.HealthCheck`: the health check lists and `/v1/agent/checks`.
pub const HEALTH_CHECK: &[Field] = &[
    f("Node", Str),
    f("CheckID", Str),
    f("Name", Str),
    f("Status", Str),
    f("Notes", Str),
    f("Output", Str),
    f("ServiceID", Str),
    f("ServiceName", Str),
    f("ServiceTags", STRINGS),
    f("Type", Str),
    f("Interval", Str),
    f("Timeout", Str),
    f("ExposedPort", Int),
    f("PeerName", Str),
];

/// `structs.CheckServiceNode`: `/v1/health/service/:s` and the instances
/// `/v1/internal/ui/services` summarises.
pub const CHECK_SERVICE_NODE: &[Field] = &[
    f("Node", Struct(NODE)),
    f("Service", Struct(NODE_SERVICE)),
    f("Checks", Slice(&Struct(HEALTH_CHECK))),
];

/// `structs.NodeInfo`: `/v1/internal/ui/nodes`.
pub const NODE_INFO: &[Field] = &[
    f("ID", Str),
    f("Node", Str),
    f("Partition", Str),
    f("PeerName", Str),
    f("Address", Str),
    f("TaggedAddresses", STRING_MAP),
    f("Meta", STRING_MAP),
    f("Services", Slice(&Struct(NODE_SERVICE))),
    f("Checks", Slice(&Struct(HEALTH_CHECK))),
];

/// `api.AgentService`: `/v1/agent/services` (`Proxy` and `Connect` are
/// pointers there, nil for a typical service).
pub const AGENT_SERVICE: &[Field] = &[
    f("Kind", Str),
    f("ID", Str),
    f("Service", Str),
    f("Tags", STRINGS),
    f("Meta", STRING_MAP),
    f("Port", Int),
    f("Address", Str),
    f("SocketPath", Str),
    f("TaggedAddresses", Map(&Struct(SERVICE_ADDRESS))),
    f("Weights", Struct(WEIGHTS)),
    f("EnableTagOverride", Bool),
    f("Proxy", Struct(PROXY)),
    f("Connect", Struct(SERVICE_CONNECT)),
    f("PeerName", Str),
];

/// `serf.Member`: `/v1/agent/members`.
pub const MEMBER: &[Field] = &[
    f("Name", Str),
    f("Addr", Ip),
    f("Port", Uint(16)),
    f("Tags", STRING_MAP),
    f("Status", Int),
    f("ProtocolMin", Uint(8)),
    f("ProtocolMax", Uint(8)),
    f("ProtocolCur", Uint(8)),
    f("DelegateMin", Uint(8)),
    f("DelegateMax", Uint(8)),
    f("DelegateCur", Uint(8)),
];
