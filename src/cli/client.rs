//! Client subcommands that talk to the local agent's HTTP API: `leave`,
//! `members`, `info`, `join`, `force-leave` and `operator raft
//! list-peers|remove-peer`. Each declares its flags in one table beside the
//! HTTP flags they all share; their output is Consul's, column for column.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use anyhow::{anyhow, Result};
use serde_json::Value;
use std::time::Duration;

/// How long one request to the agent may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs client subcommand `cmd` with the arguments after it.
pub fn run(cmd: &str, args: Vec<String>) -> Result<i32> {
    let outcome = match cmd {
        "leave" => leave(&args),
        "members" => members(&args),
        "info" => info(&args),
        "join" => join(&args),
        "force-leave" => force_leave(&args),
        "operator" => operator(&args),
        _ => Err(anyhow!("unknown command {cmd}")),
    };
    match outcome {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            Ok(1)
        }
    }
}

/// A subcommand whose whole command line is its flags.
fn no_arguments(rest: &[String]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("unexpected arguments: {}", rest.join(" ")))
    }
}

#[derive(Default)]
struct LeaveArgs {
    http: HttpArgs,
}

#[derive(Default)]
struct MembersArgs {
    http: HttpArgs,
    detailed: bool,
    wan: bool,
    status: Option<String>,
    filter: Option<String>,
}

#[derive(Default)]
struct InfoArgs {
    http: HttpArgs,
}

#[derive(Default)]
struct JoinArgs {
    http: HttpArgs,
}

#[derive(Default)]
struct ForceLeaveArgs {
    http: HttpArgs,
    prune: bool,
}

#[derive(Default)]
struct ListPeersArgs {
    http: HttpArgs,
    stale: bool,
}

#[derive(Default)]
struct RemovePeerArgs {
    http: HttpArgs,
    address: Option<String>,
    id: Option<String>,
}

with_http!(
    LeaveArgs,
    MembersArgs,
    InfoArgs,
    JoinArgs,
    ForceLeaveArgs,
    ListPeersArgs,
    RemovePeerArgs,
);

