//! A server's queue of coordinate updates. Agents send their coordinate
//! every sync interval; writing each through raft on its own would cost
//! a log entry per agent per interval, so a server keeps only the latest
//! update per node and segment and proposes them together every
//! [`UPDATE_PERIOD`], in commands of at most [`BATCH_SIZE`] updates and
//! at most [`MAX_BATCHES`] of them per period (Consul's
//! `CoordinateUpdatePeriod`, `CoordinateUpdateBatchSize` and
//! `CoordinateUpdateMaxBatches`); what is over that is dropped, as Consul
//! drops it, and sent again by its agent at its next sync.

use super::{Config, Coordinate, CoordinateEntry, CoordinateError};
use std::collections::BTreeMap;
use std::time::Duration;

/// How often queued updates are proposed (Consul: 5 s; cairn's clusters
/// are small LANs, so a coordinate is visible a few seconds sooner).
pub const UPDATE_PERIOD: Duration = Duration::from_secs(1);

/// Updates per raft command.
pub const BATCH_SIZE: usize = 128;

/// Commands per period.
pub const MAX_BATCHES: usize = 5;

#[derive(Default)]
pub struct Batcher {
    /// (node, segment) -> latest coordinate.
    pending: parking_lot::Mutex<BTreeMap<(String, String), Coordinate>>,
}

impl Batcher {
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Checks the updates as Consul's `Coordinate.Update` does (the
    /// dimensionality this agent uses, finite components) and queues
    /// them; a later update of a node replaces its queued one. Nothing is
    /// queued when one of them is refused.
    pub fn queue(&self, updates: Vec<CoordinateEntry>) -> Result<(), CoordinateError> {
        let reference = Coordinate::new(&Config::default());
        for u in &updates {
            reference.check(&u.coord)?;
        }
        let mut pending = self.pending.lock();
        for u in updates {
            pending.insert((u.node, u.segment), u.coord);
        }
        Ok(())
    }

    /// Takes what is queued, as the commands to propose: at most
    /// [`MAX_BATCHES`] of at most [`BATCH_SIZE`] updates; the rest is
    /// dropped (and counted in the returned number).
    pub fn take(&self) -> (Vec<Vec<CoordinateEntry>>, usize) {
        let pending = std::mem::take(&mut *self.pending.lock());
        let total = pending.len();
        let limit = BATCH_SIZE * MAX_BATCHES;
        let entries: Vec<CoordinateEntry> = pending
            .into_iter()
            .take(limit)
            .map(|((node, segment), coord)| CoordinateEntry {
                node,
                segment,
                coord,
            })
            .collect();
        let batches = entries.chunks(BATCH_SIZE).map(<[_]>::to_vec).collect();
        (batches, total.saturating_sub(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: &str, x: f64) -> CoordinateEntry {
        let mut coord = Coordinate::new(&Config::default());
        coord.vec[0] = x;
        CoordinateEntry {
            node: node.into(),
            segment: String::new(),
            coord,
        }
    }

    #[test]
    fn the_latest_update_per_node_wins_and_batches_are_capped() {
        let b = Batcher::new();
        b.queue(vec![entry("a", 0.1), entry("b", 0.2)]).unwrap();
        b.queue(vec![entry("a", 0.3)]).unwrap();
        let (batches, dropped) = b.take();
        assert_eq!(batches, vec![vec![entry("a", 0.3), entry("b", 0.2)]]);
        assert_eq!(dropped, 0);
        assert_eq!(b.take().0.len(), 0);

        let many: Vec<_> = (0..BATCH_SIZE * MAX_BATCHES + 7)
            .map(|i| entry(&format!("n{i:04}"), 0.0))
            .collect();
        b.queue(many).unwrap();
        let (batches, dropped) = b.take();
        assert_eq!(batches.len(), MAX_BATCHES);
        assert!(batches.iter().all(|x| x.len() == BATCH_SIZE));
        assert_eq!(dropped, 7);
    }

    #[test]
    fn invalid_or_incompatible_updates_queue_nothing() {
        let b = Batcher::new();
        let mut bad = entry("x", 0.0);
        bad.coord.error = f64::NAN;
        assert_eq!(
            b.queue(vec![entry("a", 0.1), bad]),
            Err(CoordinateError::Invalid)
        );
        let mut short = entry("y", 0.0);
        short.coord.vec.truncate(2);
        assert_eq!(b.queue(vec![short]), Err(CoordinateError::Incompatible));
        assert!(b.take().0.is_empty());
    }
}
