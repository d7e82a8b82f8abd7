//! PostgreSQL's own functions where DataFusion's differ or has none: `array_length` (`int4`,
//! NULL when empty), `version()`, `to_regtype`, `pg_size_pretty`, `num_nulls` /
//! `num_nonnulls`, `width_bucket`, `make_timestamp`, `array_fill`.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{SqlError, SqlState};
use crate::sql::functions::shaped;

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
            crate::sql::SERVER_VERSION
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

/// `pg_size_pretty(bigint)`: a byte count in PostgreSQL 15's words (`bytes`, `kB`, `MB`, `GB`,
/// `TB`, `PB`: a unit is used from 10 240 of the one below, rounded half away from zero).
pub(crate) fn pg_size_pretty() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = ColumnarValue::values_to_arrays(args)?;
            let texts: arrow::array::StringArray = sizes[0]
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(|size| size.map(size_pretty))
                .collect();
            shaped(args, Arc::new(texts))
        }),
    )
}

fn size_pretty(size: i64) -> String {
    const LIMIT: i64 = 10 * 1024;
    const LIMIT2: i64 = LIMIT * 2 - 1;
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    if size.abs() < LIMIT {
        return format!("{size} bytes");
    }
    // One extra bit kept for rounding, as PostgreSQL does.
    let mut size = size >> 9;
    for unit in ["kB", "MB", "GB", "TB"] {
        if size.abs() < LIMIT2 {
            return format!("{} {unit}", half_rounded(size));
        }
        size >>= 10;
    }
    format!("{} PB", half_rounded(size))
}

/// `num_nulls(…)` and `num_nonnulls(…)`: how many of the arguments are NULL, or are not.
pub(crate) fn null_counts() -> [ScalarUDF; 2] {
    let counter = |name: &str, nulls: bool| {
        ScalarUDF::from(
            datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
                name,
                Signature::variadic_any(Volatility::Immutable),
                DataType::Int32,
                Arc::new(move |args: &[ColumnarValue]| {
                    let arrays = ColumnarValue::values_to_arrays(args)?;
                    let rows = arrays.first().map_or(1, |a| a.len());
                    // Logical nulls: an untyped NULL argument is a `NullArray`, which has no
                    // null buffer.
                    let logical: Vec<_> = arrays.iter().map(|a| a.logical_nulls()).collect();
                    let counts: arrow::array::Int32Array = (0..rows)
                        .map(|row| {
                            let null = logical
                                .iter()
                                .filter(|n| n.as_ref().is_some_and(|n| n.is_null(row)))
                                .count();
                            let count = if nulls { null } else { arrays.len() - null };
                            Some(i32::try_from(count).unwrap_or(i32::MAX))
                        })
                        .collect();
                    shaped(args, Arc::new(counts))
                }),
            ),
        )
    };
    [counter("num_nulls", true), counter("num_nonnulls", false)]
}

/// `width_bucket(operand, low, high, count)`, PostgreSQL's `float8` form: which of `count`
/// equal-width buckets between `low` and `high` the operand falls in, `0` below the range and
/// `count + 1` above it (a descending range, `low > high`, counts the other way).
pub(crate) fn width_bucket() -> ScalarUDF {
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            "width_bucket",
            // Any numbers (integer literals are `Int64`), cast here.
            Signature::any(4, Volatility::Immutable),
            DataType::Int32,
            Arc::new(width_buckets),
        ),
    )
}

fn width_buckets(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let floats = |i: usize| -> Result<arrow::array::Float64Array> {
        Ok(cast(&arrays[i], &DataType::Float64)?
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone())
    };
    let (operand, low, high) = (floats(0)?, floats(1)?, floats(2)?);
    let count = cast(&arrays[3], &DataType::Int64)?;
    let count = count.as_primitive::<arrow::datatypes::Int64Type>();
    let buckets = (0..operand.len())
        .map(|row| {
            let nulls = [operand.is_null(row), low.is_null(row), high.is_null(row)];
            if nulls.contains(&true) || count.is_null(row) {
                return Ok(None);
            }
            let count = i32::try_from(count.value(row)).map_err(|_| {
                SqlError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range")
            })?;
            bucket(operand.value(row), low.value(row), high.value(row), count).map(Some)
        })
        .collect::<Result<arrow::array::Int32Array>>()?;
    shaped(args, Arc::new(buckets))
}

