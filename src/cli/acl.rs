//! `cairn acl`: bootstrap, policies and tokens through the HTTP API, with
//! Consul's flags and its output [command/acl/{policy,token}/formatter.go].

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "Usage: cairn acl <subcommand> [options] [args]

  Manages ACL tokens and policies.

Subcommands:
    bootstrap          Bootstrap the ACL system
    policy             Manage ACL policies (create, list, read, delete)
    set-agent-token    Assign tokens for the agent's usage
    token              Manage ACL tokens (create, list, read, delete)
";

pub fn run(args: Vec<String>) -> Result<i32> {
    let (sub, rest) = match args.split_first() {
        Some((s, r)) => (s.as_str(), r),
        None => {
            eprint!("{USAGE}");
            return Ok(1);
        }
    };
    let outcome = match (sub, rest.split_first()) {
        ("bootstrap", _) => bootstrap(rest),
        ("set-agent-token", _) => set_agent_token(rest),
        ("policy", Some((verb, r))) => policy(verb, r),
        ("token", Some((verb, r))) => token(verb, r),
        ("-h" | "-help" | "--help", _) => {
            print!("{USAGE}");
            return Ok(0);
        }
        _ => {
            eprint!("{USAGE}");
            return Ok(1);
        }
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("{e:#}");
            Ok(1)
        }
    }
}

#[derive(Default)]
struct Opts {
    http: HttpArgs,
    id: String,
    name: String,
    description: String,
    rules: String,
    policy_names: Vec<String>,
    policy_ids: Vec<String>,
    expires_ttl: Option<Duration>,
    self_: bool,
}
with_http!(Opts);

fn parse(synopsis: &'static str, own: Vec<Flag<Opts>>, args: &[String]) -> Result<Option<Opts>> {
    let mut flags = http::flags();
    flags.extend(own);
    let set = FlagSet::new(synopsis, flags);
    match set.parse_or_report(args) {
        Ok((o, rest)) if rest.is_empty() => Ok(Some(o)),
        Ok((_, rest)) => Err(anyhow!("Too many arguments: {}", rest.join(" "))),
        Err(code) => {
            if code != 0 {
                return Err(anyhow!("Failed to parse args"));
            }
            Ok(None)
        }
    }
}

fn id_flag() -> Flag<Opts> {
    Flag::text("id", "The `ID` of the object.", |o, v| o.id = v)
}

fn name_flag() -> Flag<Opts> {
    Flag::text("name", "The `name` of the policy.", |o, v| o.name = v)
}

