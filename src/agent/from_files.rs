//! Services and checks defined in config files: put in local state at
//! start, and on `cairn reload`, `PUT /v1/agent/reload` or SIGHUP brought
//! in line with the files again, as Consul's reload does. A reload adds
//! what the files now define, changes what they define differently,
//! removes what they no longer define, and leaves alone everything that
//! was registered over the HTTP API: local state marks what the files own
//! ([`Owned`]). A configuration that does not build is refused whole, and
//! the one running stays.

use super::local::Owned;
use super::{Agent, AgentError};
use crate::catalog::command::{Command, Registration};
use crate::catalog::types::Check;
use crate::config::{FileCheck, FileService};
use std::collections::BTreeSet;

/// What applying the files changed, for the catalog.
#[derive(Debug, Default)]
struct Changes {
    services: Vec<String>,
    checks: Vec<String>,
    removed_services: Vec<String>,
    removed_checks: Vec<String>,
}

impl Agent {
    /// Rebuilds the configuration from the files and flags the agent was
    /// started with and applies its service and check definitions. Other
    /// settings take effect at the next start.
    pub async fn reload(&self) -> Result<(), AgentError> {
        let Some(loader) = self.loader.clone() else {
            return Ok(());
        };
        let _one_at_a_time = self.reloading.lock().await;
        let config = tokio::task::spawn_blocking(move || loader.load())
            .await
            .map_err(|e| AgentError::Internal(format!("reload: {e}")))?
            .map_err(|e| AgentError::Internal(e.to_string()))?;
        self.as_agent(self.apply_file_definitions(&config.services, &config.checks, true))
            .await?;
        tracing::info!(
            services = config.services.len(),
            checks = config.checks.len(),
            "configuration reloaded"
        );
        Ok(())
    }

    /// Makes local state hold exactly the files' definitions among what
    /// the files own. With `sync`, writes the changes to the catalog at
    /// once; otherwise anti-entropy does (at start, before a leader).
    pub async fn apply_file_definitions(
        &self,
        services: &[FileService],
        checks: &[FileCheck],
        sync: bool,
    ) -> Result<(), AgentError> {
        let node = self.node_name().to_string();
        let (changes, persisted) = self.local.edit(true, |e| {
            let before = e.state().clone();
            let missing = checks.iter().find(|c| {
                let sid = &c.check.service_id;
                !sid.is_empty()
                    && !before.services.contains_key(sid)
                    && !services.iter().any(|s| s.service.id == *sid)
            });
            if let Some(c) = missing {
                return Err(AgentError::Internal(format!(
                    "Failed to register check {:?}: ServiceID {:?} does not exist",
                    c.check.name, c.check.service_id
                )));
            }
            let mut changes = Changes::default();
            let wanted: BTreeSet<Owned> = services
                .iter()
                .flat_map(|s| {
                    std::iter::once(Owned::Service(s.service.id.clone()))
                        .chain(s.checks.iter().map(|c| Owned::Check(c.check_id.clone())))
                })
                .chain(
                    checks
                        .iter()
                        .map(|c| Owned::Check(c.check.check_id.clone())),
                )
                .collect();
            for gone in before.from_config.difference(&wanted) {
                match gone {
                    Owned::Service(id) => {
                        if e.remove_service(id) {
                            changes.removed_services.push(id.clone());
                        }
                    }
                    Owned::Check(id) => {
                        if e.remove_check(id) {
                            changes.removed_checks.push(id.clone());
                        }
                    }
                }
            }
            for s in services {
                let mut svc = s.service.clone();
                svc.node = node.clone();
                let defined: Vec<Check> = s
                    .checks
                    .iter()
                    .map(|c| Check {
                        node: node.clone(),
                        ..c.clone()
                    })
                    .collect();
                let owned = before.from_config.contains(&Owned::Service(svc.id.clone()));
                let same = owned
                    && before.services.get(&svc.id) == Some(&svc)
                    && defined.iter().all(|c| unchanged(&before, c));
                if same {
                    continue;
                }
                let id = svc.id.clone();
                e.put_service(svc);
                e.own(Owned::Service(id.clone()));
                for c in defined {
                    let c = keep_status(&before, c);
                    let cid = c.check_id.clone();
                    e.put_check(c);
                    e.own(Owned::Check(cid));
                }
                changes.services.push(id);
            }
            for fc in checks {
                let mut c = Check {
                    node: node.clone(),
                    ..fc.check.clone()
                };
                if let Some(svc) = e.state().services.get(&c.service_id) {
                    c.service_name = svc.name.clone();
                    c.service_tags = svc.tags.clone();
                }
                if unchanged(e.state(), &c) {
                    continue;
                }
                let c = keep_status(&before, c);
                let cid = c.check_id.clone();
                e.put_check(c);
                e.own(Owned::Check(cid.clone()));
                changes.checks.push(cid);
            }
            Ok(changes)
        });
        let changes = changes?;
        persisted.wait().await?;
        if sync {
            self.write_file_changes(changes).await;
        }
        Ok(())
    }

    /// Writes what a reload changed to the catalog. A failed write is
    /// logged, not returned: local state has the change, and anti-entropy
    /// brings the catalog in line with it.
    async fn write_file_changes(&self, changes: Changes) {
        let mut commands = Vec::new();
        for id in changes.removed_services {
            commands.push(self.deregistration(Some(id), None));
        }
        for id in changes.removed_checks {
            commands.push(self.deregistration(None, Some(id)));
        }
        for id in &changes.services {
            if let Some(reg) = self.service_registration(id) {
                commands.push(Command::Register(reg));
            }
        }
        let checks: Vec<Check> = changes
            .checks
            .iter()
            .filter_map(|id| self.local.check(id))
            .collect();
        if !checks.is_empty() {
            commands.push(Command::Register(Registration {
                node: self.self_node(),
                service: None,
                checks,
                skip_node_update: true,
            }));
        }
        for cmd in commands {
            if let Err(e) = self.write(cmd).await {
                tracing::warn!("reload: catalog update deferred to anti-entropy: {e}");
            }
        }
    }
}

/// Whether the files already own check `c` as defined.
fn unchanged(state: &super::local::LocalState, c: &Check) -> bool {
    state
        .from_config
        .contains(&Owned::Check(c.check_id.clone()))
        && state.checks.get(&c.check_id).is_some_and(|old| {
            old.name == c.name
                && old.notes == c.notes
                && old.service_id == c.service_id
                && old.service_name == c.service_name
                && old.service_tags == c.service_tags
                && old.definition == c.definition
        })
}

/// A redefined check keeps the status and output it has, as a
/// re-registration over the API does.
fn keep_status(state: &super::local::LocalState, mut c: Check) -> Check {
    if let Some(old) = state.checks.get(&c.check_id) {
        c.status = old.status;
        c.output = old.output.clone();
    }
    c
}
