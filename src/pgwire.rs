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
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, send_describe_response};
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::api::{ClientPortalStore, DEFAULT_NAME};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Describe, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Maintenance;
use crate::colname;
use crate::copy::{CopyIn, CopyOut};
use crate::ingest::Ingest;
use crate::interrupt;
use crate::schema::Catalog;
use crate::sql_text;
use crate::sqlstate::sqlstate_of;
use crate::values;
use crate::wire_text;

/// The version string clients see in `server_version`.
pub const SERVER_VERSION: &str = "15.0 (TimeFusion)";

/// How clients prove they know the password (`PGWIRE_AUTH_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 (PostgreSQL's default since 14): the password never crosses the wire.
    #[value(name = "scram-sha-256")]
    ScramSha256,
    /// MD5 challenge-response, for old clients.
    Md5,
    /// The password in clear text, for clients that support nothing else; use with TLS.
    Password,
}

/// SCRAM iterations of the stored verifier (PostgreSQL's default).
const SCRAM_ITERATIONS: usize = 4096;

/// The one configured user and what its password is checked against.
#[derive(Debug)]
struct PasswordAuth {
    user: String,
    password: String,
    method: AuthMethod,
    /// SCRAM: the salt and salted password, computed once at start-up (as PostgreSQL stores a
    /// verifier), and a decoy for unknown users.
    scram: (Vec<u8>, Vec<u8>),
    decoy: (Vec<u8>, Vec<u8>),
}

impl PasswordAuth {
    fn new(user: String, password: String, method: AuthMethod) -> Self {
        let salted = |secret: &str| {
            let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
            let hash = gen_salted_password(secret, &salt, SCRAM_ITERATIONS);
            (salt, hash)
        };
        let (scram, decoy) = if method == AuthMethod::ScramSha256 {
            (salted(&password), salted(&uuid::Uuid::new_v4().to_string()))
        } else {
            Default::default()
        };
        PasswordAuth {
            user,
            password,
            method,
            scram,
            decoy,
        }
    }
}

#[async_trait]
impl AuthSource for PasswordAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let known = user == self.user;
        // An unknown user gets a secret no password matches, so the answer does not reveal
        // whether the user exists.
        let secret = if known {
            self.password.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        Ok(match self.method {
            AuthMethod::ScramSha256 => {
                let (salt, hash) = if known { &self.scram } else { &self.decoy };
                Password::new(Some(salt.clone()), hash.clone())
            }
            AuthMethod::Md5 => {
                let salt = uuid::Uuid::new_v4().as_bytes()[..4].to_vec();
                let hash = hash_md5_password(user, &secret, &salt);
                Password::new(Some(salt), hash.into_bytes())
            }
            AuthMethod::Password => Password::new(None, secret.into_bytes()),
        })
    }
}

/// [`PasswordAuth`] shared between connections, for handlers that take their source by value.
#[derive(Debug)]
struct SharedAuth(Arc<PasswordAuth>);

#[async_trait]
impl AuthSource for SharedAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        self.0.get_password(login).await
    }
}

/// The start-up (authentication) handler of one connection, for the configured method; once
/// it has let the client in, the connection is registered for cancel requests.
struct Startup {
    method: StartupMethod,
    interrupts: Arc<interrupt::Registry>,
}

enum StartupMethod {
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Md5(Md5PasswordAuthStartupHandler<PasswordAuth, DefaultServerParameterProvider>),
    Password(CleartextPasswordAuthStartupHandler<SharedAuth, DefaultServerParameterProvider>),
    /// No password (PostgreSQL's `trust`), only with `PGWIRE_INSECURE_NO_PASSWORD`.
    Trust(Trust),
}

/// Lets the configured user in without a password.
struct Trust {
    user: String,
    parameters: Arc<DefaultServerParameterProvider>,
    pids: Arc<RandomPidSecretKeyGenerator>,
}

impl Trust {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::auth::{
            finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
        };
        let pgwire::messages::PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let user = LoginInfo::from_client_info(client)
            .user()
            .unwrap_or_default()
            .to_string();
        if user != self.user {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "28000".into(),
                format!("role \"{user}\" does not exist"),
            ))));
        }
        let (pid, secret) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret);
        finish_authentication(client, self.parameters.as_ref()).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.method {
            StartupMethod::Scram(h) => h.on_startup(client, message).await?,
            StartupMethod::Md5(h) => h.on_startup(client, message).await?,
            StartupMethod::Password(h) => h.on_startup(client, message).await?,
            StartupMethod::Trust(h) => h.on_startup(client, message).await?,
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.interrupts.register(client);
        }
        Ok(())
    }
}

