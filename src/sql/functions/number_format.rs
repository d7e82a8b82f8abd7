//! `to_char(number, pattern)`: PostgreSQL's numeric template patterns, the common part of
//! them, as PostgreSQL 15 writes each (the unit tests hold its answers).
//!
//! - `9` a digit (a leading zero as a blank), `0` a digit always printed (leading zeros from the
//!   leftmost `0` on), `.` / `D` the decimal point, `,` / `G` a group separator (a blank before
//!   the first digit);
//! - the sign: a blank or `-` just before the first digit (the pattern's width plus one); `S`
//!   `+`/`-` anchored to the number at the start or the end, `MI` `-`/blank at the start or the
//!   end, `PR` `<…>` around a negative number at the end;
//!   `SG` as `S`; `PL` a `+` where it stands for a positive number (a blank, or nothing in
//!   fill mode, for a negative one, whose `-` stays before its first digit); `L` the C
//!   locale's currency symbol, a blank;
//! - `FM` (fill mode): no padding blanks, no trailing zeros at `9` fraction positions;
//! - `V` (`99V9`): the number times 10 to the count of digit positions after it, which are
//!   integer positions (not with a decimal point: 42601);
//! - `TH` / `th` at the end: the ordinal suffix of the rounded number (`21ST`, `22nd`), none
//!   for a negative number or one that overflows the pattern;
//! - `RN` / `rn` alone (after `FM` or not): the rounded number in Roman numerals, 15 wide
//!   (`#`s outside 1 to 3999);
//! - `EEEE` at the end of digits and a point (`9.99EEEE`): scientific notation with as many
//!   mantissa decimals as digit positions after the point (` 1.23e+04`); with anything else
//!   42601, as PostgreSQL. (PostgreSQL's `numeric` form writes 99.96 as `10.0e+01` for
//!   `9.9EEEE`; this writes `1.0e+02`, as its `float8` form does.)
//! - text in double quotes as it is; a value with more integer digits than the pattern as `#`.
//!
//! Values are rounded to the pattern's fraction digits half away from zero (`numeric`), floats
//! to the nearest with ties to even, as PostgreSQL's `float8` form does. Other patterns
//! (`RN` or `TH` with other parts, letters) are refused (0A000), never printed wrong.

use crate::error::{SqlError, SqlState};

/// One element of a numeric pattern.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Digit { zero: bool },
    Point,
    Group,
    Sign,
    Minus,
    Brackets,
    Plus,
    Text(String),
}

struct Pattern {
    parts: Vec<Part>,
    fill: bool,
}

fn unsupported(pattern: &str) -> SqlError {
    SqlError::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "to_char: the number pattern \"{pattern}\" is not supported; use 9, 0, ., D, ',', G, FM, S, SG, PL, MI, PR, L, V, TH, RN and quoted text"
        ),
    )
}

