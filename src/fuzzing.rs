//! Entry points for the fuzz targets in `fuzz/`: each takes untrusted bytes
//! and drives them through the same code the agent runs on them, so the
//! targets exercise cairn's real decoders and handlers without sockets.
//! Nothing here is used by the agent itself.
//!
//! Every function returns normally for any input; an input that panics,
//! hangs or exhausts memory is a bug in the code it reaches.

use crate::catalog::command::{Command, Registration};
use crate::catalog::types::{Check, HealthStatus, Node, Service, ServiceAddress, Weights};
use crate::catalog::{Catalog, LogPos};
use crate::config::Config;
use crate::dns::recurse::Recursors;
use crate::dns::server::Handler;
use crate::dns::zones::StaticZones;
use crate::dns::Settings;
use crate::http::decode::decode_body;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// cairn's DNS handler over a small catalog (three nodes, services with
/// tags, tagged addresses and failing checks) and the repository's example
/// static zone, built once per process.
pub struct Dns {
    handler: Handler,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Dns {
    pub fn new() -> Dns {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let catalog = Catalog::open(dir.path()).expect("an LMDB catalog");
        let commands = sample_catalog();
        catalog
            .apply_entries(
                commands.iter().enumerate().map(|(i, c)| {
                    let pos = LogPos {
                        index: i as u64 + 1,
                        term: 1,
                    };
                    (pos, Some(c))
                }),
                |_, _| Ok(()),
            )
            .expect("the sample catalog applies");
        let zones_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("zones");
        let zones = StaticZones::load(&zones_dir).expect("the example zones load");
        let config = Config {
            alt_domain: Some("cairn.".into()),
            ..Config::default()
        };
        let handler = Handler::new(
            Arc::new(catalog),
            Settings::new(&config),
            Recursors::new(&[], Duration::from_secs(1)),
            zones,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        Dns {
            handler,
            runtime,
            _dir: dir,
        }
    }

    /// The encoded response to one request, as the UDP (or TCP) listener
    /// would send it; `Ok(None)` where hickory's server sends nothing or
    /// answers by itself before cairn's handler runs (an unreadable header
    /// or body, a response). `Err` when the response does not encode within
    /// the transport's size, where hickory would send SERVFAIL instead.
    pub fn answer(&self, packet: &[u8], tcp: bool) -> Result<Option<Vec<u8>>, String> {
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let src: SocketAddr = ([127, 0, 0, 1], 53000).into();
        let Ok(request) = Request::from_bytes(packet.to_vec(), src, protocol) else {
            return Ok(None);
        };
        if request.metadata.message_type == hickory_proto::op::MessageType::Response {
            return Ok(None);
        }
        let sink = Capture {
            protocol,
            bytes: Arc::default(),
        };
        self.runtime.block_on(
            self.handler
                .handle_request::<_, TokioTime>(&request, sink.clone()),
        );
        let sent = sink.bytes.lock().map_err(|e| e.to_string())?.take();
        match sent {
            Some(bytes) => bytes.map(Some),
            None => Err("the handler sent no response".into()),
        }
    }
}

impl Default for Dns {
    fn default() -> Self {
        Dns::new()
    }
}

/// A response's bytes, or why it did not encode.
type Encoded = Result<Vec<u8>, String>;

/// Keeps the encoded response, sized as hickory's own response handle
/// sizes it: the EDNS payload (or 512 bytes) over UDP, 64 KiB over TCP.
#[derive(Clone)]
struct Capture {
    protocol: Protocol,
    bytes: Arc<Mutex<Option<Encoded>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let max = match self.protocol {
            Protocol::Udp => response.edns().map(|e| e.max_payload()).unwrap_or(512),
            _ => u16::MAX,
        };
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let emitted = response.destructive_emit(&mut encoder);
        let (kept, result) = match emitted {
            Ok(info) => (Ok(buf), Ok(info)),
            Err(e) => (Err(format!("encoding the response: {e}")), Err(e.into())),
        };
        if let Ok(mut slot) = self.bytes.lock() {
            *slot = Some(kept);
        }
        result
    }
}

fn sample_catalog() -> Vec<Command> {
    let node = |name: &str, addr: &str| Node {
        id: String::new(),
        name: name.into(),
        address: addr.into(),
        datacenter: "dc1".into(),
        tagged_addresses: [("lan".to_string(), addr.to_string())].into(),
        meta: [("rack".to_string(), "r1".to_string())].into(),
        create_index: 0,
        modify_index: 0,
    };
    let service = |node: &str, id: &str, name: &str, tags: &[&str], addr: &str, port| Service {
        node: node.into(),
        id: id.into(),
        name: name.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        address: addr.into(),
        tagged_addresses: if addr.is_empty() {
            Default::default()
        } else {
            [(
                "lan_ipv4".to_string(),
                ServiceAddress {
                    address: addr.into(),
                    port,
                },
            )]
            .into()
        },
        meta: [("version".to_string(), "1".to_string())].into(),
        port,
        weights: Weights {
            passing: 3,
            warning: 1,
        },
        ..Service::default()
    };
    let check = |node: &str, service_id: &str, status| Check {
        node: node.into(),
        check_id: format!("check-{service_id}"),
        name: "probe".into(),
        status,
        service_id: service_id.into(),
        ..Check::default()
    };
    let register = |node: Node, service: Option<Service>, checks: Vec<Check>| {
        Command::Register(Registration {
            node,
            service,
            checks,
            skip_node_update: false,
        })
    };
    vec![
        register(node("alpha", "10.0.0.1"), None, vec![]),
        register(node("beta", "10.0.0.2"), None, vec![]),
        register(node("gamma", "fd00::3"), None, vec![]),
        register(
            node("alpha", "10.0.0.1"),
            Some(service("alpha", "web-1", "web", &["primary", "v1"], "", 80)),
            vec![check("alpha", "web-1", HealthStatus::Passing)],
        ),
        register(
            node("beta", "10.0.0.2"),
            Some(service("beta", "web-2", "web", &["v1"], "10.1.0.2", 8080)),
            vec![check("beta", "web-2", HealthStatus::Warning)],
        ),
        register(
            node("gamma", "fd00::3"),
            Some(service("gamma", "web-3", "web", &[], "fd00::33", 8081)),
            vec![check("gamma", "web-3", HealthStatus::Critical)],
        ),
        register(
            node("beta", "10.0.0.2"),
            Some(service(
                "beta",
                "db-1",
                "db",
                &["leader"],
                "db.example.com",
                5432,
            )),
            vec![],
        ),
    ]
}

/// The HTTP request bodies cairn decodes, by the route that reads them.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// `PUT /v1/agent/service/register`
    AgentService,
    /// `PUT /v1/agent/check/register`
    AgentCheck,
    /// `PUT /v1/agent/check/update/<id>`
    CheckUpdate,
    /// `PUT /v1/catalog/register`
    CatalogRegister,
    /// `PUT /v1/catalog/deregister`
    CatalogDeregister,
    /// `PUT /v1/session/create`
    SessionCreate,
    /// `PUT /v1/txn`
    Txn,
}

