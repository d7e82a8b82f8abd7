//! SQL functions TimeFusion adds to DataFusion's, for the time-series queries clients bring
//! from PostgreSQL and TimescaleDB.
//!
//! - `time_bucket(width, ts [, origin | offset])` and `time_bucket(width, ts, timezone
//!   [, origin])`, as in TimescaleDB: buckets of a fixed width (microseconds to weeks) or of
//!   whole months (`'1 month'`, `'3 months'`, `'1 year'`), aligned to an origin that defaults to
//!   2000-01-03 (a Monday) for fixed widths and 2000-01-01 for months. With a time zone the
//!   buckets follow that zone's wall clock (days start at local midnight, across DST changes),
//!   and the result is still an instant (`timestamptz`).
//!
//! - `percentile_disc(fraction) WITHIN GROUP (ORDER BY x)`, as in PostgreSQL: the first value
//!   of the ordered group whose position reaches the fraction (an actual input value, never an
//!   interpolation; `percentile_cont` is DataFusion's own).
//!
//! - `to_char(value, pattern)` with PostgreSQL's template patterns (`YYYY-MM-DD HH24:MI:SS`,
//!   `Mon`, `Day`, `FM`, quoted literals …), translated to DataFusion's strftime-style
//!   `to_char`; a pattern that already contains `%` is passed through unchanged.
//!
//! - PostgreSQL's JSON operators and functions over the JSON-text columns, on top of
//!   `datafusion-functions-json`: `->` / `#>` return JSON text (as `json` does in PostgreSQL),
//!   `->>` / `#>>` return text, `#>`/`#>>` take a `'{key,0,key}'` path, `?` tests a key, `@>` / `<@`
//!   test containment ([`JsonbContains`]), and `json_extract_path[_text]` /
//!   `jsonb_extract_path[_text]` are the function forms.
//!
//! - `array_length(array, dim)` returns PostgreSQL's `int4`, NULL for an empty array.
//!
//! Functions here are pure: they never read storage or the clock.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, ArrayRef, AsArray, TimestampMicrosecondArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{
    DataType, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
    TimestampMicrosecondType,
};
use chrono::{DateTime, Datelike, LocalResult, Months, NaiveDateTime, TimeZone, Timelike};
use datafusion::common::DFSchema;
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::prelude::SessionContext;

use crate::MICROS_PER_DAY;

/// Registers every TimeFusion function in `context`.
pub fn register(context: &mut SessionContext) -> Result<()> {
    context.register_udf(ScalarUDF::from(TimeBucket::new()));
    context.register_udaf(AggregateUDF::from(PercentileDisc::new()));
    context.register_udf(ScalarUDF::from(PgToChar::default()));
    context.register_udf(ScalarUDF::from(PgVersion::new()));
    context.register_udf(ScalarUDF::from(PgArrayLength::default()));
    context.register_udf(ScalarUDF::from(ToRegtype::new()));
    // Ours first: planners are asked in registration order, and `->` must give JSON text.
    datafusion::execution::FunctionRegistry::register_expr_planner(
        context,
        Arc::new(PgJsonPlanner),
    )?;
    datafusion_functions_json::register_all(context)?;
    context.register_udf(ScalarUDF::from(JsonbContains::new()));
    let as_text = datafusion_functions_json::udfs::json_as_text_udf();
    context.register_udf(
        ScalarUDF::clone(&as_text)
            .with_aliases(["json_extract_path_text", "jsonb_extract_path_text"]),
    );
    let as_json = datafusion_functions_json::udfs::json_get_json_udf();
    context.register_udf(
        ScalarUDF::clone(&as_json).with_aliases(["json_extract_path", "jsonb_extract_path"]),
    );
    Ok(())
}

/// Plans PostgreSQL's JSON operators on text columns.
#[derive(Debug)]
struct PgJsonPlanner;

impl PgJsonPlanner {
    /// `'{a,0,b}'` (a PostgreSQL text-array path) → `'a', 0, 'b'`; anything else unchanged.
    fn path_args(path: Expr) -> Vec<Expr> {
        let text = match &path {
            Expr::Literal(ScalarValue::Utf8(Some(t)) | ScalarValue::Utf8View(Some(t)), _) => t,
            _ => return vec![path],
        };
        let Some(inner) = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
        else {
            return vec![path];
        };
        inner
            .split(',')
            .map(|part| {
                let part = part.trim().trim_matches('"');
                match part.parse::<i64>() {
                    Ok(index) => datafusion::prelude::lit(index),
                    Err(_) => datafusion::prelude::lit(part.to_string()),
                }
            })
            .collect()
    }
}

