//! The function map a template renders with. The Consul functions work as
//! consul-template's do (`template/funcs.go`): each call names a
//! [`Dependency`], records it as used, and answers from the data watched
//! so far; a dependency with no data yet is recorded as missing and the
//! call answers the zero value, so a first render discovers every query
//! the template needs, and the output only counts once nothing is missing.
//! `key` also counts as missing while the key does not exist (rendering
//! waits for it); `keyOrDefault` and `keyExists` never wait on absence.

use super::deps::Dependency;
use super::engine::{Functions, Value};
use super::helpers::{self, arity, string_arg};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};

/// Every function name consul-template templates may call here.
pub const NAMES: &[&str] = &[
    // Consul data.
    "datacenters",
    "key",
    "keyExists",
    "keyOrDefault",
    "ls",
    "safeLs",
    "node",
    "nodes",
    "service",
    "services",
    "tree",
    "safeTree",
    // Helpers.
    "base64Decode",
    "base64Encode",
    "base64URLDecode",
    "base64URLEncode",
    "byKey",
    "byTag",
    "contains",
    "containsAll",
    "containsAny",
    "containsNone",
    "containsNotAll",
    "env",
    "envOrDefault",
    "in",
    "indent",
    "join",
    "parseBool",
    "parseFloat",
    "parseInt",
    "parseJSON",
    "parseUint",
    "regexMatch",
    "regexReplaceAll",
    "replaceAll",
    "split",
    "timestamp",
    "toJSON",
    "toJSONPretty",
    "toLower",
    "toTitle",
    "toUpper",
    "trim",
    "trimPrefix",
    "trimSpace",
    "trimSuffix",
    // Math.
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "minimum",
    "maximum",
];

pub fn is_function(name: &str) -> bool {
    NAMES.contains(&name)
}

/// The latest data of every watched dependency.
#[derive(Debug, Default, Clone)]
pub struct Brain {
    data: HashMap<Dependency, Value>,
}

impl Brain {
    pub fn recall(&self, d: &Dependency) -> Option<&Value> {
        self.data.get(d)
    }

    /// Stores new data; `false` when it equals what was stored.
    pub fn remember(&mut self, d: Dependency, v: Value) -> bool {
        if self.data.get(&d) == Some(&v) {
            return false;
        }
        self.data.insert(d, v);
        true
    }

    pub fn forget(&mut self, d: &Dependency) {
        self.data.remove(d);
    }
}

/// One render's view of the data, and what it found it needed.
pub struct Render<'a> {
    brain: &'a Brain,
    pub used: BTreeSet<Dependency>,
    pub missing: BTreeSet<Dependency>,
    now: DateTime<Utc>,
}

