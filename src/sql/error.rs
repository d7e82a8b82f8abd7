//! Classification of the errors a statement can raise into PostgreSQL SQLSTATEs.
//!
//! Errors that know their SQLSTATE keep it through any wrapping: the engine's write-path
//! errors ([`ingest::Error`], [`core::Error`]) and [`SqlError`]s raised inside DataFusion by
//! TimeFusion's own functions and rewrites. Library errors are classified by their type or
//! variant: a `regex_syntax::Error` (a constant pattern DataFusion's optimizer parses) is
//! 2201B, sqlparser's errors are syntax errors, DataFusion's `SQL` / `NotImplemented` /
//! `ResourcesExhausted` / `SchemaError` variants and Arrow's arithmetic errors have their
//! classes. Anything unrecognised is XX000, an internal error worth a bug report.
//!
//! Some DataFusion and Arrow errors carry their meaning only in their text, so their text is
//! matched against the exact form upstream writes (remove each match when upstream gives the
//! error a variant):
//! - DataFusion 55's `SessionContextProvider::get_table_source` raises
//!   `Plan("table '<catalog>.<schema>.<name>' not found")`: 42P01, reworded as PostgreSQL's
//!   `relation "<name>" does not exist`;
//! - its `SqlToRel` raises `Plan("Invalid function '<name>'…")` for an unknown function: 42883;
//! - Arrow 59's cast kernels raise `CastError` / `ParseError` naming the target type; a failed
//!   parse of a date or time (`Timestamp`, `Date32`, `Time64`…) is 22007, of anything else 22P02;
//! - Arrow 59's `RecordBatch` validation raises `InvalidArgumentError("Column '…' is declared as
//!   non-nullable but contains null values")` when DataFusion plans `VALUES` with a NULL for a
//!   required column against the table's schema: 23502;
//! - invalid function arguments raise `Execution` (DataFusion) or `ComputeError` (Arrow, or a
//!   DataFusion error's text inside one) with the texts in [`TEXT_CLASSES`], each with the
//!   class PostgreSQL answers the same mistake with (a pattern that does not compile, an unknown
//!   unit, a date field or timestamp out of range, a negative substring length, a square root
//!   of a negative number…).
//!
//! The Postgres front end sends the code as is; the Flight front end maps its class to a gRPC
//! status.

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use crate::engine::{core, ingest};
use crate::error::{SqlError, SqlState};

/// DataFusion's unknown-table message, `table '<name>' not found`, as PostgreSQL words it.
fn missing_table(message: &str) -> Option<(SqlState, String)> {
    let name = message
        .strip_prefix("table '")?
        .strip_suffix("' not found")?;
    // Without the database and the default schema, which the planner added.
    let database = format!("{}.", crate::sql::DATABASE);
    let name = name.strip_prefix(&database).unwrap_or(name);
    let name = name.strip_prefix("public.").unwrap_or(name);
    Some((
        SqlState::UNDEFINED_TABLE,
        format!("relation \"{name}\" does not exist"),
    ))
}

/// DataFusion's unknown-function messages (`Invalid function 'f'.\nDid you mean 'g'?`, and
/// `Failed to coerce arguments to satisfy a call to 'f' function: …` when no signature takes
/// the arguments' types) as PostgreSQL words them; its guess at another name is dropped, as it
/// is rarely the function meant (`justify_hours` → `list_has`).
fn missing_function(message: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("Invalid function '") {
        let name = rest.split('\'').next().unwrap_or(rest);
        return Some(format!("function {name} does not exist"));
    }
    let rest = message.strip_prefix("Failed to coerce arguments to satisfy a call to '")?;
    let name = rest.split('\'').next().unwrap_or(rest);
    Some(format!(
        "function {name} does not exist for these argument types; you might need to add explicit type casts"
    ))
}

/// A parser error's own words, without sqlparser's `sql parser error: ` prefix.
fn parser_message(error: &datafusion::sql::sqlparser::parser::ParserError) -> String {
    use datafusion::sql::sqlparser::parser::ParserError as P;
    match error {
        P::TokenizerError(s) | P::ParserError(s) => format!("syntax error: {s}"),
        P::RecursionLimitExceeded => "syntax error: statement nested too deeply".to_string(),
    }
}

