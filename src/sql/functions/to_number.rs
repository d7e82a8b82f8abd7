//! `to_number(text, pattern)`: PostgreSQL's reading of a number through a numeric template
//! pattern, step for step as PostgreSQL 15's `NUM_processor` reads one (`formatting.c`), in the
//! C locale (`D` is `.`, `G` is `,`, `L` a character that is not part of the number):
//!
//! - each pattern element reads at most one character: `9` / `0` a digit (a blank before it is
//!   skipped; the first one also takes a `-`, `+` or, with `PR`, a `<` before the number), `.`
//!   / `D` the decimal point, `,` / `G` a comma if there is one (never with `FM`), `MI` / `PL`
//!   / `SG` a sign character, `L` / `TH` a character that is not a digit, point, comma or
//!   sign; any other pattern character skips one input character, whatever it is;
//! - `S` reads a sign right before the first digit or right after the last;
//! - digits after `V` scale the number down by ten to their count (`to_number('12345',
//!   '99V999')` is 12.345);
//! - reading stops when the input or the pattern ends; a number without digits is 22P02.
//!
//! So `to_number('  123', '999')` is 12, as in PostgreSQL (the second blank takes the first
//! `9`'s place). The result is `numeric` with the pattern's decimals (digit positions after
//! the point, plus those after `V`): PostgreSQL keeps only as many as the input had, so
//! `to_number('1.5', '9.99')` is `1.5` there and `1.50` here. `EEEE` and `RN` are 0A000 as in
//! PostgreSQL; the pattern errors (`S` twice, `PR` with a sign, two points, `V` with a point,
//! a digit after `PR`) are PostgreSQL's 42601.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Decimal128Builder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::error::{SqlError, SqlState};

/// The widest `numeric` Arrow holds in 128 bits.
const MAX_PRECISION: u8 = 38;
/// Decimals of the result when the pattern is not a constant (DataFusion's `numeric`).
const DEFAULT_SCALE: i8 = 10;

/// One element of a pattern, as `to_number` reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Node {
    Digit,
    Point,
    Comma,
    Group,
    Currency,
    Ordinal,
    Minus,
    Plus,
    Sign,
    /// Elements that read nothing (`S`, `PR`, `V`, `FM`): `S` and `PR` are read with the digits.
    Nothing,
    /// A character that is not a pattern element: skips one input character.
    Other,
}

/// A parsed pattern.
#[derive(Debug)]
struct Template {
    nodes: Vec<Node>,
    /// Digit positions after the point.
    post: usize,
    /// Digit positions after `V`.
    multi: usize,
    decimal: bool,
    fill: bool,
    /// `S`.
    lsign: bool,
    bracket: bool,
    plus: bool,
    minus: bool,
}

fn syntax(message: &str) -> SqlError {
    SqlError::new(SqlState::SYNTAX_ERROR, message)
}