impl Body {
    pub const ALL: [Body; 7] = [
        Body::AgentService,
        Body::AgentCheck,
        Body::CheckUpdate,
        Body::CatalogRegister,
        Body::CatalogDeregister,
        Body::SessionCreate,
        Body::Txn,
    ];
}

/// Decodes `body` as the given route does, with Go's decoding rules, and
/// runs the route's checks of the decoded value that need no catalog.
/// Returns the error text a client would get, or `None` when it decodes
/// and validates.
pub fn http_body(kind: Body, body: &[u8]) -> Option<String> {
    use crate::http::wire::ApiError;
    use crate::http::{agent, catalog, session, txn};
    let result = match kind {
        Body::AgentService => decode_body::<agent::ServiceDefinition>(body)
            .and_then(|d| d.to_registration().map(drop).map_err(ApiError::bad)),
        Body::AgentCheck => decode_body::<agent::CheckIn>(body)
            .and_then(|c| c.to_check().map(drop).map_err(ApiError::bad)),
        Body::CheckUpdate => decode_body::<agent::CheckUpdate>(body).map(drop),
        Body::CatalogRegister => decode_body::<catalog::RegisterRequest>(body)
            .and_then(|r| catalog::registration(r, "dc1").map(drop)),
        Body::CatalogDeregister => decode_body::<catalog::DeregisterRequest>(body).map(drop),
        Body::SessionCreate => session::session_from_body(body, "agent").map(drop),
        Body::Txn => txn::decode_ops(body, 512 * 1024, "dc1").map(drop),
    };
    result.err().map(api_error_text)
}

