//! Reads with Consul's consistency and blocking semantics. A read runs
//! against one LMDB read transaction; with `?index=N` it is re-run after
//! every change to the watched part of the catalog until its own index
//! passes N or `?wait` runs out (then the latest result is returned, as
//! Consul does on timeout). The index a query reports is never 0.
//!
//! KV reads watch their own key or prefix (`catalog::watch`), so a write
//! elsewhere neither wakes nor returns them; catalog, health and session
//! reads wake on their table group's change counter and re-run.

use super::wire::{ApiError, Consistency, Ctx, ReadOpts};
use crate::catalog::query::Reader;
use crate::catalog::watch::Scope;
use crate::catalog::Changes;
use tokio::time::Instant;

/// What can move a query's result.
#[derive(Debug, Clone)]
pub enum Watch {
    Catalog,
    Sessions,
    /// One KV key.
    KvKey(String),
    /// Every KV key under a prefix.
    KvPrefix(String),
    /// ACL tokens, policies and roles.
    Acl,
    /// Network coordinates. They have no change counter of their own, so
    /// every apply wakes the query, which returns once the coordinates'
    /// table index passes the caller's.
    Coordinates,
    /// Prepared queries.
    PreparedQueries,
}

impl Watch {
    fn pick(&self, c: &Changes) -> u64 {
        match self {
            Watch::Catalog => c.catalog,
            Watch::Sessions => c.sessions,
            Watch::Acl => c.acl,
            Watch::Coordinates => c.applied,
            Watch::PreparedQueries => c.prepared_queries,
            Watch::KvKey(_) | Watch::KvPrefix(_) => c.kv,
        }
    }
}

/// Makes the local replica fresh enough for the read's consistency mode.
/// Default reads see everything the leader had applied when the read
/// began (a read index from the leader, then wait for it locally), which
/// gives the freshness of Consul's leader-forwarded reads while serving
/// from this agent's replica; `?consistent` has the leader confirm its
/// leadership with a quorum first; `?stale` reads whatever is here.
pub async fn ensure_readable(ctx: &Ctx, opts: &ReadOpts) -> Result<(), ApiError> {
    let linearizable = match opts.consistency {
        // A client agent whose view never synced has nothing to serve,
        // stale or not; Consul's client answers the same without servers.
        Consistency::Stale if !ctx.catalog.is_ready() => {
            return Err(crate::consensus::ConsensusError::NoServers.into())
        }
        Consistency::Stale => return Ok(()),
        Consistency::Leader => false,
        Consistency::Consistent => true,
    };
    ctx.consensus.read_index(linearizable).await?;
    Ok(())
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

/// Awaits `fut` until `deadline`; `None` when the deadline passes or the
/// agent starts shutting down (a blocking query then answers with what it
/// has, so shutdown never waits for `?wait` to run out).
async fn until<F: std::future::Future>(
    deadline: Instant,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        r = tokio::time::timeout_at(deadline, fut) => r.ok(),
        _ = shutdown.wait_for(|s| *s) => None,
    }
}

/// Runs `query` (returning a result and its index) with blocking semantics.
pub async fn query<T, F>(
    ctx: &Ctx,
    opts: &ReadOpts,
    watch: Watch,
    mut query: F,
) -> Result<(T, u64), ApiError>
where
    F: FnMut(&Reader) -> Result<(T, u64), ApiError>,
{
    ensure_readable(ctx, opts).await?;
    let deadline = Instant::now() + opts.wait + jitter(opts.wait);
    let scope = match &watch {
        Watch::KvKey(k) => Some((Scope::Key, k.as_str())),
        Watch::KvPrefix(p) => Some((Scope::Prefix, p.as_str())),
        _ => None,
    };
    if let Some((scope, target)) = scope {
        return query_kv(ctx, opts, scope, target, deadline, query).await;
    }
    let mut rx = ctx.catalog.subscribe();
    let mut shutdown = ctx.shutdown.clone();
    loop {
        // Note the counter before reading so a change that lands during the
        // read wakes the wait below instead of being missed.
        let seen = watch.pick(&rx.borrow_and_update());
        let (value, index) = {
            let reader = ctx.catalog.reader()?;
            query(&reader)?
        };
        let index = index.max(1);
        if opts.index == 0 || index > opts.index {
            return Ok((value, index));
        }
        loop {
            match until(deadline, &mut shutdown, rx.changed()).await {
                None | Some(Err(_)) => return Ok((value, index)),
                Some(Ok(())) => {
                    if watch.pick(&rx.borrow_and_update()) != seen {
                        break;
                    }
                }
            }
        }
    }
}

/// A KV read blocking on its own key or prefix. The watch is registered
/// before the first read, so a write landing in between still wakes it.
/// A woken read reports at least the index of the change that woke it: a
/// delete under a prefix leaves the remaining entries' indexes where they
/// were, and the watcher must still see the index move.
async fn query_kv<T, F>(
    ctx: &Ctx,
    opts: &ReadOpts,
    scope: Scope,
    target: &str,
    deadline: Instant,
    mut query: F,
) -> Result<(T, u64), ApiError>
where
    F: FnMut(&Reader) -> Result<(T, u64), ApiError>,
{
    let mut watcher = (opts.index > 0).then(|| ctx.catalog.kv_watch.watch(scope, target));
    let mut woken_at = 0;
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (value, index) = {
            let reader = ctx.catalog.reader()?;
            query(&reader)?
        };
        let index = index.max(woken_at).max(1);
        let Some(w) = watcher.as_mut() else {
            return Ok((value, index));
        };
        if index > opts.index {
            return Ok((value, index));
        }
        match until(deadline, &mut shutdown, w.rx.changed()).await {
            None | Some(Err(_)) => return Ok((value, index)),
            Some(Ok(())) => woken_at = *w.rx.borrow_and_update(),
        }
    }
}
