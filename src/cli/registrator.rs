//! `cairn registrator [options] <registry-uri>`: gliderlabs/registrator's
//! command line (v7 flags, names and defaults, except that `-retry-attempts`
//! defaults to -1, retrying the agent for ever) in front of
//! `crate::registrator`. Its checks and their messages are registrator's;
//! like any Go `flag` program it exits 2 on a usage error.

use super::flags::{Flag, FlagSet};
use crate::registrator::{self, DeregisterPolicy, Options, RegistryUri, TlsFiles};
use anyhow::{anyhow, Result};
use std::time::Duration;

const SYNOPSIS: &str = "Usage: cairn registrator [options] <registry URI>

  Registers the published ports of this host's Docker containers as
  services, as gliderlabs/registrator does, and deregisters them when the
  containers exit. The registry URI is consul://host:port (the agent's
  service API), consul-tls://host:port, or consulkv://host:port/prefix.
  Docker is reached at DOCKER_HOST, else /var/run/docker.sock.
";

/// The flags as given, before registrator's checks.
#[derive(Debug)]
struct Args {
    ip: String,
    internal: bool,
    ttl_refresh: i32,
    ttl: i32,
    tags: String,
    resync: i32,
    deregister: String,
    retry_attempts: i32,
    retry_interval: i32,
    cleanup: bool,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            ip: String::new(),
            internal: false,
            ttl_refresh: 0,
            ttl: 0,
            tags: String::new(),
            resync: 0,
            deregister: "always".into(),
            retry_attempts: -1,
            retry_interval: 2000,
            cleanup: false,
        }
    }
}

fn flag_set() -> FlagSet<Args> {
    FlagSet::new(
        SYNOPSIS,
        vec![
            Flag::text("ip", "The `IP` for ports mapped to the host.", |o: &mut Args, v| {
                o.ip = v
            }),
            Flag::bool(
                "internal",
                "Use internal ports (the container's IP and exposed port) instead of published ones.",
                |o, v| o.internal = v,
            ),
            Flag::int(
                "ttl-refresh",
                "Frequency in seconds with which service TTLs are refreshed. Accepted for \
                 compatibility: the Consul backends do not expire services.",
                |o, v| o.ttl_refresh = v,
            ),
            Flag::int(
                "ttl",
                "TTL in seconds for services (default is no expiry). Accepted for compatibility, \
                 as -ttl-refresh.",
                |o, v| o.ttl = v,
            ),
            Flag::text(
                "tags",
                "Comma-separated `tags` appended to every registered service.",
                |o, v| o.tags = v,
            ),
            Flag::int(
                "resync",
                "Frequency in `seconds` with which services are resynchronized (0: never).",
                |o, v| o.resync = v,
            ),
            Flag::text(
                "deregister",
                "Deregister exited services \"always\" or \"on-success\" (exit 0, or stopped by \
                 a signal). Default always.",
                |o, v| o.deregister = v,
            ),
            Flag::int(
                "retry-attempts",
                "Max retry attempts to reach the agent at start; -1 (the default) retries for ever.",
                |o, v| o.retry_attempts = v,
            ),
            Flag::int(
                "retry-interval",
                "Interval in `milliseconds` before the first retry; it doubles up to 10 s. \
                 Default 2000.",
                |o, v| o.retry_interval = v,
            ),
            Flag::bool(
                "cleanup",
                "Remove dangling services: this host's, of containers no longer running.",
                |o, v| o.cleanup = v,
            ),
        ],
    )
}

/// Registrator's checks, in its order, turning the flags into options.
fn options(a: Args, uri: &str) -> Result<Options> {
    if (a.ttl == 0 && a.ttl_refresh > 0) || (a.ttl > 0 && a.ttl_refresh == 0) {
        return Err(anyhow!(
            "-ttl and -ttl-refresh must be specified together or not at all"
        ));
    }
    if a.ttl > 0 && a.ttl <= a.ttl_refresh {
        return Err(anyhow!("-ttl must be greater than -ttl-refresh"));
    }
    if a.retry_interval <= 0 {
        return Err(anyhow!("-retry-interval must be greater than 0"));
    }
    let deregister = DeregisterPolicy::parse(&a.deregister)
        .ok_or_else(|| anyhow!("-deregister must be \"always\" or \"on-success\""))?;
    let consul_http_addr = std::env::var("CONSUL_HTTP_ADDR").ok();
    let registry = RegistryUri::parse(uri, consul_http_addr.as_deref())?;
    Ok(Options {
        registry,
        token: std::env::var("CONSUL_HTTP_TOKEN").ok(),
        tls: TlsFiles::from_env(),
        force_ip: Some(a.ip).filter(|ip| !ip.is_empty()),
        internal: a.internal,
        force_tags: registrator::split_tags(&a.tags),
        resync: u64::try_from(a.resync)
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs),
        cleanup: a.cleanup,
        deregister,
        retry_attempts: u32::try_from(a.retry_attempts).ok(),
        retry_interval: Duration::from_millis(a.retry_interval.unsigned_abs().into()),
    })
}

