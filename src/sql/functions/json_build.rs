//! PostgreSQL's JSON constructors over any values: `json_build_array`, `json_build_object`,
//! `to_json`, `row_to_json`, `array_to_json`, the aggregate `json_agg`, and their `jsonb`
//! forms. TimeFusion keeps JSON as text, so each returns JSON text (`Utf8`), written exactly as
//! PostgreSQL 15 writes the `json` or `jsonb` value (`tests/slt/json_build.slt` holds its
//! answers):
//!
//! - `json` keeps what it is given: `json_build_object` writes `{"a" : 1, "b" : [1,2]}`,
//!   `json_build_array` `[1, "a"]`, `to_json` and nested values `[1,2]` / `{"a":1}`, and JSON
//!   text inside is embedded as it is;
//! - `jsonb` is normalized: `{"a": 1, "b": [1, 2]}`, object keys shorter-first then bytewise,
//!   a repeated key keeping its last value, numbers as `numeric` prints them (`1e+100` →
//!   `1000…0`);
//! - values: numbers as JSON numbers (floats as PostgreSQL prints them, `NaN` and the
//!   infinities as strings), booleans, `NULL` → `null`, text as JSON strings, timestamps and
//!   dates as `to_json` writes them (`"2026-01-01T10:00:00+00:00"`, `"2026-01-01T10:00:00"`,
//!   `"2026-01-01"`), times and intervals as their text, lists as arrays, structs as objects
//!   (a `row(…)` argument's fields named `f1`, `f2` … as PostgreSQL names them:
//!   [`PgRowFieldNames`]).
//!
//! Text is JSON when its Arrow field says so: the canonical JSON extension type
//! (`ARROW:extension:name` = `arrow.json`), which the `->` operator's results and every
//! function here carry, so `jsonb_build_object('a', attributes -> 'http')` and nested
//! constructors embed objects, not strings. Text that is not valid JSON is embedded as a string.
//! Table columns carry no such marking today, so a JSON-text column is a string here, as a
//! `text` column is in PostgreSQL.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, GenericListArray, ListArray, OffsetSizeTrait,
    StringBuilder,
};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type,
    Field, FieldRef, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::common::{ScalarValue, internal_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::array_agg::ArrayAgg;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, GroupsAccumulator,
    ReturnFieldArgs, ReversedUDAF, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::error::{SqlError, SqlState};
use crate::sql::functions::shaped;
use crate::sql::text_cast::{to_micros, write_ymd};

/// Nesting deeper than this in JSON text is refused (54001, as PostgreSQL's stack depth
/// limit), so parsing and writing recurse a bounded number of times.
const MAX_DEPTH: usize = 1000;

/// `numeric`'s limits: digits before and after the decimal point.
const NUMERIC_MAX_WEIGHT_DIGITS: i64 = 131_072;
const NUMERIC_MAX_SCALE: i64 = 16_383;

/// Which of PostgreSQL's two JSON types a function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Flavor {
    Json,
    Jsonb,
}

/// The metadata of a field holding JSON text: Arrow's canonical JSON extension type, as
/// datafusion-functions-json marks its results.
fn json_metadata() -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        ("ARROW:extension:name".to_string(), "arrow.json".to_string()),
        ("ARROW:extension:metadata".to_string(), "{}".to_string()),
    ])
}

/// Whether `field` holds JSON text (the canonical extension type, or datafusion-functions-json's
/// older `is_json` marker).
pub(crate) fn is_json_field(field: &Field) -> bool {
    field.extension_type_name() == Some("arrow.json")
        || field.metadata().get("is_json").is_some_and(|v| v == "true")
}

pub(super) fn json_field(name: &str) -> FieldRef {
    Arc::new(Field::new(name, DataType::Utf8, true).with_metadata(json_metadata()))
}

/// The SQL types `json` and `jsonb` as DataFusion has none: text marked as JSON (and `uuid`
/// as text), so
/// `'{"a":1}'::jsonb` plans (DataFusion answered "Unsupported SQL type JSON") and the value is
/// embedded as JSON by the constructors here. In queries the cast is also wrapped in
/// `json_in` / `jsonb_in` ([`crate::sql::pg_forms`]), which check the text (22P02) and write
/// `jsonb`'s normalized form. Other types go to `next`, the planner it wraps.
#[derive(Debug)]
pub(crate) struct JsonTypes {
    pub next: Option<Arc<dyn datafusion::logical_expr::planner::TypePlanner>>,
}

impl datafusion::logical_expr::planner::TypePlanner for JsonTypes {
    fn plan_type_field(
        &self,
        sql_type: &datafusion::sql::sqlparser::ast::DataType,
    ) -> datafusion::error::Result<Option<FieldRef>> {
        use datafusion::sql::sqlparser::ast::DataType as Sql;
        match (sql_type, &self.next) {
            (Sql::JSON | Sql::JSONB, _) => Ok(Some(json_field(""))),
            // `'…'::uuid` and `$1::uuid`: text, as the tables keep ids (DataFusion has no
            // UUID type: "Unsupported SQL type UUID").
            (Sql::Uuid, _) => Ok(Some(Arc::new(Field::new("", DataType::Utf8, true)))),
            (_, Some(next)) => next.plan_type_field(sql_type),
            (_, None) => Ok(None),
        }
    }
}

pub(super) fn invalid(message: impl Into<String>) -> DataFusionError {
    SqlError::new(SqlState::INVALID_PARAMETER_VALUE, message).into()
}

// ---------------------------------------------------------------------------------------------
// Values

/// A JSON value built from Arrow values (or parsed from JSON text), before it is written.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    /// A number in its output form: PostgreSQL's text of the value, as `numeric` prints it in
    /// `jsonb`.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
    /// JSON text embedded as it is (a `json` value inside `json`), already validated.
    Verbatim(String),
}

/// Converts Arrow values to [`Json`] in one flavor.
#[derive(Clone, Copy)]
pub(super) struct Convert {
    pub(super) flavor: Flavor,
}

