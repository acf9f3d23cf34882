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

impl Resource {
    pub const ALL: [Resource; 7] = [
        Resource::Key,
        Resource::Service,
        Resource::Node,
        Resource::Session,
        Resource::Agent,
        Resource::Event,
        Resource::Query,
    ];

    /// The rule word (`key`; the prefix form adds `_prefix`) and the
    /// permission prefix in denial messages (`key:write`).
    pub fn word(self) -> &'static str {
        match self {
            Resource::Key => "key",
            Resource::Service => "service",
            Resource::Node => "node",
            Resource::Session => "session",
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Query => "query",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Global {
    pub const ALL: [Global; 3] = [Global::Operator, Global::Keyring, Global::Acl];

    pub fn word(self) -> &'static str {
        match self {
            Global::Operator => "operator",
            Global::Keyring => "keyring",
            Global::Acl => "acl",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A rule's level. Ordered so that merging the same rule from several
/// policies keeps the strongest (Consul: deny > write > list > read).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Level {
    Read,
    List,
    Write,
    Deny,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "read" => Some(Level::Read),
            "list" => Some(Level::List),
            "write" => Some(Level::Write),
            "deny" => Some(Level::Deny),
            _ => None,
        }
    }

    /// write ⇒ read+list+write; list ⇒ read+list; read ⇒ read; deny ⇒ none.
    fn grants(self, a: Access) -> bool {
        match self {
            Level::Deny => false,
            Level::Write => true,
            Level::List => a != Access::Write,
            Level::Read => a == Access::Read,
        }
    }
}

/// One parsed policy: for each resource kind the exact and prefix rules,
/// and the global levels.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rules {
    pub exact: [Vec<(String, Level)>; 7],
    pub prefix: [Vec<(String, Level)>; 7],
    pub globals: [Option<Level>; 3],
}

impl Rules {
    pub fn add(&mut self, r: Resource, name: &str, prefix: bool, level: Level) {
        let list = if prefix {
            &mut self.prefix[r.index()]
        } else {
            &mut self.exact[r.index()]
        };
        list.push((name.to_string(), level));
    }

    pub fn set_global(&mut self, g: Global, level: Level) {
        let slot = &mut self.globals[g.index()];
        *slot = Some(slot.map_or(level, |old| old.max(level)));
    }

    /// Consul's `global-management` policy: write on everything.
    pub fn management() -> Rules {
        let mut r = Rules::default();
        for k in Resource::ALL {
            r.add(k, "", true, Level::Write);
        }
        for g in Global::ALL {
            r.set_global(g, Level::Write);
        }
        r
    }
}

/// The compiled rules of one kind: exact names and prefixes, each merged
/// across policies.
#[derive(Debug, Default)]
struct Table {
    exact: std::collections::HashMap<String, Level>,
    prefix: std::collections::HashMap<String, Level>,
    /// Prefix lengths present, longest first: the longest-prefix walk only
    /// probes lengths that exist.
    lengths: Vec<usize>,
}

impl Table {
    fn merge(map: &mut std::collections::HashMap<String, Level>, name: &str, level: Level) {
        map.entry(name.to_string())
            .and_modify(|l| *l = (*l).max(level))
            .or_insert(level);
    }

    /// Exact rule, else the longest prefix rule.
    fn lookup(&self, name: &str) -> Option<Level> {
        if let Some(l) = self.exact.get(name) {
            return Some(*l);
        }
        self.longest_prefix(name)
    }

    fn longest_prefix(&self, name: &str) -> Option<Level> {
        for &n in &self.lengths {
            if n <= name.len() && name.is_char_boundary(n) {
                if let Some(l) = self.prefix.get(&name[..n]) {
                    return Some(*l);
                }
            }
        }
        None
    }
}

#[derive(Debug)]
struct Inner {
    enabled: bool,
    management: bool,
    accessor: String,
    /// `acl.default_policy = "allow"`.
    default_allow: bool,
    tables: [Table; 7],
    globals: [Option<Level>; 3],
}

