//! PostgreSQL's regular-expression functions that return arrays or sets:
//! `regexp_split_to_array(text, pattern [, flags])` and `regexp_matches_list(text, pattern
//! [, flags])`, the list behind `regexp_matches` and `regexp_split_to_table`, which
//! [`crate::sql::srf`] rewrites to `unnest` of these; and PostgreSQL 15's
//! `regexp_substr(text, pattern [, start [, n [, flags [, subexpr]]]])`.
//!
//! Flags are PostgreSQL's: `g` every match (`regexp_matches` only), `i` case-insensitive, `c`
//! case-sensitive, `n` / `m` newline-sensitive (`.` and bracket expressions stop at a newline,
//! `^` and `$` match at one), `s` not (the default), `p` partial (`.` stops at a newline, `^`
//! and `$` do not match at one), `w` inverse partial, `q` the pattern is a literal string, `t`
//! tight syntax (the only one), `x` expanded syntax. As in PostgreSQL, `.` matches a newline
//! unless a newline-sensitive flag is given. A negated bracket expression (`[^a]`) matches a
//! newline under every flag (PostgreSQL's `n` and `p` exclude it). An unknown flag is 22023.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use arrow::compute::kernels::cast::cast;
use arrow::datatypes::{DataType, Field};
use datafusion::error::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, Volatility};
use regex::Regex;

use crate::error::{SqlError, SqlState};
use crate::sql::functions::shaped;

/// `regexp_split_to_array`, `regexp_matches_list` and `regexp_substr`.
pub(crate) fn functions() -> [ScalarUDF; 3] {
    let text_list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
    let list_of_lists = DataType::List(Arc::new(Field::new_list_field(text_list.clone(), true)));
    [
        udf("regexp_split_to_array", text_list, Each::Split),
        udf("regexp_matches_list", list_of_lists, Each::Matches),
        substr_udf(),
    ]
}

/// `regexp_substr(text, pattern [, start [, n [, flags [, subexpr]]]])`: the `n`th match
/// (default the first) at or after character `start` (default 1), or its `subexpr`th
/// parenthesized group (default 0: the whole match); NULL when there is none.
fn substr_udf() -> ScalarUDF {
    use datafusion::logical_expr::TypeSignature::Any;
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            "regexp_substr",
            Signature::one_of(
                vec![Any(2), Any(3), Any(4), Any(5), Any(6)],
                Volatility::Immutable,
            ),
            DataType::Utf8,
            Arc::new(substrs),
        ),
    )
}

fn substrs(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let column = |i: usize, to: &DataType| -> Result<Option<arrow::array::ArrayRef>> {
        arrays
            .get(i)
            .map(|a| cast(a, to))
            .transpose()
            .map_err(Into::into)
    };
    let text = |i: usize| column(i, &DataType::Utf8);
    let int = |i: usize| column(i, &DataType::Int64);
    let (values, patterns, flags) = (text(0)?, text(1)?, text(4)?);
    let (starts, ns, subexprs) = (int(2)?, int(3)?, int(5)?);
    let (Some(values), Some(patterns)) = (values, patterns) else {
        return Err(SqlError::new(
            SqlState::UNDEFINED_FUNCTION,
            "regexp_substr takes (text, pattern, …)",
        )
        .into());
    };
    let (values, patterns) = (values.as_string::<i32>(), patterns.as_string::<i32>());
    let flags = flags.as_ref().map(|f| f.as_string::<i32>());
    let ints = |a: &Option<arrow::array::ArrayRef>| {
        a.as_ref()
            .map(|a| a.as_primitive::<arrow::datatypes::Int64Type>().clone())
    };
    let (starts, ns, subexprs) = (ints(&starts), ints(&ns), ints(&subexprs));
    let mut compiled: HashMap<(&str, &str), (Regex, bool)> = HashMap::new();
    let mut out = StringBuilder::new();
    for row in 0..values.len() {
        let null = |a: Option<&dyn Array>| a.is_some_and(|a| a.is_null(row));
        if values.is_null(row)
            || patterns.is_null(row)
            || null(flags.map(|f| f as &dyn Array))
            || [&starts, &ns, &subexprs]
                .iter()
                .any(|a| null(a.as_ref().map(|a| a as &dyn Array)))
        {
            out.append_null();
            continue;
        }
        let value_of = |a: &Option<arrow::array::Int64Array>, default: i64| {
            a.as_ref().map_or(default, |a| a.value(row))
        };
        let (start, n, subexpr) = (
            value_of(&starts, 1),
            value_of(&ns, 1),
            value_of(&subexprs, 0),
        );
        for (name, value, least) in [("start", start, 1), ("n", n, 1), ("subexpr", subexpr, 0)] {
            if value < least {
                return Err(SqlError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("invalid value for parameter \"{name}\": {value}"),
                )
                .into());
            }
        }
        let key = (patterns.value(row), flags.map_or("", |f| f.value(row)));
        let (regex, _) = match compiled.get(&key) {
            Some(found) => found,
            None => {
                let made = compile(key.0, key.1, Each::Substr)?;
                compiled.entry(key).or_insert(made)
            }
        };
        let text = values.value(row);
        let from = text
            .char_indices()
            .nth((start - 1) as usize)
            .map_or(text.len(), |(at, _)| at);
        let found = regex
            .captures_iter(&text[from..])
            .nth((n - 1) as usize)
            .and_then(|c| c.get(subexpr as usize).map(|m| m.as_str().to_string()));
        out.append_option(found);
    }
    shaped(args, Arc::new(out.finish()))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Each {
    Split,
    Matches,
    /// `regexp_substr`, which takes no `g` either.
    Substr,
}

