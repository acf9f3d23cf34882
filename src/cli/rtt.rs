//! `cairn rtt [-wan] node1 [node2]`: Consul's `consul rtt`, the estimated
//! round trip time between two nodes from their network coordinates
//! (`/v1/coordinate/nodes`, or `/v1/coordinate/datacenters` with `-wan`).
//! The second node defaults to the agent's own. Texts and exit codes are
//! Consul's.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use crate::coordinate::Coordinate;
use anyhow::{anyhow, Context};
use serde::Deserialize;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

const USAGE: &str = "Usage: cairn rtt [options] node1 [node2]

  Estimates the round trip time between two nodes using cairn's network
  coordinate model of the cluster.

  At least one node name is required. If the second node name isn't given, it
  is set to the agent's node name. Note that these are node names as known to
  cairn as \"cairn members\" would show, not IP addresses.

  By default, the two nodes are assumed to be nodes in the local datacenter
  and the LAN coordinates are used. If the -wan option is given, then the WAN
  coordinates are used, and the node names must be suffixed by a period and
  the datacenter (eg. \"myserver.dc1\").

  It is not possible to measure between LAN coordinates and WAN coordinates
  because they are maintained by independent Serf gossip areas, so they are
  not compatible.
";

#[derive(Default)]
struct RttArgs {
    http: HttpArgs,
    wan: bool,
}

with_http!(RttArgs);

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: String,
    #[serde(default)]
    segment: String,
    coord: Coordinate,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DatacenterMap {
    datacenter: String,
    #[serde(rename = "AreaID")]
    area_id: String,
    coordinates: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SelfConfig {
    node_name: String,
    datacenter: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentSelf {
    config: SelfConfig,
}

pub fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let mut flags = http::flags::<RttArgs>();
    flags.push(Flag::bool(
        "wan",
        "Use WAN coordinates instead of LAN coordinates.",
        |o: &mut RttArgs, v| o.wan = v,
    ));
    let set = FlagSet::new(USAGE, flags);
    let (o, nodes) = match set.parse_or_report(&args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    if nodes.is_empty() || nodes.len() > 2 {
        eprintln!("One or two node names must be specified");
        eprintln!();
        eprint!("{}", set.usage());
        return Ok(1);
    }
    let client = o.http.client(TIMEOUT)?;
    let base = o.http.base();
    let outcome = if o.wan {
        wan(&client, &base, nodes)
    } else {
        lan(&client, &base, nodes)
    };
    Ok(match outcome {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    })
}

fn get<T: serde::de::DeserializeOwned>(
    client: &reqwest::blocking::Client,
    url: String,
) -> anyhow::Result<T> {
    Ok(check(client.get(url).send()?)?.json()?)
}

fn agent_self(client: &reqwest::blocking::Client, base: &str) -> anyhow::Result<SelfConfig> {
    get::<AgentSelf>(client, format!("{base}/v1/agent/self"))
        .map(|s| s.config)
        .map_err(|e| anyhow!("Unable to look up agent info: {e}"))
}

fn report(a: &str, b: &str, c1: &Coordinate, c2: &Coordinate, source: &str) -> String {
    let ms = c1.distance_to(c2).as_secs_f64() * 1000.0;
    format!("Estimated {a} <-> {b} rtt: {ms:.3} ms (using {source} coordinates)")
}

fn not_found(node: &str) -> anyhow::Error {
    anyhow!("Could not find a coordinate for node {node:?}")
}

fn lan(
    client: &reqwest::blocking::Client,
    base: &str,
    mut nodes: Vec<String>,
) -> anyhow::Result<String> {
    if nodes.len() < 2 {
        nodes.push(agent_self(client, base)?.node_name);
    }
    let entries: Vec<Entry> = get(client, format!("{base}/v1/coordinate/nodes"))
        .map_err(|e| anyhow!("Error getting coordinates: {e}"))?;
    // By segment, as Consul intersects the two nodes' coordinate sets.
    let of = |name: &str| -> Vec<&Entry> {
        entries
            .iter()
            .filter(|e| e.node.eq_ignore_ascii_case(name))
            .collect()
    };
    let (set1, set2) = (of(&nodes[0]), of(&nodes[1]));
    let pair = set1.iter().find_map(|e1| {
        set2.iter()
            .find(|e2| e2.segment == e1.segment)
            .map(|e2| (&e1.coord, &e2.coord))
    });
    match pair {
        Some((c1, c2)) => Ok(report(&nodes[0], &nodes[1], c1, c2, "LAN")),
        None if set1.is_empty() => Err(not_found(&nodes[0])),
        None => Err(not_found(&nodes[1])),
    }
}

fn wan(
    client: &reqwest::blocking::Client,
    base: &str,
    mut nodes: Vec<String>,
) -> anyhow::Result<String> {
    if nodes.len() < 2 {
        let me = agent_self(client, base)?;
        nodes.push(format!("{}.{}", me.node_name, me.datacenter));
    }
    let split = |n: &str| -> Option<(String, String)> {
        let parts: Vec<&str> = n.split('.').collect();
        match parts.as_slice() {
            [node, dc] => Some((node.to_string(), dc.to_string())),
            _ => None,
        }
    };
    let (Some((node1, dc1)), Some((node2, dc2))) = (split(&nodes[0]), split(&nodes[1])) else {
        return Err(anyhow!(
            "Node names must be specified as <node name>.<datacenter> with -wan"
        ));
    };
    let dcs: Vec<DatacenterMap> = get(client, format!("{base}/v1/coordinate/datacenters"))
        .context("Error getting coordinates")
        .map_err(|e| anyhow!("{e:#}"))?;
    // `/v1/coordinate/datacenters` names servers without their `.<dc>`;
    // a `<node>.<dc>` entry is matched too.
    let find = |dc: &str, node: &str| {
        let wan_name = format!("{node}.{dc}");
        dcs.iter()
            .filter(|m| m.datacenter == dc)
            .flat_map(|m| m.coordinates.iter().map(move |e| (&m.area_id, e)))
            .find(|(_, e)| {
                e.node.eq_ignore_ascii_case(&wan_name) || e.node.eq_ignore_ascii_case(node)
            })
    };
    let (c1, c2) = (find(&dc1, &node1), find(&dc2, &node2));
    match (c1, c2) {
        (Some((a1, e1)), Some((a2, e2))) if a1 == a2 => {
            Ok(report(&nodes[0], &nodes[1], &e1.coord, &e2.coord, "WAN"))
        }
        (None, _) | (Some(_), Some(_)) => Err(not_found(&nodes[0])),
        (Some(_), None) => Err(not_found(&nodes[1])),
    }
}
