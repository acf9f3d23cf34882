//! Dialling the RPC port: from the agent's bind address (so peers and
//! firewalls see the address the agent advertises), with the connection's
//! protocol byte sent first.

use super::Protocol;
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn resolve(addr: &str) -> io::Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}")))
}

/// Connects to `addr` from `local` (when it is a specific address of the
/// same family) and sends the protocol byte.
pub async fn dial(addr: &str, local: Option<IpAddr>, protocol: Protocol) -> io::Result<TcpStream> {
    let target = resolve(addr).await?;
    let sock = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(ip) = local.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == target.is_ipv4()) {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = sock.connect(target).await?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&[protocol as u8]).await?;
    Ok(stream)
}
