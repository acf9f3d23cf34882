//! LAN gossip over UDP with foca (SWIM): membership, failure detection,
//! graceful leave and force-leave. One task owns the `Foca` instance and is
//! fed by an mpsc of inputs (packets, timers, commands); a single scheduler
//! task delivers timers in order; the member table is published on a watch
//! channel that the leader's reconciler and the HTTP API read.
//!
//! With encryption on, every datagram is sealed with the keyring's primary
//! key and opened with any installed key ([`keyring`]); the keyring
//! operations (`/v1/operator/keyring`) travel on the same socket beside
//! foca's packets ([`key_query`]), and so do the pings that time round
//! trips for network coordinates ([`ping`]). User events ride foca's
//! custom broadcasts ([`user_event`]).

pub mod crypto;
pub mod key_query;
pub mod keyring;
pub mod ping;
pub mod user_event;

use bytes::Bytes;
use foca::{
    BroadcastHandler, Config as FocaConfig, Foca, Invalidates, OwnedNotification, PostcardCodec,
    Timer,
};
use key_query::{KeyMessage, KeyOp, KeyQueries, KeyResponse};
use keyring::{Keyring, KeyringFile, SharedKeyring};
use ping::{PingMessage, Pinger};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use user_event::{EventClock, UserEventError, UserEventMsg};

/// A member's identity as gossiped: who it is and how to reach it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberId {
    pub name: String,
    /// Gossip (serf LAN) address.
    pub addr: SocketAddr,
    pub node_id: String,
    pub server: bool,
    pub dc: String,
    pub rpc_port: u16,
    pub http_port: u16,
    pub version: String,
    pub bootstrap_expect: u32,
    /// Unix milliseconds when the agent started: the later of two agents
    /// claiming one name is the one that must give way.
    pub started_ms: u64,
    /// Bumped on every automatic rejoin so the new incarnation wins.
    pub bump: u64,
}

impl std::fmt::Debug for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.bump)
    }
}

impl foca::Identity for MemberId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        let mut next = self.clone();
        next.bump = next.bump.wrapping_add(1);
        Some(next)
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.started_ms, self.bump) > (adversary.started_ms, adversary.bump)
    }
}

/// Serf's member status codes, as `/v1/agent/members` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: MemberId,
    pub status: MemberStatus,
}

pub type MemberTable = Arc<BTreeMap<String, MemberInfo>>;

/// What the gossip layer needs to know about this agent.
#[derive(Clone)]
pub struct GossipConfig {
    pub bind: SocketAddr,
    pub identity: MemberId,
    /// `None`: gossip is not encrypted.
    pub keyring: Option<Keyring>,
    /// Where keyring changes are persisted (`None` with `disable_keyring_file`).
    pub keyring_file: Option<KeyringFile>,
    /// Which pool this is: the datacenter's LAN, or the servers' WAN.
    pub pool: Pool,
    /// A keyring another pool already holds, to share instead of
    /// `keyring` (a server's WAN pool uses its LAN pool's keys, so a key
    /// installed, used or removed applies to both).
    pub shared_keyring: Option<SharedKeyring>,
}

/// A gossip pool: each agent is in its datacenter's LAN pool; servers are
/// also in the WAN pool that joins the datacenters, as `<node>.<dc>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pool {
    #[default]
    Lan,
    Wan,
}

/// Intentions spread as custom broadcasts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Intent {
    /// The named member is leaving gracefully: its coming "down" means left.
    Leave { name: String, bump: u64 },
    /// An operator asked to treat a failed member as left (and maybe forget it).
    ForceLeave {
        name: String,
        prune: bool,
        nonce: u64,
    },
    /// A user event (serf's `messageUserEvent`).
    UserEvent(UserEventMsg),
}

/// [`IntentKey::kind`] of user events, which never replace one another.
const USER_EVENT_KIND: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct IntentKey {
    name: String,
    kind: u8,
    version: u64,
}

impl Invalidates for IntentKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.kind != USER_EVENT_KIND
            && self.name == other.name
            && self.kind == other.kind
            && self.version >= other.version
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad broadcast: {0}")]
pub(crate) struct BadBroadcast(String);

/// Receives intents; remembers them so repeats are not re-broadcast.
pub(crate) struct IntentHandler {
    seen: HashSet<IntentKey>,
    /// The user events in `seen`, oldest first, so that only the last
    /// [`user_event::REMEMBERED`] are kept.
    event_keys: VecDeque<IntentKey>,
    intents: Arc<Mutex<Vec<Intent>>>,
}

impl IntentHandler {
    /// Serf tells a repeated user event by its time, name and payload.
    fn event_key(msg: &UserEventMsg) -> IntentKey {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        msg.payload.hash(&mut h);
        IntentKey {
            name: format!("{}:{}", msg.ltime, msg.name),
            kind: USER_EVENT_KIND,
            version: h.finish(),
        }
    }

