//! What a resolved token may do. Built from the token's policies, roles,
//! service and node identities; consulted by every HTTP handler and by DNS.
//!
//! Consul's rule matching: for each resource kind an exact rule wins,
//! otherwise the longest matching prefix rule, otherwise the default
//! policy. `deny` always wins over a weaker grant at the same rule.

/// The access a request needs on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    /// KV `?keys` / `?recurse` and `acl` listing.
    List,
    Write,
}

impl Access {
    /// Consul's word in `lacks permission '<resource>:<word>'`.
    pub fn word(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::List => "list",
            Access::Write => "write",
        }
    }
}

/// A resource kind with names (`key "web/"`), as Consul spells it in
/// rules and in denial messages (`key:read`, `service:write`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Key,
    Service,
    Node,
    Session,
    Agent,
    Event,
    Query,
}

/// A resource kind without names (`operator = "read"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Global {
    Operator,
    Keyring,
    Acl,
}