/// TLS for the Postgres port from a PEM certificate chain and private key. Any failure is an
/// error: the server never falls back to plaintext when TLS was asked for.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<Tls, String> {
    use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read TIMEFUSION_TLS_CERT {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TIMEFUSION_TLS_CERT {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TIMEFUSION_TLS_CERT {} holds no PEM certificate",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("TIMEFUSION_TLS_KEY {}: {e}", key.display()))?;
    // The ring provider explicitly: several crypto providers are linked in, so rustls cannot
    // pick a process default by itself.
    let provider = Arc::new(pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("TLS certificate and key do not work together: {e}"))?;
    Ok(Tls {
        acceptor: pgwire::tokio::TlsAcceptor::from(Arc::new(config)),
        cert_pem: pem,
    })
}

/// The TLS set-up of the Postgres port.
#[derive(Clone)]
pub struct Tls {
    acceptor: pgwire::tokio::TlsAcceptor,
    /// For SCRAM channel binding (`SCRAM-SHA-256-PLUS`).
    cert_pem: Vec<u8>,
}

/// The handlers pgwire calls for each connection.
pub struct Handlers {
    session: Arc<DfSessionService>,
    inserts: Arc<LiteralInsertHook>,
    auth: Arc<PasswordAuth>,
    parameters: Arc<DefaultServerParameterProvider>,
    interrupts: Arc<interrupt::Registry>,
    pids: Arc<RandomPidSecretKeyGenerator>,
    trust: bool,
    copy: Arc<CopyRows>,
    tls: Option<Tls>,
}

/// The parameters sent to clients at start-up (`server_version` …).
fn server_parameters() -> DefaultServerParameterProvider {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.server_version = SERVER_VERSION.to_string();
    parameters
}

/// Who may connect, and how: the one login, its authentication method, and TLS.
pub struct Access {
    pub user: String,
    pub password: String,
    /// Let the user in without a password (`PGWIRE_INSECURE_NO_PASSWORD`); `password` is
    /// then ignored.
    pub trust: bool,
    pub method: AuthMethod,
    pub tls: Option<Tls>,
}

/// Bounds on what one statement may take.
pub struct Limits {
    /// The `statement_timeout` every session starts with; zero is none.
    pub statement_timeout: std::time::Duration,
    /// Parsed bytes of a `COPY FROM STDIN` held (and so all-or-nothing) before it is written.
    pub copy_atomic_bytes: usize,
}

impl Handlers {
    pub fn new(
        context: Arc<SessionContext>,
        catalog: Arc<Catalog>,
        ingest: Arc<Ingest>,
        access: Access,
        limits: Limits,
        maintenance: Arc<dyn Maintenance>,
    ) -> Self {
        let parameters = server_parameters();
        let interrupts = Arc::new(interrupt::Registry::new(limits.statement_timeout));
        let inserts = Arc::new(LiteralInsertHook {
            catalog: catalog.clone(),
            ingest: ingest.clone(),
        });
        Handlers {
            session: Arc::new(DfSessionService::new_with_hooks(
                context,
                vec![
                    Arc::new(AbortedTransactionHook),
                    Arc::new(VacuumHook {
                        catalog: catalog.clone(),
                        maintenance,
                    }),
                    Arc::new(CopyHook {
                        catalog: catalog.clone(),
                        atomic_bytes: limits.copy_atomic_bytes,
                    }),
                    inserts.clone(),
                    Arc::new(SavepointHook),
                    Arc::new(interrupt::SettingsHook {
                        registry: interrupts.clone(),
                    }),
                    Arc::new(RewriteHook),
                    Arc::new(CursorStatementHook),
                    Arc::new(SetShowHook),
                    Arc::new(TransactionStatementHook),
                ],
            )),
            auth: Arc::new(PasswordAuth::new(
                access.user,
                access.password,
                access.method,
            )),
            parameters: Arc::new(parameters),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            interrupts,
            trust: access.trust,
            copy: Arc::new(CopyRows { ingest }),
            tls: access.tls,
            inserts,
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::new(SimpleQueries {
            session: self.session.clone(),
            inserts: self.inserts.clone(),
        })
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::new(ExtendedQueries {
            parser: Arc::new(Parser(self.session.query_parser())),
            session: self.session.clone(),
        })
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        // A fresh handler per connection: the handlers keep the exchange's state (MD5 salt,
        // SCRAM nonces) between messages, which must not be shared between connections. The
        // process-id generator is shared, so every connection gets its own id.
        let parameters = self.parameters.clone();
        let pids = self.pids.clone();
        let method = if self.trust {
            StartupMethod::Trust(Trust {
                user: self.auth.user.clone(),
                parameters,
                pids,
            })
        } else {
            match self.auth.method {
                AuthMethod::ScramSha256 => {
                    let mut scram = ScramAuth::new(self.auth.clone());
                    scram.set_iterations(SCRAM_ITERATIONS);
                    if let Some(tls) = &self.tls
                        && let Err(e) = scram.configure_certificate(&tls.cert_pem)
                    {
                        tracing::warn!("SCRAM channel binding unavailable: {e}");
                    }
                    StartupMethod::Scram(
                        SASLAuthStartupHandler::new(parameters)
                            .with_scram(scram)
                            .with_pid_secret_key_generator(pids),
                    )
                }
                AuthMethod::Md5 => StartupMethod::Md5(
                    Md5PasswordAuthStartupHandler::new(self.auth.clone(), parameters)
                        .with_pid_secret_key_generator(pids),
                ),
                AuthMethod::Password => StartupMethod::Password(
                    CleartextPasswordAuthStartupHandler::new(
                        SharedAuth(self.auth.clone()),
                        server_parameters(),
                    )
                    .with_pid_secret_key_generator(pids),
                ),
            }
        };
        Arc::new(Startup {
            method,
            interrupts: self.interrupts.clone(),
        })
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(SqlStateErrors)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.interrupts.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.copy.clone()
    }
}

/// DataFusion's simple-query handler, with literal `INSERT … VALUES` taken before it.
///
/// `datafusion-postgres` parses every query with its compatibility parser, which rewrites
/// the whole syntax tree for catalog queries: for a 1,000-row `INSERT` that was 40% of the
/// server's CPU (perf, `bench/ingest.rs` multi-row phase). A query that starts with
/// `INSERT` is parsed once with the plain PostgreSQL dialect instead; when it is one
/// literal insert ([`values::literal_insert`]) it is written directly, anything else goes
/// to DataFusion as before.
struct SimpleQueries {
    session: Arc<DfSessionService>,
    inserts: Arc<LiteralInsertHook>,
}

impl SimpleQueries {
    async fn literal_insert(&self, query: &str) -> Option<PgWireResult<Response>> {
        let head = query.trim_start().get(..6)?;
        if !head.eq_ignore_ascii_case("insert") {
            return None;
        }
        let statements = parse_plain(query)?;
        match statements.as_slice() {
            [statement] => self.inserts.run(statement).await,
            _ => None,
        }
    }
}

#[async_trait]
impl pgwire::api::query::SimpleQueryHandler for SimpleQueries {
    /// pgwire's `_on_query`, except that a `COPY … TO STDOUT` goes out through
    /// [`send_copy_out`]. (pgwire's cancel of `do_query` is left out: this server's cancel
    /// requests go to [`interrupt::Registry`], never to pgwire's connection handle.)
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        use pgwire::api::query::{
            send_execution_response, send_query_response, send_ready_for_query,
        };
        use pgwire::messages::response::EmptyQueryResponse;
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let mut status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = sql_text::statements(&query.query);
        if statements.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
        } else if let Some(copy) = statements[..statements.len() - 1]
            .iter()
            .find(|s| is_copy_from_stdin(s))
        {
            // The statements after it would have to wait for the client's data.
            return Err(user_error(
                "0A000",
                format!(
                    "COPY FROM STDIN must be the last statement of its query string: {}",
                    copy.trim()
                ),
            ));
        } else {
            // One statement at a time, as PostgreSQL runs them: each sees the transaction
            // state the one before left and has its own deadline, and a failure ends the query.
            for statement in statements {
                let mut failed = false;
                for response in self.do_query(client, statement).await? {
                    match response {
                        Response::EmptyQuery => {
                            client
                                .feed(PgWireBackendMessage::EmptyQueryResponse(
                                    EmptyQueryResponse::new(),
                                ))
                                .await?;
                        }
                        Response::Query(results) => {
                            send_query_response(client, results, true).await?
                        }
                        Response::Execution(tag) => send_execution_response(client, tag).await?,
                        Response::TransactionStart(tag) => {
                            send_execution_response(client, tag).await?;
                            status = status.to_in_transaction_state();
                        }
                        Response::TransactionEnd(tag) => {
                            send_execution_response(client, tag).await?;
                            status = status.to_idle_state();
                        }
                        Response::Error(e) => {
                            client
                                .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                                .await?;
                            status = status.to_error_state();
                            failed = true;
                        }
                        Response::CopyIn(copy) => {
                            pgwire::api::copy::send_copy_in_response(client, copy).await?;
                            client.set_state(PgWireConnectionState::CopyInProgress(false));
                        }
                        Response::CopyOut(copy) => {
                            let tag = send_copy_out(client, copy).await?;
                            send_execution_response(client, tag).await?;
                        }
                        Response::CopyBoth(copy) => {
                            pgwire::api::copy::send_copy_both_response(client, copy).await?;
                            client.set_state(PgWireConnectionState::CopyInProgress(false));
                        }
                    }
                }
                client.set_transaction_status(status);
                if failed || matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
                    break;
                }
            }
        }
        // During a COPY FROM STDIN, ReadyForQuery comes after the client's CopyDone.
        if !matches!(client.state(), PgWireConnectionState::CopyInProgress(_)) {
            client.set_state(PgWireConnectionState::ReadyForQuery);
            client.set_transaction_status(status);
            send_ready_for_query(client, status).await?;
        }
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        // In a failed transaction block the hooks refuse the INSERT ([`AbortedTransactionHook`]).
        if client.transaction_status() != TransactionStatus::Error
            && let Some(result) = self.literal_insert(query).await
        {
            return result.map(|response| vec![response]);
        }
        let query = sql_text::rewrite(query);
        let statement = interrupt::Statement::start(client, &query);
        let responses = statement
            .run(pgwire::api::query::SimpleQueryHandler::do_query(
                self.session.as_ref(),
                client,
                &query,
            ))
            .await?;
        let responses = responses
            .into_iter()
            .map(|response| wire_text::postgres_text(statement.bound(response)));
        Ok(with_postgres_names(&query, responses.collect()))
    }
}

