//! The server side of the subscription feed (see the module docs of
//! [`crate::feed`]).

use super::{
    FeedEntry, FrameOut, Refusal, ServerState, Subscribe, HEARTBEAT, SNAPSHOT_CHUNK, VERSION,
};
use crate::catalog::command::{Command, KvOp, TxnOp};
use crate::catalog::{Catalog, LogPos};
use crate::rpc::frame::{self, FrameError};
use crate::rpc::listener::ConnHandler;
use crate::rpc::RpcStream;
use bytes::Bytes;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::WriteHalf;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::watch;

/// The ring keeps at most this many bytes of entries in memory (estimated
/// by [`approx_size`]; the encoded copy made for subscribers comes on top) ...
const RING_BYTES: usize = 64 << 20;
/// ... and at most this many entries: at 2,000 writes/s, 100 s of history,
/// so a client that fails over from another server resumes without a resync.
const RING_ENTRIES: usize = 200_000;
/// One batch frame carries at most about this many bytes of commands; a
/// bigger batch goes out as several frames.
const FRAME_BYTES: usize = 8 << 20;
/// How long a server with a view behind the subscriber's waits to catch up.
const BEHIND_WAIT: Duration = Duration::from_secs(5);
/// A write to a subscriber that takes longer than this ends the subscription.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The feed's clock ticks (see [`Publisher::tick_loop`]) at most every
/// this much per subscriber on this server, so a busy server sends about
/// 2,500 frames a second in all however many subscribe (10 subscribers: a
/// tick every 4 ms; 500: every 200 ms) ...
const PACE_PER_SUBSCRIBER: Duration = Duration::from_micros(400);
/// ... up to this.
const PACE_MAX: Duration = Duration::from_millis(200);
/// Subscribers told to move go over this window, not all at once.
const MOVE_SPREAD: Duration = Duration::from_secs(2);
/// A full-catalog encoding is shared by resyncs for this long.
const SNAPSHOT_REUSE: Duration = Duration::from_secs(2);
/// The feed runtime's threads run at this nice value: when a server is
/// short of CPU, applying and acknowledging raft entries wins over fanning
/// them out, and subscribers get bigger, later frames instead.
const FEED_NICE: i32 = 19;

/// The runtime subscriptions are served on: one worker thread (plus
/// blocking threads for full-catalog encodings) at a lower scheduling
/// priority than the agent's own.
pub fn feed_runtime() -> std::io::Result<FeedRuntime> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("feed")
        .on_thread_start(|| {
            // Linux keeps a nice value per thread; this one only.
            // SAFETY: gettid and setpriority touch no memory of ours.
            unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, FEED_NICE);
            }
        })
        .enable_all()
        .build()?;
    Ok(FeedRuntime(Some(rt)))
}

/// The feed's runtime, shut down without waiting when dropped. The agent
/// owns it from async code, where dropping a plain `Runtime` panics (it
/// would block on its worker threads); a failed start drops it there.
pub struct FeedRuntime(Option<tokio::runtime::Runtime>);

impl FeedRuntime {
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("present until dropped").handle()
    }
}

impl Drop for FeedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What the feed needs to know about the server it runs on.
pub trait Serving: Send + Sync + 'static {
    /// For heartbeats.
    fn state(&self) -> ServerState;
    /// Whether to turn a new subscription away (this server leads and
    /// another alive server can take it).
    fn turn_away(&self) -> bool;
}

/// What one more batch costs in memory besides its entries: the shared
/// `Batch` and its entry vector's allocation.
const BATCH_OVERHEAD: usize = std::mem::size_of::<Batch>() + 64;

