//! The HTTP flags every client subcommand shares (`-http-addr`, `-token`,
//! with Consul's environment fallbacks), and the client they configure.

use super::flags::Flag;
use anyhow::{anyhow, Context, Result};
use std::time::Duration;

/// `-http-addr` and `-token`.
#[derive(Debug, Default)]
pub struct HttpArgs {
    addr: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
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
    ]
}

impl HttpArgs {
    /// The agent's base URL: `-http-addr`, else `CONSUL_HTTP_ADDR`, else
    /// 127.0.0.1:8500; `http://` unless a scheme is given.
    pub fn base(&self) -> String {
        let addr = self
            .addr
            .clone()
            .or_else(|| std::env::var("CONSUL_HTTP_ADDR").ok())
            .unwrap_or_else(|| "127.0.0.1:8500".into());
        if addr.starts_with("http://") || addr.starts_with("https://") {
            addr
        } else {
            format!("http://{addr}")
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
        Ok(reqwest::blocking::Client::builder()
            .timeout(timeout)
            .default_headers(headers)
            .build()?)
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
}
