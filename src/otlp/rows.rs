//! OTLP records as rows of a table: typed Arrow columns built record by record, the table's
//! flattened attribute columns (`attributes___http___request___method`) filled from the
//! attributes they name, and attribute sets written as JSON text.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

use crate::engine::schema::TableSchema;

/// How a column's values are built: the table column types OTLP values map to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int32,
    Int64,
    Float64,
    Bool,
    /// `Timestamp(Microsecond, "UTC")`.
    Time,
    /// `List(Int64)`.
    Int64List,
    /// `List(Float64)`.
    Float64List,
}

impl Kind {
    pub(crate) fn of(data_type: &DataType) -> Option<Kind> {
        Some(match data_type {
            DataType::Utf8 => Kind::Text,
            DataType::Int32 => Kind::Int32,
            DataType::Int64 => Kind::Int64,
            DataType::Float64 => Kind::Float64,
            DataType::Boolean => Kind::Bool,
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) if zone.as_ref() == "UTC" => {
                Kind::Time
            }
            DataType::List(item) => match item.data_type() {
                DataType::Int64 => Kind::Int64List,
                DataType::Float64 => Kind::Float64List,
                _ => return None,
            },
            _ => return None,
        })
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Int64List => DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            Kind::Float64List => {
                DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
            }
        }
    }
}

/// The flattened columns of one attribute set (`attributes___…` or `resource___…`), by the
/// attribute key each holds.
///
/// A column's key is its name after the prefix with `___` (and `__`, which some of the
/// schema's names use) read as `.`: `attributes___http___request___method` holds
/// `http.request.method`, `attributes___network___local__address` `network.local.address`.
/// Columns of types an attribute cannot map to are left out.
#[derive(Debug, Default)]
pub(crate) struct Flattened {
    /// Looked up (never filled) with client keys, so a fixed fast hash is safe from
    /// collision floods; SipHash was a visible share of an OTLP ingest profile.
    by_key: HashMap<String, (usize, Kind), foldhash::fast::FixedState>,
}

impl Flattened {
    pub(crate) fn new(table: &TableSchema, prefix: &str) -> Flattened {
        let mut by_key = HashMap::default();
        for (i, field) in table.schema.fields().iter().enumerate() {
            let (Some(rest), Some(kind)) = (
                field.name().strip_prefix(prefix),
                Kind::of(field.data_type()),
            ) else {
                continue;
            };
            if matches!(kind, Kind::Time | Kind::Int64List | Kind::Float64List) || rest.is_empty() {
                continue;
            }
            by_key.insert(rest.replace("___", ".").replace("__", "."), (i, kind));
        }
        Flattened { by_key }
    }

    fn get(&self, key: &str) -> Option<(usize, Kind)> {
        self.by_key.get(key).copied()
    }
}

enum Builder {
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMicrosecondBuilder),
    Int64List(ListBuilder<Int64Builder>),
    Float64List(ListBuilder<Float64Builder>),
}

