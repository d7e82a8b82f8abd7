//! PostgreSQL's binary `COPY` format: [`Decoder`] turns `COPY … FROM STDIN (FORMAT binary)`
//! straight into Arrow arrays of the table's column types, [`encode`] renders query results
//! for `COPY … TO STDOUT (FORMAT binary)`.
//!
//! A stream is the 11-byte signature `PGCOPY\n\377\r\n\0`, an int32 of flags (bit 16: rows
//! carry OIDs, rejected), an int32 header-extension length and that many bytes (skipped), one
//! tuple per row — an int16 field count, then per field an int32 length (-1: NULL) and the
//! value in its type's binary send format — and an int16 -1 trailer. Integers are big-endian.
//! As in PostgreSQL, a stream that ends on a tuple boundary without the trailer is accepted;
//! bytes after the trailer, or a stream ending inside a tuple, are errors.
//!
//! The format carries no type OIDs: each value is read as its column's type, as PostgreSQL
//! does. What a column takes:
//!
//! | column type | binary values accepted |
//! | --- | --- |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | `text`, `varchar`, `name`, `json`: UTF-8, validated; in a JSON column (`json: true`) also `jsonb` (its version byte 1 is dropped) |
//! | `Int16`, `Int32`, `Int64` | `int2`, `int4`, `int8`, told apart by length (2/4/8 bytes); a value that does not fit the column is an error |
//! | `Float32`, `Float64` | `float4`, `float8` by length (4/8 bytes); a `float8` into `Float32` only when exact |
//! | `Boolean` | `bool`: one byte, non-zero is true |
//! | `Date32` | `date`: int32 days since 2000-01-01 |
//! | `Timestamp(unit, tz)` | `timestamp`, `timestamptz`: int64 µs since 2000-01-01 UTC, converted to `unit` only when exact |
//! | `List(item)` | a one-dimensional array (or an empty one) whose element OID is one of the types `item` takes |
//!
//! Infinite dates and timestamps are errors, and so is a row of more than [`MAX_ROW_BYTES`]
//! (refused from its field lengths, before its bytes are held). Any error names the tuple
//! (PostgreSQL's "line") and, for a bad value, the column; nothing here panics on client input.
//!
//! `COPY … TO STDOUT (FORMAT binary)` sends each Arrow type as the PostgreSQL type a query's
//! row description names for it (arrow-pg's mapping: strings as `text`, `Date32` as `date`,
//! timestamps as `timestamp[tz]` in µs, decimals as `numeric`, lists as one-dimensional
//! arrays …): the common types by writers of their own, the rest (numeric, time, interval,
//! structs …) by arrow-pg's value encoder, as a binary result column carries them. A column
//! with no PostgreSQL type (a map, a list of lists) is refused with 0A000 before any row goes
//! out.

use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, LargeStringBuilder, ListArray, RecordBatch,
    RecordBatchOptions, StringBuilder, StringViewBuilder, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use bytes::BytesMut;
use datafusion_postgres::arrow_pg::datatypes::field_into_pg_type;
use datafusion_postgres::arrow_pg::encoder::{Encoder as LibraryEncoder, encode_value};
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::types::ToSqlText;
use postgres_types::{IsNull, ToSql};

use super::{Error, Result, SLICE_BYTES};
use crate::engine::schema::TableSchema;
use crate::error::SqlState;

/// The first bytes of every binary `COPY` stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and header-extension length.
const HEADER_BYTES: usize = 19;
/// A tuple (or header extension) longer than this is refused before its bytes are held.
pub const MAX_ROW_BYTES: usize = 64 << 20;
/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// PostgreSQL type OIDs: of array elements (checked against the column) and of what we send.
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const JSONB: u32 = 3802;
}

