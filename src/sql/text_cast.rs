//! Casts of dates, times, timestamps and intervals to text give PostgreSQL's output form, and
//! timestamp text in PostgreSQL's input forms Arrow refuses (`'2026-01-01 10:00'`, no seconds;
//! `9:05:00`, one hour digit) casts to a timestamp ([`TimestampInput`]; the write paths read
//! such text the same way, `engine::ingest::with_full_time`).
//!
//! Arrow renders `now()::text` as `2026-11-23T21:46:44.839955Z` and `interval '1 day'::text`
//! as `1 days`; PostgreSQL (`DateStyle` ISO, `IntervalStyle` postgres, the defaults) gives
//! `2026-11-23 21:46:44.839955+00` and `1 day`. Text built from these values (`'at ' || ts`,
//! `ts::text LIKE '2026-11%'`, a label in a BI tool) must read the same as on PostgreSQL. An
//! analyzer rule, after type coercion so implicit casts are covered too, replaces each such
//! cast with [`pg_text`]. Queries compute in UTC, so `timestamp with time zone` is shown in
//! UTC (`+00`), as PostgreSQL shows it with the UTC session time zone.

use std::fmt::Write;
use std::sync::{Arc, LazyLock};

use arrow::array::timezone::Tz;
use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder};
use arrow::datatypes::{
    DataType, Int64Type, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit,
    IntervalYearMonthType, TimeUnit,
};
use chrono::{Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{DFSchema, Result, ScalarValue, exec_err};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Adds the rules; [`pg_text`] is not registered by name, only planted by the rule.
pub fn register(context: &SessionContext) {
    context.add_analyzer_rule(Arc::new(PgTextCasts));
    context.add_analyzer_rule(Arc::new(TimestampInput));
}

/// Text literals cast to a timestamp (also implicitly: `timestamp > '2026-01-01 10:00'`) in
/// PostgreSQL's input forms that Arrow's parser refuses: a time without seconds (`10:00`) or
/// with a one-digit hour (`9:05:00`). The literal gets the seconds and the digit, before
/// constant folding parses it.
#[derive(Debug)]
struct TimestampInput;

impl AnalyzerRule for TimestampInput {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        // Most plans have none: look before rewriting.
        if !crate::sql::any_expression(&plan, |e| incomplete_time(e).is_some())? {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|plan| {
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|e| Ok(timestamp_input(e)))
                    .map(|t| t.update_data(|e| name.restore(e)))
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "pg_timestamp_input"
    }
}

/// The completed text of a timestamp literal [`with_full_time`] completes, cast to a
/// timestamp (explicitly or by coercion).
///
/// [`with_full_time`]: crate::engine::ingest::with_full_time
fn incomplete_time(expr: &Expr) -> Option<String> {
    let (Expr::Cast(Cast { expr: inner, field }) | Expr::TryCast(TryCast { expr: inner, field })) =
        expr
    else {
        return None;
    };
    if !matches!(field.data_type(), DataType::Timestamp(..)) {
        return None;
    }
    match inner.as_ref() {
        Expr::Literal(ScalarValue::Utf8(Some(text)) | ScalarValue::Utf8View(Some(text)), _) => {
            crate::engine::ingest::with_full_time(text)
        }
        _ => None,
    }
}

fn timestamp_input(expr: Expr) -> Transformed<Expr> {
    let Some(fixed) = incomplete_time(&expr) else {
        return Transformed::no(expr);
    };
    let literal = |inner: Box<Expr>| match *inner {
        Expr::Literal(_, metadata) => {
            Box::new(Expr::Literal(ScalarValue::Utf8(Some(fixed)), metadata))
        }
        other => Box::new(other),
    };
    Transformed::yes(match expr {
        Expr::TryCast(TryCast { expr, field }) => Expr::TryCast(TryCast {
            expr: literal(expr),
            field,
        }),
        Expr::Cast(Cast { expr, field }) => Expr::Cast(Cast {
            expr: literal(expr),
            field,
        }),
        other => other,
    })
}

/// Replaces `CAST(x AS text)` of a date, time, timestamp, interval or duration by
/// [`pg_text`]`(x)`, keeping the expression's name.
#[derive(Debug)]
struct PgTextCasts;

impl AnalyzerRule for PgTextCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| {
            let schema = match plan.inputs().as_slice() {
                [] => plan.schema().as_ref().clone(),
                inputs => merge_schema(inputs),
            };
            let names = NamePreserver::new(&plan);
            plan.map_expressions(|expr| {
                let name = names.save(&expr);
                expr.transform_up(|e| rewrite(e, &schema))
                    .map(|t| t.update_data(|e| name.restore(e)))
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "pg_text_casts"
    }
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, to, udf) = match &expr {
        Expr::Cast(Cast { expr, field }) => (expr, field.data_type(), &*PG_TEXT),
        Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type(), &*PG_TRY_TEXT),
        _ => return Ok(Transformed::no(expr)),
    };
    if !matches!(
        to,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    ) {
        return Ok(Transformed::no(expr));
    }
    // A type that cannot be resolved here is left to the planner's own error.
    let Ok(from) = inner.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    if !renders(&from) {
        return Ok(Transformed::no(expr));
    }
    let text = Expr::ScalarFunction(ScalarFunction::new_udf(
        udf.clone(),
        vec![inner.as_ref().clone()],
    ));
    Ok(Transformed::yes(match to {
        DataType::Utf8 => text,
        other => Expr::Cast(Cast::new(Box::new(text), other.clone())),
    }))
}

