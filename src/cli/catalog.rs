//! `cairn catalog datacenters|nodes|services`: the catalog from the command
//! line, column for column as Consul prints it.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

const USAGE: &str = "Usage: cairn catalog <subcommand> [options] [args]

  Lists datacenters, nodes and services from the catalog.

Subcommands:
    datacenters    Lists all known datacenters
    nodes          Lists all nodes in the given datacenter
    services       Lists all registered services in a datacenter
";

type Outcome = std::result::Result<i32, String>;

pub fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(1);
    };
    let outcome = match sub.as_str() {
        "datacenters" => datacenters(rest),
        "nodes" => nodes(rest),
        "services" => services(rest),
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
struct DcArgs {
    http: HttpArgs,
}

#[derive(Default)]
struct NodesArgs {
    http: HttpArgs,
    stale: bool,
    datacenter: Option<String>,
    detailed: bool,
    near: Option<String>,
    node_meta: Vec<String>,
    service: Option<String>,
    filter: Option<String>,
}

#[derive(Default)]
struct ServicesArgs {
    http: HttpArgs,
    stale: bool,
    datacenter: Option<String>,
    node: Option<String>,
    node_meta: Vec<String>,
    tags: bool,
}

with_http!(DcArgs, NodesArgs, ServicesArgs);

fn flag_set<T: http::WithHttp>(synopsis: &'static str, own: Vec<Flag<T>>) -> FlagSet<T> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

const STALE_HELP: &str = "Permit any Consul server (non-leader) to respond to this request. \
     This allows for lower latency and higher throughput, but can result in stale data.";
const DC_HELP: &str = "Name of the datacenter to query. If unspecified, this will default to \
     the datacenter of the queried agent.";

fn no_arguments(rest: &[String]) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Too many arguments (expected 0, got {})",
            rest.len()
        ))
    }
}

/// GETs `path` with `query` and decodes the JSON answer.
fn get_json(h: &HttpArgs, path: &str, query: &[(String, String)]) -> Result<Value, String> {
    let c = h
        .client(TIMEOUT)
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))?;
    c.get(format!("{}{path}", h.base()))
        .query(query)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json::<Value>()?))
        .map_err(|e| format!("{e:#}"))
}

/// `-node-meta key=value` pairs as `?node-meta=key:value`, checked as
/// Consul's `FlagMapValue` checks them.
fn node_meta_query(pairs: &[String], q: &mut Vec<(String, String)>) -> Result<(), String> {
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!(
                "invalid value \"{p}\" for flag -node-meta: missing \"=\" value in argument: {p}"
            ));
        };
        q.push(("node-meta".into(), format!("{k}:{v}")));
    }
    Ok(())
}

