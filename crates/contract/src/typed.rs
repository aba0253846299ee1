//! Decoding a payload straight from protobuf bytes into the reader's own types: a serde
//! `Deserializer` over the encoded message, walked with a plan made once per message from its
//! descriptor, that presents exactly what deserializing the proto3 JSON of [`crate::read`]
//! presents — the same fields in the same order (every field without presence, at its default
//! when absent; lists, empty when absent; `optional` fields and messages only when set), numbers
//! visited as `serde_json` visits them (`u64` when not negative, else `i64`), enum value names,
//! timestamps as RFC 3339 text — without building the JSON tree and reading it again, which was
//! most of a rebuild's decoding (`perf` on `kefu-bench rebuild`).
//!
//! As the JSON reader does, it declines whatever it is not sure of (malformed bytes, a wire
//! type that does not fit, a message field given twice, kinds `proto/` does not use, a value
//! the reader's type asks for in a form JSON would give differently): the caller then decodes
//! through the JSON path, which gives the answer and words the error. Every value is visited,
//! also those the reader's type ignores, so that bytes the JSON path refuses are refused here
//! too. `tests/wire.rs` checks both paths give the same event for every example event of the
//! domain, every family, and every truncation and byte flip of encoded envelopes.

use std::collections::HashMap;

use chrono::DateTime;
use prost_reflect::{Kind, MessageDescriptor};
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
    value::{BorrowedStrDeserializer, StrDeserializer},
};

use crate::{
    read::{self, MAX_DEPTH, Wire},
    timestamp::with_text,
};

type Error = serde_json::Error;

/// The error that sends the caller to the JSON path (never shown: that path words its own).
fn declined() -> Error {
    de::Error::custom("declined by the direct reader")
}

/// A field's kind, as far as the reader reads it.
#[derive(Clone, Copy, Debug)]
enum KindPlan {
    Int32,
    Int64,
    Uint32,
    Bool,
    String,
    /// An enum (index into [`Plans::enums`]).
    Enum(usize),
    /// `google.protobuf.NullValue`: JSON `null`.
    NullValue,
    /// `google.protobuf.Timestamp`: RFC 3339 text.
    Timestamp,
    /// A message (index into [`Plans::messages`]).
    Message(usize),
    /// A kind `proto/` does not use: declined when present (or needed as a default).
    Unsupported,
}

impl KindPlan {
    /// Whether a value on the wire has the wire type of this kind.
    fn fits(self, wire: Wire<'_>) -> bool {
        match self {
            KindPlan::Int32 | KindPlan::Int64 | KindPlan::Uint32 | KindPlan::Bool | KindPlan::Enum(_) => {
                matches!(wire, Wire::Varint(_))
            }
            KindPlan::NullValue => matches!(wire, Wire::Varint(_)),
            KindPlan::String | KindPlan::Timestamp | KindPlan::Message(_) => matches!(wire, Wire::Bytes(_)),
            KindPlan::Unsupported => false,
        }
    }

    /// Whether repeated values of this kind may come packed.
    fn packable(self) -> bool {
        matches!(
            self,
            KindPlan::Int32
                | KindPlan::Int64
                | KindPlan::Uint32
                | KindPlan::Bool
                | KindPlan::Enum(_)
                | KindPlan::NullValue
        )
    }

    /// Whether a second occurrence of a singular field would be merged by proto.
    fn merges(self) -> bool {
        matches!(self, KindPlan::Timestamp | KindPlan::Message(_))
    }
}

#[derive(Debug)]
struct FieldPlan {
    number: u32,
    json_name: String,
    kind: KindPlan,
    list: bool,
    presence: bool,
}

#[derive(Debug, Default)]
struct MessagePlan {
    fields: Vec<FieldPlan>,
    /// Whether the reader reads this message at all (no maps, no real oneofs, not a
    /// well-known type).
    supported: bool,
}

impl MessagePlan {
    fn field(&self, number: u32) -> Option<usize> {
        self.fields.iter().position(|f| f.number == number)
    }
}

#[derive(Debug)]
struct EnumPlan {
    values: Vec<(i32, String)>,
    /// The name of the default (first) value.
    default: String,
}

impl EnumPlan {
    fn name(&self, number: i32) -> Option<&str> {
        self.values.iter().find(|(n, _)| *n == number).map(|(_, name)| name.as_str())
    }
}