/// Whether `statement` is a `COPY … FROM STDIN`.
fn is_copy_from_stdin(statement: &str) -> bool {
    use datafusion::sql::sqlparser::ast::CopyTarget;
    let head = statement.trim_start().get(..4).unwrap_or_default();
    head.eq_ignore_ascii_case("copy")
        && parse_plain(statement).is_some_and(|parsed| {
            parsed.iter().any(|s| {
                matches!(
                    s,
                    Statement::Copy {
                        to: false,
                        target: CopyTarget::Stdin,
                        ..
                    }
                )
            })
        })
}

/// `text` parsed with the plain PostgreSQL dialect, as the client wrote it (no compatibility
/// rewrites); `None` when it does not parse.
fn parse_plain(text: &str) -> Option<Vec<Statement>> {
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, text).ok()
}

/// `responses` of the statements in `query`, their columns named as PostgreSQL names them
/// ([`colname`]). The names come from the text as the client wrote it, parsed with the plain
/// PostgreSQL dialect; when that fails, or the statements do not line up one to one with the
/// responses, DataFusion's names stay.
fn with_postgres_names(query: &str, mut responses: Vec<Response>) -> Vec<Response> {
    if !responses.iter().any(|r| matches!(r, Response::Query(_))) {
        return responses;
    }
    let Some(statements) = parse_plain(query) else {
        return responses;
    };
    if statements.len() != responses.len() {
        return responses;
    }
    for (response, statement) in responses.iter_mut().zip(&statements) {
        if let Response::Query(results) = response
            && let Some(items) = colname::select_names(statement)
        {
            let fields = Vec::clone(&results.row_schema);
            results.row_schema = Arc::new(colname::rename(fields, &items));
        }
    }
    responses
}

