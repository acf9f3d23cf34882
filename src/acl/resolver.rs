//! Turns a request's secret into an [`Authorizer`].
//!
//! On a server the ACL tables are local: a secret's compiled authorizer is
//! cached until the ACL tables' index moves, so a request costs a map
//! lookup. A client agent holds no ACL state (its view is never fed it,
//! as tokens carry secrets); it asks a server and caches the answer for
//! `acl.token_ttl`, falling back on `acl.down_policy` when no server
//! answers.

use super::authorizer::{Level, Resource, Rules};
use super::tokens::{AgentTokens, TokenKind};
use super::types::{Identities, Token, ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET, MANAGEMENT_POLICY_ID};
use super::{rules, Authorizer};
use crate::catalog::query::Reader;
use crate::catalog::Catalog;
use crate::config::{AclConfig, DownPolicy};
use crate::consensus::Consensus;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a secret gives no authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// Consul's `ACL not found` (403).
    NotFound,
    /// No server could be asked (500 with the reason).
    Unavailable(String),
}

/// What a server tells a client agent about one secret: enough to compile
/// the authorizer locally.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub accessor: String,
    pub management: bool,
    pub rules: Vec<Rules>,
    /// Unix nanoseconds.
    pub expires: Option<i64>,
}

/// The agent's handle on ACL resolution, shared by HTTP and DNS.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    config: Option<AclConfig>,
    /// This agent's datacenter: policies and identities scoped to others
    /// grant nothing here.
    datacenter: String,
    /// The agent's own tokens (`default`, `dns`, `agent`), as they are now.
    tokens: Arc<AgentTokens>,
    catalog: Option<Arc<Catalog>>,
    /// Set on a client agent: tokens are resolved by a server.
    remote: Option<Consensus>,
    cache: parking_lot::Mutex<Cache>,
}

/// Entries kept before the cache starts over: unknown secrets are cached
/// too, and a caller must not grow the cache without bound by sending
/// random ones.
const CACHE_MAX: usize = 10_000;

#[derive(Default)]
struct Cache {
    /// The ACL index the entries were compiled at (servers).
    index: u64,
    entries: HashMap<String, Entry>,
}

#[derive(Clone)]
struct Entry {
    authz: Result<Authorizer, ResolveError>,
    expires: Option<i64>,
    /// Client agents: when the entry was fetched.
    fetched: Instant,
}