fn is_text_type(t: &DataType) -> bool {
    is_text(t) || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

impl ExprPlanner for PgJsonPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
        let RawBinaryExpr { op, left, right } = expr;
        // The SQL parser binds `=` (and the other comparisons) tighter than the JSON operators,
        // the reverse of PostgreSQL: `j ->> 'k' = 'v'` arrives as `j ->> ('k' = 'v')`. A JSON key
        // is never a boolean, so rotate it back into `(j ->> 'k') = 'v'`.
        if matches!(
            op,
            Op::Arrow | Op::LongArrow | Op::HashArrow | Op::HashLongArrow
        ) && let Expr::BinaryExpr(comparison) = &right
            && comparison.op.supports_propagation()
            && matches!(comparison.left.as_ref(), Expr::Literal(..))
        {
            let datafusion::logical_expr::BinaryExpr {
                left: key,
                op: compare,
                right: value,
            } = comparison.clone();
            let access = self.plan_binary_op(
                RawBinaryExpr {
                    op,
                    left,
                    right: *key,
                },
                schema,
            )?;
            let PlannerResult::Planned(access) = access else {
                return plan_err!("cannot plan the JSON operator");
            };
            return Ok(PlannerResult::Planned(Expr::BinaryExpr(
                datafusion::logical_expr::BinaryExpr::new(Box::new(access), compare, value),
            )));
        }
        let call = |udf: Arc<ScalarUDF>, args: Vec<Expr>| {
            Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                udf, args,
            ))
        };
        let planned = match &op {
            Op::Arrow | Op::HashArrow => {
                let name = format!("{left} {op} {right}");
                let mut args = vec![left];
                args.extend(if op == Op::HashArrow {
                    Self::path_args(right)
                } else {
                    vec![right]
                });
                call(datafusion_functions_json::udfs::json_get_json_udf(), args).alias(name)
            }
            Op::LongArrow | Op::HashLongArrow => {
                let name = format!("{left} {op} {right}");
                let mut args = vec![left];
                args.extend(if op == Op::HashLongArrow {
                    Self::path_args(right)
                } else {
                    vec![right]
                });
                call(datafusion_functions_json::udfs::json_as_text_udf(), args).alias(name)
            }
            Op::AtArrow | Op::ArrowAt
                if is_text_type(&left.get_type(schema)?)
                    && is_text_type(&right.get_type(schema)?) =>
            {
                let (outer, inner) = if op == Op::AtArrow {
                    (left, right)
                } else {
                    (right, left)
                };
                call(
                    Arc::new(ScalarUDF::from(JsonbContains::new())),
                    vec![outer, inner],
                )
            }
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(planned))
    }
}

/// `jsonb_contains(a, b)`, the `@>` operator: whether JSON `a` contains JSON `b` (PostgreSQL's
/// jsonb containment: objects by key recursively, arrays as sets, scalars by equality).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct JsonbContains {
    signature: Signature,
}

