//! Alias checks (`AliasService`, `AliasNode`): mirror the health of another
//! service instance or node as this agent's catalog replica shows it,
//! re-evaluated whenever the catalog changes.
//!
//! The node defaults to this agent's. With a service, the node's own checks
//! and that instance's checks count, and a missing instance is critical;
//! without one, the node's checks count. The worst status wins; the output
//! names the failing check, as Consul's does.

use crate::catalog::types::{Check, HealthStatus};
use crate::catalog::Catalog;
use std::sync::Arc;

/// The status and output an alias check reports for what it can see.
/// `checks` are all checks on the aliased node; `own_id` is the alias
/// check itself, which never counts towards its own result.
pub fn evaluate(
    node: &str,
    service_id: &str,
    service_exists: bool,
    checks: &[Check],
    own_id: Option<&str>,
) -> (HealthStatus, String) {
    if !service_id.is_empty() && !service_exists {
        return (
            HealthStatus::Critical,
            format!("Service {service_id} could not be found on node {node}"),
        );
    }
    let relevant = checks.iter().filter(|c| {
        Some(c.check_id.as_str()) != own_id
            && (c.service_id.is_empty() || c.service_id == service_id)
    });
    let mut worst: Option<&Check> = None;
    let mut any = false;
    for c in relevant {
        any = true;
        if c.status != HealthStatus::Passing && worst.is_none_or(|w| c.status > w.status) {
            worst = Some(c);
        }
    }
    match worst {
        Some(c) => (
            c.status,
            format!("Aliased check {:?} failing: {}", c.name, c.output),
        ),
        None if any => (HealthStatus::Passing, "All checks passing.".into()),
        None => (HealthStatus::Passing, "No checks found.".into()),
    }
}

/// Where an alias check's results go.
pub struct AliasReporter {
    /// The alias check's own ID when it aliases its own node (it never
    /// counts towards its own result).
    pub own: Option<String>,
    pub report: Box<dyn Fn(HealthStatus, String) + Send + Sync>,
}

/// Runs until cancelled: evaluates at start and after every catalog change.
/// `node` and `service` are what the check aliases.
pub async fn run(reporter: AliasReporter, catalog: Arc<Catalog>, node: String, service: String) {
    let mut changes = catalog.subscribe();
    loop {
        let seen_index = changes.borrow_and_update().catalog;
        let seen = catalog.reader().and_then(|r| {
            let checks = r.node_checks(&node)?;
            let exists = service.is_empty() || r.service(&node, &service)?.is_some();
            Ok((checks, exists))
        });
        match seen {
            Ok((checks, exists)) => {
                let (status, output) =
                    evaluate(&node, &service, exists, &checks, reporter.own.as_deref());
                (reporter.report)(status, output);
            }
            Err(e) => tracing::warn!(node = %node, "alias check: reading the catalog: {e}"),
        }
        // KV writes move the applied index too; only catalog changes matter.
        if changes.wait_for(|c| c.catalog != seen_index).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, service: &str, status: HealthStatus, output: &str) -> Check {
        Check {
            check_id: id.into(),
            name: format!("{id} name"),
            service_id: service.into(),
            status,
            output: output.into(),
            ..Check::default()
        }
    }

    #[test]
    fn a_missing_service_is_critical() {
        let (s, out) = evaluate("n1", "web", false, &[], None);
        assert_eq!(s, HealthStatus::Critical);
        assert_eq!(out, "Service web could not be found on node n1");
    }

    #[test]
    fn worst_of_node_and_service_checks_counts() {
        let checks = vec![
            check("serfHealth", "", HealthStatus::Passing, "alive"),
            check("web-http", "web", HealthStatus::Warning, "slow"),
            check("db-http", "db", HealthStatus::Critical, "down"),
        ];
        let (s, out) = evaluate("n1", "web", true, &checks, None);
        assert_eq!(s, HealthStatus::Warning);
        assert_eq!(out, "Aliased check \"web-http name\" failing: slow");
        let (s, _) = evaluate("n1", "", true, &checks, None);
        assert_eq!(s, HealthStatus::Passing, "node alias sees node checks only");
    }

    #[test]
    fn passing_and_empty() {
        let checks = vec![check("c", "web", HealthStatus::Passing, "")];
        assert_eq!(
            evaluate("n1", "web", true, &checks, None),
            (HealthStatus::Passing, "All checks passing.".into())
        );
        assert_eq!(
            evaluate("n1", "web", true, &[], None),
            (HealthStatus::Passing, "No checks found.".into())
        );
    }

    #[test]
    fn the_alias_check_does_not_count_itself() {
        let checks = vec![check("alias", "", HealthStatus::Critical, "")];
        assert_eq!(
            evaluate("n1", "", true, &checks, Some("alias")).0,
            HealthStatus::Passing
        );
    }
}
