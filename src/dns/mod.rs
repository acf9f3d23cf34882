//! The DNS interface (port 8600): Consul's name grammar and answers, served
//! authoritatively from an in-memory index of the local catalog replica.
//!
//! A query flows through four pieces, each its own module:
//! - [`name`] parses the question name into a typed lookup (pure);
//! - [`index`] holds what answers are made of — per service its healthy
//!   instances with prebuilt SRV data, per node its address and meta —
//!   rebuilt from the catalog when its change index moves;
//! - [`answer`] builds the answer, authority and additional sections;
//! - [`truncate`] fits them to the transport (UDP 512 bytes or the EDNS
//!   size, TCP 64 KiB);
//! - [`server`] is the hickory request handler and the sockets.
//!
//! - [`recurse`] forwards names outside the served domains to the
//!   configured recursors; without recursors they are refused.

pub mod answer;
pub mod index;
pub mod name;
pub mod prepared;
pub mod recurse;
pub mod remote;
pub mod server;
pub mod truncate;
pub mod zones;

use crate::config::{Config, DnsConfig};
use hickory_proto::rr::Name;

pub use server::start;

/// One served domain (`domain` or `alt_domain`), with the names its SOA uses.
#[derive(Debug, Clone)]
pub struct Domain {
    /// `consul.`
    pub text: String,
    /// The domain as a name (`consul.`).
    pub name: Name,
    /// `ns.<domain>`
    pub mname: Name,
    /// `hostmaster.<domain>`
    pub rname: Name,
}

/// What the DNS pieces need from the agent configuration, derived once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Primary domain first, then `alt_domain` if set.
    pub domains: Vec<Domain>,
    /// The same domains as lower-case label lists, for matching questions.
    pub domain_labels: Vec<Vec<String>>,
    /// The local datacenter as configured (used in names we produce).
    pub datacenter: String,
    /// Lower-cased, for matching question labels.
    pub datacenter_lower: String,
    /// This agent's node name (prepared queries near `_agent`).
    pub node_name: String,
    pub dns: DnsConfig,
}

impl Settings {
    pub fn new(config: &Config) -> Settings {
        let mut texts = vec![config.domain.clone()];
        if let Some(alt) = &config.alt_domain {
            if !alt.trim_end_matches('.').is_empty()
                && alt.to_lowercase() != config.domain.to_lowercase()
            {
                texts.push(alt.clone());
            }
        }
        let mut domains = Vec::new();
        let mut domain_labels = Vec::new();
        for t in texts {
            let mut text = t.to_lowercase();
            if !text.ends_with('.') {
                text.push('.');
            }
            let parse = |prefix: &str| Name::from_ascii(format!("{prefix}{text}"));
            let (Ok(name), Ok(mname), Ok(rname)) = (parse(""), parse("ns."), parse("hostmaster."))
            else {
                tracing::warn!("dns: ignoring invalid domain {text:?}");
                continue;
            };
            domain_labels.push(
                text.trim_end_matches('.')
                    .split('.')
                    .map(String::from)
                    .collect(),
            );
            domains.push(Domain {
                text,
                name,
                mname,
                rname,
            });
        }
        if domains.is_empty() {
            // Config validation should prevent this; serve the default rather than nothing.
            let parse = |s: &str| Name::from_ascii(s).unwrap_or_else(|_| Name::root());
            domains.push(Domain {
                text: "consul.".into(),
                name: parse("consul."),
                mname: parse("ns.consul."),
                rname: parse("hostmaster.consul."),
            });
            domain_labels.push(vec!["consul".into()]);
        }
        Settings {
            domains,
            domain_labels,
            datacenter: config.datacenter.clone(),
            datacenter_lower: config.datacenter.to_lowercase(),
            node_name: config.node_name.clone(),
            dns: config.dns.clone(),
        }
    }
}
