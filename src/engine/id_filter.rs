//! Bloom filters over a buffered chunk's id columns, the buffer's counterpart of the bloom
//! filters flush writes into every Parquet row group (`layout.bloom_filter_columns`).
//!
//! A chunk's filter for a column is built the first time a query looks that column up in the
//! chunk ([`IdFilters::may_contain`], from `sql::table`'s scan), not on the write path: the
//! WAL thread and the writers never hash an id, and a chunk no lookup reaches never gets one.
//! After that, an equality on a trace id over a week of buffered rows reads only the chunks
//! whose filter may hold the id, instead of comparing every buffered id of the tenant. A chunk
//! that a merge or a change replaces gets new, empty filters (its rows are new). The filters'
//! bytes count in the buffer's memory ([`crate::engine::buffer::Buffer::bytes`]) from the
//! moment they are built until their chunk is dropped.
//!
//! Only string columns are filtered; a lookup of another type reads the chunk as before.
//! Tests: below and `tests/e2e/layout.rs` (buffered trace lookups).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use deltalake::parquet::bloom_filter::Sbbf;
use parking_lot::Mutex;

/// The filters built so far for one chunk, by column (its index in the table's schema).
#[derive(Debug)]
pub struct IdFilters {
    built: Mutex<Vec<(usize, Arc<Sbbf>)>>,
    /// Bytes of every built filter of the buffer, which this chunk's add to and give back.
    held: Arc<AtomicUsize>,
}

impl IdFilters {
    /// No filter yet; built ones are counted in `held`.
    pub fn new(held: &Arc<AtomicUsize>) -> Self {
        IdFilters {
            built: Mutex::new(Vec::new()),
            held: held.clone(),
        }
    }

    /// Whether `array` (the chunk's column `column`) may hold one of `values`: false only
    /// when the column's filter rules every one out. The filter is built from `array` on the
    /// first call for `column`, sized for its rows at false-positive rate `fpp`, if `budget`
    /// (rows a scan may still hash) holds its rows, which it takes from it; else the chunk
    /// is read as before and a later lookup builds it. True for a column that is not a
    /// string (no filter is built).
    pub fn may_contain(
        &self,
        column: usize,
        array: &dyn Array,
        values: &[String],
        fpp: f64,
        budget: &mut usize,
    ) -> bool {
        let existing = self
            .built
            .lock()
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, f)| f.clone());
        let filter = match existing {
            Some(filter) => filter,
            None if array.len() > *budget || !is_string(array.data_type()) => return true,
            // Built outside the lock: two queries racing build it twice, and one is kept.
            None => {
                *budget -= array.len();
                match build(array, fpp) {
                    Some(filter) => self.keep(column, filter),
                    None => return true,
                }
            }
        };
        values.iter().any(|v| filter.check(v.as_str()))
    }

    fn keep(&self, column: usize, filter: Sbbf) -> Arc<Sbbf> {
        let mut built = self.built.lock();
        if let Some((_, kept)) = built.iter().find(|(c, _)| *c == column) {
            return kept.clone();
        }
        self.held.fetch_add(bytes_of(&filter), Ordering::Relaxed);
        let filter = Arc::new(filter);
        built.push((column, filter.clone()));
        filter
    }
}

