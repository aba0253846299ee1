//! Decoding straight from protobuf bytes: the mirror of [`crate::wire`]. The envelope's fields
//! are read by number into a [`RecordedEvent`] and the payload is walked with its message
//! descriptor into the proto3 JSON that `DynamicMessage`'s printer produces (every field
//! without presence present, at its default when absent; `optional` fields and messages only
//! when set; enum value names; 64-bit integers as numbers; timestamps as RFC 3339) — without
//! building a `DynamicMessage` and printing it, which cost projectors half their time.
//!
//! The reader only ever answers what the dynamic path would answer: whatever it is not sure
//! of — malformed bytes, a wire type that does not fit, a message field given twice (proto
//! merges those), well-known types other than `Timestamp`, maps, kinds `proto/` does not use
//! (floats, bytes, fixed and zigzag integers), oneofs inside a payload — makes it decline, and the caller decodes through `DynamicMessage`, which gives the
//! answer and words the error. `tests/wire.rs` checks both ways agree on every example event
//! and on every truncation and byte flip of encoded envelopes.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kefu_app::{Actor, RecordedEvent};
use prost_reflect::{Kind, MessageDescriptor};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Contract, timestamp::with_text};

/// The reader is not sure; decode through `DynamicMessage` instead.
#[derive(Debug)]
pub(crate) struct Declined;

type Read<T> = Result<T, Declined>;

/// proto's nesting limit (prost's recursion limit).
pub(crate) const MAX_DEPTH: u32 = 100;
/// `google.protobuf.Timestamp`'s range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// One field's value as it is on the wire (fixed-width values are skipped: `proto/` has none).
#[derive(Clone, Copy)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

/// A varint as prost reads it: at most ten bytes, the tenth at most 1.
pub(crate) fn varint(bytes: &[u8], at: &mut usize) -> Read<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let b = *bytes.get(*at).ok_or(Declined)?;
        *at += 1;
        if i == 9 && b > 1 {
            return Err(Declined);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(Declined)
}

fn skip(bytes: &[u8], at: &mut usize, n: usize) -> Read<()> {
    *at = at.checked_add(n).filter(|e| *e <= bytes.len()).ok_or(Declined)?;
    Ok(())
}

/// The fields of an encoded message, in order: `(number, value, the field's bytes with its
/// tag)`. Groups and field number 0 are declined, as anything that is not well formed.
pub(crate) fn fields(bytes: &[u8]) -> impl Iterator<Item = Read<(u32, Wire<'_>, &[u8])>> + '_ {
    let mut at = 0usize;
    let mut broken = false;
    std::iter::from_fn(move || {
        if broken || at >= bytes.len() {
            return None;
        }
        let start = at;
        let field = (|| {
            let key = varint(bytes, &mut at)?;
            let key = u32::try_from(key).map_err(|_| Declined)?;
            let number = key >> 3;
            if number == 0 {
                return Err(Declined);
            }
            let wire = match key & 7 {
                0 => Wire::Varint(varint(bytes, &mut at)?),
                1 => skip(bytes, &mut at, 8).map(|()| Wire::Fixed64)?,
                2 => {
                    let len = usize::try_from(varint(bytes, &mut at)?).map_err(|_| Declined)?;
                    let end = at.checked_add(len).filter(|e| *e <= bytes.len()).ok_or(Declined)?;
                    let contents = &bytes[at..end];
                    at = end;
                    Wire::Bytes(contents)
                }
                5 => skip(bytes, &mut at, 4).map(|()| Wire::Fixed32)?,
                _ => return Err(Declined),
            };
            Ok((number, wire, &bytes[start..at]))
        })();
        broken = field.is_err();
        Some(field)
    })
}

/// Whether repeated fields of this kind may be packed (of the kinds the reader reads).
fn packable(kind: &Kind) -> bool {
    matches!(kind, Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Bool | Kind::Enum(_))
}

/// One value of a field of `kind`. Only the kinds `proto/` uses are read (integers as prost
/// truncates them); the others are declined.
fn single(kind: &Kind, wire: Wire<'_>, depth: u32) -> Read<Value> {
    use Wire::*;
    Ok(match (kind, wire) {
        (Kind::Int32, Varint(v)) => Value::from(v as i32),
        (Kind::Int64, Varint(v)) => Value::from(v as i64),
        (Kind::Uint32, Varint(v)) => Value::from(v as u32),
        (Kind::Bool, Varint(v)) => Value::from(v != 0),
        (Kind::String, Bytes(b)) => Value::from(std::str::from_utf8(b).map_err(|_| Declined)?),
        (Kind::Enum(e), Varint(v)) => {
            let number = v as i32;
            if e.full_name() == "google.protobuf.NullValue" {
                Value::Null
            } else {
                match e.get_value(number) {
                    Some(value) => Value::from(value.name()),
                    None => Value::from(number),
                }
            }
        }
        (Kind::Message(m), Bytes(b)) => message(m, b, depth + 1)?,
        _ => return Err(Declined),
    })
}

/// The values of a packed repeated field (of varint kinds).
fn packed(kind: &Kind, contents: &[u8], out: &mut Vec<Value>) -> Read<()> {
    let mut at = 0usize;
    while at < contents.len() {
        out.push(single(kind, Wire::Varint(varint(contents, &mut at)?), 0)?);
    }
    Ok(())
}

/// The default of a field without presence, as the printer shows it.
fn default(kind: &Kind) -> Read<Value> {
    Ok(match kind {
        Kind::Int32 | Kind::Int64 => Value::from(0),
        Kind::Uint32 => Value::from(0u32),
        Kind::Bool => Value::from(false),
        Kind::String => Value::from(""),
        Kind::Enum(e) => {
            if e.full_name() == "google.protobuf.NullValue" {
                Value::Null
            } else {
                let d = e.default_value();
                Value::from(e.get_value(d.number()).unwrap_or(d).name())
            }
        }
        _ => return Err(Declined),
    })
}

/// A `google.protobuf.Timestamp`'s seconds and nanos, when in its range.
pub(crate) fn timestamp_parts(bytes: &[u8]) -> Read<(i64, u32)> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    for field in fields(bytes) {
        let (number, wire, _) = field?;
        match (number, wire) {
            (1, Wire::Varint(v)) => seconds = v as i64,
            (2, Wire::Varint(v)) => nanos = v as i32,
            (1 | 2, _) => return Err(Declined),
            _ => {}
        }
    }
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        return Err(Declined);
    }
    Ok((seconds, nanos as u32))
}

