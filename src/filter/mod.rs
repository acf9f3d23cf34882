//! Consul's `?filter` query parameter: boolean expressions over the items
//! a list endpoint returns (`Service.Tags contains "v1" and Checks.Status
//! != passing`), with the grammar, semantics and error texts of go-bexpr
//! v0.1.2, the version every Consul release through 1.22 calls (its
//! three-argument `CreateFilter` exists in no later go-bexpr).
//!
//! Hand-written: no maintained Rust crate implements bexpr, and Consul
//! users depend on its exact behaviour (which value forms lex, which
//! operators each field type allows, what a missing map key means) and on
//! its error texts. The parts:
//!
//! * [`parse`]: the PEG grammar to an [`ast::Expr`], with pigeon's error
//!   reports (`1:14 (13): no match found, expected: ...`);
//! * [`schema`]: the selectable fields of each Consul type, by Go name;
//! * [`validate`]: selectors, operators, values and patterns checked
//!   against a schema when the filter is created, so a bad filter fails
//!   even when there is nothing to filter;
//! * [`eval`]: an item's JSON read through its schema.
//!
//! Every creation error reads `Failed to create boolean expression
//! evaluator: <reason>`, which Consul answers with a 500.
//!
//! Differences from go-bexpr, none reachable by a filter Consul accepts
//! and answers: parentheses nest at most [`parse::MAX_NESTING`] deep (Go's
//! parser takes time exponential in the depth), and a selector through a
//! nil pointer reads zero values (go-bexpr panics). Like Consul's call of
//! go-bexpr, there is no limit on the number of match expressions (v0.1.2
//! defines a limit of 32 but applies it only when the caller passes a
//! configuration, which Consul never does).

pub mod ast;
pub mod eval;
pub mod parse;
pub mod regex;
pub mod schema;
mod strconv;
pub mod validate;

use schema::Field;
use serde::Serialize;
use std::collections::BTreeMap;
use validate::Checked;

/// The Consul type an endpoint's filter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `structs.Node`.
    Node,
    /// `structs.ServiceNode`.
    ServiceNode,
    /// `structs.NodeService`.
    NodeService,
    /// `structs.HealthCheck`.
    HealthCheck,
    /// `structs.CheckServiceNode`.
    CheckServiceNode,
    /// `structs.NodeInfo`.
    NodeInfo,
    /// `api.AgentService`.
    AgentService,
    /// `serf.Member`.
    Member,
}

impl Subject {
    fn fields(self) -> &'static [Field] {
        match self {
            Subject::Node => schema::NODE,
            Subject::ServiceNode => schema::SERVICE_NODE,
            Subject::NodeService => schema::NODE_SERVICE,
            Subject::HealthCheck => schema::HEALTH_CHECK,
            Subject::CheckServiceNode => schema::CHECK_SERVICE_NODE,
            Subject::NodeInfo => schema::NODE_INFO,
            Subject::AgentService => schema::AGENT_SERVICE,
            Subject::Member => schema::MEMBER,
        }
    }
}

/// A filter that cannot be created, with go-bexpr's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Failed to create boolean expression evaluator: {0}")]
pub struct FilterError(String);

/// A filter checked only when it first meets an item, whose failure
/// therefore carries no creation prefix (Consul's `/v1/agent/checks`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvaluateError(String);

/// `?filter`, parsed and checked for one subject. An absent or empty
/// expression lets everything through, as go-bexpr's nil filter does.
#[derive(Debug)]
pub struct Filter {
    checked: Option<(Checked, &'static [Field])>,
}

impl Filter {
    /// go-bexpr's `CreateFilter`: parse, then check against `subject`.
    pub fn new(expr: Option<&str>, subject: Subject) -> Result<Filter, FilterError> {
        let Some(expr) = expr.filter(|e| !e.is_empty()) else {
            return Ok(Filter { checked: None });
        };
        let ast = parse::parse(expr).map_err(FilterError)?;
        let fields = subject.fields();
        let checked = validate::check(ast, fields).map_err(FilterError)?;
        Ok(Filter {
            checked: Some((checked, fields)),
        })
    }

    /// Whether an expression was given.
    pub fn is_active(&self) -> bool {
        self.checked.is_some()
    }

    /// Whether `item`, rendered as the endpoint renders it, passes.
    pub fn matches<T: Serialize + ?Sized>(&self, item: &T) -> bool {
        let Some((checked, fields)) = &self.checked else {
            return true;
        };
        match serde_json::to_value(item) {
            Ok(json) => eval::eval(checked, fields, &json),
            Err(_) => false,
        }
    }