impl Default for JsonbContains {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonbContains {
    pub fn new() -> Self {
        JsonbContains {
            signature: Signature::coercible(
                vec![
                    datafusion::logical_expr::Coercion::new_exact(
                        datafusion::logical_expr::TypeSignatureClass::Native(
                            datafusion::common::types::logical_string(),
                        ),
                    ),
                    datafusion::logical_expr::Coercion::new_exact(
                        datafusion::logical_expr::TypeSignatureClass::Native(
                            datafusion::common::types::logical_string(),
                        ),
                    ),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

/// PostgreSQL's jsonb containment.
fn json_contains(outer: &serde_json::Value, inner: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (outer, inner) {
        (Value::Object(o), Value::Object(i)) => i
            .iter()
            .all(|(k, v)| o.get(k).is_some_and(|ov| json_contains(ov, v))),
        (Value::Array(o), Value::Array(i)) => {
            i.iter().all(|v| o.iter().any(|ov| json_contains(ov, v)))
        }
        // An array contains a primitive it has as an element.
        (Value::Array(o), v) if !v.is_object() && !v.is_array() => o.iter().any(|ov| ov == v),
        (o, i) => o == i,
    }
}

impl ScalarUDFImpl for JsonbContains {
    fn name(&self) -> &str {
        "jsonb_contains"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?
            .iter()
            .map(|a| Ok(cast(a, &DataType::Utf8)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let (outer, inner) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        // A constant right side (the usual `col @> '{"k": 1}'`) is parsed once.
        let constant = match &args.args[1] {
            ColumnarValue::Scalar(_) if !inner.is_null(0) => {
                serde_json::from_str(inner.value(0)).ok()
            }
            _ => None,
        };
        let result: arrow::array::BooleanArray = (0..rows)
            .map(|i| {
                if outer.is_null(i) || inner.is_null(i) {
                    return None;
                }
                let o: serde_json::Value = serde_json::from_str(outer.value(i)).ok()?;
                match &constant {
                    Some(c) => Some(json_contains(&o, c)),
                    None => {
                        let v: serde_json::Value = serde_json::from_str(inner.value(i)).ok()?;
                        Some(json_contains(&o, &v))
                    }
                }
            })
            .collect();
        shaped(&args.args, Arc::new(result))
    }
}

/// A function's result in the shape of its arguments: a scalar when every argument was one
/// (constant folding), else the array.
pub(crate) fn shaped(args: &[ColumnarValue], result: ArrayRef) -> Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &result, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(result))
    }
}

/// `time_bucket`, TimescaleDB's bucketing function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    signature: Signature,
}

impl Default for TimeBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeBucket {
    pub fn new() -> Self {
        TimeBucket {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

fn micros(tz: Option<Arc<str>>) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, tz)
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=4).contains(&args.len()) {
            return plan_err!(
                "time_bucket takes (bucket_width, ts), (bucket_width, ts, origin | offset), or (bucket_width, ts, timezone [, origin]); got {} arguments",
                args.len()
            );
        }
        let width = match &args[0] {
            DataType::Interval(_) | DataType::Null => INTERVAL,
            t if is_text(t) => INTERVAL,
            other => {
                return plan_err!("time_bucket: bucket_width must be an interval, not {other}");
            }
        };
        let ts = match &args[1] {
            DataType::Timestamp(_, tz) => micros(tz.clone()),
            DataType::Date32 | DataType::Date64 | DataType::Null => micros(None),
            t if is_text(t) => micros(Some("UTC".into())),
            other => return plan_err!("time_bucket: ts must be a timestamp, not {other}"),
        };
        let ts_tz = match &ts {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let mut out = vec![width, ts];
        match args.get(2) {
            None => {}
            Some(t) if is_text(t) => {
                out.push(DataType::Utf8);
                match args.get(3) {
                    None => {}
                    Some(DataType::Timestamp(..) | DataType::Null) => out.push(micros(ts_tz)),
                    Some(t) if is_text(t) => out.push(micros(ts_tz)),
                    Some(other) => {
                        return plan_err!("time_bucket: origin must be a timestamp, not {other}");
                    }
                }
            }
            Some(DataType::Timestamp(..) | DataType::Date32 | DataType::Null) => {
                out.push(micros(ts_tz))
            }
            Some(DataType::Interval(_)) => out.push(INTERVAL),
            Some(other) => {
                return plan_err!(
                    "time_bucket: the third argument must be a time zone name, an origin timestamp or an offset interval, not {other}"
                );
            }
        }
        if args.len() == 4 && out.len() != 4 {
            return plan_err!("time_bucket: a fourth argument (origin) needs a time zone third");
        }
        Ok(out)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[1] {
            DataType::Timestamp(_, tz) => Ok(micros(tz.clone())),
            other => plan_err!("time_bucket: ts must be a timestamp, not {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let out_type = args.return_type().clone();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let widths = arrays[0].as_primitive::<IntervalMonthDayNanoType>();
        let stamps = arrays[1].as_primitive::<TimestampMicrosecondType>();
        let third = arrays.get(2);
        let zones = third.filter(|a| a.data_type() == &DataType::Utf8);
        let origins = match (zones, third) {
            (Some(_), _) => arrays.get(3),
            (None, Some(a)) if matches!(a.data_type(), DataType::Timestamp(..)) => Some(a),
            _ => None,
        };
        let offsets = third.filter(|a| a.data_type() == &INTERVAL);
        let zones = zones.map(|a| a.as_string::<i32>());
        let origins = origins.map(|a| a.as_primitive::<TimestampMicrosecondType>());
        let offsets = offsets.map(|a| a.as_primitive::<IntervalMonthDayNanoType>());

        let mut parsed_zone: Option<(String, Tz)> = None;
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            if widths.is_null(i)
                || stamps.is_null(i)
                || zones.is_some_and(|z| z.is_null(i))
                || offsets.is_some_and(|o| o.is_null(i))
            {
                out.push(None);
                continue;
            }
            let zone = match zones {
                None => None,
                Some(z) => {
                    let name = z.value(i);
                    if parsed_zone.as_ref().is_none_or(|(n, _)| n != name) {
                        let tz: Tz = name.parse().map_err(|_| {
                            datafusion::error::DataFusionError::Execution(format!(
                                "time_bucket: unknown time zone \"{name}\""
                            ))
                        })?;
                        parsed_zone = Some((name.to_string(), tz));
                    }
                    parsed_zone.as_ref().map(|(_, tz)| *tz)
                }
            };
            let origin = origins.filter(|o| !o.is_null(i)).map(|o| o.value(i));
            let offset = offsets.map(|o| o.value(i));
            out.push(Some(bucket(
                widths.value(i),
                stamps.value(i),
                zone,
                origin,
                offset,
            )?));
        }
        let tz = match &out_type {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let array = TimestampMicrosecondArray::from(out).with_timezone_opt(tz);
        shaped(&args.args, cast(&array, &out_type)?)
    }
}

/// Start of the bucket holding `ts` (UTC microseconds), in UTC microseconds.
fn bucket(
    width: IntervalMonthDayNano,
    ts: i64,
    zone: Option<Tz>,
    origin: Option<i64>,
    offset: Option<IntervalMonthDayNano>,
) -> Result<i64> {
    // Bucketing happens on wall-clock microseconds: UTC's, or the time zone's.
    let to_local = |utc: i64| -> Result<i64> {
        match zone {
            None => Ok(utc),
            Some(tz) => {
                let instant = DateTime::from_timestamp_micros(utc).ok_or_else(out_of_range)?;
                Ok(instant
                    .with_timezone(&tz)
                    .naive_local()
                    .and_utc()
                    .timestamp_micros())
            }
        }
    };
    let local = to_local(ts)?;
    let by_months = width.months != 0;
    let origin = match origin {
        Some(o) => to_local(o)?,
        // TimescaleDB's defaults: month buckets start on 2000-01-01, others on Monday 2000-01-03.
        None if by_months => 946_684_800_000_000,
        None => 946_857_600_000_000,
    };
    let shifted = match offset {
        Some(o) => add_interval(local, o, -1)?,
        None => local,
    };
    let start = if by_months {
        if width.days != 0 || width.nanoseconds != 0 {
            return exec_err!("time_bucket: month intervals cannot have day or time components");
        }
        if width.months < 0 {
            return exec_err!("time_bucket: bucket_width must be positive");
        }
        month_bucket(width.months, shifted, origin)?
    } else {
        let step = (width.days as i64)
            .checked_mul(MICROS_PER_DAY)
            .and_then(|d| d.checked_add(width.nanoseconds / 1_000))
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Execution(
                    "time_bucket: bucket_width must be positive (and at least 1 microsecond)"
                        .into(),
                )
            })?;
        let delta = shifted as i128 - origin as i128;
        let start = origin as i128 + delta.div_euclid(step as i128) * step as i128;
        i64::try_from(start).map_err(|_| out_of_range())?
    };
    let start = match offset {
        Some(o) => add_interval(start, o, 1)?,
        None => start,
    };
    match zone {
        None => Ok(start),
        Some(tz) => {
            let naive = DateTime::from_timestamp_micros(start)
                .ok_or_else(out_of_range)?
                .naive_utc();
            local_to_utc(&tz, naive)
        }
    }
}

/// The instant of a wall-clock time in `tz`: the earlier one when the clock went back, and
/// the first instant after the gap when it jumped forward.
fn local_to_utc(tz: &Tz, naive: NaiveDateTime) -> Result<i64> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Ok(t.timestamp_micros()),
        LocalResult::None => {
            // A DST gap: the wall-clock time does not exist; move forward until it does.
            let mut probe = naive;
            for _ in 0..(24 * 4) {
                probe += chrono::Duration::minutes(15);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return Ok(t.timestamp_micros());
                }
            }
            Err(out_of_range())
        }
    }
}

fn month_bucket(width: i32, local: i64, origin: i64) -> Result<i64> {
    let t = DateTime::from_timestamp_micros(local)
        .ok_or_else(out_of_range)?
        .naive_utc();
    let o = DateTime::from_timestamp_micros(origin)
        .ok_or_else(out_of_range)?
        .naive_utc();
    let index = |d: &NaiveDateTime| d.year() as i64 * 12 + d.month0() as i64;
    let mut months = index(&t) - index(&o);
    // A month has begun only once the origin's day and time of month are reached.
    let within = |d: &NaiveDateTime| (d.day(), d.num_seconds_from_midnight(), d.nanosecond());
    if within(&t) < within(&o) {
        months -= 1;
    }
    let n = months.div_euclid(width as i64) * width as i64;
    let start = if n >= 0 {
        o.checked_add_months(Months::new(n as u32))
    } else {
        o.checked_sub_months(Months::new((-n) as u32))
    };
    Ok(start.ok_or_else(out_of_range)?.and_utc().timestamp_micros())
}

/// `micros + sign * interval`, months added on the calendar.
fn add_interval(micros: i64, interval: IntervalMonthDayNano, sign: i32) -> Result<i64> {
    let mut t = DateTime::from_timestamp_micros(micros)
        .ok_or_else(out_of_range)?
        .naive_utc();
    let months = interval.months * sign;
    if months != 0 {
        let m = Months::new(months.unsigned_abs());
        t = if months > 0 {
            t.checked_add_months(m)
        } else {
            t.checked_sub_months(m)
        }
        .ok_or_else(out_of_range)?;
    }
    let rest = interval.days as i64 * MICROS_PER_DAY + interval.nanoseconds / 1_000;
    t.and_utc()
        .timestamp_micros()
        .checked_add(rest * sign as i64)
        .ok_or_else(out_of_range)
}

fn out_of_range() -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution("time_bucket: timestamp out of range".into())
}

