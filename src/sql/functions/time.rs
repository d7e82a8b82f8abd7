//! Time-series functions: TimescaleDB's `time_bucket` (fixed widths, months and years, time
//! zones, origins and offsets) and PostgreSQL's `to_char` template patterns.

use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{
    DataType, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
    TimestampMicrosecondType,
};
use chrono::{DateTime, Datelike, LocalResult, Months, NaiveDateTime, TimeZone, Timelike};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::engine::MICROS_PER_DAY;
use crate::sql::functions::shaped;

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

pub(crate) const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);

pub(crate) fn micros(tz: Option<Arc<str>>) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, tz)
}

pub(crate) fn is_text(t: &DataType) -> bool {
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
                        parsed_zone = Some((name.to_string(), zone_named(name)?));
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
pub(crate) fn bucket(
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
            return Err(invalid_argument(
                "time_bucket: month intervals cannot have day or time components",
            ));
        }
        if width.months < 0 {
            return Err(invalid_argument(
                "time_bucket: bucket_width must be positive",
            ));
        }
        month_bucket(width.months, shifted, origin)?
    } else {
        let step = (width.days as i64)
            .checked_mul(MICROS_PER_DAY)
            .and_then(|d| d.checked_add(width.nanoseconds / 1_000))
            .filter(|s| *s > 0)
            .ok_or_else(|| {
                invalid_argument(
                    "time_bucket: bucket_width must be positive (and at least 1 microsecond)",
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
pub(crate) fn local_to_utc(tz: &Tz, naive: NaiveDateTime) -> Result<i64> {
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

pub(crate) fn month_bucket(width: i32, local: i64, origin: i64) -> Result<i64> {
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
pub(crate) fn add_interval(micros: i64, interval: IntervalMonthDayNano, sign: i32) -> Result<i64> {
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

pub(crate) fn out_of_range() -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::SqlError::new(
        crate::error::SqlState::DATETIME_FIELD_OVERFLOW,
        "time_bucket: timestamp out of range",
    )))
}

/// `at_time_zone(ts, zone)`, PostgreSQL's `ts AT TIME ZONE zone` as a function: a
/// `timestamptz` becomes the wall-clock time in `zone` (a `timestamp`), and a `timestamp` is
/// read as wall-clock time in `zone` and becomes its instant (a `timestamptz`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct AtTimeZone {
    signature: Signature,
}

impl Default for AtTimeZone {
    fn default() -> Self {
        AtTimeZone {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for AtTimeZone {
    fn name(&self) -> &str {
        "at_time_zone"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let [ts, zone] = args else {
            return plan_err!(
                "at_time_zone takes (ts, zone); got {} arguments",
                args.len()
            );
        };
        let ts = match ts {
            DataType::Timestamp(_, tz) => micros(tz.clone()),
            DataType::Date32 | DataType::Date64 => micros(None),
            t if is_text(t) || t == &DataType::Null => micros(Some("UTC".into())),
            other => return plan_err!("at_time_zone: ts must be a timestamp, not {other}"),
        };
        if !(is_text(zone) || zone == &DataType::Null) {
            return plan_err!("at_time_zone: the zone must be text, not {zone}");
        }
        Ok(vec![ts, DataType::Utf8])
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::Timestamp(_, Some(_)) => Ok(micros(None)),
            _ => Ok(micros(Some("UTC".into()))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let from_instant = matches!(arrays[0].data_type(), DataType::Timestamp(_, Some(_)));
        let stamps = arrays[0].as_primitive::<TimestampMicrosecondType>();
        let zones = arrays[1].as_string::<i32>();
        let mut parsed: Option<(&str, Tz)> = None;
        let mut out = Vec::with_capacity(args.number_rows);
        for i in 0..args.number_rows {
            if stamps.is_null(i) || zones.is_null(i) {
                out.push(None);
                continue;
            }
            let name = zones.value(i);
            let tz = match parsed {
                Some((n, tz)) if n == name => tz,
                _ => {
                    let tz = zone_named(name)?;
                    parsed = Some((name, tz));
                    tz
                }
            };
            let instant = DateTime::from_timestamp_micros(stamps.value(i))
                .ok_or_else(|| invalid_argument("at_time_zone: timestamp out of range"))?;
            out.push(Some(if from_instant {
                instant
                    .with_timezone(&tz)
                    .naive_local()
                    .and_utc()
                    .timestamp_micros()
            } else {
                local_to_utc(&tz, instant.naive_utc())?
            }));
        }
        let zone = (!from_instant).then(|| Arc::from("UTC"));
        let array = TimestampMicrosecondArray::from(out).with_timezone_opt(zone);
        shaped(&args.args, Arc::new(array))
    }
}

/// `extract_epoch(ts)`: seconds since 1970-01-01 00:00 UTC as `double precision`, as
/// `EXTRACT(EPOCH FROM ts)` gives (a `timestamp` counts as UTC wall-clock time).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExtractEpoch {
    signature: Signature,
}

impl Default for ExtractEpoch {
    fn default() -> Self {
        ExtractEpoch {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ExtractEpoch {
    fn name(&self) -> &str {
        "extract_epoch"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [DataType::Timestamp(_, tz)] => Ok(vec![micros(tz.clone())]),
            [DataType::Date32 | DataType::Date64] => Ok(vec![micros(None)]),
            [t] if is_text(t) || t == &DataType::Null => Ok(vec![micros(Some("UTC".into()))]),
            [other] => plan_err!("extract_epoch: ts must be a timestamp, not {other}"),
            _ => plan_err!(
                "extract_epoch takes one timestamp; got {} arguments",
                args.len()
            ),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let seconds: arrow::array::Float64Array = arrays[0]
            .as_primitive::<TimestampMicrosecondType>()
            .unary(|micros| micros as f64 / 1e6);
        shaped(&args.args, Arc::new(seconds))
    }
}

/// `make_interval(years, months, weeks, days, hours, mins, secs)`, PostgreSQL's: arguments
/// left out from the right are 0, and by name (`make_interval(days => 1)`) any may be
/// ([`crate::sql::pg_forms`] fills in the rest). Seconds are rounded to microseconds, as
/// PostgreSQL stores them; a NULL argument gives NULL; a field past its range is 22008.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MakeInterval {
    signature: Signature,
}

/// `make_interval`'s parameters, in order.
pub const MAKE_INTERVAL_PARAMETERS: [&str; 7] =
    ["years", "months", "weeks", "days", "hours", "mins", "secs"];

impl Default for MakeInterval {
    fn default() -> Self {
        MakeInterval {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for MakeInterval {
    fn name(&self) -> &str {
        "make_interval"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if args.len() > MAKE_INTERVAL_PARAMETERS.len() {
            return plan_err!(
                "make_interval takes at most 7 arguments (years, months, weeks, days, hours, mins, secs); got {}",
                args.len()
            );
        }
        args.iter()
            .zip(MAKE_INTERVAL_PARAMETERS)
            .map(|(t, name)| {
                let target = if name == "secs" {
                    DataType::Float64
                } else {
                    DataType::Int64
                };
                if t.is_numeric() || is_text(t) || t == &DataType::Null {
                    Ok(target)
                } else {
                    plan_err!("make_interval: {name} must be a number, not {t}")
                }
            })
            .collect()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let rows = args.number_rows;
        let mut out = arrow::array::IntervalMonthDayNanoBuilder::with_capacity(rows);
        'rows: for row in 0..rows {
            // Left out: 0.
            let (mut fields, mut secs) = ([0i64; 6], 0.0);
            for (i, array) in arrays.iter().enumerate() {
                if array.is_null(row) {
                    out.append_null();
                    continue 'rows;
                }
                match i {
                    6 => {
                        secs = array
                            .as_primitive::<arrow::datatypes::Float64Type>()
                            .value(row)
                    }
                    _ => {
                        fields[i] = array
                            .as_primitive::<arrow::datatypes::Int64Type>()
                            .value(row)
                    }
                }
            }
            out.append_value(make_interval(fields, secs).ok_or_else(interval_out_of_range)?);
        }
        shaped(&args.args, Arc::new(out.finish()))
    }
}

/// The interval of `make_interval`'s fields (years, months, weeks, days, hours, mins) and
/// seconds, or `None` past what an interval holds.
fn make_interval(fields: [i64; 6], secs: f64) -> Option<IntervalMonthDayNano> {
    let [years, months, weeks, days, hours, mins] = fields;
    let months = years.checked_mul(12)?.checked_add(months)?;
    let days = weeks.checked_mul(7)?.checked_add(days)?;
    let micros = (secs * 1e6).round();
    if !micros.is_finite() || micros.abs() >= i64::MAX as f64 {
        return None;
    }
    let nanos = hours
        .checked_mul(3_600)?
        .checked_add(mins.checked_mul(60)?)?
        .checked_mul(1_000_000)?
        .checked_add(micros as i64)?
        .checked_mul(1_000)?;
    Some(IntervalMonthDayNano::new(
        i32::try_from(months).ok()?,
        i32::try_from(days).ok()?,
        nanos,
    ))
}

fn interval_out_of_range() -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::SqlError::new(
        crate::error::SqlState::DATETIME_FIELD_OVERFLOW,
        "interval out of range",
    )))
}

/// `age(ts1, ts2)` and `age(ts)` (from today's midnight, UTC), PostgreSQL's: the difference
/// in years, months and days, then time of day, each field borrowing from the next as
/// PostgreSQL's `timestamp_age` does (`age('2024-03-31', '2024-02-29')` is `1 mon 2 days`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Age {
    signature: Signature,
}

impl Default for Age {
    fn default() -> Self {
        Age {
            signature: Signature::user_defined(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for Age {
    fn name(&self) -> &str {
        "age"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if args.is_empty() || args.len() > 2 {
            return plan_err!(
                "age takes one or two timestamps; got {} arguments",
                args.len()
            );
        }
        args.iter()
            .map(|t| match t {
                DataType::Timestamp(_, tz) => Ok(micros(tz.clone())),
                DataType::Date32 | DataType::Date64 => Ok(micros(None)),
                t if is_text(t) || t == &DataType::Null => Ok(micros(Some("UTC".into()))),
                other => plan_err!("age: arguments must be timestamps, not {other}"),
            })
            .collect()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let times: Vec<_> = arrays
            .iter()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>())
            .collect();
        let midnight = chrono::Utc::now()
            .date_naive()
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_micros();
        let mut out = arrow::array::IntervalMonthDayNanoBuilder::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            if times.iter().any(|t| t.is_null(row)) {
                out.append_null();
                continue;
            }
            let (from, to) = match times.as_slice() {
                [to] => (midnight, to.value(row)),
                [from, to, ..] => (from.value(row), to.value(row)),
                [] => (midnight, midnight),
            };
            out.append_value(age(from, to).ok_or_else(interval_out_of_range)?);
        }
        shaped(&args.args, Arc::new(out.finish()))
    }
}

/// PostgreSQL's `age(from, to)` of two instants in microseconds, read as UTC wall-clock
/// times; `None` past what chrono or an interval holds.
fn age(from: i64, to: i64) -> Option<IntervalMonthDayNano> {
    let (a, b) = (
        DateTime::from_timestamp_micros(from)?.naive_utc(),
        DateTime::from_timestamp_micros(to)?.naive_utc(),
    );
    let field = |f: fn(&NaiveDateTime) -> i64| f(&a) - f(&b);
    // Years, months, days, hours, minutes, seconds, microseconds.
    let mut d = [
        field(|t| t.year() as i64),
        field(|t| t.month() as i64),
        field(|t| t.day() as i64),
        field(|t| t.hour() as i64),
        field(|t| t.minute() as i64),
        field(|t| t.second() as i64),
        field(|t| (t.nanosecond() / 1_000) as i64),
    ];
    // Borrowing works on the later minus the earlier; the sign comes back at the end.
    let negative = from < to;
    if negative {
        d.iter_mut().for_each(|v| *v = -*v);
    }
    let [years, months, days, hours, mins, secs, micros] = &mut d;
    let carry = |low: &mut i64, high: &mut i64, unit: i64| {
        if *low < 0 {
            let borrow = (-*low + unit - 1) / unit;
            *low += borrow * unit;
            *high -= borrow;
        }
    };
    carry(micros, secs, 1_000_000);
    carry(secs, mins, 60);
    carry(mins, hours, 60);
    carry(hours, days, 24);
    // A day borrows the length of the earlier instant's month, as PostgreSQL does.
    let lender = if negative { a } else { b };
    while *days < 0 {
        *days += days_in_month(lender.year(), lender.month());
        *months -= 1;
    }
    carry(months, years, 12);
    if negative {
        d.iter_mut().for_each(|v| *v = -*v);
    }
    let [years, months, days, hours, mins, secs, micros] = d;
    let nanos = ((hours * 60 + mins) * 60 + secs)
        .checked_mul(1_000_000)?
        .checked_add(micros)?
        .checked_mul(1_000)?;
    Some(IntervalMonthDayNano::new(
        i32::try_from(years.checked_mul(12)?.checked_add(months)?).ok()?,
        i32::try_from(days).ok()?,
        nanos,
    ))
}

/// Days in `month` (1–12) of `year`.
fn days_in_month(year: i32, month: u32) -> i64 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .zip(chrono::NaiveDate::from_ymd_opt(year, month, 1))
        .map_or(31, |(next, first)| (next - first).num_days())
}

/// `to_char` taking PostgreSQL template patterns; the work is done by DataFusion's `to_char`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgToChar {
    inner: Arc<ScalarUDF>,
    /// DataFusion's date and time forms, and numbers ([`super::number_format`]).
    signature: Signature,
}

impl Default for PgToChar {
    fn default() -> Self {
        use datafusion::logical_expr::TypeSignature;
        let inner = datafusion::functions::datetime::to_char();
        let mut forms = match &inner.signature().type_signature {
            TypeSignature::OneOf(forms) => forms.clone(),
            other => vec![other.clone()],
        };
        for number in [
            DataType::Int64,
            DataType::Float64,
            DataType::Decimal128(38, 10),
        ] {
            forms.push(TypeSignature::Exact(vec![number, DataType::Utf8]));
        }
        PgToChar {
            inner,
            signature: Signature::one_of(forms, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for PgToChar {
    fn name(&self) -> &str {
        "to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if args.first().is_some_and(DataType::is_numeric) {
            return Ok(DataType::Utf8);
        }
        self.inner.inner().return_type(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args
            .args
            .first()
            .is_some_and(|a| a.data_type().is_numeric())
        {
            return number_to_char(&args.args);
        }
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

/// `to_char(number, pattern)` row by row ([`super::number_format`]).
fn number_to_char(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    use super::number_format::{Number, format};
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let patterns = cast(&arrays[1], &DataType::Utf8)?;
    let patterns = patterns.as_string::<i32>();
    let float = matches!(
        arrays[0].data_type(),
        DataType::Float16 | DataType::Float32 | DataType::Float64
    );
    let values = if float {
        cast(&arrays[0], &DataType::Float64)?
    } else {
        cast(&arrays[0], &DataType::Utf8)?
    };
    let mut out = arrow::array::StringBuilder::new();
    for row in 0..values.len() {
        if values.is_null(row) || patterns.is_null(row) {
            out.append_null();
            continue;
        }
        let number = if float {
            Number::Float(
                values
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .value(row),
            )
        } else {
            Number::Decimal(values.as_string::<i32>().value(row))
        };
        out.append_value(format(number, patterns.value(row))?);
    }
    shaped(args, Arc::new(out.finish()))
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

/// A bad argument of one of these functions: SQLSTATE 22023, as PostgreSQL answers a bad
/// unit, width or time zone.
/// The time zone `name` names (IANA, or an offset such as `+05:30`); 22023 otherwise.
fn zone_named(name: &str) -> Result<Tz> {
    name.parse()
        .map_err(|_| invalid_argument(format!("time zone \"{name}\" not recognized")))
}

fn invalid_argument(message: impl Into<String>) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::SqlError::new(
        crate::error::SqlState::INVALID_PARAMETER_VALUE,
        message,
    )))
}

/// DataFusion's `date_trunc`, with UTC timestamps truncated by arithmetic.
///
/// DataFusion truncates a zoned timestamp to an hour or coarser one value at a time through
/// chrono (a `DateTime<Tz>` per row, every field cleared in the zone), also when the zone is
/// UTC, which every `timestamptz` column here has. In UTC a truncation is the same as on the
/// naive timestamp, which DataFusion does with integer arithmetic over the whole array, so a
/// UTC array goes in without its zone and the result gets it back. A fixed width (microsecond
/// to week) of a UTC or naive array is truncated here, dividing by a constant
/// ([`truncate_fixed`]). Everything else (other zones, scalars, times) is DataFusion's own.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl Default for UtcDateTrunc {
    fn default() -> Self {
        UtcDateTrunc {
            inner: datafusion::functions::datetime::date_trunc(),
        }
    }
}

/// Whether a timestamp type's zone is UTC under one of its names.
pub(crate) fn is_utc_zone(zone: &str) -> bool {
    matches!(zone, "UTC" | "Etc/UTC" | "Z" | "+00:00" | "+00" | "+0000")
}

/// `array` under `data_type`: the same eight-byte values, no conversion (a timestamp with
/// another zone or none, or its raw `Int64`).
fn reinterpreted(
    array: &arrow::array::ArrayRef,
    data_type: DataType,
) -> Result<arrow::array::ArrayRef> {
    let data = array
        .to_data()
        .into_builder()
        .data_type(data_type)
        .build()?;
    Ok(arrow::array::make_array(data))
}

/// Whether every value of `array` (timestamps in `unit`) lies within ±146,000 years of the
/// epoch (±146 years for nanoseconds): there DataFusion's arithmetic on naive values cannot
/// overflow and gives what chrono's path gives; chrono's path refuses values outside its own
/// range, so arrays reaching past it keep that path and its error.
fn in_arithmetic_range(array: &arrow::array::ArrayRef, unit: TimeUnit) -> Result<bool> {
    const HALF: i64 = i64::MAX / 2;
    let limit = match unit {
        TimeUnit::Second => HALF / 1_000_000,
        TimeUnit::Millisecond => HALF / 1_000,
        TimeUnit::Microsecond | TimeUnit::Nanosecond => HALF,
    };
    let raw = reinterpreted(array, DataType::Int64)?;
    let values = raw.as_primitive::<arrow::datatypes::Int64Type>();
    Ok(arrow::compute::min(values).is_none_or(|v| v >= -limit)
        && arrow::compute::max(values).is_none_or(|v| v <= limit))
}

/// `array` (UTC or naive timestamps in `unit`, within [`in_arithmetic_range`]) truncated to
/// `field` when that is a fixed width, from a microsecond to a week, with the array's type;
/// `None` for any other field (a month and longer are not fixed widths).
///
/// DataFusion truncates to a second, minute, hour or day with arithmetic too, but divides by
/// a width it knows only at run time: a 64-bit division a row, 8% of the CPU of a 7-day
/// aggregate by day (BENCHMARKS.md, "Lone writes committed in place"). Here each width is a
/// constant, which the compiler turns into a multiplication. Weeks start on Monday, as in PostgreSQL (the epoch was a Thursday).
fn truncate_fixed(
    array: &arrow::array::ArrayRef,
    unit: TimeUnit,
    field: &str,
) -> Result<Option<arrow::array::ArrayRef>> {
    const DAY_NANOS: i64 = 86_400_000_000_000;
    let field = field.to_ascii_lowercase();
    let field_nanos = match field.as_str() {
        "microsecond" => 1_000,
        "millisecond" => 1_000_000,
        "second" => 1_000_000_000,
        "minute" => 60_000_000_000,
        "hour" => 3_600_000_000_000,
        "day" => DAY_NANOS,
        "week" => 7 * DAY_NANOS,
        _ => return Ok(None),
    };
    let unit_nanos = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    if field_nanos <= unit_nanos {
        // Truncating to the array's own unit or a finer one leaves it as it is.
        return Ok(Some(array.clone()));
    }
    let width = field_nanos / unit_nanos;
    // Monday 1970-01-05 is four days after the epoch, so a week starts three days before a
    // multiple of seven days.
    let offset = if field == "week" {
        3 * DAY_NANOS / unit_nanos
    } else {
        0
    };
    let raw = reinterpreted(array, DataType::Int64)?;
    let values = raw.as_primitive::<arrow::datatypes::Int64Type>().values();
    macro_rules! widths {
        ($($w:literal),*) => {
            match (width, offset) {
                $(($w, 0) => values.iter().map(|v| v - v.rem_euclid($w)).collect::<Vec<i64>>(),)*
                (w, o) => values.iter().map(|v| v - (v + o).rem_euclid(w)).collect(),
            }
        };
    }
    let truncated = widths!(
        60,
        3_600,
        86_400,
        1_000,
        60_000,
        3_600_000,
        86_400_000,
        1_000_000,
        60_000_000,
        3_600_000_000,
        86_400_000_000,
        1_000_000_000,
        60_000_000_000,
        3_600_000_000_000,
        86_400_000_000_000
    );
    let truncated: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::new(
        truncated.into(),
        array.nulls().cloned(),
    ));
    Ok(Some(reinterpreted(&truncated, array.data_type().clone())?))
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(ColumnarValue::Array(array)) = args.args.get(1) else {
            return self.inner.invoke_with_args(args);
        };
        let (unit, zone) = match array.data_type() {
            DataType::Timestamp(unit, zone)
                if zone.as_deref().is_none_or(is_utc_zone)
                    && in_arithmetic_range(array, *unit)? =>
            {
                (*unit, zone.clone())
            }
            _ => return self.inner.invoke_with_args(args),
        };
        if let Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(field)))) = args.args.first()
            && let Some(truncated) = truncate_fixed(array, unit, field)?
        {
            return Ok(ColumnarValue::Array(truncated));
        }
        if zone.is_none() {
            return self.inner.invoke_with_args(args);
        }
        let naive = reinterpreted(array, DataType::Timestamp(unit, None))?;
        // DataFusion checks the result against the type promised for these arguments.
        let naive_field = |f: &arrow::datatypes::FieldRef| {
            Arc::new(f.as_ref().clone().with_data_type(naive.data_type().clone()))
        };
        args.arg_fields[1] = naive_field(&args.arg_fields[1]);
        args.return_field = naive_field(&args.return_field);
        args.args[1] = ColumnarValue::Array(naive);
        match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(truncated) => Ok(ColumnarValue::Array(reinterpreted(
                &truncated,
                DataType::Timestamp(unit, zone),
            )?)),
            scalar => Ok(scalar),
        }
    }

    fn output_ordering(
        &self,
        input: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn invoke(
        udf: &ScalarUDF,
        unit: &str,
        stamps: &TimestampMicrosecondArray,
    ) -> Result<ColumnarValue> {
        invoke_array(
            udf,
            unit,
            &(Arc::new(stamps.clone()) as arrow::array::ArrayRef),
        )
    }

    fn invoke_array(
        udf: &ScalarUDF,
        unit: &str,
        stamps: &arrow::array::ArrayRef,
    ) -> Result<ColumnarValue> {
        let field = |t: DataType| Arc::new(Field::new("x", t, true));
        udf.invoke_with_args(ScalarFunctionArgs {
            args: vec![
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(unit.to_string()))),
                ColumnarValue::Array(stamps.clone()),
            ],
            arg_fields: vec![field(DataType::Utf8), field(stamps.data_type().clone())],
            number_rows: stamps.len(),
            return_field: field(stamps.data_type().clone()),
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    #[test]
    fn utc_truncation_by_arithmetic_equals_datafusions_per_value_path() -> Result<()> {
        let ours = ScalarUDF::from(UtcDateTrunc::default());
        let theirs = datafusion::functions::datetime::date_trunc();
        // Both sides of the epoch, a leap day, the ends of years and months, and a NULL.
        let values = [
            Some(0),
            Some(-1),
            Some(-86_400_000_001),
            Some(951_827_696_123_456),
            Some(1_767_225_599_999_999),
            Some(1_767_225_600_000_000),
            Some(1_772_323_200_000_001),
            None,
            Some(-2_208_988_800_000_001),
        ];
        // Zoned arrays go through chrono in DataFusion; naive ones through its arithmetic.
        for zone in [Some("UTC"), Some("+00:00"), Some("Etc/UTC"), None] {
            let micros = TimestampMicrosecondArray::from(values.to_vec()).with_timezone_opt(zone);
            for time_unit in [
                TimeUnit::Second,
                TimeUnit::Millisecond,
                TimeUnit::Microsecond,
                TimeUnit::Nanosecond,
            ] {
                let stamps = cast(
                    &micros,
                    &DataType::Timestamp(time_unit, zone.map(Arc::from)),
                )?;
                for unit in [
                    "microsecond",
                    "millisecond",
                    "second",
                    "minute",
                    "hour",
                    "day",
                    "week",
                    "month",
                    "quarter",
                    "year",
                    "DAY",
                ] {
                    let (ColumnarValue::Array(a), ColumnarValue::Array(b)) = (
                        invoke_array(&ours, unit, &stamps)?,
                        invoke_array(&theirs, unit, &stamps)?,
                    ) else {
                        panic!("arrays expected");
                    };
                    assert_eq!(
                        a.data_type(),
                        b.data_type(),
                        "{zone:?} {time_unit:?} {unit}"
                    );
                    assert_eq!(&a, &b, "{zone:?} {time_unit:?} {unit}");
                }
            }
        }
        // A slice keeps its own rows.
        let stamps: arrow::array::ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(values.to_vec()).with_timezone("UTC"));
        let slice = stamps.slice(2, 5);
        let (ColumnarValue::Array(a), ColumnarValue::Array(b)) = (
            invoke_array(&ours, "hour", &slice)?,
            invoke_array(&theirs, "hour", &slice)?,
        ) else {
            panic!("arrays expected");
        };
        assert_eq!(&a, &b);
        // Past chrono's range DataFusion refuses the value; so do we, where the arithmetic
        // would have wrapped around.
        let far = TimestampMicrosecondArray::from(vec![i64::MIN + 1]).with_timezone("UTC");
        let call = |udf: &ScalarUDF| {
            invoke(udf, "day", &far)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert!(call(&theirs).is_err());
        assert_eq!(call(&ours), call(&theirs));
        // Another zone is DataFusion's path: the day starts at local midnight.
        let stamps = TimestampMicrosecondArray::from(vec![1_767_225_600_000_000])
            .with_timezone("America/New_York");
        let ColumnarValue::Array(a) = invoke(&ours, "day", &stamps)? else {
            panic!("an array expected");
        };
        assert_eq!(
            a.as_primitive::<TimestampMicrosecondType>().value(0),
            1_767_157_200_000_000
        );
        Ok(())
    }
}
