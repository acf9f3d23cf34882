//! `cairn template [options]`: consul-template's command line. Renders
//! templates from the catalog and KV into files, keeps them current with
//! blocking queries, and runs a command when a file changes:
//!
//! ```text
//! cairn template -template "/etc/nginx/upstream.ctmpl:/etc/nginx/conf.d/upstream.conf:nginx -s reload"
//! cairn template -config /etc/cairn-template.hcl
//! ```
//!
//! The flags are consul-template's (`-consul-addr`, and cairn's own
//! `-http-addr`, for the agent; `-template`, `-wait`, `-once`, `-dry`,
//! `-exec`, `-config`, ...); flags win over `-config` files. Exit codes
//! are consul-template's: 13 for bad flags, 15 for a bad configuration, 14
//! when rendering or a command fails, 12 on an interrupt, and in exec mode
//! the child's.

use super::flags::{Flag, FlagSet};
use crate::template::config::{signal, Config, ConfigError, ExecConfig, TemplateConfig, Wait};
use crate::template::runner::{Event, Runner, EXIT_CONFIG, EXIT_INTERRUPT};
use crate::template::watch::{Client, Watcher};
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

const SYNOPSIS: &str = "Usage: cairn template [options]

  Watches the catalog and KV through the agent's HTTP API, renders
  templates written for consul-template into files whenever their data
  changes, and runs each file's command after it changes.

    cairn template -template \"in.ctmpl:out.conf[:command]\"
    cairn template -config /etc/cairn-template.hcl
";

/// consul-template's exit code for flags that do not parse.
const EXIT_FLAGS: i32 = 13;

#[derive(Default)]
struct TemplateArgs {
    configs: Vec<PathBuf>,
    address: Option<String>,
    token: Option<String>,
    templates: Vec<String>,
    wait: Option<String>,
    once: bool,
    dry: bool,
    max_stale: Option<Duration>,
    block_query_wait: Option<Duration>,
    retry: Option<bool>,
    retry_attempts: Option<i32>,
    retry_backoff: Option<Duration>,
    retry_max_backoff: Option<Duration>,
    exec: Option<String>,
    exec_kill_signal: Option<String>,
    exec_kill_timeout: Option<Duration>,
    exec_reload_signal: Option<String>,
    log_level: Option<String>,
    error_fatal: Option<bool>,
    left_delim: Option<String>,
    right_delim: Option<String>,
    kill_signal: Option<String>,
    reload_signal: Option<String>,
    pid_file: Option<PathBuf>,
}

