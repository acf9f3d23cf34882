//! consul-template's helper functions that need no Consul data
//! (`template/funcs.go`): strings, lists, JSON, time and arithmetic. Each
//! takes its arguments in consul-template's order, made for pipes
//! (`{{ .Tags | join "," }}`, `{{ key "x" | toLower }}`), and fails with
//! a message the engine prefixes with `error calling <name>:`.

use super::engine::value::Value;
use super::engine::MAX_OUTPUT;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::collections::BTreeMap;

pub type Result = std::result::Result<Value, String>;

/// Go's complaint when a function gets the wrong number of arguments.
pub fn arity(
    name: &str,
    args: &[Value],
    min: usize,
    max: usize,
) -> std::result::Result<(), String> {
    if args.len() < min || args.len() > max {
        let want = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        ));
    }
    Ok(())
}

/// Argument `i` as a string, or Go's conversion error.
pub fn string_arg(args: &[Value], i: usize) -> std::result::Result<&Bytes, String> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s),
        Some(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
        None => Err("missing argument".into()),
    }
}

fn text_arg(args: &[Value], i: usize) -> std::result::Result<String, String> {
    string_arg(args, i).map(|b| String::from_utf8_lossy(b).into_owned())
}

/// A list whose items are all strings (Go's `[]string`).
fn string_list(v: &Value) -> std::result::Result<Vec<Bytes>, String> {
    let wrong = || {
        format!(
            "wrong type for value; expected []string; got {}",
            v.type_name()
        )
    };
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(wrong()),
            })
            .collect(),
        Value::Nil => Ok(Vec::new()),
        _ => Err(wrong()),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn join(args: &[Value]) -> Result {
    arity("join", args, 2, 2)?;
    let sep = string_arg(args, 0)?;
    let items = string_list(&args[1])?;
    Ok(Value::from(items.join(sep.as_ref())))
}

/// `split sep s`: whitespace around `s` is trimmed; an empty `s` is `[]`.
pub fn split(args: &[Value]) -> Result {
    arity("split", args, 2, 2)?;
    let sep = string_arg(args, 0)?.clone();
    let s = trim_space_bytes(string_arg(args, 1)?);
    if s.is_empty() {
        return Ok(Value::list(Vec::new()));
    }
    if sep.is_empty() {
        let text = String::from_utf8_lossy(&s);
        return Ok(Value::list(
            text.chars().map(|c| Value::from(c.to_string())).collect(),
        ));
    }
    let mut parts = Vec::new();
    let mut rest = &s[..];
    while let Some(i) = find(rest, &sep) {
        parts.push(Value::from(rest[..i].to_vec()));
        rest = &rest[i + sep.len()..];
    }
    parts.push(Value::from(rest.to_vec()));
    Ok(Value::list(parts))
}

