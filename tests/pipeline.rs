//! The Docker pipeline end to end, every part real: a cairn agent,
//! `cairn registrator` on the Docker socket, web containers (a static
//! server in `FROM scratch` images, answering with their names), `cairn
//! template` rendering an nginx upstream, and Debian's nginx reloaded by it.
//! Requests through nginx reach every container; a stopped container leaves
//! nginx, and a new one joins, within 2 s; restarting registrator neither
//! duplicates nor drops a service.
//!
//! nginx proxies with `proxy_next_upstream off`, so a request sent to a
//! container that is gone fails instead of being retried elsewhere: the
//! times measured are the pipeline's (Docker event, registration, blocking
//! query, render, reload), not nginx papering over a dead upstream. With
//! `CAIRN_PIPELINE_TIMES=<file>` the times are appended there as JSON
//! (benches/pipeline.sh collects them into docs/benchmarks.md).

mod common;

use common::docker::{docker_ok, Made};
use common::*;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const TEMPLATE: &str = r#"upstream web { {{range service "web"}}
  server {{.Address}}:{{.Port}};{{else}}
  server 127.0.0.1:65535; # none{{end}}
}
"#;

/// A child process killed on drop.
struct Proc(Option<Child>);

impl Proc {
    fn start(args: &[String], log: &Path) -> Proc {
        Proc(Some(spawn_logged(args, log, &[])))
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The nginx master this test started, stopped on drop.
struct Nginx {
    prefix: String,
    conf: String,
}

impl Nginx {
    fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::new("nginx");
        c.args(["-p", &self.prefix, "-c", &self.conf]).args(extra);
        c
    }

    fn reload_command(&self) -> String {
        format!("nginx -p {} -c {} -s reload", self.prefix, self.conf)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.cmd(&["-s", "stop"]).output();
    }
}

/// One request through nginx: the body, or None for an error status or a
/// failed connection.
fn through(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    if !out.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(out.split("\r\n\r\n").nth(1)?.trim().to_string())
}

/// What `n` requests through nginx were answered by (`"error"` for a failed one).
fn sample(port: u16, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| through(port).unwrap_or_else(|| "error".into()))
        .collect()
}

/// Waits until `n` requests in a row are all answered by members of
/// `want` and every member of `want` answered at least once; returns how
/// long it took from `since`.
fn until_served_by(port: u16, want: &[&str], since: Instant, limit: Duration) -> Duration {
    loop {
        let got = sample(port, 12);
        let seen: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = want.iter().copied().collect();
        if seen == wanted {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "nginx still answers from {seen:?}, want {wanted:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn web_services(agent: &TestAgent) -> Vec<(String, u16)> {
    let v = agent.get_ok("/v1/agent/services").json();
    let mut out: Vec<(String, u16)> = v
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["Service"] == "web")
        .map(|s| {
            (
                s["ID"].as_str().unwrap().to_string(),
                s["Port"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn containers_register_themselves_and_nginx_follows() {
    let nginx_present = Command::new("nginx").arg("-v").output().is_ok();
    assert!(
        nginx_present,
        "nginx must be installed (scripts/test installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let made = Made::image(dir, "pipeline");
    let agent = TestAgent::dev();
    let consul = format!("127.0.0.1:{}", agent.ports.http);

    let registrator_args = || {
        vec![
            "registrator".to_string(),
            "-ip".into(),
            "127.0.0.1".into(),
            format!("consul://{consul}"),
        ]
    };
    let mut registrator = Proc::start(&registrator_args(), &dir.join("registrator.log"));
    let web = |short: &str| {
        made.run(
            short,
            &[
                "-e",
                &format!("NAME={short}"),
                "-e",
                "SERVICE_NAME=web",
                "-e",
                "LISTEN=8080",
                "-p",
                "127.0.0.1::8080",
            ],
        )
    };
    let web1 = web("web1");
    let _web2 = web("web2");
    assert!(
        eventually(Duration::from_secs(10), || web_services(&agent).len() == 2),
        "registrator did not register both containers; log:\n{}",
        std::fs::read_to_string(dir.join("registrator.log")).unwrap_or_default()
    );

    // nginx with the upstream cairn template renders.
    for d in ["tmp", "logs"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let ngx_port = free_port();
    let upstream = dir.join("upstream.conf");
    let ctmpl = dir.join("upstream.ctmpl");
    std::fs::write(&ctmpl, TEMPLATE).unwrap();
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
             fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
             include {up};\n\
             server {{\n    listen 127.0.0.1:{ngx_port};\n    location / {{\n      proxy_pass http://web;\n\
             proxy_next_upstream off;\n      proxy_connect_timeout 1s;\n    }}\n  }}\n}}\n",
            up = upstream.display()
        ),
    )
    .unwrap();
    let nginx = Nginx {
        prefix: dir.display().to_string(),
        conf: conf.display().to_string(),
    };
    let template_spec = format!("{}:{}", ctmpl.display(), upstream.display());
    let once = Command::new(BIN)
        .args([
            "template",
            "-once",
            "-consul-addr",
            &consul,
            "-template",
            &template_spec,
        ])
        .output()
        .unwrap();
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    let started = nginx.cmd(&[]).output().unwrap();
    assert!(
        started.status.success(),
        "nginx: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let _template = Proc::start(
        &[
            "template".to_string(),
            "-consul-addr".into(),
            consul.clone(),
            "-template".into(),
            format!("{template_spec}:{}", nginx.reload_command()),
        ],
        &dir.join("template.log"),
    );
    until_served_by(
        ngx_port,
        &["web1", "web2"],
        Instant::now(),
        Duration::from_secs(10),
    );

    // A stopped container leaves nginx within 2 s.
    let stopped = Instant::now();
    docker_ok(&["stop", "-t", "1", &web1]);
    let leave = until_served_by(ngx_port, &["web2"], stopped, Duration::from_secs(2));

    // A new container joins within 2 s of `docker run`.
    let run = Instant::now();
    let _web3 = web("web3");
    let join = until_served_by(ngx_port, &["web2", "web3"], run, Duration::from_secs(2));

    // Restarting registrator neither duplicates nor drops a service.
    let before = web_services(&agent);
    assert_eq!(before.len(), 2, "{before:?}");
    registrator.stop();
    let mut registrator = Proc::start(&registrator_args(), &dir.join("registrator.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(web_services(&agent), before, "after a registrator restart");
    until_served_by(
        ngx_port,
        &["web2", "web3"],
        Instant::now(),
        Duration::from_secs(2),
    );
    registrator.stop();

    println!(
        "pipeline: stop -> out of nginx {} ms, run -> in nginx {} ms",
        leave.as_millis(),
        join.as_millis()
    );
    if let Ok(path) = std::env::var("CAIRN_PIPELINE_TIMES") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(
            f,
            "{{\"leave_ms\":{},\"join_ms\":{}}}",
            leave.as_millis(),
            join.as_millis()
        )
        .unwrap();
    }
}
