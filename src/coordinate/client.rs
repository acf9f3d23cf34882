//! One agent's Vivaldi estimator (serf's `coordinate.Client`). Each RTT
//! sample with a peer's coordinate goes through four steps:
//!
//! 1. a per-peer median over the last few samples drops outliers (a ping
//!    delayed by a busy scheduler should not fling the coordinate away);
//! 2. the Vivaldi step moves the coordinate along the line to the peer by
//!    how wrong the current estimate is, weighted by how sure each side
//!    is (its error), and updates the error estimate;
//! 3. the adjustment term becomes the mean of the recent residuals (what
//!    the Euclidean model could not account for), halved because both
//!    sides of a distance add theirs;
//! 4. a weak gravity towards the origin keeps the whole system from
//!    drifting away together.
//!
//! A coordinate that stops being finite is reset to a fresh one.

use super::{Config, Coordinate, CoordinateError, MAX_RTT, ZERO_THRESHOLD};
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Client {
    config: Config,
    coord: Coordinate,
    /// The origin gravity pulls towards.
    origin: Coordinate,
    /// Ring of the last `adjustment_window_size` residuals.
    adjustment_samples: Vec<f64>,
    adjustment_index: usize,
    /// Peer name -> its last `latency_filter_size` RTTs, in seconds.
    latency_samples: HashMap<String, Vec<f64>>,
    /// Times the coordinate went non-finite and was reset.
    resets: u64,
}

impl Client {
    pub fn new(config: Config) -> Client {
        let coord = Coordinate::new(&config);
        let mut origin = coord.clone();
        origin.height = 0.0;
        origin.error = 0.0;
        Client {
            adjustment_samples: vec![0.0; config.adjustment_window_size],
            adjustment_index: 0,
            latency_samples: HashMap::new(),
            resets: 0,
            origin,
            coord,
            config,
        }
    }

    /// This agent's current coordinate.
    pub fn coordinate(&self) -> Coordinate {
        self.coord.clone()
    }

