//! Checking a parsed filter against the type it will run on, as go-bexpr's
//! `validate.go` does when the filter is created: every selector must name
//! a field (`Selector "X" is not valid`, naming the prefix up to the first
//! part that is not), the operator must be one the field's type supports
//! (`Invalid match operator "Equal" for selector "Service.Tags"`), the
//! value must convert to the field's type (`strconv` rules, base 0 for
//! integers) and a `matches` pattern must compile. Match expressions are
//! checked left to right and the first failure is the error.
//!
//! The operators each type supports (`field_config.go`):
//!
//! | type                | operators                                   |
//! |---------------------|---------------------------------------------|
//! | string              | `==` `!=` `in` `not in` `matches` `not matches` |
//! | bool, integers      | `==` `!=`                                   |
//! | `map[string]V`      | `is empty` `is not empty` `in` `not in` (keys) |
//! | `[]primitive`       | `in` `not in` `is empty` `is not empty`     |
//! | `[]struct`          | `is empty` `is not empty`                   |
//! | struct              | none                                        |

use super::ast::{Expr, Match, MatchOp, Selector};
use super::regex::{compile, Pattern};
use super::schema::{Field, Kind};
use super::strconv::{parse_bool, parse_int, parse_uint, quote};

/// A filter checked against its type: values converted, patterns compiled.
#[derive(Debug)]
pub enum Checked {
    Or(Vec<Checked>),
    And(Vec<Checked>),
    Not(Box<Checked>),
    Match(CheckedMatch),
}

#[derive(Debug)]
pub struct CheckedMatch {
    pub selector: Selector,
    pub op: MatchOp,
    pub value: Value,
}

/// A match value converted to its field's type.
#[derive(Debug)]
pub enum Value {
    /// `is empty` and `is not empty` have none.
    None,
    Str(Vec<u8>),
    Int(i64),
    Uint(u64),
    Bool(bool),
    Pattern(Pattern),
}

/// Checks `expr` against the fields of the type it filters.
pub fn check(expr: Expr, root: &'static [Field]) -> Result<Checked, String> {
    Ok(match expr {
        Expr::Or(v) => Checked::Or(check_all(v, root)?),
        Expr::And(v) => Checked::And(check_all(v, root)?),
        Expr::Not(inner) => Checked::Not(Box::new(check(*inner, root)?)),
        Expr::Match(m) => Checked::Match(check_match(m, root)?),
    })
}

fn check_all(v: Vec<Expr>, root: &'static [Field]) -> Result<Vec<Checked>, String> {
    v.into_iter().map(|e| check(e, root)).collect()
}

