//! Failed TLS handshakes, logged without flooding the log.
//!
//! A client that keeps retrying with the wrong certificate, or a scanner
//! speaking something else to the port, would otherwise write a line per
//! attempt. Each listener logs the first failure at once, with the peer;
//! later ones within [`QUIET`] are only counted, and the next line that is
//! written says how many were left out. Every failure counts in the
//! `cairn.tls.handshake_failures` metric (Consul has none).

use parking_lot::Mutex;
use std::fmt::Display;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The least time between two lines of one listener.
pub const QUIET: Duration = Duration::from_secs(10);

/// One listener's failure log.
#[derive(Debug)]
pub struct FailureLog {
    /// `http` or `rpc`: the log line's prefix and the metric's label.
    interface: &'static str,
    /// Whether this side dialled (the peer is a server it called).
    outgoing: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_line: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    /// Failures of connections accepted on `interface`.
    pub fn incoming(interface: &'static str) -> FailureLog {
        FailureLog::new(interface, false)
    }

    /// Failures of connections this agent dialled on `interface`.
    pub fn outgoing(interface: &'static str) -> FailureLog {
        FailureLog::new(interface, true)
    }

    fn new(interface: &'static str, outgoing: bool) -> FailureLog {
        FailureLog {
            interface,
            outgoing,
            state: Mutex::new(State::default()),
        }
    }

    /// Records a failed handshake from `peer`; logs it unless a line was
    /// written less than [`QUIET`] ago. Returns whether it logged.
    pub fn report(&self, peer: SocketAddr, err: &dyn Display) -> bool {
        crate::metrics::tls_handshake_failure(self.interface);
        let suppressed = {
            let mut s = self.state.lock();
            if s.last_line.is_some_and(|t| t.elapsed() < QUIET) {
                s.suppressed += 1;
                return false;
            }
            s.last_line = Some(Instant::now());
            std::mem::take(&mut s.suppressed)
        };
        let more = if suppressed > 0 {
            format!(" ({suppressed} more failed handshakes since the last report)")
        } else {
            String::new()
        };
        // Go's http server logs `http: TLS handshake error from <addr>: <err>`.
        let direction = if self.outgoing { "with" } else { "from" };
        tracing::warn!(
            "{}: TLS handshake error {direction} {peer}: {err}{more}",
            self.interface
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_and_is_counted_in_the_next_line() {
        let log = FailureLog::incoming("http");
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(log.report(peer, &"bad certificate"));
        for _ in 0..50 {
            assert!(!log.report(peer, &"bad certificate"));
        }
        assert_eq!(log.state.lock().suppressed, 50);
        // Once the quiet time is over the next failure is logged and the
        // count starts again.
        log.state.lock().last_line = Some(Instant::now() - QUIET);
        assert!(log.report(peer, &"bad certificate"));
        assert_eq!(log.state.lock().suppressed, 0);
    }
}