/// `plan` with every parameter the client's text uses, even those the compatibility parser
/// dropped: it replaces a correlated subquery in a select list by NULL, parameters and all
/// (SQLAlchemy's `get_columns`, so Superset's column list). datafusion-postgres decodes bound
/// values by the plan's parameters in order, so a dropped `$1` made `$2`'s type decode `$1`'s
/// value ("invalid digit found in string"). Each dropped one is referenced again in a filter
/// that is always true, so it keeps its place (its type unknown: the client's, or text).
fn keep_dropped_parameters(plan: LogicalPlan, text: &str) -> LogicalPlan {
    use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
    use datafusion::sql::sqlparser::ast::{Value, Visit, Visitor};
    use std::ops::ControlFlow;

    if matches!(
        plan,
        LogicalPlan::Dml(_) | LogicalPlan::Ddl(_) | LogicalPlan::EmptyRelation(_)
    ) {
        return plan;
    }
    struct Placeholders(std::collections::BTreeSet<String>);
    impl Visitor for Placeholders {
        type Break = ();
        fn pre_visit_expr(
            &mut self,
            expr: &datafusion::sql::sqlparser::ast::Expr,
        ) -> ControlFlow<()> {
            if let datafusion::sql::sqlparser::ast::Expr::Value(v) = expr
                && let Value::Placeholder(id) = &v.value
            {
                self.0.insert(id.clone());
            }
            ControlFlow::Continue(())
        }
    }
    let Some(statements) = parse_plain(text) else {
        return plan;
    };
    let mut written = Placeholders(Default::default());
    let _ = statements.first().map(|s| s.visit(&mut written));
    let Ok(planned) = plan.get_parameter_types() else {
        return plan;
    };
    let dropped: Vec<String> = written
        .0
        .into_iter()
        .filter(|id| !planned.contains_key(id))
        .collect();
    if dropped.is_empty() {
        return plan;
    }
    let kept = dropped.into_iter().fold(lit(true), |predicate, id| {
        let placeholder = Expr::Placeholder(
            datafusion::logical_expr::expr::Placeholder::new_with_field(id, None),
        );
        predicate.or(placeholder.is_null())
    });
    match LogicalPlanBuilder::from(plan.clone())
        .filter(kept)
        .and_then(|b| b.build())
    {
        Ok(kept) => kept,
        Err(_) => plan,
    }
}

