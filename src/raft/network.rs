//! openraft's network over the RPC port ([`Protocol::Raft`]): one TCP
//! connection per peer, re-dialled after any error, one request at a time
//! (openraft sends to each peer in order). Remote raft errors come back
//! typed and are handed to openraft as such.
//!
//! Every AppendEntries a follower accepts (heartbeats included) is recorded
//! in [`Acks`]: the leader's lease for default reads is derived from them
//! (see `RaftNode::lease_holds`).

use super::{NodeId, TypeConfig};
use crate::rpc::{read_frame, write_frame, Protocol};
use crate::rpc::{Dialer, RpcStream};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Raft's messages on the wire. Frames are decoded once and handled at
/// once; boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
pub enum RaftRpc {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
}

/// When each follower last accepted this server's leadership: per peer,
/// the term of the AppendEntries it accepted and the instant before that
/// request was sent. A follower that accepts an AppendEntries of a
/// committed vote at `t` neither stands for election before
/// `t` + the election timeout nor votes for another candidate within its
/// leader lease, so no other leader can be elected by a quorum of such
/// followers before then.
#[derive(Clone, Default)]
pub struct Acks(Arc<parking_lot::Mutex<HashMap<NodeId, (u64, Instant)>>>);

impl Acks {
    /// Records that `peer` accepted a request of `term` sent at `sent`.
    pub fn record(&self, peer: NodeId, term: u64, sent: Instant) {
        let mut acks = self.0.lock();
        let e = acks.entry(peer).or_insert((term, sent));
        if term > e.0 || (term == e.0 && sent > e.1) {
            *e = (term, sent);
        }
    }

    /// The term and send time of the latest request `peer` accepted.
    pub fn last(&self, peer: NodeId) -> Option<(u64, Instant)> {
        self.0.lock().get(&peer).copied()
    }

    /// The latest instant by which a quorum of every one of `configs` (a
    /// joint configuration has two) had accepted `me`'s leadership in
    /// `term`; `me` counts as accepting it `now`. None when some
    /// configuration has no such quorum.
    pub fn quorum_since(
        &self,
        term: u64,
        me: NodeId,
        configs: &[BTreeSet<NodeId>],
        now: Instant,
    ) -> Option<Instant> {
        let acks = self.0.lock();
        let mut since: Option<Instant> = None;
        for voters in configs {
            if voters.is_empty() {
                continue;
            }
            let mut times: Vec<Instant> = voters
                .iter()
                .filter_map(|id| {
                    if *id == me {
                        return Some(now);
                    }
                    acks.get(id).and_then(|&(t, at)| (t == term).then_some(at))
                })
                .collect();
            let need = voters.len() / 2 + 1;
            if times.len() < need {
                return None;
            }
            times.sort_unstable_by(|a, b| b.cmp(a));
            let t = times[need - 1];
            since = Some(since.map_or(t, |s| s.min(t)));
        }
        since
    }
}

/// `dialer`: how outgoing raft connections are made (from where, in TLS
/// or not).
#[derive(Clone, Default)]
pub struct Network {
    pub dialer: Dialer,
    pub acks: Acks,
}

pub struct PeerClient {
    target: NodeId,
    node: BasicNode,
    conn: Option<RpcStream>,
    dialer: Dialer,
    acks: Acks,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            conn: None,
            dialer: self.dialer.clone(),
            acks: self.acks.clone(),
        }
    }
}

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

enum CallFailure {
    /// The peer could not be dialled.
    Unreachable(io::Error),
    /// The exchange failed after the connection existed.
    Network(io::Error),
}

