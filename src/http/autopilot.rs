//! `/v1/operator/autopilot/*`: the replicated autopilot configuration
//! (`GET`/`PUT configuration`, `?cas`), and the leader's view of its
//! servers' health (`health`, 429 while unhealthy as Consul's; `state`).
//! `operator:read` to read, `operator:write` to change, as in Consul.

use super::blocking::ensure_readable;
use super::decode::GoDuration;
use super::wire::{require_global, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Global};
use crate::catalog::command::{Command, Response as CmdResponse};
use crate::catalog::operator::{AutopilotConfig, AutopilotWrite, OperatorOp};
use crate::consensus::autopilot::{HealthReport, ServerHealth};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `api.AutopilotConfiguration` as Consul renders it (durations as Go strings).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigJson {
    cleanup_dead_servers: bool,
    last_contact_threshold: String,
    max_trailing_logs: u64,
    min_quorum: u32,
    server_stabilization_time: String,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
    create_index: u64,
    modify_index: u64,
}

impl From<&AutopilotConfig> for ConfigJson {
    fn from(c: &AutopilotConfig) -> Self {
        ConfigJson {
            cleanup_dead_servers: c.cleanup_dead_servers,
            last_contact_threshold: crate::duration::format(c.last_contact_threshold),
            max_trailing_logs: c.max_trailing_logs,
            min_quorum: c.min_quorum,
            server_stabilization_time: crate::duration::format(c.server_stabilization_time),
            redundancy_zone_tag: c.redundancy_zone_tag.clone(),
            disable_upgrade_migration: c.disable_upgrade_migration,
            upgrade_version_tag: c.upgrade_version_tag.clone(),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// A `PUT` body, decoded onto Consul's defaults (`api.NewAutopilotConfiguration`).
/// The indexes a client read may be sent back; they are ignored.
#[derive(Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ConfigBody {
    cleanup_dead_servers: bool,
    last_contact_threshold: GoDuration,
    max_trailing_logs: u64,
    min_quorum: u32,
    server_stabilization_time: GoDuration,
    redundancy_zone_tag: String,
    disable_upgrade_migration: bool,
    upgrade_version_tag: String,
    #[serde(rename = "CreateIndex")]
    _create_index: u64,
    #[serde(rename = "ModifyIndex")]
    _modify_index: u64,
}

impl Default for ConfigBody {
    fn default() -> Self {
        let d = AutopilotConfig::default();
        ConfigBody {
            cleanup_dead_servers: d.cleanup_dead_servers,
            last_contact_threshold: GoDuration(d.last_contact_threshold.as_nanos() as u64),
            max_trailing_logs: d.max_trailing_logs,
            min_quorum: d.min_quorum,
            server_stabilization_time: GoDuration(d.server_stabilization_time.as_nanos() as u64),
            redundancy_zone_tag: d.redundancy_zone_tag,
            disable_upgrade_migration: d.disable_upgrade_migration,
            upgrade_version_tag: d.upgrade_version_tag,
            _create_index: 0,
            _modify_index: 0,
        }
    }
}

impl From<ConfigBody> for AutopilotConfig {
    fn from(b: ConfigBody) -> Self {
        AutopilotConfig {
            cleanup_dead_servers: b.cleanup_dead_servers,
            last_contact_threshold: Duration::from_nanos(b.last_contact_threshold.0),
            max_trailing_logs: b.max_trailing_logs,
            min_quorum: b.min_quorum,
            server_stabilization_time: Duration::from_nanos(b.server_stabilization_time.0),
            redundancy_zone_tag: b.redundancy_zone_tag,
            disable_upgrade_migration: b.disable_upgrade_migration,
            upgrade_version_tag: b.upgrade_version_tag,
            create_index: 0,
            modify_index: 0,
        }
    }
}

/// `GET|PUT /v1/operator/autopilot/configuration`.
pub async fn configuration(ctx: Ctx) -> ApiResult {
    if ctx.method == axum::http::Method::PUT {
        return set_configuration(ctx).await;
    }
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Read)?;
    ensure_readable(&ctx, &opts).await?;
    let stored = ctx.catalog.reader()?.autopilot()?.unwrap_or_default();
    Ok(ctx.json(&ConfigJson::from(&stored)))
}

async fn set_configuration(ctx: Ctx) -> ApiResult {
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Write)?;
    let body: ConfigBody = super::decode::decode(&ctx.body)
        .map_err(|e| ApiError::bad(format!("Error parsing autopilot config: {e}")))?;
    let write = if ctx.query.has("cas") {
        let cas = ctx.query.get("cas").unwrap_or_default();
        let index = cas.parse::<u64>().map_err(|_| {
            ApiError::bad(format!(
                "Error parsing cas value: strconv.ParseUint: parsing {cas:?}: invalid syntax"
            ))
        })?;
        AutopilotWrite::Cas(index)
    } else {
        AutopilotWrite::Set
    };
    let cmd = Command::Operator(OperatorOp::Autopilot {
        config: body.into(),
        write,
    });
    let (_, resp) = ctx.consensus.write(cmd).await?;
    let applied = match resp {
        CmdResponse::Bool(b) => b,
        CmdResponse::Rejected(why) => return Err(ApiError::Internal(why)),
        other => {
            return Err(ApiError::Internal(format!(
                "unexpected response: {other:?}"
            )))
        }
    };
    // Consul answers `true` to a write without `?cas` whatever happened.
    Ok(ctx.json(&(applied || write == AutopilotWrite::Set)))
}

