//! Cluster-wide keyring operations, answered the way serf's internal key
//! queries answer them: the agent that is asked sends the operation to
//! every alive member over the gossip socket (sealed with the keyring like
//! any gossip packet), each member applies it to its own keyring, persists
//! it and replies, and the asker counts the replies into one
//! [`KeyResponse`] (`Keys`, `PrimaryKeys`, `NumNodes`, and the members
//! that refused in `Messages`).
//!
//! The messages ride beside foca's packets on the same socket, told apart
//! by a prefix no foca packet starts with: foca's packets are postcard and
//! begin with the sender's name length as a varint, and postcard writes
//! varints in their shortest form, which never begins `0xFF 0x00`.
//!
//! A member answers only an asker it knows as an alive member, and sends
//! the answer to that member's gossip address (not to the datagram's
//! source), so a forged request cannot aim answers at a third party.
//!
//! UDP loses datagrams, so the asker resends the request to every member
//! that has not answered, every [`RETRANSMIT`], until all have or the
//! deadline (serf's query timeout) passes. A member remembers its recent
//! answers and repeats one rather than apply a request twice, so a late
//! retransmission of an old `use` cannot undo a newer one.

use super::keyring::{Keyring, KeyringError, KeyringFile, SharedKeyring};
use super::{MemberStatus, MemberTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// The first bytes of every keyring message (then a version byte).
const PREFIX: [u8; 2] = [0xFF, 0x00];
const VERSION: u8 = 1;

/// How often an unanswered member is asked again.
pub const RETRANSMIT: Duration = Duration::from_millis(200);

/// How many answers a member remembers, to repeat rather than re-apply.
const REMEMBERED: usize = 256;

/// serf's default query timeout for the LAN: gossip interval (200 ms) ×
/// `QueryTimeoutMult` (16) × ⌈log10(members + 1)⌉.
pub fn query_timeout(members: usize) -> Duration {
    let scale = ((members + 1) as f64).log10().ceil().max(1.0);
    Duration::from_millis(200 * 16).mul_f64(scale)
}

/// One keyring operation, with the key as raw bytes (decoded by the
/// asker, as serf decodes it before it sends the query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    List,
    Install(Vec<u8>),
    Use(Vec<u8>),
    Remove(Vec<u8>),
}

/// One member's answer (serf's `nodeKeyResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeKeyReply {
    pub node: String,
    pub result: bool,
    pub message: String,
    /// For a list: every installed key, base64.
    pub keys: Vec<String>,
    /// For a list: the primary key, base64.
    pub primary: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyMessage {
    /// `from` is the asker's node name.
    Request {
        id: u64,
        from: String,
        op: KeyOp,
    },
    Reply {
        id: u64,
        reply: NodeKeyReply,
    },
}

impl KeyMessage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![PREFIX[0], PREFIX[1], VERSION];
        // Serializing these plain enums into a Vec cannot fail.
        if let Ok(body) = postcard::to_allocvec(self) {
            out.extend_from_slice(&body);
        }
        out
    }

    /// Whether an opened datagram is a keyring message rather than foca's.
    pub(crate) fn is_one(data: &[u8]) -> bool {
        data.starts_with(&PREFIX)
    }

    /// `None` for another version or a malformed body.
    pub(crate) fn decode(data: &[u8]) -> Option<KeyMessage> {
        match data {
            [a, b, VERSION, body @ ..] if [*a, *b] == PREFIX => postcard::from_bytes(body).ok(),
            _ => None,
        }
    }
}

/// What the members answered, counted as serf's `KeyResponse` is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyResponse {
    /// Alive members when the operation started, this agent included.
    pub num_nodes: usize,
    pub num_resp: usize,
    pub num_err: usize,
    /// Member name → why it refused (or what it warned about).
    pub messages: BTreeMap<String, String>,
    /// Key → how many members have it installed.
    pub keys: BTreeMap<String, usize>,
    /// Key → how many members use it as their primary.
    pub primary_keys: BTreeMap<String, usize>,
    /// serf's summary error (`1/3 nodes reported failure`), if any.
    pub error: Option<String>,
}