fn be_i16(buf: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(
        buf.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn be_i32(buf: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(
        buf.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Where a `COPY FROM` stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    /// The trailer was read: any further byte is an error.
    Done,
}

/// What the bytes at a tuple's start hold.
enum Scan {
    /// Not all of it has arrived yet.
    Incomplete,
    /// The end-of-data trailer (2 bytes).
    Trailer,
    /// A whole tuple ending at this offset; its fields are in `Decoder::fields`.
    Tuple(usize),
}

/// Decodes a binary `COPY FROM` stream, arriving in chunks of any size, into batches of the
/// target columns with the table's types, ready for [`crate::engine::ingest::coerce`] (which then
/// only adds the left-out columns and checks constraints).
#[derive(Debug)]
pub struct Decoder {
    names: Vec<String>,
    columns: Vec<Column>,
    schema: SchemaRef,
    state: State,
    /// Bytes of the header or of a tuple that has not fully arrived.
    pending: Vec<u8>,
    /// (offset, length) of each field of the tuple being decoded; length -1 is NULL.
    fields: Vec<(usize, i32)>,
    /// Tuples decoded so far; the next one is `tuples + 1` in error messages.
    tuples: usize,
    /// Rows and stream bytes in the builders, not yet made into a batch.
    rows: usize,
    bytes: usize,
}

impl Decoder {
    /// A decoder for `columns` of `table`, or 0A000 naming a column of a type it cannot decode.
    pub fn new(table: &TableSchema, columns: &[String]) -> Result<Decoder> {
        let mut builders = Vec::with_capacity(columns.len());
        let mut fields = Vec::with_capacity(columns.len());
        for name in columns {
            let data_type = table
                .index_of(name)
                .map(|i| table.schema.field(i).data_type().clone())
                .ok_or_else(|| Error::UnknownColumn {
                    table: table.name.clone(),
                    column: name.clone(),
                })?;
            let json = table.json_columns.contains(name);
            let column = Column::new(&data_type, json).ok_or_else(|| {
                Error::Unsupported(format!(
                    "FORMAT binary into column \"{name}\" of type {data_type}"
                ))
            })?;
            builders.push(column);
            // Nullable: NOT NULL is checked by `coerce`, with its own SQLSTATE.
            fields.push(Field::new(name, data_type, true));
        }
        Ok(Decoder {
            names: columns.to_vec(),
            columns: builders,
            schema: Arc::new(Schema::new(fields)),
            state: State::Header,
            pending: Vec::new(),
            fields: Vec::with_capacity(columns.len()),
            tuples: 0,
            rows: 0,
            bytes: 0,
        })
    }

    /// Takes the next bytes of the stream. Returns a batch once a few MiB of rows are decoded.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<RecordBatch>> {
        if data.is_empty() {
            return Ok(None);
        }
        if self.state == State::Done {
            return Err(self.after_trailer());
        }
        if self.pending.is_empty() {
            let used = self.decode(data)?;
            self.pending.extend_from_slice(&data[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(data);
            let used = self.decode(&pending)?;
            pending.drain(..used);
            self.pending = pending;
        }
        if self.bytes >= SLICE_BYTES {
            return self.batch().map(Some);
        }
        Ok(None)
    }

    /// The end of the stream: the remaining rows, or an error if it stopped inside the header
    /// or a tuple.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        match self.state {
            State::Header if self.pending.len() < SIGNATURE.len() => {
                return Err(Error::BadHeader(
                    "COPY file signature not recognized".into(),
                ));
            }
            State::Header => {
                return Err(Error::BadHeader(
                    "invalid COPY file header (the stream ends inside it)".into(),
                ));
            }
            State::Tuples if !self.pending.is_empty() => {
                return Err(Error::BadData {
                    line: self.tuples + 1,
                    message: "unexpected EOF in COPY data".into(),
                });
            }
            State::Tuples | State::Done => {}
        }
        if self.rows == 0 {
            return Ok(None);
        }
        self.batch().map(Some)
    }

    fn after_trailer(&self) -> Error {
        Error::BadData {
            line: self.tuples + 1,
            message: "received copy data after EOF marker".into(),
        }
    }

    /// Decodes the whole tuples at the start of `buf`; returns how many bytes they took.
    fn decode(&mut self, buf: &[u8]) -> Result<usize> {
        let mut pos = 0;
        if self.state == State::Header {
            let Some(end) = header_len(buf)? else {
                return Ok(0);
            };
            pos = end;
            self.state = State::Tuples;
        }
        while self.state == State::Tuples {
            match self.scan(buf, pos)? {
                Scan::Incomplete => break,
                Scan::Trailer => {
                    pos += 2;
                    self.state = State::Done;
                }
                Scan::Tuple(end) => {
                    self.tuples += 1;
                    self.append_tuple(buf)?;
                    self.rows += 1;
                    self.bytes += end - pos;
                    pos = end;
                }
            }
        }
        if self.state == State::Done && pos < buf.len() {
            return Err(self.after_trailer());
        }
        Ok(pos)
    }

    /// Finds the extent of the tuple starting at `start` and records its fields. Structural
    /// errors are found as soon as their bytes arrive, so they do not depend on how the
    /// stream was cut into chunks.
    fn scan(&mut self, buf: &[u8], start: usize) -> Result<Scan> {
        let Some(count) = be_i16(buf, start) else {
            return Ok(Scan::Incomplete);
        };
        if count == -1 {
            return Ok(Scan::Trailer);
        }
        let line = self.tuples + 1;
        if usize::try_from(count).ok() != Some(self.columns.len()) {
            return Err(Error::BadData {
                line,
                message: format!(
                    "row field count is {count}, expected {}",
                    self.columns.len()
                ),
            });
        }
        self.fields.clear();
        let mut at = start + 2;
        for _ in 0..self.columns.len() {
            let Some(len) = be_i32(buf, at) else {
                return Ok(Scan::Incomplete);
            };
            at += 4;
            self.fields.push((at, len));
            if len < -1 {
                return Err(Error::BadData {
                    line,
                    message: format!("invalid field size {len}"),
                });
            }
            at += usize::try_from(len).unwrap_or(0);
            if at - start > MAX_ROW_BYTES {
                return Err(Error::BadData {
                    line,
                    message: format!(
                        "a row of more than {} MiB; split the value",
                        MAX_ROW_BYTES >> 20
                    ),
                });
            }
            if at > buf.len() {
                return Ok(Scan::Incomplete);
            }
        }
        Ok(Scan::Tuple(at))
    }

    /// Appends the fields [`Decoder::scan`] found to the column builders.
    fn append_tuple(&mut self, buf: &[u8]) -> Result<()> {
        let line = self.tuples;
        for ((column, &(at, len)), name) in
            self.columns.iter_mut().zip(&self.fields).zip(&self.names)
        {
            let appended = match usize::try_from(len) {
                Err(_) => {
                    column.append_null();
                    Ok(())
                }
                Ok(len) => match buf.get(at..at + len) {
                    Some(value) => column.append(value),
                    None => Err(FieldError::new(
                        SqlState::BAD_COPY_FILE_FORMAT,
                        "unexpected EOF in COPY data",
                    )),
                },
            };
            appended.map_err(|e| Error::BadField {
                line,
                column: name.clone(),
                message: e.message,
                code: e.code,
            })?;
        }
        Ok(())
    }

    /// The rows decoded so far as one batch; the builders start over.
    fn batch(&mut self) -> Result<RecordBatch> {
        let arrays = self
            .columns
            .iter_mut()
            .map(Column::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )?;
        self.rows = 0;
        self.bytes = 0;
        Ok(batch)
    }
}

/// The length of the complete header at the start of `buf`, `None` while it is incomplete.
fn header_len(buf: &[u8]) -> Result<Option<usize>> {
    let known = buf.len().min(SIGNATURE.len());
    if buf[..known] != SIGNATURE[..known] {
        return Err(Error::BadHeader(
            "COPY file signature not recognized".into(),
        ));
    }
    let Some(flags) = be_i32(buf, SIGNATURE.len()) else {
        return Ok(None);
    };
    if flags & (1 << 16) != 0 {
        return Err(Error::BadHeader(
            "invalid COPY file header (WITH OIDS); rows with OIDs are not supported".into(),
        ));
    }
    if flags >> 17 != 0 {
        return Err(Error::BadHeader(
            "unrecognized critical flags in COPY file header".into(),
        ));
    }
    let Some(extension) = be_i32(buf, SIGNATURE.len() + 4) else {
        return Ok(None);
    };
    let extension = usize::try_from(extension)
        .map_err(|_| Error::BadHeader("invalid COPY file header (missing length)".into()))?;
    if extension > MAX_ROW_BYTES {
        return Err(Error::BadHeader(format!(
            "a header extension of {extension} bytes"
        )));
    }
    let end = HEADER_BYTES + extension;
    Ok((buf.len() >= end).then_some(end))
}

/// A builder for one column, and how a binary value becomes one of its values.
#[derive(Debug)]
enum Column {
    Utf8(StringBuilder, bool),
    LargeUtf8(LargeStringBuilder, bool),
    Utf8View(StringViewBuilder, bool),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    Date32(Date32Builder),
    /// Values in `unit` since the Unix epoch.
    Timestamp {
        unit: TimeUnit,
        tz: Option<Arc<str>>,
        values: Int64Builder,
    },
    List {
        item: FieldRef,
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        items: Box<Column>,
    },
}

impl Column {
    /// The builder for `data_type` (`json`: a JSON text column), `None` if it is not decoded.
    fn new(data_type: &DataType, json: bool) -> Option<Column> {
        Some(match data_type {
            DataType::Utf8 => Column::Utf8(StringBuilder::new(), json),
            DataType::LargeUtf8 => Column::LargeUtf8(LargeStringBuilder::new(), json),
            DataType::Utf8View => Column::Utf8View(StringViewBuilder::new(), json),
            DataType::Int16 => Column::Int16(Int16Builder::new()),
            DataType::Int32 => Column::Int32(Int32Builder::new()),
            DataType::Int64 => Column::Int64(Int64Builder::new()),
            DataType::Float32 => Column::Float32(Float32Builder::new()),
            DataType::Float64 => Column::Float64(Float64Builder::new()),
            DataType::Boolean => Column::Boolean(BooleanBuilder::new()),
            DataType::Date32 => Column::Date32(Date32Builder::new()),
            DataType::Timestamp(unit, tz) => Column::Timestamp {
                unit: *unit,
                tz: tz.clone(),
                values: Int64Builder::new(),
            },
            DataType::List(item) => {
                let items = Column::new(item.data_type(), json)?;
                if matches!(items, Column::List { .. }) {
                    return None;
                }
                Column::List {
                    item: item.clone(),
                    offsets: vec![0],
                    nulls: NullBufferBuilder::new(0),
                    items: Box::new(items),
                }
            }
            _ => return None,
        })
    }

    /// Whether an array element of type `oid` can be read as this column's values.
    fn takes_element(&self, element: u32) -> bool {
        use oid::*;
        match self {
            Column::Utf8(..) | Column::LargeUtf8(..) | Column::Utf8View(..) => matches!(
                element,
                TEXT | VARCHAR | BPCHAR | NAME | JSON | JSONB | UNKNOWN
            ),
            Column::Int16(_) | Column::Int32(_) | Column::Int64(_) => {
                matches!(element, INT2 | INT4 | INT8)
            }
            Column::Float32(_) | Column::Float64(_) => matches!(element, FLOAT4 | FLOAT8),
            Column::Boolean(_) => element == BOOL,
            Column::Date32(_) => element == DATE,
            Column::Timestamp { .. } => matches!(element, TIMESTAMP | TIMESTAMPTZ),
            Column::List { .. } => false,
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::Utf8(b, _) => b.append_null(),
            Column::LargeUtf8(b, _) => b.append_null(),
            Column::Utf8View(b, _) => b.append_null(),
            Column::Int16(b) => b.append_null(),
            Column::Int32(b) => b.append_null(),
            Column::Int64(b) => b.append_null(),
            Column::Float32(b) => b.append_null(),
            Column::Float64(b) => b.append_null(),
            Column::Boolean(b) => b.append_null(),
            Column::Date32(b) => b.append_null(),
            Column::Timestamp { values, .. } => values.append_null(),
            Column::List { offsets, nulls, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                nulls.append_null();
            }
        }
    }

    /// Appends the value whose binary form is `bytes`; the error says what is wrong with it.
    fn append(&mut self, bytes: &[u8]) -> std::result::Result<(), FieldError> {
        self.append_typed(bytes, None)
    }

    /// `element`: the OID of an array element (whose type is then known), `None` for a field.
    fn append_typed(
        &mut self,
        bytes: &[u8],
        element: Option<u32>,
    ) -> std::result::Result<(), FieldError> {
        match self {
            Column::Utf8(b, json) => b.append_value(text(bytes, *json, element)?),
            Column::LargeUtf8(b, json) => b.append_value(text(bytes, *json, element)?),
            Column::Utf8View(b, json) => b.append_value(text(bytes, *json, element)?),
            Column::Int16(b) => b.append_value(narrow(integer(bytes)?, "smallint")?),
            Column::Int32(b) => b.append_value(narrow(integer(bytes)?, "integer")?),
            Column::Int64(b) => b.append_value(integer(bytes)?),
            Column::Float32(b) => {
                let value = float(bytes)?;
                let narrowed = value as f32;
                if f64::from(narrowed) != value && !value.is_nan() {
                    return Err(FieldError::new(
                        OUT_OF_RANGE,
                        format!("float8 {value} does not fit a real exactly"),
                    ));
                }
                b.append_value(narrowed)
            }
            Column::Float64(b) => b.append_value(float(bytes)?),
            Column::Boolean(b) => match bytes {
                [byte] => b.append_value(*byte != 0),
                _ => return Err(length_error(bytes, "a boolean (1 byte)").into()),
            },
            Column::Date32(b) => {
                let days = fixed::<4>(bytes, "a date (4 bytes)").map(i32::from_be_bytes)?;
                if days == i32::MAX || days == i32::MIN {
                    return Err(FieldError::new(
                        DATETIME_RANGE,
                        "infinite dates are not supported",
                    ));
                }
                b.append_value(days.checked_add(PG_EPOCH_DAYS).ok_or_else(|| {
                    FieldError::new(
                        DATETIME_RANGE,
                        format!("date {days} days after 2000-01-01 out of range"),
                    )
                })?)
            }
            Column::Timestamp { unit, values, .. } => values.append_value(timestamp(bytes, *unit)?),
            Column::List {
                offsets,
                nulls,
                items,
                ..
            } => {
                let added = array(bytes, items)?;
                let end = offsets
                    .last()
                    .copied()
                    .unwrap_or(0)
                    .checked_add(added)
                    .ok_or("too many array elements in one batch")?;
                offsets.push(end);
                nulls.append_non_null();
            }
        }
        Ok(())
    }

    /// The values appended so far as an array; the builder starts over.
    fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match self {
            Column::Utf8(b, _) => Arc::new(b.finish()),
            Column::LargeUtf8(b, _) => Arc::new(b.finish()),
            Column::Utf8View(b, _) => Arc::new(b.finish()),
            Column::Int16(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Boolean(b) => Arc::new(b.finish()),
            Column::Date32(b) => Arc::new(b.finish()),
            Column::Timestamp { unit, tz, values } => {
                let (_, values, nulls) = values.finish().into_parts();
                let tz = tz.clone();
                match unit {
                    TimeUnit::Second => {
                        Arc::new(TimestampSecondArray::new(values, nulls).with_timezone_opt(tz))
                    }
                    TimeUnit::Millisecond => Arc::new(
                        TimestampMillisecondArray::new(values, nulls).with_timezone_opt(tz),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        TimestampMicrosecondArray::new(values, nulls).with_timezone_opt(tz),
                    ),
                    TimeUnit::Nanosecond => {
                        Arc::new(TimestampNanosecondArray::new(values, nulls).with_timezone_opt(tz))
                    }
                }
            }
            Column::List {
                item,
                offsets,
                nulls,
                items,
            } => {
                let offsets = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    items.finish()?,
                    nulls.finish(),
                )?)
            }
        })
    }
}