    fn remember_event(&mut self, key: IntentKey) {
        self.event_keys.push_back(key);
        if self.event_keys.len() > user_event::REMEMBERED {
            if let Some(old) = self.event_keys.pop_front() {
                self.seen.remove(&old);
            }
        }
    }
}

impl BroadcastHandler<MemberId> for IntentHandler {
    type Key = IntentKey;
    type Error = BadBroadcast;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&MemberId>,
    ) -> Result<Option<IntentKey>, BadBroadcast> {
        let intent: Intent = postcard::from_bytes(data).map_err(|e| BadBroadcast(e.to_string()))?;
        let key = match &intent {
            Intent::Leave { name, bump } => IntentKey {
                name: name.clone(),
                kind: 0,
                version: *bump,
            },
            Intent::ForceLeave { name, nonce, .. } => IntentKey {
                name: name.clone(),
                kind: 1,
                version: *nonce,
            },
            Intent::UserEvent(msg) => Self::event_key(msg),
        };
        if !self.seen.insert(key.clone()) {
            return Ok(None);
        }
        if key.kind == USER_EVENT_KIND {
            self.remember_event(key.clone());
        }
        if let Ok(mut q) = self.intents.lock() {
            q.push(intent);
        }
        Ok(Some(key))
    }
}

enum Input {
    Data(Vec<u8>),
    Timer(Timer<MemberId>),
    Announce(SocketAddr),
    Leave(oneshot::Sender<()>),
    ForceLeave {
        name: String,
        prune: bool,
        done: oneshot::Sender<bool>,
    },
    UserEvent {
        name: String,
        payload: Vec<u8>,
        /// The payload's length on Consul's wire, for serf's size limits.
        wire_len: usize,
        done: oneshot::Sender<Result<u64, UserEventError>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("gossip task stopped")]
    Stopped,
}

/// Handle to the running gossip layer.
#[derive(Clone)]
pub struct Gossip {
    tx: mpsc::Sender<Input>,
    members: watch::Receiver<MemberTable>,
    conflict: watch::Receiver<Option<String>>,
    keyring: SharedKeyring,
    keys: KeyQueries,
    pinger: Arc<Pinger>,
    user_events: broadcast::Sender<UserEventMsg>,
    pub identity: MemberId,
}