impl KeyResponse {
    fn count(&mut self, reply: NodeKeyReply) {
        self.num_resp += 1;
        if !reply.result {
            self.num_err += 1;
        }
        if !reply.message.is_empty() {
            self.messages.insert(reply.node, reply.message);
        }
        for k in reply.keys {
            *self.keys.entry(k).or_default() += 1;
        }
        if !reply.primary.is_empty() {
            *self.primary_keys.entry(reply.primary).or_default() += 1;
        }
    }

    fn finish(&mut self) {
        self.error = if self.num_err != 0 {
            Some(format!(
                "{}/{} nodes reported failure",
                self.num_err, self.num_nodes
            ))
        } else if self.num_resp != self.num_nodes {
            Some(format!(
                "{}/{} nodes reported success",
                self.num_resp, self.num_nodes
            ))
        } else {
            None
        };
    }
}

/// Applies `op` to `current` as serf's key query handlers do: the changed
/// keyring (if the operation changes anything) and the answer.
pub(crate) fn apply(
    node: &str,
    current: Option<&Keyring>,
    op: &KeyOp,
) -> (Option<Keyring>, NodeKeyReply) {
    let mut reply = NodeKeyReply {
        node: node.to_string(),
        result: false,
        message: String::new(),
        keys: vec![],
        primary: String::new(),
    };
    let Some(ring) = current else {
        reply.message = match op {
            KeyOp::List => "Keyring is empty (encryption not enabled)",
            _ => "No keyring to modify (encryption not enabled)",
        }
        .into();
        return (None, reply);
    };
    let changed: Result<Option<Keyring>, KeyringError> = match op {
        KeyOp::List => {
            reply.keys = ring.to_base64();
            reply.primary = ring.primary().to_base64();
            Ok(None)
        }
        KeyOp::Install(raw) => ring.install(raw).map(Some),
        KeyOp::Use(raw) => ring.use_key(raw).map(Some),
        KeyOp::Remove(raw) => ring.remove(raw).map(Some),
    };
    match changed {
        Ok(next) => {
            reply.result = true;
            (next.filter(|n| n != ring), reply)
        }
        Err(e) => {
            reply.message = e.to_string();
            (None, reply)
        }
    }
}

/// Who asked: another member over the socket, or this agent itself.
enum Asker {
    Remote { from: String, id: u64 },
    Local(oneshot::Sender<NodeKeyReply>),
}

struct Job {
    op: KeyOp,
    asker: Asker,
}

/// Applies operations one at a time (so the keyring file is written in
/// the order the keyring changed) and answers them.
struct Responder {
    node: String,
    keyring: SharedKeyring,
    file: Option<KeyringFile>,
    socket: Arc<UdpSocket>,
    members: watch::Receiver<MemberTable>,
    answered: VecDeque<((String, u64), NodeKeyReply)>,
}

impl Responder {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(job) = jobs.recv().await {
            match job.asker {
                Asker::Local(done) => {
                    let reply = self.answer(&job.op).await;
                    let _ = done.send(reply);
                }
                Asker::Remote { from, id } => {
                    let addr = self.members.borrow().get(&from).and_then(|m| {
                        (m.status == MemberStatus::Alive && from != self.node).then_some(m.id.addr)
                    });
                    let Some(addr) = addr else {
                        tracing::debug!(asker = %from, "keyring request from no alive member: ignored");
                        continue;
                    };
                    let key = (from, id);
                    let seen = self
                        .answered
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, r)| r.clone());
                    let reply = match seen {
                        Some(r) => r,
                        None => {
                            let r = self.answer(&job.op).await;
                            if self.answered.len() == REMEMBERED {
                                self.answered.pop_front();
                            }
                            self.answered.push_back((key, r.clone()));
                            r
                        }
                    };
                    let msg = KeyMessage::Reply { id, reply }.encode();
                    if let Err(e) = self.socket.send_to(&self.keyring.seal(&msg), addr).await {
                        tracing::debug!(%addr, "keyring reply: {e}");
                    }
                }
            }
        }
    }

    /// Applies `op`; a change is written to the keyring file before it is
    /// used, so what the agent gossips with is always what it restarts with.
    async fn answer(&mut self, op: &KeyOp) -> NodeKeyReply {
        tracing::info!("serf: Received {} query", op.name());
        let current = self.keyring.current();
        let (changed, mut reply) = apply(&self.node, current.as_deref(), op);
        let Some(next) = changed else {
            return reply;
        };
        if let Some(file) = self.file.clone() {
            let ring = next.clone();
            let saved = tokio::task::spawn_blocking(move || file.save(&ring)).await;
            let failure = match saved {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(e) = failure {
                tracing::error!("serf: Failed to write keyring file: {e}");
                reply.result = false;
                reply.message = format!("Failed to write keyring file: {e}");
                return reply;
            }
        }
        self.keyring.replace(next);
        reply
    }
}