/// SQLSTATEs of a bad binary value, as PostgreSQL's input functions raise them.
const BAD_BINARY: SqlState = SqlState::INVALID_BINARY_REPRESENTATION;
const OUT_OF_RANGE: SqlState = SqlState::NUMERIC_VALUE_OUT_OF_RANGE;
const DATETIME_RANGE: SqlState = SqlState::DATETIME_FIELD_OVERFLOW;
const UNTRANSLATABLE: SqlState = SqlState::UNTRANSLATABLE_CHARACTER;
const DATATYPE_MISMATCH: SqlState = SqlState::DATATYPE_MISMATCH;
const NOT_SUPPORTED: SqlState = SqlState::FEATURE_NOT_SUPPORTED;

/// What is wrong with one binary value, and its SQLSTATE (`22P03` unless said otherwise).
#[derive(Debug)]
pub struct FieldError {
    pub code: SqlState,
    pub message: String,
}

impl FieldError {
    fn new(code: SqlState, message: impl Into<String>) -> Self {
        FieldError {
            code,
            message: message.into(),
        }
    }
}

impl From<String> for FieldError {
    fn from(message: String) -> Self {
        FieldError::new(BAD_BINARY, message)
    }
}

impl From<&str> for FieldError {
    fn from(message: &str) -> Self {
        FieldError::new(BAD_BINARY, message)
    }
}

fn length_error(bytes: &[u8], expected: &str) -> String {
    format!("{} bytes where {expected} was expected", bytes.len())
}

fn fixed<const N: usize>(bytes: &[u8], what: &str) -> std::result::Result<[u8; N], String> {
    bytes.try_into().map_err(|_| length_error(bytes, what))
}

/// UTF-8 text. A `jsonb` value (an array element of that type, or a value in a JSON column
/// starting with byte 1, which JSON text never does) loses its version byte.
fn text(bytes: &[u8], json: bool, element: Option<u32>) -> std::result::Result<&str, FieldError> {
    let bytes = match (element, bytes) {
        (Some(oid::JSONB), [1, rest @ ..]) => rest,
        (Some(oid::JSONB), _) => return Err("unsupported jsonb version number".into()),
        (None, [1, rest @ ..]) if json => rest,
        _ => bytes,
    };
    std::str::from_utf8(bytes)
        .map_err(|e| FieldError::new(UNTRANSLATABLE, format!("invalid UTF-8: {e}")))
}

/// An `int2`, `int4` or `int8`, by its length.
fn integer(bytes: &[u8]) -> std::result::Result<i64, String> {
    Ok(match bytes.len() {
        2 => i64::from(i16::from_be_bytes(fixed(bytes, "")?)),
        4 => i64::from(i32::from_be_bytes(fixed(bytes, "")?)),
        8 => i64::from_be_bytes(fixed(bytes, "")?),
        _ => {
            return Err(length_error(
                bytes,
                "an int2, int4 or int8 (2, 4 or 8 bytes)",
            ));
        }
    })
}

