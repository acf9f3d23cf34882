//! A KV lock under a nemesis: three contenders, each on its own client
//! agent of a 3-server cluster, compete for one key with sessions and
//! `?acquire`, while the holder's agent is SIGKILLed, SIGSTOPped for longer
//! than its session TTL and cut off from everyone with iptables, and the
//! raft leader is SIGSTOPped and SIGKILLed. Every holding is recorded with
//! its fencing token (the key's `LockIndex`) and its interval, and the
//! record is checked against what Consul's sessions promise.
//!
//! What Consul promises, and so what the check allows:
//!
//! * A lock is held by at most one session at a time, and every new
//!   acquisition by another session raises the key's `LockIndex` (the
//!   sequencer). So tokens are distinct and increase in the order the
//!   holdings started.
//! * When a session is invalidated (its node fails, a bound check goes
//!   critical, its TTL lapses, it is destroyed), the keys it held are
//!   released and cannot be acquired again for the session's lock-delay,
//!   counted from when the release is applied. A holder that last confirmed
//!   its hold with a `?consistent` read sent at `t` therefore owns the
//!   resource at least until `t + lock-delay`: the invalidation came after
//!   that read, and the next acquisition after it plus the lock-delay.
//! * Nothing more: a holder that keeps acting after `t + lock-delay`
//!   without a newer confirmation (paused, partitioned, slow to notice) may
//!   overlap the next holder. Consul calls lock-delay a mitigation, not a
//!   guarantee; the fencing token is what protects the resource then.
//!
//! So for any two holdings A and B with A's token below B's, B must start
//! no earlier than A started, and no earlier than
//! `min(A's last act, A's last confirmation + lock-delay)`. Two contenders
//! stop acting once `last confirmation + lock-delay` has passed (so they
//! may never overlap anyone); the third acts until it sees another holder
//! or no holder (so it may overlap, but only past its lease).
//!
//! Not covered: lock-delays are kept in each server's memory, as in
//! Consul, so a server restarted within a lock-delay of a release and
//! elected leader before it runs out does not enforce it. The nemesis
//! leaves a stable holding for longer than the lock-delay before it kills
//! the leader.

mod common;

use common::cluster::{wait_leader, Node, Partition};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NET: u8 = 92;
const KEY: &str = "service/leader/.lock";
const LOCK_DELAY: Duration = Duration::from_secs(4);
/// Consul's minimum; a TTL session lapses after twice this unrenewed.
const TTL: &str = "10s";
const RENEW_EVERY: Duration = Duration::from_secs(2);

/// One contender's tenure, times relative to the run's start.
#[derive(Debug, Clone)]
struct Holding {
    holder: String,
    token: u64,
    /// First act (after the hold was confirmed and the token read).
    start: Duration,
    /// Last act.
    end: Duration,
    /// When the last confirming request (the acquire or a `?consistent`
    /// read showing our session) was sent.
    last_confirm: Duration,
}

/// Checks holdings against the rules in the module docs.
fn check(holdings: &[Holding], lock_delay: Duration) -> Result<(), String> {
    for h in holdings {
        if h.start > h.end {
            return Err(format!("{h:?} ends before it starts"));
        }
    }
    for (i, a) in holdings.iter().enumerate() {
        for b in holdings.iter().skip(i + 1) {
            if a.token == b.token {
                return Err(format!(
                    "two holdings with token {}: {a:?} and {b:?}",
                    a.token
                ));
            }
            let (a, b) = if a.token < b.token { (a, b) } else { (b, a) };
            if b.start < a.start {
                return Err(format!(
                    "token {} started before the lower token {}: {a:?} / {b:?}",
                    b.token, a.token
                ));
            }
            let owned_until = a.end.min(a.last_confirm + lock_delay);
            if b.start < owned_until {
                return Err(format!(
                    "overlap: {} (token {}) started at {:?} while {} (token {}) still owned the lock until {:?}: {a:?} / {b:?}",
                    b.holder, b.token, b.start, a.holder, a.token, owned_until
                ));
            }
        }
    }
    Ok(())
}