/// The plans of every message the reader reads, made once from the descriptors.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    messages: Vec<MessagePlan>,
    enums: Vec<EnumPlan>,
    by_name: HashMap<String, usize>,
    enums_by_name: HashMap<String, usize>,
}

/// A message plan's index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanId(usize);

impl Plans {
    /// The plan of `desc` (and of every message it reaches), made on first use.
    pub(crate) fn add(&mut self, desc: &MessageDescriptor) -> PlanId {
        if let Some(i) = self.by_name.get(desc.full_name()) {
            return PlanId(*i);
        }
        let i = self.messages.len();
        self.by_name.insert(desc.full_name().to_string(), i);
        self.messages.push(MessagePlan::default());
        let supported = !desc.full_name().starts_with("google.protobuf.")
            && !desc.oneofs().any(|o| !o.is_synthetic())
            && !desc.fields().any(|f| f.is_map());
        let fields = desc
            .fields()
            .map(|f| FieldPlan {
                number: f.number(),
                json_name: f.json_name().to_string(),
                kind: self.kind(&f.kind()),
                list: f.is_list(),
                presence: f.supports_presence(),
            })
            .collect();
        self.messages[i] = MessagePlan { fields, supported };
        PlanId(i)
    }

    fn kind(&mut self, kind: &Kind) -> KindPlan {
        match kind {
            Kind::Int32 => KindPlan::Int32,
            Kind::Int64 => KindPlan::Int64,
            Kind::Uint32 => KindPlan::Uint32,
            Kind::Bool => KindPlan::Bool,
            Kind::String => KindPlan::String,
            Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => KindPlan::NullValue,
            Kind::Enum(e) => {
                if let Some(i) = self.enums_by_name.get(e.full_name()) {
                    return KindPlan::Enum(*i);
                }
                let d = e.default_value();
                let default = e.get_value(d.number()).unwrap_or(d).name().to_string();
                let values = e.values().map(|v| (v.number(), v.name().to_string())).collect();
                self.enums.push(EnumPlan { values, default });
                self.enums_by_name.insert(e.full_name().to_string(), self.enums.len() - 1);
                KindPlan::Enum(self.enums.len() - 1)
            }
            Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => KindPlan::Timestamp,
            Kind::Message(m) => KindPlan::Message(self.add(m).0),
            _ => KindPlan::Unsupported,
        }
    }

    /// A deserializer of message `plan` encoded in `bytes`, at nesting `depth` (1 for a
    /// payload or the actor).
    pub(crate) fn message<'p, 'de>(&'p self, plan: PlanId, bytes: &'de [u8], depth: u32) -> MessageDe<'p, 'de> {
        MessageDe { plans: self, plan: plan.0, bytes, depth }
    }

    /// A deserializer of an event family's value: the event type as the tag of an externally
    /// tagged enum, the payload message as its content (what `DomainEvent::from_payload`
    /// presents from JSON).
    pub(crate) fn event<'p, 'de>(&'p self, event_type: &'p str, plan: PlanId, bytes: &'de [u8]) -> Tagged<'p, 'de> {
        Tagged { event_type, body: self.message(plan, bytes, 1) }
    }
}

