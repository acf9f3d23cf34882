//! `cairn kv`, `catalog`, `services`, `maint` and `monitor` against a real
//! dev agent: each command's output and exit code, as a runbook sees them.

mod common;

use common::{eventually, TestAgent, BIN};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cairn <args>` against `agent` through `CONSUL_HTTP_ADDR`.
fn cairn(agent: &TestAgent, args: &[&str]) -> Out {
    cairn_stdin(agent, args, None)
}

fn cairn_stdin(agent: &TestAgent, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut child = Command::new(BIN)
        .args(args)
        .env(
            "CONSUL_HTTP_ADDR",
            format!("127.0.0.1:{}", agent.ports.http),
        )
        .env_remove("CONSUL_HTTP_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cairn");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait cairn");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn ok(out: Out) -> String {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    out.stdout
}

#[test]
fn kv_commands_read_write_delete_and_move_trees() {
    let agent = TestAgent::dev();
    assert_eq!(
        ok(cairn(&agent, &["kv", "put", "app/config", "hello"])),
        "Success! Data written to: app/config\n"
    );
    assert_eq!(ok(cairn(&agent, &["kv", "get", "app/config"])), "hello\n");
    // -flags, and a value from stdin.
    ok(cairn_stdin(
        &agent,
        &["kv", "put", "-flags=42", "app/db", "-"],
        Some(b"from stdin"),
    ));
    let detailed = ok(cairn(&agent, &["kv", "get", "-detailed", "app/db"]));
    let lines: Vec<&str> = detailed.lines().collect();
    assert_eq!(lines.len(), 7, "{detailed}");
    assert!(lines[0].starts_with("CreateIndex      "), "{detailed}");
    assert_eq!(lines[1], "Flags            42");
    assert_eq!(lines[2], "Key              app/db");
    assert_eq!(lines[5], "Session          -");
    assert_eq!(lines[6], "Value            from stdin");
    let modify: u64 = lines[4]
        .trim_start_matches("ModifyIndex")
        .trim()
        .parse()
        .expect("ModifyIndex");

    assert_eq!(
        ok(cairn(&agent, &["kv", "get", "-recurse", "app"])),
        "app/config:hello\napp/db:from stdin\n"
    );
    assert_eq!(
        ok(cairn(&agent, &["kv", "get", "-keys", "app/"])),
        "app/config\napp/db\n"
    );
    assert_eq!(
        ok(cairn(&agent, &["kv", "get", "-base64", "app/config"])),
        "aGVsbG8=\n"
    );

    // Check-and-set: a stale index is refused with exit 1, the current one works.
    let stale = cairn(
        &agent,
        &["kv", "put", "-cas", "-modify-index=1", "app/db", "x"],
    );
    assert_eq!(stale.code, 1);
    assert_eq!(stale.stderr, "Error! Did not write to app/db: CAS failed\n");
    let idx = format!("-modify-index={modify}");
    ok(cairn(
        &agent,
        &["kv", "put", "-cas", &idx, "-flags=42", "app/db", "y"],
    ));
    assert_eq!(ok(cairn(&agent, &["kv", "get", "app/db"])), "y\n");

    // A missing key is exit 1 with Consul's words.
    let missing = cairn(&agent, &["kv", "get", "nope"]);
    assert_eq!(missing.code, 1);
    assert_eq!(missing.stderr, "Error! No key exists at: nope\n");
    let bad = cairn(&agent, &["kv", "get"]);
    assert_eq!(
        (bad.code, bad.stderr.as_str()),
        (1, "Error! Missing KEY argument\n")
    );

    // Export from one agent, import into another: the same tree, flags kept.
    let exported = ok(cairn(&agent, &["kv", "export", "app/"]));
    let parsed: Value = serde_json::from_str(&exported).expect("export is JSON");
    assert_eq!(parsed[0]["key"], "app/config");
    assert_eq!(parsed[0]["value"], "aGVsbG8=");
    assert_eq!(parsed[1]["flags"], 42);
    assert!(exported.starts_with("[\n\t{\n\t\t\"key\""), "{exported}");
    let other = TestAgent::dev();
    let imported = ok(cairn_stdin(
        &other,
        &["kv", "import", "-"],
        Some(exported.as_bytes()),
    ));
    assert_eq!(imported, "Imported: app/config\nImported: app/db\n");
    assert_eq!(ok(cairn(&other, &["kv", "get", "app/db"])), "y\n");
    let flags = ok(cairn(&other, &["kv", "get", "-detailed", "app/db"]));
    assert!(flags.contains("Flags            42"), "{flags}");
    let garbage = cairn_stdin(
        &other,
        &["kv", "import", "-"],
        Some(b"[{\"key\":\"k\",\"value\":\"!!\"}]"),
    );
    assert_eq!(garbage.code, 1);
    assert!(
        garbage
            .stderr
            .starts_with("Error base 64 decoding value for key k: "),
        "{}",
        garbage.stderr
    );

    // Delete one key, then the rest of the prefix.
    assert_eq!(
        ok(cairn(&agent, &["kv", "delete", "app/config"])),
        "Success! Deleted key: app/config\n"
    );
    assert_eq!(cairn(&agent, &["kv", "get", "app/config"]).code, 1);
    assert_eq!(
        ok(cairn(&agent, &["kv", "delete", "-recurse", "app/"])),
        "Success! Deleted keys with prefix: app/\n"
    );
    assert_eq!(ok(cairn(&agent, &["kv", "get", "-recurse", "app/"])), "");
}

#[test]
fn catalog_and_services_commands_show_what_is_registered() {
    let agent = TestAgent::dev();
    let node = agent.node.clone();
    assert_eq!(ok(cairn(&agent, &["catalog", "datacenters"])), "dc1\n");

    // Register from flags and from a config file; both appear.
    assert_eq!(
        ok(cairn(
            &agent,
            &[
                "services",
                "register",
                "-name=web",
                "-port=8080",
                "-tag=v1",
                "-tag=blue"
            ]
        )),
        "Registered service: web\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("db.hcl");
    std::fs::write(
        &file,
        "service {\n  name = \"db\"\n  id = \"db-1\"\n  port = 5432\n  tags = [\"primary\"]\n  enable_tag_override = true\n}\n",
    )
    .expect("write service file");
    let file = file.to_str().expect("utf-8 path");
    assert_eq!(
        ok(cairn(&agent, &["services", "register", file])),
        "Registered service: db\n"
    );
    let db = agent.get_ok("/v1/agent/service/db-1").json();
    assert_eq!(db["Port"], 5432);
    assert_eq!(db["EnableTagOverride"], true);

    let listed = eventually(Duration::from_secs(10), || {
        cairn(&agent, &["catalog", "services"]).stdout == "consul\ndb\nweb\n"
    });
    assert!(listed, "{}", cairn(&agent, &["catalog", "services"]).stdout);
    let tags = ok(cairn(&agent, &["catalog", "services", "-tags"]));
    assert_eq!(
        tags,
        "consul      \ndb          primary\nweb         blue,v1\n"
    );
    let by_node = ok(cairn(&agent, &["catalog", "services", "-node", &node]));
    assert_eq!(by_node, "consul\ndb\nweb\n");

    let nodes = ok(cairn(&agent, &["catalog", "nodes"]));
    let lines: Vec<&str> = nodes.lines().collect();
    assert_eq!(lines.len(), 2, "{nodes}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["Node", "ID", "Address", "DC"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[0], node);
    assert_eq!(row[1].len(), 8, "the ID's first group: {nodes}");
    assert_eq!(row[2..], ["127.0.0.1", "dc1"]);
    let detailed = ok(cairn(&agent, &["catalog", "nodes", "-detailed"]));
    let header: Vec<&str> = detailed
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]
    );
    assert!(detailed.contains("lan=127.0.0.1"), "{detailed}");
    let for_web = ok(cairn(&agent, &["catalog", "nodes", "-service=web"]));
    assert!(for_web.contains(&node), "{for_web}");
    let none = cairn(&agent, &["catalog", "nodes", "-service=nothing"]);
    assert_eq!(none.code, 0);
    assert_eq!(
        none.stderr,
        "No nodes match the given query - try expanding your search.\n"
    );
    let bad = cairn(&agent, &["catalog", "nodes", "extra"]);
    assert_eq!(
        (bad.code, bad.stderr.as_str()),
        (1, "Too many arguments (expected 0, got 1)\n")
    );

    // Deregister by file and by ID.
    assert_eq!(
        ok(cairn(&agent, &["services", "deregister", file])),
        "Deregistered service: db-1\n"
    );
    assert_eq!(
        ok(cairn(&agent, &["services", "deregister", "-id=web"])),
        "Deregistered service: web\n"
    );
    let gone = eventually(Duration::from_secs(10), || {
        cairn(&agent, &["catalog", "services"]).stdout == "consul\n"
    });
    assert!(gone);
    // An unknown ID is a no-op for the agent, as in Consul.
    assert_eq!(
        ok(cairn(&agent, &["services", "deregister", "-id=ghost"])),
        "Deregistered service: ghost\n"
    );
    let down = Command::new(BIN)
        .args([
            "services",
            "deregister",
            "-http-addr=127.0.0.1:1",
            "-id=web",
        ])
        .output()
        .expect("run cairn");
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).starts_with("Error registering service \"web\": "),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"service\": {\"name\": \"x\", \"bogus\": 1}}").unwrap();
    let refused = cairn(&agent, &["services", "register", broken.to_str().unwrap()]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.starts_with("Error: "), "{}", refused.stderr);
}

#[test]
fn maint_enables_lists_and_disables_maintenance() {
    let agent = TestAgent::dev();
    let node = agent.node.clone();
    ok(cairn(
        &agent,
        &["services", "register", "-name=web", "-port=80"],
    ));
    assert_eq!(ok(cairn(&agent, &["maint"])), "");
    assert_eq!(
        ok(cairn(
            &agent,
            &["maint", "-enable", "-reason=kernel upgrade"]
        )),
        "Node maintenance is now enabled\n"
    );
    assert_eq!(
        ok(cairn(
            &agent,
            &["maint", "-enable", "-service=web", "-reason=deploy"]
        )),
        "Service maintenance is now enabled for \"web\"\n"
    );
    assert_eq!(
        ok(cairn(&agent, &["maint"])),
        format!(
            "Node:\n  Name:   {node}\n  Reason: kernel upgrade\n\nService:\n  ID:     web\n  Reason: deploy\n\n"
        )
    );
    // Maintenance takes the service out of DNS.
    let answered = agent.dig(&["web.service.consul", "A", "+short"]);
    assert_eq!(
        answered.trim(),
        "",
        "in maintenance, yet answered: {answered}"
    );
    assert_eq!(
        ok(cairn(&agent, &["maint", "-disable", "-service=web"])),
        "Service maintenance is now disabled for \"web\"\n"
    );
    ok(cairn(&agent, &["maint", "-disable"]));
    assert_eq!(ok(cairn(&agent, &["maint"])), "");
    let unknown = cairn(&agent, &["maint", "-enable", "-service=ghost"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .starts_with("Error enabling service maintenance: Unexpected response code: 404"),
        "{}",
        unknown.stderr
    );
    let both = cairn(&agent, &["maint", "-enable", "-disable"]);
    assert_eq!(
        (both.code, both.stderr.as_str()),
        (1, "Only one of -enable or -disable may be provided\n")
    );
}

#[test]
fn members_lists_filters_and_details_the_members() {
    let a = TestAgent::dev();
    let me = a.get_ok("/v1/agent/members").json()[0].clone();
    let name = me["Name"].as_str().expect("member name").to_string();
    let addr = format!("{}:{}", me["Addr"].as_str().unwrap(), me["Port"]);

    let out = ok(cairn(&a, &["members"]));
    let lines: Vec<&str> = out.lines().collect();
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[0]),
        [
            "Node",
            "Address",
            "Status",
            "Type",
            "Build",
            "Protocol",
            "DC",
            "Partition",
            "Segment"
        ],
        "{out}"
    );
    let row = cols(lines[1]);
    assert_eq!(
        (&row[..4], &row[5..]),
        (
            &[name.clone(), addr.clone(), "alive".into(), "server".into()][..],
            &[
                "2".to_string(),
                "dc1".into(),
                "default".into(),
                "<all>".into()
            ][..]
        ),
        "{out}"
    );
    // Columns are aligned: every line has its Address where the header has it.
    let at = lines[0].find("Address").unwrap();
    assert_eq!(lines[1].find(&addr), Some(at), "{out}");

    let detailed = ok(cairn(&a, &["members", "-detailed"]));
    let lines: Vec<&str> = detailed.lines().collect();
    assert_eq!(cols(lines[0]), ["Node", "Address", "Status", "Tags"]);
    let tags = cols(lines[1])[3].clone();
    let keys: Vec<&str> = tags
        .split(',')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "tags sorted by key: {tags}");
    assert!(
        tags.contains("role=consul") && tags.contains("dc=dc1"),
        "{tags}"
    );

    // -status is a regular expression over the status; no match exits 2.
    assert_eq!(ok(cairn(&a, &["members", "-status=al.ve"])), out);
    let none = cairn(&a, &["members", "-status=^failed$"]);
    assert_eq!((none.code, none.stdout.as_str()), (2, ""));
    let bad = cairn(&a, &["members", "-status=("]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.starts_with("Failed to compile status regexp: "),
        "{}",
        bad.stderr
    );
    // -filter goes to the agent.
    let filtered = cairn(&a, &["members", "-filter", "Name == \"nobody\""]);
    assert_eq!(filtered.code, 2, "{}", filtered.stderr);
    assert_eq!(
        ok(cairn(
            &a,
            &["members", "-filter", &format!("Name == \"{name}\"")]
        )),
        out
    );
    let wan = ok(cairn(&a, &["members", "-wan"]));
    assert!(wan.lines().nth(1).unwrap().contains("server"), "{wan}");
}
