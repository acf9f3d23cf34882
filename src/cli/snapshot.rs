//! `cairn snapshot save|restore|inspect`: Consul's `consul snapshot`, over
//! `/v1/snapshot`. Output and exit codes are Consul's: `Saved and verified
//! snapshot to index N`, `Restored snapshot`, the inspect table; any
//! failure prints `Error ...: <reason>` and exits 1.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use crate::snapshot as archive;
use std::path::Path;
use std::time::Duration;

/// A save or restore moves the whole state: more time than most requests.
const TIMEOUT: Duration = Duration::from_secs(300);

const USAGE: &str = "Usage: cairn snapshot <subcommand> [options] [args]

  This command has subcommands for saving, restoring, and inspecting the state
  of the cairn servers for disaster recovery. These are atomic, point-in-time
  snapshots which include key/value entries, service catalog, sessions and
  ACLs.

  Create a snapshot:

      $ cairn snapshot save backup.snap

  Restore a snapshot:

      $ cairn snapshot restore backup.snap

  Inspect a snapshot:

      $ cairn snapshot inspect backup.snap

Subcommands:
    inspect    Displays information about a cairn snapshot file
    restore    Restores snapshot of cairn server state
    save       Saves snapshot of cairn server state
";

#[derive(Default)]
struct SaveArgs {
    http: HttpArgs,
    stale: bool,
}

#[derive(Default)]
struct RestoreArgs {
    http: HttpArgs,
}

with_http!(SaveArgs, RestoreArgs);

pub fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let Some((sub, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return Ok(1);
    };
    Ok(match sub.as_str() {
        "save" => save(rest),
        "restore" => restore(rest),
        "inspect" => inspect(rest),
        "-h" | "-help" | "--help" => {
            print!("{USAGE}");
            0
        }
        _ => {
            eprint!("{USAGE}");
            1
        }
    })
}

/// The one FILE argument; Consul's texts otherwise.
fn one_file(rest: &[String]) -> Result<&str, i32> {
    match rest {
        [file] => Ok(file),
        [] => {
            eprintln!("Missing FILE argument");
            Err(1)
        }
        more => {
            eprintln!("Too many arguments (expected 1, got {})", more.len());
            Err(1)
        }
    }
}

fn save(args: &[String]) -> i32 {
    let mut flags = http::flags::<SaveArgs>();
    flags.push(Flag::bool(
        "stale",
        "Permit any server to answer the request, not only the leader's state. \
         This allows for taking snapshots in the absence of a cluster leader.",
        |o: &mut SaveArgs, v| o.stale = v,
    ));
    let set = FlagSet::new(
        "Usage: cairn snapshot save [options] FILE

  Retrieves an atomic, point-in-time snapshot of the state of the cairn servers
  which includes key/value entries, service catalog, sessions and ACLs.

  The archive is verified before it is kept.
",
        flags,
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let file = match one_file(&rest) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let fetched = (|| -> anyhow::Result<(Vec<u8>, u64)> {
        let c = o.http.client(TIMEOUT)?;
        let mut url = format!("{}/v1/snapshot", o.http.base());
        if o.stale {
            url.push_str("?stale");
        }
        let resp = check(c.get(url).send()?)?;
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((resp.bytes()?.to_vec(), index))
    })();
    let (bytes, index) = match fetched {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error saving snapshot: {e:#}");
            return 1;
        }
    };
    // Consul writes to FILE.part, verifies it and then renames it.
    let mut part = std::ffi::OsString::from(file);
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    if let Err(e) = std::fs::write(&part, &bytes) {
        eprintln!("Error writing unverified snapshot file: {e}");
        return 1;
    }
    let verified = std::fs::read(&part)
        .map_err(|e| e.to_string())
        .and_then(|b| archive::read(&b).map(|_| ()).map_err(|e| e.0));
    if let Err(e) = verified {
        eprintln!("Error verifying snapshot file: {e}");
        let _ = std::fs::remove_file(&part);
        return 1;
    }
    if let Err(e) = std::fs::rename(&part, file) {
        eprintln!("Error renaming {:?} to {file:?}: {e}", part);
        return 1;
    }
    println!("Saved and verified snapshot to index {index}");
    0
}

fn restore(args: &[String]) -> i32 {
    let set = FlagSet::new(
        "Usage: cairn snapshot restore [options] FILE

  Restores an atomic, point-in-time snapshot of the state of the cairn servers
  which includes key/value entries, service catalog, sessions and ACLs.

  Restores involve a potentially dangerous low-level raft operation that is not
  designed to handle server failures during a restore. This command is
  primarily intended to be used when recovering from a disaster, restoring into
  a fresh cluster of cairn servers.
",
        http::flags::<RestoreArgs>(),
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let file = match one_file(&rest) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error opening snapshot file: {e}");
            return 1;
        }
    };
    let done = (|| -> anyhow::Result<()> {
        let c = o.http.client(TIMEOUT)?;
        check(
            c.put(format!("{}/v1/snapshot", o.http.base()))
                .body(bytes)
                .send()?,
        )?;
        Ok(())
    })();
    match done {
        Ok(()) => {
            println!("Restored snapshot");
            0
        }
        Err(e) => {
            eprintln!("Error restoring snapshot: {e:#}");
            1
        }
    }
}

fn inspect(args: &[String]) -> i32 {
    let set = FlagSet::<()>::new(
        "Usage: cairn snapshot inspect [options] FILE

  Displays information about a snapshot file on disk: its ID, size, index,
  term and version, after verifying the whole archive.
",
        vec![],
    );
    let ((), rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let file = match one_file(&rest) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let bytes = match std::fs::read(Path::new(file)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("Error opening snapshot file: {e}");
            return 1;
        }
    };
    match archive::read(&bytes) {
        Ok((a, _)) => {
            print!("{}", archive::inspect_table(&a.meta));
            0
        }
        Err(e) => {
            eprintln!("Error extracting snapshot data: {e}");
            1
        }
    }
}
