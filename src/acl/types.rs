//! ACL objects as stored in the catalog (bincode: no field is skipped).
//! Their JSON shapes live in `http::acl`.

use serde::{Deserialize, Serialize};

/// Consul's fixed IDs [agent/structs/acl.go].
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_SECRET: &str = "anonymous";
pub const MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const MANAGEMENT_POLICY_NAME: &str = "global-management";
/// User-chosen IDs may not start with this (Consul reserves it).
pub const RESERVED_PREFIX: &str = "00000000-0000-0000-0000-0000000000";

/// A token's or role's link to a policy or role. The name is filled in
/// with the current name on every read, as Consul does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Link {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceIdentity {
    pub service_name: String,
    pub datacenters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

/// `builtin/service` (variable `name`) or `builtin/node` (variable `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TemplatedPolicy {
    pub template_name: String,
    pub name: Option<String>,
    pub datacenters: Vec<String>,
}

/// The grants a token or role carries besides its policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identities {
    pub service: Vec<ServiceIdentity>,
    pub node: Vec<NodeIdentity>,
    pub templated: Vec<TemplatedPolicy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Token {
    pub accessor_id: String,
    pub secret_id: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub roles: Vec<Link>,
    pub identities: Identities,
    pub local: bool,
    /// Unix nanoseconds; set by the proposer (apply reads no clock).
    pub create_time: i64,
    pub expiration_time: Option<i64>,
    /// As requested, in nanoseconds (0 = none).
    pub expiration_ttl: u64,
    pub hash: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Token {
    pub fn expired_at(&self, now_nanos: i64) -> bool {
        self.expiration_time.is_some_and(|t| t <= now_nanos)
    }

    /// Consul's token hash: over the fields that decide what it grants.
    pub fn rehash(&mut self) {
        let mut h = Hasher::default();
        h.add(&self.description);
        for l in self.policies.iter().chain(&self.roles) {
            h.add(&l.id);
        }
        h.identities(&self.identities);
        h.add(if self.local { "local" } else { "global" });
        self.hash = h.finish();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Vec<String>,
    pub hash: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Policy {
    pub fn rehash(&mut self) {
        let mut h = Hasher::default();
        h.add(&self.name);
        h.add(&self.description);
        h.add(&self.rules);
        for d in &self.datacenters {
            h.add(d);
        }
        self.hash = h.finish();
    }

    /// Consul's builtin `global-management` policy.
    pub fn management() -> Policy {
        let mut p = Policy {
            id: MANAGEMENT_POLICY_ID.into(),
            name: MANAGEMENT_POLICY_NAME.into(),
            description: "Builtin Policy that grants unlimited access".into(),
            rules: MANAGEMENT_RULES.into(),
            ..Policy::default()
        };
        p.rehash();
        p
    }
}

/// The rules text Consul gives `global-management`.
pub const MANAGEMENT_RULES: &str = r#"
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}"#;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub identities: Identities,
    pub hash: Vec<u8>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Role {
    pub fn rehash(&mut self) {
        let mut h = Hasher::default();
        h.add(&self.name);
        h.add(&self.description);
        for l in &self.policies {
            h.add(&l.id);
        }
        h.identities(&self.identities);
        self.hash = h.finish();
    }
}

/// Consul hashes with blake2b-256; clients only compare hashes, so any
/// 32-byte digest of the same fields serves.
#[derive(Default)]
struct Hasher(Vec<u8>);

impl Hasher {
    fn add(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }

    fn identities(&mut self, i: &Identities) {
        for s in &i.service {
            self.add(&s.service_name);
            for d in &s.datacenters {
                self.add(d);
            }
        }
        for n in &i.node {
            self.add(&n.node_name);
            self.add(&n.datacenter);
        }
        for t in &i.templated {
            self.add(&t.template_name);
            self.add(t.name.as_deref().unwrap_or(""));
        }
    }

    fn finish(self) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, &self.0)
            .as_ref()
            .to_vec()
    }
}

/// IDs are kept as supplied but looked up by their lower-case form (Consul
/// compares UUID bytes).
pub fn id_key(id: &str) -> String {
    id.to_ascii_lowercase()
}
