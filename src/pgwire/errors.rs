//! Errors on the wire: every error a statement raises becomes an `ErrorResponse` with the
//! SQLSTATE [`crate::sql::error::sqlstate_of`] (or the COPY parser) gives it.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use pgwire::api::{ClientInfo, ErrorHandler};
use pgwire::error::{ErrorInfo, PgWireError};

use crate::error::SqlState;
use crate::sql::error::sqlstate_of;

/// An `ERROR` with `code` (a SQLSTATE) for the client.
pub(crate) fn user_error(code: SqlState, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.code().into(),
        message.into(),
    )))
}

/// The plan a hook gives Parse for a statement it runs itself at Execute: no parameters and
/// no result columns, so Describe answers `NoData`.
pub(crate) fn no_rows_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    })
}

/// Rewrites internal errors into Postgres errors with the right SQLSTATE.
pub(crate) struct SqlStateErrors;

/// How arrow-pg 0.16 (`datatypes::into_pg_type`) words the XX000 it answers for a result
/// column whose Arrow type has no Postgres type (a union, as `json_get` returns): a feature
/// not supported, 0A000, not an internal error. Remove when arrow-pg gives it a code.
const NO_PG_TYPE: &str = "Unsupported Datatype ";

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::UserError(info) = error
            && info.code == SqlState::INTERNAL_ERROR.code()
            && let Some(arrow_type) = info.message.strip_prefix(NO_PG_TYPE)
        {
            *error = user_error(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "a result column of Arrow type {arrow_type} cannot be sent over the Postgres protocol; cast it (e.g. to text)"
                ),
            );
            return;
        }
        if let PgWireError::ApiError(inner) = error {
            let (code, message) = match inner.downcast_ref::<crate::pgwire::copy::Error>() {
                Some(copy) => (copy.sqlstate(), copy.to_string()),
                None => sqlstate_of(inner.as_ref()),
            };
            if code == SqlState::INTERNAL_ERROR {
                tracing::warn!("internal error sent to client: {message}");
            }
            *error = user_error(code, message);
        }
    }
}