/// The HTTP flags followed by a subcommand's own.
fn flag_set<T: http::WithHttp>(synopsis: &'static str, own: Vec<Flag<T>>) -> FlagSet<T> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

fn leave(args: &[String]) -> Result<i32> {
    let set = flag_set::<LeaveArgs>(
        "Usage: cairn leave [options]

  Tells the agent to leave the cluster gracefully and shut down.
",
        vec![],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    check(c.put(format!("{base}/v1/agent/leave")).send()?)?;
    println!("Graceful leave complete");
    Ok(0)
}

fn join(args: &[String]) -> Result<i32> {
    let set = flag_set::<JoinArgs>(
        "Usage: cairn join [options] address ...

  Tells the agent to join the cluster through the agents at these addresses.
",
        vec![],
    );
    let (o, addrs) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    if addrs.is_empty() {
        return Err(anyhow!("At least one address to join must be specified."));
    }
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    let mut joined = 0;
    for a in &addrs {
        match check(c.put(format!("{base}/v1/agent/join/{a}")).send()?) {
            Ok(_) => joined += 1,
            Err(e) => eprintln!("Error joining address '{a}': {e}"),
        }
    }
    if joined == 0 {
        return Ok(1);
    }
    println!("Successfully joined cluster by contacting {joined} nodes.");
    Ok(0)
}

fn force_leave(args: &[String]) -> Result<i32> {
    let set = flag_set::<ForceLeaveArgs>(
        "Usage: cairn force-leave [options] name

  Forces a failed member of the cluster into the left state.
",
        vec![Flag::bool(
            "prune",
            "Remove the member from the member list entirely.",
            |o, v| o.prune = v,
        )],
    );
    let (o, nodes) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    let [node] = nodes.as_slice() else {
        return Err(anyhow!(
            "A single node name must be specified to force leave."
        ));
    };
    let prune = if o.prune { "?prune=1" } else { "" };
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    check(
        c.put(format!("{base}/v1/agent/force-leave/{node}{prune}"))
            .send()?,
    )?;
    Ok(0)
}

fn operator(args: &[String]) -> Result<i32> {
    match args {
        [raft, verb, rest @ ..] if raft == "raft" && verb == "list-peers" => list_peers(rest),
        [raft, verb, rest @ ..] if raft == "raft" && verb == "remove-peer" => remove_peer(rest),
        _ => Err(anyhow!(
            "Usage: cairn operator raft <list-peers|remove-peer>"
        )),
    }
}

fn list_peers(args: &[String]) -> Result<i32> {
    let set = flag_set::<ListPeersArgs>(
        "Usage: cairn operator raft list-peers [options]

  Displays the servers of the raft configuration.
",
        vec![Flag::bool(
            "stale",
            "Let any server answer, not only the leader.",
            |o, v| o.stale = v,
        )],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    let stale = if o.stale { "?stale" } else { "" };
    let v: Value = check(
        c.get(format!("{base}/v1/operator/raft/configuration{stale}"))
            .send()?,
    )?
    .json()?;
    let header = [
        "Node",
        "ID",
        "Address",
        "State",
        "Voter",
        "RaftProtocol",
        "Commit Index",
        "Trails Leader By",
    ];
    let servers = v["Servers"].as_array().cloned().unwrap_or_default();
    let leader_index = servers
        .iter()
        .find(|s| s["Leader"] == true)
        .and_then(|s| s["LastIndex"].as_u64())
        .unwrap_or(0);
    let rows: Vec<Vec<String>> = servers
        .iter()
        .map(|s| {
            let leader = s["Leader"] == true;
            let idx = s["LastIndex"].as_u64().unwrap_or(0);
            let trails = if leader {
                "-".to_string()
            } else {
                let n = leader_index.saturating_sub(idx);
                format!("{n} commit{}", if n == 1 { "" } else { "s" })
            };
            vec![
                s["Node"].as_str().unwrap_or("").to_string(),
                s["ID"].as_str().unwrap_or("").to_string(),
                s["Address"].as_str().unwrap_or("").to_string(),
                if leader { "leader" } else { "follower" }.to_string(),
                s["Voter"].as_bool().unwrap_or(false).to_string(),
                s["ProtocolVersion"].as_str().unwrap_or("3").to_string(),
                idx.to_string(),
                trails,
            ]
        })
        .collect();
    print_table(&header, &rows);
    Ok(0)
}

fn remove_peer(args: &[String]) -> Result<i32> {
    let set = flag_set::<RemovePeerArgs>(
        "Usage: cairn operator raft remove-peer [options]

  Removes a server from the raft configuration, by -address or by -id.
",
        vec![
            Flag::text(
                "address",
                "The `ip:port` of the server to remove.",
                |o, v| o.address = Some(v),
            ),
            Flag::text("id", "The raft ID of the server to remove.", |o, v| {
                o.id = Some(v)
            }),
        ],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let q = match (&o.address, &o.id) {
        (Some(a), None) if !a.is_empty() => format!("address={a}"),
        (None, Some(i)) if !i.is_empty() => format!("id={i}"),
        _ => return Err(anyhow!("Exactly one of -address or -id must be given")),
    };
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    check(
        c.delete(format!("{base}/v1/operator/raft/peer?{q}"))
            .send()?,
    )?;
    println!("Removed peer with {}", q.replace('=', " "));
    Ok(0)
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let fmt = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", fmt(header.to_vec()));
    for r in rows {
        println!("{}", fmt(r.iter().map(String::as_str).collect()));
    }
}

fn members(args: &[String]) -> Result<i32> {
    let set = flag_set::<MembersArgs>(
        "Usage: cairn members [options]

  Outputs the members of a running agent.
",
        vec![
            Flag::bool("detailed", "Provides detailed information about nodes.", |o, v| {
                o.detailed = v
            }),
            Flag::bool(
                "wan",
                "If the agent is in server mode, this can be used to return the other peers in the WAN pool.",
                |o, v| o.wan = v,
            ),
            Flag::text(
                "status",
                "If provided, output is filtered to only nodes matching the regular expression for status.",
                |o, v| o.status = Some(v),
            ),
            Flag::text("filter", "Filter to use with the request", |o, v| {
                o.filter = Some(v)
            }),
        ],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let status_re = match regex::Regex::new(o.status.as_deref().unwrap_or(".*")) {
        Ok(re) => re,
        Err(e) => {
            eprintln!("Failed to compile status regexp: {e}");
            return Ok(1);
        }
    };
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    let mut query: Vec<(&str, String)> = Vec::new();
    if o.wan {
        query.push(("wan", "1".into()));
    }
    if let Some(f) = &o.filter {
        query.push(("filter", f.clone()));
    }
    let sent = c
        .get(format!("{base}/v1/agent/members"))
        .query(&query)
        .send();
    let v: Value = match sent.map_err(anyhow::Error::from).and_then(check) {
        Ok(r) => r.json()?,
        Err(e) => {
            eprintln!("Error retrieving members: {e}");
            return Ok(1);
        }
    };
    let mut list: Vec<Member> = v
        .as_array()
        .map(|a| a.iter().map(Member::from_json).collect())
        .unwrap_or_default();
    list.retain(|m| status_re.is_match(m.status));
    if list.is_empty() {
        return Ok(2);
    }
    list.sort_by(|a, b| {
        let key = |m: &Member| {
            (
                m.tag("role") != "consul",
                m.tag("segment").to_string(),
                m.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut rows = vec![if o.detailed {
        cells(&["Node", "Address", "Status", "Tags"])
    } else {
        cells(&[
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment",
        ])
    }];
    rows.extend(list.iter().map(|m| {
        if o.detailed {
            m.detailed_row()
        } else {
            m.standard_row()
        }
    }));
    println!("{}", super::catalog::columnize(&rows));
    Ok(0)
}

fn cells(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

/// One member as `GET /v1/agent/members` gives it, with the tag defaults
/// Consul's `members` command fills in before printing.
struct Member {
    name: String,
    addr: String,
    status: &'static str,
    tags: std::collections::BTreeMap<String, String>,
}

impl Member {
    fn from_json(m: &Value) -> Member {
        let mut tags: std::collections::BTreeMap<String, String> = m["Tags"]
            .as_object()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        if tags.get("ap").is_none_or(|p| p.is_empty()) {
            tags.insert("ap".into(), "default".into());
        }
        let segment = if tags.get("role").is_some_and(|r| r == "consul") {
            "<all>"
        } else {
            "<default>"
        };
        if tags.get("segment").is_none_or(|s| s.is_empty()) || segment == "<all>" {
            tags.insert("segment".into(), segment.into());
        }
        let ip = m["Addr"].as_str().unwrap_or("");
        let port = m["Port"].as_u64().unwrap_or(0);
        let addr = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        Member {
            name: m["Name"].as_str().unwrap_or("").to_string(),
            addr,
            status: match m["Status"].as_u64() {
                Some(1) => "alive",
                Some(2) => "leaving",
                Some(3) => "left",
                Some(4) => "failed",
                _ => "none",
            },
            tags,
        }
    }

    fn tag(&self, key: &str) -> &str {
        self.tags.get(key).map(String::as_str).unwrap_or("")
    }

    fn standard_row(&self) -> Vec<String> {
        let role = match self.tag("role") {
            "consul" => "server",
            "node" => "client",
            _ => {
                return vec![
                    self.name.clone(),
                    self.addr.clone(),
                    self.status.into(),
                    "unknown".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]
            }
        };
        let build = match self.tag("build") {
            "" => "< 0.3",
            b => b.split(':').next().unwrap_or(b),
        };
        vec![
            self.name.clone(),
            self.addr.clone(),
            self.status.into(),
            role.into(),
            build.into(),
            self.tag("vsn").into(),
            self.tag("dc").into(),
            self.tag("ap").into(),
            self.tag("segment").into(),
        ]
    }

    fn detailed_row(&self) -> Vec<String> {
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            self.name.clone(),
            self.addr.clone(),
            self.status.into(),
            tags.join(","),
        ]
    }
}

fn info(args: &[String]) -> Result<i32> {
    let set = flag_set::<InfoArgs>(
        "Usage: cairn info [options]

  Prints the agent's debugging information, section by section.
",
        vec![],
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    no_arguments(&rest)?;
    let (c, base) = (o.http.client(TIMEOUT)?, o.http.base());
    let v: Value = check(c.get(format!("{base}/v1/agent/self")).send()?)?.json()?;
    let Some(stats) = v["Stats"].as_object() else {
        return Err(anyhow!("agent returned no Stats"));
    };
    for (section, kv) in stats {
        println!("{section}:");
        if let Some(kv) = kv.as_object() {
            for (k, val) in kv {
                println!(
                    "\t{k} = {}",
                    val.as_str()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| val.to_string())
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn error(r: Result<i32>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn command_lines_are_checked_before_any_request() {
        // A flag after the node name is not a flag, so it is not silently dropped.
        assert_eq!(
            error(force_leave(&args(&["c3", "-prune"]))),
            "A single node name must be specified to force leave."
        );
        assert_eq!(
            error(remove_peer(&args(&["-address=10.0.0.1:8300", "-id=x"]))),
            "Exactly one of -address or -id must be given"
        );
        assert_eq!(
            error(join(&args(&["-http-addr=127.0.0.1:1"]))),
            "At least one address to join must be specified."
        );
        assert_eq!(
            error(members(&args(&["alive"]))),
            "unexpected arguments: alive"
        );
        assert_eq!(
            error(operator(&args(&["raft", "nope"]))),
            "Usage: cairn operator raft <list-peers|remove-peer>"
        );
        assert_eq!(members(&args(&["-bogus"])).unwrap(), 1);
        assert_eq!(info(&args(&["-h"])).unwrap(), 0);
    }
}