pub fn replace_all(args: &[Value]) -> Result {
    arity("replaceAll", args, 3, 3)?;
    let from = string_arg(args, 0)?;
    let to = string_arg(args, 1)?;
    let s = string_arg(args, 2)?;
    if from.is_empty() {
        // Go inserts the replacement around every character.
        let text = String::from_utf8_lossy(s);
        let to = String::from_utf8_lossy(to);
        let mut out = to.to_string();
        for c in text.chars() {
            out.push(c);
            out.push_str(&to);
        }
        return Ok(Value::from(out));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut rest = &s[..];
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    Ok(Value::from(out))
}

fn regex(pattern: &[u8]) -> std::result::Result<regex::bytes::Regex, String> {
    let pattern =
        std::str::from_utf8(pattern).map_err(|_| "the pattern is not UTF-8".to_string())?;
    regex::bytes::Regex::new(pattern).map_err(|e| e.to_string())
}

pub fn regex_match(args: &[Value]) -> Result {
    arity("regexMatch", args, 2, 2)?;
    let re = regex(string_arg(args, 0)?)?;
    Ok(Value::Bool(re.is_match(string_arg(args, 1)?)))
}

/// `regexReplaceAll re repl s`, with Go's `$1`/`${name}` expansion.
pub fn regex_replace_all(args: &[Value]) -> Result {
    arity("regexReplaceAll", args, 3, 3)?;
    let re = regex(string_arg(args, 0)?)?;
    let repl = string_arg(args, 1)?;
    Ok(Value::from(
        re.replace_all(string_arg(args, 2)?, repl.as_ref())
            .into_owned(),
    ))
}

/// Go's `strings.TrimSpace` (ASCII and, for UTF-8 text, Unicode spaces).
fn trim_space_bytes(s: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(s) {
        Ok(text) => text.trim().as_bytes().to_vec(),
        Err(_) => s.trim_ascii().to_vec(),
    }
}

pub fn trim_space(args: &[Value]) -> Result {
    arity("trimSpace", args, 1, 1)?;
    Ok(Value::from(trim_space_bytes(string_arg(args, 0)?)))
}

pub fn trim(args: &[Value]) -> Result {
    arity("trim", args, 2, 2)?;
    let cutset: Vec<char> = text_arg(args, 0)?.chars().collect();
    let s = text_arg(args, 1)?;
    Ok(Value::from(
        s.trim_matches(|c| cutset.contains(&c)).to_string(),
    ))
}

pub fn trim_prefix(args: &[Value]) -> Result {
    arity("trimPrefix", args, 2, 2)?;
    let p = string_arg(args, 0)?;
    let s = string_arg(args, 1)?;
    Ok(Value::Str(if s.starts_with(p) {
        s.slice(p.len()..)
    } else {
        s.clone()
    }))
}

pub fn trim_suffix(args: &[Value]) -> Result {
    arity("trimSuffix", args, 2, 2)?;
    let p = string_arg(args, 0)?;
    let s = string_arg(args, 1)?;
    Ok(Value::Str(if s.ends_with(p) {
        s.slice(..s.len() - p.len())
    } else {
        s.clone()
    }))
}

/// `toLower`/`toUpper`/`toTitle`: Unicode case mapping; bytes that are not
/// UTF-8 become U+FFFD, as Go's `strings.Map` makes them.
pub fn case(name: &str, args: &[Value]) -> Result {
    arity(name, args, 1, 1)?;
    let s = text_arg(args, 0)?;
    Ok(Value::from(match name {
        "toLower" => s.to_lowercase(),
        "toUpper" => s.to_uppercase(),
        _ => title(&s),
    }))
}

/// Upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric() && c != '\'';
    }
    out
}

