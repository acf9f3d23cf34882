//! Crash consistency: a write load runs while servers are SIGKILLed at
//! seeded random moments (55 kills in all) and restarted on the same data
//! dir. After every restart:
//!
//! * every write acknowledged with HTTP 200 `true` is there, read back
//!   `?consistent` and, once it has caught up, `?stale` from the restarted
//!   node itself; nothing that was never written appears;
//! * the raft log and the state machine agree: on every server
//!   `last_snapshot_index <= applied_index <= last_log_index`
//!   (`/v1/agent/self` `Stats.raft`, read from one snapshot of raft's
//!   metrics), and once the load pauses every server has
//!   committed and applied its whole log (`applied_index ==
//!   commit_index == last_log_index`, all servers at the same index) and
//!   serves the same KV contents there.
//!
//! One bootstrapped single server with a data dir, and a 3-server cluster
//! whose victim (leader or follower) is drawn at random. Set
//! `CAIRN_CRASH_SEED` to replay a run; the seed in use is printed.

mod common;

use base64::Engine;
use common::cluster::{wait_leader, Node};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PREFIX: &str = "crash";

fn seed() -> u64 {
    let seed = std::env::var("CAIRN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("CAIRN_CRASH_SEED={seed}");
    seed
}

/// Writers that PUT unique keys (`crash/w<writer>/<seq>` = `v<writer>-<seq>`)
/// to random agents and remember the ones acknowledged with 200 `true`.
struct Load {
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
    attempts: Arc<Mutex<u64>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(ips: Vec<String>, writers: usize, seed: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let attempts = Arc::new(Mutex::new(0));
        let threads = (0..writers)
            .map(|w| {
                let (stop, hold, acked, attempts, ips) = (
                    stop.clone(),
                    hold.clone(),
                    acked.clone(),
                    attempts.clone(),
                    ips.clone(),
                );
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1));
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(20))
                        .build()
                        .expect("client");
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if hold.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                        let ip = &ips[rng.random_range(0..ips.len())];
                        let key = format!("{PREFIX}/w{w}/{seq:08}");
                        let value = format!("v{w}-{seq}");
                        seq += 1;
                        *attempts.lock().unwrap() += 1;
                        let sent = client
                            .put(format!("http://{ip}:8500/v1/kv/{key}"))
                            .body(value.clone())
                            .send();
                        match sent {
                            Ok(r) if r.status() == 200 => {
                                let body = r.text().unwrap_or_default();
                                assert_eq!(body.trim(), "true", "PUT {key} answered 200 {body}");
                                acked.lock().unwrap().insert(key, value);
                            }
                            // Refused, reset, 500 "No cluster leader", ...:
                            // not acknowledged, so it may or may not exist.
                            _ => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            hold,
            acked,
            attempts,
            threads,
        }
    }

    fn acked(&self) -> BTreeMap<String, String> {
        self.acked.lock().unwrap().clone()
    }

    /// Stops new writes; writes in flight may still be acknowledged, so
    /// callers wait for the acknowledgements to settle.
    fn pause(&self) {
        self.hold.store(true, Ordering::Relaxed);
    }

    fn unpause(&self) {
        self.hold.store(false, Ordering::Relaxed);
    }

    fn finish(self) -> (usize, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer thread");
        }
        let n = self.acked.lock().unwrap().len();
        let attempts = *self.attempts.lock().unwrap();
        (n, attempts)
    }
}

/// `/v1/agent/self` `Stats.raft`, as numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RaftIndexes {
    applied: u64,
    commit: u64,
    last_log: u64,
    last_snapshot: u64,
}

fn raft_indexes(n: &Node) -> Option<RaftIndexes> {
    let r = n.get("/v1/agent/self").ok().filter(|r| r.status == 200)?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    let raft = &v["Stats"]["raft"];
    let num = |f: &str| -> Option<u64> { raft[f].as_str()?.parse().ok() };
    Some(RaftIndexes {
        applied: num("applied_index")?,
        commit: num("commit_index")?,
        last_log: num("last_log_index")?,
        last_snapshot: num("last_snapshot_index")?,
    })
}

/// The log and the state machine agree as far as one server can tell.
fn assert_raft_sane(n: &Node, ctx: &str) {
    if let Some(r) = raft_indexes(n) {
        assert!(
            r.last_snapshot <= r.applied && r.applied <= r.last_log,
            "{ctx}: {} applied past its log: {r:?}",
            n.name
        );
    }
}

