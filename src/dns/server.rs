//! The hickory request handler and the listeners.
//!
//! Per client address cairn binds two UDP sockets with SO_REUSEPORT (the
//! kernel spreads datagrams over both receive loops) and one TCP listener.
//! The handler never touches sockets: it parses the question, answers from
//! the index, trims for the transport and hands the sections to hickory.
//!
//! Header rules (Consul's): `aa` on every answer from the served zones,
//! EDNS echoed with the client's UDP size (at least 512), BADVERS for EDNS versions above 0, NOTIMP for
//! opcodes other than QUERY and for AXFR, FORMERR for anything but exactly
//! one question. Undecodable packets are answered FORMERR by hickory when
//! the header is readable and dropped otherwise. Names outside the served
//! domains go to the recursors (`ra` is set when there are any), else they
//! are REFUSED (without `aa`).

use super::answer::{self, Answer, Question};
use super::index::IndexCache;
use super::recurse::Recursors;
use super::truncate::{self, Budget};
use super::Settings;
use crate::acl::Authorizer;
use crate::catalog::Catalog;
use crate::config::Config;
use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use hickory_server::Server;
use socket2::{Domain, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A TCP connection that sends no complete request for this long is closed
/// (this also ends connections stuck on a truncated frame).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;
/// Socket buffers sized for bursts (dnsperf, many clients behind a resolver).
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Binds the DNS listeners (UDP and TCP on every client address) and serves
/// them in the background. Returns once bound. With `acl`, answers are
/// what the agent's DNS token may read.
///
/// Each UDP socket is served by its own thread running a single-threaded
/// runtime (like an authoritative server's UDP workers): hickory spawns a
/// task per datagram, and keeping that task on the thread that received the
/// datagram avoids cross-thread wake-ups on the hot path. TCP is served on
/// the agent's runtime.
pub async fn start(
    config: &Config,
    catalog: Arc<Catalog>,
    acl: Option<crate::acl::Resolver>,
    remote: Option<super::remote::Remote>,
) -> io::Result<()> {
    if config.ports.dns < 0 {
        return Ok(());
    }
    let port = u16::try_from(config.ports.dns)
        .map_err(|_| io::Error::other(format!("invalid DNS port {}", config.ports.dns)))?;
    let recursors = Recursors::new(&config.recursors, config.dns.recursor_timeout);
    let zones = match &config.zones_dir {
        Some(dir) => super::zones::StaticZones::load(dir).map_err(io::Error::other)?,
        None => super::zones::StaticZones::default(),
    };
    let mut handler = Handler::with_acl(catalog, Settings::new(config), recursors, zones, acl);
    if let Some(remote) = remote {
        handler = handler.with_remote(remote);
    }
    handler.warm();
    let mut tcp_server = Server::new(handler.clone());
    let mut udp_sockets = Vec::new();
    for ip in &config.client_addrs {
        let first = udp_socket(SocketAddr::new(*ip, port))?;
        // With port 0 the kernel picks one; the other sockets share it.
        let bound = first.local_addr()?;
        udp_sockets.push(first);
        udp_sockets.push(udp_socket(bound)?);
        tcp_server.register_listener(tcp_listener(bound)?, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        tracing::info!("DNS server listening on {bound} (udp, tcp)");
    }
    for (i, socket) in udp_sockets.into_iter().enumerate() {
        let handler = handler.clone();
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || serve_udp(socket, handler))?;
    }
    tokio::spawn(async move {
        if let Err(e) = tcp_server.block_until_done().await {
            tracing::error!("DNS server (tcp) stopped: {e}");
        }
    });
    Ok(())
}

/// One UDP socket's worker thread.
fn serve_udp(socket: std::net::UdpSocket, handler: Handler) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("DNS server (udp): cannot start a runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let socket = match tokio::net::UdpSocket::from_std(socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("DNS server (udp): {e}");
                return;
            }
        };
        let mut server = Server::new(handler);
        server.register_socket(socket);
        if let Err(e) = server.block_until_done().await {
            tracing::error!("DNS server (udp) stopped: {e}");
        }
    });
}

fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Best effort: the kernel may cap these (net.core.rmem_max).
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding DNS udp {addr}: {e}")))?;
    Ok(socket.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding DNS tcp {addr}: {e}")))?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Answers questions from the catalog index. Cheap to clone: every
/// listener's server holds one, sharing the same index.
#[derive(Clone)]
pub struct Handler {
    state: Arc<HandlerState>,
}

struct HandlerState {
    catalog: Arc<Catalog>,
    settings: Settings,
    index: IndexCache,
    recursors: Recursors,
    zones: super::zones::StaticZones,
    /// Where the DNS token's authorizer comes from; `None` with ACLs off.
    acl: Option<crate::acl::Resolver>,
    /// Answers with ACLs off, built once so a query costs no allocation.
    allow_all: Authorizer,
    /// Names in other datacenters; `None`: NXDOMAIN.
    remote: Option<super::remote::Remote>,
}

impl Handler {
    /// A handler answering without ACLs.
    pub fn new(
        catalog: Arc<Catalog>,
        settings: Settings,
        recursors: Recursors,
        zones: super::zones::StaticZones,
    ) -> Handler {
        Handler::with_acl(catalog, settings, recursors, zones, None)
    }

    pub fn with_acl(
        catalog: Arc<Catalog>,
        settings: Settings,
        recursors: Recursors,
        zones: super::zones::StaticZones,
        acl: Option<crate::acl::Resolver>,
    ) -> Handler {
        Handler {
            state: Arc::new(HandlerState {
                catalog,
                settings,
                index: IndexCache::default(),
                recursors,
                zones,
                acl,
                allow_all: Authorizer::allow_all(),
                remote: None,
            }),
        }
    }

    /// Answers names in other datacenters through `remote`.
    pub fn with_remote(self, remote: super::remote::Remote) -> Handler {
        match Arc::try_unwrap(self.state) {
            Ok(mut state) => {
                state.remote = Some(remote);
                Handler {
                    state: Arc::new(state),
                }
            }
            Err(state) => Handler { state },
        }
    }

    /// The DNS token's authorizer (Consul: the agent's `dns` token, else
    /// `default`, else anonymous), taken once per query from the resolver's
    /// cached handle.
    fn authorizer(&self) -> Authorizer {
        match &self.state.acl {
            Some(resolver) => resolver.dns_authorizer(),
            None => self.state.allow_all.clone(),
        }
    }

    /// Builds the first index now rather than on the first query.
    fn warm(&self) {
        let s = &*self.state;
        drop(s.index.get(&s.catalog, &s.settings));
    }

    /// A name in another datacenter, or a prepared query to fail over,
    /// answered from a server there and cut to this request's transport as
    /// any answer is.
    async fn respond_remote(
        &self,
        request: &Request,
        edns: Option<&Edns>,
        pending: super::remote::Pending,
        remote: &super::remote::Remote,
    ) -> (Answer, bool) {
        let s = &*self.state;
        let Some(query) = request.queries.queries().first() else {
            return (Answer::error(ResponseCode::FormErr), false);
        };
        let qtype = query.query_type();
        let budget = match request.protocol() {
            Protocol::Udp => Budget::udp(
                request.edns.as_ref().map(|e| e.max_payload()),
                s.settings.dns.udp_answer_limit,
            ),
            _ => Budget::tcp(qtype),
        };
        let owner = query.original().name();
        let labels = query
            .name()
            .iter()
            .map(|l| std::str::from_utf8(l).unwrap_or(""))
            .collect();
        let question = Question {
            name: owner,
            labels,
            qtype,
        };
        let max = budget.answers_worth_building();
        let mut answer = match pending {
            super::remote::Pending::Datacenter(dc) => {
                remote.answer(&s.settings, &question, &dc, max).await
            }
            super::remote::Pending::Failover(query) => {
                remote.failover(&s.settings, &question, &query, max).await
            }
        };
        let trimmed = truncate::fit(&mut answer, owner, truncate::opt_len(edns), &budget);
        (answer, trimmed)
    }

    /// Everything but the I/O: the response header fields and sections for
    /// one request.
    fn respond(&self, request: &Request, edns: Option<&Edns>) -> (Answer, bool, RecordType) {
        let early = if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.queries.len() != 1 {
            Some(ResponseCode::FormErr)
        } else {
            None
        };
        let Some(query) = request
            .queries
            .queries()
            .first()
            .filter(|_| early.is_none())
        else {
            return (
                Answer::error(early.unwrap_or(ResponseCode::FormErr)),
                false,
                RecordType::Unknown(0),
            );
        };
        let qtype = query.query_type();
        let s = &*self.state;
        let budget = match request.protocol() {
            Protocol::Udp => Budget::udp(
                request.edns.as_ref().map(|e| e.max_payload()),
                s.settings.dns.udp_answer_limit,
            ),
            _ => Budget::tcp(qtype),
        };
        let owner = query.original().name();
        let labels = query
            .name()
            .iter()
            .map(|l| std::str::from_utf8(l).unwrap_or(""))
            .collect();
        let question = Question {
            name: owner,
            labels,
            qtype,
        };
        let authz = self.authorizer();
        let asker = super::prepared::Asker {
            agent_node: &s.settings.node_name,
            ip: Some(request.src().ip()),
        };
        let prepared = super::prepared::answer(
            &s.settings,
            &s.catalog,
            &question,
            budget.answers_worth_building(),
            &authz,
            &asker,
        );
        let mut answer = prepared.unwrap_or_else(|| {
            let index = s.index.get(&s.catalog, &s.settings);
            answer::answer(
                &s.settings,
                &index,
                &question,
                budget.answers_worth_building(),
                &authz,
            )
        });
        // A client agent whose view has not synced yet knows nothing:
        // SERVFAIL makes resolvers retry, where NXDOMAIN would be cached.
        if !answer.recurse && !s.catalog.is_ready() {
            answer = Answer::error(ResponseCode::ServFail);
        }
        let trimmed = truncate::fit(&mut answer, owner, truncate::opt_len(edns), &budget);
        (answer, trimmed, qtype)
    }
}

/// Whether a question section, as the client sent it, holds a compression
/// pointer (or does not walk as plain labels).
pub(crate) fn question_uses_pointers(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        loop {
            match bytes.get(at) {
                Some(0) => break,
                Some(&len) if len & 0xc0 == 0 => at += 1 + len as usize,
                _ => return true,
            }
        }
        at += 1 + 4; // the root label, type and class
    }
    at != bytes.len()
}

