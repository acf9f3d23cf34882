//! The agent's own services and checks: what was registered on this
//! agent, the source of truth that anti-entropy syncs to the catalog.
//!
//! [`Local`] keeps them in memory behind a mutex that is never held across
//! an `.await`, and persists each change as one row in an LMDB environment
//! of their own (`<data-dir>/local`), written by a dedicated thread that
//! commits whatever is queued in one transaction: registering one service
//! among thousands writes that service, not a file of all of them, and
//! nothing blocks the async runtime. A registration waits for its commit
//! ([`Persisted::wait`]) before it is acknowledged, so a service that was
//! acknowledged survives a crash; a check's status change is persisted
//! without waiting.
//!
//! Services and checks defined in config files are marked as such (and the
//! mark persisted), so a reload can tell what the files own from what was
//! registered over the HTTP API; registering an ID over the API takes it
//! from the files.
//!
//! The definitions of the checks (what runners must run) are published on
//! a watch channel ([`Local::runnable`]) whenever one is added, removed or
//! redefined, never on status or output changes.

use crate::catalog::types::{Check, HealthStatus, Service};
use crate::health::CheckToRun;
use crate::store::{open_env, Durability, StoreEnv, StoreError};
use heed::types::{SerdeBincode, Str};
use heed::{CommitOrAbort, Database};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

#[derive(Debug, Clone, Default)]
pub struct LocalState {
    pub services: BTreeMap<String, Service>,
    pub checks: BTreeMap<String, Check>,
    /// IDs of the services and checks config files define.
    pub from_config: BTreeSet<Owned>,
}

/// A service or check a config file defines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owned {
    Service(String),
    Check(String),
}

impl Owned {
    fn key(&self) -> String {
        match self {
            Owned::Service(id) => format!("service/{id}"),
            Owned::Check(id) => format!("check/{id}"),
        }
    }

    fn from_key(key: &str) -> Option<Owned> {
        if let Some(id) = key.strip_prefix("service/") {
            Some(Owned::Service(id.to_string()))
        } else {
            key.strip_prefix("check/")
                .map(|id| Owned::Check(id.to_string()))
        }
    }
}

/// Every check of this agent by ID, as runners see them.
pub type RunSet = Arc<BTreeMap<String, CheckToRun>>;

enum Op {
    PutService(Service),
    DeleteService(String),
    PutCheck(Check),
    DeleteCheck(String),
    Own(Owned),
    Disown(Owned),
}

struct Job {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The commit of one change; await it to know the change is on disk.
#[must_use = "a change is only durable once `wait` returns"]
pub struct Persisted(Option<oneshot::Receiver<Result<(), String>>>);

impl Persisted {
    pub fn none() -> Persisted {
        Persisted(None)
    }

    pub async fn wait(self) -> std::io::Result<()> {
        match self.0 {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(std::io::Error::other(e)),
                Err(_) => Err(std::io::Error::other("local state writer stopped")),
            },
        }
    }
}

type Table<T> = Database<'static, Str, SerdeBincode<T>>;