/// The SQLSTATE and PostgreSQL's words for a DataFusion error, when it has a class. The
/// message is the error's own, without DataFusion's `Error during planning: ` /
/// `Execution error: ` prefixes, which PostgreSQL clients would show their users.
fn classify_datafusion(error: &DataFusionError) -> Option<(SqlState, String)> {
    let message = || {
        let own = error.message();
        own.strip_prefix("Execution error: ")
            .unwrap_or(&own)
            .to_string()
    };
    match error {
        DataFusionError::SchemaError(schema, _) => Some(match schema.as_ref() {
            SchemaError::FieldNotFound { field, .. } => (
                SqlState::UNDEFINED_COLUMN,
                match &field.relation {
                    Some(relation) => format!("column {relation}.{} does not exist", field.name),
                    None => format!("column \"{}\" does not exist", field.name),
                },
            ),
            SchemaError::AmbiguousReference { .. } => (SqlState::AMBIGUOUS_COLUMN, message()),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => {
                (SqlState::DUPLICATE_COLUMN, message())
            }
        }),
        DataFusionError::Plan(m) => Some(missing_table(m).unwrap_or_else(
            || match missing_function(m) {
                Some(words) => (SqlState::UNDEFINED_FUNCTION, words),
                None => (SqlState::SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION, message()),
            },
        )),
        DataFusionError::Execution(m) => by_text(m).map(|state| (state, message())),
        DataFusionError::SQL(parser, _) => Some((SqlState::SYNTAX_ERROR, parser_message(parser))),
        DataFusionError::NotImplemented(_) => Some((SqlState::FEATURE_NOT_SUPPORTED, message())),
        DataFusionError::ResourcesExhausted(_) => Some((SqlState::OUT_OF_MEMORY, message())),
        _ => None,
    }
}

