//! Applying ACL commands: tokens, policies and roles. Pure like the rest
//! of `apply`: times come in the command, set by the proposer.

use super::apply::{reject, Outcome, Touched};
use super::command::Response;
use crate::acl::types::{id_key, Policy, Role, Token, ANONYMOUS_ACCESSOR, MANAGEMENT_POLICY_ID};
use crate::store::{Table, Tables};
use heed::RwTxn;
use serde::{Deserialize, Serialize};

/// `meta` key holding the index ACLs were bootstrapped at (Consul's
/// bootstrap "reset index").
pub const BOOTSTRAP_KEY: &str = "acl/bootstrap";

/// Built once and moved into the raft log, like [`super::command::Command`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOp {
    /// The leader's establishment: creates whichever of the builtins and
    /// the configured initial management token is missing. A configured
    /// initial management token counts as the bootstrap, as in Consul.
    Init {
        anonymous: Token,
        management: Policy,
        initial: Option<Token>,
    },
    /// `PUT /v1/acl/bootstrap`: once only.
    Bootstrap(Token),
    /// Create (`create`) or replace a token.
    TokenSet {
        token: Token,
        create: bool,
    },
    TokenDelete {
        accessor: String,
    },
    PolicySet {
        policy: Policy,
        create: bool,
    },
    PolicyDelete {
        id: String,
    },
    RoleSet {
        role: Role,
        create: bool,
    },
    RoleDelete {
        id: String,
    },
    /// Deletes the tokens expired at `now` (Unix nanoseconds, the
    /// leader's clock).
    ReapExpired {
        now: i64,
    },
    /// A secondary datacenter's replication round: the primary's policies,
    /// roles and global tokens that differ from this replica's, stored as
    /// the primary has them (indexes are this datacenter's), and the IDs
    /// the primary no longer has. Local tokens are never touched.
    Replicate(Box<Replication>),
}

/// What one replication round changes (see [`AclOp::Replicate`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Replication {
    pub policies: Vec<Policy>,
    pub roles: Vec<Role>,
    pub tokens: Vec<Token>,
    pub deleted_policies: Vec<String>,
    pub deleted_roles: Vec<String>,
    pub deleted_tokens: Vec<String>,
}

impl Replication {
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.roles.is_empty()
            && self.tokens.is_empty()
            && self.deleted_policies.is_empty()
            && self.deleted_roles.is_empty()
            && self.deleted_tokens.is_empty()
    }
}

pub fn bootstrap_index(
    tables: &Tables,
    txn: &heed::RoTxn<heed::WithoutTls>,
) -> Result<Option<u64>, heed::Error> {
    Ok(tables.meta.get(txn, BOOTSTRAP_KEY)?.and_then(|b| {
        let arr: [u8; 8] = b.try_into().ok()?;
        Some(u64::from_be_bytes(arr))
    }))
}

