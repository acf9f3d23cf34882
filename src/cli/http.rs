//! The HTTP flags every client subcommand shares (`-http-addr`, `-token`
//! and the TLS ones, with Consul's environment fallbacks), and the client
//! they configure.
//!
//! HTTPS is used when the address says `https://`, or when it names no
//! scheme and `CONSUL_HTTP_SSL` is true. The agent's certificate is then
//! verified against `-ca-file` / `-ca-path` (`CONSUL_CACERT`,
//! `CONSUL_CAPATH`), else the system's roots, for `-tls-server-name`
//! (`CONSUL_TLS_SERVER_NAME`) when given; `-client-cert` and `-client-key`
//! (`CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`) are presented to an agent with
//! `verify_incoming`; `CONSUL_HTTP_SSL_VERIFY=false` skips verification.

use super::flags::Flag;
use crate::tls::http_client::ClientTls;
use anyhow::{anyhow, Context, Result};
use std::time::Duration;

/// `-http-addr`, `-token` and the TLS flags.
#[derive(Debug, Default)]
pub struct HttpArgs {
    addr: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
    ca_file: Option<String>,
    ca_path: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
    tls_server_name: Option<String>,
}

/// A set, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A boolean environment variable as Go's `strconv.ParseBool` reads it.
fn env_bool(name: &str) -> Option<bool> {
    match env(name)?.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A subcommand's options that include the HTTP flags.
pub trait WithHttp {
    fn http(&mut self) -> &mut HttpArgs;
}

/// Implements [`WithHttp`] for options structs with an `http: HttpArgs` field.
macro_rules! with_http {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::cli::http::WithHttp for $t {
            fn http(&mut self) -> &mut $crate::cli::http::HttpArgs {
                &mut self.http
            }
        })*
    };
}
pub(crate) use with_http;

/// The HTTP flags' rows for a subcommand's table.
pub fn flags<T: WithHttp>() -> Vec<Flag<T>> {
    vec![
        Flag::text(
            "http-addr",
            "The `address` and port of the agent's HTTP API, with an optional \
             http:// or https:// scheme. Defaults to CONSUL_HTTP_ADDR, else 127.0.0.1:8500.",
            |o: &mut T, v| o.http().addr = Some(v),
        ),
        Flag::text(
            "token",
            "An ACL token sent as X-Consul-Token. Defaults to CONSUL_HTTP_TOKEN.",
            |o: &mut T, v| o.http().token = Some(v),
        ),
        Flag::text(
            "token-file",
            "A `file` holding the ACL token. Defaults to CONSUL_HTTP_TOKEN_FILE.",
            |o: &mut T, v| o.http().token_file = Some(v),
        ),
        Flag::text(
            "ca-file",
            "Path to a CA file to use for TLS when communicating with Consul. This \
             can also be specified via the CONSUL_CACERT environment variable.",
            |o: &mut T, v| o.http().ca_file = Some(v),
        ),
        Flag::text(
            "ca-path",
            "Path to a directory of CA certificates to use for TLS when communicating \
             with Consul. This can also be specified via the CONSUL_CAPATH environment variable.",
            |o: &mut T, v| o.http().ca_path = Some(v),
        ),
        Flag::text(
            "client-cert",
            "Path to a client cert file to use for TLS when 'verify_incoming' is \
             enabled. This can also be specified via the CONSUL_CLIENT_CERT environment variable.",
            |o: &mut T, v| o.http().client_cert = Some(v),
        ),
        Flag::text(
            "client-key",
            "Path to a client key file to use for TLS when 'verify_incoming' is \
             enabled. This can also be specified via the CONSUL_CLIENT_KEY environment variable.",
            |o: &mut T, v| o.http().client_key = Some(v),
        ),
        Flag::text(
            "tls-server-name",
            "The server name to use as the SNI host when connecting via TLS. This \
             can also be specified via the CONSUL_TLS_SERVER_NAME environment variable.",
            |o: &mut T, v| o.http().tls_server_name = Some(v),
        ),
    ]
}

