//! The functions every Go template has: comparisons (`eq` is true when the
//! first argument equals any of the others; integers and floats do not
//! compare with each other), `not`, `len`, `index`, `slice`, `print`,
//! `printf`, `println`, `html`, `js`, `urlquery` and `call`. `and` and
//! `or` are evaluated lazily by the executor.

use super::fmt::{sprint, sprintf, sprintln};
use super::value::Value;
use std::cmp::Ordering;

type Result = std::result::Result<Value, String>;

/// Runs builtin `name`, or `None` when it is not one.
pub fn call(name: &str, args: &[Value]) -> Option<Result> {
    Some(match name {
        "not" => arity(name, args, 1).map(|_| Value::Bool(!args[0].truth())),
        "len" => arity(name, args, 1).and_then(|_| len(&args[0])),
        "index" => index(args),
        "slice" => slice(args),
        "print" => Ok(Value::from(sprint(args))),
        "println" => Ok(Value::from(sprintln(args))),
        "printf" => match args.split_first() {
            Some((Value::Str(f), rest)) => Ok(Value::from(sprintf(f, rest))),
            Some((other, _)) => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
            None => Err("wrong number of args for printf: want at least 1 got 0".into()),
        },
        "eq" => eq(args),
        "ne" => {
            arity(name, args, 2).and_then(|_| equal(&args[0], &args[1]).map(|b| Value::Bool(!b)))
        }
        "lt" => ordered(name, args, |o| o == Ordering::Less),
        "le" => ordered(name, args, |o| o != Ordering::Greater),
        "gt" => ordered(name, args, |o| o == Ordering::Greater),
        "ge" => ordered(name, args, |o| o != Ordering::Less),
        "html" => Ok(Value::from(html(&sprint(args)))),
        "js" => Ok(Value::from(js(&sprint(args)))),
        "urlquery" => Ok(Value::from(urlquery(&sprint(args)))),
        "call" => Err("call of non-function".into()),
        _ => return None,
    })
}

fn arity(name: &str, args: &[Value], want: usize) -> std::result::Result<(), String> {
    if args.len() != want {
        return Err(format!(
            "wrong number of args for {name}: want {want} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn len(v: &Value) -> Result {
    let n = match v {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.entries.len(),
        Value::Nil => return Err("len of nil pointer".into()),
        other => return Err(format!("len of type {}", other.type_name())),
    };
    Ok(Value::Int(n as i64))
}

fn int_index(v: &Value, what: &str) -> std::result::Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Nil => Err(format!("cannot index {what} with nil")),
        other => Err(format!(
            "cannot index {what} with type {}",
            other.type_name()
        )),
    }
}

fn index(args: &[Value]) -> Result {
    let Some((item, indices)) = args.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    let mut item = item.clone();
    for idx in indices {
        item = match &item {
            Value::List(l) => {
                let i = int_index(idx, "slice/array")?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| l.get(i))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            Value::Str(s) => {
                let i = int_index(idx, "slice/array")?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| s.get(i))
                    .map(|b| Value::Int(*b as i64))
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            Value::Map(m) => match idx {
                Value::Str(k) => {
                    let key = String::from_utf8_lossy(k);
                    m.entries
                        .get(key.as_ref())
                        .cloned()
                        .unwrap_or_else(|| m.zero.clone())
                }
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ))
                }
            },
            Value::Nil => return Err("index of untyped nil".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn slice(args: &[Value]) -> Result {
    let Some((item, bounds)) = args.split_first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".into());
    };
    if bounds.len() > 3 {
        return Err(format!("too many slice indexes: {}", bounds.len()));
    }
    let len = match item {
        Value::List(l) => l.len(),
        Value::Str(s) => s.len(),
        Value::Nil => return Err("slice of untyped nil".into()),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0usize, len];
    for (n, b) in bounds.iter().take(2).enumerate() {
        let i = int_index(b, "slice/array")?;
        idx[n] = usize::try_from(i)
            .ok()
            .filter(|i| *i <= len)
            .ok_or_else(|| format!("index out of range: {i}"))?;
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    Ok(match item {
        Value::List(l) => Value::list(l[idx[0]..idx[1]].to_vec()),
        Value::Str(s) => Value::Str(s.slice(idx[0]..idx[1])),
        _ => Value::Nil,
    })
}

/// Go's `eq` for two values: basic kinds compare by value; nil equals nil
/// and nothing else; different basic kinds are an error.
pub fn equal(a: &Value, b: &Value) -> std::result::Result<bool, String> {
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Struct(x), Value::Struct(y)) => x == y,
        (Value::List(_), _) | (Value::Map(_), _) => {
            return Err(format!("non-comparable type {}", a.type_name()))
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn eq(args: &[Value]) -> Result {
    let Some((first, rest)) = args.split_first() else {
        return Err("wrong number of args for eq: want at least 1 got 0".into());
    };
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    for other in rest {
        if equal(first, other)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn ordered(name: &str, args: &[Value], want: impl Fn(Ordering) -> bool) -> Result {
    arity(name, args, 2)?;
    let ord = match (&args[0], &args[1]) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => match x.partial_cmp(y) {
            Some(o) => o,
            None => return Ok(Value::Bool(false)),
        },
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (
            Value::Int(_) | Value::Float(_) | Value::Str(_),
            Value::Int(_) | Value::Float(_) | Value::Str(_),
        ) => return Err("incompatible types for comparison".into()),
        _ => return Err("invalid type for comparison".into()),
    };
    Ok(Value::Bool(want(ord)))
}

/// Go's `template.HTMLEscape`.
fn html(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'\'' => out.extend_from_slice(b"&#39;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&#34;"),
            0 => out.extend_from_slice("\u{FFFD}".as_bytes()),
            b => out.push(b),
        }
    }
    out
}

/// Go's `template.JSEscape`.
fn js(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\'' => out.extend_from_slice(b"\\'"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'<' => out.extend_from_slice(b"\\u003C"),
            b'>' => out.extend_from_slice(b"\\u003E"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            b'=' => out.extend_from_slice(b"\\u003D"),
            b if b < 0x20 => out.extend_from_slice(format!("\\u{:04X}", b).as_bytes()),
            b => out.push(b),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
fn urlquery(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            b => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    out
}