pub(super) fn apply_acl(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    op: &AclOp,
    touched: &mut Touched,
) -> Outcome<Response> {
    let out = match op {
        AclOp::Init {
            anonymous,
            management,
            initial,
        } => {
            let mut changed = false;
            if tables
                .acl_policies
                .get(txn, MANAGEMENT_POLICY_ID)?
                .is_none()
            {
                put_policy(tables, txn, index, management.clone(), None)?;
                changed = true;
            }
            if tables.acl_tokens.get(txn, ANONYMOUS_ACCESSOR)?.is_none() {
                put_token(tables, txn, index, anonymous.clone(), None)?;
                changed = true;
            }
            if let Some(t) = initial {
                if tables.acl_secrets.get(txn, &t.secret_id)?.is_none() {
                    put_token(tables, txn, index, t.clone(), None)?;
                    if bootstrap_index(tables, txn)?.is_none() {
                        tables.meta.put(txn, BOOTSTRAP_KEY, &index.to_be_bytes())?;
                    }
                    changed = true;
                }
            }
            if !changed {
                return Ok(Ok(Response::Bool(false)));
            }
            Response::Bool(true)
        }
        AclOp::Bootstrap(token) => {
            if let Some(done) = bootstrap_index(tables, txn)? {
                return reject(format!(
                    "ACL bootstrap no longer allowed (reset index: {done})"
                ));
            }
            if let Err(e) = check_new_token_ids(tables, txn, token)? {
                return reject(e);
            }
            put_token(tables, txn, index, token.clone(), None)?;
            tables.meta.put(txn, BOOTSTRAP_KEY, &index.to_be_bytes())?;
            Response::Bool(true)
        }
        AclOp::TokenSet { token, create } => {
            let existing = tables.acl_tokens.get(txn, &id_key(&token.accessor_id))?;
            match (create, existing) {
                (true, _) => {
                    if let Err(e) = check_new_token_ids(tables, txn, token)? {
                        return reject(e);
                    }
                    put_token(tables, txn, index, token.clone(), None)?;
                }
                (false, None) => {
                    return reject(format!("Cannot find token {:?}", token.accessor_id));
                }
                (false, Some(old)) => {
                    let mut next = token.clone();
                    next.secret_id = old.secret_id.clone();
                    next.create_time = old.create_time;
                    next.expiration_time = old.expiration_time;
                    next.expiration_ttl = old.expiration_ttl;
                    put_token(tables, txn, index, next, Some(old.create_index))?;
                }
            }
            Response::Bool(true)
        }
        AclOp::TokenDelete { accessor } => {
            if id_key(accessor) == ANONYMOUS_ACCESSOR {
                return reject("Delete operation not permitted on the anonymous token".into());
            }
            let key = id_key(accessor);
            if let Some(old) = tables.acl_tokens.get(txn, &key)? {
                tables.acl_tokens.delete(txn, &key)?;
                tables.acl_secrets.delete(txn, &old.secret_id)?;
            }
            Response::Bool(true)
        }
        AclOp::PolicySet { policy, create } => {
            let key = id_key(&policy.id);
            let existing = tables.acl_policies.get(txn, &key)?;
            for item in tables.acl_policies.iter(txn)? {
                let (k, p) = item?;
                if k != key && p.name == policy.name {
                    // Consul's two spellings, for create and for update.
                    let what = if *create {
                        "A Policy with Name"
                    } else {
                        "A policy with name"
                    };
                    return reject(format!(
                        "Invalid Policy: {what} {:?} already exists",
                        policy.name
                    ));
                }
            }
            let create_index = match (create, existing) {
                (true, Some(_)) => return reject("Invalid Policy: ID already in use".into()),
                (true, None) => None,
                (false, None) => return reject(format!("cannot find policy {}", policy.id)),
                (false, Some(old)) => Some(old.create_index),
            };
            put_policy(tables, txn, index, policy.clone(), create_index)?;
            Response::Bool(true)
        }
        AclOp::PolicyDelete { id } => {
            if id_key(id) == MANAGEMENT_POLICY_ID {
                return reject(
                    "Delete operation not permitted on the builtin global-management policy".into(),
                );
            }
            tables.acl_policies.delete(txn, &id_key(id))?;
            Response::Bool(true)
        }
        AclOp::RoleSet { role, create } => {
            let key = id_key(&role.id);
            let existing = tables.acl_roles.get(txn, &key)?;
            for item in tables.acl_roles.iter(txn)? {
                let (k, r) = item?;
                if k != key && r.name == role.name {
                    return reject(format!(
                        "Invalid Role: A Role with Name {:?} already exists",
                        role.name
                    ));
                }
            }
            let create_index = match (create, existing) {
                (true, Some(_)) => return reject("Invalid Role: ID already in use".into()),
                (true, None) => None,
                (false, None) => return reject(format!("cannot find role {}", role.id)),
                (false, Some(old)) => Some(old.create_index),
            };
            let mut r = role.clone();
            r.create_index = create_index.unwrap_or(index);
            r.modify_index = index;
            r.rehash();
            tables.acl_roles.put(txn, &key, &r)?;
            Response::Bool(true)
        }
        AclOp::RoleDelete { id } => {
            tables.acl_roles.delete(txn, &id_key(id))?;
            Response::Bool(true)
        }
        AclOp::ReapExpired { now } => {
            let mut gone = Vec::new();
            for item in tables.acl_tokens.iter(txn)? {
                let (k, t) = item?;
                if t.expired_at(*now) {
                    gone.push((k.to_string(), t.secret_id));
                }
            }
            if gone.is_empty() {
                return Ok(Ok(Response::Bool(false)));
            }
            for (k, secret) in gone {
                tables.acl_tokens.delete(txn, &k)?;
                tables.acl_secrets.delete(txn, &secret)?;
            }
            Response::Bool(true)
        }
        AclOp::Replicate(rep) => {
            replicate(tables, txn, index, rep)?;
            Response::Bool(true)
        }
    };
    tables.set_table_index(txn, Table::Acl, index)?;
    touched.acl = true;
    Ok(Ok(out))
}