fn parse(pattern: &str) -> Result<Template, SqlError> {
    let mut t = Template {
        nodes: Vec::new(),
        post: 0,
        multi: 0,
        decimal: false,
        fill: false,
        lsign: false,
        bracket: false,
        plus: false,
        minus: false,
    };
    let mut v = false;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let two: String = chars[i..].iter().take(2).collect();
        let (node, width) = match (chars[i], two.as_str()) {
            (_, "FM" | "fm") => {
                t.fill = true;
                (Node::Nothing, 2)
            }
            (_, "MI" | "mi") => {
                if t.lsign {
                    return Err(syntax("cannot use \"S\" and \"MI\" together"));
                }
                t.minus = true;
                (Node::Minus, 2)
            }
            (_, "PL" | "pl") => {
                if t.lsign {
                    return Err(syntax("cannot use \"S\" and \"PL\" together"));
                }
                t.plus = true;
                (Node::Plus, 2)
            }
            (_, "SG" | "sg") => {
                if t.lsign {
                    return Err(syntax("cannot use \"S\" and \"SG\" together"));
                }
                (t.plus, t.minus) = (true, true);
                (Node::Sign, 2)
            }
            (_, "PR" | "pr") => {
                if t.lsign || t.plus || t.minus {
                    return Err(syntax(
                        "cannot use \"PR\" and \"S\"/\"PL\"/\"MI\"/\"SG\" together",
                    ));
                }
                t.bracket = true;
                (Node::Nothing, 2)
            }
            (_, "TH" | "th") => (Node::Ordinal, 2),
            (_, "SP" | "sp") => (Node::Nothing, 2),
            (_, "RN" | "rn") => {
                return Err(SqlError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "\"RN\" not supported for input",
                ));
            }
            ('E' | 'e', _)
                if chars[i..].len() >= 4 && chars[i..i + 4].iter().all(|c| *c == chars[i]) =>
            {
                return Err(SqlError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "\"EEEE\" not supported for input",
                ));
            }
            ('9' | '0', _) => {
                if t.bracket {
                    return Err(syntax(&format!("\"{}\" must be ahead of \"PR\"", chars[i])));
                }
                if v {
                    t.multi += 1;
                } else if t.decimal {
                    t.post += 1;
                }
                (Node::Digit, 1)
            }
            ('.' | 'D' | 'd', _) => {
                if t.decimal {
                    return Err(syntax("multiple decimal points"));
                }
                if v {
                    return Err(syntax("cannot use \"V\" and decimal point together"));
                }
                t.decimal = true;
                (Node::Point, 1)
            }
            (',', _) => (Node::Comma, 1),
            ('G' | 'g', _) => (Node::Group, 1),
            ('L' | 'l', _) => (Node::Currency, 1),
            ('B' | 'b', _) => (Node::Nothing, 1),
            ('S' | 's', _) => {
                if t.lsign {
                    return Err(syntax("cannot use \"S\" twice"));
                }
                if t.plus || t.minus || t.bracket {
                    return Err(syntax(
                        "cannot use \"S\" and \"PL\"/\"MI\"/\"SG\"/\"PR\" together",
                    ));
                }
                t.lsign = true;
                (Node::Nothing, 1)
            }
            ('V' | 'v', _) => {
                if t.decimal {
                    return Err(syntax("cannot use \"V\" and decimal point together"));
                }
                v = true;
                (Node::Nothing, 1)
            }
            ('"', _) => {
                // Quoted text: each character skips one input character.
                let close = chars[i + 1..].iter().position(|&c| c == '"');
                let end = close.map_or(chars.len(), |c| i + 1 + c);
                t.nodes
                    .extend(std::iter::repeat_n(Node::Other, end - i - 1));
                i = end + 1;
                continue;
            }
            _ => (Node::Other, 1),
        };
        t.nodes.push(node);
        i += width;
    }
    Ok(t)
}

/// Reading state: the input and where it stands, the sign and digits read so far.
struct Reader<'a> {
    input: &'a [u8],
    at: usize,
    sign: Option<u8>,
    digits: String,
    read_pre: usize,
    read_post: usize,
    read_point: bool,
}

impl Reader<'_> {
    fn ended(&self) -> bool {
        self.at >= self.input.len()
    }

    fn here(&self) -> u8 {
        self.input.get(self.at).copied().unwrap_or(0)
    }

    fn at_offset(&self, offset: usize) -> u8 {
        self.input.get(self.at + offset).copied().unwrap_or(0)
    }

    /// PostgreSQL's `NUM_eat_non_data_chars`: skips up to `n` characters that are not digits,
    /// points, commas or signs.
    fn skip_non_data(&mut self, n: usize) {
        for _ in 0..n {
            if self.ended() || b"0123456789.,+-".contains(&self.here()) {
                break;
            }
            self.at += utf8_width(self.here());
        }
    }

    /// PostgreSQL's `NUM_numpart_from_char`, for a digit or point element.
    fn number_part(&mut self, t: &Template, digit: bool) {
        if self.ended() {
            return;
        }
        if self.here() == b' ' {
            self.at += 1;
        }
        if self.ended() {
            return;
        }
        if self.sign.is_none() && digit && self.read_pre + self.read_post == 0 {
            let c = self.here();
            if c == b'-' || (c == b'<' && t.bracket) {
                self.sign = Some(b'-');
                self.at += 1;
            } else if c == b'+' {
                self.sign = Some(b'+');
                self.at += 1;
            }
        }
        if self.ended() {
            return;
        }
        let mut read = false;
        let c = self.here();
        if c.is_ascii_digit() {
            if self.read_point && self.read_post == t.post {
                return;
            }
            self.digits.push(c as char);
            if self.read_point {
                self.read_post += 1;
            } else {
                self.read_pre += 1;
            }
            read = true;
        } else if t.decimal && !self.read_point && c == b'.' {
            self.digits.push('.');
            self.read_point = true;
            read = true;
        }
        if self.ended() {
            return;
        }
        if self.sign.is_none() && self.read_pre + self.read_post > 0 {
            if t.lsign
                && read
                && self.at + 1 < self.input.len()
                && !self.at_offset(1).is_ascii_digit()
            {
                // The processor steps past the sign after this returns.
                if matches!(self.at_offset(1), b'-' | b'+') {
                    self.sign = Some(self.at_offset(1));
                    self.at += 1;
                }
            } else if !read && !t.lsign && (t.plus || t.minus) && matches!(c, b'-' | b'+') {
                self.sign = Some(c);
            }
        }
    }
}