fn parse(pattern: &str) -> Result<Pattern, SqlError> {
    let mut parts = Vec::new();
    let mut fill = false;
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let rest: String = chars[i..].iter().take(2).collect::<String>().to_uppercase();
        let (part, width) = match chars[i] {
            '9' => (Some(Part::Digit { zero: false }), 1),
            '0' => (Some(Part::Digit { zero: true }), 1),
            '.' => (Some(Part::Point), 1),
            ',' => (Some(Part::Group), 1),
            ' ' => (Some(Part::Text(" ".into())), 1),
            '"' => {
                let close = chars[i + 1..].iter().position(|&c| c == '"');
                let end = close.map_or(chars.len(), |c| i + 1 + c);
                let text: String = chars[i + 1..end].iter().collect();
                (Some(Part::Text(text)), end + 1 - i)
            }
            _ if rest == "FM" => {
                fill = true;
                (None, 2)
            }
            _ if rest == "MI" => (Some(Part::Minus), 2),
            _ if rest == "PR" => (Some(Part::Brackets), 2),
            _ if rest == "PL" => (Some(Part::Plus), 2),
            _ if rest == "SG" => (Some(Part::Sign), 2),
            'L' | 'l' => (Some(Part::Text(" ".into())), 1),
            'D' | 'd' => (Some(Part::Point), 1),
            'G' | 'g' => (Some(Part::Group), 1),
            'S' | 's' => (Some(Part::Sign), 1),
            _ => return Err(unsupported(pattern)),
        };
        parts.extend(part);
        i += width;
    }
    // One point; signs only at an end; brackets only at the end.
    let points = parts.iter().filter(|p| **p == Part::Point).count();
    let numeric = |p: &Part| matches!(p, Part::Digit { .. } | Part::Point | Part::Group);
    let first = parts.iter().position(numeric);
    let last = parts.iter().rposition(numeric);
    let signs_at_ends = parts.iter().enumerate().all(|(at, p)| match p {
        Part::Sign | Part::Minus => first.is_none_or(|f| at < f) || last.is_none_or(|l| at > l),
        Part::Brackets => last.is_none_or(|l| at > l),
        _ => true,
    });
    let signs = parts
        .iter()
        .filter(|p| matches!(p, Part::Sign | Part::Minus | Part::Brackets))
        .count();
    if points > 1 || !signs_at_ends || signs > 1 || first.is_none() {
        return Err(unsupported(pattern));
    }
    Ok(Pattern { parts, fill })
}

/// A number's digits rounded to `fraction` places: whether it is negative (not when it
/// rounds to zero), its integer digits without leading zeros ("" for zero), its fraction.
#[derive(Debug, PartialEq)]
struct Digits {
    negative: bool,
    whole: String,
    fraction: String,
}

/// `text` (a decimal number as Rust or Arrow write it: `-1234.5`, `7`) rounded half away
/// from zero.
fn decimal_digits(text: &str, fraction: usize) -> Option<Digits> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(frac.bytes().chain(std::iter::repeat(b'0')).take(fraction))
        .collect();
    if frac.as_bytes().get(fraction).is_some_and(|&d| d >= b'5') && round_up(&mut digits) {
        digits.insert(0, b'1');
    }
    let split = digits.len() - fraction;
    let whole: String = String::from_utf8_lossy(&digits[..split])
        .trim_start_matches('0')
        .to_string();
    let fraction = String::from_utf8_lossy(&digits[split..]).to_string();
    let zero = whole.is_empty() && fraction.bytes().all(|b| b == b'0');
    Some(Digits {
        negative: negative && !zero,
        whole,
        fraction,
    })
}

/// A float's digits rounded to `fraction` places, ties to even as PostgreSQL's `float8`
/// form rounds; `None` for NaN and the infinities.
fn float_digits(value: f64, fraction: usize) -> Option<Digits> {
    if !value.is_finite() {
        return None;
    }
    // An f64's exact decimal expansion ends within 1,074 fraction digits: past that every digit
    // is 0, which `decimal_digits` pads. (`format!` also panics past 65,535.)
    let exact = fraction.min(1_100);
    decimal_digits(&format!("{value:.exact$}"), fraction)
}

