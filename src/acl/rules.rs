//! Consul's ACL rules language, in HCL or JSON [acl/policy.go]:
//! `key_prefix "web/" { policy = "write" }`, `operator = "read"`, or
//! `{"key_prefix":{"web/":{"policy":"write"}},"operator":"read"}`.

use super::authorizer::{Global, Level, Resource, Rules};
use serde_json::Value;

/// Parses a policy's rules. Errors carry Consul's texts: `Failed to parse
/// ACL rules: <syntax error>` and `Invalid <kind> policy: <rule>`.
pub fn parse(text: &str) -> Result<Rules, String> {
    let mut rules = Rules::default();
    if text.trim().is_empty() {
        return Ok(rules);
    }
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("Failed to parse ACL rules: {e}"))?
    } else {
        hcl::from_str(&one_item_per_line(text))
            .map_err(|e| format!("Failed to parse ACL rules: {e}"))?
    };
    let Value::Object(top) = value else {
        return Err("Failed to parse ACL rules: rules must be an object".into());
    };
    for (word, v) in &top {
        if let Some(g) = global(word) {
            let level = scalar_level(word, v)?;
            rules.set_global(g, level);
            continue;
        }
        // Consul's mesh and peering fall back to operator when unset;
        // cairn serves neither, so they are accepted and checked only.
        if word == "mesh" || word == "peering" {
            scalar_level(word, v)?;
            continue;
        }
        let (kind, prefix) = match word.strip_suffix("_prefix") {
            Some(base) => (resource(base), true),
            None => (resource(word), false),
        };
        let Some(kind) = kind else {
            return Err(format!(
                "Failed to parse ACL rules: unknown rule type {word:?}"
            ));
        };
        for (name, body) in labelled(word, v)? {
            let level = block_level(word, kind, &name, &body)?;
            rules.add(kind, &name, prefix, level);
        }
    }
    Ok(rules)
}

fn global(word: &str) -> Option<Global> {
    match word {
        "operator" => Some(Global::Operator),
        "keyring" => Some(Global::Keyring),
        "acl" => Some(Global::Acl),
        _ => None,
    }
}

fn resource(word: &str) -> Option<Resource> {
    Resource::ALL.into_iter().find(|r| r.word() == word)
}

fn scalar_level(word: &str, v: &Value) -> Result<Level, String> {
    match v.as_str().and_then(Level::parse) {
        Some(l) if l != Level::List => Ok(l),
        _ => Err(format!("Invalid {word} policy: {v}")),
    }
}

/// `key "a" {...}` blocks as (label, body). HCL repeats of one block type
/// come as one object of labels or as a list of such objects.
fn labelled(word: &str, v: &Value) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let objects: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for o in objects {
        let Value::Object(map) = o else {
            return Err(format!(
                "Failed to parse ACL rules: {word} must be a block with a label"
            ));
        };
        for (label, body) in map {
            match body {
                Value::Array(bodies) => {
                    out.extend(bodies.iter().map(|b| (label.clone(), b.clone())))
                }
                b => out.push((label.clone(), b.clone())),
            }
        }
    }
    Ok(out)
}

fn block_level(word: &str, kind: Resource, name: &str, body: &Value) -> Result<Level, String> {
    let Value::Object(fields) = body else {
        return Err(format!(
            "Failed to parse ACL rules: {word} {name:?} must be a block"
        ));
    };
    let mut level = None;
    for (field, v) in fields {
        match field.as_str() {
            "policy" => level = v.as_str().and_then(Level::parse),
            "intentions" if kind == Resource::Service => {
                if v.as_str()
                    .and_then(Level::parse)
                    .is_none_or(|l| l == Level::List)
                {
                    return Err(format!("Invalid {word} intentions policy: {body}"));
                }
            }
            other => {
                return Err(format!(
                    "Failed to parse ACL rules: unknown field {other:?} in {word} {name:?}"
                ))
            }
        }
    }
    match level {
        Some(Level::List) if kind != Resource::Key => Err(format!("Invalid {word} policy: {body}")),
        Some(l) => Ok(l),
        None => Err(format!("Invalid {word} policy: {body}")),
    }
}