    /// How many times the coordinate was reset for going non-finite.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// The estimated RTT from this agent to `other`.
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        self.coord.distance_to(other)
    }

    /// Drops what was kept about a peer that left.
    pub fn forget_node(&mut self, node: &str) {
        self.latency_samples.remove(node);
    }

    /// Keeps what was kept only about the peers `keep` names.
    pub fn retain_nodes(&mut self, keep: impl Fn(&str) -> bool) {
        self.latency_samples.retain(|name, _| keep(name));
    }

    /// Feeds one observation: `rtt` to `node`, whose coordinate is
    /// `other`. Refuses coordinates of another dimensionality or with
    /// non-finite parts, and RTTs outside `0..=10s`, changing nothing.
    /// Returns the updated coordinate.
    pub fn update(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt: Duration,
    ) -> Result<Coordinate, CoordinateError> {
        self.coord.check(other)?;
        if rtt > MAX_RTT {
            return Err(CoordinateError::RttOutOfRange(rtt));
        }
        let rtt = self.latency_filter(node, rtt.as_secs_f64());
        self.update_vivaldi(other, rtt);
        self.update_adjustment(other, rtt);
        self.update_gravity();
        if !self.coord.is_valid() {
            self.resets += 1;
            self.coord = Coordinate::new(&self.config);
        }
        Ok(self.coord.clone())
    }

    /// [`Client::update`] for an RTT in seconds as it may come off the
    /// wire: NaN, infinite and negative values are refused.
    pub fn update_secs(
        &mut self,
        node: &str,
        other: &Coordinate,
        rtt_secs: f64,
    ) -> Result<Coordinate, CoordinateError> {
        let rtt = Duration::try_from_secs_f64(rtt_secs)
            .map_err(|_| CoordinateError::RttOutOfRange(Duration::MAX))?;
        self.update(node, other, rtt)
    }

    /// The median of the last few samples from `node`, this one included.
    fn latency_filter(&mut self, node: &str, rtt: f64) -> f64 {
        let size = self.config.latency_filter_size.max(1);
        let samples = self.latency_samples.entry(node.to_string()).or_default();
        samples.push(rtt);
        if samples.len() > size {
            samples.remove(0);
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64) {
        let cfg = &self.config;
        let dist = self.coord.distance_secs(other).unwrap_or(0.0);
        let rtt = rtt.max(ZERO_THRESHOLD);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        self.coord.error = cfg.vivaldi_ce * weight * wrongness
            + self.coord.error * (1.0 - cfg.vivaldi_ce * weight);
        self.coord.error = self.coord.error.min(cfg.vivaldi_error_max);
        let force = cfg.vivaldi_cc * weight * (rtt - dist);
        self.coord = self.coord.apply_force(cfg, force, other);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let window = self.config.adjustment_window_size;
        if window == 0 {
            return;
        }
        let dist = self.coord.raw_distance_to(other);
        self.adjustment_samples[self.adjustment_index] = rtt - dist;
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * window as f64);
    }

    fn update_gravity(&mut self) {
        let dist = self.origin.distance_secs(&self.coord).unwrap_or(0.0);
        let force = -(dist / self.config.gravity_rho).powi(2);
        self.coord = self.coord.apply_force(&self.config, force, &self.origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three nodes whose true RTTs are 10, 20 and 25 ms; each round every
    /// node pings every other (as gossip probes do). After enough rounds
    /// the estimates are within a few percent of the truth.
    #[test]
    fn converges_on_a_three_node_latency_matrix() {
        let rtt_ms = [[0.0, 10.0, 20.0], [10.0, 0.0, 25.0], [20.0, 25.0, 0.0]];
        let names = ["a", "b", "c"];
        let mut clients: Vec<Client> = (0..3).map(|_| Client::new(Config::default())).collect();
        for _ in 0..300 {
            for i in 0..3 {
                for j in 0..3 {
                    if i == j {
                        continue;
                    }
                    let peer = clients[j].coordinate();
                    let rtt = Duration::from_secs_f64(rtt_ms[i][j] / 1000.0);
                    clients[i].update(names[j], &peer, rtt).unwrap();
                }
            }
        }
        for i in 0..3 {
            let me = clients[i].coordinate();
            assert!(me.error < 0.2, "node {i} error {}", me.error);
            for j in 0..3 {
                if i == j {
                    continue;
                }
                let est = clients[i]
                    .distance_to(&clients[j].coordinate())
                    .as_secs_f64()
                    * 1000.0;
                let want = rtt_ms[i][j];
                assert!(
                    (est - want).abs() / want < 0.15,
                    "{i}->{j}: estimated {est:.2} ms, true {want} ms"
                );
            }
        }
    }

    #[test]
    fn bad_inputs_are_refused_and_change_nothing() {
        let mut c = Client::new(Config::default());
        let peer = Coordinate::new(&Config::default());
        let before = c.coordinate();
        assert!(matches!(
            c.update_secs("p", &peer, f64::NAN),
            Err(CoordinateError::RttOutOfRange(_))
        ));
        assert!(matches!(
            c.update_secs("p", &peer, -0.001),
            Err(CoordinateError::RttOutOfRange(_))
        ));
        assert!(matches!(
            c.update("p", &peer, Duration::from_secs(11)),
            Err(CoordinateError::RttOutOfRange(_))
        ));
        let mut nan = peer.clone();
        nan.vec[3] = f64::NAN;
        assert_eq!(
            c.update("p", &nan, Duration::from_millis(5)),
            Err(CoordinateError::Invalid)
        );
        let short = Coordinate {
            vec: vec![0.0; 2],
            ..peer.clone()
        };
        assert_eq!(
            c.update("p", &short, Duration::from_millis(5)),
            Err(CoordinateError::Incompatible)
        );
        assert_eq!(c.coordinate(), before);
        assert!(c.latency_samples.is_empty());
    }

    #[test]
    fn one_sample_moves_a_fresh_coordinate_off_the_origin() {
        let mut c = Client::new(Config::default());
        let peer = Coordinate::new(&Config::default());
        let next = c.update("p", &peer, Duration::from_millis(10)).unwrap();
        assert!(next.vec.iter().any(|v| *v != 0.0));
        assert!(next.error <= 1.5);
        assert!(next.is_valid());
    }

    #[test]
    fn the_latency_filter_takes_the_median_of_the_last_three() {
        let mut c = Client::new(Config::default());
        assert_eq!(c.latency_filter("p", 0.010), 0.010);
        assert_eq!(c.latency_filter("p", 0.500), 0.500);
        assert_eq!(c.latency_filter("p", 0.012), 0.012);
        // 0.010 falls out of the window: [0.5, 0.012, 0.011] -> 0.012.
        assert_eq!(c.latency_filter("p", 0.011), 0.012);
        assert_eq!(c.latency_filter("q", 0.002), 0.002);
        c.forget_node("p");
        assert_eq!(c.latency_filter("p", 0.007), 0.007);
    }
}
