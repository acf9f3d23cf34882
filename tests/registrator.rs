//! `cairn registrator` against the real Docker daemon and a real agent.
//!
//! The containers run a tiny static server (`tests/support/web_server.rs`,
//! compiled here with `rustc -C target-feature=+crt-static`) in an image
//! built `FROM scratch`, so nothing is pulled. Registrator reaches Docker
//! through a unix-socket proxy this test owns, so the socket can be taken
//! away and brought back without touching the daemon. Every container and
//! the image are removed when the test ends, pass or fail. A missing
//! `docker` or `rustc` fails the test.

mod common;

use common::docker::{docker_ok, Made};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A unix socket that forwards to Docker's, and can be taken away.
struct SocketProxy {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl SocketProxy {
    fn start(path: &Path) -> SocketProxy {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (s, c) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => forward(client, &c),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SocketProxy {
            path: path.to_path_buf(),
            stop,
            conns,
            thread: Some(thread),
        }
    }

    /// Closes the socket and every connection through it.
    fn take_away(&mut self) {
        // Once only: a new proxy may be listening at the same path by now.
        if self.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().expect("conns").drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.take_away();
    }
}

/// Copies both ways between a client and a new connection to Docker.
fn forward(client: UnixStream, conns: &Mutex<Vec<UnixStream>>) {
    let _ = client.set_nonblocking(false);
    let Ok(upstream) = UnixStream::connect(DOCKER_SOCKET) else {
        return;
    };
    let pipe = |mut from: UnixStream, mut to: UnixStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    if let Ok(mut list) = conns.lock() {
        list.push(c3);
        list.push(u3);
    }
    pipe(client, upstream);
    pipe(u2, c2);
}

/// A `cairn registrator` process, killed on drop.
struct Registrator {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Registrator {
    /// Starts `cairn <args>` with `DOCKER_HOST` and any other `env`.
    fn start(args: &[String], log: &Path, docker_host: &str, env: &[(&str, &str)]) -> Registrator {
        let mut r = Registrator {
            child: None,
            args: args.to_vec(),
            log: log.to_path_buf(),
            env: [("DOCKER_HOST", docker_host), ("CAIRN_LOG", "debug")]
                .iter()
                .chain(env)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.child = Some(spawn_logged(&self.args, &self.log, &env));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                panic!("registrator exited with {status}; log:\n{}", self.log());
            }
        }
    }

    /// SIGTERM, as `docker stop` sends; waits for the exit.
    fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "registrator ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing `text`.
    fn wait_log(&mut self, text: &str, timeout: Duration) {
        let seen = eventually(timeout, || self.log().contains(text));
        self.assert_running();
        assert!(seen, "no {text:?} in the registrator log:\n{}", self.log());
    }
}

impl Drop for Registrator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// This test run's services in `/v1/agent/services`, by ID.
fn services(agent: &TestAgent, prefix: &str) -> BTreeMap<String, Value> {
    let Ok(r) = agent.get("/v1/agent/services") else {
        return BTreeMap::new();
    };
    let Value::Object(all) = r.json() else {
        return BTreeMap::new();
    };
    all.into_iter()
        .filter(|(id, _)| id.contains(&format!(":{prefix}-")))
        .collect()
}

fn ids(s: &BTreeMap<String, Value>) -> Vec<String> {
    s.keys().cloned().collect()
}

/// Waits until this run's service IDs are exactly `want`.
fn wait_ids(
    agent: &TestAgent,
    r: &mut Registrator,
    prefix: &str,
    want: &[String],
    within: Duration,
) {
    let mut want = want.to_vec();
    want.sort();
    let ok = eventually(within, || ids(&services(agent, prefix)) == want);
    r.assert_running();
    assert!(
        ok,
        "wanted {want:?}, the agent has {:?}; registrator log:\n{}",
        ids(&services(agent, prefix)),
        r.log()
    );
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What registrator should register for ports published on 0.0.0.0: this
/// host's name resolved, IPv4 first.
fn host_address(hostname: &str) -> String {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::IpAddr> = (hostname, 0)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.to_string())
        .unwrap_or_else(|| panic!("this host's name {hostname:?} does not resolve"))
}

#[test]
fn registers_follows_docker_and_survives_outages_and_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let made = Made::image(tmp.path(), "registrator");
    let prefix = made.prefix.clone();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string();
    let address = host_address(&hostname);
    let id = |short: &str, port: &str| format!("{hostname}:{}:{port}", made.name(short));

