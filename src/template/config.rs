//! What `cairn template` runs with: consul-template's configuration, from
//! its HCL files (`-config`, repeatable, later files win, templates add
//! up) and its flags, which win over every file. The `-template
//! "in:out[:command]"` and `-wait "min[:max]"` grammars are
//! consul-template's: a Windows drive letter stays with its path, parts
//! after the third are joined back into the command with `:`, and a wait
//! without a max waits at most four times its min.

use crate::duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that cannot be used, with consul-template's texts
/// where it has them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("template: cannot be empty")]
    TemplateEmpty,
    #[error("wait: cannot be empty")]
    WaitEmpty,
    #[error("wait: invalid format")]
    WaitFormat,
    #[error("wait: cannot be negative")]
    WaitNegative,
    #[error("wait: min must be less than max")]
    WaitMinMax,
    #[error("time: invalid duration {0:?}")]
    Duration(String),
    #[error("template: missing 'destination' in {0}")]
    MissingDestination(String),
    #[error("template: missing 'source' or 'contents'")]
    MissingSource,
    #[error("template: cannot specify both 'source' and 'contents'")]
    SourceAndContents,
    #[error("invalid file mode {0:?}")]
    Perms(String),
    #[error("unknown signal {0:?}")]
    Signal(String),
    #[error("error reading config at {path}: {msg}")]
    Read { path: String, msg: String },
    #[error("{0} is not supported")]
    Unsupported(&'static str),
    #[error("error decoding config at {path}: {msg}")]
    Decode { path: String, msg: String },
}

/// `wait`: render only after `min` of quiet, and at most `max` after the
/// first change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub min: Duration,
    pub max: Duration,
}

impl Wait {
    /// consul-template's `min[:max]`.
    pub fn parse(s: &str) -> Result<Wait, ConfigError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ConfigError::WaitEmpty);
        }
        let parts: Vec<&str> = s.split(':').collect();
        let parse = |p: &str| {
            let p = p.trim();
            if p.starts_with('-') {
                return Err(ConfigError::WaitNegative);
            }
            go_duration(p)
        };
        let (min, max) = match parts.as_slice() {
            [min] => {
                let min = parse(min)?;
                (min, min * 4)
            }
            [min, max] => (parse(min)?, parse(max)?),
            _ => return Err(ConfigError::WaitFormat),
        };
        if max < min {
            return Err(ConfigError::WaitMinMax);
        }
        Ok(Wait { min, max })
    }

    pub fn is_zero(&self) -> bool {
        self.min.is_zero() && self.max.is_zero()
    }
}

/// A Go duration (`0` alone is allowed, as in Go).
fn go_duration(s: &str) -> Result<Duration, ConfigError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    duration::parse(s).map_err(|_| ConfigError::Duration(s.to_string()))
}