impl<'a> Render<'a> {
    pub fn new(brain: &'a Brain) -> Render<'a> {
        Render::at(brain, Utc::now())
    }

    /// A render whose `timestamp` is `now`.
    pub fn at(brain: &'a Brain, now: DateTime<Utc>) -> Render<'a> {
        Render {
            brain,
            used: BTreeSet::new(),
            missing: BTreeSet::new(),
            now,
        }
    }

    /// Records `d` as used and returns its data, or records it as missing.
    fn recall(&mut self, d: Dependency) -> Option<Value> {
        let v = self.brain.recall(&d).cloned();
        if v.is_none() {
            self.missing.insert(d.clone());
        }
        self.used.insert(d);
        v
    }

    fn joined(args: &[Value], sep: &str) -> Result<String, String> {
        let mut parts = Vec::with_capacity(args.len());
        for i in 0..args.len() {
            parts.push(String::from_utf8_lossy(string_arg(args, i)?).into_owned());
        }
        Ok(parts.join(sep))
    }

    fn service(&mut self, args: &[Value]) -> Result<Value, String> {
        let s = Self::joined(args, "|")?;
        if s.is_empty() || s.starts_with('|') {
            return Ok(Value::list(Vec::new()));
        }
        let d = Dependency::health_service(&s).map_err(|e| e.to_string())?;
        Ok(self.recall(d).unwrap_or_else(|| Value::list(Vec::new())))
    }

    fn key(&mut self, name: &str, args: &[Value]) -> Result<Value, String> {
        let (min, max) = if name == "keyOrDefault" {
            (2, 2)
        } else {
            (1, 1)
        };
        arity(name, args, min, max)?;
        let k = String::from_utf8_lossy(string_arg(args, 0)?).into_owned();
        let default = match name {
            "keyOrDefault" => Value::Str(string_arg(args, 1)?.clone()),
            "keyExists" => Value::Bool(false),
            _ => Value::str(""),
        };
        if k.is_empty() {
            return Ok(default);
        }
        let d = Dependency::kv_get(&k).map_err(|e| e.to_string())?;
        let v = self.recall(d.clone());
        Ok(match (name, v) {
            (_, None) => default,
            ("keyExists", Some(v)) => Value::Bool(v != Value::Nil),
            ("keyOrDefault", Some(Value::Str(s))) if !s.is_empty() => Value::Str(s),
            ("keyOrDefault", Some(_)) => default,
            (_, Some(Value::Nil)) => {
                // `key` waits for the key to exist.
                self.missing.insert(d);
                default
            }
            (_, Some(v)) => v,
        })
    }

    /// `ls`/`tree` and their `safe` forms, which refuse to render from an
    /// empty prefix (it may be a cleared one).
    fn list(&mut self, name: &str, args: &[Value]) -> Result<Value, String> {
        arity(name, args, 1, 1)?;
        let prefix = String::from_utf8_lossy(string_arg(args, 0)?).into_owned();
        if prefix.is_empty() {
            return Ok(Value::list(Vec::new()));
        }
        let d = Dependency::kv_list(&prefix).map_err(|e| e.to_string())?;
        let Some(Value::List(pairs)) = self.recall(d.clone()) else {
            return Ok(Value::list(Vec::new()));
        };
        let top_level = matches!(name, "ls" | "safeLs");
        let kept: Vec<Value> = pairs
            .iter()
            .filter(|p| {
                let key = match p {
                    Value::Struct(s) => s.field("Key").and_then(Value::as_text).unwrap_or_default(),
                    _ => String::new(),
                };
                if top_level {
                    !key.is_empty() && !key.contains('/')
                } else {
                    !key.rsplit('/').next().unwrap_or("").is_empty()
                }
            })
            .cloned()
            .collect();
        if kept.is_empty() && name.starts_with("safe") {
            self.missing.insert(d);
        }
        Ok(Value::list(kept))
    }

    fn catalog(&mut self, name: &str, args: &[Value]) -> Result<Value, String> {
        let s = Self::joined(args, "")?;
        let d = match name {
            "services" => Dependency::catalog_services(&s),
            "nodes" => Dependency::catalog_nodes(&s),
            _ => Dependency::catalog_node(&s),
        }
        .map_err(|e| e.to_string())?;
        let zero = if name == "node" {
            Value::Nil
        } else {
            Value::list(Vec::new())
        };
        Ok(self.recall(d).unwrap_or(zero))
    }

    fn datacenters(&mut self, args: &[Value]) -> Result<Value, String> {
        let only_reachable = match args {
            [] => false,
            [Value::Bool(b)] => *b,
            [other] => {
                return Err(format!(
                    "wrong type for value; expected bool; got {}",
                    other.type_name()
                ))
            }
            _ => {
                return Err(format!(
                    "datacenters: wrong number of arguments, expected 0 or 1, but got {}",
                    args.len()
                ))
            }
        };
        let d = Dependency::Datacenters { only_reachable };
        Ok(self.recall(d).unwrap_or_else(|| Value::list(Vec::new())))
    }
}

/// `env`: the process environment; a variable that is not set is `""`.
fn env(name: &str, args: &[Value]) -> Result<Value, String> {
    let (min, max) = if name == "envOrDefault" {
        (2, 2)
    } else {
        (1, 1)
    };
    arity(name, args, min, max)?;
    let var = String::from_utf8_lossy(string_arg(args, 0)?).into_owned();
    match std::env::var_os(&var) {
        Some(v) => {
            use std::os::unix::ffi::OsStrExt;
            Ok(Value::from(v.as_bytes().to_vec()))
        }
        None if name == "envOrDefault" => Ok(args[1].clone()),
        None => Ok(Value::str("")),
    }
}

impl Functions for Render<'_> {
    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        let a = args.as_slice();
        match name {
            "service" => self.service(a),
            "key" | "keyExists" | "keyOrDefault" => self.key(name, a),
            "ls" | "safeLs" | "tree" | "safeTree" => self.list(name, a),
            "services" | "nodes" | "node" => self.catalog(name, a),
            "datacenters" => self.datacenters(a),
            "env" | "envOrDefault" => env(name, a),
            "byTag" => helpers::by_tag(a),
            "byKey" => helpers::by_key(a),
            "contains" => {
                arity(name, a, 2, 2)?;
                Ok(Value::Bool(helpers::contains_value(&a[1], &a[0])))
            }
            "in" => {
                arity(name, a, 2, 2)?;
                Ok(Value::Bool(helpers::contains_value(&a[0], &a[1])))
            }
            "containsAll" | "containsAny" | "containsNone" | "containsNotAll" => {
                helpers::contains_some(name, a)
            }
            "join" => helpers::join(a),
            "split" => helpers::split(a),
            "replaceAll" => helpers::replace_all(a),
            "regexMatch" => helpers::regex_match(a),
            "regexReplaceAll" => helpers::regex_replace_all(a),
            "toLower" | "toUpper" | "toTitle" => helpers::case(name, a),
            "trimSpace" => helpers::trim_space(a),
            "trim" => helpers::trim(a),
            "trimPrefix" => helpers::trim_prefix(a),
            "trimSuffix" => helpers::trim_suffix(a),
            "indent" => helpers::indent(a),
            "toJSON" | "toJSONPretty" => {
                arity(name, a, 1, 1)?;
                Ok(Value::from(helpers::to_json(&a[0], name == "toJSONPretty")))
            }
            "parseJSON" => helpers::parse_json(a),
            "parseBool" | "parseFloat" | "parseInt" | "parseUint" => helpers::parse_scalar(name, a),
            "base64Decode" | "base64Encode" | "base64URLDecode" | "base64URLEncode" => {
                helpers::base64(name, a)
            }
            "timestamp" => helpers::timestamp(a, self.now),
            "add" | "subtract" | "multiply" | "divide" | "modulo" | "minimum" | "maximum" => {
                helpers::math(name, a)
            }
            other => Err(format!("function {other:?} not defined")),
        }
    }
}
