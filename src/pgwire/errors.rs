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

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
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