impl PeerClient {
    async fn call(&mut self, req: RaftRpc, ttl: Duration) -> Result<RaftReply, CallFailure> {
        if self.conn.is_none() {
            let dial = tokio::time::timeout(
                ttl.min(Duration::from_secs(1)),
                self.dialer.dial(&self.node.addr, Protocol::Raft),
            )
            .await;
            self.conn = Some(match dial {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(CallFailure::Unreachable(e)),
                Err(_) => {
                    return Err(CallFailure::Unreachable(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "dial timeout",
                    )))
                }
            });
        }
        // The connection is taken out for the exchange and put back only
        // once its reply has been read. openraft drops this future when its
        // own timeout fires first; a connection left in place then would
        // still carry the abandoned request's reply, and the next call
        // would read it as its own: an old AppendEntries success taken for
        // a longer one lets a leader count a follower as holding entries it
        // never received, and commit them without a quorum.
        let Some(mut conn) = self.conn.take() else {
            return Err(CallFailure::Unreachable(io::Error::other("not connected")));
        };
        let exchange = async {
            write_frame(&mut conn, &req).await?;
            read_frame::<_, RaftReply>(&mut conn).await
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(reply)) => {
                self.conn = Some(conn);
                Ok(reply)
            }
            Ok(Err(e)) => Err(CallFailure::Network(e.into())),
            Err(_) => Err(CallFailure::Network(io::Error::new(
                io::ErrorKind::TimedOut,
                "rpc timeout",
            ))),
        }
    }

    fn failure<E: std::error::Error>(&self, f: CallFailure) -> RpcErr<E> {
        match f {
            CallFailure::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallFailure::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn remote<E: std::error::Error>(&self, e: RaftError<NodeId, E>) -> RpcErr<E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

fn mismatched<E: std::error::Error>() -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&io::Error::new(
        io::ErrorKind::InvalidData,
        "mismatched rpc response",
    )))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let lead = rpc.vote.is_committed().then_some(rpc.vote.leader_id().term);
        let sent = Instant::now();
        match self
            .call(RaftRpc::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::AppendEntries(Ok(r))) => {
                // Any answer but a higher vote means the follower took this
                // request's vote as its leader's.
                if let (Some(term), false) =
                    (lead, matches!(r, AppendEntriesResponse::HigherVote(_)))
                {
                    self.acks.record(self.target, term, sent);
                }
                Ok(r)
            }
            Ok(RaftReply::AppendEntries(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(mismatched()),
            Err(f) => Err(self.failure(f)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(RaftRpc::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(RaftReply::InstallSnapshot(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(mismatched()),
            Err(f) => Err(self.failure(f)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        match self.call(RaftRpc::Vote(rpc), option.hard_ttl()).await {
            Ok(RaftReply::Vote(Ok(r))) => Ok(r),
            Ok(RaftReply::Vote(Err(e))) => Err(self.remote(e)),
            Ok(_) => Err(mismatched()),
            Err(f) => Err(self.failure(f)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::Vote;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn vote_request(term: u64) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, 1), None)
    }

    /// A peer that answers each vote request with its own term, the first
    /// one only after `first_delay`.
    async fn slow_peer(first_delay: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let delay = if std::mem::take(&mut first) {
                    first_delay
                } else {
                    Duration::ZERO
                };
                tokio::spawn(async move {
                    let mut protocol = [0u8; 1];
                    if sock.read_exact(&mut protocol).await.is_err() {
                        return;
                    }
                    let mut delay = delay;
                    while let Ok(RaftRpc::Vote(v)) = read_frame::<_, RaftRpc>(&mut sock).await {
                        tokio::time::sleep(std::mem::take(&mut delay)).await;
                        let reply = RaftReply::Vote(Ok(VoteResponse::new(v.vote, None, true)));
                        if write_frame(&mut sock, &reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn a_quorum_counts_the_leader_and_the_latest_acks_of_its_term() {
        let acks = Acks::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let three: Vec<BTreeSet<NodeId>> = vec![[1, 2, 3].into()];
        assert_eq!(
            acks.quorum_since(5, 1, &three, t0),
            None,
            "no follower has answered"
        );
        acks.record(2, 4, t0);
        assert_eq!(
            acks.quorum_since(5, 1, &three, t0 + ms(10)),
            None,
            "an ack of an earlier term is no ack of this leadership"
        );
        acks.record(2, 5, t0 + ms(20));
        acks.record(2, 5, t0 + ms(10));
        assert_eq!(
            acks.quorum_since(5, 1, &three, t0 + ms(50)),
            Some(t0 + ms(20)),
            "the leader and one follower are a quorum of three; an older ack never moves it back"
        );
        acks.record(3, 5, t0 + ms(40));
        assert_eq!(
            acks.quorum_since(5, 1, &three, t0 + ms(50)),
            Some(t0 + ms(40))
        );

        let five: Vec<BTreeSet<NodeId>> = vec![[1, 2, 3, 4, 5].into()];
        assert_eq!(
            acks.quorum_since(5, 1, &five, t0 + ms(50)),
            Some(t0 + ms(20)),
            "three of five: the leader, then the two latest"
        );
        // A joint configuration needs a quorum of each half.
        let joint: Vec<BTreeSet<NodeId>> = vec![[1, 2, 3].into(), [1, 6, 7].into()];
        assert_eq!(acks.quorum_since(5, 1, &joint, t0 + ms(50)), None);
        acks.record(6, 5, t0 + ms(5));
        assert_eq!(
            acks.quorum_since(5, 1, &joint, t0 + ms(50)),
            Some(t0 + ms(5)),
            "the older of the two halves' quorums"
        );
        let alone: Vec<BTreeSet<NodeId>> = vec![[1].into()];
        assert_eq!(acks.quorum_since(5, 1, &alone, t0), Some(t0));
    }

    fn replied_term(r: Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>>) -> u64 {
        match r {
            Ok(v) => v.vote.leader_id().term,
            Err(e) => panic!("vote failed: {e}"),
        }
    }

    #[tokio::test]
    async fn an_abandoned_call_leaves_no_reply_for_the_next_one() {
        let addr = slow_peer(Duration::from_millis(300)).await;
        let mut client = Network::default().new_client(2, &BasicNode { addr }).await;
        let ttl = RPCOption::new(Duration::from_secs(2));
        // openraft's own timeout drops the call while the reply is on its way.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            client.vote(vote_request(5), ttl.clone()),
        )
        .await;
        assert!(
            abandoned.is_err(),
            "the first call should have been cut off"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = client.vote(vote_request(6), ttl).await;
        assert_eq!(
            replied_term(next),
            6,
            "the next call read the abandoned call's reply"
        );
    }
}
