//! JSON request bodies decoded the way Consul's Go decoder reads them:
//! struct field names match case-insensitively (an exact match wins), an
//! unknown field is an error, `null` leaves a field at its zero value, and
//! only the first JSON value of the body is read. Map keys (`Meta`,
//! `Header`, `TaggedAddresses`) are left exactly as sent.
//!
//! It works as a wrapper deserializer over `serde_json::Value`: in
//! `deserialize_struct` the incoming keys are renamed to the struct's
//! declared field names before serde's derived code sees them. Wire structs
//! therefore declare every accepted spelling that is not a case variant as
//! its own field (`enable_tag_override` beside `EnableTagOverride`), as
//! Consul's Go structs do, and merge them after decoding.

use super::wire::ApiError;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// Decodes a request body; failures are `400 Request decode failed: ...`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    decode(body).map_err(|e| ApiError::bad(format!("Request decode failed: {e}")))
}

/// Decodes the first JSON value of `body` into `T` with Go's rules.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let value = match stream.next() {
        None => return Err(DecodeError::msg("EOF")),
        Some(Err(e)) if e.is_eof() => return Err(DecodeError::msg("unexpected EOF")),
        Some(Err(e)) => return Err(DecodeError::msg(format!("invalid JSON: {e}"))),
        Some(Ok(v)) => v,
    };
    from_value(value)
}

pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    T::deserialize(GoValue(value))
}

/// A decode failure, with Go's wording where it matters to clients.
#[derive(Debug)]
pub struct DecodeError {
    msg: String,
    /// For type mismatches: (JSON kind received, Go-ish type wanted), until
    /// the enclosing struct field is known.
    mismatch: Option<(String, String)>,
}

impl DecodeError {
    fn msg(m: impl Into<String>) -> DecodeError {
        DecodeError {
            msg: m.into(),
            mismatch: None,
        }
    }

    /// Names the struct field a type mismatch happened in, as Go does.
    fn in_field(mut self, strukt: &str, field: &str) -> DecodeError {
        if let Some((got, want)) = self.mismatch.take() {
            self.msg = format!(
                "json: cannot unmarshal {got} into Go struct field {strukt}.{field} of type {want}"
            );
        }
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DecodeError {}

fn json_kind(u: &de::Unexpected) -> String {
    match u {
        de::Unexpected::Bool(_) => "bool".into(),
        de::Unexpected::Unsigned(n) => format!("number {n}"),
        de::Unexpected::Signed(n) => format!("number {n}"),
        de::Unexpected::Float(n) => format!("number {n}"),
        de::Unexpected::Str(_) | de::Unexpected::Char(_) => "string".into(),
        de::Unexpected::Seq => "array".into(),
        de::Unexpected::Map => "object".into(),
        de::Unexpected::Unit | de::Unexpected::Option => "null".into(),
        other => other.to_string(),
    }
}

fn go_type(exp: &dyn de::Expected) -> String {
    let s = exp.to_string();
    match s.as_str() {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" | "usize" | "isize" => {
            "int".into()
        }
        "f32" | "f64" => "float64".into(),
        "a boolean" => "bool".into(),
        "a string" | "string" | "a character" => "string".into(),
        "a sequence" => "[]string".into(),
        "a map" => "map[string]string".into(),
        _ => match s.strip_prefix("struct ") {
            Some(name) => name.to_string(),
            None => s,
        },
    }
}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::msg(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let (got, want) = (json_kind(&unexp), go_type(exp));
        DecodeError {
            msg: format!("json: cannot unmarshal {got} into Go value of type {want}"),
            mismatch: Some((got, want)),
        }
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn unknown_field(field: &str, _expected: &'static [&'static str]) -> Self {
        DecodeError::msg(format!("json: unknown field {field:?}"))
    }
}

/// The wrapper deserializer.
struct GoValue(Value);

