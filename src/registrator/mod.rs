//! `cairn registrator`: registers Docker containers' published ports as
//! services, compatible with gliderlabs/registrator v7 (the `:latest`
//! image) and its `SERVICE_*` conventions, plus the `Meta` and check
//! attributes its later master sends.
//!
//! The pieces, each in its own file:
//! - `container.rs`: the part of `docker inspect` the rules read;
//! - `derive.rs`: the naming, tag, metadata, address and check rules, pure;
//! - `service.rs`: a registration and its Consul JSON;
//! - `registry.rs`: the registry URI and its HTTP client;
//! - `docker.rs`: the Docker Engine API (list, inspect, events);
//! - `bridge.rs`: the record of what each container should have, and
//!   getting the registry to agree;
//! - this file: the loop that ties Docker, the registry and the timers.
//!
//! The loop never exits on a lost connection. Docker going away (socket
//! removed, daemon restarted) is logged and retried with backoff; on
//! reconnecting, the containers are listed again and compared with the
//! record, so a start or exit missed meanwhile is caught up. The event
//! stream is opened from the daemon's own clock as read just before that
//! listing, so nothing between the listing and the subscription is lost.
//! The agent being unreachable is retried with backoff from
//! `-retry-interval`; meanwhile events still update the record, and when
//! the agent answers everything recorded is registered.

mod bridge;
mod container;
mod derive;
pub(crate) mod docker;
mod registry;
mod service;

pub use bridge::DeregisterPolicy;
pub use derive::split_tags;
pub use registry::{RegistryUri, TlsFiles, UriError};

use bridge::Bridge;
use derive::Rules;
use docker::{Docker, DockerError, Event};
use futures::{Stream, StreamExt};
use registry::Registry;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{sleep_until, Instant, Interval, MissedTickBehavior};
use tracing::{info, warn};

/// The longest wait between two attempts to reach the agent or Docker.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The first wait before reconnecting to Docker.
const DOCKER_FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Everything `cairn registrator` was told.
#[derive(Debug, Clone)]
pub struct Options {
    pub registry: RegistryUri,
    /// `CONSUL_HTTP_TOKEN`.
    pub token: Option<String>,
    pub tls: TlsFiles,
    /// `-ip`.
    pub force_ip: Option<String>,
    /// `-internal`.
    pub internal: bool,
    /// `-tags`, split.
    pub force_tags: Vec<String>,
    /// `-resync`: re-register everything this often.
    pub resync: Option<Duration>,
    /// `-cleanup`.
    pub cleanup: bool,
    /// `-deregister`.
    pub deregister: DeregisterPolicy,
    /// `-retry-attempts`: start-up attempts to reach the agent after the
    /// first before giving up; `None` retries for ever.
    pub retry_attempts: Option<u32>,
    /// `-retry-interval`: the first wait between attempts, doubling up to
    /// 10 s (or to itself, if longer).
    pub retry_interval: Duration,
}

/// Why registrator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Setup(#[from] registry::SetupError),
    #[error("consul: the agent at {base} did not answer after {attempts} attempt{}: {last}", if *.attempts == 1 { "" } else { "s" })]
    AgentUnreachable {
        base: String,
        attempts: u64,
        last: String,
    },
}

/// Doubling waits from `first` up to a ceiling.
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max: max.max(first),
            next: first,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

type Events = Pin<Box<dyn Stream<Item = Result<Event, DockerError>> + Send>>;

/// An open connection to Docker and its event stream.
struct Connection {
    docker: Docker,
    events: Events,
}

/// The agent side of the loop: is it up, and when to try it next.
struct AgentWatch {
    backoff: Backoff,
    /// When to ping next; `None` while the bridge believes it is up.
    next_ping: Option<Instant>,
    failures: u64,
    ever_up: bool,
    retry_attempts: Option<u32>,
}