/// datafusion-postgres's parser for the extended protocol, given the text after
/// [`sql_text::rewrite`] and naming result columns as PostgreSQL names them ([`colname`]):
/// `Describe` is where a client learns the names. They come from the client's text, kept
/// with the statement in place of the compatibility parser's rewrite of it.
pub struct Parser(Arc<datafusion_postgres::Parser>);

#[async_trait]
impl pgwire::api::stmt::QueryParser for Parser {
    type Statement = <datafusion_postgres::Parser as pgwire::api::stmt::QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<pgwire::api::Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = sql_text::rewrite(sql);
        let parsed = self.0.parse_sql(client, &sql, types).await?;
        // The text kept with the statement (logs, `interrupt`'s write check, result names) is
        // the client's, not the compatibility parser's rewrite of it.
        Ok(parsed.map(|(_, statement)| {
            let statement = statement.map(|(tree, plan)| {
                let plan = keep_dropped_parameters(plan, &sql);
                (tree, plan)
            });
            (sql.into_owned(), statement)
        }))
    }

    fn get_parameter_types(
        &self,
        statement: &Self::Statement,
    ) -> PgWireResult<Vec<pgwire::api::Type>> {
        self.0.get_parameter_types(statement)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        format: Option<&pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<pgwire::api::results::FieldInfo>> {
        let fields = self.0.get_result_schema(statement, format)?;
        if fields.is_empty() {
            return Ok(fields);
        }
        let items = match parse_plain(&statement.0) {
            Some(written) => written.first().and_then(colname::select_names),
            // Text only the compatibility parser reads: its rewritten tree.
            None => statement
                .1
                .as_ref()
                .and_then(|(parsed, _)| colname::select_names(parsed)),
        };
        Ok(match items {
            Some(items) => colname::rename(fields, &items),
            None => fields,
        })
    }
}