fn flag_set() -> FlagSet<TemplateArgs> {
    FlagSet::new(
        SYNOPSIS,
        vec![
            Flag::list(
                "config",
                "A configuration `path` (an HCL file or a directory of them); flags win.",
                |o: &mut TemplateArgs, v| o.configs.push(PathBuf::from(v)),
            ),
            Flag::text(
                "consul-addr",
                "The `address` of the agent's HTTP API. Defaults to CONSUL_HTTP_ADDR, else 127.0.0.1:8500.",
                |o, v| o.address = Some(v),
            ),
            Flag::text("http-addr", "The same as -consul-addr.", |o, v| o.address = Some(v)),
            Flag::text(
                "consul-token",
                "An ACL token sent as X-Consul-Token. Defaults to CONSUL_TOKEN, else CONSUL_HTTP_TOKEN.",
                |o, v| o.token = Some(v),
            ),
            Flag::text("token", "The same as -consul-token.", |o, v| o.token = Some(v)),
            Flag::bool("consul-retry", "Retry failed requests to the agent (default true).", |o, v| {
                o.retry = Some(v)
            }),
            Flag::int(
                "consul-retry-attempts",
                "How many times to retry a failed request before giving up (default 12); 0 retries forever.",
                |o, v| o.retry_attempts = Some(v),
            ),
            Flag::duration(
                "consul-retry-backoff",
                "The first pause before a retry, doubled each time (default 250ms).",
                |o, v| o.retry_backoff = Some(v),
            ),
            Flag::duration(
                "consul-retry-max-backoff",
                "The longest pause between retries (default 1m).",
                |o, v| o.retry_max_backoff = Some(v),
            ),
            Flag::list(
                "template",
                "A template as `in:out[:command]`: the template file, the file to render, and a command to run after it changes.",
                |o, v| o.templates.push(v),
            ),
            Flag::text(
                "wait",
                "Quiescence as `min[:max]`: render once changes pause for min, but no later than max (default 4 times min).",
                |o, v| o.wait = Some(v),
            ),
            Flag::bool("once", "Render every template once, run the commands, and exit.", |o, v| o.once = v),
            Flag::bool("dry", "Print the rendered templates to stdout instead of writing them; run no commands.", |o, v| o.dry = v),
            Flag::duration(
                "max-stale",
                "Accept answers from servers whose data is at most this old (default 2s); 0 asks the leader.",
                |o, v| o.max_stale = Some(v),
            ),
            Flag::duration(
                "block-query-wait",
                "How long each blocking query waits for a change (default 60s).",
                |o, v| o.block_query_wait = Some(v),
            ),
            Flag::text(
                "exec",
                "A `command` to supervise: started once every template has rendered, signalled on changes; its exit ends cairn template with its code.",
                |o, v| o.exec = Some(v),
            ),
            Flag::text("exec-kill-signal", "The `signal` that stops the exec child (default SIGINT).", |o, v| {
                o.exec_kill_signal = Some(v)
            }),
            Flag::duration(
                "exec-kill-timeout",
                "How long the exec child has to stop before it is killed (default 30s).",
                |o, v| o.exec_kill_timeout = Some(v),
            ),
            Flag::text(
                "exec-reload-signal",
                "The `signal` sent to the exec child when a template changes (default SIGHUP).",
                |o, v| o.exec_reload_signal = Some(v),
            ),
            Flag::text("log-level", "The `level` to log at: trace, debug, info, warn or err (default warn).", |o, v| {
                o.log_level = Some(v)
            }),
            Flag::bool(
                "template-error-fatal",
                "Exit when a template fails to render (default true); when false the error is logged and the old file stays.",
                |o, v| o.error_fatal = Some(v),
            ),
            Flag::text("default-left-delimiter", "The left `delimiter` of actions (default {{).", |o, v| {
                o.left_delim = Some(v)
            }),
            Flag::text("default-right-delimiter", "The right `delimiter` of actions (default }}).", |o, v| {
                o.right_delim = Some(v)
            }),
            Flag::text("kill-signal", "The `signal` that stops cairn template (default SIGINT; SIGTERM always does).", |o, v| {
                o.kill_signal = Some(v)
            }),
            Flag::text("pid-file", "A `path` to write the process id to while running.", |o, v| {
                o.pid_file = Some(PathBuf::from(v))
            }),
            Flag::text("reload-signal", "The `signal` that reloads the configuration and templates (default SIGHUP).", |o, v| {
                o.reload_signal = Some(v)
            }),
        ],
    )
}

