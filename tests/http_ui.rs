//! The web UI as the agent serves it (`/`, `/ui/...`, `-ui-dir`) and the
//! `/v1/internal/ui/*` summaries it reads, over real sockets against the
//! real binary.

mod common;

use common::{TestAgent, BIN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// Status and body of a request sent byte for byte: an HTTP client library
/// would resolve `..` and `%2e%2e` before sending, which is exactly what a
/// traversal attempt must not rely on.
fn raw_get(a: &TestAgent, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect((a.ip.as_str(), a.ports.http)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        a.ip
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn assert_ui_headers(r: &common::Resp, what: &str) {
    assert_eq!(
        r.header("X-Content-Type-Options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("X-Frame-Options"), Some("DENY"), "{what}");
    assert_eq!(r.header("Content-Security-Policy"), Some(CSP), "{what}");
}

/// The embedded index, as a request for `/ui/` returns it.
fn assert_is_index(r: &common::Resp, dc: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/html; charset=utf-8"),
        "{what}"
    );
    assert!(
        !r.body.contains("{{CAIRN_UI_CONFIG}}"),
        "{what}: marker left"
    );
    let start = r
        .body
        .find(r#"id="ui-config">"#)
        .unwrap_or_else(|| panic!("{what}: no config block: {}", r.body))
        + r#"id="ui-config">"#.len();
    let end = start + r.body[start..].find("</script>").expect("block ends");
    let config: Value = serde_json::from_str(&r.body[start..end]).expect("config is JSON");
    assert_eq!(config["LocalDatacenter"], dc, "{what}");
    assert_eq!(config["ContentPath"], "/ui/", "{what}");
    assert_eq!(config["ACLsEnabled"], false, "{what}");
    assert!(config["Version"].is_string(), "{what}");
}

/// A JavaScript file the front end ships, by its path under `ui/`.
fn shipped_js() -> (String, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("ui/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".js"))
        .collect();
    names.sort();
    let name = names.into_iter().next().expect("ui/ has a .js file");
    let bytes = std::fs::read(dir.join(&name)).unwrap();
    (name, bytes)
}

#[test]
fn dev_agent_serves_the_built_in_ui() {
    let a = TestAgent::dev();

    let root = a.get_ok("/");
    assert_eq!(root.status, 301);
    assert_eq!(root.header("Location"), Some("/ui/"));
    let bare = a.get_ok("/ui?x=1");
    assert_eq!(bare.status, 301, "Go's ServeMux adds the slash");
    assert_eq!(bare.header("Location"), Some("/ui/?x=1"));

    let index = a.get_ok("/ui/");
    assert_is_index(&index, "dc1", "/ui/");
    assert_ui_headers(&index, "/ui/");
    assert_eq!(index.header("Cache-Control"), Some("no-cache"));
    for deep in ["/ui/dc1/services/web", "/ui/dc1/kv/a/b/", "/ui/no-such.js"] {
        let r = a.get_ok(deep);
        assert_is_index(&r, "dc1", deep);
        assert_eq!(r.body, index.body, "{deep} loads the app");
    }

    let (name, bytes) = shipped_js();
    let path = format!("/ui/{name}");
    let js = a.get_ok(&path);
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(js.bytes, bytes, "{path} is the file under ui/");
    assert_eq!(js.header("Cache-Control"), Some("no-cache"));
    assert_ui_headers(&js, &path);
    let etag = js.header("ETag").expect("ETag").to_string();
    assert_ne!(Some(etag.as_str()), index.header("ETag"));

    let again = a
        .request("GET", &path, None, &[("If-None-Match", &etag)])
        .unwrap();
    assert_eq!(again.status, 304, "revalidation with the ETag");
    assert!(again.bytes.is_empty());

    let head = a.request("HEAD", &path, None, &[]).unwrap();
    assert_eq!(head.status, 200);
    assert!(head.bytes.is_empty(), "HEAD has no body");
    assert_eq!(
        head.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(head.header("ETag"), Some(etag.as_str()));

    let post = a.request("POST", "/ui/", Some(b"x"), &[]).unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("OPTIONS,GET,HEAD"));

    // The API is untouched by the UI.
    assert_eq!(a.get_ok("/v1/catalog/datacenters").json(), json!(["dc1"]));
}

/// `-ui-content-path` moves the whole app: the index's script, style and
/// link URLs point under the new path, and the files are served there.
#[test]
fn a_custom_content_path_moves_the_app_and_its_assets() {
    let a = TestAgent::dev_with(&["-ui-content-path=/consul/"]);
    let root = a.get_ok("/");
    assert_eq!(root.status, 301);
    assert_eq!(root.header("Location"), Some("/consul/"));
    let index = a.get_ok("/consul/dc1/services");
    assert_eq!(index.status, 200);
    assert!(
        index.body.contains(r#"src="/consul/app.js""#),
        "the module is loaded from the content path: {}",
        index.body
    );
    assert!(
        !index.body.contains("\"/ui/") && !index.body.contains("{{"),
        "no URL is left at /ui/ and no marker is left unfilled: {}",
        index.body
    );
    let js = a.get_ok("/consul/app.js");
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
}

#[test]
fn traversal_never_leaves_the_built_in_files() {
    let a = TestAgent::dev();
    let (_, index) = raw_get(&a, "/ui/");
    for path in [
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/ui/%2E%2E%2FCargo.toml",
        "/ui/..%2fCargo.toml",
        "/ui/pages/..%2f..%2fCargo.toml",
        "/ui/..%5cCargo.toml",
        "/ui/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/ui//etc/passwd",
    ] {
        let (status, body) = raw_get(&a, path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, index, "{path} gets the index, not a file");
    }
}

#[test]
fn without_ui_the_agent_says_so() {
    let a = TestAgent::dev_with(&["-ui=false"]);
    let root = a.get_ok("/");
    assert_eq!(root.status, 200);
    assert_eq!(
        root.body,
        "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart."
    );
    for path in ["/ui/", "/ui/dc1/services", "/ui/index.html"] {
        assert_eq!(a.get_ok(path).status, 404, "{path}");
    }
    // The summaries are API endpoints: there with the UI off, as in Consul.
    assert_eq!(a.get_ok("/v1/internal/ui/services").status, 200);
}

/// A UI directory: an index, a script, and a file beside (outside) it
/// that a symlink inside points at.
fn ui_dir(tmp: &Path) -> PathBuf {
    let site = tmp.join("site");
    std::fs::create_dir_all(site.join("js")).unwrap();
    std::fs::write(
        site.join("index.html"),
        r#"<html><script type="application/json" id="ui-config">{{CAIRN_UI_CONFIG}}</script>from disk</html>"#,
    )
    .unwrap();
    std::fs::write(site.join("js/app.js"), "export const v = 1;\n").unwrap();
    std::fs::write(tmp.join("secret.txt"), "top secret\n").unwrap();
    std::os::unix::fs::symlink(tmp.join("secret.txt"), site.join("leak.txt")).unwrap();
    site
}

#[test]
fn ui_dir_serves_from_disk_and_stays_inside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let site = ui_dir(tmp.path());
    let dir_flag = format!("-ui-dir={}", site.display());
    // -ui-dir alone turns the UI on.
    let a = TestAgent::dev_with(&["-ui=false", &dir_flag]);

    let index = a.get_ok("/ui/dc1/nodes");
    assert!(index.body.contains("from disk"), "{}", index.body);
    assert!(index.body.contains(r#""LocalDatacenter":"dc1""#));
    assert_ui_headers(&index, "disk index");

    let js = a.get_ok("/ui/js/app.js");
    assert_eq!(js.body, "export const v = 1;\n");
    assert_eq!(
        js.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    // Read per request: an edit shows on the next load, with a new ETag.
    std::fs::write(site.join("js/app.js"), "export const v = 2;\n").unwrap();
    let edited = a.get_ok("/ui/js/app.js");
    assert_eq!(edited.body, "export const v = 2;\n");
    assert_ne!(edited.header("ETag"), js.header("ETag"));

    for path in [
        "/ui/leak.txt",
        "/ui/../secret.txt",
        "/ui/%2e%2e/secret.txt",
        "/ui/%2e%2e%2fsecret.txt",
        "/ui/js/..%2f..%2fsecret.txt",
        "/ui/js/%2e%2e/%2e%2e/secret.txt",
    ] {
        let (status, body) = raw_get(&a, path);
        assert!(!body.contains("top secret"), "{path} escaped: {body}");
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("from disk"), "{path} gets the index");
    }
}

#[test]
fn a_missing_ui_dir_is_a_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "agent",
            "-dev",
            &format!("-ui-dir={}", tmp.path().join("nope").display()),
            &format!("-http-port={}", common::free_port()),
            &format!("-dns-port={}", common::free_port()),
            &format!("-server-port={}", common::free_port()),
            &format!("-serf-lan-port={}", common::free_port()),
            &format!("-serf-wan-port={}", common::free_port()),
            "-client=127.0.0.1",
            "-bind=127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ui_config.dir"), "{text}");
}

fn register(a: &TestAgent, body: Value) {
    let r = a.put("/v1/catalog/register", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
}

/// ext1 hosts web (twice) with a critical node check; ext2 hosts web once
/// (from k8s) with a passing node check, and an untagged db.
fn small_catalog(a: &TestAgent) {
    register(
        a,
        json!({"Node": "ext1", "Address": "10.0.0.1",
               "Check": {"CheckID": "ext1-alive", "Name": "alive", "Status": "critical"}}),
    );
    register(
        a,
        json!({"Node": "ext1", "Address": "10.0.0.1",
               "Service": {"ID": "web-a", "Service": "web", "Tags": ["b", "a"], "Port": 80},
               "Check": {"CheckID": "web-a-http", "Name": "http", "ServiceID": "web-a", "Status": "passing"}}),
    );
    register(
        a,
        json!({"Node": "ext1", "Address": "10.0.0.1",
               "Service": {"ID": "web-b", "Service": "web", "Tags": ["c", "b"], "Port": 81},
               "Check": {"CheckID": "web-b-http", "Name": "http", "ServiceID": "web-b", "Status": "warning"}}),
    );
    register(
        a,
        json!({"Node": "ext2", "Address": "10.0.0.2",
               "Check": {"CheckID": "ext2-alive", "Name": "alive", "Status": "passing"}}),
    );
    register(
        a,
        json!({"Node": "ext2", "Address": "10.0.0.2",
               "Service": {"ID": "web", "Service": "web", "Port": 80,
                           "Meta": {"external-source": "kubernetes"}},
               "Check": {"CheckID": "web-http", "Name": "http", "ServiceID": "web", "Status": "passing"}}),
    );
    register(
        a,
        json!({"Node": "ext2", "Address": "10.0.0.2",
               "Service": {"ID": "db", "Service": "db", "Port": 5432},
               "Check": {"CheckID": "db-tcp", "Name": "tcp", "ServiceID": "db", "Status": "critical"}}),
    );
}

#[test]
fn internal_services_count_as_consul_does() {
    let a = TestAgent::dev();
    small_catalog(&a);
    let r = a.get_ok("/v1/internal/ui/services");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.index() > 0, "X-Consul-Index is set");
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("leader"));
    let rows = r.json();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["consul", "db", "web"], "sorted, one row per name");

    let web = &rows[2];
    assert_eq!(web["Datacenter"], "dc1");
    assert_eq!(web["InstanceCount"], 3);
    assert_eq!(web["Nodes"], json!(["ext1", "ext2"]));
    assert_eq!(web["Tags"], json!(["a", "b", "c"]));
    assert_eq!(web["ExternalSources"], json!(["kubernetes"]));
    // ext1-alive once for two instances (critical), ext2-alive, and the
    // three instance checks (two passing, one warning).
    assert_eq!(web["ChecksPassing"], 3);
    assert_eq!(web["ChecksWarning"], 1);
    assert_eq!(web["ChecksCritical"], 1);
    assert_eq!(web["GatewayConfig"], json!({}));
    assert_eq!(web["ConnectedWithProxy"], false);
    assert!(
        web.get("Kind").is_none(),
        "Kind is omitted for typical services"
    );

    let db = &rows[1];
    assert_eq!(db["Tags"], Value::Null, "no tags is Go's nil slice");
    assert_eq!(db["ExternalSources"], Value::Null);
    assert_eq!(db["InstanceCount"], 1);
    assert_eq!(db["ChecksPassing"], 1, "ext2's node check");
    assert_eq!(db["ChecksCritical"], 1);

    // The agent's own consul service carries its serfHealth node check.
    assert_eq!(rows[0]["ChecksPassing"], 1);
    assert_eq!(rows[0]["Nodes"], json!(["node1"]));

    assert_eq!(a.get_ok("/v1/internal/ui/services?stale").status, 200);
    let other = a.get_ok("/v1/internal/ui/services?dc=elsewhere");
    assert_eq!(other.status, 500);
    assert_eq!(other.body, "No path to datacenter");
    let both = a.get_ok("/v1/internal/ui/services?stale&consistent");
    assert_eq!(both.status, 400);
}

#[test]
fn internal_nodes_and_overview() {
    let a = TestAgent::dev();
    small_catalog(&a);

    let nodes = a.get_ok("/v1/internal/ui/nodes");
    assert!(nodes.index() > 0);
    let list = nodes.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ext1", "ext2", "node1"]);
    let ext1 = &list[0];
    assert_eq!(ext1["Address"], "10.0.0.1");
    let services: Vec<&str> = ext1["Services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ID"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["web-a", "web-b"]);
    assert_eq!(ext1["Checks"].as_array().unwrap().len(), 3);
    assert!(ext1["Meta"].is_object() && ext1["TaggedAddresses"].is_object());

    let one = a.get_ok("/v1/internal/ui/node/ext2");
    assert_eq!(one.status, 200);
    assert!(one.index() > 0);
    let ext2 = one.json();
    assert_eq!(ext2["Node"], "ext2");
    assert_eq!(ext2["Services"].as_array().unwrap().len(), 2);
    let check_ids: Vec<&str> = ext2["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap())
        .collect();
    assert_eq!(check_ids, ["db-tcp", "ext2-alive", "web-http"]);
    assert_eq!(ext2["Checks"][0]["Status"], "critical");

    let missing = a.get_ok("/v1/internal/ui/node/");
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body, "Missing node name");
    let unknown = a.get_ok("/v1/internal/ui/node/nope");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, "", "Consul's bare 404");

    let overview = a.get_ok("/v1/internal/ui/catalog-overview").json();
    // node1 and ext2 pass their node checks, ext1 is critical.
    assert_eq!(
        overview["Nodes"],
        json!([{"Total": 3, "Passing": 2, "Warning": 0, "Critical": 1}])
    );
    let web = overview["Services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "web")
        .unwrap();
    assert_eq!(
        web,
        &json!({"Name": "web", "Total": 3, "Passing": 2, "Warning": 1, "Critical": 0})
    );
    let http = overview["Checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "http")
        .unwrap();
    assert_eq!(http["Total"], 3);
}

#[test]
fn services_summary_blocks_until_the_catalog_changes() {
    let a = TestAgent::dev();
    small_catalog(&a);
    let first = a.get_ok("/v1/internal/ui/services");
    let index = first.index();

    // Nothing changes: the query waits out ?wait and returns the same index.
    let started = Instant::now();
    let idle = a.get_ok(&format!("/v1/internal/ui/services?index={index}&wait=1s"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(idle.index(), index);

    let url = format!(
        "{}/v1/internal/ui/services?index={index}&wait=20s",
        a.base()
    );
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = common::http_request("GET", &url, None, &[]).unwrap();
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    register(
        &a,
        json!({"Node": "ext1", "Address": "10.0.0.1",
               "Service": {"ID": "cache", "Service": "cache", "Port": 6379}}),
    );
    let (r, took) = waiter.join().unwrap();
    assert!(
        took < Duration::from_secs(10),
        "woken by the change: {took:?}"
    );
    assert!(r.index() > index);
    let names: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"cache".to_string()), "{names:?}");
}
