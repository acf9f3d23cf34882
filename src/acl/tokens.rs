//! The agent's own ACL tokens (Consul's `agent/token.Store`): `default`
//! (requests that carry none), `agent` (the agent's own writes), `dns`,
//! `agent_recovery`, `replication` and `config_file_service_registration`.
//!
//! They start from `acl.tokens` in the config files and can be replaced
//! while the agent runs through `PUT /v1/agent/token/:type`. Whoever uses
//! one reads it here at the moment of use (HTTP token fallback, DNS,
//! forwarded writes, anti-entropy), never a copy taken at startup, so a new
//! token takes effect on the next request. Readers take no lock: the set
//! is an immutable value swapped whole on a change (changes are rare,
//! reads are on every request).
//!
//! With `acl.enable_token_persistence` the tokens set through the API (not
//! those from config files) are written to `<data_dir>/acl-tokens.json`, in
//! Consul's format (`{"agent": "...", "default": "...", ...}`, empty ones
//! left out, the pre-1.11 `agent_master` name still read), mode 0600,
//! through a temporary file renamed over the old one. At start a persisted
//! token beats the one in the config files, with Consul's warning. Without
//! persistence a token set through the API lasts until the agent stops;
//! the file, if any, is neither read nor removed.

use crate::config::AclTokens;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

/// The file persisted tokens live in, under the data dir.
pub const TOKENS_FILE: &str = "acl-tokens.json";

/// One of the agent's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Default,
    Agent,
    AgentRecovery,
    Replication,
    ConfigFileRegistration,
    Dns,
}

const KINDS: usize = 6;

impl TokenKind {
    /// The `:type` of `PUT /v1/agent/token/:type`, with Consul's legacy
    /// spellings [agent/agent_endpoint.go AgentToken].
    pub fn from_api_name(name: &str) -> Option<TokenKind> {
        Some(match name {
            "default" | "acl_token" => TokenKind::Default,
            "agent" | "acl_agent_token" => TokenKind::Agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => {
                TokenKind::AgentRecovery
            }
            "replication" | "acl_replication_token" => TokenKind::Replication,
            "config_file_service_registration" => TokenKind::ConfigFileRegistration,
            "dns" | "dns_token" => TokenKind::Dns,
            _ => return None,
        })
    }

    /// The key in `acl-tokens.json` and in Consul's log lines.
    pub fn name(self) -> &'static str {
        match self {
            TokenKind::Default => "default",
            TokenKind::Agent => "agent",
            TokenKind::AgentRecovery => "agent_recovery",
            TokenKind::Replication => "replication",
            TokenKind::ConfigFileRegistration => "config_file_service_registration",
            TokenKind::Dns => "dns",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    const ALL: [TokenKind; KINDS] = [
        TokenKind::Default,
        TokenKind::Agent,
        TokenKind::AgentRecovery,
        TokenKind::Replication,
        TokenKind::ConfigFileRegistration,
        TokenKind::Dns,
    ];
}

/// Where a token's current value came from. Only API-set tokens are
/// persisted (Consul's `TokenSourceAPI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Config,
    Api,
}

#[derive(Debug, Clone)]
struct Slot {
    /// None: unset (an empty string is unset, as in Consul).
    value: Option<String>,
    source: Source,
}

/// `acl-tokens.json`, with Consul's field names.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PersistedTokens {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    replication: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    agent_recovery: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    default: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    agent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    config_file_service_registration: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    dns: String,
    /// Written by Consul before 1.11, read as `agent_recovery`.
    #[serde(default, skip_serializing)]
    agent_master: String,
}

impl PersistedTokens {
    fn get(&self, kind: TokenKind) -> &str {
        match kind {
            TokenKind::Default => &self.default,
            TokenKind::Agent => &self.agent,
            TokenKind::AgentRecovery if self.agent_recovery.is_empty() => &self.agent_master,
            TokenKind::AgentRecovery => &self.agent_recovery,
            TokenKind::Replication => &self.replication,
            TokenKind::ConfigFileRegistration => &self.config_file_service_registration,
            TokenKind::Dns => &self.dns,
        }
    }

