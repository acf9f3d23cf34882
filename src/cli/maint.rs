//! `cairn maint` (node and service maintenance mode) and `cairn monitor`
//! (the agent's log, streamed), in Consul's words and exit codes.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

type Outcome = std::result::Result<i32, String>;

fn report(outcome: Outcome) -> anyhow::Result<i32> {
    Ok(outcome.unwrap_or_else(|message| {
        eprintln!("{message}");
        1
    }))
}

#[derive(Default)]
struct MaintArgs {
    http: HttpArgs,
    enable: bool,
    disable: bool,
    reason: String,
    service: String,
}

#[derive(Default)]
struct MonitorArgs {
    http: HttpArgs,
    log_level: Option<String>,
    log_json: bool,
}

with_http!(MaintArgs, MonitorArgs);

fn flag_set<T: http::WithHttp>(synopsis: &'static str, own: Vec<Flag<T>>) -> FlagSet<T> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

pub fn maint(args: Vec<String>) -> anyhow::Result<i32> {
    report(maint_inner(&args))
}

fn maint_inner(args: &[String]) -> Outcome {
    let set = flag_set::<MaintArgs>(
        "Usage: cairn maint [options]

  Places a node or service into maintenance mode. During maintenance mode,
  the node or service is excluded from all queries through the DNS or API
  interfaces. This is done by registering an additional critical health
  check, whose Notes hold the reason. Maintenance mode persists across agent
  restarts. With -service, only that service is affected. Without -enable or
  -disable, what is in maintenance is shown.
",
        vec![
            Flag::bool("enable", "Enable maintenance mode.", |o, v| o.enable = v),
            Flag::bool("disable", "Disable maintenance mode.", |o, v| o.disable = v),
            Flag::text(
                "reason",
                "Text describing the maintenance reason.",
                |o, v| o.reason = v,
            ),
            Flag::text(
                "service",
                "Control maintenance mode for a specific service ID.",
                |o, v| o.service = v,
            ),
        ],
    );
    let (o, _rest) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if o.enable && o.disable {
        return Err("Only one of -enable or -disable may be provided".into());
    }
    if !o.enable && !o.reason.is_empty() {
        return Err("Reason may only be provided with -enable".into());
    }
    if !o.enable && !o.disable && !o.service.is_empty() {
        return Err("Service requires either -enable or -disable".into());
    }
    let c = o
        .http
        .client(TIMEOUT)
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))?;
    let base = o.http.base();
    let get = |path: &str| -> anyhow::Result<Value> {
        Ok(check(c.get(format!("{base}{path}")).send()?)?.json()?)
    };
    let node = get("/v1/agent/self").map_err(|e| format!("Error querying Consul agent: {e:#}"))?
        ["Config"]["NodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !o.enable && !o.disable {
        let checks = get("/v1/agent/checks").map_err(|e| format!("Error getting checks: {e:#}"))?;
        let mut checks: Vec<&Value> = checks
            .as_object()
            .map(|m| m.values().collect())
            .unwrap_or_default();
        // The node first, then services by ID.
        checks.sort_by_key(|c| {
            let id = c["CheckID"].as_str().unwrap_or_default();
            (id != "_node_maintenance", id.to_string())
        });
        for check in checks {
            let id = check["CheckID"].as_str().unwrap_or_default();
            let notes = check["Notes"].as_str().unwrap_or_default();
            if id == "_node_maintenance" {
                println!("Node:\n  Name:   {node}\n  Reason: {notes}\n");
            } else if id.starts_with("_service_maintenance:") {
                let service = check["ServiceID"].as_str().unwrap_or_default();
                println!("Service:\n  ID:     {service}\n  Reason: {notes}\n");
            }
        }
        return Ok(0);
    }
    let mut q: Vec<(&str, String)> = vec![("enable", o.enable.to_string())];
    if o.enable && !o.reason.is_empty() {
        q.push(("reason", o.reason.clone()));
    }
    let (what, path) = if o.service.is_empty() {
        ("node", "/v1/agent/maintenance".to_string())
    } else {
        let mut url =
            reqwest::Url::parse("http://x/v1/agent/service/maintenance/").expect("a valid URL");
        if let Ok(mut seg) = url.path_segments_mut() {
            seg.pop_if_empty().push(&o.service);
        }
        ("service", url.path().to_string())
    };
    let verb = if o.enable { "enabling" } else { "disabling" };
    c.put(format!("{base}{path}"))
        .query(&q)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .map_err(|e| format!("Error {verb} {what} maintenance: {e:#}"))?;
    let state = if o.enable { "enabled" } else { "disabled" };
    if o.service.is_empty() {
        println!("Node maintenance is now {state}");
    } else {
        println!("Service maintenance is now {state} for \"{}\"", o.service);
    }
    Ok(0)
}

pub fn monitor(args: Vec<String>) -> anyhow::Result<i32> {
    report(monitor_inner(&args))
}

fn monitor_inner(args: &[String]) -> Outcome {
    let set = flag_set::<MonitorArgs>(
        "Usage: cairn monitor [options]

  Shows recent log messages of an agent, and attaches to the agent,
  outputting log messages as they occur in real time. The monitor lets you
  listen for log levels that may be filtered out of the agent's own log:
  an agent logging at INFO can be monitored at DEBUG.
",
        vec![
            Flag::text("log-level", "Log level of the agent.", |o, v| {
                o.log_level = Some(v)
            }),
            Flag::bool("log-json", "Output logs in JSON format.", |o, v| {
                o.log_json = v
            }),
        ],
    );
    let (o, _rest) = match set.parse_or_report(args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    // The stream has no end of its own: no overall timeout.
    let c = o
        .http
        .client(Duration::from_secs(10 * 365 * 86400))
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))?;
    let mut q = vec![(
        "loglevel",
        o.log_level.clone().unwrap_or_else(|| "INFO".into()),
    )];
    if o.log_json {
        q.push(("logjson", "true".into()));
    }
    let resp = c
        .get(format!("{}/v1/agent/monitor", o.http.base()))
        .query(&q)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .map_err(|e| format!("Error starting monitor: {e:#}"))?;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        let _ = done_tx.send(());
    });
    // Interrupted or terminated: exit 0, as Consul's monitor does; the
    // agent ending the stream: exit 1 with Consul's message.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let interrupted = rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).ok();
        let mut term = signal(SignalKind::terminate()).ok();
        let ended = tokio::task::spawn_blocking(move || done_rx.recv());
        tokio::select! {
            _ = async { match int.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => true,
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => true,
            _ = ended => false,
        }
    });
    // The task waiting for the stream's end is still blocked on it after a
    // signal; dropping the runtime would wait for it forever.
    rt.shutdown_background();
    if interrupted {
        return Ok(0);
    }
    println!();
    println!(
        "Remote side ended the monitor! This usually means that the\nremote side has exited or crashed."
    );
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn conflicting_flags_are_refused_before_any_request() {
        assert_eq!(
            maint_inner(&args(&["-enable", "-disable"])).unwrap_err(),
            "Only one of -enable or -disable may be provided"
        );
        assert_eq!(
            maint_inner(&args(&["-reason=x"])).unwrap_err(),
            "Reason may only be provided with -enable"
        );
        assert_eq!(
            maint_inner(&args(&["-service=web"])).unwrap_err(),
            "Service requires either -enable or -disable"
        );
    }
}
