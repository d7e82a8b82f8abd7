//! TimescaleDB toolkit's approximate percentiles: `percentile_agg(x)` summarises a group's
//! values into a digest that can be stored (a `bytea` column) and combined later;
//! `rollup(digest)` merges digests (a day's from its hours' without the rows);
//! `approx_percentile(p, digest)`, `num_vals(digest)`, `min_val(digest)` and
//! `max_val(digest)` read one.
//!
//! The digest is a t-digest (DataFusion's, the one `approx_percentile_cont` uses), of at most
//! [`DEFAULT_MAX_SIZE`] centroids: percentiles near the ends are close to exact, the median
//! within about 1% of the values' rank. (The toolkit's own `percentile_agg` is a UddSketch, a
//! relative-error sketch: the two agree closely on real distributions but not bit for bit.)
//! Minimum, maximum and count are exact. A digest's bytes are [`encode`]'s: a version tag, then
//! the digest's parts; bytes from anywhere else are checked before they are read (22P03).
//! A digest of no values is NULL, as every aggregate over no rows is.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarUDF, Signature,
    SimpleScalarUDF, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_functions_aggregate_common::tdigest::{Centroid, DEFAULT_MAX_SIZE, TDigest};

use crate::sql::functions::shaped;

/// The first bytes of every digest: the format's name and version.
const TAG: &[u8; 4] = b"TFD1";

/// Bytes of the fixed part: tag, max size, sum, count, max, min, centroid count.
const HEADER: usize = 4 + 4 + 8 * 4 + 4;

/// The largest `max_size` a digest read from bytes may declare (merging allocates by it).
const MAX_SIZE_LIMIT: usize = 10_000;

/// Registers the aggregates and functions above.
pub fn register(context: &SessionContext) {
    context.register_udaf(AggregateUDF::from(DigestAggregate::values()));
    context.register_udaf(AggregateUDF::from(DigestAggregate::rollup()));
    context.register_udf(approx_percentile());
    for (name, read) in [
        ("num_vals", (|d: &TDigest| d.count()) as fn(&TDigest) -> f64),
        ("min_val", |d: &TDigest| d.min()),
        ("max_val", |d: &TDigest| d.max()),
    ] {
        context.register_udf(digest_reader(name, read));
    }
}

/// The bytes of `digest`.
pub fn encode(digest: &TDigest) -> Vec<u8> {
    let centroids = digest.centroids();
    let mut bytes = Vec::with_capacity(HEADER + centroids.len() * 16);
    bytes.extend_from_slice(TAG);
    bytes.extend_from_slice(&(digest.max_size() as u32).to_le_bytes());
    for part in [digest.sum(), digest.count(), digest.max(), digest.min()] {
        bytes.extend_from_slice(&part.to_le_bytes());
    }
    bytes.extend_from_slice(&(centroids.len() as u32).to_le_bytes());
    for centroid in centroids {
        bytes.extend_from_slice(&centroid.mean().to_le_bytes());
        bytes.extend_from_slice(&centroid.weight().to_le_bytes());
    }
    bytes
}

/// The digest `bytes` hold, checked: anything but [`encode`]'s output is an error.
pub fn decode(bytes: &[u8]) -> Result<TDigest> {
    let invalid = |why: &str| {
        Err(DataFusionError::External(Box::new(
            crate::error::SqlError::new(
                crate::error::SqlState::INVALID_BINARY_REPRESENTATION,
                format!(
                    "invalid percentile digest: {why} (expected the output of percentile_agg or rollup)"
                ),
            ),
        )))
    };
    if bytes.len() < HEADER || &bytes[..4] != TAG {
        return invalid("not a digest");
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let f64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        f64::from_le_bytes(word)
    };
    let max_size = u32_at(4) as usize;
    let [sum, count, max, min] = [8, 16, 24, 32].map(f64_at);
    let n = u32_at(40) as usize;
    if max_size == 0 || max_size > MAX_SIZE_LIMIT {
        return invalid("size out of range");
    }
    if bytes.len() != HEADER + n * 16 {
        return invalid("wrong length");
    }
    let centroids = (0..n)
        .map(|i| HEADER + i * 16)
        .map(|at| Centroid::new(f64_at(at), f64_at(at + 8)))
        .collect();
    TDigest::try_from_parts(max_size, sum, count, max, min, centroids)
        .or_else(|e| invalid(&e.to_string()))
}

/// `percentile_agg(x)` (digest of values) or `rollup(digest)` (digest of digests).
#[derive(Debug, PartialEq, Eq, Hash)]
struct DigestAggregate {
    name: &'static str,
    /// Whether the input is digests to merge rather than values.
    merges: bool,
    signature: Signature,
}

impl DigestAggregate {
    fn values() -> Self {
        DigestAggregate {
            name: "percentile_agg",
            merges: false,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn rollup() -> Self {
        DigestAggregate {
            name: "rollup",
            merges: true,
            signature: Signature::exact(vec![DataType::Binary], Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for DigestAggregate {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [value] if value.is_numeric() || value.is_null() => Ok(vec![DataType::Float64]),
            _ => plan_err!("{} takes one numeric argument", self.name),
        }
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Field::new(
                format_state_name(args.name, "digest"),
                DataType::Binary,
                true,
            )
            .into(),
        ])
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DigestAccumulator {
            merges: self.merges,
            digest: TDigest::new(DEFAULT_MAX_SIZE),
            pending: Vec::new(),
        }))
    }
}

