//! Metrics through the `metrics` facade, rendered by
//! metrics-exporter-prometheus. Names follow Consul's (`consul.raft.apply`
//! renders as `consul_raft_apply`); latencies are in milliseconds, as
//! Consul's timers are.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Latency buckets in milliseconds.
const BUCKETS_MS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];

#[derive(Clone)]
pub struct Metrics {
    pub handle: PrometheusHandle,
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Installs the global recorder once per process and starts its upkeep task.
    pub fn install() -> Metrics {
        let handle = HANDLE
            .get_or_init(|| {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Prefix("consul".into()), BUCKETS_MS)
                    .expect("static bucket list is non-empty");
                let handle = builder.install_recorder().unwrap_or_else(|_| {
                    // A recorder was already installed (tests in one process):
                    // render from a private one instead.
                    PrometheusBuilder::new().build_recorder().handle()
                });
                describe();
                handle
            })
            .clone();
        let upkeep = handle.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
        }
        Metrics { handle }
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }
}

fn describe() {
    metrics::describe_histogram!(
        "consul.dns.domain_query",
        metrics::Unit::Milliseconds,
        "DNS queries for the consul domain"
    );
    metrics::describe_counter!(
        "consul.dns.queries",
        "DNS queries answered, by type and rcode"
    );
    metrics::describe_histogram!(
        "consul.api.http",
        metrics::Unit::Milliseconds,
        "HTTP API requests"
    );
    metrics::describe_histogram!(
        "consul.raft.commitTime",
        metrics::Unit::Milliseconds,
        "Time from proposal to apply"
    );
    metrics::describe_counter!("consul.raft.apply", "Commands applied through raft");
    metrics::describe_histogram!(
        "consul.fsm.apply",
        metrics::Unit::Milliseconds,
        "State machine apply time"
    );
    metrics::describe_histogram!(
        "consul.catalog.register",
        metrics::Unit::Milliseconds,
        "Catalog register writes"
    );
    metrics::describe_histogram!(
        "consul.catalog.deregister",
        metrics::Unit::Milliseconds,
        "Catalog deregister writes"
    );
    metrics::describe_histogram!("consul.kvs.apply", metrics::Unit::Milliseconds, "KV writes");
    metrics::describe_histogram!(
        "consul.serf.coordinate.adjustment-ms",
        metrics::Unit::Milliseconds,
        "How far one RTT sample moved this agent's network coordinate"
    );
    metrics::describe_histogram!(
        "consul.txn.apply",
        metrics::Unit::Milliseconds,
        "Transactions"
    );
    metrics::describe_gauge!("consul.state.nodes", "Nodes in the catalog");
    metrics::describe_gauge!(
        "cairn.feed.ring_entries",
        "Entries in the feed ring client agents resume from (servers)"
    );
    metrics::describe_gauge!(
        "cairn.feed.ring_bytes",
        metrics::Unit::Bytes,
        "Estimated memory of the feed ring's entries (servers)"
    );
    metrics::describe_gauge!("consul.state.services", "Distinct services in the catalog");
    metrics::describe_gauge!(
        "consul.state.service_instances",
        "Service instances in the catalog"
    );
    metrics::describe_gauge!("consul.state.kv_entries", "KV entries");
    metrics::describe_gauge!(
        "consul.server.isLeader",
        "1 if this server is the raft leader"
    );
    metrics::describe_counter!(
        "consul.agent.check.status_change",
        "Status changes of this agent's checks, by check type and new status"
    );
    metrics::describe_counter!(
        "cairn.tls.handshake_failures",
        "TLS handshakes that failed, by interface (http or rpc)"
    );
    metrics::describe_counter!(
        "cairn.gossip.packets_dropped",
        "Gossip datagrams dropped: reason=decrypt when no installed key opens them (a member with another key, or none), reason=malformed when they open but do not decode"
    );
    metrics::describe_counter!(
        "consul.rpc.cross-dc",
        "Requests this server forwarded to another datacenter, by datacenter"
    );
    metrics::describe_counter!(
        "consul.agent.check.reaped",
        "Services deregistered because a check stayed critical past DeregisterCriticalServiceAfter"
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A proposal's round trip (write path), by command kind.
pub fn raft_apply(kind: &'static str, took: Duration) {
    counter!("consul.raft.apply").increment(1);
    histogram!("consul.raft.commitTime").record(ms(took));
    match kind {
        "register" => histogram!("consul.catalog.register").record(ms(took)),
        "deregister" => histogram!("consul.catalog.deregister").record(ms(took)),
        "kv" => histogram!("consul.kvs.apply").record(ms(took)),
        "txn" => histogram!("consul.txn.apply").record(ms(took)),
        _ => {}
    }
}

pub fn fsm_apply(kind: &'static str, took: Duration) {
    histogram!("consul.fsm.apply", "type" => kind).record(ms(took));
}

pub fn dns_query(qtype: &'static str, rcode: &'static str, took: Duration) {
    histogram!("consul.dns.domain_query").record(ms(took));
    counter!("consul.dns.queries", "type" => qtype, "rcode" => rcode).increment(1);
}

/// `path` is Consul's label form: the route pattern with `/` -> `_` (`v1_kv_`).
pub fn http_request(method: &str, path: String, code: u16, took: Duration) {
    histogram!("consul.api.http", "method" => method.to_string(), "path" => path).record(ms(took));
    counter!("consul.api.http.requests", "code" => code.to_string()).increment(1);
}

pub fn catalog_sizes(nodes: u64, services: u64, instances: u64, kv: u64) {
    gauge!("consul.state.nodes").set(nodes as f64);
    gauge!("consul.state.services").set(services as f64);
    gauge!("consul.state.service_instances").set(instances as f64);
    gauge!("consul.state.kv_entries").set(kv as f64);
}

/// What a server's feed ring (the recent entries client agents resume
/// from) holds: entries, and their estimated in-memory size.
pub fn feed_ring(entries: usize, bytes: usize) {
    gauge!("cairn.feed.ring_entries").set(entries as f64);
    gauge!("cairn.feed.ring_bytes").set(bytes as f64);
}

pub fn is_leader(leader: bool) {
    gauge!("consul.server.isLeader").set(if leader { 1.0 } else { 0.0 });
}

/// A check on this agent changed status (runner verdict, TTL update or expiry).
pub fn check_status_change(check_type: &str, status: &'static str) {
    counter!("consul.agent.check.status_change", "check_type" => check_type.to_owned(), "status" => status)
        .increment(1);
}

/// A service was deregistered by `DeregisterCriticalServiceAfter`.
pub fn check_reaped() {
    counter!("consul.agent.check.reaped").increment(1);
}

/// A TLS handshake on the HTTPS API (`http`) or the RPC port (`rpc`) failed.
pub fn tls_handshake_failure(interface: &'static str) {
    counter!("cairn.tls.handshake_failures", "interface" => interface).increment(1);
}

/// serf's `coordinate.adjustment-ms`: the distance, in milliseconds, one
/// RTT sample moved this agent's coordinate.
pub fn coordinate_adjustment(ms: f64) {
    metrics::histogram!("consul.serf.coordinate.adjustment-ms").record(ms);
}

/// A gossip datagram was dropped: `decrypt` when no installed key opens
/// it, `malformed` when it opens but does not decode.
/// A request forwarded to datacenter `dc` (Consul's `rpc.cross-dc`).
pub fn wan_forward(dc: &str) {
    counter!("consul.rpc.cross-dc", "datacenter" => dc.to_string()).increment(1);
}

pub fn gossip_packet_dropped(reason: &'static str) {
    counter!("cairn.gossip.packets_dropped", "reason" => reason).increment(1);
}