/// `make_timestamp(year, month, day, hour, min, sec)`: a `timestamp` (without time zone)
/// from its fields, with PostgreSQL's ranges: hour 24 only as 24:00:00, `sec` up to 60
/// (carried over), fractions rounded to the microsecond, negative years BC, no year 0.
pub(crate) fn make_timestamp() -> ScalarUDF {
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            "make_timestamp",
            Signature::any(6, Volatility::Immutable),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            Arc::new(make_timestamps),
        ),
    )
}

fn make_timestamps(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let mut ints = Vec::with_capacity(5);
    for array in &arrays[..5] {
        let array = cast(array, &DataType::Int64)?;
        ints.push(array.as_primitive::<arrow::datatypes::Int64Type>().clone());
    }
    let seconds = cast(&arrays[5], &DataType::Float64)?;
    let seconds = seconds.as_primitive::<arrow::datatypes::Float64Type>();
    let micros = (0..seconds.len())
        .map(|row| {
            if seconds.is_null(row) || ints.iter().any(|a| a.is_null(row)) {
                return Ok(None);
            }
            let field = |i: usize| ints[i].value(row);
            timestamp_micros(
                [field(0), field(1), field(2), field(3), field(4)],
                seconds.value(row),
            )
            .map(Some)
        })
        .collect::<Result<arrow::array::TimestampMicrosecondArray>>()?;
    shaped(args, Arc::new(micros))
}

/// Microseconds since 1970 of the fields, as PostgreSQL's `make_timestamp` reads them.
fn timestamp_micros([year, month, day, hour, min]: [i64; 5], sec: f64) -> Result<i64> {
    let date_error = || -> datafusion::error::DataFusionError {
        SqlError::new(
            SqlState::DATETIME_FIELD_OVERFLOW,
            format!("date field value out of range: {year}-{month:02}-{day:02}"),
        )
        .into()
    };
    // Year -1 is 1 BC, ISO year 0.
    let iso_year = match year {
        0 => return Err(date_error()),
        y if y < 0 => y + 1,
        y => y,
    };
    let date = i32::try_from(iso_year)
        .ok()
        .zip(u32::try_from(month).ok())
        .zip(u32::try_from(day).ok())
        .and_then(|((y, m), d)| chrono::NaiveDate::from_ymd_opt(y, m, d))
        .ok_or_else(date_error)?;
    let time_ok =
        (0..=23).contains(&hour) && (0..=59).contains(&min) && (0.0..=60.0).contains(&sec)
            || hour == 24 && min == 0 && sec == 0.0;
    if !time_ok {
        return Err(SqlError::new(
            SqlState::DATETIME_FIELD_OVERFLOW,
            format!(
                "time field value out of range: {hour}:{min:02}:{}",
                seconds_text(sec)
            ),
        )
        .into());
    }
    let day_micros = date
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_micros())
        .ok_or_else(date_error)?;
    let time_micros = (hour * 60 + min) * 60_000_000 + (sec * 1e6).round_ties_even() as i64;
    Ok(day_micros + time_micros)
}

