//! Multiplexed request/response calls over one connection per peer.
//!
//! Every frame's payload is an 8-byte request ID followed by the bincode
//! body. A caller registers its ID, queues its frame and waits for the
//! frame with the same ID; the peer answers requests concurrently and in
//! any order. One connection per server therefore carries any number of
//! concurrent forwarded writes and reads (Consul multiplexes its RPC port
//! with yamux for the same reason), so `rpc_max_conns_per_client` counts
//! agents, not requests, and frames queued together go out in one write.

use super::dial::Dialer;
use super::frame::{self, FrameError};
use super::{Protocol, RpcStream};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Frames queued together are written with one syscall, up to this size.
const WRITE_BATCH: usize = 256 * 1024;
/// Requests one connection may have in flight on the serving side.
const MAX_IN_FLIGHT: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The peer could not be reached: the request was never sent.
    #[error("dial {addr}: {source}")]
    Dial { addr: String, source: io::Error },
    #[error("rpc to {0}: timeout")]
    Timeout(String),
    /// The connection failed after the request was queued.
    #[error("rpc to {addr}: {why}")]
    Connection { addr: String, why: String },
    #[error("rpc to {addr}: {source}")]
    Frame { addr: String, source: FrameError },
}

impl CallError {
    /// True when the request cannot have reached the peer, so trying
    /// another server is safe even for a write.
    pub fn not_sent(&self) -> bool {
        matches!(self, CallError::Dial { .. })
    }
}

/// Encodes a frame whose payload is `id` followed by `body`.
fn encode_tagged<T: Serialize>(id: u64, body: &T) -> Result<Vec<u8>, FrameError> {
    let size = 8 + bincode::serialized_size(body).map_err(FrameError::Decode)? as usize;
    if size > frame::MAX_FRAME {
        return Err(FrameError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(size + 4);
    buf.extend_from_slice(&(size as u32).to_be_bytes());
    buf.extend_from_slice(&id.to_be_bytes());
    bincode::serialize_into(&mut buf, body).map_err(FrameError::Decode)?;
    Ok(buf)
}

pub(crate) fn split_tagged(payload: &[u8]) -> Result<(u64, &[u8]), FrameError> {
    if payload.len() < 8 {
        return Err(FrameError::Decode(Box::new(bincode::ErrorKind::Custom(
            "frame shorter than its request ID".into(),
        ))));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&payload[..8]);
    Ok((u64::from_be_bytes(id), &payload[8..]))
}

/// Writes queued frames, several per syscall when they queue up.
async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut buf = Vec::new();
    while let Some(first) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}

type Waiter = oneshot::Sender<Result<Vec<u8>, String>>;

struct Conn {
    out: mpsc::UnboundedSender<Vec<u8>>,
    pending: parking_lot::Mutex<HashMap<u64, Waiter>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl Conn {
    fn start(stream: RpcStream, addr: String) -> Arc<Conn> {
        let (rd, wr) = tokio::io::split(stream);
        let (out, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            out,
            pending: Default::default(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        });
        let writer = tokio::spawn(write_loop(wr, rx));
        let reader = conn.clone();
        tokio::spawn(async move {
            let mut rd = BufReader::new(rd);
            let why = loop {
                let payload = match frame::read_raw(&mut rd).await {
                    Ok(p) => p,
                    Err(e) => break e.to_string(),
                };
                let (id, body) = match split_tagged(&payload) {
                    Ok(x) => x,
                    Err(e) => break e.to_string(),
                };
                if let Some(w) = reader.pending.lock().remove(&id) {
                    let _ = w.send(Ok(body.to_vec()));
                }
            };
            tracing::debug!(%addr, "rpc connection closed: {why}");
            reader.closed.store(true, Ordering::SeqCst);
            // Close our half too rather than leave the socket half-open.
            writer.abort();
            for (_, w) in reader.pending.lock().drain() {
                let _ = w.send(Err(why.clone()));
            }
        });
        conn
    }

    fn alive(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && !self.out.is_closed()
    }
}

/// One slot per peer address; the async lock makes concurrent first calls
/// share one dial.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

/// Multiplexed connections to peers, one per address.
pub struct MuxClient {
    slots: parking_lot::Mutex<HashMap<String, Slot>>,
    dialer: Dialer,
    protocol: Protocol,
}

impl MuxClient {
    /// Connections are made by `dialer` and speak `protocol`.
    pub fn new(dialer: Dialer, protocol: Protocol) -> MuxClient {
        MuxClient {
            slots: Default::default(),
            dialer,
            protocol,
        }
    }

    async fn conn(&self, addr: &str, timeout: Duration) -> Result<Arc<Conn>, CallError> {
        let slot = self
            .slots
            .lock()
            .entry(addr.to_string())
            .or_default()
            .clone();
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.alive()) {
            return Ok(c.clone());
        }
        let dial_err = |source| CallError::Dial {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(timeout, self.dialer.dial(addr, self.protocol))
            .await
            .map_err(|_| dial_err(io::Error::new(io::ErrorKind::TimedOut, "timeout")))?
            .map_err(dial_err)?;
        let conn = Conn::start(stream, addr.to_string());
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Sends `req` to `addr` and waits up to `timeout` for its response.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        self.call_dialing_within(addr, req, timeout, timeout).await
    }

    /// [`MuxClient::call`], giving up on a new connection after `dial`
    /// (a peer that does not answer is found out well before a long call's
    /// `timeout`).
    pub async fn call_dialing_within<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        req: &Req,
        dial: Duration,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let conn = self.conn(addr, dial.min(timeout)).await?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_tagged(id, req).map_err(|source| CallError::Frame {
            addr: addr.to_string(),
            source,
        })?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        if conn.out.send(frame).is_err() {
            conn.pending.lock().remove(&id);
            return Err(CallError::Connection {
                addr: addr.to_string(),
                why: "connection closed".into(),
            });
        }
        let body = match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                conn.pending.lock().remove(&id);
                return Err(CallError::Timeout(addr.to_string()));
            }
            Ok(Err(_)) => {
                return Err(CallError::Connection {
                    addr: addr.to_string(),
                    why: "connection closed".into(),
                })
            }
            Ok(Ok(Err(why))) => {
                return Err(CallError::Connection {
                    addr: addr.to_string(),
                    why,
                })
            }
            Ok(Ok(Ok(body))) => body,
        };
        frame::decode(&body).map_err(|source| CallError::Frame {
            addr: addr.to_string(),
            source,
        })
    }
}

