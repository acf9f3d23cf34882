//! Client subcommands that talk to the local agent's HTTP API
//! (`-http-addr`, `CONSUL_HTTP_ADDR`, default 127.0.0.1:8500).

use anyhow::{anyhow, Result};
use serde_json::Value;

fn http_addr(args: &[String]) -> String {
    let mut addr = std::env::var("CONSUL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8500".into());
    let norm = super::normalize_args(args.iter().cloned());
    let mut it = norm.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--http-addr=") {
            addr = v.to_string();
        } else if a == "--http-addr" {
            if let Some(v) = it.next() {
                addr = v.clone();
            }
        }
    }
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr
    } else {
        format!("http://{addr}")
    }
}

fn client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?)
}

fn check(resp: reqwest::blocking::Response) -> Result<reqwest::blocking::Response> {
    let code = resp.status();
    if code.is_success() {
        return Ok(resp);
    }
    let body = resp.text().unwrap_or_default();
    Err(anyhow!(
        "Unexpected response code: {} ({})",
        code.as_u16(),
        body.trim()
    ))
}

pub fn run(cmd: &str, args: Vec<String>) -> Result<i32> {
    let base = http_addr(&args);
    let c = client()?;
    let result = match cmd {
        "leave" => check(c.put(format!("{base}/v1/agent/leave")).send()?).map(|_| {
            println!("Graceful leave complete");
            0
        }),
        "members" => members(&c, &base, &args),
        "info" => info(&c, &base),
        "join" => join(&c, &base, &args),
        "force-leave" => force_leave(&c, &base, &args),
        "operator" => operator(&c, &base, &args),
        _ => Err(anyhow!("unknown command {cmd}")),
    };
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("Error: {e:#}");
            Ok(1)
        }
    }
}

/// Positional arguments (flags and their values removed).
fn positionals(args: &[String]) -> Vec<String> {
    let norm = super::normalize_args(args.iter().cloned());
    let mut out = Vec::new();
    let mut it = norm.into_iter();
    while let Some(a) = it.next() {
        if a == "--http-addr" {
            it.next();
        } else if !a.starts_with("--") {
            out.push(a);
        }
    }
    out
}

fn flag_value(args: &[String], name: &str) -> Option<String> {
    let norm = super::normalize_args(args.iter().cloned());
    let mut it = norm.iter();
    let long = format!("--{name}");
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&format!("{long}=")) {
            return Some(v.to_string());
        }
        if *a == long {
            return it.next().cloned().or(Some(String::new()));
        }
    }
    None
}

fn has_flag(args: &[String], name: &str) -> bool {
    let norm = super::normalize_args(args.iter().cloned());
    norm.iter()
        .any(|a| *a == format!("--{name}") || a.starts_with(&format!("--{name}=")))
}

fn join(c: &reqwest::blocking::Client, base: &str, args: &[String]) -> Result<i32> {
    let addrs = positionals(args);
    if addrs.is_empty() {
        return Err(anyhow!("At least one address to join must be specified."));
    }
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

fn force_leave(c: &reqwest::blocking::Client, base: &str, args: &[String]) -> Result<i32> {
    let nodes = positionals(args);
    let Some(node) = nodes.first() else {
        return Err(anyhow!("A node name must be specified to force leave."));
    };
    let prune = if has_flag(args, "prune") {
        "?prune=1"
    } else {
        ""
    };
    check(
        c.put(format!("{base}/v1/agent/force-leave/{node}{prune}"))
            .send()?,
    )?;
    Ok(0)
}

fn operator(c: &reqwest::blocking::Client, base: &str, args: &[String]) -> Result<i32> {
    let pos = positionals(args);
    match (
        pos.first().map(String::as_str),
        pos.get(1).map(String::as_str),
    ) {
        (Some("raft"), Some("list-peers")) => {
            let stale = if has_flag(args, "stale") {
                "?stale"
            } else {
                ""
            };
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
        (Some("raft"), Some("remove-peer")) => {
            let q = match (flag_value(args, "address"), flag_value(args, "id")) {
                (Some(a), None) if !a.is_empty() => format!("address={a}"),
                (None, Some(i)) if !i.is_empty() => format!("id={i}"),
                _ => return Err(anyhow!("Exactly one of -address or -id must be given")),
            };
            check(
                c.delete(format!("{base}/v1/operator/raft/peer?{q}"))
                    .send()?,
            )?;
            println!("Removed peer with {}", q.replace('=', " "));
            Ok(0)
        }
        _ => Err(anyhow!(
            "Usage: cairn operator raft <list-peers|remove-peer>"
        )),
    }
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

fn members(c: &reqwest::blocking::Client, base: &str, args: &[String]) -> Result<i32> {
    let v: Value = check(c.get(format!("{base}/v1/agent/members")).send()?)?.json()?;
    let mut list = v.as_array().cloned().unwrap_or_default();
    if let Some(pat) = flag_value(args, "status") {
        let status_of = |m: &Value| match m["Status"].as_u64() {
            Some(1) => "alive",
            Some(2) => "leaving",
            Some(3) => "left",
            Some(4) => "failed",
            _ => "none",
        };
        list.retain(|m| status_of(m).contains(pat.trim_matches(|c| c == '^' || c == '$')));
    }
    let mut rows: Vec<[String; 8]> = list
        .iter()
        .map(|m| {
            let tags = &m["Tags"];
            let status = match m["Status"].as_u64() {
                Some(1) => "alive",
                Some(2) => "leaving",
                Some(3) => "left",
                Some(4) => "failed",
                _ => "none",
            };
            let role = if tags["role"] == "consul" {
                "server"
            } else {
                "client"
            };
            [
                m["Name"].as_str().unwrap_or("").to_string(),
                format!(
                    "{}:{}",
                    m["Addr"].as_str().unwrap_or(""),
                    m["Port"].as_u64().unwrap_or(0)
                ),
                status.to_string(),
                role.to_string(),
                tags["build"]
                    .as_str()
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                tags["vsn"].as_str().unwrap_or("2").to_string(),
                tags["dc"].as_str().unwrap_or("").to_string(),
                "default".to_string(),
            ]
        })
        .collect();
    rows.sort_by(|a, b| (a[3] != "server", &a[0]).cmp(&(b[3] != "server", &b[0])));
    let header = [
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(&format!("{:<w$}  ", cell, w = widths[i]));
        }
        s.push_str("<default>");
        s
    };
    println!("{}", line(header.to_vec()).replace("<default>", "Segment"));
    for r in &rows {
        println!("{}", line(r.iter().map(|s| s.as_str()).collect()));
    }
    Ok(if rows.is_empty() { 2 } else { 0 })
}

fn info(c: &reqwest::blocking::Client, base: &str) -> Result<i32> {
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
