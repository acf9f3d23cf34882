//! `cairn template` against a real agent: `-once` and `-dry`, an nginx
//! upstream file that follows registrations and deregistrations, one
//! command run per change, the old file kept on template errors, KV bytes
//! rendered exactly, HCL configuration, consul-template's exit codes, and
//! retries while the agent is down.

mod common;

use common::{eventually, spawn_logged, TestAgent, BIN};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const UPSTREAM: &str = "upstream web { {{range service \"web\"}}
  server {{.Address}}:{{.Port}};{{else}}
  server 127.0.0.1:65535; # none{{end}}
}
";

/// A scratch directory with the template, output and command log.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Lines in the command log: how many times the command ran.
    fn runs(&self) -> usize {
        self.read("commands.log").lines().count()
    }

    /// A command that appends a line to the command log.
    fn command(&self) -> String {
        format!("echo ran >> {}", self.path("commands.log").display())
    }
}

fn register(agent: &TestAgent, id: &str, port: u16) {
    let body = format!(
        r#"{{"Name":"web","ID":"{id}","Port":{port},"Address":"10.0.0.{port_low}"}}"#,
        port_low = port % 250
    );
    let r = agent.put("/v1/agent/service/register", &body);
    assert_eq!(r.status, 200, "{}", r.body);
}

fn deregister(agent: &TestAgent, id: &str) {
    let r = agent.put(&format!("/v1/agent/service/deregister/{id}"), "");
    assert_eq!(r.status, 200, "{}", r.body);
}

fn addr(agent: &TestAgent) -> String {
    format!("127.0.0.1:{}", agent.ports.http)
}

/// Runs `cairn template` to completion (60 s at most).
fn run_once(args: &[String]) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("template")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cairn template");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cairn template did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A long-running `cairn template`, killed on drop.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(args: &[String], log: PathBuf) -> Running {
        let mut all = vec!["template".to_string()];
        all.extend(args.iter().cloned());
        Running {
            child: spawn_logged(&all, &log, &[]),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|s| s.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(
    files: &Files,
    name: &str,
    what: impl Fn(&str) -> bool,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    eventually(limit, || what(&files.read(name))).then(|| start.elapsed())
}

#[test]
fn once_renders_the_upstream_and_runs_the_command() {
    let agent = TestAgent::dev();
    register(&agent, "web-1", 8081);
    register(&agent, "web-2", 8082);
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let out = files.path("conf.d/upstream.conf");
    let spec = format!("{src}:{}:{}", out.display(), files.command());
    let (code, stdout, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-template".into(),
        spec.clone(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        files.read("conf.d/upstream.conf"),
        "upstream web { \n  server 10.0.0.81:8081;\n  server 10.0.0.82:8082;\n}\n"
    );
    assert_eq!(files.runs(), 1);
    // Unchanged content: nothing written, no command.
    let (code, _, stderr) = run_once(&[
        "-http-addr".into(),
        addr(&agent),
        "-once".into(),
        "-template".into(),
        spec,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(files.runs(), 1);

    // -dry prints instead of writing and runs nothing.
    let dry_out = files.path("dry.conf");
    let spec = format!("{src}:{}:{}", dry_out.display(), files.command());
    let (code, stdout, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-dry".into(),
        "-template".into(),
        spec,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        format!(
            "> {}\nupstream web {{ \n  server 10.0.0.81:8081;\n  server 10.0.0.82:8082;\n}}\n",
            dry_out.display()
        )
    );
    assert!(!dry_out.exists());
    assert_eq!(files.runs(), 1);
}

#[test]
fn the_upstream_follows_registrations_within_a_second() {
    let agent = TestAgent::dev();
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let out = files.path("upstream.conf");
    let mut run = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-template".into(),
            format!("{src}:{}:{}", out.display(), files.command()),
        ],
        files.path("template.log"),
    );
    let limit = Duration::from_secs(10);
    assert!(
        wait_for(&files, "upstream.conf", |c| c.contains("# none"), limit).is_some(),
        "{}",
        run.log()
    );
    assert!(eventually(limit, || files.runs() == 1));

    let mut slowest = Duration::ZERO;
    let mut step = |change: &dyn Fn(), want: &dyn Fn(&str) -> bool, runs: usize| {
        let t0 = Instant::now();
        change();
        if wait_for(&files, "upstream.conf", want, limit).is_none() {
            panic!(
                "no change; file:\n{}\nlog:\n{}",
                files.read("upstream.conf"),
                run.log()
            );
        }
        slowest = slowest.max(t0.elapsed());
        assert!(
            eventually(limit, || files.runs() == runs),
            "runs: {}",
            files.runs()
        );
    };
    step(
        &|| register(&agent, "web-1", 8081),
        &|c| c.contains("10.0.0.81:8081") && !c.contains("# none"),
        2,
    );
    step(
        &|| register(&agent, "web-2", 8082),
        &|c| c.contains("10.0.0.81:8081") && c.contains("10.0.0.82:8082"),
        3,
    );
    step(
        &|| deregister(&agent, "web-1"),
        &|c| !c.contains("10.0.0.81") && c.contains("10.0.0.82:8082"),
        4,
    );
    step(
        &|| deregister(&agent, "web-2"),
        &|c| c.contains("# none"),
        5,
    );
    assert!(
        slowest < Duration::from_millis(1500),
        "slowest change took {slowest:?}"
    );

    // A registration that changes nothing in the output runs no command.
    register(&agent, "web-3", 8083);
    assert!(wait_for(&files, "upstream.conf", |c| c.contains("8083"), limit).is_some());
    assert!(eventually(limit, || files.runs() == 6));
    let body = r#"{"Name":"web","ID":"web-3","Port":8083,"Address":"10.0.0.83","Meta":{"v":"2"}}"#;
    assert_eq!(agent.put("/v1/agent/service/register", body).status, 200);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(files.runs(), 6, "the command ran without a change");
    assert_eq!(run.exited(), None, "{}", run.log());
}

#[test]
fn a_syntax_error_keeps_the_old_file_and_runs_nothing() {
    let agent = TestAgent::dev();
    let files = Files::new();
    let src = files.write(
        "bad.ctmpl",
        "upstream web {\n  {{ range servce \"web\" }}x{{ end }}\n}\n",
    );
    let out = files.path("upstream.conf");
    std::fs::write(&out, "old\n").unwrap();
    let spec = format!("{src}:{}:{}", out.display(), files.command());
    let (code, _, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-template".into(),
        spec,
    ]);
    assert_eq!(code, 14, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "template: {src}:2:12: function \"servce\" not defined"
        )),
        "{stderr}"
    );
    assert_eq!(files.read("upstream.conf"), "old\n");
    assert_eq!(files.runs(), 0);

    let src = files.write("unclosed.ctmpl", "a\nb {{ if true }}\n");
    let (code, _, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-template".into(),
        format!("{src}:{}", out.display()),
    ]);
    assert_eq!(code, 14, "{stderr}");
    assert!(stderr.contains(":2:6: unexpected EOF in if"), "{stderr}");
    assert_eq!(files.read("upstream.conf"), "old\n");
}

