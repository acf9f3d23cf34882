//! The agent's own services and checks: what was registered on this agent,
//! persisted in its data dir (`local-state.json`, written atomically) so a
//! restart keeps them, and the source of truth anti-entropy syncs to the
//! catalog.

use crate::catalog::types::{Check, Service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LocalState {
    pub services: BTreeMap<String, Service>,
    pub checks: BTreeMap<String, Check>,
    /// Node maintenance reason, if on.
    #[serde(default)]
    pub node_maintenance: Option<String>,
}

pub struct LocalStore {
    path: PathBuf,
}

impl LocalStore {
    pub fn new(data_dir: &Path) -> LocalStore {
        LocalStore {
            path: data_dir.join("local-state.json"),
        }
    }

    pub fn load(&self) -> std::io::Result<LocalState> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LocalState::default()),
            Err(e) => Err(e),
        }
    }

    /// Write to a temp file, fsync, rename: a crash leaves the old or the new file.
    pub fn save(&self, state: &LocalState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }
}