/// `sec` as C's `%02g` prints it (PostgreSQL's error messages).
fn seconds_text(sec: f64) -> String {
    let text = if sec.fract() == 0.0 && sec.abs() < 1e6 {
        format!("{}", sec as i64)
    } else {
        let text = format!("{sec:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if text.len() < 2 {
        format!("0{text}")
    } else {
        text
    }
}

/// PostgreSQL's `width_bucket_float8`, with its errors.
fn bucket(operand: f64, low: f64, high: f64, count: i32) -> Result<i32> {
    let invalid = |message: &str| -> datafusion::error::DataFusionError {
        SqlError::new(
            SqlState::INVALID_ARGUMENT_FOR_WIDTH_BUCKET_FUNCTION,
            message,
        )
        .into()
    };
    if count <= 0 {
        return Err(invalid("count must be greater than zero"));
    }
    if operand.is_nan() || low.is_nan() || high.is_nan() {
        return Err(invalid(
            "operand, lower bound, and upper bound cannot be NaN",
        ));
    }
    if !low.is_finite() || !high.is_finite() {
        return Err(invalid("lower and upper bounds must be finite"));
    }
    if low == high {
        return Err(invalid("lower bound cannot equal upper bound"));
    }
    let over = || -> Result<i32> {
        count.checked_add(1).ok_or_else(|| {
            SqlError::new(SqlState::NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range").into()
        })
    };
    let fraction = if low < high {
        if operand < low {
            return Ok(0);
        }
        if operand >= high {
            return over();
        }
        // As PostgreSQL 15 computes it, so the edges land where its do (halved where the
        // width itself would overflow).
        if (high - low).is_infinite() {
            (operand / 2.0 - low / 2.0) / (high / 2.0 - low / 2.0)
        } else {
            (operand - low) / (high - low)
        }
    } else {
        if operand > low {
            return Ok(0);
        }
        if operand <= high {
            return over();
        }
        if (low - high).is_infinite() {
            (low / 2.0 - operand / 2.0) / (low / 2.0 - high / 2.0)
        } else {
            (low - operand) / (low - high)
        }
    };
    let bucket = (fraction * f64::from(count)) as i32 + 1;
    // Rounding may put an operand just below the top edge into bucket count + 1.
    Ok(bucket.min(count))
}

/// `txid_current()` and `pg_current_xact_id()`: the statement's transaction id. Every
/// statement is its own transaction here: calls in one statement give the same id (the plan's
/// simplifier folds each into a constant for the statement's start time), and each statement a
/// larger one than every statement before it, also across restarts (ids start from the
/// microseconds since 1970 at a process's first call).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TransactionId {
    name: &'static str,
    signature: Signature,
}

impl TransactionId {
    pub(crate) fn both() -> [ScalarUDF; 2] {
        ["txid_current", "pg_current_xact_id"].map(|name| {
            ScalarUDF::from(TransactionId {
                name,
                signature: Signature::exact(vec![], Volatility::Volatile),
            })
        })
    }
}

impl ScalarUDFImpl for TransactionId {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn simplify(
        &self,
        args: Vec<datafusion::logical_expr::Expr>,
        info: &datafusion::logical_expr::simplify::SimplifyContext,
    ) -> Result<datafusion::logical_expr::simplify::ExprSimplifyResult> {
        use datafusion::logical_expr::simplify::ExprSimplifyResult;
        let Some(start) = info.query_execution_start_time() else {
            return Ok(ExprSimplifyResult::Original(args));
        };
        let id = transaction_id(start.timestamp_nanos_opt().unwrap_or(i64::MAX));
        Ok(ExprSimplifyResult::Simplified(
            datafusion::logical_expr::Expr::Literal(ScalarValue::Int64(Some(id)), None),
        ))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(
            transaction_id(i64::MIN),
        ))))
    }
}

/// The id of the statement that started at `start` (nanoseconds since 1970): the last id
/// given when that statement asked before, else a new one. `i64::MIN`: always a new one.
fn transaction_id(start: i64) -> i64 {
    static LAST: std::sync::Mutex<(i64, i64)> = std::sync::Mutex::new((i64::MIN, 0));
    let mut last = LAST
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if start != i64::MIN && last.0 == start {
        return last.1;
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    *last = (start, micros.max(last.1 + 1));
    last.1
}

/// PostgreSQL's largest array, in elements (`MaxArraySize`).
const MAX_ARRAY_ELEMENTS: i64 = 134_217_727;
/// The most bytes one `array_fill` call makes: PostgreSQL allows a value of up to 1 GiB, but
/// that much from one call of a function the query memory pool does not see would put a
/// server with a few hundred MiB of budget past it; a longer fill is a 54000 error.
const MAX_FILL_BYTES: usize = 64 << 20;

/// `array_fill(value, dimensions [, lower_bounds])`: an array of `dimensions[1]` copies of
/// `value` (NULL copies for NULL), as PostgreSQL makes it. One dimension only: more, or a
/// lower bound other than 1 (which PostgreSQL prints as `[3:4]={…}`), is refused with 0A000,
/// since arrays here are one-dimensional lists from 1. NULL dimensions or bounds are 22004, a
/// negative or too large dimension 54000 (also past [`MAX_FILL_BYTES`] of result, where
/// PostgreSQL allows 1 GiB), bounds not matching dimensions 2202E.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayFill {
    signature: Signature,
}

