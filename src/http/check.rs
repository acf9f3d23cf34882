//! A check definition as Consul's JSON carries it: flat, one field for every
//! setting of every kind of check, any number of them set. Consul tells the
//! kind from which ones are set (`CheckType.Type()`) and refuses some
//! combinations (`CheckType.Validate()`). Both happen here, once, at the
//! edge; what goes on is a [`CheckDefinition`] whose kind carries only its
//! own settings.
//!
//! A definition that sets fields of two kinds (`HTTP` and `TCP`) is
//! accepted, as Consul accepts it: the kind that comes first in Consul's
//! `Type()` order wins and the other's fields are dropped.

use crate::catalog::types::{CheckDefinition, CheckKind, HttpCheck};
use std::collections::BTreeMap;
use std::time::Duration;

/// Consul's `CheckType` fields, with each snake_case spelling already merged
/// into its canonical field. Zero durations are unset.
#[derive(Debug, Clone, Default)]
pub struct CheckFields {
    pub http: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub disable_redirects: bool,
    pub tls_server_name: String,
    pub tls_skip_verify: bool,
    pub tcp: String,
    pub tcp_use_tls: bool,
    pub udp: String,
    pub grpc: String,
    pub grpc_use_tls: bool,
    pub h2ping: String,
    pub h2ping_use_tls: bool,
    pub os_service: String,
    pub alias_node: String,
    pub alias_service: String,
    pub script_args: Vec<String>,
    pub docker_container_id: String,
    pub shell: String,
    pub ttl: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub deregister_critical_service_after: Duration,
    pub output_max_size: u64,
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
}

impl CheckFields {
    /// Whether any kind that runs every `Interval` is set (Docker checks
    /// among them).
    fn is_interval_check(&self) -> bool {
        !self.script_args.is_empty()
            || !self.http.is_empty()
            || !self.tcp.is_empty()
            || !self.udp.is_empty()
            || !self.grpc.is_empty()
            || !self.h2ping.is_empty()
            || !self.os_service.is_empty()
            || !self.docker_container_id.is_empty()
    }

    fn is_alias(&self) -> bool {
        !self.alias_node.is_empty() || !self.alias_service.is_empty()
    }

    /// Whether the definition asks to run a command (script and Docker
    /// checks), whatever kind it ends up as.
    pub fn runs_commands(&self) -> bool {
        !self.script_args.is_empty()
    }

    /// Consul's `CheckType.Validate`, with its texts (the caller prefixes
    /// `Invalid check: `).
    pub fn validate(&self) -> Result<(), String> {
        let interval_check = self.is_interval_check();
        let alias = self.is_alias();
        let (interval, ttl) = (!self.interval.is_zero(), !self.ttl.is_zero());
        if interval && ttl {
            return Err("Interval and TTL cannot both be specified".into());
        }
        if interval_check && !interval {
            return Err(
                "Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks".into(),
            );
        }
        if alias {
            if ttl {
                return Err("TTL must be not be set for Alias checks".into());
            }
            if interval {
                return Err("Interval must not be set for Alias checks".into());
            }
        }
        if !interval_check && !alias && !ttl {
            return Err("TTL must be > 0 for TTL checks".into());
        }
        Ok(())
    }

