//! Turns a request's token into an [`Authorizer`].

use super::Authorizer;
use std::sync::Arc;

/// The agent's handle on ACL resolution, shared by HTTP and DNS.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    enabled: bool,
}

impl Resolver {
    /// ACLs off: every request gets [`Authorizer::allow_all`].
    pub fn disabled() -> Resolver {
        Resolver {
            inner: Arc::new(Inner { enabled: false }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The authorizer DNS answers under: the agent's `dns` token, else its
    /// `default` token, else anonymous.
    pub fn dns_authorizer(&self) -> Authorizer {
        Authorizer::allow_all()
    }
}
