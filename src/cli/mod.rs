//! Command-line entry: `cairn agent ...` and the client subcommands, with
//! Go-style flags as Consul's CLI parses them (`flags.rs`): `-flag=v`,
//! `-flag v`, `--flag v`, bare booleans, and flags before positionals.

mod acl;
pub(crate) mod agent;
mod catalog;
mod client;
mod config_files;
mod event;
mod flags;
mod http;
mod keyring;
mod kv;
mod lock;
mod maint;
mod registrator;
mod rtt;
mod services;
mod snapshot;
mod template;
mod tls;
mod watch;

use anyhow::Result;
use flags::FlagSet;

const USAGE: &str = "Usage: cairn [--version] [--help] <command> [<args>]

Available commands are:
    acl            Interact with the ACL system (bootstrap, policies, tokens)
    agent          Runs a cairn agent
    catalog        Interact with the catalog (datacenters, nodes, services)
    event          Fire a new event
    force-leave    Forces a member of the cluster to enter the left state
    info           Provides debugging information for operators
    join           Tell a running agent to join the cluster
    keygen         Generates a new encryption key
    keyring        Manages gossip layer encryption keys
    kv             Interact with the key-value store
    leave          Gracefully leaves the cluster and shuts down
    lock           Execute a command holding a lock
    maint          Controls node or service maintenance mode
    members        Lists the members of the cluster
    monitor        Stream logs from an agent
    operator       Provides cluster-level tools (raft list-peers, raft remove-peer)
    registrator    Registers Docker containers' published ports as services
    reload         Triggers the agent to reload configuration files
    rtt            Estimates network round trip time between nodes
    services       Interact with services (register, deregister)
    snapshot       Saves, restores and inspects snapshots of the servers' state
    template       Renders templates from the catalog and KV, as consul-template does
    tls            Builtin helpers for creating CAs and certificates
    validate       Validate config files/directories
    version        Prints the cairn version
    watch          Watch for changes in the catalog or KV and run a handler
";

/// Runs the CLI; returns the process exit code.
pub fn main(argv: Vec<String>) -> Result<i32> {
    let mut args = argv.into_iter();
    let _prog = args.next();
    let Some(cmd) = args.next() else {
        eprint!("{USAGE}");
        return Ok(1);
    };
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "agent" => agent::run(rest),
        "acl" => acl::run(rest),
        "version" => without_flags("Usage: cairn version\n", &rest, print_version),
        "-version" | "--version" | "-v" => Ok(print_version()),
        "leave" | "members" | "info" | "join" | "force-leave" | "operator" => {
            client::run(&cmd, rest)
        }
        "keyring" => keyring::run(rest),
        "kv" => kv::run(rest),
        "catalog" => catalog::run(rest),
        "event" => event::run(rest),
        "services" => services::run(rest),
        "maint" => maint::maint(rest),
        "monitor" => maint::monitor(rest),
        "lock" => lock::run(rest),
        "reload" => config_files::reload(&rest),
        "validate" => config_files::validate(&rest),
        "template" => template::run(rest),
        "tls" => tls::run(rest),
        "registrator" => registrator::run(rest),
        "snapshot" => snapshot::run(rest),
        "rtt" => rtt::run(rest),
        "watch" => watch::run(rest),
        "keygen" => without_flags(
            "Usage: cairn keygen\n\n  Prints a new 32-byte key for -encrypt, base64-encoded.\n",
            &rest,
            || {
                println!("{}", crate::gossip::crypto::keygen());
                0
            },
        ),
        "-h" | "--help" | "-help" | "help" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => {
            eprintln!("Unknown command: {other:?}\n");
            eprint!("{USAGE}");
            Ok(1)
        }
    }
}

/// A subcommand that takes no flags and no arguments (but answers `-h`).
fn without_flags(
    synopsis: &'static str,
    args: &[String],
    run: impl FnOnce() -> i32,
) -> Result<i32> {
    let set = FlagSet::<()>::new(synopsis, vec![]);
    match set.parse_or_report(args) {
        Ok((_, rest)) if rest.is_empty() => Ok(run()),
        Ok((_, rest)) => {
            eprintln!("Error: unexpected arguments: {}", rest.join(" "));
            Ok(1)
        }
        Err(code) => Ok(code),
    }
}

fn print_version() -> i32 {
    println!(
        "Consul v{} (cairn {})",
        crate::agent::VERSION,
        env!("CARGO_PKG_VERSION")
    );
    println!("Revision cairn");
    println!("Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)");
    0
}

/// Runs `script` with `sh -c`, as Consul runs lock children and watch handlers.
fn shell(script: &str) -> std::process::Command {
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c").arg(script);
    c
}
