//! Encoding an event straight to protobuf bytes: the payload's JSON is walked together with
//! its message descriptor and written in the wire format, field by field in number order —
//! the bytes `DynamicMessage` would produce, without building one (the relay encodes every
//! event; building a dynamic message per event cost more than everything else it does).
//!
//! The rules are those of proto3's JSON mapping as kefu uses it: camelCase (or proto) field
//! names, enum value names (or numbers), 64-bit integers as numbers or strings,
//! `google.protobuf.Timestamp` as RFC 3339, `null` as absent. Fields without presence are
//! left out when they hold their default; `optional` fields and messages are written whenever
//! they are set. A field the descriptor does not know is an error, as it is for the dynamic
//! path, so the contract stays checked on every publish. `tests/wire.rs` compares the bytes
//! with `DynamicMessage`'s for every example event.

use prost::encoding::{WireType, encode_key, encode_varint};
use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::Value;

use crate::ContractError;

/// Why a value did not fit.
type Fit<T> = Result<T, String>;

/// Writes `value` (a JSON object) as the message `desc`.
pub(crate) fn write_message(desc: &MessageDescriptor, value: &Value, out: &mut Vec<u8>) -> Fit<()> {
    let Value::Object(map) = value else { return Err(format!("{} must be an object", desc.full_name())) };
    if desc.full_name() == "google.protobuf.Timestamp" {
        return Err("a Timestamp must be an RFC 3339 string".into());
    }
    // Every key must be a field.
    let mut fields: Vec<(FieldDescriptor, &Value)> = Vec::with_capacity(map.len());
    for (key, v) in map {
        let field = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
            .ok_or_else(|| format!("unknown field `{key}` in {}", desc.full_name()))?;
        if !v.is_null() {
            fields.push((field, v));
        }
    }
    fields.sort_by_key(|(f, _)| f.number());
    for (field, v) in fields {
        write_field(&field, v, out).map_err(|e| format!("{}: {e}", field.json_name()))?;
    }
    Ok(())
}

fn write_field(field: &FieldDescriptor, v: &Value, out: &mut Vec<u8>) -> Fit<()> {
    if field.is_map() {
        return Err("map fields are not supported".into());
    }
    let number = field.number();
    let kind = field.kind();
    if field.cardinality() == Cardinality::Repeated {
        let Value::Array(items) = v else { return Err("must be a list".into()) };
        if items.is_empty() {
            return Ok(());
        }
        if field.is_packed() && is_scalar_number(&kind) {
            let mut packed = Vec::with_capacity(items.len() * 4);
            for item in items {
                write_scalar(&kind, item, &mut packed)?;
            }
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(packed.len() as u64, out);
            out.extend_from_slice(&packed);
        } else {
            for item in items {
                write_single(number, &kind, item, out, true)?;
            }
        }
        return Ok(());
    }
    // Explicit presence (optional, oneof members, messages): written even when default.
    write_single(number, &kind, v, out, field.supports_presence())
}

fn is_scalar_number(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

fn wire_type(kind: &Kind) -> WireType {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => WireType::SixtyFourBit,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => WireType::ThirtyTwoBit,
        Kind::String | Kind::Bytes | Kind::Message(_) => WireType::LengthDelimited,
        _ => WireType::Varint,
    }
}

/// One value of a field (`present`: written even when it is the default).
fn write_single(number: u32, kind: &Kind, v: &Value, out: &mut Vec<u8>, present: bool) -> Fit<()> {
    match kind {
        Kind::String => {
            let Value::String(s) = v else { return Err("must be a string".into()) };
            if s.is_empty() && !present {
                return Ok(());
            }
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(s.len() as u64, out);
            out.extend_from_slice(s.as_bytes());
        }
        Kind::Bytes => return Err("bytes fields are not supported".into()),
        Kind::Message(m) => {
            let mut inner = Vec::new();
            if m.full_name() == "google.protobuf.Timestamp" {
                write_timestamp(v, &mut inner)?;
            } else {
                write_message(m, v, &mut inner)?;
            }
            encode_key(number, WireType::LengthDelimited, out);
            encode_varint(inner.len() as u64, out);
            out.extend_from_slice(&inner);
        }
        _ => {
            let mut value = Vec::with_capacity(10);
            let is_default = write_scalar(kind, v, &mut value)?;
            if is_default && !present {
                return Ok(());
            }
            encode_key(number, wire_type(kind), out);
            out.extend_from_slice(&value);
        }
    }
    Ok(())
}

fn integer(v: &Value) -> Fit<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i as i128)
            } else if let Some(u) = n.as_u64() {
                Ok(u as i128)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.is_finite() { Ok(f as i128) } else { Err(format!("{n} is not an integer")) }
            }
        }
        Value::String(s) => s.trim().parse::<i128>().map_err(|_| format!("`{s}` is not an integer")),
        _ => Err("must be an integer".into()),
    }
}

fn float(v: &Value) -> Fit<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(|_| format!("`{other}` is not a number")),
        },
        _ => Err("must be a number".into()),
    }
}

