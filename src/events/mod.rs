//! Consul's user events (`consul event`, `/v1/event/*`): an agent fires a
//! named event with an optional payload and node, service and tag filters,
//! gossip carries it to every member ([`crate::gossip::user_event`]), and
//! each agent that takes it in checks the filters against itself, its own
//! node name and the services registered on it, as Consul's agent does,
//! and keeps the last [`KEPT`] it accepted for `/v1/event/list`.
//!
//! Consul fires through a server's gossip after an RPC; cairn's client
//! agents are gossip members like its servers, so the agent asked fires
//! the event itself. Either way every member of the datacenter receives it.

pub mod event;

pub use event::{id_to_index, UserEvent};

use crate::catalog::types::Service;
use crate::gossip::user_event::{UserEventError, UserEventMsg};
use crate::gossip::Gossip;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// How many accepted events an agent keeps (Consul's event buffer).
pub const KEPT: usize = 256;

/// The services registered on this agent, for the service and tag filters.
pub type LocalServices = Arc<dyn Fn() -> Vec<Service> + Send + Sync>;

/// Why an event was not fired.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// A missing name or a bad filter, in Consul's words.
    #[error("{0}")]
    Invalid(String),
    /// Refused by serf's size limits, or gossip is gone.
    #[error("{0}")]
    Gossip(#[from] UserEventError),
}

/// The last [`KEPT`] events, oldest first, with a counter that moves on
/// every accepted event (what blocking lists wait on).
struct EventLog {
    events: Mutex<VecDeque<UserEvent>>,
    changed: watch::Sender<u64>,
}

impl EventLog {
    fn push(&self, event: UserEvent) {
        if let Ok(mut events) = self.events.lock() {
            if events.len() == KEPT {
                events.pop_front();
            }
            events.push_back(event);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    fn list(&self) -> Vec<UserEvent> {
        self.events
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The user events of one agent: firing, and the events it accepted.
#[derive(Clone)]
pub struct Events {
    gossip: Gossip,
    log: Arc<EventLog>,
}

impl Events {
    /// Starts taking in this agent's events: those whose filters match
    /// `node` and `services` are kept.
    pub fn start(gossip: Gossip, node: String, services: LocalServices) -> Events {
        let log = Arc::new(EventLog {
            events: Mutex::new(VecDeque::with_capacity(KEPT)),
            changed: watch::channel(0).0,
        });
        tokio::spawn(intake(gossip.user_events(), log.clone(), node, services));
        Events { gossip, log }
    }

    /// Fires `event` to the datacenter (Consul's `agent.UserEvent`):
    /// checks it, then has gossip send it. The event is answered as
    /// Consul answers the firing: with its ID and version, Lamport time 0.
    pub async fn fire(&self, event: UserEvent) -> Result<UserEvent, FireError> {
        event.validate().map_err(FireError::Invalid)?;
        let wire_len = event.consul_encoded_len();
        self.gossip
            .user_event(event.serf_name(), event.encode(), wire_len)
            .await?;
        Ok(event)
    }

    /// The kept events, oldest first.
    pub fn list(&self) -> Vec<UserEvent> {
        self.log.list()
    }

    /// Moves on every accepted event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.log.changed.subscribe()
    }
}

/// Takes in every user event gossip delivers: decodes it, applies the
/// filters, and keeps what passes (Consul's `handleEvents`).
async fn intake(
    mut rx: broadcast::Receiver<UserEventMsg>,
    log: Arc<EventLog>,
    node: String,
    services: LocalServices,
) {
    loop {
        let msg = match rx.recv().await {
            Ok(m) => m,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "agent: user events arrived faster than taken in"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(name) = msg.name.strip_prefix(event::SERF_PREFIX) else {
            continue;
        };
        let Some(event) = UserEvent::decode(&msg.payload, msg.ltime) else {
            tracing::error!(event = name, "agent: Failed to decode event");
            continue;
        };
        if !should_process(&event, &node, &services()) {
            continue;
        }
        if event.name == event::REMOTE_EXEC {
            tracing::info!(id = %event.id, "agent: ignoring remote exec event, disabled.");
            continue;
        }
        tracing::debug!(event = %event.name, id = %event.id, "agent: new event");
        log.push(event);
    }
}

/// Consul's `shouldProcessUserEvent`: the node filter against this node's
/// name; the service filter against the IDs of the services registered
/// here, and with a tag filter, against the tags of the services that
/// match. The patterns are unanchored (Go's `MatchString`); one that does
/// not compile matches nothing.
pub fn should_process(event: &UserEvent, node: &str, services: &[Service]) -> bool {
    if event.version > event::VERSION {
        tracing::warn!(
            version = event.version,
            event = %event.name,
            "agent: Event version may have unsupported features"
        );
    }
    let compile = |what: &str, filter: &str| match crate::filter::regex::compile(filter.as_bytes())
    {
        Ok(re) => Some(re),
        Err(e) => {
            tracing::error!(filter, event = %event.name, "agent: Failed to parse {what} filter for event: {e}");
            None
        }
    };
    if !event.node_filter.is_empty() {
        match compile("node", &event.node_filter) {
            Some(re) if re.is_match(node) => {}
            _ => return false,
        }
    }
    if event.service_filter.is_empty() {
        return true;
    }
    let Some(service_re) = compile("service", &event.service_filter) else {
        return false;
    };
    let tag_re = if event.tag_filter.is_empty() {
        None
    } else {
        match compile("tag", &event.tag_filter) {
            Some(re) => Some(re),
            None => return false,
        }
    };
    services
        .iter()
        .filter(|s| service_re.is_match(&s.id))
        .any(|s| match &tag_re {
            None => true,
            Some(re) => s.tags.iter().any(|t| re.is_match(t)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, tags: &[&str]) -> Service {
        Service {
            id: id.into(),
            name: id.split(':').next().unwrap_or(id).into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Service::default()
        }
    }

    fn filtered(node: &str, service: &str, tag: &str) -> UserEvent {
        UserEvent::new(
            "deploy".into(),
            None,
            node.into(),
            service.into(),
            tag.into(),
        )
    }

    #[test]
    fn filters_match_as_consuls_agent_does() {
        let here = [service("web:1", &["v1", "primary"]), service("db", &[])];
        let ok = |e: &UserEvent| should_process(e, "web-01", &here);
        assert!(ok(&filtered("", "", "")));
        assert!(ok(&filtered("web", "", "")), "unanchored");
        assert!(!ok(&filtered("^db", "", "")));
        assert!(ok(&filtered("", "^web:1$", "")), "service IDs are matched");
        assert!(ok(&filtered("", "web", "^prim")));
        assert!(!ok(&filtered("", "web", "v2")));
        assert!(!ok(&filtered("", "db", "v1")), "the tag of another service");
        assert!(!ok(&filtered("", "cache", "")));
        assert!(!ok(&filtered("(", "", "")), "a bad pattern matches nothing");
        assert!(!should_process(&filtered("", "web", ""), "web-01", &[]));
    }

    #[test]
    fn the_log_keeps_the_last_256_oldest_first() {
        let log = EventLog {
            events: Mutex::new(VecDeque::new()),
            changed: watch::channel(0).0,
        };
        let rx = log.changed.subscribe();
        for i in 0..300 {
            let mut e = filtered("", "", "");
            e.ltime = i;
            log.push(e);
        }
        let kept = log.list();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].ltime, 44);
        assert_eq!(kept[KEPT - 1].ltime, 299);
        assert_eq!(*rx.borrow(), 300);
    }
}
