//! Multi-agent harness: real `cairn` processes on their own loopback
//! addresses (127.0.<net>.<host>) with Consul's default ports, so each
//! agent looks like its own host. Tests pick distinct `<net>`s so they can
//! run in parallel.
#![allow(dead_code)]

use super::Resp;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub struct Node {
    pub name: String,
    pub ip: String,
    pub args: Vec<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    _tmp: tempfile::TempDir,
}

impl Node {
    /// A server agent on 127.0.`net`.`host` that joins `join` (host numbers).
    pub fn server(net: u8, host: u8, expect: u32, join: &[u8], extra: &[&str]) -> Node {
        let mut args = vec!["-server".to_string(), format!("-bootstrap-expect={expect}")];
        args.extend(join.iter().map(|h| format!("-retry-join=127.0.{net}.{h}")));
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::new(&format!("s{host}"), net, host, args)
    }

    /// A client agent on 127.0.`net`.`host`.
    pub fn client(net: u8, host: u8, join: &[u8], extra: &[&str]) -> Node {
        let mut args: Vec<String> = join
            .iter()
            .map(|h| format!("-retry-join=127.0.{net}.{h}"))
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::new(&format!("c{host}"), net, host, args)
    }

    pub fn new(name: &str, net: u8, host: u8, args: Vec<String>) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        Node {
            name: name.to_string(),
            ip: format!("127.0.{net}.{host}"),
            args,
            data_dir: tmp.path().join("data"),
            log: tmp.path().join("agent.log"),
            child: None,
            _tmp: tmp,
        }
    }

    pub fn command_args(&self) -> Vec<String> {
        let mut v = vec![
            "agent".to_string(),
            format!("-node={}", self.name),
            format!("-bind={}", self.ip),
            format!("-client={}", self.ip),
            format!("-data-dir={}", self.data_dir.display()),
            "-retry-interval=1s".into(),
        ];
        v.extend(self.args.iter().cloned());
        v
    }

    /// Starts the process without waiting for anything.
    pub fn spawn(&mut self) {
        let child = super::spawn_logged(
            &self.command_args(),
            &self.log,
            &[("CAIRN_LOG", "info,openraft=error")],
        );
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait for exit, return the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        wait_exit(&mut c, Duration::from_secs(20))
    }

    /// Waits for the process to exit by itself; returns its code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut c = self.child.take()?;
        let code = wait_exit(&mut c, limit);
        if code.is_none() {
            self.child = Some(c);
        }
        code
    }

    /// SIGSTOP: the process stays alive but stops answering anything.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = self.child.as_ref() {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Result<Resp, String> {
        let url = format!("http://{}:8500{}", self.ip, path);
        super::http_request(method, &url, body.map(str::as_bytes), &[])
    }

    pub fn get(&self, path: &str) -> Result<Resp, String> {
        self.request("GET", path, None)
    }

    pub fn put(&self, path: &str, body: &str) -> Result<Resp, String> {
        self.request("PUT", path, Some(body))
    }

    /// `/v1/status/leader` as seen by this agent ("" when none).
    pub fn leader(&self) -> String {
        self.get("/v1/status/leader")
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str::<String>(&r.body).ok())
            .unwrap_or_default()
    }

    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .arg(format!("@{}", self.ip))
            .args(["-p", "8600", "+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("dig must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn wait_exit(c: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Drops traffic between two loopback addresses in both directions (TCP and
/// UDP) with iptables; the rules go away when the guard drops.
pub struct Partition {
    rules: Vec<(String, String)>,
}

impl Partition {
    pub fn cut(pairs: &[(&str, &str)]) -> Partition {
        let mut rules = Vec::new();
        for (a, b) in pairs {
            for (s, d) in [(a, b), (b, a)] {
                let ok = Command::new("iptables")
                    .args(["-I", "INPUT", "-s", s, "-d", d, "-j", "DROP"])
                    .status()
                    .expect("iptables must be installed (scripts/test installs it)")
                    .success();
                assert!(ok, "iptables -I INPUT -s {s} -d {d} -j DROP failed");
                rules.push((s.to_string(), d.to_string()));
            }
        }
        Partition { rules }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        for (s, d) in &self.rules {
            let _ = Command::new("iptables")
                .args(["-D", "INPUT", "-s", s, "-d", d, "-j", "DROP"])
                .status();
        }
    }
}

/// Waits until every node reports the same non-empty leader; returns it.
pub fn wait_leader(nodes: &[&Node], limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let leaders: Vec<String> = nodes.iter().map(|n| n.leader()).collect();
        if !leaders[0].is_empty() && leaders.iter().all(|l| *l == leaders[0]) {
            return Some(leaders[0].clone());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
