//! Targets for health-check tests: an HTTP server whose answer can be
//! flipped, and a gRPC health server whose serving status can be flipped.
//! Both run on 127.0.0.1 in background threads and stop when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP/1.1 server answering every request with the current status code
/// and body `hello`, counting requests by the code it answered.
pub struct FlipHttp {
    pub port: u16,
    code: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    pub hits: Arc<AtomicU64>,
    /// Requests answered with a non-2xx code.
    pub failures: Arc<AtomicU64>,
    /// Requests answered with a 2xx code.
    pub successes: Arc<AtomicU64>,
    /// The head of the last request (request line and headers).
    pub last_request: Arc<Mutex<String>>,
}

impl FlipHttp {
    pub fn start(code: u16) -> FlipHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let s = FlipHttp {
            port,
            code: Arc::new(AtomicU16::new(code)),
            stop: Arc::new(AtomicBool::new(false)),
            hits: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(AtomicU64::new(0)),
            successes: Arc::new(AtomicU64::new(0)),
            last_request: Arc::new(Mutex::new(String::new())),
        };
        let (code, stop, hits, failures, successes, last) = (
            s.code.clone(),
            s.stop.clone(),
            s.hits.clone(),
            s.failures.clone(),
            s.successes.clone(),
            s.last_request.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let c = code.load(Ordering::SeqCst);
                        if let Some(head) = answer(conn, c) {
                            *last.lock().unwrap() = head;
                            hits.fetch_add(1, Ordering::SeqCst);
                            if (200..300).contains(&c) {
                                successes.fetch_add(1, Ordering::SeqCst);
                            } else {
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        s
    }

    pub fn set(&self, code: u16) {
        self.code.store(code, Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }
}

impl Drop for FlipHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn answer(mut conn: TcpStream, code: u16) -> Option<String> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let reason = match code {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let body = "hello";
    let resp = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).ok()?;
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// grpc.health.v1 serving statuses.
pub const SERVING: u8 = 1;
pub const NOT_SERVING: u8 = 2;

/// A gRPC server (h2c) that answers `grpc.health.v1.Health/Check` with the
/// current serving status, whatever service is asked for, and remembers
/// the last service name asked about.
pub struct GrpcHealth {
    pub port: u16,
    status: Arc<AtomicU8>,
    pub last_service: Arc<Mutex<String>>,
    _rt: tokio::runtime::Runtime,
}

impl GrpcHealth {
    pub fn start(status: u8) -> GrpcHealth {
        Self::start_inner(status, None)
    }

    /// The same over TLS (ALPN h2) with the self-signed test certificate.
    pub fn start_tls(status: u8) -> GrpcHealth {
        Self::start_inner(status, Some(tls_acceptor(&[b"h2"])))
    }

    fn start_inner(status: u8, tls: Option<tokio_rustls::TlsAcceptor>) -> GrpcHealth {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let status = Arc::new(AtomicU8::new(status));
        let last_service = Arc::new(Mutex::new(String::new()));
        let (st, last) = (status.clone(), last_service.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (st, last, tls) = (st.clone(), last.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve_grpc(conn, st, last).await,
                        Some(acceptor) => {
                            if let Ok(conn) = acceptor.accept(conn).await {
                                serve_grpc(conn, st, last).await
                            }
                        }
                    }
                });
            }
        });
        GrpcHealth {
            port,
            status,
            last_service,
            _rt: rt,
        }
    }

    pub fn set(&self, status: u8) {
        self.status.store(status, Ordering::SeqCst);
    }
}

async fn serve_grpc<T>(conn: T, st: Arc<AtomicU8>, last: Arc<Mutex<String>>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut h2) = h2::server::handshake(conn).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = h2.accept().await {
        let mut body = req.into_body();
        let mut msg = Vec::new();
        while let Some(Ok(chunk)) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk.len());
            msg.extend_from_slice(&chunk);
        }
        // Frame: flag, length, then field 1 (service name).
        let service = if msg.len() > 7 && msg[5] == 0x0a {
            let n = msg[6] as usize;
            String::from_utf8_lossy(&msg[7..(7 + n).min(msg.len())]).into_owned()
        } else {
            String::new()
        };
        *last.lock().unwrap() = service;
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        let Ok(mut send) = respond.send_response(resp, false) else {
            continue;
        };
        let s = st.load(Ordering::SeqCst);
        let _ = send.send_data(bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, s]), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let _ = send.send_trailers(trailers);
    }
}

