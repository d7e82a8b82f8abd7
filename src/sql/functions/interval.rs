//! Interval arithmetic as PostgreSQL does it: `interval * number`, `number * interval`,
//! `interval / number` (planned by [`PgIntervalPlanner`] onto `interval_mul` / `interval_div`),
//! and `justify_hours`, `justify_days`, `justify_interval`.
//!
//! An interval is months, days and microseconds, kept apart (a day is not always 24 hours, a
//! month not always 30 days). Scaling follows PostgreSQL 15's `interval_mul`: each field is
//! scaled on its own, and a fraction of a month is carried down as days (30 to a month) and a
//! fraction of a day as time (24 hours to a day), never up; `justify_*` carry up on request.
//! Arrow's interval holds nanoseconds; results are rounded to microseconds as PostgreSQL's are.

use std::sync::Arc;

use arrow::array::{Array, AsArray, IntervalMonthDayNanoArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{DataType, Float64Type, IntervalMonthDayNano, IntervalMonthDayNanoType};
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::ExprSchemable;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{ColumnarValue, Expr, ScalarUDF, Signature, Volatility};

use crate::error::{SqlError, SqlState};
use crate::sql::functions::shaped;
use crate::sql::functions::time::INTERVAL;

const DAYS_PER_MONTH: f64 = 30.0;
const SECS_PER_DAY: f64 = 86_400.0;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Plans `interval * n`, `n * interval` and `interval / n` for any number `n` (DataFusion
/// multiplies an interval by nothing).
#[derive(Debug)]
pub struct PgIntervalPlanner;

impl ExprPlanner for PgIntervalPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        use datafusion::sql::sqlparser::ast::BinaryOperator as Op;
        let interval = |e: &Expr| matches!(e.get_type(schema), Ok(DataType::Interval(_)));
        let number = |e: &Expr| e.get_type(schema).is_ok_and(|t| t.is_numeric());
        let RawBinaryExpr { op, left, right } = expr;
        // Named as written, so `i * 3` and `3 * i` in one select list stay two columns.
        let name = format!("{} {op} {}", left.schema_name(), right.schema_name());
        let (udf, args) = match op {
            Op::Multiply if interval(&left) && number(&right) => (interval_mul(), [left, right]),
            Op::Multiply if number(&left) && interval(&right) => (interval_mul(), [right, left]),
            Op::Divide if interval(&left) && number(&right) => (interval_div(), [left, right]),
            _ => return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right })),
        };
        Ok(PlannerResult::Planned(
            Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), args.into())).alias(name),
        ))
    }
}

/// `interval_mul(interval, factor)`, the `*` operator's function in PostgreSQL.
pub(crate) fn interval_mul() -> ScalarUDF {
    interval_udf("interval_mul", 2, |span, factor| scale(span, factor, false))
}

/// `interval_div(interval, divisor)`, the `/` operator's function in PostgreSQL.
pub(crate) fn interval_div() -> ScalarUDF {
    interval_udf("interval_div", 2, |span, divisor| {
        if divisor == 0.0 {
            return Err(SqlError::new(SqlState::DIVISION_BY_ZERO, "division by zero").into());
        }
        scale(span, divisor, true)
    })
}

/// `justify_hours`, `justify_days` and `justify_interval`.
pub(crate) fn justify() -> [ScalarUDF; 3] {
    [
        interval_udf("justify_hours", 1, |span, _| Ok(justify_hours(span))),
        interval_udf("justify_days", 1, |span, _| Ok(justify_days(span))),
        interval_udf("justify_interval", 1, |span, _| justify_interval(span)),
    ]
}