impl TemplateArgs {
    /// The configuration: defaults, then each `-config`, then the flags.
    fn config(&self) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        for path in &self.configs {
            c.merge_path(path)?;
        }
        if let Some(a) = &self.address {
            c.address = Some(a.clone());
        }
        if let Some(t) = &self.token {
            c.token = Some(t.clone());
        }
        if let Some(r) = self.retry {
            c.retry.enabled = r;
        }
        if let Some(n) = self.retry_attempts {
            c.retry.attempts = n.max(0) as u32;
        }
        if let Some(d) = self.retry_backoff {
            c.retry.backoff = d;
        }
        if let Some(d) = self.retry_max_backoff {
            c.retry.max_backoff = d;
        }
        for t in &self.templates {
            c.templates.push(TemplateConfig::parse_flag(t)?);
        }
        if let Some(w) = &self.wait {
            c.wait = Some(Wait::parse(w)?);
        }
        c.once |= self.once;
        c.dry |= self.dry;
        if let Some(d) = self.max_stale {
            c.max_stale = d;
        }
        if let Some(d) = self.block_query_wait {
            c.block_query_wait = d;
        }
        if let Some(cmd) = &self.exec {
            c.exec = Some(ExecConfig {
                command: vec![cmd.clone()],
                reload_signal: Some(libc::SIGHUP),
                kill_signal: libc::SIGINT,
                kill_timeout: Duration::from_secs(30),
            });
        }
        if let Some(e) = c.exec.as_mut() {
            if let Some(s) = &self.exec_kill_signal {
                e.kill_signal = signal(s)?;
            }
            if let Some(d) = self.exec_kill_timeout {
                e.kill_timeout = d;
            }
            if let Some(s) = &self.exec_reload_signal {
                e.reload_signal = if s.is_empty() { None } else { Some(signal(s)?) };
            }
        }
        if let Some(l) = &self.log_level {
            c.log_level = l.to_ascii_lowercase();
        }
        if let Some(b) = self.error_fatal {
            c.template_error_fatal = b;
        }
        for t in c.templates.iter_mut() {
            if t.left_delimiter.is_none() {
                t.left_delimiter = self.left_delim.clone();
            }
            if t.right_delimiter.is_none() {
                t.right_delimiter = self.right_delim.clone();
            }
        }
        if let Some(s) = &self.kill_signal {
            c.kill_signal = signal(s)?;
        }
        if let Some(s) = &self.reload_signal {
            c.reload_signal = if s.is_empty() { None } else { Some(signal(s)?) };
        }
        if let Some(p) = &self.pid_file {
            c.pid_file = Some(p.clone());
        }
        Ok(c)
    }
}

/// The agent's base URL: the flag or `consul { address }`, else
/// `CONSUL_HTTP_ADDR`, else 127.0.0.1:8500; `http://` unless a scheme is given.
fn base_url(c: &Config) -> String {
    let addr = c
        .address
        .clone()
        .filter(|a| !a.is_empty())
        .or_else(|| {
            std::env::var("CONSUL_HTTP_ADDR")
                .ok()
                .filter(|a| !a.is_empty())
        })
        .unwrap_or_else(|| "127.0.0.1:8500".into());
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr
    } else {
        format!("http://{addr}")
    }
}

