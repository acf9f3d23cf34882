//! The web UI in a real browser: headless Chromium, driven through
//! chromedriver, against the real `cairn` binary. Each test asserts what an
//! operator would see on the page, and that it changes by itself (blocking
//! queries) when the catalog, health or KV store changes behind it.
//!
//! The DOM hooks (`data-service`, `#conn`, `#kv-message`, ...) are the ones
//! the UI promises its tests; timings are measured in `benches/ui.sh`, not
//! asserted here.
//!
//! `CAIRN_UI_SCREENSHOTS=docs/ui cargo test --test ui screenshots` also
//! writes a PNG of every page into that directory.

mod common;

use common::browser::{Browser, Options, PRESENCE};
use common::TestAgent;
use serde_json::{json, Value};
use std::time::Duration;

/// Agents for these tests listen on this loopback address.
const IP: &str = "127.0.123.1";

fn agent() -> TestAgent {
    TestAgent::dev_at(IP, &[])
}

fn ui(a: &TestAgent, path: &str) -> String {
    format!("{}/ui/{}", a.base(), path)
}

/// `PUT /v1/agent/service/register` with `body`, which must succeed.
fn register(a: &TestAgent, body: Value) {
    let r = a.put("/v1/agent/service/register", &body.to_string());
    assert_eq!(r.status, 200, "register {body}: {}", r.body);
}

fn deregister(a: &TestAgent, id: &str) {
    let r = a.put(&format!("/v1/agent/service/deregister/{id}"), "");
    assert_eq!(r.status, 200, "deregister {id}: {}", r.body);
}