#[test]
fn a_render_error_keeps_the_old_file_until_the_data_is_fixed() {
    let agent = TestAgent::dev();
    assert_eq!(
        agent.put("/v1/kv/app/config", r#"{"port": 80}"#).status,
        200
    );
    let files = Files::new();
    let src = files.write(
        "port.ctmpl",
        "{{ with $c := key \"app/config\" | parseJSON }}listen {{ $c.port }};{{ end }}\n",
    );
    let out = files.path("port.conf");
    let spec = format!("{src}:{}:{}", out.display(), files.command());
    let mut run = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-template-error-fatal=false".into(),
            "-template".into(),
            spec.clone(),
        ],
        files.path("template.log"),
    );
    let limit = Duration::from_secs(10);
    assert!(
        wait_for(&files, "port.conf", |c| c == "listen 80;\n", limit).is_some(),
        "{}",
        run.log()
    );
    assert!(eventually(limit, || files.runs() == 1));
    // Invalid JSON: the error is logged, the file and command stay put.
    assert_eq!(agent.put("/v1/kv/app/config", "{not json").status, 200);
    assert!(
        eventually(limit, || run.log().contains("error calling parseJSON")),
        "{}",
        run.log()
    );
    assert!(
        run.log().contains(&format!("template: {src}:1:")),
        "{}",
        run.log()
    );
    assert_eq!(files.read("port.conf"), "listen 80;\n");
    assert_eq!(files.runs(), 1);
    assert_eq!(run.exited(), None);
    // Fixed data renders again.
    assert_eq!(
        agent.put("/v1/kv/app/config", r#"{"port": 81}"#).status,
        200
    );
    assert!(
        wait_for(&files, "port.conf", |c| c == "listen 81;\n", limit).is_some(),
        "{}",
        run.log()
    );
    assert!(eventually(limit, || files.runs() == 2));
    drop(run);

    // By default a render error ends the process (exit 14), file intact.
    let mut fatal = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-template".into(),
            spec,
        ],
        files.path("fatal.log"),
    );
    assert_eq!(agent.put("/v1/kv/app/config", "{broken").status, 200);
    assert!(
        eventually(limit, || fatal.exited().is_some()),
        "{}",
        fatal.log()
    );
    assert_eq!(fatal.exited(), Some(14), "{}", fatal.log());
    assert_eq!(files.read("port.conf"), "listen 81;\n");
}

