//! TLS, as Consul configures it: the agent's certificate, its CA and its
//! `verify_*` settings (`config::TlsConfig`) turned into rustls configs for
//! the HTTPS API and the server RPC port, and the X.509 certificates
//! `cairn tls` generates.
//!
//! - [`agent`]: everything the agent's configuration names, loaded and
//!   checked at startup;
//! - [`files`]: reading certificates, keys and CAs, with errors that name
//!   the file;
//! - [`incoming`]: the server side of the HTTPS API and the RPC port;
//! - [`outgoing`]: the client side of every dial to a server's RPC port;
//! - [`verify`]: the certificate checks rustls does not make the way
//!   Consul does (a chain without a name, a server's identity on raft);
//! - [`http_client`]: the CLI's side of the HTTPS API;
//! - [`stream`]: a connection in plain text or TLS, as servers see it;
//! - [`handshake_log`]: failed handshakes logged at a bounded rate;
//! - [`generate`] and `sec1`: the CA and agent certificates `cairn tls`
//!   writes.
//!
//! Everything runs on rustls with the ring provider: there is no OpenSSL,
//! and rustls speaks TLS 1.2 and 1.3 only (a `tls_min_version` of
//! `TLSv1_0` or `TLSv1_1` still means 1.2).

pub mod agent;
pub mod files;
pub mod generate;
pub mod handshake_log;
pub mod http_client;
pub mod incoming;
pub mod outgoing;
mod sec1;
pub mod stream;
pub mod verify;

pub use agent::{AgentTls, RpcTls};

use std::path::Path;
use std::sync::Arc;

/// Everything that can go wrong building a TLS configuration, in Consul's
/// words where Consul has them, always naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Consul: `Failed to load cert/key pair: open <file>: no such file or directory`.
    #[error("Failed to load cert/key pair: {0}")]
    KeyPair(String),
    /// Consul: `Error loading from <file>: ...`.
    #[error("Error loading from {path}: {why}")]
    Ca { path: String, why: String },
    #[error("Error loading from CAPath: no CAs found")]
    EmptyCaPath,
    #[error("VerifyIncoming set but no CA certificates were provided")]
    IncomingWithoutCa,
    #[error("VerifyIncoming requires either a Cert and Key pair in the configuration file, or auto_encrypt/auto_config be enabled")]
    IncomingWithoutCert,
    #[error("VerifyOutgoing set but no CA certificates were provided")]
    OutgoingWithoutCa,
    /// HTTPS on without a certificate to serve it with.
    #[error("HTTPS is enabled (ports.https = {port}) but no certificate is configured: set tls.https.cert_file and tls.https.key_file (or tls.defaults.*)")]
    HttpsWithoutCert { port: i32 },
    /// rustls refused what it was given.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS setup: {0}")]
    Verifier(String),
}

/// Reading `path` failed: Go's wording (`open <path>: no such file or
/// directory`), which is what Consul prints.
pub(crate) fn open_error(path: &Path, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ if path.is_dir() => "is a directory".to_string(),
        _ => e.to_string(),
    };
    format!("open {}: {why}", path.display())
}

/// The crypto provider every config here is built on: ring, with the TLS
/// 1.2 suites narrowed to `suites` when the configuration names some.
pub(crate) fn provider(suites: &[String]) -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    if !suites.is_empty() {
        p.cipher_suites.retain(|s| match s {
            rustls::SupportedCipherSuite::Tls13(_) => true,
            other => {
                let name = format!("{:?}", other.suite());
                suites.contains(&name)
            }
        });
    }
    Arc::new(p)
}

/// The protocol versions for a `tls_min_version`.
pub(crate) fn versions(
    min: crate::config::TlsVersion,
) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if min == crate::config::TlsVersion::V1_3 {
        &ONLY_13
    } else {
        &BOTH
    }
}

#[cfg(test)]
pub(crate) mod tests;