/// Applies a replication round. The primary is the authority: an object
/// here that shares a name (policies, roles) or a secret (tokens) with one
/// it sends under another ID gives way.
fn replicate(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    rep: &Replication,
) -> Result<(), heed::Error> {
    for id in &rep.deleted_policies {
        tables.acl_policies.delete(txn, &id_key(id))?;
    }
    for id in &rep.deleted_roles {
        tables.acl_roles.delete(txn, &id_key(id))?;
    }
    for accessor in &rep.deleted_tokens {
        let key = id_key(accessor);
        if let Some(old) = tables.acl_tokens.get(txn, &key)? {
            if !old.local {
                tables.acl_tokens.delete(txn, &key)?;
                tables.acl_secrets.delete(txn, &old.secret_id)?;
            }
        }
    }
    for p in &rep.policies {
        let key = id_key(&p.id);
        let mut clash = Vec::new();
        for item in tables.acl_policies.iter(txn)? {
            let (k, old) = item?;
            if k != key && old.name == p.name {
                clash.push(k.to_string());
            }
        }
        for k in clash {
            tables.acl_policies.delete(txn, &k)?;
        }
        let create_index = tables.acl_policies.get(txn, &key)?.map(|o| o.create_index);
        put_policy(tables, txn, index, p.clone(), create_index)?;
    }
    for r in &rep.roles {
        let key = id_key(&r.id);
        let mut clash = Vec::new();
        for item in tables.acl_roles.iter(txn)? {
            let (k, old) = item?;
            if k != key && old.name == r.name {
                clash.push(k.to_string());
            }
        }
        for k in clash {
            tables.acl_roles.delete(txn, &k)?;
        }
        let mut next = r.clone();
        next.create_index = tables
            .acl_roles
            .get(txn, &key)?
            .map_or(index, |o| o.create_index);
        next.modify_index = index;
        next.rehash();
        tables.acl_roles.put(txn, &key, &next)?;
    }
    for t in &rep.tokens {
        let key = id_key(&t.accessor_id);
        let old = tables.acl_tokens.get(txn, &key)?;
        if let Some(old) = &old {
            tables.acl_secrets.delete(txn, &old.secret_id)?;
        }
        if let Some(other) = tables.acl_secrets.get(txn, &t.secret_id)? {
            let other = other.to_string();
            if other != key {
                tables.acl_tokens.delete(txn, &other)?;
            }
        }
        let mut next = t.clone();
        next.local = false;
        put_token(tables, txn, index, next, old.map(|o| o.create_index))?;
    }
    Ok(())
}

/// A new token's IDs must be unused in both ID spaces.
fn check_new_token_ids(
    tables: &Tables,
    txn: &RwTxn,
    t: &Token,
) -> Result<Result<(), String>, heed::Error> {
    let acc = id_key(&t.accessor_id);
    if tables.acl_tokens.get(txn, &acc)?.is_some() || tables.acl_secrets.get(txn, &acc)?.is_some() {
        return Ok(Err("Invalid Token: AccessorID is already in use".into()));
    }
    if tables.acl_secrets.get(txn, &t.secret_id)?.is_some()
        || tables.acl_tokens.get(txn, &id_key(&t.secret_id))?.is_some()
    {
        return Ok(Err("Invalid Token: SecretID is already in use".into()));
    }
    Ok(Ok(()))
}