impl Convert {
    /// Value `row` of `array`; `json` when the array's field marks it as JSON text.
    pub(super) fn value(self, array: &dyn Array, json: bool, row: usize) -> Result<Json> {
        match array.data_type() {
            DataType::Null => return Ok(Json::Null),
            DataType::Union(fields, _) => {
                let union = array.as_union();
                let id = union.type_id(row);
                let json = fields
                    .iter()
                    .find(|(i, _)| *i == id)
                    .is_some_and(|(_, f)| is_json_field(f));
                return self.value(union.child(id).as_ref(), json, union.value_offset(row));
            }
            DataType::Dictionary(_, values) => {
                let one = cast(&array.slice(row, 1), values)?;
                return self.value(one.as_ref(), json, 0);
            }
            _ => {}
        }
        if array.is_null(row) {
            return Ok(Json::Null);
        }
        let number = |text: String| self.number(text);
        macro_rules! int {
            ($t:ty) => {
                Json::Number(array.as_primitive::<$t>().value(row).to_string())
            };
        }
        Ok(match array.data_type() {
            DataType::Boolean => Json::Bool(array.as_boolean().value(row)),
            DataType::Int8 => int!(Int8Type),
            DataType::Int16 => int!(Int16Type),
            DataType::Int32 => int!(Int32Type),
            DataType::Int64 => int!(Int64Type),
            DataType::UInt8 => int!(UInt8Type),
            DataType::UInt16 => int!(UInt16Type),
            DataType::UInt32 => int!(UInt32Type),
            DataType::UInt64 => int!(UInt64Type),
            DataType::Float16 => {
                let v = array.as_primitive::<Float16Type>().value(row).to_f32();
                self.float(f64::from(v), float_text(&format!("{v:e}"), 6))?
            }
            DataType::Float32 => {
                let v = array.as_primitive::<Float32Type>().value(row);
                self.float(f64::from(v), float_text(&format!("{v:e}"), 6))?
            }
            DataType::Float64 => {
                let v = array.as_primitive::<Float64Type>().value(row);
                self.float(v, float_text(&format!("{v:e}"), 15))?
            }
            DataType::Decimal32(..) => {
                number(array.as_primitive::<Decimal32Type>().value_as_string(row))?
            }
            DataType::Decimal64(..) => {
                number(array.as_primitive::<Decimal64Type>().value_as_string(row))?
            }
            DataType::Decimal128(..) => {
                number(array.as_primitive::<Decimal128Type>().value_as_string(row))?
            }
            DataType::Decimal256(..) => {
                number(array.as_primitive::<Decimal256Type>().value_as_string(row))?
            }
            DataType::Utf8 => self.text(array.as_string::<i32>().value(row), json)?,
            DataType::LargeUtf8 => self.text(array.as_string::<i64>().value(row), json)?,
            DataType::Utf8View => self.text(array.as_string_view().value(row), json)?,
            DataType::Binary => Json::String(bytea(array.as_binary::<i32>().value(row))),
            DataType::LargeBinary => Json::String(bytea(array.as_binary::<i64>().value(row))),
            DataType::BinaryView => Json::String(bytea(array.as_binary_view().value(row))),
            DataType::FixedSizeBinary(_) => {
                Json::String(bytea(array.as_fixed_size_binary().value(row)))
            }
            DataType::Timestamp(unit, zone) => {
                let count = match unit {
                    TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row),
                    TimeUnit::Millisecond => {
                        array.as_primitive::<TimestampMillisecondType>().value(row)
                    }
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().value(row)
                    }
                    TimeUnit::Nanosecond => {
                        array.as_primitive::<TimestampNanosecondType>().value(row)
                    }
                };
                Json::String(timestamp_text(to_micros(count, unit), zone.as_deref())?)
            }
            DataType::Date32 => {
                let days = array.as_primitive::<Date32Type>().value(row);
                Json::String(date_text(i64::from(days))?)
            }
            DataType::Date64 => {
                let millis = array.as_primitive::<Date64Type>().value(row);
                Json::String(date_text(millis.div_euclid(86_400_000))?)
            }
            DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Interval(_)
            | DataType::Duration(_) => {
                match crate::sql::text_cast::postgres_text(&array.slice(row, 1)) {
                    Some(text) => Json::String(text?.value(0).to_string()),
                    None => internal_err!("no text form for {}", array.data_type())?,
                }
            }
            DataType::List(field) => self.list(array.as_list::<i32>(), field, row)?,
            DataType::LargeList(field) => self.list(array.as_list::<i64>(), field, row)?,
            DataType::FixedSizeList(field, _) => {
                let values = array.as_fixed_size_list().value(row);
                self.elements(values.as_ref(), is_json_field(field))?
            }
            DataType::Struct(fields) => {
                let s = array.as_struct();
                let mut members = Vec::with_capacity(fields.len());
                for (field, column) in fields.iter().zip(s.columns()) {
                    let value = self.value(column.as_ref(), is_json_field(field), row)?;
                    members.push((field.name().clone(), value));
                }
                Json::Object(members)
            }
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return internal_err!("map entries are not a struct");
                };
                let entries = array.as_map().value(row);
                let mut members = Vec::with_capacity(entries.len());
                for i in 0..entries.len() {
                    let key = Convert {
                        flavor: Flavor::Json,
                    }
                    .value(entries.column(0).as_ref(), false, i)?;
                    let Some(key) = key_text(key) else {
                        return Err(invalid("map keys must not be null"));
                    };
                    let json = kv.get(1).is_some_and(|f| is_json_field(f));
                    members.push((key, self.value(entries.column(1).as_ref(), json, i)?));
                }
                Json::Object(members)
            }
            // Any other type as its text, as PostgreSQL writes types JSON has no form for.
            _ => {
                let options = arrow::util::display::FormatOptions::default();
                let formatter = arrow::util::display::ArrayFormatter::try_new(array, &options)?;
                Json::String(formatter.value(row).to_string())
            }
        })
    }

    fn list<O: OffsetSizeTrait>(
        self,
        list: &GenericListArray<O>,
        field: &Field,
        row: usize,
    ) -> Result<Json> {
        self.elements(list.value(row).as_ref(), is_json_field(field))
    }

    fn elements(self, values: &dyn Array, json: bool) -> Result<Json> {
        (0..values.len())
            .map(|i| self.value(values, json, i))
            .collect::<Result<Vec<_>>>()
            .map(Json::Array)
    }

    /// A number given as PostgreSQL's output text: as it is in `json`, as `numeric` reads
    /// and prints it in `jsonb`.
    fn number(self, text: String) -> Result<Json> {
        Ok(Json::Number(match self.flavor {
            Flavor::Json => text,
            Flavor::Jsonb => numeric_text(&text)?,
        }))
    }

    /// A float: NaN and the infinities are strings in both flavors (PostgreSQL's `to_json`
    /// quotes output that is not a JSON number).
    fn float(self, value: f64, text: String) -> Result<Json> {
        if value.is_finite() {
            self.number(text)
        } else {
            Ok(Json::String(text))
        }
    }

    /// Text: a string, or when its field says it is JSON, the JSON it holds.
    fn text(self, text: &str, json: bool) -> Result<Json> {
        if !json {
            return Ok(Json::String(text.to_string()));
        }
        match parse(text, self.flavor) {
            Ok(value) => Ok(match self.flavor {
                Flavor::Json => Json::Verbatim(text.to_string()),
                Flavor::Jsonb => value,
            }),
            Err(Bad::NotJson) => Ok(Json::String(text.to_string())),
            Err(Bad::Error(e)) => Err(e),
        }
    }
}

/// `bytea`'s hex output form.
fn bytea(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The text of an object key: keys are scalars (`json_build_object(1, …)` has key `"1"`).
pub(super) fn key_text(value: Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::Bool(b) => Some(b.to_string()),
        Json::Number(s) | Json::String(s) | Json::Verbatim(s) => Some(s),
        // Not reached: nested keys are refused by type before any value is converted.
        Json::Array(_) | Json::Object(_) => Some(String::new()),
    }
}

/// Whether values of `field` can be object keys: PostgreSQL refuses arrays, composites and
/// JSON.
fn scalar_key(field: &Field) -> bool {
    !is_json_field(field)
        && !matches!(
            field.data_type(),
            DataType::List(_)
                | DataType::LargeList(_)
                | DataType::FixedSizeList(..)
                | DataType::ListView(_)
                | DataType::LargeListView(_)
                | DataType::Struct(_)
                | DataType::Map(..)
                | DataType::Union(..)
        )
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A float as PostgreSQL 15 prints it (`float8out` / `float4out`, `extra_float_digits` 1): the
/// shortest digits that read back to the same value, in positional form for decimal exponents
/// from -4 up to `max_fixed` - 1 (15 for `float8`, 6 for `float4`), else as `1.5e-07`.
/// `scientific` is Rust's `{:e}` of the value (shortest digits too).
fn float_text(scientific: &str, max_fixed: i32) -> String {
    let (negative, rest) = match scientific.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, scientific),
    };
    let Some((mantissa, exponent)) = rest.split_once('e') else {
        // `inf` / `NaN`: PostgreSQL's spelling.
        return match (negative, rest) {
            (_, "NaN") => "NaN".into(),
            (true, _) => "-Infinity".into(),
            (false, _) => "Infinity".into(),
        };
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if digits.bytes().all(|d| d == b'0') {
        out.push('0');
        return out;
    }
    let len = digits.len() as i32;
    if exponent < -4 || exponent >= max_fixed {
        out.push_str(&digits[..1]);
        if len > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exponent.unsigned_abs());
    } else if exponent >= 0 {
        let point = (exponent + 1) as usize;
        if digits.len() <= point {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exponent - 1) as usize));
        out.push_str(&digits);
    }
    out
}

