//! ACL replication into a secondary datacenter [agent/consul/acl_replication.go].
//!
//! With `primary_datacenter` naming another datacenter, that datacenter's
//! ACL policies, roles and global tokens are the ones that count here:
//! writes of them are sent to the primary (`http::acl`), and the leader of
//! this datacenter copies them into its own raft. Local tokens are this
//! datacenter's own and are never replicated either way.
//!
//! **One round.** The leader reads the primary's state with a blocking
//! query on its ACL index (`GET /v1/internal/acl/state`, a path a server
//! serves only to a call forwarded from another datacenter, with the
//! `replication` token, which needs `acl:write` as it sees secrets),
//! compares it with its replica, and proposes the difference as one
//! [`AclOp::Replicate`] (nothing when they agree). A round that fails is
//! retried with a growing pause and recorded in the status
//! `/v1/acl/replication` reports. Only the leader replicates; a new
//! leader starts from index 0, which costs one full read.
//!
//! Global tokens are always replicated, so a secondary datacenter keeps
//! authenticating while the primary is unreachable. Consul replicates
//! them only with `acl.enable_token_replication` and otherwise asks the
//! primary for every token it has not cached.

use super::tokens::{AgentTokens, TokenKind};
use super::types::{Policy, Role, Token};
use crate::catalog::acl::{AclOp, Replication};
use crate::catalog::command::{Command, Response};
use crate::catalog::query::Reader;
use crate::catalog::Catalog;
use crate::consensus::api::AclCall;
use crate::consensus::Consensus;
use crate::federation::Federation;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The internal path the primary serves its ACL state on.
pub const STATE_PATH: &str = "/v1/internal/acl/state";

/// How long one blocking read of the primary waits for a change.
const WAIT: Duration = Duration::from_secs(10);
/// Pauses after a failed round: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// The ACL objects one datacenter holds, as replication compares them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The ACL table index this state was read at.
    pub index: u64,
    pub policies: Vec<Policy>,
    pub roles: Vec<Role>,
    /// Global tokens only, and none that has expired (each datacenter
    /// reaps its own, so they would only be copied back and forth).
    pub tokens: Vec<Token>,
}

impl State {
    pub fn read(r: &Reader<'_>) -> Result<State, heed::Error> {
        let now = super::resolver::now_nanos();
        Ok(State {
            index: r.index(&[crate::store::Table::Acl])?,
            policies: r.acl_policies()?,
            roles: r.acl_roles()?,
            tokens: r
                .acl_tokens()?
                .into_iter()
                .filter(|t| !t.local && !t.expired_at(now))
                .collect(),
        })
    }
}

/// What makes `local` hold what `primary` holds. Objects are compared
/// without their indexes, which are each datacenter's own.
pub fn diff(local: &State, primary: &State) -> Replication {
    fn changed<T: Clone + PartialEq>(
        local: &[T],
        primary: &[T],
        id: impl Fn(&T) -> String,
        bare: impl Fn(&T) -> T,
    ) -> (Vec<T>, Vec<String>) {
        let here: HashMap<String, T> = local.iter().map(|x| (id(x), bare(x))).collect();
        let there: std::collections::HashSet<String> = primary.iter().map(&id).collect();
        let upserts = primary
            .iter()
            .filter(|x| here.get(&id(x)) != Some(&bare(x)))
            .cloned()
            .collect();
        let deletes = here.into_keys().filter(|k| !there.contains(k)).collect();
        (upserts, deletes)
    }
    let key = super::types::id_key;
    let (policies, deleted_policies) = changed(
        &local.policies,
        &primary.policies,
        |p| key(&p.id),
        |p| Policy {
            create_index: 0,
            modify_index: 0,
            ..p.clone()
        },
    );
    let (roles, deleted_roles) = changed(
        &local.roles,
        &primary.roles,
        |r| key(&r.id),
        |r| Role {
            create_index: 0,
            modify_index: 0,
            ..r.clone()
        },
    );
    let (tokens, deleted_tokens) = changed(
        &local.tokens,
        &primary.tokens,
        |t| key(&t.accessor_id),
        |t| Token {
            create_index: 0,
            modify_index: 0,
            ..t.clone()
        },
    );
    Replication {
        policies,
        roles,
        tokens,
        deleted_policies,
        deleted_roles,
        deleted_tokens,
    }
}

/// What `/v1/acl/replication` reports (on the leader of a secondary
/// datacenter; other servers report it enabled and not running).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub running: bool,
    pub replicated_index: u64,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<SystemTime>,
    pub last_error_message: String,
}

/// The replication status, shared by the loop and the HTTP API.
#[derive(Default)]
pub struct Status(parking_lot::Mutex<Report>);

impl Status {
    pub fn report(&self) -> Report {
        self.0.lock().clone()
    }

    fn update(&self, f: impl FnOnce(&mut Report)) {
        f(&mut self.0.lock())
    }
}

