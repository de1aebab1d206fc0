//! An ordered JSON value: inspect output and `{{json .}}` keep the daemon's field order, which
//! `serde_json::Value` (sorted maps) would lose.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// A map key that is not there (prints as Go's `<no value>`).
    Missing,
    #[default]
    Null,
    /// A JSON `null` where Docker's Go type is a slice (`true`) or a map (`false`): Go templates
    /// print those as `[]` / `map[]`, yet `json` still gives `null`.
    TypedNil(bool),
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Look up a key of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Go's truthiness: false, 0, nil and empty things are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Missing | Value::Null | Value::TypedNil(_) => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        }
    }

    /// Parse JSON text keeping object order.
    pub fn from_json(s: &[u8]) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(s)
    }

    /// Convert any serializable value (through serde_json, so struct order is kept).
    pub fn from_serialize<T: Serialize>(v: &T) -> Result<Value, serde_json::Error> {
        let s = serde_json::to_vec(v)?;
        Value::from_json(&s)
    }

    /// Compact JSON, as docker's `json` template function prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Indented JSON with four spaces, as `docker inspect` prints it.
    pub fn to_json_pretty(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if self.serialize(&mut ser).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Go's `%v` formatting of a number decoded from JSON: integral values print without a fraction.
pub fn format_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i128)
    } else {
        format!("{f}")
    }
}

impl fmt::Display for Value {
    /// Go's `%v` of the decoded value: `[a b]`, `map[k:v]`, `<nil>`, `<no value>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing => f.write_str("<no value>"),
            Value::Null => f.write_str("<nil>"),
            Value::TypedNil(true) => f.write_str("[]"),
            Value::TypedNil(false) => f.write_str("map[]"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&format_float(*x)),
            Value::Str(s) => f.write_str(s),
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            // Docker's PortBinding is a Go struct, which prints as `{ip port}`.
            Value::Object(o)
                if o.len() == 2
                    && o.iter().any(|(k, _)| k == "HostIp")
                    && o.iter().any(|(k, _)| k == "HostPort") =>
            {
                let ip = self.get("HostIp").cloned().unwrap_or_default();
                let port = self.get("HostPort").cloned().unwrap_or_default();
                write!(f, "{{{ip} {port}}}")
            }
            Value::Object(o) => {
                let mut sorted: Vec<&(String, Value)> = o.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                f.write_str("map[")?;
                for (i, (k, v)) in sorted.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Missing | Value::Null | Value::TypedNil(_) => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(v) => s.serialize_str(v),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut m = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = a.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut out: Vec<(String, Value)> = Vec::new();
        while let Some((k, v)) = a.next_entry::<String, Value>()? {
            // Last duplicate wins, as in Go's decoder.
            if let Some(slot) = out.iter_mut().find(|(ek, _)| *ek == k) {
                slot.1 = v;
            } else {
                out.push((k, v));
            }
        }
        Ok(Value::Object(out))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_prints_like_go() {
        let v =
            Value::from_json(br#"{"b":1,"a":[1,"x",null],"c":{"z":true,"y":1.5}}"#).expect("json");
        assert_eq!(
            v.to_json(),
            r#"{"b":1,"a":[1,"x",null],"c":{"z":true,"y":1.5}}"#
        );
        assert_eq!(v.to_string(), "map[a:[1 x <nil>] b:1 c:map[y:1.5 z:true]]");
        let p = Value::from_json(br#"{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}"#)
            .expect("json");
        assert_eq!(p.to_string(), "map[80/tcp:[{0.0.0.0 8080}]]");
        assert_eq!(
            Value::from_json(b"[{}, []]")
                .expect("json")
                .to_json_pretty(),
            "[\n    {},\n    []\n]"
        );
    }
}