/// A JSON number as PostgreSQL's `numeric` reads and prints it (how `jsonb` keeps numbers):
/// the exponent applied (`1e2` → `100`, `1.50e1` → `15.0`, `1E-2` → `0.01`), the scale kept
/// (`1.50`), no negative zero. Past `numeric`'s range: 22003.
fn numeric_text(text: &str) -> Result<String> {
    let overflow = || {
        SqlError::new(
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            "value overflows numeric format",
        )
    };
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, "0"),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
    let exponent: i64 = match exponent.parse() {
        Ok(e) => e,
        Err(_)
            if exponent
                .trim_start_matches('-')
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            return Err(overflow().into());
        }
        Err(_) => return internal_err!("not a number: {text}"),
    };
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
        || (whole.is_empty() && fraction.is_empty())
    {
        return internal_err!("not a number: {text}");
    }
    let digits = format!("{whole}{fraction}");
    // The decimal point sits `point` digits into `digits` (negative: zeros before them).
    let point = whole.len() as i64 + exponent;
    let scale = (fraction.len() as i64 - exponent).max(0);
    if point > NUMERIC_MAX_WEIGHT_DIGITS || scale > NUMERIC_MAX_SCALE {
        return Err(overflow().into());
    }
    let mut integer = String::new();
    let mut decimals = String::new();
    if point <= 0 {
        decimals.extend(std::iter::repeat_n('0', (-point) as usize));
        decimals.push_str(&digits);
    } else if point as usize >= digits.len() {
        integer.push_str(&digits);
        integer.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        integer.push_str(&digits[..point as usize]);
        decimals.push_str(&digits[point as usize..]);
    }
    // `scale` is exactly the digits after the point; any beyond it can only be zeros of the
    // exponent's shift, which there are none of.
    decimals.truncate(scale as usize);
    decimals.extend(std::iter::repeat_n('0', scale as usize - decimals.len()));
    let integer = integer.trim_start_matches('0');
    let zero = integer.is_empty() && decimals.bytes().all(|b| b == b'0');
    let mut out = String::with_capacity(integer.len() + decimals.len() + 3);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(if integer.is_empty() { "0" } else { integer });
    if !decimals.is_empty() {
        out.push('.');
        out.push_str(&decimals);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Dates and times

/// A timestamp as PostgreSQL's `to_json` writes it (ISO 8601, XSD style):
/// `2026-01-01T10:00:00.5` without a time zone, `…+00:00` for a `timestamp with time zone` in
/// UTC (the zone queries compute in). Another zone is the local wall clock without an
/// offset, as `ts AT TIME ZONE 'Europe/Berlin'` (a `timestamp` in PostgreSQL) gives it.
fn timestamp_text(micros: i64, zone: Option<&str>) -> Result<String> {
    let Some(utc) = chrono::DateTime::from_timestamp_micros(micros) else {
        return Err(
            SqlError::new(SqlState::DATETIME_FIELD_OVERFLOW, "timestamp out of range").into(),
        );
    };
    let utc_zone = zone.is_some_and(super::is_utc_zone);
    let local: NaiveDateTime = match zone {
        Some(z) if !utc_zone => {
            let tz: arrow::array::timezone::Tz = z.parse()?;
            utc.with_timezone(&tz).naive_local()
        }
        _ => utc.naive_utc(),
    };
    let mut out = String::with_capacity(32);
    write_ymd(local.date(), &mut out);
    let _ = write!(
        out,
        "T{:02}:{:02}:{:02}",
        local.hour(),
        local.minute(),
        local.second()
    );
    let fraction = local.nanosecond() / 1000;
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    if utc_zone {
        out.push_str("+00:00");
    }
    if local.year() <= 0 {
        out.push_str(" BC");
    }
    Ok(out)
}

/// A date as `YYYY-MM-DD` (` BC` before year 1), from days since 1970-01-01.
fn date_text(days: i64) -> Result<String> {
    let date = i32::try_from(days + 719_163)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt);
    let Some(date) = date else {
        return Err(SqlError::new(SqlState::DATETIME_FIELD_OVERFLOW, "date out of range").into());
    };
    let mut out = String::with_capacity(16);
    write_ymd(date, &mut out);
    if date.year() <= 0 {
        out.push_str(" BC");
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// JSON text in

/// Why JSON text was not read.
#[derive(Debug)]
pub(super) enum Bad {
    /// It is not JSON (PostgreSQL would refuse it as `json`).
    NotJson,
    /// It is JSON PostgreSQL would refuse to store: nested too deep, a number `numeric`
    /// cannot hold.
    Error(DataFusionError),
}

/// Reads JSON text as PostgreSQL's `json` input accepts it (RFC 8259; `\u0000` is not
/// accepted in `jsonb`, as it cannot become text); numbers are kept as written for
/// `json`, as `numeric` prints them for `jsonb`.
pub(super) fn parse(text: &str, flavor: Flavor) -> std::result::Result<Json, Bad> {
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
        flavor,
    };
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.at == parser.text.len() {
        Ok(value)
    } else {
        Err(Bad::NotJson)
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    flavor: Flavor,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Json, Bad> {
        if depth >= MAX_DEPTH {
            return Err(Bad::Error(
                SqlError::new(
                    SqlState::STATEMENT_TOO_COMPLEX,
                    format!("JSON value nested more than {MAX_DEPTH} levels deep"),
                )
                .into(),
            ));
        }
        self.skip_space();
        match self.text.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.skip_space();
                if self.eat(b'}') {
                    return Ok(Json::Object(members));
                }
                loop {
                    self.skip_space();
                    let key = self.string()?;
                    self.skip_space();
                    if !self.eat(b':') {
                        return Err(Bad::NotJson);
                    }
                    members.push((key, self.value(depth + 1)?));
                    self.skip_space();
                    if self.eat(b'}') {
                        return Ok(Json::Object(members));
                    }
                    if !self.eat(b',') {
                        return Err(Bad::NotJson);
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.skip_space();
                if self.eat(b']') {
                    return Ok(Json::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.skip_space();
                    if self.eat(b']') {
                        return Ok(Json::Array(items));
                    }
                    if !self.eat(b',') {
                        return Err(Bad::NotJson);
                    }
                }
            }
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.word(b"true", Json::Bool(true)),
            Some(b'f') => self.word(b"false", Json::Bool(false)),
            Some(b'n') => self.word(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Bad::NotJson),
        }
    }

    fn word(&mut self, word: &[u8], value: Json) -> std::result::Result<Json, Bad> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            // `truex` is one bad token in PostgreSQL's lexer, not `true` then garbage.
            if self
                .text
                .get(self.at)
                .is_some_and(u8::is_ascii_alphanumeric)
            {
                return Err(Bad::NotJson);
            }
            Ok(value)
        } else {
            Err(Bad::NotJson)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.text.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        self.at - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> std::result::Result<Json, Bad> {
        let start = self.at;
        self.eat(b'-');
        let first = self.text.get(self.at).copied();
        let whole = self.digits();
        if whole == 0 || (first == Some(b'0') && whole > 1) {
            return Err(Bad::NotJson);
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(Bad::NotJson);
        }
        if self.eat(b'e') || self.eat(b'E') {
            let _ = self.eat(b'+') || self.eat(b'-');
            if self.digits() == 0 {
                return Err(Bad::NotJson);
            }
        }
        if self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'.')
        {
            return Err(Bad::NotJson);
        }
        // Only ASCII was consumed.
        let text = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        match self.flavor {
            Flavor::Json => Ok(Json::Number(text)),
            Flavor::Jsonb => numeric_text(&text).map(Json::Number).map_err(Bad::Error),
        }
    }

    fn hex4(&mut self) -> std::result::Result<u32, Bad> {
        let hex = self.text.get(self.at..self.at + 4).ok_or(Bad::NotJson)?;
        let hex = std::str::from_utf8(hex).map_err(|_| Bad::NotJson)?;
        let value = u32::from_str_radix(hex, 16).map_err(|_| Bad::NotJson)?;
        self.at += 4;
        Ok(value)
    }

    fn string(&mut self) -> std::result::Result<String, Bad> {
        if !self.eat(b'"') {
            return Err(Bad::NotJson);
        }
        let mut out = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.at) else {
                return Err(Bad::NotJson);
            };
            self.at += 1;
            match byte {
                b'"' => break,
                0..=0x1f => return Err(Bad::NotJson),
                b'\\' => {
                    let Some(&escape) = self.text.get(self.at) else {
                        return Err(Bad::NotJson);
                    };
                    self.at += 1;
                    match escape {
                        b'"' | b'\\' | b'/' => out.push(escape),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xd800..0xdc00).contains(&code) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(Bad::NotJson);
                                }
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err(Bad::NotJson);
                                }
                                code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                            } else if (0xdc00..0xe000).contains(&code) {
                                return Err(Bad::NotJson);
                            }
                            if code == 0 && self.flavor == Flavor::Jsonb {
                                return Err(Bad::NotJson);
                            }
                            let c = char::from_u32(code).ok_or(Bad::NotJson)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(Bad::NotJson),
                    }
                }
                _ => out.push(byte),
            }
        }
        String::from_utf8(out).map_err(|_| Bad::NotJson)
    }
}

