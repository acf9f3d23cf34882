//! cairn: a Consul-compatible, DNS-first service-discovery server.

pub mod acl;
pub mod agent;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod coordinate;
pub mod dns;
pub mod duration;
pub mod events;
pub mod federation;
pub mod feed;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod gossip;
pub mod health;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod raft;
pub mod registrator;
pub mod rpc;
pub mod run;
pub mod snapshot;
pub mod store;
pub mod template;
pub mod tls;