/// A TTL check's status through the agent API (`pass`, `warn`, `fail`).
fn ttl(a: &TestAgent, status: &str, check: &str, note: &str) {
    let note = encode(note);
    let r = a.put(&format!("/v1/agent/check/{status}/{check}?note={note}"), "");
    assert_eq!(r.status, 200, "{status} {check}: {}", r.body);
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The raw value of a KV key over HTTP, or `None` on 404.
fn kv_raw(a: &TestAgent, key: &str) -> Option<String> {
    let r = a.get_ok(&format!("/v1/kv/{key}?raw"));
    match r.status {
        200 => Some(r.body),
        404 => None,
        s => panic!("GET /v1/kv/{key}: {s} {}", r.body),
    }
}

fn kv_put(a: &TestAgent, key: &str, value: &str) {
    let r = a.put(&format!("/v1/kv/{key}"), value);
    assert_eq!(r.status, 200, "PUT /v1/kv/{key}: {}", r.body);
}

/// Marks the current document so a later check can tell it was not reloaded.
fn mark_document(b: &Browser) {
    b.js("window.__cairnTestMark = 42;", vec![]);
}

fn assert_not_reloaded(b: &Browser) {
    assert_eq!(
        b.js("return window.__cairnTestMark || null;", vec![]),
        json!(42),
        "the page was reloaded (or navigated away), it should update in place"
    );
}

fn row(service: &str) -> String {
    format!("[data-service=\"{service}\"]")
}

fn field(scope: &str, name: &str) -> String {
    format!("{scope} [data-field=\"{name}\"]")
}

#[test]
fn services_appear_and_disappear_without_reload() {
    let a = agent();
    let b = Browser::start();
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    assert_eq!(b.title(), "Services - dc1 - cairn");
    mark_document(&b);

    for (id, port) in [("web-1", 8080), ("web-2", 8081)] {
        register(
            &a,
            json!({"ID": id, "Name": "web", "Port": port, "Tags": ["v1", "http"]}),
        );
    }
    register(
        &a,
        json!({"ID": "db", "Name": "db", "Port": 5432, "Tags": ["primary"]}),
    );

    b.wait_present(&row("web"));
    b.wait_text(&field(&row("web"), "instances"), "2");
    b.wait_present(&row("db"));
    b.wait_text(&field(&row("db"), "instances"), "1");
    let tags = b.text(&field(&row("web"), "tags")).unwrap_or_default();
    assert!(
        tags.contains("v1") && tags.contains("http"),
        "web's tags should show v1 and http, got {tags:?}"
    );
    let tags = b.text(&field(&row("db"), "tags")).unwrap_or_default();
    assert!(tags.contains("primary"), "db's tags: {tags:?}");
    assert_eq!(
        b.attr(&format!("{} a", row("web")), "href").as_deref(),
        Some("/ui/dc1/services/web"),
        "a service row links to its page"
    );

    // A stopped instance leaves the page at once, not at the next reload.
    deregister(&a, "web-2");
    b.wait_text(&field(&row("web"), "instances"), "1");
    deregister(&a, "db");
    b.wait_absent(&row("db"));
    assert!(b.exists(&row("web")), "web is still registered");
    assert_not_reloaded(&b);
}

#[test]
fn a_failing_check_changes_the_counts_and_the_status_without_reload() {
    let a = agent();
    register(
        &a,
        json!({
            "ID": "api", "Name": "api", "Port": 9000,
            "Checks": [{"CheckID": "api-ttl", "Name": "api heartbeat", "TTL": "60s"}]
        }),
    );
    ttl(&a, "pass", "api-ttl", "all good");

    let b = Browser::start();
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    mark_document(&b);
    b.wait_text(&field(&row("api"), "critical"), "0");
    // The service's own check and the node's serfHealth, counted once.
    b.wait_text(&field(&row("api"), "passing"), "2");

    ttl(&a, "fail", "api-ttl", "connection refused");
    b.wait_text(&field(&row("api"), "critical"), "1");
    b.wait_text(&field(&row("api"), "passing"), "1");
    assert_not_reloaded(&b);

    b.click(&format!("{} a", row("api")));
    b.wait_page("service");
    assert!(b.url().ends_with("/ui/dc1/services/api"), "{}", b.url());
    let check = "[data-check=\"node1/api-ttl\"]";
    b.wait_text(&field(check, "status"), "critical");
    assert_eq!(
        b.text(&field(check, "name")).as_deref(),
        Some("api heartbeat")
    );
    let output = b.text(&field(check, "output")).unwrap_or_default();
    assert!(output.contains("connection refused"), "output: {output:?}");
    assert_not_reloaded(&b);

    ttl(&a, "pass", "api-ttl", "recovered");
    b.wait_text(&field(check, "status"), "passing");
    b.wait_for("the new check output", PRESENCE, |b| {
        b.text(&field(check, "output"))
            .filter(|o| o.contains("recovered"))
    });
    assert_not_reloaded(&b);
}

#[test]
fn kv_create_edit_delete_through_the_editor() {
    let a = agent();
    kv_put(&a, "app/config/db", "postgres://db:5432");
    kv_put(&a, "app/config/cache", "redis://cache:6379");

    let b = Browser::start();
    b.goto(&ui(&a, "dc1/kv/"));
    b.wait_page("kv-folder");
    b.click("[data-key=\"app/\"] a");
    b.wait_present("[data-key=\"app/config/\"]");
    assert!(b.url().ends_with("/ui/dc1/kv/app/"), "{}", b.url());
    b.click("[data-key=\"app/config/\"] a");
    b.wait_present("[data-key=\"app/config/db\"]");
    assert!(b.url().ends_with("/ui/dc1/kv/app/config/"), "{}", b.url());

    // Open a key, then the back button returns to its folder.
    b.click("[data-key=\"app/config/db\"] a");
    b.wait_page("kv-edit");
    assert!(
        b.url().ends_with("/ui/dc1/kv/app/config/db/edit"),
        "{}",
        b.url()
    );
    assert_eq!(b.prop("#kv-value", "value"), json!("postgres://db:5432"));
    b.back();
    b.wait_page("kv-folder");
    assert!(b.url().ends_with("/ui/dc1/kv/app/config/"), "{}", b.url());
    b.wait_present("[data-key=\"app/config/cache\"]");

    // Create a key in this folder.
    b.click("a#kv-create");
    b.wait_page("kv-create");
    b.type_into("#kv-key", "timeout");
    b.type_into("#kv-value", "30s");
    b.click("#kv-save");
    b.wait_text("#kv-message", "Saved.");
    b.wait_for("the new key's edit page", PRESENCE, |b| {
        b.url()
            .ends_with("/ui/dc1/kv/app/config/timeout/edit")
            .then_some(())
    });
    assert_eq!(kv_raw(&a, "app/config/timeout").as_deref(), Some("30s"));

    // Edit it twice: the second save uses the index of the first.
    b.wait_page("kv-edit");
    for value in ["45s", "60s"] {
        b.js(
            "const m = document.querySelector('#kv-message'); if (m) m.textContent = '';",
            vec![],
        );
        b.clear("#kv-value");
        b.type_into("#kv-value", value);
        b.click("#kv-save");
        b.wait_text("#kv-message", "Saved.");
        assert_eq!(kv_raw(&a, "app/config/timeout").as_deref(), Some(value));
    }

    // Delete it from the editor (after the confirm() dialog).
    b.click("#kv-delete");
    b.accept_alert();
    b.wait_for("the key to be deleted", PRESENCE, |_| {
        kv_raw(&a, "app/config/timeout").is_none().then_some(())
    });
    assert_eq!(a.get_ok("/v1/kv/app/config/timeout").status, 404);

    // And one from the folder's row.
    b.goto(&ui(&a, "dc1/kv/app/config/"));
    b.wait_page("kv-folder");
    b.click("[data-key=\"app/config/cache\"] button[data-action=\"delete\"]");
    b.accept_alert();
    b.wait_absent("[data-key=\"app/config/cache\"]");
    assert_eq!(kv_raw(&a, "app/config/cache"), None);
    assert!(
        kv_raw(&a, "app/config/db").is_some(),
        "only the one key went"
    );
}

#[test]
fn a_stale_cas_edit_is_refused_and_keeps_the_text() {
    let a = agent();
    kv_put(&a, "cas/key", "original");

    let b = Browser::start();
    b.goto(&ui(&a, "dc1/kv/cas/key/edit"));
    b.wait_page("kv-edit");
    assert_eq!(b.prop("#kv-value", "value"), json!("original"));
    b.clear("#kv-value");
    b.type_into("#kv-value", "mine");

    // Someone else writes the key while the editor is open.
    kv_put(&a, "cas/key", "theirs");
    std::thread::sleep(Duration::from_millis(300));
    b.click("#kv-save");
    b.wait_text(
        "#kv-message",
        "This key was changed by someone else since you opened it. Reload to see the new value.",
    );
    assert_eq!(kv_raw(&a, "cas/key").as_deref(), Some("theirs"));
    assert_eq!(
        b.prop("#kv-value", "value"),
        json!("mine"),
        "the user's text is kept"
    );
}

#[test]
fn a_value_too_large_or_a_bad_key_shows_the_api_error_and_keeps_the_input() {
    let a = agent();
    let b = Browser::start();
    b.goto(&ui(&a, "dc1/kv/create"));
    b.wait_page("kv-create");

    // 512 KiB + 1 byte, pasted rather than typed.
    b.type_into("#kv-key", "big");
    b.js(
        "const t = document.querySelector('#kv-value'); t.value = 'x'.repeat(524289); \
         t.dispatchEvent(new Event('input', {bubbles: true}));",
        vec![],
    );
    b.click("#kv-save");
    b.wait_for("the 413 text in #kv-message", PRESENCE, |b| {
        b.text("#kv-message")
            .filter(|m| m.contains("too large, max size: 524288 bytes"))
    });
    assert_eq!(
        b.prop("#kv-value", "value").as_str().map(str::len),
        Some(524289)
    );
    assert_eq!(b.prop("#kv-key", "value"), json!("big"));
    assert_eq!(kv_raw(&a, "big"), None);

    // A key the API refuses.
    b.clear("#kv-key");
    b.type_into("#kv-key", "bad..\\key");
    b.js(
        "const t = document.querySelector('#kv-value'); t.value = 'small'; \
         t.dispatchEvent(new Event('input', {bubbles: true}));",
        vec![],
    );
    b.click("#kv-save");
    b.wait_for("the 400 text in #kv-message", PRESENCE, |b| {
        b.text("#kv-message")
            .filter(|m| m.contains("key contains path traversal sequence"))
    });
    assert_eq!(b.prop("#kv-key", "value"), json!("bad..\\key"));
    assert_eq!(b.prop("#kv-value", "value"), json!("small"));
    assert_eq!(b.attr("body", "data-page").as_deref(), Some("kv-create"));
}

#[test]
fn deep_links_filters_and_the_back_button() {
    let a = agent();
    register(
        &a,
        json!({"ID": "web", "Name": "web", "Port": 80, "Tags": ["edge"]}),
    );
    register(&a, json!({"ID": "worker", "Name": "worker", "Port": 81}));

    let b = Browser::start();
    // `/ui/` goes to the local datacenter's services.
    b.goto(&ui(&a, ""));
    b.wait_page("services");
    assert!(b.url().ends_with("/ui/dc1/services"), "{}", b.url());
    // A deep link loads the app straight onto the page.
    b.goto(&ui(&a, "dc1/services/web"));
    b.wait_page("service");
    b.wait_present("[data-instance=\"node1/web\"]");
    assert_eq!(
        b.text(&field("[data-instance=\"node1/web\"]", "address"))
            .as_deref(),
        Some("127.0.123.1:80")
    );
    assert!(b.title().contains("web"), "title: {}", b.title());

    // services -> service -> nodes, then back twice.
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    b.click(&format!("{} a", row("web")));
    b.wait_page("service");
    b.click("a#nav-nodes");
    b.wait_page("nodes");
    b.wait_present("[data-node=\"node1\"]");
    assert!(b.url().ends_with("/ui/dc1/nodes"), "{}", b.url());
    b.back();
    b.wait_page("service");
    assert!(b.url().ends_with("/ui/dc1/services/web"), "{}", b.url());
    b.wait_present("[data-instance=\"node1/web\"]");
    b.back();
    b.wait_page("services");
    assert!(b.url().ends_with("/ui/dc1/services"), "{}", b.url());

    // The filter is in the URL, so it survives a reload.
    b.type_into("#search", "WOR");
    b.wait_text("#count", "1 service");
    assert!(b.exists(&row("worker")) && !b.exists(&row("web")));
    b.wait_for("?filter= in the URL", PRESENCE, |b| {
        b.url().contains("filter=WOR").then_some(())
    });
    b.refresh();
    b.wait_page("services");
    assert_eq!(b.prop("#search", "value"), json!("WOR"));
    b.wait_text("#count", "1 service");
    // By tag too.
    b.clear("#search");
    b.type_into("#search", "edge");
    b.wait_text("#count", "1 service");
    assert!(b.exists(&row("web")) && !b.exists(&row("worker")));

    // A node's page from the nodes list.
    b.goto(&ui(&a, "dc1/nodes/node1"));
    b.wait_page("node");
    b.wait_present("[data-instance=\"node1/web\"]");
    b.wait_present("[data-check=\"node1/serfHealth\"]");
}

#[test]
fn a_long_list_keeps_few_rows_in_the_page_and_scrolls_to_the_end() {
    let a = agent();
    let names: Vec<String> = (0..400).map(|i| format!("svc-{i:03}")).collect();
    std::thread::scope(|s| {
        for chunk in names.chunks(100) {
            let a = &a;
            s.spawn(move || {
                for name in chunk {
                    let r = a.put(
                        "/v1/catalog/register",
                        &json!({
                            "Node": "bulk", "Address": "10.9.0.1",
                            "Service": {"Service": name, "Port": 80}
                        })
                        .to_string(),
                    );
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            });
        }
    });

    let b = Browser::start();
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    // 400 and the agent's own `consul`.
    b.wait_text("#count", "401 services");
    let rows = b.count("[data-service]");
    assert!(
        (1..=200).contains(&rows),
        "{rows} row elements for 401 services: long lists must be virtualized or paginated"
    );
    assert!(
        !b.exists(&row("svc-399")),
        "the last row should not be rendered yet"
    );

    // Scroll whatever scrolls the list to its end.
    b.js(
        "let s = document.querySelector('[data-service]').parentElement; \
         while (s && !(s.scrollHeight > s.clientHeight && \
                getComputedStyle(s).overflowY !== 'visible')) s = s.parentElement; \
         (s || document.scrollingElement).scrollTop = 1e9; \
         document.scrollingElement.scrollTop = 1e9;",
        vec![],
    );
    b.wait_present(&row("svc-399"));
    assert!(b.count("[data-service]") <= 200);
}

/// Markup in every field a user controls; `__pwned` is set if any of it
/// runs, and an `img[src=x]` appears if any of it is parsed as HTML.
const HOSTILE: &str = "<img src=x onerror=\"window.__pwned=1;document.title='pwned'\"><script>window.__pwned=2</script>";

#[test]
fn hostile_strings_are_shown_as_text() {
    let a = agent();
    register(
        &a,
        json!({
            "ID": "evil", "Name": "evil", "Port": 1,
            "Tags": [HOSTILE],
            "Meta": {"owner": HOSTILE},
            "Checks": [{"CheckID": "evil-ttl", "Name": HOSTILE, "TTL": "60s"}]
        }),
    );
    ttl(&a, "fail", "evil-ttl", HOSTILE);
    kv_put(&a, "evil/value", HOSTILE);

    let b = Browser::start();
    let unharmed = |b: &Browser, page: &str| {
        assert_eq!(
            b.js("return typeof window.__pwned;", vec![]),
            json!("undefined"),
            "a payload ran on the {page} page"
        );
        assert_ne!(b.title(), "pwned", "a payload ran on the {page} page");
        assert_eq!(
            b.count("img[src=\"x\"], #main script"),
            0,
            "a payload was parsed as HTML on the {page} page"
        );
    };

    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    b.wait_for("the tag shown as text", PRESENCE, |b| {
        b.text(&field(&row("evil"), "tags"))
            .filter(|t| t.contains(HOSTILE))
    });
    unharmed(&b, "services");

    b.goto(&ui(&a, "dc1/services/evil"));
    b.wait_page("service");
    let inst = "[data-instance=\"node1/evil\"]";
    b.wait_present(inst);
    for (css, what) in [
        (field(inst, "tags"), "tags"),
        (field(inst, "meta"), "meta"),
        (
            field("[data-check=\"node1/evil-ttl\"]", "name"),
            "check name",
        ),
        (
            field("[data-check=\"node1/evil-ttl\"]", "output"),
            "check output",
        ),
    ] {
        let text = b.text(&css).unwrap_or_default();
        assert!(
            text.contains(HOSTILE),
            "{what} should show the literal text, got {text:?}"
        );
    }
    unharmed(&b, "service");

    b.goto(&ui(&a, "dc1/nodes/node1"));
    b.wait_page("node");
    b.wait_present("[data-instance=\"node1/evil\"]");
    unharmed(&b, "node");

    b.goto(&ui(&a, "dc1/kv/evil/value/edit"));
    b.wait_page("kv-edit");
    assert_eq!(b.prop("#kv-value", "value"), json!(HOSTILE));
    unharmed(&b, "kv-edit");
    b.goto(&ui(&a, "dc1/kv/evil/"));
    b.wait_page("kv-folder");
    b.wait_present("[data-key=\"evil/value\"]");
    unharmed(&b, "kv-folder");
}

#[test]
fn losing_the_agent_shows_disconnected_and_recovers_by_itself() {
    let mut a = agent();
    let b = Browser::start();
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    b.wait_present(&row("consul"));
    mark_document(&b);

    a.kill9();
    b.wait_present("#conn[data-state=\"disconnected\"]");
    b.wait_text("#conn", "disconnected, retrying");
    assert!(
        b.js("const c = document.querySelector('#conn'); return !!(c.offsetWidth || c.offsetHeight);", vec![])
            .as_bool()
            .unwrap_or(false),
        "the disconnected state must be visible"
    );

    // Same ports, same data dir: the page notices by itself.
    a.start();
    b.wait_present("#conn[data-state=\"ok\"]");
    b.wait_js(
        "#conn to be hidden again",
        "(() => { const c = document.querySelector('#conn'); return c.hidden || !(c.offsetWidth || c.offsetHeight); })()",
    );
    // And the live updates resumed.
    register(&a, json!({"ID": "after", "Name": "after", "Port": 1}));
    b.wait_present(&row("after"));
    assert_not_reloaded(&b);
}

/// Every visible form control on the page with its accessible name:
/// `aria-label`, `aria-labelledby` or a `<label>` (`for=` or wrapping).
const CONTROL_LABELS: &str = "\
    const label = (e) => { \
      if (e.getAttribute('aria-label')) return e.getAttribute('aria-label').trim(); \
      const by = e.getAttribute('aria-labelledby'); \
      if (by) { const l = document.getElementById(by); if (l) return l.textContent.trim(); } \
      if (e.labels && e.labels.length) return e.labels[0].textContent.trim(); \
      return null; }; \
    return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')] \
      .map(e => [e.id || e.outerHTML.slice(0, 80), label(e)]);";

/// ACLs on with default deny: anonymous sees nothing, a token logged in on
/// the login page sees only what its policy lets it read (and is told what
/// it cannot do), and a management token manages tokens and policies from
/// the ACL pages.
#[test]
fn with_acls_on_a_token_sees_only_what_it_may_read() {
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let conf = conf_dir.path().join("acl.hcl");
    std::fs::write(
        &conf,
        r#"
acl {
  enabled        = true
  default_policy = "deny"
  tokens {
    initial_management = "root"
  }
}
"#,
    )
    .expect("write acl.hcl");
    let mut a = TestAgent::unstarted(IP, &[&format!("-config-file={}", conf.display())]);
    a.token = Some("root".into());
    a.start();
    for (id, name) in [("web-1", "web"), ("db-1", "db")] {
        register(&a, json!({"ID": id, "Name": name, "Port": 80}));
    }
    kv_put(&a, "secret/db-password", "hunter2");
    let policy = json!({
        "Name": "web-read",
        "Rules": "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    });
    let r = a.put("/v1/acl/policy", &policy.to_string());
    assert_eq!(r.status, 200, "policy: {}", r.body);
    let r = a.put(
        "/v1/acl/token",
        &json!({"Description": "web reader", "Policies": [{"Name": "web-read"}]}).to_string(),
    );
    assert_eq!(r.status, 200, "token: {}", r.body);
    let secret = r.json()["SecretID"].as_str().expect("SecretID").to_string();

    let b = Browser::start_with(Options {
        width: 1280,
        height: 800,
        dark: false,
    });
    // `CAIRN_UI_SCREENSHOTS=docs/ui` also pictures the ACL pages.
    let shots = std::env::var_os("CAIRN_UI_SCREENSHOTS").map(std::path::PathBuf::from);
    let shoot = |b: &Browser, file: &str| {
        if let Some(d) = &shots {
            std::fs::create_dir_all(d).expect("screenshot dir");
            std::thread::sleep(Duration::from_millis(300));
            b.screenshot(&d.join(file));
        }
    };
    // Anonymous, under default deny: an empty list, not an error.
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    b.wait_text("#count", "0 services");
    assert!(
        b.exists("#nav-acls"),
        "ACL pages are linked when ACLs are on"
    );

    b.goto(&ui(&a, "dc1/login"));
    b.wait_page("login");
    b.type_into("#token", &secret);
    b.click("#login-save");
    b.wait_for("the login to be accepted", PRESENCE, |b| {
        b.text("#login-message")
            .filter(|t| t.contains("Logged in") && t.contains("web reader"))
    });

    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    b.wait_present(&row("web"));
    b.wait_text("#count", "1 service");
    assert!(!b.exists(&row("db")), "db is not readable by this token");
    assert!(!b.exists(&row("consul")), "nor is the consul service");

    // What the token may not read is said, not shown as a blank page.
    b.goto(&ui(&a, "dc1/kv/secret/db-password/edit"));
    b.wait_for("a 403 message", PRESENCE, |b| {
        b.text("#error").filter(|t| t.contains("This token cannot"))
    });
    let page = b.text("#main").unwrap_or_default();
    assert!(!page.contains("hunter2"), "the value is not shown: {page}");

    // A management token: the tokens page lists the web reader's token,
    // and a policy and a token made in the page exist over HTTP, then go.
    b.goto(&ui(&a, "dc1/login"));
    b.wait_page("login");
    b.type_into("#token", "root");
    b.click("#login-save");
    b.wait_for("the management login", PRESENCE, |b| {
        b.text("#login-message").filter(|t| t.contains("Logged in"))
    });
    b.goto(&ui(&a, "dc1/acls/policies"));
    b.wait_page("policies");
    b.type_into("#policy-name", "kv-ops");
    b.type_into(
        "#policy-rules",
        "key_prefix \"ops/\" { policy = \"write\" }",
    );
    b.click("#policy-create");
    let policy_id = b.wait_for("kv-ops over HTTP", PRESENCE, |_| {
        let r = a.get_ok("/v1/acl/policy/name/kv-ops");
        (r.status == 200).then(|| r.json()["ID"].as_str().unwrap_or("").to_string())
    });
    b.wait_present(&format!("[data-policy=\"{policy_id}\"]"));
    shoot(&b, "acl-policies.png");

    b.goto(&ui(&a, "dc1/acls/tokens"));
    b.wait_page("tokens");
    b.wait_for("the web reader's token in the list", PRESENCE, |b| {
        b.text("#main").filter(|t| t.contains("web reader"))
    });
    shoot(&b, "acl-tokens.png");
    b.type_into("#token-description", "made in the page");
    b.click(&format!("#token-policy-{policy_id}"));
    b.click("#token-create");
    let accessor = b.wait_for("the new token over HTTP", PRESENCE, |_| {
        let r = a.get_ok("/v1/acl/tokens");
        r.json().as_array().and_then(|ts| {
            ts.iter()
                .find(|t| t["Description"] == "made in the page")
                .filter(|t| t["Policies"][0]["Name"] == "kv-ops")
                .and_then(|t| t["AccessorID"].as_str().map(str::to_string))
        })
    });
    let row = format!("[data-accessor=\"{accessor}\"]");
    b.click(&format!("{row} button[data-action=\"delete\"]"));
    b.accept_alert();
    b.wait_absent(&row);
    let r = a.get_ok(&format!("/v1/acl/token/{accessor}"));
    assert_eq!(r.status, 403, "deleted: {}", r.body);
}

fn labels_of_controls(b: &Browser) -> Vec<(String, Option<String>)> {
    let v = b.js(CONTROL_LABELS, vec![]);
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or("").to_string(),
                        p[1].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn keyboard_reaches_the_search_and_links_and_controls_are_labelled() {
    let a = agent();
    register(&a, json!({"ID": "web", "Name": "web", "Port": 80}));
    let b = Browser::start();
    b.goto(&ui(&a, "dc1/services"));
    b.wait_page("services");
    b.wait_present(&row("web"));

    // Tab from the top of the page through to the first service link.
    b.js(
        "document.activeElement && document.activeElement.blur(); window.focus();",
        vec![],
    );
    let mut seen = Vec::new();
    for _ in 0..40 {
        b.keys("\u{e004}");
        let v = b.js(
            "const e = document.activeElement; \
             return [e.id, e.tagName, e.closest('[data-service]') ? e.closest('[data-service]').dataset.service : null];",
            vec![],
        );
        seen.push(v.clone());
        if v[2].as_str() == Some("web") {
            break;
        }
    }
    assert!(
        seen.iter().any(|v| v[0] == "search"),
        "Tab never reached #search: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|v| v[0] == "nav-services" || v[0] == "nav-kv"),
        "Tab never reached the navigation links: {seen:?}"
    );
    let last = seen.last().cloned().unwrap_or_default();
    assert_eq!(
        last[2],
        json!("web"),
        "Tab never reached a service link: {seen:?}"
    );
    assert_eq!(
        last[1],
        json!("A"),
        "the focused row element should be its link"
    );
    // Enter on the focused link opens the service.
    b.keys("\u{e007}");
    b.wait_page("service");

    let expect = |page: &str, path: &str, named: &[(&str, &str)]| {
        b.goto(&ui(&a, path));
        b.wait_page(page);
        let labels = labels_of_controls(&b);
        for (id, label) in &labels {
            assert!(
                label.as_deref().is_some_and(|l| !l.is_empty()),
                "control {id} on the {page} page has no label"
            );
        }
        for (id, want) in named {
            let got = labels.iter().find(|(i, _)| i == id);
            assert_eq!(
                got.and_then(|(_, l)| l.as_deref()),
                Some(*want),
                "label of #{id} on the {page} page; all: {labels:?}"
            );
        }
    };
    expect(
        "services",
        "dc1/services",
        &[("search", "Search services"), ("dc-select", "Datacenter")],
    );
    expect("kv-create", "dc1/kv/create", &[]);
    expect("login", "dc1/login", &[("token", "ACL token")]);
    assert_eq!(b.prop("#token", "type"), json!("password"));
}

/// Registers a small, realistic catalog: three nodes beyond the agent's own,
/// services with tags, meta and checks in every state, and some KV keys.
fn realistic_catalog(a: &TestAgent) {
    let nodes = [
        ("web-01", "10.0.1.11", "eu-west-1a"),
        ("web-02", "10.0.1.12", "eu-west-1b"),
        ("db-01", "10.0.2.21", "eu-west-1a"),
    ];
    for (node, addr, zone) in nodes {
        let r = a.put(
            "/v1/catalog/register",
            &json!({
                "Node": node, "Address": addr, "NodeMeta": {"zone": zone},
                "Check": {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"}
            })
            .to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let svc = |node: &str,
               id: &str,
               name: &str,
               port: u16,
               tags: Value,
               meta: Value,
               status: &str,
               output: &str| {
        let r = a.put(
            "/v1/catalog/register",
            &json!({
                "Node": node,
                "Address": nodes.iter().find(|n| n.0 == node).map(|n| n.1),
                "SkipNodeUpdate": true,
                "Service": {"ID": id, "Service": name, "Port": port, "Tags": tags, "Meta": meta},
                "Check": {"CheckID": format!("service:{id}"), "Name": format!("{name} health"),
                          "ServiceID": id, "Status": status, "Output": output}
            })
            .to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    };
    let ok = "HTTP GET http://localhost/health: 200 OK Output: ok";
    svc(
        "web-01",
        "web-1",
        "web",
        8080,
        json!(["v2", "http"]),
        json!({"version": "2.4.1"}),
        "passing",
        ok,
    );
    svc(
        "web-02",
        "web-2",
        "web",
        8080,
        json!(["v2", "http"]),
        json!({"version": "2.4.1"}),
        "passing",
        ok,
    );
    svc(
        "web-01",
        "api-1",
        "api",
        9000,
        json!(["grpc"]),
        json!({"team": "payments"}),
        "passing",
        ok,
    );
    svc(
        "web-02",
        "api-2",
        "api",
        9000,
        json!(["grpc"]),
        json!({"team": "payments"}),
        "warning",
        "HTTP GET http://localhost:9000/health: 429 Too Many Requests",
    );
    svc(
        "db-01",
        "postgres",
        "postgres",
        5432,
        json!(["primary"]),
        json!({"engine": "16.2"}),
        "passing",
        "TCP connect 10.0.2.21:5432: Success",
    );
    svc(
        "db-01",
        "redis",
        "redis",
        6379,
        json!(["cache"]),
        json!({}),
        "critical",
        "dial tcp 10.0.2.21:6379: connect: connection refused",
    );
    svc(
        "web-01",
        "metrics",
        "metrics",
        9100,
        json!(["prometheus"]),
        json!({}),
        "passing",
        ok,
    );
    for (k, v) in [
        ("config/web/replicas", "4"),
        (
            "config/web/feature-flags",
            r#"{"new_checkout": true, "dark_launch": ["eu"]}"#,
        ),
        ("config/api/timeout", "30s"),
        ("config/postgres/max_connections", "200"),
        ("deploy/last", "2026-12-01T18:22:05Z"),
    ] {
        kv_put(a, k, v);
    }
}

#[test]
fn screenshots_of_every_page() {
    let dir = std::env::var_os("CAIRN_UI_SCREENSHOTS").map(std::path::PathBuf::from);
    if let Some(d) = &dir {
        std::fs::create_dir_all(d).expect("screenshot dir");
    }
    let a = agent();
    realistic_catalog(&a);
    let shoot = |b: &Browser, path: &str, page: &str, ready: &str, file: &str| {
        b.goto(&ui(&a, path));
        b.wait_page(page);
        b.wait_present(ready);
        if let Some(d) = &dir {
            // Let the fonts and layout settle before the picture.
            std::thread::sleep(Duration::from_millis(300));
            b.screenshot(&d.join(file));
        }
    };
    let b = Browser::start_with(Options {
        width: 1280,
        height: 800,
        dark: false,
    });
    shoot(
        &b,
        "dc1/services",
        "services",
        &row("redis"),
        "services.png",
    );
    shoot(
        &b,
        "dc1/services/api",
        "service",
        "[data-instance=\"web-02/api-2\"]",
        "service.png",
    );
    shoot(
        &b,
        "dc1/nodes",
        "nodes",
        "[data-node=\"db-01\"]",
        "nodes.png",
    );
    shoot(
        &b,
        "dc1/nodes/db-01",
        "node",
        "[data-instance=\"db-01/redis\"]",
        "node.png",
    );
    shoot(
        &b,
        "dc1/kv/config/",
        "kv-folder",
        "[data-key=\"config/web/\"]",
        "kv-folder.png",
    );
    shoot(
        &b,
        "dc1/kv/config/web/feature-flags/edit",
        "kv-edit",
        "#kv-value",
        "kv-edit.png",
    );
    shoot(&b, "dc1/login", "login", "#token", "login.png");
    drop(b);

    let dark = Browser::start_with(Options {
        width: 1280,
        height: 800,
        dark: true,
    });
    assert_eq!(
        dark.js(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![]
        ),
        json!(true),
        "the browser should prefer the dark scheme"
    );
    shoot(
        &dark,
        "dc1/services",
        "services",
        &row("redis"),
        "services-dark.png",
    );
    let (light, darkbg) = (
        "rgb(255, 255, 255)",
        dark.js(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        ),
    );
    assert_ne!(
        darkbg,
        json!(light),
        "dark mode should not have a white background"
    );
}