/// An interval function of `arity` arguments: an interval (or text that reads as one,
/// `justify_hours('27 hours')`) and, for two, any number, cast here; `each` gives a row's
/// result (the number is 1 for one argument); NULL for any NULL.
fn interval_udf(
    name: &'static str,
    arity: usize,
    each: impl Fn(Span, f64) -> Result<Span> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            name,
            Signature::any(arity, Volatility::Immutable),
            INTERVAL,
            Arc::new(move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                let spans = cast(&arrays[0], &INTERVAL)?;
                let spans = spans.as_primitive::<IntervalMonthDayNanoType>();
                let factors = match arrays.get(1) {
                    Some(factors) => Some(cast(factors, &DataType::Float64)?),
                    None => None,
                };
                let factors = factors.as_ref().map(|f| f.as_primitive::<Float64Type>());
                let result = (0..spans.len())
                    .map(|row| {
                        if spans.is_null(row) || factors.is_some_and(|f| f.is_null(row)) {
                            return Ok(None);
                        }
                        let factor = factors.map_or(1.0, |f| f.value(row));
                        each(Span::of(spans.value(row)), factor).map(|s| Some(s.interval()))
                    })
                    .collect::<Result<IntervalMonthDayNanoArray>>()?;
                shaped(args, Arc::new(result))
            }),
        ),
    )
}

/// An interval as PostgreSQL holds it: months, days, microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    month: i32,
    day: i32,
    time: i64,
}

impl Span {
    fn of(interval: IntervalMonthDayNano) -> Span {
        Span {
            month: interval.months,
            day: interval.days,
            time: interval.nanoseconds.div_euclid(1_000),
        }
    }

    fn interval(self) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(self.month, self.day, self.time * 1_000)
    }
}

fn out_of_range() -> datafusion::error::DataFusionError {
    SqlError::new(SqlState::DATETIME_FIELD_OVERFLOW, "interval out of range").into()
}

/// PostgreSQL's `TSROUND`: to the microsecond, in seconds or days.
fn ts_round(value: f64) -> f64 {
    (value * 1e6).round_ties_even() / 1e6
}

fn to_i32(value: f64) -> Result<i32> {
    if value.is_nan() || value < i32::MIN as f64 || value >= -(i32::MIN as f64) {
        return Err(out_of_range());
    }
    Ok(value as i32)
}

/// `span` times `factor` (or divided by it), field by field, with fractions carried down as
/// PostgreSQL 15's `interval_mul` / `interval_div` carry them.
fn scale(span: Span, factor: f64, divide: bool) -> Result<Span> {
    let by = |field: f64| {
        if divide {
            field / factor
        } else {
            field * factor
        }
    };
    let months = by(span.month as f64);
    let days = by(span.day as f64);
    let mut result = Span {
        month: to_i32(months)?,
        day: to_i32(days)?,
        time: 0,
    };
    let month_remainder_days = ts_round((months - result.month as f64) * DAYS_PER_MONTH);
    let mut sec_remainder = ts_round(
        (days - result.day as f64 + month_remainder_days - month_remainder_days.trunc())
            * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        let whole_days = (sec_remainder / SECS_PER_DAY).trunc();
        result.day = result
            .day
            .checked_add(whole_days as i32)
            .ok_or_else(out_of_range)?;
        sec_remainder -= whole_days * SECS_PER_DAY;
    }
    result.day = result
        .day
        .checked_add(month_remainder_days.trunc() as i32)
        .ok_or_else(out_of_range)?;
    let time = (by(span.time as f64) + sec_remainder * 1e6).round_ties_even();
    // Nanoseconds must fit too.
    if time.is_nan() || time.abs() >= (i64::MAX / 1_000) as f64 {
        return Err(out_of_range());
    }
    result.time = time as i64;
    Ok(result)
}

/// Whole 24-hour periods of the time carried into days, the signs of days and time made to
/// agree.
fn justify_hours(span: Span) -> Span {
    let mut result = span;
    let whole_days = result.time / MICROS_PER_DAY;
    result.time -= whole_days * MICROS_PER_DAY;
    result.day = result.day.saturating_add(whole_days as i32);
    if result.day > 0 && result.time < 0 {
        result.time += MICROS_PER_DAY;
        result.day -= 1;
    } else if result.day < 0 && result.time > 0 {
        result.time -= MICROS_PER_DAY;
        result.day += 1;
    }
    result
}

/// Whole 30-day periods carried into months, the signs of months and days made to agree.
fn justify_days(span: Span) -> Span {
    let mut result = span;
    let whole_months = result.day / 30;
    result.day -= whole_months * 30;
    result.month = result.month.saturating_add(whole_months);
    if result.month > 0 && result.day < 0 {
        result.day += 30;
        result.month -= 1;
    } else if result.month < 0 && result.day > 0 {
        result.day -= 30;
        result.month += 1;
    }
    result
}