/// Where a selector may go next.
enum Next {
    Fields(&'static [Field]),
    /// Any map key, to a value of this type.
    Any(&'static Kind),
    Nothing,
}

fn next_of(kind: &'static Kind) -> Next {
    match kind {
        Kind::Map(value) => Next::Any(value),
        k => k.fields().map_or(Next::Nothing, Next::Fields),
    }
}

/// The type a selector names.
pub fn resolve(selector: &Selector, root: &'static [Field]) -> Result<&'static Kind, String> {
    let mut next = Next::Fields(root);
    let mut kind = None;
    for (i, part) in selector.0.iter().enumerate() {
        let found = match next {
            Next::Fields(fields) => fields
                .iter()
                .find(|f| f.name.as_bytes() == part.as_slice())
                .map(|f| &f.kind),
            Next::Any(k) => Some(k),
            Next::Nothing => None,
        };
        let Some(k) = found else {
            return Err(format!(
                "Selector {} is not valid",
                quote(&selector.prefix(i + 1).joined())
            ));
        };
        next = next_of(k);
        kind = Some(k);
    }
    kind.ok_or_else(|| format!("Invalid selector: {}", quote(&selector.joined())))
}

fn supports(kind: &Kind, op: MatchOp) -> bool {
    use MatchOp::*;
    let ops: &[MatchOp] = match kind {
        Kind::Str => &[Equal, NotEqual, In, NotIn, Matches, NotMatches],
        Kind::Bool | Kind::Int | Kind::Uint(_) => &[Equal, NotEqual],
        Kind::Struct(_) => &[],
        Kind::Map(_) => &[IsEmpty, IsNotEmpty, In, NotIn],
        Kind::Ip => &[In, NotIn, IsEmpty, IsNotEmpty],
        Kind::Slice(elem) if elem.is_primitive() => &[In, NotIn, IsEmpty, IsNotEmpty],
        Kind::Slice(_) => &[IsEmpty, IsNotEmpty],
    };
    ops.contains(&op)
}

/// go-bexpr's coercion function for the type (`coerce.go`).
fn coerce(kind: &Kind, raw: &[u8]) -> Result<Value, String> {
    let num = |e: super::strconv::NumError| e.to_string();
    Ok(match kind {
        Kind::Bool => Value::Bool(parse_bool(raw).map_err(num)?),
        Kind::Int => Value::Int(parse_int(raw, 64).map_err(num)?),
        Kind::Uint(bits) => Value::Uint(parse_uint(raw, *bits).map_err(num)?),
        Kind::Ip => Value::Uint(parse_uint(raw, 8).map_err(num)?),
        Kind::Slice(elem) if elem.is_primitive() => coerce(elem, raw)?,
        _ => Value::Str(raw.to_vec()),
    })
}

fn check_match(m: Match, root: &'static [Field]) -> Result<CheckedMatch, String> {
    let kind = resolve(&m.selector, root)?;
    let sel = quote(&m.selector.joined());
    if !supports(kind, m.op) {
        return Err(format!(
            "Invalid match operator {} for selector {sel}",
            quote(m.op.name().as_bytes())
        ));
    }
    let value = match &m.value {
        None => Value::None,
        Some(raw) => {
            let v = coerce(kind, raw).map_err(|e| {
                format!(
                    "Failed to coerce value {} for selector {sel}: {e}",
                    quote(raw)
                )
            })?;
            match (m.op, v) {
                (MatchOp::Matches | MatchOp::NotMatches, Value::Str(pattern)) => {
                    Value::Pattern(compile(&pattern).map_err(|e| {
                        format!(
                            "Failed to compile regular expression {}: {e}",
                            quote(&pattern)
                        )
                    })?)
                }
                (_, v) => v,
            }
        }
    };
    Ok(CheckedMatch {
        selector: m.selector,
        op: m.op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::super::schema::{CHECK_SERVICE_NODE, MEMBER, NODE_SERVICE};
    use super::*;

    fn err(src: &str, root: &'static [Field]) -> String {
        check(parse(src).expect(src), root).expect_err(src)
    }

    fn ok(src: &str, root: &'static [Field]) {
        check(parse(src).expect(src), root).unwrap_or_else(|e| panic!("{src}: {e}"));
    }

    #[test]
    fn selectors_are_the_go_field_names() {
        for src in [
            "Service.Service == web",
            "Service.Meta.env == prod",
            r#"Service.Meta["a-b"] == x"#,
            "Node.Meta is empty",
            "Checks.Status == passing",
            "prod in Service.Tags",
            "Checks is not empty",
            "Service.TaggedAddresses.lan.Port == 80",
            "Service.Weights.Passing == 1",
            "Service.Proxy.Upstreams.DestinationName == db",
            "Service.Connect.Native == false",
            "web in Checks.ServiceTags",
        ] {
            ok(src, CHECK_SERVICE_NODE);
        }
        assert_eq!(
            err("Service.Nope == 1", CHECK_SERVICE_NODE),
            r#"Selector "Service.Nope" is not valid"#
        );
        assert_eq!(
            err("Service.Meta.a.b == 1", CHECK_SERVICE_NODE),
            r#"Selector "Service.Meta.a.b" is not valid"#
        );
        assert_eq!(
            err("service.service == web", CHECK_SERVICE_NODE),
            r#"Selector "service" is not valid"#,
            "case-sensitive"
        );
        assert_eq!(
            err("Service.CreateIndex == 1", CHECK_SERVICE_NODE),
            r#"Selector "Service.CreateIndex" is not valid"#,
            "RaftIndex is bexpr:\"-\""
        );
        assert_eq!(
            err("Tags.x == 1", NODE_SERVICE),
            r#"Selector "Tags.x" is not valid"#
        );
    }

    #[test]
    fn operators_must_fit_the_type() {
        let cases = [
            ("Service.Tags == x", "Equal", "Service.Tags"),
            ("Service.Tags matches x", "Matches", "Service.Tags"),
            ("Service.Port contains 8", "In", "Service.Port"),
            ("Service.Address is empty", "Is Empty", "Service.Address"),
            ("Service == x", "Equal", "Service"),
            ("Checks == x", "Equal", "Checks"),
            ("x in Checks", "In", "Checks"),
            ("Service.Meta != x", "Not Equal", "Service.Meta"),
            (
                "Service.EnableTagOverride not matches x",
                "Not Matches",
                "Service.EnableTagOverride",
            ),
            (
                "Service.Weights is not empty",
                "Is Not Empty",
                "Service.Weights",
            ),
            ("Service.Port not in Service.Port", "Not In", "Service.Port"),
        ];
        for (src, op, sel) in cases {
            assert_eq!(
                err(src, CHECK_SERVICE_NODE),
                format!("Invalid match operator \"{op}\" for selector \"{sel}\""),
                "{src}"
            );
        }
    }

    #[test]
    fn values_are_coerced_to_the_field_type() {
        ok("Service.Port == \"0x50\"", CHECK_SERVICE_NODE);
        // Unquoted, a hex value does not lex (numbers are decimal).
        assert!(parse("Service.Port == 0x50").is_err());
        ok("Service.Port == \"80\"", CHECK_SERVICE_NODE);
        ok("Service.EnableTagOverride == T", CHECK_SERVICE_NODE);
        ok("Port == 65535", MEMBER);
        ok("127 in Addr", MEMBER);
        assert_eq!(
            err("Service.Port == abc", CHECK_SERVICE_NODE),
            r#"Failed to coerce value "abc" for selector "Service.Port": strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        assert_eq!(
            err("Service.EnableTagOverride == yes", CHECK_SERVICE_NODE),
            r#"Failed to coerce value "yes" for selector "Service.EnableTagOverride": strconv.ParseBool: parsing "yes": invalid syntax"#
        );
        assert_eq!(
            err("Port == 65536", MEMBER),
            r#"Failed to coerce value "65536" for selector "Port": strconv.ParseUint: parsing "65536": value out of range"#
        );
        assert_eq!(
            err("Service.Port == 1.5", CHECK_SERVICE_NODE),
            r#"Failed to coerce value "1.5" for selector "Service.Port": strconv.ParseInt: parsing "1.5": invalid syntax"#
        );
    }

    #[test]
    fn a_string_map_value_is_a_string() {
        assert_eq!(
            err("Service.Meta.env is empty", CHECK_SERVICE_NODE),
            r#"Invalid match operator "Is Empty" for selector "Service.Meta.env""#
        );
        ok("Service.Meta is empty", CHECK_SERVICE_NODE);
    }

    #[test]
    fn patterns_must_compile() {
        ok("Service.Service matches `^web-\\d+$`", CHECK_SERVICE_NODE);
        assert_eq!(
            err("Service.Service matches \"(web\"", CHECK_SERVICE_NODE),
            r#"Failed to compile regular expression "(web": error parsing regexp: missing closing ): `(web`"#
        );
    }

    #[test]
    fn the_first_failure_left_to_right_is_reported() {
        assert_eq!(
            err(
                "Service.Port == 1 and (Nope == 1 or Service.Tags == x)",
                CHECK_SERVICE_NODE
            ),
            r#"Selector "Nope" is not valid"#
        );
    }
}