/// Consul parses rules with HCL 1, which lets blocks and attributes share a
/// line (`service "web" { policy = "write" } key_prefix "web/" { policy =
/// "write" }`, or `{ policy = "write", intentions = "read" }`, or with no
/// separator at all), the form its docs and CLI examples use. HCL 2, which
/// hcl-rs reads, wants one item per line, so this puts a line break after
/// every brace, after every attribute's string value and in place of the
/// commas between attributes, outside strings, comments and lists. Rules
/// are strings, braces, `=` and identifiers, so nothing else needs it.
fn one_item_per_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    let mut brackets = 0usize;
    let mut after_equals = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push(c);
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    match c {
                        '\\' if !escaped => escaped = true,
                        '"' if !escaped => break,
                        _ => escaped = false,
                    }
                }
                if after_equals && brackets == 0 {
                    out.push('\n');
                }
                after_equals = false;
            }
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut star = false;
                for c in chars.by_ref() {
                    if star && c == '/' {
                        break;
                    }
                    star = c == '*';
                }
                out.push(' ');
            }
            '{' | '}' if brackets == 0 => {
                out.push(c);
                out.push('\n');
                after_equals = false;
            }
            ',' if brackets == 0 => out.push('\n'),
            '[' => {
                brackets += 1;
                out.push(c);
            }
            ']' => {
                brackets = brackets.saturating_sub(1);
                out.push(c);
                if brackets == 0 && after_equals {
                    out.push('\n');
                    after_equals = false;
                }
            }
            '=' => {
                after_equals = brackets == 0;
                out.push(c);
            }
            c if c.is_whitespace() => out.push(c),
            c => {
                // A bare value (`policy = read`) ends the attribute where
                // the word ends.
                out.push(c);
                if after_equals && brackets == 0 && (c.is_alphanumeric() || c == '_' || c == '-') {
                    while let Some(&n) = chars.peek() {
                        if n.is_alphanumeric() || n == '_' || n == '-' || n == '.' {
                            out.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    out.push('\n');
                    after_equals = false;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{Access, Authorizer};

    #[test]
    fn hcl1_items_may_share_a_line() {
        let one_line = parse(
            r#"service "web" { policy = "write" } key_prefix "web/" { policy = "write" } operator = "read""#,
        )
        .unwrap();
        let lines = parse(
            "service \"web\" {\n policy = \"write\"\n}\nkey_prefix \"web/\" {\n policy = \"write\"\n}\noperator = \"read\"\n",
        )
        .unwrap();
        assert_eq!(one_line, lines);
        let commas = parse(
            r#"service "db" { policy = "read", intentions = "deny" } # a comment { "x"
               key "a}b" { policy = "list" } /* } */ service_prefix "" { policy = "write" intentions = "read" }"#,
        );
        assert!(commas.is_ok(), "{commas:?}");
        // A syntax error is still one.
        assert!(parse(r#"service "web" { policy = }"#).is_err());
    }

    fn authz(text: &str, default_allow: bool) -> Authorizer {
        Authorizer::compile("a", &[parse(text).unwrap()], default_allow, false)
    }

    #[test]
    fn hcl_and_json_say_the_same() {
        let h = parse(
            r#"key_prefix "web/" { policy = "write" }
               key "web/secret" { policy = "deny" }
               operator = "read""#,
        )
        .unwrap();
        let j = parse(
            r#"{"key_prefix":{"web/":{"policy":"write"}},"key":{"web/secret":{"policy":"deny"}},"operator":"read"}"#,
        )
        .unwrap();
        assert_eq!(h, j);
    }

    #[test]
    fn exact_beats_longest_prefix_beats_default() {
        let a = authz(
            r#"key_prefix "" { policy = "read" }
               key_prefix "web/" { policy = "write" }
               key_prefix "web/private/" { policy = "deny" }
               key "web/private/open" { policy = "write" }"#,
            false,
        );
        assert!(a.allows(Resource::Key, "web/x", Access::Write));
        assert!(!a.allows(Resource::Key, "web/private/x", Access::Read));
        assert!(a.allows(Resource::Key, "web/private/open", Access::Write));
        assert!(a.allows(Resource::Key, "db/x", Access::Read));
        assert!(!a.allows(Resource::Key, "db/x", Access::Write));
        // read does not grant list; write does.
        assert!(!a.allows(Resource::Key, "db/", Access::List));
        assert!(a.allows_prefix_list("web/"));
        assert!(!a.key_write_prefix("web/"));
        assert!(a.key_write_prefix("web/public/"));
        // No service rule: the default policy (deny).
        assert!(!a.allows(Resource::Service, "web", Access::Read));
    }

    #[test]
    fn default_allow_never_grants_acl() {
        let a = authz("", true);
        assert!(a.allows(Resource::Service, "x", Access::Write));
        assert!(a.allows_global(Global::Operator, Access::Write));
        assert!(!a.allows_global(Global::Acl, Access::Read));
        let m = Authorizer::compile("m", &[], false, true);
        assert!(m.allows_global(Global::Acl, Access::Write));
    }

    #[test]
    fn deny_wins_when_policies_merge() {
        let a = Authorizer::compile(
            "a",
            &[
                parse(r#"service "web" { policy = "write" }"#).unwrap(),
                parse(r#"service "web" { policy = "deny" }"#).unwrap(),
            ],
            true,
            false,
        );
        assert!(!a.allows(Resource::Service, "web", Access::Read));
    }

    #[test]
    fn bad_rules_are_refused_with_consuls_words() {
        let e = parse(r#"key_prefix "x" { policy = "bogus" }"#).unwrap_err();
        assert!(e.starts_with("Invalid key_prefix policy"), "{e}");
        let e = parse(r#"service "x" { policy = "list" }"#).unwrap_err();
        assert!(e.starts_with("Invalid service policy"), "{e}");
        let e = parse(r#"operator = "sideways""#).unwrap_err();
        assert!(e.starts_with("Invalid operator policy"), "{e}");
        let e = parse(r#"key_prefix "x" { policy = "#).unwrap_err();
        assert!(e.starts_with("Failed to parse ACL rules: "), "{e}");
        assert!(parse(crate::acl::types::MANAGEMENT_RULES).is_ok());
    }
}