pub fn indent(args: &[Value]) -> Result {
    arity("indent", args, 2, 2)?;
    let Value::Int(n) = args[0] else {
        return Err(format!(
            "wrong type for value; expected int; got {}",
            args[0].type_name()
        ));
    };
    let n =
        usize::try_from(n).map_err(|_| "indent value must be a positive integer".to_string())?;
    let s = string_arg(args, 1)?;
    // Each line gets `n` spaces: refuse what would pass the render's
    // output limit rather than exhaust memory building it.
    let lines = s.iter().filter(|b| **b == b'\n').count() + 1;
    if n.saturating_mul(lines) > MAX_OUTPUT {
        return Err(format!("indent would exceed {MAX_OUTPUT} bytes"));
    }
    let pad = vec![b' '; n];
    let mut out = Vec::with_capacity(s.len() + n);
    let mut at_line_start = true;
    for &b in s.iter() {
        if at_line_start && b != b'\n' {
            out.extend_from_slice(&pad);
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    Ok(Value::from(out))
}

/// Go's `in`: a list holding an equal basic value, or a substring.
pub fn contains_value(list: &Value, v: &Value) -> bool {
    match list {
        Value::List(items) => items.iter().any(|item| match (item, v) {
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            _ => false,
        }),
        Value::Str(s) => match v {
            Value::Str(needle) => find(s, needle).is_some(),
            _ => false,
        },
        _ => false,
    }
}

/// `containsAll`, `containsAny`, `containsNone`, `containsNotAll`: `v` is
/// a list of needles, `l` the list searched.
pub fn contains_some(name: &str, args: &[Value]) -> Result {
    arity(name, args, 2, 2)?;
    let needles: &[Value] = match &args[0] {
        Value::List(items) => items,
        Value::Nil => &[],
        other => {
            return Err(format!(
                "wrong type for value; expected []interface {{}}; got {}",
                other.type_name()
            ))
        }
    };
    let mut found = needles.iter().map(|n| contains_value(&args[1], n));
    Ok(Value::Bool(match name {
        "containsAll" => found.all(|f| f),
        "containsAny" => found.any(|f| f),
        "containsNone" => !found.any(|f| f),
        _ => !found.all(|f| f),
    }))
}

/// `byTag`: services grouped by each of their tags.
pub fn by_tag(args: &[Value]) -> Result {
    arity("byTag", args, 1, 1)?;
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    match &args[0] {
        Value::Nil => {}
        Value::List(items) => {
            for item in items.iter() {
                let tags = match item {
                    Value::Struct(s) => s.field("Tags").or_else(|| s.field("ServiceTags")),
                    _ => None,
                };
                let Some(Value::List(tags)) = tags else {
                    return Err(format!(
                        "byTag: wrong argument type {}",
                        args[0].type_name()
                    ));
                };
                for t in tags.iter() {
                    if let Some(t) = t.as_text() {
                        groups.entry(t).or_default().push(item.clone());
                    }
                }
            }
        }
        other => return Err(format!("byTag: wrong argument type {}", other.type_name())),
    }
    Ok(Value::Map(std::sync::Arc::new(super::engine::Map {
        entries: groups
            .into_iter()
            .map(|(k, v)| (k, Value::list(v)))
            .collect(),
        zero: Value::list(Vec::new()),
        type_name: "map[string][]interface {}",
    })))
}

/// `byKey`: tree pairs grouped by their first path segment, which is cut
/// from each `Key`; pairs with nothing after it are left out.
pub fn by_key(args: &[Value]) -> Result {
    arity("byKey", args, 1, 1)?;
    let Value::List(pairs) = &args[0] else {
        if args[0] == Value::Nil {
            return Ok(Value::any_map(BTreeMap::new()));
        }
        return Err(format!(
            "wrong type for value; expected []*dep.KeyPair; got {}",
            args[0].type_name()
        ));
    };
    let mut groups: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for pair in pairs.iter() {
        let Value::Struct(s) = pair else {
            return Err(format!(
                "wrong type for value; expected []*dep.KeyPair; got {}",
                args[0].type_name()
            ));
        };
        let key = s.field("Key").and_then(Value::as_text).unwrap_or_default();
        let (top, rest) = key.split_once('/').unwrap_or((&key, ""));
        if rest.is_empty() {
            continue;
        }
        let mut copy = (**s).clone();
        for f in copy.fields.iter_mut() {
            if f.0 == "Key" {
                f.1 = Value::string(rest);
            }
        }
        groups
            .entry(top.to_string())
            .or_default()
            .insert(rest.to_string(), Value::Struct(std::sync::Arc::new(copy)));
    }
    Ok(Value::Map(std::sync::Arc::new(super::engine::Map {
        entries: groups
            .into_iter()
            .map(|(k, m)| {
                let inner = Value::Map(std::sync::Arc::new(super::engine::Map {
                    entries: m,
                    zero: Value::Nil,
                    type_name: "map[string]*dep.KeyPair",
                }));
                (k, inner)
            })
            .collect(),
        zero: Value::Nil,
        type_name: "map[string]map[string]*dep.KeyPair",
    })))
}

/// Go's `encoding/json` text of a value: maps sorted by key, structs in
/// field order, `<`, `>` and `&` escaped, bytes that are not UTF-8 as
/// U+FFFD.
pub fn to_json(v: &Value, pretty: bool) -> String {
    let mut out = String::new();
    write_json(&mut out, v, pretty, 0);
    out
}

fn write_json(out: &mut String, v: &Value, pretty: bool, depth: usize) {
    let newline = |out: &mut String, depth: usize| {
        if pretty {
            out.push('\n');
            out.push_str(&"  ".repeat(depth));
        }
    };
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)),
        Value::Str(s) => json_string(out, s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_json(out, item, pretty, depth + 1);
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        Value::Map(m) => {
            let fields: Vec<(&str, &Value)> =
                m.entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
            write_object(out, &fields, pretty, depth);
        }
        Value::Struct(s) => {
            let fields: Vec<(&str, &Value)> = s.fields.iter().map(|(k, v)| (*k, v)).collect();
            write_object(out, &fields, pretty, depth);
        }
    }
}