/// Signals the configuration can name.
pub fn signal(name: &str) -> Result<i32, ConfigError> {
    let n = name.trim().to_ascii_uppercase();
    Ok(match n.strip_prefix("SIG").unwrap_or(&n) {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        _ => return Err(ConfigError::Signal(name.to_string())),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub enabled: bool,
    /// 0 retries forever.
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    /// consul-template's: 12 attempts, from 250 ms doubling up to 1 m.
    fn default() -> Self {
        Retry {
            enabled: true,
            attempts: 12,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl Retry {
    /// The pause before retry number `attempt` (from 0), or `None` when
    /// the attempts are used up.
    pub fn pause(&self, attempt: u32) -> Option<Duration> {
        if !self.enabled || (self.attempts > 0 && attempt >= self.attempts) {
            return None;
        }
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        Some(self.backoff.saturating_mul(factor).min(self.max_backoff))
    }
}

/// One `template {}` stanza or `-template` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConfig {
    pub source: Option<PathBuf>,
    /// Inline template text instead of a source file.
    pub contents: Option<String>,
    pub destination: PathBuf,
    pub create_dest_dirs: bool,
    /// One string runs under `sh -c` when it has spaces; a list runs as is.
    pub command: Vec<String>,
    pub command_timeout: Duration,
    /// `None` keeps an existing file's mode, else 0644.
    pub perms: Option<u32>,
    pub backup: bool,
    pub wait: Option<Wait>,
    pub left_delimiter: Option<String>,
    pub right_delimiter: Option<String>,
    pub error_on_missing_key: bool,
    /// `None` takes `-template-error-fatal` (default true).
    pub error_fatal: Option<bool>,
}

impl TemplateConfig {
    fn new(destination: PathBuf) -> Self {
        TemplateConfig {
            source: None,
            contents: None,
            destination,
            create_dest_dirs: true,
            command: Vec::new(),
            command_timeout: Duration::from_secs(30),
            perms: None,
            backup: false,
            wait: None,
            left_delimiter: None,
            right_delimiter: None,
            error_on_missing_key: false,
            error_fatal: None,
        }
    }

    /// `-template "in:out[:command]"`.
    pub fn parse_flag(s: &str) -> Result<TemplateConfig, ConfigError> {
        if s.trim().is_empty() {
            return Err(ConfigError::TemplateEmpty);
        }
        let parts = split_template_flag(s);
        let (source, destination, command) = match parts.as_slice() {
            [] => return Err(ConfigError::TemplateEmpty),
            [src] => (src.clone(), String::new(), String::new()),
            [src, dst] => (src.clone(), dst.clone(), String::new()),
            [src, dst, rest @ ..] => (src.clone(), dst.clone(), rest.join(":")),
        };
        if destination.is_empty() {
            return Err(ConfigError::MissingDestination(source));
        }
        let mut t = TemplateConfig::new(PathBuf::from(destination));
        t.source = Some(PathBuf::from(source));
        if !command.is_empty() {
            t.command = vec![command];
        }
        Ok(t)
    }

    /// How logs and errors name the template: `"in" => "out"`.
    pub fn display(&self) -> String {
        let src = match (&self.source, &self.contents) {
            (Some(s), _) => s.display().to_string(),
            (None, Some(_)) => "(dynamic)".into(),
            (None, None) => String::new(),
        };
        format!("{src:?} => {:?}", self.destination.display().to_string())
    }
}

/// consul-template's `([a-zA-Z]:)?([^:]+)`, all matches.
fn split_template_flag(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if i + 1 < b.len()
            && b[i].is_ascii_alphabetic()
            && b[i + 1] == b':'
            && i + 2 < b.len()
            && b[i + 2] != b':'
        {
            i += 2;
        }
        let body = i;
        while i < b.len() && b[i] != b':' {
            i += 1;
        }
        if i > body {
            parts.push(s[start..i].to_string());
        }
        // Skip the separator (an empty part between `::` is no match).
        i += 1;
    }
    parts
}

/// `exec {}`: a child supervised for the life of the process, started once
/// every template has rendered and told of re-renders with a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    pub command: Vec<String>,
    pub reload_signal: Option<i32>,
    pub kill_signal: i32,
    pub kill_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub address: Option<String>,
    pub token: Option<String>,
    pub retry: Retry,
    pub max_stale: Duration,
    pub block_query_wait: Duration,
    pub wait: Option<Wait>,
    pub templates: Vec<TemplateConfig>,
    pub exec: Option<ExecConfig>,
    pub once: bool,
    pub dry: bool,
    pub template_error_fatal: bool,
    pub kill_signal: i32,
    pub reload_signal: Option<i32>,
    pub log_level: String,
    /// Where to write the process id while running.
    pub pid_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            address: None,
            token: None,
            retry: Retry::default(),
            max_stale: Duration::from_secs(2),
            block_query_wait: Duration::from_secs(60),
            wait: None,
            templates: Vec::new(),
            exec: None,
            once: false,
            dry: false,
            template_error_fatal: true,
            kill_signal: libc::SIGINT,
            reload_signal: Some(libc::SIGHUP),
            log_level: "warn".into(),
            pid_file: None,
        }
    }
}

// The HCL files' shape. Fields are optional so that a later file (or a
// flag) only overrides what it sets.

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WaitSpec {
    Text(String),
    Block {
        min: Option<String>,
        max: Option<String>,
    },
}