/// What a field holds in one message: nothing, its (last) value, or a list's values.
enum Slot<'de> {
    Empty,
    One(Wire<'de>),
    Many(Vec<Wire<'de>>),
}

/// A value to present.
enum Val<'de> {
    /// A value on the wire.
    Wire(KindPlan, Wire<'de>),
    /// An absent field without presence: its default.
    Default(KindPlan),
    /// A repeated field's values.
    List(KindPlan, Vec<Wire<'de>>),
}

/// An encoded message (see the module docs).
pub(crate) struct MessageDe<'p, 'de> {
    plans: &'p Plans,
    plan: usize,
    bytes: &'de [u8],
    depth: u32,
}

impl<'p, 'de> MessageDe<'p, 'de> {
    /// The message's fields read into one slot per field of its plan, as the JSON reader reads
    /// them (unknown fields skipped; the last value of a singular field kept; packed lists
    /// unpacked).
    fn fields(&self) -> Result<(&'p MessagePlan, Vec<Slot<'de>>), Error> {
        let plan = &self.plans.messages[self.plan];
        if self.depth > MAX_DEPTH || !plan.supported {
            return Err(declined());
        }
        let mut slots: Vec<Slot<'de>> = plan.fields.iter().map(|_| Slot::Empty).collect();
        for field in read::fields(self.bytes) {
            let (number, wire, _) = field.map_err(|_| declined())?;
            let Some(i) = plan.field(number) else { continue };
            let f = &plan.fields[i];
            if f.list {
                if !matches!(slots[i], Slot::Many(_)) {
                    slots[i] = Slot::Many(Vec::new());
                }
                if let Slot::Many(items) = &mut slots[i] {
                    push_list(f.kind, wire, items)?;
                }
            } else {
                if !f.kind.fits(wire) {
                    return Err(declined());
                }
                match std::mem::replace(&mut slots[i], Slot::One(wire)) {
                    Slot::One(_) if f.kind.merges() => return Err(declined()),
                    // The JSON reader reads an overwritten value too: its text must be text.
                    Slot::One(Wire::Bytes(b)) if matches!(f.kind, KindPlan::String) => {
                        std::str::from_utf8(b).map_err(|_| declined())?;
                    }
                    _ => {}
                }
            }
        }
        Ok((plan, slots))
    }

    fn visit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let (plan, slots) = self.fields()?;
        let mut access = Fields { plans: self.plans, plan, slots, next: 0, pending: None, depth: self.depth };
        let value = visitor.visit_map(&mut access)?;
        // As serde_json's map of a `Value`: every entry must have been taken.
        if access.pending.is_some() || access.take_next().is_some() {
            return Err(declined());
        }
        Ok(value)
    }
}

fn push_list<'de>(kind: KindPlan, wire: Wire<'de>, items: &mut Vec<Wire<'de>>) -> Result<(), Error> {
    match wire {
        Wire::Bytes(packed) if kind.packable() => {
            let mut at = 0usize;
            while at < packed.len() {
                items.push(Wire::Varint(read::varint(packed, &mut at).map_err(|_| declined())?));
            }
            Ok(())
        }
        wire if kind.fits(wire) => {
            items.push(wire);
            Ok(())
        }
        _ => Err(declined()),
    }
}

impl<'de> Deserializer<'de> for MessageDe<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        // JSON would give an object here, which is an enum only with one entry: not ours to say.
        Err(declined())
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A message's fields in descriptor order, as a map of JSON names to values.
struct Fields<'p, 'de> {
    plans: &'p Plans,
    plan: &'p MessagePlan,
    slots: Vec<Slot<'de>>,
    next: usize,
    pending: Option<Val<'de>>,
    depth: u32,
}

impl<'p, 'de> Fields<'p, 'de> {
    /// The next field the JSON has, and its value.
    fn take_next(&mut self) -> Option<(&'p str, Val<'de>)> {
        while self.next < self.plan.fields.len() {
            let i = self.next;
            self.next += 1;
            let f = &self.plan.fields[i];
            let val = match std::mem::replace(&mut self.slots[i], Slot::Empty) {
                Slot::One(wire) => Val::Wire(f.kind, wire),
                Slot::Many(items) => Val::List(f.kind, items),
                Slot::Empty if f.list => Val::List(f.kind, Vec::new()),
                Slot::Empty if !f.presence => Val::Default(f.kind),
                Slot::Empty => continue,
            };
            return Some((f.json_name.as_str(), val));
        }
        None
    }
}

impl<'de> MapAccess<'de> for Fields<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((name, val)) = self.take_next() else { return Ok(None) };
        self.pending = Some(val);
        seed.deserialize(StrDeserializer::<Error>::new(name)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let val = self.pending.take().ok_or_else(declined)?;
        seed.deserialize(ValueDe { plans: self.plans, val, depth: self.depth })
    }
}

/// One field's value.
struct ValueDe<'p, 'de> {
    plans: &'p Plans,
    val: Val<'de>,
    depth: u32,
}

/// A signed integer as `serde_json` visits a number it holds.
fn number<'de, V: Visitor<'de>>(v: i64, visitor: V) -> Result<V::Value, Error> {
    if v >= 0 { visitor.visit_u64(v as u64) } else { visitor.visit_i64(v) }
}

impl<'de> ValueDe<'_, 'de> {
    fn is_null(&self) -> bool {
        matches!(self.val, Val::Wire(KindPlan::NullValue, _) | Val::Default(KindPlan::NullValue))
    }
}

