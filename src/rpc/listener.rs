//! The accept loop of the RPC port. Each connection's first byte picks the
//! [`ConnHandler`] registered for that protocol; a connection with an
//! unknown byte, or none within [`FIRST_BYTE_TIMEOUT`], is closed with a
//! log line. Each client IP may hold at most `rpc_max_conns_per_client`
//! connections (Consul's `limits.rpc_max_conns_per_client`, default 100);
//! over it a new connection is closed at once.
//!
//! TLS follows Consul's scheme: a connection whose first byte is `RPCTLS`
//! (0x03) does a TLS handshake and then names its real protocol inside the
//! session, both within `limits.rpc_handshake_timeout`. With
//! `verify_incoming` a plain-text connection is refused and the handshake
//! requires a client certificate signed by the CA; with
//! `verify_server_hostname` as well, a raft connection must present a
//! certificate valid for `server.<dc>.<domain>` (Consul's
//! `AuthorizeServerConn`), so a client agent cannot join raft.

use super::{Protocol, RpcStream, RPC_TLS};
use crate::tls::handshake_log::FailureLog;
use crate::tls::RpcTls;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long a new connection may take to send its protocol byte.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one protocol's connections.
pub trait ConnHandler: Send + Sync + 'static {
    fn serve(&self, conn: RpcStream, peer: SocketAddr) -> BoxFuture<'static, ()>;
}

impl<F> ConnHandler for F
where
    F: Fn(RpcStream, SocketAddr) -> BoxFuture<'static, ()> + Send + Sync + 'static,
{
    fn serve(&self, conn: RpcStream, peer: SocketAddr) -> BoxFuture<'static, ()> {
        self(conn, peer)
    }
}

/// The listener's side of the RPC port's TLS.
#[derive(Clone)]
pub struct ListenerTls {
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    verify_incoming: bool,
    raft_peer_name: Option<rustls::pki_types::ServerName<'static>>,
    handshake_timeout: Duration,
    failures: Arc<FailureLog>,
}

/// Plain text only, as without a `tls` stanza.
impl Default for ListenerTls {
    fn default() -> Self {
        ListenerTls::new(&RpcTls::default(), Duration::from_secs(5))
    }
}

impl ListenerTls {
    /// From the agent's RPC TLS; the handshake and the inner protocol byte
    /// must arrive within `handshake_timeout`.
    pub fn new(tls: &RpcTls, handshake_timeout: Duration) -> ListenerTls {
        ListenerTls {
            acceptor: tls.incoming.clone().map(Into::into),
            verify_incoming: tls.verify_incoming,
            raft_peer_name: tls.raft_peer_name.clone(),
            handshake_timeout,
            failures: Arc::new(FailureLog::incoming("rpc")),
        }
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

impl ListenerTls {
    /// The connection to hand on, and its protocol byte: a TLS session for
    /// `RPCTLS`, the socket itself otherwise. `None` when it is refused
    /// (logged here).
    async fn open(
        &self,
        sock: tokio::net::TcpStream,
        byte: u8,
        peer: SocketAddr,
    ) -> Option<(RpcStream, u8)> {
        if byte != RPC_TLS {
            if self.verify_incoming {
                tracing::warn!(conn = %peer, "rpc: Non-TLS connection attempted with VerifyIncoming set");
                return None;
            }
            return Some((RpcStream::Plain(sock), byte));
        }
        let Some(acceptor) = &self.acceptor else {
            tracing::warn!(conn = %peer, "rpc: dropping TLS connection: no certificate is configured (tls.internal_rpc.cert_file)");
            return None;
        };
        let handshake = async {
            let mut session = acceptor.accept(sock).await?;
            let mut inner = [0u8; 1];
            session.read_exact(&mut inner).await?;
            Ok::<_, std::io::Error>((session, inner[0]))
        };
        let (session, inner) = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                self.failures.report(peer, &e);
                return None;
            }
            Err(_) => {
                let why = format!("no handshake within {:?}", self.handshake_timeout);
                self.failures.report(peer, &why);
                return None;
            }
        };
        // Consul: a malicious client must not nest TLS for ever.
        if inner == RPC_TLS {
            tracing::error!(conn = %peer, "rpc: TLS connection attempting to establish inner TLS connection");
            return None;
        }
        Some((RpcStream::Tls(Box::new(session.into())), inner))
    }

    /// Consul's `AuthorizeServerConn` for a raft connection; false (logged)
    /// when its certificate is not a server's of this datacenter.
    fn authorize_raft(&self, conn: &RpcStream, peer: SocketAddr) -> bool {
        let Some(name) = self.raft_peer_name.as_ref().filter(|_| conn.is_tls()) else {
            return true;
        };
        match crate::tls::verify::authorize_server(conn.peer_certificates(), name) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(from = %peer, operation = "raft RPC", "rpc: {why}");
                false
            }
        }
    }
}

