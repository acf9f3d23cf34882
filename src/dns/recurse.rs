//! Forwarding to `recursors`, as Consul's `handleRecurse`: a question
//! outside the served domains (or a reverse lookup cairn cannot answer) is
//! sent verbatim to each recursor in turn over the client's transport; the
//! first reply whose rcode is NOERROR or NXDOMAIN is relayed. If none
//! answers, the client gets SERVFAIL. Without recursors such questions are
//! REFUSED (or NXDOMAIN for reverse lookups).

use hickory_proto::op::{Message, ResponseCode};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The configured upstream resolvers.
#[derive(Debug, Clone, Default)]
pub struct Recursors {
    addrs: Vec<SocketAddr>,
    timeout: Duration,
}

impl Recursors {
    /// Parses `IP` or `IP:port` entries (port 53 by default); entries that
    /// are neither are skipped with a warning.
    pub fn new(list: &[String], timeout: Duration) -> Recursors {
        let addrs = list
            .iter()
            .filter_map(|r| {
                let parsed = parse_addr(r);
                if parsed.is_none() {
                    tracing::warn!("dns: ignoring invalid recursor address {r:?}");
                }
                parsed
            })
            .collect();
        Recursors { addrs, timeout }
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// Sends `query` (wire bytes, as received) to the recursors in order and
    /// returns the first usable reply.
    pub async fn forward(&self, query: &[u8], tcp: bool) -> Option<Message> {
        for addr in &self.addrs {
            let reply = tokio::time::timeout(self.timeout, exchange(*addr, query, tcp)).await;
            let bytes = match reply {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    tracing::debug!("dns: recursor {addr} failed: {e}");
                    continue;
                }
                Err(_) => {
                    tracing::debug!("dns: recursor {addr} timed out");
                    continue;
                }
            };
            let Ok(message) = Message::from_vec(&bytes) else {
                continue;
            };
            if query.len() >= 2 && message.metadata.id.to_be_bytes() != query[..2] {
                continue;
            }
            if matches!(
                message.metadata.response_code,
                ResponseCode::NoError | ResponseCode::NXDomain
            ) {
                return Some(message);
            }
        }
        None
    }
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa);
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

async fn exchange(addr: SocketAddr, query: &[u8], tcp: bool) -> std::io::Result<Vec<u8>> {
    if tcp {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(query).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await?;
        Ok(buf)
    } else {
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        socket.send(query).await?;
        let mut buf = vec![0u8; 65535];
        let n = socket.recv(&mut buf).await?;
        buf.truncate(n);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursor_addresses() {
        assert_eq!(parse_addr("8.8.8.8"), Some("8.8.8.8:53".parse().unwrap()));
        assert_eq!(
            parse_addr("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(parse_addr("::1"), Some("[::1]:53".parse().unwrap()));
        assert_eq!(
            parse_addr("[::1]:5353"),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_addr("dns.example"), None);
        let r = Recursors::new(&["x".into(), "1.1.1.1".into()], Duration::from_secs(1));
        assert!(!r.is_empty());
    }
}