impl<'de> Deserializer<'de> for ValueDe<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let plans = self.plans;
        match self.val {
            Val::Wire(kind, wire) => match (kind, wire) {
                (KindPlan::Int32, Wire::Varint(v)) => number(i64::from(v as i32), visitor),
                (KindPlan::Int64, Wire::Varint(v)) => number(v as i64, visitor),
                (KindPlan::Uint32, Wire::Varint(v)) => visitor.visit_u64(u64::from(v as u32)),
                (KindPlan::Bool, Wire::Varint(v)) => visitor.visit_bool(v != 0),
                (KindPlan::String, Wire::Bytes(b)) => {
                    visitor.visit_borrowed_str(std::str::from_utf8(b).map_err(|_| declined())?)
                }
                (KindPlan::Enum(e), Wire::Varint(v)) => match plans.enums[e].name(v as i32) {
                    Some(name) => visitor.visit_str(name),
                    None => number(i64::from(v as i32), visitor),
                },
                (KindPlan::NullValue, Wire::Varint(_)) => visitor.visit_unit(),
                (KindPlan::Timestamp, Wire::Bytes(b)) => {
                    let (seconds, nanos) = read::timestamp_parts(b).map_err(|_| declined())?;
                    let t = DateTime::from_timestamp(seconds, nanos).ok_or_else(declined)?;
                    with_text(&t, |text| visitor.visit_str(text))
                }
                (KindPlan::Message(m), Wire::Bytes(b)) => {
                    MessageDe { plans, plan: m, bytes: b, depth: self.depth + 1 }.visit(visitor)
                }
                _ => Err(declined()),
            },
            Val::Default(kind) => match kind {
                KindPlan::Int32 | KindPlan::Int64 | KindPlan::Uint32 => visitor.visit_u64(0),
                KindPlan::Bool => visitor.visit_bool(false),
                KindPlan::String => visitor.visit_borrowed_str(""),
                KindPlan::Enum(e) => visitor.visit_str(&plans.enums[e].default),
                KindPlan::NullValue => visitor.visit_unit(),
                _ => Err(declined()),
            },
            Val::List(kind, items) => {
                let mut access = List { plans, kind, items: items.into_iter(), depth: self.depth };
                let value = visitor.visit_seq(&mut access)?;
                // As serde_json's sequence of a `Value`: every element must have been taken.
                if access.items.len() > 0 {
                    return Err(declined());
                }
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() { visitor.visit_none() } else { visitor.visit_some(self) }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        // JSON text is a unit variant's name; anything else is not ours to say.
        match self.val {
            Val::Wire(KindPlan::String, Wire::Bytes(b)) => {
                let text = std::str::from_utf8(b).map_err(|_| declined())?;
                visitor.visit_enum(BorrowedStrDeserializer::<Error>::new(text))
            }
            Val::Wire(KindPlan::Enum(e), Wire::Varint(v)) => match self.plans.enums[e].name(v as i32) {
                Some(name) => visitor.visit_enum(StrDeserializer::<Error>::new(name)),
                None => Err(declined()),
            },
            Val::Default(KindPlan::String) => visitor.visit_enum(BorrowedStrDeserializer::<Error>::new("")),
            Val::Default(KindPlan::Enum(e)) => {
                visitor.visit_enum(StrDeserializer::<Error>::new(&self.plans.enums[e].default))
            }
            _ => Err(declined()),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A repeated field's values.
struct List<'p, 'de> {
    plans: &'p Plans,
    kind: KindPlan,
    items: std::vec::IntoIter<Wire<'de>>,
    depth: u32,
}

impl<'de> SeqAccess<'de> for List<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(wire) => seed
                .deserialize(ValueDe { plans: self.plans, val: Val::Wire(self.kind, wire), depth: self.depth })
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An event family's value: the event type, then its payload.
pub(crate) struct Tagged<'p, 'de> {
    event_type: &'p str,
    body: MessageDe<'p, 'de>,
}

impl<'de> Deserializer<'de> for Tagged<'_, 'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl<'p, 'de> EnumAccess<'de> for Tagged<'p, 'de> {
    type Error = Error;
    type Variant = MessageDe<'p, 'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self::Variant), Error> {
        Ok((seed.deserialize(StrDeserializer::<Error>::new(self.event_type))?, self.body))
    }
}

impl<'de> VariantAccess<'de> for MessageDe<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Err(declined())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }
}
