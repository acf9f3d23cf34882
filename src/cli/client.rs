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
        "members" => members(&c, &base),
        "info" => info(&c, &base),
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

fn members(c: &reqwest::blocking::Client, base: &str) -> Result<i32> {
    let v: Value = check(c.get(format!("{base}/v1/agent/members")).send()?)?.json()?;
    let list = v.as_array().cloned().unwrap_or_default();
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
