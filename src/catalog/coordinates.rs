//! The coordinates table: each node's network coordinate per segment,
//! written by batches ([`crate::catalog::command::Command::Coordinates`])
//! and read by `/v1/coordinate/*` and the `?near=` sorts.
//!
//! As Consul's `CoordinateBatchUpdate`, an update for a node the catalog
//! does not hold is dropped: coordinates are removed with their node, so
//! one written for an absent node would never be cleaned up.

use super::apply::Outcome;
use super::command::Response;
use super::query::{QResult, Reader};
use crate::coordinate::{Coordinate, CoordinateEntry};
use crate::store::{node_prefix, node_scoped_key, Table, Tables, KEY_SEP};
use heed::RwTxn;
use std::collections::HashMap;

pub(super) fn apply_batch(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    updates: &[CoordinateEntry],
) -> Outcome<Response> {
    let mut written = false;
    for u in updates {
        if u.node.contains(KEY_SEP) || u.segment.contains(KEY_SEP) {
            continue;
        }
        if tables.nodes.get(txn, &u.node)?.is_none() {
            continue;
        }
        tables
            .coordinates
            .put(txn, &node_scoped_key(&u.node, &u.segment), &u.coord)?;
        written = true;
    }
    if written {
        tables.set_table_index(txn, Table::Coordinates, index)?;
    }
    Ok(Ok(Response::Bool(true)))
}

fn entry(key: &str, coord: Coordinate) -> CoordinateEntry {
    let (node, segment) = key.split_once(KEY_SEP).unwrap_or((key, ""));
    CoordinateEntry {
        node: node.to_string(),
        segment: segment.to_string(),
        coord,
    }
}

impl Reader<'_> {
    /// Every coordinate, by node name then segment.
    pub fn coordinates(&self) -> QResult<Vec<CoordinateEntry>> {
        self.tables
            .coordinates
            .iter(&self.txn)?
            .map(|r| r.map(|(k, c)| entry(k, c)))
            .collect()
    }

    /// One node's coordinates (one per segment).
    pub fn node_coordinates(&self, node: &str) -> QResult<Vec<CoordinateEntry>> {
        self.tables
            .coordinates
            .prefix_iter(&self.txn, &node_prefix(node))?
            .map(|r| r.map(|(k, c)| entry(k, c)))
            .collect()
    }

    /// Each node's coordinate in the default segment, for the `?near=`
    /// sorts.
    pub fn coordinate_map(&self) -> QResult<HashMap<String, Coordinate>> {
        Ok(self
            .coordinates()?
            .into_iter()
            .filter(|e| e.segment.is_empty())
            .map(|e| (e.node, e.coord))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::apply::apply;
    use crate::catalog::command::{Command, Deregistration, Registration};
    use crate::catalog::types::Node;
    use crate::coordinate::Config;

    fn run(t: &Tables, index: u64, cmd: Command) {
        let mut txn = t.env.write_txn().unwrap();
        apply(t, &mut txn, index, &cmd).unwrap();
        txn.commit().unwrap();
    }

    fn register(t: &Tables, index: u64, name: &str) {
        run(
            t,
            index,
            Command::Register(Registration {
                node: Node {
                    name: name.into(),
                    address: "127.0.0.1".into(),
                    ..Node::default()
                },
                service: None,
                checks: vec![],
                skip_node_update: false,
            }),
        );
    }

    fn update(node: &str, x: f64) -> CoordinateEntry {
        let mut coord = Coordinate::new(&Config::default());
        coord.vec[0] = x;
        CoordinateEntry {
            node: node.into(),
            segment: String::new(),
            coord,
        }
    }

    #[test]
    fn batches_write_known_nodes_and_deregistering_drops_them() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        register(&t, 1, "a");
        register(&t, 2, "b");
        run(
            &t,
            3,
            Command::Coordinates(vec![
                update("a", 0.1),
                update("ghost", 0.2),
                update("b", 0.3),
            ]),
        );
        {
            let r = Reader::new(&t).unwrap();
            let all = r.coordinates().unwrap();
            assert_eq!(all, vec![update("a", 0.1), update("b", 0.3)]);
            assert_eq!(r.index(&[Table::Coordinates]).unwrap(), 3);
            assert_eq!(r.node_coordinates("b").unwrap(), vec![update("b", 0.3)]);
            assert!(r.node_coordinates("ghost").unwrap().is_empty());
        }
        run(&t, 4, Command::Coordinates(vec![update("a", 0.5)]));
        run(
            &t,
            5,
            Command::Deregister(Deregistration {
                node: "a".into(),
                service_id: None,
                check_id: None,
            }),
        );
        let r = Reader::new(&t).unwrap();
        assert_eq!(r.coordinates().unwrap(), vec![update("b", 0.3)]);
        assert_eq!(r.index(&[Table::Coordinates]).unwrap(), 5);
        assert!(r.coordinate_map().unwrap().contains_key("b"));
    }

    #[test]
    fn snapshots_carry_coordinates() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(&dir.path().join("a")).unwrap();
        register(&t, 1, "a");
        run(&t, 2, Command::Coordinates(vec![update("a", 0.25)]));
        let snap = {
            let txn = t.env.read_txn().unwrap();
            crate::catalog::snapshot::dump(&t, &txn).unwrap()
        };
        assert_eq!(snap.coordinates.0, vec![update("a", 0.25)]);
        // Through the archive encoding, into another replica.
        let state = crate::snapshot::encode_state(&snap).unwrap();
        let back = crate::snapshot::decode_state(&state).unwrap();
        let other = Tables::open(&dir.path().join("b")).unwrap();
        let mut txn = other.env.write_txn().unwrap();
        crate::catalog::snapshot::restore(&other, &mut txn, &back).unwrap();
        txn.commit().unwrap();
        let r = Reader::new(&other).unwrap();
        assert_eq!(r.coordinates().unwrap(), vec![update("a", 0.25)]);
        assert_eq!(r.index(&[Table::Coordinates]).unwrap(), 2);
    }
}
