//! `cairn operator autopilot get-config|set-config|state` and `cairn
//! operator raft transfer-leader`, over `/v1/operator/autopilot/*` and
//! `/v1/operator/raft/transfer-leader`, with Consul's output texts and
//! exit codes (errors on stderr, exit 1).

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use anyhow::{anyhow, Result};
use serde_json::Value;
use std::time::Duration;

/// How long one request to the agent may take (a transfer takes about a
/// second on the leader).
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct GetArgs {
    http: HttpArgs,
    stale: bool,
}

#[derive(Default)]
struct SetArgs {
    http: HttpArgs,
    cleanup_dead_servers: Option<bool>,
    max_trailing_logs: Option<u64>,
    min_quorum: Option<u32>,
    last_contact_threshold: Option<Duration>,
    server_stabilization_time: Option<Duration>,
    redundancy_zone_tag: Option<String>,
    disable_upgrade_migration: Option<bool>,
    upgrade_version_tag: Option<String>,
}

#[derive(Default)]
struct StateArgs {
    http: HttpArgs,
    stale: bool,
    format: Option<String>,
}

#[derive(Default)]
struct TransferArgs {
    http: HttpArgs,
    id: Option<String>,
}

with_http!(GetArgs, SetArgs, StateArgs, TransferArgs);

fn flag_set<T: http::WithHttp>(synopsis: &'static str, own: Vec<Flag<T>>) -> FlagSet<T> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

/// Runs `operator autopilot <verb>`; the exit code.
pub fn autopilot(args: &[String]) -> i32 {
    let outcome = match args {
        [verb, rest @ ..] if verb == "get-config" => get_config(rest),
        [verb, rest @ ..] if verb == "set-config" => set_config(rest),
        [verb, rest @ ..] if verb == "state" => state(rest),
        _ => {
            eprintln!("Usage: cairn operator autopilot <get-config|set-config|state>");
            return 1;
        }
    };
    report(outcome)
}

/// Runs `operator raft transfer-leader`; the exit code.
pub fn transfer_leader(args: &[String]) -> i32 {
    report(transfer(args))
}

/// Errors are already Consul's full sentences.
fn report(outcome: Result<i32>) -> i32 {
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

/// The options, or the exit code when parsing ended the command (`-h`:
/// 0, a bad flag or a stray argument: 1).
fn parse<T: Default>(set: &FlagSet<T>, args: &[String]) -> Result<T, i32> {
    let (o, rest) = set.parse_or_report(args)?;
    if !rest.is_empty() {
        eprintln!(
            "Failed to parse args: unexpected arguments: {}",
            rest.join(" ")
        );
        return Err(1);
    }
    Ok(o)
}

fn fetch_config(o: &HttpArgs, stale: bool) -> Result<Value> {
    let c = o.client(TIMEOUT)?;
    let q = if stale { "?stale" } else { "" };
    let url = format!("{}/v1/operator/autopilot/configuration{q}", o.base());
    let resp = c
        .get(url)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .map_err(|e| anyhow!("Error querying Autopilot configuration: {e:#}"))?;
    Ok(resp.json()?)
}

fn get_config(args: &[String]) -> Result<i32> {
    let set = flag_set::<GetArgs>(
        "Usage: cairn operator autopilot get-config [options]

  Displays the current Autopilot configuration.
",
        vec![Flag::bool(
            "stale",
            "Permit any Consul server (non-leader) to respond to this request.",
            |o, v| o.stale = v,
        )],
    );
    let o = match parse(&set, args) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let v = fetch_config(&o.http, o.stale)?;
    print!("{}", config_text(&v));
    Ok(0)
}

/// Consul's `get-config` lines.
fn config_text(v: &Value) -> String {
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let quoted = |k: &str| format!("{:?}", v[k].as_str().unwrap_or(""));
    format!(
        "CleanupDeadServers = {}\nLastContactThreshold = {}\nMaxTrailingLogs = {}\nMinQuorum = {}\n\
         ServerStabilizationTime = {}\nRedundancyZoneTag = {}\nDisableUpgradeMigration = {}\n\
         UpgradeVersionTag = {}\n",
        v["CleanupDeadServers"].as_bool().unwrap_or(false),
        text("LastContactThreshold"),
        v["MaxTrailingLogs"].as_u64().unwrap_or(0),
        v["MinQuorum"].as_u64().unwrap_or(0),
        text("ServerStabilizationTime"),
        quoted("RedundancyZoneTag"),
        v["DisableUpgradeMigration"].as_bool().unwrap_or(false),
        quoted("UpgradeVersionTag"),
    )
}

fn set_config(args: &[String]) -> Result<i32> {
    let set = flag_set::<SetArgs>(
        "Usage: cairn operator autopilot set-config [options]

  Modifies the current Autopilot configuration.
",
        vec![
            Flag::bool(
                "cleanup-dead-servers",
                "Controls whether dead servers are removed automatically. Must be one of `true|false`.",
                |o, v| o.cleanup_dead_servers = Some(v),
            ),
            Flag::uint64(
                "max-trailing-logs",
                "Controls the maximum number of log entries that a server can trail the leader by before being considered unhealthy.",
                |o, v| o.max_trailing_logs = Some(v),
            ),
            Flag::uint(
                "min-quorum",
                "Sets the minimum number of servers required in a cluster before autopilot is allowed to prune dead servers.",
                |o, v| o.min_quorum = Some(v),
            ),
            Flag::duration(
                "last-contact-threshold",
                "Controls the maximum amount of time a server can go without contact from the leader before being considered unhealthy. Must be a duration value such as `200ms`.",
                |o, v| o.last_contact_threshold = Some(v),
            ),
            Flag::duration(
                "server-stabilization-time",
                "Controls the minimum amount of time a server must be stable in the 'healthy' state before being added to the cluster. Must be a duration value such as `10s`.",
                |o, v| o.server_stabilization_time = Some(v),
            ),
            Flag::text(
                "redundancy-zone-tag",
                "(Enterprise-only) Controls the node_meta tag name used for separating servers into different redundancy zones.",
                |o, v| o.redundancy_zone_tag = Some(v),
            ),
            Flag::bool(
                "disable-upgrade-migration",
                "(Enterprise-only) Controls whether Consul will avoid promoting new servers until it can perform a migration. Must be one of `true|false`.",
                |o, v| o.disable_upgrade_migration = Some(v),
            ),
            Flag::text(
                "upgrade-version-tag",
                "(Enterprise-only) The node_meta tag to use for version info when performing upgrade migrations.",
                |o, v| o.upgrade_version_tag = Some(v),
            ),
        ],
    );
    let o = match parse(&set, args) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let mut conf = fetch_config(&o.http, false)?;
    merge(&mut conf, &o);
    let index = conf["ModifyIndex"].as_u64().unwrap_or(0);
    let c = o.http.client(TIMEOUT)?;
    let url = format!(
        "{}/v1/operator/autopilot/configuration?cas={index}",
        o.http.base()
    );
    let ok: bool = c
        .put(url)
        .json(&conf)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json::<bool>()?))
        .map_err(|e| anyhow!("Error setting Autopilot configuration: {e:#}"))?;
    if ok {
        println!("Configuration updated!");
        Ok(0)
    } else {
        println!("Configuration could not be atomically updated, please try again");
        Ok(1)
    }
}

