//! openraft's network over the RPC port ([`Protocol::Raft`]): one TCP
//! connection per peer, re-dialled after any error, one request at a time
//! (openraft sends to each peer in order). Remote raft errors come back
//! typed and are handed to openraft as such.

use super::{NodeId, TypeConfig};
use crate::rpc::{read_frame, write_frame, Protocol};
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
use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

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

/// `local`: the address outgoing raft connections are made from.
#[derive(Clone, Default)]
pub struct Network {
    pub local: Option<std::net::IpAddr>,
}

pub struct PeerClient {
    target: NodeId,
    node: BasicNode,
    conn: Option<TcpStream>,
    local: Option<std::net::IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            conn: None,
            local: self.local,
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
                crate::rpc::dial(&self.node.addr, self.local, Protocol::Raft),
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
        let Some(conn) = self.conn.as_mut() else {
            return Err(CallFailure::Unreachable(io::Error::other("not connected")));
        };
        let exchange = async {
            write_frame(conn, &req).await?;
            read_frame::<_, RaftReply>(conn).await
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                self.conn = None;
                Err(CallFailure::Network(e.into()))
            }
            Err(_) => {
                self.conn = None;
                Err(CallFailure::Network(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "rpc timeout",
                )))
            }
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
        match self
            .call(RaftRpc::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RaftReply::AppendEntries(Ok(r))) => Ok(r),
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