/// Values are collected in `pending` and folded into the digest a batch at a time.
#[derive(Debug)]
struct DigestAccumulator {
    merges: bool,
    digest: TDigest,
    pending: Vec<f64>,
}

impl DigestAccumulator {
    fn merge_digests(&mut self, digests: &BinaryArray) -> Result<()> {
        let mut all = vec![self.digest.clone()];
        for bytes in digests.iter().flatten() {
            all.push(decode(bytes)?);
        }
        self.digest = TDigest::merge_digests(&all);
        Ok(())
    }
}

impl Accumulator for DigestAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.merges {
            return self.merge_digests(values[0].as_binary::<i32>());
        }
        let values = values[0].as_primitive::<arrow::datatypes::Float64Type>();
        self.pending.clear();
        self.pending
            .extend(values.iter().flatten().filter(|v| !v.is_nan()));
        if !self.pending.is_empty() {
            self.digest = self
                .digest
                .merge_unsorted_f64(std::mem::take(&mut self.pending));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_digests(states[0].as_binary::<i32>())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.digest.count() == 0.0 {
            return Ok(ScalarValue::Binary(None));
        }
        Ok(ScalarValue::Binary(Some(encode(&self.digest))))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.digest.size()
            + self.pending.capacity() * std::mem::size_of::<f64>()
    }
}

/// `approx_percentile(p, digest)`: the value at fraction `p` (0 to 1) of the digest's values.
fn approx_percentile() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "approx_percentile",
        Signature::exact(
            vec![DataType::Float64, DataType::Binary],
            Volatility::Immutable,
        ),
        DataType::Float64,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let fractions = arrays[0].as_primitive::<arrow::datatypes::Float64Type>();
            let digests = arrays[1].as_binary::<i32>();
            let mut out = Vec::with_capacity(digests.len());
            for i in 0..digests.len() {
                if fractions.is_null(i) || digests.is_null(i) {
                    out.push(None);
                    continue;
                }
                let p = fractions.value(i);
                if !(0.0..=1.0).contains(&p) {
                    return Err(DataFusionError::External(Box::new(
                        crate::error::SqlError::new(
                            crate::error::SqlState::INVALID_PARAMETER_VALUE,
                            format!("approx_percentile: the fraction {p} is not between 0 and 1"),
                        ),
                    )));
                }
                let digest = decode(digests.value(i))?;
                out.push(Some(digest.estimate_quantile(p)));
            }
            shaped(args, Arc::new(Float64Array::from(out)))
        }),
    ))
}

/// A function of one digest that reads a number from it.
fn digest_reader(name: &str, read: fn(&TDigest) -> f64) -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        Signature::exact(vec![DataType::Binary], Volatility::Immutable),
        DataType::Float64,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let digests = arrays[0].as_binary::<i32>();
            let out = digests
                .iter()
                .map(|bytes| bytes.map(decode).transpose().map(|d| d.map(|d| read(&d))))
                .collect::<Result<Float64Array>>()?;
            shaped(args, Arc::new(out))
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(values: impl IntoIterator<Item = f64>) -> TDigest {
        TDigest::new(DEFAULT_MAX_SIZE).merge_unsorted_f64(values.into_iter().collect())
    }

    #[test]
    fn a_digest_reads_back_as_it_was_written() {
        let digest = digest_of((1..=10_000).map(f64::from));
        let read = decode(&encode(&digest)).expect("decodes");
        assert_eq!(read, digest);
        let median = read.estimate_quantile(0.5);
        assert!((median - 5000.0).abs() < 100.0, "{median}");
        assert_eq!(read.count(), 10_000.0);
    }

    #[test]
    fn anything_but_a_digest_is_refused_without_a_panic() {
        let good = encode(&digest_of([1.0, 2.0, 3.0]));
        assert!(decode(b"").is_err());
        assert!(decode(b"TFD1").is_err());
        assert!(decode(&good[..good.len() - 1]).is_err());
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        let mut weightless = good.clone();
        let at = HEADER + 8;
        weightless[at..at + 8].copy_from_slice(&0f64.to_le_bytes());
        assert!(decode(&weightless).is_err());
        let mut many = good;
        many[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&many).is_err());
    }

    #[test]
    fn merged_digests_answer_like_one_over_all_values() {
        let hours: Vec<TDigest> = (0..24)
            .map(|h| digest_of((0..1000).map(|i| f64::from(h * 1000 + i))))
            .collect();
        let day = TDigest::merge_digests(&hours);
        let direct = digest_of((0..24_000).map(f64::from));
        assert_eq!(day.count(), direct.count());
        assert_eq!(day.min(), 0.0);
        assert_eq!(day.max(), 23_999.0);
        for p in [0.01, 0.5, 0.99] {
            let (a, b) = (day.estimate_quantile(p), direct.estimate_quantile(p));
            assert!((a - b).abs() < 24_000.0 * 0.01, "p{p}: {a} vs {b}");
        }
    }
}