impl Cache {
    fn insert(&mut self, secret: &str, entry: Entry) {
        if self.entries.len() >= CACHE_MAX {
            self.entries.clear();
        }
        self.entries.insert(secret.to_string(), entry);
    }
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Resolver {
    /// ACLs off: every request gets [`Authorizer::allow_all`].
    pub fn disabled() -> Resolver {
        Resolver {
            inner: Arc::new(Inner {
                config: None,
                datacenter: String::new(),
                tokens: Arc::new(AgentTokens::from_config(&Default::default())),
                catalog: None,
                remote: None,
                cache: Default::default(),
            }),
        }
    }

    /// A server: tokens come from the local catalog replica.
    pub fn server(
        config: AclConfig,
        datacenter: String,
        catalog: Arc<Catalog>,
        tokens: Arc<AgentTokens>,
    ) -> Resolver {
        Resolver {
            inner: Arc::new(Inner {
                config: Some(config),
                datacenter,
                tokens,
                catalog: Some(catalog),
                remote: None,
                cache: Default::default(),
            }),
        }
    }

    /// A client agent: tokens are resolved by a server through `consensus`.
    pub fn client(config: AclConfig, consensus: Consensus, tokens: Arc<AgentTokens>) -> Resolver {
        Resolver {
            inner: Arc::new(Inner {
                config: Some(config),
                datacenter: String::new(),
                tokens,
                catalog: None,
                remote: Some(consensus),
                cache: Default::default(),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.config.is_some()
    }

    /// The datacenter tokens are resolved for (servers; empty on others).
    pub fn datacenter(&self) -> &str {
        &self.inner.datacenter
    }

    pub fn default_allow(&self) -> bool {
        self.inner.config.as_ref().is_none_or(|c| c.default_allow)
    }

    /// The agent's own tokens, which `PUT /v1/agent/token/:type` replaces.
    pub fn tokens(&self) -> &Arc<AgentTokens> {
        &self.inner.tokens
    }

    /// The secret a request without one acts with: the agent's `default`
    /// token, else anonymous.
    pub fn default_secret(&self) -> String {
        self.inner
            .tokens
            .default_token()
            .unwrap_or_else(|| ANONYMOUS_SECRET.to_string())
    }

    /// The secret the agent's own writes carry: `agent`, else `default`
    /// (None with ACLs off).
    pub fn agent_secret(&self) -> Option<String> {
        self.inner.config.as_ref()?;
        self.inner.tokens.agent_token()
    }

    /// The secret DNS answers under: `dns`, else `default`, else anonymous.
    pub fn dns_secret(&self) -> String {
        self.inner
            .tokens
            .get(TokenKind::Dns)
            .unwrap_or_else(|| self.default_secret())
    }

    /// Resolves `secret` (None: the agent's default token).
    pub async fn resolve(&self, secret: Option<&str>) -> Result<Authorizer, ResolveError> {
        let Some(config) = &self.inner.config else {
            return Ok(Authorizer::allow_all());
        };
        let default;
        let secret = match secret {
            Some(s) => s,
            None => {
                default = self.default_secret();
                &default
            }
        };
        if let Some(catalog) = &self.inner.catalog {
            return self.resolve_local(config, catalog, secret);
        }
        self.resolve_remote(config, secret).await
    }

    fn resolve_local(
        &self,
        config: &AclConfig,
        catalog: &Catalog,
        secret: &str,
    ) -> Result<Authorizer, ResolveError> {
        let index = catalog.changes().acl;
        let now = now_nanos();
        {
            let mut cache = self.inner.cache.lock();
            if cache.index != index {
                cache.index = index;
                cache.entries.clear();
            }
            if let Some(e) = cache.entries.get(secret) {
                if e.expires.is_none_or(|t| t > now) {
                    return e.authz.clone();
                }
            }
        }
        let identity = catalog
            .reader()
            .map_err(|e| ResolveError::Unavailable(e.to_string()))
            .and_then(|r| {
                identity_of(&r, secret, now, &self.inner.datacenter)
                    .map_err(|e| ResolveError::Unavailable(e.to_string()))
            })?;
        let entry = match identity {
            Some(id) => Entry {
                authz: Ok(Authorizer::compile(
                    &id.accessor,
                    &id.rules,
                    config.default_allow,
                    id.management,
                )),
                expires: id.expires,
                fetched: Instant::now(),
            },
            None => Entry {
                authz: Err(ResolveError::NotFound),
                expires: None,
                fetched: Instant::now(),
            },
        };
        let out = entry.authz.clone();
        let mut cache = self.inner.cache.lock();
        if cache.index == index {
            cache.insert(secret, entry);
        }
        out
    }

    async fn resolve_remote(
        &self,
        config: &AclConfig,
        secret: &str,
    ) -> Result<Authorizer, ResolveError> {
        let now = now_nanos();
        let cached = self.inner.cache.lock().entries.get(secret).cloned();
        if let Some(e) = &cached {
            if e.fetched.elapsed() < config.token_ttl && e.expires.is_none_or(|t| t > now) {
                return e.authz.clone();
            }
        }
        let Some(consensus) = &self.inner.remote else {
            return Err(ResolveError::Unavailable("no servers".into()));
        };
        match consensus.resolve_token(secret).await {
            Ok(found) => {
                let entry = Entry {
                    authz: match &found {
                        Some(id) => Ok(Authorizer::compile(
                            &id.accessor,
                            &id.rules,
                            config.default_allow,
                            id.management,
                        )),
                        None => Err(ResolveError::NotFound),
                    },
                    expires: found.as_ref().and_then(|i| i.expires),
                    fetched: Instant::now(),
                };
                let out = entry.authz.clone();
                self.inner.cache.lock().insert(secret, entry);
                out
            }
            // Servers unreachable: Consul's down_policy.
            Err(e) => match config.down_policy {
                DownPolicy::Allow => Ok(Authorizer::compile("", &[], true, false)),
                DownPolicy::Deny => Ok(Authorizer::compile("", &[], false, false)),
                // A token never cached is denied, as Consul's extend-cache
                // treats it ("acts like deny" for non-cached ACLs).
                DownPolicy::ExtendCache | DownPolicy::AsyncCache => match cached {
                    Some(e) => e.authz,
                    None => {
                        tracing::warn!(
                            "ACL servers unreachable and token not cached, denying: {e}"
                        );
                        Ok(Authorizer::compile("", &[], false, false))
                    }
                },
            },
        }
    }

    /// The authorizer DNS answers under: the agent's `dns` token, else its
    /// `default` token, else anonymous. A token that does not resolve
    /// leaves only the default policy.
    pub fn dns_authorizer(&self) -> Authorizer {
        let Some(config) = &self.inner.config else {
            return Authorizer::allow_all();
        };
        let secret = self.dns_secret();
        let fallback = || Authorizer::compile("", &[], config.default_allow, false);
        match &self.inner.catalog {
            Some(catalog) => self
                .resolve_local(config, catalog, &secret)
                .unwrap_or_else(|_| fallback()),
            None => {
                // Client agents: the last answer a server gave (refreshed
                // by HTTP-side resolution and by `refresh_dns`).
                let cache = self.inner.cache.lock();
                match cache.entries.get(&secret).map(|e| e.authz.clone()) {
                    Some(Ok(a)) => a,
                    _ => fallback(),
                }
            }
        }
    }

    /// Client agents: keeps the DNS token's authorizer fresh in the cache
    /// (DNS cannot wait on a server), at once when the `dns` or `default`
    /// token is replaced.
    pub async fn refresh_dns(self) {
        let Some(config) = self.inner.config.clone() else {
            return;
        };
        if self.inner.catalog.is_some() {
            return;
        }
        let mut changed = self
            .inner
            .tokens
            .watch(&[TokenKind::Dns, TokenKind::Default]);
        loop {
            self.prime_dns().await;
            tokio::select! {
                _ = tokio::time::sleep(config.token_ttl.max(Duration::from_secs(1))) => {}
                _ = changed.changed() => {}
            }
        }
    }

    /// Client agents: asks a server about the current DNS token now, so
    /// DNS answers under it from the next query on.
    pub async fn prime_dns(&self) {
        if self.inner.config.is_none() || self.inner.catalog.is_some() {
            return;
        }
        let secret = self.dns_secret();
        let _ = self.resolve(Some(&secret)).await;
    }
}

/// The compiled inputs of the token with `secret`, or None when there is
/// no such token or it expired.
/// Policies and identities scoped to other datacenters than `datacenter`
/// grant nothing here, as in Consul.
pub fn identity_of(
    r: &Reader<'_>,
    secret: &str,
    now: i64,
    datacenter: &str,
) -> Result<Option<Identity>, heed::Error> {
    let Some(token) = r.acl_token_by_secret(secret)? else {
        // Before the leader has created the anonymous token (just after
        // the first election), Consul answers for it with a synthesized
        // one that has no policies, so anonymous requests meet the default
        // policy rather than `ACL not found`.
        if secret == ANONYMOUS_SECRET {
            return Ok(Some(Identity {
                accessor: ANONYMOUS_ACCESSOR.to_string(),
                management: false,
                rules: Vec::new(),
                expires: None,
            }));
        }
        return Ok(None);
    };
    if token.expired_at(now) {
        return Ok(None);
    }
    Ok(Some(compile_inputs(r, &token, datacenter)?))
}

fn compile_inputs(r: &Reader<'_>, token: &Token, dc: &str) -> Result<Identity, heed::Error> {
    let mut out = Identity {
        accessor: token.accessor_id.clone(),
        management: false,
        rules: Vec::new(),
        expires: token.expiration_time,
    };
    let mut policy_ids: Vec<String> = token.policies.iter().map(|l| l.id.clone()).collect();
    add_identities(&mut out.rules, &token.identities, dc);
    for link in &token.roles {
        if let Some(role) = r.acl_role(&link.id)? {
            policy_ids.extend(role.policies.iter().map(|l| l.id.clone()));
            add_identities(&mut out.rules, &role.identities, dc);
        }
    }
    for id in policy_ids {
        if super::types::id_key(&id) == MANAGEMENT_POLICY_ID {
            out.management = true;
            continue;
        }
        if let Some(p) = r.acl_policy(&id)?.filter(|p| in_scope(&p.datacenters, dc)) {
            // Stored rules were validated when written.
            if let Ok(parsed) = rules::parse(&p.rules) {
                out.rules.push(parsed);
            }
        }
    }
    Ok(out)
}

/// Whether something limited to `datacenters` (none: all) applies in `dc`.
fn in_scope(datacenters: &[String], dc: &str) -> bool {
    datacenters.is_empty() || datacenters.iter().any(|d| d == dc)
}

/// Consul's synthetic policies for identities [agent/structs/acl.go]:
/// a service identity writes its service and sidecar and reads every
/// service and node; a node identity writes its node and reads every
/// service. Templated `builtin/service` and `builtin/node` are the same.
/// An identity limited to other datacenters than `dc` adds nothing (a
/// node identity names its one datacenter).
pub fn add_identities(out: &mut Vec<Rules>, ids: &Identities, dc: &str) {
    let service = |out: &mut Vec<Rules>, name: &str| {
        let mut r = Rules::default();
        r.add(Resource::Service, name, false, Level::Write);
        r.add(
            Resource::Service,
            &format!("{name}-sidecar-proxy"),
            false,
            Level::Write,
        );
        r.add(Resource::Service, "", true, Level::Read);
        r.add(Resource::Node, "", true, Level::Read);
        out.push(r);
    };
    let node = |out: &mut Vec<Rules>, name: &str| {
        let mut r = Rules::default();
        r.add(Resource::Node, name, false, Level::Write);
        r.add(Resource::Service, "", true, Level::Read);
        out.push(r);
    };
    for s in ids.service.iter().filter(|s| in_scope(&s.datacenters, dc)) {
        service(out, &s.service_name);
    }
    for n in ids.node.iter().filter(|n| n.datacenter == dc) {
        node(out, &n.node_name);
    }
    for t in ids
        .templated
        .iter()
        .filter(|t| in_scope(&t.datacenters, dc))
    {
        let name = t.name.as_deref().unwrap_or("");
        match t.template_name.as_str() {
            "builtin/service" => service(out, name),
            "builtin/node" => node(out, name),
            _ => {}
        }
    }
}
