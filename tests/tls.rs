//! TLS against the real binary: `cairn tls` makes Consul's files, an agent
//! serves its HTTPS API with them (and refuses what Consul refuses), a
//! cluster runs its RPC port in TLS with verify_incoming, verify_outgoing
//! and verify_server_hostname, and a server with another datacenter's
//! certificate never becomes part of raft.
//!
//! Loopback nets 140–142, 202 and 203.

mod common;

use common::cluster::{wait_leader, Node};
use common::{eventually, free_port_on, TestAgent, BIN};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

/// Runs `cairn <args>` in `dir` with `env`.
fn cairn_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cairn")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A CA and certificates made with `cairn tls`, in their own directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = cairn_in(dir.path(), &["tls", "ca", "create"], &[]);
        assert!(out.status.success(), "{:?}", text(&out));
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self) -> PathBuf {
        self.path("consul-agent-ca.pem")
    }

    /// `cairn tls cert create <args>`; returns the (cert, key) it saved.
    fn cert(&self, args: &[&str]) -> (PathBuf, PathBuf) {
        let mut all = vec!["tls", "cert", "create"];
        all.extend_from_slice(args);
        let out = cairn_in(self.dir.path(), &all, &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        let saved: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("==> Saved "))
            .collect();
        assert_eq!(saved.len(), 2, "{stdout}");
        (self.path(saved[0]), self.path(saved[1]))
    }

    /// Writes a config file with `json`; returns its path.
    fn config(&self, name: &str, json: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, json).expect("write config");
        p
    }
}

fn parsed(pem_path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(pem_path)
        .expect("a certificate")
        .to_vec()
}