/// Parses a request's query string (`index=5&wait=10s&stale`) into the
/// read options of a blocking query, as every read route does.
pub fn read_opts(query: &str) -> Result<(), String> {
    let q = crate::http::wire::Query::parse(Some(query));
    let config = Config::default();
    crate::http::wire::ReadOpts::parse(&q, &config)
        .map(drop)
        .map_err(api_error_text)
}

/// The status and body a client would get for `e`.
fn api_error_text(e: crate::http::wire::ApiError) -> String {
    use crate::http::wire::ApiError;
    let status = e.status();
    let body = match e {
        ApiError::BadRequest(m)
        | ApiError::NotFound(m)
        | ApiError::Internal(m)
        | ApiError::Status(_, m) => m,
        ApiError::MethodNotAllowed { method, .. } => method,
    };
    format!("{status} {body}")
}

/// The gossip receive path: a datagram is opened (with any key of the
/// keyring when gossip is encrypted) and handed to a fresh foca member, or
/// decoded as a keyring message and answered against a keyring, as the
/// agent's reader task, gossip owner and key responder do.
pub struct Gossip {
    keyring: crate::gossip::keyring::SharedKeyring,
}

/// A 32-byte key the encrypted gossip target seals its packets with.
pub const GOSSIP_KEY: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
/// Another key, which must open none of them.
pub const GOSSIP_OTHER_KEY: &str = "cg8StVXbQJ0gPvMd9o7yrg==";

impl Gossip {
    pub fn new(key: Option<&str>) -> Gossip {
        let keyring = key.map(|k| {
            crate::gossip::keyring::Keyring::new(
                crate::gossip::crypto::Key::from_base64(k).expect("a valid gossip key"),
            )
        });
        Gossip {
            keyring: crate::gossip::keyring::SharedKeyring::new(keyring),
        }
    }

    /// Seals `plain` as a sending agent with this key would.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.keyring.seal(plain)
    }

    /// Receives one datagram; returns whether it was opened and reached
    /// foca or the keyring operations (whatever they then made of it).
    pub fn receive(&self, packet: &[u8]) -> bool {
        use crate::gossip::key_query::KeyMessage;
        use crate::gossip::Datagram;
        match crate::gossip::open_datagram(&self.keyring, packet) {
            None => false,
            Some(Datagram::BadKey | Datagram::BadPing) => true,
            Some(Datagram::Key(KeyMessage::Request { op, .. })) => {
                let current = self.keyring.current();
                let _ = crate::gossip::key_query::apply("receiver", current.as_deref(), &op);
                true
            }
            Some(Datagram::Key(KeyMessage::Reply { .. })) => true,
            Some(Datagram::Ping(_)) => true,
            Some(Datagram::Swim(data)) => {
                let (mut foca, intents) = crate::gossip::new_foca(member("receiver", 8301));
                let mut rt = foca::AccumulatingRuntime::new();
                let _ = foca.handle_data(&data, &mut rt);
                while rt.to_send().is_some() {}
                while rt.to_schedule().is_some() {}
                while rt.to_notify().is_some() {}
                if let Ok(mut q) = intents.lock() {
                    q.clear();
                }
                true
            }
        }
    }

    /// Real packets for a seed corpus: a member's announce to another, and
    /// the other's reply (membership and a leave intent riding along).
    pub fn sample_packets() -> Vec<Vec<u8>> {
        let (mut a, _) = crate::gossip::new_foca(member("alpha", 8301));
        let (mut b, _) = crate::gossip::new_foca(member("beta", 8302));
        let mut rt = foca::AccumulatingRuntime::new();
        let mut out = Vec::new();
        let _ = a.announce(member("beta", 8302), &mut rt);
        while let Some((_, data)) = rt.to_send() {
            out.push(data.to_vec());
        }
        if let Some(first) = out.first().cloned() {
            let mut rt = foca::AccumulatingRuntime::new();
            let _ = b.handle_data(&first, &mut rt);
            while let Some((_, data)) = rt.to_send() {
                out.push(data.to_vec());
            }
        }
        out
    }

    /// Keyring messages for a seed corpus: each operation's request, and a
    /// member's answer to a list.
    pub fn sample_key_messages() -> Vec<Vec<u8>> {
        use crate::gossip::key_query::{KeyMessage, KeyOp, NodeKeyReply};
        let key = crate::gossip::crypto::decode_base64(GOSSIP_KEY).unwrap_or_default();
        let ops = [
            KeyOp::List,
            KeyOp::Install(key.clone()),
            KeyOp::Use(key.clone()),
            KeyOp::Remove(key),
        ];
        let mut out: Vec<Vec<u8>> = ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| {
                KeyMessage::Request {
                    id: i as u64,
                    from: "alpha".into(),
                    op,
                }
                .encode()
            })
            .collect();
        let reply = NodeKeyReply {
            node: "beta".into(),
            result: true,
            message: String::new(),
            keys: vec![GOSSIP_KEY.into()],
            primary: GOSSIP_KEY.into(),
        };
        out.push(KeyMessage::Reply { id: 0, reply }.encode());
        out
    }
}

