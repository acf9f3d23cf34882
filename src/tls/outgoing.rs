//! The client side of the RPC port: the rustls `ClientConfig` every dial
//! to a server uses when `verify_outgoing` is on, presenting the agent's
//! certificate when it has one.
//!
//! With `verify_server_hostname` the server's certificate must be valid for
//! `server.<dc>.<domain>` ([`server_name`]); without it only its chain to
//! the CA is checked ([`super::verify::ChainOnly`]), as in Consul.

use super::files::KeyPair;
use super::verify::ChainOnly;
use super::TlsError;
use crate::config::TlsInterface;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

/// The name a server's certificate must carry: `server.<dc>.<domain>`.
pub fn server_name(datacenter: &str, domain: &str) -> Result<ServerName<'static>, TlsError> {
    let name = format!("server.{datacenter}.{}", domain.trim_end_matches('.'));
    ServerName::try_from(name.clone())
        .map_err(|_| TlsError::Verifier(format!("{name:?} is not a valid DNS name")))
}

/// The config for dials to servers on `iface`, verifying against `roots`.
pub fn rpc_client_config(
    iface: &TlsInterface,
    cert: Option<&KeyPair>,
    roots: &Arc<RootCertStore>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = super::provider(&iface.cipher_suites);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(super::versions(iface.min_version))?;
    let builder = if iface.verify_server_hostname {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly::new(roots.clone(), &provider)))
    };
    let config = match cert {
        Some(c) => builder.with_client_auth_cert(c.chain.clone(), c.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