/// What one token may do; cheap to clone.
#[derive(Debug, Clone)]
pub struct Authorizer(std::sync::Arc<Inner>);

impl Authorizer {
    /// ACLs disabled: everything is allowed.
    /// One shared value, so a request with ACLs off allocates nothing here.
    pub fn allow_all() -> Authorizer {
        static ALLOW_ALL: std::sync::OnceLock<Authorizer> = std::sync::OnceLock::new();
        ALLOW_ALL
            .get_or_init(|| {
                Authorizer(std::sync::Arc::new(Inner {
                    enabled: false,
                    management: true,
                    accessor: String::new(),
                    default_allow: true,
                    tables: Default::default(),
                    globals: [None; 3],
                }))
            })
            .clone()
    }

    /// Compiles a token's policies (and identities, already turned into
    /// rules) over the agent's default policy.
    /// `management` (the token carries `global-management`) grants
    /// everything.
    pub fn compile(
        accessor: &str,
        rules: &[Rules],
        default_allow: bool,
        management: bool,
    ) -> Authorizer {
        let mut tables: [Table; 7] = Default::default();
        let mut globals = [None; 3];
        for r in rules {
            for k in Resource::ALL {
                let t = &mut tables[k.index()];
                for (name, level) in &r.exact[k.index()] {
                    Table::merge(&mut t.exact, name, *level);
                }
                for (name, level) in &r.prefix[k.index()] {
                    Table::merge(&mut t.prefix, name, *level);
                }
            }
            for g in Global::ALL {
                if let Some(l) = r.globals[g.index()] {
                    let slot: &mut Option<Level> = &mut globals[g.index()];
                    *slot = Some(slot.map_or(l, |old| old.max(l)));
                }
            }
        }
        for t in tables.iter_mut() {
            let mut lengths: Vec<usize> = t.prefix.keys().map(|k| k.len()).collect();
            lengths.sort_unstable_by(|a, b| b.cmp(a));
            lengths.dedup();
            t.lengths = lengths;
        }
        Authorizer(std::sync::Arc::new(Inner {
            enabled: true,
            management,
            accessor: accessor.to_string(),
            default_allow,
            tables,
            globals,
        }))
    }

    pub fn enabled(&self) -> bool {
        self.0.enabled
    }

    /// Whether this token carries `global-management`.
    pub fn is_management(&self) -> bool {
        self.0.management
    }

    pub fn accessor_id(&self) -> &str {
        &self.0.accessor
    }

    /// Consul's static default authorizer: `allow` grants everything but
    /// `acl` (only a management token does) [acl/static_authorizer.go].
    fn default_for(&self, acl: bool) -> bool {
        self.0.default_allow && !acl
    }

    /// Exact rule > longest prefix rule > default policy.
    pub fn allows(&self, r: Resource, name: &str, a: Access) -> bool {
        if self.0.management {
            return true;
        }
        match self.0.tables[r.index()].lookup(name) {
            Some(level) => level.grants(a),
            None => self.default_for(false),
        }
    }

    pub fn allows_global(&self, g: Global, a: Access) -> bool {
        if self.0.management {
            return true;
        }
        match self.0.globals[g.index()] {
            Some(level) => level.grants(a),
            None => self.default_for(g == Global::Acl),
        }
    }

    /// Consul's `KeyList`: listing under a prefix needs `list` (or write)
    /// on it.
    pub fn allows_prefix_list(&self, prefix: &str) -> bool {
        self.allows(Resource::Key, prefix, Access::List)
    }

    /// Consul's `KeyWritePrefix` (recursive delete): the rule covering the
    /// prefix must grant write and no key rule at or under it may be
    /// weaker than write.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        if self.0.management {
            return true;
        }
        let t = &self.0.tables[Resource::Key.index()];
        let covering = match t.longest_prefix(prefix) {
            Some(level) => level == Level::Write,
            None => self.default_for(false),
        };
        if !covering {
            return false;
        }
        t.exact
            .iter()
            .chain(t.prefix.iter())
            .filter(|(name, _)| name.starts_with(prefix))
            .all(|(_, level)| *level == Level::Write)
    }
}