    // The agent is down when registrator starts.
    let mut agent = TestAgent::dev();
    agent.kill9();
    let socket = tmp.path().join("docker.sock");
    let mut proxy = SocketProxy::start(&socket);
    let args: Vec<String> = [
        "registrator",
        "-retry-interval=200",
        "-deregister=on-success",
        "-cleanup",
        "-tags=cairn",
        "-resync=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("consul://127.0.0.1:{}", agent.ports.http)])
    .collect();
    let docker_host = format!("unix://{}", socket.display());
    let log = tmp.path().join("registrator.log");
    let mut reg = Registrator::start(&args, &log, &docker_host, &[]);
    reg.wait_log("cannot reach the agent", Duration::from_secs(10));
    reg.wait_log("Listening for Docker events", Duration::from_secs(10));

    // Containers start while the agent is away: nothing may be lost.
    let a = made.run(
        "a",
        &[
            "-p",
            "8080",
            "-e",
            "LISTEN=8080",
            "-e",
            "SERVICE_NAME=web",
            "-e",
            "SERVICE_TAGS=blue,v1",
            "-e",
            "SERVICE_CHECK_HTTP=/health",
            "-e",
            "SERVICE_CHECK_INTERVAL=1s",
            "-e",
            "SERVICE_OWNER=team-a",
        ],
    );
    let b = made.run(
        "b",
        &[
            "-p",
            "9000",
            "-p",
            "9001",
            "-p",
            "5353/udp",
            "-e",
            "LISTEN=9000,9001,5353/udp",
            "-e",
            "SERVICE_NAME=multi",
            "-e",
            "SERVICE_9000_NAME=api",
            "-e",
            "SERVICE_9000_TAGS=rest",
            "-e",
            "SERVICE_9001_IGNORE=yes",
        ],
    );
    // A label Consul refuses as a metadata key: logged and skipped.
    made.run(
        "bad",
        &[
            "-p",
            "8080",
            "-e",
            "LISTEN=8080",
            "-e",
            "SERVICE_NAME=bad",
            "--label",
            "SERVICE_com.example.team=x",
        ],
    );
    reg.wait_log(
        &format!(
            "({}) port 8080/tcp: SERVICE_com.example.team",
            made.name("bad")
        ),
        Duration::from_secs(10),
    );
    agent.start();
    let first = [id("a", "8080"), id("b", "9000"), id("b", "5353:udp")];
    wait_ids(&agent, &mut reg, &prefix, &first, Duration::from_secs(20));

    let s = services(&agent, &prefix);
    let web = &s[&id("a", "8080")];
    assert_eq!(web["Service"], "web");
    assert_eq!(web["Address"], address.as_str());
    assert_eq!(web["Port"], made.host_port(&a, "8080/tcp"));
    assert_eq!(strings(&web["Tags"]), ["blue", "v1", "cairn"]);
    assert_eq!(web["Meta"]["owner"], "team-a");
    assert_eq!(web["Meta"]["check_http"], "/health");
    let api = &s[&id("b", "9000")];
    assert_eq!(api["Service"], "api");
    assert_eq!(strings(&api["Tags"]), ["rest", "cairn"]);
    assert_eq!(api["Port"], made.host_port(&b, "9000/tcp"));
    let udp = &s[&id("b", "5353:udp")];
    assert_eq!(udp["Service"], "multi-5353");
    assert_eq!(strings(&udp["Tags"]), ["cairn", "udp"]);
    assert_eq!(udp["Port"], made.host_port(&b, "5353/udp"));

    // The HTTP check reaches the container through its published port.
    let passing = eventually(Duration::from_secs(15), || {
        agent
            .get("/v1/health/checks/web")
            .map(|r| r.body.contains("\"passing\""))
            .unwrap_or(false)
    });
    assert!(passing, "{}", agent.get_ok("/v1/health/checks/web").body);

    // docker stop: deregistered within 2 s (143 is an exit by signal, which
    // -deregister=on-success removes).
    docker_ok(&["stop", "-t", "5", &a]);
    let stopped = Instant::now();
    let rest = [id("b", "9000"), id("b", "5353:udp")];
    let gone = eventually(Duration::from_secs(2), || {
        !services(&agent, &prefix).contains_key(&id("a", "8080"))
    });
    assert!(
        gone,
        "still registered {:?} after docker stop; log:\n{}",
        stopped.elapsed(),
        reg.log()
    );
    wait_ids(&agent, &mut reg, &prefix, &rest, Duration::from_secs(1));

    // The Docker socket goes away: logged, retried, no crash. What happens
    // meanwhile is caught up on reconnecting.
    proxy.take_away();
    reg.wait_log("docker: lost the connection", Duration::from_secs(10));
    docker_ok(&["stop", "-t", "5", &b]);
    made.run(
        "d",
        &["-p", "8080", "-e", "LISTEN=8080", "-e", "SERVICE_NAME=late"],
    );
    made.run(
        "f",
        &[
            "-p",
            "8080",
            "-e",
            "LISTEN=8080",
            "-e",
            "SERVICE_NAME=fleeting",
        ],
    );
    reg.wait_log("docker: cannot reach the daemon", Duration::from_secs(10));
    proxy = SocketProxy::start(&socket);
    let after_outage = [id("d", "8080"), id("f", "8080")];
    wait_ids(
        &agent,
        &mut reg,
        &prefix,
        &after_outage,
        Duration::from_secs(20),
    );

    // Registrator's own restart: stopping removes nothing; while it is
    // down f stops and e starts; after it, d is neither dropped nor
    // duplicated, e is added, and -cleanup removes f's dangling service.
    let before = services(&agent, &prefix);
    assert_eq!(reg.terminate(), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        services(&agent, &prefix),
        before,
        "a stopping registrator removes nothing"
    );
    docker_ok(&["stop", "-t", "5", &made.name("f")]);
    made.run(
        "e",
        &[
            "-p",
            "8080",
            "-e",
            "LISTEN=8080",
            "-e",
            "SERVICE_NAME=newcomer",
        ],
    );
    reg.restart();
    let after_restart = [id("d", "8080"), id("e", "8080")];
    wait_ids(
        &agent,
        &mut reg,
        &prefix,
        &after_restart,
        Duration::from_secs(20),
    );
    let s = services(&agent, &prefix);
    assert_eq!(
        s[&id("d", "8080")],
        before[&id("d", "8080")],
        "d is as it was"
    );
    let late = agent.get_ok("/v1/catalog/service/late").json();
    assert_eq!(
        late.as_array().map(Vec::len),
        Some(1),
        "one instance of d: {late}"
    );
    assert!(reg
        .log()
        .contains(&format!("dangling: {}", id("f", "8080"))));

    // The agent restarts with none of its services (-dev keeps no state)
    // while e stops and g starts: registrator notices the agent is gone,
    // and once it is back registers what runs and nothing that stopped.
    agent.kill9();
    docker_ok(&["stop", "-t", "5", &made.name("e")]);
    made.run(
        "g",
        &[
            "-p",
            "8080",
            "-e",
            "LISTEN=8080",
            "-e",
            "SERVICE_NAME=second",
        ],
    );
    reg.wait_log("consul: lost the agent", Duration::from_secs(10));
    agent.start();
    let after_agent_restart = [id("d", "8080"), id("g", "8080")];
    wait_ids(
        &agent,
        &mut reg,
        &prefix,
        &after_agent_restart,
        Duration::from_secs(20),
    );

    // Only the proxy's outage cost the Docker connection.
    let log = reg.log();
    assert_eq!(
        log.matches("docker: lost the connection").count(),
        1,
        "events are handled on one connection:\n{log}"
    );
    drop(proxy);
}

/// Runs `openssl <args>` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl must be installed for the TLS test");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl s_server -www`, which answers a GET with a status page: enough
/// for registrator's `GET /v1/status/leader`.
struct TlsServer(Child);

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn consul_tls_trusts_consul_cacert() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // A CA and a leaf certificate for localhost, signed by it.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cairn test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "leaf.pem",
        ],
    );
    // The port is free when picked but may be taken before s_server binds
    // it (s_server then exits): pick another and try again.
    let mut listening = None;
    for _ in 0..5 {
        let port = free_port();
        let server = Command::new("openssl")
            .current_dir(dir)
            .args([
                "s_server", "-quiet", "-www", "-cert", "leaf.pem", "-key", "leaf.key",
            ])
            .args(["-accept", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let mut server = TlsServer(server);
        let up = eventually(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                || matches!(server.0.try_wait(), Ok(Some(_)))
        });
        if up && matches!(server.0.try_wait(), Ok(None)) {
            listening = Some((port, server));
            break;
        }
    }
    let (port, _server) = listening.expect("openssl s_server did not listen");
    let uri = format!("consul-tls://localhost:{port}");

    // Without CONSUL_CACERT the system roots do not trust it.
    let out = Command::new(BIN)
        .args(["registrator", "-retry-attempts=0", &uri])
        .env_remove("CONSUL_CACERT")
        .output()
        .expect("run cairn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not answer after 1 attempt:"),
        "{stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");

    // With it, the agent is reached over TLS.
    let args = ["registrator".to_string(), "-retry-attempts=0".into(), uri];
    let ca = dir.join("ca.pem").to_string_lossy().into_owned();
    let mut reg = Registrator::start(
        &args,
        &dir.join("registrator.log"),
        &format!("unix://{DOCKER_SOCKET}"),
        &[("CONSUL_CACERT", ca.as_str())],
    );
    reg.wait_log(
        &format!("consul: reached the agent at https://localhost:{port}"),
        Duration::from_secs(10),
    );
    assert_eq!(reg.terminate(), Some(0));
}