/// `to_char(number, pattern)` of a number given as decimal text (`numeric`, integers) or as a
/// float.
pub(crate) fn format(number: Number, pattern: &str) -> Result<String, SqlError> {
    // RN alone, after an optional FM.
    let (fill, bare) = match pattern.get(..2) {
        Some(fm) if fm.eq_ignore_ascii_case("FM") => (true, &pattern[2..]),
        _ => (false, pattern),
    };
    if bare == "RN" || bare == "rn" {
        return roman_numerals(&number, bare == "rn", fill);
    }
    // EEEE at the end: scientific notation.
    if let Some(rest) = pattern
        .strip_suffix("EEEE")
        .or_else(|| pattern.strip_suffix("eeee"))
    {
        if !rest.chars().all(|c| matches!(c, '9' | '0' | '.')) {
            return Err(SqlError::new(
                SqlState::SYNTAX_ERROR,
                "\"EEEE\" is incompatible with other formats: it may only be used together with digit and decimal point patterns",
            ));
        }
        let precision = rest.split_once('.').map_or(0, |(_, after)| after.len());
        return scientific(&number, precision);
    }
    // TH at the end: the rest formatted, then the ordinal.
    if let Some(rest) = pattern
        .strip_suffix("TH")
        .or_else(|| pattern.strip_suffix("th"))
        .filter(|rest| !rest.ends_with('"'))
    {
        // One suffix (this also bounds the recursion below to one level).
        if rest.to_uppercase().ends_with("TH") {
            return Err(unsupported(pattern));
        }
        let lower = pattern.ends_with("th");
        let parsed = parse(rest)?;
        if parsed.parts.contains(&Part::Point) {
            return Err(unsupported(pattern));
        }
        let text = format(number, rest)?;
        let digits = rounded(number, 0).ok_or_else(no_digits)?;
        if digits.negative || text.contains('#') {
            return Ok(text);
        }
        let suffix = ordinal(&digits.whole);
        return Ok(if lower {
            text + &suffix.to_lowercase()
        } else {
            text + suffix
        });
    }
    // V: shift the number left by the digit positions after it.
    if let Some(at) = v_position(pattern) {
        let without = format!("{}{}", &pattern[..at], &pattern[at + 1..]);
        if v_position(&without).is_some() {
            return Err(SqlError::new(
                SqlState::SYNTAX_ERROR,
                "cannot use \"V\" twice",
            ));
        }
        let parsed = parse(&without)?;
        if parsed.parts.contains(&Part::Point) {
            return Err(SqlError::new(
                SqlState::SYNTAX_ERROR,
                "cannot use \"V\" and decimal point together",
            ));
        }
        let places = pattern[at + 1..]
            .chars()
            .filter(|c| matches!(c, '9' | '0'))
            .count();
        return match number {
            Number::Decimal(text) => format(Number::Decimal(&shifted(text, places)), &without),
            // As PostgreSQL's float8 form: the product at 15 significant digits, so
            // 2.675 * 100 is 267.5 (and rounds to 268), not 267.49999999999997.
            Number::Float(value) => {
                let product = value * 10f64.powi(places as i32);
                let product = format!("{product:.14e}").parse().unwrap_or(product);
                format(Number::Float(product), &without)
            }
        };
    }
    let pattern_parsed = parse(pattern)?;
    let point = pattern_parsed.parts.iter().position(|p| *p == Part::Point);
    let digit_positions = |range: &[Part]| {
        range
            .iter()
            .filter(|p| matches!(p, Part::Digit { .. }))
            .count()
    };
    let (before, after) = match point {
        Some(at) => (
            digit_positions(&pattern_parsed.parts[..at]),
            digit_positions(&pattern_parsed.parts[at..]),
        ),
        None => (digit_positions(&pattern_parsed.parts), 0),
    };
    let digits = rounded(number, after);
    let Some(mut digits) = digits else {
        return Err(no_digits());
    };
    // Zero's integer digit shows only where no fraction digit is printed.
    if digits.whole.is_empty() && after == 0 {
        digits.whole = "0".into();
    }
    Ok(render(&pattern_parsed, &digits, before, after))
}

/// A number for [`format`].
#[derive(Clone, Copy)]
pub(crate) enum Number<'a> {
    Decimal(&'a str),
    Float(f64),
}