fn udf(name: &'static str, returns: DataType, each: Each) -> ScalarUDF {
    let signature = Signature::one_of(
        vec![
            datafusion::logical_expr::TypeSignature::String(2),
            datafusion::logical_expr::TypeSignature::String(3),
        ],
        Volatility::Immutable,
    );
    ScalarUDF::from(
        datafusion::logical_expr::SimpleScalarUDF::new_with_signature(
            name,
            signature,
            returns,
            Arc::new(move |args: &[ColumnarValue]| run(args, each)),
        ),
    )
}

fn run(args: &[ColumnarValue], each: Each) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let texts: Vec<_> = arrays
        .iter()
        .map(|a| cast(a, &DataType::Utf8))
        .collect::<std::result::Result<_, _>>()?;
    let column = |i: usize| texts.get(i).map(|a| a.as_string::<i32>());
    let (Some(values), Some(patterns)) = (column(0), column(1)) else {
        return Err(SqlError::new(
            SqlState::UNDEFINED_FUNCTION,
            "takes (text, pattern [, flags])",
        )
        .into());
    };
    let flags = column(2);
    // Patterns are nearly always constants: compile each distinct one once.
    let mut compiled: HashMap<(&str, &str), (Regex, bool)> = HashMap::new();
    let mut splits = ListBuilder::new(StringBuilder::new());
    let mut matches = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
    for row in 0..values.len() {
        let flag = flags.map(|f| (!f.is_null(row)).then(|| f.value(row)));
        if values.is_null(row) || patterns.is_null(row) || flag == Some(None) {
            splits.append_null();
            matches.append_null();
            continue;
        }
        let key = (patterns.value(row), flag.flatten().unwrap_or(""));
        let (regex, global) = match compiled.get(&key) {
            Some(found) => found,
            None => {
                let made = compile(key.0, key.1, each)?;
                compiled.entry(key).or_insert(made)
            }
        };
        let text = values.value(row);
        match each {
            Each::Split => {
                for piece in split(regex, text) {
                    splits.values().append_value(piece);
                }
                splits.append(true);
            }
            Each::Matches | Each::Substr => {
                for found in regex
                    .captures_iter(text)
                    .take(if *global { usize::MAX } else { 1 })
                {
                    let groups = matches.values();
                    if found.len() == 1 {
                        groups.values().append_value(&found[0]);
                    } else {
                        for group in found.iter().skip(1) {
                            groups.values().append_option(group.map(|g| g.as_str()));
                        }
                    }
                    groups.append(true);
                }
                matches.append(true);
            }
        }
    }
    match each {
        Each::Matches => shaped(args, Arc::new(matches.finish())),
        _ => shaped(args, Arc::new(splits.finish())),
    }
}