fn narrow<T: TryFrom<i64>>(value: i64, type_name: &str) -> std::result::Result<T, FieldError> {
    T::try_from(value).map_err(|_| {
        FieldError::new(
            OUT_OF_RANGE,
            format!("value {value} is out of range for type {type_name}"),
        )
    })
}

/// A `float4` or `float8`, by its length.
fn float(bytes: &[u8]) -> std::result::Result<f64, String> {
    Ok(match bytes.len() {
        4 => f64::from(f32::from_be_bytes(fixed(bytes, "")?)),
        8 => f64::from_be_bytes(fixed(bytes, "")?),
        _ => return Err(length_error(bytes, "a float4 or float8 (4 or 8 bytes)")),
    })
}

/// A `timestamp` / `timestamptz` as `unit` since the Unix epoch.
fn timestamp(bytes: &[u8], unit: TimeUnit) -> std::result::Result<i64, FieldError> {
    let value = i64::from_be_bytes(fixed(bytes, "a timestamp (8 bytes)")?);
    if value == i64::MAX || value == i64::MIN {
        return Err(FieldError::new(
            DATETIME_RANGE,
            "infinite timestamps are not supported",
        ));
    }
    let out_of_range = || {
        FieldError::new(
            DATETIME_RANGE,
            format!("timestamp {value} µs after 2000-01-01 is out of range"),
        )
    };
    let micros = value
        .checked_add(PG_EPOCH_MICROS)
        .ok_or_else(out_of_range)?;
    let exact = |per: i64| {
        if micros % per == 0 {
            Ok(micros / per)
        } else {
            Err(FieldError::from(format!(
                "timestamp has a finer precision than the column's {unit:?} unit"
            )))
        }
    };
    match unit {
        TimeUnit::Second => exact(1_000_000),
        TimeUnit::Millisecond => exact(1_000),
        TimeUnit::Microsecond => Ok(micros),
        TimeUnit::Nanosecond => micros.checked_mul(1_000).ok_or_else(out_of_range),
    }
}

/// Appends the elements of a binary array to `items`; returns how many.
fn array(bytes: &[u8], items: &mut Column) -> std::result::Result<i32, FieldError> {
    let word = |at: usize| be_i32(bytes, at).ok_or_else(|| "truncated array header".to_string());
    let dimensions = word(0)?;
    let flags = word(4)?;
    // The OID's bits, whatever their sign.
    let element = u32::from_be_bytes(word(8)?.to_be_bytes());
    if flags != 0 && flags != 1 {
        return Err(format!("invalid array flags {flags}").into());
    }
    if !items.takes_element(element) {
        return Err(FieldError::new(
            DATATYPE_MISMATCH,
            format!("array elements of type OID {element} do not fit the column"),
        ));
    }
    let mut at = 12;
    let count = match dimensions {
        0 => 0,
        1 => {
            let count = word(12)?;
            at = 20;
            usize::try_from(count).map_err(|_| format!("invalid array size {count}"))?
        }
        n if n > 1 => {
            return Err(FieldError::new(
                NOT_SUPPORTED,
                format!("a {n}-dimensional array; only one-dimensional arrays are supported"),
            ));
        }
        n => return Err(format!("invalid number of dimensions {n}").into()),
    };
    // Every element takes at least its 4-byte length: a count beyond that is a lie.
    if count > (bytes.len() - at.min(bytes.len())) / 4 {
        return Err(format!("an array of {count} elements in {} bytes", bytes.len()).into());
    }
    for _ in 0..count {
        let len = be_i32(bytes, at).ok_or("truncated array element")?;
        at += 4;
        match usize::try_from(len) {
            Err(_) if len == -1 => items.append_null(),
            Err(_) => return Err(format!("invalid array element size {len}").into()),
            Ok(len) => {
                let value = bytes.get(at..at + len).ok_or("truncated array element")?;
                items.append_typed(value, Some(element)).map_err(|e| {
                    FieldError::new(e.code, format!("array element: {}", e.message))
                })?;
                at += len;
            }
        }
    }
    if at != bytes.len() {
        return Err("incorrect binary data format in array".into());
    }
    i32::try_from(count).map_err(|_| FieldError::from("too many array elements"))
}

/// The header of a binary `COPY TO` stream: signature, no flags, no extension.
pub fn header() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out
}

/// The PostgreSQL type a value of `data_type` is sent as (`None`: not sendable in binary).
fn send_oid(data_type: &DataType) -> Option<u32> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => oid::TEXT,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => oid::BYTEA,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => oid::INT2,
        DataType::Int32 | DataType::UInt16 => oid::INT4,
        DataType::Int64 | DataType::UInt32 => oid::INT8,
        DataType::Float32 => oid::FLOAT4,
        DataType::Float64 => oid::FLOAT8,
        DataType::Boolean => oid::BOOL,
        DataType::Date32 => oid::DATE,
        DataType::Timestamp(_, None) => oid::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => oid::TIMESTAMPTZ,
        _ => return None,
    })
}

/// Checks that every column of `schema` can be sent in binary (0A000 naming the first that
/// cannot): the scalar types of [`send_oid`] and one-dimensional lists of them, and what
/// arrow-pg gives a PostgreSQL type ([`library_writer`]).
pub fn check_sendable(schema: &Schema) -> Result<()> {
    for field in schema.fields() {
        let sendable = match field.data_type() {
            DataType::List(item) | DataType::LargeList(item) => {
                send_oid(item.data_type()).is_some()
            }
            other => send_oid(other).is_some(),
        } || field_into_pg_type(field).is_ok();
        if !sendable {
            return Err(Error::Unsupported(format!(
                "TO STDOUT (FORMAT binary) of column \"{}\" of type {}",
                field.name(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// Each row of `batch` as one binary tuple (no header, no trailer). The columns must pass
/// [`check_sendable`].
pub fn encode(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let count = i16::try_from(batch.num_columns()).map_err(|_| {
        Error::Unsupported("TO STDOUT (FORMAT binary) of over 32767 columns".into())
    })?;
    let mut rows: Vec<Vec<u8>> = (0..batch.num_rows())
        .map(|_| count.to_be_bytes().to_vec())
        .collect();
    let schema = batch.schema();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let write = writer(column.as_ref())
            .or_else(|| library_writer(column, field))
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "TO STDOUT (FORMAT binary) of column \"{}\" of type {}",
                    field.name(),
                    field.data_type()
                ))
            })?;
        let nulls = column.logical_nulls();
        for (i, row) in rows.iter_mut().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                row.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                with_length(row, |out| write(i, out)).map_err(Error::Encode)?;
            }
        }
    }
    Ok(rows)
}

/// Writes a value's length, then the value `write` appends.
fn with_length(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> Written) -> Written {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out)?;
    let len = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A value written, or why it could not be (arrow-pg's words).
type Written = std::result::Result<(), String>;
type Writer<'a> = Box<dyn Fn(usize, &mut Vec<u8>) -> Written + 'a>;

/// A column of a type the writers of [`writer`] do not cover (numeric, time, interval, lists
/// of those, structs …), in the bytes arrow-pg gives a binary result column of the same type.
/// The common types keep their own writers: arrow-pg dispatches on the type and parses a
/// timestamp's zone for every value, which made a COPY of otel rows twice as slow
/// (`bench/ab_copy_out.sh`, BENCHMARKS.md).
fn library_writer<'a>(array: &'a ArrayRef, field: &'a FieldRef) -> Option<Writer<'a>> {
    let pg_type = field_into_pg_type(field).ok()?;
    let info = FieldInfo::new(
        field.name().clone(),
        None,
        None,
        pg_type,
        FieldFormat::Binary,
    );
    Some(Box::new(move |i, out| {
        let mut value = OneValue::default();
        encode_value(&mut value, array, i, field, &info).map_err(|e| e.to_string())?;
        if value.null {
            return Err(format!(
                "column \"{}\": a value arrow-pg sends as NULL",
                field.name()
            ));
        }
        out.extend_from_slice(&value.bytes);
        Ok(())
    }))
}

/// arrow-pg's encoder target for one value: its binary form, without a length.
#[derive(Default)]
struct OneValue {
    bytes: BytesMut,
    null: bool,
}

impl LibraryEncoder for OneValue {
    type Item = ();

    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let written = value
            .to_sql(pg_field.datatype(), &mut self.bytes)
            .map_err(PgWireError::ApiError)?;
        self.null = matches!(written, IsNull::Yes);
        Ok(())
    }

    fn take_row(&mut self) {}
}