/// DataFusion's extended-query handler, answering `Describe` of a prepared statement that
/// returns no rows (an `INSERT` with parameters) as PostgreSQL does: `ParameterDescription`
/// then `NoData`. pgwire 0.41 sends an empty `RowDescription` there when the statement has
/// parameters, which pgjdbc reads as "this statement returns rows" and then refuses the
/// `INSERT`'s result ("A result was returned when none was expected").
struct ExtendedQueries {
    session: Arc<DfSessionService>,
    parser: Arc<Parser>,
}

#[async_trait]
impl ExtendedQueryHandler for ExtendedQueries {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let statement = interrupt::Statement::start(client, &portal.statement.statement.0);
        let response = statement
            .run(self.session.do_query(client, portal, max_rows))
            .await?;
        match wire_text::postgres_text(statement.bound(response)) {
            // Sent here, so that pgwire's CommandComplete carries the tag that counts rows.
            Response::CopyOut(copy) => Ok(Response::Execution(send_copy_out(client, copy).await?)),
            response => Ok(response),
        }
    }

    /// pgwire's `_on_execute`, after starting a new [`interrupt::Statement`] when the portal
    /// is suspended: a later `Execute` of a portal read in pieces (a driver's fetch size, as
    /// pgjdbc's inside a transaction) pulls its rows without `do_query`, and in PostgreSQL the
    /// `statement_timeout` counts from each `Execute`, not from the first.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
            let state = portal.state();
            let suspended = matches!(*state.lock().await, PortalExecutionState::Suspended(_));
            if suspended {
                interrupt::Statement::start(client, &portal.statement.statement.0);
            }
        }
        self._on_execute(client, message).await
    }

    /// pgwire's `on_parse`, recording the statement's name for `DISCARD ALL`
    /// ([`interrupt::PreparedStatements`]).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        let parser = self.query_parser();
        match pgwire::api::stmt::StoredStatement::parse(client, &message, parser).await? {
            Some(statement) => client.portal_store().put_statement(Arc::new(statement)),
            None => client.portal_store().put_empty_statement(&name),
        }
        interrupt::PreparedStatements::parsed(client, &name);
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// pgwire's `on_close`, forgetting a closed statement's name.
    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => {
                client.portal_store().rm_statement(name);
                interrupt::PreparedStatements::closed(client, name);
            }
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(statement)) = client.portal_store().get_statement(name) {
                let response = self.do_describe_statement(client, &statement).await?;
                if response.fields.is_empty() {
                    let types = response.parameters.iter().map(|t| t.oid()).collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(types),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                } else {
                    send_describe_response(client, &response).await?;
                }
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }
}

/// Plans and runs queries whose syntax tree must change before DataFusion can plan them:
/// set-returning functions ([`crate::srf::rewrite`]) and select lists that repeat a name
/// ([`colname::alias_duplicates`]).
pub struct RewriteHook;

impl RewriteHook {
    fn rewrite(statement: &Statement) -> Option<PgWireResult<Statement>> {
        match crate::srf::rewrite(statement) {
            Some(Ok(rewritten)) => Some(Ok(
                colname::alias_duplicates(&rewritten).unwrap_or(rewritten)
            )),
            Some(Err(e)) => Some(Err(e)),
            None => colname::alias_duplicates(statement).map(Ok),
        }
    }
}

#[async_trait]
impl QueryHook for RewriteHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let rewritten = match Self::rewrite(statement)? {
            Ok(rewritten) => rewritten,
            Err(e) => return Some(Err(e)),
        };
        Some(
            async {
                let frame = context
                    .sql(&rewritten.to_string())
                    .await
                    .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
                let options = Arc::new(pgwire::types::format::FormatOptions::from_client_metadata(
                    client.metadata(),
                ));
                let query = datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe(
                    frame,
                    &pgwire::api::portal::Format::UnifiedText,
                    Some(options),
                )
                .await?;
                Ok(Response::Query(query))
            }
            .await,
        )
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let rewritten = match Self::rewrite(statement)? {
            Ok(rewritten) => rewritten,
            Err(e) => return Some(Err(e)),
        };
        Some(
            context
                .state()
                .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                    rewritten,
                )))
                .await
                .map_err(|e| PgWireError::ApiError(Box::new(e))),
        )
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // Parse planned the rewritten statement; the default execution runs that plan.
        None
    }
}

/// An `ERROR` with `code` (a SQLSTATE) for the client.
pub(crate) fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
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

