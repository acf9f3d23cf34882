//! `cairn kv get|put|delete|export|import`: the KV store from the command
//! line, in Consul's words, output shapes and exit codes (0 on success, 1 on
//! any error, the message on stderr). Export writes Consul's JSON
//! (`[{"key","flags","value"}]`, values base64, tab-indented), which import
//! reads back, so trees move between Consul and cairn clusters either way.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use anyhow::Result;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const USAGE: &str = "Usage: cairn kv <subcommand> [options] [args]

  Interacts with the key-value store: get, put, delete, export, import.

Subcommands:
    delete    Removes data from the KV store
    export    Exports a tree from the KV store as JSON
    get       Retrieves or lists data from the KV store
    import    Imports a tree stored as JSON to the KV store
    put       Sets or updates data in the KV store
";

pub fn run(args: Vec<String>) -> Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(1);
    };
    let outcome = match sub.as_str() {
        "get" => get(rest),
        "put" => put(rest),
        "delete" => delete(rest),
        "export" => export(rest),
        "import" => import(rest),
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

/// A failed command: the message Consul prints for it, on stderr.
type Outcome = std::result::Result<i32, String>;

/// Parsed flags and arguments, or the exit code once the flag parser has
/// reported a failure (or printed the usage).
fn parse<T: Default>(
    set: &FlagSet<T>,
    args: &[String],
) -> std::result::Result<(T, Vec<String>), i32> {
    set.parse_or_report(args)
}

/// A KV pair as `GET /v1/kv` returns it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    session: Option<String>,
}

impl Pair {
    fn bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| B64.decode(v).ok())
            .unwrap_or_default()
    }

    fn shown(&self, base64: bool) -> String {
        if base64 {
            B64.encode(self.bytes())
        } else {
            String::from_utf8_lossy(&self.bytes()).into_owned()
        }
    }
}

/// One entry of `kv export` / `kv import`, Consul's `impexp.Entry`.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: String,
}

/// `-stale` and `-datacenter`, which Consul's KV reads take.
#[derive(Default)]
struct Server {
    stale: bool,
    datacenter: Option<String>,
}

impl Server {
    fn query(&self) -> Vec<(String, String)> {
        let mut q = Vec::new();
        if self.stale {
            q.push(("stale".to_string(), String::new()));
        }
        if let Some(dc) = self.datacenter.as_ref().filter(|d| !d.is_empty()) {
            q.push(("dc".to_string(), dc.clone()));
        }
        q
    }
}

#[derive(Default)]
struct GetArgs {
    http: HttpArgs,
    server: Server,
    base64: bool,
    detailed: bool,
    keys: bool,
    recurse: bool,
    separator: Option<String>,
}

#[derive(Default)]
struct PutArgs {
    http: HttpArgs,
    datacenter: Option<String>,
    cas: bool,
    flags: u64,
    base64: bool,
    modify_index: u64,
    session: String,
    acquire: bool,
    release: bool,
}

#[derive(Default)]
struct DeleteArgs {
    http: HttpArgs,
    datacenter: Option<String>,
    cas: bool,
    modify_index: u64,
    recurse: bool,
}

#[derive(Default)]
struct ExportArgs {
    http: HttpArgs,
    server: Server,
}

#[derive(Default)]
struct ImportArgs {
    http: HttpArgs,
    datacenter: Option<String>,
}

with_http!(GetArgs, PutArgs, DeleteArgs, ExportArgs, ImportArgs);

fn flag_set<T: http::WithHttp>(synopsis: &'static str, own: Vec<Flag<T>>) -> FlagSet<T> {
    let mut flags = http::flags();
    flags.extend(own);
    FlagSet::new(synopsis, flags)
}

const STALE_HELP: &str = "Permit any Consul server (non-leader) to respond to this request. \
     This allows for lower latency and higher throughput, but can result in stale data.";
const DC_HELP: &str = "Name of the datacenter to query. If unspecified, this will default to \
     the datacenter of the queried agent.";