fn time(bytes: &[u8]) -> Read<DateTime<Utc>> {
    let (seconds, nanos) = timestamp_parts(bytes)?;
    DateTime::from_timestamp(seconds, nanos).ok_or(Declined)
}

/// Message `desc` encoded in `bytes`, as proto3 JSON.
pub(crate) fn message(desc: &MessageDescriptor, bytes: &[u8], depth: u32) -> Read<Value> {
    if depth > MAX_DEPTH {
        return Err(Declined);
    }
    let name = desc.full_name();
    if name == "google.protobuf.Timestamp" {
        return Ok(with_text(&time(bytes)?, |text| Value::from(text)));
    }
    if name.starts_with("google.protobuf.") || desc.oneofs().any(|o| !o.is_synthetic()) {
        return Err(Declined);
    }
    let mut set: BTreeMap<u32, Value> = BTreeMap::new();
    for field in fields(bytes) {
        let (number, wire, _) = field?;
        // Unknown fields are skipped, as the printer skips them.
        let Some(field) = desc.get_field(number) else { continue };
        if field.is_map() {
            return Err(Declined);
        }
        let kind = field.kind();
        if field.is_list() {
            let Value::Array(items) = set.entry(number).or_insert_with(|| Value::Array(Vec::new())) else {
                return Err(Declined);
            };
            match wire {
                Wire::Bytes(contents) if packable(&kind) => packed(&kind, contents, items)?,
                wire => items.push(single(&kind, wire, depth)?),
            }
        } else {
            let value = single(&kind, wire, depth)?;
            // A message given twice is merged by proto; leave that to the dynamic path.
            if set.insert(number, value).is_some() && matches!(kind, Kind::Message(_)) {
                return Err(Declined);
            }
        }
    }
    let mut out = Map::new();
    for field in desc.fields() {
        let value = match set.remove(&field.number()) {
            Some(v) => v,
            None if field.is_list() => Value::Array(Vec::new()),
            None if !field.supports_presence() => default(&field.kind())?,
            None => continue,
        };
        out.insert(field.json_name().to_string(), value);
    }
    Ok(Value::Object(out))
}

fn text(wire: Wire<'_>) -> Read<&str> {
    match wire {
        Wire::Bytes(b) => std::str::from_utf8(b).map_err(|_| Declined),
        _ => Err(Declined),
    }
}

fn number(wire: Wire<'_>) -> Read<u64> {
    match wire {
        Wire::Varint(v) => Ok(v),
        _ => Err(Declined),
    }
}

