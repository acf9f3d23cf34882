//! `cairn lock [options] <prefix> <child...>`: runs a child command while
//! holding a KV lock, as `consul lock` does. The lock is the key
//! `<prefix>/.lock`, acquired through a session on this agent's node (TTL
//! 15 s, renewed at half of it, bound to `serfHealth`), so a dead holder's
//! lock is freed when its node fails or its session lapses. When the child
//! exits the lock is released and the session destroyed; the exit code is
//! the child's. If the lock is lost while the child runs, the child is
//! terminated.

use super::flags::{Flag, FlagSet};
use super::http::{with_http, HttpArgs};
use super::shell;
use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Consul's `LockFlagValue`: marks a key as a `consul lock` lock.
const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;
const SESSION_TTL: &str = "15s";
const RENEW_EVERY: Duration = Duration::from_millis(7500);
/// Pause between acquire attempts on a free key that refused us (lock-delay).
const RETRY: Duration = Duration::from_millis(250);

const SYNOPSIS: &str = "Usage: cairn lock [options] prefix child...

  Acquires a lock on <prefix>/.lock through a session, runs the child
  command with /bin/sh -c while holding it, and releases it afterwards.
  The exit code is the child's.
";

#[derive(Default)]
struct LockArgs {
    http: HttpArgs,
    name: Option<String>,
    holders: Option<i32>,
    timeout: Option<Duration>,
    verbose: bool,
}

with_http!(LockArgs);

fn flag_set() -> FlagSet<LockArgs> {
    let mut flags = super::http::flags::<LockArgs>();
    flags.extend([
        Flag::text("name", "The session's `name`.", |o: &mut LockArgs, v| {
            o.name = Some(v)
        }),
        Flag::int(
            "n",
            "The `number` of holders; only 1 (a lock, not a semaphore) is supported.",
            |o, v| o.holders = Some(v),
        ),
        Flag::duration(
            "timeout",
            "Give up acquiring the lock after this long; 0 waits forever.",
            |o, v| o.timeout = Some(v),
        ),
        Flag::bool("verbose", "Log progress to stderr.", |o, v| o.verbose = v),
        Flag::int(
            "monitor-retry",
            "Accepted for compatibility; the lock is watched until the child exits.",
            |_, _| {},
        ),
        Flag::bool(
            "pass-stdin",
            "Accepted for compatibility; the child inherits stdin.",
            |_, _| {},
        ),
        Flag::bool(
            "shell",
            "Accepted for compatibility; the child always runs under /bin/sh -c.",
            |_, _| {},
        ),
    ]);
    FlagSet::new(SYNOPSIS, flags)
}

struct Lock {
    http: reqwest::blocking::Client,
    base: String,
    key: String,
    session: String,
    verbose: bool,
}

impl Lock {
    fn log(&self, msg: &str) {
        if self.verbose {
            eprintln!("Lock: {msg}");
        }
    }

    fn url(&self, query: &str) -> String {
        format!("{}/v1/kv/{}?{query}", self.base, self.key)
    }

    /// One acquire attempt: `true` when we hold the lock.
    fn try_acquire(&self) -> Result<bool> {
        let resp = self
            .http
            .put(self.url(&format!("acquire={}&flags={LOCK_FLAG_VALUE}", self.session)))
            .send()?;
        let status = resp.status();
        let body = resp.text().unwrap_or_default();
        if !status.is_success() {
            return Err(anyhow!(
                "Unexpected response code: {} ({})",
                status.as_u16(),
                body.trim()
            ));
        }
        Ok(body.trim() == "true")
    }

