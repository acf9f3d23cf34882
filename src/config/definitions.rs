//! Service and check definitions in config files (`service`, `services`,
//! `check`, `checks`), decoded and checked by the same types and rules as
//! `PUT /v1/agent/service/register` and `/v1/agent/check/register`, so a
//! definition means the same wherever it is written.
//!
//! Config files spell fields as Consul's config does, in snake_case
//! (`enable_tag_override`, `deregister_critical_service_after`,
//! `check_id`); the HTTP decoder matches field names case-insensitively,
//! so [`go_field_names`] only has to drop the underscores of struct keys.
//! Map keys (`meta`, `header`, `tagged_addresses`) are left as written.

use crate::catalog::types::{Check, Service};
use crate::http::agent::{CheckIn, ServiceDefinition};
use crate::http::decode::from_value;
use serde_json::Value;

/// A service defined in a config file, as the agent registers it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileService {
    pub service: Service,
    pub checks: Vec<Check>,
    /// Some check runs a command (script or Docker).
    pub runs_commands: bool,
}

/// A stand-alone check defined in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileCheck {
    pub check: Check,
    pub runs_commands: bool,
}

/// Consul's error for a script check in a config file of an agent that
/// allows none.
pub const SCRIPTS_DISABLED_LOCAL: &str = "Scripts are disabled on this agent; to enable, configure 'enable_script_checks' or 'enable_local_script_checks' to true";

/// Decodes one `service` definition.
pub fn service(def: Value) -> Result<FileService, String> {
    let def: ServiceDefinition =
        from_value(go_field_names(def)).map_err(|e| format!("service: {e}"))?;
    let (service, checks, runs_commands) = def
        .to_registration()
        .map_err(|e| format!("Failed to register service {:?}: {e}", def.name()))?;
    Ok(FileService {
        service,
        checks,
        runs_commands,
    })
}

/// Decodes one stand-alone `check` definition.
pub fn check(def: Value) -> Result<FileCheck, String> {
    let def: CheckIn = from_value(go_field_names(def)).map_err(|e| format!("check: {e}"))?;
    let (check, runs_commands) = def
        .to_check()
        .map_err(|e| format!("Failed to register check: {e}"))?;
    Ok(FileCheck {
        check,
        runs_commands,
    })
}

/// A definition as the HTTP API's registration body: the same keys the
/// decoder reads, so `PUT /v1/agent/service/register` takes it as is.
pub fn api_body(def: Value) -> Value {
    go_field_names(def)
}

/// Struct keys without underscores (`deregister_critical_service_after`
/// becomes `deregistercriticalserviceafter`, which the decoder matches to
/// `DeregisterCriticalServiceAfter`), through a service's `check`,
/// `checks` and `weights`. A single `checks {}` block (an object) is a
/// list of one, and repeated `check {}` blocks (a list) join `checks`.
fn go_field_names(def: Value) -> Value {
    let Value::Object(map) = def else {
        return def;
    };
    let mut out = serde_json::Map::new();
    let mut extra_checks = Vec::new();
    for (key, value) in map {
        let key = key.replace('_', "");
        let value = match key.to_ascii_lowercase().as_str() {
            "check" => match value {
                Value::Array(items) => {
                    extra_checks.extend(items.into_iter().map(go_field_names));
                    continue;
                }
                one => go_field_names(one),
            },
            "checks" => match value {
                Value::Array(items) => {
                    Value::Array(items.into_iter().map(go_field_names).collect())
                }
                Value::Null => Value::Null,
                one => Value::Array(vec![go_field_names(one)]),
            },
            "weights" => go_field_names(value),
            _ => value,
        };
        out.insert(key, value);
    }
    if !extra_checks.is_empty() {
        let checks = out
            .entry("checks")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = checks {
            list.extend(extra_checks);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::CheckKind;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn snake_case_service_fields_fill_the_definition() {
        let s = service(json!({
            "name": "web", "id": "web-1", "tags": ["a"], "address": "10.0.0.1", "port": 80,
            "meta": {"my_key": "v"}, "enable_tag_override": true,
            "weights": {"passing": 3, "warning": 1},
            "check": {"http": "http://localhost/health", "interval": "10s",
                      "deregister_critical_service_after": "1m"},
        }))
        .unwrap();
        assert_eq!(s.service.id, "web-1");
        assert_eq!(s.service.tags, ["a"]);
        assert_eq!(s.service.port, 80);
        assert!(s.service.enable_tag_override);
        assert_eq!(s.service.weights.passing, 3);
        assert_eq!(
            s.service.meta.get("my_key").map(String::as_str),
            Some("v"),
            "map keys keep their underscores"
        );
        assert_eq!(s.checks.len(), 1);
        let c = &s.checks[0];
        assert_eq!(c.check_id, "service:web-1");
        assert_eq!(c.definition.interval, Duration::from_secs(10));
        assert_eq!(
            c.definition.deregister_critical_service_after,
            Duration::from_secs(60)
        );
        assert!(matches!(c.definition.kind, CheckKind::Http(_)));
        assert!(!s.runs_commands);
    }

    #[test]
    fn one_checks_block_and_repeated_check_blocks_are_lists() {
        let s =
            service(json!({"name": "db", "checks": {"tcp": "localhost:5432", "interval": "5s"}}))
                .unwrap();
        assert_eq!(s.checks.len(), 1);
        let s = service(json!({"name": "db", "check": [
            {"ttl": "30s"}, {"args": ["/bin/true"], "interval": "5s"}
        ]}))
        .unwrap();
        assert_eq!(s.checks.len(), 2);
        assert_eq!(s.checks[1].check_id, "service:db:2");
        assert!(s.runs_commands);
    }

    #[test]
    fn stand_alone_checks() {
        let c = check(json!({"id": "mem", "name": "Memory", "ttl": "30s", "service_id": "web"}))
            .unwrap();
        assert_eq!(c.check.check_id, "mem");
        assert_eq!(c.check.service_id, "web");
        let c = check(json!({"check_id": "disk", "name": "Disk", "ttl": "1m"})).unwrap();
        assert_eq!(c.check.check_id, "disk");
    }

    #[test]
    fn bad_definitions_say_why() {
        assert_eq!(
            service(json!({"port": 80})).unwrap_err(),
            "Failed to register service \"\": Missing service name"
        );
        assert_eq!(
            service(json!({"name": "web", "bogus": 1})).unwrap_err(),
            "service: json: unknown field \"bogus\""
        );
        assert_eq!(
            check(json!({"ttl": "1s"})).unwrap_err(),
            "Failed to register check: Missing check name"
        );
        let e = service(json!({"name": "web", "check": {"interval": "10s"}})).unwrap_err();
        assert!(
            e.starts_with("Failed to register service \"web\": Invalid check"),
            "{e}"
        );
    }
}