/// Go's `time.Time` as autopilot renders `StableSince`: RFC 3339, UTC, whole seconds.
fn stable_since(ms: u64) -> String {
    let secs = ((ms + 500) / 1000) as i64;
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

fn last_contact(s: &ServerHealth) -> String {
    crate::duration::format(Duration::from_millis(s.last_contact_ms.unwrap_or(0)))
}

async fn report(ctx: &Ctx) -> Result<HealthReport, ApiError> {
    ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    require_global(&authz, Global::Operator, Access::Read)?;
    Ok(ctx.consensus.autopilot_health().await?)
}

/// `api.ServerHealth`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServerHealthJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    address: &'a str,
    serf_status: &'a str,
    version: &'a str,
    leader: bool,
    last_contact: String,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    voter: bool,
    stable_since: String,
}

/// `api.OperatorHealthReply`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HealthJson<'a> {
    healthy: bool,
    failure_tolerance: u32,
    servers: Vec<ServerHealthJson<'a>>,
}

/// `api.AutopilotServer` (CE fields).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AutopilotServerJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    address: &'a str,
    node_status: &'a str,
    version: &'a str,
    last_contact: String,
    last_term: u64,
    last_index: u64,
    healthy: bool,
    stable_since: String,
    status: &'static str,
    meta: BTreeMap<String, String>,
    node_type: &'static str,
}

/// `api.AutopilotState` (CE fields).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateJson<'a> {
    healthy: bool,
    failure_tolerance: u32,
    optimistic_failure_tolerance: u32,
    servers: BTreeMap<&'a str, AutopilotServerJson<'a>>,
    leader: &'a str,
    voters: Vec<String>,
}

/// `GET /v1/operator/autopilot/health`: `api.OperatorHealthReply`, with
/// 429 while any voter is unhealthy.
pub async fn health(ctx: Ctx) -> ApiResult {
    let r = report(&ctx).await?;
    let servers = r
        .servers
        .iter()
        .map(|s| ServerHealthJson {
            id: &s.id,
            name: &s.name,
            address: &s.address,
            serf_status: &s.serf_status,
            version: &s.version,
            leader: s.leader,
            last_contact: last_contact(s),
            last_term: s.last_term,
            last_index: s.last_index,
            healthy: s.healthy,
            voter: s.voter,
            stable_since: stable_since(s.stable_since_ms),
        })
        .collect();
    let mut resp = ctx.json(&HealthJson {
        healthy: r.healthy,
        failure_tolerance: r.failure_tolerance,
        servers,
    });
    if !r.healthy {
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    }
    Ok(resp)
}

/// `GET /v1/operator/autopilot/state`: `api.AutopilotState` (CE fields).
pub async fn state(ctx: Ctx) -> ApiResult {
    let r = report(&ctx).await?;
    let servers = r
        .servers
        .iter()
        .map(|s| {
            let status = if s.leader {
                "leader"
            } else if s.voter {
                "voter"
            } else {
                "non-voter"
            };
            let json = AutopilotServerJson {
                id: &s.id,
                name: &s.name,
                address: &s.address,
                node_status: &s.serf_status,
                version: &s.version,
                last_contact: last_contact(s),
                last_term: s.last_term,
                last_index: s.last_index,
                healthy: s.healthy,
                stable_since: stable_since(s.stable_since_ms),
                status,
                meta: BTreeMap::new(),
                node_type: "voter",
            };
            (s.id.as_str(), json)
        })
        .collect();
    let voters = r.voters();
    let alive_voters = r
        .servers
        .iter()
        .filter(|s| s.voter && s.serf_status == "alive")
        .count();
    let optimistic = crate::consensus::autopilot::failure_tolerance(voters.len(), alive_voters);
    Ok(ctx.json(&StateJson {
        healthy: r.healthy,
        failure_tolerance: r.failure_tolerance,
        optimistic_failure_tolerance: optimistic,
        servers,
        leader: &r.leader,
        voters,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_since_is_whole_seconds_utc() {
        assert_eq!(stable_since(1_604_674_260_400), "2020-11-06T14:51:00Z");
        assert_eq!(stable_since(1_604_674_260_600), "2020-11-06T14:51:01Z");
    }

    #[test]
    fn config_renders_consuls_defaults() {
        let v = serde_json::to_value(ConfigJson::from(&AutopilotConfig::default())).unwrap();
        assert_eq!(v["LastContactThreshold"], "200ms");
        assert_eq!(v["ServerStabilizationTime"], "10s");
        assert_eq!(v["MaxTrailingLogs"], 250);
        assert_eq!(v["CleanupDeadServers"], true);
    }

    #[test]
    fn a_partial_body_keeps_the_defaults() {
        let b: ConfigBody = crate::http::decode::decode(
            br#"{"CleanupDeadServers":false,"LastContactThreshold":"1s","ModifyIndex":9}"#,
        )
        .unwrap();
        let c = AutopilotConfig::from(b);
        assert!(!c.cleanup_dead_servers);
        assert_eq!(c.last_contact_threshold, Duration::from_secs(1));
        assert_eq!(c.max_trailing_logs, 250);
        assert_eq!(c.server_stabilization_time, Duration::from_secs(10));
    }
}