/// Failure-detection timing chosen for LANs and docker networks: a hard-killed
/// member is declared down within about 1.4 s (probe every 350 ms, 220 ms
/// round trip, 3 indirect probes, 700 ms of suspicion), well before
/// memberlist's ~5 s, while a member must miss direct and indirect probes
/// to be suspected and then fail to refute it for 700 ms.
fn foca_config(pool: Pool, cluster_size: u32) -> FocaConfig {
    if pool == Pool::Wan {
        return wan_config(cluster_size);
    }
    let mut c =
        FocaConfig::new_lan(NonZeroU32::new(cluster_size.max(1)).unwrap_or(NonZeroU32::MIN));
    c.probe_period = Duration::from_millis(350);
    c.probe_rtt = Duration::from_millis(220);
    c.num_indirect_probes = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    c.suspect_to_down_after = Duration::from_millis(700);
    c.remove_down_after = Some(Duration::from_secs(72 * 3600));
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

/// Timing for the WAN pool, whose members are other datacenters' servers:
/// probes every 2 s with a 1 s round trip allowed (a 100-300 ms WAN link
/// never looks like a failure), and 6 s of suspicion, so a server is down
/// for the other datacenters about 10 s after it stops answering, where
/// memberlist's WAN profile takes about 30 s.
fn wan_config(cluster_size: u32) -> FocaConfig {
    let mut c =
        FocaConfig::new_wan(NonZeroU32::new(cluster_size.max(1)).unwrap_or(NonZeroU32::MIN));
    c.probe_period = Duration::from_secs(2);
    c.probe_rtt = Duration::from_secs(1);
    c.num_indirect_probes = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    c.suspect_to_down_after = Duration::from_secs(6);
    c.remove_down_after = Some(Duration::from_secs(72 * 3600));
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(30),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(10),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

/// The foca instance an agent gossips with (sized for 5 members until
/// [`Owner::resize`] sees more), and the intents its broadcasts deliver.
pub(crate) type Swim = Foca<MemberId, PostcardCodec, StdRng, IntentHandler>;

pub(crate) fn new_foca(identity: MemberId) -> (Swim, Arc<Mutex<Vec<Intent>>>) {
    new_foca_in(Pool::Lan, identity)
}

fn new_foca_in(pool: Pool, identity: MemberId) -> (Swim, Arc<Mutex<Vec<Intent>>>) {
    let intents = Arc::new(Mutex::new(Vec::new()));
    let handler = IntentHandler {
        seen: HashSet::new(),
        event_keys: VecDeque::new(),
        intents: intents.clone(),
    };
    let rng: StdRng = rand::make_rng();
    let foca =
        Foca::with_custom_broadcast(identity, foca_config(pool, 5), rng, PostcardCodec, handler);
    (foca, intents)
}

/// What a received datagram holds once opened.
#[derive(Debug)]
pub(crate) enum Datagram {
    /// A packet for foca.
    Swim(Vec<u8>),
    /// A keyring operation or its answer.
    Key(KeyMessage),
    /// A keyring message that does not decode.
    BadKey,
    /// A coordinate ping or pong.
    Ping(PingMessage),
    /// A coordinate ping that does not decode.
    BadPing,
}

/// Opens a received datagram with the keyring (`None` when gossip is
/// encrypted and no installed key opens it) and tells what it is.
pub(crate) fn open_datagram(keyring: &SharedKeyring, packet: &[u8]) -> Option<Datagram> {
    let data = keyring.open(packet)?;
    if PingMessage::is_one(&data) {
        return Some(PingMessage::decode(&data).map_or(Datagram::BadPing, Datagram::Ping));
    }
    if !KeyMessage::is_one(&data) {
        return Some(Datagram::Swim(data));
    }
    Some(match KeyMessage::decode(&data) {
        Some(m) => Datagram::Key(m),
        None => Datagram::BadKey,
    })
}

/// Logs dropped datagrams at most once per [`DropLog::EVERY`], with how many
/// were dropped since the last line: a member with the wrong key sends
/// several packets a second, and one line each would drown the log.
struct DropLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl DropLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> DropLog {
        DropLog {
            last: None,
            unlogged: 0,
        }
    }

    /// Counts one drop; true when this one should be logged (with
    /// [`DropLog::unlogged`] drops before it since the last line).
    fn note(&mut self, now: Instant) -> bool {
        match self.last {
            Some(at) if now.duration_since(at) < Self::EVERY => {
                self.unlogged += 1;
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    fn take_unlogged(&mut self) -> u64 {
        std::mem::take(&mut self.unlogged)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Gossip {
    pub async fn start(cfg: GossipConfig) -> Result<Gossip, GossipError> {
        let socket = Arc::new(UdpSocket::bind(cfg.bind).await?);
        let (tx, rx) = mpsc::channel::<Input>(1024);
        let (members_tx, members) = watch::channel::<MemberTable>(Arc::new(BTreeMap::new()));
        let (conflict_tx, conflict) = watch::channel::<Option<String>>(None);
        let (user_events, _) = broadcast::channel::<UserEventMsg>(1024);

        let keyring = cfg
            .shared_keyring
            .clone()
            .unwrap_or_else(|| SharedKeyring::new(cfg.keyring.clone()));
        let keys = KeyQueries::start(
            cfg.identity.name.clone(),
            socket.clone(),
            keyring.clone(),
            cfg.keyring_file.clone(),
            members.clone(),
        );
        let pinger = Pinger::start(
            cfg.identity.name.clone(),
            socket.clone(),
            keyring.clone(),
            members.clone(),
        );
        tokio::spawn(read_socket(
            socket.clone(),
            keyring.clone(),
            Receivers {
                keys: keys.clone(),
                pinger: pinger.clone(),
            },
            tx.clone(),
        ));

        // Scheduler: one ordered timer queue.
        let (sched_tx, mut sched_rx) = mpsc::unbounded_channel::<(Instant, Timer<MemberId>)>();
        {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
                let mut timers: HashMap<u64, Timer<MemberId>> = HashMap::new();
                let mut seq = 0u64;
                loop {
                    let next = heap.peek().map(|Reverse((at, _))| *at);
                    tokio::select! {
                        msg = sched_rx.recv() => match msg {
                            Some((at, timer)) => {
                                seq += 1;
                                heap.push(Reverse((at, seq)));
                                timers.insert(seq, timer);
                            }
                            None => return,
                        },
                        _ = async { match next { Some(at) => tokio::time::sleep_until(at).await, None => std::future::pending().await } } => {
                            let now = Instant::now();
                            while let Some(Reverse((at, id))) = heap.peek().copied() {
                                if at > now { break; }
                                heap.pop();
                                if let Some(t) = timers.remove(&id) {
                                    if tx.send(Input::Timer(t)).await.is_err() { return; }
                                }
                            }
                        }
                    }
                }
            });
        }

        let (foca, intents) = new_foca_in(cfg.pool, cfg.identity.clone());
        let owner = Owner {
            foca,
            socket,
            keyring: keyring.clone(),
            sched: sched_tx,
            intents,
            table: BTreeMap::new(),
            leaving: HashSet::new(),
            members_tx,
            conflict_tx,
            me: cfg.identity.clone(),
            sized_for: 5,
            pool: cfg.pool,
            event_clock: EventClock::default(),
            user_events: user_events.clone(),
        };
        tokio::spawn(owner.run(rx));
        Ok(Gossip {
            tx,
            members,
            conflict,
            keyring,
            keys,
            pinger,
            user_events,
            identity: cfg.identity,
        })
    }

    /// The coordinates other members last answered this agent's pings
    /// with, by member name.
    pub fn peer_coordinates(&self) -> HashMap<String, crate::coordinate::Coordinate> {
        self.pinger.peers()
    }

    /// The keys this pool opens and seals with, for another pool to share.
    pub fn shared_keyring(&self) -> SharedKeyring {
        self.keyring.clone()
    }

    /// This agent's network coordinate, as its pings have shaped it.
    pub fn coordinate(&self) -> crate::coordinate::Coordinate {
        self.pinger.coordinate()
    }

    /// Sends a user event to every member, this agent included (serf's
    /// `UserEvent`): `wire_len` is the payload's length on Consul's wire,
    /// which serf's size limits count. Returns the event's Lamport time.
    pub async fn user_event(
        &self,
        name: String,
        payload: Vec<u8>,
        wire_len: usize,
    ) -> Result<u64, UserEventError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Input::UserEvent {
                name,
                payload,
                wire_len,
                done,
            })
            .await
            .map_err(|_| UserEventError::Stopped)?;
        wait.await.map_err(|_| UserEventError::Stopped)?
    }

    /// Every user event this agent takes in from now on (its own
    /// included), once each.
    pub fn user_events(&self) -> broadcast::Receiver<UserEventMsg> {
        self.user_events.subscribe()
    }

    /// Whether gossip is encrypted (a keyring is installed).
    pub fn encrypted(&self) -> bool {
        self.keyring.enabled()
    }

    /// Runs a keyring operation on every alive member, this agent
    /// included, and counts their answers (serf's key query): waits for
    /// all of them up to serf's query timeout.
    pub async fn key_operation(&self, op: KeyOp) -> KeyResponse {
        let others: BTreeMap<String, SocketAddr> = self
            .members()
            .values()
            .filter(|m| m.status == MemberStatus::Alive && m.id.name != self.identity.name)
            .map(|m| (m.id.name.clone(), m.id.addr))
            .collect();
        let timeout = key_query::query_timeout(others.len() + 1);
        self.keys.run(op, others, timeout).await
    }

    /// The current member table (this agent included), by name.
    pub fn members(&self) -> MemberTable {
        self.members.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<MemberTable> {
        self.members.clone()
    }

    /// Resolves to the conflict message once another live agent is found
    /// holding this agent's name.
    pub fn conflicts(&self) -> watch::Receiver<Option<String>> {
        self.conflict.clone()
    }

    /// Announces to each address; returns how many answered (became members)
    /// within `wait`.
    pub async fn join(&self, addrs: &[SocketAddr], wait: Duration) -> Result<usize, GossipError> {
        let before: HashSet<SocketAddr> = self.members().values().map(|m| m.id.addr).collect();
        for a in addrs {
            self.tx
                .send(Input::Announce(*a))
                .await
                .map_err(|_| GossipError::Stopped)?;
        }
        let targets: HashSet<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| !before.contains(a))
            .collect();
        let mut rx = self.members.clone();
        let deadline = Instant::now() + wait;
        loop {
            let joined = {
                let table = rx.borrow();
                addrs
                    .iter()
                    .filter(|a| {
                        table
                            .values()
                            .any(|m| m.id.addr == **a && m.status == MemberStatus::Alive)
                    })
                    .count()
            };
            if joined == addrs.len() || (targets.is_empty() && joined > 0) {
                return Ok(joined);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Err(GossipError::Stopped) },
                _ = tokio::time::sleep_until(deadline) => return Ok(joined),
            }
        }
    }

    /// Graceful leave: tell the cluster, then stop answering probes.
    pub async fn leave(&self) -> Result<(), GossipError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Input::Leave(done))
            .await
            .map_err(|_| GossipError::Stopped)?;
        let _ = wait.await;
        Ok(())
    }

    /// Marks a failed member as left (and with `prune` forgets it). Returns
    /// false if no such member is known.
    pub async fn force_leave(&self, name: &str, prune: bool) -> Result<bool, GossipError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Input::ForceLeave {
                name: name.to_string(),
                prune,
                done,
            })
            .await
            .map_err(|_| GossipError::Stopped)?;
        wait.await.map_err(|_| GossipError::Stopped)
    }
}