fn member(name: &str, port: u16) -> crate::gossip::MemberId {
    crate::gossip::MemberId {
        name: name.into(),
        addr: ([127, 0, 0, 1], port).into(),
        node_id: "4e0e6d4c-5d8e-4cc4-a1a7-2d9c7c3c1e01".into(),
        server: true,
        dc: "dc1".into(),
        rpc_port: 8300,
        http_port: 8500,
        version: "1.0".into(),
        bootstrap_expect: 3,
        started_ms: 1_700_000_000_000,
        bump: 0,
    }
}

/// Which side of which RPC protocol a stream of frames is read as.
#[derive(Debug, Clone, Copy)]
pub enum Rpc {
    /// A server reading raft requests (`RaftRpc`).
    RaftRequest,
    /// A raft client reading replies (`RaftReply`).
    RaftReply,
    /// A server reading multiplexed forwarded requests (`ServerRequest`).
    ConsulRequest,
    /// An agent reading multiplexed replies (`ServerResponse`).
    ConsulResponse,
    /// A server reading a subscription request (`Subscribe`).
    FeedSubscribe,
    /// A client agent reading feed frames, packed batches and snapshots.
    FeedFrame,
}

impl Rpc {
    pub const ALL: [Rpc; 6] = [
        Rpc::RaftRequest,
        Rpc::RaftReply,
        Rpc::ConsulRequest,
        Rpc::ConsulResponse,
        Rpc::FeedSubscribe,
        Rpc::FeedFrame,
    ];
}

/// Reads `stream` as a connection's bytes, frame by frame, and decodes each
/// frame as `side` does; returns how many frames decoded. Stops at the
/// first frame that does not, as every reader closes the connection then.
pub fn rpc_stream(side: Rpc, stream: &[u8]) -> usize {
    use crate::rpc::frame;
    let mut reader = stream;
    let mut decoded = 0;
    loop {
        let Ok(payload) = futures::executor::block_on(frame::read_raw(&mut reader)) else {
            return decoded;
        };
        if !rpc_payload(side, &payload) {
            return decoded;
        }
        decoded += 1;
    }
}