/// `array_length(array, dimension)` as in PostgreSQL: an `int4`, and NULL for an empty array
/// (or a dimension it does not have) where DataFusion's gives 0. The work is DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgArrayLength {
    inner: Arc<ScalarUDF>,
}

impl Default for PgArrayLength {
    fn default() -> Self {
        PgArrayLength {
            inner: datafusion::functions_nested::length::array_length_udf(),
        }
    }
}

impl ScalarUDFImpl for PgArrayLength {
    fn name(&self) -> &str {
        "array_length"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        // DataFusion's own answer, with the type it promises.
        args.return_field = Arc::new(arrow::datatypes::Field::new(
            args.return_field.name(),
            DataType::UInt64,
            true,
        ));
        let lengths = self.inner.invoke_with_args(args)?.into_array(rows)?;
        let lengths = cast(&lengths, &DataType::Int32)?;
        let zero = arrow::array::Int32Array::new_scalar(0);
        Ok(ColumnarValue::Array(arrow::compute::nullif(
            &lengths,
            &arrow::compute::kernels::cmp::eq(&lengths, &zero)?,
        )?))
    }
}

/// `version()` in PostgreSQL's form (`PostgreSQL 15.0 … on x86_64-linux, 64-bit`), which
/// drivers and BI tools parse to pick their SQL dialect; DataFusion's names itself instead.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgVersion {
    signature: Signature,
}

