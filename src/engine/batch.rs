//! Column helpers shared by the write path, the buffer and the flush: the shared default
//! arrays that stand for columns a batch left out, the memory a batch owns, and PostgreSQL's
//! array literals, the text form of a list column in every front end.
//!
//! A left-out column costs nothing: every such column is a slice of one array per type
//! ([`default_column`]), recognised again by [`is_default`] so merges and flushes keep it
//! shared, and not counted by [`owned_bytes`].

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayData, ArrayRef, AsArray, ListArray, ListBuilder, RecordBatch, StringBuilder,
    new_null_array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};
use parking_lot::RwLock;

/// The value of a column the batch left out: null, or an empty list for a non-nullable list.
///
/// Every row holds the same value, so one array per type is built, grown to the longest batch
/// seen, and shared as zero-copy slices: an otel batch leaves out ~70 of 92 columns, which
/// would otherwise cost a zeroed offsets buffer and validity bitmap each, per batch, in the
/// buffer's memory. [`is_default`] recognises these columns again.
pub fn default_column(field: &Field, rows: usize) -> ArrayRef {
    // A short list searched by type, not a map: hashing a `DataType` hashes its nested
    // fields' metadata (sorted into a fresh vector each time), and a single-row insert asks
    // for ~70 of these. A single row gets a slice made once, so it costs a reference count.
    static SHARED: LazyLock<RwLock<Vec<Shared>>> = LazyLock::new(Default::default);
    let find = |list: &[Shared]| {
        list.iter()
            .find(|s| s.nullable == field.is_nullable() && &s.data_type == field.data_type())
            .filter(|s| s.full.len() >= rows)
            .map(|s| {
                if rows == 1 {
                    s.one.clone()
                } else {
                    s.full.slice(0, rows)
                }
            })
    };
    if let Some(array) = find(&SHARED.read()) {
        return array;
    }
    let mut shared = SHARED.write();
    let full = build_default(field, rows.next_power_of_two().max(8192));
    let entry = Shared {
        data_type: field.data_type().clone(),
        nullable: field.is_nullable(),
        one: full.slice(0, 1),
        full,
    };
    match shared
        .iter_mut()
        .find(|s| s.nullable == entry.nullable && s.data_type == entry.data_type)
    {
        // Another writer may have grown it meanwhile: keep the longer one.
        Some(s) if s.full.len() >= entry.full.len() => {}
        Some(s) => *s = entry,
        None => shared.push(entry),
    }
    find(&shared).unwrap_or_else(|| build_default(field, rows))
}

/// One type's shared default array (see [`default_column`]).
struct Shared {
    data_type: DataType,
    nullable: bool,
    full: ArrayRef,
    /// `full`'s first row, handed out to single-row batches.
    one: ArrayRef,
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
        // A malformed value fails the whole column, so the items it appended do not matter.
        parse_array_literal(value, |item| builder.values().append_option(item))?;
        builder.append(true);
    }
    Ok(builder.finish())
}

/// Each item of one PostgreSQL array literal (`{a,b,"c d",NULL}`) in turn, `None` for a `NULL`
/// item (unquoted items trimmed); the message when `value` is not one, which may come after
/// some items.
pub fn parse_array_literal(value: &str, mut each: impl FnMut(Option<&str>)) -> Result<(), String> {
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
            each(None);
        } else if quoted {
            each(Some(&item));
        } else {
            each(Some(item.trim()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every left-out column of a type is a view of one shared array, for a single row as
    /// for many, and holds the type's default.
    #[test]
    fn default_columns_share_one_array_per_type_and_hold_the_default() {
        // Types no other test uses: the shared arrays are the process's, and a test growing
        // one between two calls here would give them different buffers.
        let dictionary =
            DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Float32));
        let text = Field::new("a", dictionary.clone(), true);
        let same_type = Field::new("b", dictionary, true);
        let item = Arc::new(Field::new("default_columns_test", DataType::Utf8, true));
        let list = Field::new("l", DataType::List(item.clone()), false);
        let data_ptr = |a: &ArrayRef| a.to_data().buffers()[0].data_ptr();
        for rows in [1, 3, 20_000] {
            let a = default_column(&text, rows);
            let b = default_column(&same_type, rows);
            assert_eq!((a.len(), a.null_count()), (rows, rows));
            assert_eq!(data_ptr(&a), data_ptr(&b), "{rows} rows");
            assert!(is_default(&text, &a));
            let l = default_column(&list, rows);
            assert_eq!((l.len(), l.null_count()), (rows, 0));
            assert!(is_default(&list, &l));
            assert!(l.as_list::<i32>().values().is_empty());
        }
        // Grown past its first length, the array is still the one every later call shares.
        let after = default_column(&text, 1);
        assert_eq!(data_ptr(&after), data_ptr(&default_column(&same_type, 5)));
        let nullable_list = Field::new("n", DataType::List(item), true);
        let n = default_column(&nullable_list, 2);
        assert_eq!(n.null_count(), 2);
    }
}
