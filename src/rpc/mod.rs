//! The RPC port (8300): length-prefixed bincode frames over TCP. Carries
//! raft's AppendEntries, Vote and InstallSnapshot, writes forwarded to the
//! leader, read-index requests for leader-fresh reads on other agents, and
//! the status probe used before bootstrapping.

use crate::catalog::command::{Command, Response};
use crate::raft::{Consensus, NodeId, TypeConfig};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Frames larger than this are refused (a snapshot chunk is at most 3 MiB).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Frames are decoded once and handled at once; boxing variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose a command on the leader; `hops` bounds re-forwarding.
    Forward {
        cmd: Command,
        hops: u8,
    },
    /// The index a read must see to be as fresh as the leader's state
    /// (`linearizable` confirms leadership with a quorum first).
    ReadIndex {
        linearizable: bool,
        hops: u8,
    },
    /// Whether this server's raft is initialized and whom it follows.
    Status,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReply {
    pub initialized: bool,
    pub leader: Option<NodeId>,
    pub voters: usize,
}

/// Remote errors travel as text: the caller only needs to know the call failed.
#[derive(Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    Forward(Result<(u64, Response), String>),
    ReadIndex(Result<u64, String>),
    Status(StatusReply),
}

pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> io::Result<()> {
    let bytes = bincode::serialize(msg).map_err(io::Error::other)?;
    if bytes.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    let mut buf = Vec::with_capacity(bytes.len() + 4);
    buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    buf.extend_from_slice(&bytes);
    w.write_all(&buf).await?;
    w.flush().await
}

pub async fn read_frame<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    bincode::deserialize(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serves raft RPCs on `listener` until the process exits. Malformed frames
/// close that connection with a log line; they never reach raft.
pub async fn serve(listener: tokio::net::TcpListener, consensus: Arc<Consensus>) {
    loop {
        let (mut sock, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("rpc accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let consensus = consensus.clone();
        tokio::spawn(async move {
            let raft = &consensus.raft;
            loop {
                let req: RpcRequest = match read_frame(&mut sock).await {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
                    Err(e) => {
                        tracing::warn!(%peer, "rpc: dropping connection: {e}");
                        return;
                    }
                };
                let resp = match req {
                    RpcRequest::AppendEntries(r) => {
                        consensus.touch_contact();
                        RpcResponse::AppendEntries(
                            raft.append_entries(r).await.map_err(|e| e.to_string()),
                        )
                    }
                    RpcRequest::Vote(r) => {
                        RpcResponse::Vote(raft.vote(r).await.map_err(|e| e.to_string()))
                    }
                    RpcRequest::InstallSnapshot(r) => RpcResponse::InstallSnapshot(
                        raft.install_snapshot(r).await.map_err(|e| e.to_string()),
                    ),
                    RpcRequest::Forward { cmd, hops } => RpcResponse::Forward(
                        consensus.write(cmd, hops).await.map_err(|e| e.to_string()),
                    ),
                    RpcRequest::ReadIndex { linearizable, hops } => RpcResponse::ReadIndex(
                        consensus
                            .read_index(linearizable, hops)
                            .await
                            .map_err(|e| e.to_string()),
                    ),
                    RpcRequest::Status => RpcResponse::Status(consensus.status().await),
                };
                if let Err(e) = write_frame(&mut sock, &resp).await {
                    tracing::debug!(%peer, "rpc write: {e}");
                    return;
                }
            }
        });
    }
}

/// Dials `addr` from `local` (the agent's bind address, when specific), so
/// peers see RPC traffic come from the address the agent advertises.
pub async fn dial(
    addr: &str,
    local: Option<std::net::IpAddr>,
) -> io::Result<tokio::net::TcpStream> {
    let target: std::net::SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}"))
        })?,
    };
    let sock = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == target.is_ipv4()) {
        sock.bind(std::net::SocketAddr::new(ip, 0))?;
    }
    let stream = sock.connect(target).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Pooled connections for one-off calls (forwarding, read index, status).
#[derive(Default)]
pub struct RpcPool {
    idle: std::sync::Mutex<HashMap<String, Vec<tokio::net::TcpStream>>>,
    pub local: Option<std::net::IpAddr>,
}

impl RpcPool {
    pub fn new(local: Option<std::net::IpAddr>) -> RpcPool {
        RpcPool {
            idle: Default::default(),
            local,
        }
    }

    pub async fn call(
        &self,
        addr: &str,
        req: &RpcRequest,
        timeout: Duration,
    ) -> io::Result<RpcResponse> {
        let pooled = self
            .idle
            .lock()
            .ok()
            .and_then(|mut m| m.get_mut(addr).and_then(|v| v.pop()));
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let c = tokio::time::timeout(timeout, dial(addr, self.local))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, format!("dial {addr}: timeout"))
                    })??;
                let _ = c.set_nodelay(true);
                c
            }
        };
        let exchange = async {
            write_frame(&mut conn, req).await?;
            read_frame::<_, RpcResponse>(&mut conn).await
        };
        let resp = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                io::Error::new(io::ErrorKind::TimedOut, format!("rpc to {addr}: timeout"))
            })??;
        if let Ok(mut m) = self.idle.lock() {
            let v = m.entry(addr.to_string()).or_default();
            if v.len() < 64 {
                v.push(conn);
            }
        }
        Ok(resp)
    }
}