fn render(pattern: &Pattern, digits: &Digits, before: usize, after: usize) -> String {
    let fill = pattern.fill;
    let overflow = digits.whole.len() > before;
    let explicit = pattern
        .parts
        .iter()
        .any(|p| matches!(p, Part::Sign | Part::Minus | Part::Brackets));
    // The integer positions from the left: the digit each prints, if any.
    let first_zero = pattern
        .parts
        .iter()
        .filter(|p| matches!(p, Part::Digit { .. }))
        .take(before)
        .position(|p| *p == Part::Digit { zero: true });
    let printed_from = first_zero
        .unwrap_or(before)
        .min(before - digits.whole.len().min(before));
    let whole: Vec<char> = digits.whole.chars().collect();
    let mut fraction: Vec<char> = digits.fraction.chars().collect();
    if fill && !overflow {
        // Trailing zeros at `9` positions go.
        let nines: Vec<bool> = pattern
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Digit { .. }))
            .skip(before)
            .map(|p| *p == Part::Digit { zero: false })
            .collect();
        while fraction.last() == Some(&'0') && nines.get(fraction.len() - 1) == Some(&true) {
            fraction.pop();
        }
    }
    // In fill mode a number with no digit left prints its zero.
    let no_digit = printed_from == before && fraction.is_empty();
    let sign = |positive: char| if digits.negative { '-' } else { positive };
    let mut out = String::new();
    let mut int_at = 0;
    let mut frac_at = 0;
    let mut started = false;
    let mut after_point = false;
    let last_numeric = pattern
        .parts
        .iter()
        .rposition(|p| matches!(p, Part::Digit { .. } | Part::Point | Part::Group));
    for (at, part) in pattern.parts.iter().enumerate() {
        let leading = last_numeric.is_some_and(|l| at < l) && !started;
        let begin = |out: &mut String, started: &mut bool| {
            if !*started {
                *started = true;
                if !explicit {
                    match (digits.negative, fill) {
                        (true, _) => out.push('-'),
                        (false, false) => out.push(' '),
                        (false, true) => {}
                    }
                }
                // An anchored leading `S`; `PR`'s opening bracket (a blank when positive).
                if pattern.parts[..at].contains(&Part::Sign) {
                    out.push(sign('+'));
                }
                if pattern.parts.contains(&Part::Brackets) {
                    match (digits.negative, fill) {
                        (true, _) => out.push('<'),
                        (false, false) => out.push(' '),
                        (false, true) => {}
                    }
                }
            }
        };
        match part {
            Part::Digit { .. } if !after_point => {
                let shown = if overflow {
                    Some('#')
                } else if int_at >= printed_from {
                    // Positions left of the number's own digits print forced zeros.
                    let offset = before - whole.len();
                    Some(
                        int_at
                            .checked_sub(offset)
                            .and_then(|i| whole.get(i).copied())
                            .unwrap_or('0'),
                    )
                } else if no_digit && fill && int_at + 1 == before {
                    Some('0')
                } else {
                    None
                };
                match shown {
                    Some(c) => {
                        begin(&mut out, &mut started);
                        out.push(c);
                    }
                    None if !fill => out.push(' '),
                    None => {}
                }
                int_at += 1;
            }
            Part::Digit { .. } => {
                let c = if overflow {
                    Some('#')
                } else {
                    fraction.get(frac_at).copied()
                };
                out.extend(c);
                frac_at += 1;
            }
            Part::Point => {
                after_point = true;
                if after == 0 && !(fill && no_digit) {
                    continue;
                }
                begin(&mut out, &mut started);
                out.push('.');
            }
            Part::Group => {
                if started {
                    out.push(',');
                } else if !fill {
                    out.push(' ');
                }
            }
            Part::Sign if leading => {}
            Part::Sign => out.push(sign('+')),
            Part::Minus => {
                if digits.negative {
                    out.push('-');
                } else if !fill {
                    out.push(' ');
                }
            }
            Part::Brackets => {
                if digits.negative {
                    out.push('>');
                } else if !fill {
                    out.push(' ');
                }
            }
            Part::Plus => {
                if !digits.negative {
                    out.push('+');
                } else if !fill {
                    out.push(' ');
                }
            }
            Part::Text(text) => out.push_str(text),
        }
    }
    out
}