/// How to write value `i` of `array` in binary (nulls are handled by the caller).
fn writer(array: &dyn Array) -> Option<Writer<'_>> {
    use arrow::datatypes::*;
    fn put<T: AsRef<[u8]>>(out: &mut Vec<u8>, bytes: T) -> Written {
        out.extend_from_slice(bytes.as_ref());
        Ok(())
    }
    Some(match array.data_type() {
        DataType::Null => Box::new(|_, _| Ok(())),
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            Box::new(move |i, out| put(out, a.value(i)))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            Box::new(move |i, out| put(out, a.value(i)))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            Box::new(move |i, out| put(out, a.value(i)))
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            Box::new(move |i, out| put(out, a.value(i)))
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            Box::new(move |i, out| put(out, a.value(i)))
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            Box::new(move |i, out| put(out, a.value(i)))
        }
        DataType::Int8 => {
            let a = array.as_primitive::<Int8Type>();
            Box::new(move |i, out| put(out, i16::from(a.value(i)).to_be_bytes()))
        }
        DataType::UInt8 => {
            let a = array.as_primitive::<UInt8Type>();
            Box::new(move |i, out| put(out, i16::from(a.value(i)).to_be_bytes()))
        }
        DataType::Int16 => {
            let a = array.as_primitive::<Int16Type>();
            Box::new(move |i, out| put(out, a.value(i).to_be_bytes()))
        }
        DataType::UInt16 => {
            let a = array.as_primitive::<UInt16Type>();
            Box::new(move |i, out| put(out, i32::from(a.value(i)).to_be_bytes()))
        }
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            Box::new(move |i, out| put(out, a.value(i).to_be_bytes()))
        }
        DataType::UInt32 => {
            let a = array.as_primitive::<UInt32Type>();
            Box::new(move |i, out| put(out, i64::from(a.value(i)).to_be_bytes()))
        }
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            Box::new(move |i, out| put(out, a.value(i).to_be_bytes()))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            Box::new(move |i, out| put(out, a.value(i).to_be_bytes()))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            Box::new(move |i, out| put(out, a.value(i).to_be_bytes()))
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            Box::new(move |i, out| put(out, [u8::from(a.value(i))]))
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            Box::new(move |i, out| put(out, a.value(i).saturating_sub(PG_EPOCH_DAYS).to_be_bytes()))
        }
        DataType::Timestamp(unit, _) => {
            let to_micros: fn(i64) -> i64 = match unit {
                TimeUnit::Second => |v| v.saturating_mul(1_000_000),
                TimeUnit::Millisecond => |v| v.saturating_mul(1_000),
                TimeUnit::Microsecond => |v| v,
                TimeUnit::Nanosecond => |v| v.div_euclid(1_000),
            };
            let values = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().values(),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().values(),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().values(),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().values(),
            };
            Box::new(move |i, out| {
                put(
                    out,
                    to_micros(values[i])
                        .saturating_sub(PG_EPOCH_MICROS)
                        .to_be_bytes(),
                )
            })
        }
        DataType::List(item) => list_writer(array.as_list::<i32>(), item.data_type())?,
        DataType::LargeList(item) => list_writer(array.as_list::<i64>(), item.data_type())?,
        _ => return None,
    })
}