fn put_token(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    mut t: Token,
    create_index: Option<u64>,
) -> Result<(), heed::Error> {
    t.create_index = create_index.unwrap_or(index);
    t.modify_index = index;
    t.rehash();
    let key = id_key(&t.accessor_id);
    tables.acl_secrets.put(txn, &t.secret_id, &key)?;
    tables.acl_tokens.put(txn, &key, &t)
}

fn put_policy(
    tables: &Tables,
    txn: &mut RwTxn,
    index: u64,
    mut p: Policy,
    create_index: Option<u64>,
) -> Result<(), heed::Error> {
    p.create_index = create_index.unwrap_or(index);
    p.modify_index = index;
    p.rehash();
    tables.acl_policies.put(txn, &id_key(&p.id), &p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::types::Link;
    use crate::catalog::apply::apply;
    use crate::catalog::command::Command;
    use crate::catalog::query::Reader;

    fn run(t: &Tables, index: u64, op: AclOp) -> Response {
        let mut txn = t.env.write_txn().unwrap();
        let (resp, _) = apply(t, &mut txn, index, &Command::Acl(op)).unwrap();
        txn.commit().unwrap();
        resp
    }

    fn token(acc: &str, secret: &str) -> Token {
        Token {
            accessor_id: acc.into(),
            secret_id: secret.into(),
            policies: vec![Link {
                id: MANAGEMENT_POLICY_ID.into(),
                name: String::new(),
            }],
            ..Token::default()
        }
    }

    #[test]
    fn bootstrap_once_and_ids_unique_in_both_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        let a = "11111111-1111-1111-1111-111111111111";
        let b = "22222222-2222-2222-2222-222222222222";
        assert_eq!(
            run(&t, 5, AclOp::Bootstrap(token(a, b))),
            Response::Bool(true)
        );
        assert_eq!(
            run(&t, 6, AclOp::Bootstrap(token(b, a))),
            Response::Rejected("ACL bootstrap no longer allowed (reset index: 5)".into())
        );
        // The secret of one token may not be another's accessor.
        let dup = AclOp::TokenSet {
            token: token(b, "33333333-3333-3333-3333-333333333333"),
            create: true,
        };
        assert_eq!(
            run(&t, 7, dup),
            Response::Rejected("Invalid Token: AccessorID is already in use".into())
        );
        let r = Reader::new(&t).unwrap();
        let got = r.acl_token_by_secret(b).unwrap().unwrap();
        assert_eq!((got.create_index, got.modify_index), (5, 5));
        assert_eq!(r.index(&[Table::Acl]).unwrap(), 5);
    }

    #[test]
    fn builtins_are_protected_and_names_unique() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tables::open(dir.path()).unwrap();
        let anon = Token {
            accessor_id: ANONYMOUS_ACCESSOR.into(),
            secret_id: "anonymous".into(),
            ..Token::default()
        };
        let init = AclOp::Init {
            anonymous: anon,
            management: Policy::management(),
            initial: None,
        };
        assert_eq!(run(&t, 1, init.clone()), Response::Bool(true));
        // A second establishment changes nothing.
        assert_eq!(run(&t, 2, init), Response::Bool(false));
        let del = AclOp::TokenDelete {
            accessor: ANONYMOUS_ACCESSOR.into(),
        };
        assert!(matches!(run(&t, 3, del), Response::Rejected(_)));
        let del = AclOp::PolicyDelete {
            id: MANAGEMENT_POLICY_ID.into(),
        };
        assert!(matches!(run(&t, 4, del), Response::Rejected(_)));
        let p = Policy {
            id: "44444444-4444-4444-4444-444444444444".into(),
            name: "global-management".into(),
            ..Policy::default()
        };
        assert_eq!(
            run(
                &t,
                5,
                AclOp::PolicySet {
                    policy: p,
                    create: true
                }
            ),
            Response::Rejected(
                "Invalid Policy: A Policy with Name \"global-management\" already exists".into()
            )
        );
    }
}
