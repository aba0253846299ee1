//! Rows written with `COPY … FROM STDIN` (text format): the way a rebuild writes a generation
//! ([`CopyRows::write_all`]) and a live batch writes its changed rows, through a staging table
//! ([`CopyRows::upsert`]).
//!
//! A row is any `Serialize` struct whose fields are named as the table's columns, and the
//! columns are named in the `COPY` statement from the first row, so their order in the struct
//! does not matter. Strings, numbers and booleans are written as text; `None` and JSON `null`
//! as SQL `NULL`; any other value (a struct, a map, a list) and every field wrapped in
//! [`AsJson`] as its JSON text, for `json`/`jsonb` columns.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use kefu_contract::{RFC3339_MAX, rfc3339};
use serde::{
    Serialize, Serializer,
    ser::{self, Impossible, SerializeMap, SerializeStruct},
};
use sqlx::PgConnection;

use crate::ProjectionError;

/// How much row text is sent to PostgreSQL at a time.
const CHUNK: usize = 4 << 20;

/// The name by which [`AsJson`] tells the row serializer to write its value as JSON.
const JSON_MARKER: &str = "kefu::copy::AsJson";

/// A field for a `json`/`jsonb` column, written as JSON text even where it is a plain string
/// or number (`"x"` stays a JSON string). Transparent to `serde_json`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AsJson<T>(pub T);

impl<T: Serialize> Serialize for AsJson<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(JSON_MARKER, &self.0)
    }
}

/// `serialize_with` for a timestamp column: the text chrono's own `Serialize` gives (RFC 3339
/// in UTC with `Z`, the fraction as short as it is exact: none, 3, 6 or 9 digits), written
/// digit by digit instead of through `fmt` (which was a sixth of a request read model's fold in
/// a rebuild, `perf` on `kefu-bench rebuild`).
pub(crate) fn time<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; RFC3339_MAX];
    match rfc3339(t, &mut buf) {
        Some(text) => serializer.serialize_str(text),
        None => t.serialize(serializer),
    }
}

/// [`time`] for a column that may be `NULL`.
pub(crate) fn opt_time<S: Serializer>(t: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
    struct Time<'a>(&'a DateTime<Utc>);
    impl Serialize for Time<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            time(self.0, serializer)
        }
    }
    match t {
        Some(t) => serializer.serialize_some(&Time(t)),
        None => serializer.serialize_none(),
    }
}

/// Rows taken out of a [`CopyRows`] to be sent by a `COPY` kept open across runs.
pub struct Streamed {
    /// The `COPY … FROM STDIN` statement (the same for every run of one table).
    pub(crate) statement: String,
    /// The rows in `COPY` text format.
    pub(crate) text: Vec<u8>,
}

/// Rows of one table in `COPY` text format, sent in chunks.
pub(crate) struct CopyRows {
    table: &'static str,
    /// Where the rows go when not into `table` itself (a staging table).
    into: Option<String>,
    columns: Option<Vec<String>>,
    buf: Vec<u8>,
    /// Rows added (for the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    rows: u64,
}

impl CopyRows {
    /// Rows for `table` (a table of the generation's schema, on the search path).
    pub(crate) fn new(table: &'static str) -> Self {
        CopyRows { table, into: None, columns: None, buf: Vec::new(), rows: 0 }
    }

    /// Adds a row.
    pub(crate) fn push<T: Serialize>(&mut self, row: &T) -> Result<(), ProjectionError> {
        let start = self.buf.len();
        let names = if self.columns.is_none() { Some(Vec::new()) } else { None };
        let mut ser = RowSerializer { out: &mut self.buf, names, fields: 0 };
        if let Err(e) = row.serialize(&mut ser) {
            self.buf.truncate(start);
            return Err(ProjectionError::Other(format!("a {} row cannot be written: {e}", self.table)));
        }
        let RowSerializer { names, fields, .. } = ser;
        match &self.columns {
            None => self.columns = names,
            Some(columns) if columns.len() == fields => {}
            Some(columns) => {
                self.buf.truncate(start);
                return Err(ProjectionError::Other(format!(
                    "a {} row has {fields} fields, the first had {}",
                    self.table,
                    columns.len()
                )));
            }
        }
        self.buf.push(b'\n');
        self.rows += 1;
        Ok(())
    }