fn rpc_payload(side: Rpc, payload: &[u8]) -> bool {
    use crate::consensus::api::{ServerRequest, ServerResponse};
    use crate::feed::{Frame, Subscribe};
    use crate::raft::network::{RaftReply, RaftRpc};
    use crate::rpc::{frame, mux};
    let tagged = |p: &[u8]| mux::split_tagged(p).map(|(_, body)| body.to_vec());
    match side {
        Rpc::RaftRequest => frame::decode::<RaftRpc>(payload).is_ok(),
        Rpc::RaftReply => frame::decode::<RaftReply>(payload).is_ok(),
        Rpc::ConsulRequest => {
            tagged(payload).is_ok_and(|b| frame::decode::<ServerRequest>(&b).is_ok())
        }
        Rpc::ConsulResponse => {
            tagged(payload).is_ok_and(|b| frame::decode::<ServerResponse>(&b).is_ok())
        }
        Rpc::FeedSubscribe => frame::decode::<Subscribe>(payload).is_ok(),
        Rpc::FeedFrame => match frame::decode::<Frame>(payload) {
            Ok(Frame::Packed(data)) => crate::feed::unpack(&data).is_ok(),
            // A snapshot in one chunk is decoded as the subscriber decodes
            // the assembled chunks.
            Ok(Frame::Snapshot { data, .. }) => {
                bincode::deserialize::<crate::catalog::snapshot::CatalogSnapshot>(&data).is_ok()
            }
            Ok(_) => true,
            Err(_) => false,
        },
    }
}

/// The agent's configuration from a JSON config file and command-line
/// flags, as `cairn agent -config-file=<file> <flags>` builds it. Flags
/// naming other config files or directories are dropped: they would read
/// whatever the fuzzer names.
pub fn agent_config(file: &[u8], flags: &[String]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("agent.json");
    std::fs::write(&path, file).map_err(|e| e.to_string())?;
    let mut args = vec![format!("-config-file={}", path.display())];
    args.extend(
        flags
            .iter()
            .filter(|f| !f.trim_start_matches('-').starts_with("config"))
            .cloned(),
    );
    let set = crate::cli::agent::flag_set();
    crate::cli::agent::build_config(&set, &args)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// `cairn template`'s HCL configuration file, and its `-template` and
/// `-wait` flag values.
pub fn template_config(hcl: &str, flag: &str) -> Result<(), String> {
    use crate::template::config::{Config, TemplateConfig, Wait};
    let mut config = Config::default();
    let hcl = config.merge_hcl(hcl, "fuzz.hcl").map_err(|e| e.to_string());
    let template = TemplateConfig::parse_flag(flag).map(drop);
    let wait = Wait::parse(flag).map(drop);
    hcl.and(template.or(wait).map_err(|e| e.to_string()))
}

/// Parses `src` as a consul-template template and runs it with every
/// function consul-template has, over a fixed catalog and KV (services
/// `web`, `db`; keys under `app/`) and a fixed clock. Returns the output
/// or the error a user would see.
pub fn template(src: &[u8]) -> Result<Vec<u8>, String> {
    use crate::template::engine::{Delims, Options, Template, Value};
    use crate::template::funcs::{is_function, Render};
    let t = Template::parse("fuzz.ctmpl", src, &Delims::default(), &is_function)
        .map_err(|e| e.to_string())?;
    let brain = template_brain();
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    let mut render = Render::at(brain, now);
    t.execute(Value::Nil, &mut render, Options::default())
        .map_err(|e| e.to_string())
}

fn template_brain() -> &'static crate::template::funcs::Brain {
    use crate::template::deps::Dependency;
    use crate::template::funcs::Brain;
    static BRAIN: std::sync::OnceLock<Brain> = std::sync::OnceLock::new();
    BRAIN.get_or_init(|| {
        let web = r#"[
          {"Node":{"ID":"n1","Node":"node1","Address":"10.0.0.1","Datacenter":"dc1","Meta":{"zone":"a"}},
           "Service":{"ID":"web-1","Service":"web","Tags":["v1","http"],"Address":"","Port":8080,"Meta":{"weight":"5"}},
           "Checks":[{"CheckID":"serfHealth","Status":"passing"}]}
        ]"#;
        let services = r#"{"consul":[],"web":["v1","http"],"db":["tcp"]}"#;
        let kv = r#"[{"Key":"app/port","Value":"ODA4MA==","Flags":0,"CreateIndex":5,"ModifyIndex":7,"LockIndex":0,"Session":""},
                     {"Key":"app/name","Value":"d2Vi","Flags":0,"CreateIndex":5,"ModifyIndex":7,"LockIndex":0,"Session":""}]"#;
        let mut brain = Brain::default();
        let mut learn = |d: Option<Dependency>, body: &str| {
            if let Some(d) = d {
                if let Ok(v) = d.decode(200, body.as_bytes()) {
                    brain.remember(d, v);
                }
            }
        };
        learn(Dependency::health_service("web").ok(), web);
        learn(Dependency::health_service("db").ok(), "[]");
        learn(Dependency::catalog_services("").ok(), services);
        learn(Dependency::kv_list("app").ok(), kv);
        let port = r#"[{"Key":"app/port","Value":"ODA4MA==","Flags":0,"CreateIndex":5,"ModifyIndex":7,"LockIndex":0,"Session":""}]"#;
        learn(Dependency::kv_get("app/port").ok(), port);
        brain
    })
}