/// `pattern` with PostgreSQL's `flags`, and whether `g` was given (refused for a split, as
/// PostgreSQL refuses it).
fn compile(pattern: &str, flags: &str, each: Each) -> Result<(Regex, bool)> {
    // `q`: the pattern is a literal string.
    let quoted;
    let pattern = if flags.contains('q') {
        quoted = regex::escape(pattern);
        quoted.as_str()
    } else {
        pattern
    };
    let mut builder = regex::RegexBuilder::new(pattern);
    builder.dot_matches_new_line(true);
    let mut global = false;
    for flag in flags.chars() {
        match flag {
            'g' if each == Each::Matches => global = true,
            'g' => {
                let function = match each {
                    Each::Substr => "regexp_substr()",
                    _ => "regexp_split_to_array()",
                };
                return Err(SqlError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("{function} does not support the \"global\" option"),
                )
                .into());
            }
            'i' => {
                builder.case_insensitive(true);
            }
            'c' => {
                builder.case_insensitive(false);
            }
            'n' | 'm' => {
                builder.dot_matches_new_line(false).multi_line(true);
            }
            's' => {
                builder.dot_matches_new_line(true).multi_line(false);
            }
            // Partial newline-sensitive: `.` stops at newlines, `^` / `$` do not.
            'p' => {
                builder.dot_matches_new_line(false).multi_line(false);
            }
            // Inverse partial: `^` / `$` at newlines, `.` across them.
            'w' => {
                builder.dot_matches_new_line(true).multi_line(true);
            }
            // `t` (tight syntax) is the only syntax; `q` was applied above.
            't' | 'q' => {}
            'x' => {
                builder.ignore_whitespace(true);
            }
            other => {
                return Err(SqlError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("invalid regular expression option: \"{other}\""),
                )
                .into());
            }
        }
    }
    let regex = builder.build().map_err(|e| {
        SqlError::new(
            SqlState::INVALID_REGULAR_EXPRESSION,
            format!("invalid regular expression: {e}"),
        )
    })?;
    Ok((regex, global))
}

/// `text` split at each match of `regex`, as PostgreSQL splits: an empty match at the start
/// or end of the text, or right after the previous match, splits nothing.
fn split<'t>(regex: &Regex, text: &'t str) -> Vec<&'t str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for found in regex.find_iter(text) {
        let empty = found.start() == found.end();
        if empty && (found.start() == 0 || found.start() == text.len() || found.start() == start) {
            continue;
        }
        pieces.push(&text[start..found.start()]);
        start = found.end();
    }
    pieces.push(&text[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str, pattern: &str) -> Vec<String> {
        let (regex, _) = compile(pattern, "", Each::Split).expect("pattern");
        split(&regex, text).into_iter().map(String::from).collect()
    }

    // PostgreSQL 15's answers.
    #[test]
    fn splits_as_postgresql_does() {
        assert_eq!(pieces("a1b2c", "[0-9]"), ["a", "b", "c"]);
        assert_eq!(pieces("hello", ""), ["h", "e", "l", "l", "o"]);
        assert_eq!(
            pieces("the quick  fox", "\\s*"),
            ["t", "h", "e", "q", "u", "i", "c", "k", "f", "o", "x"]
        );
        assert_eq!(pieces("1a1", "1"), ["", "a", ""]);
        assert_eq!(pieces("", "x"), [""]);
    }

    #[test]
    fn flags_are_postgresqls() {
        assert!(compile("a", "g", Each::Split).is_err());
        assert!(compile("a", "z", Each::Matches).is_err());
        let (regex, global) = compile("A.B", "gi", Each::Matches).expect("pattern");
        assert!(global && regex.is_match("a\nb"));
        let (regex, _) = compile("a.b", "n", Each::Matches).expect("pattern");
        assert!(!regex.is_match("a\nb"));
        // p: `.` stops at a newline, `^` does not match after one; w: the reverse.
        let (regex, _) = compile("a.b", "p", Each::Matches).expect("pattern");
        assert!(!regex.is_match("a\nb"));
        let (regex, _) = compile("^b", "p", Each::Matches).expect("pattern");
        assert!(!regex.is_match("a\nb"));
        let (regex, _) = compile("^b", "w", Each::Matches).expect("pattern");
        assert!(regex.is_match("a\nb"));
        let (regex, _) = compile("a.b", "w", Each::Matches).expect("pattern");
        assert!(regex.is_match("a\nb"));
        // q: the pattern is literal text.
        let (regex, _) = compile("a.b*", "q", Each::Matches).expect("pattern");
        assert!(regex.is_match("xa.b*") && !regex.is_match("axbb"));
    }
}