impl Builder {
    fn new(kind: Kind) -> Builder {
        match kind {
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::Int32 => Builder::Int32(Int32Builder::new()),
            Kind::Int64 => Builder::Int64(Int64Builder::new()),
            Kind::Float64 => Builder::Float64(Float64Builder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Time => {
                Builder::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC".to_string()))
            }
            Kind::Int64List => Builder::Int64List(ListBuilder::new(Int64Builder::new())),
            Kind::Float64List => Builder::Float64List(ListBuilder::new(Float64Builder::new())),
        }
    }

    fn inner(&mut self) -> &mut dyn ArrayBuilder {
        match self {
            Builder::Text(b) => b,
            Builder::Int32(b) => b,
            Builder::Int64(b) => b,
            Builder::Float64(b) => b,
            Builder::Bool(b) => b,
            Builder::Time(b) => b,
            Builder::Int64List(b) => b,
            Builder::Float64List(b) => b,
        }
    }

    fn len(&mut self) -> usize {
        self.inner().len()
    }

    fn append_nulls(&mut self, n: usize) {
        match self {
            Builder::Text(b) => b.append_nulls(n),
            Builder::Int32(b) => b.append_nulls(n),
            Builder::Int64(b) => b.append_nulls(n),
            Builder::Float64(b) => b.append_nulls(n),
            Builder::Bool(b) => b.append_nulls(n),
            Builder::Time(b) => b.append_nulls(n),
            Builder::Int64List(b) => (0..n).for_each(|_| b.append_null()),
            Builder::Float64List(b) => (0..n).for_each(|_| b.append_null()),
        }
    }
}

/// A slot of [`Rows`]: one column of the batch being built.
pub(crate) type Slot = usize;

/// Why a request's records cannot be stored: the client's fault, not worth a retry.
#[derive(Debug, PartialEq)]
pub struct Invalid(pub String);

/// What a row is counted as beyond its text and lists: its fixed-width values and offsets.
const ROW_BYTES: usize = 64;

/// The columns a mapping fills in every row, found in its table once: slot `i` of the
/// [`Rows`] it starts is `columns[i]`.
pub(crate) struct Fixed {
    table: Arc<TableSchema>,
    columns: Vec<(usize, Kind)>,
    /// The most bytes one request's rows may hold ([`Fixed::limited`]).
    max_bytes: usize,
}

impl Fixed {
    /// `columns` in `table`, or why the table cannot take `records` (a column missing or of
    /// another type).
    pub(crate) fn new(
        table: Arc<TableSchema>,
        columns: &[(&str, Kind)],
        records: &str,
    ) -> Result<Fixed, String> {
        let columns = columns
            .iter()
            .map(|&(name, kind)| {
                table
                    .index_of(name)
                    .filter(|&i| Kind::of(table.schema.field(i).data_type()) == Some(kind))
                    .map(|i| (i, kind))
                    .ok_or_else(|| {
                        format!(
                            "table {} has no column {name} of the type {records} need ({kind:?})",
                            table.name
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Fixed {
            table,
            columns,
            max_bytes: usize::MAX,
        })
    }

    /// Refuses a request whose rows would hold more than `max_bytes`.
    pub(crate) fn limited(self, max_bytes: usize) -> Fixed {
        Fixed { max_bytes, ..self }
    }

    pub(crate) fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    /// Empty rows with the fixed columns in their slots.
    pub(crate) fn rows(&self) -> Rows {
        let mut rows = Rows::new(self.table.clone(), self.max_bytes);
        for &(index, kind) in &self.columns {
            rows.column(index, kind);
        }
        rows
    }
}

/// Rows being built: the columns every record may fill, declared up front, and flattened
/// attribute columns added as their attributes first appear. A value set twice in one row
/// keeps the first; a column not set in a row is null there.
pub(crate) struct Rows {
    fields: Vec<Field>,
    builders: Vec<Builder>,
    /// The slot of each table column added so far, by its index in the table.
    by_column: Vec<Option<Slot>>,
    rows: usize,
    table: Arc<TableSchema>,
    /// Bytes appended so far, and the most a request may expand to: a small message can
    /// repeat a large resource or label set into every one of many tiny records.
    bytes: usize,
    max_bytes: usize,
}

impl Rows {
    /// Rows of `table`, refused once they hold more than `max_bytes`.
    pub(crate) fn new(table: Arc<TableSchema>, max_bytes: usize) -> Rows {
        Rows {
            fields: Vec::new(),
            builders: Vec::new(),
            by_column: vec![None; table.schema.fields().len()],
            rows: 0,
            table,
            bytes: 0,
            max_bytes,
        }
    }

    /// The slot of the table column `index`, added (null in the rows so far) on first use.
    pub(crate) fn column(&mut self, index: usize, kind: Kind) -> Slot {
        if let Some(slot) = self.by_column[index] {
            return slot;
        }
        let slot = self.builders.len();
        let name = self.table.schema.field(index).name().clone();
        self.fields.push(Field::new(name, kind.data_type(), true));
        let mut builder = Builder::new(kind);
        builder.append_nulls(self.rows);
        self.builders.push(builder);
        self.by_column[index] = Some(slot);
        slot
    }

    /// Whether `slot` is still unset in the current row.
    fn open(&mut self, slot: Slot) -> Option<&mut Builder> {
        let rows = self.rows;
        let builder = &mut self.builders[slot];
        (builder.len() == rows).then_some(builder)
    }

    pub(crate) fn text(&mut self, slot: Slot, value: &str) {
        if let Some(Builder::Text(b)) = self.open(slot) {
            b.append_value(value);
            self.bytes += value.len();
        }
    }

    pub(crate) fn int(&mut self, slot: Slot, value: i64) {
        match self.open(slot) {
            Some(Builder::Int64(b)) => b.append_value(value),
            Some(Builder::Int32(b)) => b.append_option(i32::try_from(value).ok()),
            Some(Builder::Float64(b)) => b.append_value(value as f64),
            _ => {}
        }
    }

    pub(crate) fn float(&mut self, slot: Slot, value: f64) {
        if let Some(Builder::Float64(b)) = self.open(slot) {
            b.append_value(value);
        }
    }

    /// A list of integers; counts past `i64::MAX` (no real count) saturate.
    pub(crate) fn counts(&mut self, slot: Slot, values: &[u64]) {
        self.bytes += values.len() * 8;
        if let Some(Builder::Int64List(b)) = self.open(slot) {
            b.values().extend(
                values
                    .iter()
                    .map(|&v| Some(i64::try_from(v).unwrap_or(i64::MAX))),
            );
            b.append(true);
        }
    }

    pub(crate) fn floats(&mut self, slot: Slot, values: impl IntoIterator<Item = f64>) {
        if let Some(Builder::Float64List(b)) = self.open(slot) {
            let before = b.values().len();
            b.values().extend(values.into_iter().map(Some));
            let added = b.values().len() - before;
            b.append(true);
            self.bytes += added * 8;
        }
    }

    pub(crate) fn bool(&mut self, slot: Slot, value: bool) {
        if let Some(Builder::Bool(b)) = self.open(slot) {
            b.append_value(value);
        }
    }

    pub(crate) fn time(&mut self, slot: Slot, micros: i64) {
        if let Some(Builder::Time(b)) = self.open(slot) {
            b.append_value(micros);
        }
    }

    /// Sets the flattened column of `flat` that `key` names, if the table has one, from
    /// `value` converted to the column's type (null when it does not convert).
    pub(crate) fn attribute(&mut self, flat: &Flattened, key: &str, value: Option<&Value>) {
        let Some((index, kind)) = flat.get(key) else {
            return;
        };
        let slot = self.column(index, kind);
        let Some(builder) = self.open(slot) else {
            return;
        };
        let text_bytes = match (builder, value) {
            (Builder::Text(b), Some(Value::StringValue(s))) => {
                b.append_value(s);
                s.len()
            }
            (Builder::Text(b), Some(other)) => {
                let mut text = String::new();
                write_value(&mut text, Some(other));
                b.append_value(&text);
                text.len()
            }
            (Builder::Int32(b), Some(v)) => {
                b.append_option(integer(v).and_then(|i| i32::try_from(i).ok()));
                0
            }
            (Builder::Int64(b), Some(v)) => {
                b.append_option(integer(v));
                0
            }
            (Builder::Float64(b), Some(v)) => {
                b.append_option(match v {
                    Value::DoubleValue(d) => Some(*d),
                    Value::IntValue(i) => Some(*i as f64),
                    Value::StringValue(s) => s.trim().parse().ok(),
                    _ => None,
                });
                0
            }
            (Builder::Bool(b), Some(v)) => {
                b.append_option(match v {
                    Value::BoolValue(b) => Some(*b),
                    Value::StringValue(s) => s.parse().ok(),
                    _ => None,
                });
                0
            }
            _ => 0,
        };
        self.bytes += text_bytes;
    }

    /// Ends the current row: every column it did not set is null in it. Refuses the request
    /// once its rows hold more than the limit.
    pub(crate) fn end_row(&mut self) -> Result<(), Invalid> {
        self.rows += 1;
        for builder in &mut self.builders {
            let missing = self.rows - builder.len();
            builder.append_nulls(missing);
        }
        self.bytes += ROW_BYTES;
        if self.bytes > self.max_bytes {
            return Err(Invalid(format!(
                "the request expands to more than {} MiB of rows (TIMEFUSION_GRPC_MAX_INFLIGHT_MB): \
                 send smaller batches",
                self.max_bytes >> 20
            )));
        }
        Ok(())
    }

    /// The batch of the rows so far: only the columns some row could set, which
    /// `Ingest::write` completes with the table's defaults.
    pub(crate) fn finish(mut self) -> Result<RecordBatch, arrow::error::ArrowError> {
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| b.inner().finish())
            .collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new(std::mem::take(&mut self.fields))),
            columns,
            &options,
        )
    }
}

/// An integer attribute, or a string or whole double holding one.
fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::IntValue(i) => Some(*i),
        Value::StringValue(s) => s.trim().parse().ok(),
        Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        _ => None,
    }
}