/// Both, with every field's sign made to agree (PostgreSQL 15's `interval_justify_interval`).
fn justify_interval(span: Span) -> Result<Span> {
    let mut result = span;
    if (result.day > 0 && result.time > 0) || (result.day < 0 && result.time < 0) {
        let whole_months = result.day / 30;
        result.day -= whole_months * 30;
        result.month = result
            .month
            .checked_add(whole_months)
            .ok_or_else(out_of_range)?;
    }
    let whole_days = result.time / MICROS_PER_DAY;
    result.time -= whole_days * MICROS_PER_DAY;
    result.day = result
        .day
        .checked_add(i32::try_from(whole_days).map_err(|_| out_of_range())?)
        .ok_or_else(out_of_range)?;
    let whole_months = result.day / 30;
    result.day -= whole_months * 30;
    result.month = result
        .month
        .checked_add(whole_months)
        .ok_or_else(out_of_range)?;
    if result.month > 0 && (result.day < 0 || (result.day == 0 && result.time < 0)) {
        result.day += 30;
        result.month -= 1;
    } else if result.month < 0 && (result.day > 0 || (result.day == 0 && result.time > 0)) {
        result.day -= 30;
        result.month += 1;
    }
    if result.day > 0 && result.time < 0 {
        result.time += MICROS_PER_DAY;
        result.day -= 1;
    } else if result.day < 0 && result.time > 0 {
        result.time -= MICROS_PER_DAY;
        result.day += 1;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn span(month: i32, day: i32, time: i64) -> Span {
        Span { month, day, time }
    }

    // Expected values from PostgreSQL 15.
    #[test]
    fn scaling_carries_fractions_down_as_postgresql_does() {
        // interval '1 hour' * 3 = 03:00:00
        assert_eq!(
            scale(span(0, 0, HOUR), 3.0, false).ok(),
            Some(span(0, 0, 3 * HOUR))
        );
        // interval '1 mon' * 1.5 = 1 mon 15 days
        assert_eq!(scale(span(1, 0, 0), 1.5, false).ok(), Some(span(1, 15, 0)));
        // interval '1 day' * 1.5 = 1 day 12:00:00
        assert_eq!(
            scale(span(0, 1, 0), 1.5, false).ok(),
            Some(span(0, 1, 12 * HOUR))
        );
        // interval '1 mon' / 7 = 4 days 06:51:25.6896 (the month's fraction rounded to µs of
        // a day first)
        assert_eq!(
            scale(span(1, 0, 0), 7.0, true).ok(),
            Some(span(0, 4, 24_685_689_600))
        );
        // interval '-1 day 2 hours' * 0.5 = -11:00:00
        assert_eq!(
            scale(span(0, -1, 2 * HOUR), 0.5, false).ok(),
            Some(span(0, 0, -11 * HOUR))
        );
        assert!(scale(span(i32::MAX, 0, 0), 2.0, false).is_err());
        assert!(scale(span(0, 0, HOUR), f64::NAN, false).is_err());
    }

    #[test]
    fn justify_carries_whole_days_and_months_up() {
        // justify_hours('27 hours') = 1 day 03:00:00
        assert_eq!(justify_hours(span(0, 0, 27 * HOUR)), span(0, 1, 3 * HOUR));
        // justify_hours('1 day -1 hour') = 23:00:00
        assert_eq!(justify_hours(span(0, 1, -HOUR)), span(0, 0, 23 * HOUR));
        // justify_days('35 days') = 1 mon 5 days
        assert_eq!(justify_days(span(0, 35, 0)), span(1, 5, 0));
        // justify_days('1 mon -5 days') = 25 days
        assert_eq!(justify_days(span(1, -5, 0)), span(0, 25, 0));
        // justify_interval('1 mon -1 hour') = 29 days 23:00:00
        assert_eq!(
            justify_interval(span(1, 0, -HOUR)).ok(),
            Some(span(0, 29, 23 * HOUR))
        );
        // justify_interval('36 days 27 hours') = 1 mon 7 days 03:00:00
        assert_eq!(
            justify_interval(span(0, 36, 27 * HOUR)).ok(),
            Some(span(1, 7, 3 * HOUR))
        );
    }
}
