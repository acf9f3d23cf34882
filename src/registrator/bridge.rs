//! Between Docker and the registry: which services each running container
//! should have, and getting the registry to agree.
//!
//! The bridge keeps the services it derived for every container it saw
//! start, whether or not the registry has acknowledged them. That is what
//! makes an unreachable agent harmless: while it is away, starts and exits
//! only change that record (and deregistrations wait in a queue), and when
//! it is back every recorded service is registered again and the queue is
//! flushed. It is also why `-cleanup` never removes a running container's
//! service: it keeps whatever the record names, acknowledged or not.
//!
//! Registrator's own restart is safe for the same reasons in reverse: it
//! deregisters nothing when it stops, service IDs are derived, not random,
//! so the first sync after a start re-registers the same IDs (Consul
//! replaces a service registered again under its ID).

use super::container::{short_id, Container};
use super::derive::{derive, Derived, Outcome, Rules};
use super::docker::{Action, Docker, DockerError, Event};
use super::registry::{CallError, Registry};
use super::service::Registration;
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, info, warn};

/// `-deregister`: when an exited container's services go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeregisterPolicy {
    Always,
    /// Only when the container is gone, exited 0, or was killed by a
    /// signal (`docker stop`: 137 or 143); a crash keeps them.
    OnSuccess,
}

impl DeregisterPolicy {
    pub fn parse(s: &str) -> Option<DeregisterPolicy> {
        match s {
            "always" => Some(DeregisterPolicy::Always),
            "on-success" => Some(DeregisterPolicy::OnSuccess),
            _ => None,
        }
    }

    /// Whether an exited container's services are deregistered, given what
    /// Docker now says about it (`None`: no such container any more).
    pub fn should_remove(self, now: Result<Option<&Container>, &DockerError>) -> bool {
        if self == DeregisterPolicy::Always {
            return true;
        }
        match now {
            Ok(None) => true,
            Err(_) => false,
            Ok(Some(c)) if c.running => false,
            // Bit 128 marks an exit by signal.
            Ok(Some(c)) => c.exit_code == 0 || c.exit_code & 128 == 128,
        }
    }
}

/// Whether `id`, a service the agent lists under `name`, is one this host's
/// registrator made for a container it no longer tracks. Only generated IDs
/// (`<hostname>:<container>:<port>[:udp]`) qualify; a custom `SERVICE_ID`
/// is never cleaned up, as in registrator.
pub fn is_dangling(
    id: &str,
    name: &str,
    hostname: &str,
    tracked: &BTreeMap<String, Vec<Registration>>,
) -> bool {
    let Some((host, container)) = parse_generated_id(id) else {
        return false;
    };
    if host != hostname {
        return false;
    }
    !tracked
        .values()
        .flatten()
        .any(|r| r.id == id || (r.name == name && r.origin.container_name == container))
}

/// Splits `<hostname>:<container>:<port>[:udp]` (registrator's
/// `^(.+?):([a-zA-Z0-9][a-zA-Z0-9_.-]+):[0-9]+(?::udp)?$`).
fn parse_generated_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_suffix(":udp").unwrap_or(id);
    let (rest, port) = rest.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The container part cannot hold a colon, so it follows the last one.
    let (host, container) = rest.rsplit_once(':')?;
    let mut chars = container.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = container.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    (!host.is_empty() && first_ok && rest_ok).then_some((host, container))
}

/// The record of services and the registry they go to.
pub struct Bridge {
    registry: Registry,
    rules: Rules,
    policy: DeregisterPolicy,
    cleanup: bool,
    /// Container ID → the services derived for it.
    tracked: BTreeMap<String, Vec<Registration>>,
    /// Service ID → name: deregistrations the registry has not acknowledged.
    pending: BTreeMap<String, String>,
    agent_up: bool,
}

