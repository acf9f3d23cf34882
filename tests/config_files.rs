//! Services and checks defined in config files, against the real binary:
//! registered at start (agent endpoints and DNS), brought in line with the
//! edited files by each way of reloading (HTTP, `cairn reload`, SIGHUP)
//! without touching what was registered over HTTP, a broken file refused
//! at reload with the old configuration kept, and `cairn validate`.

mod common;

use common::{eventually, TestAgent, BIN};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SERVICES_V1: &str = r#"
service {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["v1"]
  meta { version = "1" }
  check {
    ttl    = "30s"
    status = "passing"
  }
}

service {
  name = "db"
  port = 5432
}
"#;

const SERVICES_V2: &str = r#"
service {
  name = "web"
  id   = "web-1"
  port = 8081
  tags = ["v2"]
  meta { version = "2" }
  check {
    ttl    = "30s"
    status = "passing"
  }
}

services {
  name = "cache"
  port = 6379
}
"#;

const CHECKS: &str =
    r#"{"check": {"id": "mem", "name": "Memory", "ttl": "1m", "status": "passing"}}"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn start(ip: &str) -> (TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "services.hcl", SERVICES_V1);
    write(dir.path(), "checks.json", CHECKS);
    let config_dir = format!("-config-dir={}", dir.path().display());
    let mut a = TestAgent::unstarted(ip, &[&config_dir]);
    a.start();
    (a, dir)
}

fn services(a: &TestAgent) -> Value {
    a.get_ok("/v1/agent/services").json()
}

fn checks(a: &TestAgent) -> Value {
    a.get_ok("/v1/agent/checks").json()
}

fn srv(a: &TestAgent, name: &str) -> String {
    a.dig(&[&format!("{name}.service.consul"), "SRV", "+short"])
}

/// How a test asks the agent to reload; returns what it reported.
type Reload = fn(&TestAgent) -> Result<(), String>;

fn reload_http(a: &TestAgent) -> Result<(), String> {
    let r = a
        .request("PUT", "/v1/agent/reload", Some(b""), &[])
        .map_err(|e| e.to_string())?;
    match r.status {
        200 => Ok(()),
        code => Err(format!("{code} {}", r.body)),
    }
}

fn reload_cli(a: &TestAgent) -> Result<(), String> {
    let out = Command::new(BIN)
        .args(["reload", &format!("-http-addr={}:{}", a.ip, a.ports.http)])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if out.status.success() {
        assert_eq!(stdout.trim(), "Configuration reload triggered");
        Ok(())
    } else {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        Err(stderr)
    }
}

/// SIGHUP gives no answer: the outcome is in the log.
fn reload_sighup(a: &TestAgent) -> Result<(), String> {
    const DONE: &str = "configuration reloaded";
    const FAILED: &str = "Failed to reload configs";
    let count = |log: &str| (log.matches(DONE).count(), log.matches(FAILED).count());
    let before = count(&a.log_text());
    let pid = a.child.as_ref().expect("running").id() as i32;
    // SAFETY: signalling the agent process this test started.
    unsafe {
        libc::kill(pid, libc::SIGHUP);
    }
    let mut log = String::new();
    let answered = eventually(Duration::from_secs(10), || {
        log = a.log_text();
        count(&log) != before
    });
    assert!(answered, "no reload in the log:\n{log}");
    if count(&log).1 > before.1 {
        Err(log)
    } else {
        Ok(())
    }
}

fn reload_applies_exactly_what_changed(ip: &str, reload: Reload) {
    let (a, dir) = start(ip);

    // At start: both file services, the service check and the stand-alone
    // check, in the agent and (the passing ones) in DNS.
    let s = services(&a);
    assert_eq!(s["web-1"]["Port"], 8080, "{s}");
    assert_eq!(s["web-1"]["Tags"], serde_json::json!(["v1"]));
    assert_eq!(s["db"]["Service"], "db");
    let c = checks(&a);
    assert_eq!(c["service:web-1"]["Status"], "passing", "{c}");
    assert_eq!(c["mem"]["Name"], "Memory");
    assert!(
        eventually(Duration::from_secs(10), || srv(&a, "web")
            .contains(" 8080 ")
            && srv(&a, "db").contains(" 5432 ")),
        "DNS: {} / {}",
        srv(&a, "web"),
        srv(&a, "db")
    );

    // A service registered over HTTP is not the files' to remove.
    let r = a.put(
        "/v1/agent/service/register",
        r#"{"Name":"api","Port":9000}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Change web, remove db and the check file, add cache.
    write(dir.path(), "services.hcl", SERVICES_V2);
    std::fs::remove_file(dir.path().join("checks.json")).unwrap();
    reload(&a).expect("reload");

    let s = services(&a);
    assert_eq!(s["web-1"]["Port"], 8081, "{s}");
    assert_eq!(s["web-1"]["Tags"], serde_json::json!(["v2"]));
    assert_eq!(s["web-1"]["Meta"]["version"], "2");
    assert!(s.get("db").is_none(), "db removed: {s}");
    assert_eq!(s["cache"]["Port"], 6379);
    assert_eq!(s["api"]["Port"], 9000, "the HTTP service survives");
    let c = checks(&a);
    assert!(c.get("mem").is_none(), "mem removed: {c}");
    assert_eq!(
        c["service:web-1"]["Status"], "passing",
        "a kept check keeps its status"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            srv(&a, "web").contains(" 8081 ")
                && srv(&a, "db").trim().is_empty()
                && srv(&a, "cache").contains(" 6379 ")
                && srv(&a, "api").contains(" 9000 ")
        }),
        "DNS after reload: web {:?} db {:?} cache {:?}",
        srv(&a, "web"),
        srv(&a, "db"),
        srv(&a, "cache")
    );
    let catalog = a.get_ok("/v1/catalog/service/db").json();
    assert_eq!(catalog, serde_json::json!([]), "db left the catalog");

    // A broken file refuses the whole reload: a new good file's service is
    // not added and everything registered stays.
    write(
        dir.path(),
        "extra.json",
        r#"{"service":{"name":"extra","port":1}}"#,
    );
    write(dir.path(), "zz-bad.hcl", "bogus = 1\n");
    let e = reload(&a).expect_err("a broken file is refused");
    assert!(e.contains("invalid config key bogus"), "{e}");
    assert!(e.contains("zz-bad.hcl"), "names the file: {e}");
    let s = services(&a);
    assert!(s.get("extra").is_none(), "{s}");
    assert_eq!(s["web-1"]["Port"], 8081);
    assert_eq!(s["cache"]["Port"], 6379);
    assert_eq!(s["api"]["Port"], 9000);
}

