//! Timestamps and times in text-format results read as PostgreSQL writes them.
//!
//! pgwire writes the seconds of every timestamp and time with six fraction digits, in every
//! `DateStyle`: `2026-11-23 10:00:00.000000+00`, `10:00:00.500000`. PostgreSQL writes only the
//! digits up to the last one that is not zero: `2026-11-23 10:00:00+00`, `10:00:00.5`. psql
//! shows the text as it comes, BI tools show it in their grids, and scripts compare it; all of
//! them should see what PostgreSQL would have sent. The encoded rows of a text-format
//! timestamp or time column (or an array of them) are rewritten on their way out; binary
//! columns are left alone, their encoding has no digits to trim.

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo, Response};
use pgwire::messages::data::DataRow;

/// `response` with its text-format timestamps and times written as PostgreSQL writes them.
pub fn postgres_fractions(response: Response) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let trimmed: Vec<bool> = query.row_schema.iter().map(has_fraction).collect();
    if trimmed.contains(&true) {
        query.data_rows = Box::pin(
            query
                .data_rows
                .map(move |row| row.map(|row| trim_row(row, &trimmed))),
        );
    }
    Response::Query(query)
}

/// Whether `field` is sent as text with pgwire's six-digit fractions.
fn has_fraction(field: &FieldInfo) -> bool {
    field.format() == FieldFormat::Text
        && [
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::TIME,
            Type::TIMETZ,
            Type::TIMESTAMP_ARRAY,
            Type::TIMESTAMPTZ_ARRAY,
            Type::TIME_ARRAY,
            Type::TIMETZ_ARRAY,
        ]
        .contains(field.datatype())
}

/// `row` with the values of the columns marked in `trimmed` rewritten by [`trim_value`]. A
/// row that does not parse as `DataRow` fields (it always does) is passed on unchanged.
fn trim_row(row: DataRow, trimmed: &[bool]) -> DataRow {
    let data = &row.data;
    let mut out = BytesMut::with_capacity(data.len());
    let mut at = 0;
    for &trim in trimmed.iter().take(row.field_count.max(0) as usize) {
        let Some(len) = data
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            return row;
        };
        at += 4;
        if len < 0 {
            out.put_i32(len);
            continue;
        }
        let Some(value) = data.get(at..at + len as usize) else {
            return row;
        };
        at += len as usize;
        if trim {
            let value = trim_value(value);
            out.put_i32(value.len() as i32);
            out.put_slice(&value);
        } else {
            out.put_i32(len);
            out.put_slice(value);
        }
    }
    out.put_slice(&data[at.min(data.len())..]);
    DataRow::new(out, row.field_count)
}

/// `text` with each seconds fraction (`:SS.dddddd`, six digits) cut after its last digit that
/// is not zero, and without the point when all six are zero.
fn trim_value(text: &[u8]) -> Vec<u8> {
    let digit = |i: usize| text.get(i).is_some_and(u8::is_ascii_digit);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let fraction = text[i] == b'.'
            && i >= 3
            && text[i - 3] == b':'
            && digit(i - 2)
            && digit(i - 1)
            && (i + 1..i + 7).all(digit)
            && !digit(i + 7);
        if fraction {
            let digits = &text[i + 1..i + 7];
            let kept = digits.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
            if kept > 0 {
                out.push(b'.');
                out.extend_from_slice(&digits[..kept]);
            }
            i += 7;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trim(text: &str) -> String {
        String::from_utf8(trim_value(text.as_bytes())).expect("utf8")
    }

    // Expected texts as PostgreSQL 15 writes them (DateStyle ISO, then Postgres).
    #[test]
    fn fractions_lose_their_trailing_zeros() {
        assert_eq!(
            trim("2026-11-23 10:00:00.000000+00"),
            "2026-11-23 10:00:00+00"
        );
        assert_eq!(
            trim("2026-11-23 10:00:00.500000+00"),
            "2026-11-23 10:00:00.5+00"
        );
        assert_eq!(
            trim("2026-11-23 10:00:00.123456"),
            "2026-11-23 10:00:00.123456"
        );
        assert_eq!(
            trim("2026-11-23 10:00:00.000010"),
            "2026-11-23 10:00:00.00001"
        );
        assert_eq!(trim("10:00:00.250000"), "10:00:00.25");
        assert_eq!(trim("10:00:00.000000+05:30"), "10:00:00+05:30");
        assert_eq!(
            trim("Mon Nov 23 10:00:00.000000 2026 UTC"),
            "Mon Nov 23 10:00:00 2026 UTC"
        );
        assert_eq!(
            trim(r#"{"2026-11-23 10:00:00.000000+00","2026-11-23 10:00:01.100000+00"}"#),
            r#"{"2026-11-23 10:00:00+00","2026-11-23 10:00:01.1+00"}"#
        );
    }

    #[test]
    fn text_without_a_six_digit_fraction_is_unchanged() {
        for text in [
            "2026-11-23",
            "10:00:00",
            "1.500000",
            "10:00:00.5",
            "x:12.1234567",
        ] {
            assert_eq!(trim(text), text);
        }
    }

    #[test]
    fn only_marked_columns_change_and_nulls_stay() {
        let mut data = BytesMut::new();
        for value in [Some("10:00:00.500000"), None, Some("10:00:00.500000")] {
            match value {
                Some(v) => {
                    data.put_i32(v.len() as i32);
                    data.put_slice(v.as_bytes());
                }
                None => data.put_i32(-1),
            }
        }
        let row = trim_row(DataRow::new(data, 3), &[true, true, false]);
        let mut expected = BytesMut::new();
        expected.put_i32(10);
        expected.put_slice(b"10:00:00.5");
        expected.put_i32(-1);
        expected.put_i32(15);
        expected.put_slice(b"10:00:00.500000");
        assert_eq!(row, DataRow::new(expected, 3));
    }
}