fn utf8_width(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// The number `input` reads as through `t`: its unscaled value at `scale` decimals.
fn read(input: &str, t: &Template, scale: i8) -> Result<i128, SqlError> {
    let mut r = Reader {
        input: input.as_bytes(),
        at: 0,
        sign: None,
        digits: String::new(),
        read_pre: 0,
        read_post: 0,
        read_point: false,
    };
    for node in &t.nodes {
        if r.ended() {
            break;
        }
        match node {
            Node::Digit | Node::Point => r.number_part(t, *node == Node::Digit),
            Node::Comma | Node::Group => {
                if t.fill || r.here() != b',' {
                    continue;
                }
            }
            Node::Currency => {
                r.skip_non_data(1);
                continue;
            }
            Node::Ordinal => {
                if !t.decimal {
                    r.skip_non_data(2);
                }
                continue;
            }
            Node::Minus | Node::Plus | Node::Sign => {
                let c = r.here();
                let reads = match node {
                    Node::Minus => c == b'-',
                    Node::Plus => c == b'+',
                    _ => c == b'-' || c == b'+',
                };
                if reads {
                    r.sign = Some(c);
                } else {
                    r.skip_non_data(1);
                    continue;
                }
            }
            Node::Nothing => continue,
            Node::Other => {
                r.at += utf8_width(r.here());
                continue;
            }
        }
        r.at += 1;
    }
    let digits: String = r.digits.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        let shown = format!("{}{}", r.sign.map_or(' ', char::from), r.digits);
        return Err(SqlError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!(
                "invalid input syntax for type numeric: \"{}\"",
                shown.trim_end_matches('.')
            ),
        ));
    }
    // The digits as an integer at `read_post + multi` decimals, then at `scale`.
    let overflow = || {
        SqlError::new(
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
            "numeric field overflow",
        )
    };
    let digits = digits.trim_start_matches('0');
    if digits.len() > usize::from(MAX_PRECISION) {
        return Err(overflow());
    }
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| overflow())?
    };
    let have = (r.read_post + t.multi) as i64;
    let want = i64::from(scale);
    if want >= have {
        for _ in have..want {
            value = value.checked_mul(10).ok_or_else(overflow)?;
        }
    } else {
        // Fewer decimals than read (a pattern that is not a constant): rounded half away.
        let cut = 10i128
            .checked_pow((have - want) as u32)
            .ok_or_else(overflow)?;
        value = (value + cut / 2) / cut;
    }
    if value >= 10i128.pow(u32::from(MAX_PRECISION)) {
        return Err(overflow());
    }
    Ok(if r.sign == Some(b'-') { -value } else { value })
}

