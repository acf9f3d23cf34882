//! The accept loop of the RPC port. Each connection's first byte picks the
//! [`ConnHandler`] registered for that protocol; a connection with an
//! unknown byte, or none within [`FIRST_BYTE_TIMEOUT`], is closed with a
//! log line. Each client IP may hold at most `rpc_max_conns_per_client`
//! connections (Consul's `limits.rpc_max_conns_per_client`, default 100);
//! over it a new connection is closed at once.

use super::Protocol;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a new connection may take to send its protocol byte.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one protocol's connections.
pub trait ConnHandler: Send + Sync + 'static {
    fn serve(&self, conn: TcpStream, peer: SocketAddr) -> BoxFuture<'static, ()>;
}

impl<F> ConnHandler for F
where
    F: Fn(TcpStream, SocketAddr) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn serve(&self, conn: TcpStream, peer: SocketAddr) -> BoxFuture<'static, ()> {
        self(conn, peer)
    }
}

/// The protocols this agent serves.
#[derive(Default, Clone)]
pub struct Handlers {
    map: HashMap<u8, Arc<dyn ConnHandler>>,
}

impl Handlers {
    pub fn with(mut self, protocol: Protocol, handler: impl ConnHandler) -> Handlers {
        self.map.insert(protocol as u8, Arc::new(handler));
        self
    }
}

/// Open connections per client IP.
#[derive(Default, Clone)]
struct PerClient {
    counts: Arc<parking_lot::Mutex<HashMap<IpAddr, u32>>>,
}

/// Holds one slot of a client's allowance; gives it back when dropped.
struct Slot {
    owner: PerClient,
    ip: IpAddr,
}

impl PerClient {
    fn acquire(&self, ip: IpAddr, max: u32) -> Option<Slot> {
        let mut counts = self.counts.lock();
        let n = counts.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Accepts until `shutdown` turns true, then stops accepting and gives the
/// open connections `drain` to finish before they are cut.
pub async fn serve(
    listener: TcpListener,
    handlers: Handlers,
    max_conns_per_client: u32,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let per_client = PerClient::default();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (mut sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("rpc accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = per_client.acquire(peer.ip(), max_conns_per_client) else {
            tracing::warn!(
                %peer,
                "rpc: rejecting connection: rpc_max_conns_per_client ({max_conns_per_client}) exceeded"
            );
            continue;
        };
        let _ = sock.set_nodelay(true);
        let handlers = handlers.clone();
        conns.spawn(async move {
            let _slot = slot;
            let mut first = [0u8; 1];
            let byte = match tokio::time::timeout(FIRST_BYTE_TIMEOUT, sock.read(&mut first)).await {
                Ok(Ok(1)) => first[0],
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "rpc: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "rpc: dropping connection: no protocol byte within {FIRST_BYTE_TIMEOUT:?}");
                    return;
                }
            };
            match handlers.map.get(&byte) {
                Some(h) => h.serve(sock, peer).await,
                None => {
                    tracing::warn!(%peer, "rpc: dropping connection: unknown protocol byte {byte:#04x}")
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn echo() -> Handlers {
        Handlers::default().with(
            Protocol::Consul,
            |mut s: TcpStream, _peer: SocketAddr| -> BoxFuture<'static, ()> {
                Box::pin(async move {
                    let mut b = [0u8; 1];
                    while let Ok(1) = s.read(&mut b).await {
                        if s.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                })
            },
        )
    }

    async fn echoes(s: &mut TcpStream) -> bool {
        let mut b = [0u8; 1];
        s.write_all(b"x").await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await,
                Ok(Ok(1))
            )
    }

    #[tokio::test]
    async fn per_client_cap_unknown_protocols_and_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let server = tokio::spawn(serve(
            listener,
            echo(),
            2,
            stopped,
            Duration::from_millis(200),
        ));

        let mut a = TcpStream::connect(addr).await.unwrap();
        a.write_all(&[Protocol::Consul as u8]).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        b.write_all(&[Protocol::Consul as u8]).await.unwrap();
        assert!(echoes(&mut a).await && echoes(&mut b).await);
        // A third connection from the same IP is closed at once.
        let mut c = TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(&[Protocol::Consul as u8]).await;
        assert!(!echoes(&mut c).await);
        // Closing one frees its slot.
        drop(a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(&[Protocol::Consul as u8]).await.unwrap();
        assert!(echoes(&mut d).await);
        drop(d);
        tokio::time::sleep(Duration::from_millis(100)).await;

        // An unknown protocol byte is dropped.
        let mut e = TcpStream::connect(addr).await.unwrap();
        e.write_all(&[0x7f]).await.unwrap();
        assert!(!echoes(&mut e).await);

        // Shutdown returns after the drain even with a connection open.
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("serve returns")
            .unwrap();
        assert!(
            !echoes(&mut b).await,
            "open connections are cut after the drain"
        );
    }
}