/// The key argument: none is "", one is it (a leading `/` dropped, as Consul does).
fn one_key(args: &[String]) -> std::result::Result<String, String> {
    match args {
        [] => Ok(String::new()),
        [k] => Ok(k.strip_prefix('/').unwrap_or(k).to_string()),
        _ => Err(format!(
            "Too many arguments (expected 1, got {})",
            args.len()
        )),
    }
}

fn client(h: &HttpArgs) -> std::result::Result<reqwest::blocking::Client, String> {
    h.client(TIMEOUT)
        .map_err(|e| format!("Error connecting to Consul agent: {e:#}"))
}

/// The URL of `key` under `/v1/kv/`, each segment percent-encoded.
fn kv_url(base: &str, key: &str) -> String {
    match reqwest::Url::parse(&format!("{base}/v1/kv/")) {
        Ok(mut url) => {
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty().extend(key.split('/'));
            }
            url.to_string()
        }
        Err(_) => format!("{base}/v1/kv/{key}"),
    }
}

fn get(args: &[String]) -> Outcome {
    let set = flag_set::<GetArgs>(
        "Usage: cairn kv get [options] [KEY_OR_PREFIX]

  Retrieves the value from the key-value store at the given key name. If no
  key exists with that name, an error is returned. If a key exists with that
  name but has no data, nothing is returned. With -recurse, every key under
  the prefix is listed as key:value; with -keys, only the key names.
",
        vec![
            Flag::bool(
                "base64",
                "Base64 encode the value. The default value is false.",
                |o, v| o.base64 = v,
            ),
            Flag::bool(
                "detailed",
                "Provide additional metadata about the key in addition to the value such \
                 as the ModifyIndex and any flags that may have been set on the key. \
                 The default value is false.",
                |o, v| o.detailed = v,
            ),
            Flag::bool(
                "keys",
                "List keys which start with the given prefix, but not their values. \
                 The default value is false.",
                |o, v| o.keys = v,
            ),
            Flag::bool(
                "recurse",
                "Recursively look at all keys prefixed with the given path. The default \
                 value is false.",
                |o, v| o.recurse = v,
            ),
            Flag::text(
                "separator",
                "String to use as a separator between keys. The default value is \"/\", \
                 but this option is only taken into account when paired with the -keys flag.",
                |o, v| o.separator = Some(v),
            ),
            Flag::bool("stale", STALE_HELP, |o, v| o.server.stale = v),
            Flag::text("datacenter", DC_HELP, |o, v| o.server.datacenter = Some(v)),
        ],
    );
    let (o, rest) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let key = one_key(&rest)?;
    if key.is_empty() && !(o.recurse || o.keys) {
        return Err("Error! Missing KEY argument".into());
    }
    let c = client(&o.http)?;
    let base = o.http.base();
    let mut query = o.server.query();
    let queried = |query: Vec<(String, String)>| -> std::result::Result<Option<Value>, String> {
        let resp = c
            .get(kv_url(&base, &key))
            .query(&query)
            .send()
            .map_err(|e| format!("Error querying Consul agent: {e}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = check(resp).map_err(|e| format!("Error querying Consul agent: {e}"))?;
        resp.json()
            .map(Some)
            .map_err(|e| format!("Error querying Consul agent: {e}"))
    };
    if o.keys {
        query.push(("keys".into(), String::new()));
        query.push((
            "separator".into(),
            o.separator.unwrap_or_else(|| "/".into()),
        ));
        let keys: Vec<String> = match queried(query)? {
            Some(v) => serde_json::from_value(v).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        for k in keys {
            println!("{k}");
        }
        return Ok(0);
    }
    if o.recurse {
        query.push(("recurse".into(), String::new()));
        let pairs: Vec<Pair> = match queried(query)? {
            Some(v) => serde_json::from_value(v).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        for (i, pair) in pairs.iter().enumerate() {
            if o.detailed {
                println!("{}", detailed(pair, o.base64));
                if i + 1 < pairs.len() {
                    println!();
                }
            } else {
                println!("{}:{}", pair.key, pair.shown(o.base64));
            }
        }
        return Ok(0);
    }
    let pair: Option<Pair> = match queried(query)? {
        Some(v) => serde_json::from_value::<Vec<Pair>>(v)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next(),
        None => None,
    };
    let Some(pair) = pair else {
        return Err(format!("Error! No key exists at: {key}"));
    };
    if o.detailed {
        println!("{}", detailed(&pair, o.base64));
    } else {
        // The raw value, as stored, then a newline.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let value = if o.base64 {
            B64.encode(pair.bytes()).into_bytes()
        } else {
            pair.bytes()
        };
        let _ = out.write_all(&value);
        let _ = out.write_all(b"\n");
    }
    Ok(0)
}

/// Consul's `-detailed` block: a tab-aligned table (Go's tabwriter with
/// padding 6), Session `-` when there is none.
fn detailed(pair: &Pair, base64: bool) -> String {
    let session = match pair.session.as_deref() {
        None | Some("") => "-".to_string(),
        Some(s) => s.to_string(),
    };
    let rows = [
        ("CreateIndex", pair.create_index.to_string()),
        ("Flags", pair.flags.to_string()),
        ("Key", pair.key.clone()),
        ("LockIndex", pair.lock_index.to_string()),
        ("ModifyIndex", pair.modify_index.to_string()),
        ("Session", session),
        ("Value", pair.shown(base64)),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 6;
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}{v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `DATA` as `kv put` and `kv import` read it: `@file`, `-` for stdin, or
/// the argument itself.
fn data_argument(data: &str) -> std::result::Result<Vec<u8>, String> {
    if let Some(path) = data.strip_prefix('@') {
        return std::fs::read(path).map_err(|e| format!("Failed to read file: {e}"));
    }
    if data == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(b);
    }
    Ok(data.as_bytes().to_vec())
}

fn put(args: &[String]) -> Outcome {
    let set = flag_set::<PutArgs>(
        "Usage: cairn kv put [options] KEY [DATA]

  Writes the data to the given path in the key-value store. The data can be
  read from a file by prefixing it with \"@\", or from stdin with \"-\". Without
  DATA an empty value is written. With -cas and -modify-index the write is a
  check-and-set.
",
        vec![
            Flag::bool(
                "cas",
                "Perform a Check-And-Set operation. Specifying this value also \
                 requires the -modify-index flag to be set. The default value is false.",
                |o, v| o.cas = v,
            ),
            Flag::uint64(
                "flags",
                "Unsigned integer value to assign to this key-value pair. This \
                 value is not read by Consul, so clients can use this value however \
                 makes sense for their use case. The default value is 0 (no flags).",
                |o, v| o.flags = v,
            ),
            Flag::bool(
                "base64",
                "Treat the data as base 64 encoded. The default value is false.",
                |o, v| o.base64 = v,
            ),
            Flag::uint64(
                "modify-index",
                "Unsigned integer representing the ModifyIndex of the key. This is \
                 used in combination with the -cas flag.",
                |o, v| o.modify_index = v,
            ),
            Flag::text(
                "session",
                "User-defined identifer for this session as a string. This is commonly \
                 used with the -acquire and -release operations to build robust locking, \
                 but it can be set on any key. The default value is empty (no session).",
                |o, v| o.session = v,
            ),
            Flag::bool(
                "acquire",
                "Obtain a lock on the key. If the key does not exist, this operation \
                 will create the key and obtain the lock. The session must already \
                 exist and be specified via the -session flag. The default value is false.",
                |o, v| o.acquire = v,
            ),
            Flag::bool(
                "release",
                "Forfeit the lock on the key at the given path. This requires the \
                 -session flag to be set. The key must be held by the session in order to \
                 be unlocked. The default value is false.",
                |o, v| o.release = v,
            ),
            Flag::bool("stale", STALE_HELP, |_, _| {}),
            Flag::text("datacenter", DC_HELP, |o, v| o.datacenter = Some(v)),
        ],
    );
    let (o, rest) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let (key, data) = match rest.as_slice() {
        [] => return Err("Error! Missing KEY argument".into()),
        [k] => (k.clone(), Vec::new()),
        [k, d] => (
            k.clone(),
            if d.is_empty() {
                Vec::new()
            } else {
                data_argument(d).map_err(|e| format!("Error! {e}"))?
            },
        ),
        _ => {
            return Err(format!(
                "Error! Too many arguments (expected 1 or 2, got {})",
                rest.len()
            ))
        }
    };
    let data = if o.base64 {
        B64.decode(&data)
            .map_err(|e| format!("Error! Cannot base 64 decode data: {e}"))?
    } else {
        data
    };
    if (o.release || o.acquire) && o.session.is_empty() {
        return Err("Error! Missing -session (required with -acquire and -release)".into());
    }
    if o.cas && o.modify_index == 0 {
        return Err("Must specify -modify-index with -cas!".into());
    }
    let c = client(&o.http)?;
    let mut query: Vec<(String, String)> = Vec::new();
    if o.flags != 0 {
        query.push(("flags".into(), o.flags.to_string()));
    }
    if let Some(dc) = o.datacenter.as_ref().filter(|d| !d.is_empty()) {
        query.push(("dc".into(), dc.clone()));
    }
    if o.cas {
        query.push(("cas".into(), o.modify_index.to_string()));
    } else if o.acquire {
        query.push(("acquire".into(), o.session.clone()));
    } else if o.release {
        query.push(("release".into(), o.session.clone()));
    }
    let sent = c
        .put(kv_url(&o.http.base(), &key))
        .query(&query)
        .body(data)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.text()?));
    let failed = |e: anyhow::Error| -> String {
        if o.cas {
            format!("Error! Did not write to {key}: {e:#}")
        } else {
            format!("Error! Failed writing data: {e:#}")
        }
    };
    let written = sent.map_err(failed)?.trim() == "true";
    if o.cas {
        if !written {
            return Err(format!("Error! Did not write to {key}: CAS failed"));
        }
        println!("Success! Data written to: {key}");
    } else if o.acquire {
        if !written {
            return Err("Error! Did not acquire lock".into());
        }
        println!("Success! Lock acquired on: {key}");
    } else if o.release {
        if !written {
            return Err("Error! Did not release lock".into());
        }
        println!("Success! Lock released on: {key}");
    } else {
        println!("Success! Data written to: {key}");
    }
    Ok(0)
}

fn delete(args: &[String]) -> Outcome {
    let set = flag_set::<DeleteArgs>(
        "Usage: cairn kv delete [options] KEY_OR_PREFIX

  Removes the value from the key-value store at the given path. If no key
  exists at the path, no action is taken. With -recurse, every key starting
  with the path is removed.
",
        vec![
            Flag::bool(
                "cas",
                "Perform a Check-And-Set operation. Specifying this value also requires \
                 the -modify-index flag to be set. The default value is false.",
                |o, v| o.cas = v,
            ),
            Flag::uint64(
                "modify-index",
                "Unsigned integer representing the ModifyIndex of the key. This is \
                 used in combination with the -cas flag.",
                |o, v| o.modify_index = v,
            ),
            Flag::bool(
                "recurse",
                "Recursively delete all keys with the path. The default value is false.",
                |o, v| o.recurse = v,
            ),
            Flag::bool("stale", STALE_HELP, |_, _| {}),
            Flag::text("datacenter", DC_HELP, |o, v| o.datacenter = Some(v)),
        ],
    );
    let (o, rest) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let key = one_key(&rest)?;
    if key.is_empty() && !o.recurse {
        return Err("Error! Missing KEY argument".into());
    }
    if o.cas && o.modify_index == 0 {
        return Err(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0."
                .into(),
        );
    }
    if o.modify_index != 0 && !o.cas {
        return Err("Cannot specify -modify-index without -cas!".into());
    }
    if o.recurse && o.cas {
        return Err("Cannot specify both -cas and -recurse!".into());
    }
    let c = client(&o.http)?;
    let mut query: Vec<(String, String)> = Vec::new();
    if let Some(dc) = o.datacenter.as_ref().filter(|d| !d.is_empty()) {
        query.push(("dc".into(), dc.clone()));
    }
    if o.recurse {
        query.push(("recurse".into(), String::new()));
    } else if o.cas {
        query.push(("cas".into(), o.modify_index.to_string()));
    }
    let sent = c
        .delete(kv_url(&o.http.base(), &key))
        .query(&query)
        .send()
        .map_err(anyhow::Error::from)
        .and_then(check)
        .and_then(|r| Ok(r.text()?));
    match sent {
        Err(e) if o.recurse => Err(format!("Error! Did not delete prefix {key}: {e:#}")),
        Err(e) if o.cas => Err(format!("Error! Did not delete key {key}: {e:#}")),
        Err(e) => Err(format!("Error deleting key {key}: {e:#}")),
        Ok(_) if o.recurse => {
            println!("Success! Deleted keys with prefix: {key}");
            Ok(0)
        }
        Ok(body) if o.cas && body.trim() != "true" => {
            Err(format!("Error! Did not delete key {key}: CAS failed"))
        }
        Ok(_) => {
            println!("Success! Deleted key: {key}");
            Ok(0)
        }
    }
}

fn export(args: &[String]) -> Outcome {
    let set = flag_set::<ExportArgs>(
        "Usage: cairn kv export [options] [KEY_OR_PREFIX]

  Retrieves key-value pairs for the given prefix from the key-value store,
  and writes a JSON representation to stdout. This can be used with the
  command \"cairn kv import\" to move entire trees between clusters.
",
        vec![
            Flag::bool("stale", STALE_HELP, |o, v| o.server.stale = v),
            Flag::text("datacenter", DC_HELP, |o, v| o.server.datacenter = Some(v)),
        ],
    );
    let (o, rest) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let key = one_key(&rest)?;
    let c = client(&o.http)?;
    let mut query = o.server.query();
    query.push(("recurse".into(), String::new()));
    let resp = c
        .get(kv_url(&o.http.base(), &key))
        .query(&query)
        .send()
        .map_err(|e| format!("Error querying Consul agent: {e}"))?;
    let pairs: Vec<Pair> = if resp.status() == reqwest::StatusCode::NOT_FOUND {
        Vec::new()
    } else {
        check(resp)
            .and_then(|r| Ok(r.json()?))
            .map_err(|e| format!("Error querying Consul agent: {e:#}"))?
    };
    let entries: Vec<Entry> = pairs
        .iter()
        .map(|p| Entry {
            key: p.key.clone(),
            flags: p.flags,
            value: B64.encode(p.bytes()),
        })
        .collect();
    println!("{}", go_indent(&entries).map_err(|e| e.to_string())?);
    Ok(0)
}

/// JSON as Go's `json.MarshalIndent(v, "", "\t")` writes it.
fn go_indent<T: Serialize>(v: &T) -> Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser)?;
    let s = String::from_utf8(out)?;
    // Go writes an empty list as `[]`; serde_json already does.
    Ok(s)
}

