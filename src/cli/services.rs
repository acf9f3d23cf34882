//! `cairn services register|deregister`: services on the local agent from
//! flags or from config files (the `service {}` / `services []` blocks an
//! agent's own config files hold, JSON or HCL), as Consul's commands do.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "Usage: cairn services <subcommand> [options] [args]

  Registers and deregisters services on the local agent.

Subcommands:
    deregister    Deregister services with the local agent
    register      Register services with the local agent
";

type Outcome = std::result::Result<i32, String>;

pub fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(1);
    };
    let outcome = match sub.as_str() {
        "register" => register(rest),
        "deregister" => deregister(rest),
        "-h" | "-help" | "--help" => {
            print!("{USAGE}");
            return Ok(0);
        }
        other => {
            eprintln!("Unknown subcommand: {other:?}\n");
            eprint!("{USAGE}");
            return Ok(1);
        }
    };
    Ok(outcome.unwrap_or_else(|message| {
        eprintln!("{message}");
        1
    }))
}

#[derive(Default)]
struct RegisterArgs {
    http: HttpArgs,
    kind: String,
    id: String,
    name: String,
    address: String,
    port: i32,
    socket: String,
    tags: Vec<String>,
    meta: Vec<String>,
    tagged_addresses: Vec<String>,
}

#[derive(Default)]
struct DeregisterArgs {
    http: HttpArgs,
    id: String,
}

with_http!(RegisterArgs, DeregisterArgs);

fn flag_set<T: http::WithHttp>(synopsis: &'static str, own: Vec<Flag<T>>) -> FlagSet<T> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

/// `key=value` flag values as a map, as Consul's `FlagMapValue` reads them.
fn flag_map(flag: &str, pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!(
                "invalid value \"{p}\" for flag -{flag}: missing \"=\" value in argument: {p}"
            ));
        };
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(m)
}

/// A tagged address `host:port` (or a bare host) as `{Address, Port}`.
fn service_address(v: &str) -> Result<Value, String> {
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("Invalid Tagged Address: invalid port {p:?}"))?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (v, 0),
    };
    Ok(json!({"Address": host, "Port": port}))
}

fn register(args: &[String]) -> Outcome {
    let set = flag_set::<RegisterArgs>(
        "Usage: cairn services register [options] [FILE...]

  Register one or more services using the local agent API. Services can be
  registered from config files (HCL or JSON, with service {} or services []
  blocks) or using flags. The service is registered and the command returns;
  \"cairn services deregister\" removes it.
",
        vec![
            Flag::text(
                "id",
                "ID of the service to register for arg-based registration. If this \
                 isn't set, it will default to the -name value.",
                |o, v| o.id = v,
            ),
            Flag::text(
                "name",
                "Name of the service to register for arg-based registration.",
                |o, v| o.name = v,
            ),
            Flag::text(
                "address",
                "Address of the service to register for arg-based registration.",
                |o, v| o.address = v,
            ),
            Flag::int(
                "port",
                "Port of the service to register for arg-based registration.",
                |o, v| o.port = v,
            ),
            Flag::text(
                "socket",
                "Path to the Unix domain socket to register for arg-based registration \
                 (conflicts with address and port).",
                |o, v| o.socket = v,
            ),
            Flag::list(
                "meta",
                "Metadata to set on the service, formatted as key=value.",
                |o, v| o.meta.push(v),
            ),
            Flag::list("tag", "Tag to add to the service.", |o, v| o.tags.push(v)),
            Flag::list(
                "tagged-address",
                "Tagged address to set on the service, formatted as key=value.",
                |o, v| o.tagged_addresses.push(v),
            ),
            Flag::text("kind", "The services 'kind'", |o, v| o.kind = v),
        ],
    );
    let (o, files) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let meta = flag_map("meta", &o.meta)?;
    let mut tagged = Map::new();
    for (k, v) in flag_map("tagged-address", &o.tagged_addresses)? {
        tagged.insert(k, service_address(v.as_str().unwrap_or_default())?);
    }
    if files.is_empty() && o.name.is_empty() {
        return Err("Service registration requires at least one argument or flags.".into());
    }
    if !files.is_empty() && !o.name.is_empty() {
        return Err("Service registration requires arguments or -id, not both.".into());
    }
    let bodies: Vec<(String, Value)> = if files.is_empty() {
        let mut body = Map::new();
        let mut set = |k: &str, v: Value| {
            body.insert(k.to_string(), v);
        };
        if !o.kind.is_empty() {
            set("Kind", json!(o.kind));
        }
        if !o.id.is_empty() {
            set("ID", json!(o.id));
        }
        set("Name", json!(o.name));
        if !o.tags.is_empty() {
            set("Tags", json!(o.tags));
        }
        if !o.address.is_empty() {
            set("Address", json!(o.address));
        }
        if o.port != 0 {
            set("Port", json!(o.port));
        }
        if !o.socket.is_empty() {
            set("SocketPath", json!(o.socket));
        }
        if !meta.is_empty() {
            set("Meta", Value::Object(meta));
        }
        if !tagged.is_empty() {
            set("TaggedAddresses", Value::Object(tagged));
        }
        vec![(o.name.clone(), Value::Object(body))]
    } else {
        let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        let defs =
            crate::config::service_registrations(&paths).map_err(|e| format!("Error: {e}"))?;
        defs.into_iter()
            .map(|(body, decoded)| {
                // Flags fill what a file leaves out, as Consul's CombineArgs does.
                let mut body = match body {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                let mut fill = |key: &str, empty: bool, v: Value| {
                    let has = body.keys().any(|k| k.eq_ignore_ascii_case(key));
                    if !empty && !has {
                        body.insert(key.to_string(), v);
                    }
                };
                fill("ID", o.id.is_empty(), json!(o.id));
                fill("Address", o.address.is_empty(), json!(o.address));
                fill("Port", o.port == 0, json!(o.port));
                fill("Kind", o.kind.is_empty(), json!(o.kind));
                fill("SocketPath", o.socket.is_empty(), json!(o.socket));
                merge_map(&mut body, "Meta", &meta);
                merge_map(&mut body, "TaggedAddresses", &tagged);
                if !o.tags.is_empty() {
                    let key = body
                        .keys()
                        .find(|k| k.eq_ignore_ascii_case("Tags"))
                        .cloned()
                        .unwrap_or_else(|| "Tags".into());
                    let mut tags = body
                        .get(&key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    tags.extend(o.tags.iter().map(|t| json!(t)));
                    body.insert(key, Value::Array(tags));
                }
                (decoded.service.name.clone(), Value::Object(body))
            })
            .collect()
    };
    let c = o
        .http
        .client(TIMEOUT)
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))?;
    for (name, body) in bodies {
        c.put(format!("{}/v1/agent/service/register", o.http.base()))
            .json(&body)
            .send()
            .map_err(anyhow::Error::from)
            .and_then(check)
            .map_err(|e| format!("Error registering service \"{name}\": {e:#}"))?;
        println!("Registered service: {name}");
    }
    Ok(0)
}