/// A rough size of an entry in memory, for the ring's budget: the entry
/// itself (a `Command` is as big as its largest variant, a registration,
/// whatever it holds) and what its command keeps on the heap.
fn approx_size(cmd: &Option<Command>) -> usize {
    fn kv(op: &KvOp) -> usize {
        match op {
            KvOp::Set { key, value, .. }
            | KvOp::Cas { key, value, .. }
            | KvOp::Lock { key, value, .. }
            | KvOp::Unlock { key, value, .. } => key.len() + value.len(),
            KvOp::Delete { key } | KvOp::DeleteCas { key, .. } => key.len(),
            KvOp::DeleteTree { prefix } => prefix.len(),
        }
    }
    std::mem::size_of::<FeedEntry>()
        + 32
        + match cmd {
            None => 0,
            Some(Command::Kv(op)) => kv(op),
            Some(Command::Txn(ops)) => ops
                .iter()
                .map(|op| match op {
                    TxnOp::Write(w) => kv(w),
                    TxnOp::Node { .. } | TxnOp::Service { .. } | TxnOp::Check { .. } => 1024,
                    _ => 64,
                })
                .sum(),
            Some(Command::Register(_)) => 1024,
            // The whole state: its encoded size is close to what it holds.
            Some(Command::Restore(snap)) => bincode::serialized_size(snap)
                .map(|n| n as usize)
                .unwrap_or(crate::snapshot::MAX_STATE),
            Some(_) => 256,
        }
}

/// One apply batch of the state machine, as published.
pub struct Batch {
    entries: Vec<FeedEntry>,
    approx: usize,
    /// The encoded frames, made the first time a subscriber needs them.
    encoded: OnceLock<Result<Bytes, String>>,
}

impl Batch {
    fn first(&self) -> u64 {
        self.entries.first().map(|e| e.pos.index).unwrap_or(0)
    }

    fn last(&self) -> LogPos {
        self.entries.last().map(|e| e.pos).unwrap_or_default()
    }

    fn term_of(&self, index: u64) -> Option<u64> {
        let i = index.checked_sub(self.first())? as usize;
        self.entries.get(i).map(|e| e.pos.term)
    }

    /// The batch as one or more complete frames.
    fn frames(&self) -> Result<Bytes, String> {
        self.encoded
            .get_or_init(|| {
                let mut out = Vec::new();
                let mut start = 0;
                let mut size = 0;
                for (i, e) in self.entries.iter().enumerate() {
                    size += approx_size(&e.cmd);
                    let end = i + 1;
                    if size >= FRAME_BYTES || end == self.entries.len() {
                        let chunk = &self.entries[start..end];
                        let f = match super::pack(chunk) {
                            Some(packed) => frame::encode(&FrameOut::Packed(&packed)),
                            None => frame::encode(&FrameOut::Batch(chunk)),
                        }
                        .map_err(|e| e.to_string())?;
                        out.extend_from_slice(&f);
                        start = end;
                        size = 0;
                    }
                }
                Ok(Bytes::from(out))
            })
            .clone()
    }
}

/// Recent batches, contiguous in index.
struct Ring {
    /// The position just before the first batch.
    base: LogPos,
    batches: VecDeque<Arc<Batch>>,
    bytes: usize,
    entries: usize,
}

impl Ring {
    fn last(&self) -> LogPos {
        self.batches.back().map(|b| b.last()).unwrap_or(self.base)
    }
}

/// Where a subscriber's position stands against the ring.
#[derive(Debug, PartialEq, Eq)]
enum Located {
    /// In the ring's history: stream from there.
    Known,
    /// Past what this server has applied.
    Ahead,
    /// Older than the ring, or of another history: resync in full.
    Unknown,
}

pub struct Publisher {
    catalog: Arc<Catalog>,
    ring: parking_lot::Mutex<Ring>,
    /// The last published index; subscriber tasks wait on it.
    latest: watch::Sender<u64>,
    /// Bumped to send every current subscriber elsewhere.
    moves: watch::Sender<u64>,
    serving: OnceLock<Arc<dyn Serving>>,
    subscribers: AtomicUsize,
    closing: watch::Sender<bool>,
    /// The last full-catalog encoding.
    snapshot: tokio::sync::Mutex<Option<CachedSnapshot>>,
    /// See [`Publisher::tick_loop`].
    ticks: watch::Sender<Arc<Tick>>,
    tick_started: OnceLock<()>,
}

/// One tick of the feed's clock.
struct Tick {
    /// The last published index when it ticked.
    latest: u64,
    /// The server's state as a ready heartbeat frame.
    heartbeat: Bytes,
}

struct CachedSnapshot {
    pos: LogPos,
    made: Instant,
    body: Arc<Vec<u8>>,
}