    fn set(&mut self, kind: TokenKind, v: String) {
        let slot = match kind {
            TokenKind::Default => &mut self.default,
            TokenKind::Agent => &mut self.agent,
            TokenKind::AgentRecovery => &mut self.agent_recovery,
            TokenKind::Replication => &mut self.replication,
            TokenKind::ConfigFileRegistration => &mut self.config_file_service_registration,
            TokenKind::Dns => &mut self.dns,
        };
        *slot = v;
    }
}

/// Why tokens could not be read from or written to `acl-tokens.json`;
/// the texts are Consul's.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("failed reading tokens file {path:?}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to decode tokens file {path:?}: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
    #[error("Failed to persist tokens - {0}")]
    Write(std::io::Error),
}

/// The agent's tokens; share it as `Arc<AgentTokens>`.
pub struct AgentTokens {
    slots: ArcSwap<[Slot; KINDS]>,
    /// Per-kind change counters, for [`TokenWatch`].
    changes: watch::Sender<[u64; KINDS]>,
    /// `Some` with `enable_token_persistence`.
    file: Option<PathBuf>,
    /// Serializes file writes.
    write_lock: std::sync::Mutex<()>,
}

impl AgentTokens {
    /// The tokens of `config` alone, persisting nothing.
    pub fn from_config(config: &AclTokens) -> AgentTokens {
        AgentTokens::build(config, None, &PersistedTokens::default(), &mut |_| {})
    }

    /// The tokens at agent start: `config`, and with `persist` the tokens
    /// saved in `<data_dir>/acl-tokens.json`, which win (with Consul's
    /// warning for each one also in the config). A file that cannot be
    /// read or decoded is logged and the config's tokens are used.
    pub fn load(config: &AclTokens, persist: bool, data_dir: &Path) -> AgentTokens {
        if !persist {
            return AgentTokens::from_config(config);
        }
        let path = data_dir.join(TOKENS_FILE);
        let saved = match read_persisted(&path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "unable to load persisted tokens");
                PersistedTokens::default()
            }
        };
        AgentTokens::build(config, Some(path), &saved, &mut |kind| {
            tracing::warn!(
                "\"{}\" token present in both the configuration and persisted token store, using the persisted token",
                kind.name()
            )
        })
    }

    fn build(
        config: &AclTokens,
        file: Option<PathBuf>,
        saved: &PersistedTokens,
        warn_both: &mut dyn FnMut(TokenKind),
    ) -> AgentTokens {
        let slots = TokenKind::ALL.map(|kind| {
            let configured = config_value(config, kind).filter(|v| !v.is_empty());
            match saved.get(kind) {
                "" => Slot {
                    value: configured.map(str::to_string),
                    source: Source::Config,
                },
                persisted => {
                    if configured.is_some() {
                        warn_both(kind);
                    }
                    Slot {
                        value: Some(persisted.to_string()),
                        source: Source::Api,
                    }
                }
            }
        });
        AgentTokens {
            slots: ArcSwap::from_pointee(slots),
            changes: watch::channel([0; KINDS]).0,
            file,
            write_lock: std::sync::Mutex::new(()),
        }
    }

    /// The current value of one token (None: unset).
    pub fn get(&self, kind: TokenKind) -> Option<String> {
        self.slots.load()[kind.index()].value.clone()
    }

    /// Calls `f` with the current value of `kind`, without copying it.
    pub fn with<R>(&self, kind: TokenKind, f: impl FnOnce(Option<&str>) -> R) -> R {
        f(self.slots.load()[kind.index()].value.as_deref())
    }

    /// The token of requests that carry none (Consul's `UserToken`).
    pub fn default_token(&self) -> Option<String> {
        self.get(TokenKind::Default)
    }

    /// The token of the agent's own writes: `agent`, else `default`
    /// (Consul's `AgentToken()`).
    pub fn agent_token(&self) -> Option<String> {
        let slots = self.slots.load();
        slots[TokenKind::Agent.index()]
            .value
            .clone()
            .or_else(|| slots[TokenKind::Default.index()].value.clone())
    }

    /// Replaces `kind` with `value` as set through the API (empty: unset).
    /// Returns whether the token changed. The file is written by
    /// [`AgentTokens::persist`].
    pub fn set(&self, kind: TokenKind, value: &str) -> bool {
        let value = (!value.is_empty()).then(|| value.to_string());
        let slot = Slot {
            value: value.clone(),
            source: Source::Api,
        };
        let prev = self.slots.rcu(|cur| {
            let mut next = (**cur).clone();
            next[kind.index()] = slot.clone();
            next
        });
        let old = &prev[kind.index()];
        let changed = old.value != value || old.source != Source::Api;
        if changed {
            self.changes.send_modify(|c| c[kind.index()] += 1);
        }
        changed
    }

    /// Writes the API-set tokens to `acl-tokens.json` when persistence is
    /// on (a no-op otherwise). Blocking: call it off the async runtime.
    /// The file holds the tokens as they are when it is written, so the
    /// last writer leaves the newest state whatever order writes finish in.
    pub fn persist(&self) -> Result<(), PersistError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let _serial = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = PersistedTokens::default();
        for (kind, slot) in TokenKind::ALL.iter().zip(self.slots.load().iter()) {
            if let (Some(v), Source::Api) = (&slot.value, slot.source) {
                out.set(*kind, v.clone());
            }
        }
        let data = serde_json::to_vec(&out).map_err(|e| PersistError::Write(e.into()))?;
        write_atomic(path, &data).map_err(|e| {
            tracing::warn!(error = %e, "failed to persist tokens");
            PersistError::Write(e)
        })
    }

    /// Whether API-set tokens are saved to disk.
    pub fn persistent(&self) -> bool {
        self.file.is_some()
    }

    /// Wakes when any of `kinds` changes.
    pub fn watch(&self, kinds: &[TokenKind]) -> TokenWatch {
        let rx = self.changes.subscribe();
        let seen = *rx.borrow();
        TokenWatch {
            rx,
            kinds: kinds.to_vec(),
            seen,
        }
    }
}

