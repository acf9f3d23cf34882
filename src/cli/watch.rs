//! `cairn watch -type=<t> [options] [handler...]`: follows one view of the
//! catalog or KV with blocking queries and, each time its index moves, runs
//! the handler with `/bin/sh -c` and the view's JSON on stdin (or prints
//! the JSON when no handler is given), as `consul watch` does.
//!
//! `-type=event` follows `/v1/event/list` and hands on only the events
//! after the last one handed on, as Consul's event watch prunes them; the
//! list's index is derived from event IDs and is not monotonic, so it is
//! never taken as a reset.

use super::flags::{Flag, FlagSet};
use super::http::{with_http, HttpArgs};
use super::shell;
use anyhow::{anyhow, Result};
use std::io::Write;
use std::time::Duration;

const SYNOPSIS: &str = "Usage: cairn watch [options] [child...]

  Follows one view of the catalog or KV and, each time it changes, runs the
  child with /bin/sh -c and the view's JSON on stdin, or prints the JSON
  when no child is given.
";

#[derive(Default)]
struct WatchArgs {
    http: HttpArgs,
    kind: String,
    key: Option<String>,
    prefix: Option<String>,
    service: Option<String>,
    tag: Option<String>,
    state: Option<String>,
    passing_only: bool,
    stale: bool,
    datacenter: Option<String>,
    name: Option<String>,
}

with_http!(WatchArgs);

fn flag_set() -> FlagSet<WatchArgs> {
    let mut flags = super::http::flags::<WatchArgs>();
    flags.extend([
        Flag::text(
            "type",
            "What to watch: key, keyprefix, services, nodes, service, checks or event.",
            |o: &mut WatchArgs, v| o.kind = v,
        ),
        Flag::text("key", "The `key` to watch, for -type=key.", |o, v| {
            o.key = Some(v)
        }),
        Flag::text(
            "prefix",
            "The key `prefix` to watch, for -type=keyprefix.",
            |o, v| o.prefix = Some(v),
        ),
        Flag::text(
            "service",
            "The `service` to watch, for -type=service and -type=checks.",
            |o, v| o.service = Some(v),
        ),
        Flag::text(
            "tag",
            "Only instances with this `tag`, for -type=service.",
            |o, v| o.tag = Some(v),
        ),
        Flag::text(
            "state",
            "Only checks in this `state`, for -type=checks (any).",
            |o, v| o.state = Some(v),
        ),
        Flag::text(
            "name",
            "Only events with this `name`, for -type=event.",
            |o, v| o.name = Some(v),
        ),
        Flag::bool(
            "passingonly",
            "Only instances whose checks pass, for -type=service.",
            |o, v| o.passing_only = v,
        ),
        Flag::bool(
            "stale",
            "Let any server answer, not only the leader.",
            |o, v| o.stale = v,
        ),
        Flag::text(
            "datacenter",
            "The `datacenter` to query; defaults to the agent's.",
            |o, v| o.datacenter = Some(v),
        ),
    ]);
    FlagSet::new(SYNOPSIS, flags)
}

/// How to turn one response into the handler's input.
enum Shape {
    /// The response as is.
    Body,
    /// A KV GET: the single entry object, `null` when absent.
    FirstEntry,
    /// A KV recurse: `[]` when absent.
    List,
    /// The event list, from the event after the last one handed on.
    NewEvents,
}

fn view(o: &WatchArgs) -> Result<(String, Shape)> {
    let kind = o.kind.as_str();
    let need = |flag: &str, value: &Option<String>| {
        value
            .as_ref()
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| anyhow!("Must specify a single -{flag} for watch type {kind}"))
    };
    Ok(match kind {
        "key" => (
            format!("/v1/kv/{}", need("key", &o.key)?),
            Shape::FirstEntry,
        ),
        "keyprefix" => (
            format!("/v1/kv/{}?recurse", o.prefix.as_deref().unwrap_or("")),
            Shape::List,
        ),
        "services" => ("/v1/catalog/services".into(), Shape::Body),
        "nodes" => ("/v1/catalog/nodes".into(), Shape::Body),
        "service" => {
            let mut path = format!("/v1/health/service/{}?", need("service", &o.service)?);
            if let Some(tag) = &o.tag {
                path.push_str(&format!("tag={tag}&"));
            }
            if o.passing_only {
                path.push_str("passing&");
            }
            (path, Shape::Body)
        }
        "checks" => match &o.service {
            Some(svc) => (format!("/v1/health/checks/{svc}"), Shape::Body),
            None => (
                format!("/v1/health/state/{}", o.state.as_deref().unwrap_or("any")),
                Shape::Body,
            ),
        },
        "event" => match o.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                let query: String = reqwest::Url::parse_with_params("http://x/", [("name", name)])
                    .ok()
                    .and_then(|u| u.query().map(str::to_string))
                    .unwrap_or_default();
                (format!("/v1/event/list?{query}"), Shape::NewEvents)
            }
            None => ("/v1/event/list".into(), Shape::NewEvents),
        },
        "" => return Err(anyhow!("Watch type must be specified")),
        other => return Err(anyhow!("Unsupported watch type: {other}")),
    })
}