impl KeyOp {
    fn name(&self) -> &'static str {
        match self {
            KeyOp::List => "list-keys",
            KeyOp::Install(_) => "install-key",
            KeyOp::Use(_) => "use-key",
            KeyOp::Remove(_) => "remove-key",
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<NodeKeyReply>>>>;

/// Forgets an operation's reply channel when the operation ends (or its
/// HTTP request goes away).
struct PendingGuard {
    pending: Pending,
    id: u64,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&self.id);
        }
    }
}

/// Both ends of the keyring operations on one agent.
#[derive(Clone)]
pub(crate) struct KeyQueries {
    node: String,
    socket: Arc<UdpSocket>,
    keyring: SharedKeyring,
    jobs: mpsc::Sender<Job>,
    pending: Pending,
}

impl KeyQueries {
    /// Starts the responder task.
    pub(crate) fn start(
        node: String,
        socket: Arc<UdpSocket>,
        keyring: SharedKeyring,
        file: Option<KeyringFile>,
        members: watch::Receiver<MemberTable>,
    ) -> KeyQueries {
        let (jobs, rx) = mpsc::channel(256);
        let responder = Responder {
            node: node.clone(),
            keyring: keyring.clone(),
            file,
            socket: socket.clone(),
            members,
            answered: VecDeque::new(),
        };
        tokio::spawn(responder.run(rx));
        KeyQueries {
            node,
            socket,
            keyring,
            jobs,
            pending: Arc::default(),
        }
    }

    /// A keyring message read from the socket (already opened). Never
    /// waits: a request that finds the responder busy is dropped, and its
    /// asker sends it again.
    pub(crate) fn receive(&self, msg: KeyMessage) {
        match msg {
            KeyMessage::Request { id, from, op } => {
                let job = Job {
                    op,
                    asker: Asker::Remote { from, id },
                };
                if self.jobs.try_send(job).is_err() {
                    tracing::debug!("keyring request dropped: responder busy");
                }
            }
            KeyMessage::Reply { id, reply } => {
                let tx = self.pending.lock().ok().and_then(|p| p.get(&id).cloned());
                if let Some(tx) = tx {
                    let _ = tx.send(reply);
                }
            }
        }
    }