fn in_range(i: i128, lo: i128, hi: i128) -> Fit<i128> {
    if (lo..=hi).contains(&i) { Ok(i) } else { Err(format!("{i} is out of range")) }
}

/// Writes a scalar's bytes (without key); returns whether it is the default value.
fn write_scalar(kind: &Kind, v: &Value, out: &mut Vec<u8>) -> Fit<bool> {
    let default = match kind {
        Kind::Bool => {
            let Value::Bool(b) = v else { return Err("must be true or false".into()) };
            encode_varint(u64::from(*b), out);
            !*b
        }
        Kind::Int32 => {
            let i = in_range(integer(v)?, i32::MIN.into(), i32::MAX.into())?;
            // Negative int32 values are sign-extended to ten bytes.
            encode_varint(i as i64 as u64, out);
            i == 0
        }
        Kind::Int64 => {
            let i = in_range(integer(v)?, i64::MIN.into(), i64::MAX.into())?;
            encode_varint(i as i64 as u64, out);
            i == 0
        }
        Kind::Uint32 => {
            let i = in_range(integer(v)?, 0, u32::MAX.into())?;
            encode_varint(i as u64, out);
            i == 0
        }
        Kind::Uint64 => {
            let i = in_range(integer(v)?, 0, u64::MAX.into())?;
            encode_varint(i as u64, out);
            i == 0
        }
        Kind::Sint32 => {
            let i = in_range(integer(v)?, i32::MIN.into(), i32::MAX.into())? as i32;
            encode_varint(((i << 1) ^ (i >> 31)) as u32 as u64, out);
            i == 0
        }
        Kind::Sint64 => {
            let i = in_range(integer(v)?, i64::MIN.into(), i64::MAX.into())? as i64;
            encode_varint(((i << 1) ^ (i >> 63)) as u64, out);
            i == 0
        }
        Kind::Fixed32 => {
            let i = in_range(integer(v)?, 0, u32::MAX.into())? as u32;
            out.extend_from_slice(&i.to_le_bytes());
            i == 0
        }
        Kind::Sfixed32 => {
            let i = in_range(integer(v)?, i32::MIN.into(), i32::MAX.into())? as i32;
            out.extend_from_slice(&i.to_le_bytes());
            i == 0
        }
        Kind::Fixed64 => {
            let i = in_range(integer(v)?, 0, u64::MAX.into())? as u64;
            out.extend_from_slice(&i.to_le_bytes());
            i == 0
        }
        Kind::Sfixed64 => {
            let i = in_range(integer(v)?, i64::MIN.into(), i64::MAX.into())? as i64;
            out.extend_from_slice(&i.to_le_bytes());
            i == 0
        }
        Kind::Double => {
            let f = float(v)?;
            out.extend_from_slice(&f.to_le_bytes());
            f == 0.0
        }
        Kind::Float => {
            let f = float(v)? as f32;
            out.extend_from_slice(&f.to_le_bytes());
            f == 0.0
        }
        Kind::Enum(e) => {
            let number = match v {
                Value::String(name) => {
                    e.get_value_by_name(name).ok_or_else(|| format!("`{name}` is not a {}", e.name()))?.number()
                }
                other => in_range(integer(other)?, i32::MIN.into(), i32::MAX.into())? as i32,
            };
            encode_varint(number as i64 as u64, out);
            number == 0
        }
        Kind::String | Kind::Bytes | Kind::Message(_) => return Err("not a scalar".into()),
    };
    Ok(default)
}

/// A `google.protobuf.Timestamp` from RFC 3339.
fn write_timestamp(v: &Value, out: &mut Vec<u8>) -> Fit<()> {
    let Value::String(s) = v else { return Err("a Timestamp must be an RFC 3339 string".into()) };
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| format!("`{s}` is not RFC 3339: {e}"))?;
    write_time(t.timestamp(), t.timestamp_subsec_nanos(), out);
    Ok(())
}

/// The fields of a `google.protobuf.Timestamp`.
pub(crate) fn write_time(seconds: i64, nanos: u32, out: &mut Vec<u8>) {
    if seconds != 0 {
        encode_key(1, WireType::Varint, out);
        encode_varint(seconds as u64, out);
    }
    if nanos != 0 {
        encode_key(2, WireType::Varint, out);
        encode_varint(u64::from(nanos), out);
    }
}

/// Length-delimited string field (written even when empty when `present`).
pub(crate) fn write_string(number: u32, s: &str, present: bool, out: &mut Vec<u8>) {
    if s.is_empty() && !present {
        return;
    }
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

/// Varint field, left out when zero.
pub(crate) fn write_varint(number: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        encode_key(number, WireType::Varint, out);
        encode_varint(value, out);
    }
}

/// A nested message field from its encoded bytes.
pub(crate) fn write_nested(number: u32, inner: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(inner.len() as u64, out);
    out.extend_from_slice(inner);
}

/// The error for a payload that does not fit.
pub(crate) fn mismatch(event_type: &str, reason: String) -> ContractError {
    ContractError::PayloadMismatch { event_type: event_type.to_string(), reason }
}