impl Bridge {
    pub fn new(registry: Registry, rules: Rules, policy: DeregisterPolicy, cleanup: bool) -> Self {
        Bridge {
            registry,
            rules,
            policy,
            cleanup,
            tracked: BTreeMap::new(),
            pending: BTreeMap::new(),
            agent_up: false,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Whether the last call reached the agent.
    pub fn agent_up(&self) -> bool {
        self.agent_up
    }

    /// The agent answered again: flush the queued deregistrations, register
    /// every recorded service, and clean up if asked (only once Docker has
    /// been listed, so that the record is complete).
    pub async fn agent_back(&mut self, docker_synced: bool) {
        self.agent_up = true;
        let pending = std::mem::take(&mut self.pending);
        let wanted: BTreeSet<&str> = self.wanted_ids();
        let stale: Vec<(String, String)> = pending
            .into_iter()
            .filter(|(id, _)| !wanted.contains(id.as_str()))
            .collect();
        for (id, name) in stale {
            self.deregister(&id, &name, None).await;
        }
        let all: Vec<Registration> = self.tracked.values().flatten().cloned().collect();
        for r in &all {
            if self.register(r).await {
                info!("added: {} {}", short_id(&r.origin.container_id), r.id);
            }
        }
        if docker_synced {
            self.clean_up().await;
        }
    }

    fn wanted_ids(&self) -> BTreeSet<&str> {
        self.tracked
            .values()
            .flatten()
            .map(|r| r.id.as_str())
            .collect()
    }

    /// Handles one Docker event.
    pub async fn handle(&mut self, docker: &Docker, event: Event) -> Result<(), DockerError> {
        match event.action {
            Action::Start => self.add(docker, &event.container_id).await,
            Action::Exit => self.exited(docker, &event.container_id).await,
        }
    }

    /// Lists the running containers: registers the new ones (and, with
    /// `reregister`, every recorded service again), treats recorded ones
    /// that stopped as exited, then cleans up if asked.
    pub async fn sync(&mut self, docker: &Docker, reregister: bool) -> Result<(), DockerError> {
        let running = docker.running().await?;
        info!("Syncing services on {} containers", running.len());
        for id in &running {
            match self.tracked.get(id) {
                Some(services) if reregister && self.agent_up => {
                    for r in services.clone() {
                        self.register(&r).await;
                    }
                }
                Some(_) => {}
                None => self.add(docker, id).await?,
            }
        }
        let running: BTreeSet<&String> = running.iter().collect();
        let gone: Vec<String> = self
            .tracked
            .keys()
            .filter(|id| !running.contains(id))
            .cloned()
            .collect();
        for id in gone {
            info!("stale: {} is no longer running", short_id(&id));
            self.exited(docker, &id).await?;
        }
        self.clean_up().await;
        Ok(())
    }

    /// A container started: derive its services and register them.
    async fn add(&mut self, docker: &Docker, id: &str) -> Result<(), DockerError> {
        let cid = short_id(id).to_string();
        if self.tracked.contains_key(id) {
            debug!("container {cid} already exists, ignoring");
            return Ok(());
        }
        let container = match docker.inspect(id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                debug!("ignored: {cid} no longer exists");
                return Ok(());
            }
            Err(e) if e.is_unavailable() => return Err(e),
            Err(e) => {
                warn!("unable to inspect container: {cid} {e}");
                return Ok(());
            }
        };
        if !container.running {
            // An event replayed after the container exited: its exit
            // event follows.
            debug!("ignored: {cid} is not running");
            return Ok(());
        }
        let shared_ip = self.network_container_ip(docker, &container).await?;
        let services = self.derived(&container, shared_ip.as_deref());
        for r in &services {
            self.pending.remove(&r.id);
        }
        self.tracked.insert(container.id.clone(), services.clone());
        for r in &services {
            if self.register(r).await {
                info!("added: {cid} {}", r.id);
            }
        }
        Ok(())
    }

    /// Derives and logs what is skipped, as registrator does.
    fn derived(&self, c: &Container, shared_ip: Option<&str>) -> Vec<Registration> {
        let cid = c.short_id();
        let outcomes = match derive(c, shared_ip, &self.rules) {
            Derived::NoPorts => {
                info!("ignored: {cid} no published ports");
                return vec![];
            }
            Derived::Ports(outcomes) => outcomes,
        };
        let mut services = Vec::new();
        for o in outcomes {
            match o {
                Outcome::Service(r) => services.push(*r),
                Outcome::NotPublished(p) => {
                    debug!("ignored: {cid} port {} not published on host", p.port)
                }
                Outcome::Ignored(p) => info!("ignored: {cid} service on port {}", p.port),
                Outcome::Malformed(p, e) => warn!("skipped: {cid} ({}) port {}: {e}", c.name, p),
            }
        }
        services
    }

    /// The IP of the container whose network this one shares, if it does.
    async fn network_container_ip(
        &self,
        docker: &Docker,
        c: &Container,
    ) -> Result<Option<String>, DockerError> {
        let Some(other) = c.network_container() else {
            return Ok(None);
        };
        match docker.inspect(other).await {
            Ok(Some(o)) => Ok(o.ip().map(str::to_string)),
            Ok(None) => Ok(None),
            Err(e) if e.is_unavailable() => Err(e),
            Err(e) => {
                warn!(
                    "unable to inspect network container: {} {e}",
                    short_id(other)
                );
                Ok(None)
            }
        }
    }

    /// A container exited: deregister its services if the policy says so.
    async fn exited(&mut self, docker: &Docker, id: &str) -> Result<(), DockerError> {
        if !self.tracked.contains_key(id) {
            return Ok(());
        }
        let remove = match self.policy {
            DeregisterPolicy::Always => true,
            DeregisterPolicy::OnSuccess => {
                let now = docker.inspect(id).await;
                match &now {
                    Err(e) if e.is_unavailable() => return now.map(drop),
                    Err(e) => warn!(
                        "error fetching status for container {} on \"die\" event: {e}",
                        short_id(id)
                    ),
                    Ok(_) => {}
                }
                let remove = self.policy.should_remove(now.as_ref().map(Option::as_ref));
                if !remove {
                    info!(
                        "kept: {} exited with an error; -deregister=on-success leaves its services",
                        short_id(id)
                    );
                }
                remove
            }
        };
        let services = self.tracked.remove(id).unwrap_or_default();
        if remove {
            for r in services {
                self.deregister(&r.id, &r.name, Some(id)).await;
            }
        }
        Ok(())
    }

    /// Removes this host's services of containers the record does not hold.
    async fn clean_up(&mut self) {
        if !self.cleanup || !self.agent_up {
            return;
        }
        let listed = match self.registry.services().await {
            Ok(Some(listed)) => listed,
            Ok(None) => return,
            Err(e) => {
                warn!("cleanup failed: {e}");
                self.note_failure(&e);
                return;
            }
        };
        for s in listed {
            if is_dangling(&s.id, &s.service, &self.rules.hostname, &self.tracked) {
                info!("dangling: {}", s.id);
                self.deregister(&s.id, &s.service, None).await;
            }
        }
    }

    /// Registers one service; false when it was not (logged, and for an
    /// unreachable agent left for when it is back).
    async fn register(&mut self, r: &Registration) -> bool {
        if !self.agent_up {
            return false;
        }
        match self.registry.register(r).await {
            Ok(()) => true,
            Err(e) => {
                warn!("register failed: {} {e}", r.id);
                self.note_failure(&e);
                false
            }
        }
    }

    async fn deregister(&mut self, id: &str, name: &str, container: Option<&str>) {
        if self.agent_up {
            match self.registry.deregister(id, name).await {
                Ok(()) => {
                    match container {
                        Some(c) => info!("removed: {} {id}", short_id(c)),
                        None => info!("{id} removed"),
                    }
                    return;
                }
                Err(e) => {
                    warn!("deregister failed: {id} {e}");
                    if !e.is_unreachable() {
                        return;
                    }
                    self.note_failure(&e);
                }
            }
        }
        self.pending.insert(id.to_string(), name.to_string());
    }

    fn note_failure(&mut self, e: &CallError) {
        if e.is_unreachable() && self.agent_up {
            warn!(
                "consul: lost the agent at {}; changes wait until it is back",
                self.registry.base()
            );
            self.agent_up = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::container::tests::fixture;
    use super::super::container::ExposedPort;
    use super::super::service::Origin;
    use super::*;

    fn reg(id: &str, name: &str, container: &str) -> Registration {
        Registration {
            id: id.into(),
            name: name.into(),
            port: 80,
            address: "10.0.0.5".into(),
            tags: vec![],
            meta: BTreeMap::new(),
            check: None,
            origin: Origin {
                container_id: format!("{container}-id"),
                container_name: container.into(),
                port: ExposedPort::parse("80/tcp"),
            },
        }
    }

    #[test]
    fn generated_ids_parse_as_registrators_pattern() {
        assert_eq!(
            parse_generated_id("dock1:web-1:80"),
            Some(("dock1", "web-1"))
        );
        assert_eq!(
            parse_generated_id("dock1:dns.a_b:53:udp"),
            Some(("dock1", "dns.a_b"))
        );
        // The hostname part may hold colons; the container part cannot.
        assert_eq!(parse_generated_id("a:b:web:80"), Some(("a:b", "web")));
        for not_ours in [
            "custom-id",
            "dock1:web:http",
            "dock1:w:80",
            ":web:80",
            "dock1:-web:80",
        ] {
            assert_eq!(parse_generated_id(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn cleanup_removes_only_this_hosts_untracked_generated_services() {
        let tracked = BTreeMap::from([(
            "web-1-id".to_string(),
            vec![reg("dock1:web-1:80", "web", "web-1")],
        )]);
        let dangling = |id, name| is_dangling(id, name, "dock1", &tracked);
        assert!(!dangling("dock1:web-1:80", "web"), "tracked");
        assert!(
            !dangling("dock1:web-1:8080", "web"),
            "same name and container: kept, as registrator keeps it"
        );
        assert!(dangling("dock1:web-2:80", "web"), "another container");
        assert!(dangling("dock1:web-1:81", "admin"), "another name");
        assert!(!dangling("dock2:web-2:80", "web"), "another host's");
        assert!(!dangling("custom-id", "web"), "a custom SERVICE_ID");
    }

    #[test]
    fn on_success_keeps_the_services_of_a_crash() {
        let mut c = fixture("published");
        let policy = DeregisterPolicy::OnSuccess;
        c.running = false;
        for (code, remove) in [(0, true), (137, true), (143, true), (1, false), (2, false)] {
            c.exit_code = code;
            assert_eq!(policy.should_remove(Ok(Some(&c))), remove, "exit {code}");
        }
        assert!(policy.should_remove(Ok(None)), "removed with --rm");
        c.running = true;
        assert!(!policy.should_remove(Ok(Some(&c))), "restarted already");
        let err = DockerError::Api(bollard::errors::Error::RequestTimeoutError);
        assert!(!policy.should_remove(Err(&err)));
        assert!(DeregisterPolicy::Always.should_remove(Err(&err)));
        assert_eq!(DeregisterPolicy::parse("on-success"), Some(policy));
        assert_eq!(DeregisterPolicy::parse("never"), None);
    }
}
