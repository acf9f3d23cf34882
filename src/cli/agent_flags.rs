//! `cairn agent` flags, Consul's names and meanings.

use crate::config::{normalize_domain, Config};
use anyhow::{anyhow, Context, Result};
use clap::{ArgAction, Parser};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cairn agent",
    about = "Runs a cairn agent",
    disable_version_flag = true
)]
struct AgentFlags {
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    dev: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    server: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    bootstrap: Option<bool>,
    #[arg(long = "bootstrap-expect")]
    bootstrap_expect: Option<u32>,
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    #[arg(long)]
    node: Option<String>,
    #[arg(long = "node-id")]
    node_id: Option<String>,
    #[arg(long = "node-meta", action = ArgAction::Append)]
    node_meta: Vec<String>,
    #[arg(long)]
    datacenter: Option<String>,
    #[arg(long)]
    domain: Option<String>,
    #[arg(long = "alt-domain")]
    alt_domain: Option<String>,
    #[arg(long)]
    client: Option<String>,
    #[arg(long)]
    bind: Option<String>,
    #[arg(long)]
    advertise: Option<String>,
    #[arg(long = "http-port")]
    http_port: Option<i32>,
    #[arg(long = "https-port")]
    https_port: Option<i32>,
    #[arg(long = "grpc-port")]
    grpc_port: Option<i32>,
    #[arg(long = "dns-port")]
    dns_port: Option<i32>,
    #[arg(long = "server-port")]
    server_port: Option<i32>,
    #[arg(long = "serf-lan-port")]
    serf_lan_port: Option<i32>,
    #[arg(long = "serf-wan-port")]
    serf_wan_port: Option<i32>,
    #[arg(long = "config-file", action = ArgAction::Append)]
    config_file: Vec<PathBuf>,
    #[arg(long = "config-dir", action = ArgAction::Append)]
    config_dir: Vec<PathBuf>,
    #[arg(long = "log-level")]
    log_level: Option<String>,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    ui: Option<bool>,
    #[arg(long = "enable-script-checks", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    enable_script_checks: Option<bool>,
    #[arg(long = "enable-local-script-checks", num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    enable_local_script_checks: Option<bool>,
    #[arg(long = "retry-join", action = ArgAction::Append)]
    retry_join: Vec<String>,
    #[arg(long = "join", action = ArgAction::Append)]
    join: Vec<String>,
    #[arg(long = "retry-interval")]
    retry_interval: Option<String>,
    #[arg(long = "retry-max")]
    retry_max: Option<u32>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    rejoin: Option<bool>,
    #[arg(long)]
    encrypt: Option<String>,
    #[arg(long, action = ArgAction::Append)]
    recursor: Vec<String>,
    #[arg(long = "zones-dir")]
    zones_dir: Option<PathBuf>,
}

