//! The CLI's side of the HTTPS API: the rustls config its HTTP client uses,
//! from `-ca-file`, `-ca-path`, `-client-cert`, `-client-key` and
//! `-tls-server-name` or their `CONSUL_*` variables, as Consul's `api`
//! package builds its `tls.Config`.
//!
//! Without a CA the system's roots are trusted. `-tls-server-name` checks
//! the agent's certificate against that name instead of the address's host
//! (and sends it as SNI when it is a DNS name). `CONSUL_HTTP_SSL_VERIFY=false`
//! accepts any certificate.

use super::verify::{ExpectName, Unverified};
use super::{files, TlsError};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::path::PathBuf;
use std::sync::Arc;

/// What the CLI was told about TLS.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: Option<String>,
    /// `CONSUL_HTTP_SSL_VERIFY=false`.
    pub insecure: bool,
}

impl ClientTls {
    /// The config for the CLI's HTTPS client.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = super::provider(&[]);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(super::versions(crate::config::TlsVersion::Auto))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified::new(&provider)))
        } else {
            let roots = Arc::new(self.roots()?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            match &self.server_name {
                Some(name) => {
                    let name = ServerName::try_from(name.clone()).map_err(|_| {
                        TlsError::Verifier(format!("invalid TLS server name {name:?}"))
                    })?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ExpectName::new(verifier, name)))
                }
                None => builder.with_webpki_verifier(verifier),
            }
        };
        Ok(match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let pair = files::key_pair(cert, key)?;
                builder.with_client_auth_cert(pair.chain, pair.key)?
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(TlsError::KeyPair(
                    "a client certificate needs both -client-cert and -client-key".into(),
                ))
            }
            (None, None) => builder.with_no_client_auth(),
        })
    }

    /// The CA files given, else the system's roots.
    fn roots(&self) -> Result<RootCertStore, TlsError> {
        if let Some(roots) = files::cas(self.ca_file.as_deref(), self.ca_path.as_deref())? {
            return Ok(roots);
        }
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system root rustls cannot use is skipped, as Go skips
            // unparsable ones.
            let _ = roots.add(cert);
        }
        Ok(roots)
    }
}
