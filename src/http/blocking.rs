//! Reads with Consul's consistency and blocking semantics. A read runs
//! against one LMDB read transaction; with `?index=N` it is re-run after
//! every change to the watched part of the catalog until its own index
//! passes N or `?wait` runs out (then the latest result is returned, as
//! Consul does on timeout). The index a query reports is never 0.

use super::wire::{ApiError, Consistency, ReadOpts};
use crate::agent::Agent;
use crate::catalog::query::Reader;
use crate::catalog::Changes;
use tokio::time::Instant;

/// Which change counter can move a query's result.
#[derive(Debug, Clone, Copy)]
pub enum Watch {
    Catalog,
    Kv,
}

impl Watch {
    fn pick(self, c: &Changes) -> u64 {
        match self {
            Watch::Catalog => c.catalog,
            Watch::Kv => c.kv,
        }
    }
}

/// Checks the read may be served: default and `?consistent` reads need a
/// leader (`No cluster leader`), `?consistent` additionally confirms
/// leadership with a quorum first.
pub async fn ensure_readable(agent: &Agent, opts: &ReadOpts) -> Result<(), ApiError> {
    match opts.consistency {
        Consistency::Stale => Ok(()),
        Consistency::Leader => {
            if agent.consensus.leader().is_none() {
                return Err(ApiError::Internal("No cluster leader".into()));
            }
            Ok(())
        }
        Consistency::Consistent => {
            if agent.consensus.leader().is_none() {
                return Err(ApiError::Internal("No cluster leader".into()));
            }
            agent
                .consensus
                .raft
                .ensure_linearizable()
                .await
                .map(|_| ())
                .map_err(|_| ApiError::Internal("No cluster leader".into()))
        }
    }
}

/// Up to wait/16 extra, as Consul staggers blocking queries so that many
/// watchers started together do not all return at once.
fn jitter(wait: std::time::Duration) -> std::time::Duration {
    let max = wait.as_nanos() / 16;
    if max == 0 {
        return std::time::Duration::ZERO;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u128)
        .unwrap_or(0);
    std::time::Duration::from_nanos((seed % max) as u64)
}

/// Runs `query` (returning a result and its index) with blocking semantics.
pub async fn query<T, F>(
    agent: &Agent,
    opts: &ReadOpts,
    watch: Watch,
    mut query: F,
) -> Result<(T, u64), ApiError>
where
    F: FnMut(&Reader) -> Result<(T, u64), ApiError>,
{
    ensure_readable(agent, opts).await?;
    let deadline = Instant::now() + opts.wait + jitter(opts.wait);
    let mut rx = agent.catalog.subscribe();
    loop {
        // Note the counter before reading so a change that lands during the
        // read wakes the wait below instead of being missed.
        let seen = watch.pick(&rx.borrow_and_update());
        let (value, index) = {
            let reader = agent.catalog.reader()?;
            query(&reader)?
        };
        let index = index.max(1);
        if opts.index == 0 || index > opts.index {
            return Ok((value, index));
        }
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Err(_) | Ok(Err(_)) => return Ok((value, index)),
                Ok(Ok(())) => {
                    if watch.pick(&rx.borrow_and_update()) != seen {
                        break;
                    }
                }
            }
        }
    }
}
