//! The server side: a rustls `ServerConfig` for one interface (the HTTPS
//! API, or the RPC port's TLS connections) from its certificate, CA and
//! `verify_incoming`.
//!
//! With `verify_incoming` the client must present a certificate signed by
//! the CA, or the handshake fails (Go's `RequireAndVerifyClientCert`);
//! without it no certificate is asked for.

use super::files::KeyPair;
use super::TlsError;
use crate::config::TlsInterface;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;

/// ALPN for the HTTPS API, as Consul offers it. cairn serves HTTP/1.1 on
/// it (hyper picks the protocol from what the client sends).
pub const HTTPS_ALPN: [&[u8]; 1] = [b"http/1.1"];

/// A server config for `iface` serving `cert`, verifying clients against
/// `roots` when `iface.verify_incoming`.
pub fn server_config(
    iface: &TlsInterface,
    cert: &KeyPair,
    roots: Option<&Arc<RootCertStore>>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = super::provider(&iface.cipher_suites);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(super::versions(iface.min_version))?;
    let builder = match (iface.verify_incoming, roots) {
        (true, Some(roots)) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider)
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (true, None) => return Err(TlsError::IncomingWithoutCa),
        (false, _) => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(cert.chain.clone(), cert.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