fn token(c: &Config) -> Option<String> {
    c.token
        .clone()
        .or_else(|| std::env::var("CONSUL_TOKEN").ok())
        .or_else(|| std::env::var("CONSUL_HTTP_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

fn init_logging(level: &str) {
    let level = match level {
        "err" => "error",
        l => l,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
                .unwrap_or_else(|_| format!("warn,cairn::template={level}").into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn run(args: Vec<String>) -> Result<i32> {
    let set = flag_set();
    let (opts, rest) = match set.parse_or_report(&args) {
        Ok(parsed) => parsed,
        Err(0) => return Ok(0),
        Err(_) => return Ok(EXIT_FLAGS),
    };
    if !rest.is_empty() {
        eprintln!("Error: unexpected arguments: {}", rest.join(" "));
        return Ok(EXIT_FLAGS);
    }
    let config = match opts.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[ERR] (cli) {e}");
            return Ok(EXIT_CONFIG);
        }
    };
    init_logging(&config.log_level);
    if config.templates.is_empty() && config.exec.is_none() {
        eprintln!("[ERR] (cli) no templates: give -template \"in:out[:command]\" or a template {{}} stanza in -config");
        return Ok(EXIT_CONFIG);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = runtime.block_on(serve(opts, config));
    Ok(code)
}

async fn serve(opts: TemplateArgs, config: Config) -> i32 {
    let client = match Client::new(
        base_url(&config),
        token(&config),
        config.max_stale,
        config.block_query_wait,
        config.retry.clone(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[ERR] (cli) {e}");
            return EXIT_CONFIG;
        }
    };
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    if let Err(e) = forward_signals(&config, events_tx) {
        eprintln!("[ERR] (cli) {e}");
        return EXIT_INTERRUPT;
    }
    let (watcher, updates) = Watcher::new(client);
    let runner = Runner::new(config, watcher, updates, Box::new(std::io::stdout()));
    let stop = runner
        .run(events, || opts.config().map_err(|e| e.to_string()))
        .await;
    if let Some(e) = &stop.error {
        tracing::error!("(cli) {e}");
    }
    stop.code
}

/// Turns signals into runner events: the kill signal and SIGTERM stop,
/// the reload signal reloads, SIGUSR1/SIGUSR2 go to the exec child.
fn forward_signals(
    config: &Config,
    tx: tokio::sync::mpsc::UnboundedSender<Event>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut wanted: Vec<(i32, Event)> = vec![
        (libc::SIGTERM, Event::Interrupt),
        (config.kill_signal, Event::Interrupt),
        (libc::SIGINT, Event::Interrupt),
        (libc::SIGUSR1, Event::Forward(libc::SIGUSR1)),
        (libc::SIGUSR2, Event::Forward(libc::SIGUSR2)),
    ];
    if let Some(r) = config.reload_signal {
        wanted.insert(0, (r, Event::Reload));
    }
    let mut seen = Vec::new();
    for (sig, event) in wanted {
        if seen.contains(&sig) || sig == libc::SIGKILL {
            continue;
        }
        seen.push(sig);
        let mut stream = signal(SignalKind::from_raw(sig))?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(event).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> TemplateArgs {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut o = TemplateArgs::default();
        let rest = flag_set().parse(&mut o, &args).unwrap();
        assert!(rest.is_empty());
        o
    }

    #[test]
    fn flags_build_the_config() {
        let o = parse(&[
            "-consul-addr=10.0.0.1:8500",
            "-template",
            "/in.ctmpl:/out.conf:nginx -s reload",
            "-template=src:dst",
            "-wait=2s:10s",
            "-once",
            "-max-stale=0s",
            "-consul-retry-attempts=3",
        ]);
        let c = o.config().unwrap();
        assert_eq!(base_url(&c), "http://10.0.0.1:8500");
        assert_eq!(c.templates.len(), 2);
        assert_eq!(c.templates[0].command, ["nginx -s reload"]);
        assert_eq!(c.templates[1].destination, PathBuf::from("dst"));
        assert_eq!(c.wait.map(|w| w.min), Some(Duration::from_secs(2)));
        assert!(c.once && !c.dry);
        assert_eq!(c.max_stale, Duration::ZERO);
        assert_eq!(c.retry.attempts, 3);
        let o = parse(&["-http-addr", "https://agent:8501"]);
        assert_eq!(base_url(&o.config().unwrap()), "https://agent:8501");
    }

    #[test]
    fn flags_win_over_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.hcl");
        std::fs::write(
            &path,
            "consul {\n address = \"file:1\"\n}\nwait = \"1s\"\ntemplate {\n source = \"s\"\n destination = \"d\"\n}\n",
        )
        .unwrap();
        let p = path.display().to_string();
        let c = parse(&["-config", &p, "-consul-addr=flag:2", "-template=in:out"])
            .config()
            .unwrap();
        assert_eq!(c.address.as_deref(), Some("flag:2"));
        assert_eq!(c.wait.map(|w| w.max), Some(Duration::from_secs(4)));
        assert_eq!(c.templates.len(), 2);
        let c = parse(&["-config", &p]).config().unwrap();
        assert_eq!(c.address.as_deref(), Some("file:1"));
    }

    #[test]
    fn bad_values_are_config_errors() {
        assert_eq!(
            parse(&["-wait=5s:1s"]).config().unwrap_err().to_string(),
            "wait: min must be less than max"
        );
        assert_eq!(
            parse(&["-template="]).config().unwrap_err().to_string(),
            "template: cannot be empty"
        );
        assert!(parse(&["-config=/nonexistent/cairn.hcl"]).config().is_err());
        assert_eq!(
            parse(&["-kill-signal=SIGBOGUS"])
                .config()
                .unwrap_err()
                .to_string(),
            "unknown signal \"SIGBOGUS\""
        );
    }
}