/// Whether [`pg_text`] renders values of this type.
fn renders(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Date64
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Interval(_)
            | DataType::Duration(_)
    )
}

static PG_TEXT: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::from(PgText::new(false))));
static PG_TRY_TEXT: LazyLock<Arc<ScalarUDF>> =
    LazyLock::new(|| Arc::new(ScalarUDF::from(PgText::new(true))));

/// `pg_text(x)`: `x` in PostgreSQL's text output form; `pg_try_text(x)` (from `TRY_CAST`)
/// gives NULL for a value it cannot render instead of an error.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgText {
    signature: Signature,
    lenient: bool,
}

impl PgText {
    fn new(lenient: bool) -> Self {
        PgText {
            signature: Signature::any(1, Volatility::Immutable),
            lenient,
        }
    }
}

impl ScalarUDFImpl for PgText {
    fn name(&self) -> &str {
        if self.lenient {
            "pg_try_text"
        } else {
            "pg_text"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = args.args.as_slice() else {
            return exec_err!("pg_text takes one argument");
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let array = arg.to_array(if scalar { 1 } else { args.number_rows })?;
        let text: ArrayRef = Arc::new(render(&array, self.lenient)?);
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&text, 0)?)
        } else {
            ColumnarValue::Array(text)
        })
    }
}

/// How a timestamp type's values read.
enum Zone {
    /// No time zone: the wall clock as stored.
    None,
    /// UTC: the instant, marked `+00` (`timestamp with time zone` in the UTC session zone).
    Utc,
    /// Another zone, as `ts AT TIME ZONE 'Europe/Berlin'` gives: PostgreSQL's result is a
    /// `timestamp without time zone` holding the local wall clock, so that is what prints.
    Local(Tz),
}

impl Zone {
    fn of(data_type: &DataType) -> Result<Zone> {
        let DataType::Timestamp(_, Some(zone)) = data_type else {
            return Ok(Zone::None);
        };
        if crate::sql::functions::is_utc_zone(zone) {
            return Ok(Zone::Utc);
        }
        Ok(Zone::Local(zone.parse()?))
    }
}

/// `array` as PostgreSQL's text output when its type is one [`pg_text`] renders (dates,
/// times, timestamps, intervals, durations); `None` for other types.
pub(crate) fn postgres_text(array: &ArrayRef) -> Option<Result<arrow::array::StringArray>> {
    renders(array.data_type()).then(|| render(array, false))
}

