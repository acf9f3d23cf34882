//! End-to-end checks of the TLS module on certificates it generates:
//! handshakes over in-memory pipes with the configs the agent would build.

use super::generate::{self, CaOptions, CertOptions, Role};
use super::{files, incoming, outgoing, verify};
use crate::config::{Config, Source, TlsVersion};
use rustls::pki_types::ServerName;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: generate::Pem,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = generate::ca(&CaOptions {
            days: 30,
            domain: "consul".into(),
            name_constraint: false,
            additional_constraints: vec![],
            cluster_id: None,
            common_name: None,
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert).unwrap();
        Pki { dir, ca }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes a certificate for `role` in `dc`; returns (cert, key) paths.
    pub fn issue(&self, role: Role, dc: &str) -> (PathBuf, PathBuf) {
        let pem = generate::cert(
            &CertOptions {
                role,
                datacenter: dc.into(),
                domain: "consul".into(),
                days: 30,
                node: None,
                dns_names: vec![],
                ip_addresses: vec![],
            },
            &self.ca.cert,
            &self.ca.key,
        )
        .unwrap();
        let stem = format!("{dc}-{}", role.as_str());
        let cert = self.dir.path().join(format!("{stem}.pem"));
        let key = self.dir.path().join(format!("{stem}-key.pem"));
        std::fs::write(&cert, pem.cert).unwrap();
        std::fs::write(&key, pem.key).unwrap();
        (cert, key)
    }
}

fn interface(
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    vin: bool,
    vhost: bool,
) -> crate::config::TlsInterface {
    crate::config::TlsInterface {
        ca_file: Some(ca.to_path_buf()),
        ca_path: None,
        cert_file: cert.map(|c| c.0.to_path_buf()),
        key_file: cert.map(|c| c.1.to_path_buf()),
        min_version: TlsVersion::Auto,
        cipher_suites: vec![],
        verify_incoming: vin,
        verify_outgoing: true,
        verify_server_hostname: vhost,
    }
}

/// Runs a handshake between the two configs; the client's error if any,
/// else the server's view of the client's certificates.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> Result<Option<Vec<rustls::pki_types::CertificateDer<'static>>>, String> {
    let (a, b) = tokio::io::duplex(1 << 16);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
    c.map_err(|e| e.to_string())?;
    let s = s.map_err(|e| e.to_string())?;
    Ok(s.get_ref().1.peer_certificates().map(|c| c.to_vec()))
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    Arc::new(files::cas(Some(ca), None).unwrap().unwrap())
}

#[tokio::test]
async fn verify_server_hostname_refuses_a_server_of_another_datacenter() {
    let pki = Pki::new();
    let (dc1_cert, dc1_key) = pki.issue(Role::Server, "dc1");
    let (dc2_cert, dc2_key) = pki.issue(Role::Server, "dc2");
    let ca = pki.ca_file();
    let dc1 = files::key_pair(&dc1_cert, &dc1_key).unwrap();
    let dc2 = files::key_pair(&dc2_cert, &dc2_key).unwrap();
    let server_iface = interface(&ca, Some((&dc2_cert, &dc2_key)), true, true);
    let server = incoming::server_config(&server_iface, &dc2, Some(&roots(&ca)), &[]).unwrap();
    let name = outgoing::server_name("dc1", "consul.").unwrap();

    let strict = interface(&ca, Some((&dc1_cert, &dc1_key)), false, true);
    let client = outgoing::rpc_client_config(&strict, Some(&dc1), &roots(&ca)).unwrap();
    let err = handshake(server.clone(), client, name.clone())
        .await
        .unwrap_err();
    assert!(err.contains("server.dc1.consul"), "{err}");

    // Without verify_server_hostname only the chain is checked.
    let lax = interface(&ca, Some((&dc1_cert, &dc1_key)), false, false);
    let client = outgoing::rpc_client_config(&lax, Some(&dc1), &roots(&ca)).unwrap();
    let peer = handshake(server, client, name.clone()).await.unwrap();

    // On the serving side, AuthorizeServerConn wants server.dc2.consul of a
    // raft peer here (this server thinks it is in dc2): dc1's cert fails.
    let err = verify::authorize_server(
        peer.as_deref(),
        &outgoing::server_name("dc2", "consul").unwrap(),
    )
    .unwrap_err();
    assert!(
        err.starts_with("AuthorizeServerConn failed certificate validation for certificate with a SAN.DNSName of server.dc2.consul: "),
        "{err}"
    );
    assert!(verify::authorize_server(peer.as_deref(), &name).is_ok());
    assert!(verify::authorize_server(None, &name).is_err());
}