/// Sends one request; the Go API client's error on a non-2xx answer.
fn send(o: &Opts, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
    let c = o.http.client(TIMEOUT)?;
    let mut req = c.request(method, format!("{}{path}", o.http.base()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = check(req.send()?)?;
    let text = resp.text()?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).context("decoding the agent's answer")
}

/// Go's `time.Time` `%v` form, which Consul's formatter prints.
fn go_time(v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S%.f +0000 UTC")
            .to_string(),
        Err(_) => s.to_string(),
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

fn print_token(t: &Value) {
    println!("AccessorID:       {}", str_of(t, "AccessorID"));
    println!("SecretID:         {}", str_of(t, "SecretID"));
    println!("Description:      {}", str_of(t, "Description"));
    println!(
        "Local:            {}",
        t["Local"].as_bool().unwrap_or(false)
    );
    println!("Create Time:      {}", go_time(&t["CreateTime"]));
    if !t["ExpirationTime"].is_null() {
        println!("Expiration Time:  {}", go_time(&t["ExpirationTime"]));
    }
    if let Some(ps) = t["Policies"].as_array().filter(|a| !a.is_empty()) {
        println!("Policies:");
        for p in ps {
            println!("   {} - {}", str_of(p, "ID"), str_of(p, "Name"));
        }
    }
    if let Some(rs) = t["Roles"].as_array().filter(|a| !a.is_empty()) {
        println!("Roles:");
        for r in rs {
            println!("   {} - {}", str_of(r, "ID"), str_of(r, "Name"));
        }
    }
    if let Some(ss) = t["ServiceIdentities"].as_array().filter(|a| !a.is_empty()) {
        println!("Service Identities:");
        for s in ss {
            let dcs = s["Datacenters"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "all".into());
            println!("   {} (Datacenters: {dcs})", str_of(s, "ServiceName"));
        }
    }
    if let Some(ns) = t["NodeIdentities"].as_array().filter(|a| !a.is_empty()) {
        println!("Node Identities:");
        for n in ns {
            println!(
                "   {} (Datacenter: {})",
                str_of(n, "NodeName"),
                str_of(n, "Datacenter")
            );
        }
    }
}

fn datacenters(p: &Value) -> String {
    p["Datacenters"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn print_policy(p: &Value) {
    println!("ID:           {}", str_of(p, "ID"));
    println!("Name:         {}", str_of(p, "Name"));
    println!("Description:  {}", str_of(p, "Description"));
    println!("Datacenters:  {}", datacenters(p));
    println!("Rules:\n{}", str_of(p, "Rules"));
}

fn bootstrap(args: &[String]) -> Result<i32> {
    let Some(o) = parse(
        "Usage: cairn acl bootstrap [options]\n\n  Bootstraps the ACL system and prints the management token.\n",
        vec![],
        args,
    )?
    else {
        return Ok(0);
    };
    let t = send(&o, reqwest::Method::PUT, "/v1/acl/bootstrap", None)
        .map_err(|e| anyhow!("Failed ACL bootstrapping: {e}"))?;
    print_token(&t);
    Ok(0)
}

const SET_AGENT_TOKEN_USAGE: &str = "Usage: cairn acl set-agent-token [options] TYPE TOKEN

  Sets one of the agent's ACL tokens while it runs. Unless the agent has
  acl.enable_token_persistence, the token lasts until the agent restarts.

  Token types:

    default       Used for requests (HTTP and DNS) that carry no token, and
                  for the agent's own operations when no agent token is set.
    agent         Used for the agent's own operations (registering itself,
                  anti-entropy, check updates).
    recovery      The agent recovery token.
    replication   The replication token.
    config_file_service_registration
                  The token for services and checks from config files.
    dns           Used for DNS lookups.

  TOKEN may be @<file> to read it from a file, or - to read it from stdin.
";

/// The API name of each `set-agent-token` TYPE (Consul's CLI says
/// `recovery` where the endpoint says `agent_recovery`).
fn agent_token_path(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "default" => "default",
        "agent" => "agent",
        "recovery" => "agent_recovery",
        "replication" => "replication",
        "config_file_service_registration" => "config_file_service_registration",
        "dns" => "dns",
        _ => return None,
    })
}

/// `cairn acl set-agent-token TYPE TOKEN`: `PUT /v1/agent/token/<type>`
/// [command/acl/agenttokens].
fn set_agent_token(args: &[String]) -> Result<i32> {
    let set = FlagSet::new(SET_AGENT_TOKEN_USAGE, http::flags::<Opts>());
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(if code == 0 { 0 } else { 1 }),
    };
    let (kind, token) = match rest.as_slice() {
        [] => return Err(anyhow!("Error! Missing TYPE and TOKEN arguments")),
        [kind] if agent_token_path(kind).is_some() => {
            return Err(anyhow!("Error! Missing TOKEN argument"))
        }
        [_] => return Err(anyhow!("Error! MISSING TYPE argument")),
        [kind, token] => (
            kind.as_str(),
            rules_text(token).map_err(|e| anyhow!("Error! {e:#}"))?,
        ),
        more => {
            return Err(anyhow!(
                "Error! Too many arguments: expected 2 got {}",
                more.len()
            ))
        }
    };
    let Some(path) = agent_token_path(kind) else {
        return Err(anyhow!("Unknown token type"));
    };
    send(
        &o,
        reqwest::Method::PUT,
        &format!("/v1/agent/token/{path}"),
        Some(json!({ "Token": token })),
    )
    .map_err(|e| anyhow!("Failed to set ACL token {kind:?}: {e}"))?;
    println!("ACL token {kind:?} set successfully");
    Ok(0)
}