/// The decimals of `to_number`'s result for a constant `pattern`.
fn scale_of(pattern: &str) -> Result<i8, SqlError> {
    let t = parse(pattern)?;
    i8::try_from(t.post + t.multi)
        .ok()
        .filter(|s| *s <= MAX_PRECISION as i8)
        .ok_or_else(|| {
            SqlError::new(
                SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                "numeric field overflow",
            )
        })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ToNumber {
    signature: Signature,
}

/// `to_number(text, pattern)`.
pub(crate) fn to_number() -> ScalarUDF {
    ScalarUDF::from(ToNumber {
        signature: Signature::string(2, Volatility::Immutable),
    })
}

impl ScalarUDFImpl for ToNumber {
    fn name(&self) -> &str {
        "to_number"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(MAX_PRECISION, DEFAULT_SCALE))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let scale = match args.scalar_arguments.get(1).copied().flatten() {
            Some(
                ScalarValue::Utf8(Some(p))
                | ScalarValue::LargeUtf8(Some(p))
                | ScalarValue::Utf8View(Some(p)),
            ) => scale_of(p)?,
            _ => DEFAULT_SCALE,
        };
        Ok(Arc::new(arrow::datatypes::Field::new(
            self.name(),
            DataType::Decimal128(MAX_PRECISION, scale),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let DataType::Decimal128(_, scale) = args.return_field.data_type() else {
            return Err(
                SqlError::new(SqlState::INTERNAL_ERROR, "to_number: not a numeric result").into(),
            );
        };
        let scale = *scale;
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let inputs = cast(&arrays[0], &DataType::Utf8)?;
        let patterns = cast(&arrays[1], &DataType::Utf8)?;
        let (inputs, patterns) = (inputs.as_string::<i32>(), patterns.as_string::<i32>());
        let mut out = Decimal128Builder::with_capacity(rows);
        let mut parsed: Option<(&str, Template)> = None;
        for row in 0..rows {
            if inputs.is_null(row) || patterns.is_null(row) || patterns.value(row).is_empty() {
                out.append_null();
                continue;
            }
            let pattern = patterns.value(row);
            let template = match &parsed {
                Some((p, t)) if *p == pattern => t,
                _ => &parsed.insert((pattern, parse(pattern)?)).1,
            };
            out.append_value(read(inputs.value(row), template, scale)?);
        }
        let result = out
            .finish()
            .with_precision_and_scale(MAX_PRECISION, scale)?;
        super::shaped(&args.args, Arc::new(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `to_number(input, pattern)` as text, at the pattern's decimals.
    fn to_number(input: &str, pattern: &str) -> Result<String, SqlError> {
        let scale = scale_of(pattern)?;
        let value = read(input, &parse(pattern)?, scale)?;
        Ok(arrow::array::Decimal128Array::from(vec![value])
            .with_precision_and_scale(MAX_PRECISION, scale)
            .expect("scale")
            .value_as_string(0))
    }

    #[test]
    fn reads_as_postgresql_does() {
        // Each answer is PostgreSQL 15.18's (run on this machine), at the pattern's decimals.
        for (input, pattern, expected) in [
            ("12,454.8-", "99G999D9S", "-12454.8"),
            ("-34,338,492", "99G999G999", "-34338492"),
            (
                "-34,338,492.654,878",
                "99G999G999D999G999",
                "-34338492.654878",
            ),
            ("<564646.654564>", "999999.999999PR", "-564646.654564"),
            ("0.00001-", "9.999999S", "-0.000010"),
            ("5.01-", "FM9.999999S", "-5.010000"),
            ("5.01-", "FM9.999999MI", "-5.010000"),
            ("5 4 4 4 4 8 . 7 8", "9 9 9 9 9 9 . 9 9", "544448.78"),
            (".01", "FM9.99", "0.01"),
            (".0", "99999999.99999999", "0.00000000"),
            ("0", "99.99", "0.00"),
            (".-01", "S99.99", "-0.01"),
            (".01-", "99.99S", "-0.01"),
            (" . 0 1-", " 9 9 . 9 9 S", "-0.01"),
            ("34,50", "999,99", "3450"),
            ("123,000", "999G", "123"),
            ("123456", "999G999", "123456"),
            ("$1234.56", "L9,999.99", "1234.56"),
            ("$1234.56", "L99,999.99", "1234.56"),
            ("$1,234.56", "L99,999.99", "1234.56"),
            ("1234.56", "L99,999.99", "1234.56"),
            ("1,234.56", "L99,999.99", "1234.56"),
            ("42nd", "99th", "42"),
            ("  123", "999", "12"),
            ("12345", "99V999", "12.345"),
            ("1,234", "FM9,999", "123"),
            ("+7", "S9", "7"),
        ] {
            assert_eq!(
                to_number(input, pattern).map_err(|e| e.to_string()),
                Ok(expected.to_string()),
                "to_number('{input}', '{pattern}')"
            );
        }
    }

    #[test]
    fn errors_are_postgresqls() {
        for (input, pattern, state) in [
            ("abc", "999", SqlState::INVALID_TEXT_REPRESENTATION),
            ("1", "9.9.9", SqlState::SYNTAX_ERROR),
            ("1", "S9S", SqlState::SYNTAX_ERROR),
            ("1", "S9MI", SqlState::SYNTAX_ERROR),
            ("1", "9PR9", SqlState::SYNTAX_ERROR),
            ("1", "9V9.9", SqlState::SYNTAX_ERROR),
            ("1", "9.99EEEE", SqlState::FEATURE_NOT_SUPPORTED),
            ("X", "RN", SqlState::FEATURE_NOT_SUPPORTED),
        ] {
            let error = scale_of(pattern).and_then(|scale| read(input, &parse(pattern)?, scale));
            assert_eq!(
                error.map_err(|e| e.state),
                Err(state),
                "to_number('{input}', '{pattern}')"
            );
        }
        // More digits than a 128-bit numeric holds.
        let pattern = "9".repeat(60);
        let too_long = "1".repeat(60);
        assert_eq!(
            read(&too_long, &parse(&pattern).expect("parses"), 0).map_err(|e| e.state),
            Err(SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
        );
    }
}