/// An empty question section.
fn no_queries() -> Option<Queries> {
    Queries::read(&mut BinDecoder::new(&[]), 0).ok()
}

/// `queries` encoded afresh, without compression against anything before
/// them, at the offset a question section has in a message.
fn plain_queries(queries: &Queries) -> Option<Queries> {
    const HEADER: usize = 12;
    let mut buf = vec![0; HEADER];
    let mut encoder = BinEncoder::with_offset(&mut buf, HEADER as u32);
    for q in queries.queries() {
        q.original().emit(&mut encoder).ok()?;
    }
    let mut decoder = BinDecoder::new(&buf);
    decoder.read_slice(HEADER).ok()?;
    Queries::read(&mut decoder, queries.len()).ok()
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let state = &*self.state;
        let edns = response_edns(request);
        let (mut answer, mut trimmed, qtype) = self.respond(request, edns.as_ref());
        let pending = match (answer.remote.take(), answer.failover.take()) {
            (Some(dc), _) => Some(super::remote::Pending::Datacenter(dc)),
            (None, Some(query)) => Some(super::remote::Pending::Failover(query)),
            (None, None) => None,
        };
        if let (Some(pending), Some(remote)) = (pending, &state.remote) {
            (answer, trimmed) = self
                .respond_remote(request, edns.as_ref(), pending, remote)
                .await;
        }
        let mut truncated = trimmed && state.settings.dns.enable_truncate;
        if answer.recurse && !state.zones.is_empty() {
            if let Some(z) = request
                .queries
                .queries()
                .first()
                .and_then(|q| state.zones.answer(q.name(), q.query_type()))
            {
                answer = Answer::from_zone(z);
            }
        }
        if answer.recurse && !state.recursors.is_empty() {
            let tcp = request.protocol() != Protocol::Udp;
            (answer, truncated) = match state.recursors.forward(request.as_slice(), tcp).await {
                Some(reply) => relayed(reply),
                // Consul: every recursor failed => SERVFAIL.
                None => (Answer::error(ResponseCode::ServFail), false),
            };
        }

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.message_type = MessageType::Response;
        metadata.authoritative = answer.authoritative;
        metadata.response_code = answer.rcode;
        metadata.recursion_available = !state.recursors.is_empty();
        metadata.truncation = truncated;

        // hickory echoes the question as the client encoded it. A name
        // compressed against the request's header (a pointer below offset
        // 12) would point at the response's header instead, so such a
        // question is sent re-encoded, as Consul re-encodes every question.
        // A request without exactly one question is refused (FORMERR) with
        // no question section: echoing many could not fit a UDP answer.
        let rebuilt = if request.queries.len() != 1 {
            no_queries()
        } else if question_uses_pointers(request.queries.as_bytes()) {
            plain_queries(&request.queries)
        } else {
            None
        };
        let mut builder =
            MessageResponseBuilder::new(rebuilt.as_ref().unwrap_or(&request.queries), None);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authority.iter(),
            std::iter::empty(),
            answer.additional.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!("dns: sending a response failed: {e}");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        crate::metrics::dns_query(
            qtype_label(qtype),
            rcode_label(answer.rcode),
            started.elapsed(),
        );
        info
    }
}

/// The OPT record to answer with: the client's UDP size (at least 512),
/// version 0, and EDNS Client Subnet echoed with scope 0 since cairn's
/// answers do not depend on the client's address (Consul does the same).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|req| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().max(512));
        e.set_version(0);
        if let Some(EdnsOption::Subnet(ecs)) = req.option(EdnsCode::Subnet) {
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                ecs.addr(),
                ecs.source_prefix(),
                0,
            )));
        }
        e
    })
}

/// A recursor's reply as the sections to send back (its TC and AA bits
/// kept, its EDNS replaced by ours).
fn relayed(reply: Message) -> (Answer, bool) {
    let mut a = Answer::error(reply.metadata.response_code);
    a.authoritative = reply.metadata.authoritative;
    a.answers = reply.answers;
    a.authority = reply.authorities;
    a.additional = reply.additionals;
    (a, reply.metadata.truncation)
}

fn qtype_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::TXT => "TXT",
        RecordType::ANY => "ANY",
        RecordType::SOA => "SOA",
        RecordType::NS => "NS",
        RecordType::PTR => "PTR",
        RecordType::CNAME => "CNAME",
        RecordType::MX => "MX",
        RecordType::AXFR => "AXFR",
        RecordType::IXFR => "IXFR",
        _ => "OTHER",
    }
}

fn rcode_label(r: ResponseCode) -> &'static str {
    match r {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::BADVERS => "BADVERS",
        _ => "OTHER",
    }
}
