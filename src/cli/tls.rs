//! `cairn tls ca create` and `cairn tls cert create`: Consul's built-in
//! CA, with its file names, flags, output and refusals.
//!
//! Files are written to the current directory: `<domain>-agent-ca.pem` and
//! `<domain>-agent-ca-key.pem` for the CA; `<dc>-<role>-<domain>-<n>.pem`
//! and `...-<n>-key.pem` for a certificate, `n` the first number for which
//! neither exists. A file that exists is never overwritten, and keys are
//! written with mode 0600.

use super::flags::{Flag, FlagError, FlagSet};
use crate::tls::generate::{self, CaOptions, CertOptions, Role};
use anyhow::Result;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const USAGE: &str = "Usage: cairn tls <subcommand> <subcommand> [options] ARG ...

  This command has subcommands for interacting with Consul TLS.

  Create a CA

    $ cairn tls ca create

  Create a server certificate

    $ cairn tls cert create -server

  Create a client certificate

    $ cairn tls cert create -client

Subcommands:
    ca      Helpers for CAs
    cert    Helpers for certificates
";

const CA_USAGE: &str = "Usage: cairn tls ca <subcommand> [options] filename-prefix

  This command has subcommands for interacting with Certificate
  Authorities.

Subcommands:
    create    Create a new consul CA
";

const CERT_USAGE: &str = "Usage: cairn tls cert <subcommand> [options] [filename-prefix]

  This command has subcommands for interacting with certificates

Subcommands:
    create    Create a new certificate
";

