//! The certificates `cairn tls` writes, as Consul's `tlsutil` generates
//! them: EC P-256 keys in SEC1 PEM, 128-bit random serials, subject key IDs
//! that are the SHA-256 of the public key.
//!
//! - the CA (`tls ca create`): CN `Consul Agent CA <serial>` unless one is
//!   given, Consul's subject, key usage cert-sign/CRL-sign/digital-signature,
//!   optional critical DNS name constraints and SPIFFE URI;
//! - agent certificates (`tls cert create`): CN and SANs by role (see
//!   [`Role`]), key usage digital-signature/key-encipherment, checked
//!   against the CA for their own name before they are handed back, as
//!   Consul's `tlsutil.Verify` does.

use super::sec1;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, NameConstraints,
    PublicKeyData, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::net::IpAddr;

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// `tls ca create`'s options.
#[derive(Debug, Clone)]
pub struct CaOptions {
    pub days: u32,
    pub domain: String,
    /// `-name-constraint`: the CA signs only for `domain`, `localhost` and
    /// `additional_constraints`.
    pub name_constraint: bool,
    pub additional_constraints: Vec<String>,
    /// `-cluster-id`: adds the URI SAN `spiffe://<id>.<domain>`.
    pub cluster_id: Option<String>,
    pub common_name: Option<String>,
}

/// What an agent certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `server.<dc>.<domain>`: server and client auth.
    Server,
    /// `client.<dc>.<domain>`: client and server auth.
    Client,
    /// `cli.<dc>.<domain>`: no extended key usage, no IP address.
    Cli,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }
}

/// `tls cert create`'s options.
#[derive(Debug, Clone)]
pub struct CertOptions {
    pub role: Role,
    pub datacenter: String,
    pub domain: String,
    pub days: u32,
    /// `-node` (servers only): adds `<node>.server.<dc>.<domain>`.
    pub node: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

impl CertOptions {
    /// The certificate's common name, which is also the name it is
    /// verified for.
    pub fn name(&self) -> String {
        format!("{}.{}.{}", self.role.as_str(), self.datacenter, self.domain)
    }

    /// Consul's SANs: the extra names first, then the role's own.
    fn sans(&self) -> (Vec<String>, Vec<IpAddr>) {
        let name = self.name();
        let mut dns: Vec<String> = self.dns_names.clone();
        let mut ips = self.ip_addresses.clone();
        match self.role {
            Role::Server => {
                if let Some(node) = &self.node {
                    dns.push(format!("{node}.server.{}.{}", self.datacenter, self.domain));
                }
                dns.extend([name, "localhost".into()]);
                ips.push(IpAddr::from([127, 0, 0, 1]));
            }
            Role::Client => {
                dns.extend([name, "localhost".into()]);
                ips.push(IpAddr::from([127, 0, 0, 1]));
            }
            // Consul replaces the additional names of a CLI certificate.
            Role::Cli => {
                dns = vec![name, "localhost".into()];
                ips.clear();
            }
        }
        (dns, ips)
    }

    fn extended_key_usages(&self) -> Vec<ExtendedKeyUsagePurpose> {
        match self.role {
            Role::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Client => vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
            Role::Cli => vec![],
        }
    }
}

/// A fresh 128-bit serial and its decimal form (the CA's default name).
fn serial() -> Result<(SerialNumber, String), String> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "error generating serial number".to_string())?;
    let decimal = u128::from_be_bytes(bytes).to_string();
    Ok((SerialNumber::from_slice(&bytes), decimal))
}

/// Consul's key ID: the SHA-256 of the DER public key info.
fn key_id(key: &KeyPair) -> KeyIdMethod {
    let digest = ring::digest::digest(&ring::digest::SHA256, &key.subject_public_key_info());
    KeyIdMethod::PreSpecified(digest.as_ref().to_vec())
}

/// `now` and `now + days`.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(i64::from(days));
}

fn new_key() -> Result<KeyPair, String> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("error generating private key: {e}"))
}