/// `-rules` as Consul reads it: the text, `@file`, or `-` for stdin.
fn rules_text(v: &str) -> Result<String> {
    if let Some(path) = v.strip_prefix('@') {
        return std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read file {path}"));
    }
    if v == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s);
    }
    Ok(v.to_string())
}

/// `-id` or `-name` to a policy ID.
fn policy_id(o: &Opts) -> Result<String> {
    if !o.id.is_empty() {
        return Ok(o.id.clone());
    }
    if o.name.is_empty() {
        return Err(anyhow!("Must specify the -id or -name parameters"));
    }
    let p = send(
        o,
        reqwest::Method::GET,
        &format!("/v1/acl/policy/name/{}", o.name),
        None,
    )
    .map_err(|e| anyhow!("Error reading policy {:?}: {e}", o.name))?;
    Ok(str_of(&p, "ID").to_string())
}

fn policy(verb: &str, args: &[String]) -> Result<i32> {
    match verb {
        "create" => {
            let Some(o) = parse(
                "Usage: cairn acl policy create -name NAME [options]\n\n  Creates a new ACL policy.\n",
                vec![
                    name_flag(),
                    Flag::text("description", "A description of the policy.", |o, v| {
                        o.description = v
                    }),
                    Flag::text(
                        "rules",
                        "The policy `rules`: HCL or JSON text, @file, or - for stdin.",
                        |o, v| o.rules = v,
                    ),
                ],
                args,
            )?
            else {
                return Ok(0);
            };
            if o.name.is_empty() {
                return Err(anyhow!("Missing require '-name' flag"));
            }
            let rules = rules_text(&o.rules)?;
            let body = json!({"Name": o.name, "Description": o.description, "Rules": rules});
            let p = send(&o, reqwest::Method::PUT, "/v1/acl/policy", Some(body))
                .map_err(|e| anyhow!("Failed to create new policy: {e}"))?;
            print_policy(&p);
            Ok(0)
        }
        "list" => {
            let Some(o) = parse("Usage: cairn acl policy list [options]\n", vec![], args)? else {
                return Ok(0);
            };
            let ps = send(&o, reqwest::Method::GET, "/v1/acl/policies", None)
                .map_err(|e| anyhow!("Failed to retrieve the policy list: {e}"))?;
            for p in ps.as_array().into_iter().flatten() {
                println!("{}:", str_of(p, "Name"));
                println!("   ID:           {}", str_of(p, "ID"));
                println!("   Description:  {}", str_of(p, "Description"));
                println!("   Datacenters:  {}", datacenters(p));
            }
            Ok(0)
        }
        "read" | "delete" => {
            let Some(o) = parse(
                "Usage: cairn acl policy read|delete [-id ID | -name NAME] [options]\n",
                vec![id_flag(), name_flag()],
                args,
            )?
            else {
                return Ok(0);
            };
            let id = policy_id(&o)?;
            if verb == "read" {
                let p = send(
                    &o,
                    reqwest::Method::GET,
                    &format!("/v1/acl/policy/{id}"),
                    None,
                )
                .map_err(|e| anyhow!("Error reading policy {id:?}: {e}"))?;
                if p.is_null() {
                    return Err(anyhow!("Error reading policy {id:?}: not found"));
                }
                print_policy(&p);
            } else {
                send(
                    &o,
                    reqwest::Method::DELETE,
                    &format!("/v1/acl/policy/{id}"),
                    None,
                )
                .map_err(|e| anyhow!("Error deleting policy {id:?}: {e}"))?;
                println!("Policy {id:?} deleted successfully");
            }
            Ok(0)
        }
        other => Err(anyhow!("Unknown subcommand: acl policy {other}")),
    }
}

