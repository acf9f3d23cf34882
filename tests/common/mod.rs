//! Shared helpers for integration tests: start the real `cairn` binary on
//! free loopback ports with its own data dir, talk to it over HTTP, query
//! it with `dig`.
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// A TCP+UDP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A TCP+UDP port free on loopback address `ip` right now.
pub fn free_port_on(ip: &str) -> u16 {
    loop {
        let tcp = TcpListener::bind((ip, 0)).expect("bind");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

pub struct Ports {
    pub http: u16,
    pub dns: u16,
    pub server: u16,
    pub serf_lan: u16,
    pub serf_wan: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports::free_on("127.0.0.1")
    }

    /// Five distinct ports: each is held until all are chosen, so the
    /// kernel cannot hand the same one out twice.
    pub fn free_on(ip: &str) -> Ports {
        let mut held = Vec::new();
        while held.len() < 5 {
            let tcp = TcpListener::bind((ip, 0)).expect("bind");
            let port = tcp.local_addr().unwrap().port();
            if let Ok(udp) = UdpSocket::bind((ip, port)) {
                held.push((port, tcp, udp));
            }
        }
        let p: Vec<u16> = held.iter().map(|h| h.0).collect();
        Ports {
            http: p[0],
            dns: p[1],
            server: p[2],
            serf_lan: p[3],
            serf_wan: p[4],
        }
    }
}

/// A running agent process, killed on drop.
pub struct TestAgent {
    pub child: Option<Child>,
    pub ports: Ports,
    pub data_dir: PathBuf,
    pub node: String,
    pub extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    pub log: PathBuf,
    /// The loopback address it listens on.
    pub ip: String,
    /// Leave `ports.http` to the config files: no `-http-port` flag.
    pub http_port_from_config: bool,
    /// Sent as `X-Consul-Token` on every request that names none, so an
    /// agent with ACLs on can be driven (and found ready) like any other.
    pub token: Option<String>,
    /// Extra environment of the agent process.
    pub env: Vec<(String, String)>,
}

impl TestAgent {
    /// `cairn agent -dev` with its own data dir and ports.
    pub fn dev() -> TestAgent {
        Self::dev_with(&[])
    }

    pub fn dev_with(extra: &[&str]) -> TestAgent {
        let mut a = Self::unstarted("127.0.0.1", extra);
        a.start();
        a
    }

    /// `cairn agent -dev` bound on the loopback address `ip` (client and
    /// bind address alike).
    pub fn dev_at(ip: &str, extra: &[&str]) -> TestAgent {
        let mut a = Self::unstarted(ip, extra);
        a.start();
        a
    }

    /// An agent on loopback address `ip`, not started yet.
    pub fn unstarted(ip: &str, extra: &[&str]) -> TestAgent {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        TestAgent {
            child: None,
            ports: Ports::free_on(ip),
            data_dir,
            node: "node1".into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: tmp.path().join("agent.log"),
            _tmp: Some(tmp),
            ip: ip.to_string(),
            http_port_from_config: false,
            token: None,
            env: Vec::new(),
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut v = vec![
            "agent".to_string(),
            "-dev".into(),
            format!("-node={}", self.node),
            format!("-data-dir={}", self.data_dir.display()),
            format!("-dns-port={}", self.ports.dns),
            format!("-server-port={}", self.ports.server),
            format!("-serf-lan-port={}", self.ports.serf_lan),
            format!("-serf-wan-port={}", self.ports.serf_wan),
            format!("-client={}", self.ip),
            format!("-bind={}", self.ip),
        ];
        if !self.http_port_from_config {
            v.push(format!("-http-port={}", self.ports.http));
        }
        v.extend(self.extra.iter().cloned());
        v
    }

    /// Starts (or restarts) the process and waits until it has a leader and
    /// has registered itself.
    pub fn start(&mut self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let child = spawn_logged(&self.args(), &self.log, &env);
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "cairn exited early with {status}; log:\n{}",
                        self.log_text()
                    );
                }
            }
            if let Ok(r) = self.get("/v1/catalog/node/".to_string() + &self.node) {
                if r.status == 200 && r.body.trim() != "null" {
                    if let Ok(h) = self.get(format!("/v1/health/node/{}", self.node)) {
                        if h.body.contains("serfHealth") {
                            return;
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                panic!("cairn did not become ready; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn base(&self) -> String {
        format!("http://{}:{}", self.ip, self.ports.http)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("agent did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let url = format!("{}{}", self.base(), path);
        match &self.token {
            Some(t)
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("X-Consul-Token")) =>
            {
                let mut with = headers.to_vec();
                with.push(("X-Consul-Token", t));
                http_request(method, &url, body, &with)
            }
            _ => http_request(method, &url, body, headers),
        }
    }

    pub fn get(&self, path: impl AsRef<str>) -> Result<Resp, String> {
        self.request("GET", path.as_ref(), None, &[])
    }

    /// PUT with a body; panics on transport errors.
    pub fn put(&self, path: &str, body: &str) -> Resp {
        self.request("PUT", path, Some(body.as_bytes()), &[])
            .expect("PUT")
    }

    pub fn get_ok(&self, path: &str) -> Resp {
        self.get(path).expect("GET")
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, None, &[]).expect("DELETE")
    }

    /// `dig @127.0.0.1 -p <dns> <args...> +noall +answer ...` output.
    pub fn dig(&self, args: &[&str]) -> String {
        dig_at(&self.ip, self.ports.dns, args)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `cairn <args>` with stdout and stderr appended to `log`.
pub fn spawn_logged(args: &[String], log: &Path, env: &[(&str, &str)]) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdout(Stdio::from(out.try_clone().expect("log handle")))
        .stderr(Stdio::from(out));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn cairn")
}

/// One HTTP request with a fresh client (no redirects followed, 30 s timeout).
pub fn http_request(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<Resp, String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let mut req = client.request(m, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    let resp = req.send().map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let bytes = resp.bytes().map_err(|e| e.to_string())?.to_vec();
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `X-Consul-Index` as a number (0 when absent or malformed).
    pub fn index(&self) -> u64 {
        self.header("X-Consul-Index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Runs `dig` against 127.0.0.1:<port> with the given arguments; returns stdout.
/// A missing `dig` is a failure, never a skip.
pub fn dig(port: u16, args: &[&str]) -> String {
    dig_at("127.0.0.1", port, args)
}

/// `dig` against `ip:<port>`.
pub fn dig_at(ip: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{ip}"))
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed (scripts/test installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
pub mod acl;
pub mod browser;
pub mod checks;
pub mod cluster;
pub mod docker;
pub mod linear;
