//! The web UI's static files, served under `ui_config.content_path`
//! (`/ui/`) as Consul's `agent/uiserver` serves its own.
//!
//! The files are those under `ui/` at the repository root, embedded at
//! compile time; `-ui-dir` serves a directory instead, read on every request
//! so a front-end change shows on reload. Either way the same rules hold:
//! a path naming a file gets that file with its content type, and any other
//! path under the content path gets `index.html` with 200, so a deep link
//! into the single-page app (`/ui/dc1/services/web`) loads the app, as
//! Consul's UI server falls back to its index. `index.html` is sent with
//! `{{CAIRN_UI_CONFIG}}` replaced by the settings the app needs, the way
//! Consul fills its index template per agent.
//!
//! A request path can only name a file inside the asset set: it is decoded,
//! and a `.`/`..`/empty segment, a backslash or a NUL makes it name no file
//! (so it gets the index); a file from `-ui-dir` is also canonicalised and
//! must still lie under the canonical directory, which a symlink pointing
//! out of it does not.

use super::wire::{go_html_escape, percent_decode, ApiError};
use crate::config::Config;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use include_dir::{include_dir, Dir};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Every file under `ui/`, whatever its name (`build.rs` rebuilds the crate
/// when one is added).
static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui");

/// What the index's script block is replaced with.
const CONFIG_MARKER: &str = "{{CAIRN_UI_CONFIG}}";
/// What the index's asset and link URLs start with: replaced by the
/// content path, so `-ui-content-path=/consul/` loads its files from there.
const BASE_MARKER: &str = "{{CAIRN_CONTENT_PATH}}";
const INDEX: &str = "index.html";

/// The policy the front end is written to: nothing inline runs, nothing is
/// framed, nothing is fetched from elsewhere.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// Methods the UI answers; anything else is refused as the API's routes
/// refuse a method they do not take.
const ALLOW: &str = "OPTIONS,GET,HEAD";

/// One file ready to send.
#[derive(Clone)]
struct Asset {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(name: &str, body: Bytes) -> Asset {
        Asset {
            content_type: content_type(name),
            etag: etag(&body),
            body,
        }
    }
}

/// Where the files come from.
enum Files {
    /// Built in, by path relative to `ui/`; `index.html` already filled in.
    Embedded(HashMap<String, Asset>),
    /// `-ui-dir`, canonicalised at startup.
    Disk(PathBuf),
}

/// The UI as this agent serves it.
pub struct Ui {
    /// `/ui/`: leading and trailing slash.
    content_path: String,
    /// HTML-safe JSON put in place of [`CONFIG_MARKER`].
    settings: String,
    files: Files,
}

impl Ui {
    /// The UI for `config`, or `None` when it is off. A `-ui-dir` that is not
    /// a readable directory is a startup error.
    pub fn new(config: &Config) -> std::io::Result<Option<Ui>> {
        if !config.ui {
            return Ok(None);
        }
        let settings = settings_json(config);
        let files = match &config.ui_dir {
            Some(dir) => {
                let root = std::fs::canonicalize(dir).map_err(|e| ui_dir_error(dir, e))?;
                if !root.is_dir() {
                    return Err(ui_dir_error(dir, "not a directory"));
                }
                Files::Disk(root)
            }
            None => Files::Embedded(embedded(&settings, &config.ui_content_path)),
        };
        Ok(Some(Ui {
            content_path: config.ui_content_path.clone(),
            settings,
            files,
        }))
    }

    /// Whether `path` is the UI's: under the content path, the content path
    /// without its slash (redirected), or `/robots.txt`, which Consul also
    /// hands to its UI server.
    pub fn handles(&self, path: &str) -> bool {
        path.starts_with(&self.content_path) || path == self.bare_path() || path == "/robots.txt"
    }

    /// `/ui` for `/ui/`.
    fn bare_path(&self) -> &str {
        self.content_path.trim_end_matches('/')
    }

    /// Answers a request for a path [`Ui::handles`].
    pub async fn respond(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
        query: Option<&str>,
    ) -> Response {
        let mut resp = if path == self.bare_path() {
            // Go's ServeMux: a subtree pattern's path without its slash is
            // redirected to it, the query kept.
            let mut target = self.content_path.clone();
            if let Some(q) = query.filter(|q| !q.is_empty()) {
                target.push('?');
                target.push_str(q);
            }
            redirect(&target)
        } else if *method == Method::OPTIONS {
            let mut r = Response::new(Body::empty());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            r
        } else if *method != Method::GET && *method != Method::HEAD {
            ApiError::MethodNotAllowed {
                method: method.to_string(),
                allow: ALLOW.into(),
            }
            .into_response()
        } else {
            let rest = path
                .strip_prefix(&self.content_path)
                .or_else(|| path.strip_prefix('/'))
                .unwrap_or_default();
            match self.asset(rest).await {
                Some(asset) => send(asset, headers),
                None => not_found(),
            }
        };
        let h = resp.headers_mut();
        h.insert(
            "X-Content-Type-Options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("X-Frame-Options", HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        resp
    }

    /// The file `rest` (the raw path after the content path) names, else the
    /// index; `None` only when there is no index to send.
    async fn asset(&self, rest: &str) -> Option<Asset> {
        let name = file_name(rest);
        match &self.files {
            Files::Embedded(files) => name
                .as_deref()
                .and_then(|n| files.get(n))
                .or_else(|| files.get(INDEX))
                .cloned(),
            Files::Disk(root) => {
                if let Some(name) = name.as_deref() {
                    if let Some(asset) = self.read_disk(root, name).await {
                        return Some(asset);
                    }
                }
                self.read_disk(root, INDEX).await
            }
        }
    }

    /// A file of the `-ui-dir`, if `name` resolves to one inside it.
    async fn read_disk(&self, root: &Path, name: &str) -> Option<Asset> {
        let path = tokio::fs::canonicalize(root.join(name)).await.ok()?;
        if !path.starts_with(root) || !tokio::fs::metadata(&path).await.ok()?.is_file() {
            return None;
        }
        let body = tokio::fs::read(&path).await.ok()?;
        let body = if name == INDEX {
            fill_index(&body, &self.settings, &self.content_path)
        } else {
            Bytes::from(body)
        };
        Some(Asset::new(name, body))
    }
}

fn ui_dir_error(dir: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("ui_config.dir {}: {e}", dir.display()))
}

/// The built-in files by relative path, the index filled in once.
fn embedded(settings: &str, content_path: &str) -> HashMap<String, Asset> {
    let mut out = HashMap::new();
    let mut dirs = vec![&EMBEDDED];
    while let Some(dir) = dirs.pop() {
        for entry in dir.entries() {
            match entry {
                include_dir::DirEntry::Dir(d) => dirs.push(d),
                include_dir::DirEntry::File(f) => {
                    // Paths are relative to ui/ and use `/` on every platform
                    // the agent is built for.
                    let Some(name) = f.path().to_str() else {
                        continue;
                    };
                    let body = if name == INDEX {
                        fill_index(f.contents(), settings, content_path)
                    } else {
                        Bytes::from_static(f.contents())
                    };
                    out.insert(name.to_string(), Asset::new(name, body));
                }
            }
        }
    }
    out
}

/// The settings Consul's UI reads from its index (`ContentPath`,
/// `ACLsEnabled`, `LocalDatacenter`), plus the agent's version, as JSON safe
/// inside a `<script>` block: `<`, `>` and `&` are escaped as Go escapes
/// them, so no value can close the block.
fn settings_json(config: &Config) -> String {
    let value = serde_json::json!({
        "ContentPath": config.ui_content_path,
        "ACLsEnabled": config.acl.enabled,
        "LocalDatacenter": config.datacenter,
        "Version": crate::agent::VERSION,
    });
    let escaped = go_html_escape(value.to_string().into_bytes());
    String::from_utf8(escaped).unwrap_or_default()
}

fn fill_index(raw: &[u8], settings: &str, content_path: &str) -> Bytes {
    let text = String::from_utf8_lossy(raw);
    // An attribute value: HTML's escapes, as Go's html/template writes them.
    let base = content_path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;");
    Bytes::from(
        text.replace(CONFIG_MARKER, settings)
            .replace(BASE_MARKER, &base),
    )
}

/// The asset name a raw request path (after the content path) names, or
/// `None` when it cannot name a file: a directory (empty or trailing
/// segment), `.` or `..` anywhere, a backslash or NUL. `%2e%2e` and `%2f`
/// are decoded before the check, so encoding does not get past it.
fn file_name(rest: &str) -> Option<String> {
    if rest.is_empty() {
        return Some(INDEX.into());
    }
    let decoded = percent_decode(rest, false);
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    if decoded
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    Some(decoded)
}

/// The content type Go's `mime.TypeByExtension` gives (Consul's file server
/// uses it), for the file types a web UI ships.
fn content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/vnd.microsoft.icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "text/xml; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A strong validator from the content: it changes when the bytes do.
fn etag(body: &[u8]) -> HeaderValue {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    let tag = format!("\"{:016x}-{:x}\"", h.finish(), body.len());
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The file, or 304 when the client's `If-None-Match` already has it.
/// `no-cache` makes browsers revalidate every load, so a new build is
/// picked up at once while an unchanged one costs a 304.
fn send(asset: Asset, req: &HeaderMap) -> Response {
    let fresh = req
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == asset.etag.to_str().unwrap_or_default()
        });
    let mut resp = if fresh {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(asset.body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, asset.etag);
    resp
}

/// `http.Redirect` with 301, as Go's ServeMux and Consul's `/` send it.
pub fn redirect(target: &str) -> Response {
    let mut r = Response::new(Body::from(format!(
        "<a href=\"{}\">Moved Permanently</a>.\n\n",
        html_escape(target)
    )));
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(target) {
        h.insert(header::LOCATION, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// A `-ui-dir` without an index: Go's `http.NotFound`.
fn not_found() -> Response {
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_name_a_file() {
        assert_eq!(file_name("").as_deref(), Some("index.html"));
        assert_eq!(file_name("app.js").as_deref(), Some("app.js"));
        assert_eq!(file_name("css/site.css").as_deref(), Some("css/site.css"));
        assert_eq!(file_name("a%20b.js").as_deref(), Some("a b.js"));
        for bad in [
            "../Cargo.toml",
            "%2e%2e/Cargo.toml",
            "%2E%2E%2fCargo.toml",
            "a/../../x",
            "./x",
            "dc1/services/",
            "a//b",
            "..%5cCargo.toml",
            "x%00.js",
        ] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_are_gos() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x/Site.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("logo.svg"), "image/svg+xml");
        assert_eq!(content_type("favicon.ico"), "image/vnd.microsoft.icon");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn settings_cannot_close_the_script_block() {
        let config = Config {
            datacenter: "dc1".into(),
            ui_content_path: "/</script>/".into(),
            ..Config::default()
        };
        let json = settings_json(&config);
        assert!(!json.contains('<'), "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ContentPath"], "/</script>/");
        assert_eq!(v["LocalDatacenter"], "dc1");
        assert_eq!(v["ACLsEnabled"], false);
    }

    #[test]
    fn the_built_in_set_has_a_filled_index() {
        let files = embedded("{\"LocalDatacenter\":\"dc9\"}", "/a\"<b/");
        let index = files.get(INDEX).expect("ui/index.html is embedded");
        let text = std::str::from_utf8(&index.body).unwrap();
        assert!(!text.contains(CONFIG_MARKER) && !text.contains(BASE_MARKER));
        assert!(text.contains("\"dc9\""));
        assert!(
            text.contains(r#"src="/a&#34;&lt;b/app.js""#),
            "the content path is escaped inside attributes: {text}"
        );
        assert_eq!(index.content_type, "text/html; charset=utf-8");
    }
}
