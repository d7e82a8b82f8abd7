//! The Postgres front end: datafusion-postgres' session service behind TimeFusion's own
//! accept loop, authentication and error mapping.
//!
//! Clients authenticate with MD5 password authentication against `PGWIRE_USER` /
//! `PGWIRE_PASSWORD`. Queries and `INSERT`s run through DataFusion (simple and extended
//! protocol); `INSERT` reaches the ingest path through the table provider's data sink.
//! `INSERT … VALUES` of plain literals skips DataFusion planning ([`crate::values`]) and goes
//! straight to the ingest path. Every error is mapped to a SQLSTATE in exactly one place,
//! [`crate::sqlstate::sqlstate_of`], through the pgwire error handler.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::{DFSchema, ParamValues};
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

use crate::Maintenance;
use crate::ingest::Ingest;
use crate::schema::Catalog;
use crate::sqlstate::sqlstate_of;
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
        maintenance: Arc<dyn Maintenance>,
    ) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = SERVER_VERSION.to_string();
        let connections = Arc::new(ConnectionManager::new());
        Handlers {
            session: Arc::new(DfSessionService::new_with_hooks(
                context,
                vec![
                    Arc::new(VacuumHook {
                        catalog: catalog.clone(),
                        maintenance,
                    }),
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

/// `VACUUM [table]`: one maintenance pass now (compaction, retention, checkpoint, vacuum).
struct VacuumHook {
    catalog: Arc<Catalog>,
    maintenance: Arc<dyn Maintenance>,
}

impl VacuumHook {
    fn target(&self, statement: &Statement) -> Option<PgWireResult<Option<String>>> {
        let Statement::Vacuum(vacuum) = statement else {
            return None;
        };
        let Some(name) = &vacuum.table_name else {
            return Some(Ok(None));
        };
        let table = name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .map(|ident| ident.value.clone())
            .unwrap_or_default();
        Some(if self.catalog.get(&table).is_some() {
            Ok(Some(table))
        } else {
            Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "42P01".into(),
                format!("relation \"{name}\" does not exist"),
            ))))
        })
    }

    async fn run(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        let table = match self.target(statement)? {
            Ok(table) => table,
            Err(e) => return Some(Err(e)),
        };
        Some(match self.maintenance.maintain(table.as_deref()).await {
            Ok(_) => Ok(Response::Execution(Tag::new("VACUUM"))),
            Err(message) => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "58000".into(),
                format!("maintenance failed: {message}"),
            )))),
        })
    }
}

#[async_trait]
impl QueryHook for VacuumHook {
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
        matches!(statement, Statement::Vacuum(_)).then(|| {
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

/// Accepts Postgres connections until `shutdown` fires; at most `max_connections` at once.
pub async fn serve(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let limiter = Arc::new(Semaphore::new(max_connections));
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
        tokio::spawn(async move {
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%addr, "connection ended with error: {e}");
            }
            drop(permit);
        });
    }
    tracing::info!(
        open = max_connections - limiter.available_permits(),
        "stopped accepting Postgres connections"
    );
}
