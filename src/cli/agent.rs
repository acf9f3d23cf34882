//! `cairn agent`: its flags, Consul's names and meanings. Every flag but
//! `-dev`, `-config-file` and `-config-dir` sets a config key of the flags'
//! [`Source`], which [`config::load`] lays over the config files, so a flag
//! and its config key are mapped and normalised by the same code.

use super::flags::{Flag, FlagSet};
use crate::config::{self, Config, Source};
use std::path::PathBuf;

/// What `cairn agent`'s command line says.
#[derive(Default)]
pub(crate) struct AgentArgs {
    dev: bool,
    /// `-config-file` and `-config-dir`, in the order given: both name a
    /// file or a directory, as in Consul.
    config_paths: Vec<PathBuf>,
    source: Source,
}

const SYNOPSIS: &str = "Usage: cairn agent [options]

  Starts a cairn agent: a server with -server, else a client. Config files
  and directories are read in the order given; flags override them.
";

pub(crate) fn flag_set() -> FlagSet<AgentArgs> {
    FlagSet::new(
        SYNOPSIS,
        vec![
            Flag::bool(
                "dev",
                "Development mode: a bootstrapped single server with the UI on.",
                |a, v| a.dev = v,
            ),
            Flag::bool("server", "Run in server mode.", |a, v| {
                a.source.server = Some(v)
            }),
            Flag::bool(
                "bootstrap",
                "Elect this server leader alone. Only one server of a datacenter should.",
                |a, v| a.source.bootstrap = Some(v),
            ),
            Flag::uint(
                "bootstrap-expect",
                "The `number` of servers to wait for before bootstrapping the cluster.",
                |a, v| a.source.bootstrap_expect = Some(v),
            ),
            Flag::text("data-dir", "The `path` to keep agent state in.", |a, v| {
                a.source.data_dir = Some(v.into())
            }),
            Flag::text(
                "node",
                "The `name` of this node; defaults to the hostname. Unique in the cluster.",
                |a, v| a.source.node_name = Some(v),
            ),
            Flag::text(
                "node-id",
                "A `UUID` for this node; by default one is made and kept in the data dir.",
                |a, v| a.source.node_id = Some(v),
            ),
            Flag::list("node-meta", "Node metadata as `key:value`.", |a, v| {
                let (k, val) = v.split_once(':').unwrap_or((&v, ""));
                a.source.node_meta.insert(k.to_string(), val.to_string());
            }),
            Flag::text(
                "datacenter",
                "The `name` of this agent's datacenter (dc1).",
                |a, v| a.source.datacenter = Some(v),
            ),
            Flag::text(
                "domain",
                "The DNS `domain` to answer for (consul).",
                |a, v| a.source.domain = Some(v),
            ),
            Flag::text(
                "alt-domain",
                "A second DNS `domain` to answer for.",
                |a, v| a.source.alt_domain = Some(v),
            ),
            Flag::text(
                "client",
                "Space-separated `addresses` the HTTP and DNS listeners bind (127.0.0.1).",
                |a, v| a.source.client_addr = Some(v),
            ),
            Flag::text(
                "bind",
                "The `address` cluster traffic binds (0.0.0.0).",
                |a, v| a.source.bind_addr = Some(v),
            ),
            Flag::text(
                "advertise",
                "The `address` other agents reach this one on.",
                |a, v| a.source.advertise_addr = Some(v),
            ),
            Flag::text(
                "advertise-wan",
                "The `address` other datacenters' servers reach this one on (WAN gossip and RPC).",
                |a, v| a.source.advertise_addr_wan = Some(v),
            ),
            Flag::int(
                "http-port",
                "The HTTP API port (8500); -1 disables it.",
                |a, v| a.source.ports.http = Some(v),
            ),
            Flag::int(
                "https-port",
                "The HTTPS API port; -1 disables it.",
                |a, v| a.source.ports.https = Some(v),
            ),
            Flag::int("grpc-port", "The gRPC port; -1 disables it.", |a, v| {
                a.source.ports.grpc = Some(v)
            }),
            Flag::int(
                "dns-port",
                "The DNS port (8600); -1 disables it.",
                |a, v| a.source.ports.dns = Some(v),
            ),
            Flag::int("server-port", "The server RPC port (8300).", |a, v| {
                a.source.ports.server = Some(v)
            }),
            Flag::int("serf-lan-port", "The LAN gossip port (8301).", |a, v| {
                a.source.ports.serf_lan = Some(v)
            }),
            Flag::int("serf-wan-port", "The WAN gossip port (8302).", |a, v| {
                a.source.ports.serf_wan = Some(v)
            }),
            Flag::list(
                "config-file",
                "A JSON config `file`, or a directory, to read.",
                |a, v| a.config_paths.push(v.into()),
            ),
            Flag::list(
                "config-dir",
                "A `directory` whose *.json files are read in name order.",
                |a, v| a.config_paths.push(v.into()),
            ),
            Flag::text(
                "log-level",
                "The log `level`: trace, debug, info, warn or error (info).",
                |a, v| a.source.log_level = Some(v),
            ),
            Flag::text(
                "pid-file",
                "A `path` to write the agent's PID to.",
                |a, v| a.source.pid_file = Some(v.into()),
            ),
            Flag::bool("ui", "Serve the web UI.", |a, v| a.source.ui = Some(v)),
            Flag::text(
                "ui-dir",
                "Serve the web UI from this `directory` instead of the built-in files.",
                |a, v| a.source.ui_config.dir = Some(v.into()),
            ),
            Flag::text(
                "ui-content-path",
                "The `path` the web UI is served under (/ui/).",
                |a, v| a.source.ui_config.content_path = Some(v),
            ),
            Flag::bool(
                "enable-script-checks",
                "Run script checks, including those registered over HTTP.",
                |a, v| a.source.enable_script_checks = Some(v),
            ),
            Flag::bool(
                "enable-local-script-checks",
                "Run script checks only from config files.",
                |a, v| a.source.enable_local_script_checks = Some(v),
            ),
            Flag::list(
                "retry-join",
                "An `address` to join at startup, retried until it succeeds.",
                |a, v| a.source.retry_join.push(v),
            ),
            Flag::list(
                "join",
                "An `address` to join at startup (deprecated; the same as -retry-join).",
                |a, v| a.source.start_join.push(v),
            ),
            Flag::text(
                "retry-interval",
                "The `duration` between join attempts (30s).",
                |a, v| a.source.retry_interval = Some(v.into()),
            ),
            Flag::uint(
                "retry-max",
                "The `number` of join attempts before giving up; 0 retries forever.",
                |a, v| a.source.retry_max = Some(v),
            ),
            Flag::list(
                "retry-join-wan",
                "A server of another datacenter to join over WAN gossip (`address`), retried until it succeeds.",
                |a, v| a.source.retry_join_wan.push(v),
            ),
            Flag::list(
                "join-wan",
                "A server of another datacenter to join over WAN gossip at startup (the same as -retry-join-wan).",
                |a, v| a.source.start_join_wan.push(v),
            ),
            Flag::text(
                "retry-interval-wan",
                "The `duration` between WAN join attempts (30s).",
                |a, v| a.source.retry_interval_wan = Some(v.into()),
            ),
            Flag::uint(
                "retry-max-wan",
                "The `number` of WAN join attempts before giving up; 0 retries forever.",
                |a, v| a.source.retry_max_wan = Some(v),
            ),
            Flag::bool(
                "rejoin",
                "Rejoin the cluster after a previous graceful leave.",
                |a, v| a.source.rejoin_after_leave = Some(v),
            ),
            Flag::text(
                "encrypt",
                "The base64 `key` that encrypts gossip (see cairn keygen).",
                |a, v| a.source.encrypt = Some(v),
            ),
            Flag::bool(
                "disable-keyring-file",
                "Keep the gossip keyring in memory only, not in the data dir.",
                |a, v| a.source.disable_keyring_file = Some(v),
            ),
            Flag::list(
                "recursor",
                "An upstream DNS server `address` for names outside the domain.",
                |a, v| a.source.recursors.push(v),
            ),
            Flag::text(
                "zones-dir",
                "A `directory` of zone files served beside the catalog.",
                |a, v| a.source.zones_dir = Some(v.into()),
            ),
            Flag::text(
                "default-query-time",
                "The `duration` a blocking query waits without ?wait (300s).",
                |a, v| a.source.default_query_time = Some(v.into()),
            ),
            Flag::text(
                "max-query-time",
                "The longest `duration` a blocking query may wait (600s).",
                |a, v| a.source.max_query_time = Some(v.into()),
            ),
        ],
    )
}

