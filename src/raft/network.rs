//! openraft's network over the RPC port: one TCP connection per peer,
//! re-dialled after any error.

use super::{NodeId, TypeConfig};
use crate::rpc::{read_frame, write_frame, RpcRequest, RpcResponse};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

/// `local`: the address outgoing raft connections are made from.
#[derive(Clone, Default)]
pub struct Network {
    pub local: Option<std::net::IpAddr>,
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<TcpStream>,
    local: Option<std::net::IpAddr>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
            local: self.local,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RemoteText(String);

type RpcErr<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl PeerClient {
    async fn call(
        &mut self,
        req: RpcRequest,
        ttl: Duration,
    ) -> Result<RpcResponse, (bool, io::Error)> {
        if self.conn.is_none() {
            let dial = tokio::time::timeout(
                ttl.min(Duration::from_secs(1)),
                crate::rpc::dial(&self.addr, self.local),
            )
            .await;
            match dial {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    self.conn = Some(s);
                }
                Ok(Err(e)) => return Err((true, e)),
                Err(_) => {
                    return Err((
                        true,
                        io::Error::new(io::ErrorKind::TimedOut, "dial timeout"),
                    ))
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err((true, io::Error::other("not connected")));
        };
        let exchange = async {
            write_frame(conn, &req).await?;
            read_frame::<_, RpcResponse>(conn).await
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                self.conn = None;
                Err((false, e))
            }
            Err(_) => {
                self.conn = None;
                Err((
                    false,
                    io::Error::new(io::ErrorKind::TimedOut, "rpc timeout"),
                ))
            }
        }
    }

    fn transport_err<E: std::error::Error>(&self, unreachable: bool, e: io::Error) -> RpcErr<E> {
        if unreachable {
            RPCError::Unreachable(Unreachable::new(&e))
        } else {
            RPCError::Network(NetworkError::new(&e))
        }
    }

    fn remote_err<E: std::error::Error>(&self, text: String) -> RpcErr<E> {
        // The remote's error text is kept for logs; openraft retries either way.
        RPCError::Network(NetworkError::new(&RemoteText(format!(
            "remote {}: {text}",
            self.target
        ))))
    }
}

fn protocol_err<E: std::error::Error>() -> RpcErr<E> {
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
            .call(RpcRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::AppendEntries(Ok(r))) => Ok(r),
            Ok(RpcResponse::AppendEntries(Err(t))) => Err(self.remote_err(t)),
            Ok(_) => Err(protocol_err()),
            Err((u, e)) => Err(self.transport_err(u, e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        match self
            .call(RpcRequest::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(RpcResponse::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(RpcResponse::InstallSnapshot(Err(t))) => Err(self.remote_err(t)),
            Ok(_) => Err(protocol_err()),
            Err((u, e)) => Err(self.transport_err(u, e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        match self.call(RpcRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(RpcResponse::Vote(Ok(r))) => Ok(r),
            Ok(RpcResponse::Vote(Err(t))) => Err(self.remote_err(t)),
            Ok(_) => Err(protocol_err()),
            Err((u, e)) => Err(self.transport_err(u, e)),
        }
    }
}