#[tokio::test]
async fn verify_incoming_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let (cert, key) = pki.issue(Role::Server, "dc1");
    let (ccert, ckey) = pki.issue(Role::Client, "dc1");
    let ca = pki.ca_file();
    let server_pair = files::key_pair(&cert, &key).unwrap();
    let iface = interface(&ca, Some((&cert, &key)), true, false);
    let server = incoming::server_config(&iface, &server_pair, Some(&roots(&ca)), &[]).unwrap();
    let name = ServerName::try_from("localhost").unwrap();

    let anonymous = interface(&ca, None, false, false);
    let client = outgoing::rpc_client_config(&anonymous, None, &roots(&ca)).unwrap();
    assert!(handshake(server.clone(), client, name.clone())
        .await
        .is_err());

    // A client certificate from another CA is refused too.
    let other = Pki::new();
    let (ocert, okey) = other.issue(Role::Client, "dc1");
    let stranger = files::key_pair(&ocert, &okey).unwrap();
    let client = outgoing::rpc_client_config(&anonymous, Some(&stranger), &roots(&ca)).unwrap();
    assert!(handshake(server.clone(), client, name.clone())
        .await
        .is_err());

    let client_pair = files::key_pair(&ccert, &ckey).unwrap();
    let client = outgoing::rpc_client_config(&anonymous, Some(&client_pair), &roots(&ca)).unwrap();
    let peer = handshake(server, client, name).await.unwrap();
    assert_eq!(peer.map(|p| p.len()), Some(1));
}

#[test]
fn bad_files_are_errors_that_name_them() {
    let pki = Pki::new();
    let (cert, key) = pki.issue(Role::Server, "dc1");
    let missing = pki.dir.path().join("missing.pem");
    let e = files::key_pair(&missing, &key).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "Failed to load cert/key pair: open {}: no such file or directory",
            missing.display()
        )
    );
    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let e = files::key_pair(&garbage, &key).unwrap_err().to_string();
    assert!(
        e.contains(&garbage.display().to_string()) && e.contains("failed to find any PEM data"),
        "{e}"
    );
    let e = files::key_pair(&cert, &garbage).unwrap_err().to_string();
    assert!(e.contains(&garbage.display().to_string()), "{e}");
    // Another certificate's key.
    let (_, other_key) = pki.issue(Role::Client, "dc1");
    let e = files::key_pair(&cert, &other_key).unwrap_err().to_string();
    assert!(
        e.ends_with("tls: private key does not match public key"),
        "{e}"
    );
    let e = files::cas(Some(&garbage), None).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("Error loading from {}: ", garbage.display())),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    let e = files::cas(None, Some(empty.path()))
        .unwrap_err()
        .to_string();
    assert_eq!(e, "Error loading from CAPath: no CAs found");
    // A CA directory: every file in it is read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.pem"), &pki.ca.cert).unwrap();
    std::fs::write(dir.path().join("b.pem"), &Pki::new().ca.cert).unwrap();
    assert_eq!(
        files::cas(None, Some(dir.path())).unwrap().unwrap().len(),
        2
    );
}

fn config(json: &str) -> Config {
    let source: Source = serde_json::from_str(json).unwrap();
    Config::build(true, [(crate::config::Origin::Flags, source)]).unwrap()
}

#[test]
fn the_agent_refuses_what_consul_refuses() {
    let pki = Pki::new();
    let (cert, key) = pki.issue(Role::Server, "dc1");
    let ca = pki.ca_file();
    let load = |json: String| {
        super::AgentTls::load(&config(&json))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        load(r#"{"tls":{"defaults":{"verify_incoming":true}}}"#.into()).unwrap_err(),
        "VerifyIncoming set but no CA certificates were provided"
    );
    assert_eq!(
        load(format!(r#"{{"tls":{{"https":{{"verify_incoming":true,"ca_file":"{}"}}}}}}"#, ca.display())).unwrap_err(),
        "VerifyIncoming requires either a Cert and Key pair in the configuration file, or auto_encrypt/auto_config be enabled"
    );
    assert_eq!(
        load(r#"{"tls":{"internal_rpc":{"verify_server_hostname":true}}}"#.into()).unwrap_err(),
        "VerifyOutgoing set but no CA certificates were provided"
    );
    let e = load(r#"{"ports":{"https":8501}}"#.into()).unwrap_err();
    assert!(
        e.starts_with("HTTPS is enabled (ports.https = 8501) but no certificate is configured"),
        "{e}"
    );
    let ok = format!(
        r#"{{"ports":{{"https":8501}},"tls":{{"defaults":{{"ca_file":"{}","cert_file":"{}","key_file":"{}","verify_incoming":true,"verify_outgoing":true}},"internal_rpc":{{"verify_server_hostname":true}}}}}}"#,
        ca.display(),
        cert.display(),
        key.display()
    );
    let tls = super::AgentTls::load(&config(&ok)).unwrap();
    assert!(tls.https.is_some() && tls.rpc.incoming.is_some() && tls.rpc.outgoing.is_some());
    assert!(tls.rpc.verify_incoming);
    assert_eq!(
        tls.rpc
            .raft_peer_name
            .as_ref()
            .map(|n| n.to_str().into_owned()),
        Some("server.dc1.consul".into())
    );
}