/// Why `cairn agent`'s command line does not give a configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentArgsError {
    #[error(transparent)]
    Flag(#[from] super::flags::FlagError),
    #[error("unexpected arguments: {}", .0.join(" "))]
    Extra(Vec<String>),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
}

/// Builds the agent's configuration from its command line.
pub(crate) fn build_config(
    set: &FlagSet<AgentArgs>,
    args: &[String],
) -> Result<Config, AgentArgsError> {
    build_with_loader(set, args).map(|(config, _)| config)
}

/// Builds the configuration and the [`config::Loader`] that builds it
/// again on reload.
fn build_with_loader(
    set: &FlagSet<AgentArgs>,
    args: &[String],
) -> Result<(Config, config::Loader), AgentArgsError> {
    let mut a = AgentArgs::default();
    let rest = set.parse(&mut a, args)?;
    if !rest.is_empty() {
        return Err(AgentArgsError::Extra(rest));
    }
    let loader = config::Loader {
        dev: a.dev,
        paths: a.config_paths,
        flags: a.source,
    };
    Ok((loader.load()?, loader))
}

pub fn run(args: Vec<String>) -> anyhow::Result<i32> {
    let set = flag_set();
    let (config, loader) = match build_with_loader(&set, &args) {
        Ok(c) => c,
        Err(AgentArgsError::Flag(e)) => return Ok(set.fail(e)),
        Err(e) => {
            eprintln!("==> {e}");
            return Ok(1);
        }
    };
    crate::run::run_agent(config, loader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(args: &[&str]) -> Result<Config, AgentArgsError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        build_config(&flag_set(), &args)
    }

    fn err(args: &[&str]) -> String {
        cfg(args).expect_err("an error").to_string()
    }

    #[test]
    fn flag_forms() {
        let c = cfg(&[
            "-dev",
            "-http-port=18500",
            "-dns-port",
            "18600",
            "--server-port",
            "18300",
            "--serf-lan-port=18301",
            "-node=n1",
            "-retry-join",
            "10.0.0.1",
            "-retry-join=10.0.0.2",
            "-join=10.0.0.3",
            "-node-meta",
            "rack:r1",
            "-node-meta=zone:z:1",
            "-retry-interval=1s",
            "-encrypt=abc==",
            "-ui=false",
        ])
        .unwrap();
        assert!(c.dev && c.server);
        assert!(!c.ui, "-ui=false overrides -dev");
        assert_eq!(c.ports.http, 18500);
        assert_eq!(c.ports.dns, 18600);
        assert_eq!(c.ports.server, 18300);
        assert_eq!(c.ports.serf_lan, 18301);
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.retry_join, ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(c.node_meta.get("rack").map(String::as_str), Some("r1"));
        assert_eq!(c.node_meta.get("zone").map(String::as_str), Some("z:1"));
        assert_eq!(c.retry_interval, Duration::from_secs(1));
        assert_eq!(c.encrypt.as_deref(), Some("abc=="));
    }

    #[test]
    fn dev_keeps_the_keyring_in_memory_unless_told_otherwise() {
        let dir = "-data-dir=/tmp/cairn-keyring-flag";
        assert!(cfg(&["-dev"]).unwrap().disable_keyring_file);
        assert!(
            !cfg(&["-dev", "-disable-keyring-file=false"])
                .unwrap()
                .disable_keyring_file
        );
        assert!(!cfg(&["-server", dir]).unwrap().disable_keyring_file);
        assert!(
            cfg(&["-server", dir, "-disable-keyring-file"])
                .unwrap()
                .disable_keyring_file
        );
    }

    #[test]
    fn go_errors_and_bad_values() {
        assert_eq!(
            err(&["-dev", "-http-port=abc"]),
            r#"invalid value "abc" for flag -http-port: parse error"#
        );
        assert_eq!(
            err(&["-dev", "-bogus"]),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(err(&["-dev", "-node"]), "flag needs an argument: -node");
        assert_eq!(
            err(&["-server=x"]),
            r#"invalid boolean value "x" for -server: parse error"#
        );
        assert_eq!(err(&["-dev", "extra"]), "unexpected arguments: extra");
        assert!(err(&["-dev", "-bind=nowhere"]).contains("bind_addr: invalid address"));
        assert!(err(&["-dev", "-retry-interval=soon"]).contains("retry_interval: invalid duration"));
        assert_eq!(err(&["-dev", "-log-level=loud"]), "Invalid log level: loud");
        assert!(err(&[
            "-server",
            "-bootstrap",
            "-bootstrap-expect=3",
            "-data-dir=/tmp/x"
        ])
        .contains("mutually exclusive"));
        assert_eq!(
            err(&["-server"]),
            "data_dir cannot be empty",
            "data dir is required outside -dev"
        );
    }

    #[test]
    fn datacenter_and_domain_are_normalised_from_flags() {
        let c = cfg(&[
            "-dev",
            "-datacenter=EU1",
            "-domain=Cairn.Test",
            "-alt-domain=ALT.",
        ])
        .unwrap();
        assert_eq!(c.datacenter, "eu1");
        assert_eq!(c.domain, "cairn.test.");
        assert_eq!(c.alt_domain.as_deref(), Some("alt."));
    }

    #[test]
    fn flags_override_files_and_lists_append() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(
            &a,
            r#"{"datacenter":"FileDC","node_name":"from-a","retry_join":["a1"],"ports":{"http":1}}"#,
        )
        .unwrap();
        std::fs::write(&b, r#"{"node_name":"from-b","start_join":["b1"]}"#).unwrap();
        let (fa, fb) = (
            format!("-config-file={}", a.display()),
            format!("-config-file={}", b.display()),
        );
        let c = cfg(&["-dev", &fa, &fb, "-retry-join=f1"]).unwrap();
        assert_eq!(c.datacenter, "filedc", "lower-cased from a file too");
        assert_eq!(c.node_name, "from-b", "later files override earlier");
        assert_eq!(c.retry_join, ["a1", "b1", "f1"]);
        assert_eq!(c.ports.http, 1);
        let c = cfg(&["-dev", &fa, "-http-port=2", "-node=flag", &fb]).unwrap();
        assert_eq!(c.ports.http, 2, "flags override files");
        assert_eq!(c.node_name, "flag", "wherever the flag stands");
    }

    #[test]
    fn usage_lists_the_agent_flags() {
        let u = flag_set().usage();
        for f in [
            "-bootstrap-expect=<number>",
            "-retry-join=<address>",
            "-dev\n",
            "-http-port=<int>",
        ] {
            assert!(u.contains(f), "{f} missing:\n{u}");
        }
    }
}