fn contents(wire: Wire<'_>) -> Read<&[u8]> {
    match wire {
        Wire::Bytes(b) => Ok(b),
        _ => Err(Declined),
    }
}

fn id(s: &str) -> Read<Uuid> {
    Uuid::parse_str(s).map_err(|_| Declined)
}

/// Sets a message field that must occur once (proto would merge a second occurrence).
fn once<'a>(slot: &mut Option<&'a [u8]>, wire: Wire<'a>) -> Read<()> {
    if slot.replace(contents(wire)?).is_some() {
        return Err(Declined);
    }
    Ok(())
}

/// A binary `kefu.v1.Envelope` as a [`RecordedEvent`]; without its payload (`null`) unless
/// `with_payload`.
pub(crate) fn envelope(contract: &Contract, bytes: &[u8], with_payload: bool) -> Read<RecordedEvent> {
    let (mut event, payload) = envelope_parts(contract, bytes)?;
    if with_payload {
        let member = contract.members.get(&event.event_type).ok_or(Declined)?;
        let Some(contents) = payload.filter(|(n, _)| *n == member.number()).map(|(_, c)| c) else {
            return Err(Declined);
        };
        event.payload = payload_json(contract, &event.event_type, contents)?;
    }
    Ok(event)
}

/// The proto3 JSON of `event_type`'s payload message encoded in `contents`.
pub(crate) fn payload_json(contract: &Contract, event_type: &str, contents: &[u8]) -> Read<Value> {
    let member = contract.members.get(event_type).ok_or(Declined)?;
    let Kind::Message(desc) = member.kind() else { return Err(Declined) };
    message(&desc, contents, 1)
}

/// A payload member of an envelope: its field number and encoded message.
pub(crate) type Member<'a> = (u32, &'a [u8]);

/// A binary `kefu.v1.Envelope` as a [`RecordedEvent`] without its payload (`null`), and the
/// payload member that was set last (its field number and encoded message), if any.
pub(crate) fn envelope_parts<'a>(contract: &Contract, bytes: &'a [u8]) -> Read<(RecordedEvent, Option<Member<'a>>)> {
    let (mut event_id, mut event_type, mut stream_id, mut stream_type) = ("", "", "", "");
    let (mut correlation_id, mut causation_id, mut command_id) = ("", "", "");
    let (mut schema_version, mut stream_version, mut global_position) = (0u64, 0u64, 0u64);
    let mut customer_id: Option<&str> = None;
    let (mut occurred_at, mut recorded_at, mut actor) = (None, None, None);
    let mut payload: Option<(u32, &[u8])> = None;
    for field in fields(bytes) {
        let (n, wire, _) = field?;
        match n {
            1 => event_id = text(wire)?,
            2 => event_type = text(wire)?,
            3 => schema_version = number(wire)?,
            4 => stream_id = text(wire)?,
            5 => stream_type = text(wire)?,
            6 => stream_version = number(wire)?,
            7 => customer_id = Some(text(wire)?),
            8 => global_position = number(wire)?,
            9 => once(&mut occurred_at, wire)?,
            10 => once(&mut recorded_at, wire)?,
            11 => once(&mut actor, wire)?,
            12 => correlation_id = text(wire)?,
            13 => causation_id = text(wire)?,
            14 => command_id = text(wire)?,
            n if contract.envelope.get_field(n).is_some() => {
                // A member of the payload oneof: the last one set is the payload.
                let contents = contents(wire)?;
                if matches!(payload, Some((m, _)) if m == n) {
                    return Err(Declined);
                }
                payload = Some((n, contents));
            }
            _ => {}
        }
    }
    if !contract.members.contains_key(event_type) {
        return Err(Declined);
    }
    // The actor straight into its type (the same answer as through its JSON: `typed`).
    let actor = Actor::deserialize(contract.plans.message(contract.actor_plan, actor.ok_or(Declined)?, 1))
        .map_err(|_| Declined)?;
    let event = RecordedEvent {
        event_id: id(event_id)?,
        event_type: event_type.to_string(),
        schema_version: schema_version as u32,
        stream_id: id(stream_id)?,
        stream_type: stream_type.to_string(),
        stream_version: stream_version as i64,
        customer_id: customer_id.map(id).transpose()?,
        global_position: global_position as i64,
        occurred_at: time(occurred_at.ok_or(Declined)?)?,
        recorded_at: time(recorded_at.ok_or(Declined)?)?,
        actor,
        correlation_id: id(correlation_id)?,
        causation_id: id(causation_id)?,
        command_id: id(command_id)?,
        payload: Value::Null,
    };
    Ok((event, payload))
}