/// The flags that were given, over the configuration read.
fn merge(conf: &mut Value, o: &SetArgs) {
    let fmt = crate::duration::format;
    if let Some(v) = o.cleanup_dead_servers {
        conf["CleanupDeadServers"] = v.into();
    }
    if let Some(v) = o.max_trailing_logs {
        conf["MaxTrailingLogs"] = v.into();
    }
    if let Some(v) = o.min_quorum {
        conf["MinQuorum"] = v.into();
    }
    if let Some(v) = o.last_contact_threshold {
        conf["LastContactThreshold"] = fmt(v).into();
    }
    if let Some(v) = o.server_stabilization_time {
        conf["ServerStabilizationTime"] = fmt(v).into();
    }
    if let Some(v) = &o.redundancy_zone_tag {
        conf["RedundancyZoneTag"] = v.clone().into();
    }
    if let Some(v) = o.disable_upgrade_migration {
        conf["DisableUpgradeMigration"] = v.into();
    }
    if let Some(v) = &o.upgrade_version_tag {
        conf["UpgradeVersionTag"] = v.clone().into();
    }
}

fn state(args: &[String]) -> Result<i32> {
    let set = flag_set::<StateArgs>(
        "Usage: cairn operator autopilot state [options]

  Displays the current Autopilot state.
",
        vec![
            Flag::bool(
                "stale",
                "Permit any Consul server (non-leader) to respond to this request.",
                |o, v| o.stale = v,
            ),
            Flag::text("format", "The output format {pretty, json}", |o, v| {
                o.format = Some(v)
            }),
        ],
    );
    let o = match parse(&set, args) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let format = o.format.as_deref().unwrap_or("pretty");
    if format != "pretty" && format != "json" {
        return Err(anyhow!("Error: Unknown format: {format}"));
    }
    let c = o.http.client(TIMEOUT)?;
    // `?pretty`: the server's own field order, 4-space indented, as
    // Consul's JSON formatter prints it.
    let url = format!("{}/v1/operator/autopilot/state?pretty", o.http.base());
    let body = c
        .get(url)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.text()?))
        .map_err(|e| anyhow!("Error reading the Autopilot state: {e:#}"))?;
    if format == "json" {
        println!("{}", body.trim_end());
        return Ok(0);
    }
    let v: Value = serde_json::from_str(&body)?;
    print!("{}", state_text(&v));
    Ok(0)
}

