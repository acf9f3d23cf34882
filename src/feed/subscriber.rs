//! The client agent's side of the subscription feed: keeps the agent's
//! view of the catalog in step with a server, fails over to another
//! server when its server goes, and never lets the view move backwards.

use super::{Frame, Refusal, Subscribe, DEAD_AFTER, VERSION};
use crate::catalog::snapshot::CatalogSnapshot;
use crate::catalog::{Catalog, LogPos};
use crate::consensus::forward::ViewStatus;
use crate::consensus::servers::ServerList;
use crate::rpc::{frame, Dialer, Protocol};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::BufReader;
use tokio::sync::watch;

/// A leader that turned this agent away is tried last for this long.
const AVOID_LEADER: Duration = Duration::from_secs(60);
/// How long every server may report being behind this view before the
/// view accepts a full resync from one of them anyway (the servers were
/// rebuilt from scratch while this agent kept running).
const ALL_BEHIND_GIVE_UP: Duration = Duration::from_secs(30);
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Subscriber {
    pub view: Arc<Catalog>,
    pub servers: Arc<ServerList>,
    pub status: Arc<ViewStatus>,
    /// How connections to servers are made.
    pub dialer: Dialer,
    pub node: String,
}

#[derive(Debug)]
enum End {
    Moved,
    Refused(Refusal),
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("dial: {0}")]
    Dial(String),
    #[error("no frame for {0:?}")]
    Silent(Duration),
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("entries from {got} do not follow the view's index {have}")]
    Gap { have: u64, got: u64 },
    #[error("snapshot at {got} is behind the view's index {have}")]
    Backwards { have: u64, got: u64 },
    #[error("malformed snapshot: {0}")]
    Snapshot(String),
    #[error("{0}")]
    Packed(super::UnpackError),
    #[error("state store: {0}")]
    Store(String),
}

/// Chunks of a snapshot being received.
struct Incoming {
    pos: LogPos,
    total: u64,
    data: Vec<u8>,
}