/// Serves multiplexed requests on one accepted connection: each request
/// runs in its own task and its response is queued as soon as it is ready.
/// A frame that does not decode ends the connection with a log line.
pub async fn serve_connection<Req, Resp, F>(stream: RpcStream, peer: SocketAddr, handler: Arc<F>)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> BoxFuture<'static, Resp> + Send + Sync + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (out, rx) = mpsc::unbounded_channel();
    tokio::spawn(write_loop(wr, rx));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut rd = BufReader::new(rd);
    loop {
        let payload = match frame::read_raw(&mut rd).await {
            Ok(p) => p,
            Err(e) if e.is_closed() => return,
            Err(e) => {
                tracing::warn!(%peer, "rpc: dropping connection: {e}");
                return;
            }
        };
        let decoded =
            split_tagged(&payload).and_then(|(id, body)| Ok((id, frame::decode::<Req>(body)?)));
        let (id, req) = match decoded {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%peer, "rpc: dropping connection: {e}");
                return;
            }
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (handler, out) = (handler.clone(), out.clone());
        tokio::spawn(async move {
            let resp = handler(req).await;
            drop(permit);
            match encode_tagged(id, &resp) {
                Ok(f) => {
                    let _ = out.send(f);
                }
                Err(e) => tracing::warn!(%peer, "rpc: cannot encode a response: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_one_connection_and_answer_out_of_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, peer) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let mut proto = [0u8; 1];
                tokio::io::AsyncReadExt::read_exact(&mut s, &mut proto)
                    .await
                    .unwrap();
                assert_eq!(proto[0], Protocol::Consul as u8);
                // Later requests are answered first: the handler sleeps
                // less for bigger numbers.
                let handler = Arc::new(|n: u64| -> BoxFuture<'static, u64> {
                    Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(100 - n * 10)).await;
                        n * 2
                    })
                });
                tokio::spawn(serve_connection(s.into(), peer, handler));
            }
        });
        let client = Arc::new(MuxClient::new(Dialer::plain(None), Protocol::Consul));
        let calls = (0..8u64).map(|n| {
            let (client, addr) = (client.clone(), addr.clone());
            async move {
                client
                    .call::<u64, u64>(&addr, &n, Duration::from_secs(5))
                    .await
                    .unwrap()
            }
        });
        let got = futures::future::join_all(calls).await;
        assert_eq!(got, (0..8u64).map(|n| n * 2).collect::<Vec<_>>());
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection");
    }

    #[tokio::test]
    async fn a_dead_peer_fails_calls_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            // Accept, read the request, then close without answering.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
        });
        let client = MuxClient::new(Dialer::plain(None), Protocol::Consul);
        let err = client
            .call::<u64, u64>(&addr, &1, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Connection { .. }), "{err}");
        assert!(!err.not_sent());
        // Nothing listens on this port any more: a dial error, safe to retry.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let err = client
            .call::<u64, u64>(&closed, &1, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.not_sent(), "{err}");
    }
}
