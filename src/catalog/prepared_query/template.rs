//! `name_prefix_match` templates, as Consul's `prepared_query/template.go`:
//! every string of the query's `Service` part (the service name, tags,
//! meta values, `Near`, failover datacenters, ...) is interpolated for the
//! name the query was looked up by.
//!
//! Consul parses these strings as HIL; what its templates can use is a
//! variable or the `match` function inside `${...}`:
//!
//! - `${name.full}`: the whole name looked up (`geo-db-eu`);
//! - `${name.prefix}`: the template's name (`geo-db-`);
//! - `${name.suffix}`: the name with the prefix cut off (`eu`);
//! - `${match(N)}`: group N of `Template.Regexp` matched against the full
//!   name (0 the whole match; empty when it did not match or N is out of
//!   range);
//! - `${agent.segment}`: the agent's network segment (always empty here).
//!
//! `$${` is a literal `${`. A template is compiled when it is written, and a
//! test render with its own name must succeed, so a bad one is refused then
//! rather than when it is run.

use super::{PreparedQuery, ServiceQuery, NAME_PREFIX_MATCH};

/// A template checked and ready to render.
#[derive(Debug)]
pub struct Compiled {
    query: PreparedQuery,
    regexp: Option<regex::Regex>,
}

/// One piece of an interpolated string.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
    Match(i64),
}

impl Compiled {
    /// Consul's `Compile`; its error texts.
    pub fn compile(query: &PreparedQuery) -> Result<Compiled, String> {
        if query.template.kind != NAME_PREFIX_MATCH {
            return Err(format!("Bad Template.Type '{}'", query.template.kind));
        }
        let mut service = query.service.clone();
        each_string(&mut service, &mut |path, s| {
            parse(s)
                .map(drop)
                .map_err(|e| format!("Bad format '{s}' in Service{path}: {e}"))
        })?;
        let regexp = match query.template.regexp.as_str() {
            "" => None,
            re => Some(
                crate::filter::regex::compile(re.as_bytes())
                    .map_err(|e| format!("Bad Regexp: {e}"))?,
            ),
        };
        let compiled = Compiled {
            query: query.clone(),
            regexp,
        };
        compiled.render(&query.name)?;
        Ok(compiled)
    }