fn datacenters(args: &[String]) -> Outcome {
    let set = flag_set::<DcArgs>(
        "Usage: cairn catalog datacenters [options]

  Retrieves the list of all known datacenters.
",
        vec![],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let dcs = get_json(&o.http, "/v1/catalog/datacenters", &[])
        .map_err(|e| format!("Error listing datacenters: {e}"))?;
    let dcs = dcs.as_array().cloned().unwrap_or_default();
    if dcs.is_empty() {
        eprintln!("No datacenters found");
        return Ok(1);
    }
    for dc in dcs {
        println!("{}", dc.as_str().unwrap_or_default());
    }
    Ok(0)
}

fn nodes(args: &[String]) -> Outcome {
    let set = flag_set::<NodesArgs>(
        "Usage: cairn catalog nodes [options]

  Retrieves the list nodes registered in a given datacenter. By default, the
  datacenter of the local agent is queried. -detailed adds full node IDs,
  tagged addresses and metadata; -service lists only the nodes providing a
  service; -near sorts by estimated round-trip time from a node.
",
        vec![
            Flag::text("filter", "Filter to use with the request", |o, v| {
                o.filter = Some(v)
            }),
            Flag::bool(
                "detailed",
                "Output detailed information about the nodes including their addresses and metadata.",
                |o, v| o.detailed = v,
            ),
            Flag::text(
                "near",
                "Node name to sort the node list in ascending order based on estimated \
                 round-trip time from that node. Passing \"_agent\" will use this agent's \
                 node for sorting.",
                |o, v| o.near = Some(v),
            ),
            Flag::list(
                "node-meta",
                "Metadata to filter nodes with the given `key=value` pairs.",
                |o, v| o.node_meta.push(v),
            ),
            Flag::text(
                "service",
                "Service `id or name` to filter nodes. Only nodes which are providing the \
                 given service will be returned.",
                |o, v| o.service = Some(v),
            ),
            Flag::bool("stale", STALE_HELP, |o, v| o.stale = v),
            Flag::text("datacenter", DC_HELP, |o, v| o.datacenter = Some(v)),
        ],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let mut q: Vec<(String, String)> = Vec::new();
    if o.stale {
        q.push(("stale".into(), String::new()));
    }
    if let Some(dc) = o.datacenter.as_ref().filter(|d| !d.is_empty()) {
        q.push(("dc".into(), dc.clone()));
    }
    if let Some(near) = o.near.as_ref().filter(|d| !d.is_empty()) {
        q.push(("near".into(), near.clone()));
    }
    if let Some(f) = o.filter.as_ref().filter(|d| !d.is_empty()) {
        q.push(("filter".into(), f.clone()));
    }
    node_meta_query(&o.node_meta, &mut q)?;
    let list = match &o.service {
        Some(s) if !s.is_empty() => {
            let path = format!("/v1/catalog/service/{}", urlencode_segment(s));
            get_json(&o.http, &path, &q)
                .map_err(|e| format!("Error listing nodes for service: {e}"))?
        }
        _ => get_json(&o.http, "/v1/catalog/nodes", &q)
            .map_err(|e| format!("Error listing nodes: {e}"))?,
    };
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        eprintln!("No nodes match the given query - try expanding your search.");
        return Ok(0);
    }
    let mut rows = vec![if o.detailed {
        ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
            .map(String::from)
            .to_vec()
    } else {
        ["Node", "ID", "Address", "DC"].map(String::from).to_vec()
    }];
    for n in &list {
        let text = |k: &str| n[k].as_str().unwrap_or_default().to_string();
        // `catalog/service` entries name the node's meta `NodeMeta`.
        let meta = if n.get("NodeMeta").is_some() {
            &n["NodeMeta"]
        } else {
            &n["Meta"]
        };
        if o.detailed {
            rows.push(vec![
                text("Node"),
                text("ID"),
                text("Address"),
                text("Datacenter"),
                map_to_kv(&n["TaggedAddresses"]),
                map_to_kv(meta),
            ]);
        } else {
            let id = text("ID");
            let short = match id.find('-') {
                Some(i) if i > 0 => id[..i].to_string(),
                _ => id,
            };
            rows.push(vec![
                text("Node"),
                short,
                text("Address"),
                text("Datacenter"),
            ]);
        }
    }
    print!("{}", columnize(&rows));
    Ok(0)
}

/// A map as `k=v, k=v`, sorted by key, as Consul's `mapToKV` writes it.
fn map_to_kv(m: &Value) -> String {
    let Some(m) = m.as_object() else {
        return String::new();
    };
    let sorted: BTreeMap<&String, &Value> = m.iter().collect();
    sorted
        .into_iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn urlencode_segment(s: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a valid URL");
    if let Ok(mut seg) = url.path_segments_mut() {
        seg.pop_if_empty().push(s);
    }
    url.path()[1..].to_string()
}

/// Rows as ryanuber/columnize formats them: each column but the last padded
/// to its widest cell, joined by two spaces.
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn services(args: &[String]) -> Outcome {
    let set = flag_set::<ServicesArgs>(
        "Usage: cairn catalog services [options]

  Retrieves the list services registered in a given datacenter. By default,
  the datacenter of the local agent is queried. -tags shows each service's
  tags; -node lists the services of one node.
",
        vec![
            Flag::text(
                "node",
                "Node `id or name` for which to list services.",
                |o, v| o.node = Some(v),
            ),
            Flag::list(
                "node-meta",
                "Metadata to filter nodes with the given `key=value` pairs. If specified, \
                 only services running on nodes matching the given metadata will be returned.",
                |o, v| o.node_meta.push(v),
            ),
            Flag::bool(
                "tags",
                "Display each service's tags as a comma-separated list beside each service entry.",
                |o, v| o.tags = v,
            ),
            Flag::bool("stale", STALE_HELP, |o, v| o.stale = v),
            Flag::text("datacenter", DC_HELP, |o, v| o.datacenter = Some(v)),
        ],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let mut q: Vec<(String, String)> = Vec::new();
    if o.stale {
        q.push(("stale".into(), String::new()));
    }
    if let Some(dc) = o.datacenter.as_ref().filter(|d| !d.is_empty()) {
        q.push(("dc".into(), dc.clone()));
    }
    node_meta_query(&o.node_meta, &mut q)?;
    let mut services: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match &o.node {
        Some(n) if !n.is_empty() => {
            let path = format!("/v1/catalog/node/{}", urlencode_segment(n));
            let v = get_json(&o.http, &path, &q)
                .map_err(|e| format!("Error listing services for node: {e}"))?;
            if let Some(map) = v["Services"].as_object() {
                for s in map.values() {
                    let tags = strings(&s["Tags"]);
                    services
                        .entry(s["Service"].as_str().unwrap_or_default().to_string())
                        .or_default()
                        .extend(tags);
                }
            }
        }
        _ => {
            let v = get_json(&o.http, "/v1/catalog/services", &q)
                .map_err(|e| format!("Error listing services: {e}"))?;
            if let Some(map) = v.as_object() {
                for (name, tags) in map {
                    services.insert(name.clone(), strings(tags));
                }
            }
        }
    }
    if services.is_empty() {
        eprintln!("No services match the given query - try expanding your search.");
        return Ok(0);
    }
    if o.tags {
        let width = services
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0)
            + 6;
        let lines: Vec<String> = services
            .iter_mut()
            .map(|(name, tags)| {
                tags.sort();
                format!("{name:<width$}{}", tags.join(","))
            })
            .collect();
        println!("{}", lines.join("\n").trim());
    } else {
        for name in services.keys() {
            println!("{name}");
        }
    }
    Ok(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_pad_all_but_the_last() {
        let rows = vec![
            vec![
                "Node".to_string(),
                "ID".into(),
                "Address".into(),
                "DC".into(),
            ],
            vec![
                "n1-long".into(),
                "abcd".into(),
                "127.0.0.1".into(),
                "dc1".into(),
            ],
        ];
        assert_eq!(
            columnize(&rows),
            "Node     ID    Address    DC\nn1-long  abcd  127.0.0.1  dc1\n"
        );
    }

    #[test]
    fn maps_print_sorted_as_key_value_pairs() {
        let m = serde_json::json!({"b": "2", "a": "1"});
        assert_eq!(map_to_kv(&m), "a=1, b=2");
    }
}