fn write_object(out: &mut String, fields: &[(&str, &Value)], pretty: bool, depth: usize) {
    out.push('{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if pretty {
            out.push('\n');
            out.push_str(&"  ".repeat(depth + 1));
        }
        json_string(out, k.as_bytes());
        out.push(':');
        if pretty {
            out.push(' ');
        }
        write_json(out, v, pretty, depth + 1);
    }
    if pretty && !fields.is_empty() {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    }
    out.push('}');
}

fn json_string(out: &mut String, s: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's JSON float: plain decimals, exponents below 1e-6 and from 1e21.
fn json_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs())
            .replace("e-0", "e-")
            .replace("e+0", "e+");
    }
    if f == f.trunc() && abs < 1e17 {
        return format!("{}", f as i64);
    }
    format!("{f}")
}

/// `parseJSON`: numbers become float64, as Go decodes them; `""` is `{}`.
pub fn parse_json(args: &[Value]) -> Result {
    arity("parseJSON", args, 1, 1)?;
    let s = string_arg(args, 0)?;
    if s.is_empty() {
        return Ok(Value::any_map(BTreeMap::new()));
    }
    let v: serde_json::Value = serde_json::from_slice(s).map_err(|e| e.to_string())?;
    Ok(from_json(v))
}

fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::from(s),
        serde_json::Value::Array(items) => Value::list(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(m) => {
            Value::any_map(m.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
    }
}

pub fn parse_scalar(name: &str, args: &[Value]) -> Result {
    arity(name, args, 1, 1)?;
    let s = text_arg(args, 0)?;
    if s.is_empty() {
        return Ok(match name {
            "parseBool" => Value::Bool(false),
            "parseFloat" => Value::Float(0.0),
            _ => Value::Int(0),
        });
    }
    let invalid = |_| {
        let go_name = format!("P{}", &name[1..]);
        format!("{name}: strconv.{go_name}: parsing {s:?}: invalid syntax")
    };
    match name {
        "parseBool" => match s.as_str() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(invalid(())),
        },
        "parseFloat" => s.parse().map(Value::Float).map_err(|_| invalid(())),
        "parseUint" => s
            .parse::<u64>()
            .map(|u| Value::Int(u as i64))
            .map_err(|_| invalid(())),
        _ => s.parse().map(Value::Int).map_err(|_| invalid(())),
    }
}

pub fn base64(name: &str, args: &[Value]) -> Result {
    arity(name, args, 1, 1)?;
    let s = string_arg(args, 0)?;
    let engine = if name.starts_with("base64URL") {
        &base64::engine::general_purpose::URL_SAFE
    } else {
        &base64::engine::general_purpose::STANDARD
    };
    if name.ends_with("Encode") {
        return Ok(Value::from(engine.encode(s)));
    }
    engine
        .decode(s)
        .map(Value::from)
        .map_err(|e| format!("{name}: {e}"))
}