impl Default for PgVersion {
    fn default() -> Self {
        Self::new()
    }
}

impl PgVersion {
    pub fn new() -> Self {
        PgVersion {
            signature: Signature::nullary(Volatility::Immutable),
        }
    }

    pub fn text() -> String {
        format!(
            "PostgreSQL {} (TimeFusion {}) on {}-{}, 64-bit",
            crate::pgwire::SERVER_VERSION
                .split_whitespace()
                .next()
                .unwrap_or("15.0"),
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS
        )
    }
}

impl ScalarUDFImpl for PgVersion {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(Self::text()))))
    }
}

/// `to_regtype(name)`: the OID of a built-in type by name, NULL for any other (drivers probe
/// for extension types such as `hstore` this way and take NULL as "not installed").
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToRegtype {
    signature: Signature,
}

impl Default for ToRegtype {
    fn default() -> Self {
        Self::new()
    }
}

impl ToRegtype {
    pub fn new() -> Self {
        ToRegtype {
            signature: Signature::string(1, Volatility::Stable),
        }
    }

    fn oid(name: &str) -> Option<i64> {
        let name = name.trim().to_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        Some(match name {
            "bool" | "boolean" => 16,
            "bytea" => 17,
            "int8" | "bigint" => 20,
            "int2" | "smallint" => 21,
            "int4" | "integer" | "int" => 23,
            "text" => 25,
            "oid" => 26,
            "json" => 114,
            "float4" | "real" => 700,
            "float8" | "double precision" => 701,
            "varchar" | "character varying" => 1043,
            "date" => 1082,
            "timestamp" | "timestamp without time zone" => 1114,
            "timestamptz" | "timestamp with time zone" => 1184,
            "interval" => 1186,
            "numeric" => 1700,
            "uuid" => 2950,
            "jsonb" => 3802,
            _ => return None,
        })
    }
}

impl ScalarUDFImpl for ToRegtype {
    fn name(&self) -> &str {
        "to_regtype"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let names = cast(&args.args[0].to_array(args.number_rows)?, &DataType::Utf8)?;
        let oids: arrow::array::Int64Array = names
            .as_string::<i32>()
            .iter()
            .map(|n| n.and_then(Self::oid))
            .collect();
        shaped(&args.args, Arc::new(oids))
    }
}

/// `to_char` taking PostgreSQL template patterns; the work is done by DataFusion's `to_char`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgToChar {
    inner: Arc<ScalarUDF>,
}