impl HttpArgs {
    /// The agent's base URL: `-http-addr`, else `CONSUL_HTTP_ADDR`, else
    /// 127.0.0.1:8500; without a scheme, `https://` if `CONSUL_HTTP_SSL` is
    /// true, else `http://`.
    pub fn base(&self) -> String {
        let addr = self
            .addr
            .clone()
            .or_else(|| env("CONSUL_HTTP_ADDR"))
            .unwrap_or_else(|| "127.0.0.1:8500".into());
        if addr.starts_with("http://") || addr.starts_with("https://") {
            addr
        } else if env_bool("CONSUL_HTTP_SSL") == Some(true) {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        }
    }

    /// The TLS settings: each flag, else its `CONSUL_*` variable.
    pub fn tls(&self) -> ClientTls {
        let pick = |flag: &Option<String>, var: &str| flag.clone().or_else(|| env(var));
        ClientTls {
            ca_file: pick(&self.ca_file, "CONSUL_CACERT").map(Into::into),
            ca_path: pick(&self.ca_path, "CONSUL_CAPATH").map(Into::into),
            client_cert: pick(&self.client_cert, "CONSUL_CLIENT_CERT").map(Into::into),
            client_key: pick(&self.client_key, "CONSUL_CLIENT_KEY").map(Into::into),
            server_name: pick(&self.tls_server_name, "CONSUL_TLS_SERVER_NAME"),
            insecure: env_bool("CONSUL_HTTP_SSL_VERIFY") == Some(false),
        }
    }

    /// A blocking client that sends the token, if any, with every request.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::blocking::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        // Consul's order: -token, -token-file, CONSUL_HTTP_TOKEN,
        // CONSUL_HTTP_TOKEN_FILE.
        let from_file = |path: String| -> Result<String> {
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .with_context(|| format!("Error loading token file {path}"))
        };
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(from_file(f.clone())?),
            (None, None) => match std::env::var("CONSUL_HTTP_TOKEN") {
                Ok(t) if !t.is_empty() => Some(t),
                _ => match std::env::var("CONSUL_HTTP_TOKEN_FILE") {
                    Ok(f) if !f.is_empty() => Some(from_file(f)?),
                    _ => None,
                },
            },
        }
        .filter(|t| !t.is_empty());
        if let Some(t) = token {
            let value = reqwest::header::HeaderValue::from_str(&t)
                .context("the ACL token is not a valid header value")?;
            headers.insert("X-Consul-Token", value);
        }
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .default_headers(headers);
        if self.base().starts_with("https://") {
            let tls = self.tls().client_config()?;
            builder = builder.use_preconfigured_tls(tls);
        }
        Ok(builder.build()?)
    }
}

/// A non-2xx response as the Go API client reports it.
pub fn check(resp: reqwest::blocking::Response) -> Result<reqwest::blocking::Response> {
    let code = resp.status();
    if code.is_success() {
        return Ok(resp);
    }
    let body = resp.text().unwrap_or_default();
    Err(anyhow!(
        "Unexpected response code: {} ({})",
        code.as_u16(),
        body.trim()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::flags::FlagSet;

    #[derive(Default)]
    struct Opts {
        http: HttpArgs,
    }
    with_http!(Opts);

    #[test]
    fn http_addr_gets_a_scheme_unless_it_has_one() {
        let set = FlagSet::new("", flags::<Opts>());
        let mut o = Opts::default();
        set.parse(&mut o, &["-http-addr=10.0.0.1:8500".to_string()])
            .unwrap();
        assert_eq!(o.http.base(), "http://10.0.0.1:8500");
        set.parse(&mut o, &["-http-addr".into(), "https://h:1".into()])
            .unwrap();
        assert_eq!(o.http.base(), "https://h:1");
    }

    #[test]
    fn tls_flags_set_the_client_tls() {
        let set = FlagSet::new("", flags::<Opts>());
        let mut o = Opts::default();
        let args: Vec<String> = [
            "-ca-file=/ca.pem",
            "-ca-path",
            "/cas",
            "-client-cert=/c.pem",
            "-client-key=/k.pem",
            "-tls-server-name=server.dc1.consul",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        set.parse(&mut o, &args).unwrap();
        let tls = o.http.tls();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(tls.ca_path.as_deref(), Some(std::path::Path::new("/cas")));
        assert_eq!(
            tls.client_cert.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(
            tls.client_key.as_deref(),
            Some(std::path::Path::new("/k.pem"))
        );
        assert_eq!(tls.server_name.as_deref(), Some("server.dc1.consul"));
    }
}