// ---------------------------------------------------------------------------------------------
// JSON text out

/// A JSON string: quoted, with PostgreSQL's escapes (`escape_json`): `\"`, `\\`, `\b`, `\f`,
/// `\n`, `\r`, `\t`, other control characters as `\u00XX`, everything else as it is.
pub(super) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(super) fn write_scalar(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => write_string(out, s),
        Json::Verbatim(text) => out.push_str(text),
        Json::Array(_) | Json::Object(_) => {}
    }
}

/// `json`'s form of a value inside another (`to_json`, `row_to_json`): no spaces,
/// `[1,2]`, `{"a":1}`; `separator` between the outermost items (`",\n "` when pretty).
pub(super) fn write_json(out: &mut String, value: &Json, separator: &str) {
    match value {
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                write_json(out, item, ",");
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                write_string(out, key);
                out.push(':');
                write_json(out, item, ",");
            }
            out.push('}');
        }
        scalar => write_scalar(out, scalar),
    }
}

/// An object as `json_build_object` writes it in `json` (`{"a" : 1, "b" : 2}`), with `pad`
/// inside the braces (`json_object_agg`: `{ "a" : 1 }`).
pub(super) fn write_json_object(out: &mut String, members: &[(String, Json)], pad: &str) {
    out.push('{');
    out.push_str(pad);
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_string(out, key);
        out.push_str(" : ");
        write_json(out, value, ",");
    }
    out.push_str(pad);
    out.push('}');
}

/// `jsonb`'s form: `[1, 2]`, `{"a": 1}`, keys shorter-first then bytewise, the last of
/// repeated keys.
pub(super) fn write_jsonb(out: &mut String, value: &Json) {
    match value {
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(out, item);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, item)) in jsonb_members(members).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_jsonb(out, item);
            }
            out.push('}');
        }
        scalar => write_scalar(out, scalar),
    }
}

/// An object's members as `jsonb` keeps them: sorted by key length, then bytes; of a
/// repeated key, the last.
pub(super) fn jsonb_members(members: &[(String, Json)]) -> Vec<(&String, &Json)> {
    let mut sorted: Vec<(&String, &Json)> = members.iter().map(|(k, v)| (k, v)).collect();
    // Stable: the members of one key stay in their order, and the last is kept.
    sorted.sort_by(|a, b| {
        a.0.len()
            .cmp(&b.0.len())
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    let mut kept: Vec<(&String, &Json)> = Vec::with_capacity(sorted.len());
    for member in sorted {
        match kept.last_mut() {
            Some(last) if last.0 == member.0 => *last = member,
            _ => kept.push(member),
        }
    }
    kept
}

// ---------------------------------------------------------------------------------------------
// Scalar functions

/// Arguments as arrays of one length: one row when every argument is a constant.
pub(super) fn arrays(args: &ScalarFunctionArgs) -> Result<(Vec<ArrayRef>, usize)> {
    let rows = if args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)))
    {
        1
    } else {
        args.number_rows
    };
    let arrays = args
        .args
        .iter()
        .map(|a| a.to_array(rows))
        .collect::<Result<Vec<_>>>()?;
    Ok((arrays, rows))
}

/// `json_build_array(VARIADIC "any")` and `jsonb_build_array`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildArray {
    signature: Signature,
    flavor: Flavor,
}

impl JsonBuildArray {
    pub fn json() -> Self {
        Self::new(Flavor::Json)
    }

    pub fn jsonb() -> Self {
        Self::new(Flavor::Jsonb)
    }

    fn new(flavor: Flavor) -> Self {
        JsonBuildArray {
            signature: variadic(),
            flavor,
        }
    }
}

/// Any number of arguments of any types, none included.
fn variadic() -> Signature {
    Signature::one_of(
        vec![TypeSignature::VariadicAny, TypeSignature::Nullary],
        Volatility::Immutable,
    )
}

impl ScalarUDFImpl for JsonBuildArray {
    fn name(&self) -> &str {
        match self.flavor {
            Flavor::Json => "json_build_array",
            Flavor::Jsonb => "jsonb_build_array",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(json_field(self.name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, rows) = arrays(&args)?;
        let json: Vec<bool> = args.arg_fields.iter().map(|f| is_json_field(f)).collect();
        let convert = Convert {
            flavor: self.flavor,
        };
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        let mut text = String::new();
        for row in 0..rows {
            text.clear();
            let items = arrays
                .iter()
                .zip(&json)
                .map(|(a, json)| convert.value(a.as_ref(), *json, row))
                .collect::<Result<Vec<_>>>()?;
            match self.flavor {
                Flavor::Json => {
                    text.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            text.push_str(", ");
                        }
                        write_json(&mut text, item, ",");
                    }
                    text.push(']');
                }
                Flavor::Jsonb => write_jsonb(&mut text, &Json::Array(items)),
            }
            out.append_value(&text);
        }
        shaped(&args.args, Arc::new(out.finish()))
    }
}

/// `json_build_object(VARIADIC "any")` and `jsonb_build_object`: keys and values alternating.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonBuildObject {
    signature: Signature,
    flavor: Flavor,
}

impl JsonBuildObject {
    pub fn json() -> Self {
        Self::new(Flavor::Json)
    }

    pub fn jsonb() -> Self {
        Self::new(Flavor::Jsonb)
    }

    fn new(flavor: Flavor) -> Self {
        JsonBuildObject {
            signature: variadic(),
            flavor,
        }
    }
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        match self.flavor {
            Flavor::Json => "json_build_object",
            Flavor::Jsonb => "jsonb_build_object",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(json_field(self.name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if !args.args.len().is_multiple_of(2) {
            return Err(invalid("argument list must have even number of elements"));
        }
        for (i, field) in args.arg_fields.iter().enumerate().step_by(2) {
            if !scalar_key(field) {
                return Err(invalid(
                    "key value must be scalar, not array, composite, or json",
                ));
            }
            // A NULL constant key fails whether or not there are rows, as in PostgreSQL.
            if field.data_type() == &DataType::Null {
                return Err(self.null_key(i));
            }
        }
        let (arrays, rows) = arrays(&args)?;
        let json: Vec<bool> = args.arg_fields.iter().map(|f| is_json_field(f)).collect();
        let convert = Convert {
            flavor: self.flavor,
        };
        let keys = Convert {
            flavor: Flavor::Json,
        };
        let mut out = StringBuilder::with_capacity(rows, rows * 32);
        let mut text = String::new();
        for row in 0..rows {
            let mut members = Vec::with_capacity(arrays.len() / 2);
            for (i, pair) in arrays.chunks_exact(2).enumerate() {
                let Some(key) = key_text(keys.value(pair[0].as_ref(), false, row)?) else {
                    return Err(self.null_key(2 * i));
                };
                let value = convert.value(pair[1].as_ref(), json[2 * i + 1], row)?;
                members.push((key, value));
            }
            text.clear();
            match self.flavor {
                Flavor::Json => write_json_object(&mut text, &members, ""),
                Flavor::Jsonb => write_jsonb(&mut text, &Json::Object(members)),
            }
            out.append_value(&text);
        }
        shaped(&args.args, Arc::new(out.finish()))
    }
}

impl JsonBuildObject {
    /// PostgreSQL's error for a NULL key at (0-based) argument `index`.
    fn null_key(&self, index: usize) -> DataFusionError {
        match self.flavor {
            Flavor::Json => invalid(format!("argument {} cannot be null", index + 1)),
            Flavor::Jsonb => invalid(format!("argument {}: key must not be null", index + 1)),
        }
    }
}

/// Which one-value conversion a [`ToJson`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ToJsonKind {
    /// `to_json(anyelement)` / `to_jsonb`.
    Any(Flavor),
    /// `row_to_json(record [, pretty])`: a struct.
    Row,
    /// `array_to_json(anyarray [, pretty])`: a list.
    Array,
}

/// `to_json`, `to_jsonb`, `row_to_json` and `array_to_json`: one value as JSON, NULL for
/// NULL (they are strict in PostgreSQL).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJson {
    signature: Signature,
    kind: ToJsonKind,
}