/// Whether the certificate at `cert` is valid for `name` (a DNS name or IP).
fn valid_for(cert: &Path, name: &str) -> bool {
    let der = rustls::pki_types::CertificateDer::from(parsed(cert));
    let parsed = rustls::server::ParsedCertificate::try_from(&der).expect("parses");
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

#[test]
fn tls_ca_and_cert_create_write_consuls_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| text(&cairn_in(dir.path(), args, &[]));

    let (out, _) = run(&["tls", "ca", "create"]);
    assert_eq!(
        out,
        "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    );
    let key = std::fs::read_to_string(dir.path().join("consul-agent-ca-key.pem")).unwrap();
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{key}");
    let mode = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("consul-agent-ca-key.pem"), 0o600);
    let o = cairn_in(dir.path(), &["tls", "ca", "create"], &[]);
    assert!(!o.status.success());
    assert_eq!(text(&o).1, "consul-agent-ca.pem already exists.\n");

    let (out, _) = run(&[
        "tls", "cert", "create", "-server", "-dc", "dc1", "-node", "n1",
    ]);
    assert!(out.starts_with("==> WARNING: Server Certificates grants authority to become a\n    server and access all state"), "{out}");
    assert!(out.ends_with(
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc1-server-consul-0.pem\n==> Saved dc1-server-consul-0-key.pem\n"
    ), "{out}");
    assert_eq!(mode("dc1-server-consul-0-key.pem"), 0o600);
    let server = dir.path().join("dc1-server-consul-0.pem");
    for name in [
        "server.dc1.consul",
        "n1.server.dc1.consul",
        "localhost",
        "127.0.0.1",
    ] {
        assert!(valid_for(&server, name), "server cert lacks {name}");
    }
    assert!(!valid_for(&server, "server.dc2.consul"));
    // The next one takes the next free number.
    let (out, _) = run(&["tls", "cert", "create", "-server"]);
    assert!(out.contains("==> Saved dc1-server-consul-1.pem\n"), "{out}");
    let (out, _) = run(&[
        "tls",
        "cert",
        "create",
        "-client",
        "-dc",
        "dc2",
        "-additional-dnsname",
        "extra.example",
        "-additional-ipaddress",
        "10.1.2.3",
    ]);
    assert_eq!(
        out,
        "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n==> Saved dc2-client-consul-0.pem\n==> Saved dc2-client-consul-0-key.pem\n"
    );
    let client = dir.path().join("dc2-client-consul-0.pem");
    for name in [
        "client.dc2.consul",
        "localhost",
        "127.0.0.1",
        "extra.example",
        "10.1.2.3",
    ] {
        assert!(valid_for(&client, name), "client cert lacks {name}");
    }
    let (_, _) = run(&["tls", "cert", "create", "-cli"]);
    let cli = dir.path().join("dc1-cli-consul-0.pem");
    assert!(valid_for(&cli, "cli.dc1.consul") && !valid_for(&cli, "127.0.0.1"));

    for (args, err) in [
        (
            &["tls", "cert", "create"][..],
            "Please provide either -server, -client, or -cli\n",
        ),
        (
            &["tls", "cert", "create", "-server", "-client"][..],
            "Please provide either -server, -client, or -cli\n",
        ),
        (
            &["tls", "cert", "create", "-client", "-node", "x"][..],
            "-node requires -server\n",
        ),
        (
            &["tls", "cert", "create", "-server", "-ca", "nope.pem"][..],
            "Error reading CA: open nope.pem: no such file or directory\n",
        ),
    ] {
        let o = cairn_in(dir.path(), args, &[]);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(text(&o).1, err, "{args:?}");
    }
    // A CA key that is not the CA's: refused, nothing written.
    let other = tempfile::tempdir().unwrap();
    cairn_in(other.path(), &["tls", "ca", "create"], &[]);
    let wrong_key = other.path().join("consul-agent-ca-key.pem");
    let o = cairn_in(
        dir.path(),
        &[
            "tls",
            "cert",
            "create",
            "-client",
            "-key",
            wrong_key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!o.status.success(), "{:?}", text(&o));
    assert!(!dir.path().join("dc1-client-consul-0.pem").exists());
}

/// A dev agent on `ip` serving HTTPS with `tls` (the stanza's JSON) on a
/// port of its own; returns it and the HTTPS port.
fn https_agent(pki: &Pki, ip: &str, tls: &str) -> (TestAgent, u16) {
    let port = free_port_on(ip);
    let config = pki.config(
        &format!("https-{ip}.json"),
        &format!(r#"{{"ports":{{"https":{port}}},"tls":{tls}}}"#),
    );
    let agent = TestAgent::dev_at(ip, &[&format!("-config-file={}", config.display())]);
    (agent, port)
}

fn https_client(pki: &Pki, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
    let ca = std::fs::read(pki.ca()).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap());
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// Everything a server sends back to `request` written raw to `addr`.
fn raw_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    got
}

#[test]
fn https_api_serves_the_cli_and_refuses_plain_text_and_unknown_clients() {
    let pki = Pki::new();
    let ip = "127.0.140.1";
    let (cert, key) = pki.cert(&["-server", "-dc", "dc1", "-additional-ipaddress", ip]);
    let files = format!(
        r#""ca_file":"{}","cert_file":"{}","key_file":"{}""#,
        pki.ca().display(),
        cert.display(),
        key.display()
    );
    let (agent, port) = https_agent(&pki, ip, &format!(r#"{{"defaults":{{{files}}}}}"#));
    let base = format!("https://{ip}:{port}");

    let resp = https_client(&pki, None)
        .get(format!("{base}/v1/agent/self"))
        .send()
        .expect("HTTPS answers");
    assert_eq!(resp.status(), 200);
    let body = resp.text().unwrap();
    assert!(body.contains("node1"), "{body}");
    // The same router as plain HTTP: Consul's 404 text too.
    let resp = https_client(&pki, None)
        .get(format!("{base}/v1/nope"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);

    // The CLI, through CONSUL_HTTP_ADDR and CONSUL_CACERT.
    let ca = pki.ca().display().to_string();
    let o = cairn_in(
        pki.dir.path(),
        &["members"],
        &[("CONSUL_HTTP_ADDR", &base), ("CONSUL_CACERT", &ca)],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("node1") && out.contains("alive"), "{out}");
    // -http-addr without a scheme and CONSUL_HTTP_SSL, -ca-file as a flag.
    let o = cairn_in(
        pki.dir.path(),
        &[
            "members",
            &format!("-http-addr={ip}:{port}"),
            &format!("-ca-file={ca}"),
        ],
        &[("CONSUL_HTTP_SSL", "true")],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    // Without the CA the agent's certificate is not trusted...
    let o = cairn_in(pki.dir.path(), &["members"], &[("CONSUL_HTTP_ADDR", &base)]);
    assert!(!o.status.success(), "{:?}", text(&o));
    // ...unless verification is off.
    let o = cairn_in(
        pki.dir.path(),
        &["members"],
        &[
            ("CONSUL_HTTP_ADDR", &base),
            ("CONSUL_HTTP_SSL_VERIFY", "false"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    // A name the certificate does not carry fails; one it carries works.
    for (name, ok) in [("server.dc2.consul", false), ("server.dc1.consul", true)] {
        let o = cairn_in(
            pki.dir.path(),
            &["members", &format!("-tls-server-name={name}")],
            &[("CONSUL_HTTP_ADDR", &base), ("CONSUL_CACERT", &ca)],
        );
        assert_eq!(o.status.success(), ok, "{name}: {:?}", text(&o));
    }

    // Plain HTTP on the TLS port gets Go's refusal and nothing of the API.
    let got = raw_exchange(
        &format!("{ip}:{port}"),
        b"GET /v1/agent/self HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    );
    // Anything else that is not TLS is dropped without an answer.
    let got = raw_exchange(&format!("{ip}:{port}"), b"\x16\x03\x01\x00\x05hello");
    assert!(!String::from_utf8_lossy(&got).contains("NodeName"));
    // A client that never starts its handshake does not hold others up.
    let _silent = std::net::TcpStream::connect(format!("{ip}:{port}")).unwrap();
    let resp = https_client(&pki, None)
        .get(format!("{base}/v1/status/leader"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(agent);
}

#[test]
fn https_verify_incoming_wants_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let ip = "127.0.140.2";
    let (cert, key) = pki.cert(&["-server", "-additional-ipaddress", ip]);
    let (ccert, ckey) = pki.cert(&["-client"]);
    let tls = format!(
        r#"{{"defaults":{{"ca_file":"{}","cert_file":"{}","key_file":"{}"}},"https":{{"verify_incoming":true}}}}"#,
        pki.ca().display(),
        cert.display(),
        key.display()
    );
    let (agent, port) = https_agent(&pki, ip, &tls);
    let url = format!("https://{ip}:{port}/v1/agent/self");

    assert!(
        https_client(&pki, None).get(&url).send().is_err(),
        "a client without a certificate is refused at the handshake"
    );
    // A certificate from another CA is refused too.
    let other = Pki::new();
    let (ocert, okey) = other.cert(&["-client"]);
    assert!(https_client(&pki, Some((&ocert, &okey)))
        .get(&url)
        .send()
        .is_err());
    let resp = https_client(&pki, Some((&ccert, &ckey)))
        .get(&url)
        .send()
        .expect("a client certificate from the CA is accepted");
    assert_eq!(resp.status(), 200);

    let base = format!("https://{ip}:{port}");
    let ca = pki.ca().display().to_string();
    let env = [
        ("CONSUL_HTTP_ADDR", base.as_str()),
        ("CONSUL_CACERT", ca.as_str()),
    ];
    let o = cairn_in(pki.dir.path(), &["members"], &env);
    assert!(!o.status.success(), "{:?}", text(&o));
    let (c, k) = (ccert.display().to_string(), ckey.display().to_string());
    let mut with_cert = env.to_vec();
    with_cert.extend([
        ("CONSUL_CLIENT_CERT", c.as_str()),
        ("CONSUL_CLIENT_KEY", k.as_str()),
    ]);
    let o = cairn_in(pki.dir.path(), &["members"], &with_cert);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = cairn_in(
        pki.dir.path(),
        &[
            "members",
            &format!("-client-cert={c}"),
            &format!("-client-key={k}"),
        ],
        &env,
    );
    assert!(o.status.success(), "{:?}", text(&o));

    // The failures are in the log, not one line each.
    assert!(
        eventually(Duration::from_secs(5), || agent
            .log_text()
            .contains("http: TLS handshake error from 127.0.0.1:")),
        "{}",
        agent.log_text()
    );
}

#[test]
fn bad_certificate_files_stop_the_agent_with_an_error_naming_them() {
    let pki = Pki::new();
    let (cert, key) = pki.cert(&["-server"]);
    let garbage = pki.config("garbage.pem", "this is not PEM\n");
    let missing = pki.path("missing.pem");
    let cases = [
        (
            format!(
                r#"{{"tls":{{"defaults":{{"cert_file":"{}","key_file":"{}"}}}}}}"#,
                missing.display(),
                key.display()
            ),
            format!(
                "Failed to load cert/key pair: open {}: no such file or directory",
                missing.display()
            ),
        ),
        (
            format!(
                r#"{{"tls":{{"defaults":{{"cert_file":"{}","key_file":"{}"}}}}}}"#,
                garbage.display(),
                key.display()
            ),
            garbage.display().to_string(),
        ),
        (
            format!(
                r#"{{"tls":{{"defaults":{{"cert_file":"{}","key_file":"{}"}}}}}}"#,
                cert.display(),
                garbage.display()
            ),
            garbage.display().to_string(),
        ),
        (
            format!(
                r#"{{"tls":{{"defaults":{{"ca_file":"{}"}}}}}}"#,
                garbage.display()
            ),
            format!("Error loading from {}", garbage.display()),
        ),
        (
            r#"{"tls":{"defaults":{"verify_incoming":true}}}"#.to_string(),
            "VerifyIncoming set but no CA certificates were provided".to_string(),
        ),
        (
            r#"{"ports":{"https":18501}}"#.to_string(),
            "HTTPS is enabled (ports.https = 18501) but no certificate is configured".to_string(),
        ),
        (
            r#"{"tls":{"defaults":{"verify_server_hostname":true}}}"#.to_string(),
            "verify_server_hostname is only valid in the tls.internal_rpc stanza".to_string(),
        ),
    ];
    for (i, (json, want)) in cases.iter().enumerate() {
        let config = pki.config(&format!("bad-{i}.json"), json);
        let data = tempfile::tempdir().unwrap();
        let o = cairn_in(
            pki.dir.path(),
            &[
                "agent",
                "-dev",
                &format!("-data-dir={}", data.path().display()),
                "-bind=127.0.140.9",
                "-client=127.0.140.9",
                &format!("-config-file={}", config.display()),
            ],
            &[],
        );
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{json}: {out}{err}");
        assert!(
            err.contains(want.as_str()),
            "{json}: want {want:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The RPC TLS stanza every node of the cluster test uses.
fn rpc_tls(pki: &Pki, cert: &Path, key: &Path) -> String {
    format!(
        r#"{{"tls":{{"defaults":{{"ca_file":"{}","cert_file":"{}","key_file":"{}",
            "verify_incoming":true,"verify_outgoing":true}},
            "internal_rpc":{{"verify_server_hostname":true}}}}}}"#,
        pki.ca().display(),
        cert.display(),
        key.display()
    )
}

fn stale_value(n: &Node, key: &str) -> Option<String> {
    let r = n.get(&format!("/v1/kv/{key}?raw&stale")).ok()?;
    (r.status == 200).then_some(r.body)
}

/// Speaks raw RPCTLS to `addr` with `cert`, asks for raft, and reports
/// whether the server kept the session open to read a frame.
fn raft_over_tls(pki: &Pki, addr: &str, cert: &Path, key: &Path) -> bool {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.ca()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(cert).unwrap()],
            PrivateKeyDer::from_pem_file(key).unwrap(),
        )
        .unwrap();
    let name = ServerName::try_from("server.dc1.consul").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&[0x03]).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The raft byte, then the start of a frame that never completes: a
    // server that accepted the connection waits for the rest.
    if tls.write_all(&[0x01, 0, 0, 0, 9, 1]).is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    match tls.read(&mut buf) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => {
            e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut
        }
    }
}

#[test]
fn rpc_tls_cluster_replicates_forwards_and_keeps_another_datacenter_out_of_raft() {
    let net = 141;
    let pki = Pki::new();
    let (scert, skey) = pki.cert(&["-server", "-dc", "dc1"]);
    let (ccert, ckey) = pki.cert(&["-client", "-dc", "dc1"]);
    let (dc2cert, dc2key) = pki.cert(&["-server", "-dc", "dc2"]);
    let server_conf = pki.config("server.json", &rpc_tls(&pki, &scert, &skey));
    let client_conf = pki.config("client.json", &rpc_tls(&pki, &ccert, &ckey));
    let dc2_conf = pki.config("dc2.json", &rpc_tls(&pki, &dc2cert, &dc2key));
    let flag = |p: &Path| format!("-config-file={}", p.display());

    let mut servers: Vec<Node> = (1..=3)
        .map(|h| Node::server(net, h, 3, &[1, 2, 3], &[&flag(&server_conf)]))
        .collect();
    for s in servers.iter_mut() {
        s.spawn();
    }
    let refs: Vec<&Node> = servers.iter().collect();
    wait_leader(&refs, Duration::from_secs(30)).expect("a leader over TLS raft");
    assert!(
        eventually(Duration::from_secs(10), || servers[1]
            .put("/v1/kv/tls-key", "over-tls")
            .is_ok_and(|r| r.body.trim() == "true")),
        "a write through a follower is forwarded"
    );
    for s in &servers {
        assert!(
            eventually(Duration::from_secs(10), || stale_value(s, "tls-key")
                .as_deref()
                == Some("over-tls")),
            "{} has the write",
            s.name
        );
    }

    // A client agent with a client certificate: forwarding and the feed.
    let mut client = Node::client(net, 5, &[1], &[&flag(&client_conf)]);
    client.spawn();
    assert!(
        eventually(Duration::from_secs(20), || client
            .put("/v1/agent/service/register", r#"{"Name":"web","Port":80}"#)
            .is_ok_and(|r| r.status == 200)),
        "registering through the client agent; log:\n{}",
        client.log_text()
    );
    let has_web = |n: &Node| {
        n.get("/v1/catalog/service/web")
            .is_ok_and(|r| r.status == 200 && r.body.contains("\"ServiceName\":\"web\""))
    };
    assert!(
        eventually(Duration::from_secs(20), || has_web(&servers[0])
            && has_web(&client)),
        "the service reaches the servers and the client's own view; log:\n{}",
        client.log_text()
    );
    assert_eq!(
        stale_value(&client, "tls-key").as_deref(),
        Some("over-tls"),
        "the client reads the KV through its server"
    );

    // Plain text to a server's RPC port is refused.
    let got = raw_exchange(&format!("127.0.{net}.1:8300"), &[0x00, 0, 0, 0, 1, 0]);
    assert!(got.is_empty());
    assert!(eventually(Duration::from_secs(5), || servers[0]
        .log_text()
        .contains(
            "Non-TLS connection attempted with VerifyIncoming set"
        )));

    // Raft from a client agent's certificate, or another datacenter's
    // server certificate, is refused (CVE-2021-37219); a dc1 server's is
    // accepted.
    let s1 = format!("127.0.{net}.1:8300");
    assert!(raft_over_tls(&pki, &s1, &scert, &skey));
    assert!(!raft_over_tls(&pki, &s1, &ccert, &ckey));
    assert!(!raft_over_tls(&pki, &s1, &dc2cert, &dc2key));
    assert!(eventually(Duration::from_secs(5), || {
        servers[0].log_text().contains(
        "AuthorizeServerConn failed certificate validation for certificate with a SAN.DNSName of server.dc1.consul"
    )
    }));

    // A fourth server holding dc2's certificate joins dc1's gossip but is
    // never replicated to, never becomes a voter and serves none of dc1's
    // data.
    let mut s4 = Node::server(net, 4, 0, &[1], &[&flag(&dc2_conf)]);
    s4.spawn();
    let refused_in_logs = || {
        servers.iter().any(|s| {
            let log = s.log_text();
            log.contains(&format!("rpc: TLS handshake error with 127.0.{net}.4:8300"))
                && log.contains("server.dc1.consul")
        })
    };
    assert!(
        eventually(Duration::from_secs(20), refused_in_logs),
        "a server logs its refusal of the dc2 certificate"
    );
    std::thread::sleep(Duration::from_secs(5));
    let config = servers[0]
        .get("/v1/operator/raft/configuration?stale")
        .unwrap()
        .json();
    let entry = config["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Node"] == "s4")
        .cloned();
    assert!(
        entry.as_ref().is_none_or(|e| e["Voter"] == false),
        "s4 must not be a voter: {config}"
    );
    let peers = servers[0].get("/v1/status/peers").unwrap().json();
    assert_eq!(peers.as_array().map(Vec::len), Some(3), "{peers}");
    assert_eq!(
        stale_value(&s4, "tls-key"),
        None,
        "s4 serves none of dc1's data"
    );
    assert!(s4.running(), "s4 stays up: {}", s4.log_text());
}

#[test]
fn https_only_agent_with_plain_http_turned_off() {
    let pki = Pki::new();
    let ip = "127.0.140.3";
    let (cert, key) = pki.cert(&["-server", "-additional-ipaddress", ip]);
    let port = free_port_on(ip);
    let config = pki.config(
        "https-only.json",
        &format!(
            r#"{{"ports":{{"http":-1,"https":{port}}},"tls":{{"defaults":{{"ca_file":"{}","cert_file":"{}","key_file":"{}"}}}}}}"#,
            pki.ca().display(),
            cert.display(),
            key.display()
        ),
    );
    let mut agent = TestAgent::unstarted(ip, &[&format!("-config-file={}", config.display())]);
    agent.http_port_from_config = true;
    agent.child = Some(common::spawn_logged(&agent.args(), &agent.log, &[]));
    let client = https_client(&pki, None);
    let leader = format!("https://{ip}:{port}/v1/status/leader");
    assert!(
        eventually(Duration::from_secs(30), || client
            .get(&leader)
            .send()
            .is_ok_and(|r| r.status() == 200)),
        "HTTPS answers; log:\n{}",
        agent.log_text()
    );
    assert!(
        std::net::TcpStream::connect((ip, 8500)).is_err(),
        "nothing listens on the plain HTTP port"
    );
    assert!(agent.log_text().contains("HTTPS API listening"));
    assert!(!agent.log_text().contains("HTTP API listening"));
}

/// Two datacenters with RPC TLS and `verify_server_hostname` on, each
/// server holding its own datacenter's certificate: requests for the
/// other datacenter are forwarded over TLS (checked against
/// `server.<that dc>.consul`) in both directions.
#[test]
fn rpc_tls_forwards_between_datacenters_with_each_ones_server_name() {
    let (net1, net2) = (202u8, 203u8);
    let pki = Pki::new();
    let (c1, k1) = pki.cert(&["-server", "-dc", "dc1"]);
    let (c2, k2) = pki.cert(&["-server", "-dc", "dc2"]);
    let conf1 = pki.config("dc1.json", &rpc_tls(&pki, &c1, &k1));
    let conf2 = pki.config("dc2.json", &rpc_tls(&pki, &c2, &k2));
    let flag = |p: &Path| format!("-config-file={}", p.display());
    let seed = format!("-retry-join-wan=127.0.{net1}.1");
    let mut s1 = Node::server(
        net1,
        1,
        1,
        &[1],
        &[&flag(&conf1), "-datacenter=dc1", "-retry-interval-wan=1s"],
    );
    let mut s2 = Node::server(
        net2,
        1,
        1,
        &[1],
        &[
            &flag(&conf2),
            "-datacenter=dc2",
            &seed,
            "-retry-interval-wan=1s",
        ],
    );
    s1.spawn();
    s2.spawn();
    wait_leader(&[&s1], Duration::from_secs(30)).expect("dc1 leader");
    wait_leader(&[&s2], Duration::from_secs(30)).expect("dc2 leader");
    for (n, v) in [(&s1, "one"), (&s2, "two")] {
        assert!(
            eventually(Duration::from_secs(10), || n
                .put("/v1/kv/where", v)
                .is_ok_and(|r| r.status == 200)),
            "write in {}",
            n.name
        );
    }
    for (n, dc, want) in [(&s1, "dc2", "two"), (&s2, "dc1", "one")] {
        assert!(
            eventually(Duration::from_secs(30), || n
                .get(&format!("/v1/kv/where?raw&dc={dc}"))
                .is_ok_and(|r| r.status == 200 && r.body == want)),
            "{} could not read {dc} over TLS: {:?}; log:\n{}",
            n.ip,
            n.get(&format!("/v1/kv/where?raw&dc={dc}")).map(|r| r.body),
            n.log_text()
        );
    }
}
