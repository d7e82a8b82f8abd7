//! Timestamps and floats in text-format results read as PostgreSQL writes them.
//!
//! pgwire writes the seconds of every timestamp with six fraction digits, in every
//! `DateStyle`: `2026-11-23 10:00:00.000000+00`. PostgreSQL writes only the digits up to the
//! last one that is not zero: `2026-11-23 10:00:00+00`, `10:00:00.5+00`. And pgwire writes
//! floats in Ryu's shortest form (`7.0`, `1e20`, `1.5e-7`, `inf`), where PostgreSQL writes
//! `7`, `1e+20`, `1.5e-07` and `Infinity` (and JDBC's and node's parsers refuse `inf`). psql
//! shows the text as it comes, BI tools show it in their grids, and scripts compare it; all of
//! them should see what PostgreSQL would have sent. The encoded rows of such text-format
//! columns are rewritten on their way out; binary columns are left alone, their encoding has
//! nothing to rewrite. `time` values keep pgwire's six digits: its decoder of text parameters
//! needs them, and a client may bind back a `time` it read as text.

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use pgwire::api::Type;
use pgwire::api::results::{FieldFormat, FieldInfo, Response};
use pgwire::messages::data::DataRow;

/// What a column's text values need.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fix {
    None,
    /// Timestamps: [`trim_fractions`].
    Fractions,
    /// Floats in pgwire's shortest (Ryu) form: [`postgres_float`], with fixed notation for
    /// decimal exponents below this (15 for `float8`, 6 for `float4`).
    Float(i32),
    /// Floats in another form (`extra_float_digits` below 1): only `inf` is rewritten.
    Infinity,
    /// An array of floats (`{0,5.0,10.0}`): each element as [`Fix::Float`] or
    /// [`Fix::Infinity`] would write it alone (`{0,5,10}`).
    Elements(Element),
}

/// The fix of each element of a [`Fix::Elements`] array.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Element {
    Float(i32),
    Infinity,
}

impl Element {
    fn fix(self) -> Fix {
        match self {
            Element::Float(fixed_below) => Fix::Float(fixed_below),
            Element::Infinity => Fix::Infinity,
        }
    }
}

/// `response` with its text-format timestamps, times and floats written as PostgreSQL
/// writes them.
pub fn postgres_text(response: Response) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    let fixes: Vec<Fix> = query.row_schema.iter().map(fix_of).collect();
    if fixes.iter().any(|f| *f != Fix::None) {
        query.data_rows = Box::pin(
            query
                .data_rows
                .map(move |row| row.map(|row| fix_row(row, &fixes))),
        );
    }
    Response::Query(query)
}

/// PostgreSQL writes a `float8` in fixed notation when its decimal exponent is below this.
pub(crate) const FLOAT8_FIXED_BELOW: i32 = 15;
/// The same for `float4`.
pub(crate) const FLOAT4_FIXED_BELOW: i32 = 6;

fn fix_of(field: &FieldInfo) -> Fix {
    if field.format() != FieldFormat::Text {
        return Fix::None;
    }
    // Not `time`: pgwire's decoder of text parameters wants six fraction digits there, and
    // a client that reads a `time` as text and binds it back (node-postgres) must be able to.
    let stamps = [
        Type::TIMESTAMP,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMP_ARRAY,
        Type::TIMESTAMPTZ_ARRAY,
    ];
    let shortest = field.format_options().extra_float_digits >= 1;
    match field.datatype() {
        t if stamps.contains(t) => Fix::Fractions,
        t if *t == Type::FLOAT8 || *t == Type::FLOAT4 => {
            element_of(shortest, *t == Type::FLOAT8).fix()
        }
        t if *t == Type::FLOAT8_ARRAY || *t == Type::FLOAT4_ARRAY => {
            Fix::Elements(element_of(shortest, *t == Type::FLOAT8_ARRAY))
        }
        _ => Fix::None,
    }
}

/// How a float of either width is written, in the shortest form or not.
fn element_of(shortest: bool, float8: bool) -> Element {
    match (shortest, float8) {
        (true, true) => Element::Float(FLOAT8_FIXED_BELOW),
        (true, false) => Element::Float(FLOAT4_FIXED_BELOW),
        (false, _) => Element::Infinity,
    }
}

