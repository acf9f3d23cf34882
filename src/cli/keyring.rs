//! `cairn keyring`: Consul's `consul keyring`, over `/v1/operator/keyring`.
//! One action per run (`-list`, `-list-primary`, `-install`, `-use`,
//! `-remove`); lists print one block per pool (`dc1 (LAN):`, then each key
//! with how many of the pool's members have it), and any failure is
//! `error: ...` with exit code 1.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use anyhow::Result;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// A keyring operation waits for every member (serf's query timeout,
/// longer in big clusters), so the request gets more time than most.
const TIMEOUT: Duration = Duration::from_secs(60);

const SYNOPSIS: &str = "Usage: cairn keyring [options]

  Manages encryption keys used for gossip messages. Gossip encryption is
  optional. When enabled, this command may be used to examine active encryption
  keys in the cluster, add new keys, and remove old ones. When combined, this
  functionality provides the ability to perform key rotation cluster-wide,
  without disrupting the cluster.

  All variations of the keyring command return 0 if all nodes reply and there
  are no errors. If any node fails to reply or reports failure, the exit code
  will be 1.
";

#[derive(Default)]
struct KeyringArgs {
    http: HttpArgs,
    install: String,
    use_key: String,
    remove: String,
    list: bool,
    list_primary: bool,
    relay_factor: i32,
    local_only: bool,
}

with_http!(KeyringArgs);

/// One pool of the answer (`api.KeyringResponse`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pool {
    #[serde(rename = "WAN", default)]
    wan: bool,
    #[serde(default)]
    datacenter: String,
    #[serde(default)]
    segment: String,
    #[serde(default)]
    messages: BTreeMap<String, String>,
    #[serde(default)]
    keys: BTreeMap<String, u64>,
    #[serde(default)]
    primary_keys: BTreeMap<String, u64>,
    #[serde(default)]
    num_nodes: u64,
}

fn flag_set() -> FlagSet<KeyringArgs> {
    let mut flags = http::flags();
    flags.extend([
        Flag::text(
            "install",
            "Install a new encryption key. This will broadcast the new key to all members in the cluster.",
            |o: &mut KeyringArgs, v| o.install = v,
        ),
        Flag::text(
            "use",
            "Change the primary encryption key, which is used to encrypt messages. The key must already be installed before this operation can succeed.",
            |o, v| o.use_key = v,
        ),
        Flag::text(
            "remove",
            "Remove the given key from the cluster. This operation may only be performed on keys which are not currently the primary key.",
            |o, v| o.remove = v,
        ),
        Flag::bool(
            "list",
            "List all keys currently in use within the cluster.",
            |o, v| o.list = v,
        ),
        Flag::bool(
            "list-primary",
            "List all primary keys currently in use within the cluster.",
            |o, v| o.list_primary = v,
        ),
        Flag::int(
            "relay-factor",
            "Setting this to a non-zero value will cause nodes to relay their response to the operation through this many randomly-chosen other nodes in the cluster. The maximum allowed value is 5.",
            |o, v| o.relay_factor = v,
        ),
        Flag::bool(
            "local-only",
            "Setting this to true will force the keyring query to only hit local servers (no WAN traffic). This flag can only be set for list queries.",
            |o, v| o.local_only = v,
        ),
    ]);
    FlagSet::new(SYNOPSIS, flags)
}

/// What one run does.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    List { primary: bool },
    Install(String),
    Use(String),
    Remove(String),
}

/// Consul's checks, in its order, before any request: exactly one action,
/// a relay factor in 0..=5, `-local-only` only with `-list`.
fn action(o: &KeyringArgs) -> Result<Action, String> {
    let mut actions = Vec::new();
    if o.list {
        actions.push(Action::List { primary: false });
    }
    if o.list_primary {
        actions.push(Action::List { primary: true });
    }
    for (value, make) in [
        (&o.install, Action::Install as fn(String) -> Action),
        (&o.use_key, Action::Use),
        (&o.remove, Action::Remove),
    ] {
        if !value.is_empty() {
            actions.push(make(value.clone()));
        }
    }
    if actions.len() > 1 {
        return Err("Only a single action is allowed".into());
    }
    let Some(action) = actions.pop() else {
        return Err(flag_set().usage());
    };
    if !(0..=5).contains(&o.relay_factor) {
        return Err("Error parsing relay factor: Relay factor must be in range: [0, 5]".into());
    }
    if o.local_only && !o.list {
        return Err(
            "Error validating local-only: local-only can only be set for list requests".into(),
        );
    }
    Ok(action)
}