    /// The definition, its kind chosen in Consul's `CheckType.Type()` order:
    /// gRPC, HTTP, TTL, TCP, UDP, alias, Docker, script, H2PING, OS service.
    /// With none of them set it is [`CheckKind::Undefined`] with no type.
    pub fn into_definition(self) -> CheckDefinition {
        let CheckFields {
            http,
            method,
            header,
            body,
            disable_redirects,
            tls_server_name,
            tls_skip_verify,
            tcp,
            tcp_use_tls,
            udp,
            grpc,
            grpc_use_tls,
            h2ping,
            h2ping_use_tls,
            os_service,
            alias_node,
            alias_service,
            script_args,
            docker_container_id,
            shell,
            ttl,
            interval,
            timeout,
            deregister_critical_service_after,
            output_max_size,
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
        } = self;
        let kind = if !grpc.is_empty() {
            CheckKind::Grpc {
                target: grpc,
                use_tls: grpc_use_tls,
                tls_server_name,
                tls_skip_verify,
            }
        } else if !http.is_empty() {
            CheckKind::Http(HttpCheck {
                url: http,
                method,
                header,
                body,
                disable_redirects,
                tls_server_name,
                tls_skip_verify,
            })
        } else if !ttl.is_zero() {
            CheckKind::Ttl { ttl }
        } else if !tcp.is_empty() {
            CheckKind::Tcp {
                address: tcp,
                use_tls: tcp_use_tls,
                tls_server_name,
                tls_skip_verify,
            }
        } else if !udp.is_empty() {
            CheckKind::Udp { address: udp }
        } else if !alias_node.is_empty() || !alias_service.is_empty() {
            CheckKind::Alias {
                node: alias_node,
                service: alias_service,
            }
        } else if !docker_container_id.is_empty() {
            CheckKind::Docker {
                container_id: docker_container_id,
                shell,
                args: script_args,
            }
        } else if !script_args.is_empty() {
            CheckKind::Script { args: script_args }
        } else if !h2ping.is_empty() {
            CheckKind::H2ping {
                address: h2ping,
                use_tls: h2ping_use_tls,
                tls_server_name,
                tls_skip_verify,
            }
        } else if !os_service.is_empty() {
            CheckKind::OsService {
                service: os_service,
            }
        } else {
            CheckKind::default()
        };
        CheckDefinition {
            kind,
            interval,
            timeout,
            deregister_critical_service_after,
            output_max_size,
            success_before_passing,
            failures_before_warning,
            failures_before_critical,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn interval(f: CheckFields) -> CheckFields {
        CheckFields {
            interval: 10 * SEC,
            ..f
        }
    }

    #[test]
    fn each_kind_keeps_only_its_own_settings() {
        let d = interval(CheckFields {
            tcp: "db:5432".into(),
            tcp_use_tls: true,
            tls_server_name: "db.internal".into(),
            // Settings of other kinds that were sent along are dropped.
            method: "POST".into(),
            shell: "/bin/sh".into(),
            timeout: 2 * SEC,
            output_max_size: 100,
            failures_before_critical: 3,
            ..CheckFields::default()
        })
        .into_definition();
        assert_eq!(
            d,
            CheckDefinition {
                kind: CheckKind::Tcp {
                    address: "db:5432".into(),
                    use_tls: true,
                    tls_server_name: "db.internal".into(),
                    tls_skip_verify: false,
                },
                interval: 10 * SEC,
                timeout: 2 * SEC,
                output_max_size: 100,
                failures_before_critical: 3,
                ..CheckDefinition::default()
            }
        );
    }

    #[test]
    fn the_kind_follows_consuls_type_order() {
        let f = |f: CheckFields| interval(f).into_definition().kind.type_name().to_string();
        let all = CheckFields {
            grpc: "g:1".into(),
            http: "http://h".into(),
            tcp: "t:1".into(),
            udp: "u:1".into(),
            alias_service: "a".into(),
            docker_container_id: "c".into(),
            script_args: vec!["true".into()],
            h2ping: "h2:1".into(),
            os_service: "sshd".into(),
            ..CheckFields::default()
        };
        assert_eq!(f(all.clone()), "grpc");
        let all = CheckFields {
            grpc: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "http");
        let all = CheckFields {
            http: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "tcp");
        let with_ttl = CheckFields {
            ttl: SEC,
            interval: Duration::ZERO,
            ..all.clone()
        };
        assert_eq!(with_ttl.into_definition().kind.type_name(), "ttl");
        let all = CheckFields {
            tcp: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "udp");
        let all = CheckFields {
            udp: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "alias");
        let all = CheckFields {
            alias_service: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "docker");
        let all = CheckFields {
            docker_container_id: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "script");
        let all = CheckFields {
            script_args: Vec::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "h2ping");
        let all = CheckFields {
            h2ping: String::new(),
            ..all
        };
        assert_eq!(f(all.clone()), "os_service");
        let none = CheckFields {
            os_service: String::new(),
            ..all
        };
        assert_eq!(none.into_definition().kind, CheckKind::default());
    }

    #[test]
    fn docker_checks_take_the_script_args() {
        let d = interval(CheckFields {
            docker_container_id: "f00".into(),
            shell: "/bin/bash".into(),
            script_args: vec!["check.sh".into()],
            ..CheckFields::default()
        })
        .into_definition();
        assert_eq!(
            d.kind,
            CheckKind::Docker {
                container_id: "f00".into(),
                shell: "/bin/bash".into(),
                args: vec!["check.sh".into()],
            }
        );
    }

    #[test]
    fn validation_follows_consul() {
        let v = |f: CheckFields| f.validate();
        let http = CheckFields {
            http: "http://h".into(),
            ..CheckFields::default()
        };
        assert_eq!(
            v(http.clone()),
            Err("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks".into())
        );
        assert_eq!(v(interval(http.clone())), Ok(()));
        assert_eq!(
            v(CheckFields {
                ttl: SEC,
                ..interval(http.clone())
            }),
            Err("Interval and TTL cannot both be specified".into())
        );
        assert_eq!(
            v(CheckFields::default()),
            Err("TTL must be > 0 for TTL checks".into())
        );
        assert_eq!(
            v(CheckFields {
                ttl: SEC,
                ..CheckFields::default()
            }),
            Ok(())
        );
        let alias = CheckFields {
            alias_node: "n2".into(),
            ..CheckFields::default()
        };
        assert_eq!(v(alias.clone()), Ok(()));
        assert_eq!(
            v(CheckFields {
                ttl: SEC,
                ..alias.clone()
            }),
            Err("TTL must be not be set for Alias checks".into())
        );
        assert_eq!(
            v(interval(alias.clone())),
            Err("Interval must not be set for Alias checks".into())
        );
        // Fields of two kinds: an HTTP check with an alias target is still
        // refused for its interval, although it is an HTTP check.
        assert_eq!(
            v(interval(CheckFields {
                http: "http://h".into(),
                ..alias
            })),
            Err("Interval must not be set for Alias checks".into())
        );
        // A Docker check without args needs an interval like the others.
        assert!(v(CheckFields {
            docker_container_id: "c".into(),
            ..CheckFields::default()
        })
        .is_err());
    }

    #[test]
    fn command_checks_are_known_whatever_kind_wins() {
        let f = interval(CheckFields {
            http: "http://h".into(),
            script_args: vec!["true".into()],
            ..CheckFields::default()
        });
        assert!(f.runs_commands());
        assert_eq!(f.into_definition().kind.type_name(), "http");
        assert!(!CheckFields::default().runs_commands());
    }
}
