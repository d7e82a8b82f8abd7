//! SQLSTATEs: the typed codes every error of TimeFusion is answered with, in one place.
//!
//! Errors carry a [`SqlState`], never a code to be found in their message: engine errors
//! know theirs (`sqlstate()` on each module's error), errors raised inside DataFusion travel as
//! [`SqlError`] (a state and a message), and library errors are classified by their variant in
//! `sql::error`. The front ends send the code as it is (pgwire) or map its class to a gRPC
//! status (`flight::grpc_code`). The codes and names are PostgreSQL's (Appendix A of its
//! manual), so clients that switch on them behave as they would against PostgreSQL.

use std::fmt;

/// A PostgreSQL error code: five characters, the first two its class.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(&'static str);

impl SqlState {
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    pub const CARDINALITY_VIOLATION: SqlState = SqlState("21000");
    pub const DATA_EXCEPTION: SqlState = SqlState("22000");
    pub const STRING_DATA_RIGHT_TRUNCATION: SqlState = SqlState("22001");
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = SqlState("22003");
    pub const INVALID_DATETIME_FORMAT: SqlState = SqlState("22007");
    pub const DATETIME_FIELD_OVERFLOW: SqlState = SqlState("22008");
    pub const SUBSTRING_ERROR: SqlState = SqlState("22011");
    pub const INVALID_ARGUMENT_FOR_NTILE_FUNCTION: SqlState = SqlState("22014");
    pub const DIVISION_BY_ZERO: SqlState = SqlState("22012");
    pub const INVALID_ARGUMENT_FOR_POWER_FUNCTION: SqlState = SqlState("2201F");
    pub const INVALID_ARGUMENT_FOR_WIDTH_BUCKET_FUNCTION: SqlState = SqlState("2201G");
    pub const INVALID_REGULAR_EXPRESSION: SqlState = SqlState("2201B");
    pub const UNTRANSLATABLE_CHARACTER: SqlState = SqlState("22021");
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState("22004");
    pub const ARRAY_SUBSCRIPT_ERROR: SqlState = SqlState("2202E");
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState("22P02");
    pub const INVALID_BINARY_REPRESENTATION: SqlState = SqlState("22P03");
    pub const BAD_COPY_FILE_FORMAT: SqlState = SqlState("22P04");
    pub const NOT_NULL_VIOLATION: SqlState = SqlState("23502");
    pub const CHECK_VIOLATION: SqlState = SqlState("23514");
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    pub const UNDEFINED_DATABASE: SqlState = SqlState("3D000");
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = SqlState("25P02");
    pub const SERIALIZATION_FAILURE: SqlState = SqlState("40001");
    pub const INVALID_AUTHORIZATION_SPECIFICATION: SqlState = SqlState("28000");
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    pub const SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION: SqlState = SqlState("42000");
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    pub const UNDEFINED_COLUMN: SqlState = SqlState("42703");
    pub const AMBIGUOUS_COLUMN: SqlState = SqlState("42702");
    pub const DUPLICATE_COLUMN: SqlState = SqlState("42701");
    pub const UNDEFINED_FUNCTION: SqlState = SqlState("42883");
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    pub const DATATYPE_MISMATCH: SqlState = SqlState("42804");
    pub const INSUFFICIENT_RESOURCES: SqlState = SqlState("53000");
    pub const OUT_OF_MEMORY: SqlState = SqlState("53200");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    pub const STATEMENT_TOO_COMPLEX: SqlState = SqlState("54001");
    pub const TOO_MANY_COLUMNS: SqlState = SqlState("54011");
    pub const CANT_CHANGE_RUNTIME_PARAM: SqlState = SqlState("55P02");
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    pub const ADMIN_SHUTDOWN: SqlState = SqlState("57P01");
    pub const IDLE_SESSION_TIMEOUT: SqlState = SqlState("57P05");
    pub const IO_ERROR: SqlState = SqlState("58030");
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");

    /// The five-character code, as sent on the wire.
    pub fn code(self) -> &'static str {
        self.0
    }

    /// The class: the first two characters (`"23"` for integrity constraint violations).
    pub fn class(self) -> &'static str {
        &self.0[..2]
    }
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.0)
    }
}

/// An error that already knows its SQLSTATE, for code that raises a user error inside
/// DataFusion (a function, a rewrite, a table provider): wrap it in
/// `DataFusionError::External` and the classifier answers with `state` and `message`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    pub state: SqlState,
    pub message: String,
}

impl SqlError {
    pub fn new(state: SqlState, message: impl Into<String>) -> SqlError {
        SqlError {
            state,
            message: message.into(),
        }
    }
}

impl From<SqlError> for datafusion::error::DataFusionError {
    fn from(error: SqlError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_five_characters_and_classes_two() {
        assert_eq!(SqlState::NOT_NULL_VIOLATION.code(), "23502");
        assert_eq!(SqlState::NOT_NULL_VIOLATION.class(), "23");
        assert_eq!(SqlState::INTERNAL_ERROR.to_string(), "XX000");
    }

    #[test]
    fn a_sql_error_survives_datafusion_wrapping() {
        let wrapped: datafusion::error::DataFusionError =
            SqlError::new(SqlState::UNDEFINED_FUNCTION, "no such function").into();
        let datafusion::error::DataFusionError::External(inner) = &wrapped else {
            panic!("wrapped as External: {wrapped:?}");
        };
        let inner = inner.downcast_ref::<SqlError>().expect("a SqlError");
        assert_eq!(inner.state, SqlState::UNDEFINED_FUNCTION);
    }
}
