//! The registry a registrator writes to, named by its URI as registrator's
//! adapters are:
//!
//! - `consul://host:port`: the local agent's service API
//!   (`PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/<id>`,
//!   `GET /v1/agent/services` for `-cleanup`);
//! - `consul-tls://host:port`: the same over HTTPS, with `CONSUL_CACERT`,
//!   `CONSUL_CLIENT_CERT` and `CONSUL_CLIENT_KEY` (system roots when no CA
//!   file is given);
//! - `consulkv://host:port/prefix`: one KV entry per service,
//!   `<prefix>/<name>/<id>` = `ip:port`, deleted on deregistration.
//!
//! An empty host is `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`, as Consul's
//! Go client defaults. `CONSUL_HTTP_TOKEN` is sent as `X-Consul-Token`.

use super::service::Registration;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Every call's limit: the agent answers these at once, or is in trouble.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which API the services go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Agent,
    /// Keys under this prefix (no leading or trailing `/`).
    Kv {
        prefix: String,
    },
}

/// A parsed registry URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUri {
    /// `http://host:port` or `https://host:port`.
    pub base: String,
    pub tls: bool,
    pub backend: Backend,
}

/// A registry URI that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("bad adapter uri: {0}")]
    Bad(String),
    #[error("unrecognized adapter: {0}")]
    Unrecognized(String),
    #[error("{0}: unix sockets are not supported; use consul://host:port")]
    Unix(String),
}

impl RegistryUri {
    /// Parses a registry URI; `consul_http_addr` is `CONSUL_HTTP_ADDR`.
    pub fn parse(uri: &str, consul_http_addr: Option<&str>) -> Result<RegistryUri, UriError> {
        let url = Url::parse(uri).map_err(|_| UriError::Bad(uri.to_string()))?;
        let (tls, backend) = match url.scheme() {
            "consul" => (false, Backend::Agent),
            "consul-tls" => (true, Backend::Agent),
            "consulkv" => {
                let prefix = url.path().trim_matches('/').to_string();
                (false, Backend::Kv { prefix })
            }
            "consul-unix" | "consulkv-unix" => return Err(UriError::Unix(uri.to_string())),
            _ => return Err(UriError::Unrecognized(uri.to_string())),
        };
        let host = match url.host_str().filter(|h| !h.is_empty()) {
            Some(h) => match url.port() {
                Some(p) => format!("{h}:{p}"),
                // Consul's Go client takes a host without a port as is,
                // and connects to the scheme's default port.
                None => h.to_string(),
            },
            None => consul_http_addr
                .map(|a| {
                    let a = a.trim();
                    let a = a.strip_prefix("http://").unwrap_or(a);
                    a.strip_prefix("https://").unwrap_or(a).to_string()
                })
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| "127.0.0.1:8500".to_string()),
        };
        let scheme = if tls { "https" } else { "http" };
        Ok(RegistryUri {
            base: format!("{scheme}://{host}"),
            tls,
            backend,
        })
    }
}

/// A call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: the agent is down or unreachable. Worth retrying.
    #[error("{}", causes(.0))]
    Unreachable(reqwest::Error),
    /// The agent answered and refused; retrying the same call will not help.
    #[error("Unexpected response code: {status} ({body})")]
    Rejected { status: u16, body: String },
}

impl CallError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, CallError::Unreachable(_))
    }
}

/// An error with its causes (`error sending request: ... Connection
/// refused`), each said once.
pub fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Setting up the HTTP client failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("reading {var} ({path}): {source}")]
    Read {
        var: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is set without the other of CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY")]
    HalfIdentity(&'static str),
    #[error("TLS setup: {0}")]
    Tls(reqwest::Error),
    #[error("the ACL token is not a valid header value")]
    Token,
}

/// A service as `GET /v1/agent/services` lists it (the fields cleanup reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentService {
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
}

/// The client for one registry.
pub struct Registry {
    http: reqwest::Client,
    uri: RegistryUri,
}

impl Registry {
    /// A client for `uri`, with `token` sent on every call and, for TLS, the
    /// CA and client certificate files the environment names.
    pub fn new(uri: RegistryUri, token: Option<&str>, tls: &TlsFiles) -> Result<Self, SetupError> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let value = reqwest::header::HeaderValue::from_str(t).map_err(|_| SetupError::Token)?;
            headers.insert("X-Consul-Token", value);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .default_headers(headers);
        if uri.tls {
            builder = tls.apply(builder)?;
        }
        Ok(Registry {
            http: builder.build().map_err(SetupError::Tls)?,
            uri,
        })
    }

    /// The URI's address, for log lines.
    pub fn base(&self) -> &str {
        &self.uri.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String, CallError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.uri.base));
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.map_err(CallError::Unreachable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(CallError::Unreachable)?;
        if status.is_success() {
            return Ok(text);
        }
        Err(CallError::Rejected {
            status: status.as_u16(),
            body: text.trim().to_string(),
        })
    }

    /// `GET /v1/status/leader`: any answer means the agent is up (the
    /// leader may be `""` while an election runs); returns the leader.
    pub async fn ping(&self) -> Result<String, CallError> {
        let text = self.call(Method::GET, "/v1/status/leader", None).await?;
        Ok(serde_json::from_str::<String>(&text).unwrap_or(text))
    }

    pub async fn register(&self, r: &Registration) -> Result<(), CallError> {
        match &self.uri.backend {
            Backend::Agent => {
                let body = serde_json::to_vec(&r.register_body()).unwrap_or_default();
                self.call(Method::PUT, "/v1/agent/service/register", Some(body))
                    .await?;
            }
            Backend::Kv { prefix } => {
                let path = kv_path(prefix, &r.name, &r.id);
                self.call(Method::PUT, &path, Some(r.host_port().into_bytes()))
                    .await?;
            }
        }
        Ok(())
    }

    /// Deregisters the service `id` named `name` (the KV backend's key
    /// needs the name).
    pub async fn deregister(&self, id: &str, name: &str) -> Result<(), CallError> {
        match &self.uri.backend {
            Backend::Agent => {
                let path = format!("/v1/agent/service/deregister/{}", path_segment(id));
                self.call(Method::PUT, &path, None).await?;
            }
            Backend::Kv { prefix } => {
                self.call(Method::DELETE, &kv_path(prefix, name, id), None)
                    .await?;
            }
        }
        Ok(())
    }

    /// The agent's services, for `-cleanup`; `None` for the KV backend,
    /// which (as registrator's) has no listing to clean up from.
    pub async fn services(&self) -> Result<Option<Vec<AgentService>>, CallError> {
        if self.uri.backend != Backend::Agent {
            return Ok(None);
        }
        let text = self.call(Method::GET, "/v1/agent/services", None).await?;
        let map: BTreeMap<String, AgentService> =
            serde_json::from_str(&text).map_err(|e| CallError::Rejected {
                status: StatusCode::OK.as_u16(),
                body: format!("undecodable /v1/agent/services: {e}"),
            })?;
        Ok(Some(map.into_values().collect()))
    }
}

