//! Aggregates DataFusion lacks: PostgreSQL's ordered-set aggregates `percentile_disc(f)
//! WITHIN GROUP (ORDER BY x)` and `mode() WITHIN GROUP (ORDER BY x)`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, Signature, Volatility,
};

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
        Ok(OrderedSetAccumulator::state_fields(
            &args,
            "percentile_disc",
        ))
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
        let descending = descending(&args);
        Ok(Box::new(OrderedSetAccumulator {
            data_type: args.expr_fields[0].data_type().clone(),
            pick: Pick::Fraction(fraction),
            descending,
            values: Vec::new(),
        }))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }
}

/// `mode() WITHIN GROUP (ORDER BY x)`, PostgreSQL's most frequent value: of equally frequent
/// values, the first in the ordering. NULLs are not counted; NULL when there are no values.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Mode {
    signature: Signature,
}

impl Default for Mode {
    fn default() -> Self {
        Mode {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for Mode {
    fn name(&self) -> &str {
        "mode"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<arrow::datatypes::FieldRef>> {
        Ok(OrderedSetAccumulator::state_fields(&args, "mode"))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let descending = descending(&args);
        Ok(Box::new(OrderedSetAccumulator {
            data_type: args.expr_fields[0].data_type().clone(),
            pick: Pick::Mode,
            descending,
            values: Vec::new(),
        }))
    }

    fn supports_within_group_clause(&self) -> bool {
        true
    }
}

/// Whether an ordered-set aggregate's `WITHIN GROUP (ORDER BY …)` is descending.
fn descending(args: &AccumulatorArgs) -> bool {
    args.order_bys
        .first()
        .is_some_and(|sort| sort.options.descending)
}

/// Which value of the ordered group an ordered-set aggregate gives.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The first whose cumulative position reaches the fraction.
    Fraction(f64),
    /// The most frequent, the first in order among equals.
    Mode,
}

#[derive(Debug)]
pub(crate) struct OrderedSetAccumulator {
    data_type: DataType,
    pick: Pick,
    descending: bool,
    /// The group's non-null values, in the batches they came in.
    values: Vec<ArrayRef>,
}

impl OrderedSetAccumulator {
    /// The state of an ordered-set aggregate named `name`: the group's values as one list.
    fn state_fields(args: &StateFieldsArgs, name: &str) -> Vec<arrow::datatypes::FieldRef> {
        let item =
            arrow::datatypes::Field::new_list_field(args.input_fields[0].data_type().clone(), true);
        vec![
            arrow::datatypes::Field::new(
                format_state_name(args.name, name),
                DataType::List(Arc::new(item)),
                true,
            )
            .into(),
        ]
    }

    fn all_values(&self) -> Result<ArrayRef> {
        let parts: Vec<&dyn Array> = self.values.iter().map(|a| a.as_ref()).collect();
        if parts.is_empty() {
            return Ok(arrow::array::new_empty_array(&self.data_type));
        }
        Ok(arrow::compute::concat(&parts)?)
    }
}

impl Accumulator for OrderedSetAccumulator {
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
        let n = all.len();
        let position = match self.pick {
            // The first value whose cumulative position reaches the fraction (1-based ceil).
            Pick::Fraction(fraction) => ((fraction * n as f64).ceil() as usize).clamp(1, n) - 1,
            Pick::Mode => {
                let sorted = arrow::compute::take(&all, &order, None)?;
                let runs = arrow::compute::kernels::partition::partition(&[sorted])?;
                // The longest run; `max_by_key` keeps the last of equals, so go backwards.
                runs.ranges()
                    .into_iter()
                    .rev()
                    .max_by_key(|run| run.len())
                    .map_or(0, |run| run.start)
            }
        };
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
