//! User events against the real binary: three servers and a client agent,
//! an event fired on one agent listed by every agent (also one that the
//! firing agent cannot reach), node, service and tag filters applied where
//! the event arrives, Consul's refusals (sizes, filters, names, datacenters,
//! ACLs), a blocking list woken by a new event, `cairn event` and `cairn
//! watch -type=event`.

mod common;

use common::acl::{acl_conf, add_config, req, token_with, wait_acl_ready};
use common::cluster::{wait_leader, Node, Partition};
use common::{eventually, http_request, Resp, BIN};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NET: u8 = 185;

/// `cairn <args>`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Consul's `uuidToUint64`, written out again so the agent's is checked.
fn index_of(id: &str) -> u64 {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    let low = u64::from_str_radix(&hex[0..16], 16).expect("hex");
    let high = u64::from_str_radix(&hex[16..32], 16).expect("hex");
    low ^ high
}

fn fire(n: &Node, query: &str, body: Option<&[u8]>) -> Resp {
    let url = format!("http://{}:8500/v1/event/fire/{query}", n.ip);
    http_request("PUT", &url, body, &[]).unwrap_or_else(|e| panic!("fire on {}: {e}", n.name))
}

/// Fires and returns the event as answered.
fn fired(n: &Node, query: &str, body: Option<&[u8]>) -> Value {
    let r = fire(n, query, body);
    assert_eq!(r.status, 200, "fire {query} on {}: {}", n.name, r.body);
    r.json()
}

fn list(n: &Node, query: &str) -> Resp {
    n.get(&format!("/v1/event/list{query}"))
        .unwrap_or_else(|e| panic!("list on {}: {e}", n.name))
}

fn listed_ids(n: &Node) -> Vec<String> {
    list(n, "")
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["ID"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn has(n: &Node, id: &str) -> bool {
    listed_ids(n).iter().any(|i| i == id)
}

fn alive_members(n: &Node) -> usize {
    n.get("/v1/agent/members")
        .ok()
        .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
        .and_then(|v| v.as_array().cloned())
        .map(|ms| ms.iter().filter(|m| m["Status"] == 1).count())
        .unwrap_or(0)
}

struct Cluster {
    servers: Vec<Node>,
    client: Node,
}

impl Cluster {
    fn start() -> Cluster {
        let mut servers: Vec<Node> = (1..=3)
            .map(|h| Node::server(NET, h, 3, &[1], &[]))
            .collect();
        let mut client = Node::client(NET, 4, &[1], &[]);
        for s in &mut servers {
            s.spawn();
        }
        client.spawn();
        let c = Cluster { servers, client };
        let all = c.all();
        assert!(
            wait_leader(&all[..3], Duration::from_secs(30)).is_some(),
            "no leader; log:\n{}",
            c.servers[0].log_text()
        );
        assert!(
            eventually(Duration::from_secs(20), || all
                .iter()
                .all(|n| alive_members(n) == 4)),
            "members did not all meet; log:\n{}",
            c.client.log_text()
        );
        c
    }

    fn all(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self.servers.iter().collect();
        v.push(&self.client);
        v
    }
}

#[test]
fn events_reach_every_agent_and_filters_apply_where_they_arrive() {
    let c = Cluster::start();
    let all = c.all();
    let (s1, s2, c4) = (&c.servers[0], &c.servers[1], &c.client);
    let web = json!({"Name": "web", "ID": "web-1", "Tags": ["v1", "primary"], "Port": 80});
    let r = c4
        .put("/v1/agent/service/register", &web.to_string())
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // Nothing yet: an empty list with index 1.
    let r = list(s1, "");
    assert_eq!((r.status, r.body.as_str(), r.index()), (200, "[]", 1));

    // Fired on a server; answered as Consul answers.
    let e = fired(s2, "deploy", Some(b"v2"));
    let id = e["ID"].as_str().expect("ID").to_string();
    assert_eq!(id.len(), 36, "{e}");
    assert_eq!(
        e,
        json!({"ID": id, "Name": "deploy", "Payload": "djI=", "NodeFilter": "",
               "ServiceFilter": "", "TagFilter": "", "Version": 1, "LTime": 0})
    );
    assert!(
        eventually(Duration::from_secs(5), || all.iter().all(|n| has(n, &id))),
        "not on every agent: {:?}",
        all.iter().map(|n| listed_ids(n)).collect::<Vec<_>>()
    );
    let mut ltimes = Vec::new();
    for n in &all {
        let r = list(n, "");
        assert_eq!(r.index(), index_of(&id), "index on {}", n.name);
        let v = r.json();
        assert_eq!(v.as_array().map(Vec::len), Some(1), "{} lists {v}", n.name);
        assert_eq!(v[0]["Payload"], "djI=");
        ltimes.push(v[0]["LTime"].as_u64().unwrap_or(0));
    }
    assert!(
        ltimes.iter().all(|t| *t == ltimes[0] && *t >= 1),
        "{ltimes:?}"
    );

    // Without a body there is no payload; a later event is later in time.
    let bare = fired(c4, "bare", None);
    assert_eq!(bare["Payload"], Value::Null);
    let bare_id = bare["ID"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(5), || has(s1, &bare_id)));
    let v = list(s1, "?name=bare").json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["Payload"], Value::Null);
    assert!(v[0]["LTime"].as_u64() > Some(ltimes[0]), "{v}");

    // Filters are applied where the event arrives.
    let only_c4 = fired(s1, "only?node=^c4$", None)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let tagged = fired(s1, "tagged?service=web&tag=^prim", None)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let no_tag = fired(s1, "untagged?service=web&tag=v9", None)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let no_service = fired(s1, "noservice?service=^db$", None)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    // A later event that reaches everyone shows the earlier ones had
    // their chance to arrive.
    let marker = fired(s1, "marker", None)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(eventually(Duration::from_secs(5), || all
        .iter()
        .all(|n| has(n, &marker))));
    for n in &all {
        let ids = listed_ids(n);
        let here = n.name == "c4";
        assert_eq!(ids.contains(&only_c4), here, "node filter on {}", n.name);
        assert_eq!(ids.contains(&tagged), here, "tag filter on {}", n.name);
        assert!(!ids.contains(&no_tag), "unmatched tag on {}", n.name);
        assert!(
            !ids.contains(&no_service),
            "unmatched service on {}",
            n.name
        );
    }
    let v = list(c4, "?name=tagged").json();
    assert_eq!(v[0]["ServiceFilter"], "web");
    assert_eq!(v[0]["TagFilter"], "^prim");

    // Consul's refusals.
    let r = fire(s1, "big", Some(&[b'x'; 600]));
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            413,
            "user event exceeds configured limit of 512 bytes before encoding"
        )
    );
    // Within the limit before encoding, past it once serf has encoded it.
    let r = fire(s1, "deploy", Some(&[b'x'; 420]));
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            413,
            "encoded user event exceeds configured limit of 512 bytes after encoding"
        )
    );
    let r = fire(s1, "deploy", Some(&[b'x'; 400]));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = fire(s1, "deploy?tag=v1", None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "Cannot provide tag filter without service filter")
    );
    let r = fire(s1, "deploy?node=(", None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            500,
            "Invalid node filter: error parsing regexp: missing closing ): `(`"
        )
    );
    let r = fire(s1, "", None);
    assert_eq!((r.status, r.body.as_str()), (400, "Missing name"));
    let r = fire(s1, "deploy?dc=elsewhere", None);
    assert_eq!((r.status, r.body.as_str()), (500, "No path to datacenter"));
    let r = s1.get("/v1/event/fire/deploy").unwrap();
    assert_eq!(r.status, 405);
    let r = list(s1, "?index=x");
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = list(s1, "?wait=soon");
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid wait time"));

    // Rebroadcast: with s1 and c4 cut off from each other, an event fired
    // on s1 still reaches c4 through the others.
    let cut = Partition::cut(&[(&s1.ip, &c4.ip)]);
    let around = fired(s1, "around", None)["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        eventually(Duration::from_secs(10), || has(c4, &around)),
        "not relayed to c4: {:?}",
        listed_ids(c4)
    );
    drop(cut);
}

