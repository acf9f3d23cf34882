//! What the leader does for ACLs [agent/consul/leader.go]: on
//! establishment it creates the anonymous token, the `global-management`
//! policy and the configured initial management token if they are
//! missing; while leading it reaps expired tokens. In a secondary
//! datacenter the builtins come from the primary by replication
//! (`super::replication`), so only the reaping is done.

use super::resolver::now_nanos;
use super::types::{
    Link, Policy, Token, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, MANAGEMENT_POLICY_ID,
};
use crate::catalog::acl::AclOp;
use crate::catalog::command::Command;
use crate::catalog::Catalog;
use crate::config::AclConfig;
use crate::consensus::Consensus;
use std::sync::Arc;
use std::time::Duration;

/// How often the leader looks for expired tokens.
const REAP_EVERY: Duration = Duration::from_secs(10);
/// How often the loop looks at leadership and the builtin objects.
const TICK: Duration = Duration::from_millis(250);
/// After a leadership change, how often it looks until ACLs are
/// established, and for how long: a client that sees `/v1/status/leader`
/// answer uses the initial management token at once.
const FAST_TICK: Duration = Duration::from_millis(20);
const FAST_FOR: Duration = Duration::from_secs(2);

pub async fn leader_loop(
    acl: AclConfig,
    primary: bool,
    consensus: Consensus,
    catalog: Arc<Catalog>,
) {
    let mut last_reap = tokio::time::Instant::now();
    let mut leader = consensus.leader_watch();
    let mut fast_until = tokio::time::Instant::now() + FAST_FOR;
    loop {
        let tick = if tokio::time::Instant::now() < fast_until {
            FAST_TICK
        } else {
            TICK
        };
        tokio::select! {
            changed = leader.changed() => match changed {
                Ok(()) => fast_until = tokio::time::Instant::now() + FAST_FOR,
                Err(_) => tokio::time::sleep(tick).await,
            },
            _ = tokio::time::sleep(tick) => {}
        }
        if !consensus.is_leader() {
            continue;
        }
        if let Some(op) = establishment(&acl, &catalog).filter(|_| primary) {
            match consensus.write(Command::Acl(op)).await {
                Ok(_) => {
                    tracing::info!("acl: created the builtin ACL objects");
                    fast_until = tokio::time::Instant::now();
                }
                Err(e) => tracing::warn!("acl: establishing ACLs failed: {e}"),
            }
            continue;
        }
        fast_until = tokio::time::Instant::now();
        if last_reap.elapsed() >= REAP_EVERY {
            last_reap = tokio::time::Instant::now();
            let now = now_nanos();
            let expired = catalog
                .reader()
                .and_then(|r| r.acl_tokens())
                .map(|ts| ts.iter().any(|t| t.expired_at(now)))
                .unwrap_or(false);
            if expired {
                if let Err(e) = consensus
                    .write(Command::Acl(AclOp::ReapExpired { now }))
                    .await
                {
                    tracing::warn!("acl: reaping expired tokens failed: {e}");
                }
            }
        }
    }
}

/// The Init command, when something it creates is missing.
fn establishment(acl: &AclConfig, catalog: &Catalog) -> Option<AclOp> {
    let r = catalog.reader().ok()?;
    let have_policy = r.acl_policy(MANAGEMENT_POLICY_ID).ok()?.is_some();
    let have_anon = r.acl_token(ANONYMOUS_ACCESSOR).ok()?.is_some();
    let initial = acl.tokens.initial_management.as_deref();
    let have_initial = match initial {
        Some(secret) => r.acl_token_by_secret(secret).ok()?.is_some(),
        None => true,
    };
    if have_policy && have_anon && have_initial {
        return None;
    }
    let now = now_nanos();
    Some(AclOp::Init {
        anonymous: Token {
            accessor_id: ANONYMOUS_ACCESSOR.into(),
            secret_id: ANONYMOUS_SECRET.into(),
            description: "Anonymous Token".into(),
            create_time: now,
            ..Token::default()
        },
        management: Policy::management(),
        initial: initial.map(|secret| Token {
            accessor_id: uuid::Uuid::new_v4().to_string(),
            secret_id: secret.to_string(),
            description: "Initial Management Token".into(),
            policies: vec![Link {
                id: MANAGEMENT_POLICY_ID.into(),
                name: String::new(),
            }],
            create_time: now,
            ..Token::default()
        }),
    })
}