/// Starts `COPY … FROM STDIN` and runs `COPY … TO STDOUT` (text, CSV and binary) in both
/// protocols.
struct CopyHook {
    catalog: Arc<Catalog>,
    /// Parsed bytes a `COPY FROM STDIN` holds before writing them (all-or-nothing up to this).
    atomic_bytes: usize,
}

impl CopyHook {
    async fn start(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<Response>> {
        if let Some(out) = CopyOut::from_statement(statement) {
            return Some(match out {
                Err(e) => Err(PgWireError::ApiError(Box::new(e))),
                Ok(out) => copy_out(out, context).await,
            });
        }
        Some(match CopyIn::from_statement(statement, &self.catalog)? {
            Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            Ok(copy) => {
                let copy = copy.with_max_held(self.atomic_bytes);
                let columns = copy.column_count();
                // Binary: overall format 1 and every column 1 (`CopyResponse::column_formats`).
                let format = i8::from(copy.is_binary());
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
                    format,
                    columns,
                    futures::stream::empty(),
                )))
            }
        })
    }
}

/// Runs the query of a `COPY … TO STDOUT` and streams its rows as `CopyData`, one per row (the
/// head — CSV header line, binary header — goes with the first row), for [`send_copy_out`] to
/// send and count. With no rows the head goes alone, followed by [`HEAD_END`].
async fn copy_out(mut out: CopyOut, context: &SessionContext) -> PgWireResult<Response> {
    use futures::StreamExt;
    let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
    let copy_error = |e: crate::copy::Error| PgWireError::ApiError(Box::new(e));
    let frame = context.sql(&out.sql).await.map_err(api)?;
    let schema = frame.schema().as_arrow().clone();
    let columns = schema.fields().len();
    out.begin(&schema).map_err(copy_error)?;
    let format = out.format_code();
    let batches = frame.execute_stream().await.map_err(api)?;
    // Each step renders one batch; after the last, what `finish` leaves (the head of an
    // empty result) goes out, marked as no row.
    let rows = futures::stream::unfold(Some((batches, out)), move |state| async move {
        let (mut batches, mut out) = state?;
        let lines: Vec<PgWireResult<Vec<u8>>> = match batches.next().await {
            None => {
                let head = out.finish().map(|head| [head, HEAD_END.to_vec()]);
                return Some((head.into_iter().flatten().map(Ok).collect(), None));
            }
            Some(Err(e)) => vec![Err(api(e))],
            Some(Ok(batch)) => match out.render(&batch) {
                Ok(lines) => lines.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(copy_error(e))],
            },
        };
        Some((lines, Some((batches, out))))
    })
    .flat_map(futures::stream::iter)
    .map(|line| line.map(|line| CopyData::new(bytes::Bytes::from(line))));
    Ok(Response::CopyOut(CopyResponse::new(format, columns, rows)))
}

/// In a copy-out stream, an empty `CopyData` (never sent) says that what came before it was
/// not rows but the head of an empty result.
const HEAD_END: &[u8] = &[];

/// The trailer pgwire appends to a binary copy-out stream (`CopyResponse::new`): not a row.
const BINARY_TRAILER: &[u8] = &[0xFF, 0xFF];

/// Sends a `COPY … TO STDOUT` result as PostgreSQL does: `CopyOutResponse`, the data,
/// `CopyDone`; returns the `COPY n` tag to send next, `n` counting data rows only.
///
/// pgwire 0.41's `send_copy_out_response` counts every message but the binary trailer, so an
/// empty result with a CSV or binary header said `COPY 1`; and it answers an error in the
/// stream with a backend `CopyFail`, which PostgreSQL never sends. Here the error is returned,
/// to go out as an `ErrorResponse` (what PostgreSQL sends when a `COPY TO` fails midway).
async fn send_copy_out<C>(client: &mut C, mut copy: CopyResponse) -> PgWireResult<Tag>
where
    C: futures::Sink<PgWireBackendMessage> + Unpin,
    C::Error: std::fmt::Debug,
    PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
{
    use futures::{SinkExt, StreamExt};
    let formats = copy.column_formats();
    let columns = i16::try_from(copy.columns).map_err(|_| {
        let wide = copy.columns;
        user_error("54011", format!("a COPY of {wide} columns is too wide"))
    })?;
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            copy.format,
            columns,
            formats,
        )))
        .await?;
    let mut rows = 0;
    while let Some(data) = copy.data_stream.next().await {
        let data = data?;
        match data.data.as_ref() {
            HEAD_END => rows = 0,
            BINARY_TRAILER => client.feed(PgWireBackendMessage::CopyData(data)).await?,
            _ => {
                rows += 1;
                client.feed(PgWireBackendMessage::CopyData(data)).await?;
            }
        }
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(Tag::new("COPY").with_rows(rows))
}