/// Runs until `shutdown` completes, then returns without deregistering
/// anything (so a restart leaves running containers registered). A call in
/// flight is abandoned: nothing half-done needs undoing.
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    tokio::select! {
        r = serve(options) => r,
        _ = shutdown => {
            info!("Stopping; registrations are left in place");
            Ok(())
        }
    }
}

/// The loop: Docker events, reconnections, agent retries and resyncs.
async fn serve(options: Options) -> Result<(), RunError> {
    let registry = Registry::new(
        options.registry.clone(),
        options.token.as_deref(),
        &options.tls,
    )?;
    info!(
        "Using {} registry at {}",
        backend_name(&options.registry),
        registry.base()
    );
    let rules = rules(&options).await;
    let mut bridge = Bridge::new(registry, rules, options.deregister, options.cleanup);
    let mut agent = AgentWatch {
        backoff: Backoff::new(options.retry_interval, MAX_BACKOFF),
        next_ping: Some(Instant::now()),
        failures: 0,
        ever_up: false,
        retry_attempts: options.retry_attempts,
    };
    let mut docker = DockerWatch {
        backoff: Backoff::new(DOCKER_FIRST_BACKOFF, MAX_BACKOFF),
        next_connect: Instant::now(),
        connection: None,
    };
    let mut resync = options.resync.map(|every| {
        let mut i = tokio::time::interval_at(Instant::now() + every, every);
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    loop {
        // A call that found the agent gone marked it down: try it again.
        if !bridge.agent_up() && agent.next_ping.is_none() {
            agent.next_ping = Some(Instant::now() + agent.backoff.next());
        }
        let ping_at = agent.next_ping.unwrap_or_else(Instant::now);
        let connected = docker.connection.is_some();
        tokio::select! {
            biased;
            _ = sleep_until(ping_at), if !bridge.agent_up() => {
                ping(&mut bridge, &mut agent, connected).await?;
            }
            _ = sleep_until(docker.next_connect), if !connected => docker.connect(&mut bridge).await,
            event = next_event(&mut docker.connection) => docker.on_event(&mut bridge, event).await,
            _ = tick(&mut resync), if connected => docker.resync(&mut bridge).await,
        }
    }
}

/// The Docker side of the loop: the connection, and when to reconnect.
struct DockerWatch {
    backoff: Backoff,
    next_connect: Instant,
    connection: Option<Connection>,
}

impl DockerWatch {
    async fn connect(&mut self, bridge: &mut Bridge) {
        match connect(bridge).await {
            Ok(c) => {
                self.connection = Some(c);
                self.backoff.reset();
                info!("Listening for Docker events ...");
            }
            Err(e) => {
                let wait = self.backoff.next();
                warn!(
                    "docker: cannot reach the daemon at {}: {e}; retrying in {}",
                    docker::host(),
                    crate::duration::format(wait)
                );
                self.next_connect = Instant::now() + wait;
            }
        }
    }

    /// Handles one event; a failure, or the stream's end, means the
    /// connection is lost.
    async fn on_event(&mut self, bridge: &mut Bridge, event: Option<Result<Event, DockerError>>) {
        let reason = match (event, &self.connection) {
            (Some(Ok(event)), Some(c)) => match bridge.handle(&c.docker, event).await {
                Ok(()) => return,
                Err(e) => e.to_string(),
            },
            (Some(Ok(_)), None) => return,
            (Some(Err(e)), _) => e.to_string(),
            (None, _) => "the event stream ended".to_string(),
        };
        self.lost(&reason);
    }

    async fn resync(&mut self, bridge: &mut Bridge) {
        let Some(c) = self.connection.as_ref() else {
            return;
        };
        if let Err(e) = bridge.sync(&c.docker, true).await {
            self.lost(&format!("resync failed: {e}"));
        }
    }

    /// Drops the connection and schedules the first reconnection.
    fn lost(&mut self, reason: &str) {
        self.connection = None;
        self.backoff.reset();
        let wait = self.backoff.next();
        warn!(
            "docker: lost the connection to {} ({reason}); reconnecting in {}",
            docker::host(),
            crate::duration::format(wait)
        );
        self.next_connect = Instant::now() + wait;
    }
}

/// One attempt to reach the agent; fatal only before it ever answered and
/// once `-retry-attempts` are used up.
async fn ping(
    bridge: &mut Bridge,
    agent: &mut AgentWatch,
    docker_synced: bool,
) -> Result<(), RunError> {
    agent.next_ping = None;
    match bridge.registry().ping().await {
        Ok(leader) => {
            info!(
                "consul: reached the agent at {} (current leader {leader:?})",
                bridge.registry().base()
            );
            agent.ever_up = true;
            agent.failures = 0;
            agent.backoff.reset();
            bridge.agent_back(docker_synced).await;
        }
        Err(e) => {
            agent.failures += 1;
            if let Some(limit) = agent.retry_attempts.filter(|_| !agent.ever_up) {
                if agent.failures > u64::from(limit) {
                    return Err(RunError::AgentUnreachable {
                        base: bridge.registry().base().to_string(),
                        attempts: agent.failures,
                        last: e.to_string(),
                    });
                }
            }
            let wait = agent.backoff.next();
            warn!(
                "consul: cannot reach the agent at {} (attempt {}): {e}; retrying in {}",
                bridge.registry().base(),
                agent.failures,
                crate::duration::format(wait)
            );
            agent.next_ping = Some(Instant::now() + wait);
        }
    }
    Ok(())
}

/// Connects to Docker, lists and registers the running containers, and
/// opens the event stream from the instant before the listing.
async fn connect(bridge: &mut Bridge) -> Result<Connection, DockerError> {
    let docker = Docker::connect().await?;
    let since = docker.now().await?;
    info!("docker: connected to {}", docker::host());
    bridge.sync(&docker, false).await?;
    let events = Box::pin(docker.events(since));
    Ok(Connection { docker, events })
}

/// The next event, or never when there is no connection.
async fn next_event(c: &mut Option<Connection>) -> Option<Result<Event, DockerError>> {
    match c {
        Some(c) => c.events.next().await,
        None => std::future::pending().await,
    }
}

/// The next `-resync` tick, or never without one.
async fn tick(i: &mut Option<Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn backend_name(uri: &RegistryUri) -> &'static str {
    match (&uri.backend, uri.tls) {
        (registry::Backend::Kv { .. }, _) => "consulkv",
        (_, true) => "consul-tls",
        (_, false) => "consul",
    }
}

/// The derivation settings: this host's name for IDs, and the address it
/// resolves to for ports published on all interfaces.
async fn rules(o: &Options) -> Rules {
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let host_ip = resolve(&hostname).await;
    match (&o.force_ip, host_ip) {
        (Some(ip), _) => info!("Forcing host IP to {ip}"),
        (None, Some(ip)) => info!("Ports published on all interfaces register as {hostname}'s address {ip}"),
        (None, None) => warn!("this host's name {hostname:?} does not resolve; ports published on all interfaces cannot be registered without -ip"),
    }
    Rules {
        hostname,
        host_ip,
        force_ip: o.force_ip.clone(),
        internal: o.internal,
        force_tags: o.force_tags.clone(),
    }
}

/// The hostname's address, IPv4 first (Go's `net.ResolveIPAddr("ip", ...)`).
async fn resolve(hostname: &str) -> Option<IpAddr> {
    if hostname.is_empty() {
        return None;
    }
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((hostname, 0))
        .await
        .ok()?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(2), MAX_BACKOFF);
        let waits: Vec<u64> = (0..5).map(|_| b.next().as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
        b.reset();
        assert_eq!(b.next(), Duration::from_secs(2));
        let mut long = Backoff::new(Duration::from_secs(30), MAX_BACKOFF);
        assert_eq!(
            (long.next(), long.next()),
            (Duration::from_secs(30), Duration::from_secs(30))
        );
    }
}
