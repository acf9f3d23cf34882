//! Docker checks (`DockerContainerID` + `Args`): the command runs inside
//! the container through the Engine API's exec (create, start attached,
//! inspect), as `docker exec` does. Exit 0 is passing, 1 is warning,
//! anything else critical, as for script checks; standard output and error
//! go to one buffer that keeps the last `OutputMaxSize` bytes. The daemon
//! is the one `DOCKER_HOST` names (by default `/var/run/docker.sock`), and
//! errors from it (no such container, daemon unreachable) are critical with
//! the daemon's text. Like script checks they need `enable_script_checks`.

use super::output::TailBuffer;
use super::script::status_for;
use super::Probe;
use crate::catalog::types::HealthStatus;
use bollard::exec::{CreateExecOptions, StartExecResults};
use futures::StreamExt;
use std::time::Duration;

pub struct DockerProbe {
    pub container_id: String,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub max_output: usize,
}

impl Probe for DockerProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        match tokio::time::timeout(self.timeout, self.exec()).await {
            Ok(Ok(result)) => result,
            Ok(Err(why)) => (HealthStatus::Critical, why),
            Err(_) => (
                HealthStatus::Critical,
                format!(
                    "Timed out ({}) running check",
                    crate::duration::format(self.timeout)
                ),
            ),
        }
    }
}

impl DockerProbe {
    async fn exec(&self) -> Result<(HealthStatus, String), String> {
        let host = crate::registrator::docker::host();
        let client = bollard::Docker::connect_with_host(&host).map_err(|e| e.to_string())?;
        let client = client
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
        let created = client
            .create_exec(
                &self.container_id,
                CreateExecOptions {
                    cmd: Some(self.args.clone()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = TailBuffer::new(self.max_output);
        match client
            .start_exec(&created.id, None)
            .await
            .map_err(|e| e.to_string())?
        {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(chunk) = output.next().await {
                    buf.write(&chunk.map_err(|e| e.to_string())?.into_bytes());
                }
            }
            StartExecResults::Detached => {}
        }
        let inspected = client
            .inspect_exec(&created.id)
            .await
            .map_err(|e| e.to_string())?;
        let code = inspected.exit_code.and_then(|c| i32::try_from(c).ok());
        Ok((status_for(code), buf.render()))
    }
}
