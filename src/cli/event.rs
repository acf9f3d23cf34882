//! `cairn event [options] [payload]`: fires a user event through the
//! agent's `/v1/event/fire/:name`, in `consul event`'s words and exit
//! codes (the filters are checked before anything is sent).

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use crate::filter::regex;
use std::time::Duration;

const SYNOPSIS: &str = "Usage: cairn event [options] [payload]

  Dispatches a custom user event across a datacenter. An event must provide
  a name, but a payload is optional. Events support filtering using
  regular expressions on node name, service, and tag definitions.
";

#[derive(Default)]
struct EventArgs {
    http: HttpArgs,
    name: String,
    node: String,
    service: String,
    tag: String,
}

with_http!(EventArgs);

fn flag_set() -> FlagSet<EventArgs> {
    let mut flags = http::flags::<EventArgs>();
    flags.extend([
        Flag::text("name", "Name of the event.", |o: &mut EventArgs, v| {
            o.name = v
        }),
        Flag::text(
            "node",
            "Regular expression to filter on node names.",
            |o, v| o.node = v,
        ),
        Flag::text(
            "service",
            "Regular expression to filter on service instances.",
            |o, v| o.service = v,
        ),
        Flag::text(
            "tag",
            "Regular expression to filter on service tags. Must be used with -service.",
            |o, v| o.tag = v,
        ),
    ]);
    FlagSet::new(SYNOPSIS, flags)
}

pub fn run(args: Vec<String>) -> anyhow::Result<i32> {
    Ok(fire(&args).unwrap_or_else(|message| {
        eprintln!("{message}");
        1
    }))
}

/// Consul's checks, in its order, before any request.
fn check_args(set: &FlagSet<EventArgs>, o: &EventArgs, rest: &[String]) -> Result<(), String> {
    if o.name.is_empty() {
        return Err(format!("Event name must be specified\n\n{}", set.usage()));
    }
    for (what, filter) in [("node", &o.node), ("service", &o.service), ("tag", &o.tag)] {
        if !filter.is_empty() {
            regex::compile(filter.as_bytes())
                .map_err(|e| format!("Failed to compile {what} filter regexp: {e}"))?;
        }
    }
    if !o.tag.is_empty() && o.service.is_empty() {
        return Err("Cannot provide tag filter without service filter.".into());
    }
    if rest.len() > 1 {
        return Err(format!(
            "Too many command line arguments.\n\n{}",
            set.usage()
        ));
    }
    Ok(())
}

fn fire(args: &[String]) -> Result<i32, String> {
    let set = flag_set();
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    check_args(&set, &o, &rest)?;
    let c = o
        .http
        .client(Duration::from_secs(60))
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))?;
    let base = o.http.base();
    c.get(format!("{base}/v1/agent/self"))
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .map_err(|e| format!("Error querying Consul agent: {e:#}"))?;

    let mut url = reqwest::Url::parse(&format!("{base}/v1/event/fire/"))
        .map_err(|e| format!("Error connecting to Consul agent: {e}"))?;
    if let Ok(mut seg) = url.path_segments_mut() {
        seg.pop_if_empty().push(&o.name);
    }
    let mut query: Vec<(&str, &str)> = Vec::new();
    for (key, value) in [("node", &o.node), ("service", &o.service), ("tag", &o.tag)] {
        if !value.is_empty() {
            query.push((key, value));
        }
    }
    let mut req = c
        .put(url)
        .query(&query)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
    if let Some(payload) = rest.first() {
        req = req.body(payload.clone());
    }
    let fired: serde_json::Value = req
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json()?))
        .map_err(|e| format!("Error firing event: {e:#}"))?;
    println!("Event ID: {}", fired["ID"].as_str().unwrap_or_default());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(a: &[&str]) -> Result<(), String> {
        let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let set = flag_set();
        let mut o = EventArgs::default();
        let rest = set.parse(&mut o, &a).unwrap();
        check_args(&set, &o, &rest)
    }

    #[test]
    fn arguments_are_checked_as_consul_checks_them() {
        assert!(checked(&[])
            .unwrap_err()
            .starts_with("Event name must be specified\n\nUsage: cairn event"));
        assert_eq!(
            checked(&["-name=deploy", "-node=("]).unwrap_err(),
            "Failed to compile node filter regexp: error parsing regexp: missing closing ): `(`"
        );
        assert_eq!(
            checked(&["-name=deploy", "-tag=v1"]).unwrap_err(),
            "Cannot provide tag filter without service filter."
        );
        assert!(checked(&["-name=deploy", "a", "b"])
            .unwrap_err()
            .starts_with("Too many command line arguments.\n\n"));
        assert_eq!(
            checked(&["-name=deploy", "-service=web", "-tag=v1", "x"]),
            Ok(())
        );
    }
}
