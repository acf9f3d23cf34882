//! Script checks (`Args`/`ScriptArgs`): the program runs without a shell,
//! in its own process group; exit 0 is passing, 1 is warning, anything else
//! (or a signal) is critical. Standard output and error go to one buffer
//! that keeps the last `OutputMaxSize` bytes. At the timeout (default 30 s)
//! the whole group is killed, so children the script started die with it.

use super::output::TailBuffer;
use super::Probe;
use crate::catalog::types::HealthStatus;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

pub struct ScriptProbe {
    pub args: Vec<String>,
    pub timeout: Duration,
    pub max_output: usize,
}

/// The status a script's exit code stands for.
pub fn status_for(code: Option<i32>) -> HealthStatus {
    match code {
        Some(0) => HealthStatus::Passing,
        Some(1) => HealthStatus::Warning,
        _ => HealthStatus::Critical,
    }
}

/// Kills a process group when dropped (a timed-out or cancelled run).
struct GroupKill(Option<i32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: killpg only sends a signal; pgid is the group this
            // probe created for its own child.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn drain(mut from: impl AsyncRead + Unpin, into: &Mutex<TailBuffer>) {
    let mut chunk = [0u8; 4096];
    loop {
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut buf) = into.lock() {
                    buf.write(&chunk[..n]);
                }
            }
        }
    }
}

impl Probe for ScriptProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        let Some((program, rest)) = self.args.split_first() else {
            return (HealthStatus::Critical, "no script arguments".into());
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return (HealthStatus::Critical, format!("Failed to invoke: {e}")),
        };
        let mut group = GroupKill(child.id().and_then(|id| i32::try_from(id).ok()));
        let buf = Mutex::new(TailBuffer::new(self.max_output));
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let mut readers = std::pin::pin!(async {
            if let Some(o) = stdout {
                let e = stderr;
                tokio::join!(drain(o, &buf), async {
                    if let Some(e) = e {
                        drain(e, &buf).await
                    }
                });
            }
        });
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut readers_done = false;
        let exit = loop {
            tokio::select! {
                r = child.wait() => break Some(r),
                _ = &mut readers, if !readers_done => readers_done = true,
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        let status = match exit {
            None => {
                group.kill();
                let _ = child.wait().await;
                return (
                    HealthStatus::Critical,
                    format!(
                        "Timed out ({}) running check",
                        crate::duration::format(self.timeout)
                    ),
                );
            }
            Some(Err(e)) => return (HealthStatus::Critical, e.to_string()),
            Some(Ok(status)) => status,
        };
        // The script is gone; whatever it wrote is in the pipes. Processes it
        // left behind may hold them open, so do not wait on them for long.
        group.0 = None;
        if !readers_done {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut readers).await;
        }
        let output = buf.lock().map(|b| b.render()).unwrap_or_default();
        (status_for(status.code()), output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_map_to_statuses() {
        assert_eq!(status_for(Some(0)), HealthStatus::Passing);
        assert_eq!(status_for(Some(1)), HealthStatus::Warning);
        assert_eq!(status_for(Some(2)), HealthStatus::Critical);
        assert_eq!(status_for(None), HealthStatus::Critical);
    }

    #[tokio::test]
    async fn output_and_exit_code_are_reported() {
        let p = ScriptProbe {
            args: vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 1".into(),
            ],
            timeout: Duration::from_secs(10),
            max_output: 4096,
        };
        let (status, output) = p.probe().await;
        assert_eq!(status, HealthStatus::Warning);
        assert!(
            output.contains("out\n") && output.contains("err\n"),
            "{output:?}"
        );
    }

    #[tokio::test]
    async fn the_process_group_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let p = ScriptProbe {
            args: vec!["sh".into(), "-c".into(), script],
            timeout: Duration::from_millis(300),
            max_output: 4096,
        };
        let (status, output) = p.probe().await;
        assert_eq!(status, HealthStatus::Critical);
        assert_eq!(output, "Timed out (300ms) running check");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "a child of the script outlived the timeout"
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_critical() {
        let p = ScriptProbe {
            args: vec!["/nonexistent/check".into()],
            timeout: Duration::from_secs(1),
            max_output: 4096,
        };
        let (status, output) = p.probe().await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(output.starts_with("Failed to invoke"), "{output}");
    }
}
