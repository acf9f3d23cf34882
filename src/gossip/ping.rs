//! Round-trip times for network coordinates. serf feeds its Vivaldi
//! client from memberlist's probes, each ack carrying the peer's
//! coordinate; foca neither exposes its probes' timing nor lets a payload
//! ride on its acks, so agents send their own small ping beside foca's
//! packets, on the same socket and sealed with the same keyring:
//!
//! - every [`PING_INTERVAL`] an agent pings one alive member picked at
//!   random (as a probe picks its target);
//! - the member answers at once, from the socket's reader, with a pong
//!   that carries its current coordinate;
//! - the pinger times the round trip from send to the pong's arrival and
//!   updates its own coordinate with it ([`crate::coordinate::Client`]).
//!
//! The messages are told apart from foca's by a prefix (`0xFF 0x01`, see
//! `key_query` for why no foca packet starts with `0xFF`). As keyring
//! requests are, a ping is answered only for a known alive member and at
//! that member's gossip address, never at the datagram's source.

use super::keyring::SharedKeyring;
use super::{MemberStatus, MemberTable};
use crate::coordinate::{Client, Config, Coordinate};
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

const PREFIX: [u8; 2] = [0xFF, 0x01];
const VERSION: u8 = 1;

/// How often an agent measures one round trip (cairn's probe period).
pub const PING_INTERVAL: Duration = Duration::from_millis(500);

/// A ping not answered within this is forgotten (and its late pong ignored).
const PONG_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum PingMessage {
    Ping {
        id: u64,
        from: String,
    },
    Pong {
        id: u64,
        from: String,
        coord: Coordinate,
    },
}

impl PingMessage {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![PREFIX[0], PREFIX[1], VERSION];
        if let Ok(body) = postcard::to_allocvec(self) {
            out.extend_from_slice(&body);
        }
        out
    }

    pub(crate) fn is_one(data: &[u8]) -> bool {
        data.starts_with(&PREFIX)
    }

    pub(crate) fn decode(data: &[u8]) -> Option<PingMessage> {
        match data {
            [a, b, VERSION, body @ ..] if [*a, *b] == PREFIX => postcard::from_bytes(body).ok(),
            _ => None,
        }
    }
}

/// This agent's coordinate and the pings it has out.
pub(crate) struct Pinger {
    me: String,
    socket: Arc<UdpSocket>,
    keyring: SharedKeyring,
    members: watch::Receiver<MemberTable>,
    client: parking_lot::Mutex<Client>,
    /// Ping id -> (member, when it was sent).
    outstanding: parking_lot::Mutex<HashMap<u64, (String, Instant)>>,
    /// The coordinate each member last answered a ping with.
    peers: parking_lot::Mutex<HashMap<String, Coordinate>>,
}

impl Pinger {
    /// Starts pinging; returns the handle the socket's reader hands
    /// ping messages to.
    pub(crate) fn start(
        me: String,
        socket: Arc<UdpSocket>,
        keyring: SharedKeyring,
        members: watch::Receiver<MemberTable>,
    ) -> Arc<Pinger> {
        let pinger = Arc::new(Pinger {
            me,
            socket,
            keyring,
            members,
            client: parking_lot::Mutex::new(Client::new(Config::default())),
            outstanding: parking_lot::Mutex::new(HashMap::new()),
            peers: parking_lot::Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&pinger);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PING_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(p) = weak.upgrade() else { return };
                p.ping_one().await;
            }
        });
        pinger
    }

    pub(crate) fn coordinate(&self) -> Coordinate {
        self.client.lock().coordinate()
    }

    /// The coordinates alive members last reported, by member name.
    pub(crate) fn peers(&self) -> HashMap<String, Coordinate> {
        self.peers.lock().clone()
    }

    /// The gossip address of `name` if it is an alive member other than
    /// this agent.
    fn alive_addr(&self, name: &str) -> Option<std::net::SocketAddr> {
        if name == self.me {
            return None;
        }
        self.members
            .borrow()
            .get(name)
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.id.addr)
    }

    async fn ping_one(&self) {
        let target = {
            let table = self.members.borrow();
            // What was kept about members that are gone goes with them.
            let alive = |name: &str| {
                table
                    .get(name)
                    .is_some_and(|m| m.status == MemberStatus::Alive)
            };
            self.client.lock().retain_nodes(alive);
            self.peers.lock().retain(|name, _| alive(name));
            let alive: Vec<(&String, std::net::SocketAddr)> = table
                .values()
                .filter(|m| m.status == MemberStatus::Alive && m.id.name != self.me)
                .map(|m| (&m.id.name, m.id.addr))
                .collect();
            alive
                .choose(&mut rand::rng())
                .map(|(n, a)| ((*n).clone(), *a))
        };
        let now = Instant::now();
        let id = rand::random::<u64>();
        {
            let mut out = self.outstanding.lock();
            out.retain(|_, (_, at)| now.duration_since(*at) < PONG_TIMEOUT);
            let Some((name, _)) = &target else { return };
            out.insert(id, (name.clone(), now));
        }
        let Some((_, addr)) = target else { return };
        let msg = PingMessage::Ping {
            id,
            from: self.me.clone(),
        }
        .encode();
        if let Err(e) = self.socket.send_to(&self.keyring.seal(&msg), addr).await {
            tracing::debug!(%addr, "coordinate ping: {e}");
        }
    }

    /// Handles a ping message the socket's reader opened, at the moment
    /// it arrived.
    pub(crate) fn receive(&self, msg: PingMessage, arrived: Instant) {
        match msg {
            PingMessage::Ping { id, from } => {
                let Some(addr) = self.alive_addr(&from) else {
                    tracing::debug!(%from, "coordinate ping from no alive member: ignored");
                    return;
                };
                let pong = PingMessage::Pong {
                    id,
                    from: self.me.clone(),
                    coord: self.coordinate(),
                }
                .encode();
                // Answered from the reader without waiting, so the pinger
                // times the network rather than this agent's queues; a
                // full socket buffer loses the pong as the network might.
                if let Err(e) = self.socket.try_send_to(&self.keyring.seal(&pong), addr) {
                    tracing::debug!(%addr, "coordinate pong: {e}");
                }
            }
            PingMessage::Pong { id, from, coord } => {
                let sent = self.outstanding.lock().remove(&id);
                let Some((to, at)) = sent else { return };
                if to != from {
                    return;
                }
                let rtt = arrived.saturating_duration_since(at);
                if coord.is_valid() {
                    self.peers.lock().insert(from.clone(), coord.clone());
                }
                let mut client = self.client.lock();
                let before = client.coordinate();
                match client.update(&from, &coord, rtt) {
                    Ok(after) => crate::metrics::coordinate_adjustment(
                        after.distance_to(&before).as_secs_f64() * 1000.0,
                    ),
                    Err(e) => tracing::debug!(node = %from, "coordinate update refused: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_are_told_from_others() {
        let m = PingMessage::Pong {
            id: 7,
            from: "a".into(),
            coord: Coordinate::new(&Config::default()),
        };
        let bytes = m.encode();
        assert!(PingMessage::is_one(&bytes));
        assert_eq!(PingMessage::decode(&bytes), Some(m));
        assert!(!PingMessage::is_one(&[0xFF, 0x00, 1]));
        assert_eq!(PingMessage::decode(&[0xFF, 0x01, 9, 1, 2]), None);
    }
}