/// Shared between the contenders and the nemesis.
struct Run {
    t0: Instant,
    stop: AtomicBool,
    holdings: Mutex<Vec<Holding>>,
    /// session id -> contender index.
    sessions: Mutex<HashMap<String, usize>>,
    /// Sessions whose contender has confirmed its hold and acted.
    acting: Mutex<HashSet<String>>,
}

impl Run {
    fn now(&self) -> Duration {
        self.t0.elapsed()
    }
}

struct Contender {
    idx: usize,
    name: String,
    ip: String,
    /// Stops acting once its lease (last confirmation + lock-delay) ran out.
    bounded: bool,
    http: reqwest::blocking::Client,
}

impl Contender {
    fn url(&self, path: &str) -> String {
        format!("http://{}:8500{path}", self.ip)
    }

    fn create_session(&self) -> Option<String> {
        let body = serde_json::json!({
            "Name": self.name,
            "TTL": TTL,
            "LockDelay": format!("{}s", LOCK_DELAY.as_secs()),
            "Behavior": "release",
        });
        let r = self
            .http
            .put(self.url("/v1/session/create"))
            .json(&body)
            .send()
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        let v: Value = r.json().ok()?;
        v["ID"].as_str().map(str::to_string)
    }

    /// `false` when the session is known to be gone.
    fn renew(&self, session: &str) -> bool {
        match self
            .http
            .put(self.url(&format!("/v1/session/renew/{session}")))
            .send()
        {
            Ok(r) => r.status() != 404,
            Err(_) => true,
        }
    }

    fn destroy(&self, session: &str) {
        let _ = self
            .http
            .put(self.url(&format!("/v1/session/destroy/{session}")))
            .send();
    }