#[test]
fn a_blocking_list_wakes_on_a_new_event_and_the_cli_fires_and_watches() {
    let mut s = Node::server(NET, 10, 1, &[], &[]);
    s.spawn();
    assert!(
        wait_leader(&[&s], Duration::from_secs(30)).is_some(),
        "no leader; log:\n{}",
        s.log_text()
    );
    let addr = format!("-http-addr={}:8500", s.ip);

    // An index that is current blocks until the wait runs out.
    let first = fired(&s, "first", None)["ID"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(5), || has(&s, &first)));
    let index = list(&s, "").index();
    assert_eq!(index, index_of(&first));
    let started = Instant::now();
    let r = list(&s, &format!("?index={index}&wait=1s"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not block"
    );
    assert_eq!(r.index(), index);

    // A new event wakes it; an event under another name does not wake a
    // list of one name.
    let (tx, rx) = mpsc::channel();
    let url = format!(
        "http://{}:8500/v1/event/list?name=first&index={index}&wait=30s",
        s.ip
    );
    std::thread::spawn(move || {
        let _ = tx.send(http_request("GET", &url, None, &[]));
    });
    std::thread::sleep(Duration::from_millis(300));
    fired(&s, "other", None);
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "woken by another name"
    );
    let second = fired(&s, "first", Some(b"again"))["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let r = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("woken by the new event")
        .expect("request");
    assert_eq!(r.index(), index_of(&second));
    let v = r.json();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v[1]["ID"], second.as_str());
    assert_eq!(v[1]["Payload"], "YWdhaW4=");

    // `cairn watch -type=event` prints only the events after the last
    // printed; with a handler, it runs it with them on stdin.
    let mut watch = Command::new(BIN)
        .args(["watch", &addr, "-type=event", "-name=watched"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let out = watch.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let handled = dir.path().join("handled");
    let mut handler = Command::new(BIN)
        .args([
            "watch",
            &addr,
            "-type=event",
            "-name=watched",
            &format!("cat >> {}", handled.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch with a handler");
    let first_line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the first view");
    assert_eq!(first_line, "[]");
    std::thread::sleep(Duration::from_millis(300));

    // `cairn event` fires and prints the ID.
    let (code, stdout, stderr) = cli(&["event", &addr, "-name=watched", "hello"]);
    assert_eq!(code, 0, "{stderr}");
    let w1 = stdout
        .strip_prefix("Event ID: ")
        .map(str::trim)
        .expect("Event ID: <id>")
        .to_string();
    assert_eq!(w1.len(), 36, "{stdout}");
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("event 1");
    let v: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v[0]["ID"], w1.as_str());
    assert_eq!(v[0]["Payload"], "aGVsbG8=");

    let (code, stdout, _) = cli(&["event", &addr, "-name=watched"]);
    assert_eq!(code, 0);
    let w2 = stdout.trim().trim_start_matches("Event ID: ").to_string();
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("event 2");
    let v: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v.as_array().map(Vec::len), Some(1), "only the new one: {v}");
    assert_eq!(v[0]["ID"], w2.as_str());
    assert_eq!(v[0]["Payload"], Value::Null);
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&handled)
            .is_ok_and(|t| t.contains(&w1) && t.contains(&w2))),
        "handler input: {:?}",
        std::fs::read_to_string(&handled)
    );
    let _ = watch.kill();
    let _ = handler.kill();
    let _ = watch.wait();
    let _ = handler.wait();

    // The CLI's refusals and exit codes.
    let (code, _, stderr) = cli(&["event", &addr]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("Event name must be specified\n\nUsage: cairn event"),
        "{stderr}"
    );
    let (code, _, stderr) = cli(&["event", &addr, "-name=x", "-tag=v1"]);
    assert_eq!(
        (code, stderr.trim()),
        (1, "Cannot provide tag filter without service filter.")
    );
    let big = "x".repeat(600);
    let (code, _, stderr) = cli(&["event", &addr, "-name=x", &big]);
    assert_eq!(
        (code, stderr.trim()),
        (
            1,
            "Error firing event: Unexpected response code: 413 (user event exceeds configured limit of 512 bytes before encoding)"
        )
    );
    let (code, _, stderr) = cli(&["event", "-http-addr=127.0.185.99:8500", "-name=x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("Error querying Consul agent: "),
        "{stderr}"
    );
}