/// `row` with the values of the columns rewritten as `fixes` says. A row that does not parse
/// as `DataRow` fields (it always does) is passed on unchanged.
fn fix_row(row: DataRow, fixes: &[Fix]) -> DataRow {
    // Most rows need nothing (a timestamp with microseconds, a float with a fraction): they
    // pass as they are, without a copy.
    let count = row.field_count.max(0) as usize;
    let parsed = fields(&row).zip(fixes).take(count);
    let mut parsed_count = 0;
    let mut any = false;
    for (value, &fix) in parsed {
        parsed_count += 1;
        any |= value.is_some_and(|v| needs(fix, v));
    }
    if !any || parsed_count != count.min(fixes.len()) {
        return row;
    }
    let mut out = BytesMut::with_capacity(row.data.len());
    for (value, &fix) in fields(&row).zip(fixes).take(count) {
        let Some(value) = value else {
            out.put_i32(-1);
            continue;
        };
        // The value goes straight into `out`, its length filled in after.
        let slot = out.len();
        out.put_i32(0);
        match fix {
            Fix::None => out.put_slice(value),
            Fix::Fractions => trim_fractions(value, &mut out),
            Fix::Float(fixed_below) => write_float(value, fixed_below, &mut out),
            Fix::Infinity => write_infinity(value, &mut out),
            Fix::Elements(element) => write_elements(value, element, &mut out),
        }
        let written = (out.len() - slot - 4) as i32;
        out[slot..slot + 4].copy_from_slice(&written.to_be_bytes());
    }
    DataRow::new(out, row.field_count)
}

/// The fields of `row` in order, `None` for NULL, as far as the row parses.
fn fields(row: &DataRow) -> impl Iterator<Item = Option<&[u8]>> {
    let data = &row.data;
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let len = data
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))?;
        at += 4;
        if len < 0 {
            return Some(None);
        }
        let value = data.get(at..at + len as usize)?;
        at += len as usize;
        Some(Some(value))
    })
}

/// `inf` and `-inf` as PostgreSQL writes them; anything else as it is.
fn write_infinity(value: &[u8], out: &mut BytesMut) {
    out.put_slice(match value {
        b"inf" => b"Infinity",
        b"-inf" => b"-Infinity",
        other => other,
    })
}

/// The elements of an array's text (`{1.0,NULL,{2.5e20}}`): the runs between braces and
/// commas. Float elements are never quoted, so no quote needs reading.
fn elements(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| matches!(b, b'{' | b'}' | b','))
        .filter(|e| !e.is_empty() && *e != b"NULL")
}

/// An array of floats into `out` with each element written as [`Fix::Elements`] says.
fn write_elements(text: &[u8], element: Element, out: &mut BytesMut) {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        if matches!(b, b'{' | b'}' | b',') {
            write_element(&text[start..i], element, out);
            out.put_u8(b);
            start = i + 1;
        }
    }
    write_element(&text[start..], element, out);
}

fn write_element(value: &[u8], element: Element, out: &mut BytesMut) {
    match element {
        _ if value.is_empty() || value == b"NULL" => out.put_slice(value),
        Element::Float(fixed_below) => write_float(value, fixed_below, out),
        Element::Infinity => write_infinity(value, out),
    }
}

/// Whether [`fix_row`] would change `value`.
fn needs(fix: Fix, value: &[u8]) -> bool {
    match fix {
        Fix::None => false,
        // A six-digit fraction ending in zero ([`trim_fractions`] also wants `:SS` before it).
        Fix::Fractions => value.iter().enumerate().any(|(i, &b)| {
            b == b'.'
                && value
                    .get(i + 1..i + 7)
                    .is_some_and(|d| d.iter().all(u8::is_ascii_digit) && d[5] == b'0')
                && !value.get(i + 7).is_some_and(u8::is_ascii_digit)
        }),
        Fix::Float(fixed_below) => float_needs(value, fixed_below),
        Fix::Infinity => value == b"inf" || value == b"-inf",
        Fix::Elements(element) => elements(value).any(|e| needs(element.fix(), e)),
    }
}

