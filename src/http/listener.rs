//! The HTTP API's TCP listener: a per-client connection cap and a serve loop
//! that drains on shutdown.
//!
//! Consul's `limits.http_max_conns_per_client` (default 200) caps how many
//! HTTP connections one client IP may hold open to the agent at once. A
//! connection over the cap is not handed to the HTTP server at all: Consul
//! writes a canned `HTTP/1.1 429 Too Many Requests` response on the raw
//! socket (with a 10 ms write deadline, so a slow reader cannot hold it up)
//! and closes it. `0` means no limit. Loopback clients are counted like any
//! other. The count is per IP, not per address: every port of a client
//! shares it, and an IPv4 client seen through a dual-stack socket
//! (`::ffff:10.0.0.1`) is the same client as `10.0.0.1`.
//!
//! One [`ConnLimiter`] is shared by every HTTP listener of the agent (Consul
//! has one limiter for its HTTP and HTTPS addresses), and its limit can be
//! changed at runtime, as a config reload does; lowering it closes nothing
//! that is already open.
//!
//! [`LimitedListener`] implements axum's [`Listener`]: it counts each
//! accepted connection against its client, and the [`LimitedConn`] it hands
//! out gives the slot back when hyper drops it. Rejections run on their own
//! task, so a client that does not read never stalls the accept loop.
//!
//! A listener given [`HttpsTls`] serves HTTPS: each accepted connection is
//! counted first, then does its TLS handshake in a task of its own within
//! `limits.https_handshake_timeout`, so a slow or silent client never
//! stalls the accept loop, and only a finished handshake reaches hyper. A
//! connection over the limit on a TLS listener is closed without the 429
//! (plain text would mean nothing to a TLS client). A plain HTTP request on
//! the TLS port gets Go's `400 Bad Request` (`Client sent an HTTP request to
//! an HTTPS server.`), as Consul's, and nothing else.
//!
//! [`serve`] runs axum on such a listener until shutdown is signalled, then
//! stops accepting (the port is released at once), lets requests in flight
//! finish for up to the drain window, and returns.

use crate::tls::handshake_log::FailureLog;
use crate::tls::stream::MaybeTls;
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Consul's default `limits.http_max_conns_per_client`.
pub const DEFAULT_MAX_CONNS_PER_CLIENT: usize = 200;

/// The body Consul sends to a client over its connection limit (a macro so
/// that the response below can be one literal).
macro_rules! too_many_conns_body {
    () => {
        "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
    };
}

/// Consul's whole answer to a connection over the limit, written raw.
const TOO_MANY_CONNS_RESPONSE: &str = concat!(
    "HTTP/1.1 429 Too Many Requests\r\n",
    "Content-Type: text/plain\r\n",
    "Content-Length: 81\r\n",
    "Connection: close\r\n",
    "\r\n",
    too_many_conns_body!(),
);

/// How long the 429 may take to write; Consul's write deadline.
const REJECT_WRITE_TIMEOUT: Duration = Duration::from_millis(10);

/// After the 429 and a FIN, how long to read and discard what the client
/// sends before closing. Closing a socket with unread input makes the kernel
/// send a reset instead of a FIN, and some clients (Windows') discard received
/// data on a reset, the 429 with it. Go's HTTP server waits the same 500 ms
/// after its own error responses; a client that honours `Connection: close`
/// hangs up well before.
const REJECT_LINGER: Duration = Duration::from_millis(500);

