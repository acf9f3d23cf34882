//! Network coordinates: every agent places itself in a Euclidean space
//! plus a height, so that the distance between two agents' coordinates
//! estimates the round trip time between them without measuring it. This
//! is serf's Vivaldi variant (Dabek et al., with the height of Ledlie et
//! al. for the access link and an adjustment term that soaks up what the
//! Euclidean model cannot express), which Consul uses for `?near=`,
//! `consul rtt` and prepared queries' nearest-datacenter failover.
//!
//! - [`Coordinate`] is the value gossiped, stored and served
//!   (`/v1/coordinate/*`), with Consul's JSON field names.
//! - [`Client`] is one agent's estimator: fed the observed RTT of each
//!   gossip ping and the peer's coordinate from its pong (`crate::gossip::ping`).
//! - [`sort_by_distance`] orders anything that has a node by its estimated
//!   RTT from a source coordinate, nodes without coordinates last, as
//!   Consul's `?near=` sort does.
//! - [`batch`] collects updates on a server into one raft command;
//!   [`sync`] is the agent's periodic send of its own coordinate.

pub mod batch;
mod client;
pub mod sync;

pub use client::Client;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The tuning of the Vivaldi estimator: serf's `DefaultConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Dimensions of the Euclidean part.
    pub dimensionality: usize,
    /// The error a fresh coordinate starts with, and the most it can have.
    pub vivaldi_error_max: f64,
    /// How fast the error estimate moves (`c_e` in the paper).
    pub vivaldi_ce: f64,
    /// How far one sample moves the coordinate (`c_c` in the paper).
    pub vivaldi_cc: f64,
    /// Samples averaged into the adjustment term (0: no adjustment).
    pub adjustment_window_size: usize,
    /// The smallest height, in seconds.
    pub height_min: f64,
    /// RTT samples per peer whose median is used (filters outliers).
    pub latency_filter_size: usize,
    /// How strongly the coordinate is pulled back to the origin, in
    /// seconds: the drift of the whole system is kept in check by it.
    pub gravity_rho: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            dimensionality: 8,
            vivaldi_error_max: 1.5,
            vivaldi_ce: 0.25,
            vivaldi_cc: 0.25,
            adjustment_window_size: 20,
            height_min: 10.0e-6,
            latency_filter_size: 3,
            gravity_rho: 150.0,
        }
    }
}

/// Below this a vector's magnitude or a sample is treated as zero.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// The longest RTT accepted as a sample (serf's `maxRTT`).
pub const MAX_RTT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoordinateError {
    /// Consul's words when a coordinate of another dimensionality arrives.
    #[error("incompatible coordinate")]
    Incompatible,
    /// A component is NaN or infinite (Consul: "invalid coordinate").
    #[error("invalid coordinate")]
    Invalid,
    /// serf's words for a sample outside `0..=10s`.
    #[error(
        "round trip time not in valid range, duration {0:?} is not a positive value less than 10s"
    )]
    RttOutOfRange(Duration),
}

/// A network coordinate, as serf's `coordinate.Coordinate` (and Consul's
/// JSON): all distances in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: Vec<f64>,
    /// How far off the coordinate is believed to be (relative).
    pub error: f64,
    /// Added to every distance computed from this coordinate.
    pub adjustment: f64,
    /// The distance from the node to the Euclidean core (its access link).
    pub height: f64,
}