impl Publisher {
    /// Starts with an empty ring at the catalog's current position.
    pub fn new(catalog: Arc<Catalog>) -> Arc<Publisher> {
        let base = catalog.applied().unwrap_or_default();
        Arc::new(Publisher {
            catalog,
            ring: parking_lot::Mutex::new(Ring {
                base,
                batches: VecDeque::new(),
                bytes: 0,
                entries: 0,
            }),
            latest: watch::channel(base.index).0,
            moves: watch::channel(0).0,
            serving: OnceLock::new(),
            subscribers: AtomicUsize::new(0),
            closing: watch::channel(false).0,
            snapshot: tokio::sync::Mutex::new(None),
            ticks: watch::channel(Arc::new(Tick {
                latest: base.index,
                heartbeat: Bytes::new(),
            }))
            .0,
            tick_started: OnceLock::new(),
        })
    }

    /// Tells the feed about its server (once, before it serves anyone).
    pub fn set_serving(&self, serving: Arc<dyn Serving>) {
        let _ = self.serving.set(serving);
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Called by the state machine after a batch committed: costs a lock
    /// and a push, nothing per subscriber.
    pub fn publish(&self, entries: Vec<FeedEntry>) {
        let Some(last) = entries.last().map(|e| e.pos) else {
            return;
        };
        // Index 0 is raft's initial membership entry: a position of 0 means
        // "nothing applied" and is the same as having applied it.
        let first = entries[0].pos.index.max(1);
        let approx = BATCH_OVERHEAD + entries.iter().map(|e| approx_size(&e.cmd)).sum::<usize>();
        let n = entries.len();
        let batch = Arc::new(Batch {
            entries,
            approx,
            encoded: OnceLock::new(),
        });
        {
            let mut ring = self.ring.lock();
            if first != ring.last().index + 1 {
                // Not contiguous (cannot happen with one state machine):
                // start over so nobody streams across the gap.
                tracing::warn!(
                    expected = ring.last().index + 1,
                    got = first,
                    "feed: non-contiguous batch, resetting the ring"
                );
                ring.batches.clear();
                ring.bytes = 0;
                ring.entries = 0;
                ring.base = LogPos {
                    index: first.saturating_sub(1),
                    term: 0,
                };
            }
            ring.bytes += approx;
            ring.entries += n;
            ring.batches.push_back(batch);
            while ring.batches.len() > 1 && (ring.bytes > RING_BYTES || ring.entries > RING_ENTRIES)
            {
                if let Some(old) = ring.batches.pop_front() {
                    ring.bytes -= old.approx;
                    ring.entries -= old.entries.len();
                    ring.base = old.last();
                }
            }
            crate::metrics::feed_ring(ring.entries, ring.bytes);
        }
        self.latest.send_replace(last.index);
    }

    /// Called after a snapshot replaced the catalog: history before `pos`
    /// is gone, so subscribers behind it resync.
    pub fn reset(&self, pos: LogPos) {
        {
            let mut ring = self.ring.lock();
            ring.batches.clear();
            ring.bytes = 0;
            ring.entries = 0;
            ring.base = pos;
            crate::metrics::feed_ring(0, 0);
        }
        self.latest.send_replace(pos.index);
    }

    /// Sends every current subscriber to another server (this one just
    /// became leader), spread over [`MOVE_SPREAD`].
    pub fn move_subscribers(&self) {
        self.moves.send_modify(|n| *n += 1);
    }

    /// Stops serving: subscribers are told to move on.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn locate(&self, p: LogPos) -> Located {
        let ring = self.ring.lock();
        if p.index > ring.last().index {
            return Located::Ahead;
        }
        if p.index < ring.base.index {
            return Located::Unknown;
        }
        let term = if p.index == ring.base.index {
            Some(ring.base.term)
        } else {
            ring.batches
                .iter()
                .find(|b| b.first() <= p.index && p.index <= b.last().index)
                .and_then(|b| b.term_of(p.index))
        };
        if term == Some(p.term) {
            Located::Known
        } else {
            Located::Unknown
        }
    }

    /// Batches after `index`; `None` when the ring no longer reaches back there.
    fn since(&self, index: u64) -> Option<Vec<Arc<Batch>>> {
        let ring = self.ring.lock();
        if index < ring.base.index {
            return None;
        }
        Some(
            ring.batches
                .iter()
                .filter(|b| b.last().index > index)
                .cloned()
                .collect(),
        )
    }