/// Appends `attributes` as a JSON object of their keys, as sent (`{"http.request.method":
/// "GET"}`), then `extra`'s non-empty string values.
pub(crate) fn write_attributes(out: &mut String, attributes: &[KeyValue], extra: &[(&str, &str)]) {
    out.push('{');
    let mut first = true;
    for kv in attributes {
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, &kv.key);
        out.push(':');
        write_value(out, value_of(kv.value.as_ref()));
    }
    for (key, value) in extra.iter().filter(|(_, v)| !v.is_empty()) {
        if !first {
            out.push(',');
        }
        first = false;
        write_string(out, key);
        out.push(':');
        write_string(out, value);
    }
    out.push('}');
}

/// [`write_attributes`] with the keys in sorted order (the first of equal keys kept), so that
/// one label set is always the same text.
pub(crate) fn write_sorted_attributes(out: &mut String, attributes: &[KeyValue]) {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    sorted.dedup_by(|later, first| later.key == first.key);
    out.push('{');
    for (i, kv) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, &kv.key);
        out.push(':');
        write_value(out, value_of(kv.value.as_ref()));
    }
    out.push('}');
}

pub(crate) fn value_of(value: Option<&AnyValue>) -> Option<&Value> {
    value.and_then(|v| v.value.as_ref())
}