/// `timestamp`: RFC 3339 in UTC, `"unix"` seconds, or a Go layout.
pub fn timestamp(args: &[Value], now: DateTime<Utc>) -> Result {
    if args.len() > 1 {
        return Err(format!(
            "timestamp: wrong number of arguments, expected 0 or 1, but got {}",
            args.len()
        ));
    }
    match args.first() {
        None => Ok(Value::from(go_format(now, "2006-01-02T15:04:05Z07:00"))),
        Some(_) => {
            let layout = text_arg(args, 0)?;
            if layout == "unix" {
                return Ok(Value::from(now.timestamp().to_string()));
            }
            Ok(Value::from(go_format(now, &layout)))
        }
    }
}

const LONG_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats a UTC time with a Go reference-time layout
/// (`Mon Jan 2 15:04:05 MST 2006`).
pub fn go_format(t: DateTime<Utc>, layout: &str) -> String {
    let month = t.month0() as usize;
    let weekday = t.weekday().num_days_from_sunday() as usize;
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let nanos = t.nanosecond() % 1_000_000_000;
    let tokens: Vec<(&str, String)> = vec![
        ("January", LONG_MONTHS[month].into()),
        ("Jan", LONG_MONTHS[month][..3].into()),
        ("Monday", LONG_DAYS[weekday].into()),
        ("Mon", LONG_DAYS[weekday][..3].into()),
        ("MST", "UTC".into()),
        ("2006", format!("{:04}", t.year())),
        ("002", format!("{:03}", t.ordinal())),
        ("__2", format!("{:>3}", t.ordinal())),
        ("01", format!("{:02}", t.month())),
        ("02", format!("{:02}", t.day())),
        ("03", format!("{hour12:02}")),
        ("04", format!("{:02}", t.minute())),
        ("05", format!("{:02}", t.second())),
        ("06", format!("{:02}", t.year() % 100)),
        ("15", format!("{:02}", t.hour())),
        ("_2", format!("{:>2}", t.day())),
        ("1", format!("{}", t.month())),
        ("2", format!("{}", t.day())),
        ("3", format!("{hour12}")),
        ("4", format!("{}", t.minute())),
        ("5", format!("{}", t.second())),
        ("PM", if t.hour() >= 12 { "PM" } else { "AM" }.into()),
        ("pm", if t.hour() >= 12 { "pm" } else { "am" }.into()),
        ("-07:00:00", "+00:00:00".into()),
        ("-070000", "+000000".into()),
        ("-07:00", "+00:00".into()),
        ("-0700", "+0000".into()),
        ("-07", "+00".into()),
        ("Z07:00:00", "Z".into()),
        ("Z070000", "Z".into()),
        ("Z07:00", "Z".into()),
        ("Z0700", "Z".into()),
        ("Z07", "Z".into()),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractional seconds: `.000` (fixed) or `.999` (trailing zeros cut).
        if let Some(sep @ ('.' | ',')) = rest.chars().next() {
            let run: String = rest[1..]
                .chars()
                .take_while(|c| *c == '0' || *c == '9')
                .collect();
            let same = run.chars().all(|c| run.starts_with(c));
            let next_digit = rest[1 + run.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit());
            if !run.is_empty() && same && !next_digit && run.len() <= 9 {
                let digits = format!("{nanos:09}")[..run.len()].to_string();
                if run.starts_with('9') {
                    let trimmed = digits.trim_end_matches('0');
                    if !trimmed.is_empty() {
                        out.push(sep);
                        out.push_str(trimmed);
                    }
                } else {
                    out.push(sep);
                    out.push_str(&digits);
                }
                rest = &rest[1 + run.len()..];
                continue;
            }
        }
        for (tok, value) in &tokens {
            if rest.starts_with(tok) {
                out.push_str(value);
                rest = &rest[tok.len()..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// consul-template's math helpers take the pipe's value last:
/// `{{ 5 | subtract 2 }}` is 3.
pub fn math(name: &str, args: &[Value]) -> Result {
    arity(name, args, 2, 2)?;
    let (b, a) = (&args[0], &args[1]);
    let unknown = |v: &Value| format!("{name}: unknown type for {v:?} ({})", v.type_name());
    let float = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let r = match name {
                "add" => x.checked_add(*y),
                "subtract" => x.checked_sub(*y),
                "multiply" => x.checked_mul(*y),
                "divide" | "modulo" if *y == 0 => return Err(format!("{name}: division by zero")),
                "divide" => x.checked_div(*y),
                "modulo" => x.checked_rem(*y),
                "minimum" => Some(*x.min(y)),
                _ => Some(*x.max(y)),
            };
            r.map(Value::Int)
                .ok_or_else(|| format!("{name}: integer overflow"))
        }
        _ => {
            let x = float(a).ok_or_else(|| unknown(a))?;
            let y = float(b).ok_or_else(|| unknown(b))?;
            if name == "modulo" {
                return Err(format!(
                    "{name}: unknown type for {b:?} ({})",
                    b.type_name()
                ));
            }
            Ok(Value::Float(match name {
                "add" => x + y,
                "subtract" => x - y,
                "multiply" => x * y,
                "divide" if y == 0.0 => return Err(format!("{name}: division by zero")),
                "divide" => x / y,
                "minimum" => x.min(y),
                _ => x.max(y),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s(v: &str) -> Value {
        Value::string(v)
    }

    fn strs(v: &[&str]) -> Value {
        Value::list(v.iter().map(|x| s(x)).collect())
    }

    #[test]
    fn indent_refuses_output_past_the_render_limit() {
        // `indent 999999999999 "x"` asked for a terabyte of spaces.
        let e = indent(&[Value::Int(999_999_999_999), s("x")]).unwrap_err();
        assert!(e.contains("would exceed"), "{e}");
        let e = indent(&[Value::Int(1 << 16), s(&"\n".repeat(2000))]).unwrap_err();
        assert!(e.contains("would exceed"), "{e}");
        assert_eq!(indent(&[Value::Int(2), s("a\nb")]).unwrap(), s("  a\n  b"));
    }

    #[test]
    fn strings() {
        assert_eq!(join(&[s(","), strs(&["a", "b"])]).unwrap(), s("a,b"));
        assert!(join(&[s(","), Value::list(vec![Value::Int(1)])])
            .unwrap_err()
            .contains("expected []string"));
        assert_eq!(
            split(&[s(","), s(" a,b,,c \n")]).unwrap(),
            strs(&["a", "b", "", "c"])
        );
        assert_eq!(split(&[s(","), s("  ")]).unwrap(), strs(&[]));
        assert_eq!(
            replace_all(&[s("."), s("-"), s("a.b.c")]).unwrap(),
            s("a-b-c")
        );
        assert_eq!(
            regex_match(&[s("^web-[0-9]+$"), s("web-12")]).unwrap(),
            Value::Bool(true)
        );
        assert!(regex_match(&[s("("), s("x")]).is_err());
        assert_eq!(
            regex_replace_all(&[s("(\\d+)"), s("<$1>"), s("a1b22")]).unwrap(),
            s("a<1>b<22>")
        );
        assert_eq!(trim_space(&[s(" \t x y \n")]).unwrap(), s("x y"));
        assert_eq!(case("toLower", &[s("WeB")]).unwrap(), s("web"));
        assert_eq!(case("toUpper", &[s("web")]).unwrap(), s("WEB"));
        assert_eq!(
            case("toTitle", &[s("hello wide world")]).unwrap(),
            s("Hello Wide World")
        );
        assert_eq!(trim(&[s("/"), s("/a/b/")]).unwrap(), s("a/b"));
        assert_eq!(trim_prefix(&[s("app/"), s("app/x")]).unwrap(), s("x"));
        assert_eq!(
            indent(&[Value::Int(2), s("a\nb\n")]).unwrap(),
            s("  a\n  b\n")
        );
        // Bytes that are not UTF-8 survive what does not need to read them.
        let raw = Value::from(vec![0xffu8, b'.', 0xfe]);
        assert_eq!(
            replace_all(&[s("."), s("-"), raw]).unwrap(),
            Value::from(vec![0xffu8, b'-', 0xfe])
        );
    }

    #[test]
    fn contains_and_friends() {
        let tags = strs(&["a", "b"]);
        assert!(contains_value(&tags, &s("a")));
        assert!(!contains_value(&tags, &s("c")));
        assert!(contains_value(&s("hello"), &s("ell")));
        assert!(!contains_value(&Value::list(vec![Value::Int(1)]), &s("1")));
        assert_eq!(
            contains_some("containsAll", &[strs(&["a", "b"]), tags.clone()]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            contains_some("containsAny", &[strs(&["x", "b"]), tags.clone()]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            contains_some("containsNone", &[strs(&["x"]), tags.clone()]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            contains_some("containsNotAll", &[strs(&["a", "x"]), tags]).unwrap(),
            Value::Bool(true)
        );
    }

    #[test]
    fn json_like_go() {
        let m = Value::any_map(BTreeMap::from([
            (
                "b".into(),
                Value::list(vec![Value::Int(1), Value::Float(2.5), Value::Nil]),
            ),
            ("a".into(), s("<&>")),
        ]));
        assert_eq!(
            to_json(&m, false),
            r#"{"a":"\u003c\u0026\u003e","b":[1,2.5,null]}"#
        );
        assert_eq!(to_json(&m, true), "{\n  \"a\": \"\\u003c\\u0026\\u003e\",\n  \"b\": [\n    1,\n    2.5,\n    null\n  ]\n}");
        assert_eq!(to_json(&Value::Float(8080.0), false), "8080");
        assert_eq!(to_json(&Value::Float(1e21), false), "1e+21");
        let parsed = parse_json(&[s(r#"{"port": 8080, "tags": ["x"], "on": true}"#)]).unwrap();
        assert_eq!(
            to_json(&parsed, false),
            r#"{"on":true,"port":8080,"tags":["x"]}"#
        );
        assert_eq!(
            parse_json(&[s("")]).unwrap(),
            Value::any_map(BTreeMap::new())
        );
        assert!(parse_json(&[s("{")]).is_err());
    }

    #[test]
    fn go_layouts() {
        let t = Utc.with_ymd_and_hms(2024, 3, 5, 14, 7, 9).unwrap()
            + chrono::Duration::milliseconds(120);
        assert_eq!(
            go_format(t, "2006-01-02T15:04:05Z07:00"),
            "2024-03-05T14:07:09Z"
        );
        assert_eq!(
            go_format(t, "Mon Jan _2 3:04PM 2006"),
            "Tue Mar  5 2:07PM 2024"
        );
        assert_eq!(
            go_format(t, "02/01/06 15:04:05.000 MST"),
            "05/03/24 14:07:09.120 UTC"
        );
        assert_eq!(go_format(t, "15:04:05.999"), "14:07:09.12");
        assert_eq!(go_format(t, "January 2, 2006 -0700"), "March 5, 2024 +0000");
        assert_eq!(
            timestamp(&[s("unix")], t).unwrap(),
            s(&t.timestamp().to_string())
        );
    }

    #[test]
    fn math_takes_the_pipe_last() {
        assert_eq!(
            math("subtract", &[Value::Int(2), Value::Int(5)]).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            math("add", &[Value::Float(0.5), Value::Int(1)]).unwrap(),
            Value::Float(1.5)
        );
        assert!(math("divide", &[Value::Int(0), Value::Int(1)]).is_err());
        assert_eq!(
            math("maximum", &[Value::Int(2), Value::Int(5)]).unwrap(),
            Value::Int(5)
        );
    }

    #[test]
    fn scalars_and_base64() {
        assert_eq!(
            parse_scalar("parseInt", &[s("42")]).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            parse_scalar("parseBool", &[s("")]).unwrap(),
            Value::Bool(false)
        );
        assert!(parse_scalar("parseInt", &[s("x")]).is_err());
        assert_eq!(base64("base64Encode", &[s("hi")]).unwrap(), s("aGk="));
        assert_eq!(base64("base64Decode", &[s("aGk=")]).unwrap(), s("hi"));
    }
}