#[test]
fn kv_bytes_that_are_not_utf8_render_exactly() {
    let agent = TestAgent::dev();
    let raw: &[u8] = b"\xff\xfe\x00bin\x80";
    let r = agent
        .request("PUT", "/v1/kv/blob", Some(raw), &[])
        .expect("PUT");
    assert_eq!(r.status, 200, "{}", r.body);
    let files = Files::new();
    let src = files.write("blob.ctmpl", "[{{ key \"blob\" }}]");
    let out = files.path("blob.out");
    let (code, _, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-template".into(),
        format!("{src}:{}", out.display()),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let mut want = b"[".to_vec();
    want.extend_from_slice(raw);
    want.push(b']');
    assert_eq!(std::fs::read(&out).unwrap(), want);
}

#[test]
fn a_failing_command_exits_with_the_runner_error_code() {
    let agent = TestAgent::dev();
    let files = Files::new();
    let src = files.write("t.ctmpl", "x");
    let spec = format!("{src}:{}:sh -c 'exit 3'", files.path("t.out").display());
    let (code, _, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-template".into(),
        spec,
    ]);
    assert_eq!(code, 14, "{stderr}");
    assert!(
        stderr.contains("command exited with a non-zero exit status"),
        "{stderr}"
    );
    assert_eq!(
        files.read("t.out"),
        "x",
        "the file is written before the command"
    );
    let (code, _, _) = run_once(&["-bogus".into()]);
    assert_eq!(code, 13);
    let (code, _, stderr) = run_once(&["-wait=5s:1s".into(), "-template=in.ctmpl:out".into()]);
    assert_eq!(code, 15);
    assert!(
        stderr.contains("wait: min must be less than max"),
        "{stderr}"
    );
}

#[test]
fn an_hcl_config_with_two_templates_perms_and_backup() {
    let agent = TestAgent::dev();
    register(&agent, "web-1", 8081);
    assert_eq!(agent.put("/v1/kv/motd", "hello").status, 200);
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let up = files.path("upstream.conf");
    std::fs::write(&up, "previous\n").unwrap();
    let motd = files.path("motd");
    let hcl = format!(
        r#"
consul {{
  address = "{addr}"
}}
template {{
  source      = "{src}"
  destination = "{up}"
  command     = "{cmd}"
  perms       = 0600
  backup      = true
}}
template {{
  contents    = "[[ key \"motd\" ]] [[ len (service \"web\") ]]"
  destination = "{motd}"
  left_delimiter  = "[["
  right_delimiter = "]]"
}}
"#,
        addr = addr(&agent),
        src = src,
        up = up.display(),
        cmd = files.command(),
        motd = motd.display()
    );
    let config = files.write("cairn-template.hcl", &hcl);
    let (code, _, stderr) = run_once(&["-config".into(), config, "-once".into()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(files
        .read("upstream.conf")
        .contains("server 10.0.0.81:8081;"));
    assert_eq!(files.read("upstream.conf.bak"), "previous\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&up).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(files.read("motd"), "hello 1");
    assert_eq!(files.runs(), 1);
}

#[test]
fn an_unreachable_agent_is_retried_with_a_log_line() {
    let mut agent = TestAgent::dev();
    agent.kill9();
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let out = files.path("upstream.conf");
    let run = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-consul-retry-attempts=0".into(),
            "-consul-retry-max-backoff=500ms".into(),
            "-template".into(),
            format!("{}:{}", src, out.display()),
        ],
        files.path("template.log"),
    );
    let limit = Duration::from_secs(20);
    assert!(
        eventually(limit, || run.log().contains("(retry attempt 2 after")),
        "{}",
        run.log()
    );
    assert!(!out.exists());
    agent.start();
    register(&agent, "web-1", 8081);
    assert!(
        wait_for(
            &files,
            "upstream.conf",
            |c| c.contains("10.0.0.81:8081"),
            limit
        )
        .is_some(),
        "{}",
        run.log()
    );
}

#[test]
fn wait_collapses_a_burst_of_changes_into_one_render() {
    let agent = TestAgent::dev();
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let out = files.path("upstream.conf");
    let run = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-wait=800ms:5s".into(),
            "-template".into(),
            format!("{src}:{}:{}", out.display(), files.command()),
        ],
        files.path("template.log"),
    );
    let limit = Duration::from_secs(10);
    // The first render does not wait.
    assert!(
        wait_for(&files, "upstream.conf", |c| c.contains("# none"), limit).is_some(),
        "{}",
        run.log()
    );
    for (i, port) in [8081u16, 8082, 8083].into_iter().enumerate() {
        register(&agent, &format!("web-{i}"), port);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        files.read("upstream.conf").contains("# none"),
        "rendered before the changes settled"
    );
    let all = |c: &str| c.contains(":8081;") && c.contains(":8082;") && c.contains(":8083;");
    assert!(
        wait_for(&files, "upstream.conf", all, limit).is_some(),
        "{}",
        run.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        files.runs(),
        2,
        "one render for the start and one for the burst"
    );
}