/// The number `n` (1 to 3999) in Roman numerals.
fn roman(mut n: u32) -> String {
    const NUMERALS: [(u32, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut out = String::new();
    for (value, numeral) in NUMERALS {
        while n >= value {
            out.push_str(numeral);
            n -= value;
        }
    }
    out
}

/// `number`'s digits rounded to `fraction` places: `numeric` half away from zero, `float8`
/// ties to even.
fn rounded(number: Number, fraction: usize) -> Option<Digits> {
    match number {
        Number::Decimal(text) => decimal_digits(text, fraction),
        Number::Float(value) => float_digits(value, fraction),
    }
}

/// `RN` / `rn`: the rounded number in Roman numerals, right-aligned in 15 unless `fill`.
fn roman_numerals(number: &Number, lower: bool, fill: bool) -> Result<String, SqlError> {
    let digits = rounded(*number, 0).ok_or_else(no_digits)?;
    let value = digits.whole.parse::<u32>().unwrap_or(0);
    let text = if digits.negative || !(1..=3999).contains(&value) {
        "#".repeat(15)
    } else if lower {
        roman(value).to_lowercase()
    } else {
        roman(value)
    };
    Ok(if fill { text } else { format!("{text:>15}") })
}

/// Adds one at the last of the ASCII `digits`, carrying to the left; whether the carry ran
/// past the first digit (all were 9s, now 0s), for the caller to put its leading 1.
fn round_up(digits: &mut [u8]) -> bool {
    for digit in digits.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return false;
        }
    }
    true
}

/// `number` as ` d.ddde+XX` with `precision` mantissa decimals (`EEEE`): `numeric` rounded
/// half away from zero, `float8` as printf rounds its exact value.
fn scientific(number: &Number, precision: usize) -> Result<String, SqlError> {
    let (negative, mantissa, exponent) = match number {
        Number::Float(value) => {
            if !value.is_finite() {
                return Err(no_digits());
            }
            let precision = precision.min(1_100);
            let text = format!("{:.precision$e}", value.abs());
            let (mantissa, exponent) = text.split_once('e').ok_or_else(no_digits)?;
            let exponent: i64 = exponent.parse().map_err(|_| no_digits())?;
            (*value < 0.0, mantissa.to_string(), exponent)
        }
        Number::Decimal(text) => decimal_scientific(text, precision).ok_or_else(no_digits)?,
    };
    Ok(format!(
        "{}{mantissa}e{}{:02}",
        if negative { '-' } else { ' ' },
        if exponent < 0 { '-' } else { '+' },
        exponent.unsigned_abs()
    ))
}

/// The sign, mantissa (`precision` decimals) and exponent of decimal `text`.
fn decimal_scientific(text: &str, precision: usize) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let Some(first) = digits.iter().position(|&d| d != b'0') else {
        let zeros = "0".repeat(precision);
        let mantissa = if precision > 0 {
            format!("0.{zeros}")
        } else {
            "0".into()
        };
        return Some((false, mantissa, 0));
    };
    let mut exponent = whole.len() as i64 - 1 - first as i64;
    let mut kept: Vec<u8> = digits[first..]
        .iter()
        .copied()
        .chain(std::iter::repeat(b'0'))
        .take(precision + 1)
        .collect();
    if digits
        .get(first + precision + 1)
        .is_some_and(|&d| d >= b'5')
        && round_up(&mut kept)
    {
        // 9.99 rounded up: 10.0, written 1.00 with the exponent one higher.
        kept.insert(0, b'1');
        kept.pop();
        exponent += 1;
    }
    let kept = String::from_utf8(kept).ok()?;
    let mantissa = if precision > 0 {
        format!("{}.{}", &kept[..1], &kept[1..])
    } else {
        kept
    };
    Some((negative, mantissa, exponent))
}

/// English ordinal suffix of the integer whose decimal digits are `whole`.
fn ordinal(whole: &str) -> &'static str {
    let last_two = whole
        .get(whole.len().saturating_sub(2)..)
        .and_then(|d| d.parse::<u32>().ok())
        .unwrap_or(0);
    match (last_two % 100, last_two % 10) {
        (11..=13, _) => "TH",
        (_, 1) => "ST",
        (_, 2) => "ND",
        (_, 3) => "RD",
        _ => "TH",
    }
}

fn no_digits() -> SqlError {
    SqlError::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        "to_char: NaN and infinity have no digits to format",
    )
}

/// `text` (a decimal number) times 10^`places`, as decimal text.
fn shifted(text: &str, places: usize) -> String {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let padded: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(places.max(fraction.len()))
        .collect();
    let (moved, rest) = padded.split_at(places);
    if rest.is_empty() {
        format!("{sign}{whole}{moved}")
    } else {
        format!("{sign}{whole}{moved}.{rest}")
    }
}