/// `text` into `out` with each seconds fraction (`:SS.dddddd`, six digits) cut after its last
/// digit that is not zero, and without the point when all six are zero.
fn trim_fractions(text: &[u8], out: &mut BytesMut) {
    let digit = |i: usize| text.get(i).is_some_and(u8::is_ascii_digit);
    let mut copied = 0;
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
            out.put_slice(&text[copied..i]);
            let digits = &text[i + 1..i + 7];
            let kept = digits.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
            if kept > 0 {
                out.put_u8(b'.');
                out.put_slice(&digits[..kept]);
            }
            i += 7;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.put_slice(&text[copied..]);
}

/// A Ryu float into `out` in PostgreSQL's form. Most values are written as they came: only
/// an exponent, a trailing `.0`, `inf`, a tiny value in fixed notation or more whole digits
/// than PostgreSQL writes in fixed notation need [`postgres_float`].
fn write_float(text: &[u8], fixed_below: i32, out: &mut BytesMut) {
    let unsigned = text.strip_prefix(b"-").unwrap_or(text);
    let whole = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    if let Some(integral) = text.strip_suffix(b".0")
        && (whole as i32) <= fixed_below
    {
        out.put_slice(integral);
        return;
    }
    match float_needs(text, fixed_below)
        .then(|| postgres_float(text, fixed_below))
        .flatten()
    {
        Some(float) => out.put_slice(&float),
        None => out.put_slice(text),
    }
}

/// Whether Ryu's `text` differs from PostgreSQL's form of the same float.
pub(crate) fn float_needs(text: &[u8], fixed_below: i32) -> bool {
    let unsigned = text.strip_prefix(b"-").unwrap_or(text);
    let whole = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    unsigned.ends_with(b".0")
        || unsigned.contains(&b'e')
        || unsigned.starts_with(b"inf")
        || unsigned.starts_with(b"0.0000")
        || whole as i32 > fixed_below
}

