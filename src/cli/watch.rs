//! `cairn watch -type=<t> [options] [handler...]`: follows one view of the
//! catalog or KV with blocking queries and, each time its index moves, runs
//! the handler with `/bin/sh -c` and the view's JSON on stdin (or prints
//! the JSON when no handler is given), as `consul watch` does.

use super::goflags::{self, shell};
use anyhow::{anyhow, Result};
use std::io::Write;
use std::time::Duration;

const USAGE: &str = "Usage: cairn watch [options] [child...]

Options:
  -type=<key|keyprefix|services|nodes|service|checks>
  -key=<key>          for -type=key
  -prefix=<prefix>    for -type=keyprefix
  -service=<name>     for -type=service (and optionally -type=checks)
  -tag=<tag>          for -type=service
  -passingonly        for -type=service
  -state=<state>      for -type=checks
  -http-addr=<addr>   Agent HTTP address (default CONSUL_HTTP_ADDR or 127.0.0.1:8500)
";

/// How to turn one response into the handler's input.
enum Shape {
    /// The response as is.
    Body,
    /// A KV GET: the single entry object, `null` when absent.
    FirstEntry,
    /// A KV recurse: `[]` when absent.
    List,
}

fn view(p: &goflags::Parsed) -> Result<(String, Shape)> {
    let kind = p.get("type").unwrap_or("");
    let need = |flag: &str| {
        p.get(flag)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| anyhow!("Must specify a single -{flag} for watch type {kind}"))
    };
    Ok(match kind {
        "key" => (format!("/v1/kv/{}", need("key")?), Shape::FirstEntry),
        "keyprefix" => (
            format!("/v1/kv/{}?recurse", p.get("prefix").unwrap_or("")),
            Shape::List,
        ),
        "services" => ("/v1/catalog/services".into(), Shape::Body),
        "nodes" => ("/v1/catalog/nodes".into(), Shape::Body),
        "service" => {
            let mut path = format!("/v1/health/service/{}?", need("service")?);
            if let Some(tag) = p.get("tag") {
                path.push_str(&format!("tag={tag}&"));
            }
            if p.flag("passingonly") {
                path.push_str("passing&");
            }
            (path, Shape::Body)
        }
        "checks" => match p.get("service") {
            Some(svc) => (format!("/v1/health/checks/{svc}"), Shape::Body),
            None => (
                format!("/v1/health/state/{}", p.get("state").unwrap_or("any")),
                Shape::Body,
            ),
        },
        "" => return Err(anyhow!("Watch type must be specified")),
        other => return Err(anyhow!("Unsupported watch type: {other}")),
    })
}

pub fn run(args: Vec<String>) -> Result<i32> {
    let p = goflags::parse(
        &args,
        &[
            "type",
            "key",
            "prefix",
            "service",
            "tag",
            "state",
            "http-addr",
            "token",
            "datacenter",
        ],
        &["passingonly", "stale", "help", "h"],
    )?;
    if p.flag("help") || p.flag("h") {
        eprint!("{USAGE}");
        return Ok(0);
    }
    let (path, shape) = view(&p)?;
    let handler = p.rest.join(" ");
    let base = goflags::http_base(p.get("http-addr"));
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(400))
        .build()?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let stale = if p.flag("stale") { "&stale" } else { "" };
    let mut index: u64 = 0;
    let mut last: Option<u64> = None;
    loop {
        let url = format!("{base}{path}{sep}index={index}&wait=5m{stale}");
        let resp = match http.get(&url).send() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error querying agent: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        let status = resp.status().as_u16();
        let next = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let body = resp.text().unwrap_or_default();
        if status != 200 && status != 404 {
            eprintln!("Unexpected response code: {status} ({})", body.trim());
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        // Indexes that go backwards mean the servers' state was reset.
        index = if next < index { 0 } else { next };
        if last == Some(next) {
            continue;
        }
        last = Some(next);
        let data = match (&shape, status) {
            (Shape::FirstEntry, 404) => "null".to_string(),
            (Shape::List, 404) => "[]".to_string(),
            (Shape::FirstEntry, _) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get(0).cloned())
                .map(|v| v.to_string())
                .unwrap_or_else(|| "null".into()),
            _ => body,
        };
        if handler.is_empty() {
            println!("{}", data.trim_end());
            continue;
        }
        match shell(&handler).stdin(std::process::Stdio::piped()).spawn() {
            Ok(mut child) => {
                if let Some(mut stdin) = child.stdin.take() {
                    let _ = stdin.write_all(data.as_bytes());
                    let _ = stdin.write_all(b"\n");
                }
                if let Ok(s) = child.wait() {
                    if !s.success() {
                        eprintln!("Handler '{handler}' exited with {s}");
                    }
                }
            }
            Err(e) => eprintln!("Error starting handler '{handler}': {e}"),
        }
    }
}
