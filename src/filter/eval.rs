//! Running a checked filter over one item: the item's JSON, read through
//! the schema of the Go type Consul evaluates (`evaluate.go`).
//!
//! * A selector that passes through a list of structs matches when any
//!   element matches, the operator applied per element: `Checks.Status !=
//!   passing` is "some check is not passing", and an empty list matches
//!   nothing, whatever the operator.
//! * A map key that is absent makes `==`, `in` and `is not empty` false
//!   and every other operator true (go-bexpr v0.1.2 counts `matches` among
//!   the others, so `Meta.missing matches x` is true).
//! * A field the JSON leaves out holds its Go zero value (`""`, `0`,
//!   `false`, an empty map or list). Consul's go-bexpr panics on a selector
//!   through a nil pointer (`Proxy.Mode` on `/v1/agent/services` for a
//!   service without a proxy) and the request fails; here the struct holds
//!   zero values.
//! * `in` on a string is a substring test; on a map, a key test; on a
//!   list, an element test; `matches` is an unanchored search.

use super::ast::MatchOp;
use super::schema::{Field, Kind};
use super::validate::{Checked, CheckedMatch, Value};
use serde_json::Value as Json;

/// Whether `item` passes.
pub fn eval(c: &Checked, root: &'static [Field], item: &Json) -> bool {
    match c {
        Checked::Or(v) => v.iter().any(|e| eval(e, root, item)),
        Checked::And(v) => v.iter().all(|e| eval(e, root, item)),
        Checked::Not(inner) => !eval(inner, root, item),
        Checked::Match(m) => walk(m, 0, &Kind::Struct(root), Some(item)),
    }
}

fn walk(m: &CheckedMatch, depth: usize, kind: &Kind, v: Option<&Json>) -> bool {
    let Some(part) = m.selector.0.get(depth) else {
        return leaf(m, kind, v);
    };
    match kind {
        Kind::Struct(fields) => {
            let Some(field) = fields.iter().find(|f| f.name.as_bytes() == part.as_slice()) else {
                return false;
            };
            walk(m, depth + 1, &field.kind, v.and_then(|v| v.get(field.name)))
        }
        Kind::Slice(elem) => items(v).iter().any(|item| walk(m, depth, elem, Some(item))),
        Kind::Map(value) => match entry(v, part) {
            Some(x) => walk(m, depth + 1, value, Some(x)),
            None => !matches!(m.op, MatchOp::Equal | MatchOp::In | MatchOp::IsNotEmpty),
        },
        _ => false,
    }
}

fn items(v: Option<&Json>) -> &[Json] {
    v.and_then(Json::as_array).map_or(&[], Vec::as_slice)
}

fn entry<'a>(v: Option<&'a Json>, key: &[u8]) -> Option<&'a Json> {
    let key = std::str::from_utf8(key).ok()?;
    v?.as_object()?.get(key)
}

fn leaf(m: &CheckedMatch, kind: &Kind, v: Option<&Json>) -> bool {
    let (op, negated) = m.op.positive();
    let hit = match op {
        MatchOp::Equal => equal(kind, &m.value, v),
        MatchOp::In => contains(kind, &m.value, v),
        MatchOp::IsEmpty => len(kind, v) == 0,
        MatchOp::Matches => match &m.value {
            Value::Pattern(re) => re.is_match(text(v)),
            _ => false,
        },
        _ => false,
    };
    hit != negated
}

fn text(v: Option<&Json>) -> &str {
    v.and_then(Json::as_str).unwrap_or("")
}

fn int(v: Option<&Json>) -> i128 {
    v.and_then(|v| {
        v.as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from))
    })
    .unwrap_or(0)
}

fn equal(kind: &Kind, want: &Value, v: Option<&Json>) -> bool {
    match (kind, want) {
        (Kind::Str, Value::Str(s)) => text(v).as_bytes() == s.as_slice(),
        (Kind::Int, Value::Int(n)) => int(v) == i128::from(*n),
        (Kind::Uint(_), Value::Uint(n)) => int(v) == i128::from(*n),
        (Kind::Bool, Value::Bool(b)) => v.and_then(Json::as_bool).unwrap_or(false) == *b,
        _ => false,
    }
}

fn contains(kind: &Kind, want: &Value, v: Option<&Json>) -> bool {
    match (kind, want) {
        (Kind::Str, Value::Str(needle)) => find(text(v).as_bytes(), needle),
        (Kind::Map(_), Value::Str(key)) => entry(v, key).is_some(),
        (Kind::Slice(elem), want) => items(v).iter().any(|item| equal(elem, want, Some(item))),
        (Kind::Ip, Value::Uint(b)) => ip_bytes(v).iter().any(|x| u64::from(*x) == *b),
        _ => false,
    }
}

fn len(kind: &Kind, v: Option<&Json>) -> usize {
    match kind {
        Kind::Map(_) => v.and_then(Json::as_object).map_or(0, |o| o.len()),
        Kind::Slice(_) => items(v).len(),
        Kind::Ip => ip_bytes(v).len(),
        _ => 0,
    }
}