pub fn run(args: Vec<String>) -> Result<i32> {
    let set = flag_set();
    let (o, rest) = match set.parse_or_report(&args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    let (path, shape) = view(&o)?;
    let handler = rest.join(" ");
    let base = o.http.base();
    let http = o.http.client(Duration::from_secs(400))?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut extra = String::new();
    if o.stale {
        extra.push_str("&stale");
    }
    if let Some(dc) = &o.datacenter {
        extra.push_str(&format!("&dc={dc}"));
    }
    let mut index: u64 = 0;
    let mut last: Option<u64> = None;
    loop {
        let url = format!("{base}{path}{sep}index={index}&wait=5m{extra}");
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
        let previous = index;
        // Indexes that go backwards mean the servers' state was reset;
        // event indexes are not ordered at all.
        index = if next < index && !matches!(shape, Shape::NewEvents) {
            0
        } else {
            next
        };
        if last == Some(next) {
            continue;
        }
        last = Some(next);
        let data = match (&shape, status) {
            (Shape::NewEvents, _) => new_events(&body, previous),
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

/// The events listed after the one whose index is `previous` (all of
/// them when none is), as Consul's event watch prunes the list.
fn new_events(body: &str, previous: u64) -> String {
    let Ok(serde_json::Value::Array(events)) = serde_json::from_str(body) else {
        return body.to_string();
    };
    let index_of = |e: &serde_json::Value| {
        e["ID"]
            .as_str()
            .and_then(crate::events::id_to_index)
            .unwrap_or(0)
    };
    let start = events
        .iter()
        .position(|e| previous != 0 && index_of(e) == previous)
        .map(|at| at + 1)
        .unwrap_or(0);
    serde_json::Value::Array(events[start..].to_vec()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(a: &[&str]) -> (WatchArgs, Vec<String>) {
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let mut o = WatchArgs::default();
        let rest = flag_set().parse(&mut o, &a).unwrap();
        (o, rest)
    }

    #[test]
    fn flags_choose_the_view() {
        let (o, rest) = watch(&[
            "-type=service",
            "-service",
            "web",
            "-tag=v1",
            "-passingonly",
            "cat",
            "-n",
        ]);
        assert_eq!(rest, ["cat", "-n"]);
        let (path, _) = view(&o).unwrap();
        assert_eq!(path, "/v1/health/service/web?tag=v1&passing&");
        let (o, _) = watch(&["-type=key", "-key=a/b"]);
        assert_eq!(view(&o).unwrap().0, "/v1/kv/a/b");
        let (o, _) = watch(&["-type=key"]);
        assert_eq!(
            view(&o).err().map(|e| e.to_string()).as_deref(),
            Some("Must specify a single -key for watch type key")
        );
        let (o, _) = watch(&["-type=checks", "-state=critical"]);
        assert_eq!(view(&o).unwrap().0, "/v1/health/state/critical");
        let (o, _) = watch(&["-type=event", "-name=deploy"]);
        assert_eq!(view(&o).unwrap().0, "/v1/event/list?name=deploy");
        let (o, _) = watch(&["-type=event"]);
        assert_eq!(view(&o).unwrap().0, "/v1/event/list");
        let (o, _) = watch(&["-type=event", "-name=a b&c"]);
        assert_eq!(view(&o).unwrap().0, "/v1/event/list?name=a+b%26c");
    }

    #[test]
    fn an_event_watch_hands_on_only_new_events() {
        let a = "b54fe110-7af5-cafc-d1fb-afc8ba432b1c";
        let b = "00000000-0000-0000-0000-000000000001";
        let body = format!(r#"[{{"ID":"{a}"}},{{"ID":"{b}"}}]"#);
        let index_a = crate::events::id_to_index(a).unwrap();
        assert_eq!(
            new_events(&body, 0),
            format!(r#"[{{"ID":"{a}"}},{{"ID":"{b}"}}]"#)
        );
        assert_eq!(new_events(&body, index_a), format!(r#"[{{"ID":"{b}"}}]"#));
        assert_eq!(new_events(&body, 42), body, "an unknown index hands on all");
    }
}
