//! `cairn reload` and `cairn validate`: the two commands about an agent's
//! config files, in Consul's shapes and words.

use super::flags::{Flag, FlagSet};
use super::http::{self, check, with_http, HttpArgs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Default)]
struct ReloadArgs {
    http: HttpArgs,
}

with_http!(ReloadArgs);

/// `cairn reload`: asks the agent to reread its config files.
pub fn reload(args: &[String]) -> anyhow::Result<i32> {
    let set = FlagSet::new(
        "Usage: cairn reload [options]

  Causes the agent to reload its configuration files: services and checks
  defined in them are added, changed and removed to match. Equivalent to
  sending SIGHUP to the agent.
",
        http::flags::<ReloadArgs>(),
    );
    let (o, rest) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    if !rest.is_empty() {
        eprintln!("Error: unexpected arguments: {}", rest.join(" "));
        return Ok(1);
    }
    let sent = o
        .http
        .client(Duration::from_secs(60))
        .and_then(|c| Ok(c.put(format!("{}/v1/agent/reload", o.http.base())).send()?))
        .and_then(check);
    match sent {
        Ok(_) => {
            println!("Configuration reload triggered");
            Ok(0)
        }
        Err(e) => {
            eprintln!("Error reloading: {e:#}");
            Ok(1)
        }
    }
}

#[derive(Default)]
struct ValidateArgs {
    quiet: bool,
}

/// `cairn validate <file-or-dir>...`: builds the configuration the files
/// give, as the agent would, and reports the first error.
pub fn validate(args: &[String]) -> anyhow::Result<i32> {
    let set = FlagSet::new(
        "Usage: cairn validate [options] FILE_OR_DIRECTORY...

  Performs a thorough sanity test on config files: for each file or
  directory given, parses the contents just as \"cairn agent\" would and
  reports any error. Returns 0 if the configuration is valid, 1 if not.
",
        vec![Flag::bool(
            "quiet",
            "When given, a successful run will produce no output.",
            |o: &mut ValidateArgs, v| o.quiet = v,
        )],
    );
    let (o, paths) = match set.parse_or_report(args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    if paths.is_empty() {
        eprintln!("Must specify at least one config file or directory");
        return Ok(1);
    }
    let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
    match crate::config::validate_files(&paths) {
        Ok(_) => {
            if !o.quiet {
                println!("Configuration is valid!");
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("Config validation failed: {e}");
            Ok(1)
        }
    }
}
