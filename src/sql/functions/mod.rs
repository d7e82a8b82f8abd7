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
//! - `at_time_zone(ts, zone)` and `extract_epoch(ts)`, TimeFusion's function forms of
//!   `ts AT TIME ZONE zone` (a `timestamptz` becomes the zone's wall-clock `timestamp`, a
//!   `timestamp` read in the zone becomes a `timestamptz`) and `EXTRACT(EPOCH FROM ts)`.
//!
//! - `percentile_disc(fraction) WITHIN GROUP (ORDER BY x)`, as in PostgreSQL: the first value
//!   of the ordered group whose position reaches the fraction (an actual input value, never an
//!   interpolation; `percentile_cont` is DataFusion's own), and `mode() WITHIN GROUP (ORDER BY
//!   x)`, the most frequent value (the first in order among equals).
//!
//! - TimescaleDB toolkit's `percentile_agg(x)` (a digest that can be stored and merged),
//!   `rollup(digest)`, `approx_percentile(p, digest)`, `num_vals` / `min_val` / `max_val`
//!   ([`percentile`]).
//!
//! - Metric helpers over `otel_metrics` ([`metrics`]): `increase(value, time)` and
//!   `rate(value, time)`, a counter's growth over a group's points with resets counted, and
//!   `histogram_quantile(q, bucket_counts, explicit_bounds)` of one histogram point.
//!
//! - `to_char(value, pattern)` with PostgreSQL's template patterns (`YYYY-MM-DD HH24:MI:SS`,
//!   `Mon`, `Day`, `FM`, quoted literals …), translated to DataFusion's strftime-style
//!   `to_char`; a pattern that already contains `%` is passed through unchanged. Of a number,
//!   PostgreSQL's number patterns (`FM9,999.00`, [`number_format`]).
//!   `to_number(text, pattern)` reads one back as PostgreSQL does ([`to_number`]).
//!
//! - PostgreSQL's JSON operators and functions over the JSON-text columns, on top of
//!   `datafusion-functions-json`: `->` / `#>` return JSON text (as `json` does in PostgreSQL),
//!   `->>` / `#>>` return text, `#>`/`#>>` take a `'{key,0,key}'` path, `?` tests a key (`?|` / `?&`
//!   any / all of several, [`json_edit`]), `@>` / `<@`
//!   test containment ([`JsonbContains`]), and `json_extract_path[_text]` /
//!   `jsonb_extract_path[_text]` are the function forms.
//!
//! - PostgreSQL's JSON constructors: `json_build_array` / `json_build_object`, `to_json`,
//!   `row_to_json`, `array_to_json`, the aggregate `json_agg`, and the `jsonb_` forms, giving
//!   JSON text in PostgreSQL's exact `json` / `jsonb` output forms; JSON-text arguments (the
//!   `->` operator's results, these functions' own) are embedded as JSON, not as strings.
//!
//! - `jsonb_set`, `json_strip_nulls` / `jsonb_strip_nulls`, `jsonb_pretty`, `jsonb || jsonb`,
//!   `jsonb - key`, the `?|` / `?&`
//!   key tests and the aggregates `json_object_agg` / `jsonb_object_agg` ([`json_edit`]).
//!
//! - `json_array_length` / `jsonb_array_length` and `json_typeof` / `jsonb_typeof` over JSON
//!   text.
//!
//! - PostgreSQL's names for DataFusion's functions: `every` (`bool_and`), `variance`
//!   (`var_samp`), `gen_random_uuid()` / `uuid_generate_v4()` (`uuid()`), `sign` (`signum`),
//!   `array_remove` (`array_remove_all`: PostgreSQL removes every equal element),
//!   `statement_timestamp()` / `transaction_timestamp()` (`now()`).
//!
//! - `quote_literal` / `quote_nullable`, `clock_timestamp()` (the time it is called, unlike
//!   `now()`), `pg_postmaster_start_time()`.
//!
//! - `pg_size_pretty(bytes)` in PostgreSQL's units and rounding; `num_nulls(…)` /
//!   `num_nonnulls(…)`; `width_bucket(operand, low, high, count)` (the `float8` form, with
//!   PostgreSQL's 2201G errors); `make_timestamp(year, month, day, hour, min, sec)`;
//!   `txid_current()` / `pg_current_xact_id()` (each statement its own transaction);
//!   `array_fill(value, ARRAY[n] [, ARRAY[1]])` (one dimension, from 1).
//!
//! - Interval arithmetic ([`interval`]): `interval * n`, `n * interval`, `interval / n` with
//!   PostgreSQL's carrying of fractions, and `justify_hours` / `justify_days` /
//!   `justify_interval`.
//!
//! - `regexp_split_to_array(text, pattern [, flags])` and `regexp_matches_list`, the list
//!   behind the set-returning `regexp_matches` ([`regex`]; PostgreSQL's flags).
//!
//! - `array_length(array, dim)` returns PostgreSQL's `int4`, NULL for an empty array.
//!
//! - `a && b`, PostgreSQL's array overlap operator, is `array_has_any(a, b)` (planned with the
//!   JSON operators).
//!
//! Functions here are pure: they never read storage or the clock (but for
//! `txid_current()`, which starts its ids from the clock, and `clock_timestamp()`).

