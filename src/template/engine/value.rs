//! The values a template computes with, shaped like the Go values
//! consul-template hands to `text/template`: strings are bytes (a KV value
//! that is not UTF-8 renders byte-exact), maps know the zero value of
//! their element type (a missing key of a `map[string]string` is `""`, of
//! a `map[string]interface{}` it prints `<no value>`), and structs keep
//! their fields in declaration order, as `toJSON` and `{{ . }}` show them.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One template value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Go's nil (an absent value): false, prints `<no value>`.
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Bytes),
    List(Arc<Vec<Value>>),
    Map(Arc<Map>),
    Struct(Arc<Struct>),
}

/// A Go map with string keys, ranged over in sorted key order.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub entries: BTreeMap<String, Value>,
    /// What a missing key yields (the zero value of the element type).
    pub zero: Value,
    /// Go's name of the type, for error messages.
    pub type_name: &'static str,
}

/// A Go struct (consul-template's result types, behind a pointer).
#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    pub type_name: &'static str,
    pub fields: Vec<(&'static str, Value)>,
}

impl Struct {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl Value {
    pub fn str(s: impl Into<Bytes>) -> Value {
        Value::Str(s.into())
    }

    pub fn string(s: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A `map[string]string` (zero value `""`).
    pub fn string_map(entries: BTreeMap<String, Value>) -> Value {
        Value::Map(Arc::new(Map {
            entries,
            zero: Value::str(""),
            type_name: "map[string]string",
        }))
    }

    /// A `map[string]interface{}` (zero value nil).
    pub fn any_map(entries: BTreeMap<String, Value>) -> Value {
        Value::Map(Arc::new(Map {
            entries,
            zero: Value::Nil,
            type_name: "map[string]interface {}",
        }))
    }

    pub fn record(type_name: &'static str, fields: Vec<(&'static str, Value)>) -> Value {
        Value::Struct(Arc::new(Struct { type_name, fields }))
    }

    /// Go's name of the value's type, as error messages print it.
    pub fn type_name(&self) -> String {
        match self {
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::List(items) => match items.first() {
                Some(Value::Str(_)) => "[]string".into(),
                Some(Value::Struct(s)) => format!("[]{}", s.type_name),
                _ => "[]interface {}".into(),
            },
            Value::Map(m) => m.type_name.into(),
            Value::Struct(s) => s.type_name.into(),
        }
    }

    /// Go's truth: false, 0, nil and empty strings, lists and maps are
    /// false; structs are always true.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.entries.is_empty(),
            Value::Struct(_) => true,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string's text; bytes that are not UTF-8 become U+FFFD.
    pub fn as_text(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::string(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Bytes::from(s))
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Str(Bytes::from(b))
    }
}