/// The socket's reader: each datagram is opened with the keyring, then
/// handed to foca or to the keyring operations. One that no installed key
/// opens is dropped, counted and logged (at a rate limit).
/// Who takes the datagrams that are not foca's.
struct Receivers {
    keys: KeyQueries,
    pinger: Arc<Pinger>,
}

async fn read_socket(
    socket: Arc<UdpSocket>,
    keyring: SharedKeyring,
    receivers: Receivers,
    tx: mpsc::Sender<Input>,
) {
    let mut buf = vec![0u8; 65536];
    let mut drops = DropLog::new();
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!("gossip recv: {e}");
                continue;
            }
        };
        match open_datagram(&keyring, &buf[..n]) {
            Some(Datagram::Swim(data)) => {
                if tx.send(Input::Data(data)).await.is_err() {
                    return;
                }
            }
            Some(Datagram::Key(msg)) => receivers.keys.receive(msg),
            Some(Datagram::Ping(msg)) => receivers.pinger.receive(msg, Instant::now()),
            Some(Datagram::BadKey) => {
                crate::metrics::gossip_packet_dropped("malformed");
                tracing::warn!(%from, "gossip: dropping malformed packet: a keyring message that does not decode");
            }
            Some(Datagram::BadPing) => {
                crate::metrics::gossip_packet_dropped("malformed");
                tracing::warn!(%from, "gossip: dropping malformed packet: a coordinate ping that does not decode");
            }
            None => {
                crate::metrics::gossip_packet_dropped("decrypt");
                if drops.note(Instant::now()) {
                    let earlier = drops.take_unlogged();
                    // memberlist's words for the same drop.
                    tracing::warn!(
                        %from,
                        dropped_since_last_report = earlier,
                        "gossip: Decrypt packet failed: No installed keys could decrypt the message"
                    );
                }
            }
        }
    }
}