/// The LMDB side: three tables and the writer thread.
struct LocalStore {
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LocalStore {
    /// Lets the writer finish what is queued and close the environment.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Jobs folded into one transaction at most.
const MAX_BATCH: usize = 1024;

impl LocalStore {
    fn open(dir: &Path) -> Result<(LocalStore, LocalState), StoreError> {
        let env = open_env(dir, 4, Durability::Full)?;
        let wtxn = env.write_txn()?;
        let (services, checks, owned): (Table<Service>, Table<Check>, Table<()>) = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> Result<_, heed::Error> {
                Ok(CommitOrAbort::<_, ()>::Commit((
                    dbo.create_database(wtxn, Some("services"))?,
                    dbo.create_database(wtxn, Some("checks"))?,
                    dbo.create_database(wtxn, Some("from_config"))?,
                )))
            })?
            .unwrap_commit();
        let mut state = LocalState::default();
        {
            let txn = env.read_txn()?;
            for r in services.iter(&txn)? {
                let (id, s) = r?;
                state.services.insert(id.to_string(), s);
            }
            for r in checks.iter(&txn)? {
                let (id, c) = r?;
                state.checks.insert(id.to_string(), c);
            }
            for r in owned.iter(&txn)? {
                let (key, ()) = r?;
                state.from_config.extend(Owned::from_key(key));
            }
        }
        let (writer, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("local-state".into())
            .spawn(move || {
                write_loop(
                    env,
                    Tables {
                        services,
                        checks,
                        owned,
                    },
                    jobs,
                )
            })?;
        Ok((
            LocalStore {
                writer: Some(writer),
                thread: Some(thread),
            },
            state,
        ))
    }

    fn submit(&self, ops: Vec<Op>, wait: bool) -> Persisted {
        if ops.is_empty() {
            return Persisted::none();
        }
        let (done, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let sent = self
            .writer
            .as_ref()
            .is_some_and(|w| w.send(Job { ops, done }).is_ok());
        if !sent {
            tracing::error!("local state writer stopped; the change is not persisted");
        }
        Persisted(rx)
    }
}

struct Tables {
    services: Table<Service>,
    checks: Table<Check>,
    owned: Table<()>,
}

fn write_loop(env: StoreEnv, t: Tables, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<(), heed::Error> {
            let mut txn = env.write_txn()?;
            for job in &batch {
                for op in &job.ops {
                    match op {
                        Op::PutService(s) => t.services.put(&mut txn, &s.id, s)?,
                        Op::DeleteService(id) => {
                            t.services.delete(&mut txn, id)?;
                        }
                        Op::PutCheck(c) => t.checks.put(&mut txn, &c.check_id, c)?,
                        Op::DeleteCheck(id) => {
                            t.checks.delete(&mut txn, id)?;
                        }
                        Op::Own(o) => t.owned.put(&mut txn, &o.key(), &())?,
                        Op::Disown(o) => {
                            t.owned.delete(&mut txn, &o.key())?;
                        }
                    }
                }
            }
            txn.commit()
        })();
        let result = result.map_err(|e| format!("failed to persist local state: {e}"));
        if let Err(e) = &result {
            tracing::error!("{e}");
        }
        for job in batch {
            if let Some(done) = job.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

/// A change being made to local state; see [`Local::edit`].
pub struct Edit<'a> {
    state: &'a mut LocalState,
    ops: Vec<Op>,
    runnable_changed: bool,
}

impl Edit<'_> {
    pub fn state(&self) -> &LocalState {
        self.state
    }

    /// Adds or replaces a service; it is no longer the config files'
    /// until [`Edit::own`] says so again.
    pub fn put_service(&mut self, svc: Service) {
        self.disown(Owned::Service(svc.id.clone()));
        self.ops.push(Op::PutService(svc.clone()));
        self.state.services.insert(svc.id.clone(), svc);
    }

    /// Marks a service or check as defined by config files.
    pub fn own(&mut self, o: Owned) {
        if self.state.from_config.insert(o.clone()) {
            self.ops.push(Op::Own(o));
        }
    }

    fn disown(&mut self, o: Owned) {
        if self.state.from_config.remove(&o) {
            self.ops.push(Op::Disown(o));
        }
    }

    /// Removes a service and its checks; false if it did not exist.
    pub fn remove_service(&mut self, id: &str) -> bool {
        if self.state.services.remove(id).is_none() {
            return false;
        }
        self.disown(Owned::Service(id.to_string()));
        self.ops.push(Op::DeleteService(id.to_string()));
        let gone: Vec<String> = self
            .state
            .checks
            .values()
            .filter(|c| c.service_id == id)
            .map(|c| c.check_id.clone())
            .collect();
        for c in gone {
            self.remove_check(&c);
        }
        true
    }

    /// Adds or replaces a check; like [`Edit::put_service`], it is no
    /// longer the config files'.
    pub fn put_check(&mut self, check: Check) {
        self.disown(Owned::Check(check.check_id.clone()));
        let redefined = self.state.checks.get(&check.check_id).is_none_or(|old| {
            old.definition != check.definition || old.service_id != check.service_id
        });
        self.runnable_changed |= redefined;
        self.ops.push(Op::PutCheck(check.clone()));
        self.state.checks.insert(check.check_id.clone(), check);
    }

    /// False if it did not exist.
    pub fn remove_check(&mut self, id: &str) -> bool {
        if self.state.checks.remove(id).is_none() {
            return false;
        }
        self.disown(Owned::Check(id.to_string()));
        self.runnable_changed = true;
        self.ops.push(Op::DeleteCheck(id.to_string()));
        true
    }
}

/// The agent's local services and checks.
pub struct Local {
    state: parking_lot::Mutex<LocalState>,
    store: LocalStore,
    runnable: watch::Sender<RunSet>,
}

fn runnable_of(state: &LocalState) -> RunSet {
    Arc::new(
        state
            .checks
            .values()
            .map(|c| {
                (
                    c.check_id.clone(),
                    CheckToRun {
                        definition: c.definition.clone(),
                        service_id: c.service_id.clone(),
                    },
                )
            })
            .collect(),
    )
}

impl Local {
    /// Opens (or creates) `<data-dir>/local` and loads what it holds.
    pub fn open(data_dir: &Path) -> Result<Local, StoreError> {
        let (store, state) = LocalStore::open(&data_dir.join("local"))?;
        let runnable = watch::channel(runnable_of(&state)).0;
        Ok(Local {
            state: parking_lot::Mutex::new(state),
            store,
            runnable,
        })
    }

    /// Checks by ID with their definitions; changes when one is added,
    /// removed or redefined.
    pub fn runnable(&self) -> watch::Receiver<RunSet> {
        self.runnable.subscribe()
    }

    /// Makes a change under the lock and persists it; `durable` makes the
    /// returned [`Persisted`] wait for the commit. `f` may decide to change
    /// nothing (its result says why).
    pub fn edit<R>(&self, durable: bool, f: impl FnOnce(&mut Edit<'_>) -> R) -> (R, Persisted) {
        let mut state = self.state.lock();
        let mut edit = Edit {
            state: &mut state,
            ops: Vec::new(),
            runnable_changed: false,
        };
        let r = f(&mut edit);
        let Edit {
            ops,
            runnable_changed,
            ..
        } = edit;
        let persisted = self.store.submit(ops, durable);
        if runnable_changed {
            self.runnable.send_replace(runnable_of(&state));
        }
        (r, persisted)
    }

    /// Sets a check's status and output. Returns whether anything changed
    /// and whether the status did; a status change is persisted (without
    /// waiting), an output change alone is not.
    pub fn set_check_status(&self, id: &str, status: HealthStatus, output: String) -> Option<bool> {
        let mut state = self.state.lock();
        let cur = state.checks.get_mut(id)?;
        if cur.status == status && cur.output == output {
            return None;
        }
        let status_changed = cur.status != status;
        cur.status = status;
        cur.output = output;
        if status_changed {
            let _ = self.store.submit(vec![Op::PutCheck(cur.clone())], false);
        }
        Some(status_changed)
    }

    pub fn snapshot(&self) -> LocalState {
        self.state.lock().clone()
    }

    pub fn check(&self, id: &str) -> Option<Check> {
        self.state.lock().checks.get(id).cloned()
    }

    pub fn checks(&self) -> Vec<Check> {
        self.state.lock().checks.values().cloned().collect()
    }

    pub fn checks_by_id(&self, ids: &[String]) -> Vec<(String, Option<Check>)> {
        let state = self.state.lock();
        ids.iter()
            .map(|id| (id.clone(), state.checks.get(id).cloned()))
            .collect()
    }

    /// One service and its checks.
    pub fn snapshot_service(&self, id: &str) -> Option<(Service, Vec<Check>)> {
        let state = self.state.lock();
        let svc = state.services.get(id)?.clone();
        let checks = state
            .checks
            .values()
            .filter(|c| c.service_id == id)
            .cloned()
            .collect();
        Some((svc, checks))
    }

    pub fn service(&self, id: &str) -> Option<Service> {
        self.state.lock().services.get(id).cloned()
    }

    pub fn services(&self) -> Vec<Service> {
        self.state.lock().services.values().cloned().collect()
    }

    /// How many services and checks there are.
    pub fn counts(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.services.len(), s.checks.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::{CheckDefinition, CheckKind};
    use std::time::Duration;

    fn svc(id: &str) -> Service {
        Service {
            id: id.into(),
            name: "web".into(),
            port: 80,
            ..Service::default()
        }
    }

    fn check(id: &str, service: &str, ttl_secs: u64) -> Check {
        Check {
            check_id: id.into(),
            service_id: service.into(),
            definition: CheckDefinition {
                kind: CheckKind::Ttl {
                    ttl: Duration::from_secs(ttl_secs),
                },
                ..CheckDefinition::default()
            },
            ..Check::default()
        }
    }

    #[tokio::test]
    async fn changes_survive_a_reopen_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        {
            let local = Local::open(dir.path()).unwrap();
            let ((), p) = local.edit(true, |e| {
                for i in 0..100 {
                    e.put_service(svc(&format!("s{i}")));
                }
                e.put_check(check("c1", "s1", 10));
            });
            p.wait().await.unwrap();
            let (removed, p) = local.edit(true, |e| e.remove_service("s1"));
            assert!(removed);
            p.wait().await.unwrap();
            let ((), p) = local.edit(true, |e| e.put_check(check("c2", "s2", 10)));
            p.wait().await.unwrap();
            assert_eq!(
                local.set_check_status("c2", HealthStatus::Critical, "down".into()),
                Some(true)
            );
            // A later durable edit is committed after the status change.
            let ((), p) = local.edit(true, |e| e.put_service(svc("s100")));
            p.wait().await.unwrap();
        }
        let local = Local::open(dir.path()).unwrap();
        let state = local.snapshot();
        assert_eq!(state.services.len(), 100, "s1 gone, s100 added");
        assert!(!state.checks.contains_key("c1"), "removed with its service");
        assert_eq!(state.checks["c2"].status, HealthStatus::Critical);
    }

    #[tokio::test]
    async fn runners_hear_of_definitions_not_of_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let local = Local::open(dir.path()).unwrap();
        let mut rx = local.runnable();
        rx.borrow_and_update();
        let ((), _) = local.edit(false, |e| e.put_check(check("c", "", 10)));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().len(), 1);
        local.set_check_status("c", HealthStatus::Critical, "x".into());
        assert!(
            !rx.has_changed().unwrap(),
            "status changes are not definitions"
        );
        // Re-registering the same definition is not a change either.
        let ((), _) = local.edit(false, |e| e.put_check(check("c", "", 10)));
        assert!(!rx.has_changed().unwrap());
        let ((), _) = local.edit(false, |e| e.put_check(check("c", "", 20)));
        assert!(rx.has_changed().unwrap());
    }
}