impl ToJson {
    pub fn json() -> Self {
        Self::new(ToJsonKind::Any(Flavor::Json))
    }

    pub fn jsonb() -> Self {
        Self::new(ToJsonKind::Any(Flavor::Jsonb))
    }

    pub fn row() -> Self {
        Self::new(ToJsonKind::Row)
    }

    pub fn array() -> Self {
        Self::new(ToJsonKind::Array)
    }

    fn new(kind: ToJsonKind) -> Self {
        let signature = match kind {
            ToJsonKind::Any(_) => Signature::any(1, Volatility::Immutable),
            ToJsonKind::Row | ToJsonKind::Array => Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        };
        ToJson { signature, kind }
    }
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        match self.kind {
            ToJsonKind::Any(Flavor::Json) => "to_json",
            ToJsonKind::Any(Flavor::Jsonb) => "to_jsonb",
            ToJsonKind::Row => "row_to_json",
            ToJsonKind::Array => "array_to_json",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<&DataType> = args.arg_fields.iter().map(|f| f.data_type()).collect();
        let fits = match (self.kind, types.as_slice()) {
            (ToJsonKind::Any(_), [_]) => true,
            (ToJsonKind::Row, [DataType::Struct(_) | DataType::Null, rest @ ..]) => {
                matches!(rest, [] | [DataType::Boolean | DataType::Null])
            }
            (
                ToJsonKind::Array,
                [
                    DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::Null,
                    rest @ ..,
                ],
            ) => matches!(rest, [] | [DataType::Boolean | DataType::Null]),
            _ => false,
        };
        if !fits {
            let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            let wants = match self.kind {
                ToJsonKind::Row => "a row (struct) and an optional boolean",
                _ => "an array and an optional boolean",
            };
            return Err(SqlError::new(
                SqlState::UNDEFINED_FUNCTION,
                format!(
                    "function {}({}) does not exist: it takes {wants}",
                    self.name(),
                    types.join(", ")
                ),
            )
            .into());
        }
        Ok(json_field(self.name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (arrays, rows) = arrays(&args)?;
        let Some(value) = arrays.first() else {
            return internal_err!("{} without an argument", self.name());
        };
        let json = args.arg_fields.first().is_some_and(|f| is_json_field(f));
        let pretty = match arrays.get(1) {
            Some(p) => Some(cast(p, &DataType::Boolean)?),
            None => None,
        };
        let pretty: Option<&BooleanArray> = pretty.as_ref().map(|p| p.as_boolean());
        let flavor = match self.kind {
            ToJsonKind::Any(flavor) => flavor,
            ToJsonKind::Row | ToJsonKind::Array => Flavor::Json,
        };
        let convert = Convert { flavor };
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        let mut text = String::new();
        for row in 0..rows {
            if value.is_null(row) || pretty.is_some_and(|p| p.is_null(row)) {
                out.append_null();
                continue;
            }
            let separator = if pretty.is_some_and(|p| p.value(row)) {
                ",\n "
            } else {
                ","
            };
            text.clear();
            let value = convert.value(value.as_ref(), json, row)?;
            match flavor {
                Flavor::Json => write_json(&mut text, &value, separator),
                Flavor::Jsonb => write_jsonb(&mut text, &value),
            }
            out.append_value(&text);
        }
        shaped(&args.args, Arc::new(out.finish()))
    }
}

// ---------------------------------------------------------------------------------------------
// Aggregates

/// `json_agg(any)` and `jsonb_agg(any)`: the group's values as a JSON array, NULLs as
/// `null`, NULL for no rows. DataFusion's `array_agg` collects the values (so `ORDER BY`,
/// `DISTINCT`, `FILTER`, grouping and windows are its own); they become JSON at the end.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonAgg {
    inner: AggregateUDF,
    flavor: Flavor,
}

impl JsonAgg {
    pub fn json() -> Self {
        Self::new(Flavor::Json)
    }

    pub fn jsonb() -> Self {
        Self::new(Flavor::Jsonb)
    }

    fn new(flavor: Flavor) -> Self {
        JsonAgg {
            inner: AggregateUDF::from(ArrayAgg::default()),
            flavor,
        }
    }