struct Owner {
    foca: Swim,
    socket: Arc<UdpSocket>,
    keyring: SharedKeyring,
    sched: mpsc::UnboundedSender<(Instant, Timer<MemberId>)>,
    intents: Arc<Mutex<Vec<Intent>>>,
    /// name -> member info, excluding this agent (added on publish).
    table: BTreeMap<String, MemberInfo>,
    leaving: HashSet<String>,
    members_tx: watch::Sender<MemberTable>,
    conflict_tx: watch::Sender<Option<String>>,
    me: MemberId,
    /// The cluster size foca's settings were last derived for.
    sized_for: usize,
    pool: Pool,
    event_clock: EventClock,
    user_events: broadcast::Sender<UserEventMsg>,
}

impl Owner {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut rt = foca::AccumulatingRuntime::new();
        self.publish(MemberStatus::Alive);
        let mut my_status = MemberStatus::Alive;
        while let Some(input) = rx.recv().await {
            let mut leave_done = None;
            let result = match input {
                Input::Data(d) => self.foca.handle_data(&d, &mut rt),
                Input::Timer(t) => self.foca.handle_timer(t, &mut rt),
                Input::Announce(addr) => {
                    let mut probe = self.me.clone();
                    probe.addr = addr;
                    probe.name = String::new();
                    self.foca.announce(probe, &mut rt)
                }
                Input::Leave(done) => {
                    let intent = Intent::Leave {
                        name: self.me.name.clone(),
                        bump: self.foca.identity().bump,
                    };
                    if let Ok(bytes) = postcard::to_allocvec(&intent) {
                        let _ = self.foca.add_broadcast(&bytes);
                    }
                    // Push the intent out with a few gossip rounds, then leave.
                    for _ in 0..3 {
                        let _ = self.foca.gossip(&mut rt);
                    }
                    my_status = MemberStatus::Left;
                    leave_done = Some(done);
                    self.foca.leave_cluster(&mut rt)
                }
                Input::ForceLeave { name, prune, done } => {
                    let known = self.table.contains_key(&name);
                    if known {
                        let intent = Intent::ForceLeave {
                            name: name.clone(),
                            prune,
                            nonce: now_ms(),
                        };
                        if let Ok(bytes) = postcard::to_allocvec(&intent) {
                            let _ = self.foca.add_broadcast(&bytes);
                            let _ = self.foca.gossip(&mut rt);
                        }
                        self.apply_force_leave(&name, prune);
                    }
                    let _ = done.send(known);
                    Ok(())
                }
                Input::UserEvent {
                    name,
                    payload,
                    wire_len,
                    done,
                } => {
                    let sent = self.send_user_event(name, payload, wire_len, &mut rt);
                    let _ = done.send(sent);
                    Ok(())
                }
            };
            match result {
                Err(
                    e @ (foca::Error::MalformedPacket
                    | foca::Error::Decode(_)
                    | foca::Error::CustomBroadcast(_)),
                ) => {
                    crate::metrics::gossip_packet_dropped("malformed");
                    tracing::warn!("gossip: dropping malformed packet: {e}");
                }
                Err(e) => tracing::debug!("gossip: {e}"),
                Ok(()) => {}
            }
            self.drain(&mut rt).await;
            self.apply_intents();
            self.publish(my_status);
            self.resize();
            if let Some(done) = leave_done {
                let _ = done.send(());
            }
        }
    }

    async fn drain(&mut self, rt: &mut foca::AccumulatingRuntime<MemberId>) {
        while let Some((dst, data)) = rt.to_send() {
            self.send(dst.addr, data).await;
        }
        let now = Instant::now();
        while let Some((delay, timer)) = rt.to_schedule() {
            let _ = self.sched.send((now + delay, timer));
        }
        while let Some(n) = rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => self.member_up(id),
                OwnedNotification::MemberDown(id) => self.member_down(&id),
                OwnedNotification::Rename(old, new) => {
                    if old.name != new.name {
                        self.table.remove(&old.name);
                    }
                    self.member_up(new);
                }
                OwnedNotification::Defunct => {
                    tracing::warn!("gossip: this agent was declared down; rejoining")
                }
                OwnedNotification::Rejoin(id) => tracing::info!("gossip: rejoined as {id:?}"),
                _ => {}
            }
        }
    }

    async fn send(&self, dst: SocketAddr, data: Bytes) {
        let res = if self.keyring.enabled() {
            self.socket.send_to(&self.keyring.seal(&data), dst).await
        } else {
            self.socket.send_to(&data, dst).await
        };
        if let Err(e) = res {
            tracing::debug!(%dst, "gossip send: {e}");
        }
    }

    fn member_up(&mut self, id: MemberId) {
        if id.name.is_empty() {
            return;
        }
        if id.name == self.me.name && id.addr != self.me.addr {
            let msg = format!(
                "Node name {} conflicts with another node at {}. Names must be unique!",
                id.name, id.addr
            );
            // The agent that started later gives way.
            if (self.me.started_ms, &self.me.node_id) > (id.started_ms, &id.node_id) {
                let _ = self.conflict_tx.send(Some(msg));
            } else {
                tracing::error!("{msg}");
            }
            return;
        }
        if let Some(cur) = self.table.get(&id.name) {
            if cur.id.addr != id.addr
                && cur.status == MemberStatus::Alive
                && cur.id.node_id != id.node_id
            {
                tracing::error!(
                    "Node name {} conflicts with another node at {}. Names must be unique!",
                    id.name,
                    cur.id.addr
                );
            }
        }
        self.leaving.remove(&id.name);
        self.table.insert(
            id.name.clone(),
            MemberInfo {
                id,
                status: MemberStatus::Alive,
            },
        );
    }

    fn member_down(&mut self, id: &MemberId) {
        let Some(cur) = self.table.get_mut(&id.name) else {
            return;
        };
        if cur.id.addr != id.addr {
            return;
        }
        cur.status = if self.leaving.contains(&id.name) {
            MemberStatus::Left
        } else {
            MemberStatus::Failed
        };
    }

    fn apply_intents(&mut self) {
        let pending: Vec<Intent> = match self.intents.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => return,
        };
        for intent in pending {
            match intent {
                Intent::Leave { name, .. } => {
                    self.leaving.insert(name.clone());
                    if let Some(m) = self.table.get_mut(&name) {
                        if m.status == MemberStatus::Failed {
                            m.status = MemberStatus::Left;
                        } else if m.status == MemberStatus::Alive {
                            m.status = MemberStatus::Leaving;
                        }
                    }
                }
                Intent::ForceLeave { name, prune, .. } => self.apply_force_leave(&name, prune),
                Intent::UserEvent(msg) => {
                    self.event_clock.witness(msg.ltime);
                    // No receiver yet (an agent still starting) drops it.
                    let _ = self.user_events.send(msg);
                }
            }
        }
    }

    /// serf's `UserEvent`: stamp with the clock, check the size, move the
    /// clock on, then broadcast. Taking the broadcast in here queues the
    /// event for this agent too, as serf handles its own event locally.
    fn send_user_event(
        &mut self,
        name: String,
        payload: Vec<u8>,
        wire_len: usize,
        rt: &mut foca::AccumulatingRuntime<MemberId>,
    ) -> Result<u64, UserEventError> {
        let ltime = self.event_clock.time();
        user_event::check_size(ltime, &name, wire_len)?;
        self.event_clock.increment();
        let intent = Intent::UserEvent(UserEventMsg {
            ltime,
            name,
            payload,
        });
        let bytes = postcard::to_allocvec(&intent).map_err(|_| UserEventError::TooLarge)?;
        if let Err(e) = self.foca.add_broadcast(&bytes) {
            tracing::warn!("gossip: cannot broadcast a user event: {e}");
            return Err(UserEventError::TooLarge);
        }
        // Send it now rather than wait for the next gossip round.
        if let Err(e) = self.foca.broadcast(&mut *rt) {
            tracing::debug!("gossip: {e}");
        }
        Ok(ltime)
    }

    fn apply_force_leave(&mut self, name: &str, prune: bool) {
        if prune {
            self.table.remove(name);
            return;
        }
        if let Some(m) = self.table.get_mut(name) {
            if m.status != MemberStatus::Alive {
                m.status = MemberStatus::Left;
            }
        }
    }

    /// Re-derives foca's settings when the cluster has doubled or halved
    /// since they were last set: how many times an update is retransmitted
    /// grows with the log of the cluster size, so updates still reach every
    /// member of thousands (as memberlist scales its retransmit limit).
    fn resize(&mut self) {
        let n = (self.table.len() + 1).max(5);
        if n < self.sized_for * 2 && n * 2 > self.sized_for {
            return;
        }
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        match self.foca.set_config(foca_config(self.pool, n32)) {
            Ok(()) => {
                tracing::debug!(members = n, "gossip: settings resized for the cluster");
                self.sized_for = n;
            }
            Err(e) => tracing::warn!("gossip: cannot resize settings: {e}"),
        }
    }

    fn publish(&self, my_status: MemberStatus) {
        let mut table = self.table.clone();
        let mut me = self.foca.identity().clone();
        me.addr = self.me.addr;
        table.insert(
            me.name.clone(),
            MemberInfo {
                id: me,
                status: my_status,
            },
        );
        self.members_tx.send_if_modified(|cur| {
            if **cur != table {
                *cur = Arc::new(table);
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(name: &str, port: u16) -> MemberId {
        MemberId {
            name: name.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            node_id: uuid::Uuid::new_v4().to_string(),
            server: true,
            dc: "dc1".into(),
            rpc_port: 8300,
            http_port: 8500,
            version: "test".into(),
            bootstrap_expect: 0,
            started_ms: now_ms(),
            bump: 0,
        }
    }

    fn free_udp() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    async fn start(name: &str, key: Option<&str>) -> Gossip {
        let port = free_udp();
        let id = ident(name, port);
        Gossip::start(GossipConfig {
            bind: id.addr,
            identity: id,
            keyring: key.map(|k| Keyring::new(crypto::Key::from_base64(k).unwrap())),
            pool: Pool::Lan,
            shared_keyring: None,
            keyring_file: None,
        })
        .await
        .unwrap()
    }

    async fn wait_status(g: &Gossip, name: &str, want: MemberStatus, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if g.members().get(name).map(|m| m.status) == Some(want) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn join_see_each_other_and_leave() {
        let a = start("a", None).await;
        let b = start("b", None).await;
        let joined = b
            .join(&[a.identity.addr], Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(joined, 1);
        assert!(wait_status(&a, "b", MemberStatus::Alive, 3).await);
        assert!(wait_status(&b, "a", MemberStatus::Alive, 3).await);
        b.leave().await.unwrap();
        assert!(
            wait_status(&a, "b", MemberStatus::Left, 5).await,
            "{:?}",
            a.members()
        );
    }

    #[tokio::test]
    async fn wrong_key_cannot_join() {
        let key = crypto::keygen();
        let a = start("a", Some(&key)).await;
        let c = start("c", Some(&crypto::keygen())).await;
        let n = c
            .join(&[a.identity.addr], Duration::from_millis(1500))
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert!(!a.members().contains_key("c"));
        let d = start("d", None).await;
        assert_eq!(
            d.join(&[a.identity.addr], Duration::from_millis(1000))
                .await
                .unwrap(),
            0
        );
        let b = start("b", Some(&key)).await;
        assert_eq!(
            b.join(&[a.identity.addr], Duration::from_secs(3))
                .await
                .unwrap(),
            1
        );
    }

    fn all_alive(agents: &[&Gossip]) -> bool {
        agents.iter().all(|g| {
            let t = g.members();
            t.len() == agents.len() && t.values().all(|m| m.status == MemberStatus::Alive)
        })
    }

    /// Install, use, remove across three members: every step reaches all
    /// of them, membership never breaks, and the old key is then useless.
    #[tokio::test]
    async fn a_rotation_reaches_every_member_and_keeps_them_alive() {
        let k1 = crypto::keygen();
        let a = start("a", Some(&k1)).await;
        let b = start("b", Some(&k1)).await;
        let c = start("c", Some(&k1)).await;
        for g in [&b, &c] {
            g.join(&[a.identity.addr], Duration::from_secs(3))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_alive(&[&a, &b, &c]) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(all_alive(&[&a, &b, &c]));

        let old = crypto::Key::from_base64(&k1).unwrap();
        let new = crypto::Key::from_base64(&crypto::keygen()).unwrap();
        let raw = new.raw().to_vec();
        // Each step asked of a different member: any member can ask.
        for (asker, op) in [
            (&a, KeyOp::Install(raw.clone())),
            (&b, KeyOp::Use(raw.clone())),
            (&c, KeyOp::Remove(old.raw().to_vec())),
        ] {
            let r = asker.key_operation(op.clone()).await;
            assert_eq!((r.error, r.num_resp, r.num_nodes), (None, 3, 3), "{op:?}");
            assert!(all_alive(&[&a, &b, &c]), "after {op:?}");
        }
        let r = a.key_operation(KeyOp::List).await;
        assert_eq!(r.keys, BTreeMap::from([(new.to_base64(), 3)]));
        assert_eq!(r.primary_keys, BTreeMap::from([(new.to_base64(), 3)]));
        let r = a.key_operation(KeyOp::Remove(raw.clone())).await;
        assert_eq!(r.error.as_deref(), Some("3/3 nodes reported failure"));
        assert_eq!(r.messages.len(), 3);

        // Several probe rounds later everyone is still alive, and an agent
        // that only has the old key cannot join.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(all_alive(&[&a, &b, &c]));
        let stale = start("stale", Some(&k1)).await;
        let n = stale
            .join(&[a.identity.addr], Duration::from_millis(1500))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }

    /// Encrypted gossip: the pings still reach the peer, its pongs come
    /// back, and both agents' coordinates leave the fresh one.
    #[tokio::test]
    async fn pings_move_both_agents_coordinates() {
        let key = crypto::keygen();
        let a = start("a", Some(&key)).await;
        let b = start("b", Some(&key)).await;
        b.join(&[a.identity.addr], Duration::from_secs(3))
            .await
            .unwrap();
        let fresh = crate::coordinate::Coordinate::new(&crate::coordinate::Config::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        let settled = |g: &Gossip| g.coordinate().error < fresh.error;
        while !(settled(&a) && settled(&b)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for g in [&a, &b] {
            let c = g.coordinate();
            assert!(c.error < fresh.error, "{c:?}");
            assert!(c.vec != fresh.vec && c.is_valid(), "{c:?}");
        }
    }

    /// A user event reaches every member once, the sender included, with
    /// the sender's Lamport time; the receivers' clocks move past it.
    #[tokio::test]
    async fn a_user_event_reaches_every_member_once() {
        let a = start("a", None).await;
        let b = start("b", None).await;
        let c = start("c", None).await;
        for g in [&b, &c] {
            g.join(&[a.identity.addr], Duration::from_secs(3))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !all_alive(&[&a, &b, &c]) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut rxs = [a.user_events(), b.user_events(), c.user_events()];
        let t1 = b
            .user_event("consul:event:x".into(), b"one".to_vec(), 10)
            .await
            .unwrap();
        assert_eq!(t1, 1);
        for rx in &mut rxs {
            let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
                .await
                .expect("delivered")
                .unwrap();
            assert_eq!((got.ltime, got.payload.as_slice()), (1, &b"one"[..]));
        }
        // The next event, from another member, is later in Lamport time,
        // and nothing was delivered twice.
        let t2 = c
            .user_event("consul:event:x".into(), b"two".to_vec(), 10)
            .await
            .unwrap();
        assert_eq!(t2, 2);
        for rx in &mut rxs {
            let got = tokio::time::timeout(Duration::from_secs(3), rx.recv())
                .await
                .expect("delivered")
                .unwrap();
            assert_eq!(got.payload, b"two");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for rx in &mut rxs {
            assert!(rx.try_recv().is_err(), "delivered twice");
        }
        assert_eq!(
            a.user_event("n".into(), vec![], 600).await,
            Err(UserEventError::TooLarge)
        );
    }

    #[test]
    fn drops_are_logged_at_most_every_ten_seconds() {
        let mut log = DropLog::new();
        let t0 = Instant::now();
        assert!(log.note(t0));
        assert_eq!(log.take_unlogged(), 0);
        for i in 1..=5 {
            assert!(!log.note(t0 + Duration::from_secs(i)));
        }
        assert!(log.note(t0 + Duration::from_secs(11)));
        assert_eq!(log.take_unlogged(), 5);
    }

    #[tokio::test]
    async fn name_conflict_is_reported_to_the_newer_agent() {
        let a = start("same", None).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = start("same", None).await;
        let _ = b.join(&[a.identity.addr], Duration::from_secs(2)).await;
        let mut rx = b.conflicts();
        let got = tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|c| c.is_some())).await;
        let msg = got.expect("conflict reported").unwrap().clone().unwrap();
        assert!(msg.contains("Names must be unique"), "{msg}");
        assert!(
            a.conflicts().borrow().is_none(),
            "the older agent keeps its name"
        );
    }
}
