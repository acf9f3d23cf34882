//! A server's queue of coordinate updates. Agents send their coordinate
//! every sync interval; writing each through raft on its own would cost
//! a log entry per agent per interval, so a server keeps only the latest
//! update per node and segment and proposes them together every update
//! period, in commands of at most the batch size and at most the maximum
//! number of batches per period ([`super::Timings`]: Consul's
//! `CoordinateUpdatePeriod`, `CoordinateUpdateBatchSize` and
//! `CoordinateUpdateMaxBatches`); what is over that is dropped, as Consul
//! drops it, and sent again by its agent at its next sync.

use super::{Config, Coordinate, CoordinateEntry, CoordinateError, Timings};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct Batcher {
    /// (node, segment) -> latest coordinate.
    pending: parking_lot::Mutex<BTreeMap<(String, String), Coordinate>>,
    timings: Timings,
}

impl Batcher {
    pub fn new(timings: Timings) -> Batcher {
        Batcher {
            pending: parking_lot::Mutex::default(),
            timings,
        }
    }

    /// How often the queue is proposed.
    pub fn period(&self) -> Duration {
        self.timings.update_period
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

    /// Takes what is queued, as the commands to propose: at most the
    /// maximum number of batches of at most the batch size; the rest is
    /// dropped (and counted in the returned number).
    pub fn take(&self) -> (Vec<Vec<CoordinateEntry>>, usize) {
        let pending = std::mem::take(&mut *self.pending.lock());
        let total = pending.len();
        let size = self.timings.update_batch_size.max(1);
        let limit = size * self.timings.update_max_batches;
        let entries: Vec<CoordinateEntry> = pending
            .into_iter()
            .take(limit)
            .map(|((node, segment), coord)| CoordinateEntry {
                node,
                segment,
                coord,
            })
            .collect();
        let batches = entries.chunks(size).map(<[_]>::to_vec).collect();
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
        let b = Batcher::new(Timings::default());
        let (size, max) = (b.timings.update_batch_size, b.timings.update_max_batches);
        b.queue(vec![entry("a", 0.1), entry("b", 0.2)]).unwrap();
        b.queue(vec![entry("a", 0.3)]).unwrap();
        let (batches, dropped) = b.take();
        assert_eq!(batches, vec![vec![entry("a", 0.3), entry("b", 0.2)]]);
        assert_eq!(dropped, 0);
        assert_eq!(b.take().0.len(), 0);

        let many: Vec<_> = (0..size * max + 7)
            .map(|i| entry(&format!("n{i:04}"), 0.0))
            .collect();
        b.queue(many).unwrap();
        let (batches, dropped) = b.take();
        assert_eq!(batches.len(), max);
        assert!(batches.iter().all(|x| x.len() == size));
        assert_eq!(dropped, 7);
    }

    #[test]
    fn invalid_or_incompatible_updates_queue_nothing() {
        let b = Batcher::new(Timings::default());
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
