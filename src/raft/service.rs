//! What a server serves on the RPC port: raft's own traffic
//! ([`Protocol::Raft`]) and requests forwarded by agents and other servers
//! ([`Protocol::Consul`], multiplexed). A frame that does not decode is
//! logged and its connection closed; it never reaches raft.

use super::network::{RaftReply, RaftRpc};
use super::RaftNode;
use crate::consensus::api::{ServerRequest, ServerResponse};
use crate::rpc::listener::ConnHandler;
use crate::rpc::RpcStream;
use crate::rpc::{mux, read_frame, write_frame};
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::BufReader;

/// Serves AppendEntries, Vote and InstallSnapshot on one connection.
pub fn raft_handler(node: Arc<RaftNode>) -> impl ConnHandler {
    move |sock: RpcStream, peer: SocketAddr| -> BoxFuture<'static, ()> {
        let node = node.clone();
        Box::pin(async move {
            let (rd, mut wr) = tokio::io::split(sock);
            let mut rd = BufReader::new(rd);
            loop {
                let req: RaftRpc = match read_frame(&mut rd).await {
                    Ok(r) => r,
                    Err(e) if e.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(%peer, "rpc: dropping connection: {e}");
                        return;
                    }
                };
                let reply = match req {
                    RaftRpc::AppendEntries(r) => {
                        node.touch_contact();
                        RaftReply::AppendEntries(node.raft.append_entries(r).await)
                    }
                    RaftRpc::Vote(r) => RaftReply::Vote(node.raft.vote(r).await),
                    RaftRpc::InstallSnapshot(r) => {
                        node.touch_contact();
                        RaftReply::InstallSnapshot(node.raft.install_snapshot(r).await)
                    }
                };
                if let Err(e) = write_frame(&mut wr, &reply).await {
                    tracing::debug!(%peer, "rpc write: {e}");
                    return;
                }
            }
        })
    }
}

/// Serves forwarded writes, read indexes and status requests.
pub fn consul_handler(node: Arc<RaftNode>) -> impl ConnHandler {
    let handle = Arc::new(
        move |req: ServerRequest| -> BoxFuture<'static, ServerResponse> {
            let node = node.clone();
            Box::pin(async move { node.handle(req).await })
        },
    );
    move |sock: RpcStream, peer: SocketAddr| -> BoxFuture<'static, ()> {
        Box::pin(mux::serve_connection(sock, peer, handle.clone()))
    }
}
