//! The Docker Engine API, as registrator uses it: list the running
//! containers, inspect one, and follow the container `start`, `die` and
//! `stop` events. `DOCKER_HOST` names the daemon (`unix:///path` or
//! `tcp://host:port`); unset, it is `/var/run/docker.sock`.

use super::container::{Container, IncompleteInspect};
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{EventsOptions, ListContainersOptions};
use futures::{Stream, StreamExt};
use std::collections::HashMap;

/// Docker's answer was not what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The daemon cannot be reached (socket gone, connection refused or
    /// cut, timeout): the caller reconnects.
    #[error("{}", super::registry::causes(.0))]
    Unavailable(BollardError),
    /// The daemon answered with an error, or with data that does not decode.
    #[error("{0}")]
    Api(BollardError),
    #[error(transparent)]
    Incomplete(#[from] IncompleteInspect),
}

impl DockerError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DockerError::Unavailable(_))
    }
}

impl From<BollardError> for DockerError {
    fn from(e: BollardError) -> DockerError {
        match e {
            BollardError::DockerResponseServerError { .. }
            | BollardError::JsonDataError { .. }
            | BollardError::JsonSerdeError { .. }
            | BollardError::APIVersionParseError {}
            | BollardError::UnsupportedURISchemeError { .. } => DockerError::Api(e),
            _ => DockerError::Unavailable(e),
        }
    }
}

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    /// `die`, and `stop` after it.
    Exit,
}

/// One container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub action: Action,
    pub container_id: String,
}

/// A connection to the daemon.
pub struct Docker {
    client: bollard::Docker,
}

/// The daemon's address, for log lines.
pub fn host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

impl Docker {
    /// Connects to the daemon `DOCKER_HOST` names and agrees an API
    /// version with it (older daemons refuse newer versions).
    pub async fn connect() -> Result<Docker, DockerError> {
        let client = bollard::Docker::connect_with_host(&host())?;
        let client = client.negotiate_version().await?;
        Ok(Docker { client })
    }

    /// The daemon's clock as the event stream's `since` wants it
    /// (`<seconds>.<nanoseconds>`), so that events from this instant on
    /// are replayed whatever the local clock says. A daemon that does not
    /// report its clock gets this host's, less a few seconds (replaying a
    /// few events twice is harmless; missing one is not).
    pub async fn now(&self) -> Result<String, DockerError> {
        let info = self.client.info().await?;
        let text = info.system_time.unwrap_or_default();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&text) {
            return Ok(format!(
                "{}.{:09}",
                t.timestamp(),
                t.timestamp_subsec_nanos()
            ));
        }
        tracing::warn!(
            "docker: the daemon's clock {text:?} is not an RFC 3339 time; using this host's"
        );
        let local = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(std::time::Duration::from_secs(5));
        Ok(format!("{}.{:09}", local.as_secs(), local.subsec_nanos()))
    }

    /// The IDs of the running containers.
    pub async fn running(&self) -> Result<Vec<String>, DockerError> {
        let list = self
            .client
            .list_containers(Some(ListContainersOptions::default()))
            .await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// A container, `None` when Docker has no such container (any more).
    pub async fn inspect(&self, id: &str) -> Result<Option<Container>, DockerError> {
        match self.client.inspect_container(id, None).await {
            Ok(c) => Ok(Some(Container::try_from(c)?)),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Container start, die and stop events from `since` on; the stream
    /// ends, or yields an error, when the connection is lost.
    pub fn events(&self, since: String) -> impl Stream<Item = Result<Event, DockerError>> {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                vec!["start".to_string(), "die".to_string(), "stop".to_string()],
            ),
        ]);
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        };
        self.client
            .events(Some(options))
            .filter_map(|m| async move {
                match m {
                    Err(e) => Some(Err(DockerError::from(e))),
                    Ok(m) => {
                        let action = match m.action.as_deref() {
                            Some("start") => Action::Start,
                            Some("die") | Some("stop") => Action::Exit,
                            _ => return None,
                        };
                        let container_id = m.actor.and_then(|a| a.id)?;
                        Some(Ok(Event {
                            action,
                            container_id,
                        }))
                    }
                }
            })
    }
}