    fn pace(&self) -> Duration {
        (PACE_PER_SUBSCRIBER * self.subscribers() as u32).min(PACE_MAX)
    }

    fn serving_state(&self) -> ServerState {
        match self.serving.get() {
            Some(s) => s.state(),
            None => ServerState {
                applied: self.ring.lock().last(),
                leader: None,
                last_contact_ms: 0,
            },
        }
    }

    /// The connection handler for [`crate::rpc::Protocol::Feed`]. Each
    /// subscription runs on `runtime` (see [`feed_runtime`]), away from the
    /// threads that apply and acknowledge raft entries.
    pub fn handler(self: &Arc<Self>, runtime: tokio::runtime::Handle) -> impl ConnHandler {
        if self.tick_started.set(()).is_ok() {
            runtime.spawn(self.clone().tick_loop());
        }
        let me = self.clone();
        move |sock: RpcStream, peer: SocketAddr| -> BoxFuture<'static, ()> {
            let me = me.clone();
            let runtime = runtime.clone();
            Box::pin(async move {
                let task = runtime.spawn(async move {
                    // Re-register the socket with the feed runtime's reactor.
                    let sock = match sock.rebind() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(%peer, "feed: {e}");
                            return;
                        }
                    };
                    me.subscribers.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = me.serve(sock, peer).await {
                        tracing::debug!(%peer, "feed: subscription ended: {e}");
                    }
                    me.subscribers.fetch_sub(1, Ordering::Relaxed);
                });
                let _ = task.await;
            })
        }
    }

    async fn serve(self: &Arc<Self>, sock: RpcStream, peer: SocketAddr) -> Result<(), FeedEnd> {
        let (rd, wr) = tokio::io::split(sock);
        // A subscriber sends one small frame; a big buffer per subscription
        // would only cost memory.
        let mut rd = BufReader::with_capacity(1024, rd);
        let mut out = Out { wr };
        let sub: Subscribe = match tokio::time::timeout(
            crate::rpc::listener::FIRST_BYTE_TIMEOUT,
            frame::read_frame(&mut rd),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.is_closed() => return Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(%peer, "feed: dropping connection: {e}");
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(%peer, "feed: dropping connection: no subscription request");
                return Ok(());
            }
        };
        if sub.version != VERSION {
            return out
                .send_frame(&FrameOut::Refused(&Refusal::Version { supported: VERSION }))
                .await;
        }
        let closing = *self.closing.borrow();
        if closing {
            return out
                .send_frame(&FrameOut::Refused(&Refusal::ShuttingDown))
                .await;
        }
        if !sub.accept_leader && self.serving.get().is_some_and(|s| s.turn_away()) {
            return out.send_frame(&FrameOut::Refused(&Refusal::Leader)).await;
        }
        tracing::debug!(%peer, node = %sub.node, from = ?sub.from, "feed: new subscription");

        // Anything the subscriber sends after its request breaks the
        // protocol; its close ends the subscription.
        let (gone_tx, mut gone) = tokio::sync::oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            match frame::read_raw(&mut rd).await {
                Err(e) if e.is_closed() => {}
                Err(e) => tracing::warn!(%peer, "feed: dropping connection: {e}"),
                Ok(_) => {
                    tracing::warn!(%peer, "feed: dropping connection: unexpected frame from subscriber")
                }
            }
            let _ = gone_tx.send(());
        });
        let result = self.stream(&mut out, sub, &mut gone).await;
        reader.abort();
        result
    }

    /// Positions the subscriber, then streams until it goes or is moved.
    async fn stream(
        self: &Arc<Self>,
        out: &mut Out,
        sub: Subscribe,
        gone: &mut tokio::sync::oneshot::Receiver<()>,
    ) -> Result<(), FeedEnd> {
        let mut latest = self.latest.subscribe();
        let Some(mut pos) = self.position(out, sub.from, &mut latest).await? else {
            return Ok(());
        };
        let mut moves = self.moves.subscribe();
        moves.borrow_and_update();
        let mut closing = self.closing.subscribe();
        // The subscriber learns who leads at once, not after the first idle spell.
        let state = self.serving_state();
        out.send_frame(&FrameOut::Heartbeat(&state)).await?;
        let mut last_heartbeat = Instant::now();
        let mut last_sent = Instant::now();
        let mut ticks = self.ticks.subscribe();
        loop {
            enum Wake {
                Tick,
                Move,
                Close,
                Gone,
            }
            let wake = tokio::select! {
                r = ticks.changed() => if r.is_err() { Wake::Gone } else { Wake::Tick },
                // A subscriber that could reach no other server stays.
                r = moves.changed(), if !sub.accept_leader => {
                    if r.is_err() { Wake::Gone } else { Wake::Move }
                }
                r = closing.wait_for(|c| *c) => if r.is_err() { Wake::Gone } else { Wake::Close },
                _ = &mut *gone => Wake::Gone,
            };
            match wake {
                Wake::Tick => {}
                Wake::Move => return self.send_moved(out, gone).await,
                Wake::Close => return out.send_frame(&FrameOut::Moved).await,
                Wake::Gone => return Ok(()),
            }
            let tick = ticks.borrow_and_update().clone();
            if tick.latest > pos.index {
                let Some(batches) = self.since(pos.index) else {
                    pos = self.resync(out).await?;
                    continue;
                };
                if let Some(last) = batches.last().map(|b| b.last()) {
                    let mut frames = Vec::with_capacity(batches.len() + 1);
                    for b in &batches {
                        frames.push(b.frames().map_err(FeedEnd::Encode)?);
                    }
                    // A busy stream still carries the server's state now and then.
                    if last_heartbeat.elapsed() >= HEARTBEAT {
                        frames.push(tick.heartbeat.clone());
                        last_heartbeat = Instant::now();
                    }
                    out.send_all(&frames).await?;
                    pos = last;
                    last_sent = Instant::now();
                }
            } else if last_sent.elapsed() >= HEARTBEAT {
                out.write(&tick.heartbeat).await?;
                last_sent = Instant::now();
                last_heartbeat = last_sent;
            }
        }
    }

    /// The feed's one clock. While batches arrive it ticks every
    /// [`Publisher::pace`] (every subscriber then sends everything applied
    /// since its last frame, all of them in one burst on the feed's thread,
    /// which stays awake for it); when idle it ticks every [`HEARTBEAT`]
    /// (subscribers that sent nothing for that long send the heartbeat
    /// encoded here once).
    async fn tick_loop(self: Arc<Self>) {
        let mut latest = self.latest.subscribe();
        let mut last = Instant::now();
        loop {
            let _ = tokio::time::timeout(HEARTBEAT, latest.changed()).await;
            let wait = self.pace().saturating_sub(last.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            last = Instant::now();
            if self.subscribers() == 0 {
                continue;
            }
            let state = self.serving_state();
            let heartbeat = match frame::encode(&FrameOut::Heartbeat(&state)) {
                Ok(f) => Bytes::from(f),
                Err(e) => {
                    tracing::warn!("feed: cannot encode a heartbeat: {e}");
                    continue;
                }
            };
            let latest = *latest.borrow_and_update();
            self.ticks
                .send_replace(Arc::new(Tick { latest, heartbeat }));
        }
    }

    /// Where a new subscription starts: its own position if this server's
    /// ring has it, else a full resync; `None` when it was turned away
    /// because this replica is behind it.
    async fn position(
        &self,
        out: &mut Out,
        from: Option<LogPos>,
        latest: &mut watch::Receiver<u64>,
    ) -> Result<Option<LogPos>, FeedEnd> {
        let Some(from) = from else {
            return self.resync(out).await.map(Some);
        };
        match self.locate(from) {
            Located::Known => return Ok(Some(from)),
            Located::Unknown => return self.resync(out).await.map(Some),
            Located::Ahead => {}
        }
        // This replica is behind the subscriber: wait a little for it to
        // catch up, then send the subscriber elsewhere.
        let caught_up = tokio::time::timeout(BEHIND_WAIT, latest.wait_for(|i| *i >= from.index))
            .await
            .is_ok();
        match (caught_up, self.locate(from)) {
            (true, Located::Known) => Ok(Some(from)),
            (true, Located::Unknown) => self.resync(out).await.map(Some),
            _ => {
                let applied = *self.latest.borrow();
                out.send_frame(&FrameOut::Refused(&Refusal::Behind { applied }))
                    .await?;
                Ok(None)
            }
        }
    }

    async fn send_moved(
        &self,
        out: &mut Out,
        gone: &mut tokio::sync::oneshot::Receiver<()>,
    ) -> Result<(), FeedEnd> {
        let delay = Duration::from_millis(rand::random_range(0..MOVE_SPREAD.as_millis() as u64));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut *gone => return Ok(()),
        }
        out.send_frame(&FrameOut::Moved).await
    }

    /// The whole catalog, encoded. Subscribers that resync together (a
    /// server's clients failing over at once) share one encoding while its
    /// position is still in the ring and it is younger than
    /// [`SNAPSHOT_REUSE`]; everyone else gets a fresh one.
    async fn snapshot(&self) -> Result<(LogPos, Arc<Vec<u8>>), FeedEnd> {
        let mut cache = self.snapshot.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.made.elapsed() < SNAPSHOT_REUSE && self.locate(c.pos) == Located::Known {
                return Ok((c.pos, c.body.clone()));
            }
        }
        let catalog = self.catalog.clone();
        let (pos, body) = tokio::task::spawn_blocking(move || {
            let (pos, mut snap, ()) = catalog
                .dump(|_, _| Ok(()))
                .map_err(|e| FeedEnd::Store(e.to_string()))?;
            // ACL tokens carry secrets: client agents resolve tokens by
            // asking a server, never from their view.
            snap.acl = Default::default();
            snap.redact_query_tokens();
            let body = bincode::serialize(&snap).map_err(|e| FeedEnd::Encode(e.to_string()))?;
            Ok::<_, FeedEnd>((pos, Arc::new(body)))
        })
        .await
        .map_err(|e| FeedEnd::Store(e.to_string()))??;
        *cache = Some(CachedSnapshot {
            pos,
            made: Instant::now(),
            body: body.clone(),
        });
        Ok((pos, body))
    }

    /// Sends the whole catalog; returns the position it was taken at.
    async fn resync(&self, out: &mut Out) -> Result<LogPos, FeedEnd> {
        let (pos, body) = self.snapshot().await?;
        let total = body.len() as u64;
        let mut offset = 0usize;
        loop {
            let end = (offset + SNAPSHOT_CHUNK).min(body.len());
            out.send_frame(&FrameOut::Snapshot {
                pos,
                total,
                offset: offset as u64,
                data: &body[offset..end],
            })
            .await?;
            offset = end;
            if offset >= body.len() {
                break;
            }
        }
        Ok(pos)
    }
}