/// Go's `strings.Contains` on bytes.
fn find(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A `net.IP` as go-bexpr sees it: its bytes (4 for IPv4, as memberlist
/// keeps them; 16 for IPv6).
fn ip_bytes(v: Option<&Json>) -> Vec<u8> {
    match text(v).parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.octets().to_vec(),
        Ok(std::net::IpAddr::V6(ip)) => ip.octets().to_vec(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::super::schema::{CHECK_SERVICE_NODE, MEMBER};
    use super::super::validate::check;
    use super::*;
    use serde_json::json;

    fn entry_json() -> Json {
        json!({
            "Node": {"Node": "n1", "Address": "10.0.0.1", "Meta": {"env": "prod", "rack": ""}},
            "Service": {
                "ID": "web-1", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
                "Meta": {"version": "1.2"}, "EnableTagOverride": false,
                "Weights": {"Passing": 10, "Warning": 1},
                "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 8080}}
            },
            "Checks": [
                {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
                {"CheckID": "web", "Status": "critical", "ServiceTags": ["v1"]}
            ]
        })
    }

    fn run(src: &str, item: &Json) -> bool {
        let c = check(parse(src).expect(src), CHECK_SERVICE_NODE).expect(src);
        eval(&c, CHECK_SERVICE_NODE, item)
    }

    #[test]
    fn each_operator() {
        let e = entry_json();
        let cases = [
            ("Service.Service == web", true),
            ("Service.Service != web", false),
            ("Service.Service == \"we\"", false),
            ("Service.Service contains eb", true),
            ("eb in Service.Service", true),
            ("\"\" in Service.Service", true),
            ("Service.Service not contains eb", false),
            ("v1 in Service.Tags", true),
            ("v2 in Service.Tags", false),
            ("v2 not in Service.Tags", true),
            ("Service.Tags is empty", false),
            ("Service.Tags is not empty", true),
            ("Service.Service matches \"^w.b$\"", true),
            ("Service.Service matches \"^eb\"", false),
            ("Service.Service matches eb", true),
            ("Service.Service not matches \"^x\"", true),
            ("Service.Port == 8080", true),
            ("Service.Port == \"0x1F90\"", true),
            ("Service.Port != 80", true),
            ("Service.EnableTagOverride == false", true),
            ("Service.Weights.Passing == 10", true),
            ("Service.Meta.version == \"1.2\"", true),
            ("version in Service.Meta", true),
            ("Service.Meta is not empty", true),
            ("Service.TaggedAddresses.lan.Port == 8080", true),
            ("Service.TaggedAddresses.wan.Port == 8080", false),
            ("Service.TaggedAddresses.wan.Port != 8080", true),
            ("Node.Meta.rack == \"\"", true),
            ("Node.Meta[\"env\"] == prod", true),
            // Left out of the JSON: the zero value.
            ("Service.Kind == \"\"", true),
            ("Service.SocketPath != x", true),
            ("Service.Proxy.Mode == \"\"", true),
            ("Service.Proxy.Upstreams is empty", true),
            ("Service.Connect.Native == false", true),
        ];
        for (src, want) in cases {
            assert_eq!(run(src, &e), want, "{src}");
        }
    }

    #[test]
    fn lists_of_structs_mean_any_element() {
        let e = entry_json();
        assert!(run("Checks.Status == critical", &e));
        assert!(run("Checks.Status == passing", &e));
        assert!(
            run("Checks.Status != passing", &e),
            "some check is not passing"
        );
        assert!(!run("Checks.Status == warning", &e));
        assert!(!run("not Checks.Status == critical", &e));
        assert!(run("v1 in Checks.ServiceTags", &e));
        assert!(
            run("Checks.ServiceTags is empty", &e),
            "the serfHealth check's"
        );
        let none = json!({"Checks": []});
        assert!(!run("Checks.Status == passing", &none));
        assert!(
            !run("Checks.Status != passing", &none),
            "no element, no match"
        );
        assert!(run("Checks is empty", &none));
    }

    #[test]
    fn missing_map_keys() {
        let e = entry_json();
        let cases = [
            ("Node.Meta.zone == a", false),
            ("a in Node.Meta.zone", false),
            ("Node.Meta.zone != a", true),
            ("a not in Node.Meta.zone", true),
            // go-bexpr v0.1.2: every other operator is true.
            ("Node.Meta.zone matches a", true),
            ("Node.Meta.zone not matches a", true),
            ("Service.TaggedAddresses.wan.Address == x", false),
        ];
        for (src, want) in cases {
            assert_eq!(run(src, &e), want, "{src}");
        }
    }

    #[test]
    fn precedence_and_negation() {
        let e = entry_json();
        assert!(run(
            "Service.Port == 1 or Service.Service == web and Node.Node == n1",
            &e
        ));
        assert!(!run(
            "(Service.Port == 1 or Service.Service == web) and Node.Node == n2",
            &e
        ));
        assert!(run("not Service.Port == 1 and not (Node.Node == n2)", &e));
        assert!(!run("not not Service.Port == 1", &e));
    }

    #[test]
    fn member_addresses_are_bytes() {
        let m = json!({"Name": "s1", "Addr": "127.0.0.1", "Port": 8301, "Status": 1, "Tags": {"role": "consul"}});
        let run = |src: &str| {
            let c = check(parse(src).expect(src), MEMBER).expect(src);
            eval(&c, MEMBER, &m)
        };
        assert!(run("127 in Addr"));
        assert!(!run("10 in Addr"));
        assert!(run("Addr is not empty"));
        assert!(run("Status == 1"));
        assert!(run("Tags.role == consul"));
        assert!(run("Port == 8301"));
    }
}