    /// The query as it runs for `name`.
    pub fn render(&self, name: &str) -> Result<PreparedQuery, String> {
        let mut out = self.query.clone();
        let groups: Vec<String> = self
            .regexp
            .as_ref()
            .and_then(|re| re.captures(name))
            .map(|caps| {
                caps.iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let prefix = self.query.name.as_str();
        let suffix = name.strip_prefix(prefix).unwrap_or(name);
        let lookup = |var: &str| -> Option<&str> {
            match var {
                "name.full" => Some(name),
                "name.prefix" => Some(prefix),
                "name.suffix" => Some(suffix),
                "agent.segment" => Some(""),
                _ => None,
            }
        };
        each_string(&mut out.service, &mut |path, s| {
            let pieces = parse(s).map_err(|e| format!("Bad format '{s}' in Service{path}: {e}"))?;
            let mut rendered = String::with_capacity(s.len());
            for p in pieces {
                match p {
                    Piece::Text(t) => rendered.push_str(&t),
                    Piece::Var(v) => rendered.push_str(lookup(&v).ok_or_else(|| {
                        format!(
                            "Bad evaluation for '{s}' in Service{path}: unknown variable accessed: {v}"
                        )
                    })?),
                    Piece::Match(i) => {
                        let group = usize::try_from(i).ok().and_then(|i| groups.get(i));
                        rendered.push_str(group.map_or("", String::as_str));
                    }
                }
            }
            *s = rendered;
            Ok(())
        })?;
        if out.template.remove_empty_tags {
            out.service.tags.retain(|t| !t.is_empty());
        }
        Ok(out)
    }
}

/// Calls `f` with every string of the service part and its Consul path
/// (`.Service`, `.Tags[0]`, `.NodeMeta[key]`).
fn each_string(
    svc: &mut ServiceQuery,
    f: &mut dyn FnMut(&str, &mut String) -> Result<(), String>,
) -> Result<(), String> {
    f(".Service", &mut svc.service)?;
    f(".SamenessGroup", &mut svc.sameness_group)?;
    for (i, dc) in svc.failover.datacenters.iter_mut().enumerate() {
        f(&format!(".Failover.Datacenters[{i}]"), dc)?;
    }
    for (i, t) in svc.failover.targets.iter_mut().enumerate() {
        f(&format!(".Failover.Targets[{i}].Peer"), &mut t.peer)?;
        f(
            &format!(".Failover.Targets[{i}].Datacenter"),
            &mut t.datacenter,
        )?;
    }
    for (i, id) in svc.ignore_check_ids.iter_mut().enumerate() {
        f(&format!(".IgnoreCheckIDs[{i}]"), id)?;
    }
    f(".Near", &mut svc.near)?;
    for (i, tag) in svc.tags.iter_mut().enumerate() {
        f(&format!(".Tags[{i}]"), tag)?;
    }
    for (k, v) in svc.node_meta.iter_mut() {
        f(&format!(".NodeMeta[{k}]"), v)?;
    }
    for (k, v) in svc.service_meta.iter_mut() {
        f(&format!(".ServiceMeta[{k}]"), v)?;
    }
    f(".Peer", &mut svc.peer)
}

/// Splits an interpolated string into text and `${...}` pieces.
fn parse(s: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` is a literal `${`.
            text.push_str(&rest[..at - 1]);
            text.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        text.push_str(&rest[..at]);
        let inner = &rest[at + 2..];
        let end = inner
            .find('}')
            .ok_or_else(|| format!("unterminated interpolation sequence in {s:?}"))?;
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(expression(inner[..end].trim())?);
        rest = &inner[end + 1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

fn expression(e: &str) -> Result<Piece, String> {
    if let Some(arg) = e
        .strip_prefix("match")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
    {
        let arg = arg.trim();
        return arg
            .parse::<i64>()
            .map(Piece::Match)
            .map_err(|_| format!("match: argument 1 should be type int, got {arg:?}"));
    }
    let is_ident = !e.is_empty()
        && e.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if is_ident {
        Ok(Piece::Var(e.to_string()))
    } else {
        Err(format!("invalid interpolation expression {e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn template(name: &str, regexp: &str, service: ServiceQuery) -> PreparedQuery {
        PreparedQuery {
            name: name.into(),
            template: super::super::QueryTemplate {
                kind: NAME_PREFIX_MATCH.into(),
                regexp: regexp.into(),
                remove_empty_tags: false,
            },
            service,
            ..PreparedQuery::default()
        }
    }

    #[test]
    fn every_string_of_the_service_is_interpolated() {
        let q = template(
            "geo-db-",
            r"^geo-db-(.*?)-([^\-]+?)$",
            ServiceQuery {
                service: "mysql-${match(1)}".into(),
                tags: vec![
                    "${match(2)}".into(),
                    "${name.suffix}".into(),
                    "lit-$${x}".into(),
                ],
                near: "${name.prefix}".into(),
                node_meta: BTreeMap::from([("dc".into(), "${name.full}".into())]),
                ..ServiceQuery::default()
            },
        );
        let r = Compiled::compile(&q)
            .unwrap()
            .render("geo-db-customer-primary")
            .unwrap();
        assert_eq!(r.service.service, "mysql-customer");
        assert_eq!(r.service.tags, ["primary", "customer-primary", "lit-${x}"]);
        assert_eq!(r.service.near, "geo-db-");
        assert_eq!(r.service.node_meta["dc"], "geo-db-customer-primary");
    }

    #[test]
    fn unmatched_groups_are_empty_and_can_be_dropped() {
        let mut q = template(
            "",
            "^(x)?(web)$",
            ServiceQuery {
                service: "${match(2)}".into(),
                tags: vec!["${match(1)}".into(), "${match(9)}".into(), "t".into()],
                ..ServiceQuery::default()
            },
        );
        let r = Compiled::compile(&q).unwrap().render("web").unwrap();
        assert_eq!(r.service.tags, ["", "", "t"]);
        q.template.remove_empty_tags = true;
        let r = Compiled::compile(&q).unwrap().render("web").unwrap();
        assert_eq!(
            (r.service.service.as_str(), r.service.tags.as_slice()),
            ("web", &["t".to_string()][..])
        );
    }

    #[test]
    fn bad_templates_are_refused_with_consuls_texts() {
        let mut q = template("x", "", ServiceQuery::default());
        q.template.kind = "prefix".into();
        assert_eq!(
            Compiled::compile(&q).unwrap_err(),
            "Bad Template.Type 'prefix'"
        );
        q.template.kind = NAME_PREFIX_MATCH.into();
        q.template.regexp = "(".into();
        assert!(Compiled::compile(&q)
            .unwrap_err()
            .starts_with("Bad Regexp: error parsing regexp: missing closing ): `(`"));
        q.template.regexp.clear();
        q.service.service = "${name.nope}".into();
        assert_eq!(
            Compiled::compile(&q).unwrap_err(),
            "Bad evaluation for '${name.nope}' in Service.Service: unknown variable accessed: name.nope"
        );
        q.service.service = "${name.full".into();
        assert!(Compiled::compile(&q)
            .unwrap_err()
            .starts_with("Bad format '${name.full' in Service.Service: "));
    }
}