/// Everything the loop works with.
pub struct Replicator {
    pub primary: String,
    pub consensus: Consensus,
    pub catalog: Arc<Catalog>,
    pub federation: Arc<Federation>,
    pub tokens: Arc<AgentTokens>,
    pub status: Arc<Status>,
}

impl Replicator {
    /// Replicates while this server leads, for as long as the agent runs.
    pub async fn run(self) {
        let mut leader = self.consensus.leader_watch();
        let mut pause = RETRY_FIRST;
        let mut index = 0u64;
        loop {
            if !self.consensus.is_leader() {
                self.status.update(|s| s.running = false);
                index = 0;
                tokio::select! {
                    changed = leader.changed() => if changed.is_err() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            self.status.update(|s| s.running = true);
            match self.round(index).await {
                Ok(next) => {
                    pause = RETRY_FIRST;
                    index = next;
                    self.status.update(|s| {
                        s.replicated_index = next;
                        s.last_success = Some(SystemTime::now());
                    });
                }
                Err(e) => {
                    tracing::warn!(primary = %self.primary, "acl replication: {e}");
                    self.status.update(|s| {
                        s.last_error = Some(SystemTime::now());
                        s.last_error_message = e;
                    });
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One round: waits for the primary's ACL index to pass `index`, then
    /// makes this datacenter agree with it. Returns the primary's index.
    async fn round(&self, index: u64) -> Result<u64, String> {
        let call = AclCall {
            method: "GET".into(),
            path: STATE_PATH.into(),
            query: Some(format!("index={index}&wait={}s&stale", WAIT.as_secs())),
            token: self.tokens.get(TokenKind::Replication),
            body: Vec::new(),
        };
        let reply = self
            .federation
            .forward(
                &self.primary,
                call,
                0,
                WAIT + WAIT / 16 + Duration::from_secs(5),
            )
            .await
            .map_err(|e| format!("reading the primary's ACLs: {e}"))?;
        if reply.status != 200 {
            return Err(format!(
                "reading the primary's ACLs: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ));
        }
        let primary: State = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("decoding the primary's ACLs: {e}"))?;
        let local = self
            .catalog
            .reader()
            .and_then(|r| State::read(&r))
            .map_err(|e| format!("state store: {e}"))?;
        let change = diff(&local, &primary);
        if !change.is_empty() {
            let (counts, deletes) = (
                (
                    change.policies.len(),
                    change.roles.len(),
                    change.tokens.len(),
                ),
                change.deleted_policies.len()
                    + change.deleted_roles.len()
                    + change.deleted_tokens.len(),
            );
            match self
                .consensus
                .write(Command::Acl(AclOp::Replicate(Box::new(change))))
                .await
            {
                Ok((_, Response::Rejected(m))) => return Err(format!("applying: {m}")),
                Ok(_) => tracing::debug!(
                    policies = counts.0,
                    roles = counts.1,
                    tokens = counts.2,
                    deleted = deletes,
                    "acl replication: applied the primary's changes"
                ),
                Err(e) => return Err(format!("applying: {e}")),
            }
        }
        // A primary whose index went backwards (restored from a snapshot)
        // is read in full again next time.
        Ok(if primary.index < index {
            0
        } else {
            primary.index
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, name: &str, rules: &str, index: u64) -> Policy {
        Policy {
            id: id.into(),
            name: name.into(),
            rules: rules.into(),
            create_index: index,
            modify_index: index,
            ..Policy::default()
        }
    }

    #[test]
    fn diff_ignores_indexes_and_finds_changes_and_deletions() {
        let local = State {
            index: 7,
            policies: vec![
                policy("a", "same", "r", 3),
                policy("b", "changed", "old", 4),
                policy("c", "gone", "r", 5),
            ],
            tokens: vec![Token {
                accessor_id: "t1".into(),
                secret_id: "s".into(),
                create_index: 6,
                ..Token::default()
            }],
            ..State::default()
        };
        let primary = State {
            index: 90,
            policies: vec![
                policy("a", "same", "r", 40),
                policy("b", "changed", "new", 41),
                policy("d", "new", "r", 42),
            ],
            tokens: vec![Token {
                accessor_id: "t1".into(),
                secret_id: "s".into(),
                create_index: 12,
                ..Token::default()
            }],
            ..State::default()
        };
        let d = diff(&local, &primary);
        let names: Vec<&str> = d.policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["changed", "new"]);
        assert_eq!(d.deleted_policies, ["c"]);
        assert!(
            d.tokens.is_empty(),
            "a token differing only in its indexes is the same"
        );
        assert!(d.deleted_tokens.is_empty());
        let gone = diff(&primary, &State::default());
        assert_eq!(gone.deleted_tokens, ["t1"]);
        assert!(diff(&primary, &primary).is_empty());
    }
}