impl Default for ArrayFill {
    fn default() -> Self {
        ArrayFill {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ArrayFill {
    fn name(&self) -> &str {
        "array_fill"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        let bounds = DataType::List(Arc::new(arrow::datatypes::Field::new_list_field(
            DataType::Int64,
            true,
        )));
        match args {
            [value, rest @ ..] if (1..=2).contains(&rest.len()) => {
                let value = match value {
                    DataType::Null => DataType::Utf8,
                    other => other.clone(),
                };
                Ok(std::iter::once(value)
                    .chain(rest.iter().map(|_| bounds.clone()))
                    .collect())
            }
            _ => Err(SqlError::new(
                SqlState::UNDEFINED_FUNCTION,
                "function array_fill takes (value, dimensions int[] [, lower_bounds int[]])",
            )
            .into()),
        }
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(
            arrow::datatypes::Field::new_list_field(args[0].clone(), true),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let value = &arrays[0];
        let dimensions = arrays[1].as_list::<i32>();
        let bounds = arrays.get(2).map(|b| b.as_list::<i32>());
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0i32);
        let mut indices: Vec<u32> = Vec::new();
        let mut bytes = 0usize;
        for row in 0..rows {
            let count = fill_count(dimensions, bounds, row)?;
            let width = value.slice(row, 1).to_data().get_slice_memory_size()?;
            bytes = bytes.saturating_add(width.saturating_mul(count));
            if bytes > MAX_FILL_BYTES || indices.len() + count > i32::MAX as usize {
                return Err(SqlError::new(
                    SqlState::PROGRAM_LIMIT_EXCEEDED,
                    format!(
                        "array_fill: the result would hold more than {} MiB",
                        MAX_FILL_BYTES >> 20
                    ),
                )
                .into());
            }
            let row = u32::try_from(row).map_err(|_| too_large())?;
            indices.extend(std::iter::repeat_n(row, count));
            offsets.push(indices.len() as i32);
        }
        let values = arrow::compute::take(
            value.as_ref(),
            &arrow::array::UInt32Array::from(indices),
            None,
        )?;
        let field = Arc::new(arrow::datatypes::Field::new_list_field(
            value.data_type().clone(),
            true,
        ));
        let filled = arrow::array::ListArray::try_new(
            field,
            arrow::buffer::OffsetBuffer::new(offsets.into()),
            values,
            None,
        )?;
        shaped(&args.args, Arc::new(filled))
    }
}

fn too_large() -> SqlError {
    SqlError::new(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!("array size exceeds the maximum allowed ({MAX_ARRAY_ELEMENTS})"),
    )
}

/// How many copies row `row` of `array_fill` makes, checking its dimensions and bounds.
fn fill_count(
    dimensions: &arrow::array::ListArray,
    bounds: Option<&arrow::array::ListArray>,
    row: usize,
) -> Result<usize, SqlError> {
    let null = || {
        SqlError::new(
            SqlState::NULL_VALUE_NOT_ALLOWED,
            "dimension array or low bound array cannot be null",
        )
    };
    let ints = |list: &arrow::array::ListArray| -> Result<Vec<i64>, SqlError> {
        if list.is_null(row) {
            return Err(null());
        }
        let values = list.value(row);
        let values = values.as_primitive::<arrow::datatypes::Int64Type>();
        if values.null_count() > 0 {
            return Err(SqlError::new(
                SqlState::NULL_VALUE_NOT_ALLOWED,
                "dimension values cannot be null",
            ));
        }
        Ok(values.values().to_vec())
    };
    let dimensions = ints(dimensions)?;
    if let Some(bounds) = bounds {
        let bounds = ints(bounds)?;
        if bounds.len() != dimensions.len() {
            return Err(SqlError::new(
                SqlState::ARRAY_SUBSCRIPT_ERROR,
                "wrong number of array subscripts: the low bound array has a different size than the dimensions array",
            ));
        }
        if bounds.iter().any(|&b| b != 1) {
            return Err(SqlError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "array_fill with a lower bound other than 1 is not supported: arrays here start at 1",
            ));
        }
    }
    match dimensions.as_slice() {
        [] => Ok(0),
        [count] if (0..=MAX_ARRAY_ELEMENTS).contains(count) => Ok(*count as usize),
        [_] => Err(too_large()),
        _ => Err(SqlError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            "array_fill of more than one dimension is not supported: arrays here have one",
        )),
    }
}

/// `quote_literal(value)` (NULL for NULL) and `quote_nullable(value)` (`NULL` for NULL):
/// the value's text as a string literal, quotes doubled, and with backslashes doubled in an
/// `E'…'` literal, as PostgreSQL writes it.
pub(crate) fn quote_literal(nullable: bool) -> ScalarUDF {
    let name = if nullable {
        "quote_nullable"
    } else {
        "quote_literal"
    };
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            name,
            Signature::any(1, Volatility::Immutable),
            DataType::Utf8,
            Arc::new(move |args: &[ColumnarValue]| {
                let arrays = ColumnarValue::values_to_arrays(args)?;
                // Dates and times as PostgreSQL prints them; anything else as its cast.
                let texts: arrow::array::ArrayRef =
                    match crate::sql::text_cast::postgres_text(&arrays[0]) {
                        Some(rendered) => Arc::new(rendered?),
                        None => cast(&arrays[0], &DataType::Utf8)?,
                    };
                let quoted: arrow::array::StringArray = texts
                    .as_string::<i32>()
                    .iter()
                    .map(|text| match text {
                        Some(text) => Some(quoted_literal(text)),
                        None if nullable => Some("NULL".to_string()),
                        None => None,
                    })
                    .collect();
                shaped(args, Arc::new(quoted))
            }),
        ),
    )
}

