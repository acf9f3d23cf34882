//! Certificate checks that rustls' stock verifiers do not make the way
//! Consul does.
//!
//! - [`ChainOnly`]: `verify_outgoing` without `verify_server_hostname`
//!   checks that a server's certificate chains to the CA and nothing about
//!   its names (Consul verifies the chain itself with an empty DNS name,
//!   since agents are dialled by IP).
//! - [`ExpectName`]: the CLI's `-tls-server-name` / `CONSUL_TLS_SERVER_NAME`
//!   checks the certificate against that name instead of the URL's host.
//! - [`Unverified`]: accepts any certificate, for `CONSUL_HTTP_SSL_VERIFY=false`.
//! - [`authorize_server`]: Consul's `AuthorizeServerConn` (the
//!   CVE-2021-37219 fix): a raft connection must present a certificate valid
//!   for `server.<dc>.<domain>`, so a client agent's certificate, or a
//!   server certificate of another datacenter, cannot take part in raft.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// Verifies that a server's certificate chains to `roots`, whatever names
/// it carries.
#[derive(Debug)]
pub struct ChainOnly {
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
}

impl ChainOnly {
    pub fn new(roots: Arc<RootCertStore>, provider: &rustls::crypto::CryptoProvider) -> Self {
        ChainOnly {
            roots,
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Full verification against a fixed name rather than the one dialled.
#[derive(Debug)]
pub struct ExpectName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ExpectName {
    pub fn new(inner: Arc<WebPkiServerVerifier>, name: ServerName<'static>) -> Self {
        ExpectName { inner, name }
    }
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate (the handshake's own signatures are still
/// checked, so the session is at least with the holder of that key).
#[derive(Debug)]
pub struct Unverified {
    algs: WebPkiSupportedAlgorithms,
}

impl Unverified {
    pub fn new(provider: &rustls::crypto::CryptoProvider) -> Self {
        Unverified {
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Consul's `AuthorizeServerConn`: the peer's certificate (its chain
/// already verified by the handshake) must be valid for `expected`
/// (`server.<dc>.<domain>`). The error is Consul's log text.
pub fn authorize_server(
    peer_certs: Option<&[CertificateDer<'_>]>,
    expected: &ServerName<'_>,
) -> Result<(), String> {
    let fail = |why: String| {
        format!(
            "AuthorizeServerConn failed certificate validation for certificate with a SAN.DNSName of {}: {why}",
            expected.to_str()
        )
    };
    let Some(leaf) = peer_certs.and_then(|c| c.first()) else {
        return Err(fail("no verified chains".into()));
    };
    let cert = ParsedCertificate::try_from(leaf).map_err(|e| fail(e.to_string()))?;
    rustls::client::verify_server_name(&cert, expected).map_err(|e| fail(e.to_string()))
}