impl Subscriber {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut all_behind_since: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let candidates = self.servers.for_feed();
            let mut behind = 0;
            let mut tried = 0;
            for (i, addr) in candidates.iter().enumerate() {
                tried += 1;
                // The last candidate of a round takes a leader too: this
                // agent may reach no other server.
                let accept_leader = i + 1 == candidates.len();
                let force = all_behind_since.is_some_and(|t| t.elapsed() >= ALL_BEHIND_GIVE_UP);
                let started = Instant::now();
                let outcome = tokio::select! {
                    r = self.session(addr, accept_leader, force) => r,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(100);
                }
                match outcome {
                    Ok(End::Moved) => {
                        tracing::info!(server = %addr, "feed: asked to move to another server");
                        self.servers.avoid_for_feed(addr, AVOID_LEADER);
                    }
                    Ok(End::Refused(Refusal::Leader)) => {
                        self.servers.avoid_for_feed(addr, AVOID_LEADER);
                    }
                    Ok(End::Refused(Refusal::Behind { applied })) => {
                        tracing::debug!(server = %addr, applied, "feed: server is behind this view");
                        behind += 1;
                    }
                    Ok(End::Refused(r)) => {
                        tracing::warn!(server = %addr, "feed: subscription refused: {r:?}");
                        self.servers.failed(addr);
                    }
                    Err(e) => {
                        tracing::info!(server = %addr, "feed: subscription lost: {e}");
                        self.servers.failed(addr);
                    }
                }
            }
            if tried > 0 && behind == tried {
                all_behind_since.get_or_insert_with(Instant::now);
            } else if behind == 0 {
                all_behind_since = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One subscription to `addr`, until it ends.
    async fn session(
        &self,
        addr: &str,
        accept_leader: bool,
        force: bool,
    ) -> Result<End, SessionError> {
        let view = self.view.clone();
        let applied = tokio::task::spawn_blocking(move || view.applied())
            .await
            .map_err(|e| SessionError::Store(e.to_string()))?
            .map_err(|e| SessionError::Store(e.to_string()))?;
        let from = (self.view.is_ready() && !force).then_some(applied);
        let sock = tokio::time::timeout(DIAL_TIMEOUT, self.dialer.dial(addr, Protocol::Feed))
            .await
            .map_err(|_| SessionError::Dial("timeout".into()))?
            .map_err(|e| SessionError::Dial(e.to_string()))?;
        let (rd, mut wr) = tokio::io::split(sock);
        let mut rd = BufReader::new(rd);
        let sub = Subscribe {
            version: VERSION,
            node: self.node.clone(),
            from,
            accept_leader,
        };
        frame::write_frame(&mut wr, &sub).await?;
        let mut session = Session {
            addr,
            applied,
            incoming: None,
            announced: false,
            force,
        };
        loop {
            let payload = tokio::time::timeout(DEAD_AFTER, frame::read_raw(&mut rd))
                .await
                .map_err(|_| SessionError::Silent(DEAD_AFTER))??;
            let f: Frame = match frame::decode(&payload) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(server = %addr, "feed: dropping connection: {e}");
                    return Err(e.into());
                }
            };
            if !session.announced && !matches!(f, Frame::Refused(_)) {
                session.announced = true;
                match from {
                    Some(p) => {
                        tracing::info!(server = %addr, index = p.index, "feed: subscribed, resuming")
                    }
                    None => tracing::info!(server = %addr, "feed: subscribed, syncing in full"),
                }
            }
            match f {
                Frame::Batch(entries) => self.on_batch(&mut session, entries).await?,
                Frame::Packed(data) => {
                    let entries = super::unpack(&data).map_err(|e| {
                        tracing::warn!(server = %addr, "feed: dropping connection: {e}");
                        SessionError::Packed(e)
                    })?;
                    self.on_batch(&mut session, entries).await?
                }
                Frame::Snapshot {
                    pos,
                    total,
                    offset,
                    data,
                } => {
                    self.on_snapshot_chunk(&mut session, pos, total, offset, data)
                        .await?
                }
                Frame::Heartbeat(state) => {
                    let caught_up = state.applied.index <= session.applied.index;
                    self.status
                        .heard(state.leader, state.last_contact_ms, caught_up);
                }
                Frame::Refused(r) => return Ok(End::Refused(r)),
                Frame::Moved => return Ok(End::Moved),
            }
        }
    }

    /// Applies the entries after the view's position.
    async fn on_batch(
        &self,
        session: &mut Session<'_>,
        entries: Vec<super::FeedEntry>,
    ) -> Result<(), SessionError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let (first, last) = (first.pos.index, last.pos);
        if first > session.applied.index + 1 {
            return Err(SessionError::Gap {
                have: session.applied.index,
                got: first,
            });
        }
        if last.index <= session.applied.index {
            return Ok(());
        }
        let view = self.view.clone();
        tokio::task::spawn_blocking(move || {
            view.apply_entries(entries.iter().map(|e| (e.pos, e.cmd.as_ref())), |_, _| {
                Ok(())
            })
        })
        .await
        .map_err(|e| SessionError::Store(e.to_string()))?
        .map_err(|e| SessionError::Store(e.to_string()))?;
        session.applied = last;
        self.view.mark_ready();
        self.status.current();
        Ok(())
    }

    /// Collects a snapshot's chunks; the last one replaces the view.
    async fn on_snapshot_chunk(
        &self,
        session: &mut Session<'_>,
        pos: LogPos,
        total: u64,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), SessionError> {
        let inc = session.incoming.get_or_insert_with(|| Incoming {
            pos,
            total,
            data: Vec::with_capacity(total.min(256 << 20) as usize),
        });
        if inc.pos != pos || inc.total != total || offset != inc.data.len() as u64 {
            return Err(SessionError::Snapshot("chunks out of order".into()));
        }
        inc.data.extend_from_slice(&data);
        if (inc.data.len() as u64) < inc.total {
            return Ok(());
        }
        let Some(done) = session.incoming.take() else {
            return Ok(());
        };
        if done.pos.index < session.applied.index && self.view.is_ready() && !session.force {
            return Err(SessionError::Backwards {
                have: session.applied.index,
                got: done.pos.index,
            });
        }
        let view = self.view.clone();
        tokio::task::spawn_blocking(move || {
            let snap: CatalogSnapshot = bincode::deserialize(&done.data)
                .map_err(|e| SessionError::Snapshot(e.to_string()))?;
            view.restore(done.pos, &snap, |_, _| Ok(()))
                .map_err(|e| SessionError::Store(e.to_string()))
        })
        .await
        .map_err(|e| SessionError::Store(e.to_string()))??;
        tracing::info!(server = %session.addr, index = pos.index, "feed: view synced in full");
        session.applied = pos;
        self.status.current();
        Ok(())
    }
}

/// One subscription's progress.
struct Session<'a> {
    addr: &'a str,
    /// The view's position.
    applied: LogPos,
    incoming: Option<Incoming>,
    announced: bool,
    /// Accept a snapshot behind the view (every server was behind it).
    force: bool,
}
