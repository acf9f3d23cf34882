//! Consul's ACL system: tokens, policies and roles (kept in the catalog and
//! replicated through raft), the rules language, and the authorizer every
//! HTTP handler and DNS consults.

mod authorizer;
pub mod command;
pub mod leader;
pub mod replication;
pub mod resolver;
pub mod rules;
pub mod tokens;
pub mod types;

pub use authorizer::{Access, Authorizer, Global, Level, Resource, Rules};
pub use resolver::{Identity, ResolveError, Resolver};

use crate::http::wire::ApiError;
use axum::http::StatusCode;

/// Consul's 403 for a missing grant (1.12+, acl/errors.go):
/// `Permission denied: token with AccessorID '<id>' lacks permission
/// '<permission>' on "<resource>"`; unnamed resources (`acl`, `operator`,
/// `keyring`) leave out the ` on ...` part.
pub fn denied(authz: &Authorizer, permission: &str, resource: &str) -> ApiError {
    let who = match authz.accessor_id() {
        "" => "provided token".to_string(),
        id => format!("token with AccessorID '{id}'"),
    };
    let on = if resource.is_empty() {
        String::new()
    } else {
        format!(" on {}", go_quote(resource))
    };
    ApiError::Status(
        StatusCode::FORBIDDEN,
        format!("Permission denied: {who} lacks permission '{permission}'{on}"),
    )
}

tokio::task_local! {
    /// The token of the HTTP request being served (None: the request
    /// carried none), so that writes forwarded to a server carry it.
    pub static REQUEST_TOKEN: Option<String>;
}

/// Where a write is made from: `Some` inside an HTTP request (with its
/// token, or none), `None` when the agent makes it itself (anti-entropy,
/// check sync).
pub fn request_token() -> Option<Option<String>> {
    REQUEST_TOKEN.try_with(|t| t.clone()).ok()
}

/// The 403 for a secret that resolves to no token (Consul's `ACL not found`).
pub fn not_found() -> ApiError {
    ApiError::Status(StatusCode::FORBIDDEN, "ACL not found".into())
}

/// Go's `%q`, which Consul uses for the resource name.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_texts_match_consul() {
        let a = Authorizer::allow_all();
        let e = denied(&a, "key:write", "db/x");
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        match e {
            ApiError::Status(_, m) => assert_eq!(
                m,
                "Permission denied: provided token lacks permission 'key:write' on \"db/x\""
            ),
            other => panic!("{other:?}"),
        }
    }
}