    /// Adds `rows` and sends everything in one `COPY` statement, a chunk at a time as the rows
    /// are serialised (PostgreSQL loads one chunk while the next is made).
    pub(crate) async fn write_all<T: Serialize, I: Iterator<Item = T> + Send>(
        &mut self,
        conn: &mut PgConnection,
        mut rows: I,
    ) -> Result<(), ProjectionError> {
        let mut more = self.fill(&mut rows)?;
        let Some(statement) = self.statement() else { return Ok(()) };
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut copy = conn.copy_in_raw(&statement).await?;
        let sent = async {
            loop {
                copy.send(self.buf.as_slice()).await?;
                self.buf.clear();
                if !more {
                    return Ok(());
                }
                more = self.fill(&mut rows)?;
            }
        }
        .await;
        match sent {
            Ok(()) => {
                copy.finish().await?;
                Ok(())
            }
            Err(e) => {
                let _ = copy.abort("kefu could not send the rows").await;
                self.buf.clear();
                Err(e)
            }
        }
    }

    /// What has been added, taken out for a `COPY` kept open elsewhere (a rebuild streams the
    /// rows that are final as they are made, beside the fold): the statement and the rows'
    /// text; `None` when nothing was added since the last time.
    pub(crate) fn take(&mut self) -> Option<Streamed> {
        let statement = self.statement()?;
        if self.buf.is_empty() {
            return None;
        }
        Some(Streamed { statement, text: std::mem::take(&mut self.buf) })
    }

    /// The `COPY` statement, once the first row has named the columns. Straight into the table
    /// it is a rebuild's load, into a table emptied in the same transaction (`bulk`), so the
    /// rows are written frozen (`FREEZE`: PostgreSQL refuses it anywhere else); into a staging
    /// table it is a live batch's.
    fn statement(&self) -> Option<String> {
        let columns = self.columns.as_ref()?;
        Some(match &self.into {
            Some(stage) => format!("COPY {stage} ({}) FROM STDIN", columns.join(", ")),
            None => format!("COPY {} ({}) FROM STDIN WITH (FREEZE)", self.table, columns.join(", ")),
        })
    }

    /// Sends what has been added (one `COPY` statement).
    pub(crate) async fn send(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.write_all(conn, std::iter::empty::<()>()).await
    }