/// Accepts until `shutdown` turns true, then stops accepting and gives the
/// open connections `drain` to finish before they are cut.
pub async fn serve(
    listener: TcpListener,
    handlers: Handlers,
    tls: ListenerTls,
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
        let tls = tls.clone();
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
            let Some((conn, byte)) = tls.open(sock, byte, peer).await else {
                return;
            };
            if byte == Protocol::Raft as u8 && !tls.authorize_raft(&conn, peer) {
                return;
            }
            match handlers.map.get(&byte) {
                Some(h) => h.serve(conn, peer).await,
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
    use tokio::net::TcpStream;

    fn echo() -> Handlers {
        Handlers::default().with(
            Protocol::Consul,
            |mut s: RpcStream, _peer: SocketAddr| -> BoxFuture<'static, ()> {
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

    async fn echoes<S: AsyncReadExt + AsyncWriteExt + Unpin>(s: &mut S) -> bool {
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
            ListenerTls::default(),
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

    fn tls_config(
        dc: &str,
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> RpcTls {
        let json = format!(
            r#"{{"datacenter":"{dc}","tls":{{"defaults":{{"ca_file":"{}","cert_file":"{}","key_file":"{}",
                "verify_incoming":true,"verify_outgoing":true}},"internal_rpc":{{"verify_server_hostname":true}}}}}}"#,
            ca.display(),
            cert.display(),
            key.display()
        );
        let source: crate::config::Source = serde_json::from_str(&json).unwrap();
        let config =
            crate::config::Config::build(true, [(crate::config::Origin::Flags, source)]).unwrap();
        crate::tls::AgentTls::load(&config).unwrap().rpc
    }

    fn dialer(tls: &RpcTls) -> crate::rpc::Dialer {
        crate::rpc::Dialer::with_tls(
            None,
            tls.outgoing
                .clone()
                .map(|c| crate::rpc::DialTls::new(c, tls.server_name.clone())),
        )
    }

    #[tokio::test]
    async fn tls_refuses_plain_text_and_keeps_raft_to_servers_of_this_datacenter() {
        use crate::tls::generate::Role;
        let pki = crate::tls::tests::Pki::new();
        let ca = pki.ca_file();
        let (scert, skey) = pki.issue(Role::Server, "dc1");
        let (ccert, ckey) = pki.issue(Role::Client, "dc1");
        let server_tls = tls_config("dc1", &scert, &skey, &ca);
        let client_tls = tls_config("dc1", &ccert, &ckey, &ca);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_stop, stopped) = watch::channel(false);
        let handlers = echo().with(
            Protocol::Raft,
            |mut s: RpcStream, _peer: SocketAddr| -> BoxFuture<'static, ()> {
                Box::pin(async move {
                    let mut b = [0u8; 1];
                    while let Ok(1) = s.read(&mut b).await {
                        if s.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                })
            },
        );
        tokio::spawn(serve(
            listener,
            handlers,
            ListenerTls::new(&server_tls, Duration::from_secs(2)),
            0,
            stopped,
            Duration::from_millis(200),
        ));
        let addr = addr.to_string();

        // Plain text is refused with verify_incoming.
        let mut plain = TcpStream::connect(&addr).await.unwrap();
        plain.write_all(&[Protocol::Consul as u8]).await.unwrap();
        assert!(!echoes(&mut plain).await);

        // A server of this datacenter speaks every protocol over TLS.
        for protocol in [Protocol::Consul, Protocol::Raft] {
            let mut s = dialer(&server_tls).dial(&addr, protocol).await.unwrap();
            assert!(s.is_tls());
            assert!(echoes(&mut s).await, "{protocol:?}");
        }

        // A client agent's certificate may forward, but never speak raft
        // (the CVE-2021-37219 check).
        let mut s = dialer(&client_tls)
            .dial(&addr, Protocol::Consul)
            .await
            .unwrap();
        assert!(echoes(&mut s).await);
        let mut s = dialer(&client_tls)
            .dial(&addr, Protocol::Raft)
            .await
            .unwrap();
        assert!(!echoes(&mut s).await);

        // Without a client certificate the handshake itself fails.
        let mut anonymous = client_tls.clone();
        let json = format!(
            r#"{{"tls":{{"defaults":{{"ca_file":"{}","verify_outgoing":true}}}}}}"#,
            ca.display()
        );
        let source: crate::config::Source = serde_json::from_str(&json).unwrap();
        let config =
            crate::config::Config::build(true, [(crate::config::Origin::Flags, source)]).unwrap();
        anonymous.outgoing = crate::tls::AgentTls::load(&config).unwrap().rpc.outgoing;
        let refused = match dialer(&anonymous).dial(&addr, Protocol::Consul).await {
            Err(_) => true,
            Ok(mut s) => !echoes(&mut s).await,
        };
        assert!(
            refused,
            "a connection without a client certificate is served"
        );

        // A dialler expecting another datacenter's servers refuses this one.
        let mut dc2 = server_tls.clone();
        dc2.server_name = Some(crate::tls::outgoing::server_name("dc2", "consul").unwrap());
        let err = dialer(&dc2)
            .dial(&addr, Protocol::Consul)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("server.dc2.consul"), "{err}");

        // Forwarded calls multiplex over the TLS connection as over TCP.
        let client = crate::rpc::MuxClient::new(dialer(&server_tls), Protocol::Consul);
        // The echo handler sends each frame back, so the answer to 7 is the
        // request itself.
        let echoed = client
            .call::<u64, u64>(&addr, &7, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(echoed, 7);
    }
}