fn import(args: &[String]) -> Outcome {
    let set = flag_set::<ImportArgs>(
        "Usage: cairn kv import [options] [DATA]

  Imports key-value pairs to the key-value store from the JSON representation
  generated by the \"cairn kv export\" command. The data can be read from a
  file by prefixing the filename with \"@\", or from stdin with \"-\".
",
        vec![Flag::text("datacenter", DC_HELP, |o, v| {
            o.datacenter = Some(v)
        })],
    );
    let (o, rest) = match parse(&set, args) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let data = match rest.as_slice() {
        [] => return Err("Error! Missing DATA argument".into()),
        [d] if d.is_empty() => return Err("Error! Empty DATA argument".into()),
        [d] => data_argument(d).map_err(|e| format!("Error! {e}"))?,
        _ => {
            return Err(format!(
                "Error! Too many arguments (expected 1, got {})",
                rest.len()
            ))
        }
    };
    let c = client(&o.http)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&data).map_err(|e| format!("Cannot unmarshal data: {e}"))?;
    // Every value is decoded before the first write, so a bad entry
    // leaves the store as it was.
    let mut decoded = Vec::with_capacity(entries.len());
    for e in &entries {
        let value = B64
            .decode(&e.value)
            .map_err(|err| format!("Error base 64 decoding value for key {}: {err}", e.key))?;
        decoded.push(value);
    }
    for (e, value) in entries.iter().zip(decoded) {
        let mut query: Vec<(String, String)> = vec![("flags".into(), e.flags.to_string())];
        if let Some(dc) = o.datacenter.as_ref().filter(|d| !d.is_empty()) {
            query.push(("dc".into(), dc.clone()));
        }
        c.put(kv_url(&o.http.base(), &e.key))
            .query(&query)
            .body(value)
            .send()
            .map_err(anyhow::Error::from)
            .and_then(check)
            .map_err(|err| format!("Error! Failed writing data for key {}: {err:#}", e.key))?;
        println!("Imported: {}", e.key);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detailed_output_aligns_as_go_tabwriter_does() {
        let p = Pair {
            key: "a/b".into(),
            flags: 42,
            value: Some(B64.encode("hi")),
            create_index: 5,
            modify_index: 7,
            lock_index: 0,
            session: None,
        };
        assert_eq!(
            detailed(&p, false),
            "CreateIndex      5\nFlags            42\nKey              a/b\nLockIndex        0\n\
             ModifyIndex      7\nSession          -\nValue            hi"
        );
        assert!(detailed(&p, true).ends_with("Value            aGk="));
    }

    #[test]
    fn bad_command_lines_fail_before_any_request() {
        let addr = "-http-addr=127.0.0.1:1";
        assert_eq!(
            get(&args(&[addr])).unwrap_err(),
            "Error! Missing KEY argument"
        );
        assert_eq!(
            get(&args(&[addr, "a", "b"])).unwrap_err(),
            "Too many arguments (expected 1, got 2)"
        );
        assert_eq!(
            put(&args(&[addr, "-cas", "k", "v"])).unwrap_err(),
            "Must specify -modify-index with -cas!"
        );
        assert_eq!(
            put(&args(&[addr, "-acquire", "k"])).unwrap_err(),
            "Error! Missing -session (required with -acquire and -release)"
        );
        assert_eq!(
            delete(&args(&[addr, "-modify-index=3", "k"])).unwrap_err(),
            "Cannot specify -modify-index without -cas!"
        );
        assert_eq!(
            delete(&args(&[addr, "-recurse", "-cas", "-modify-index=3", "k"])).unwrap_err(),
            "Cannot specify both -cas and -recurse!"
        );
        assert_eq!(
            import(&args(&[addr])).unwrap_err(),
            "Error! Missing DATA argument"
        );
        assert_eq!(put(&args(&["-flags=-1", "k"])).unwrap(), 1);
    }

    #[test]
    fn export_is_tab_indented_like_go() {
        let e = vec![Entry {
            key: "k".into(),
            flags: 0,
            value: "dg==".into(),
        }];
        assert_eq!(
            go_indent(&e).unwrap(),
            "[\n\t{\n\t\t\"key\": \"k\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"dg==\"\n\t}\n]"
        );
        assert_eq!(go_indent(&Vec::<Entry>::new()).unwrap(), "[]");
    }
}
