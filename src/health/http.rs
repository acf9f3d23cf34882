//! HTTP checks: one request per interval; 2xx is passing, 429 Too Many
//! Requests is warning, anything else (or no response) is critical.
//!
//! As Consul's: method defaults to GET, `User-Agent: Consul Health Check`
//! and `Accept: text/plain, text/*, */*` unless the definition sets them,
//! no connection reuse between runs, redirects followed unless
//! `DisableRedirects`, and the output is
//! `HTTP GET <url>: 200 OK Output: <first OutputMaxSize bytes of the body>`.

use super::Probe;
use crate::catalog::types::{HealthStatus, HttpCheck};
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use std::time::Duration;

pub struct HttpProbe {
    client: reqwest::Client,
    url: String,
    /// The URL as registered, for the output.
    display_url: String,
    method: reqwest::Method,
    headers: reqwest::header::HeaderMap,
    body: String,
    max_output: usize,
}

impl HttpProbe {
    pub async fn new(
        d: &HttpCheck,
        timeout: Duration,
        max_output: usize,
    ) -> Result<HttpProbe, String> {
        let method = if d.method.is_empty() {
            reqwest::Method::GET
        } else {
            reqwest::Method::from_bytes(d.method.as_bytes())
                .map_err(|_| format!("invalid method {:?}", d.method))?
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, values) in &d.header {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            for v in values {
                let v = HeaderValue::from_str(v)
                    .map_err(|_| format!("invalid value for header {name}"))?;
                headers.append(name.clone(), v);
            }
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static("Consul Health Check"));
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("text/plain, text/*, */*"));
        }
        let redirects = if d.disable_redirects {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(10)
        };
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(redirects)
            .pool_max_idle_per_host(0)
            .no_proxy();
        let mut url = d.url.clone();
        // Also for http: URLs, which may redirect to https: ones.
        let tls = super::tls::client_config(d.tls_skip_verify, &[b"http/1.1"]).await?;
        builder = builder.use_preconfigured_tls(tls);
        if d.url.starts_with("https:") && !d.tls_server_name.is_empty() {
            // SNI and certificate name come from the URL's host, so ask for
            // the server name and pin it to the URL's real address; the
            // Host header keeps the original authority.
            let (sni_url, addr, authority) = with_server_name(&d.url, &d.tls_server_name).await?;
            builder = builder.resolve(&d.tls_server_name, addr);
            if !headers.contains_key(reqwest::header::HOST) {
                if let Ok(v) = HeaderValue::from_str(&authority) {
                    headers.insert(reqwest::header::HOST, v);
                }
            }
            url = sni_url;
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(HttpProbe {
            client,
            url,
            display_url: d.url.clone(),
            method,
            headers,
            body: d.body.clone(),
            max_output,
        })
    }
}

/// `url` with its host replaced by `server_name`, the address the original
/// host resolves to, and the original `host[:port]`.
async fn with_server_name(
    url: &str,
    server_name: &str,
) -> Result<(String, std::net::SocketAddr, String), String> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("URL {url:?} has no host"))?
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {host}: no addresses"))?;
    parsed
        .set_host(Some(server_name))
        .map_err(|e| format!("invalid TLSServerName {server_name:?}: {e}"))?;
    Ok((parsed.to_string(), addr, authority))
}

/// The status an HTTP check reports for a response code.
pub fn status_for(code: u16) -> HealthStatus {
    match code {
        200..=299 => HealthStatus::Passing,
        429 => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    }
}

impl Probe for HttpProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        let req = self
            .client
            .request(self.method.clone(), &self.url)
            .headers(self.headers.clone())
            .body(self.body.clone());
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return (HealthStatus::Critical, error_chain(&e)),
        };
        let mut body = Vec::new();
        loop {
            if body.len() >= self.max_output {
                break;
            }
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    return (HealthStatus::Critical, error_chain(&e));
                }
            }
        }
        body.truncate(self.max_output);
        let code = resp.status();
        let status_line = match code.canonical_reason() {
            Some(reason) => format!("{} {reason}", code.as_u16()),
            None => code.as_u16().to_string(),
        };
        let output = format!(
            "HTTP {} {}: {} Output: {}",
            self.method,
            self.display_url,
            status_line,
            String::from_utf8_lossy(&body)
        );
        (status_for(code.as_u16()), output)
    }
}

/// reqwest's error with its causes (`error sending request ...: connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_map_to_statuses() {
        assert_eq!(status_for(200), HealthStatus::Passing);
        assert_eq!(status_for(204), HealthStatus::Passing);
        assert_eq!(status_for(429), HealthStatus::Warning);
        assert_eq!(status_for(301), HealthStatus::Critical);
        assert_eq!(status_for(500), HealthStatus::Critical);
        assert_eq!(status_for(404), HealthStatus::Critical);
    }
}
