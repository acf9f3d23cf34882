//! Fault injection with a linearizability check.
//!
//! Starts a cluster of real `cairn` servers and client agents on loopback
//! addresses, runs concurrent clients against the KV store (PUT, GET in the
//! three read modes, `?cas=`, DELETE, single-key `/v1/txn`) while a nemesis
//! driven by a seed kills, pauses and partitions servers and adds and
//! removes one, then heals everything, reads every key `?consistent` from
//! every server, and checks the history (`tests/common/linear.rs`):
//! writes, `?consistent` and default reads must be linearizable, `?stale`
//! reads monotonic per client and agent and never of a value not written.
//!
//! The CI form is three servers, two client agents and three minutes of
//! faults. The long form is the same test with more of them:
//!
//! ```text
//! CAIRN_CHAOS_SERVERS=5 CAIRN_CHAOS_SECS=600 CAIRN_CHAOS_SEED=42 \
//!     cargo test --release --test chaos -- --nocapture
//! ```
//!
//! `CAIRN_CHAOS_SEED` picks the fault schedule and the clients' choices
//! (default: from the clock, printed at start); `CAIRN_CHAOS_NET` the
//! loopback net 127.0.N.x (default 60).

mod common;

use base64::Engine;
use common::cluster::{wait_leader, Node, Partition};
use common::linear::{
    check, check_stale_reads, Call, Operation, Outcome, StaleRead, TxnStep, Value,
};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: usize = 4;
const CLIENT_AGENTS: u8 = 2;
const CLIENTS_PER_TARGET_KIND: usize = 3;
const HTTP_TIMEOUT: Duration = Duration::from_millis(2000);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: the seed alone decides every choice.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range_ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

fn key(k: usize) -> String {
    format!("chaos/k{k}")
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum ReadMode {
    Default,
    Consistent,
    Stale,
}

impl ReadMode {
    fn query(self) -> &'static str {
        match self {
            ReadMode::Default => "",
            ReadMode::Consistent => "?consistent",
            ReadMode::Stale => "?stale",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ReadMode::Default => "default",
            ReadMode::Consistent => "consistent",
            ReadMode::Stale => "stale",
        }
    }
}

/// What one client thread recorded.
#[derive(Default)]
struct Record {
    ops: Vec<Operation>,
    stale: Vec<StaleRead>,
    ok: usize,
    indeterminate: usize,
    dropped_reads: usize,
    rejected: Vec<String>,
}

enum Answer {
    /// Status, body, `X-Consul-Index`.
    Reply(u16, String, u64),
    /// The request never reached the agent (connection refused).
    NotSent,
    /// Timed out or broke after being sent.
    Unknown,
}

fn send(
    http: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<String>,
) -> Answer {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.body(b);
    }
    match req.send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let index = resp
                .headers()
                .get("x-consul-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            match resp.text() {
                Ok(body) => Answer::Reply(status, body, index),
                Err(_) => Answer::Unknown,
            }
        }
        Err(e) if e.is_connect() => Answer::NotSent,
        Err(_) => Answer::Unknown,
    }
}

