//! Metric helpers in PromQL's spirit, over `otel_metrics`:
//!
//! - `increase(value, time)`, an aggregate: how much a counter grew over the group's points
//!   taken in time order, counting a drop as a reset (the counter restarted from zero, so the
//!   new value is all increase), as PromQL's `increase` does without its extrapolation to the
//!   window's edges. NULL with fewer than two points.
//! - `rate(value, time)`: that increase per second between the group's first and last
//!   point. NULL with fewer than two points or none apart in time.
//! - `histogram_quantile(q, bucket_counts, explicit_bounds)`, a scalar over one OTLP
//!   histogram point: the value below which the fraction `q` of its observations fall,
//!   interpolated linearly within the bucket that holds it as PromQL does (the first bucket
//!   starts at 0 when its bound is positive; a quantile in the overflow bucket is the highest
//!   bound). `q` below 0 or above 1 gives -Infinity or Infinity; NULL for an empty histogram
//!   or one whose counts are not one more than its bounds.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, ListArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Int64Type, TimeUnit};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarUDF, Signature, Volatility,
};

/// `increase(value, time)` or `rate(value, time)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CounterAggregate {
    per_second: bool,
    signature: Signature,
}

impl CounterAggregate {
    pub fn increase() -> Self {
        CounterAggregate {
            per_second: false,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    pub fn rate() -> Self {
        CounterAggregate {
            per_second: true,
            ..CounterAggregate::increase()
        }
    }
}

impl AggregateUDFImpl for CounterAggregate {
    fn name(&self) -> &str {
        if self.per_second { "rate" } else { "increase" }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [value, DataType::Timestamp(_, zone)] if value.is_numeric() || value.is_null() => {
                Ok(vec![
                    DataType::Float64,
                    DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
                ])
            }
            _ => plan_err!(
                "{} takes a counter's value and its time: {}(value, timestamp)",
                self.name(),
                self.name()
            ),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |item: DataType| DataType::List(Arc::new(Field::new_list_field(item, true)));
        Ok(vec![
            Field::new(
                format_state_name(args.name, "times"),
                list(DataType::Int64),
                true,
            )
            .into(),
            Field::new(
                format_state_name(args.name, "values"),
                list(DataType::Float64),
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(CounterAccumulator {
            per_second: self.per_second,
            points: Vec::new(),
        }))
    }
}

#[derive(Debug)]
struct CounterAccumulator {
    per_second: bool,
    /// (microseconds, value) of the group's points with both, in arrival order.
    points: Vec<(i64, f64)>,
}

impl CounterAccumulator {
    fn add(&mut self, times: &ArrayRef, values: &ArrayRef) -> Result<()> {
        let times = cast(times, &DataType::Int64)?;
        let (times, values) = (
            times.as_primitive::<Int64Type>(),
            values.as_primitive::<Float64Type>(),
        );
        self.points.extend(
            times
                .iter()
                .zip(values.iter())
                .filter_map(|(t, v)| Some((t?, v?))),
        );
        Ok(())
    }
}

impl Accumulator for CounterAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(&values[1], &values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (times, values) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for (times, values) in times.iter().zip(values.iter()) {
            if let (Some(times), Some(values)) = (times, values) {
                self.add(&times, &values)?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let list = |array: ArrayRef| {
            let field = Arc::new(Field::new_list_field(array.data_type().clone(), true));
            let offsets = arrow::buffer::OffsetBuffer::from_lengths([array.len()]);
            ScalarValue::List(Arc::new(ListArray::new(field, offsets, array, None)))
        };
        let times: arrow::array::Int64Array = self.points.iter().map(|p| Some(p.0)).collect();
        let values: Float64Array = self.points.iter().map(|p| Some(p.1)).collect();
        Ok(vec![list(Arc::new(times)), list(Arc::new(values))])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.points.sort_by_key(|p| p.0);
        let result = increase(&self.points).and_then(|grown| {
            if !self.per_second {
                return Some(grown);
            }
            let (first, last) = (self.points.first()?.0, self.points.last()?.0);
            (last > first).then(|| grown / ((last - first) as f64 / 1e6))
        });
        Ok(ScalarValue::Float64(result))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.points.capacity() * std::mem::size_of::<(i64, f64)>()
    }
}

/// The growth of a counter over time-ordered points, a drop counting as a reset to zero.
fn increase(points: &[(i64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    Some(
        points
            .windows(2)
            .map(|pair| {
                let (before, now) = (pair[0].1, pair[1].1);
                if now >= before { now - before } else { now }
            })
            .sum(),
    )
}

/// `histogram_quantile(q, bucket_counts, explicit_bounds)`.
pub(crate) fn histogram_quantile() -> ScalarUDF {
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            "histogram_quantile",
            Signature::any(3, Volatility::Immutable),
            DataType::Float64,
            Arc::new(histogram_quantiles),
        ),
    )
}

fn histogram_quantiles(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let list = |i: usize, item: DataType| -> Result<ListArray> {
        let target = DataType::List(Arc::new(Field::new_list_field(item, true)));
        match arrays[i].data_type() {
            DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
                Ok(cast(&arrays[i], &target)?.as_list::<i32>().clone())
            }
            DataType::Null => Ok(cast(&arrays[i], &target)?.as_list::<i32>().clone()),
            other => plan_err!(
                "histogram_quantile takes (quantile, bucket_counts, explicit_bounds): argument {} is {other}, not an array",
                i + 1
            ),
        }
    };
    let q = cast(&arrays[0], &DataType::Float64)?;
    let q = q.as_primitive::<Float64Type>();
    let (counts, bounds) = (list(1, DataType::Float64)?, list(2, DataType::Float64)?);
    let result: Float64Array = (0..q.len())
        .map(|row| {
            if q.is_null(row) || counts.is_null(row) || bounds.is_null(row) {
                return None;
            }
            let counts = counts.value(row);
            let bounds = bounds.value(row);
            let (counts, bounds) = (
                counts.as_primitive::<Float64Type>(),
                bounds.as_primitive::<Float64Type>(),
            );
            if counts.null_count() > 0 || bounds.null_count() > 0 {
                return None;
            }
            quantile(q.value(row), counts.values(), bounds.values())
        })
        .collect();
    super::shaped(args, Arc::new(result))
}

/// PromQL's `histogram_quantile` over one histogram's per-bucket `counts` (one more than its
/// upper `bounds`, the last bucket unbounded).
fn quantile(q: f64, counts: &[f64], bounds: &[f64]) -> Option<f64> {
    if counts.len() != bounds.len() + 1 || bounds.is_empty() {
        return None;
    }
    let total: f64 = counts.iter().sum();
    if total <= 0.0 || q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let rank = q * total;
    let mut below = 0.0;
    for (i, &count) in counts.iter().enumerate() {
        if below + count >= rank && count > 0.0 {
            let Some(&upper) = bounds.get(i) else {
                // The overflow bucket: its lower bound is all that is known.
                return bounds.last().copied();
            };
            let lower = match i {
                0 if upper > 0.0 => 0.0,
                0 => return Some(upper),
                _ => bounds[i - 1],
            };
            return Some(lower + (upper - lower) * (rank - below) / count);
        }
        below += count;
    }
    bounds.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_counts_a_drop_as_a_reset() {
        assert_eq!(increase(&[(0, 5.0)]), None);
        assert_eq!(increase(&[(0, 5.0), (1, 7.0), (2, 10.0)]), Some(5.0));
        // 5 more, then 10 → 3 is a restart: 3 more, then 4 more.
        assert_eq!(
            increase(&[(0, 5.0), (1, 10.0), (2, 3.0), (3, 7.0)]),
            Some(12.0)
        );
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket_as_promql_does() {
        // Buckets (0,1], (1,2], (2,4], (4,+inf): 10, 10, 20, 0 observations.
        let (counts, bounds) = ([10.0, 10.0, 20.0, 0.0], [1.0, 2.0, 4.0]);
        assert_eq!(quantile(0.25, &counts, &bounds), Some(1.0));
        assert_eq!(quantile(0.5, &counts, &bounds), Some(2.0));
        assert_eq!(quantile(0.75, &counts, &bounds), Some(3.0));
        assert_eq!(quantile(0.1, &counts, &bounds), Some(0.4));
        // In the overflow bucket: the highest bound.
        assert_eq!(quantile(0.99, &[1.0, 0.0, 0.0, 9.0], &bounds), Some(4.0));
        assert_eq!(quantile(2.0, &counts, &bounds), Some(f64::INFINITY));
        assert_eq!(quantile(0.5, &[0.0; 4], &bounds), None);
        assert_eq!(quantile(0.5, &[1.0, 2.0], &bounds), None);
    }
}
