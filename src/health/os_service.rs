//! OSService checks (`OSService`): whether a service of the operating
//! system is running. Consul asks Windows' service manager; on Linux the
//! service manager is systemd, so cairn asks it the same question with
//! `systemctl is-active <service>`: active is passing (`Service "x" is
//! healthy`), anything else critical with Consul's `OS Service unhealthy`
//! and the state systemd reported; a `systemctl` that cannot be run is
//! critical with the reason. The timeout is the check's (default 30 s, as
//! Consul's).

use super::Probe;
use crate::catalog::types::HealthStatus;
use std::process::Stdio;
use std::time::Duration;

pub struct OsServiceProbe {
    pub service: String,
    pub timeout: Duration,
}

impl Probe for OsServiceProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        let mut cmd = tokio::process::Command::new("systemctl");
        cmd.args(["is-active", "--", &self.service])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let run = tokio::time::timeout(self.timeout, cmd.output()).await;
        match run {
            Err(_) => (
                HealthStatus::Critical,
                format!(
                    "Timed out ({}) running check",
                    crate::duration::format(self.timeout)
                ),
            ),
            Ok(Err(e)) => (
                HealthStatus::Critical,
                format!("error querying service status: systemctl: {e}"),
            ),
            Ok(Ok(out)) if out.status.success() => (
                HealthStatus::Passing,
                format!("Service \"{}\" is healthy", self.service),
            ),
            Ok(Ok(out)) => {
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let state = if state.is_empty() {
                    "unknown".into()
                } else {
                    state
                };
                (
                    HealthStatus::Critical,
                    format!("service status: {state} - OS Service unhealthy"),
                )
            }
        }
    }
}