/// Each value of `array` as PostgreSQL prints it; nulls stay null, and so does a value out
/// of range when `lenient`.
fn render(array: &ArrayRef, lenient: bool) -> Result<arrow::array::StringArray> {
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 26);
    let zone = match Zone::of(array.data_type()) {
        Ok(zone) => zone,
        Err(_) if lenient => {
            (0..array.len()).for_each(|_| out.append_null());
            return Ok(out.finish());
        }
        Err(e) => return Err(e),
    };
    // Dates, times, timestamps and durations are integer counts of their unit: read them
    // as such, one way for every unit.
    let counts = match array.data_type() {
        DataType::Interval(_) => None,
        _ => Some(arrow::compute::cast(array, &DataType::Int64)?),
    };
    let counts = counts.as_ref().map(|c| c.as_primitive::<Int64Type>());
    let mut text = String::with_capacity(32);
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        text.clear();
        match write_value(array, counts, i, &zone, &mut text) {
            Ok(()) => out.append_value(&text),
            Err(_) if lenient => out.append_null(),
            Err(e) => return Err(e),
        }
    }
    Ok(out.finish())
}

/// Reads `count` of `unit` as microseconds (PostgreSQL's resolution; nanoseconds round half
/// to even, as its input does).
pub(crate) fn to_micros(count: i64, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => count.saturating_mul(MICROS_PER_SECOND),
        TimeUnit::Millisecond => count.saturating_mul(1000),
        TimeUnit::Microsecond => count,
        TimeUnit::Nanosecond => nanos_to_micros(count),
    }
}

/// Value `i` of `array`; `counts` is the array as Int64 (its units since the epoch or
/// midnight) for the date, time, timestamp and duration types.
fn write_value(
    array: &ArrayRef,
    counts: Option<&Int64Array>,
    i: usize,
    zone: &Zone,
    out: &mut String,
) -> Result<()> {
    let count = || counts.map_or(0, |c| c.value(i));
    match array.data_type() {
        DataType::Timestamp(unit, _) => write_timestamp(to_micros(count(), unit), zone, out),
        DataType::Date32 => write_date(count().saturating_mul(MICROS_PER_DAY), out),
        DataType::Date64 => write_date(
            count()
                .div_euclid(86_400_000)
                .saturating_mul(MICROS_PER_DAY),
            out,
        ),
        DataType::Time32(unit) | DataType::Time64(unit) => {
            write_clock(to_micros(count(), unit), out);
            Ok(())
        }
        DataType::Duration(unit) => {
            // The difference of two timestamps: PostgreSQL moves whole days out of the time
            // part (`justify_hours`), giving `2518 days 21:46:03`.
            let micros = to_micros(count(), unit);
            let days = micros / MICROS_PER_DAY;
            write_interval(0, days as i32, micros % MICROS_PER_DAY, out);
            Ok(())
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let months = array.as_primitive::<IntervalYearMonthType>().value(i);
            write_interval(months, 0, 0, out);
            Ok(())
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let value = array.as_primitive::<IntervalDayTimeType>().value(i);
            write_interval(0, value.days, i64::from(value.milliseconds) * 1000, out);
            Ok(())
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let value = array.as_primitive::<IntervalMonthDayNanoType>().value(i);
            write_interval(
                value.months,
                value.days,
                nanos_to_micros(value.nanoseconds),
                out,
            );
            Ok(())
        }
        other => exec_err!("pg_text cannot render {other}"),
    }
}