/// The key as Consul writes it: `EC PRIVATE KEY`.
fn key_pem(key: &KeyPair) -> Result<String, String> {
    let der = sec1::pkcs8_to_sec1(&key.serialize_der())
        .map_err(|e| format!("error encoding private key: {e}"))?;
    Ok(pem_block("EC PRIVATE KEY", &der))
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new CA.
pub fn ca(opts: &CaOptions) -> Result<Pem, String> {
    let key = new_key()?;
    let (serial, decimal) = serial()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    // postalCode, streetAddress: Consul's subject has both.
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 17]), "94105");
    dn.push(DnType::StateOrProvinceName, "CA");
    dn.push(DnType::LocalityName, "San Francisco");
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 9]), "101 Second Street");
    dn.push(DnType::OrganizationName, "HashiCorp Inc.");
    let cn = match &opts.common_name {
        Some(n) if !n.is_empty() => n.clone(),
        _ => format!("Consul Agent CA {decimal}"),
    };
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.key_identifier_method = key_id(&key);
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, opts.days);
    if opts.name_constraint {
        let mut permitted: Vec<GeneralSubtree> = opts
            .additional_constraints
            .iter()
            .map(|d| GeneralSubtree::DnsName(d.clone()))
            .collect();
        permitted.push(GeneralSubtree::DnsName(opts.domain.clone()));
        permitted.push(GeneralSubtree::DnsName("localhost".into()));
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted,
            excluded_subtrees: vec![],
        });
    }
    if let Some(id) = opts.cluster_id.as_deref().filter(|id| !id.is_empty()) {
        let uri = format!("spiffe://{id}.{}", opts.domain);
        params.subject_alt_names.push(SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|_| format!("invalid SPIFFE ID {uri:?}"))?,
        ));
    }
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("error generating CA certificate: {e}"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key_pem(&key)?,
    })
}

/// The CA's key as ring reads it: SEC1 (Consul's) or PKCS#8.
fn signer(ca_key_pem: &str) -> Result<KeyPair, String> {
    let der = PrivateKeyDer::from_pem_slice(ca_key_pem.as_bytes())
        .map_err(|_| "no PEM-encoded data found".to_string())?;
    let pkcs8 = match &der {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Sec1(k) => sec1::sec1_to_pkcs8(k.secret_sec1_der())?,
        _ => return Err("unknown PEM block type for signing key: RSA PRIVATE KEY".into()),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|e| format!("invalid CA key: {e}"))
}

/// A new agent certificate signed by the CA `ca_pem` with `ca_key_pem`.
pub fn cert(opts: &CertOptions, ca_pem: &str, ca_key_pem: &str) -> Result<Pem, String> {
    let signing_key = signer(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, signing_key)
        .map_err(|e| format!("failed to parse CA: {e}"))?;
    let key = new_key()?;
    let (serial, _) = serial()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, opts.name());
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = opts.extended_key_usages();
    params.key_identifier_method = key_id(&key);
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, opts.days);
    let (dns, ips) = opts.sans();
    for d in dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| format!("invalid DNS name {d:?}"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("failed to create certificate: {e}"))?;
    verify(ca_pem, cert.der(), &opts.name())?;
    Ok(Pem {
        cert: cert.pem(),
        key: key_pem(&key)?,
    })
}

/// Consul's `tlsutil.Verify`: the certificate chains to the CA and is
/// valid for `name` (which catches a `-key` that is not the CA's).
fn verify(ca_pem: &str, cert: &CertificateDer<'_>, name: &str) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|_| "failed to parse root certificate".to_string())?;
        roots
            .add(ca)
            .map_err(|_| "failed to parse root certificate".to_string())?;
    }
    let parsed = rustls::server::ParsedCertificate::try_from(cert)
        .map_err(|_| "failed to parse certificate".to_string())?;
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &[],
        UnixTime::now(),
        algs.all,
    )
    .map_err(|e| format!("x509: certificate signed by unknown authority ({e})"))?;
    let server_name =
        ServerName::try_from(name.to_string()).map_err(|_| format!("invalid name {name:?}"))?;
    rustls::client::verify_server_name(&parsed, &server_name).map_err(|e| e.to_string())
}