pub fn run(args: Vec<String>) -> Result<i32> {
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(match strs.as_slice() {
        ["ca", "create", rest @ ..] => ca_create(&owned(rest)),
        ["cert", "create", rest @ ..] => cert_create(&owned(rest)),
        ["ca", ..] => help(CA_USAGE, &strs[1..]),
        ["cert", ..] => help(CERT_USAGE, &strs[1..]),
        _ => help(USAGE, &strs),
    })
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A command group without its subcommand: its usage, and 0 only when the
/// usage was asked for.
fn help(usage: &str, args: &[&str]) -> i32 {
    if matches!(args, ["-h" | "-help" | "--help", ..]) {
        print!("{usage}");
        return 0;
    }
    eprint!("{usage}");
    1
}

/// Parses Consul-style: `Failed to parse args: <Go's error>`, no usage.
fn parse<T: Default>(set: &FlagSet<T>, args: &[String]) -> Result<T, i32> {
    let mut target = T::default();
    match set.parse(&mut target, args) {
        Ok(_) => Ok(target),
        Err(FlagError::Help) => {
            print!("{}", set.usage());
            Err(0)
        }
        Err(e) => {
            eprintln!("Failed to parse args: {e}");
            Err(1)
        }
    }
}

#[derive(Debug)]
struct CaArgs {
    days: i32,
    domain: String,
    name_constraint: bool,
    additional: Vec<String>,
    cluster_id: String,
    common_name: String,
}

impl Default for CaArgs {
    fn default() -> Self {
        CaArgs {
            days: 1825,
            domain: "consul".into(),
            name_constraint: false,
            additional: vec![],
            cluster_id: String::new(),
            common_name: String::new(),
        }
    }
}

const CA_CREATE: &str = "Usage: cairn tls ca create [options]

  Create a new consul CA:

  $ cairn tls ca create
  ==> saved consul-agent-ca.pem
  ==> saved consul-agent-ca-key.pem
";

fn ca_flags() -> FlagSet<CaArgs> {
    FlagSet::new(
        CA_CREATE,
        vec![
            Flag::int(
                "days",
                "Number of days the CA is valid for. Defaults to 1825 days (approximately 5 years).",
                |o, v| o.days = v,
            ),
            Flag::bool(
                "name-constraint",
                "Enables X.509 name constraints for the CA. If used, the CA only signs certificates \
                 for localhost and the domains specified by -domain and -additional-name-constraint. \
                 If Consul's UI is served over HTTPS in your deployment, add its DNS name with \
                 -additional-constraint. Defaults to false.",
                |o, v| o.name_constraint = v,
            ),
            Flag::text(
                "domain",
                "The DNS domain of the Consul cluster that agents are configured with. Defaults to \
                 consul. Only used when -name-constraint is set. Additional domains can be passed \
                 with -additional-name-constraint.",
                |o, v| o.domain = v,
            ),
            Flag::text(
                "cluster-id",
                "ID of the Consul cluster. Sets the CA's URI with the SPIFFEID composed of the \
                 cluster ID and domain (specified by -domain or 'consul' by default).",
                |o, v| o.cluster_id = v,
            ),
            Flag::text(
                "common-name",
                "Common Name of CA. Defaults to Consul Agent CA.",
                |o, v| o.common_name = v,
            ),
            Flag::list(
                "additional-name-constraint",
                "Add name constraints for the CA. Results in rejecting certificates for other DNS \
                 than specified. Can be used multiple times. Only used in combination with \
                 -name-constraint.",
                |o, v| o.additional.push(v),
            ),
        ],
    )
}

/// Consul's `tls.FileDoesNotExist`.
fn exists(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

/// Writes a new file with `mode`; never replaces one.
fn write_new(path: &str, contents: &str, mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

fn days(d: i32) -> Result<u32, i32> {
    u32::try_from(d).map_err(|_| {
        eprintln!("Failed to parse args: -days must not be negative");
        1
    })
}

fn ca_create(args: &[String]) -> i32 {
    let o = match parse(&ca_flags(), args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let cert_file = format!("{}-agent-ca.pem", o.domain);
    let key_file = format!("{}-agent-ca-key.pem", o.domain);
    for f in [&cert_file, &key_file] {
        if exists(f) {
            eprintln!("{f} already exists.");
            return 1;
        }
    }
    let days = match days(o.days) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let pem = match generate::ca(&CaOptions {
        days,
        domain: o.domain.clone(),
        name_constraint: o.name_constraint,
        additional_constraints: o.additional,
        cluster_id: Some(o.cluster_id).filter(|c| !c.is_empty()),
        common_name: Some(o.common_name).filter(|c| !c.is_empty()),
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    for (file, contents, mode) in [(&cert_file, &pem.cert, 0o666), (&key_file, &pem.key, 0o600)] {
        if let Err(e) = write_new(file, contents, mode) {
            eprintln!("open {file}: {e}");
            return 1;
        }
        println!("==> Saved {file}");
    }
    0
}

#[derive(Debug)]
struct CertArgs {
    ca: String,
    key: String,
    server: bool,
    client: bool,
    cli: bool,
    dc: String,
    days: i32,
    domain: String,
    node: String,
    dns_names: Vec<String>,
    ip_addresses: Vec<String>,
}

impl Default for CertArgs {
    fn default() -> Self {
        CertArgs {
            ca: "#DOMAIN#-agent-ca.pem".into(),
            key: "#DOMAIN#-agent-ca-key.pem".into(),
            server: false,
            client: false,
            cli: false,
            dc: "dc1".into(),
            days: 365,
            domain: "consul".into(),
            node: String::new(),
            dns_names: vec![],
            ip_addresses: vec![],
        }
    }
}

const CERT_CREATE: &str = "Usage: cairn tls cert create [options]

  Create a new certificate

  $ cairn tls cert create -server
  ==> WARNING: Server Certificates grants authority to become a
      server and access all state in the cluster including root keys
      and all ACL tokens. Do not distribute them to production hosts
      that are not server nodes. Store them as securely as CA keys.
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-server-consul-0.pem
  ==> Saved dc1-server-consul-0-key.pem
  $ cairn tls cert create -client
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-client-consul-0.pem
  ==> Saved dc1-client-consul-0-key.pem
";

fn cert_flags() -> FlagSet<CertArgs> {
    FlagSet::new(
        CERT_CREATE,
        vec![
            Flag::text(
                "ca",
                "Provide path to the ca. Defaults to #DOMAIN#-agent-ca.pem.",
                |o, v| o.ca = v,
            ),
            Flag::text(
                "key",
                "Provide path to the key. Defaults to #DOMAIN#-agent-ca-key.pem.",
                |o, v| o.key = v,
            ),
            Flag::bool("server", "Generate server certificate.", |o, v| {
                o.server = v
            }),
            Flag::bool("client", "Generate client certificate.", |o, v| {
                o.client = v
            }),
            Flag::bool("cli", "Generate cli certificate.", |o, v| o.cli = v),
            Flag::text(
                "node",
                "When generating a server cert and this is set an additional dns name is included \
                 of the form <node>.server.<datacenter>.<domain>.",
                |o, v| o.node = v,
            ),
            Flag::int(
                "days",
                "Provide number of days the certificate is valid for from now on. Defaults to 1 year.",
                |o, v| o.days = v,
            ),
            Flag::text(
                "dc",
                "Provide the datacenter. Matters only for -server certificates. Defaults to dc1.",
                |o, v| o.dc = v,
            ),
            Flag::text(
                "domain",
                "Provide the domain. Matters only for -server certificates.",
                |o, v| o.domain = v,
            ),
            Flag::list(
                "additional-dnsname",
                "Provide an additional dnsname for Subject Alternative Names. localhost is always \
                 included. This flag may be provided multiple times.",
                |o, v| o.dns_names.push(v),
            ),
            Flag::list(
                "additional-ipaddress",
                "Provide an additional ipaddress for Subject Alternative Names. 127.0.0.1 is always \
                 included. This flag may be provided multiple times.",
                |o, v| o.ip_addresses.push(v),
            ),
        ],
    )
}

/// The first `<prefix>-<n>.pem` / `<prefix>-<n>-key.pem` pair of which
/// neither file exists.
fn free_names(prefix: &str) -> Option<(String, String)> {
    (0..=10000).find_map(|i| {
        let cert = format!("{prefix}-{i}.pem");
        let key = format!("{prefix}-{i}-key.pem");
        (!exists(&cert) && !exists(&key)).then_some((cert, key))
    })
}

fn cert_create(args: &[String]) -> i32 {
    let o = match parse(&cert_flags(), args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if o.ca.is_empty() {
        eprintln!("Please provide the ca");
        return 1;
    }
    if o.key.is_empty() {
        eprintln!("Please provide the key");
        return 1;
    }
    let role = match (o.server, o.client, o.cli) {
        (true, false, false) => Role::Server,
        (false, true, false) => Role::Client,
        (false, false, true) => Role::Cli,
        _ => {
            eprintln!("Please provide either -server, -client, or -cli");
            return 1;
        }
    };
    if !o.node.is_empty() && role != Role::Server {
        eprintln!("-node requires -server");
        return 1;
    }
    let mut ips = Vec::new();
    for ip in o
        .ip_addresses
        .iter()
        .map(|i| i.trim())
        .filter(|i| !i.is_empty())
    {
        match ip.parse() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                eprintln!("Failed to parse args: invalid IP address {ip:?}");
                return 1;
            }
        }
    }
    let days = match days(o.days) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let opts = CertOptions {
        role,
        datacenter: o.dc.clone(),
        domain: o.domain.clone(),
        days,
        node: Some(o.node.clone()).filter(|n| !n.is_empty()),
        dns_names: o
            .dns_names
            .iter()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect(),
        ip_addresses: ips,
    };
    let prefix = format!("{}-{}-{}", o.dc, role.as_str(), o.domain);
    let Some((cert_file, key_file)) = free_names(&prefix) else {
        eprintln!("Could not find a filename that doesn't already exist");
        return 1;
    };
    let ca_file = o.ca.replacen("#DOMAIN#", &o.domain, 1);
    let ca_key_file = o.key.replacen("#DOMAIN#", &o.domain, 1);
    let ca = match std::fs::read_to_string(&ca_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "Error reading CA: {}",
                crate::tls::open_error(Path::new(&ca_file), &e)
            );
            return 1;
        }
    };
    let ca_key = match std::fs::read_to_string(&ca_key_file) {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "Error reading CA key: {}",
                crate::tls::open_error(Path::new(&ca_key_file), &e)
            );
            return 1;
        }
    };
    if role == Role::Server {
        println!(
            "==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."
        );
    }
    println!("==> Using {ca_file} and {ca_key_file}");
    let pem = match generate::cert(&opts, &ca, &ca_key) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    for (file, contents, mode) in [(&cert_file, &pem.cert, 0o666), (&key_file, &pem.key, 0o600)] {
        if let Err(e) = write_new(file, contents, mode) {
            eprintln!("open {file}: {e}");
            return 1;
        }
        println!("==> Saved {file}");
    }
    0
}
