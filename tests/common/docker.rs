//! Docker helpers for tests that run real containers: a tiny static web
//! server (`tests/support/web_server.rs`, compiled here with `rustc -C
//! target-feature=+crt-static`) in an image built `FROM scratch`, so nothing
//! is pulled; every container and the image go when the guard drops.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// Runs `docker <args>`; the trimmed stdout, or the failure's stderr.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker must be installed: this test runs real containers");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn docker_ok(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The image and containers this test made, removed on drop.
pub struct Made {
    /// Names of containers this guard made start with this.
    pub prefix: String,
    pub image: String,
    containers: Mutex<Vec<String>>,
}

impl Made {
    /// Builds the web server image under a tag unique to this run.
    pub fn image(dir: &Path, test: &str) -> Made {
        let prefix = format!("c{test}{}", std::process::id());
        let made = Made {
            image: format!("cairn-{test}-test/{prefix}:1"),
            prefix,
            containers: Mutex::new(Vec::new()),
        };
        let ctx = dir.join("image");
        std::fs::create_dir_all(&ctx).expect("image dir");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/web_server.rs");
        let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
        let out = Command::new(&rustc)
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
            ])
            .args([
                "-C",
                "strip=symbols",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .arg("-o")
            .arg(ctx.join("web_server"))
            .arg(&source)
            .output()
            .expect("rustc must be on PATH to build the test image");
        assert!(
            out.status.success(),
            "building the static web server failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY web_server /web_server\nENTRYPOINT [\"/web_server\"]\n",
        )
        .expect("Dockerfile");
        docker_ok(&["build", "-q", "-t", &made.image, &ctx.to_string_lossy()]);
        made
    }

    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// `docker run -d --init --name <prefix>-<short> <args> <image>`.
    pub fn run(&self, short: &str, args: &[&str]) -> String {
        let name = self.name(short);
        self.containers
            .lock()
            .expect("container list")
            .push(name.clone());
        let mut all = vec!["run", "-d", "--init", "--name", &name];
        all.extend_from_slice(args);
        all.push(&self.image);
        docker_ok(&all);
        name
    }

    /// The host port Docker published `port` (`8080/tcp`) on.
    pub fn host_port(&self, name: &str, port: &str) -> u16 {
        let out = docker_ok(&["port", name, port]);
        let first = out.lines().next().unwrap_or_default();
        first
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("docker port {name} {port}: {out:?}"))
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        let names = self
            .containers
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}