fn config_value(config: &AclTokens, kind: TokenKind) -> Option<&str> {
    match kind {
        TokenKind::Default => config.default.as_deref(),
        TokenKind::Agent => config.agent.as_deref(),
        TokenKind::AgentRecovery => config.agent_recovery.as_deref(),
        TokenKind::Replication => config.replication.as_deref(),
        TokenKind::ConfigFileRegistration => config.config_file_service_registration.as_deref(),
        TokenKind::Dns => config.dns.as_deref(),
    }
}

/// A subscription to changes of some of the agent's tokens (Consul's
/// `token.Notifier`).
pub struct TokenWatch {
    rx: watch::Receiver<[u64; KINDS]>,
    kinds: Vec<TokenKind>,
    seen: [u64; KINDS],
}

impl TokenWatch {
    /// Resolves once one of the watched tokens changed since the last
    /// call (or since the watch was made). Never resolves if the store is
    /// gone.
    pub async fn changed(&mut self) {
        let (kinds, seen) = (&self.kinds, self.seen);
        let res = self
            .rx
            .wait_for(|c| kinds.iter().any(|k| c[k.index()] != seen[k.index()]))
            .await
            .map(|c| *c);
        match res {
            Ok(now) => self.seen = now,
            Err(_) => std::future::pending().await,
        }
    }
}

fn read_persisted(path: &Path) -> Result<PersistedTokens, PersistError> {
    let shown = || path.display().to_string();
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PersistedTokens::default()),
        Err(source) => {
            return Err(PersistError::Read {
                path: shown(),
                source,
            })
        }
    };
    serde_json::from_slice(&buf).map_err(|source| PersistError::Decode {
        path: shown(),
        source,
    })
}