    /// Runs `op` on this agent and on every member in `others` (name →
    /// gossip address), waiting for all of them up to `timeout`.
    pub(crate) async fn run(
        &self,
        op: KeyOp,
        others: BTreeMap<String, SocketAddr>,
        timeout: Duration,
    ) -> KeyResponse {
        let deadline = Instant::now() + timeout;
        let id: u64 = rand::random();
        let (tx, mut replies) = mpsc::unbounded_channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let _guard = PendingGuard {
            pending: self.pending.clone(),
            id,
        };
        let mut waiting: HashSet<&String> = others.keys().filter(|n| **n != self.node).collect();
        let mut resp = KeyResponse {
            num_nodes: waiting.len() + 1,
            ..KeyResponse::default()
        };
        let (done, local) = oneshot::channel();
        let job = Job {
            op: op.clone(),
            asker: Asker::Local(done),
        };
        if self.jobs.send(job).await.is_ok() {
            if let Ok(reply) = local.await {
                resp.count(reply);
            }
        }
        let request = KeyMessage::Request {
            id,
            from: self.node.clone(),
            op,
        }
        .encode();
        while !waiting.is_empty() && Instant::now() < deadline {
            for addr in waiting.iter().filter_map(|n| others.get(*n)) {
                // Sealed afresh each time: a `use` may have changed the primary.
                if let Err(e) = self
                    .socket
                    .send_to(&self.keyring.seal(&request), *addr)
                    .await
                {
                    tracing::debug!(%addr, "keyring request: {e}");
                }
            }
            let resend_at = (Instant::now() + RETRANSMIT).min(deadline);
            loop {
                tokio::select! {
                    r = replies.recv() => match r {
                        Some(reply) => {
                            if waiting.remove(&reply.node) {
                                resp.count(reply);
                            }
                            if waiting.is_empty() {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = tokio::time::sleep_until(resend_at) => break,
                }
            }
        }
        resp.finish();
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::crypto::{keygen, Key};

    fn key() -> Key {
        Key::from_base64(&keygen()).unwrap()
    }

    #[test]
    fn messages_round_trip_and_are_told_from_foca_packets() {
        let msg = KeyMessage::Request {
            id: 7,
            from: "s1".into(),
            op: KeyOp::Install(vec![1; 32]),
        };
        let bytes = msg.encode();
        assert!(KeyMessage::is_one(&bytes));
        assert_eq!(KeyMessage::decode(&bytes), Some(msg));
        for p in crate::fuzzing::Gossip::sample_packets() {
            assert!(
                !KeyMessage::is_one(&p),
                "a foca packet taken for a key message"
            );
        }
        assert_eq!(KeyMessage::decode(&[0xFF, 0x00, 9, 1, 2]), None);
        assert_eq!(KeyMessage::decode(&[0xFF, 0x00, VERSION, 200]), None);
    }

    #[test]
    fn members_answer_as_serf_does() {
        let (k1, k2) = (key(), key());
        let ring = Keyring::new(k1.clone());
        let (changed, r) = apply("n1", Some(&ring), &KeyOp::List);
        assert!(changed.is_none() && r.result);
        assert_eq!((r.keys, r.primary), (vec![k1.to_base64()], k1.to_base64()));

        let (changed, r) = apply("n1", Some(&ring), &KeyOp::Install(k2.raw().to_vec()));
        assert!(r.result);
        let ring2 = changed.expect("installed");
        let (changed, r) = apply("n1", Some(&ring2), &KeyOp::Install(k2.raw().to_vec()));
        assert!(
            r.result && changed.is_none(),
            "installing twice changes nothing"
        );

        let (_, r) = apply("n1", Some(&ring2), &KeyOp::Remove(k1.raw().to_vec()));
        assert!(!r.result);
        assert_eq!(r.message, "Removing the primary key is not allowed");
        let (_, r) = apply("n1", Some(&ring2), &KeyOp::Use(key().raw().to_vec()));
        assert_eq!(r.message, "Requested key is not in the keyring");
        let (_, r) = apply("n1", Some(&ring2), &KeyOp::Install(vec![1, 2, 3]));
        assert_eq!(r.message, "key size must be 16, 24 or 32 bytes");

        let (_, r) = apply("dev", None, &KeyOp::List);
        assert_eq!(
            (r.result, r.message.as_str()),
            (false, "Keyring is empty (encryption not enabled)")
        );
        let (_, r) = apply("dev", None, &KeyOp::Install(k2.raw().to_vec()));
        assert_eq!(r.message, "No keyring to modify (encryption not enabled)");
    }

    #[test]
    fn replies_are_counted_as_serf_counts_them() {
        let ok = |node: &str, keys: &[&str], primary: &str| NodeKeyReply {
            node: node.into(),
            result: true,
            message: String::new(),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            primary: primary.into(),
        };
        let mut r = KeyResponse {
            num_nodes: 3,
            ..Default::default()
        };
        r.count(ok("a", &["K1", "K2"], "K1"));
        r.count(ok("b", &["K1", "K2"], "K2"));
        r.finish();
        assert_eq!(r.error.as_deref(), Some("2/3 nodes reported success"));
        r.count(ok("c", &["K1"], "K1"));
        r.finish();
        assert_eq!(r.error, None);
        assert_eq!(r.keys, BTreeMap::from([("K1".into(), 3), ("K2".into(), 2)]));
        assert_eq!(
            r.primary_keys,
            BTreeMap::from([("K1".into(), 2), ("K2".into(), 1)])
        );
        r.count(NodeKeyReply {
            result: false,
            message: "Removing the primary key is not allowed".into(),
            ..ok("d", &[], "")
        });
        r.finish();
        assert_eq!(r.error.as_deref(), Some("1/3 nodes reported failure"));
        assert_eq!(r.messages["d"], "Removing the primary key is not allowed");
    }

    #[test]
    fn the_timeout_grows_with_the_cluster_as_serfs() {
        assert_eq!(query_timeout(3), Duration::from_millis(3200));
        assert_eq!(query_timeout(9), Duration::from_millis(3200));
        assert_eq!(query_timeout(10), Duration::from_millis(6400));
    }

    fn table(members: &[(&str, SocketAddr)]) -> MemberTable {
        let info = |name: &str, addr: SocketAddr| super::super::MemberInfo {
            id: super::super::MemberId {
                name: name.into(),
                addr,
                node_id: String::new(),
                server: true,
                dc: "dc1".into(),
                rpc_port: 8300,
                http_port: 8500,
                version: "test".into(),
                bootstrap_expect: 0,
                started_ms: 0,
                bump: 0,
            },
            status: MemberStatus::Alive,
        };
        Arc::new(
            members
                .iter()
                .map(|(n, a)| (n.to_string(), info(n, *a)))
                .collect(),
        )
    }

    /// Three responders on real sockets, one asker: the operation reaches
    /// every member even though the first copy of each request is lost,
    /// and a member ignores an asker it does not know.
    #[tokio::test]
    async fn an_operation_survives_a_lost_datagram() {
        let k1 = key();
        let mut sockets = Vec::new();
        for _ in 0..4 {
            sockets.push(Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()));
        }
        let addr = |i: usize| sockets[i].local_addr().unwrap();
        // "d" is not a member: the others do not know it.
        let (_members_tx, members) =
            watch::channel(table(&[("a", addr(0)), ("b", addr(1)), ("c", addr(2))]));
        let mut agents = Vec::new();
        for (i, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            let keyring = SharedKeyring::new(Some(Keyring::new(k1.clone())));
            let q = KeyQueries::start(
                name.into(),
                sockets[i].clone(),
                keyring.clone(),
                None,
                members.clone(),
            );
            agents.push((name, sockets[i].clone(), keyring, q));
        }
        // Each member's reader: drop the first request it sees, then
        // deliver everything.
        for (_, socket, keyring, q) in &agents {
            let (socket, keyring, q) = (socket.clone(), keyring.clone(), q.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut dropped_one = false;
                while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                    let Some(data) = keyring.open(&buf[..n]) else {
                        continue;
                    };
                    let Some(msg) = KeyMessage::decode(&data) else {
                        continue;
                    };
                    if matches!(msg, KeyMessage::Request { .. }) && !dropped_one {
                        dropped_one = true;
                        continue;
                    }
                    q.receive(msg);
                }
            });
        }
        let others: BTreeMap<String, SocketAddr> =
            [("b".to_string(), addr(1)), ("c".to_string(), addr(2))].into();
        let k2 = key();
        let asker = &agents[0].3;
        let r = asker
            .run(
                KeyOp::Install(k2.raw().to_vec()),
                others.clone(),
                Duration::from_secs(3),
            )
            .await;
        assert_eq!((r.num_resp, r.num_nodes, r.error), (3, 3, None));
        for (_, _, keyring, _) in &agents[..3] {
            assert_eq!(keyring.current().unwrap().keys(), &[k1.clone(), k2.clone()]);
        }
        let r = asker
            .run(
                KeyOp::Use(k2.raw().to_vec()),
                others.clone(),
                Duration::from_secs(3),
            )
            .await;
        assert_eq!(r.error, None);
        let r = asker
            .run(KeyOp::List, others.clone(), Duration::from_secs(3))
            .await;
        assert_eq!(r.primary_keys, BTreeMap::from([(k2.to_base64(), 3)]));
        assert_eq!(r.keys.len(), 2);

        // A member that never answers: the asker gives up at the deadline.
        let mut with_ghost = others.clone();
        with_ghost.insert("ghost".into(), "127.0.0.1:9".parse().unwrap());
        let started = Instant::now();
        let r = asker
            .run(KeyOp::List, with_ghost, Duration::from_millis(600))
            .await;
        assert_eq!(r.error.as_deref(), Some("3/4 nodes reported success"));
        assert!(started.elapsed() < Duration::from_secs(2));

        // An asker no member knows gets no answers and changes nothing.
        let stranger = &agents[3].3;
        let r = stranger
            .run(
                KeyOp::Install(key().raw().to_vec()),
                others,
                Duration::from_millis(600),
            )
            .await;
        assert_eq!(r.error.as_deref(), Some("1/3 nodes reported success"));
        for (_, _, keyring, _) in &agents[1..3] {
            assert_eq!(keyring.current().unwrap().keys(), &[k2.clone(), k1.clone()]);
        }
    }
}