use std::sync::Arc;

use arrow::array::ArrayRef;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{AggregateUDF, ColumnarValue, ScalarUDF};
use datafusion::prelude::SessionContext;

mod aggregate;
mod interval;
mod json;
pub(crate) mod json_build;
mod json_edit;
mod metrics;
mod number_format;
mod percentile;
mod pg;
mod regex;
pub(crate) mod size;
mod time;
mod to_number;

pub use aggregate::*;
pub use json::*;
pub use json_build::*;
pub use pg::*;
pub use time::*;

/// Registers every TimeFusion function in `context`.
pub fn register(context: &mut SessionContext) -> Result<()> {
    context.register_udf(ScalarUDF::from(TimeBucket::new()));
    context.register_udaf(AggregateUDF::from(PercentileDisc::new()));
    context.register_udaf(AggregateUDF::from(Mode::default()));
    percentile::register(context);
    context.register_udf(ScalarUDF::from(PgToChar::default()));
    context.register_udf(to_number::to_number());
    context.register_udf(ScalarUDF::from(AtTimeZone::default()));
    context.register_udf(ScalarUDF::from(UtcDateTrunc::default()));
    context.register_udf(ScalarUDF::from(ExtractEpoch::default()));
    context.register_udf(ScalarUDF::from(MakeInterval::default()));
    context.register_udf(ScalarUDF::from(Age::default()));
    context.register_udf(ScalarUDF::from(PgVersion::new()));
    context.register_udf(ScalarUDF::from(PgArrayLength::default()));
    context.register_udf(ScalarUDF::from(ToRegtype::new()));
    context.register_udf(pg::pg_size_pretty());
    context.register_udf(ScalarUDF::from(pg::ArrayFill::default()));
    context.register_udf(pg::width_bucket());
    context.register_udf(pg::make_timestamp());
    context.register_udf(pg::quote_literal(false));
    context.register_udf(pg::quote_literal(true));
    context.register_udf(pg::clock_timestamp());
    context.register_udf(pg::postmaster_start_time());
    for id in pg::TransactionId::both() {
        context.register_udf(id);
    }
    context.register_udf(interval::interval_mul());
    context.register_udf(interval::interval_div());
    for function in regex::functions() {
        context.register_udf(function);
    }
    for justify in interval::justify() {
        context.register_udf(justify);
    }
    context.register_udaf(AggregateUDF::from(metrics::CounterAggregate::increase()));
    context.register_udaf(AggregateUDF::from(metrics::CounterAggregate::rate()));
    context.register_udf(metrics::histogram_quantile());
    for counter in pg::null_counts() {
        context.register_udf(counter);
    }
    // Ours first: planners are asked in registration order, and `->` must give JSON text.
    datafusion::execution::FunctionRegistry::register_expr_planner(
        context,
        Arc::new(PgJsonPlanner),
    )?;
    datafusion::execution::FunctionRegistry::register_expr_planner(
        context,
        Arc::new(interval::PgIntervalPlanner),
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
    // The functions `->>` / `->` plan to go back under their own names: an aliased copy is
    // another type, and a statement's expressions must read back equal through this registry
    // to be logged as a WAL change record (`engine::change`).
    context.register_udf(ScalarUDF::clone(&as_text));
    context.register_udf(ScalarUDF::clone(&as_json));
    for constructor in [
        ScalarUDF::from(JsonBuildArray::json()),
        ScalarUDF::from(JsonBuildArray::jsonb()),
        ScalarUDF::from(JsonBuildObject::json()),
        ScalarUDF::from(JsonBuildObject::jsonb()),
        ScalarUDF::from(ToJson::json()),
        ScalarUDF::from(ToJson::jsonb()),
        ScalarUDF::from(ToJson::row()),
        ScalarUDF::from(ToJson::array()),
    ] {
        context.register_udf(constructor);
    }
    for edit in json_edit::functions() {
        context.register_udf(edit);
    }
    for inspection in json::inspection() {
        context.register_udf(inspection);
    }
    // PostgreSQL's names for functions DataFusion has under others.
    for (theirs, ours) in [("every", "bool_and"), ("variance", "var_samp")] {
        if let Ok(aggregate) = datafusion::execution::FunctionRegistry::udaf(context, ours) {
            context.register_udaf(AggregateUDF::clone(&aggregate).with_aliases([theirs]));
        }
    }
    // PostgreSQL's `sign` is DataFusion's `signum`; its `array_remove` removes every equal
    // element (DataFusion's removes the first: `array_remove_all` is PostgreSQL's).
    // `statement_timestamp()` and `transaction_timestamp()` are `now()`: each statement is its
    // own transaction.
    for (theirs, ours) in [
        ("sign", "signum"),
        ("array_remove", "array_remove_all"),
        ("statement_timestamp", "now"),
        ("transaction_timestamp", "now"),
    ] {
        if let Ok(function) = datafusion::execution::FunctionRegistry::udf(context, ours) {
            context.register_udf(ScalarUDF::clone(&function).with_aliases([theirs]));
        }
    }
    if let Ok(uuid) = datafusion::execution::FunctionRegistry::udf(context, "uuid") {
        context.register_udf(
            ScalarUDF::clone(&uuid).with_aliases(["gen_random_uuid", "uuid_generate_v4"]),
        );
    }
    context.register_udaf(AggregateUDF::from(JsonAgg::json()));
    context.register_udaf(AggregateUDF::from(JsonAgg::jsonb()));
    context.add_analyzer_rule(Arc::new(PgRowFieldNames));
    #[cfg(debug_assertions)]
    context.register_udf(test_panic());
    Ok(())
}

/// `timefusion_test_panic(bigint)`, in debug builds only: panics with its argument in the
/// message, while planning when the argument is a constant (constant folding), while running
/// otherwise. `tests/e2e/limits.rs` shows a panic ends one statement, not the server.
#[cfg(debug_assertions)]
fn test_panic() -> ScalarUDF {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::{Volatility, create_udf};
    create_udf(
        "timefusion_test_panic",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| -> Result<ColumnarValue> {
            let first = match &args[0] {
                ColumnarValue::Scalar(value) => value.to_string(),
                ColumnarValue::Array(values) => ScalarValue::try_from_array(values, 0)?.to_string(),
            };
            panic!("timefusion_test_panic({first})")
        }),
    )
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

#[cfg(test)]
mod tests {
    use arrow::array::timezone::Tz;
    use arrow::datatypes::IntervalMonthDayNano;
    use chrono::DateTime;

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