    /// How elements of `field` are written.
    fn elements(&self, field: &Field) -> Elements {
        Elements {
            flavor: self.flavor,
            json: is_json_field(field),
            // PostgreSQL's `json_agg` starts each array or row after the first on a new line.
            structured: matches!(
                field.data_type(),
                DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::Struct(_)
            ),
        }
    }
}

impl AggregateUDFImpl for JsonAgg {
    fn name(&self) -> &str {
        match self.flavor {
            Flavor::Json => "json_agg",
            Flavor::Jsonb => "jsonb_agg",
        }
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field(&self, _arg_fields: &[FieldRef]) -> Result<FieldRef> {
        Ok(json_field(self.name()))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(field) = args.expr_fields.first() else {
            return internal_err!("{} without an argument", self.name());
        };
        let elements = self.elements(field);
        Ok(Box::new(JsonAggAccumulator {
            inner: self.inner.accumulator(args)?,
            elements,
        }))
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(field) = args.expr_fields.first() else {
            return internal_err!("{} without an argument", self.name());
        };
        let elements = self.elements(field);
        Ok(Box::new(JsonAggAccumulator {
            inner: self.inner.create_sliding_accumulator(args)?,
            elements,
        }))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let Some(field) = args.expr_fields.first() else {
            return internal_err!("{} without an argument", self.name());
        };
        let elements = self.elements(field);
        Ok(Box::new(JsonAggGroups {
            inner: self.inner.create_groups_accumulator(args)?,
            elements,
        }))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        let inner = self
            .inner
            .clone()
            .with_beneficial_ordering(beneficial_ordering)?;
        Ok(inner.map(|inner| {
            Arc::new(JsonAgg {
                inner,
                flavor: self.flavor,
            }) as Arc<dyn AggregateUDFImpl>
        }))
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Reversed(Arc::new(AggregateUDF::from(JsonAgg::new(self.flavor))))
    }
}

/// How a `json_agg` writes its elements.
#[derive(Debug, Clone, Copy)]
struct Elements {
    flavor: Flavor,
    /// The values are JSON text.
    json: bool,
    /// The values are arrays or rows.
    structured: bool,
}

impl Elements {
    /// Row `row` of `array_agg`'s lists as the aggregate's JSON; NULL for a NULL list (no rows).
    fn text(self, lists: &ListArray, row: usize, out: &mut String) -> Result<bool> {
        if lists.is_null(row) {
            return Ok(false);
        }
        let values = lists.value(row);
        let convert = Convert {
            flavor: self.flavor,
        };
        out.clear();
        match self.flavor {
            Flavor::Json => {
                out.push('[');
                for i in 0..values.len() {
                    if i > 0 {
                        out.push_str(", ");
                        if self.structured && !values.is_null(i) {
                            out.push_str("\n ");
                        }
                    }
                    let value = convert.value(values.as_ref(), self.json, i)?;
                    write_json(out, &value, ",");
                }
                out.push(']');
            }
            Flavor::Jsonb => {
                let items = (0..values.len())
                    .map(|i| convert.value(values.as_ref(), self.json, i))
                    .collect::<Result<Vec<_>>>()?;
                write_jsonb(out, &Json::Array(items));
            }
        }
        Ok(true)
    }
}

#[derive(Debug)]
struct JsonAggAccumulator {
    inner: Box<dyn Accumulator>,
    elements: Elements,
}

impl Accumulator for JsonAggAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let ScalarValue::List(lists) = self.inner.evaluate()? else {
            return internal_err!("array_agg did not give a list");
        };
        let mut text = String::new();
        Ok(ScalarValue::Utf8(
            self.elements.text(&lists, 0, &mut text)?.then_some(text),
        ))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

struct JsonAggGroups {
    inner: Box<dyn GroupsAccumulator>,
    elements: Elements,
}

impl GroupsAccumulator for JsonAggGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let lists = self.inner.evaluate(emit_to)?;
        let Some(lists) = lists.as_list_opt::<i32>() else {
            return internal_err!("array_agg did not give lists");
        };
        let mut out = StringBuilder::with_capacity(lists.len(), lists.len() * 16);
        let mut text = String::new();
        for row in 0..lists.len() {
            if self.elements.text(lists, row, &mut text)? {
                out.append_value(&text);
            } else {
                out.append_null();
            }
        }
        Ok(Arc::new(out.finish()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

// ---------------------------------------------------------------------------------------------
// ROW(…) field names

/// The functions here, whose arguments' struct field names become JSON keys.
const TAKES_ROWS: [&str; 10] = [
    "json_build_array",
    "jsonb_build_array",
    "json_build_object",
    "jsonb_build_object",
    "to_json",
    "to_jsonb",
    "row_to_json",
    "json_agg",
    "jsonb_agg",
    "array_to_json",
];

/// Gives a `ROW(…)` constructor passed to a function here PostgreSQL's field names, `f1`,
/// `f2`, …: DataFusion's `row` is its `struct`, whose fields are `c0`, `c1`, …, so
/// `row_to_json(row(1, 'a'))` gave `{"c0":1,"c1":"a"}` where PostgreSQL gives
/// `{"f1":1,"f2":"a"}`. Only a direct argument is renamed (the JSON keys are all its names
/// decide); an analyzer rule, so it runs before constant folding turns the call into a
/// struct value whose names can no longer be told from `named_struct`'s.
#[derive(Debug)]
pub struct PgRowFieldNames;

impl datafusion::optimizer::AnalyzerRule for PgRowFieldNames {
    fn analyze(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
        _config: &datafusion::common::config::ConfigOptions,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        use datafusion::common::tree_node::{TransformedResult, TreeNode};
        plan.transform_up_with_subqueries(|plan| {
            let names = datafusion::logical_expr::expr_rewriter::NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(rename_rows)
                    .map(|t| t.update_data(|e| name.restore(e)))
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "pg_row_field_names"
    }
}

/// Whether `expr` is a `row(…)` / `struct(…)` call (the planner aliases `row(…)` by its text).
fn is_row(expr: &datafusion::logical_expr::Expr) -> bool {
    use datafusion::logical_expr::Expr;
    match expr {
        Expr::Alias(alias) => is_row(&alias.expr),
        Expr::ScalarFunction(f) => f.func.name() == "struct",
        _ => false,
    }
}

/// `row(a, b)` → `named_struct('f1', a, 'f2', b)`; anything else as it is.
fn named_row(expr: datafusion::logical_expr::Expr) -> datafusion::logical_expr::Expr {
    use datafusion::logical_expr::Expr;
    match expr {
        Expr::Alias(alias) if is_row(&alias.expr) => named_row(*alias.expr),
        Expr::ScalarFunction(f) if f.func.name() == "struct" => {
            let args = f
                .args
                .into_iter()
                .enumerate()
                .flat_map(|(i, arg)| [datafusion::prelude::lit(format!("f{}", i + 1)), arg])
                .collect();
            datafusion::functions::core::named_struct().call(args)
        }
        other => other,
    }
}

fn rename_rows(
    expr: datafusion::logical_expr::Expr,
) -> Result<datafusion::common::tree_node::Transformed<datafusion::logical_expr::Expr>> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::Expr;
    Ok(match expr {
        Expr::ScalarFunction(mut f)
            if TAKES_ROWS.contains(&f.func.name()) && f.args.iter().any(is_row) =>
        {
            f.args = f.args.into_iter().map(named_row).collect();
            Transformed::yes(Expr::ScalarFunction(f))
        }
        Expr::AggregateFunction(mut f)
            if TAKES_ROWS.contains(&f.func.name()) && f.params.args.iter().any(is_row) =>
        {
            f.params.args = f.params.args.into_iter().map(named_row).collect();
            Transformed::yes(Expr::AggregateFunction(f))
        }
        other => Transformed::no(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::text_cast::tests::micros;

    /// Expected texts are PostgreSQL 15's (`SELECT x::float8::text` with the defaults).
    #[test]
    fn floats_read_as_postgres_prints_them() {
        let f8 = |v: f64| float_text(&format!("{v:e}"), 15);
        let f4 = |v: f32| float_text(&format!("{v:e}"), 6);
        let cases = [
            (1.5, "1.5"),
            (1e100, "1e+100"),
            (1e15, "1e+15"),
            (123_456_789_012_345.0, "123456789012345"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123_456_789_012_345_678.0, "1.2345678901234568e+17"),
            (-0.0, "-0"),
            (0.0, "0"),
            (-2.5, "-2.5"),
            (5e-324, "5e-324"),
            (1e301, "1e+301"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (value, text) in cases {
            assert_eq!(f8(value), text, "{value:e}");
        }
        let cases = [
            (0.1f32, "0.1"),
            (1e6, "1e+06"),
            (1e5, "100000"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (1e-5, "1e-05"),
            (3.402_823_5e38, "3.4028235e+38"),
        ];
        for (value, text) in cases {
            assert_eq!(f4(value), text, "{value:e}");
        }
    }

    /// Expected texts are PostgreSQL 15's `'<text>'::jsonb` (numbers are `numeric` there).
    #[test]
    fn jsonb_numbers_are_numeric() {
        let cases = [
            ("1e2", "100"),
            ("1.50e1", "15.0"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("1E-2", "0.01"),
            ("0.000", "0.000"),
            ("1.50", "1.50"),
            ("-12.5", "-12.5"),
            ("12345678901234567890.5", "12345678901234567890.5"),
            ("1.5e-07", "0.00000015"),
            ("1.2345678901234568e+17", "123456789012345680"),
            ("00012", "12"),
        ];
        for (text, numeric) in cases {
            assert_eq!(numeric_text(text).expect(text), numeric, "{text}");
        }
        assert_eq!(
            numeric_text("1e+100").expect("1e100"),
            format!("1{}", "0".repeat(100))
        );
        assert_eq!(
            numeric_text("5e-324").expect("5e-324"),
            format!("0.{}5", "0".repeat(323))
        );
        assert!(numeric_text("1e1000000").is_err());
        assert!(numeric_text("1e99999999999999999999").is_err());
    }

    fn jsonb(text: &str) -> Option<String> {
        let value = parse(text, Flavor::Jsonb).ok()?;
        let mut out = String::new();
        write_jsonb(&mut out, &value);
        Some(out)
    }

    /// Expected texts are PostgreSQL 15's `'<text>'::jsonb`.
    #[test]
    fn jsonb_sorts_keys_keeps_the_last_and_decodes_escapes() {
        assert_eq!(
            jsonb(r#"{"b":1, "b":2, "aa":3, "\u00e9\/":"\u00e9\ud83d\ude00\n", "a": {"y": [1e2, true, null], "x": {}}}"#)
                .as_deref(),
            Some(r#"{"a": {"x": {}, "y": [100, true, null]}, "b": 2, "aa": 3, "é/": "é😀\n"}"#)
        );
        assert_eq!(jsonb(" [ ] ").as_deref(), Some("[]"));
        assert_eq!(jsonb("\"x\"").as_deref(), Some("\"x\""));
    }

    #[test]
    fn text_that_is_not_json_is_refused() {
        for text in [
            "",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "[1,]",
            "[1",
            "{\"a\"}",
            "{\"a\":1,}",
            "{a:1}",
            "tru",
            "truex",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\u{1}\"",
            "1 2",
            "'a'",
            "NaN",
        ] {
            assert!(
                matches!(parse(text, Flavor::Json), Err(Bad::NotJson)),
                "{text:?} read as JSON"
            );
        }
        // `\u0000` is JSON, but not text `jsonb` can hold.
        assert!(parse("\"\\u0000\"", Flavor::Json).is_ok());
        assert!(matches!(
            parse("\"\\u0000\"", Flavor::Jsonb),
            Err(Bad::NotJson)
        ));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(matches!(parse(&deep, Flavor::Json), Err(Bad::Error(_))));
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(parse(&fine, Flavor::Jsonb).is_ok());
    }

    /// Expected text is PostgreSQL 15's `to_json(E'…'::text)`.
    #[test]
    fn strings_are_escaped_as_postgres_escapes_them() {
        let mut out = String::new();
        write_string(
            &mut out,
            "a\"b\\c\nd\te\rf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}k é ☃ /",
        );
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\nd\\te\\rf\\bg\\fh\\u0001i\\u001fj\u{7f}k é ☃ /\""
        );
    }

    /// Expected texts are PostgreSQL 15's `to_json(…)` with `TimeZone` UTC.
    #[test]
    fn timestamps_and_dates_read_as_to_json_writes_them() {
        let t = |text: &str, zone: Option<&str>| {
            timestamp_text(micros(text), zone).expect("a timestamp")
        };
        assert_eq!(
            t("2026-01-01 10:00:00", Some("UTC")),
            "2026-01-01T10:00:00+00:00"
        );
        assert_eq!(
            t("2026-01-01 10:00:00.123456", Some("+00:00")),
            "2026-01-01T10:00:00.123456+00:00"
        );
        assert_eq!(t("2026-01-01 10:00:00.5", None), "2026-01-01T10:00:00.5");
        assert_eq!(
            t("2026-07-01 10:00:00", Some("Europe/Berlin")),
            "2026-07-01T12:00:00"
        );
        // 0044-03-15 12:00:00 BC is astronomical year -43.
        let bc = NaiveDate::from_ymd_opt(-43, 3, 15)
            .and_then(|d| d.and_hms_opt(12, 0, 0))
            .expect("a date")
            .and_utc()
            .timestamp_micros();
        assert_eq!(
            timestamp_text(bc, Some("UTC")).expect("BC"),
            "0044-03-15T12:00:00+00:00 BC"
        );
        assert_eq!(
            timestamp_text(bc, None).expect("BC"),
            "0044-03-15T12:00:00 BC"
        );
        assert_eq!(date_text(20_454).expect("a date"), "2026-01-01");
        assert_eq!(
            date_text(bc.div_euclid(86_400_000_000)).expect("BC"),
            "0044-03-15 BC"
        );
    }

    #[test]
    fn jsonb_objects_keep_the_last_of_a_key() {
        let members = vec![
            ("bb".to_string(), Json::Number("1".into())),
            ("a".to_string(), Json::Number("1".into())),
            ("a".to_string(), Json::Number("2".into())),
            ("c".to_string(), Json::Null),
        ];
        let mut out = String::new();
        write_jsonb(&mut out, &Json::Object(members));
        assert_eq!(out, r#"{"a": 2, "c": null, "bb": 1}"#);
    }
}

#[cfg(test)]
mod sql_tests {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn context() -> SessionContext {
        let mut context = SessionContext::new();
        context
            .state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .time_zone = Some("UTC".to_string());
        crate::sql::functions::register(&mut context).expect("register");
        // `t.doc` holds JSON text and says so; `t.note` is plain text.
        let schema = Arc::new(Schema::new(vec![
            Field::new("doc", DataType::Utf8, true).with_metadata(json_metadata()),
            Field::new("note", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some(r#"{"b":1,  "a":[1.50, "x"]}"#),
                    Some("not json"),
                    None,
                ])),
                Arc::new(StringArray::from(vec![Some(r#"{"b":1}"#), None, Some("x")])),
            ],
        )
        .expect("batch");
        let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
        context.register_table("t", Arc::new(table)).expect("t");
        context
    }

    /// The rows of `sql`'s one column, NULL as `NULL`.
    async fn rows(sql: &str) -> Result<Vec<String>> {
        let batches = context().sql(sql).await?.collect().await?;
        let mut out = Vec::new();
        for batch in batches {
            let column = cast(batch.column(0), &DataType::Utf8)?;
            let column = column.as_string::<i32>();
            for i in 0..column.len() {
                out.push(if column.is_null(i) {
                    "NULL".to_string()
                } else {
                    column.value(i).to_string()
                });
            }
        }
        Ok(out)
    }

    async fn one(sql: &str) -> String {
        let rows = rows(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
        rows.into_iter().next().unwrap_or_default()
    }

    async fn error(sql: &str) -> String {
        match rows(sql).await {
            Ok(rows) => panic!("{sql} gave {rows:?}"),
            Err(e) => {
                let (state, message) = crate::sql::error::sqlstate_of(&e);
                format!("{} {message}", state.code())
            }
        }
    }

    /// Expected texts are PostgreSQL 15's for the same calls.
    #[tokio::test]
    async fn constructors_write_postgres_forms() {
        assert_eq!(
            one("SELECT json_build_object('a', 1, 'b', 'x', 'c', NULL, 'd', true, 'e', 1.5, 'f', make_array(1, 2), 'g', json_build_object('z', 1))").await,
            r#"{"a" : 1, "b" : "x", "c" : null, "d" : true, "e" : 1.5, "f" : [1,2], "g" : {"z" : 1}}"#
        );
        assert_eq!(
            one("SELECT jsonb_build_object('bb', 1, 'a', 'x', 'c', NULL, 'd', true, 'f', make_array(1, 2), 'g', json_build_object('z', 1), 'a', 2)").await,
            r#"{"a": 2, "c": null, "d": true, "f": [1, 2], "g": {"z": 1}, "bb": 1}"#
        );
        assert_eq!(
            one("SELECT json_build_array(1, 'a', NULL, true, make_array('x', 'y'), 1.5, CAST('NaN' AS DOUBLE), CAST('-Infinity' AS DOUBLE), 1e100, 1e15, 0.00001, -0.0)").await,
            r#"[1, "a", null, true, ["x","y"], 1.5, "NaN", "-Infinity", 1e+100, 1e+15, 1e-05, -0]"#
        );
        assert_eq!(
            one("SELECT jsonb_build_array(1, make_array('x', 'y'), CAST('NaN' AS DOUBLE), 1e16, 0.00001, -0.0)").await,
            r#"[1, ["x", "y"], "NaN", 10000000000000000, 0.00001, 0]"#
        );
        assert_eq!(
            one("SELECT json_build_object() || json_build_array() || jsonb_build_object() || jsonb_build_array()").await,
            "{}[]{}[]"
        );
        assert_eq!(
            one("SELECT json_build_object(1, 2, true, 3, 1.5, 4, DATE '2026-01-01', 5, TIMESTAMPTZ '2026-01-01 10:00:00+00', 6)").await,
            r#"{"1" : 2, "true" : 3, "1.5" : 4, "2026-01-01" : 5, "2026-01-01T10:00:00+00:00" : 6}"#
        );
        assert_eq!(
            one("SELECT jsonb_build_object(1, 2, true, 3, 1.5, 4, DATE '2026-01-01', 5, 1e100, 6)")
                .await,
            r#"{"1": 2, "1.5": 4, "true": 3, "1e+100": 6, "2026-01-01": 5}"#
        );
        assert_eq!(
            one("SELECT to_json(TIMESTAMP '2026-01-01 10:00:00.5') || to_json(DATE '2026-01-01') || to_json(INTERVAL '1 day 2 hours') || to_jsonb(TIMESTAMPTZ '2026-01-01 10:00:00.123456+00')").await,
            r#""2026-01-01T10:00:00.5""2026-01-01""1 day 02:00:00""2026-01-01T10:00:00.123456+00:00""#
        );
        assert_eq!(
            one("SELECT to_json(make_array('a', 'b')) || to_jsonb(make_array('a', 'b')) || to_json(make_array(make_array(1, 2), make_array(3, 4)))").await,
            r#"["a","b"]["a", "b"][[1,2],[3,4]]"#
        );
        assert_eq!(one("SELECT to_json(CAST(NULL AS INT))").await, "NULL");
        assert_eq!(
            one("SELECT row_to_json(named_struct('x', 1, 'y', 'a', 'z', make_array(1, 2), 'w', CAST(NULL AS INT)))").await,
            r#"{"x":1,"y":"a","z":[1,2],"w":null}"#
        );
        assert_eq!(
            one("SELECT to_jsonb(named_struct('x', 1, 'y', 'a', 'z', make_array(1, 2), 'w', CAST(NULL AS INT)))").await,
            r#"{"w": null, "x": 1, "y": "a", "z": [1, 2]}"#
        );
        assert_eq!(
            one(
                "SELECT row_to_json(named_struct('f1', 1, 'f2', 'a', 'f3', make_array(1, 2)), true)"
            )
            .await,
            "{\"f1\":1,\n \"f2\":\"a\",\n \"f3\":[1,2]}"
        );
        assert_eq!(
            one("SELECT array_to_json(make_array(make_array(1, 2), make_array(3, 4)), true)").await,
            "[[1,2],\n [3,4]]"
        );
        // `row(…)`'s fields are f1, f2 … as in PostgreSQL; a struct's own names stay.
        assert_eq!(
            one("SELECT row_to_json(row(1, 'a')) || to_json(struct(2)) || to_jsonb(named_struct('c0', 3))").await,
            r#"{"f1":1,"f2":"a"}{"f1":2}{"c0": 3}"#
        );
        assert_eq!(
            one("SELECT json_build_object('a', row(1, 'x')) || jsonb_build_object('a', named_struct('f1', 1, 'f2', 'x'))").await,
            r#"{"a" : {"f1":1,"f2":"x"}}{"a": {"f1": 1, "f2": "x"}}"#
        );
    }

    #[tokio::test]
    async fn json_text_is_embedded_when_its_field_says_so() {
        // A marked column: verbatim in json, normalized in jsonb, a string when not JSON.
        assert_eq!(
            rows("SELECT json_build_object('d', doc, 'n', note) FROM t")
                .await
                .expect("rows"),
            [
                r#"{"d" : {"b":1,  "a":[1.50, "x"]}, "n" : "{\"b\":1}"}"#,
                r#"{"d" : "not json", "n" : null}"#,
                r#"{"d" : null, "n" : "x"}"#,
            ]
        );
        assert_eq!(
            rows("SELECT jsonb_build_object('d', doc) FROM t")
                .await
                .expect("rows"),
            [
                r#"{"d": {"a": [1.50, "x"], "b": 1}}"#,
                r#"{"d": "not json"}"#,
                r#"{"d": null}"#,
            ]
        );
        // The `->` operator's results and the constructors' own are JSON.
        assert_eq!(
            one(r#"SELECT json_build_object('h', '{"a": {"b" :  1}}' -> 'a', 'j', to_json('x'))"#)
                .await,
            r#"{"h" : {"b" :  1}, "j" : "x"}"#
        );
        assert_eq!(
            one(r#"SELECT jsonb_build_array('{"a": {"b" :  1, "a": 2}}' -> 'a', json_build_object('k', 1.50))"#)
                .await,
            r#"[{"a": 2, "b": 1}, {"k": 1.5}]"#
        );
        assert_eq!(
            one("SELECT json_agg(doc) FROM t").await,
            r#"[{"b":1,  "a":[1.50, "x"]}, "not json", null]"#
        );
    }

    /// Expected texts are PostgreSQL 15's for the same aggregates.
    #[tokio::test]
    async fn aggregates_follow_postgres() {
        assert_eq!(
            one("SELECT json_agg(x) || ' ' || jsonb_agg(x) FROM (VALUES (1), (NULL), (3)) AS v(x)")
                .await,
            "[1, null, 3] [1, null, 3]"
        );
        assert_eq!(
            one("SELECT json_agg(x) FROM (VALUES (make_array(1, 2)), (NULL), (make_array(3))) AS v(x)").await,
            "[[1,2], null, \n [3]]"
        );
        assert_eq!(
            one("SELECT jsonb_agg(x) FROM (VALUES (make_array(1, 2)), (NULL), (make_array(3))) AS v(x)").await,
            "[[1, 2], null, [3]]"
        );
        assert_eq!(
            one("SELECT json_agg(named_struct('x', x, 'y', y)) FROM (VALUES (1, 'a'), (2, 'b')) AS v(x, y)").await,
            "[{\"x\":1,\"y\":\"a\"}, \n {\"x\":2,\"y\":\"b\"}]"
        );
        assert_eq!(
            one("SELECT jsonb_agg(row(x, y) ORDER BY x DESC) FROM (VALUES (1, 'a'), (2, 'b')) AS v(x, y)").await,
            r#"[{"f1": 2, "f2": "b"}, {"f1": 1, "f2": "a"}]"#
        );
        assert_eq!(
            one("SELECT jsonb_agg(DISTINCT x ORDER BY x) FROM (VALUES (1), (1), (NULL)) AS v(x)")
                .await,
            "[1, null]"
        );
        // As a window function: the frame so far.
        assert_eq!(
            rows("SELECT json_agg(x) OVER (ORDER BY x) FROM (VALUES (1), (2)) AS v(x) ORDER BY x")
                .await
                .expect("rows"),
            ["[1]", "[1, 2]"]
        );
        assert_eq!(
            one("SELECT json_agg(x ORDER BY x DESC) FROM (VALUES (1), (2), (1)) AS v(x)").await,
            "[2, 1, 1]"
        );
        assert_eq!(
            one("SELECT json_agg(x) FROM (VALUES (1)) AS v(x) WHERE x > 1").await,
            "NULL"
        );
        assert_eq!(
            one("SELECT jsonb_agg(x) FROM (VALUES (1)) AS v(x) WHERE x > 1").await,
            "NULL"
        );
        // Grouped: the groups accumulator.
        let mut grouped = rows(
            "SELECT json_agg(x) FROM (VALUES ('a', 1), ('b', 2), ('a', NULL)) AS v(k, x) GROUP BY k",
        )
        .await
        .expect("rows");
        grouped.sort();
        assert!(
            grouped == ["[1, null]", "[2]"] || grouped == ["[2]", "[null, 1]"],
            "{grouped:?}"
        );
    }

    /// Expected codes and messages are PostgreSQL 15's.
    #[tokio::test]
    async fn bad_arguments_are_postgres_errors() {
        assert_eq!(
            error("SELECT json_build_object('a')").await,
            "22023 argument list must have even number of elements"
        );
        assert_eq!(
            error("SELECT jsonb_build_object('a', 1, 'b')").await,
            "22023 argument list must have even number of elements"
        );
        assert_eq!(
            error("SELECT json_build_object('a', 1, NULL, 2)").await,
            "22023 argument 3 cannot be null"
        );
        assert_eq!(
            error("SELECT jsonb_build_object(CAST(NULL AS TEXT), 1)").await,
            "22023 argument 1: key must not be null"
        );
        assert_eq!(
            error("SELECT json_build_object(make_array(1), 2)").await,
            "22023 key value must be scalar, not array, composite, or json"
        );
        assert_eq!(
            error(r#"SELECT jsonb_build_object('{"a":1}' -> 'a', 2)"#).await,
            "22023 key value must be scalar, not array, composite, or json"
        );
        assert!(
            error("SELECT row_to_json(1)").await.starts_with("42883 "),
            "row_to_json of a number"
        );
    }
}
