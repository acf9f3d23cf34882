//! Reading the PEM files a `tls` block names: the agent's certificate and
//! key (`cert_file`, `key_file`) and its CAs (`ca_file`, or every file under
//! `ca_path`), as Consul's `tlsutil` reads them. A file that is missing,
//! unreadable, not PEM, or whose key does not match its certificate, is an
//! error that names it.

use super::{open_error, TlsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use std::path::Path;

/// A certificate chain and the private key of its first certificate.
#[derive(Debug)]
pub struct KeyPair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for KeyPair {
    fn clone(&self) -> Self {
        KeyPair {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Every certificate in the PEM text `pem` (other blocks are skipped).
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))
}

/// Loads `cert_file` and `key_file` and checks that they belong together.
pub fn key_pair(cert_file: &Path, key_file: &Path) -> Result<KeyPair, TlsError> {
    let fail = |why: String| TlsError::KeyPair(why);
    let cert_pem = std::fs::read(cert_file).map_err(|e| fail(open_error(cert_file, &e)))?;
    let key_pem = std::fs::read(key_file).map_err(|e| fail(open_error(key_file, &e)))?;
    let chain =
        certificates(&cert_pem).map_err(|e| fail(format!("{}: {e}", cert_file.display())))?;
    if chain.is_empty() {
        return Err(fail(format!(
            "{}: tls: failed to find any PEM data in certificate input",
            cert_file.display()
        )));
    }
    if let Err(e) = rustls::server::ParsedCertificate::try_from(&chain[0]) {
        return Err(fail(format!(
            "{}: x509: malformed certificate: {e}",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        fail(match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "{}: tls: failed to find any PEM data in key input",
                key_file.display()
            ),
            e => format!("{}: invalid PEM: {e}", key_file.display()),
        })
    })?;
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider) {
        Ok(_) => Ok(KeyPair { chain, key }),
        Err(rustls::Error::InconsistentKeys(_)) => Err(fail(format!(
            "{} and {}: tls: private key does not match public key",
            cert_file.display(),
            key_file.display()
        ))),
        Err(e) => Err(fail(format!("{}: {e}", key_file.display()))),
    }
}

/// The CAs of `ca_file`, else of every file under `ca_path` (recursively,
/// as Go's `filepath.Walk`); `None` when neither is set.
pub fn cas(
    ca_file: Option<&Path>,
    ca_path: Option<&Path>,
) -> Result<Option<RootCertStore>, TlsError> {
    let mut files = Vec::new();
    if let Some(f) = ca_file {
        files.push(f.to_path_buf());
    } else if let Some(dir) = ca_path {
        walk(dir, &mut files)?;
        if files.is_empty() {
            return Err(TlsError::EmptyCaPath);
        }
    } else {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for path in files {
        let ca_error = |why: String| TlsError::Ca {
            path: path.display().to_string(),
            why,
        };
        let pem = std::fs::read(&path).map_err(|e| ca_error(open_error(&path, &e)))?;
        let certs = certificates(&pem).map_err(ca_error)?;
        if certs.is_empty() {
            return Err(ca_error("no PEM-encoded certificate found".into()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("invalid CA certificate: {e}")))?;
        }
    }
    Ok(Some(roots))
}

/// Every file under `dir`, in name order.
fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<(), TlsError> {
    let ca_error = |why: String| TlsError::Ca {
        path: dir.display().to_string(),
        why,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| ca_error(open_error(dir, &e)))?;
    let mut paths: Vec<_> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}