/// A value as this harness writes it; anything else reads as a value
/// nobody wrote, which the checker reports.
fn parse_value(b64: Option<&str>) -> Value {
    b64.and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A GET of one key: `(value, ModifyIndex)`; `None` when the answer is not
/// a read result.
fn parse_read(status: u16, body: &str) -> Option<(Option<Value>, u64)> {
    match status {
        404 => Some((None, 0)),
        200 => {
            let v: serde_json::Value = serde_json::from_str(body).ok()?;
            let e = v.as_array()?.first()?;
            Some((
                Some(parse_value(e["Value"].as_str())),
                e["ModifyIndex"].as_u64().unwrap_or(0),
            ))
        }
        _ => None,
    }
}

struct Client {
    id: usize,
    targets: Vec<String>,
    rng: Rng,
    epoch: Instant,
    http: reqwest::blocking::Client,
    /// The last version of each key this client saw: value and ModifyIndex.
    known: HashMap<usize, (Option<Value>, u64)>,
    seq: u64,
    rec: Record,
}

impl Client {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn fresh_value(&mut self) -> Value {
        self.seq += 1;
        (self.id as u64 + 1) * 1_000_000_000 + self.seq
    }

    fn run(mut self, stop: &AtomicBool) -> Record {
        while !stop.load(Ordering::Relaxed) {
            let target = self.targets[self.rng.below(self.targets.len() as u64) as usize].clone();
            let k = self.rng.below(KEYS as u64) as usize;
            match self.rng.below(20) {
                0..=4 => self.write(&target, k),
                5..=7 => self.read(&target, k, ReadMode::Default),
                8..=10 => self.read(&target, k, ReadMode::Consistent),
                11..=12 => self.read(&target, k, ReadMode::Stale),
                13..=15 => self.cas(&target, k),
                16 => self.delete(&target, k),
                _ => self.txn(&target, k),
            }
            std::thread::sleep(Duration::from_millis(5 + self.rng.below(15)));
        }
        self.rec
    }

    /// Records a write-like op from its answer; `judge` maps a 2xx/4xx
    /// reply to an outcome (`None`: rejected, it changed nothing).
    fn record(
        &mut self,
        target: &str,
        k: usize,
        call: Call,
        invoked: u64,
        answer: Answer,
        judge: impl Fn(u16, &str) -> Option<Outcome>,
    ) {
        let completed = self.now();
        let (outcome, completed) = match answer {
            Answer::NotSent => return,
            Answer::Unknown => (Outcome::Indeterminate, u64::MAX),
            Answer::Reply(status, _, _) if status >= 500 => (Outcome::Indeterminate, u64::MAX),
            Answer::Reply(status, body, _) => match judge(status, &body) {
                Some(o) => (o, completed),
                None => {
                    self.rec.rejected.push(format!(
                        "{} on {target}: {status} {}",
                        common::linear::describe_call(&call),
                        body.trim()
                    ));
                    return;
                }
            },
        };
        if outcome == Outcome::Indeterminate {
            self.rec.indeterminate += 1;
        } else {
            self.rec.ok += 1;
        }
        self.rec.ops.push(Operation {
            client: self.id,
            key: key(k),
            call,
            outcome,
            invoked,
            completed,
            via: target.to_string(),
        });
    }

    fn url(target: &str, k: usize, query: &str) -> String {
        format!("http://{target}:8500/v1/kv/{}{query}", key(k))
    }

    fn write(&mut self, target: &str, k: usize) {
        let v = self.fresh_value();
        let t = self.now();
        let a = send(
            &self.http,
            reqwest::Method::PUT,
            &Self::url(target, k, ""),
            Some(v.to_string()),
        );
        self.record(target, k, Call::Write(v), t, a, |s, b| {
            (s == 200 && b.trim() == "true").then_some(Outcome::Done)
        });
    }

    fn delete(&mut self, target: &str, k: usize) {
        let t = self.now();
        let a = send(
            &self.http,
            reqwest::Method::DELETE,
            &Self::url(target, k, ""),
            None,
        );
        self.record(target, k, Call::Delete, t, a, |s, b| {
            (s == 200 && b.trim() == "true").then_some(Outcome::Done)
        });
    }

    fn cas(&mut self, target: &str, k: usize) {
        let (expected, index) = self.known.get(&k).copied().unwrap_or((None, 0));
        let v = self.fresh_value();
        let t = self.now();
        let a = send(
            &self.http,
            reqwest::Method::PUT,
            &Self::url(target, k, &format!("?cas={index}")),
            Some(v.to_string()),
        );
        let call = Call::Cas { expected, new: v };
        self.record(target, k, call, t, a, |s, b| match (s, b.trim()) {
            (200, "true") => Some(Outcome::Cas(true)),
            (200, "false") => Some(Outcome::Cas(false)),
            _ => None,
        });
    }

    /// `[cas, get]` from the last version seen, or `[set, get]`.
    fn txn(&mut self, target: &str, k: usize) {
        let v = self.fresh_value();
        let b64 = base64::engine::general_purpose::STANDARD.encode(v.to_string());
        let (expected, index) = self.known.get(&k).copied().unwrap_or((None, 0));
        let use_cas = self.rng.below(2) == 0;
        let first = if use_cas {
            serde_json::json!({"KV": {"Verb": "cas", "Key": key(k), "Value": b64, "Index": index}})
        } else {
            serde_json::json!({"KV": {"Verb": "set", "Key": key(k), "Value": b64}})
        };
        let body = serde_json::json!([first, {"KV": {"Verb": "get", "Key": key(k)}}]).to_string();
        let steps = vec![
            if use_cas {
                TxnStep::Cas { expected, new: v }
            } else {
                TxnStep::Set(v)
            },
            TxnStep::Get,
        ];
        let t = self.now();
        let a = send(
            &self.http,
            reqwest::Method::PUT,
            &format!("http://{target}:8500/v1/txn"),
            Some(body),
        );
        self.record(target, k, Call::Txn(steps), t, a, |s, b| {
            let j: serde_json::Value = serde_json::from_str(b).ok()?;
            match s {
                200 => {
                    let results = j["Results"].as_array()?;
                    let got = results.iter().rev().find_map(|r| r["KV"].as_object())?;
                    Some(Outcome::Txn(Some(vec![Some(parse_value(
                        got.get("Value").and_then(|v| v.as_str()),
                    ))])))
                }
                // Rolled back by the failed cas (the get after it may
                // report the key missing too, as Consul's does).
                409 if use_cas
                    && j["Errors"]
                        .as_array()
                        .is_some_and(|e| e.iter().any(|e| e["OpIndex"] == 0)) =>
                {
                    Some(Outcome::Txn(None))
                }
                _ => None,
            }
        });
    }

    fn read(&mut self, target: &str, k: usize, mode: ReadMode) {
        let t = self.now();
        let a = send(
            &self.http,
            reqwest::Method::GET,
            &Self::url(target, k, mode.query()),
            None,
        );
        let completed = self.now();
        let Answer::Reply(status, body, index) = a else {
            self.rec.dropped_reads += 1;
            return;
        };
        let Some((value, modify_index)) = parse_read(status, &body) else {
            self.rec.dropped_reads += 1;
            return;
        };
        self.rec.ok += 1;
        self.known.insert(k, (value, modify_index));
        if mode == ReadMode::Stale {
            self.rec.stale.push(StaleRead {
                client: self.id,
                agent: target.to_string(),
                key: key(k),
                invoked: t,
                completed,
                value,
                modify_index,
                index,
            });
            return;
        }
        self.rec.ops.push(Operation {
            client: self.id,
            key: key(k),
            call: Call::Read,
            outcome: Outcome::Read(value),
            invoked: t,
            completed,
            via: format!("{target} {}", mode.name()),
        });
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    KillFollower,
    KillMajority,
    PauseLeader,
    PauseFollower,
    IsolateLeader,
    SplitMinority,
    Bridge,
    AddAndRemoveServer,
}

const FAULTS: [Fault; 9] = [
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::KillMajority,
    Fault::PauseLeader,
    Fault::PauseFollower,
    Fault::IsolateLeader,
    Fault::SplitMinority,
    Fault::Bridge,
    Fault::AddAndRemoveServer,
];

struct Nemesis {
    net: u8,
    expect: u32,
    servers: Vec<Node>,
    clients: Vec<Node>,
    epoch: Instant,
    log: Vec<String>,
    rng: Rng,
    next_host: u8,
    faults: usize,
    /// Panics in the logs of servers that are gone by the end.
    panics: Vec<String>,
}

impl Nemesis {
    fn note(&mut self, what: String) {
        let line = format!(
            "{:>10.3} ms  {what}",
            self.epoch.elapsed().as_secs_f64() * 1e3
        );
        eprintln!("nemesis {line}");
        self.log.push(line);
    }

    fn all_ips(&self) -> Vec<String> {
        self.servers
            .iter()
            .chain(self.clients.iter())
            .map(|n| n.ip.clone())
            .collect()
    }

    /// The index of the server every running server agrees leads.
    fn leader(&self) -> Option<usize> {
        let live: Vec<&Node> = self.servers.iter().filter(|n| n.child.is_some()).collect();
        let l = wait_leader(&live, Duration::from_secs(20))?;
        self.servers
            .iter()
            .position(|n| l.starts_with(&format!("{}:", n.ip)))
    }

    fn follower(&mut self, leader: Option<usize>) -> usize {
        let others: Vec<usize> = (0..self.servers.len())
            .filter(|i| Some(*i) != leader)
            .collect();
        others[self.rng.below(others.len() as u64) as usize]
    }

    fn hold(&mut self, lo: u64, hi: u64) {
        let d = self.rng.range_ms(lo, hi);
        std::thread::sleep(d);
    }

    fn restart(&mut self, i: usize) {
        self.servers[i].spawn();
        let name = self.servers[i].name.clone();
        self.note(format!("restart {name}"));
    }

    fn cut(&mut self, a: &[String], b: &[String], what: String) -> Partition {
        let pairs: Vec<(&str, &str)> = a
            .iter()
            .flat_map(|x| b.iter().map(move |y| (x.as_str(), y.as_str())))
            .collect();
        self.note(what);
        Partition::cut(&pairs)
    }

    fn inject(&mut self, fault: Fault) {
        self.faults += 1;
        let leader = self.leader();
        let lname = |n: &Nemesis| leader.map_or("none".to_string(), |l| n.servers[l].name.clone());
        match fault {
            Fault::KillLeader | Fault::KillFollower => {
                let i = match (fault, leader) {
                    (Fault::KillLeader, Some(l)) => l,
                    _ => self.follower(leader),
                };
                let name = self.servers[i].name.clone();
                self.servers[i].kill9();
                self.note(format!(
                    "{fault:?}: SIGKILL {name} (leader {})",
                    lname(self)
                ));
                self.hold(2000, 8000);
                self.restart(i);
            }
            Fault::KillMajority => {
                let n = self.servers.len();
                let mut picked: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    picked.swap(i, self.rng.below(i as u64 + 1) as usize);
                }
                picked.truncate(n / 2 + 1);
                let names: Vec<String> = picked
                    .iter()
                    .map(|&i| self.servers[i].name.clone())
                    .collect();
                for &i in &picked {
                    self.servers[i].kill9();
                }
                self.note(format!(
                    "{fault:?}: SIGKILL {names:?} (leader {})",
                    lname(self)
                ));
                self.hold(2000, 6000);
                for i in picked {
                    self.restart(i);
                }
            }
            Fault::PauseLeader | Fault::PauseFollower => {
                let i = match (fault, leader) {
                    (Fault::PauseLeader, Some(l)) => l,
                    _ => self.follower(leader),
                };
                let name = self.servers[i].name.clone();
                self.servers[i].pause();
                self.note(format!(
                    "{fault:?}: SIGSTOP {name} (leader {})",
                    lname(self)
                ));
                // Longer than the election timeout (400-800 ms).
                self.hold(1500, 6000);
                self.servers[i].resume();
                self.note(format!("SIGCONT {name}"));
            }
            Fault::IsolateLeader => {
                let l = leader.unwrap_or_else(|| self.follower(None));
                let me = vec![self.servers[l].ip.clone()];
                let rest: Vec<String> = self
                    .all_ips()
                    .into_iter()
                    .filter(|ip| *ip != me[0])
                    .collect();
                let name = self.servers[l].name.clone();
                let p = self.cut(&me, &rest, format!("{fault:?}: cut {name} from everyone"));
                self.hold(3000, 10000);
                drop(p);
                self.note("heal".into());
            }
            Fault::SplitMinority => {
                let n = self.servers.len();
                let mut order: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    order.swap(i, self.rng.below(i as u64 + 1) as usize);
                }
                let minority: Vec<String> = order[..(n - 1) / 2]
                    .iter()
                    .map(|&i| self.servers[i].ip.clone())
                    .collect();
                // Client agents go with either side.
                let mut majority: Vec<String> = order[(n - 1) / 2..]
                    .iter()
                    .map(|&i| self.servers[i].ip.clone())
                    .collect();
                let mut minority_side = minority.clone();
                for c in &self.clients {
                    if self.rng.below(2) == 0 {
                        majority.push(c.ip.clone());
                    } else {
                        minority_side.push(c.ip.clone());
                    }
                }
                let p = self.cut(
                    &minority_side,
                    &majority,
                    format!("{fault:?}: {minority_side:?} | {majority:?}"),
                );
                self.hold(3000, 10000);
                drop(p);
                self.note("heal".into());
            }
            Fault::Bridge => {
                // One server sees both halves; the halves do not see each
                // other.
                let n = self.servers.len();
                let bridge = leader.unwrap_or(0);
                let others: Vec<usize> = (0..n).filter(|&i| i != bridge).collect();
                let (a, b) = others.split_at(others.len() / 2);
                let a: Vec<String> = a.iter().map(|&i| self.servers[i].ip.clone()).collect();
                let b: Vec<String> = b.iter().map(|&i| self.servers[i].ip.clone()).collect();
                let bname = self.servers[bridge].name.clone();
                let p = self.cut(&a, &b, format!("{fault:?}: {a:?} | {bname} | {b:?}"));
                self.hold(3000, 10000);
                drop(p);
                self.note("heal".into());
            }
            Fault::AddAndRemoveServer => {
                let host = self.next_host;
                self.next_host += 1;
                let join: Vec<u8> = (1..=self.servers.len() as u8).collect();
                let mut node = Node::server(self.net, host, self.expect, &join, &[]);
                node.spawn();
                let name = node.name.clone();
                self.note(format!("{fault:?}: start {name} joining"));
                let joined = common::eventually(Duration::from_secs(30), || {
                    raft_servers(&self.servers).contains(&format!("{}:8300", node.ip))
                });
                self.note(format!("{name} in the raft configuration: {joined}"));
                self.hold(2000, 5000);
                let out = Command::new(common::BIN)
                    .args(["leave", &format!("-http-addr={}:8500", node.ip)])
                    .output()
                    .expect("cairn leave");
                let code = node.wait_exit(Duration::from_secs(30));
                self.note(format!(
                    "{name} left (leave: {}, exit {code:?})",
                    out.status
                ));
                node.kill9();
                if let Some(i) = node.log_text().find("panicked") {
                    let text = node.log_text();
                    let excerpt: Vec<&str> = text[i..].lines().take(8).collect();
                    self.panics.push(format!("{name}:\n{}", excerpt.join("\n")));
                }
                let gone = common::eventually(Duration::from_secs(30), || {
                    let s = raft_servers(&self.servers);
                    !s.is_empty() && !s.contains(&format!("{}:8300", node.ip))
                });
                let config = raft_servers(&self.servers);
                self.note(format!(
                    "{name} out of the raft configuration: {gone} (now {config:?})"
                ));
            }
        }
    }

    /// The last lines of every server's log, for a failure report.
    fn log_tails(&self) -> String {
        self.servers
            .iter()
            .map(|n| {
                let log = n.log_text();
                let lines: Vec<&str> = log.lines().collect();
                let from = lines.len().saturating_sub(25);
                let panic = lines
                    .iter()
                    .position(|l| l.contains("panicked at"))
                    .map(|i| lines[i..(i + 3).min(lines.len())].join("\n"))
                    .unwrap_or_default();
                format!("--- {} ---\n{panic}\n{}", n.name, lines[from..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every server running, nothing cut, a leader all agree on.
    fn heal(&mut self) -> bool {
        for i in 0..self.servers.len() {
            self.servers[i].resume();
            if !self.servers[i].running() {
                self.restart(i);
            }
        }
        let all: Vec<&Node> = self.servers.iter().collect();
        let ok = wait_leader(&all, Duration::from_secs(60)).is_some();
        self.note(format!("healed, leader agreed: {ok}"));
        ok
    }
}

/// With `CAIRN_CHAOS_KEEP_LOGS=<dir>`, every agent's log is copied there
/// when the test ends, however it ends.
impl Drop for Nemesis {
    fn drop(&mut self) {
        let Ok(dir) = std::env::var("CAIRN_CHAOS_KEEP_LOGS") else {
            return;
        };
        let _ = std::fs::create_dir_all(&dir);
        for n in self.servers.iter().chain(self.clients.iter()) {
            let _ = std::fs::copy(&n.log, format!("{dir}/{}.log", n.name));
        }
        let _ = std::fs::write(format!("{dir}/faults.log"), self.log.join("\n"));
    }
}

/// The raft configuration's addresses, as the first server that answers
/// says.
fn raft_servers(servers: &[Node]) -> Vec<String> {
    for s in servers.iter().filter(|s| s.child.is_some()) {
        if let Ok(r) = s.get("/v1/operator/raft/configuration") {
            if r.status == 200 {
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                if let Some(list) = v["Servers"].as_array() {
                    return list
                        .iter()
                        .filter_map(|s| s["Address"].as_str().map(String::from))
                        .collect();
                }
            }
        }
    }
    Vec::new()
}

#[test]
fn kv_stays_linearizable_under_faults() {
    let n_servers = env_u64("CAIRN_CHAOS_SERVERS", 3) as u8;
    let secs = env_u64("CAIRN_CHAOS_SECS", 180);
    let seed = env_u64(
        "CAIRN_CHAOS_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let net = env_u64("CAIRN_CHAOS_NET", 60) as u8;
    eprintln!("chaos: {n_servers} servers, {secs} s of faults, seed {seed}, net 127.0.{net}.x");

    let join: Vec<u8> = (1..=n_servers).collect();
    let mut servers: Vec<Node> = (1..=n_servers)
        .map(|h| Node::server(net, h, n_servers as u32, &join, &[]))
        .collect();
    let mut clients: Vec<Node> = (1..=CLIENT_AGENTS)
        .map(|h| Node::client(net, 100 + h, &join, &[]))
        .collect();
    for n in servers.iter_mut().chain(clients.iter_mut()) {
        n.spawn();
    }
    let all: Vec<&Node> = servers.iter().chain(clients.iter()).collect();
    assert!(
        wait_leader(&all, Duration::from_secs(60)).is_some(),
        "no leader at start"
    );
    // The client agents' views are synced before the clients start.
    for c in &clients {
        assert!(common::eventually(Duration::from_secs(30), || c
            .put("/v1/kv/chaos/ready", "1")
            .is_ok_and(|r| r.status == 200)
            && c.get("/v1/kv/chaos/ready?stale")
                .is_ok_and(|r| r.status == 200)));
    }

    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let server_ips: Vec<String> = servers.iter().map(|n| n.ip.clone()).collect();
    let mut threads = Vec::new();
    let mut seeder = Rng(seed);
    for id in 0..2 * CLIENTS_PER_TARGET_KIND {
        let targets = if id < CLIENTS_PER_TARGET_KIND {
            server_ips.clone()
        } else {
            vec![clients[id % clients.len()].ip.clone()]
        };
        let client = Client {
            id,
            targets,
            rng: Rng(seeder.next()),
            epoch,
            http: reqwest::blocking::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .connect_timeout(Duration::from_millis(1000))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            known: HashMap::new(),
            seq: 0,
            rec: Record::default(),
        };
        let stop = stop.clone();
        threads.push(std::thread::spawn(move || client.run(&stop)));
    }

    let mut nemesis = Nemesis {
        net,
        expect: n_servers as u32,
        servers,
        clients,
        epoch,
        log: Vec::new(),
        rng: Rng(seeder.next()),
        next_host: n_servers + 10,
        faults: 0,
        panics: Vec::new(),
    };
    let until = Instant::now() + Duration::from_secs(secs);
    // CAIRN_CHAOS_FAULTS=KillLeader,Bridge runs only those kinds.
    let only: Vec<String> = std::env::var("CAIRN_CHAOS_FAULTS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut schedule: Vec<Fault> = Vec::new();
    let mut unhealed = 0;
    while Instant::now() < until {
        if schedule.is_empty() {
            // Every kind once per round, in an order of the seed's.
            schedule = FAULTS
                .iter()
                .copied()
                .filter(|f| only.is_empty() || only.contains(&format!("{f:?}")))
                .collect();
            for i in (1..schedule.len()).rev() {
                schedule.swap(i, nemesis.rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = schedule.pop().unwrap();
        nemesis.inject(fault);
        if !nemesis.heal() {
            unhealed += 1;
        }
        nemesis.hold(1000, 3000);
    }
    let healed = nemesis.heal();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let records: Vec<Record> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    // Every server's final word on every key, part of the history.
    let final_id = 1000;
    let mut final_client = Client {
        id: final_id,
        targets: Vec::new(),
        rng: Rng(0),
        epoch,
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        known: HashMap::new(),
        seq: 0,
        rec: Record::default(),
    };
    let final_ips: Vec<String> = nemesis.servers.iter().map(|n| n.ip.clone()).collect();
    for ip in &final_ips {
        for k in 0..KEYS {
            let mut ok = false;
            for _ in 0..10 {
                let before = final_client.rec.ops.len();
                final_client.read(ip, k, ReadMode::Consistent);
                if final_client.rec.ops.len() > before {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            if !ok {
                let last = common::http_request(
                    "GET",
                    &format!("http://{ip}:8500/v1/kv/{}?consistent", key(k)),
                    None,
                    &[],
                )
                .map(|r| format!("{} {}", r.status, r.body));
                panic!(
                    "final ?consistent read of {} on {ip} failed: {last:?}\nfaults:\n{}\n{}",
                    key(k),
                    nemesis.log.join("\n"),
                    nemesis.log_tails()
                );
            }
        }
    }

    let mut ops: Vec<Operation> = Vec::new();
    let mut stale: Vec<StaleRead> = Vec::new();
    let (mut ok, mut indeterminate, mut dropped) = (0, 0, 0);
    let mut rejected = Vec::new();
    for r in records.into_iter().chain([final_client.rec]) {
        ops.extend(r.ops);
        stale.extend(r.stale);
        ok += r.ok;
        indeterminate += r.indeterminate;
        dropped += r.dropped_reads;
        rejected.extend(r.rejected);
    }
    stale.sort_by_key(|r| (r.client, r.invoked));
    let count = |f: &dyn Fn(&Operation) -> bool| ops.iter().filter(|o| f(o)).count();
    let reads_ok = count(&|o| o.call == Call::Read);
    let writes_ok = count(&|o| o.call != Call::Read && !o.is_indeterminate());
    let summary = format!(
        "seed {seed}: {} ops recorded ({} ok, {indeterminate} indeterminate, {} stale reads, \
         {dropped} failed reads dropped, {} rejected), {} faults, {unhealed} rounds without a \
         leader after healing",
        ops.len() + stale.len(),
        ok,
        stale.len(),
        rejected.len(),
        nemesis.faults
    );
    eprintln!("chaos: {summary}");
    let fault_log = nemesis.log.join("\n");
    let mut panics: Vec<String> = nemesis.panics.clone();
    panics.extend(
        nemesis
            .servers
            .iter()
            .chain(nemesis.clients.iter())
            .filter_map(|n| {
                let log = n.log_text();
                log.lines().position(|l| l.contains("panicked")).map(|i| {
                    format!(
                        "{}:\n{}",
                        n.name,
                        log.lines().skip(i).take(8).collect::<Vec<_>>().join("\n")
                    )
                })
            }),
    );
    assert!(
        panics.is_empty(),
        "an agent panicked:\n{}",
        panics.join("\n")
    );
    assert!(
        rejected.is_empty(),
        "requests rejected with a 4xx or an unexpected answer:\n{}",
        rejected
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    let started = Instant::now();
    // Writes and ?consistent reads.
    let strict: Vec<Operation> = ops
        .iter()
        .filter(|o| o.call != Call::Read || o.via.ends_with(" consistent"))
        .cloned()
        .collect();
    if let Err(v) = check(&strict) {
        panic!("?consistent reads and writes are not linearizable: {v}\nfaults:\n{fault_log}\n{summary}");
    }
    // Default reads are served at the leader's read index.
    if let Err(v) = check(&ops) {
        panic!("default reads are not linearizable: {v}\nfaults:\n{fault_log}\n{summary}");
    }
    let writes: Vec<Operation> = ops
        .iter()
        .filter(|o| o.call != Call::Read)
        .cloned()
        .collect();
    if let Err(e) = check_stale_reads(&stale, &writes) {
        panic!("?stale reads: {e}\nfaults:\n{fault_log}\n{summary}");
    }
    eprintln!("chaos: checked in {:?}", started.elapsed());
    eprintln!("faults:\n{fault_log}");

    assert!(healed, "no leader after the final heal\n{fault_log}");
    // Enough happened for the verdict to mean something: about one op in
    // ten of a healthy run's rate.
    let floor = (secs as usize).max(30);
    assert!(
        reads_ok >= floor && writes_ok >= floor,
        "too few operations succeeded ({reads_ok} reads, {writes_ok} writes): {summary}"
    );
}

/// A leader cut off from the other servers must stop answering default
/// reads from its own state once its lease runs out: the others elect a
/// new leader and take writes it never sees.
#[test]
fn isolated_leader_stops_serving_default_reads() {
    let net = env_u64("CAIRN_CHAOS_NET", 60) as u8 + 1;
    let mut servers: Vec<Node> = (1..=3)
        .map(|h| Node::server(net, h, 3, &[1, 2, 3], &[]))
        .collect();
    for s in servers.iter_mut() {
        s.spawn();
    }
    let all: Vec<&Node> = servers.iter().collect();
    let leader = wait_leader(&all, Duration::from_secs(60)).expect("a leader");
    let l = servers
        .iter()
        .position(|n| leader.starts_with(&format!("{}:", n.ip)))
        .unwrap();
    let old = servers[l].put("/v1/kv/lease", "old").unwrap();
    assert_eq!(old.status, 200);
    let others: Vec<&Node> = (0..3).filter(|&i| i != l).map(|i| &servers[i]).collect();
    let pairs: Vec<(&str, &str)> = others
        .iter()
        .map(|o| (servers[l].ip.as_str(), o.ip.as_str()))
        .collect();
    let _cut = Partition::cut(&pairs);
    assert!(
        common::eventually(Duration::from_secs(30), || others[0]
            .put("/v1/kv/lease", "new")
            .is_ok_and(|r| r.status == 200)),
        "the majority never took the write"
    );
    let read = servers[l].get("/v1/kv/lease").unwrap();
    let value = (read.status == 200).then(|| read.json()[0]["Value"].to_string());
    assert!(
        read.status != 200,
        "the cut-off leader answered a default read with {value:?} (status {}) after the \
         majority wrote a newer value",
        read.status
    );
    assert!(
        read.body.contains("No cluster leader"),
        "expected Consul's 500 No cluster leader, got {} {}",
        read.status,
        read.body
    );
}