    /// Writes `rows` into the table the way a live batch does: `COPY` into a staging table of
    /// the same layout, then one `INSERT … SELECT … FROM <stage> <tail>`, where `tail` is an
    /// `ON CONFLICT` clause, an `ORDER BY` or empty. Nothing when there are no rows. Parsing
    /// rows as `COPY` text costs PostgreSQL a fraction of `json_populate_recordset`, which
    /// walks every nested JSON value token by token (a request's 2.5 kB aggregate took ~100 µs
    /// a row; ADR 0018).
    ///
    /// The staging table is temporary, made once per connection (`LIKE` the table, so its
    /// layout is the one this binary's schema gives every generation) and emptied at every
    /// commit; it is emptied before use too, for a second batch in the same transaction.
    pub(crate) async fn upsert<T: Serialize, I: Iterator<Item = T> + Send>(
        mut self,
        conn: &mut PgConnection,
        mut rows: I,
        tail: &str,
    ) -> Result<(), ProjectionError> {
        let table = self.table;
        let Some(first) = rows.next() else { return Ok(()) };
        self.push(&first)?;
        let stage = format!("_stage_{table}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET LOCAL client_min_messages = warning; \
             CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS INCLUDING COMPRESSION) \
               ON COMMIT DELETE ROWS; \
             RESET client_min_messages; \
             DELETE FROM {stage}"
        )))
        .execute(&mut *conn)
        .await?;
        self.into = Some(stage.clone());
        self.write_all(conn, rows).await?;
        let columns = self.columns.as_deref().unwrap_or_default().join(", ");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} {tail}"
        )))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Adds rows until a chunk is full; whether rows remain.
    fn fill<T: Serialize>(&mut self, rows: &mut impl Iterator<Item = T>) -> Result<bool, ProjectionError> {
        while self.buf.len() < CHUNK {
            match rows.next() {
                Some(row) => self.push(&row)?,
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

#[derive(Debug)]
struct CopyError(String);

impl Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CopyError {}

impl ser::Error for CopyError {
    fn custom<T: Display>(msg: T) -> Self {
        CopyError(msg.to_string())
    }
}

/// A value is not a plain one: write it as JSON.
fn compound() -> CopyError {
    CopyError(COMPOUND.into())
}

const COMPOUND: &str = "\u{0}compound";

/// `Serializer` methods that refuse their kind of value with `$err()`: every plain value
/// (`scalars`), or every compound one but structs and maps (`compounds`).
macro_rules! refuse {
    ($err:ident; scalars) => {
        refuse!(@plain $err; serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
            serialize_f32: f32, serialize_f64: f64, serialize_char: char, serialize_str: &str,
            serialize_bytes: &[u8], serialize_unit_struct: &'static str);
        fn serialize_none(self) -> Result<(), CopyError> {
            Err($err())
        }
        fn serialize_unit(self) -> Result<(), CopyError> {
            Err($err())
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), CopyError> {
            Err($err())
        }
        fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), CopyError> {
            Err($err())
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _: &'static str, _: &T) -> Result<(), CopyError> {
            Err($err())
        }
    };
    (@plain $err:ident; $($method:ident: $ty:ty),*) => {
        $(fn $method(self, _: $ty) -> Result<(), CopyError> {
            Err($err())
        })*
    };
    ($err:ident; compounds) => {
        fn serialize_newtype_variant<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<(), CopyError> {
            Err($err())
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CopyError> {
            Err($err())
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CopyError> {
            Err($err())
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, CopyError> {
            Err($err())
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, CopyError> {
            Err($err())
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, CopyError> {
            Err($err())
        }
    };
}

struct RowSerializer<'b> {
    out: &'b mut Vec<u8>,
    /// The columns, recorded from the first row.
    names: Option<Vec<String>>,
    fields: usize,
}

impl RowSerializer<'_> {
    fn field<T: ?Sized + Serialize>(&mut self, key: &str, value: &T) -> Result<(), CopyError> {
        if self.fields > 0 {
            self.out.push(b'\t');
        }
        self.fields += 1;
        if let Some(names) = &mut self.names {
            names.push(key.to_string());
        }
        let start = self.out.len();
        match value.serialize(FieldSerializer { out: self.out }) {
            Ok(()) => Ok(()),
            Err(e) if e.0 == COMPOUND => {
                self.out.truncate(start);
                json_field(self.out, value)
            }
            Err(e) => Err(CopyError(format!("{key}: {e}"))),
        }
    }
}

fn not_a_struct() -> CopyError {
    CopyError("a row must be a struct named by its columns".into())
}

impl<'r, 'b> Serializer for &'r mut RowSerializer<'b> {
    type Ok = ();
    type Error = CopyError;
    type SerializeSeq = Impossible<(), CopyError>;
    type SerializeTuple = Impossible<(), CopyError>;
    type SerializeTupleStruct = Impossible<(), CopyError>;
    type SerializeTupleVariant = Impossible<(), CopyError>;
    type SerializeMap = MapRow<'r, 'b>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), CopyError>;

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CopyError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CopyError> {
        Ok(MapRow { row: self, key: None })
    }
    refuse!(not_a_struct; scalars);
    refuse!(not_a_struct; compounds);
}

impl<'r, 'b> SerializeStruct for &'r mut RowSerializer<'b> {
    type Ok = ();
    type Error = CopyError;

    fn serialize_field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), CopyError> {
        self.field(key, value)
    }

    fn end(self) -> Result<(), CopyError> {
        Ok(())
    }
}

/// A struct with a `#[serde(flatten)]` field serializes as a map of its fields.
struct MapRow<'r, 'b> {
    row: &'r mut RowSerializer<'b>,
    key: Option<String>,
}

impl SerializeMap for MapRow<'_, '_> {
    type Ok = ();
    type Error = CopyError;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), CopyError> {
        match serde_json::to_value(key) {
            Ok(serde_json::Value::String(k)) => {
                self.key = Some(k);
                Ok(())
            }
            _ => Err(not_a_struct()),
        }
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), CopyError> {
        let key = self.key.take().ok_or_else(not_a_struct)?;
        self.row.field(&key, value)
    }

    fn end(self) -> Result<(), CopyError> {
        Ok(())
    }
}

/// A value as JSON text, escaped for `COPY`; JSON `null` as SQL `NULL`.
fn json_field<T: ?Sized + Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), CopyError> {
    let start = out.len();
    // Written whole, then escaped once: serde_json writes in many small pieces.
    serde_json::to_writer(&mut *out, value).map_err(|e| CopyError(e.to_string()))?;
    escape_tail(out, start);
    if &out[start..] == b"null" {
        out.truncate(start);
        out.extend_from_slice(b"\\N");
    }
    Ok(())
}

/// The escape of a byte `COPY`'s text format gives meaning to: backslash, newline, carriage
/// return, tab.
fn escape_of(b: u8) -> Option<&'static [u8; 2]> {
    match b {
        b'\\' => Some(b"\\\\"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\t' => Some(b"\\t"),
        _ => None,
    }
}

/// Escapes, in place, what was appended to `out` from `start` on.
fn escape_tail(out: &mut Vec<u8>, start: usize) {
    let specials = out[start..].iter().filter(|b| escape_of(**b).is_some()).count();
    if specials == 0 {
        return;
    }
    // Moved back to front into the grown buffer: each byte is copied once.
    let old_end = out.len();
    out.resize(old_end + specials, 0);
    let mut to = out.len();
    for from in (start..old_end).rev() {
        let b = out[from];
        match escape_of(b) {
            Some(e) => {
                to -= 2;
                out[to..to + 2].copy_from_slice(e);
            }
            None => {
                to -= 1;
                out[to] = b;
            }
        }
    }
    debug_assert_eq!(to, start);
}

fn escape_into(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    out.extend_from_slice(data);
    escape_tail(out, start);
}

/// One column's value: plain values as text; compound ones decline (and are written as JSON).
struct FieldSerializer<'b> {
    out: &'b mut Vec<u8>,
}

impl FieldSerializer<'_> {
    fn display(self, v: impl Display) -> Result<(), CopyError> {
        use std::io::Write;
        let start = self.out.len();
        write!(self.out, "{v}").map_err(|e| CopyError(e.to_string()))?;
        escape_tail(self.out, start);
        Ok(())
    }
}