/// Adds `extra` to the map under `key` (any case), flag values winning.
fn merge_map(body: &mut Map<String, Value>, key: &str, extra: &Map<String, Value>) {
    if extra.is_empty() {
        return;
    }
    let existing = body
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string());
    let mut m = body
        .get(&existing)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in extra {
        m.insert(k.clone(), v.clone());
    }
    body.insert(existing, Value::Object(m));
}

fn deregister(args: &[String]) -> Outcome {
    let set = flag_set::<DeregisterArgs>(
        "Usage: cairn services deregister [options] [FILE...]

  Deregister one or more services that were previously registered with the
  local agent, by -id or by the config files that define them.
",
        vec![Flag::text(
            "id",
            "ID to delete. This must not be set if arguments are given.",
            |o, v| o.id = v,
        )],
    );
    let (o, files) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if files.is_empty() && o.id.is_empty() {
        return Err("Service deregistration requires at least one argument or -id.".into());
    }
    if !files.is_empty() && !o.id.is_empty() {
        return Err("Service deregistration requires arguments or -id, not both.".into());
    }
    let ids: Vec<(String, String)> = if files.is_empty() {
        vec![(o.id.clone(), o.id.clone())]
    } else {
        let paths: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
        crate::config::service_registrations(&paths)
            .map_err(|e| format!("Error: {e}"))?
            .into_iter()
            .map(|(_, d)| (d.service.id.clone(), d.service.name.clone()))
            .collect()
    };
    let c = o
        .http
        .client(TIMEOUT)
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))?;
    for (id, name) in ids {
        if id.is_empty() {
            continue;
        }
        let mut url =
            reqwest::Url::parse(&format!("{}/v1/agent/service/deregister/", o.http.base()))
                .map_err(|e| format!("Error connecting to Consul agent: {e}"))?;
        if let Ok(mut seg) = url.path_segments_mut() {
            seg.pop_if_empty().push(&id);
        }
        c.put(url)
            .send()
            .map_err(anyhow::Error::from)
            .and_then(check)
            .map_err(|e| format!("Error registering service \"{name}\": {e:#}"))?;
        println!("Deregistered service: {id}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines_are_checked_first() {
        assert_eq!(
            register(&args(&[])).unwrap_err(),
            "Service registration requires at least one argument or flags."
        );
        assert_eq!(
            register(&args(&["-name=web", "web.json"])).unwrap_err(),
            "Service registration requires arguments or -id, not both."
        );
        assert_eq!(
            register(&args(&["-name=web", "-meta=novalue"])).unwrap_err(),
            "invalid value \"novalue\" for flag -meta: missing \"=\" value in argument: novalue"
        );
        assert_eq!(
            deregister(&args(&[])).unwrap_err(),
            "Service deregistration requires at least one argument or -id."
        );
    }

    #[test]
    fn tagged_addresses_split_host_and_port() {
        assert_eq!(
            service_address("10.0.0.1:8080").unwrap(),
            json!({"Address": "10.0.0.1", "Port": 8080})
        );
        assert_eq!(
            service_address("[::1]:80").unwrap(),
            json!({"Address": "::1", "Port": 80})
        );
        assert_eq!(
            service_address("example.com").unwrap(),
            json!({"Address": "example.com", "Port": 0})
        );
    }
}