#[derive(Debug, thiserror::Error)]
enum FeedEnd {
    #[error("write: {0}")]
    Write(std::io::Error),
    #[error("write timed out")]
    Timeout,
    #[error("encode: {0}")]
    Encode(String),
    #[error("state store: {0}")]
    Store(String),
}

struct Out {
    wr: WriteHalf<RpcStream>,
}

impl Out {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), FeedEnd> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.wr.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(FeedEnd::Write(e)),
            Err(_) => Err(FeedEnd::Timeout),
        }
    }

    async fn send_frame(&mut self, f: &FrameOut<'_>) -> Result<(), FeedEnd> {
        let bytes = frame::encode(f).map_err(|e: FrameError| FeedEnd::Encode(e.to_string()))?;
        self.write(&bytes).await
    }

    /// Writes pre-encoded frames, several per syscall.
    async fn send_all(&mut self, frames: &[Bytes]) -> Result<(), FeedEnd> {
        if let [one] = frames {
            return self.write(one).await;
        }
        let mut buf =
            Vec::with_capacity(frames.iter().map(|f| f.len()).sum::<usize>().min(4 << 20));
        for f in frames {
            if !buf.is_empty() && buf.len() + f.len() > 4 << 20 {
                self.write(&buf).await?;
                buf.clear();
            }
            buf.extend_from_slice(f);
        }
        self.write(&buf).await
    }
}