impl<'b> Serializer for FieldSerializer<'b> {
    type Ok = ();
    type Error = CopyError;
    type SerializeSeq = Impossible<(), CopyError>;
    type SerializeTuple = Impossible<(), CopyError>;
    type SerializeTupleStruct = Impossible<(), CopyError>;
    type SerializeTupleVariant = Impossible<(), CopyError>;
    type SerializeMap = Impossible<(), CopyError>;
    type SerializeStruct = Impossible<(), CopyError>;
    type SerializeStructVariant = Impossible<(), CopyError>;

    fn serialize_bool(self, v: bool) -> Result<(), CopyError> {
        self.out.push(if v { b't' } else { b'f' });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), CopyError> {
        // As serde_json writes it (the same text as in the field's JSON form).
        json_field(self.out, &v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), CopyError> {
        json_field(self.out, &v)
    }
    fn serialize_char(self, v: char) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_str(self, v: &str) -> Result<(), CopyError> {
        escape_into(self.out, v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), CopyError> {
        Err(compound())
    }
    fn serialize_none(self) -> Result<(), CopyError> {
        self.out.extend_from_slice(b"\\N");
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, v: &T) -> Result<(), CopyError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CopyError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CopyError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), CopyError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, v: &T) -> Result<(), CopyError> {
        if name == JSON_MARKER { json_field(self.out, v) } else { v.serialize(self) }
    }
    // Written in place (serde's default makes a `String` of every value first).
    fn collect_str<T: ?Sized + Display>(self, v: &T) -> Result<(), CopyError> {
        self.display(v)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CopyError> {
        Err(compound())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, CopyError> {
        Err(compound())
    }
    refuse!(compound; compounds);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Row<'a> {
        id: i64,
        name: &'a str,
        missing: Option<&'a str>,
        flag: bool,
        ratio: f64,
        doc: serde_json::Value,
        maybe_doc: Option<serde_json::Value>,
        as_json: AsJson<&'a str>,
        json_null: AsJson<Option<i32>>,
    }

    fn text(row: &Row<'_>) -> String {
        let mut rows = CopyRows::new("t");
        rows.push(row).unwrap();
        assert_eq!(
            rows.columns.as_ref().unwrap().iter().map(String::as_str).collect::<Vec<_>>(),
            ["id", "name", "missing", "flag", "ratio", "doc", "maybe_doc", "as_json", "json_null"]
        );
        String::from_utf8(rows.buf).unwrap()
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        use chrono::{Datelike, SecondsFormat, TimeZone, Timelike};
        #[derive(Serialize)]
        struct Times {
            #[serde(serialize_with = "time")]
            at: DateTime<Utc>,
            #[serde(serialize_with = "opt_time")]
            maybe: Option<DateTime<Utc>>,
            #[serde(serialize_with = "opt_time")]
            never: Option<DateTime<Utc>>,
        }
        let mut cases: Vec<DateTime<Utc>> = vec![
            Utc.with_ymd_and_hms(2026, 12, 7, 20, 56, 16).unwrap(),
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            DateTime::from_timestamp(0, 0).unwrap(),
        ];
        // Every fraction width: whole, milli, micro, nano; and a leap second.
        let base = DateTime::from_timestamp(1_764_000_059, 0).unwrap();
        for nanos in [1, 10, 999, 1_000, 10_000, 123_456_000, 123_000_000, 100_000_000, 999_999_999, 1_500_000_000] {
            cases.push(DateTime::from_timestamp(base.timestamp(), nanos).unwrap());
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 253_402_300_799) as i64 - 62_135_596_800 / 2;
            let nanos = match seed % 4 {
                0 => 0,
                1 => (seed >> 8) as u32 % 1_000 * 1_000_000,
                2 => (seed >> 8) as u32 % 1_000_000 * 1_000,
                _ => (seed >> 8) as u32 % 1_000_000_000,
            };
            cases.push(DateTime::from_timestamp(secs, nanos).unwrap());
        }
        for t in cases {
            let expected = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(expected), "chrono's serde");
            let mut buf = [0u8; RFC3339_MAX];
            if let Some(fast) = rfc3339(&t, &mut buf) {
                assert_eq!(fast, expected);
            } else {
                assert!(!(0..=9999).contains(&t.year()) || t.nanosecond() >= 1_000_000_000, "{expected}");
            }
            let mut rows = CopyRows::new("t");
            rows.push(&Times { at: t, maybe: Some(t), never: None }).unwrap();
            assert_eq!(String::from_utf8(rows.buf).unwrap(), format!("{expected}\t{expected}\t\\N\n"));
        }
    }

    #[test]
    fn plain_values_are_text_compound_ones_json_and_nulls_null() {
        let row = Row {
            id: -7,
            name: "a\tb\nc\\d\re",
            missing: None,
            flag: true,
            ratio: 0.1,
            doc: json!({"k": "line\nbreak", "path": "C:\\x"}),
            maybe_doc: Some(serde_json::Value::Null),
            as_json: AsJson("quoted"),
            json_null: AsJson(None),
        };
        assert_eq!(
            text(&row),
            "-7\ta\\tb\\nc\\\\d\\re\t\\N\tt\t0.1\t{\"k\":\"line\\\\nbreak\",\"path\":\"C:\\\\\\\\x\"}\t\\N\t\"quoted\"\t\\N\n"
        );
    }

    /// Escaping in place leaves what came before alone and escapes every special byte of
    /// the tail, wherever it is.
    #[test]
    fn tails_are_escaped_in_place() {
        let naive = |data: &[u8]| -> Vec<u8> {
            data.iter().flat_map(|b| escape_of(*b).map(|e| e.to_vec()).unwrap_or_else(|| vec![*b])).collect()
        };
        let tails: [&[u8]; 6] = [b"", b"plain", b"\\", b"\\\n\r\t", b"a\tb\nc\\d\re\\", "\u{7f}\\é\n".as_bytes()];
        for tail in tails {
            let prefix = b"kept\t";
            let mut out = prefix.to_vec();
            out.extend_from_slice(tail);
            escape_tail(&mut out, prefix.len());
            let mut expected = prefix.to_vec();
            expected.extend(naive(tail));
            assert_eq!(out, expected, "{tail:?}");
        }
    }

    #[test]
    fn flattened_fields_are_columns_too() {
        #[derive(Serialize)]
        struct Inner {
            a: i32,
            b: Option<String>,
        }
        #[derive(Serialize)]
        struct Outer {
            #[serde(flatten)]
            inner: Inner,
            c: Vec<u8>,
        }
        let mut rows = CopyRows::new("t");
        rows.push(&Outer { inner: Inner { a: 1, b: None }, c: vec![1, 2] }).unwrap();
        rows.push(&Outer { inner: Inner { a: 2, b: Some("x".into()) }, c: vec![] }).unwrap();
        assert_eq!(rows.columns.unwrap(), ["a", "b", "c"]);
        assert_eq!(String::from_utf8(rows.buf).unwrap(), "1\t\\N\t[1,2]\n2\tx\t[]\n");
    }

    #[test]
    fn a_row_must_be_a_struct_and_keep_its_fields() {
        let mut rows = CopyRows::new("t");
        assert!(rows.push(&42).is_err());
        assert!(rows.push(&"text").is_err());
        assert!(rows.buf.is_empty());
        assert_eq!(rows.rows, 0);
    }

    #[derive(Serialize)]
    struct Doc<'a> {
        id: i32,
        doc: serde_json::Value,
        note: Option<&'a str>,
    }

    async fn contents(conn: &mut PgConnection) -> Vec<(i32, serde_json::Value, Option<String>)> {
        sqlx::query_as::<_, (i32, sqlx::types::Json<serde_json::Value>, Option<String>)>(
            "SELECT id, doc, note FROM docs ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, doc, note)| (id, doc.0, note))
        .collect()
    }

    /// Upserts through the staging table: inserts and replaces as the conflict clause says,
    /// twice in one transaction (the second batch does not see the first one's staged rows),
    /// and again after a commit and after a rollback on the same connection.
    #[tokio::test]
    async fn upserts_go_through_a_staging_table_emptied_between_batches() {
        let db = kefu_testkit::fresh_database().await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::raw_sql("CREATE TABLE docs (id int PRIMARY KEY, doc json COMPRESSION lz4 NOT NULL, note text)")
            .execute(&mut *conn)
            .await
            .unwrap();
        let conflict = "ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc, note = EXCLUDED.note";
        let big = json!({"text": "工单".repeat(2000), "nested": {"list": [1, 2.5, null, "a\tb"]}});
        let row = |id, doc: &serde_json::Value, note| Doc { id, doc: doc.clone(), note };

        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        let first = [row(1, &big, Some("one")), row(2, &json!({"v": 2}), None)];
        CopyRows::new("docs").upsert(&mut conn, first.iter(), conflict).await.unwrap();
        let second = [row(2, &json!({"v": "two"}), Some("changed")), row(3, &json!([]), None)];
        CopyRows::new("docs").upsert(&mut conn, second.iter(), conflict).await.unwrap();
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await.unwrap();
        let expected = vec![
            (1, big.clone(), Some("one".to_string())),
            (2, json!({"v": "two"}), Some("changed".to_string())),
            (3, json!([]), None),
        ];
        assert_eq!(contents(&mut conn).await, expected);

        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        CopyRows::new("docs").upsert(&mut conn, [row(9, &json!(9), None)].iter(), conflict).await.unwrap();
        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
        assert_eq!(contents(&mut conn).await, expected, "a rolled-back batch leaves nothing");

        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        CopyRows::new("docs").upsert(&mut conn, [row(1, &json!(1), None)].iter(), conflict).await.unwrap();
        CopyRows::new("docs").upsert(&mut conn, std::iter::empty::<Doc<'_>>(), conflict).await.unwrap();
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await.unwrap();
        let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM _stage_docs").fetch_one(&mut *conn).await.unwrap();
        assert_eq!(staged, 0, "the staging table is empty after a commit");
        let now = contents(&mut conn).await;
        assert_eq!(now[0], (1, json!(1), None));
        assert_eq!(now[1..], expected[1..]);
    }

    /// A batch whose rows PostgreSQL refuses fails with its error and writes nothing.
    #[tokio::test]
    async fn a_refused_row_fails_the_upsert_and_writes_nothing() {
        let db = kefu_testkit::fresh_database().await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::raw_sql("CREATE TABLE docs (id int PRIMARY KEY CHECK (id > 0), doc json NOT NULL, note text)")
            .execute(&mut *conn)
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN").execute(&mut *conn).await.unwrap();
        let rows = [Doc { id: 1, doc: json!(1), note: None }, Doc { id: -1, doc: json!(2), note: None }];
        let err = CopyRows::new("docs").upsert(&mut conn, rows.iter(), "").await.unwrap_err();
        assert!(err.to_string().contains("docs_id_check"), "{err}");
        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.unwrap();
        assert!(contents(&mut conn).await.is_empty());
    }
}
