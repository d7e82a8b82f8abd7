//! The Postgres front end: datafusion-postgres' session service behind TimeFusion's own
//! accept loop, authentication and error mapping.
//!
//! Clients authenticate with MD5 password authentication against `PGWIRE_USER` /
//! `PGWIRE_PASSWORD`. Queries and `INSERT`s run through DataFusion (simple and extended
//! protocol); `INSERT` reaches the ingest path through the table provider's data sink.
//! `INSERT … VALUES` of plain literals skips DataFusion planning ([`crate::values`]) and goes
//! straight to the ingest path. Every error is mapped to a SQLSTATE in exactly one place,
//! [`sqlstate_of`], through the pgwire error handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::{AuthSource, DefaultServerParameterProvider, LoginInfo, Password};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::results::{Response, Tag};
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::ingest::{self, Ingest};
use crate::schema::Catalog;
use crate::values;

/// The version string clients see in `server_version`.
pub const SERVER_VERSION: &str = "15.0 (TimeFusion)";

/// The one configured user and its password.
#[derive(Debug)]
struct PasswordAuth {
    user: String,
    password: String,
}

#[async_trait]
impl AuthSource for PasswordAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let salt = uuid::Uuid::new_v4().as_bytes()[..4].to_vec();
        let user = login.user().unwrap_or_default();
        // An unknown user gets a hash no password matches, so the answer does not reveal
        // whether the user exists.
        let secret = if user == self.user {
            self.password.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let hash = hash_md5_password(user, &secret, &salt);
        Ok(Password::new(Some(salt), hash.into_bytes()))
    }
}

/// The handlers pgwire calls for each connection.
pub struct Handlers {
    session: Arc<DfSessionService>,
    auth: Arc<PasswordAuth>,
    parameters: Arc<DefaultServerParameterProvider>,
    connections: Arc<ConnectionManager>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub fn new(
        context: Arc<SessionContext>,
        catalog: Arc<Catalog>,
        ingest: Arc<Ingest>,
        user: String,
        password: String,
    ) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_string();
        let connections = Arc::new(ConnectionManager::new());
        Handlers {
            session: Arc::new(DfSessionService::new_with_hooks(
                context,
                vec![
                    Arc::new(LiteralInsertHook { catalog, ingest }),
                    Arc::new(CursorStatementHook),
                    Arc::new(SetShowHook),
                    Arc::new(TransactionStatementHook),
                ],
            )),
            auth: Arc::new(PasswordAuth { user, password }),
            parameters: Arc::new(parameters),
            cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
            connections,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        // A fresh handler per connection: the MD5 handler keeps the expected hash between the
        // challenge and the answer, which must not be shared between connections.
        Arc::new(
            Md5PasswordAuthStartupHandler::new(self.auth.clone(), self.parameters.clone())
                .with_connection_manager(self.connections.clone()),
        )
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

/// Runs literal `INSERT … VALUES` statements without DataFusion planning, in both protocols.
struct LiteralInsertHook {
    catalog: Arc<Catalog>,
    ingest: Arc<Ingest>,
}

impl LiteralInsertHook {
    async fn run(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        let insert = values::literal_insert(statement, &self.catalog)?;
        Some(
            match self.ingest.write(&insert.table.name, insert.batch).await {
                Ok(rows) => Ok(Response::Execution(
                    Tag::new("INSERT").with_oid(0).with_rows(rows),
                )),
                Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            },
        )
    }
}

#[async_trait]
impl QueryHook for LiteralInsertHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // A literal INSERT has no parameters and no result columns: an empty plan stands in
        // for it until execution, which the hook below handles.
        values::is_literal_insert(statement, &self.catalog).then(|| {
            Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            }))
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement).await
    }
}

/// Rewrites internal errors into Postgres errors with the right SQLSTATE.
struct SqlStateErrors;