    fn try_acquire(&self, session: &str) -> bool {
        self.http
            .put(self.url(&format!("/v1/kv/{KEY}?acquire={session}")))
            .body(self.name.clone())
            .send()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.text().ok())
            .is_some_and(|b| b.trim() == "true")
    }

    /// `Some(Some((session, lock_index)))` for a held key, `Some(None)` for a
    /// free or missing one, `None` when the read failed.
    fn read_holder(&self) -> Option<Option<(String, u64)>> {
        let r = self
            .http
            .get(self.url(&format!("/v1/kv/{KEY}?consistent")))
            .send()
            .ok()?;
        if r.status() == 404 {
            return Some(None);
        }
        if r.status() != 200 {
            return None;
        }
        let v: Value = r.json().ok()?;
        let e = &v[0];
        Some(
            e["Session"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_string(), e["LockIndex"].as_u64().unwrap_or(0))),
        )
    }

    fn run(&self, run: &Run) {
        while !run.stop.load(Ordering::Relaxed) {
            let Some(session) = self.create_session() else {
                std::thread::sleep(Duration::from_millis(300));
                continue;
            };
            run.sessions
                .lock()
                .unwrap()
                .insert(session.clone(), self.idx);
            let mut renewed = Instant::now();
            while !run.stop.load(Ordering::Relaxed) {
                if renewed.elapsed() >= RENEW_EVERY {
                    if !self.renew(&session) {
                        break;
                    }
                    renewed = Instant::now();
                }
                let sent = run.now();
                if self.try_acquire(&session) {
                    self.hold(run, &session, sent, &mut renewed);
                    break;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
            // A new session for the next round; the old one may still
            // hold the key (this agent unreachable), which its
            // invalidation ends.
            self.destroy(&session);
        }
    }

    fn hold(&self, run: &Run, session: &str, acquire_sent: Duration, renewed: &mut Instant) {
        let mut last_confirm = acquire_sent;
        let mut token = None;
        let (mut start, mut end) = (None, None);
        loop {
            if run.stop.load(Ordering::Relaxed) {
                let _ = self
                    .http
                    .put(self.url(&format!("/v1/kv/{KEY}?release={session}")))
                    .send();
                break;
            }
            if self.bounded && run.now() >= last_confirm + LOCK_DELAY {
                break;
            }
            let sent = run.now();
            match self.read_holder() {
                Some(Some((s, lock_index))) if s == session => {
                    if token.is_some_and(|t| t != lock_index) {
                        break;
                    }
                    token = Some(lock_index);
                    last_confirm = sent;
                }
                Some(_) => break,
                None => {}
            }
            if token.is_some() {
                let now = run.now();
                if !self.bounded || now < last_confirm + LOCK_DELAY {
                    if start.is_none() {
                        start = Some(now);
                        run.acting.lock().unwrap().insert(session.to_string());
                    }
                    end = Some(now);
                }
            }
            if renewed.elapsed() >= RENEW_EVERY {
                self.renew(session);
                *renewed = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let (Some(token), Some(start), Some(end)) = (token, start, end) {
            run.holdings.lock().unwrap().push(Holding {
                holder: self.name.clone(),
                token,
                start,
                end,
                last_confirm,
            });
        }
    }
}

/// The session holding the lock, read `?consistent` through the servers.
fn current_session(servers: &[Node]) -> Option<String> {
    for s in servers {
        if let Ok(r) = s.get(&format!("/v1/kv/{KEY}?consistent")) {
            if r.status == 200 {
                let v: Value = serde_json::from_str(&r.body).ok()?;
                return v[0]["Session"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string);
            }
            if r.status == 404 {
                return None;
            }
        }
    }
    None
}

/// Waits for a holder other than `old` that has started acting; returns
/// its session and its contender.
fn wait_new_holder(
    servers: &[Node],
    run: &Run,
    old: Option<&str>,
    limit: Duration,
) -> Option<(String, usize)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(s) = current_session(servers).filter(|s| Some(s.as_str()) != old) {
            let acting = run.acting.lock().unwrap().contains(&s);
            if let Some(&idx) = run.sessions.lock().unwrap().get(&s).filter(|_| acting) {
                return Some((s, idx));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// What the nemesis saw when the lock did not move on.
fn diagnose(servers: &[Node], clients: &[Node], run: &Run) {
    eprintln!(
        "[{:?}] holder {:?}, sessions {:?}, acting {:?}",
        run.now(),
        current_session(servers),
        run.sessions.lock().unwrap(),
        run.acting.lock().unwrap()
    );
    for n in servers.iter().chain(clients) {
        let log = n.log_text();
        let lines: Vec<&str> = log.lines().filter(|l| !l.contains("lock-delay")).collect();
        for l in &lines[lines.len().saturating_sub(15)..] {
            eprintln!("{}: {l}", n.name);
        }
    }
}

fn leader_index(servers: &[Node]) -> usize {
    let all: Vec<&Node> = servers.iter().collect();
    let leader = wait_leader(&all, Duration::from_secs(30)).expect("a leader");
    servers
        .iter()
        .position(|s| leader.starts_with(&format!("{}:", s.ip)))
        .expect("the leader is one of the servers")
}

#[test]
fn lock_holders_never_overlap_beyond_lock_delay_under_faults() {
    let mut servers: Vec<Node> = (1..=3u8)
        .map(|h| {
            let others: Vec<u8> = (1..=3u8).filter(|o| *o != h).collect();
            Node::server(NET, h, 3, &others, &[])
        })
        .collect();
    for s in servers.iter_mut() {
        s.spawn();
    }
    leader_index(&servers);
    let mut clients: Vec<Node> = (11..=13u8)
        .map(|h| Node::client(NET, h, &[1, 2, 3], &[]))
        .collect();
    for c in clients.iter_mut() {
        c.spawn();
    }

    eprintln!("t0 = {:?}", std::time::SystemTime::now());
    let run = Arc::new(Run {
        t0: Instant::now(),
        stop: AtomicBool::new(false),
        holdings: Mutex::new(Vec::new()),
        sessions: Mutex::new(HashMap::new()),
        acting: Mutex::new(HashSet::new()),
    });
    let threads: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(idx, c)| {
            let contender = Contender {
                idx,
                name: c.name.clone(),
                ip: c.ip.clone(),
                bounded: idx != 2,
                http: reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(1))
                    .build()
                    .expect("client"),
            };
            let run = run.clone();
            std::thread::spawn(move || contender.run(&run))
        })
        .collect();

    let (mut holder, mut who) = wait_new_holder(&servers, &run, None, Duration::from_secs(30))
        .expect("some contender takes the lock");
    let mut handovers = Vec::new();
    // Let the first holder confirm its hold and act before it is killed.
    std::thread::sleep(Duration::from_secs(1));

    // 1. SIGKILL the holder's agent: its node fails, its session is
    //    invalidated and, after the lock-delay, another contender takes over.
    eprintln!("[{:?}] kill9 {}", run.now(), clients[who].name);
    clients[who].kill9();
    let (h, w) = wait_new_holder(&servers, &run, Some(&holder), Duration::from_secs(30))
        .expect("the lock moves on after its holder's agent is killed");
    handovers.push(format!(
        "kill9 {} -> {}",
        clients[who].name, clients[w].name
    ));
    clients[who].spawn();
    (holder, who) = (h, w);

    // 2. SIGSTOP the holder's agent for longer than the session TTL.
    let paused = Instant::now();
    eprintln!("[{:?}] pause {}", run.now(), clients[who].name);
    clients[who].pause();
    let next = wait_new_holder(&servers, &run, Some(&holder), Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(12).saturating_sub(paused.elapsed()));
    clients[who].resume();
    let (h, w) = next.expect("the lock moves on while its holder's agent is stopped");
    handovers.push(format!(
        "pause {} -> {}",
        clients[who].name, clients[w].name
    ));
    (holder, who) = (h, w);

    // 3. Cut the holder's agent off from every other agent.
    {
        let ips: Vec<String> = servers
            .iter()
            .chain(clients.iter())
            .map(|n| n.ip.clone())
            .filter(|ip| *ip != clients[who].ip)
            .collect();
        let pairs: Vec<(&str, &str)> = ips
            .iter()
            .map(|ip| (clients[who].ip.as_str(), ip.as_str()))
            .collect();
        eprintln!("[{:?}] partition {}", run.now(), clients[who].name);
        let cut = Partition::cut(&pairs);
        let next = wait_new_holder(&servers, &run, Some(&holder), Duration::from_secs(40));
        std::thread::sleep(Duration::from_secs(2));
        drop(cut);
        let (h, w) = next.unwrap_or_else(|| {
            diagnose(&servers, &clients, &run);
            panic!("the lock moves on while its holder is partitioned")
        });
        handovers.push(format!(
            "partition {} -> {}",
            clients[who].name, clients[w].name
        ));
        (holder, who) = (h, w);
    }

    // 4. SIGSTOP the raft leader past the election timeout, then resume it.
    std::thread::sleep(LOCK_DELAY + Duration::from_secs(1));
    let li = leader_index(&servers);
    servers[li].pause();
    std::thread::sleep(Duration::from_secs(6));
    servers[li].resume();
    leader_index(&servers);

    // 5. SIGKILL the leader once the holding is older than a lock-delay
    //    (see the module docs), restart it on its data dir.
    std::thread::sleep(LOCK_DELAY + Duration::from_secs(1));
    let li = leader_index(&servers);
    servers[li].kill9();
    std::thread::sleep(Duration::from_secs(3));
    servers[li].spawn();
    leader_index(&servers);
    std::thread::sleep(Duration::from_secs(3));
    let _ = (holder, who);

    run.stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("contender");
    }
    let mut holdings = run.holdings.lock().unwrap().clone();
    holdings.sort_by_key(|h| h.start);
    eprintln!("handovers: {handovers:?}");
    for h in &holdings {
        eprintln!("{h:?}");
    }
    assert!(
        holdings.len() >= 4,
        "each holder fault hands the lock to another contender: {holdings:?}"
    );
    if let Err(e) = check(&holdings, LOCK_DELAY) {
        for n in servers.iter().chain(clients.iter()) {
            for line in n.log_text().lines() {
                if line.contains("lock")
                    || line.contains("session")
                    || line.contains("critical")
                    || line.contains("failed")
                {
                    eprintln!("{}: {line}", n.name);
                }
            }
        }
        panic!("{e}\nall holdings: {holdings:#?}");
    }
}

/// An acquire that reaches the leader while an invalidation of the holder
/// is being committed must still wait out the lock-delay: every acquire
/// that succeeds was answered at least a lock-delay after the destroy was
/// sent. Contenders hammer the key from several threads so some acquire
/// lands between the destroy's proposal and its application.
#[test]
fn an_acquire_racing_an_invalidation_waits_out_the_lock_delay() {
    let mut s = Node::server(93, 1, 1, &[], &[]);
    s.spawn();
    wait_leader(&[&s], Duration::from_secs(20)).expect("leader");
    let lock_delay = Duration::from_secs(2);
    let base = format!("http://{}:8500", s.ip);
    let http = reqwest::blocking::Client::new();
    let session = |name: &str| -> String {
        let body = serde_json::json!({"Name": name, "LockDelay": "2s", "Checks": []});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http
                .put(format!("{base}/v1/session/create"))
                .json(&body)
                .send()
            {
                if r.status() == 200 {
                    let v: Value = r.json().expect("session JSON");
                    return v["ID"].as_str().expect("ID").to_string();
                }
            }
            assert!(Instant::now() < deadline, "no session");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    for round in 0..3 {
        let key = format!("race/{round}");
        let a = session("a");
        let r = http
            .put(format!("{base}/v1/kv/{key}?acquire={a}"))
            .body("a")
            .send()
            .expect("acquire");
        assert_eq!(r.text().unwrap().trim(), "true");
        let b = session("b");
        let stop = Arc::new(AtomicBool::new(false));
        let won: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let hammers: Vec<_> = (0..6)
            .map(|_| {
                let (stop, won, url) = (
                    stop.clone(),
                    won.clone(),
                    format!("{base}/v1/kv/{key}?acquire={b}"),
                );
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        let ok = http
                            .put(&url)
                            .body("b")
                            .send()
                            .ok()
                            .and_then(|r| r.text().ok())
                            .is_some_and(|t| t.trim() == "true");
                        if ok {
                            won.lock().unwrap().push(Instant::now());
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let destroy_sent = Instant::now();
        let r = http
            .put(format!("{base}/v1/session/destroy/{a}"))
            .send()
            .expect("destroy");
        assert_eq!(r.status(), 200);
        std::thread::sleep(lock_delay + Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        for h in hammers {
            h.join().unwrap();
        }
        let won = won.lock().unwrap();
        let first = won
            .iter()
            .min()
            .expect("b takes the lock after the lock-delay");
        assert!(
            first.duration_since(destroy_sent) >= lock_delay,
            "round {round}: b acquired {:?} after a's destroy was sent, inside the {lock_delay:?} lock-delay",
            first.duration_since(destroy_sent)
        );
    }
}

#[cfg(test)]
mod check_tests {
    use super::*;

    fn h(holder: &str, token: u64, start: u64, end: u64, last_confirm: u64) -> Holding {
        let ms = Duration::from_millis;
        Holding {
            holder: holder.into(),
            token,
            start: ms(start),
            end: ms(end),
            last_confirm: ms(last_confirm),
        }
    }

    const LD: Duration = Duration::from_millis(4000);

    #[test]
    fn sequential_holdings_pass() {
        let ok = [h("a", 1, 0, 1000, 900), h("b", 2, 5000, 6000, 5900)];
        assert_eq!(check(&ok, LD), Ok(()));
    }

    #[test]
    fn an_overlap_inside_the_lease_fails() {
        // b starts at 2000 while a acted until 3000 and was confirmed at 2500.
        let bad = [h("a", 1, 0, 3000, 2500), h("b", 2, 2000, 6000, 5900)];
        assert!(check(&bad, LD).unwrap_err().contains("overlap"));
    }

    #[test]
    fn an_overlap_past_the_lease_is_allowed() {
        // a was last confirmed at 1000 and kept acting until 9000 (paused
        // agent): b may start from 1000 + lock-delay on.
        let ok = [h("a", 1, 0, 9000, 1000), h("b", 2, 5000, 6000, 5900)];
        assert_eq!(check(&ok, LD), Ok(()));
        let bad = [h("a", 1, 0, 9000, 1000), h("b", 2, 4999, 6000, 5900)];
        assert!(check(&bad, LD).is_err());
    }

    #[test]
    fn a_repeated_or_decreasing_token_fails() {
        let same = [h("a", 3, 0, 100, 50), h("b", 3, 9000, 9100, 9050)];
        assert!(check(&same, LD).unwrap_err().contains("two holdings"));
        let backwards = [h("a", 4, 0, 100, 50), h("b", 3, 9000, 9100, 9050)];
        assert!(check(&backwards, LD)
            .unwrap_err()
            .contains("started before"));
    }
}
