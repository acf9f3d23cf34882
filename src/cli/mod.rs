//! Command-line entry: `cairn agent ...` and the client subcommands. Flags
//! are Go-style as Consul spells them: `-flag=v`, `-flag v` and `--flag v`.

pub mod agent_flags;
pub mod client;
mod goflags;
mod lock;
mod watch;

use anyhow::Result;

/// Rewrites Go-style single-dash long flags (`-data-dir=x`) to the
/// double-dash form clap parses. A lone `-` (stdin) is left alone.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    args.into_iter()
        .map(|a| {
            if a.len() > 2 && a.starts_with('-') && !a.starts_with("--") {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

const USAGE: &str = "Usage: cairn [--version] [--help] <command> [<args>]

Available commands are:
    agent          Runs a cairn agent
    force-leave    Forces a member of the cluster to enter the left state
    info           Provides debugging information for operators
    join           Tell a running agent to join the cluster
    keygen         Generates a new encryption key
    leave          Gracefully leaves the cluster and shuts down
    lock           Execute a command holding a lock
    members        Lists the members of the cluster
    operator       Provides cluster-level tools (raft list-peers, raft remove-peer)
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
        "agent" => agent_flags::run(rest),
        "version" | "-version" | "--version" | "-v" => {
            println!(
                "Consul v{} (cairn {})",
                crate::agent::VERSION,
                env!("CARGO_PKG_VERSION")
            );
            println!("Revision cairn");
            println!("Protocol 2 spoken by default, understands 2 to 3 (agent will automatically use protocol >2 when speaking to compatible agents)");
            Ok(0)
        }
        "leave" | "members" | "info" | "join" | "force-leave" | "operator" => {
            client::run(&cmd, rest)
        }
        "lock" => lock::run(rest),
        "watch" => watch::run(rest),
        "keygen" => {
            println!("{}", crate::gossip::crypto::keygen());
            Ok(0)
        }
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