/// Real connection bytes for each RPC reader, encoded as their senders
/// encode them, for a seed corpus.
pub fn sample_rpc_streams() -> Vec<(Rpc, Vec<u8>)> {
    use crate::consensus::api::{Reply, ServerRequest, ServerResponse, StatusReply};
    use crate::feed::{FeedEntry, Frame, Refusal, ServerState, Subscribe};
    use crate::raft::network::{RaftReply, RaftRpc};
    use crate::raft::TypeConfig;
    use crate::rpc::frame::encode;
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, VoteRequest, VoteResponse};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

    let tagged = |id: u64, body: Vec<u8>| {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&body);
        out
    };
    let log_id = |term, index| LogId::new(CommittedLeaderId::new(term, 1), index);
    let commands = sample_catalog();
    let frames = |msgs: Vec<Vec<u8>>| msgs.concat();
    let ok = |r: Result<Vec<u8>, crate::rpc::FrameError>| r.unwrap_or_default();

    let append = RaftRpc::AppendEntries(AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 4)),
        entries: vec![
            Entry {
                log_id: log_id(2, 5),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2, 6),
                payload: EntryPayload::Normal(commands[3].clone()),
            },
        ],
        leader_commit: Some(log_id(2, 4)),
    });
    let heartbeat = RaftRpc::AppendEntries(AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 6)),
        entries: vec![],
        leader_commit: Some(log_id(2, 6)),
    });
    let vote = RaftRpc::Vote(VoteRequest::new(Vote::new(3, 2), Some(log_id(2, 6))));
    let raft_requests = frames(vec![
        ok(encode(&vote)),
        ok(encode(&append)),
        ok(encode(&heartbeat)),
    ]);

    let replies = frames(vec![
        ok(encode(&RaftReply::Vote(Ok(VoteResponse::new(
            Vote::new(3, 2),
            Some(log_id(2, 6)),
            true,
        ))))),
        ok(encode(&RaftReply::AppendEntries(Ok(
            AppendEntriesResponse::Success,
        )))),
    ]);

    let body = |r: &ServerRequest| bincode::serialize(r).unwrap_or_default();
    let consul_requests = frames(vec![
        tagged(
            1,
            body(&ServerRequest::Write {
                cmd: commands[4].clone(),
                hops: 0,
                token: None,
            }),
        ),
        tagged(
            2,
            body(&ServerRequest::ReadIndex {
                linearizable: true,
                hops: 1,
            }),
        ),
        tagged(3, body(&ServerRequest::Status)),
    ]);
    let reply = |r: &ServerResponse| bincode::serialize(r).unwrap_or_default();
    let consul_responses = frames(vec![
        tagged(2, reply(&Ok(Reply::Index(42)))),
        tagged(1, reply(&Ok(Reply::Leader(Some("10.0.0.1:8300".into()))))),
        tagged(
            3,
            reply(&Ok(Reply::Status(StatusReply {
                initialized: true,
                leader: Some(1),
                voters: 3,
            }))),
        ),
    ]);

    let subscribe = ok(encode(&Subscribe {
        version: 1,
        node: "client-1".into(),
        from: Some(LogPos { index: 6, term: 2 }),
        accept_leader: false,
    }));

    let entries: Vec<FeedEntry> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| FeedEntry {
            pos: LogPos {
                index: i as u64 + 1,
                term: 1,
            },
            cmd: Some(c.clone()),
        })
        .collect();
    let mut feed = vec![
        ok(encode(&Frame::Heartbeat(ServerState {
            applied: LogPos { index: 7, term: 1 },
            leader: Some("10.0.0.1:8300".into()),
            last_contact_ms: 12,
        }))),
        ok(encode(&Frame::Batch(entries[..2].to_vec()))),
    ];
    if let Some(packed) = crate::feed::pack(&entries) {
        feed.push(ok(encode(&Frame::Packed(packed))));
    }
    feed.push(ok(encode(&Frame::Refused(Refusal::Behind { applied: 3 }))));
    let snapshot = {
        let dir = tempfile::tempdir().ok();
        dir.as_ref()
            .and_then(|d| Catalog::open(d.path()).ok())
            .and_then(|c| {
                c.apply_entries(entries.iter().map(|e| (e.pos, e.cmd.as_ref())), |_, _| {
                    Ok(())
                })
                .ok()?;
                c.dump(|_, _| Ok(())).ok()
            })
            .and_then(|(pos, snap, ())| {
                let data = bincode::serialize(&snap).ok()?;
                encode(&Frame::Snapshot {
                    pos,
                    total: data.len() as u64,
                    offset: 0,
                    data,
                })
                .ok()
            })
    };
    feed.extend(snapshot);
    vec![
        (Rpc::RaftRequest, raft_requests),
        (Rpc::RaftReply, replies),
        (Rpc::ConsulRequest, consul_requests),
        (Rpc::ConsulResponse, consul_responses),
        (Rpc::FeedSubscribe, subscribe),
        (Rpc::FeedFrame, frames(feed)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_a_real_query_with_its_id() {
        // dig @127.0.0.1 -p 8600 web.service.consul SRV (id 0xbeef, rd).
        let mut q = vec![0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["web", "service", "consul"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 33, 0, 1]);
        let dns = Dns::new();
        let r = dns.answer(&q, false).unwrap().unwrap();
        let m = hickory_proto::op::Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.id, 0xbeef);
        // web-1 (passing) and web-2 (warning) answer; web-3 is critical.
        assert_eq!(m.answers.len(), 2, "{m:?}");
    }

    #[test]
    fn a_question_compressed_against_the_header_is_answered_re_encoded() {
        // Found by the dns target: the question's name ends in a pointer to
        // offset 2 (the request's flags). Echoed as sent, it pointed at the
        // response's flags and the answer did not parse.
        let q: &[u8] = &[
            0x00, 0x07, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x33,
            0x08, 0x30, 0x61, 0x30, 0x31, 0x30, 0x30, 0x30, 0x32, 0x2e, 0x04, 0x61, 0x64, 0x64,
            0x72, 0x06, 0x9c, 0x63, 0x31, 0x06, 0x63, 0x6f, 0x6e, 0x73, 0x6c, 0x01, 0x75, 0x30,
            0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01,
            0x2e, 0x01, 0x00, 0xff, 0x01, 0x20, 0x80, 0x01, 0x00, 0x3c, 0x9a, 0xca, 0x00, 0x01,
            0xc0, 0x02, 0x00, 0x00, 0x69, 0x70, 0x36, 0x04, 0x61, 0x72, 0x70, 0x61, 0x00, 0x00,
            0x0c, 0x00, 0x01,
        ];
        let dns = Dns::new();
        for tcp in [false, true] {
            let r = dns.answer(q, tcp).unwrap().unwrap();
            let m = hickory_proto::op::Message::from_vec(&r)
                .unwrap_or_else(|e| panic!("the answer does not parse: {e}\n{r:02x?}"));
            assert_eq!(m.metadata.id, 7);
            let asked = hickory_proto::op::Message::from_vec(q).unwrap();
            assert_eq!(
                m.queries, asked.queries,
                "the question is answered as it was read"
            );
        }
        // An uncompressed question is still echoed as sent.
        assert!(!crate::dns::server::question_uses_pointers(&[
            3, b'w', b'e', b'b', 0, 0, 1, 0, 1
        ]));
    }

    #[test]
    fn many_questions_get_a_formerr_without_them() {
        // Found by the dns target: 16 questions in 928 bytes over UDP. The
        // FORMERR echoed all of them, could not fit 512 bytes, and no
        // answer was sent at all.
        let q = include_bytes!("../fuzz/corpus/dns/crash-3a754ade97ad72a734c2d2e5072666beee1a8bd6");
        let dns = Dns::new();
        for tcp in [false, true] {
            let r = dns.answer(q, tcp).unwrap().unwrap();
            let m = hickory_proto::op::Message::from_vec(&r).unwrap();
            assert_eq!(m.metadata.id, 0x2006);
            assert_eq!(
                m.metadata.response_code,
                hickory_proto::op::ResponseCode::FormErr
            );
            assert!(m.queries.is_empty(), "{m:?}");
        }
    }

    #[test]
    fn rpc_samples_decode_frame_by_frame() {
        let counts: Vec<usize> = sample_rpc_streams()
            .iter()
            .map(|(side, s)| rpc_stream(*side, s))
            .collect();
        assert_eq!(counts, [3, 2, 3, 3, 1, 5]);
    }

    #[test]
    fn gossip_packets_open_only_with_their_key() {
        let packets = Gossip::sample_packets();
        assert!(packets.len() >= 2, "an announce and its reply");
        let plain = Gossip::new(None);
        let ours = Gossip::new(Some(GOSSIP_KEY));
        let other = Gossip::new(Some(GOSSIP_OTHER_KEY));
        for p in &packets {
            assert!(plain.receive(p));
            assert!(!ours.receive(p), "a plain packet on an encrypted agent");
            assert!(ours.receive(&ours.seal(p)));
            assert!(!ours.receive(&other.seal(p)), "another key's packet");
        }
        for m in Gossip::sample_key_messages() {
            assert!(plain.receive(&m));
            assert!(
                !ours.receive(&m),
                "a plain keyring message on an encrypted agent"
            );
            assert!(ours.receive(&ours.seal(&m)));
            assert!(
                !ours.receive(&other.seal(&m)),
                "another key's keyring message"
            );
        }
    }

    #[test]
    fn http_bodies_decode_or_say_why() {
        assert_eq!(
            http_body(Body::AgentService, br#"{"Name":"web","Port":80}"#),
            None
        );
        let err = http_body(Body::CatalogRegister, br#"{"Node":"n1"}"#).unwrap();
        assert!(err.contains("Must provide address"), "{err}");
        assert!(read_opts("index=abc").is_err());
        assert!(read_opts("index=5&wait=10s&stale").is_ok());
    }

    #[test]
    fn template_renders_from_the_fixed_catalog() {
        let out =
            template(br#"{{range service "web"}}{{.Address}}:{{.Port}}{{end}} {{key "app/port"}}"#);
        assert_eq!(
            String::from_utf8(out.unwrap()).unwrap(),
            "10.0.0.1:8080 8080"
        );
    }

    /// Regenerates the seeds that are encoded messages rather than text:
    /// `cargo test --lib fuzzing -- --ignored`.
    #[test]
    #[ignore = "writes the gossip and rpc_frame seed corpora under fuzz/corpus"]
    fn write_seed_corpora() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let write = |target: &str, name: String, bytes: &[u8]| {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        };
        let swim = Gossip::sample_packets().into_iter().map(|p| ("swim", p));
        let keys = Gossip::sample_key_messages()
            .into_iter()
            .map(|p| ("keyring", p));
        let mut seen = std::collections::HashMap::new();
        for (kind, p) in swim.chain(keys) {
            let i = seen.entry(kind).or_insert(0usize);
            // Mode 0: as received by an unencrypted agent; mode 2: sealed
            // with our key first; mode 3: sealed with another key.
            for mode in [0u8, 2, 3] {
                write(
                    "gossip",
                    format!("{kind}-{i}-mode{mode}"),
                    &[&[mode], &p[..]].concat(),
                );
            }
            let sealed = Gossip::new(Some(GOSSIP_KEY)).seal(&p);
            write(
                "gossip",
                format!("{kind}-{i}-sealed"),
                &[&[1u8], &sealed[..]].concat(),
            );
            *i += 1;
        }
        for (side, stream) in sample_rpc_streams() {
            let which = Rpc::ALL
                .iter()
                .position(|r| format!("{r:?}") == format!("{side:?}"))
                .unwrap();
            write(
                "rpc_frame",
                format!("{side:?}"),
                &[&[which as u8], &stream[..]].concat(),
            );
        }
    }
}