    /// Blocks until the key's holder may have changed; returns the holder
    /// and the index to block on next.
    fn wait_change(&self, index: u64) -> Result<(Option<String>, u64)> {
        let resp = self
            .http
            .get(self.url(&format!("index={index}&wait=30s")))
            .send()?;
        let next = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if resp.status().as_u16() == 404 {
            return Ok((None, next));
        }
        let body: Value = resp.json().unwrap_or(Value::Null);
        let holder = body
            .get(0)
            .and_then(|e| e.get("Session"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok((holder, next))
    }

    fn acquire(&self, timeout: Option<Duration>) -> Result<bool> {
        let started = Instant::now();
        let mut index = 0;
        loop {
            if self.try_acquire()? {
                return Ok(true);
            }
            if timeout.is_some_and(|t| started.elapsed() >= t) {
                return Ok(false);
            }
            let (holder, next) = self.wait_change(index)?;
            if holder.is_none() {
                // Free but refused: a lock-delay is running. Retry shortly.
                std::thread::sleep(RETRY);
            }
            index = if next < index { 0 } else { next };
        }
    }

    fn release(&self) {
        let _ = self
            .http
            .put(self.url(&format!("release={}&flags={LOCK_FLAG_VALUE}", self.session)))
            .send();
        let _ = self
            .http
            .put(format!("{}/v1/session/destroy/{}", self.base, self.session))
            .send();
    }
}

pub fn run(args: Vec<String>) -> Result<i32> {
    let set = flag_set();
    let (o, rest) = match set.parse_or_report(&args) {
        Ok(parsed) => parsed,
        Err(code) => return Ok(code),
    };
    if rest.len() < 2 {
        eprint!("{}", set.usage());
        return Ok(1);
    }
    if o.holders.is_some_and(|n| n != 1) {
        return Err(anyhow!("cairn lock supports only -n=1 (a single holder)"));
    }
    let timeout = o.timeout.filter(|d| !d.is_zero());
    let prefix = rest[0].trim_end_matches('/').to_string();
    let script = rest[1..].join(" ");
    let base = o.http.base();
    let http = o.http.client(Duration::from_secs(60))?;

    let name = o
        .name
        .unwrap_or_else(|| format!("Consul lock for '{script}' at '{prefix}'"));
    let body = serde_json::json!({ "Name": name, "TTL": SESSION_TTL, "Behavior": "release" });
    let resp = http
        .put(format!("{base}/v1/session/create"))
        .json(&body)
        .send()
        .context("creating session")?;
    if !resp.status().is_success() {
        let code = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        return Err(anyhow!(
            "failed to create session: Unexpected response code: {code} ({})",
            text.trim()
        ));
    }
    let session = resp
        .json::<Value>()?
        .get("ID")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("session create returned no ID"))?
        .to_string();
    let lock = Arc::new(Lock {
        http,
        base: base.clone(),
        key: format!("{prefix}/.lock"),
        session,
        verbose: o.verbose,
    });

    // Keep the session alive for as long as we run.
    let done = Arc::new(AtomicBool::new(false));
    {
        let lock = lock.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(RENEW_EVERY);
                let _ = lock
                    .http
                    .put(format!("{}/v1/session/renew/{}", lock.base, lock.session))
                    .send();
            }
        });
    }

    lock.log(&format!("Attempting lock at path: {}", lock.key));
    match lock.acquire(timeout) {
        Ok(true) => {}
        Ok(false) => {
            lock.release();
            eprintln!("Shutdown triggered or timeout during lock acquisition");
            return Ok(1);
        }
        Err(e) => {
            lock.release();
            return Err(e.context("Lock acquisition failed"));
        }
    }
    lock.log("Lock acquisition succeeded");

    let mut child = shell(&script)
        .spawn()
        .with_context(|| format!("Error starting handler: {script}"))?;
    let pid = child.id();

    // Watch the lock while the child runs; terminate the child if it is lost.
    let lost = Arc::new(AtomicBool::new(false));
    {
        let lock = lock.clone();
        let lost = lost.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut index = 0;
            while !done.load(Ordering::Relaxed) {
                match lock.wait_change(index) {
                    Ok((holder, next)) => {
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                        if holder.as_deref() != Some(lock.session.as_str()) {
                            lost.store(true, Ordering::Relaxed);
                            // SAFETY: signalling our own child by its pid.
                            unsafe {
                                libc::kill(pid as i32, libc::SIGTERM);
                            }
                            return;
                        }
                        index = next;
                    }
                    Err(_) => std::thread::sleep(Duration::from_secs(1)),
                }
            }
        });
    }

    let status = child.wait().context("waiting for child")?;
    done.store(true, Ordering::Relaxed);
    if lost.load(Ordering::Relaxed) {
        eprintln!("Lock lost, killed child");
    }
    lock.log("Cleanup succeeded");
    lock.release();
    Ok(status.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_childs_flags_are_left_alone() {
        let mut o = LockArgs::default();
        let rest = flag_set()
            .parse(
                &mut o,
                &args(&[
                    "-n=2", "-timeout", "5s", "-verbose", "prefix", "ls", "-l", "-n=3",
                ]),
            )
            .unwrap();
        assert_eq!(o.holders, Some(2));
        assert_eq!(o.timeout, Some(Duration::from_secs(5)));
        assert!(o.verbose);
        assert_eq!(rest, ["prefix", "ls", "-l", "-n=3"]);
    }
}