impl Drop for IdFilters {
    fn drop(&mut self) {
        let bytes: usize = self.built.get_mut().iter().map(|(_, f)| bytes_of(f)).sum();
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A filter's bytes: its blocks of eight 32-bit words.
fn bytes_of(filter: &Sbbf) -> usize {
    filter.num_blocks() * 32
}

/// The most rows one scan hashes into new filters (about 100 ms of a core): a first lookup
/// over a large buffer builds the rest of its chunks' filters over the next lookups, reading
/// those chunks as before meanwhile, instead of holding its query in planning for seconds.
pub const ROWS_HASHED_PER_SCAN: usize = 4 << 20;

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The non-null values of a string array in a filter sized for its rows (at most that many
/// distinct values); `None` for another type.
fn build(array: &dyn Array, fpp: f64) -> Option<Sbbf> {
    let rows = (array.len() - array.null_count()).max(1) as u64;
    let mut filter = Sbbf::new_with_ndv_fpp(rows, fpp).ok()?;
    match array.data_type() {
        DataType::Utf8 => array
            .as_string::<i32>()
            .iter()
            .flatten()
            .for_each(|v| filter.insert(v)),
        DataType::LargeUtf8 => array
            .as_string::<i64>()
            .iter()
            .flatten()
            .for_each(|v| filter.insert(v)),
        DataType::Utf8View => array
            .as_string_view()
            .iter()
            .flatten()
            .for_each(|v| filter.insert(v)),
        _ => return None,
    }
    Some(filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, StringViewArray};

    #[test]
    fn rules_out_absent_values_and_keeps_present_ones() {
        let held = Arc::new(AtomicUsize::new(0));
        let mut budget = usize::MAX;
        let ids: Vec<String> = (0..5_000).map(|i| format!("{i:032x}")).collect();
        let array = StringArray::from_iter(ids.iter().map(Some).chain([None]));
        let filters = IdFilters::new(&held);
        // Every value present is found (no false negatives).
        for id in &ids {
            assert!(
                filters.may_contain(3, &array, std::slice::from_ref(id), 0.01, &mut budget),
                "{id}"
            );
        }
        let built = held.load(Ordering::Relaxed);
        assert!(built > 0, "the filter's bytes are counted");
        // Absent ones are mostly ruled out (1% false positives asked).
        let absent = (0..5_000)
            .map(|i| format!("absent-{i}"))
            .filter(|id| {
                filters.may_contain(3, &array, std::slice::from_ref(id), 0.01, &mut budget)
            })
            .count();
        assert!(absent < 200, "{absent} of 5,000 absent ids passed");
        // A list passes when any value may be there.
        assert!(filters.may_contain(
            3,
            &array,
            &["absent-x".to_string(), ids[7].clone()],
            0.01,
            &mut budget
        ));
        // One filter per column, built once.
        assert_eq!(held.load(Ordering::Relaxed), built);
        let views = StringViewArray::from_iter_values(["a", "b"]);
        assert!(filters.may_contain(4, &views, &["a".to_string()], 0.01, &mut budget));
        assert!(held.load(Ordering::Relaxed) > built);
        drop(filters);
        assert_eq!(
            held.load(Ordering::Relaxed),
            0,
            "bytes given back with the chunk"
        );
    }

    #[test]
    fn a_filter_past_the_budget_is_not_built_and_the_chunk_is_read() {
        let held = Arc::new(AtomicUsize::new(0));
        let filters = IdFilters::new(&held);
        let array = StringArray::from_iter_values(["a", "b", "c"]);
        let mut budget = 2;
        assert!(filters.may_contain(0, &array, &["zzz-absent".to_string()], 0.01, &mut budget));
        assert_eq!(
            (budget, held.load(Ordering::Relaxed)),
            (2, 0),
            "nothing built"
        );
        let mut budget = 3;
        assert!(filters.may_contain(0, &array, &["a".to_string()], 0.01, &mut budget));
        assert_eq!(budget, 0, "the chunk's rows taken from the budget");
        assert!(held.load(Ordering::Relaxed) > 0);
        // Built: later lookups use it whatever their budget.
        assert!(filters.may_contain(0, &array, &["c".to_string()], 0.01, &mut 0));
    }

    #[test]
    fn other_types_are_never_ruled_out() {
        let held = Arc::new(AtomicUsize::new(0));
        let filters = IdFilters::new(&held);
        let numbers = Int64Array::from(vec![1, 2, 3]);
        let mut budget = 3;
        assert!(filters.may_contain(0, &numbers, &["4".to_string()], 0.01, &mut budget));
        assert_eq!((budget, held.load(Ordering::Relaxed)), (3, 0));
        // A column of nulls holds no value.
        let nulls = StringArray::from(vec![None::<&str>, None]);
        assert!(!filters.may_contain(1, &nulls, &["x".to_string()], 0.01, &mut budget));
    }
}