/// The positions of `V` outside quoted text in `pattern`.
fn v_position(pattern: &str) -> Option<usize> {
    let mut quoted = false;
    for (at, c) in pattern.char_indices() {
        match c {
            '"' => quoted = !quoted,
            'V' | 'v' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str, pattern: &str) -> String {
        format(Number::Decimal(text), pattern).unwrap_or_else(|e| format!("error {}", e.message))
    }

    // Each answer is PostgreSQL 15's `'[' || to_char(value, pattern) || ']'`.
    #[test]
    fn numbers_format_as_postgresql_formats_them() {
        for (value, pattern, expected) in [
            ("1234.5", "9999.00", " 1234.50"),
            ("-1234.5", "9999.00", "-1234.50"),
            ("12", "9999", "   12"),
            ("-12", "9999", "  -12"),
            ("0", "9999", "    0"),
            ("0.5", "9.99", "  .50"),
            ("0.5", "0.99", " 0.50"),
            ("5", "0999", " 0005"),
            ("5", "9099", "  005"),
            ("-5", "0999", "-0005"),
            ("12345", "999", " ###"),
            ("-12345", "999.9", "-###.#"),
            ("1234.5", "FM9999.00", "1234.50"),
            ("1234.5", "FM9999.99", "1234.5"),
            ("1234", "FM9999.99", "1234."),
            ("0.5", "FM9.99", ".5"),
            ("0", "FM9999", "0"),
            ("-0.5", "FM9.99", "-.5"),
            ("1234567.891", "9,999,999.99", " 1,234,567.89"),
            ("1234567.891", "FM9,999,999.99", "1,234,567.89"),
            ("12", "9,999", "    12"),
            ("1234567", "9G999G999D99", " 1,234,567.00"),
            ("-12", "FM9,999", "-12"),
            ("5", "S999", "  +5"),
            ("-5", "S999", "  -5"),
            ("5", "999S", "  5+"),
            ("-5", "999MI", "  5-"),
            ("5", "999MI", "  5 "),
            ("-5", "999PR", "  <5>"),
            ("5", "999PR", "   5 "),
            ("2.5", "9", " 3"),
            ("3.5", "9", " 4"),
            ("-2.5", "9", "-3"),
            ("1.005", "9.99", " 1.01"),
            ("42", "\"n=\"999", "n=  42"),
            ("1", "FM0000", "0001"),
            ("-5", "FMS999", "-5"),
            ("5", "FM999MI", "5"),
            ("12", "FM9999.", "12"),
            ("0", "9999.99", "     .00"),
            ("0", "FM9999.99", "0."),
            ("12", "9999.", "   12"),
            ("0.004", "9.99", "  .00"),
            ("-0.004", "9.99", "  .00"),
            ("-0.004", "FM9.99", "0."),
            ("99.99", "99.9", " ##.#"),
            ("5", "9,999", "     5"),
            ("12345", "FM9,999", "#,###"),
            ("5", "0,999", " 0,005"),
            ("-1234.5", "FM9G999D00", "-1,234.50"),
            ("5", "FMS0000", "+0005"),
            ("-5", "999S", "  5-"),
            ("-5", "FM999PR", "<5>"),
            ("5", "MI999", "   5"),
            ("-5", "MI999", "-  5"),
            ("5", "L9", "  5"),
            ("5", "FML9", " 5"),
            ("5", "PL9", "+ 5"),
            ("-5", "PL9", " -5"),
            ("5", "9PL", " 5+"),
            ("-5", "FMPL9", "-5"),
            ("5", "FMPL9", "+5"),
            ("5", "SG9", "+5"),
            ("-5", "SG9", "-5"),
            ("5", "9SG", "5+"),
            ("-5", "9SG", "5-"),
            ("5", "PLSG9", "++5"),
            ("12.345", "99V99", " 1235"),
            ("12", "99V9", " 120"),
            ("-12.345", "99V99", "-1235"),
            ("12.345", "FM99V99", "1235"),
            ("0.5", "9V9", "  5"),
            ("21", "99TH", " 21ST"),
            ("22", "FM99th", "22nd"),
            ("13", "99TH", " 13TH"),
            ("-1", "99TH", " -1"),
            ("12", "FM99TH", "12TH"),
            ("111", "999th", " 111th"),
            ("2", "9TH", " 2ND"),
            ("0", "9TH", " 0TH"),
            ("12.5", "99TH", " 13TH"),
            ("123", "99TH", " ##"),
            ("1234", "RN", "       MCCXXXIV"),
            ("1234", "FMRN", "MCCXXXIV"),
            ("4", "rn", "             iv"),
            ("1999", "FMrn", "mcmxcix"),
            ("0", "RN", "###############"),
            ("4000", "RN", "###############"),
            ("-5", "RN", "###############"),
            ("1.6", "RN", "             II"),
            ("3999.4", "RN", "      MMMCMXCIX"),
            ("12345.678", "9.99EEEE", " 1.23e+04"),
            ("-12345.678", "9.99EEEE", "-1.23e+04"),
            ("0", "9.99EEEE", " 0.00e+00"),
            ("9999", "9.99EEEE", " 1.00e+04"),
            ("0.00012", "9.9EEEE", " 1.2e-04"),
            ("12345", "9EEEE", " 1e+04"),
            ("12345", "99.99EEEE", " 1.23e+04"),
            ("12345", "0.99EEEE", " 1.23e+04"),
            ("5", "EEEE", " 5e+00"),
            ("1.25", "9.9EEEE", " 1.3e+00"),
            ("12345", "9.99eeee", " 1.23e+04"),
            ("-0.0", "9.9EEEE", " 0.0e+00"),
        ] {
            assert_eq!(
                decimal(value, pattern),
                expected,
                "to_char({value}, '{pattern}')"
            );
        }
    }

    #[test]
    fn floats_round_ties_to_even_and_other_patterns_are_refused() {
        assert_eq!(format(Number::Float(2.5), "9").ok().as_deref(), Some(" 2"));
        // EEEE of a float8, as printf rounds its exact value.
        for (value, pattern, expected) in [
            (12345.678, "9.99EEEE", " 1.23e+04"),
            (1.25, "9.9EEEE", " 1.2e+00"),
            (1e100, "9.9EEEE", " 1.0e+100"),
            (1e-100, "9.9EEEE", " 1.0e-100"),
            (-1.5, "9.9EEEE", "-1.5e+00"),
        ] {
            assert_eq!(
                format(Number::Float(value), pattern).ok().as_deref(),
                Some(expected)
            );
        }
        // V on a float8, as PostgreSQL: 15 significant digits, then ties to even.
        for (value, pattern, expected) in [
            (12.345, "99V99", " 1234"),
            (0.125, "9V99", "  12"),
            (2.675, "9V99", " 268"),
        ] {
            assert_eq!(
                format(Number::Float(value), pattern).ok().as_deref(),
                Some(expected)
            );
        }
        assert_eq!(
            format(Number::Float(1234.5), "FM9,999.00").ok().as_deref(),
            Some("1,234.50")
        );
        // Repeated suffixes or shifts are refused at once, not recursed into.
        let long = format!("9{}", "TH".repeat(100_000));
        assert!(format(Number::Float(1.0), &long).is_err());
        let long = format!("9{}", "V".repeat(100_000));
        assert!(format(Number::Float(1.0), &long).is_err());
        // More fraction digits than `format!` takes: zeros past the float's own.
        let long = format!("FM9.{}", "9".repeat(70_000));
        assert_eq!(
            format(Number::Float(1.5), &long).ok().as_deref(),
            Some("1.5")
        );
        for pattern in [
            "FM9.99EEEE",
            "9.9EEEE9",
            "RN9",
            "9MI99",
            "9.9.9",
            "99.9V9",
            "9.9TH",
            "9X",
            "9THTH",
            "9VV9",
        ] {
            assert!(
                format(Number::Decimal("5"), pattern).is_err(),
                "{pattern} is refused"
            );
        }
    }
}