/// Errors of invalid arguments that DataFusion 55 and Arrow 59 raise with their meaning only in
/// their text: how the text starts, a part it holds after that, and PostgreSQL's class for the
/// same mistake.
const TEXT_CLASSES: &[(&str, &str, SqlState)] = &[
    // arrow-string, datafusion-functions: a pattern that does not compile.
    (
        "Regular expression did not compile: ",
        "",
        SqlState::INVALID_REGULAR_EXPRESSION,
    ),
    // date_trunc, date_part / extract, date_bin, generate_series / range, split_part,
    // decode, chr, arrow_cast: an unknown unit or name, a zero step or position, bad digits.
    (
        "Unsupported date_trunc granularity: ",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "Date part '",
        "' not supported",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "DATE_BIN stride must be non-zero",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "step can't be 0 for function ",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "field position must not be zero",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "Failed to decode value using ",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "invalid Unicode scalar value: ",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    ("Unsupported type '", "", SqlState::INVALID_PARAMETER_VALUE),
    // to_timestamp with a format the text does not match.
    (
        "Error parsing timestamp from '",
        "' using format '",
        SqlState::INVALID_DATETIME_FORMAT,
    ),
    // make_date, make_time: a field out of range; Arrow's timestamp arithmetic: a result.
    (
        "Month value '",
        "' is out of range",
        SqlState::DATETIME_FIELD_OVERFLOW,
    ),
    (
        "Day value '",
        "' is out of range",
        SqlState::DATETIME_FIELD_OVERFLOW,
    ),
    (
        "Hour value '",
        "' is out of range",
        SqlState::DATETIME_FIELD_OVERFLOW,
    ),
    (
        "Minute value '",
        "' is out of range",
        SqlState::DATETIME_FIELD_OVERFLOW,
    ),
    (
        "Second value '",
        "' is out of range",
        SqlState::DATETIME_FIELD_OVERFLOW,
    ),
    (
        "Timestamp out of range",
        "",
        SqlState::DATETIME_FIELD_OVERFLOW,
    ),
    // Integer results that overflow: factorial, gcd, abs; an array index past i64.
    (
        "Overflow happened on ",
        "",
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
    ),
    (
        "Signed integer overflow in ",
        "",
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
    ),
    (
        "",
        "Array overflow on abs(",
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
    ),
    (
        "array_element got invalid index: ",
        "",
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
    ),
    // json_array_length of an object or a scalar; JSON functions given text that is not JSON.
    (
        "cannot get array length of a ",
        "",
        SqlState::INVALID_PARAMETER_VALUE,
    ),
    (
        "invalid input syntax for type json",
        "",
        SqlState::INVALID_TEXT_REPRESENTATION,
    ),
    // A scalar subquery (uncorrelated, run once) with more than one row.
    (
        "Scalar subquery returned more than one row",
        "",
        SqlState::CARDINALITY_VIOLATION,
    ),
    // substr and overlay with a negative length or start.
    (
        "negative count not allowed: ",
        "",
        SqlState::SUBSTRING_ERROR,
    ),
    (
        "overlay start position must be at least 1",
        "",
        SqlState::SUBSTRING_ERROR,
    ),
    // lpad, repeat: a result longer than a string can be.
    (
        "lpad requested length ",
        " too large",
        SqlState::PROGRAM_LIMIT_EXCEEDED,
    ),
    (
        "rpad requested length ",
        " too large",
        SqlState::PROGRAM_LIMIT_EXCEEDED,
    ),
    (
        "string size overflow on repeat",
        "",
        SqlState::PROGRAM_LIMIT_EXCEEDED,
    ),
    // ntile.
    (
        "NTILE requires a positive integer",
        "",
        SqlState::INVALID_ARGUMENT_FOR_NTILE_FUNCTION,
    ),
    // sqrt, power.
    (
        "cannot take square root of a negative number",
        "",
        SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
    ),
    (
        "zero raised to a negative power is undefined",
        "",
        SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
    ),
];

/// The class of an invalid-argument error known by its text ([`TEXT_CLASSES`]); a DataFusion
/// error's text inside an Arrow error starts with `Execution error: `.
fn by_text(message: &str) -> Option<SqlState> {
    let message = message.strip_prefix("Execution error: ").unwrap_or(message);
    TEXT_CLASSES
        .iter()
        .find(|(start, within, _)| {
            message
                .strip_prefix(start)
                .is_some_and(|rest| rest.contains(within))
        })
        .map(|(_, _, state)| *state)
}

/// An Arrow error's own words, without Arrow's `Compute error: ` / `Cast error: ` prefixes (or
/// the `Execution error: ` of a DataFusion error inside one); division by zero in PostgreSQL's.
fn arrow_message(error: &arrow::error::ArrowError) -> String {
    use arrow::error::ArrowError as A;
    let own = match error {
        A::DivideByZero => return "division by zero".to_string(),
        A::ComputeError(m)
        | A::CastError(m)
        | A::ParseError(m)
        | A::ArithmeticOverflow(m)
        | A::InvalidArgumentError(m) => m,
        other => return other.to_string(),
    };
    own.strip_prefix("Execution error: ")
        .unwrap_or(own)
        .to_string()
}

/// The SQLSTATE of an Arrow compute error, when it has a class.
fn classify_arrow(error: &arrow::error::ArrowError) -> Option<SqlState> {
    use arrow::error::ArrowError as A;
    match error {
        A::DivideByZero => Some(SqlState::DIVISION_BY_ZERO),
        A::InvalidArgumentError(m)
            if m.ends_with("is declared as non-nullable but contains null values") =>
        {
            Some(SqlState::NOT_NULL_VIOLATION)
        }
        A::ComputeError(m) => by_text(m),
        A::ArithmeticOverflow(_) => Some(SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
        A::CastError(m) | A::ParseError(m) => {
            let m = m.to_lowercase();
            Some(
                if m.contains("timestamp") || m.contains("date") || m.contains("time") {
                    SqlState::INVALID_DATETIME_FORMAT
                } else {
                    SqlState::INVALID_TEXT_REPRESENTATION
                },
            )
        }
        _ => None,
    }
}

/// The SQLSTATE and message for an error raised while parsing, planning or running a
/// statement, looking through every layer of wrapping. User mistakes get their specific
/// class; anything unrecognised is XX000.
pub fn sqlstate_of(error: &(dyn std::error::Error + 'static)) -> (SqlState, String) {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut fallback: Option<(SqlState, String)> = None;
    while let Some(e) = current {
        if let Some(coded) = e.downcast_ref::<SqlError>() {
            return (coded.state, coded.message.clone());
        }
        if let Some(ingest) = e.downcast_ref::<ingest::Error>() {
            return (ingest.sqlstate(), ingest.to_string());
        }
        if let Some(core) = e.downcast_ref::<core::Error>() {
            return (core.sqlstate(), core.to_string());
        }
        if let Some(parser) = e.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>() {
            return (SqlState::SYNTAX_ERROR, parser_message(parser));
        }
        if e.downcast_ref::<regex_syntax::Error>().is_some()
            || e.downcast_ref::<regex::Error>().is_some()
        {
            return (
                SqlState::INVALID_REGULAR_EXPRESSION,
                format!("invalid regular expression: {e}"),
            );
        }
        if let Some(df) = e.downcast_ref::<DataFusionError>() {
            if let Some(found) = classify_datafusion(df) {
                return found;
            }
            fallback.get_or_insert((SqlState::INTERNAL_ERROR, df.to_string()));
        }
        if let Some(arrow) = e.downcast_ref::<arrow::error::ArrowError>()
            && let Some(code) = classify_arrow(arrow)
        {
            return (code, arrow_message(arrow));
        }
        current = e.source();
    }
    fallback.unwrap_or_else(|| (SqlState::INTERNAL_ERROR, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_errors_keep_their_sqlstate_through_datafusion_wrapping() {
        let ingest = ingest::Error::NotNull {
            table: "t".into(),
            column: "id".into(),
        };
        let wrapped = DataFusionError::Context(
            "insert".into(),
            Box::new(DataFusionError::ArrowError(
                Box::new(arrow::error::ArrowError::ExternalError(Box::new(
                    DataFusionError::External(Box::new(ingest)),
                ))),
                None,
            )),
        );
        let (code, message) = sqlstate_of(&wrapped);
        assert_eq!(code, SqlState::NOT_NULL_VIOLATION);
        assert!(message.contains("\"id\""), "{message}");
    }

    #[test]
    fn planner_errors_map_to_their_classes() {
        let missing = DataFusionError::Plan("table 'postgres.public.nope' not found".into());
        assert_eq!(
            sqlstate_of(&missing),
            (
                SqlState::UNDEFINED_TABLE,
                "relation \"nope\" does not exist".to_string()
            )
        );
        let elsewhere = DataFusionError::Plan("table 'postgres.logs.nope' not found".into());
        assert_eq!(
            sqlstate_of(&elsewhere).1,
            "relation \"logs.nope\" does not exist"
        );
        let column = DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(datafusion::common::Column::new_unqualified("nope")),
                valid_fields: vec![],
            }),
            Box::new(None),
        );
        assert_eq!(
            sqlstate_of(&column),
            (
                SqlState::UNDEFINED_COLUMN,
                "column \"nope\" does not exist".to_string()
            )
        );
        let cast = DataFusionError::ArrowError(
            Box::new(arrow::error::ArrowError::CastError(
                "Cannot cast string 'x' to value of Int64 type".into(),
            )),
            None,
        );
        assert_eq!(sqlstate_of(&cast).0, SqlState::INVALID_TEXT_REPRESENTATION);
        let internal = DataFusionError::Internal("bug".into());
        assert_eq!(sqlstate_of(&internal).0, SqlState::INTERNAL_ERROR);
    }

    #[test]
    fn messages_are_the_errors_own_words_without_library_prefixes() {
        let unknown = DataFusionError::Plan(
            "Invalid function 'justify_it'.\nDid you mean 'list_has'?".into(),
        );
        assert_eq!(
            sqlstate_of(&unknown),
            (
                SqlState::UNDEFINED_FUNCTION,
                "function justify_it does not exist".to_string()
            )
        );
        let execution = DataFusionError::Execution("cannot get array length of a scalar".into());
        assert_eq!(
            sqlstate_of(&execution).1,
            "cannot get array length of a scalar"
        );
        let zero =
            DataFusionError::ArrowError(Box::new(arrow::error::ArrowError::DivideByZero), None);
        assert_eq!(
            sqlstate_of(&zero),
            (SqlState::DIVISION_BY_ZERO, "division by zero".to_string())
        );
        let parser = DataFusionError::SQL(
            Box::new(
                datafusion::sql::sqlparser::parser::ParserError::ParserError(
                    "Expected: end of statement, found: ?".into(),
                ),
            ),
            None,
        );
        assert_eq!(
            sqlstate_of(&parser),
            (
                SqlState::SYNTAX_ERROR,
                "syntax error: Expected: end of statement, found: ?".to_string()
            )
        );
    }
}