/// Decodes frames the way a subscriber does (for tests).
#[cfg(test)]
pub(crate) fn decode_frames(mut bytes: &[u8]) -> Vec<super::Frame> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let f = match frame::decode(&bytes[4..4 + len]).unwrap() {
            super::Frame::Packed(p) => super::Frame::Batch(super::unpack(&p).unwrap()),
            other => other,
        };
        out.push(f);
        bytes = &bytes[4 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> FeedEntry {
        FeedEntry {
            pos: LogPos { index, term },
            cmd: Some(Command::Kv(KvOp::Set {
                key: format!("k{index}"),
                value: vec![0; 10],
                flags: 0,
            })),
        }
    }

    fn publisher() -> (tempfile::TempDir, Arc<Publisher>) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(Catalog::open(&dir.path().join("state")).unwrap());
        (dir, Publisher::new(catalog))
    }

    #[test]
    fn positions_are_located_by_index_and_term() {
        let (_dir, p) = publisher();
        p.publish(vec![entry(1, 1), entry(2, 1)]);
        p.publish(vec![entry(3, 2)]);
        assert_eq!(p.locate(LogPos { index: 0, term: 0 }), Located::Known);
        assert_eq!(p.locate(LogPos { index: 2, term: 1 }), Located::Known);
        assert_eq!(p.locate(LogPos { index: 3, term: 2 }), Located::Known);
        assert_eq!(
            p.locate(LogPos { index: 2, term: 7 }),
            Located::Unknown,
            "another history"
        );
        assert_eq!(p.locate(LogPos { index: 4, term: 2 }), Located::Ahead);
        let since = p.since(1).unwrap();
        assert_eq!(since.len(), 2, "the batch holding 2 and the next");
        assert!(p.since(3).unwrap().is_empty());
        // After a snapshot install the older history is gone.
        p.reset(LogPos { index: 10, term: 3 });
        assert_eq!(p.locate(LogPos { index: 3, term: 2 }), Located::Unknown);
        assert!(p.since(3).is_none());
        assert_eq!(p.locate(LogPos { index: 10, term: 3 }), Located::Known);
    }

    #[test]
    fn big_batches_go_out_as_several_frames() {
        let (_dir, p) = publisher();
        let big = |index| FeedEntry {
            pos: LogPos { index, term: 1 },
            cmd: Some(Command::Kv(KvOp::Set {
                key: "k".into(),
                value: vec![7; 3 << 20],
                flags: 0,
            })),
        };
        p.publish((1..=5).map(big).collect());
        let batch = p.since(0).unwrap().pop().unwrap();
        let frames = decode_frames(&batch.frames().unwrap());
        assert!(frames.len() >= 2, "{} frames", frames.len());
        let indexes: Vec<u64> = frames
            .iter()
            .flat_map(|f| match f {
                crate::feed::Frame::Batch(es) => es.iter().map(|e| e.pos.index).collect::<Vec<_>>(),
                _ => vec![],
            })
            .collect();
        assert_eq!(indexes, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn small_writes_are_held_within_the_ring_s_byte_budget() {
        // Tiny KV writes, one per batch as on a lightly loaded server: each
        // still takes a whole entry (a `Command` is as big as a
        // registration) and a batch in memory, so the byte budget, not the
        // entry count, must be what bounds them.
        let (_dir, p) = publisher();
        for i in 1..=RING_ENTRIES as u64 {
            p.publish(vec![entry(i, 1)]);
        }
        let ring = p.ring.lock();
        let held = ring.entries * std::mem::size_of::<FeedEntry>()
            + ring.batches.len() * std::mem::size_of::<Batch>();
        assert!(
            held <= RING_BYTES,
            "{} entries in {} batches take at least {held} bytes, over the {RING_BYTES} budget",
            ring.entries,
            ring.batches.len()
        );
    }

    #[test]
    fn the_ring_forgets_the_oldest_batches_first() {
        let (_dir, p) = publisher();
        let per = RING_ENTRIES / 4 + 1;
        let mut next = 1;
        for _ in 0..5 {
            p.publish((next..next + per as u64).map(|i| entry(i, 1)).collect());
            next += per as u64;
        }
        assert!(p.since(0).is_none(), "the first batches were dropped");
        assert!(p.since(next - 1).is_some());
        assert!(p.ring.lock().entries <= RING_ENTRIES);
    }
}