impl Coordinate {
    /// A fresh coordinate at the origin with the most error (serf's
    /// `NewCoordinate`).
    pub fn new(config: &Config) -> Coordinate {
        Coordinate {
            vec: vec![0.0; config.dimensionality],
            error: config.vivaldi_error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// Every component finite.
    pub fn is_valid(&self) -> bool {
        self.vec.iter().all(|v| v.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Same dimensionality: only then is a distance defined.
    pub fn is_compatible_with(&self, other: &Coordinate) -> bool {
        self.vec.len() == other.vec.len()
    }

    /// Checks a coordinate that came from elsewhere against this one's
    /// dimensionality and for finite components.
    pub fn check(&self, other: &Coordinate) -> Result<(), CoordinateError> {
        if !self.is_compatible_with(other) {
            return Err(CoordinateError::Incompatible);
        }
        if !other.is_valid() {
            return Err(CoordinateError::Invalid);
        }
        Ok(())
    }

    /// The Euclidean distance plus both heights, in seconds.
    fn raw_distance_to(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// The estimated RTT to `other` in seconds: the raw distance plus both
    /// adjustments, unless that would make it zero or negative (serf then
    /// keeps the raw distance). `None` for incompatible coordinates.
    pub fn distance_secs(&self, other: &Coordinate) -> Option<f64> {
        if !self.is_compatible_with(other) {
            return None;
        }
        let dist = self.raw_distance_to(other);
        let adjusted = dist + self.adjustment + other.adjustment;
        Some(if adjusted > 0.0 { adjusted } else { dist })
    }

    /// [`Coordinate::distance_secs`] as a duration (zero when incompatible
    /// or not finite).
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        self.distance_secs(other)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(Duration::ZERO)
    }

    /// Moves this coordinate by `force` seconds along the line from
    /// `other` to it (towards `other` for a negative force), and the
    /// height with it (serf's `ApplyForce`).
    fn apply_force(&self, config: &Config, force: f64, other: &Coordinate) -> Coordinate {
        let mut next = self.clone();
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec);
        next.vec = add(&next.vec, &mul(&unit, force));
        if mag > ZERO_THRESHOLD {
            next.height = (next.height + other.height) * force / mag + next.height;
            next.height = next.height.max(config.height_min);
        }
        next
    }
}

fn diff(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn mul(a: &[f64], k: f64) -> Vec<f64> {
    a.iter().map(|x| x * k).collect()
}

fn magnitude(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector from `to` towards `from`, and the distance between
/// them. Two coordinates at one place are pushed apart in a random
/// direction (distance 0), as serf does, so nodes that start together
/// at the origin separate.
fn unit_vector_at(from: &[f64], to: &[f64]) -> (Vec<f64>, f64) {
    let d = diff(from, to);
    let mag = magnitude(&d);
    if mag > ZERO_THRESHOLD {
        return (mul(&d, 1.0 / mag), mag);
    }
    let random: Vec<f64> = d.iter().map(|_| rand::random_range(-0.5..0.5)).collect();
    let mag = magnitude(&random);
    if mag > ZERO_THRESHOLD {
        return (mul(&random, 1.0 / mag), 0.0);
    }
    let mut unit = vec![0.0; d.len()];
    if let Some(first) = unit.first_mut() {
        *first = 1.0;
    }
    (unit, 0.0)
}

/// Orders `items` by their estimated RTT from `from`, nearest first;
/// items whose node has no (compatible) coordinate go last. Stable, so
/// equal distances and the coordinate-less keep the order they came in,
/// as Consul's `sort.Stable` over its node sorter does. Callers skip the
/// sort altogether when the source node has no coordinate (Consul leaves
/// the list as it was).
pub fn sort_by_distance<T>(
    items: &mut Vec<T>,
    from: &Coordinate,
    coordinate_of: impl Fn(&T) -> Option<Coordinate>,
) {
    let mut keyed: Vec<(f64, T)> = items
        .drain(..)
        .map(|item| {
            let d = coordinate_of(&item)
                .and_then(|c| from.distance_secs(&c))
                .filter(|d| !d.is_nan())
                .unwrap_or(f64::INFINITY);
            (d, item)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    items.extend(keyed.into_iter().map(|(_, item)| item));
}

/// One node's coordinate as `/v1/coordinate/nodes` lists it and as it is
/// stored (Consul's `structs.Coordinate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoordinateEntry {
    pub node: String,
    /// The network segment (Enterprise); always "" here.
    #[serde(default)]
    pub segment: String,
    pub coord: Coordinate,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(vec: [f64; 2], height: f64, adjustment: f64) -> Coordinate {
        Coordinate {
            vec: vec.to_vec(),
            error: 0.5,
            adjustment,
            height,
        }
    }

    #[test]
    fn the_distance_of_a_coordinate_to_itself_is_its_heights() {
        let cfg = Config::default();
        let c = Coordinate::new(&cfg);
        assert_eq!(c.vec.len(), 8);
        assert_eq!(c.error, 1.5);
        assert!((c.distance_secs(&c).unwrap() - 2.0 * cfg.height_min).abs() < 1e-12);
        let mut zero = c.clone();
        zero.height = 0.0;
        assert_eq!(zero.distance_secs(&zero), Some(0.0));
        assert_eq!(zero.distance_to(&zero), Duration::ZERO);
    }

    #[test]
    fn distance_is_euclidean_plus_heights_plus_adjustments() {
        let a = at([0.0, 0.0], 0.001, 0.0);
        let b = at([0.003, 0.004], 0.002, 0.0);
        assert!((a.distance_secs(&b).unwrap() - 0.008).abs() < 1e-12);
        // A positive adjustment adds; one that would make it negative is ignored.
        let a2 = at([0.0, 0.0], 0.001, 0.001);
        assert!((a2.distance_secs(&b).unwrap() - 0.009).abs() < 1e-12);
        let a3 = at([0.0, 0.0], 0.001, -1.0);
        assert!((a3.distance_secs(&b).unwrap() - 0.008).abs() < 1e-12);
    }

    #[test]
    fn incompatible_and_invalid_coordinates_are_told_apart() {
        let a = at([0.0, 0.0], 0.0, 0.0);
        let three = Coordinate {
            vec: vec![0.0; 3],
            ..a.clone()
        };
        assert_eq!(a.distance_secs(&three), None);
        assert_eq!(a.check(&three), Err(CoordinateError::Incompatible));
        let nan = Coordinate {
            vec: vec![f64::NAN, 0.0],
            ..a.clone()
        };
        assert_eq!(a.check(&nan), Err(CoordinateError::Invalid));
        let inf = Coordinate {
            height: f64::INFINITY,
            ..a.clone()
        };
        assert_eq!(a.check(&inf), Err(CoordinateError::Invalid));
        assert_eq!(a.check(&a), Ok(()));
    }

    #[test]
    fn sort_puts_the_nearest_first_and_the_unknown_last_in_their_order() {
        let from = at([0.0, 0.0], 0.0, 0.0);
        let coord = |x: f64| Some(at([x, 0.0], 0.0, 0.0));
        let mut items = vec!["none-1", "far", "near", "none-2", "mid", "near-too"];
        sort_by_distance(&mut items, &from, |n| match *n {
            "far" => coord(0.3),
            "mid" => coord(0.2),
            "near" | "near-too" => coord(0.1),
            _ => None,
        });
        assert_eq!(
            items,
            ["near", "near-too", "mid", "far", "none-1", "none-2"]
        );
    }

    #[test]
    fn coordinates_have_consuls_json_shape() {
        let e = CoordinateEntry {
            node: "n1".into(),
            segment: String::new(),
            coord: at([0.5, 0.0], 0.25, 0.0),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Node": "n1", "Segment": "", "Coord": {
                "Vec": [0.5, 0.0], "Error": 0.5, "Adjustment": 0.0, "Height": 0.25}})
        );
        let back: CoordinateEntry = serde_json::from_value(
            serde_json::json!({"Node": "n1", "Coord": {"Vec": [0.5, 0], "Error": 0.5, "Adjustment": 0, "Height": 0.25}}),
        )
        .unwrap();
        assert_eq!(back, e);
    }
}