/// The KV pairs under `crash/` as (key -> value) and the response's index.
fn kv_dump(n: &Node, mode: &str) -> Result<(BTreeMap<String, String>, u64), String> {
    let r = n.get(&format!("/v1/kv/{PREFIX}/?recurse&{mode}"))?;
    if r.status == 404 {
        return Ok((BTreeMap::new(), r.index()));
    }
    if r.status != 200 {
        return Err(format!("{} {}", r.status, r.body));
    }
    let rows: Vec<Value> = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for row in rows {
        let key = row["Key"].as_str().ok_or("no Key")?.to_string();
        let value = match row["Value"].as_str() {
            Some(b64) => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?,
            None => String::new(),
        };
        out.insert(key, value);
    }
    Ok((out, r.index()))
}

/// Retries `kv_dump` while the cluster has no leader.
fn kv_dump_retrying(n: &Node, mode: &str, limit: Duration) -> BTreeMap<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        match kv_dump(n, mode) {
            Ok((kv, _)) => return kv,
            Err(e) if Instant::now() > deadline => {
                panic!("{}: ?{mode} read kept failing: {e}", n.name)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Every acknowledged write is in `kv` with its value, and everything in
/// `kv` is something a writer sent (its value matches its key).
fn assert_contains_acked(
    kv: &BTreeMap<String, String>,
    acked: &BTreeMap<String, String>,
    ctx: &str,
) {
    let lost: Vec<&String> = acked
        .iter()
        .filter(|(k, v)| kv.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        lost.is_empty(),
        "{ctx}: {} of {} acknowledged writes lost or changed, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    for (k, v) in kv {
        let (w, seq) = k
            .strip_prefix(&format!("{PREFIX}/w"))
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("{ctx}: unexpected key {k}"));
        let seq: u64 = seq.parse().unwrap_or_else(|_| panic!("{ctx}: key {k}"));
        assert_eq!(
            *v,
            format!("v{w}-{seq}"),
            "{ctx}: {k} holds a foreign value"
        );
    }
}

/// Waits until `n` has applied at least `index`.
fn wait_applied(n: &Node, index: u64, limit: Duration) -> bool {
    common::eventually(limit, || {
        raft_indexes(n).is_some_and(|r| r.applied >= index)
    })
}

/// The leader's applied index, asked of whichever node answers.
fn leader_applied(nodes: &[&Node]) -> Option<u64> {
    let leader = wait_leader(nodes, Duration::from_secs(20))?;
    let node = nodes
        .iter()
        .find(|n| leader.starts_with(&format!("{}:", n.ip)))?;
    raft_indexes(node).map(|r| r.applied)
}

/// With the load paused: every server has applied its whole log, all at the
/// same index, and serves identical KV contents there.
fn assert_converged(nodes: &[&Node], load: &Load, ctx: &str) {
    load.pause();
    // Let in-flight writes finish (acknowledged or not).
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before: Vec<Option<RaftIndexes>> = nodes.iter().map(|n| raft_indexes(n)).collect();
        let dumps: Vec<_> = nodes.iter().map(|n| kv_dump(n, "stale")).collect();
        let after: Vec<Option<RaftIndexes>> = nodes.iter().map(|n| raft_indexes(n)).collect();
        let settled = before == after
            && before.iter().all(|r| {
                r.is_some_and(|r| Some(r.applied) == before[0].map(|b| b.applied))
                    && r.is_some_and(|r| r.applied == r.commit && r.commit == r.last_log)
            })
            && dumps.iter().all(|d| d.is_ok());
        if settled {
            let dumps: Vec<_> = dumps.into_iter().map(|d| d.unwrap()).collect();
            for (n, d) in nodes.iter().zip(&dumps).skip(1) {
                assert!(
                    d.0 == dumps[0].0 && d.1 == dumps[0].1,
                    "{ctx}: at applied index {:?}, {} serves {} keys at KV index {} but {} serves {} at {}",
                    before[0],
                    nodes[0].name,
                    dumps[0].0.len(),
                    dumps[0].1,
                    n.name,
                    d.0.len(),
                    d.1
                );
            }
            assert_contains_acked(&dumps[0].0, &load.acked(), ctx);
            load.unpause();
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{ctx}: servers did not converge on one applied = commit = last log index: {before:?} / {after:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn single_server_keeps_every_acknowledged_write_across_30_sigkills() {
    let mut rng = StdRng::seed_from_u64(seed());
    let mut s = Node::server(90, 1, 1, &[], &[]);
    s.spawn();
    wait_leader(&[&s], Duration::from_secs(20)).expect("leader");
    let load = Load::start(vec![s.ip.clone()], 3, rng.random());

    for round in 0..30 {
        std::thread::sleep(Duration::from_millis(rng.random_range(100..700)));
        let ctx = format!("single server, kill {round}");
        assert_raft_sane(&s, &ctx);
        s.kill9();
        // What was acknowledged before the kill must all be there after it.
        let acked = load.acked();
        s.spawn();
        wait_leader(&[&s], Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{ctx}: no leader after restart:\n{}", s.log_text()));
        assert_raft_sane(&s, &ctx);
        let kv = kv_dump_retrying(&s, "consistent", Duration::from_secs(10));
        assert_contains_acked(&kv, &acked, &ctx);
        if round % 5 == 4 {
            assert_converged(&[&s], &load, &ctx);
        }
    }
    assert_converged(&[&s], &load, "single server, end");
    let (acked, attempts) = load.finish();
    eprintln!("single server: {acked} of {attempts} writes acknowledged over 30 kills");
    assert!(acked > 300, "the load ran: {acked} acknowledged");
}

#[test]
fn three_servers_keep_every_acknowledged_write_across_25_sigkills() {
    let mut rng = StdRng::seed_from_u64(seed());
    let net = 91;
    let mut nodes = vec![
        Node::server(net, 1, 3, &[2, 3], &[]),
        Node::server(net, 2, 3, &[1, 3], &[]),
        Node::server(net, 3, 3, &[1, 2], &[]),
    ];
    for n in nodes.iter_mut() {
        n.spawn();
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(30)).expect("leader");
    let ips: Vec<String> = nodes.iter().map(|n| n.ip.clone()).collect();
    let load = Load::start(ips, 3, rng.random());
    let (mut leaders_killed, mut followers_killed) = (0, 0);

    for round in 0..25 {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..1200)));
        let all: Vec<&Node> = nodes.iter().collect();
        let leader = wait_leader(&all, Duration::from_secs(20)).expect("leader before a kill");
        let victim = rng.random_range(0..nodes.len());
        let was_leader = leader.starts_with(&format!("{}:", nodes[victim].ip));
        let ctx = format!(
            "kill {round} of {} ({})",
            nodes[victim].name,
            if was_leader { "leader" } else { "follower" }
        );
        if was_leader {
            leaders_killed += 1;
        } else {
            followers_killed += 1;
        }
        for n in &nodes {
            assert_raft_sane(n, &ctx);
        }
        nodes[victim].kill9();
        let acked = load.acked();
        // Sometimes the survivors run on for a while (a new leader is
        // elected without the victim); sometimes it comes straight back.
        if rng.random_bool(0.5) {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..2500)));
        }
        nodes[victim].spawn();
        let all: Vec<&Node> = nodes.iter().collect();
        let target =
            leader_applied(&all).unwrap_or_else(|| panic!("{ctx}: no leader after restart"));
        for n in &all {
            assert_raft_sane(n, &ctx);
        }
        // Through the cluster, linearizably.
        let reader = all[rng.random_range(0..all.len())];
        let kv = kv_dump_retrying(reader, "consistent", Duration::from_secs(20));
        assert_contains_acked(
            &kv,
            &acked,
            &format!("{ctx}, ?consistent via {}", reader.name),
        );
        // From the restarted server itself, once it has caught up.
        let victim_node = all[victim];
        assert!(
            wait_applied(victim_node, target, Duration::from_secs(20)),
            "{ctx}: did not catch up to {target}: {:?}\n{}",
            raft_indexes(victim_node),
            victim_node.log_text()
        );
        let (kv, _) = kv_dump(victim_node, "stale").expect("stale read of the restarted server");
        assert_contains_acked(
            &kv,
            &acked,
            &format!("{ctx}, ?stale on the restarted server"),
        );
        assert_converged(&all, &load, &ctx);
    }
    let (acked, attempts) = load.finish();
    eprintln!(
        "3 servers: {acked} of {attempts} writes acknowledged over {leaders_killed} leader and {followers_killed} follower kills"
    );
    assert!(acked > 300, "the load ran: {acked} acknowledged");
}