pub fn run(args: Vec<String>) -> Result<i32> {
    let set = flag_set();
    let mut parsed = Args::default();
    let rest = match set.parse(&mut parsed, &args) {
        Ok(rest) => rest,
        // Go's flag package exits 2 on a bad flag.
        Err(e) => return Ok(if set.fail(e) == 0 { 0 } else { 2 }),
    };
    let uri = match rest.as_slice() {
        [uri] => uri.clone(),
        [] => {
            eprint!("Missing required argument for registry URI.\n\n");
            eprint!("{}", set.usage());
            return Ok(2);
        }
        [_, extra @ ..] => {
            eprintln!("Extra unparsed arguments:");
            eprintln!("  {}", extra.join(" "));
            eprint!("Options should come before the registry URI argument.\n\n");
            eprint!("{}", set.usage());
            return Ok(2);
        }
    };
    let ttl_given = parsed.ttl > 0;
    let options = options(parsed, &uri)?;
    init_logging();
    tracing::info!(
        "Starting registrator (cairn {}) ...",
        env!("CARGO_PKG_VERSION")
    );
    if ttl_given {
        tracing::info!("-ttl and -ttl-refresh have no effect on the Consul backends: services stay until deregistered");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(registrator::run(options, shutdown_signal()))?;
    Ok(0)
}

/// SIGTERM (`docker stop`) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Log lines on stderr at info (`CAIRN_LOG` overrides), plain unless a terminal.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut a = Args::default();
        let rest = flag_set().parse(&mut a, &args)?;
        options(a, rest.first().map(String::as_str).unwrap_or("consul://"))
    }

    fn err(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn the_issues_command_line() {
        let o = parse(&[
            "-internal=false",
            "-ip",
            "10.0.0.5",
            "-resync",
            "60",
            "-tags",
            "dc1,edge",
            "-cleanup",
            "consul://127.0.0.1:8500",
        ])
        .unwrap();
        assert_eq!(o.registry.base, "http://127.0.0.1:8500");
        assert_eq!(o.force_ip.as_deref(), Some("10.0.0.5"));
        assert!(!o.internal && o.cleanup);
        assert_eq!(o.resync, Some(Duration::from_secs(60)));
        assert_eq!(o.force_tags, ["dc1", "edge"]);
        assert_eq!(o.deregister, DeregisterPolicy::Always);
    }

    #[test]
    fn defaults() {
        let o = parse(&["consul://"]).unwrap();
        assert_eq!(o.retry_attempts, None, "retries for ever");
        assert_eq!(o.retry_interval, Duration::from_secs(2));
        assert_eq!(o.resync, None);
        assert_eq!(o.force_ip, None);
        let o = parse(&["-retry-attempts=3", "-deregister=on-success", "consul://"]).unwrap();
        assert_eq!(o.retry_attempts, Some(3));
        assert_eq!(o.deregister, DeregisterPolicy::OnSuccess);
    }

    #[test]
    fn registrators_checks_and_messages() {
        assert_eq!(
            err(&["-ttl=30"]),
            "-ttl and -ttl-refresh must be specified together or not at all"
        );
        assert_eq!(
            err(&["-ttl=30", "-ttl-refresh=30"]),
            "-ttl must be greater than -ttl-refresh"
        );
        assert!(parse(&["-ttl=30", "-ttl-refresh=10"]).is_ok());
        assert_eq!(
            err(&["-retry-interval=0"]),
            "-retry-interval must be greater than 0"
        );
        assert_eq!(
            err(&["-deregister=never"]),
            "-deregister must be \"always\" or \"on-success\""
        );
        assert_eq!(
            err(&["etcd://127.0.0.1:2379"]),
            "unrecognized adapter: etcd://127.0.0.1:2379"
        );
        assert_eq!(
            err(&["-useIpFromLabel=x"]),
            "flag provided but not defined: -useIpFromLabel",
            "v7 has no -useIpFromLabel"
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(run(vec![]).unwrap(), 2);
        assert_eq!(run(vec!["consul://".into(), "extra".into()]).unwrap(), 2);
        assert_eq!(run(vec!["-bogus".into()]).unwrap(), 2);
        assert_eq!(run(vec!["-h".into()]).unwrap(), 0);
    }
}
