//! `cairn config write|read|list|delete`: Consul's `consul config`, over
//! `/v1/config`, with its messages and exit codes. Entries are written
//! from JSON files (`-` reads standard input).

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use anyhow::{anyhow, Result};
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "Usage: cairn config <subcommand> [options] [args]

  Interact with service configuration entries.

Subcommands:
    delete    Delete a centralized config entry
    list      List centralized config entries of a given kind
    read      Read a centralized config entry
    write     Create or update a centralized config entry
";

#[derive(Default)]
struct EntryArgs {
    http: HttpArgs,
    kind: String,
    name: String,
    cas: bool,
    modify_index: u64,
}

with_http!(EntryArgs);

/// Runs `config <verb>`; the exit code.
pub fn run(args: Vec<String>) -> Result<i32> {
    let outcome = match args.split_first() {
        Some((verb, rest)) if verb == "write" => write(rest),
        Some((verb, rest)) if verb == "read" => read(rest),
        Some((verb, rest)) if verb == "list" => list(rest),
        Some((verb, rest)) if verb == "delete" => delete(rest),
        Some((h, _)) if matches!(h.as_str(), "-h" | "-help" | "--help") => {
            print!("{USAGE}");
            return Ok(0);
        }
        _ => {
            eprint!("{USAGE}");
            return Ok(1);
        }
    };
    Ok(match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    })
}

fn flag_set(synopsis: &'static str, own: Vec<Flag<EntryArgs>>) -> FlagSet<EntryArgs> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

fn kind_flag() -> Flag<EntryArgs> {
    Flag::text("kind", "The kind of configuration to read.", |o, v| {
        o.kind = v
    })
}

fn name_flag() -> Flag<EntryArgs> {
    Flag::text("name", "The name of configuration to read.", |o, v| {
        o.name = v
    })
}

fn cas_flags() -> Vec<Flag<EntryArgs>> {
    vec![
        Flag::bool(
            "cas",
            "Perform a Check-And-Set operation. Specifying this value also requires the \
             -modify-index flag to be set. The default value is false.",
            |o, v| o.cas = v,
        ),
        Flag::uint64(
            "modify-index",
            "Unsigned integer representing the ModifyIndex of the config entry. This is \
             used in combination with the -cas flag.",
            |o, v| o.modify_index = v,
        ),
    ]
}

/// Options and positional arguments, or the exit code parsing ended with.
fn parse(set: &FlagSet<EntryArgs>, args: &[String]) -> Result<(EntryArgs, Vec<String>), i32> {
    set.parse_or_report(args)
}

fn require_kind_and_name(o: &EntryArgs, need_name: bool) -> Result<()> {
    if o.kind.is_empty() {
        return Err(anyhow!("Must specify the -kind parameter"));
    }
    if need_name && o.name.is_empty() {
        return Err(anyhow!("Must specify the -name parameter"));
    }
    Ok(())
}

fn write(args: &[String]) -> Result<i32> {
    let set = flag_set(
        "Usage: cairn config write [options] <configuration>

  Request a config entry to be created or updated. The configuration
  argument is a file path or - for stdin; it holds one JSON entry.
",
        cas_flags(),
    );
    let (o, rest) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let [path] = rest.as_slice() else {
        return Err(anyhow!(
            "Must provide exactly one positional argument to specify the config entry to write"
        ));
    };
    let data = if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow!("Failed to read config entry input: {e}"))?
    };
    let entry: Value = serde_json::from_str(&data)
        .map_err(|e| anyhow!("Failed to decode config entry input: {e}"))?;
    let field = |k: &str| {
        entry
            .get(k)
            .or_else(|| entry.get(k.to_ascii_lowercase()))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (kind, name) = (field("Kind"), field("Name"));
    let q = if o.cas {
        format!("?cas={}", o.modify_index)
    } else {
        String::new()
    };
    let c = o.http.client(TIMEOUT)?;
    let written: bool = c
        .put(format!("{}/v1/config{q}", o.http.base()))
        .body(data)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json::<bool>()?))
        .map_err(|e| anyhow!("Error writing config entry {kind}/{name}: {e:#}"))?;
    if !written {
        return Err(anyhow!("Config entry not updated: {kind}/{name}"));
    }
    println!("Config entry written: {kind}/{name}");
    Ok(0)
}

fn read(args: &[String]) -> Result<i32> {
    let set = flag_set(
        "Usage: cairn config read -kind <kind> -name <name> [options]

  Reads the config entry specified by the given kind and name and outputs
  its JSON representation.
",
        vec![kind_flag(), name_flag()],
    );
    let (o, _) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    require_kind_and_name(&o, true)?;
    let c = o.http.client(TIMEOUT)?;
    let url = format!("{}/v1/config/{}/{}?pretty", o.http.base(), o.kind, o.name);
    let body = c
        .get(url)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.text()?))
        .map_err(|e| anyhow!("Error reading config entry {}/{}: {e:#}", o.kind, o.name))?;
    println!("{}", body.trim_end());
    Ok(0)
}

fn list(args: &[String]) -> Result<i32> {
    let set = flag_set(
        "Usage: cairn config list -kind <kind> [options]

  Lists all of the config entries for a given kind.
",
        vec![kind_flag()],
    );
    let (o, _) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    require_kind_and_name(&o, false)?;
    let c = o.http.client(TIMEOUT)?;
    let entries: Vec<Value> = c
        .get(format!("{}/v1/config/{}", o.http.base(), o.kind))
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json::<Vec<Value>>()?))
        .map_err(|e| anyhow!("Error listing config entries for kind {:?}: {e:#}", o.kind))?;
    for e in entries {
        println!("{}", e["Name"].as_str().unwrap_or(""));
    }
    Ok(0)
}

fn delete(args: &[String]) -> Result<i32> {
    let mut flags = vec![kind_flag(), name_flag()];
    flags.extend(cas_flags());
    let set = flag_set(
        "Usage: cairn config delete -kind <kind> -name <name> [options]

  Deletes the config entry specified by the kind and name.
",
        flags,
    );
    let (o, _) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    require_kind_and_name(&o, true)?;
    if o.cas && o.modify_index == 0 {
        return Err(anyhow!(
            "Must specify a -modify-index greater than 0 with -cas"
        ));
    }
    if !o.cas && o.modify_index != 0 {
        return Err(anyhow!("Cannot specify -modify-index without -cas"));
    }
    let q = if o.cas {
        format!("?cas={}", o.modify_index)
    } else {
        String::new()
    };
    let c = o.http.client(TIMEOUT)?;
    let url = format!("{}/v1/config/{}/{}{q}", o.http.base(), o.kind, o.name);
    let reply: Value = c
        .delete(url)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.json::<Value>()?))
        .map_err(|e| anyhow!("Error deleting config entry {}/{}: {e:#}", o.kind, o.name))?;
    if o.cas && reply != Value::Bool(true) {
        return Err(anyhow!("Config entry not deleted: {}/{}", o.kind, o.name));
    }
    println!("Config entry deleted: {}/{}", o.kind, o.name);
    Ok(0)
}
