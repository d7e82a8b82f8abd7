//! Column helpers shared by the write path, the buffer and the flush: the shared default
//! arrays that stand for columns a batch left out, the memory a batch owns, and PostgreSQL's
//! array literals, the text form of a list column in every front end.
//!
//! A left-out column costs nothing: every such column is a slice of one array per type
//! ([`default_column`]), recognised again by [`is_default`] so merges and flushes keep it
//! shared, and not counted by [`owned_bytes`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, ListArray, ListBuilder, RecordBatch, StringBuilder,
    new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use parking_lot::Mutex;

/// The value of a column the batch left out: null, or an empty list for a non-nullable list.
///
/// Every row holds the same value, so one array per type is built, grown to the longest batch
/// seen, and shared as zero-copy slices: an otel batch leaves out ~70 of 92 columns, which
/// would otherwise cost a zeroed offsets buffer and validity bitmap each, per batch, in the
/// buffer's memory. [`is_default`] recognises these columns again.
pub fn default_column(field: &Field, rows: usize) -> ArrayRef {
    static SHARED: LazyLock<Mutex<HashMap<(DataType, bool), ArrayRef>>> =
        LazyLock::new(Default::default);
    let key = (field.data_type().clone(), field.is_nullable());
    let mut shared = SHARED.lock();
    let array = shared.entry(key).or_insert_with(|| build_default(field, 0));
    if array.len() < rows {
        *array = build_default(field, rows.next_power_of_two().max(8192));
    }
    array.slice(0, rows)
}

fn build_default(field: &Field, rows: usize) -> ArrayRef {
    match field.data_type() {
        DataType::List(item) if !field.is_nullable() => Arc::new(ListArray::new(
            item.clone(),
            OffsetBuffer::new_zeroed(rows),
            new_null_array(item.data_type(), 0),
            None,
        )),
        data_type => new_null_array(data_type, rows),
    }
}

/// Whether every row of `array` holds the default of `field` (see [`default_column`]).
/// [`crate::engine::ingest::coerce`] replaces such columns by the shared array, so they cost no memory of their own.
pub fn is_default(field: &Field, array: &ArrayRef) -> bool {
    if field.is_nullable() {
        return array.null_count() == array.len();
    }
    array.null_count() == 0
        && matches!(field.data_type(), DataType::List(_))
        && array.as_list::<i32>().values().is_empty()
}

/// Memory a coerced batch holds of its own: the allocations behind its columns other than
/// shared defaults, each counted once. Arrays decoded from one received message (a DoPut body)
/// are views into one allocation, and Arrow's `get_array_memory_size` would count that whole
/// allocation once per buffer, overstating such a batch by its column count.
pub fn owned_bytes(batch: &RecordBatch) -> usize {
    let mut seen = HashSet::new();
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, c)| !is_default(f, c))
        .map(|(_, c)| allocation_bytes(&c.to_data(), &mut seen))
        .sum()
}

/// Capacity of the allocations behind `data` and its children not yet in `seen`.
fn allocation_bytes(data: &ArrayData, seen: &mut HashSet<usize>) -> usize {
    let nulls = data.nulls().map(|n| n.buffer());
    let own: usize = data
        .buffers()
        .iter()
        .chain(nulls)
        .filter(|b| seen.insert(b.data_ptr().as_ptr() as usize))
        .map(|b| b.capacity())
        .sum();
    own + data
        .child_data()
        .iter()
        .map(|child| allocation_bytes(child, seen))
        .sum::<usize>()
}

/// PostgreSQL array literals (`{a,b,"c d",NULL}`) → a list of strings per value, null for a
/// null value; the message for the first value that is not one. The text form of a list
/// column wherever text arrives: `COPY` text and CSV, `'{…}'` literals, text parameters.
pub fn parse_array_literals<'a>(
    strings: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<ListArray, String> {
    let mut builder = ListBuilder::new(StringBuilder::new());
    for value in strings {
        let Some(value) = value else {
            builder.append_null();
            continue;
        };
        let malformed = || format!("malformed array literal: \"{value}\"");
        let inner = value
            .trim()
            .strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .ok_or_else(malformed)?;
        let mut chars = inner.chars().peekable();
        while chars.peek().is_some() {
            let mut item = String::new();
            let quoted = chars.peek() == Some(&'"');
            if quoted {
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => item.extend(chars.next()),
                        Some('"') => break,
                        Some(c) => item.push(c),
                        None => return Err(malformed()),
                    }
                }
            }
            while let Some(&c) = chars.peek() {
                chars.next();
                if c == ',' {
                    break;
                }
                if !quoted {
                    item.push(c);
                }
            }
            if !quoted && item.trim().eq_ignore_ascii_case("null") {
                builder.values().append_null();
            } else if quoted {
                builder.values().append_value(item);
            } else {
                builder.values().append_value(item.trim());
            }
        }
        builder.append(true);
    }
    Ok(builder.finish())
}
