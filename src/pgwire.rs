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
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::{ClientInfo, ConnectionManager, ErrorHandler, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Maintenance;
use crate::copy::CopyIn;
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
    copy: Arc<CopyRows>,
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
                    Arc::new(CopyHook {
                        catalog: catalog.clone(),
                    }),
                    Arc::new(LiteralInsertHook {
                        catalog,
                        ingest: ingest.clone(),
                    }),
                    Arc::new(CursorStatementHook),
                    Arc::new(SetShowHook),
                    Arc::new(TransactionStatementHook),
                ],
            )),
            auth: Arc::new(PasswordAuth { user, password }),
            parameters: Arc::new(parameters),
            cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
            connections,
            copy: Arc::new(CopyRows { ingest }),
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

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.copy.clone()
    }
}

/// The `COPY … FROM STDIN` running on a connection, kept in its session extensions between
/// the statement and the client's `CopyData` / `CopyDone` messages.
#[derive(Default)]
struct CopySlot(parking_lot::Mutex<Option<ActiveCopy>>);

struct ActiveCopy {
    copy: CopyIn,
    rows: usize,
    /// The first error: later data is ignored and `CopyDone` reports it, as PostgreSQL does.
    error: Option<PgWireError>,
}

/// Starts `COPY … FROM STDIN` (text and CSV) in both protocols.
struct CopyHook {
    catalog: Arc<Catalog>,
}

impl CopyHook {
    fn start(
        &self,
        statement: &Statement,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<Response>> {
        Some(match CopyIn::from_statement(statement, &self.catalog)? {
            Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            Ok(copy) => {
                let columns = copy.column_count();
                *client
                    .session_extensions()
                    .get_or_insert_with(CopySlot::default)
                    .0
                    .lock() = Some(ActiveCopy {
                    copy,
                    rows: 0,
                    error: None,
                });
                Ok(Response::CopyIn(CopyResponse::new(
                    0,
                    columns,
                    futures::stream::empty(),
                )))
            }
        })
    }
}

#[async_trait]
impl QueryHook for CopyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.start(statement, client)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // Unknown tables, columns and options are reported at Parse, as PostgreSQL does.
        Some(match CopyIn::from_statement(statement, &self.catalog)? {
            Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            Ok(_) => Ok(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(DFSchema::empty()),
            })),
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.start(statement, client)
    }
}

/// Receives the rows of a `COPY … FROM STDIN` and writes them through the ingest path.
struct CopyRows {
    ingest: Arc<Ingest>,
}

impl CopyRows {
    fn take<C: ClientInfo>(client: &C) -> Option<ActiveCopy> {
        client
            .session_extensions()
            .get::<CopySlot>()?
            .0
            .lock()
            .take()
    }

    fn put_back<C: ClientInfo>(client: &C, active: ActiveCopy) {
        if let Some(slot) = client.session_extensions().get::<CopySlot>() {
            *slot.0.lock() = Some(active);
        }
    }

    /// Writes `batches`; the first failure becomes the copy's error.
    async fn write(&self, active: &mut ActiveCopy, batches: Vec<arrow::array::RecordBatch>) {
        for batch in batches {
            match self.ingest.write(&active.copy.table.name, batch).await {
                Ok(rows) => active.rows += rows,
                Err(e) => {
                    active.error = Some(PgWireError::ApiError(Box::new(e)));
                    return;
                }
            }
        }
    }
}

fn no_copy_in_progress() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "08P01".into(),
        "COPY data received with no COPY FROM STDIN in progress".into(),
    )))
}

#[async_trait]
impl CopyHandler for CopyRows {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let Some(mut active) = Self::take(client) else {
            return Err(no_copy_in_progress());
        };
        if active.error.is_none() {
            match active.copy.push(&data.data) {
                Ok(batches) => self.write(&mut active, batches).await,
                Err(e) => active.error = Some(PgWireError::ApiError(Box::new(e))),
            }
        }
        Self::put_back(client, active);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let Some(mut active) = Self::take(client) else {
            return Err(no_copy_in_progress());
        };
        if active.error.is_none() {
            match active.copy.finish() {
                Ok(batches) => self.write(&mut active, batches).await,
                Err(e) => active.error = Some(PgWireError::ApiError(Box::new(e))),
            }
        }
        if let Some(error) = active.error {
            return Err(error);
        }
        let tag = Tag::new("COPY").with_rows(active.rows);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(
        &self,
        client: &mut C,
        fail: pgwire::messages::copy::CopyFail,
    ) -> PgWireError
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let written = Self::take(client).map_or(0, |a| a.rows);
        let kept = if written > 0 {
            format!(" ({written} rows written before it stay stored)")
        } else {
            String::new()
        };
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}{kept}", fail.message),
        )))
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