/// Builds the agent config: defaults, `-dev`, config files/dirs, then flags.
pub fn build_config(args: Vec<String>) -> Result<Config> {
    let mut argv = vec!["cairn agent".to_string()];
    argv.extend(super::normalize_args(args));
    let f = AgentFlags::try_parse_from(argv).map_err(|e| anyhow!("{e}"))?;
    let mut c = Config::default();
    if f.dev == Some(true) {
        c.apply_dev();
    }
    for file in &f.config_file {
        c.merge_file(file)?;
    }
    for dir in &f.config_dir {
        c.merge_dir(dir)?;
    }
    if let Some(v) = f.server {
        c.server = v;
    }
    if let Some(v) = f.bootstrap {
        c.bootstrap = v;
    }
    if let Some(v) = f.bootstrap_expect {
        c.bootstrap_expect = v;
    }
    if let Some(v) = f.data_dir {
        c.data_dir = Some(v);
    }
    if let Some(v) = f.node {
        c.node_name = v;
    }
    if f.node_id.is_some() {
        c.node_id = f.node_id;
    }
    for kv in f.node_meta {
        let (k, v) = kv
            .split_once(':')
            .ok_or_else(|| anyhow!("-node-meta {kv:?}: expected key:value"))?;
        c.node_meta.insert(k.to_string(), v.to_string());
    }
    if let Some(v) = f.datacenter {
        c.datacenter = v.to_ascii_lowercase();
    }
    if let Some(v) = f.domain {
        c.domain = normalize_domain(&v);
    }
    if let Some(v) = f.alt_domain {
        c.alt_domain = Some(normalize_domain(&v));
    }
    if let Some(v) = f.client {
        c.client_addrs = v
            .split_whitespace()
            .map(|s| {
                s.parse()
                    .with_context(|| format!("-client: invalid address {s:?}"))
            })
            .collect::<Result<_>>()?;
    }
    if let Some(v) = f.bind {
        c.bind_addr = v
            .parse()
            .with_context(|| format!("-bind: invalid address {v:?}"))?;
    }
    if let Some(v) = f.advertise {
        c.advertise_addr = Some(
            v.parse()
                .with_context(|| format!("-advertise: invalid address {v:?}"))?,
        );
    }
    macro_rules! port {
        ($flag:expr => $dst:expr) => {
            if let Some(p) = $flag {
                $dst = p;
            }
        };
    }
    port!(f.http_port => c.ports.http);
    port!(f.https_port => c.ports.https);
    port!(f.grpc_port => c.ports.grpc);
    port!(f.dns_port => c.ports.dns);
    port!(f.server_port => c.ports.server);
    port!(f.serf_lan_port => c.ports.serf_lan);
    port!(f.serf_wan_port => c.ports.serf_wan);
    if let Some(v) = f.log_level {
        c.log_level = v;
    }
    if f.pid_file.is_some() {
        c.pid_file = f.pid_file;
    }
    if let Some(v) = f.ui {
        c.ui = v;
    }
    if let Some(v) = f.enable_script_checks {
        c.enable_script_checks = v;
    }
    if let Some(v) = f.enable_local_script_checks {
        c.enable_local_script_checks = v;
    }
    c.retry_join.extend(f.retry_join);
    c.retry_join.extend(f.join);
    if let Some(v) = f.retry_interval {
        c.retry_interval =
            crate::duration::parse(&v).map_err(|e| anyhow!("-retry-interval: {e}"))?;
    }
    if let Some(v) = f.retry_max {
        c.retry_max = v;
    }
    if let Some(v) = f.rejoin {
        c.rejoin_after_leave = v;
    }
    if f.encrypt.is_some() {
        c.encrypt = f.encrypt;
    }
    c.recursors.extend(f.recursor);
    if f.zones_dir.is_some() {
        c.zones_dir = f.zones_dir;
    }
    if !["trace", "debug", "info", "warn", "err", "error"]
        .contains(&c.log_level.to_ascii_lowercase().as_str())
    {
        return Err(anyhow!("Invalid log level: {}", c.log_level));
    }
    c.validate()?;
    Ok(c)
}

pub fn run(args: Vec<String>) -> Result<i32> {
    let config = match build_config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("==> {e:#}");
            return Ok(1);
        }
    };
    crate::run::run_agent(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config> {
        build_config(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn three_flag_forms() {
        let c = cfg(&[
            "-dev",
            "-http-port=18500",
            "-dns-port",
            "18600",
            "--server-port",
            "18300",
            "-node=n1",
        ])
        .unwrap();
        assert!(c.dev && c.server);
        assert_eq!(c.ports.http, 18500);
        assert_eq!(c.ports.dns, 18600);
        assert_eq!(c.ports.server, 18300);
        assert_eq!(c.node_name, "n1");
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(cfg(&["-dev", "-http-port=abc"]).is_err());
        assert!(cfg(&["-dev", "-bogus"]).is_err());
        assert!(cfg(&[
            "-server",
            "-bootstrap",
            "-bootstrap-expect=3",
            "-data-dir=/tmp/x"
        ])
        .is_err());
        assert!(
            cfg(&["-server"]).is_err(),
            "data dir is required outside -dev"
        );
    }
}