impl Default for PgToChar {
    fn default() -> Self {
        PgToChar {
            inner: datafusion::functions::datetime::to_char(),
        }
    }
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(pattern) = args.args.get_mut(1) {
            *pattern = match std::mem::replace(pattern, ColumnarValue::Scalar(ScalarValue::Null)) {
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(p))) => {
                    ColumnarValue::Scalar(ScalarValue::Utf8(Some(pg_pattern_to_strftime(&p))))
                }
                ColumnarValue::Scalar(ScalarValue::Utf8View(Some(p))) => {
                    ColumnarValue::Scalar(ScalarValue::Utf8View(Some(pg_pattern_to_strftime(&p))))
                }
                ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(p))) => {
                    ColumnarValue::Scalar(ScalarValue::LargeUtf8(Some(pg_pattern_to_strftime(&p))))
                }
                ColumnarValue::Array(a) if a.data_type() == &DataType::Utf8 => {
                    let translated: arrow::array::StringArray = a
                        .as_string::<i32>()
                        .iter()
                        .map(|p| p.map(pg_pattern_to_strftime))
                        .collect();
                    ColumnarValue::Array(Arc::new(translated))
                }
                other => other,
            };
        }
        self.inner.invoke_with_args(args)
    }
}

/// PostgreSQL template patterns → chrono strftime. Text in double quotes is literal; `FM`
/// drops the padding of the next field; unknown letters are copied.
pub fn pg_pattern_to_strftime(pattern: &str) -> String {
    if pattern.contains('%') {
        return pattern.to_string();
    }
    // Longest patterns first, so `HH24` wins over `HH` and `Month` over `Mon`.
    const PATTERNS: &[(&str, &str, &str)] = &[
        ("YYYY", "%Y", "%Y"),
        ("HH24", "%H", "%-H"),
        ("HH12", "%I", "%-I"),
        ("Month", "%B", "%B"),
        ("MONTH", "%B", "%B"),
        ("month", "%B", "%B"),
        ("Day", "%A", "%A"),
        ("DAY", "%A", "%A"),
        ("day", "%A", "%A"),
        ("DDD", "%j", "%-j"),
        ("Mon", "%b", "%b"),
        ("MON", "%b", "%b"),
        ("mon", "%b", "%b"),
        ("YY", "%y", "%y"),
        ("MM", "%m", "%-m"),
        ("DD", "%d", "%-d"),
        ("HH", "%I", "%-I"),
        ("MI", "%M", "%-M"),
        ("SS", "%S", "%-S"),
        ("MS", "%3f", "%3f"),
        ("US", "%6f", "%6f"),
        ("Dy", "%a", "%a"),
        ("DY", "%a", "%a"),
        ("dy", "%a", "%a"),
        ("AM", "%p", "%p"),
        ("PM", "%p", "%p"),
        ("am", "%P", "%P"),
        ("pm", "%P", "%P"),
        ("IW", "%V", "%-V"),
        ("TZ", "%Z", "%Z"),
        ("OF", "%:z", "%:z"),
    ];
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut rest = pattern;
    let mut fill_mode = false;
    'outer: while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            out.push_str(&quoted[..end]);
            rest = quoted.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some(after) = rest.strip_prefix("FM") {
            fill_mode = true;
            rest = after;
            continue;
        }
        for (pg, padded, unpadded) in PATTERNS {
            if let Some(after) = rest.strip_prefix(pg) {
                out.push_str(if fill_mode { unpadded } else { padded });
                fill_mode = false;
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `percentile_disc`, PostgreSQL's discrete percentile (an ordered-set aggregate).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PercentileDisc {
    signature: Signature,
}

impl Default for PercentileDisc {
    fn default() -> Self {
        Self::new()
    }
}

impl PercentileDisc {
    pub fn new() -> Self {
        PercentileDisc {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for PercentileDisc {
    fn name(&self) -> &str {
        "percentile_disc"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [value, fraction] if fraction.is_numeric() || fraction.is_null() => {
                Ok(vec![value.clone(), DataType::Float64])
            }
            _ => plan_err!(
                "percentile_disc takes a fraction and an ordering: percentile_disc(0.5) WITHIN GROUP (ORDER BY x)"
            ),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<arrow::datatypes::FieldRef>> {
        let item =
            arrow::datatypes::Field::new_list_field(args.input_fields[0].data_type().clone(), true);
        Ok(vec![
            arrow::datatypes::Field::new(
                format_state_name(args.name, "percentile_disc"),
                DataType::List(Arc::new(item)),
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let empty =
            arrow::array::RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty()));
        let fraction = match args.exprs.get(1).map(|e| e.evaluate(&empty)) {
            Some(Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(f))))) => f,
            _ => return plan_err!("percentile_disc: the fraction must be a constant"),
        };
        if !(0.0..=1.0).contains(&fraction) {
            return plan_err!("percentile_disc: the fraction {fraction} is not between 0 and 1");
        }
        let descending = args
            .order_bys
            .first()
            .is_some_and(|sort| sort.options.descending);
        Ok(Box::new(PercentileDiscAccumulator {
            data_type: args.expr_fields[0].data_type().clone(),
            fraction,
            descending,
            values: Vec::new(),
        }))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct PercentileDiscAccumulator {
    data_type: DataType,
    fraction: f64,
    descending: bool,
    /// The group's non-null values, in the batches they came in.
    values: Vec<ArrayRef>,
}

impl PercentileDiscAccumulator {
    fn all_values(&self) -> Result<ArrayRef> {
        let parts: Vec<&dyn Array> = self.values.iter().map(|a| a.as_ref()).collect();
        if parts.is_empty() {
            return Ok(arrow::array::new_empty_array(&self.data_type));
        }
        Ok(arrow::compute::concat(&parts)?)
    }
}

impl Accumulator for PercentileDiscAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = &values[0];
        let kept = match values.logical_nulls() {
            Some(nulls) if nulls.null_count() > 0 => {
                let keep = arrow::array::BooleanArray::new(nulls.inner().clone(), None);
                arrow::compute::filter(values, &keep)?
            }
            _ => values.clone(),
        };
        if !kept.is_empty() {
            self.values.push(kept);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for list in states[0].as_list::<i32>().iter().flatten() {
            self.update_batch(&[list])?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let all = self.all_values()?;
        let offsets = arrow::buffer::OffsetBuffer::from_lengths([all.len()]);
        let list = arrow::array::ListArray::new(
            Arc::new(arrow::datatypes::Field::new_list_field(
                self.data_type.clone(),
                true,
            )),
            offsets,
            all,
            None,
        );
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let all = self.all_values()?;
        if all.is_empty() {
            return ScalarValue::try_from(&self.data_type);
        }
        let options = arrow::compute::SortOptions {
            descending: self.descending,
            nulls_first: false,
        };
        let order = arrow::compute::sort_to_indices(&all, Some(options), None)?;
        // The first value whose cumulative position reaches the fraction (1-based ceil).
        let n = all.len();
        let position = ((self.fraction * n as f64).ceil() as usize).clamp(1, n) - 1;
        ScalarValue::try_from_array(&all, order.value(position) as usize)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .values
                .iter()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .expect("timestamp")
            .timestamp_micros()
    }

    fn show(micros: i64) -> String {
        DateTime::from_timestamp_micros(micros)
            .expect("timestamp")
            .to_rfc3339()
    }

    fn width(months: i32, days: i32, minutes: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, minutes * 60_000_000_000)
    }

    fn b(w: IntervalMonthDayNano, t: &str, zone: Option<&str>, origin: Option<&str>) -> String {
        let zone = zone.map(|z| z.parse::<Tz>().expect("zone"));
        show(bucket(w, ts(t), zone, origin.map(ts), None).expect("bucket"))
    }

    #[test]
    fn fixed_widths_align_to_monday_2000_01_03() {
        assert_eq!(
            b(width(0, 0, 5), "2024-03-10T10:07:59Z", None, None),
            "2024-03-10T10:05:00+00:00"
        );
        // Weeks start on Monday, like TimescaleDB's default origin.
        assert_eq!(
            b(width(0, 7, 0), "2024-03-10T10:07:59Z", None, None),
            "2024-03-04T00:00:00+00:00"
        );
        // Before the origin, buckets still floor.
        assert_eq!(
            b(width(0, 0, 60), "1999-12-31T23:30:00Z", None, None),
            "1999-12-31T23:00:00+00:00"
        );
    }

    #[test]
    fn month_and_year_buckets_follow_the_calendar() {
        assert_eq!(
            b(width(1, 0, 0), "2024-02-29T23:00:00Z", None, None),
            "2024-02-01T00:00:00+00:00"
        );
        assert_eq!(
            b(width(3, 0, 0), "2024-08-15T00:00:00Z", None, None),
            "2024-07-01T00:00:00+00:00"
        );
        assert_eq!(
            b(width(12, 0, 0), "2023-12-31T23:59:59Z", None, None),
            "2023-01-01T00:00:00+00:00"
        );
        assert_eq!(
            b(
                width(1, 0, 0),
                "2024-03-10T00:00:00Z",
                None,
                Some("2000-01-15T00:00:00Z")
            ),
            "2024-02-15T00:00:00+00:00"
        );
        assert!(bucket(width(1, 1, 0), 0, None, None, None).is_err());
    }

    #[test]
    fn origin_and_offset_shift_the_grid() {
        assert_eq!(
            b(
                width(0, 0, 60),
                "2024-03-10T10:07:00Z",
                None,
                Some("2024-01-01T00:30:00Z")
            ),
            "2024-03-10T09:30:00+00:00"
        );
        let offset = IntervalMonthDayNano::new(0, 0, 15 * 60_000_000_000);
        let start = bucket(
            width(0, 0, 60),
            ts("2024-03-10T10:07:00Z"),
            None,
            None,
            Some(offset),
        )
        .expect("bucket");
        assert_eq!(show(start), "2024-03-10T09:15:00+00:00");
    }

    #[test]
    fn time_zone_buckets_follow_local_midnight_across_dst() {
        // New York is UTC-5 in winter, UTC-4 from 2024-03-10 03:00 local.
        assert_eq!(
            b(
                width(0, 1, 0),
                "2024-03-10T03:00:00Z",
                Some("America/New_York"),
                None
            ),
            "2024-03-09T05:00:00+00:00"
        );
        assert_eq!(
            b(
                width(0, 1, 0),
                "2024-03-11T12:00:00Z",
                Some("America/New_York"),
                None
            ),
            "2024-03-11T04:00:00+00:00"
        );
        assert_eq!(
            b(
                width(1, 0, 0),
                "2024-03-01T02:00:00Z",
                Some("Europe/Berlin"),
                None
            ),
            "2024-02-29T23:00:00+00:00"
        );
    }

    #[test]
    fn postgres_to_char_patterns_translate_to_strftime() {
        assert_eq!(
            pg_pattern_to_strftime("YYYY-MM-DD HH24:MI:SS.MS"),
            "%Y-%m-%d %H:%M:%S.%3f"
        );
        assert_eq!(pg_pattern_to_strftime("FMDD Mon YYYY"), "%-d %b %Y");
        assert_eq!(pg_pattern_to_strftime("\"week\" IW, Dy"), "week %V, %a");
        assert_eq!(pg_pattern_to_strftime("HH12:MI AM"), "%I:%M %p");
        assert_eq!(pg_pattern_to_strftime("%Y-%m"), "%Y-%m");
    }

    #[test]
    fn zero_and_negative_widths_are_errors() {
        assert!(bucket(width(0, 0, 0), 0, None, None, None).is_err());
        assert!(bucket(width(0, -1, 0), 0, None, None, None).is_err());
    }
}

#[cfg(test)]
mod sql_tests {
    use super::*;

    async fn one(sql: &str) -> String {
        let mut context = SessionContext::new();
        register(&mut context).expect("register");
        let batches = context
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string()
    }

    #[tokio::test]
    async fn functions_work_in_sql() {
        let out =
            one("SELECT to_char(TIMESTAMP '2024-03-10 10:17:00', 'YYYY-MM-DD HH24:MI') AS t").await;
        assert!(out.contains("2024-03-10 10:17"), "{out}");
    }

    #[test]
    fn jsonb_containment_follows_postgres() {
        let v = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("json");
        assert!(json_contains(
            &v(r#"{"a":{"b":1,"c":2},"d":[1,2,3]}"#),
            &v(r#"{"a":{"b":1}}"#)
        ));
        assert!(json_contains(&v(r#"{"d":[1,2,3]}"#), &v(r#"{"d":[3,1]}"#)));
        assert!(json_contains(&v("[1,2,3]"), &v("2")));
        assert!(!json_contains(
            &v(r#"{"a":{"b":1}}"#),
            &v(r#"{"a":{"b":2}}"#)
        ));
        assert!(!json_contains(&v(r#"{"a":1}"#), &v(r#"{"b":1}"#)));
    }

    #[tokio::test]
    async fn json_operators_work_on_text() {
        let out = one(r#"SELECT '{"a":{"b":[10,20]},"s":"x"}' -> 'a' AS j,
                      '{"a":{"b":[10,20]},"s":"x"}' ->> 's' AS t,
                      '{"a":{"b":[10,20]},"s":"x"}' #>> '{a,b,1}' AS p,
                      '{"a":{"b":[10,20]},"s":"x"}' @> '{"s":"x"}' AS c,
                      json_extract_path_text('{"a":{"b":"y"}}', 'a', 'b') AS e"#)
        .await;
        assert!(out.contains(r#"{"b":[10,20]}"#), "{out}");
        assert!(out.contains("| x "), "{out}");
        assert!(out.contains("| 20 "), "{out}");
        assert!(out.contains("| true "), "{out}");
        assert!(out.contains("| y "), "{out}");
    }
}