impl ErrorHandler for SqlStateErrors {
    fn on_error<C: ClientInfo>(&self, _client: &C, error: &mut PgWireError) {
        if let PgWireError::ApiError(inner) = error {
            let (code, message) = sqlstate_of(inner.as_ref());
            if code == "XX000" {
                tracing::warn!("internal error sent to client: {message}");
            }
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                code.into(),
                message,
            )));
        }
    }
}

/// The SQLSTATE and message for an error raised while parsing, planning or running a
/// statement. User mistakes get their specific class; anything unrecognised is XX000.
pub fn sqlstate_of(error: &(dyn std::error::Error + 'static)) -> (&'static str, String) {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut fallback: Option<(&'static str, String)> = None;
    while let Some(e) = current {
        if let Some(ingest) = e.downcast_ref::<ingest::Error>() {
            return (ingest.sqlstate(), ingest.to_string());
        }
        if e.downcast_ref::<datafusion::sql::sqlparser::parser::ParserError>()
            .is_some()
        {
            return ("42601", e.to_string());
        }
        if let Some(df) = e.downcast_ref::<DataFusionError>() {
            let message = df.to_string();
            let code = match df {
                DataFusionError::SQL(..) => Some("42601"),
                DataFusionError::NotImplemented(_) => Some("0A000"),
                DataFusionError::ResourcesExhausted(_) => Some("53200"),
                DataFusionError::SchemaError(..) if message.contains("No field named") => {
                    Some("42703")
                }
                DataFusionError::Plan(m) if m.contains("not found") && m.contains("table") => {
                    Some("42P01")
                }
                DataFusionError::Plan(m) if m.contains("Invalid function") => Some("42883"),
                DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => Some("42000"),
                _ => None,
            };
            if let Some(code) = code {
                return (code, message);
            }
            fallback.get_or_insert(("XX000", message));
        }
        if let Some(arrow) = e.downcast_ref::<arrow::error::ArrowError>() {
            use arrow::error::ArrowError as A;
            let message = arrow.to_string();
            let lower = message.to_lowercase();
            let code = match arrow {
                A::DivideByZero => Some("22012"),
                A::ArithmeticOverflow(_) => Some("22003"),
                A::CastError(_) | A::ParseError(_)
                    if lower.contains("timestamp")
                        || lower.contains("date")
                        || lower.contains("time") =>
                {
                    Some("22007")
                }
                A::CastError(_) | A::ParseError(_) => Some("22P02"),
                _ => None,
            };
            if let Some(code) = code {
                return (code, message);
            }
        }
        current = e.source();
    }
    fallback.unwrap_or_else(|| ("XX000", error.to_string()))
}

/// Accepts Postgres connections until `shutdown` fires; at most `max_connections` at once.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let limiter = Arc::new(Semaphore::new(max_connections));
    let open: Arc<parking_lot::Mutex<HashMap<SocketAddr, ()>>> = Default::default();
    loop {
        let (socket, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
        };
        let Ok(permit) = limiter.clone().try_acquire_owned() else {
            tracing::warn!(%addr, max_connections, "connection refused: TIMEFUSION_MAX_CONNECTIONS reached");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let handlers = handlers.clone();
        let open = open.clone();
        open.lock().insert(addr, ());
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%addr, "connection ended with error: {e}");
            }
            open.lock().remove(&addr);
            drop(permit);
        });
    }
    tracing::info!(
        open = open.lock().len(),
        "stopped accepting Postgres connections"
    );
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
        assert_eq!(code, "23502");
        assert!(message.contains("\"id\""), "{message}");
    }

    #[test]
    fn planner_errors_map_to_their_classes() {
        let missing = DataFusionError::Plan("table 'datafusion.public.nope' not found".into());
        assert_eq!(sqlstate_of(&missing).0, "42P01");
        let cast = DataFusionError::ArrowError(
            Box::new(arrow::error::ArrowError::CastError(
                "Cannot cast string 'x' to value of Int64 type".into(),
            )),
            None,
        );
        assert_eq!(sqlstate_of(&cast).0, "22P02");
        let internal = DataFusionError::Internal("bug".into());
        assert_eq!(sqlstate_of(&internal).0, "XX000");
    }
}