/// Runs `cairn keyring` with the arguments after it; returns the exit code.
pub fn run(args: Vec<String>) -> Result<i32> {
    let set = flag_set();
    // As with Go's flag package, arguments after the flags are ignored.
    let (o, _rest) = match set.parse_or_report(&args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    let action = match action(&o) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{}", msg.trim_end());
            return Ok(1);
        }
    };
    let client = match o.http.client(TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error connecting to Consul agent: {e:#}");
            return Ok(1);
        }
    };
    let url = format!("{}/v1/operator/keyring", o.http.base());
    let mut query: Vec<(&str, String)> = Vec::new();
    if o.relay_factor != 0 {
        query.push(("relay-factor", o.relay_factor.to_string()));
    }
    let (info, request) = match &action {
        Action::List { primary } => {
            if o.local_only {
                query.push(("local-only", "true".into()));
            }
            let info = if *primary {
                "Gathering installed primary encryption keys..."
            } else {
                "Gathering installed encryption keys..."
            };
            (info, client.get(&url))
        }
        Action::Install(key) => (
            "Installing new gossip encryption key...",
            client.post(&url).json(&serde_json::json!({ "Key": key })),
        ),
        Action::Use(key) => (
            "Changing primary gossip encryption key...",
            client.put(&url).json(&serde_json::json!({ "Key": key })),
        ),
        Action::Remove(key) => (
            "Removing gossip encryption key...",
            client.delete(&url).json(&serde_json::json!({ "Key": key })),
        ),
    };
    println!("==> {info}");
    let outcome = request
        .query(&query)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check);
    let resp = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(1);
        }
    };
    if let Action::List { primary } = action {
        let pools: Vec<Pool> = match resp.json() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(1);
            }
        };
        for pool in &pools {
            println!("{}", format_pool(pool, primary));
        }
    }
    Ok(0)
}

/// Consul's `formatResponse`: a blank line, the pool's name, members'
/// messages, then each key with how many members have it.
fn format_pool(pool: &Pool, primary: bool) -> String {
    let mut name = if pool.wan {
        "WAN".to_string()
    } else {
        format!("{} (LAN)", pool.datacenter)
    };
    if !pool.segment.is_empty() {
        name.push_str(&format!(" [{}]", pool.segment));
    }
    let mut out = format!("\n{name}:\n");
    for (from, msg) in &pool.messages {
        out.push_str(&format!("  ===> {from}: {msg}\n"));
    }
    let keys = if primary {
        &pool.primary_keys
    } else {
        &pool.keys
    };
    for (key, n) in keys {
        out.push_str(&format!("  {key} [{n}/{}]\n", pool.num_nodes));
    }
    out.trim_end_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Action, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (o, _) = flag_set()
            .parse_or_report(&args)
            .map_err(|c| format!("exit {c}"))?;
        action(&o)
    }

    #[test]
    fn one_action_per_run_checked_as_consul_does() {
        assert_eq!(parse(&["-list"]), Ok(Action::List { primary: false }));
        assert_eq!(parse(&["-install", "K"]), Ok(Action::Install("K".into())));
        assert_eq!(parse(&["-use=K"]), Ok(Action::Use("K".into())));
        assert_eq!(
            parse(&["-list", "-install", "K"]),
            Err("Only a single action is allowed".into())
        );
        assert_eq!(
            parse(&["-use", "K", "-remove", "K"]),
            Err("Only a single action is allowed".into())
        );
        assert!(parse(&[]).unwrap_err().starts_with("Usage: cairn keyring"));
        assert_eq!(
            parse(&["-list", "-relay-factor=6"]),
            Err("Error parsing relay factor: Relay factor must be in range: [0, 5]".into())
        );
        assert_eq!(
            parse(&["-install", "K", "-local-only"]),
            Err("Error validating local-only: local-only can only be set for list requests".into())
        );
        assert!(parse(&["-list", "-local-only", "-relay-factor", "5"]).is_ok());
    }

    #[test]
    fn a_pool_prints_as_consul_prints_it() {
        let pool = Pool {
            wan: false,
            datacenter: "dc1".into(),
            segment: String::new(),
            messages: BTreeMap::new(),
            keys: BTreeMap::from([("A=".into(), 3), ("B=".into(), 2)]),
            primary_keys: BTreeMap::from([("A=".into(), 3)]),
            num_nodes: 3,
        };
        assert_eq!(
            format_pool(&pool, false),
            "\ndc1 (LAN):\n  A= [3/3]\n  B= [2/3]"
        );
        assert_eq!(format_pool(&pool, true), "\ndc1 (LAN):\n  A= [3/3]");
    }
}