/// Consul's pretty state formatter (CE fields).
fn state_text(v: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    out.push_str(&format!(
        "Healthy:                      {}\n",
        v["Healthy"].as_bool().unwrap_or(false)
    ));
    out.push_str(&format!(
        "Failure Tolerance:            {}\n",
        v["FailureTolerance"].as_u64().unwrap_or(0)
    ));
    out.push_str(&format!(
        "Optimistic Failure Tolerance: {}\n",
        v["OptimisticFailureTolerance"].as_u64().unwrap_or(0)
    ));
    out.push_str(&format!(
        "Leader:                       {}\n",
        s(&v["Leader"])
    ));
    out.push_str("Voters:\n");
    for id in v["Voters"].as_array().into_iter().flatten() {
        out.push_str(&format!("   {}\n", s(id)));
    }
    out.push_str("Servers:\n");
    // serde_json's map is ordered by key: Consul sorts servers by ID too.
    for (id, srv) in v["Servers"].as_object().into_iter().flatten() {
        out.push_str(&format!("   {id}\n"));
        for (label, key) in [
            ("Name:            ", "Name"),
            ("Address:         ", "Address"),
            ("Version:         ", "Version"),
            ("Status:          ", "Status"),
            ("Node Type:       ", "NodeType"),
            ("Node Status:     ", "NodeStatus"),
        ] {
            out.push_str(&format!("      {label}{}\n", s(&srv[key])));
        }
        out.push_str(&format!(
            "      Healthy:         {}\n",
            srv["Healthy"].as_bool().unwrap_or(false)
        ));
        out.push_str(&format!(
            "      Last Contact:    {}\n",
            s(&srv["LastContact"])
        ));
        out.push_str(&format!(
            "      Last Term:       {}\n",
            srv["LastTerm"].as_u64().unwrap_or(0)
        ));
        out.push_str(&format!(
            "      Last Index:      {}\n",
            srv["LastIndex"].as_u64().unwrap_or(0)
        ));
        if let Some(meta) = srv["Meta"].as_object().filter(|m| !m.is_empty()) {
            out.push_str("      Meta\n");
            for (k, val) in meta {
                out.push_str(&format!(
                    "         {k:?}: {:?}\n",
                    val.as_str().unwrap_or("")
                ));
            }
        }
    }
    out
}

fn transfer(args: &[String]) -> Result<i32> {
    let set = flag_set::<TransferArgs>(
        "Usage: cairn operator raft transfer-leader [options]

  Transfer raft leadership to another node.
",
        vec![Flag::text(
            "id",
            "The ID of the node to transfer leadership to.",
            |o, v| o.id = Some(v),
        )],
    );
    let o = match parse(&set, args) {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let c = o.http.client(TIMEOUT)?;
    let q = match o.id.as_deref().filter(|i| !i.is_empty()) {
        Some(id) => format!("?id={id}"),
        None => String::new(),
    };
    let url = format!("{}/v1/operator/raft/transfer-leader{q}", o.http.base());
    let reply: Value = c
        .put(url)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json::<Value>()?))
        .map_err(|e| {
            anyhow!("Error transfering leadership: Failed to transfer leadership {e:#}")
        })?;
    if reply["Success"] != true {
        return Err(anyhow!(
            "Error transfering leadership: Failed to transfer leadership"
        ));
    }
    println!("Success");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_config_prints_consuls_lines() {
        let v = serde_json::json!({
            "CleanupDeadServers": true, "LastContactThreshold": "200ms",
            "MaxTrailingLogs": 250, "MinQuorum": 0, "ServerStabilizationTime": "10s",
            "RedundancyZoneTag": "", "DisableUpgradeMigration": false, "UpgradeVersionTag": ""
        });
        assert_eq!(
            config_text(&v),
            "CleanupDeadServers = true\nLastContactThreshold = 200ms\nMaxTrailingLogs = 250\n\
             MinQuorum = 0\nServerStabilizationTime = 10s\nRedundancyZoneTag = \"\"\n\
             DisableUpgradeMigration = false\nUpgradeVersionTag = \"\"\n"
        );
    }

    #[test]
    fn state_prints_consuls_pretty_layout() {
        let v = serde_json::json!({
            "Healthy": true, "FailureTolerance": 1, "OptimisticFailureTolerance": 1,
            "Leader": "a", "Voters": ["a", "b"],
            "Servers": {"b": {"Name": "n2", "Address": "1.2.3.4:8300", "Version": "1.22.0",
                "Status": "voter", "NodeType": "voter", "NodeStatus": "alive", "Healthy": true,
                "LastContact": "2ms", "LastTerm": 3, "LastIndex": 41, "Meta": {}},
                "a": {"Name": "n1", "Address": "1.2.3.5:8300", "Version": "1.22.0",
                "Status": "leader", "NodeType": "voter", "NodeStatus": "alive", "Healthy": true,
                "LastContact": "0s", "LastTerm": 3, "LastIndex": 42, "Meta": {}}}
        });
        let text = state_text(&v);
        assert!(text.starts_with(
            "Healthy:                      true\nFailure Tolerance:            1\n\
             Optimistic Failure Tolerance: 1\nLeader:                       a\nVoters:\n   a\n   b\nServers:\n   a\n      Name:            n1\n"
        ), "{text}");
        assert!(text.contains(
            "      Last Contact:    2ms\n      Last Term:       3\n      Last Index:      41\n"
        ));
    }
}