#[test]
fn http_reload_applies_exactly_what_changed() {
    reload_applies_exactly_what_changed("127.0.125.2", reload_http);
}

#[test]
fn cli_reload_applies_exactly_what_changed() {
    reload_applies_exactly_what_changed("127.0.125.3", reload_cli);
}

#[test]
fn sighup_applies_exactly_what_changed() {
    reload_applies_exactly_what_changed("127.0.125.4", reload_sighup);
}

#[test]
fn http_reload_error_is_a_500_with_the_reason() {
    let (a, dir) = start("127.0.125.5");
    write(
        dir.path(),
        "bad.json",
        r#"{"service":{"name":"x","check":{"args":["/bin/true"],"interval":"10s"}}}"#,
    );
    let r = a
        .request("PUT", "/v1/agent/reload", Some(b""), &[])
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true"),
        "{}",
        r.body
    );
    assert!(services(&a).get("x").is_none());
}

fn validate(paths: &[&Path]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("validate")
        .args(paths)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_errors_without_starting() {
    let good = tempfile::tempdir().unwrap();
    write(good.path(), "services.hcl", SERVICES_V1);
    write(good.path(), "checks.json", CHECKS);
    let (code, out, err) = validate(&[good.path()]);
    assert_eq!((code, out.trim()), (0, "Configuration is valid!"), "{err}");

    let bad = tempfile::tempdir().unwrap();
    write(bad.path(), "a.hcl", "ports {\n  htp = 1\n}\n");
    let (code, _, err) = validate(&[bad.path()]);
    assert_eq!(code, 1);
    assert!(err.contains("a.hcl: invalid config key htp"), "{err}");

    let syntax = tempfile::tempdir().unwrap();
    write(syntax.path(), "a.hcl", "service {\n  name = \n");
    let (code, _, err) = validate(&[syntax.path()]);
    assert_eq!(code, 1);
    assert!(err.contains("a.hcl: HCL syntax error at line"), "{err}");

    let script = tempfile::tempdir().unwrap();
    let with_script = r#"service {
  name = "job"
  check {
    args     = ["/bin/true"]
    interval = "10s"
  }
}
"#;
    write(script.path(), "job.hcl", with_script);
    let (code, _, err) = validate(&[script.path()]);
    assert_eq!(code, 1);
    assert!(err.contains("Scripts are disabled on this agent"), "{err}");
    write(
        script.path(),
        "allow.hcl",
        "enable_local_script_checks = true\n",
    );
    let (code, out, err) = validate(&[script.path()]);
    assert_eq!((code, out.trim()), (0, "Configuration is valid!"), "{err}");

    let (code, _, err) = validate(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("Must specify at least one config file or directory"));
}

/// What the files owned is remembered across a restart: a service taken
/// out of the files while the agent was down is gone when it comes back,
/// and one registered over HTTP is still there.
#[test]
fn a_restart_applies_what_changed_while_down() {
    let (mut a, dir) = start("127.0.125.6");
    let r = a.put(
        "/v1/agent/service/register",
        r#"{"Name":"api","Port":9000}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(services(&a)["db"]["Port"], 5432);
    a.terminate();
    write(dir.path(), "services.hcl", SERVICES_V2);
    a.start();
    let s = services(&a);
    assert!(s.get("db").is_none(), "db removed while down: {s}");
    assert_eq!(s["web-1"]["Port"], 8081, "{s}");
    assert_eq!(s["cache"]["Port"], 6379);
    assert_eq!(s["api"]["Port"], 9000, "the HTTP service survives");
    assert!(
        eventually(Duration::from_secs(10), || srv(&a, "db").trim().is_empty()
            && srv(&a, "web").contains(" 8081 ")),
        "DNS after restart: db {:?} web {:?}",
        srv(&a, "db"),
        srv(&a, "web")
    );
}