/// Backoff after an accept error that is not about one connection (`EMFILE`,
/// `ENFILE`, `ENOBUFS`): doubling from the first to the last, as Go's HTTP
/// server (and so Consul) does.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Open HTTP connections per client IP, against a limit shared by every
/// listener it is handed to. Cloning yields another handle to the same counts.
#[derive(Clone, Debug)]
pub struct ConnLimiter {
    shared: Arc<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    /// Connections allowed per client IP; 0 is unlimited.
    max_per_client: AtomicUsize,
    /// Open connections by client; an IP with none has no entry.
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnLimiter {
    /// A limiter allowing `max_per_client` connections per client IP (0: unlimited).
    pub fn new(max_per_client: usize) -> Self {
        ConnLimiter {
            shared: Arc::new(LimiterState {
                max_per_client: AtomicUsize::new(max_per_client),
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The current limit (0: unlimited).
    pub fn max_per_client(&self) -> usize {
        self.shared.max_per_client.load(Ordering::Relaxed)
    }

    /// Changes the limit for connections accepted from now on. Connections
    /// already open stay open even if that leaves a client over the new limit.
    pub fn set_max_per_client(&self, max_per_client: usize) {
        self.shared
            .max_per_client
            .store(max_per_client, Ordering::Relaxed);
    }

    /// How many connections `ip` holds open now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.shared.open.lock();
        open.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Counts a new connection from `ip`, or `None` if that would exceed the limit.
    fn try_acquire(&self, ip: IpAddr) -> Option<ConnSlot> {
        let ip = ip.to_canonical();
        // Counted even when unlimited, so that a limit set later by a reload
        // sees the connections already open.
        let max = self.max_per_client();
        let mut open = self.shared.open.lock();
        let count = open.entry(ip).or_insert(0);
        if max > 0 && *count >= max {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(ConnSlot {
            limiter: self.clone(),
            ip,
        })
    }
}

/// One counted connection; gives its slot back when dropped.
#[derive(Debug)]
struct ConnSlot {
    limiter: ConnLimiter,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self.limiter.shared.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What an HTTPS listener needs: its rustls config, Consul's
/// `limits.https_handshake_timeout`, and a log for failed handshakes.
#[derive(Clone)]
pub struct HttpsTls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    failures: Arc<FailureLog>,
}

impl std::fmt::Debug for HttpsTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsTls {
    pub fn new(config: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> Self {
        HttpsTls {
            acceptor: config.into(),
            handshake_timeout,
            failures: Arc::new(FailureLog::incoming("http")),
        }
    }
}

/// A TCP listener that enforces a [`ConnLimiter`] on what it accepts.
#[derive(Debug)]
pub struct LimitedListener {
    tcp: TcpListener,
    limiter: ConnLimiter,
    tls: Option<HttpsTls>,
    /// TLS handshakes in progress; a finished one is the next accepted
    /// connection. Dropped (and so cancelled) with the listener.
    handshakes: JoinSet<Option<(LimitedConn, SocketAddr)>>,
}

impl LimitedListener {
    /// Wraps a bound listener; `limiter` may be shared with other listeners.
    pub fn new(tcp: TcpListener, limiter: ConnLimiter) -> Self {
        LimitedListener {
            tcp,
            limiter,
            tls: None,
            handshakes: JoinSet::new(),
        }
    }

    /// Serves HTTPS instead of HTTP.
    pub fn with_tls(mut self, tls: HttpsTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The next TCP connection within its client's allowance.
    async fn next_counted(
        tcp: &TcpListener,
        limiter: &ConnLimiter,
        tls: bool,
    ) -> (TcpStream, SocketAddr, ConnSlot) {
        let mut backoff = ACCEPT_BACKOFF_FIRST;
        loop {
            let (stream, peer) = match tcp.accept().await {
                Ok(accepted) => accepted,
                // The client gave up between connecting and our accept.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::error!("HTTP accept error: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            backoff = ACCEPT_BACKOFF_FIRST;
            let Some(slot) = limiter.try_acquire(peer.ip()) else {
                tracing::debug!(
                    client = %peer,
                    limit = limiter.max_per_client(),
                    "HTTP connection over the per-client limit; answering 429"
                );
                if !tls {
                    tokio::spawn(reject(stream));
                }
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(client = %peer, "cannot set TCP_NODELAY: {e}");
            }
            return (stream, peer, slot);
        }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedConn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedConn, SocketAddr) {
        loop {
            let Some(tls) = self.tls.clone() else {
                let (stream, peer, slot) =
                    Self::next_counted(&self.tcp, &self.limiter, false).await;
                let conn = LimitedConn {
                    stream: MaybeTls::Plain(stream),
                    _slot: slot,
                };
                return (conn, peer);
            };
            tokio::select! {
                (stream, peer, slot) = Self::next_counted(&self.tcp, &self.limiter, true) => {
                    self.handshakes.spawn(handshake(tls, stream, peer, slot));
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(accepted)) = done {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Errors that concern one connection, not the listener: retried at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection over the limit with Consul's 429 and closes it.
async fn reject(mut stream: TcpStream) {
    let answer = async {
        stream.write_all(TOO_MANY_CONNS_RESPONSE.as_bytes()).await?;
        stream.shutdown().await
    };
    if !matches!(
        tokio::time::timeout(REJECT_WRITE_TIMEOUT, answer).await,
        Ok(Ok(()))
    ) {
        // A client that does not read, or has gone, gets no answer.
        return;
    }
    let drain_input = async {
        let mut discard = [0u8; 1024];
        while let Ok(n) = stream.read(&mut discard).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REJECT_LINGER, drain_input).await;
}

/// Go's `tlsRecordHeaderLooksLikeHTTP`: the first five bytes of a plain
/// HTTP request, where a TLS record header was expected.
fn looks_like_http(head: &[u8]) -> bool {
    matches!(head, b"GET /" | b"HEAD " | b"POST " | b"PUT /" | b"OPTIO")
}

/// What Go's HTTP server (and so Consul) answers such a request with.
const PLAIN_HTTP_ON_TLS_RESPONSE: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The TLS handshake of one accepted connection; `None` (logged at a
/// bounded rate) when it fails or takes longer than the timeout.
async fn handshake(
    tls: HttpsTls,
    stream: TcpStream,
    peer: SocketAddr,
    slot: ConnSlot,
) -> Option<(LimitedConn, SocketAddr)> {
    let acceptor = tls.acceptor.clone();
    let session = async move {
        let mut stream = stream;
        let mut head = [0u8; 5];
        loop {
            let n = stream.peek(&mut head).await?;
            if n == 0 || n == head.len() {
                break;
            }
            // Part of a record: wait for the rest rather than spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if looks_like_http(&head) {
            let _ = stream.write_all(PLAIN_HTTP_ON_TLS_RESPONSE).await;
            let _ = stream.shutdown().await;
            return Ok(None);
        }
        acceptor.accept(stream).await.map(Some)
    };
    match tokio::time::timeout(tls.handshake_timeout, session).await {
        Ok(Ok(Some(session))) => Some((
            LimitedConn {
                stream: MaybeTls::Tls(Box::new(session.into())),
                _slot: slot,
            },
            peer,
        )),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tls.failures.report(peer, &e);
            None
        }
        Err(_) => {
            let why = format!("no handshake within {:?}", tls.handshake_timeout);
            tls.failures.report(peer, &why);
            None
        }
    }
}

/// An accepted HTTP connection, counted against its client until dropped.
#[derive(Debug)]
pub struct LimitedConn {
    stream: MaybeTls,
    _slot: ConnSlot,
}

impl LimitedConn {
    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The client address of a request served by [`serve`], as a request
/// extension: handlers take `ConnectInfo<ClientAddr>` (Consul logs it as
/// `from=` on every request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, LimitedListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Serves `router` on `listener` until `shutdown` holds `true` (or its sender
/// is dropped, which leaves nobody to signal it), then drains and returns.
///
/// On shutdown the listener is closed at once, so new connections are
/// refused; idle keep-alive connections are closed; requests in flight may
/// finish, their connections closing after the response. `serve` returns as
/// soon as every connection is gone, or when `drain` has passed, whichever is
/// first. Requests still running then are not cancelled by `serve`: their
/// connection tasks are detached and run on until they finish or the runtime
/// shuts down, which drops them mid-request (the client sees the connection
/// close with no response). A blocking query waiting out its `wait` is the
/// usual such request.
pub async fn serve(
    listener: LimitedListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let addr = listener.local_addr().ok();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown_signalled(shutdown.clone()))
    .into_future();
    tokio::pin!(server);

    tokio::select! {
        // Never an error, and it only ends after the shutdown signal; the
        // drain is then already over.
        _ = &mut server => return,
        () = shutdown_signalled(shutdown) => {}
    }
    match tokio::time::timeout(drain, server).await {
        Ok(_) => tracing::debug!(?addr, "HTTP server drained"),
        Err(_) => tracing::warn!(
            ?addr,
            "HTTP server: requests still in flight after the {drain:?} drain window; abandoning them"
        ),
    }
}

/// Resolves once `shutdown` holds `true` or its sender is gone.
async fn shutdown_signalled(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Instant;
    use tokio::sync::mpsc;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    /// Bound on any single wait in these tests, so a failure hangs nobody.
    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn canned_429_is_consuls_bytes_with_a_correct_length() {
        let (head, body) = TOO_MANY_CONNS_RESPONSE
            .split_once("\r\n\r\n")
            .expect("head and body");
        assert_eq!(body, too_many_conns_body!());
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(head.ends_with("\r\nConnection: close"));
    }

    #[test]
    fn ipv4_seen_through_a_dual_stack_socket_is_the_same_client() {
        let limiter = ConnLimiter::new(1);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let slot = limiter.try_acquire(LOCALHOST).expect("first");
        assert!(limiter.try_acquire(mapped).is_none());
        assert!(limiter
            .try_acquire(IpAddr::V6(Ipv6Addr::LOCALHOST))
            .is_some());
        drop(slot);
        assert_eq!(limiter.open_from(LOCALHOST), 0);
        assert!(limiter.try_acquire(mapped).is_some());
    }

    #[test]
    fn raising_the_limit_counts_connections_opened_while_unlimited() {
        let limiter = ConnLimiter::new(0);
        let _slots: Vec<_> = (0..3)
            .map(|_| limiter.try_acquire(LOCALHOST).expect("unlimited"))
            .collect();
        limiter.set_max_per_client(3);
        assert!(limiter.try_acquire(LOCALHOST).is_none());
        limiter.set_max_per_client(4);
        assert!(limiter.try_acquire(LOCALHOST).is_some());
    }

    /// A running [`serve`] on 127.0.0.1 with its controls.
    struct TestServer {
        addr: SocketAddr,
        limiter: ConnLimiter,
        shutdown: watch::Sender<bool>,
        served: tokio::task::JoinHandle<()>,
        /// One message per `/slow` request, when it starts.
        slow_started: mpsc::UnboundedReceiver<()>,
    }

    /// `/` answers `ok`; `/from` the client's address; `/slow` answers
    /// `slow` after `slow_for`.
    async fn start(max_per_client: usize, slow_for: Duration, drain: Duration) -> TestServer {
        let (started_tx, slow_started) = mpsc::unbounded_channel();
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/from",
                get(
                    |ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>| async move {
                        from.to_string()
                    },
                ),
            )
            .route(
                "/slow",
                get(move || {
                    let started = started_tx.clone();
                    async move {
                        let _ = started.send(());
                        tokio::time::sleep(slow_for).await;
                        "slow"
                    }
                }),
            );
        let tcp = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        let addr = tcp.local_addr().expect("local addr");
        let limiter = ConnLimiter::new(max_per_client);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let served = tokio::spawn(serve(
            LimitedListener::new(tcp, limiter.clone()),
            router,
            shutdown_rx,
            drain,
        ));
        TestServer {
            addr,
            limiter,
            shutdown,
            served,
            slow_started,
        }
    }

    async fn connect(addr: SocketAddr) -> TcpStream {
        TcpStream::connect(addr).await.expect("connect")
    }

    /// Sends one keep-alive GET and reads its response: (status line, body).
    async fn get_on(conn: &mut TcpStream, path: &str) -> (String, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        conn.write_all(request.as_bytes()).await.expect("write");
        tokio::time::timeout(PATIENCE, read_response(conn))
            .await
            .expect("response in time")
    }

    async fn read_response(conn: &mut TcpStream) -> (String, String) {
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = conn.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed mid-response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("content-length")
                .parse()
                .expect("length");
            if body.len() >= length {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return (status, body.to_owned());
            }
        }
    }

    /// Everything the server sends until it closes.
    async fn read_until_closed(conn: &mut TcpStream) -> String {
        let mut got = Vec::new();
        tokio::time::timeout(PATIENCE, conn.read_to_end(&mut got))
            .await
            .expect("closed in time")
            .expect("read");
        String::from_utf8_lossy(&got).into_owned()
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn connections_over_the_per_client_limit_get_429_and_are_closed() {
        let server = start(2, Duration::ZERO, PATIENCE).await;
        let mut first = connect(server.addr).await;
        let mut second = connect(server.addr).await;
        for conn in [&mut first, &mut second] {
            // Twice each: the connections are kept alive, not reopened.
            for _ in 0..2 {
                assert_eq!(
                    get_on(conn, "/").await,
                    ("HTTP/1.1 200 OK".into(), "ok".into())
                );
            }
        }
        assert_eq!(server.limiter.open_from(LOCALHOST), 2);

        // A third that says nothing gets the 429 and the close.
        let mut third = connect(server.addr).await;
        assert_eq!(read_until_closed(&mut third).await, TOO_MANY_CONNS_RESPONSE);
        // So does one that sends its request straight away.
        let mut fourth = connect(server.addr).await;
        fourth
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            read_until_closed(&mut fourth).await,
            TOO_MANY_CONNS_RESPONSE
        );

        // The accepted two are unaffected.
        assert_eq!(get_on(&mut second, "/").await.1, "ok");

        drop(first);
        wait_until("the closed connection frees its slot", || {
            server.limiter.open_from(LOCALHOST) == 1
        })
        .await;
        let mut fifth = connect(server.addr).await;
        let fifth_addr = fifth.local_addr().expect("local addr");
        assert_eq!(
            get_on(&mut fifth, "/from").await,
            ("HTTP/1.1 200 OK".into(), fifth_addr.to_string())
        );
        assert_eq!(get_on(&mut second, "/").await.1, "ok");
    }

    #[tokio::test]
    async fn limit_zero_is_unlimited() {
        const UNLIMITED_CONNS: usize = 50;
        let server = start(0, Duration::ZERO, PATIENCE).await;
        let mut conns = Vec::new();
        for _ in 0..UNLIMITED_CONNS {
            conns.push(connect(server.addr).await);
        }
        for conn in &mut conns {
            assert_eq!(get_on(conn, "/").await.1, "ok");
        }
        assert_eq!(server.limiter.open_from(LOCALHOST), UNLIMITED_CONNS);
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
        let slow_for = Duration::from_secs(1);
        let mut server = start(10, slow_for, PATIENCE).await;
        // An idle keep-alive connection must not hold the drain up.
        let mut idle = connect(server.addr).await;
        assert_eq!(get_on(&mut idle, "/").await.1, "ok");

        let mut busy = connect(server.addr).await;
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("write");
        tokio::time::timeout(PATIENCE, server.slow_started.recv())
            .await
            .expect("slow request started in time");
        let shutdown_at = Instant::now();
        server.shutdown.send(true).expect("serve is listening");

        // The port closes while the slow request is still running.
        let deadline = Instant::now() + slow_for / 2;
        loop {
            if TcpStream::connect(server.addr).await.is_err() {
                break;
            }
            assert!(Instant::now() < deadline, "still accepting after shutdown");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The idle connection is closed without an answer.
        assert_eq!(read_until_closed(&mut idle).await, "");

        let (status, body) = tokio::time::timeout(PATIENCE, read_response(&mut busy))
            .await
            .expect("response in time");
        assert_eq!(
            (status.as_str(), body.as_str()),
            ("HTTP/1.1 200 OK", "slow")
        );
        tokio::time::timeout(PATIENCE, server.served)
            .await
            .expect("serve returned after draining")
            .expect("serve did not panic");
        assert!(
            shutdown_at.elapsed() < PATIENCE / 2,
            "serve waited for the drain window instead of the last connection"
        );
    }

    #[tokio::test]
    async fn a_request_outliving_the_drain_window_does_not_hold_serve() {
        let drain = Duration::from_millis(300);
        let mut server = start(10, Duration::from_secs(3600), drain).await;
        let mut busy = connect(server.addr).await;
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .expect("write");
        tokio::time::timeout(PATIENCE, server.slow_started.recv())
            .await
            .expect("slow request started in time");

        let shutdown_at = Instant::now();
        server.shutdown.send(true).expect("serve is listening");
        tokio::time::timeout(PATIENCE, server.served)
            .await
            .expect("serve returned after the drain window")
            .expect("serve did not panic");
        let waited = shutdown_at.elapsed();
        assert!(
            waited >= drain,
            "serve returned before the drain window: {waited:?}"
        );
        assert!(
            waited < drain + PATIENCE / 2,
            "serve overstayed: {waited:?}"
        );
    }

    #[tokio::test]
    async fn dropping_the_shutdown_sender_shuts_down() {
        let server = start(10, Duration::ZERO, PATIENCE).await;
        drop(server.shutdown);
        tokio::time::timeout(PATIENCE, server.served)
            .await
            .expect("serve returned")
            .expect("serve did not panic");
    }

    #[tokio::test]
    async fn https_handshakes_run_beside_the_accept_loop_and_count_against_the_limit() {
        use crate::tls::generate::Role;
        let pki = crate::tls::tests::Pki::new();
        let (cert, key) = pki.issue(Role::Server, "dc1");
        let pair = crate::tls::files::key_pair(&cert, &key).unwrap();
        let roots = Arc::new(
            crate::tls::files::cas(Some(&pki.ca_file()), None)
                .unwrap()
                .unwrap(),
        );
        let iface = crate::config::Config::default().tls.https();
        let server_config = crate::tls::incoming::server_config(
            &iface,
            &pair,
            None,
            &crate::tls::incoming::HTTPS_ALPN,
        )
        .unwrap();
        let tcp = TcpListener::bind((LOCALHOST, 0)).await.expect("bind");
        let addr = tcp.local_addr().expect("local addr");
        let limiter = ConnLimiter::new(10);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let listener = LimitedListener::new(tcp, limiter.clone())
            .with_tls(HttpsTls::new(server_config, Duration::from_millis(500)));
        let served = tokio::spawn(serve(
            listener,
            Router::new().route("/", get(|| async { "ok" })),
            shutdown_rx,
            PATIENCE,
        ));

        // A client that never says anything holds a slot, not the loop.
        let _silent = connect(addr).await;
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(PATIENCE, connector.connect(name, connect(addr).await))
            .await
            .expect("handshake in time")
            .expect("handshake");
        assert_eq!(limiter.open_from(LOCALHOST), 2);
        tls.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(PATIENCE, tls.read_to_end(&mut got))
            .await
            .expect("answer in time")
            .ok();
        let got = String::from_utf8_lossy(&got);
        assert!(
            got.starts_with("HTTP/1.1 200 OK") && got.ends_with("ok"),
            "{got}"
        );

        // The silent one is dropped at the handshake timeout, its slot freed.
        wait_until("the silent connection times out", || {
            limiter.open_from(LOCALHOST) == 0
        })
        .await;
        shutdown.send(true).unwrap();
        tokio::time::timeout(PATIENCE, served)
            .await
            .expect("serve returned")
            .expect("no panic");
    }
}