#[test]
fn a_reload_with_a_broken_template_keeps_the_running_one() {
    let agent = TestAgent::dev();
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let out = files.path("upstream.conf");
    let mut run = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-template".into(),
            format!("{src}:{}", out.display()),
        ],
        files.path("template.log"),
    );
    let limit = Duration::from_secs(10);
    assert!(
        wait_for(&files, "upstream.conf", |c| c.contains("# none"), limit).is_some(),
        "{}",
        run.log()
    );
    let hup = |run: &Running| {
        // SAFETY: signalling the child this test started.
        unsafe {
            libc::kill(run.child.id() as i32, libc::SIGHUP);
        }
    };
    files.write("upstream.ctmpl", "{{ range service \"web\" }\n");
    hup(&run);
    assert!(
        eventually(limit, || run.log().contains("reload failed")),
        "{}",
        run.log()
    );
    assert!(
        run.log().contains(&format!("template: {src}:1:")),
        "{}",
        run.log()
    );
    assert_eq!(run.exited(), None, "{}", run.log());
    register(&agent, "web-1", 8081);
    assert!(
        wait_for(
            &files,
            "upstream.conf",
            |c| c.contains("10.0.0.81:8081"),
            limit
        )
        .is_some(),
        "{}",
        run.log()
    );
    files.write(
        "upstream.ctmpl",
        "{{ range service \"web\" }}{{ .ID }} {{ end }}\n",
    );
    hup(&run);
    assert!(
        wait_for(&files, "upstream.conf", |c| c == "web-1 \n", limit).is_some(),
        "{}",
        run.log()
    );
}

#[test]
fn exec_supervises_a_child_and_exits_with_its_code() {
    let agent = TestAgent::dev();
    let files = Files::new();
    let src = files.write("upstream.ctmpl", UPSTREAM);
    let out = files.path("upstream.conf");
    let spec = format!("{src}:{}", out.display());
    let (code, _, stderr) = run_once(&[
        "-consul-addr".into(),
        addr(&agent),
        "-once".into(),
        "-exec".into(),
        "sh -c 'exit 3'".into(),
        "-template".into(),
        spec.clone(),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        out.exists(),
        "the child starts after the templates rendered"
    );
    // A change re-renders and sends the child its reload signal (SIGHUP).
    let hups = files.path("hups.log");
    let child = format!(
        "trap 'echo hup >> {}' HUP; echo ready > {}; while true; do sleep 0.05; done",
        hups.display(),
        files.path("ready").display()
    );
    let mut run = Running::start(
        &[
            "-consul-addr".into(),
            addr(&agent),
            "-exec".into(),
            child,
            "-template".into(),
            spec,
        ],
        files.path("template.log"),
    );
    let limit = Duration::from_secs(10);
    assert!(
        wait_for(&files, "upstream.conf", |c| c.contains("# none"), limit).is_some(),
        "{}",
        run.log()
    );
    // The child has set its trap.
    assert!(wait_for(&files, "ready", |c| c.contains("ready"), limit).is_some());
    register(&agent, "web-1", 8081);
    assert!(
        eventually(limit, || files.read("hups.log").contains("hup")),
        "{}",
        run.log()
    );
    assert_eq!(run.exited(), None);
    // SIGTERM stops cairn template (and its child) with the interrupt code.
    // SAFETY: signalling the child this test started.
    unsafe {
        libc::kill(run.child.id() as i32, libc::SIGTERM);
    }
    assert!(
        eventually(limit, || run.exited().is_some()),
        "{}",
        run.log()
    );
    assert_eq!(run.exited(), Some(12));
}