/// Writes `data` to `path` so that a reader sees the old file or the new
/// one, never a mix: a 0600 temporary file in the same directory, synced,
/// renamed over `path`, then the directory synced (Consul's
/// `WriteAtomicWithPerms(path, data, 0700, 0600)`).
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".acl-tokens")
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config() -> AclTokens {
        AclTokens {
            default: Some("cfg-default".into()),
            agent: Some("cfg-agent".into()),
            ..AclTokens::default()
        }
    }

    #[test]
    fn api_names_and_legacy_aliases() {
        for (name, kind) in [
            ("default", TokenKind::Default),
            ("acl_token", TokenKind::Default),
            ("agent", TokenKind::Agent),
            ("acl_agent_token", TokenKind::Agent),
            ("agent_recovery", TokenKind::AgentRecovery),
            ("agent_master", TokenKind::AgentRecovery),
            ("acl_agent_master_token", TokenKind::AgentRecovery),
            ("replication", TokenKind::Replication),
            ("acl_replication_token", TokenKind::Replication),
            (
                "config_file_service_registration",
                TokenKind::ConfigFileRegistration,
            ),
            ("dns", TokenKind::Dns),
            ("dns_token", TokenKind::Dns),
        ] {
            assert_eq!(TokenKind::from_api_name(name), Some(kind), "{name}");
        }
        assert_eq!(TokenKind::from_api_name("Default"), None);
        assert_eq!(TokenKind::from_api_name(""), None);
    }

    #[test]
    fn agent_token_falls_back_to_default() {
        let t = AgentTokens::from_config(&AclTokens {
            default: Some("d".into()),
            ..AclTokens::default()
        });
        assert_eq!(t.agent_token().as_deref(), Some("d"));
        assert!(t.set(TokenKind::Agent, "a"));
        assert_eq!(t.agent_token().as_deref(), Some("a"));
        assert!(!t.set(TokenKind::Agent, "a"), "same value: no change");
        assert!(t.set(TokenKind::Agent, ""));
        assert_eq!(t.agent_token().as_deref(), Some("d"), "empty unsets");
    }

    #[test]
    fn persisted_tokens_beat_the_config_and_only_api_ones_are_saved() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = AgentTokens::load(&config(), true, dir.path());
        assert!(t.set(TokenKind::Default, "api-default"));
        assert!(t.set(TokenKind::Dns, "api-dns"));
        t.persist().expect("persist");
        let path = dir.path().join(TOKENS_FILE);
        let text = std::fs::read_to_string(&path).expect("file");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"default": "api-default", "dns": "api-dns"})
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != TOKENS_FILE)
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

        let mut warned = Vec::new();
        let again = AgentTokens::build(
            &config(),
            Some(path.clone()),
            &read_persisted(&path).expect("read"),
            &mut |k| warned.push(k),
        );
        assert_eq!(again.default_token().as_deref(), Some("api-default"));
        assert_eq!(again.get(TokenKind::Dns).as_deref(), Some("api-dns"));
        assert_eq!(again.agent_token().as_deref(), Some("cfg-agent"));
        assert_eq!(warned, vec![TokenKind::Default]);

        // Without persistence the file is ignored.
        let plain = AgentTokens::load(&config(), false, dir.path());
        assert_eq!(plain.default_token().as_deref(), Some("cfg-default"));
        plain.set(TokenKind::Default, "x");
        plain.persist().expect("no-op");
        assert!(std::fs::read_to_string(&path)
            .expect("file")
            .contains("api-default"));
    }

    #[test]
    fn legacy_agent_master_and_broken_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKENS_FILE);
        std::fs::write(&path, r#"{"agent_master": "old"}"#).expect("write");
        let t = AgentTokens::load(&AclTokens::default(), true, dir.path());
        assert_eq!(t.get(TokenKind::AgentRecovery).as_deref(), Some("old"));

        std::fs::write(&path, [1u8, 2, 3]).expect("write");
        match read_persisted(&path) {
            Err(e @ PersistError::Decode { .. }) => {
                assert!(e.to_string().starts_with("failed to decode tokens file"))
            }
            other => panic!("{other:?}"),
        }
        let t = AgentTokens::load(&config(), true, dir.path());
        assert_eq!(t.default_token().as_deref(), Some("cfg-default"));
    }

    #[tokio::test]
    async fn watches_wake_only_for_their_kinds() {
        let t = AgentTokens::from_config(&AclTokens::default());
        let mut w = t.watch(&[TokenKind::Agent, TokenKind::Default]);
        t.set(TokenKind::Dns, "x");
        let woke = tokio::time::timeout(std::time::Duration::from_millis(50), w.changed()).await;
        assert!(woke.is_err(), "a dns change does not wake an agent watch");
        t.set(TokenKind::Agent, "y");
        tokio::time::timeout(std::time::Duration::from_secs(1), w.changed())
            .await
            .expect("woken");
    }
}