/// PostgreSQL keeps microseconds; round half to even as its input conversion does.
fn nanos_to_micros(nanos: i64) -> i64 {
    let (q, r) = (nanos.div_euclid(1000), nanos.rem_euclid(1000));
    match r.cmp(&500) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

fn datetime(micros: i64) -> Result<NaiveDateTime> {
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => Ok(t.naive_utc()),
        None => exec_err!("timestamp out of range: {micros} µs"),
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` with trailing zeros of the fraction dropped, `+00` in UTC,
/// and ` BC` for years before 1, as PostgreSQL prints them.
fn write_timestamp(micros: i64, zone: &Zone, out: &mut String) -> Result<()> {
    let utc = datetime(micros)?;
    let t = match zone {
        Zone::Local(tz) => utc.and_utc().with_timezone(tz).naive_local(),
        Zone::None | Zone::Utc => utc,
    };
    write_ymd(t.date(), out);
    out.push(' ');
    let time = i64::from(t.num_seconds_from_midnight()) * MICROS_PER_SECOND
        + i64::from(t.nanosecond() / 1000);
    write_clock(time, out);
    if matches!(zone, Zone::Utc) {
        out.push_str("+00");
    }
    if t.year() <= 0 {
        out.push_str(" BC");
    }
    Ok(())
}

fn write_date(micros: i64, out: &mut String) -> Result<()> {
    let date = datetime(micros)?.date();
    write_ymd(date, out);
    if date.year() <= 0 {
        out.push_str(" BC");
    }
    Ok(())
}

/// The date part; a year before 1 is written as its BC year (year 0 is 1 BC).
pub(crate) fn write_ymd(date: NaiveDate, out: &mut String) {
    let year = if date.year() <= 0 {
        1 - date.year()
    } else {
        date.year()
    };
    let _ = write!(out, "{year:04}-{:02}-{:02}", date.month(), date.day());
}

/// `HH:MM:SS[.ffffff]` of a non-negative time of day, or of an interval's time part (whose
/// hours may exceed 23), fraction without trailing zeros.
fn write_clock(micros: i64, out: &mut String) {
    let micros = micros.unsigned_abs();
    let seconds = micros / 1_000_000;
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    let fraction = micros % 1_000_000;
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// PostgreSQL's `IntervalStyle = postgres` output (`EncodeInterval`): `1 year 2 mons`,
/// `-1 days +02:00:00`, `00:00:00` for zero. A field after a negative one carries an explicit
/// `+` when positive.
fn write_interval(months: i32, days: i32, micros: i64, out: &mut String) {
    let mut first = true;
    let mut after_negative = false;
    for (value, unit) in [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        let _ = write!(
            out,
            "{}{}{value} {unit}{}",
            if first { "" } else { " " },
            if after_negative && value > 0 { "+" } else { "" },
            if value == 1 { "" } else { "s" }
        );
        after_negative = value < 0;
        first = false;
    }
    if first || micros != 0 {
        let sign = if micros < 0 {
            "-"
        } else if after_negative {
            "+"
        } else {
            ""
        };
        let _ = write!(out, "{}{sign}", if first { "" } else { " " });
        write_clock(micros, out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{
        Date32Array, DurationNanosecondArray, IntervalMonthDayNanoArray, Time64MicrosecondArray,
        TimestampMicrosecondArray, TimestampNanosecondArray,
    };
    use arrow::datatypes::IntervalMonthDayNano;

    fn texts(array: ArrayRef) -> Vec<Option<String>> {
        render(&array, false)
            .expect("renders")
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    /// Microseconds since the epoch of a UTC `YYYY-MM-DD HH:MM:SS[.f]` text.
    pub(crate) fn micros(text: &str) -> i64 {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
            .expect("a timestamp")
            .and_utc()
            .timestamp_micros()
    }

    /// Expected texts are PostgreSQL 15's (`SELECT x::text`) for the same values.
    #[test]
    fn nanoseconds_round_half_to_even_as_postgres_reads_them() {
        assert_eq!(to_micros(1_500, &TimeUnit::Nanosecond), 2);
        assert_eq!(to_micros(2_500, &TimeUnit::Nanosecond), 2);
        assert_eq!(to_micros(2_501, &TimeUnit::Nanosecond), 3);
    }

    #[test]
    fn timestamps_read_as_postgres_prints_them() {
        let values = [
            micros("2026-11-23 21:46:44.839955"),
            micros("2020-01-01 10:00:00.5"),
            micros("2020-01-01 10:00:00"),
            micros("0044-03-15 12:00:00") - 32120 * MICROS_PER_DAY,
        ];
        let zoned = TimestampMicrosecondArray::from(values.to_vec()).with_timezone("UTC");
        assert_eq!(
            texts(Arc::new(zoned)),
            [
                "2026-11-23 21:46:44.839955+00",
                "2020-01-01 10:00:00.5+00",
                "2020-01-01 10:00:00+00",
                "0045-04-06 12:00:00+00 BC",
            ]
            .map(|s| Some(s.to_string()))
        );
        // `ts AT TIME ZONE 'Europe/Berlin'`: the local wall clock, no offset.
        let berlin = TimestampMicrosecondArray::from(vec![micros("2026-07-01 10:00:00")])
            .with_timezone("Europe/Berlin");
        assert_eq!(
            texts(Arc::new(berlin)),
            [Some("2026-07-01 12:00:00".to_string())]
        );
        let offset = TimestampMicrosecondArray::from(vec![micros("2026-07-01 10:00:00")])
            .with_timezone("+00:00");
        assert_eq!(
            texts(Arc::new(offset)),
            [Some("2026-07-01 10:00:00+00".to_string())]
        );
        let naive = TimestampNanosecondArray::from(vec![Some(1_500_000_999_500), None]);
        assert_eq!(
            texts(Arc::new(naive)),
            [Some("1970-01-01 00:25:00.001".to_string()), None]
        );
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            texts(Arc::new(Date32Array::from(vec![18262, -719_894]))),
            [Some("2020-01-01".into()), Some("0003-12-31 BC".into())]
        );
        // Far outside chrono's range: an error, not an overflow.
        let far: ArrayRef = Arc::new(Date32Array::from(vec![Some(i32::MAX), Some(0)]));
        assert!(render(&far, false).is_err());
        // TRY_CAST: NULL for what cannot be rendered, the rest as usual.
        let tried = render(&far, true).expect("lenient");
        assert_eq!(tried.iter().collect::<Vec<_>>(), [None, Some("1970-01-01")]);
        assert_eq!(
            texts(Arc::new(Time64MicrosecondArray::from(vec![
                36_001_250_000,
                0
            ]))),
            [Some("10:00:01.25".into()), Some("00:00:00".into())]
        );
    }

    #[test]
    fn intervals_follow_intervalstyle_postgres() {
        let hour = 3_600_000_000_000i64;
        let cases = [
            ((0, 1, 0), "1 day"),
            ((0, 1, 2 * hour), "1 day 02:00:00"),
            ((14, 0, 3_000_000_000), "1 year 2 mons 00:00:03"),
            ((0, -1, -2 * hour), "-1 days -02:00:00"),
            ((0, -1, 2 * hour), "-1 days +02:00:00"),
            ((-1, 1, 0), "-1 mons +1 day"),
            ((0, 0, 0), "00:00:00"),
            ((0, 0, 1_500_000_000), "00:00:01.5"),
            ((0, 0, 25 * hour), "25:00:00"),
            ((-25, 0, 0), "-2 years -1 mons"),
        ];
        let array = IntervalMonthDayNanoArray::from(
            cases
                .iter()
                .map(|((m, d, n), _)| IntervalMonthDayNano::new(*m, *d, *n))
                .collect::<Vec<_>>(),
        );
        let expected: Vec<Option<String>> =
            cases.iter().map(|(_, t)| Some(t.to_string())).collect();
        assert_eq!(texts(Arc::new(array)), expected);
        // now() - timestamp: whole days move out of the time part.
        let difference = micros("2020-01-08 21:00:00.000001") - micros("2013-03-13 00:00:00");
        let duration = DurationNanosecondArray::from(vec![difference * 1000]);
        assert_eq!(
            texts(Arc::new(duration)),
            [Some("2492 days 21:00:00.000001".into())]
        );
    }
}
