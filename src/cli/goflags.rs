//! Go `flag` package parsing for subcommands that take a command line after
//! their flags (`cairn lock`, `cairn watch`): flags come first (`-k=v`,
//! `-k v`, `--k=v`, bare booleans), and parsing stops at the first
//! positional argument or at `--`, so the child's own flags are left alone.

use anyhow::{anyhow, Result};
use std::collections::HashMap;

pub struct Parsed {
    pub values: HashMap<String, String>,
    pub rest: Vec<String>,
}

impl Parsed {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A boolean flag: present without a value, or with a Go-parsable value.
    pub fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            None => false,
            Some("") => true,
            Some(v) => matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"),
        }
    }
}

/// `with_value` names the flags that take a value; `booleans` those that do not.
pub fn parse(args: &[String], with_value: &[&str], booleans: &[&str]) -> Result<Parsed> {
    let mut values = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if with_value.contains(&name) {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| anyhow!("flag needs an argument: -{name}"))?
                }
            };
            values.insert(name.to_string(), v);
        } else if booleans.contains(&name) {
            values.insert(name.to_string(), inline.unwrap_or_default());
        } else {
            return Err(anyhow!("flag provided but not defined: -{name}"));
        }
        i += 1;
    }
    Ok(Parsed {
        values,
        rest: args[i.min(args.len())..].to_vec(),
    })
}

/// The agent's HTTP address: `-http-addr`, else `CONSUL_HTTP_ADDR`, else
/// 127.0.0.1:8500, as a base URL.
pub fn http_base(flag: Option<&str>) -> String {
    let addr = flag
        .map(str::to_string)
        .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:8500".into());
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr
    } else {
        format!("http://{addr}")
    }
}

/// Runs `script` with `sh -c`, as Consul runs lock children and watch handlers.
pub fn shell(script: &str) -> std::process::Command {
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c").arg(script);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn stops_at_the_first_positional() {
        let p = parse(
            &v(&[
                "-http-addr",
                "127.0.0.1:1",
                "-verbose",
                "-n=1",
                "pfx",
                "ls",
                "-l",
            ]),
            &["http-addr", "n"],
            &["verbose"],
        )
        .unwrap();
        assert_eq!(p.get("http-addr"), Some("127.0.0.1:1"));
        assert!(p.flag("verbose"));
        assert_eq!(p.get("n"), Some("1"));
        assert_eq!(p.rest, v(&["pfx", "ls", "-l"]));
        assert!(parse(&v(&["-bogus"]), &[], &[]).is_err());
    }
}