/// Appends an attribute value as JSON: strings, numbers and booleans as themselves (a
/// non-finite double as the string PostgreSQL's `float8` would print), bytes as base64 (as
/// OTLP/JSON writes them), arrays and key-value lists as arrays and objects, empty as `null`.
pub(crate) fn write_value(out: &mut String, value: Option<&Value>) {
    match value {
        // A string-table index exists only in profiles, which have their own string table.
        None | Some(Value::StringValueStrindex(_)) => out.push_str("null"),
        Some(Value::StringValue(s)) => write_string(out, s),
        Some(Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Value::DoubleValue(d)) if d.is_finite() => {
            let _ = write!(out, "{d}");
        }
        Some(Value::DoubleValue(d)) => write_string(
            out,
            if d.is_nan() {
                "NaN"
            } else if *d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            },
        ),
        Some(Value::BytesValue(bytes)) => {
            out.push('"');
            base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
            out.push('"');
        }
        Some(Value::ArrayValue(array)) => {
            out.push('[');
            for (i, v) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, v.value.as_ref());
            }
            out.push(']');
        }
        Some(Value::KvlistValue(list)) => write_attributes(out, &list.values, &[]),
    }
}

/// Appends `text` as a JSON string.
pub(crate) fn write_string(out: &mut String, text: &str) {
    out.push('"');
    // Runs of bytes that need no escape are copied whole; every byte that does is ASCII, so
    // the runs split the text at character boundaries.
    let mut start = 0;
    for (i, &byte) in text.as_bytes().iter().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            byte if byte < 0x20 => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Nanoseconds since the epoch as the tables' microseconds (truncated, as PostgreSQL's
/// `to_timestamp` keeps microseconds).
pub(crate) fn micros(nanos: u64) -> i64 {
    (nanos / 1_000) as i64
}

/// Nanoseconds since the epoch as RFC 3339 UTC text, in JSON columns.
pub(crate) fn rfc3339(nanos: u64) -> String {
    let nanos = i64::try_from(nanos).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Lower-case hex of an id (trace, span), or `None` when it is empty or all zeros (OTLP's
/// "no id").
pub(crate) fn hex_id(bytes: &[u8]) -> Option<String> {
    if bytes.iter().all(|&b| b == 0) {
        return None;
    }
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn attributes_are_valid_json_of_every_value_type() {
        let nested = KeyValueList {
            values: vec![kv("k", Value::StringValue("v".into()))],
        };
        let attributes = vec![
            kv(
                "s",
                Value::StringValue("quote \" slash \\ nl \n bell \u{7} é".into()),
            ),
            kv("i", Value::IntValue(-42)),
            kv("d", Value::DoubleValue(1.5)),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("b", Value::BoolValue(true)),
            kv("bytes", Value::BytesValue(vec![0, 255])),
            kv(
                "a",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::IntValue(1)),
                        },
                        AnyValue { value: None },
                    ],
                }),
            ),
            kv("m", Value::KvlistValue(nested)),
        ];
        let mut out = String::new();
        write_attributes(
            &mut out,
            &attributes,
            &[("otel.scope.name", "lib"), ("x", "")],
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert_eq!(
            parsed,
            serde_json::json!({
                "s": "quote \" slash \\ nl \n bell \u{7} é",
                "i": -42, "d": 1.5, "nan": "NaN", "b": true, "bytes": "AP8=",
                "a": [1, null], "m": {"k": "v"}, "otel.scope.name": "lib"
            })
        );
    }

    #[test]
    fn ids_are_hex_and_all_zero_ids_are_none() {
        assert_eq!(hex_id(&[0x0a, 0xff]).as_deref(), Some("0aff"));
        assert_eq!(hex_id(&[0; 8]), None);
        assert_eq!(hex_id(&[]), None);
    }
}
