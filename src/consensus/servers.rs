//! The servers a client agent talks to, learned from LAN gossip (members
//! whose role is server in this agent's datacenter), in an order of its
//! own: shuffled once so that client agents spread over the servers, and
//! with a server that failed a call moved to the back (Consul's
//! `router.Manager`). New servers join the order at a random place, gone
//! ones leave it.

use crate::gossip::{Gossip, MemberStatus, MemberTable};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub struct ServerList {
    gossip: Gossip,
    datacenter: String,
    /// The alive servers, derived from the member table it was read from
    /// (recomputed only when gossip publishes a new table: with thousands
    /// of client agents the table is large and calls are frequent).
    alive: parking_lot::Mutex<Option<(MemberTable, Vec<String>)>>,
    order: parking_lot::Mutex<Vec<String>>,
    /// Servers that asked this agent to subscribe elsewhere (leaders), until when.
    avoid: parking_lot::Mutex<HashMap<String, Instant>>,
}

impl ServerList {
    pub fn new(gossip: Gossip, datacenter: String) -> ServerList {
        ServerList {
            gossip,
            datacenter,
            alive: Default::default(),
            order: Default::default(),
            avoid: Default::default(),
        }
    }

    /// RPC addresses of the alive servers of this datacenter, as gossip sees them.
    fn alive(&self) -> Vec<String> {
        let table = self.gossip.members();
        let mut cache = self.alive.lock();
        if let Some((seen, servers)) = cache.as_ref() {
            if std::sync::Arc::ptr_eq(seen, &table) {
                return servers.clone();
            }
        }
        let servers: Vec<String> = table
            .values()
            .filter(|m| {
                m.id.server && m.status == MemberStatus::Alive && m.id.dc == self.datacenter
            })
            .map(|m| SocketAddr::new(m.id.addr.ip(), m.id.rpc_port).to_string())
            .collect();
        *cache = Some((table, servers.clone()));
        servers
    }

    /// The alive servers in this agent's order of preference.
    pub fn ordered(&self) -> Vec<String> {
        let alive = self.alive();
        let mut order = self.order.lock();
        order.retain(|a| alive.contains(a));
        for a in alive {
            if !order.contains(&a) {
                let at = rand::random_range(0..=order.len());
                order.insert(at, a);
            }
        }
        order.clone()
    }

    /// The server to use first (`None` when no server is known).
    pub fn first(&self) -> Option<String> {
        self.ordered().into_iter().next()
    }

    /// A call to `addr` failed: try the others first from now on.
    pub fn failed(&self, addr: &str) {
        let mut order = self.order.lock();
        if let Some(pos) = order.iter().position(|a| a == addr) {
            let a = order.remove(pos);
            order.push(a);
        }
    }

    /// Servers for the subscription feed: the preferred order, with the
    /// ones that recently turned a subscription away moved to the back.
    pub fn for_feed(&self) -> Vec<String> {
        let now = Instant::now();
        let mut avoid = self.avoid.lock();
        avoid.retain(|_, until| *until > now);
        let (mut ok, mut later): (Vec<String>, Vec<String>) = self
            .ordered()
            .into_iter()
            .partition(|a| !avoid.contains_key(a));
        ok.append(&mut later);
        ok
    }

    /// `addr` turned a subscription away (it leads); prefer others for `for_`.
    pub fn avoid_for_feed(&self, addr: &str, for_: Duration) {
        self.avoid
            .lock()
            .insert(addr.to_string(), Instant::now() + for_);
    }
}