impl WaitSpec {
    fn into_wait(self) -> Result<Wait, ConfigError> {
        match self {
            WaitSpec::Text(s) => Wait::parse(&s),
            WaitSpec::Block { min, max } => {
                let min = min
                    .as_deref()
                    .map(go_duration)
                    .transpose()?
                    .unwrap_or_default();
                let max = match max {
                    Some(m) => go_duration(&m)?,
                    None => min * 4,
                };
                if max < min {
                    return Err(ConfigError::WaitMinMax);
                }
                Ok(Wait { min, max })
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CommandSpec {
    Line(String),
    Args(Vec<String>),
}

impl CommandSpec {
    fn into_vec(self) -> Vec<String> {
        match self {
            CommandSpec::Line(s) if s.is_empty() => Vec::new(),
            CommandSpec::Line(s) => vec![s],
            CommandSpec::Args(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PermsSpec {
    Number(u32),
    Text(String),
}

impl PermsSpec {
    /// `perms = 0644` (an HCL number whose digits are octal) or `"0644"`.
    fn mode(self) -> Result<u32, ConfigError> {
        let text = match self {
            PermsSpec::Number(n) => n.to_string(),
            PermsSpec::Text(s) => s,
        };
        u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or(ConfigError::Perms(text))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    enabled: Option<bool>,
    attempts: Option<u32>,
    backoff: Option<String>,
    max_backoff: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConsulFile {
    address: Option<String>,
    token: Option<String>,
    retry: Option<RetryFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExecFile {
    command: Option<CommandSpec>,
    timeout: Option<String>,
    reload_signal: Option<String>,
    kill_signal: Option<String>,
    kill_timeout: Option<String>,
    splay: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    source: Option<String>,
    contents: Option<String>,
    destination: Option<String>,
    create_dest_dirs: Option<bool>,
    command: Option<CommandSpec>,
    command_timeout: Option<String>,
    exec: Option<ExecFile>,
    perms: Option<PermsSpec>,
    backup: Option<bool>,
    wait: Option<WaitSpec>,
    left_delimiter: Option<String>,
    right_delimiter: Option<String>,
    error_on_missing_key: Option<bool>,
    error_fatal: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    consul: Option<ConsulFile>,
    max_stale: Option<String>,
    block_query_wait: Option<String>,
    wait: Option<WaitSpec>,
    template: Option<OneOrMany<TemplateFile>>,
    exec: Option<ExecFile>,
    log_level: Option<String>,
    kill_signal: Option<String>,
    reload_signal: Option<String>,
    template_error_fatal: Option<bool>,
    pid_file: Option<String>,
}

impl Config {
    /// Merges an HCL configuration file's text over this configuration.
    pub fn merge_hcl(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let file: ConfigFile = hcl::from_str(text).map_err(|e| ConfigError::Decode {
            path: path.to_string(),
            msg: e.to_string(),
        })?;
        self.merge_file(file)
    }

    /// Reads and merges `path`: a file, or every file in a directory in
    /// name order (as consul-template loads a config directory).
    pub fn merge_path(&mut self, path: &Path) -> Result<(), ConfigError> {
        let read_err = |e: std::io::Error| ConfigError::Read {
            path: path.display().to_string(),
            msg: e.to_string(),
        };
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            for f in files {
                self.merge_path(&f)?;
            }
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        self.merge_hcl(&text, &path.display().to_string())
    }

    fn merge_file(&mut self, f: ConfigFile) -> Result<(), ConfigError> {
        if let Some(c) = f.consul {
            self.address = c.address.or(self.address.take());
            self.token = c.token.or(self.token.take());
            if let Some(r) = c.retry {
                self.retry.enabled = r.enabled.unwrap_or(self.retry.enabled);
                self.retry.attempts = r.attempts.unwrap_or(self.retry.attempts);
                if let Some(b) = r.backoff {
                    self.retry.backoff = go_duration(&b)?;
                }
                if let Some(b) = r.max_backoff {
                    self.retry.max_backoff = go_duration(&b)?;
                }
            }
        }
        if let Some(s) = f.max_stale {
            self.max_stale = go_duration(&s)?;
        }
        if let Some(s) = f.block_query_wait {
            self.block_query_wait = go_duration(&s)?;
        }
        if let Some(w) = f.wait {
            self.wait = Some(w.into_wait()?);
        }
        if let Some(level) = f.log_level {
            self.log_level = level.to_ascii_lowercase();
        }
        if let Some(s) = f.kill_signal {
            self.kill_signal = signal(&s)?;
        }
        if let Some(s) = f.reload_signal {
            self.reload_signal = if s.is_empty() {
                None
            } else {
                Some(signal(&s)?)
            };
        }
        if let Some(b) = f.template_error_fatal {
            self.template_error_fatal = b;
        }
        if let Some(p) = f.pid_file.filter(|p| !p.is_empty()) {
            self.pid_file = Some(PathBuf::from(p));
        }
        if let Some(e) = f.exec {
            self.exec = exec_config(e)?;
        }
        for t in f.template.map(OneOrMany::into_vec).unwrap_or_default() {
            self.templates.push(template_config(t)?);
        }
        Ok(())
    }
}

fn exec_config(e: ExecFile) -> Result<Option<ExecConfig>, ConfigError> {
    let command = e.command.map(CommandSpec::into_vec).unwrap_or_default();
    if command.is_empty() {
        return Ok(None);
    }
    if e.splay.is_some() {
        return Err(ConfigError::Unsupported("exec.splay"));
    }
    if e.timeout.is_some() {
        return Err(ConfigError::Unsupported("a timeout for the exec child"));
    }
    Ok(Some(ExecConfig {
        command,
        reload_signal: match e.reload_signal {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(signal(&s)?),
            None => Some(libc::SIGHUP),
        },
        kill_signal: e
            .kill_signal
            .as_deref()
            .map(signal)
            .transpose()?
            .unwrap_or(libc::SIGINT),
        kill_timeout: e
            .kill_timeout
            .as_deref()
            .map(go_duration)
            .transpose()?
            .unwrap_or(Duration::from_secs(30)),
    }))
}

fn template_config(t: TemplateFile) -> Result<TemplateConfig, ConfigError> {
    let source = t.source.filter(|s| !s.is_empty());
    if source.is_some() && t.contents.is_some() {
        return Err(ConfigError::SourceAndContents);
    }
    if source.is_none() && t.contents.is_none() {
        return Err(ConfigError::MissingSource);
    }
    let Some(destination) = t.destination.filter(|d| !d.is_empty()) else {
        return Err(ConfigError::MissingDestination(
            source.unwrap_or_else(|| "(dynamic)".into()),
        ));
    };
    let mut c = TemplateConfig::new(PathBuf::from(destination));
    c.source = source.map(PathBuf::from);
    c.contents = t.contents;
    c.create_dest_dirs = t.create_dest_dirs.unwrap_or(true);
    let mut timeout = t.command_timeout;
    if let Some(e) = t.exec {
        // `exec { command timeout }` is the newer spelling of command.
        if let Some(cmd) = e.command {
            c.command = cmd.into_vec();
        }
        timeout = e.timeout.or(timeout);
    }
    if let Some(cmd) = t.command {
        c.command = cmd.into_vec();
    }
    if let Some(s) = timeout {
        c.command_timeout = go_duration(&s)?;
    }
    c.perms = t.perms.map(PermsSpec::mode).transpose()?;
    c.backup = t.backup.unwrap_or(false);
    c.wait = t.wait.map(WaitSpec::into_wait).transpose()?;
    c.left_delimiter = t.left_delimiter.filter(|d| !d.is_empty());
    c.right_delimiter = t.right_delimiter.filter(|d| !d.is_empty());
    c.error_on_missing_key = t.error_on_missing_key.unwrap_or(false);
    c.error_fatal = t.error_fatal;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_flag_grammar() {
        let t = TemplateConfig::parse_flag("/in.ctmpl:/out.conf").unwrap();
        assert_eq!(t.source, Some(PathBuf::from("/in.ctmpl")));
        assert_eq!(t.destination, PathBuf::from("/out.conf"));
        assert!(t.command.is_empty());
        let t = TemplateConfig::parse_flag("in:out:nginx -s reload").unwrap();
        assert_eq!(t.command, ["nginx -s reload"]);
        // Parts past the third are the command, joined back with `:`.
        let t = TemplateConfig::parse_flag("in:out:echo a:b:c").unwrap();
        assert_eq!(t.command, ["echo a:b:c"]);
        // A drive letter stays with its path.
        let t = TemplateConfig::parse_flag("C:\\in.tpl:D:\\out.txt").unwrap();
        assert_eq!(t.source, Some(PathBuf::from("C:\\in.tpl")));
        assert_eq!(t.destination, PathBuf::from("D:\\out.txt"));
        assert_eq!(
            TemplateConfig::parse_flag("").unwrap_err(),
            ConfigError::TemplateEmpty
        );
        assert_eq!(
            TemplateConfig::parse_flag("in.ctmpl")
                .unwrap_err()
                .to_string(),
            "template: missing 'destination' in in.ctmpl"
        );
        assert_eq!(t.display(), r#""C:\\in.tpl" => "D:\\out.txt""#);
    }

    #[test]
    fn wait_grammar() {
        let w = Wait::parse("5s:10s").unwrap();
        assert_eq!(
            (w.min, w.max),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        let w = Wait::parse("2s").unwrap();
        assert_eq!(w.max, Duration::from_secs(8));
        assert_eq!(
            Wait::parse("").unwrap_err().to_string(),
            "wait: cannot be empty"
        );
        assert_eq!(
            Wait::parse("1s:2s:3s").unwrap_err().to_string(),
            "wait: invalid format"
        );
        assert_eq!(
            Wait::parse("-1s").unwrap_err().to_string(),
            "wait: cannot be negative"
        );
        assert_eq!(
            Wait::parse("5s:1s").unwrap_err().to_string(),
            "wait: min must be less than max"
        );
        assert!(Wait::parse("soon").is_err());
    }

    #[test]
    fn retry_backs_off_exponentially_to_the_cap() {
        let r = Retry::default();
        assert_eq!(r.pause(0), Some(Duration::from_millis(250)));
        assert_eq!(r.pause(3), Some(Duration::from_secs(2)));
        assert_eq!(r.pause(10), Some(Duration::from_secs(60)));
        assert_eq!(r.pause(12), None);
        let forever = Retry {
            attempts: 0,
            ..Retry::default()
        };
        assert_eq!(forever.pause(1000), Some(Duration::from_secs(60)));
    }

    const HCL: &str = r#"
consul {
  address = "127.0.0.1:8501"
  retry {
    attempts = 3
    backoff = "100ms"
  }
}
max_stale = "10s"
wait {
  min = "1s"
  max = "3s"
}
template {
  source = "/etc/nginx/upstream.ctmpl"
  destination = "/etc/nginx/conf.d/upstream.conf"
  command = "nginx -s reload"
  perms = 0600
  backup = true
  wait = "2s:6s"
  left_delimiter = "[["
  right_delimiter = "]]"
}
template {
  contents = "{{ key \"motd\" }}"
  destination = "/etc/motd"
  exec {
    command = ["/usr/bin/logger", "motd"]
    timeout = "5s"
  }
  error_on_missing_key = true
}
"#;

    #[test]
    fn hcl_files() {
        let mut c = Config::default();
        c.merge_hcl(HCL, "t.hcl").unwrap();
        assert_eq!(c.address.as_deref(), Some("127.0.0.1:8501"));
        assert_eq!(c.retry.attempts, 3);
        assert_eq!(c.retry.backoff, Duration::from_millis(100));
        assert_eq!(c.max_stale, Duration::from_secs(10));
        assert_eq!(
            c.wait,
            Some(Wait {
                min: Duration::from_secs(1),
                max: Duration::from_secs(3)
            })
        );
        assert_eq!(c.templates.len(), 2);
        let t = &c.templates[0];
        assert_eq!(t.command, ["nginx -s reload"]);
        assert_eq!(t.perms, Some(0o600));
        assert!(t.backup);
        assert_eq!(t.wait.map(|w| w.max), Some(Duration::from_secs(6)));
        assert_eq!(t.left_delimiter.as_deref(), Some("[["));
        let t = &c.templates[1];
        assert_eq!(t.contents.as_deref(), Some("{{ key \"motd\" }}"));
        assert_eq!(t.command, ["/usr/bin/logger", "motd"]);
        assert_eq!(t.command_timeout, Duration::from_secs(5));
        assert!(t.error_on_missing_key);
        // A later file adds templates and overrides what it sets.
        c.merge_hcl("template {\n source = \"a\"\n destination = \"b\"\n perms = \"0644\"\n}\nmax_stale = \"1s\"\n", "u.hcl").unwrap();
        assert_eq!(c.templates.len(), 3);
        assert_eq!(c.templates[2].perms, Some(0o644));
        assert_eq!(c.max_stale, Duration::from_secs(1));
        assert_eq!(c.address.as_deref(), Some("127.0.0.1:8501"));
    }

    #[test]
    fn hcl_errors_are_clear() {
        let mut c = Config::default();
        let e = c.merge_hcl("bogus = 1\n", "x.hcl").unwrap_err().to_string();
        assert!(
            e.starts_with("error decoding config at x.hcl:") && e.contains("bogus"),
            "{e}"
        );
        let e = c
            .merge_hcl("template {\n destination = \"b\"\n}\n", "x.hcl")
            .unwrap_err();
        assert_eq!(e, ConfigError::MissingSource);
        let e = c
            .merge_hcl("template {\n source = \"a\"\n}\n", "x.hcl")
            .unwrap_err();
        assert_eq!(e.to_string(), "template: missing 'destination' in a");
        let e = c.merge_hcl("wait = \"1s:2s:3s\"\n", "x.hcl").unwrap_err();
        assert_eq!(e, ConfigError::WaitFormat);
        assert!(c.merge_hcl("template {", "x.hcl").is_err());
    }

    #[test]
    fn exec_stanza() {
        let mut c = Config::default();
        c.merge_hcl(
            "exec {\n command = \"my-app --serve\"\n kill_signal = \"SIGTERM\"\n}\n",
            "x.hcl",
        )
        .unwrap();
        let e = c.exec.unwrap();
        assert_eq!(e.command, ["my-app --serve"]);
        assert_eq!(e.kill_signal, libc::SIGTERM);
        assert_eq!(e.reload_signal, Some(libc::SIGHUP));
    }
}