/// A float as PostgreSQL's `float8out` / `float4out` write it (`extra_float_digits` 1, the
/// default: the shortest text that reads back to the same value): fixed notation without a
/// trailing `.0` when the decimal exponent is in `[-4, fixed_below)`, else `d.ddde±XX` with at
/// least two exponent digits; `Infinity`, `-Infinity`, `NaN`. `None` when `text` is not a
/// float pgwire wrote (left as it is).
pub(crate) fn postgres_float(text: &[u8], fixed_below: i32) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    match text {
        "inf" => return Some(b"Infinity".to_vec()),
        "-inf" => return Some(b"-Infinity".to_vec()),
        "NaN" => return None,
        _ => {}
    }
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit()) || whole.is_empty() {
        return None;
    }
    // All significant digits, and the decimal exponent of the first of them.
    let all: String = whole.chars().chain(fraction.chars()).collect();
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    if digits.is_empty() {
        return Some(if negative {
            b"-0".to_vec()
        } else {
            b"0".to_vec()
        });
    }
    let point = exponent + whole.len() as i32 - leading as i32 - 1;
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if (-4..fixed_below).contains(&point) {
        if point < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point - 1) as usize));
            out.push_str(digits);
        } else {
            let whole_digits = point as usize + 1;
            if digits.len() <= whole_digits {
                out.push_str(digits);
                out.extend(std::iter::repeat_n('0', whole_digits - digits.len()));
            } else {
                out.push_str(&digits[..whole_digits]);
                out.push('.');
                out.push_str(&digits[whole_digits..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if point < 0 { '-' } else { '+' },
            point.abs()
        ));
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trim(text: &str) -> String {
        let mut out = BytesMut::new();
        trim_fractions(text.as_bytes(), &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
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
        assert_eq!(
            trim("2026-11-23 10:00:00.000000+05:30"),
            "2026-11-23 10:00:00+05:30"
        );
        assert_eq!(
            trim("Mon Nov 23 10:00:00.000000 2026 UTC"),
            "Mon Nov 23 10:00:00 2026 UTC"
        );
        assert_eq!(
            trim(r#"{"2026-11-23 10:00:00.000000+00","2026-11-23 10:00:01.100000+00"}"#),
            r#"{"2026-11-23 10:00:00+00","2026-11-23 10:00:01.1+00"}"#
        );
    }

    /// `value` as pgwire writes it (Ryu), then as this module rewrites it.
    fn float(value: f64, fixed_below: i32) -> String {
        let text = ryu::Buffer::new().format(value).to_string();
        let mut out = BytesMut::new();
        write_float(text.as_bytes(), fixed_below, &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    // Expected texts as PostgreSQL 15 writes them (`SELECT x::float8`, `SELECT x::float4`).
    #[test]
    fn floats_in_postgres_shortest_form() {
        assert_eq!(float(7.0, 15), "7");
        assert_eq!(float(-7.5, 15), "-7.5");
        assert_eq!(float(0.001, 15), "0.001");
        assert_eq!(float(0.0001, 15), "0.0001");
        assert_eq!(float(0.00001, 15), "1e-05");
        assert_eq!(float(1.5e-7, 15), "1.5e-07");
        assert_eq!(float(123456789012345.0, 15), "123456789012345");
        assert_eq!(float(1e15, 15), "1e+15");
        assert_eq!(float(1.2345e20, 15), "1.2345e+20");
        assert_eq!(float(1e100, 15), "1e+100");
        assert_eq!(float(0.1 + 0.2, 15), "0.30000000000000004");
        assert_eq!(float(f64::MAX, 15), "1.7976931348623157e+308");
        assert_eq!(float(123456.0, 6), "123456");
        assert_eq!(float(1234567.0, 6), "1.234567e+06");
        assert_eq!(float(0.0, 15), "0");
        assert_eq!(float(f64::INFINITY, 15), "Infinity");
        assert_eq!(float(f64::NEG_INFINITY, 15), "-Infinity");
        assert_eq!(float(f64::NAN, 15), "NaN");
        assert_eq!(float(1234.5, 15), "1234.5");
        assert_eq!(float(-0.00001234, 15), "-1.234e-05");
        assert_eq!(float(1e16, 15), "1e+16");
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
    fn a_row_with_nothing_to_change_passes_as_it_is() {
        let mut data = BytesMut::new();
        for value in ["2026-11-23 10:00:00.123456+00", "1234.5"] {
            data.put_i32(value.len() as i32);
            data.put_slice(value.as_bytes());
        }
        let fixes = [Fix::Fractions, Fix::Float(15)];
        let row = DataRow::new(data, 2);
        assert!(
            !fields(&row)
                .zip(fixes)
                .any(|(value, fix)| value.is_some_and(|v| needs(fix, v)))
        );
        assert_eq!(fix_row(row.clone(), &fixes), row);
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
        let row = fix_row(
            DataRow::new(data, 3),
            &[Fix::Fractions, Fix::Fractions, Fix::None],
        );
        let mut expected = BytesMut::new();
        expected.put_i32(10);
        expected.put_slice(b"10:00:00.5");
        expected.put_i32(-1);
        expected.put_i32(15);
        expected.put_slice(b"10:00:00.500000");
        assert_eq!(row, DataRow::new(expected, 3));
    }

    fn array(text: &str, element: Element) -> String {
        let mut out = BytesMut::new();
        write_elements(text.as_bytes(), element, &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    // PostgreSQL 15: `SELECT ARRAY[0, 5.0, 10.0, NULL, 1.5, 1e20, 'inf']::float8[]`.
    #[test]
    fn float_arrays_write_each_element_as_postgresql_does() {
        let float8 = Element::Float(FLOAT8_FIXED_BELOW);
        assert_eq!(
            array("{0.0,5.0,10.0,NULL,1.5,1e20,inf}", float8),
            "{0,5,10,NULL,1.5,1e+20,Infinity}"
        );
        assert_eq!(array("{}", float8), "{}");
        assert_eq!(
            array("{{1.0,-2.0},{3.25,4.0}}", float8),
            "{{1,-2},{3.25,4}}"
        );
        assert_eq!(array("{inf,1.0}", Element::Infinity), "{Infinity,1.0}");
        assert!(needs(Fix::Elements(float8), b"{1.5,2.0}"));
        assert!(!needs(Fix::Elements(float8), b"{1.5,NULL,2.25}"));
    }
}