fn token(verb: &str, args: &[String]) -> Result<i32> {
    match verb {
        "create" => {
            let Some(o) = parse(
                "Usage: cairn acl token create [options]\n\n  Creates a new ACL token.\n",
                vec![
                    Flag::text("description", "A description of the token.", |o, v| {
                        o.description = v
                    }),
                    Flag::list("policy-name", "A policy `name` to link.", |o, v| {
                        o.policy_names.push(v)
                    }),
                    Flag::list("policy-id", "A policy `ID` to link.", |o, v| {
                        o.policy_ids.push(v)
                    }),
                    Flag::duration("expires-ttl", "How long the token lives.", |o, v| {
                        o.expires_ttl = Some(v)
                    }),
                ],
                args,
            )?
            else {
                return Ok(0);
            };
            let mut policies: Vec<Value> =
                o.policy_ids.iter().map(|id| json!({"ID": id})).collect();
            policies.extend(o.policy_names.iter().map(|n| json!({"Name": n})));
            let mut body = json!({"Description": o.description, "Policies": policies});
            if let Some(ttl) = o.expires_ttl {
                body["ExpirationTTL"] = json!(crate::duration::format(ttl));
            }
            let t = send(&o, reqwest::Method::PUT, "/v1/acl/token", Some(body))
                .map_err(|e| anyhow!("Failed to create new token: {e}"))?;
            print_token(&t);
            Ok(0)
        }
        "list" => {
            let Some(o) = parse("Usage: cairn acl token list [options]\n", vec![], args)? else {
                return Ok(0);
            };
            let ts = send(&o, reqwest::Method::GET, "/v1/acl/tokens", None)
                .map_err(|e| anyhow!("Failed to retrieve the token list: {e}"))?;
            for (i, t) in ts.as_array().into_iter().flatten().enumerate() {
                if i > 0 {
                    println!();
                }
                print_token(t);
            }
            Ok(0)
        }
        "read" | "delete" => {
            let mut own = vec![Flag::text(
                "accessor-id",
                "The `AccessorID` of the token.",
                |o: &mut Opts, v| o.id = v,
            )];
            own.push(Flag::text(
                "id",
                "The `AccessorID` of the token.",
                |o, v| o.id = v,
            ));
            if verb == "read" {
                own.push(Flag::bool("self", "Read the token in use.", |o, v| {
                    o.self_ = v
                }));
            }
            let Some(o) = parse(
                "Usage: cairn acl token read|delete -accessor-id ID [options]\n",
                own,
                args,
            )?
            else {
                return Ok(0);
            };
            if o.self_ {
                let t = send(&o, reqwest::Method::GET, "/v1/acl/token/self", None)
                    .map_err(|e| anyhow!("Error reading token: {e}"))?;
                print_token(&t);
                return Ok(0);
            }
            if o.id.is_empty() {
                return Err(anyhow!("Must specify the -accessor-id parameter"));
            }
            let id = &o.id;
            if verb == "read" {
                let t = send(
                    &o,
                    reqwest::Method::GET,
                    &format!("/v1/acl/token/{id}"),
                    None,
                )
                .map_err(|e| anyhow!("Error reading token {id:?}: {e}"))?;
                print_token(&t);
            } else {
                send(
                    &o,
                    reqwest::Method::DELETE,
                    &format!("/v1/acl/token/{id}"),
                    None,
                )
                .map_err(|e| anyhow!("Error deleting token {id:?}: {e}"))?;
                println!("Token {id:?} deleted successfully");
            }
            Ok(0)
        }
        other => Err(anyhow!("Unknown subcommand: acl token {other}")),
    }
}