    /// Keeps the items that pass.
    pub fn retain<T: Serialize>(&self, items: &mut Vec<T>) {
        if self.is_active() {
            items.retain(|i| self.matches(i));
        }
    }

    /// Keeps the map entries whose values pass.
    pub fn retain_values<K: Ord, V: Serialize>(&self, map: &mut BTreeMap<K, V>) {
        if self.is_active() {
            map.retain(|_, v| self.matches(v));
        }
    }
}

/// A filter parsed when the request arrives but checked against its type
/// only when there is an item to run it on: Consul creates the
/// `/v1/agent/checks` filter without a type, so a bad selector passes over
/// an empty map and fails on a non-empty one, with the bare reason.
#[derive(Debug)]
pub struct DeferredFilter {
    ast: Option<ast::Expr>,
}

impl DeferredFilter {
    /// Parses; a syntax error fails here, with the creation prefix.
    pub fn new(expr: Option<&str>) -> Result<DeferredFilter, FilterError> {
        let ast = match expr.filter(|e| !e.is_empty()) {
            None => None,
            Some(e) => Some(parse::parse(e).map_err(FilterError)?),
        };
        Ok(DeferredFilter { ast })
    }

    /// Checks against `subject` if `map` has an entry, then keeps the
    /// entries whose values pass.
    pub fn retain_values<K: Ord, V: Serialize>(
        self,
        subject: Subject,
        map: &mut BTreeMap<K, V>,
    ) -> Result<(), EvaluateError> {
        let Some(ast) = self.ast else {
            return Ok(());
        };
        if map.is_empty() {
            return Ok(());
        }
        let fields = subject.fields();
        let checked = validate::check(ast, fields).map_err(EvaluateError)?;
        let filter = Filter {
            checked: Some((checked, fields)),
        };
        filter.retain_values(map);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn creation_errors_carry_the_prefix() {
        let e = Filter::new(Some("Service.Tags == x"), Subject::CheckServiceNode).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"Failed to create boolean expression evaluator: Invalid match operator "Equal" for selector "Service.Tags""#
        );
        let e = Filter::new(Some("foo"), Subject::Node).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"Failed to create boolean expression evaluator: 1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]"#
        );
    }

    #[test]
    fn there_is_no_limit_on_match_expressions() {
        // As Consul calls go-bexpr v0.1.2: its 32 needs a configuration.
        let many = vec!["Node == a"; 40].join(" or ");
        assert!(Filter::new(Some(&many), Subject::Node).is_ok());
    }

    #[test]
    fn an_empty_expression_lets_everything_through() {
        for expr in [None, Some("")] {
            let f = Filter::new(expr, Subject::Node).expect("nil filter");
            assert!(!f.is_active());
            let mut v = vec![json!({"Node": "a"})];
            f.retain(&mut v);
            assert_eq!(v.len(), 1);
        }
        assert!(
            Filter::new(Some(" "), Subject::Node).is_err(),
            "only empty is nil"
        );
    }

    #[test]
    fn filters_lists_and_map_values() {
        let f = Filter::new(Some("Meta.env == prod"), Subject::Node).expect("valid");
        let mut v = vec![
            json!({"Node": "a", "Meta": {"env": "prod"}}),
            json!({"Node": "b", "Meta": {}}),
        ];
        f.retain(&mut v);
        assert_eq!(v, vec![json!({"Node": "a", "Meta": {"env": "prod"}})]);
        let f = Filter::new(Some("Status == critical"), Subject::HealthCheck).expect("valid");
        let mut m = BTreeMap::from([
            ("c1", json!({"Status": "critical"})),
            ("c2", json!({"Status": "passing"})),
        ]);
        f.retain_values(&mut m);
        assert_eq!(m.keys().collect::<Vec<_>>(), vec![&"c1"]);
    }

    #[test]
    fn a_deferred_filter_is_checked_only_against_items() {
        let mut empty: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let f = DeferredFilter::new(Some("Nope == 1")).expect("parses");
        assert_eq!(f.retain_values(Subject::HealthCheck, &mut empty), Ok(()));
        let mut one = BTreeMap::from([("c".to_string(), json!({"Status": "passing"}))]);
        let f = DeferredFilter::new(Some("Nope == 1")).expect("parses");
        assert_eq!(
            f.retain_values(Subject::HealthCheck, &mut one)
                .unwrap_err()
                .to_string(),
            r#"Selector "Nope" is not valid"#
        );
        let e = DeferredFilter::new(Some("Nope ==")).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("Failed to create boolean expression evaluator: 1:8 (7)"));
    }
}
