//! gRPC checks: one `grpc.health.v1.Health/Check` call per interval over
//! HTTP/2 (h2c, or TLS with `GRPCUseTLS`). `GRPC` is `host:port` or
//! `host:port/service`; SERVING is passing, any other answer or error is
//! critical.
//!
//! The protocol is small enough to speak by hand: the request is a gRPC
//! frame (flag byte, big-endian length) around a protobuf message with one
//! string field, the reply a frame around one enum field, and the call's
//! outcome is the `grpc-status` trailer.

use super::Probe;
use crate::catalog::types::HealthStatus;
use bytes::{BufMut, Bytes, BytesMut};
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

pub const PATH: &str = "/grpc.health.v1.Health/Check";
/// Replies larger than this are not health replies.
const MAX_REPLY: usize = 64 * 1024;

/// `host:port[/service]` split into the authority and the service name.
pub fn parse_target(target: &str) -> (&str, &str) {
    match target.split_once('/') {
        Some((authority, service)) => (authority, service),
        None => (target, ""),
    }
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// A length-prefixed, uncompressed gRPC message holding `HealthCheckRequest`.
pub fn encode_request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + msg.len());
    frame.put_u8(0);
    frame.put_u32(msg.len() as u32);
    frame.put_slice(&msg);
    frame.freeze()
}

/// The `status` of the `HealthCheckResponse` in one gRPC frame (0, UNKNOWN,
/// when absent, as proto3 defaults it).
pub fn decode_response(frame: &[u8]) -> Result<u64, String> {
    if frame.len() < 5 {
        return Err("short gRPC frame".into());
    }
    if frame[0] != 0 {
        return Err("compressed gRPC reply".into());
    }
    let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let msg = frame
        .get(5..5 + len)
        .ok_or_else(|| "truncated gRPC frame".to_string())?;
    let mut pos = 0;
    let mut status = 0;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = get_varint(msg, &mut pos)?,
            (_, 0) => {
                get_varint(msg, &mut pos)?;
            }
            (_, 1) => pos += 8,
            (_, 2) => {
                let n = get_varint(msg, &mut pos)? as usize;
                pos = pos.saturating_add(n);
            }
            (_, 5) => pos += 4,
            (_, w) => return Err(format!("unsupported wire type {w}")),
        }
    }
    if pos > msg.len() {
        return Err("truncated protobuf message".into());
    }
    Ok(status)
}

pub fn serving_status_name(s: u64) -> String {
    match s {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

fn grpc_code_name(code: &str) -> &str {
    match code {
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        other => other,
    }
}

pub struct GrpcProbe {
    target: String,
    authority: String,
    service: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
}

impl GrpcProbe {
    pub async fn new(
        target: &str,
        use_tls: bool,
        skip_verify: bool,
        server_name: &str,
        timeout: Duration,
    ) -> Result<GrpcProbe, String> {
        let (authority, service) = parse_target(target);
        let tls = if use_tls {
            let config = super::tls::client_config(skip_verify, &[b"h2"]).await?;
            let name = if server_name.is_empty() {
                authority
                    .rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(authority)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
            } else {
                server_name
            };
            let name = ServerName::try_from(name.to_string())
                .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        Ok(GrpcProbe {
            target: target.to_string(),
            authority: authority.to_string(),
            service: service.to_string(),
            tls,
            timeout,
        })
    }

    /// The serving status, or why there is none.
    async fn call(&self) -> Result<u64, String> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("dial tcp {}: {e}", self.authority))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.call_over(tcp, "http").await,
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("tls handshake with {}: {e}", self.authority))?;
                self.call_over(tls, "https").await
            }
        }
    }

    async fn call_over<T>(&self, io: T, scheme: &str) -> Result<u64, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (client, connection) = h2::client::handshake(io)
            .await
            .map_err(|e| format!("http2 handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let result = self.request(client, scheme).await;
        driver.abort();
        result
    }

    async fn request(
        &self,
        client: h2::client::SendRequest<Bytes>,
        scheme: &str,
    ) -> Result<u64, String> {
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{scheme}://{}{PATH}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "cairn-health-check")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
        send.send_data(encode_request(&self.service), true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status().as_u16()));
        }
        let (parts, mut body) = response.into_parts();
        // A call that fails at once answers with headers only ("Trailers-Only").
        grpc_status(&parts.headers)?;
        let mut reply = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            reply.extend_from_slice(&chunk);
            if reply.len() > MAX_REPLY {
                return Err("gRPC reply too large".into());
            }
        }
        match body.trailers().await.map_err(|e| e.to_string())? {
            Some(trailers) => grpc_status(&trailers)?,
            None if parts.headers.contains_key("grpc-status") => {}
            None => return Err("gRPC reply without grpc-status".into()),
        }
        decode_response(&reply)
    }
}

/// `Err` with Consul-style text for a non-OK `grpc-status`.
fn grpc_status(headers: &http::HeaderMap) -> Result<(), String> {
    let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    if code == "0" {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Err(format!(
        "rpc error: code = {} desc = {message}",
        grpc_code_name(code)
    ))
}

impl Probe for GrpcProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        match tokio::time::timeout(self.timeout, self.call()).await {
            Ok(Ok(1)) => (
                HealthStatus::Passing,
                format!("gRPC check {}: success", self.target),
            ),
            Ok(Ok(s)) => (
                HealthStatus::Critical,
                format!(
                    "gRPC {} serving status: {}",
                    self.target,
                    serving_status_name(s)
                ),
            ),
            Ok(Err(e)) => (
                HealthStatus::Critical,
                format!("gRPC check {}: {e}", self.target),
            ),
            Err(_) => (
                HealthStatus::Critical,
                format!(
                    "gRPC check {}: timed out after {}",
                    self.target,
                    crate::duration::format(self.timeout)
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_authority_and_service() {
        assert_eq!(parse_target("127.0.0.1:50051"), ("127.0.0.1:50051", ""));
        assert_eq!(
            parse_target("localhost:50051/pkg.Svc"),
            ("localhost:50051", "pkg.Svc")
        );
    }

    #[test]
    fn request_frames_carry_the_service_name() {
        assert_eq!(&encode_request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &encode_request("ab")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
        let long = "s".repeat(200);
        let frame = encode_request(&long);
        // 200 needs a two-byte varint: 0xc8 0x01.
        assert_eq!(&frame[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
        assert_eq!(frame.len(), 5 + 203);
    }

    #[test]
    fn replies_decode_to_serving_status() {
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 2]), Ok(2));
        // An empty message is the proto3 default, UNKNOWN.
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]), Ok(0));
        // Unknown fields are skipped.
        assert_eq!(
            decode_response(&[0, 0, 0, 0, 6, 0x12, 2, b'h', b'i', 0x08, 1]),
            Ok(1)
        );
        assert!(decode_response(&[0, 0, 0]).is_err());
        assert!(decode_response(&[0, 0, 0, 0, 9, 0x08]).is_err());
        assert!(decode_response(&[1, 0, 0, 0, 2, 0x08, 1]).is_err());
    }
}