#[async_trait]
impl QueryHook for CopyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.start(statement, context, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Some(out) = CopyOut::from_statement(statement) {
            return Some(
                out.map_err(|e| PgWireError::ApiError(Box::new(e)))
                    .map(|_| no_rows_plan()),
            );
        }
        // Unknown tables, columns and options are reported at Parse, as PostgreSQL does.
        Some(match CopyIn::from_statement(statement, &self.catalog)? {
            Err(e) => Err(PgWireError::ApiError(Box::new(e))),
            Ok(_) => Ok(no_rows_plan()),
        })
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.start(statement, context, client).await
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
    user_error(
        "08P01",
        "COPY data received with no COPY FROM STDIN in progress",
    )
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
        user_error(
            "57014",
            format!("COPY from stdin failed: {}{kept}", fail.message),
        )
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
        values::is_literal_insert(statement, &self.catalog).then(|| Ok(no_rows_plan()))
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

/// `SAVEPOINT`, `RELEASE SAVEPOINT` and `ROLLBACK TO SAVEPOINT`, which drivers (psycopg's
/// nested transactions, SQLAlchemy's probes) send inside a transaction. Transactions are
/// accepted for compatibility but every statement is durable on its own (see the README), so
/// these only acknowledge; `ROLLBACK TO` keeps the transaction open, as in PostgreSQL.
struct SavepointHook;

impl SavepointHook {
    fn run(statement: &Statement) -> Option<PgWireResult<Response>> {
        let tag = match statement {
            Statement::Savepoint { .. } => "SAVEPOINT",
            Statement::ReleaseSavepoint { .. } => "RELEASE",
            Statement::Rollback {
                savepoint: Some(_), ..
            } => "ROLLBACK",
            _ => return None,
        };
        Some(Ok(Response::Execution(Tag::new(tag))))
    }
}

#[async_trait]
impl QueryHook for SavepointHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::run(statement)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::run(statement).map(|_| Ok(no_rows_plan()))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::run(statement)
    }
}

/// PostgreSQL's rule for a transaction block that has failed: every statement but `COMMIT`,
/// `ROLLBACK` and `ROLLBACK TO SAVEPOINT` is refused with 25P02 until the block ends. First in
/// the hook list, so no later hook runs one: without it an `INSERT` (or `COPY`, `VACUUM`,
/// `SET`) sent after the failure was executed and made durable while the client, by
/// PostgreSQL's rules, takes it as ignored; and datafusion-postgres's transaction hook, last
/// in the list, refuses the rest with 25P01, the code for "no transaction".
struct AbortedTransactionHook;

impl AbortedTransactionHook {
    fn refuse(
        statement: &Statement,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireError> {
        let ends_block = matches!(
            statement,
            Statement::Commit { .. } | Statement::Rollback { .. }
        );
        (client.transaction_status() == TransactionStatus::Error && !ends_block).then(|| {
            user_error(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            )
        })
    }
}

#[async_trait]
impl QueryHook for AbortedTransactionHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::refuse(statement, client).map(Err)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::refuse(statement, client).map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::refuse(statement, client).map(Err)
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
            Err(user_error(
                "42P01",
                format!("relation \"{name}\" does not exist"),
            ))
        })
    }

    async fn run(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        let table = match self.target(statement)? {
            Ok(table) => table,
            Err(e) => return Some(Err(e)),
        };
        Some(match self.maintenance.maintain(table.as_deref()).await {
            Ok(_) => Ok(Response::Execution(Tag::new("VACUUM"))),
            Err(message) => Err(user_error(
                "58000",
                format!("maintenance failed: {message}"),
            )),
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
        matches!(statement, Statement::Vacuum(_)).then(|| Ok(no_rows_plan()))
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
            *error = user_error(code, message);
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
            let tls = handlers.tls.as_ref().map(|t| t.acceptor.clone());
            if let Err(e) = pgwire::tokio::process_socket(socket, tls, handlers).await {
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