/// `/v1/kv/<prefix>/<name>/<id>`, each part escaped for the path.
fn kv_path(prefix: &str, name: &str, id: &str) -> String {
    let mut path = String::from("/v1/kv/");
    for part in prefix.split('/').filter(|p| !p.is_empty()) {
        path.push_str(&path_segment(part));
        path.push('/');
    }
    path.push_str(&path_segment(name));
    path.push('/');
    path.push_str(&path_segment(id));
    path
}

/// Percent-encodes one path segment (IDs may hold `/`, `?` or spaces).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The TLS files `consul-tls://` reads, from Consul's environment variables.
#[derive(Debug, Default, Clone)]
pub struct TlsFiles {
    /// `CONSUL_CACERT`.
    pub ca_cert: Option<String>,
    /// `CONSUL_CLIENT_CERT`.
    pub client_cert: Option<String>,
    /// `CONSUL_CLIENT_KEY`.
    pub client_key: Option<String>,
}

impl TlsFiles {
    pub fn from_env() -> TlsFiles {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        TlsFiles {
            ca_cert: var("CONSUL_CACERT"),
            client_cert: var("CONSUL_CLIENT_CERT"),
            client_key: var("CONSUL_CLIENT_KEY"),
        }
    }

    fn apply(&self, mut b: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, SetupError> {
        let read = |var: &'static str, path: &str| {
            std::fs::read(path).map_err(|source| SetupError::Read {
                var,
                path: path.to_string(),
                source,
            })
        };
        match &self.ca_cert {
            Some(path) => {
                let pem = read("CONSUL_CACERT", path)?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(SetupError::Tls)? {
                    b = b.add_root_certificate(cert);
                }
            }
            None => {
                for der in rustls_native_certs::load_native_certs().certs {
                    if let Ok(cert) = reqwest::Certificate::from_der(&der) {
                        b = b.add_root_certificate(cert);
                    }
                }
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read("CONSUL_CLIENT_CERT", cert)?;
                pem.push(b'\n');
                pem.extend(read("CONSUL_CLIENT_KEY", key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(SetupError::Tls)?;
                b = b.identity(id);
            }
            (Some(_), None) => return Err(SetupError::HalfIdentity("CONSUL_CLIENT_CERT")),
            (None, Some(_)) => return Err(SetupError::HalfIdentity("CONSUL_CLIENT_KEY")),
            (None, None) => {}
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Result<RegistryUri, UriError> {
        RegistryUri::parse(uri, None)
    }

    #[test]
    fn consul_uris() {
        let u = parse("consul://127.0.0.1:8500").unwrap();
        assert_eq!(u.base, "http://127.0.0.1:8500");
        assert_eq!(u.backend, Backend::Agent);
        assert!(!u.tls);
        let u = parse("consul-tls://consul.example:8501").unwrap();
        assert_eq!(u.base, "https://consul.example:8501");
        assert!(u.tls);
        let u = parse("consulkv://10.0.0.1:8500/services/web").unwrap();
        assert_eq!(
            u.backend,
            Backend::Kv {
                prefix: "services/web".into()
            }
        );
    }

    #[test]
    fn an_empty_host_is_consul_http_addr_or_the_default() {
        assert_eq!(parse("consul://").unwrap().base, "http://127.0.0.1:8500");
        let u = RegistryUri::parse("consul://", Some("http://10.1.1.1:8500")).unwrap();
        assert_eq!(u.base, "http://10.1.1.1:8500");
    }

    #[test]
    fn unsupported_uris() {
        assert_eq!(
            parse("etcd://127.0.0.1:2379").unwrap_err().to_string(),
            "unrecognized adapter: etcd://127.0.0.1:2379"
        );
        assert!(matches!(
            parse("consul-unix:///tmp/consul.sock"),
            Err(UriError::Unix(_))
        ));
        assert_eq!(
            parse("localhost:8500").unwrap_err(),
            UriError::Unrecognized("localhost:8500".into()),
            "a host without a scheme reads as a scheme"
        );
        assert!(matches!(parse("127.0.0.1:8500"), Err(UriError::Bad(_))));
    }

    #[test]
    fn kv_paths_escape_each_part() {
        assert_eq!(
            kv_path("services", "web", "dock1:web-1:80"),
            "/v1/kv/services/web/dock1:web-1:80"
        );
        assert_eq!(kv_path("", "a b", "x/y"), "/v1/kv/a%20b/x%2Fy");
    }
}