/// A self-signed certificate for `localhost`, `cairn-test.local` and
/// 127.0.0.1 (valid until 2126), and its key. Trusted by no one.
pub const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBsDCCAVagAwIBAgIUF8H/UUY0tJCxnARBTIeK61njOoMwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKY2Fpcm4tdGVzdDAgFw0yNjExMjExOTE5MzhaGA8yMTI2MTAy
ODE5MTkzOFowFTETMBEGA1UEAwwKY2Fpcm4tdGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABGMNfLDV7l1TpJH8cS1H4w+BvDlDqYKdJWtrs3xcsLNsE2zK2Ypr
7k/CrACvrOJ5edwtAmWO0Xv28XAIjztM+xWjgYEwfzAdBgNVHQ4EFgQU4OfkcaIG
Hl39ofOV36S2vYxMoPcwHwYDVR0jBBgwFoAU4OfkcaIGHl39ofOV36S2vYxMoPcw
DwYDVR0TAQH/BAUwAwEB/zAsBgNVHREEJTAjgglsb2NhbGhvc3SCEGNhaXJuLXRl
c3QubG9jYWyHBH8AAAEwCgYIKoZIzj0EAwIDSAAwRQIgZZcHgnAGw6CBCqUEq5D1
h+eXjwQMrS7QiKckNF+npnsCIQDR+Zsf7dswoIfyvC3PYB50oN/Q5zNHNLoCmEMf
K9Me3w==
-----END CERTIFICATE-----
";
pub const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgvYcR7llgDOGrb45n
e+RZYJHfmrSKlBM5cU9ty3ZLcq2hRANCAARjDXyw1e5dU6SR/HEtR+MPgbw5Q6mC
nSVra7N8XLCzbBNsytmKa+5PwqwAr6zieXncLQJljtF79vFwCI87TPsV
-----END PRIVATE KEY-----
";

fn tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).expect("cert");
    let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An HTTPS server (the test certificate) answering 200 `secure` and
/// remembering the server name (SNI) each client asked for.
pub struct TlsHttp {
    pub port: u16,
    pub last_sni: Arc<Mutex<String>>,
    _rt: tokio::runtime::Runtime,
}

impl TlsHttp {
    pub fn start() -> TlsHttp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let last_sni = Arc::new(Mutex::new(String::new()));
        let sni = last_sni.clone();
        let acceptor = tls_acceptor(&[b"http/1.1"]);
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, sni) = (acceptor.clone(), sni.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(conn).await else {
                        return;
                    };
                    *sni.lock().unwrap() = tls.get_ref().1.server_name().unwrap_or("").to_string();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsHttp {
            port,
            last_sni,
            _rt: rt,
        }
    }
}

/// An HTTP/2 server (cleartext with prior knowledge, or TLS with ALPN h2
/// and the self-signed test certificate) that acknowledges PINGs, for
/// H2PING checks. Stopped (its listener closed) by [`H2Server::stop`] or
/// on drop.
pub struct H2Server {
    pub port: u16,
    rt: Option<tokio::runtime::Runtime>,
}

impl H2Server {
    pub fn start() -> H2Server {
        Self::start_inner(None)
    }

    pub fn start_tls() -> H2Server {
        Self::start_inner(Some(tls_acceptor(&[b"h2"])))
    }

    fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> H2Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_h2(conn).await,
                        Some(acceptor) => {
                            if let Ok(conn) = acceptor.accept(conn).await {
                                serve_h2(conn).await
                            }
                        }
                    }
                });
            }
        });
        H2Server { port, rt: Some(rt) }
    }

    /// Closes the listener and every connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for H2Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_h2<T>(io: T)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // The server side of h2 answers PINGs while it is polled for requests.
    if let Ok(mut conn) = h2::server::handshake(io).await {
        while let Some(Ok(_request)) = conn.accept().await {}
    }
}