impl<'de> Deserializer<'de> for GoValue {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => visitor.visit_seq(Seq {
                items: items.into_iter(),
            }),
            Value::Object(map) => {
                let entries: Vec<(String, Value)> = map.into_iter().collect();
                visitor.visit_map(Map {
                    entries: entries.into_iter(),
                    pending: None,
                    strukt: None,
                })
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            other => visitor.visit_some(GoValue(other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        let map = match self.0 {
            Value::Object(map) => map,
            other => {
                // Go never fills a struct from an array or a scalar.
                let kind = match other {
                    Value::Array(_) => "array",
                    Value::String(_) => "string",
                    Value::Number(_) => "number",
                    Value::Bool(_) => "bool",
                    _ => "null",
                };
                return Err(DecodeError {
                    msg: format!("json: cannot unmarshal {kind} into Go value of type {name}"),
                    mismatch: Some((kind.to_string(), name.to_string())),
                });
            }
        };
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(map.len());
        for (key, value) in map {
            let field = fields
                .iter()
                .find(|f| **f == key)
                .or_else(|| fields.iter().find(|f| f.eq_ignore_ascii_case(&key)));
            let Some(field) = field else {
                return Err(DecodeError::msg(format!("json: unknown field {key:?}")));
            };
            // Go leaves a field untouched for `null`; a repeated key overwrites.
            entries.retain(|(k, _)| k != field);
            if !value.is_null() {
                entries.push((field.to_string(), value));
            }
        }
        visitor.visit_map(Map {
            entries: entries.into_iter(),
            pending: None,
            strukt: Some(name),
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        self.0
            .deserialize_enum(name, variants, visitor)
            .map_err(|e| DecodeError::msg(e.to_string()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

struct Seq {
    items: std::vec::IntoIter<Value>,
}

impl<'de> SeqAccess<'de> for Seq {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DecodeError> {
        match self.items.next() {
            None => Ok(None),
            Some(v) => seed.deserialize(GoValue(v)).map(Some),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map {
    entries: std::vec::IntoIter<(String, Value)>,
    pending: Option<(String, Value)>,
    /// Set when this map is a struct: names the field in type errors.
    strukt: Option<&'static str>,
}

impl<'de> MapAccess<'de> for Map {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                let key = seed.deserialize(k.clone().into_deserializer())?;
                self.pending = Some((k, v));
                Ok(Some(key))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(DecodeError::msg("value requested before key"));
        };
        seed.deserialize(GoValue(value))
            .map_err(|e| match self.strukt {
                Some(s) => e.in_field(s, &key),
                None => e,
            })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// A duration as Consul's check and session types accept it: a Go duration
/// string (`"10s"`) or a number of nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GoDuration(pub u64);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("time.Duration")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<GoDuration, E> {
                crate::duration::parse(s)
                    .map(|d| GoDuration(d.as_nanos().min(u64::MAX as u128) as u64))
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<GoDuration, E> {
                Ok(GoDuration(n.max(0) as u64))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<GoDuration, E> {
                Ok(GoDuration(if n.is_finite() && n > 0.0 {
                    n as u64
                } else {
                    0
                }))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, rename_all = "PascalCase")]
    struct Inner {
        #[serde(rename = "TTL")]
        ttl: GoDuration,
        interval: GoDuration,
        #[serde(rename = "deregister_critical_service_after")]
        dcsa_snake: GoDuration,
    }

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(default, rename_all = "PascalCase")]
    struct Outer {
        #[serde(rename = "ID")]
        id: String,
        name: String,
        port: u16,
        tags: Vec<String>,
        meta: BTreeMap<String, String>,
        enable_tag_override: bool,
        #[serde(rename = "enable_tag_override")]
        enable_tag_override_snake: Option<bool>,
        check: Option<Inner>,
        checks: Vec<Inner>,
    }

    fn ok(s: &str) -> Outer {
        decode::<Outer>(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        decode::<Outer>(s.as_bytes()).expect_err(s).to_string()
    }

    #[test]
    fn field_names_match_case_insensitively() {
        let o = ok(r#"{"name":"web","id":"w1","PORT":80,"enabletagoverride":true}"#);
        assert_eq!(o.name, "web");
        assert_eq!(o.id, "w1");
        assert_eq!(o.port, 80);
        assert!(o.enable_tag_override);
    }

    #[test]
    fn snake_case_alias_is_its_own_field() {
        let o = ok(r#"{"Name":"web","enable_tag_override":true}"#);
        assert_eq!(o.enable_tag_override_snake, Some(true));
        assert!(!o.enable_tag_override);
    }

    #[test]
    fn map_keys_are_untouched() {
        let o = ok(r#"{"Meta":{"Version":"1","version":"2"}}"#);
        assert_eq!(o.meta.get("Version").map(String::as_str), Some("1"));
        assert_eq!(o.meta.get("version").map(String::as_str), Some("2"));
    }

    #[test]
    fn unknown_fields_are_rejected_with_go_text() {
        assert_eq!(
            err(r#"{"Name":"web","Bogus":1}"#),
            r#"json: unknown field "Bogus""#
        );
        assert_eq!(
            err(r#"{"Check":{"script":"x"}}"#),
            r#"json: unknown field "script""#
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = err(r#"{"Name":"web","Port":"80"}"#);
        assert_eq!(
            e,
            "json: cannot unmarshal string into Go struct field Outer.Port of type int"
        );
        let e = err(r#"{"Tags":"a"}"#);
        assert!(
            e.starts_with("json: cannot unmarshal string into Go struct field Outer.Tags"),
            "{e}"
        );
        let e = err(r#"[1]"#);
        assert!(
            e.starts_with("json: cannot unmarshal array into Go value of type"),
            "{e}"
        );
        let e = err(r#"{"Port":70000}"#);
        assert!(e.starts_with("json: cannot unmarshal number 70000"), "{e}");
    }

    #[test]
    fn null_means_zero_value() {
        let o = ok(r#"{"Name":null,"Port":null,"Check":null,"Tags":null}"#);
        assert_eq!(o, Outer::default());
    }

    #[test]
    fn durations_are_strings_or_nanoseconds() {
        let o = ok(
            r#"{"Check":{"ttl":"10s","Interval":1000000000,"deregister_critical_service_after":"1m"}}"#,
        );
        let c = o.check.unwrap();
        assert_eq!(c.ttl, GoDuration(10_000_000_000));
        assert_eq!(c.interval, GoDuration(1_000_000_000));
        assert_eq!(c.dcsa_snake, GoDuration(60_000_000_000));
        let e = err(r#"{"Check":{"TTL":"ten"}}"#);
        assert_eq!(e, r#"time: invalid duration "ten""#);
    }

    #[test]
    fn nested_lists_of_structs_are_case_insensitive_too() {
        let o = ok(r#"{"checks":[{"ttl":"5s"},{"INTERVAL":"1s"}]}"#);
        assert_eq!(o.checks.len(), 2);
        assert_eq!(o.checks[1].interval, GoDuration(1_000_000_000));
    }

    #[test]
    fn empty_and_trailing_input() {
        assert_eq!(err(""), "EOF");
        assert_eq!(err("   "), "EOF");
        assert!(err("{").contains("EOF"));
        assert_eq!(ok(r#"{"Name":"a"} trailing"#).name, "a");
        assert!(err("{bad").starts_with("invalid JSON"));
    }

    #[test]
    fn exact_match_wins_over_case_fold() {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Two {
            #[serde(rename = "args")]
            args: Vec<String>,
            #[serde(rename = "Args")]
            args_upper: Vec<String>,
        }
        let t: Two = decode(br#"{"args":["a"],"Args":["b"]}"#).unwrap();
        assert_eq!(t.args, vec!["a"]);
        assert_eq!(t.args_upper, vec!["b"]);
    }
}