#[test]
fn acls_guard_firing_and_listing_by_event_name() {
    const ROOT: &str = "5e1d0c9b8a7f46e3b2d1c0f9e8d7c6b5";
    let mut s = Node::server(186, 1, 1, &[], &[]);
    add_config(
        &mut s,
        "acl.json",
        &acl_conf("deny", json!({"initial_management": ROOT})),
    );
    s.spawn();
    wait_acl_ready(&s);
    let (_, deployer) = token_with(
        &s,
        ROOT,
        "deployer",
        r#"event "deploy" { policy = "write" } event_prefix "" { policy = "read" }"#,
    );
    let (_, reader) = token_with(&s, ROOT, "reader", r#"event "deploy" { policy = "read" }"#);

    let r = req(&s, "PUT", "/v1/event/fire/deploy", None, None);
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let r = req(&s, "PUT", "/v1/event/fire/other", None, Some(&deployer));
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    // Consul's fire handler turns every other failure of its RPC into a
    // 500, an unknown token included; the list answers it as reads do.
    let r = req(&s, "PUT", "/v1/event/fire/deploy", None, Some("no-such"));
    assert_eq!((r.status, r.body.as_str()), (500, "ACL not found"));
    let r = req(&s, "GET", "/v1/event/list", None, Some("no-such"));
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    let r = req(&s, "PUT", "/v1/event/fire/deploy", None, Some(&deployer));
    assert_eq!(r.status, 200, "{}", r.body);
    let deploy = r.json()["ID"].as_str().unwrap().to_string();
    let r = req(&s, "PUT", "/v1/event/fire/other", None, Some(ROOT));
    assert_eq!(r.status, 200, "{}", r.body);
    let other = r.json()["ID"].as_str().unwrap().to_string();

    let ids = |token: Option<&str>| -> (Vec<String>, Option<String>) {
        let r = req(&s, "GET", "/v1/event/list", None, token);
        assert_eq!(r.status, 200, "{}", r.body);
        let ids = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["ID"].as_str().unwrap_or_default().to_string())
            .collect();
        (
            ids,
            r.header("X-Consul-Results-Filtered-By-ACLs")
                .map(str::to_string),
        )
    };
    assert!(eventually(Duration::from_secs(5), || ids(Some(ROOT))
        .0
        .len()
        == 2));
    assert_eq!(ids(Some(ROOT)), (vec![deploy.clone(), other.clone()], None));
    assert_eq!(
        ids(Some(&reader)),
        (vec![deploy.clone()], Some("true".into()))
    );
    assert_eq!(ids(Some(&deployer)), (vec![deploy, other], None));
    // Anonymous reads nothing, and is not told that anything was hidden.
    assert_eq!(ids(None), (vec![], None));
}