/// Writes list `i` as a one-dimensional PostgreSQL array (or an empty one).
fn list_writer<'a, O: arrow::array::OffsetSizeTrait>(
    list: &'a arrow::array::GenericListArray<O>,
    item_type: &DataType,
) -> Option<Writer<'a>> {
    let element = send_oid(item_type)?;
    let items = list.values();
    let write_item = writer(items.as_ref())?;
    let item_nulls = items.logical_nulls();
    Some(Box::new(move |i, out| {
        let offsets = list.value_offsets();
        let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
        let has_nulls = item_nulls
            .as_ref()
            .is_some_and(|n| (start..end).any(|j| n.is_null(j)));
        let dimensions: i32 = if start == end { 0 } else { 1 };
        out.extend_from_slice(&dimensions.to_be_bytes());
        out.extend_from_slice(&i32::from(has_nulls).to_be_bytes());
        out.extend_from_slice(&element.to_be_bytes());
        if dimensions == 1 {
            let size = i32::try_from(end - start).unwrap_or(i32::MAX);
            out.extend_from_slice(&size.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
        }
        for j in start..end {
            if item_nulls.as_ref().is_some_and(|n| n.is_null(j)) {
                out.extend_from_slice(&(-1i32).to_be_bytes());
            } else {
                with_length(out, |out| write_item(j, out))?;
            }
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::schema::Catalog;

    type Field = Option<Vec<u8>>;

    fn table() -> Arc<TableSchema> {
        Catalog::load(None)
            .expect("built-in schemas")
            .get("otel_logs_and_spans")
            .expect("table")
            .clone()
    }

    fn decoder(columns: &[&str]) -> Decoder {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        Decoder::new(&table(), &columns).expect("decoder")
    }

    fn tuple(fields: &[Field]) -> Vec<u8> {
        let mut out = (fields.len() as i16).to_be_bytes().to_vec();
        for field in fields {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(value) => {
                    out.extend_from_slice(&(value.len() as i32).to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
        out
    }

    /// Header, `tuples`, trailer.
    fn stream(tuples: &[Vec<Field>]) -> Vec<u8> {
        let mut out = header();
        for t in tuples {
            out.extend(tuple(t));
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn text(s: &str) -> Field {
        Some(s.as_bytes().to_vec())
    }

    fn int2(v: i16) -> Field {
        Some(v.to_be_bytes().to_vec())
    }

    fn int4(v: i32) -> Field {
        Some(v.to_be_bytes().to_vec())
    }

    fn int8(v: i64) -> Field {
        Some(v.to_be_bytes().to_vec())
    }

    fn micros(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .expect("timestamp")
            .timestamp_micros()
    }

    /// A `timestamptz` as PostgreSQL sends it.
    fn timestamptz(rfc3339: &str) -> Field {
        int8(micros(rfc3339) - PG_EPOCH_MICROS)
    }

    fn date(rfc3339: &str) -> Field {
        let days = micros(rfc3339).div_euclid(crate::engine::MICROS_PER_DAY) as i32;
        int4(days - PG_EPOCH_DAYS)
    }

    /// A one-dimensional array of `element` values (ndim 0 when empty).
    fn array(element: u32, items: &[Field]) -> Field {
        let mut out = Vec::new();
        let dimensions: i32 = if items.is_empty() { 0 } else { 1 };
        out.extend_from_slice(&dimensions.to_be_bytes());
        out.extend_from_slice(&i32::from(items.iter().any(Option::is_none)).to_be_bytes());
        out.extend_from_slice(&element.to_be_bytes());
        if dimensions == 1 {
            out.extend_from_slice(&(items.len() as i32).to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
        }
        for item in items {
            match item {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
        Some(out)
    }

    /// Pushes `chunks` in order, then finishes: every batch produced.
    fn run(decoder: &mut Decoder, chunks: &[&[u8]]) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        for chunk in chunks {
            batches.extend(decoder.push(chunk)?);
        }
        batches.extend(decoder.finish()?);
        Ok(batches)
    }

    const COLUMNS: [&str; 11] = [
        "project_id",
        "timestamp",
        "date",
        "body",
        "attributes",
        "hashes",
        "duration",
        "attributes___client___port",
        "context___is_remote",
        "summary",
        "id",
    ];

    /// Three rows over every type of the built-in table, with NULLs, empty arrays, jsonb and
    /// narrower / wider integers.
    fn rows() -> Vec<Vec<Field>> {
        let mut jsonb = vec![1u8];
        jsonb.extend_from_slice(br#"{"b": 2}"#);
        vec![
            vec![
                text("p1"),
                timestamptz("2024-03-10T10:00:00.123456Z"),
                date("2024-03-10T00:00:00Z"),
                text(r#"{"a": 1}"#),
                Some(jsonb),
                array(oid::TEXT, &[text("x"), None, text("y z")]),
                int8(1500),
                int4(8080),
                Some(vec![1]),
                array(oid::VARCHAR, &[text("s")]),
                text("id-1"),
            ],
            vec![
                text("p1"),
                timestamptz("1999-12-31T23:59:59Z"),
                None,
                None,
                None,
                array(oid::TEXT, &[]),
                int2(7),
                int8(443),
                Some(vec![0]),
                array(oid::TEXT, &[]),
                text("id-2 ✓"),
            ],
            vec![
                text("p2"),
                timestamptz("2024-03-11T00:00:00Z"),
                None,
                text(""),
                text("[]"),
                None,
                int4(-5),
                None,
                None,
                None,
                text("id-3"),
            ],
        ]
    }

    #[test]
    fn every_type_of_the_built_in_table_decodes_to_its_arrow_type() {
        let mut decoder = decoder(&COLUMNS);
        let batches = run(&mut decoder, &[&stream(&rows())]).expect("decode");
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 3);
        let table = table();
        for (field, name) in batch.schema().fields().iter().zip(COLUMNS) {
            let index = table.index_of(name).expect("column");
            assert_eq!(
                field.data_type(),
                table.schema.field(index).data_type(),
                "{name} comes in the table's type, no cast left for coerce"
            );
        }
        let strings = |i: usize| -> Vec<Option<String>> {
            batch
                .column(i)
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        };
        assert_eq!(
            strings(0),
            [Some("p1".into()), Some("p1".into()), Some("p2".into())]
        );
        let times = batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(times.value(0), micros("2024-03-10T10:00:00.123456Z"));
        assert_eq!(times.value(1), micros("1999-12-31T23:59:59Z"));
        assert_eq!(times.timezone(), Some("UTC"));
        let dates = batch
            .column(2)
            .as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(dates.value(0), 19792, "2024-03-10 in days since 1970");
        assert!(dates.is_null(1));
        assert_eq!(
            strings(3),
            [Some(r#"{"a": 1}"#.into()), None, Some(String::new())]
        );
        assert_eq!(
            strings(4),
            [Some(r#"{"b": 2}"#.into()), None, Some("[]".into())],
            "jsonb loses its version byte in a JSON column"
        );
        let hashes = batch.column(5).as_list::<i32>();
        let first = hashes.value(0);
        let first: Vec<Option<&str>> = first.as_string::<i32>().iter().collect();
        assert_eq!(first, [Some("x"), None, Some("y z")]);
        assert!(
            hashes.is_valid(1) && hashes.value(1).is_empty(),
            "empty array"
        );
        assert!(hashes.is_null(2), "NULL array");
        let durations = batch
            .column(6)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(
            durations.values().to_vec(),
            [1500, 7, -5],
            "int8, int2, int4"
        );
        let ports = batch
            .column(7)
            .as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!((ports.value(0), ports.value(1)), (8080, 443));
        assert!(ports.is_null(2));
        let remote = batch.column(8).as_boolean();
        assert_eq!(
            remote.iter().collect::<Vec<_>>(),
            [Some(true), Some(false), None]
        );
        let summary = batch.column(9).as_list::<i32>();
        assert_eq!(summary.value(0).as_string::<i32>().value(0), "s");
        assert!(summary.value(1).is_empty());
        assert_eq!(strings(10)[1].as_deref(), Some("id-2 ✓"));
    }

    #[test]
    fn a_stream_cut_at_every_byte_decodes_the_same() {
        let bytes = stream(&rows());
        let whole = run(&mut decoder(&COLUMNS), &[&bytes]).expect("whole");
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let split = run(&mut decoder(&COLUMNS), &[a, b])
                .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(split, whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(
            run(&mut decoder(&COLUMNS), &bytewise).expect("one byte at a time"),
            whole
        );
    }

    #[test]
    fn other_arrow_types_take_their_binary_values() {
        let decode =
            |data_type: DataType, values: &[Field]| -> std::result::Result<ArrayRef, String> {
                let mut column = Column::new(&data_type, false).expect("decodable type");
                for value in values {
                    match value {
                        Some(v) => column.append(v).map_err(|e| e.message)?,
                        None => column.append_null(),
                    }
                }
                column.finish().map_err(|e| e.to_string())
            };
        let floats = decode(
            DataType::Float64,
            &[
                Some(1.5f32.to_be_bytes().to_vec()),
                Some(0.1f64.to_be_bytes().to_vec()),
                None,
            ],
        )
        .expect("float64");
        let floats = floats.as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!((floats.value(0), floats.value(1)), (1.5, 0.1));
        assert!(floats.is_null(2));
        let reals = decode(DataType::Float32, &[Some(2.25f64.to_be_bytes().to_vec())])
            .expect("an exact float8 fits a real");
        assert_eq!(
            reals
                .as_primitive::<arrow::datatypes::Float32Type>()
                .value(0),
            2.25
        );
        let inexact = decode(DataType::Float32, &[Some(0.1f64.to_be_bytes().to_vec())])
            .expect_err("0.1 is not exact in a real");
        assert!(inexact.contains("does not fit a real exactly"), "{inexact}");

        let view = decode(
            DataType::Utf8View,
            &[text("a long enough string to be out of line"), None],
        )
        .expect("utf8view");
        assert_eq!(
            view.as_string_view().value(0),
            "a long enough string to be out of line"
        );
        let large = decode(DataType::LargeUtf8, &[text("big")]).expect("large utf8");
        assert_eq!(large.as_string::<i64>().value(0), "big");
        let small = decode(DataType::Int16, &[int4(-300), int2(5)]).expect("int16");
        assert_eq!(
            small
                .as_primitive::<arrow::datatypes::Int16Type>()
                .values()
                .to_vec(),
            [-300, 5]
        );
        let too_big = decode(DataType::Int16, &[int8(40_000)]).expect_err("out of range");
        assert_eq!(too_big, "value 40000 is out of range for type smallint");

        let at = "2024-03-10T10:00:00.000001Z";
        let nanos = decode(
            DataType::Timestamp(TimeUnit::Nanosecond, None),
            &[timestamptz(at)],
        )
        .expect("nanoseconds");
        assert_eq!(
            nanos
                .as_primitive::<arrow::datatypes::TimestampNanosecondType>()
                .value(0),
            micros(at) * 1000
        );
        let millis = decode(
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            &[timestamptz("2024-03-10T10:00:00.123Z")],
        )
        .expect("whole milliseconds");
        let millis = millis.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        assert_eq!(millis.value(0), micros("2024-03-10T10:00:00.123Z") / 1000);
        assert_eq!(millis.timezone(), Some("UTC"));
        let finer = decode(
            DataType::Timestamp(TimeUnit::Second, None),
            &[timestamptz(at)],
        )
        .expect_err("microseconds do not fit seconds");
        assert!(finer.contains("finer precision"), "{finer}");

        let list_of_int = DataType::List(Arc::new(arrow::datatypes::Field::new(
            "item",
            DataType::Int64,
            true,
        )));
        let ints = decode(
            list_of_int.clone(),
            &[array(oid::INT4, &[int4(1), None, int4(3)])],
        )
        .expect("int4[] into List(Int64)");
        let ints = ints.as_list::<i32>().value(0);
        let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(
            (ints.value(0), ints.is_null(1), ints.value(2)),
            (1, true, 3)
        );
        let texts = decode(list_of_int, &[array(oid::TEXT, &[text("1")])])
            .expect_err("text[] into List(Int64)");
        assert!(texts.contains("OID 25"), "{texts}");

        for unsupported in [
            DataType::Decimal128(10, 2),
            DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano),
            DataType::List(Arc::new(arrow::datatypes::Field::new(
                "item",
                DataType::List(Arc::new(arrow::datatypes::Field::new(
                    "item",
                    DataType::Utf8,
                    true,
                ))),
                true,
            ))),
        ] {
            assert!(Column::new(&unsupported, false).is_none(), "{unsupported}");
        }
    }

    /// The error of decoding `bytes` pushed whole for `columns`, with its SQLSTATE.
    fn error(columns: &[&str], bytes: &[u8]) -> (String, SqlState) {
        let error = run(&mut decoder(columns), &[bytes]).expect_err("an error");
        (error.to_string(), error.sqlstate())
    }

    #[test]
    fn malformed_streams_are_22p04_naming_the_line() {
        let two = ["project_id", "id"];
        let good = tuple(&[text("p"), text("a")]);
        let with = |head: &[u8], tuples: &[&[u8]], trailer: bool| {
            let mut out = head.to_vec();
            for t in tuples {
                out.extend_from_slice(t);
            }
            if trailer {
                out.extend_from_slice(&(-1i16).to_be_bytes());
            }
            out
        };
        let header_with = |flags: i32, extension: &[u8]| {
            let mut out = SIGNATURE.to_vec();
            out.extend_from_slice(&flags.to_be_bytes());
            out.extend_from_slice(&(extension.len() as i32).to_be_bytes());
            out.extend_from_slice(extension);
            out
        };

        // A header extension is skipped; flags below bit 16 are ignored, as in PostgreSQL.
        let skipped = run(
            &mut decoder(&two),
            &[&with(&header_with(1, b"ext!"), &[&good], true)],
        )
        .expect("extension skipped");
        assert_eq!(skipped[0].num_rows(), 1);

        let cases: Vec<(&str, Vec<u8>, &str, SqlState)> = vec![
            (
                "text sent as binary",
                b"p\ta\n".to_vec(),
                "signature not recognized",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a wrong signature",
                with(b"PGCOPY\n\xff\r\n\x01\0\0\0\0\0\0\0\0", &[&good], true),
                "signature not recognized",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "OIDs",
                with(&header_with(1 << 16, b""), &[&good], true),
                "WITH OIDS",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a critical flag",
                with(&header_with(1 << 17, b""), &[&good], true),
                "critical flags",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a negative extension",
                with(
                    &[&SIGNATURE[..], &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]].concat(),
                    &[&good],
                    true,
                ),
                "missing length",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "an empty stream",
                Vec::new(),
                "signature not recognized",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a stream ending in the header",
                header()[..15].to_vec(),
                "ends inside it",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "too few fields on line 2",
                with(&header(), &[&good, &tuple(&[text("p")])], true),
                "line 2: row field count is 1, expected 2",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "too many fields",
                with(
                    &header(),
                    &[&tuple(&[text("p"), text("a"), text("b")])],
                    true,
                ),
                "line 1: row field count is 3, expected 2",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a field size below -1",
                with(&header(), &[&[0, 2, 0xff, 0xff, 0xff, 0xfe][..]], true),
                "line 1: invalid field size -2",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a stream ending inside a tuple",
                with(&header(), &[&good, &good[..good.len() - 1]], false),
                "line 2: unexpected EOF in COPY data",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "one stray byte",
                with(&header(), &[&good, &[0]], false),
                "line 2: unexpected EOF",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "data after the trailer",
                with(&header(), &[&good, &(-1i16).to_be_bytes(), &good], false),
                "after EOF marker",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
            (
                "a 2 GiB field",
                with(&header(), &[&[0, 2, 0x7f, 0xff, 0xff, 0xff][..]], false),
                "more than 64 MiB",
                SqlState::BAD_COPY_FILE_FORMAT,
            ),
        ];
        for (what, bytes, message, sqlstate) in cases {
            let (got, code) = error(&two, &bytes);
            assert!(got.contains(message), "{what}: {got}");
            assert_eq!(code, sqlstate, "{what}: {got}");
        }

        // Structural errors surface as soon as their bytes arrive, before CopyDone.
        let mut early = decoder(&two);
        let bytes = with(&header(), &[&[0, 2, 0x7f, 0xff, 0xff, 0xff][..]], false);
        assert!(
            early.push(&bytes).is_err(),
            "an oversized field is refused at once"
        );
        let mut after = decoder(&two);
        after
            .push(&with(&header(), &[&good], true))
            .expect("a whole stream");
        let late = after
            .push(&good)
            .expect_err("a later chunk after the trailer");
        assert!(late.to_string().contains("after EOF marker"), "{late}");

        // Like PostgreSQL, a stream that stops on a tuple boundary without the trailer is whole.
        let batches = run(
            &mut decoder(&two),
            &[&with(&header(), &[&good, &good], false)],
        )
        .expect("no trailer");
        assert_eq!(batches[0].num_rows(), 2);
        // Header and trailer only: no rows, no error.
        assert!(
            run(&mut decoder(&two), &[&stream(&[])])
                .expect("empty")
                .is_empty()
        );
    }

    #[test]
    fn values_that_are_not_their_columns_type_get_postgres_sqlstates_naming_line_and_column() {
        let mut jsonb2 = vec![2u8];
        jsonb2.extend_from_slice(b"{}");
        let mut long_array = array(oid::TEXT, &[text("x")]).expect("array");
        long_array[12..16].copy_from_slice(&1000i32.to_be_bytes());
        let mut trailing = array(oid::TEXT, &[text("x")]).expect("array");
        trailing.push(0);
        let mut two_dimensional = array(oid::TEXT, &[text("x")]).expect("array");
        two_dimensional[..4].copy_from_slice(&2i32.to_be_bytes());
        let mut bad_flags = array(oid::TEXT, &[text("x")]).expect("array");
        bad_flags[4..8].copy_from_slice(&7i32.to_be_bytes());
        let cases: Vec<(&str, &str, Field, &str, SqlState)> = vec![
            (
                "3-byte integer",
                "duration",
                Some(vec![0, 0, 1]),
                "3 bytes where an int2, int4 or int8",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "int8 beyond int4",
                "attributes___client___port",
                int8(9_999_999_999),
                "out of range for type integer",
                SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            ),
            (
                "invalid UTF-8",
                "name",
                Some(vec![0xff, 0xfe]),
                "invalid UTF-8",
                SqlState::UNTRANSLATABLE_CHARACTER,
            ),
            (
                "2-byte boolean",
                "context___is_remote",
                int2(1),
                "a boolean (1 byte)",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "date as int8",
                "date",
                int8(1),
                "a date (4 bytes)",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "timestamp as int4",
                "timestamp",
                int4(1),
                "a timestamp (8 bytes)",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "infinite timestamp",
                "timestamp",
                int8(i64::MAX),
                "infinite timestamps",
                SqlState::DATETIME_FIELD_OVERFLOW,
            ),
            (
                "infinite date",
                "date",
                int4(i32::MIN),
                "infinite dates",
                SqlState::DATETIME_FIELD_OVERFLOW,
            ),
            (
                "int8[] into text[]",
                "hashes",
                array(oid::INT8, &[int8(1)]),
                "OID 20",
                SqlState::DATATYPE_MISMATCH,
            ),
            (
                "2-dimensional array",
                "hashes",
                Some(two_dimensional),
                "2-dimensional",
                SqlState::FEATURE_NOT_SUPPORTED,
            ),
            (
                "array count beyond its bytes",
                "hashes",
                Some(long_array),
                "1000 elements",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "bytes after the elements",
                "hashes",
                Some(trailing),
                "incorrect binary data format",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "array flags",
                "hashes",
                Some(bad_flags),
                "invalid array flags 7",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "truncated array",
                "hashes",
                Some(vec![0, 0, 0, 1, 0, 0]),
                "truncated array header",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
            (
                "jsonb version 2 element",
                "hashes",
                array(oid::JSONB, &[Some(jsonb2)]),
                "jsonb version",
                SqlState::INVALID_BINARY_REPRESENTATION,
            ),
        ];
        for (what, column, value, message, want) in cases {
            let columns = ["project_id", "id", column];
            let bytes = stream(&[
                vec![text("p"), text("a"), None],
                vec![text("p"), text("b"), value],
            ]);
            let (got, code) = error(&columns, &bytes);
            assert!(got.contains(message), "{what}: {got}");
            assert!(
                got.contains(&format!("line 2, column \"{column}\"")),
                "{what}: {got}"
            );
            assert_eq!(code, want, "{what}: {got}");
        }
    }

    #[test]
    fn garbage_and_truncations_never_panic() {
        use rand::{Rng, SeedableRng};
        let bytes = stream(&rows());
        // Every truncation: whole only on a tuple boundary (or the full stream).
        let mut boundaries = vec![HEADER_BYTES];
        for row in rows() {
            boundaries.push(boundaries[boundaries.len() - 1] + tuple(&row).len());
        }
        for cut in 0..bytes.len() {
            let result = run(&mut decoder(&COLUMNS), &[&bytes[..cut]]);
            assert_eq!(
                result.is_ok(),
                boundaries.contains(&cut),
                "cut at {cut}: {result:?}"
            );
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..3000 {
            let mut garbage = bytes.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..garbage.len());
                garbage[at] = rng.random();
            }
            if round % 3 == 0 {
                garbage.truncate(rng.random_range(0..garbage.len()));
            }
            let mut chunks = Vec::new();
            let mut rest = garbage.as_slice();
            while !rest.is_empty() {
                let (chunk, tail) = rest.split_at(rng.random_range(1..=rest.len()));
                chunks.push(chunk);
                rest = tail;
            }
            // Any outcome but a panic; a decoded batch has the rows it says.
            if let Ok(batches) = run(&mut decoder(&COLUMNS), &chunks) {
                assert!(batches.iter().all(|b| b.num_rows() <= 3));
            }
        }
        for round in 0..500 {
            let noise: Vec<u8> = (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect();
            let mut prefixed = header();
            prefixed.extend_from_slice(&noise);
            let _ = run(&mut decoder(&COLUMNS), &[&noise]);
            let _ = run(&mut decoder(&COLUMNS), &[&prefixed]).map_err(|e| {
                assert!(
                    matches!(
                        e.sqlstate(),
                        SqlState::BAD_COPY_FILE_FORMAT
                            | SqlState::INVALID_BINARY_REPRESENTATION
                            | SqlState::NUMERIC_VALUE_OUT_OF_RANGE
                            | SqlState::DATETIME_FIELD_OVERFLOW
                            | SqlState::UNTRANSLATABLE_CHARACTER
                            | SqlState::DATATYPE_MISMATCH
                            | SqlState::FEATURE_NOT_SUPPORTED
                    ),
                    "round {round}: {e}"
                )
            });
        }
    }

    #[test]
    fn encoded_batches_decode_to_the_same_values() {
        let batch = run(&mut decoder(&COLUMNS), &[&stream(&rows())])
            .expect("decode")
            .remove(0);
        let mut bytes = Vec::new();
        for row in encoded(&batch) {
            bytes.extend(row);
        }
        bytes.extend_from_slice(&(-1i16).to_be_bytes());
        let decoded = run(&mut decoder(&COLUMNS), &[&bytes])
            .expect("decode again")
            .remove(0);
        // jsonb came in; text goes out: the values, not the bytes, round-trip.
        assert_eq!(decoded, batch);

        // The exact bytes of one simple row: int8, text, NULL, an empty array.
        let simple = RecordBatch::try_from_iter([
            (
                "n",
                Arc::new(arrow::array::Int64Array::from(vec![5])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(arrow::array::StringArray::from(vec!["hé"])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(arrow::array::BooleanArray::from(vec![None::<bool>])) as ArrayRef,
            ),
            (
                "l",
                Arc::new(ListArray::from_iter_primitive::<
                    arrow::datatypes::Int32Type,
                    _,
                    _,
                >([Some(Vec::<Option<i32>>::new())])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let mut expected = header();
        expected.extend_from_slice(&[
            0, 4, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3, b'h', 0xc3, 0xa9,
        ]);
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&12i32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23]);
        assert_eq!(encoded(&simple), vec![expected]);

        // Types without a writer of their own go out through arrow-pg as PostgreSQL sends them: numeric
        // 12.34 (ndigits 2, weight 0, positive, dscale 2, digits 12 and 3400), interval
        // 1 day 2 hours (µs, days, months).
        let more = RecordBatch::try_from_iter([
            (
                "d",
                Arc::new(
                    arrow::array::Decimal128Array::from(vec![1234])
                        .with_precision_and_scale(10, 2)
                        .expect("decimal"),
                ) as ArrayRef,
            ),
            (
                "i",
                Arc::new(arrow::array::IntervalMonthDayNanoArray::from(vec![
                    arrow::datatypes::IntervalMonthDayNano::new(0, 1, 7_200_000_000_000),
                ])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let mut expected = header();
        expected.extend_from_slice(&[0, 2, 0, 0, 0, 12, 0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 13, 72]);
        expected.extend_from_slice(&16i32.to_be_bytes());
        expected.extend_from_slice(&7_200_000_000i64.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(encoded(&more), vec![expected]);

        let map = Schema::new(vec![arrow::datatypes::Field::new_list(
            "nested",
            arrow::datatypes::Field::new_list_field(
                DataType::List(Arc::new(arrow::datatypes::Field::new_list_field(
                    DataType::Int32,
                    true,
                ))),
                true,
            ),
            true,
        )]);
        let refused = check_sendable(&map).expect_err("a list of lists");
        assert_eq!(refused.sqlstate(), SqlState::FEATURE_NOT_SUPPORTED);
        assert!(refused.to_string().contains("\"nested\""), "{refused}");
    }

    /// The tuples of `batch`, the first after the stream's header.
    fn encoded(batch: &RecordBatch) -> Vec<Vec<u8>> {
        check_sendable(&batch.schema()).expect("sendable");
        let mut rows = encode(batch).expect("encode");
        rows[0].splice(0..0, header());
        rows
    }
}