fn quoted_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// `clock_timestamp()`: the time it is when called (`now()` is the statement's start).
pub(crate) fn clock_timestamp() -> ScalarUDF {
    timestamp_udf("clock_timestamp", Volatility::Volatile, || {
        chrono::Utc::now().timestamp_micros()
    })
}

/// `pg_postmaster_start_time()`: when this server process started (when its functions were
/// first registered, at start-up).
pub(crate) fn postmaster_start_time() -> ScalarUDF {
    static STARTED: std::sync::LazyLock<i64> =
        std::sync::LazyLock::new(|| chrono::Utc::now().timestamp_micros());
    let started = *STARTED;
    timestamp_udf("pg_postmaster_start_time", Volatility::Stable, move || {
        started
    })
}

/// A function of no arguments answering the `timestamptz` of `micros()` (µs since the epoch).
fn timestamp_udf(
    name: &str,
    volatility: Volatility,
    micros: impl Fn() -> i64 + Send + Sync + 'static,
) -> ScalarUDF {
    let utc = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            name,
            Signature::exact(vec![], volatility),
            utc,
            Arc::new(move |_: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    Some(micros()),
                    Some("UTC".into()),
                )))
            }),
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_postgres_prints_them() {
        // PostgreSQL 15's answers.
        for (size, text) in [
            (0, "0 bytes"),
            (10_239, "10239 bytes"),
            (10_240, "10 kB"),
            (1_048_576, "1024 kB"),
            (20_971_520, "20 MB"),
            (123_456_789_012, "115 GB"),
            (-20_480, "-20 kB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(super::size_pretty(size), text, "{size}");
        }
    }

    #[test]
    fn a_statement_keeps_its_transaction_id_and_the_next_gets_a_larger_one() {
        let first = super::transaction_id(1_000);
        assert_eq!(super::transaction_id(1_000), first, "the same statement");
        let second = super::transaction_id(2_000);
        assert!(second > first);
        assert!(
            super::transaction_id(i64::MIN) > second,
            "an unplanned call is a new one"
        );
    }

    // PostgreSQL 15: quote_literal(E'a\\b') = E'a\\\\b', quote_literal('it''s') = 'it''s'.
    #[test]
    fn literals_are_quoted_as_postgresql_quotes_them() {
        assert_eq!(super::quoted_literal("it's"), "'it''s'");
        assert_eq!(super::quoted_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(super::quoted_literal(""), "''");
    }
}
