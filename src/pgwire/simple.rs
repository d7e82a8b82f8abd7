//! The simple query protocol: a query message is split into its statements
//! ([`crate::sql::statement_text::statements`]) and they run one at a time, each with its own
//! deadline and the transaction state the previous left, stopping at the first failure, as in
//! PostgreSQL. A statement starting with `INSERT` is parsed once with the plain PostgreSQL
//! dialect and, when it is one literal insert ([`crate::sql::values`]), written straight to
//! the engine without datafusion-postgres's compatibility parser, whose syntax-tree rewrites
//! dominated the cost of a large literal `INSERT` (BENCHMARKS.md). `COPY … TO STDOUT` is sent
//! by [`crate::pgwire::copy::handler`]. Tests: `tests/e2e/interrupt.rs`, `tests/e2e/clients.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::DfSessionService;
use pgwire::api::ClientPortalStore;
use pgwire::api::results::Response;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;

use crate::error::SqlState;
use crate::metrics::finished;
use crate::pgwire::cancel;
use crate::pgwire::copy::handler::send_copy_out;
use crate::pgwire::errors::user_error;
use crate::pgwire::hooks::{self, Hook, LiteralInsertHook};
use crate::pgwire::wire_text;
use crate::sql::colname;
use crate::sql::slots::Slots;
use crate::sql::statement_text;
use crate::sql::{literal_values, values};

/// DataFusion's simple-query handler, with literal `INSERT … VALUES` taken before it.
///
/// `datafusion-postgres` parses every query with its compatibility parser, which rewrites
/// the whole syntax tree for catalog queries, the largest cost of a big literal `INSERT`
/// (BENCHMARKS.md, "Profiles behind the code"). A query that starts with
/// `INSERT` is first read by [`literal_values::scan`], which builds the rows of a literal bulk
/// insert without a parser; else it is parsed once with the plain PostgreSQL dialect, and when
/// it is one literal insert ([`values::literal_insert`]) it is written directly. Anything else
/// goes to DataFusion as before.
pub(crate) struct SimpleQueries {
    pub(crate) session: Arc<DfSessionService>,
    pub(crate) inserts: Arc<Hook<LiteralInsertHook>>,
    /// `TIMEFUSION_MAX_EXPRESSION_DEPTH`: deeper statements are refused before parsing.
    pub(crate) max_depth: usize,
    /// `TIMEFUSION_LOG_MIN_DURATION_MS`.
    pub(crate) log_min_duration: Option<std::time::Duration>,
    pub(crate) slots: Arc<Slots>,
    /// The last of the hooks, which answers queries from kept plans; a query text it answered
    /// that way before goes to it directly ([`crate::sql::plan_cache::Shortcut`]).
    pub(crate) plans: Arc<hooks::PlanCacheHook>,
    pub(crate) context: Arc<datafusion::prelude::SessionContext>,
}

impl SimpleQueries {
    async fn literal_insert<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
        query: &str,
    ) -> Option<PgWireResult<Response>> {
        let head = query.trim_start().get(..6)?;
        if !head.eq_ignore_ascii_case("insert") {
            return None;
        }
        let hook = &self.inserts.0;
        // The rows of a literal bulk insert, read without parsing it; anything the scanner does
        // not take is parsed below.
        let scanned = crate::panics::catch_now(|| {
            literal_values::scan(query, &hook.catalog, values::now_micros())
        });
        match scanned {
            Ok(Some((table, batch))) => {
                let written = crate::panics::catch(async {
                    cancel::began(client, query);
                    hook.write(&table, Ok(batch)).await
                })
                .await;
                return Some(written.unwrap_or_else(|m| Err(cancel::panicked(&m))));
            }
            Ok(None) => {}
            Err(m) => return Some(Err(cancel::panicked(&m))),
        }
        let statements = parse_plain(query)?;
        match statements.as_slice() {
            [statement] => crate::panics::catch(async {
                cancel::began(client, query);
                self.inserts.0.run(statement).await
            })
            .await
            .unwrap_or_else(|m| Some(Err(cancel::panicked(&m)))),
            _ => None,
        }
    }
}

#[async_trait]
impl pgwire::api::query::SimpleQueryHandler for SimpleQueries {
    /// pgwire's `_on_query`, except that a `COPY … TO STDOUT` goes out through
    /// [`send_copy_out`]. (pgwire's cancel of `do_query` is left out: this server's cancel
    /// requests go to [`cancel::Registry`], never to pgwire's connection handle.)
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
        // A query after pipelined INSERTs without a Sync sees their rows, as in PostgreSQL.
        if crate::pgwire::pipeline::holds(client) {
            crate::pgwire::pipeline::commit(client, &self.inserts.0.ingest)
                .await
                .map_err(|e| user_error(e.sqlstate(), e.to_string()))?;
        }
        let mut status = client.transaction_status();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let statements = statement_text::statements(&query.query);
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
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "COPY FROM STDIN must be the last statement of its query string: {}",
                    copy.trim()
                ),
            ));
        } else {
            // One statement at a time, as PostgreSQL runs them: each sees the transaction
            // state the one before left and has its own deadline, and a failure ends the query.
            for statement in statements {
                let started = std::time::Instant::now();
                let mut failed = false;
                let responses = match self.do_query(client, statement).await {
                    Ok(responses) => responses,
                    Err(e) => {
                        finished("simple", false, started, statement, self.log_min_duration);
                        return Err(e);
                    }
                };
                for response in responses {
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
                finished("simple", !failed, started, statement, self.log_min_duration);
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
        if let Err(e) = statement_text::check_depth(query, self.max_depth) {
            return Ok(vec![Response::Error(Box::new(ErrorInfo::new(
                "ERROR".into(),
                e.state.code().into(),
                e.message,
            )))]);
        }
        // In a failed transaction block the hooks refuse the INSERT (`hooks::AbortedTransactionHook`).
        if client.transaction_status() != TransactionStatus::Error
            && let Some(result) = self.literal_insert(&*client, query).await
        {
            return result.map(|response| vec![response]);
        }
        let query = statement_text::rewrite(query);
        // A query text answered from a kept plan before goes there directly: no parse, no
        // rewrite, no hook. Every hook before the plan cache's decides on a query by its form
        // alone (those that read the session's settings answer it themselves, and a plan
        // calling a function that is not immutable is never kept), except the refusal in a
        // failed transaction, checked here.
        if client.transaction_status() != TransactionStatus::Error
            && let Some(shortcut) = self.plans.cache.shortcut(&query)
        {
            let statement = cancel::Statement::start(client, &query, &self.slots);
            let response = statement
                .run(self.plans.run_kept(&shortcut.key, &self.context, &*client))
                .await?;
            let response = wire_text::postgres_text(statement.bound(response));
            return Ok(vec![named(response, shortcut.names.as_deref())]);
        }
        let statement = cancel::Statement::start(client, &query, &self.slots);
        let (responses, kept) = hooks::recording_plan_key(statement.run(hooks::with_client_text(
            &query,
            pgwire::api::query::SimpleQueryHandler::do_query(self.session.as_ref(), client, &query),
        )))
        .await;
        let responses: Vec<Response> = responses?
            .into_iter()
            .map(|response| wire_text::postgres_text(statement.bound(response)))
            .collect();
        // The columns named as PostgreSQL names them ([`colname`]), from the text as the
        // client wrote it, parsed with the plain PostgreSQL dialect; when that fails, or the
        // statements do not line up one to one with the responses, DataFusion's names stay.
        if !responses.iter().any(|r| matches!(r, Response::Query(_))) {
            return Ok(responses);
        }
        let Some(statements) = parse_plain(&query).filter(|s| s.len() == responses.len()) else {
            return Ok(responses);
        };
        let names: Vec<Option<Arc<[colname::Item]>>> = statements
            .iter()
            .map(|statement| colname::select_names(statement).map(Arc::from))
            .collect();
        if let Some(key) = kept
            && let [names] = names.as_slice()
        {
            let shortcut = crate::sql::plan_cache::Shortcut {
                key,
                names: names.clone(),
            };
            self.plans.cache.remember(&query, shortcut);
        }
        Ok(responses
            .into_iter()
            .zip(names)
            .map(|(response, names)| named(response, names.as_deref()))
            .collect())
    }
}

/// Whether `statement` is a `COPY … FROM STDIN`.
pub(crate) fn is_copy_from_stdin(statement: &str) -> bool {
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
pub(crate) fn parse_plain(text: &str) -> Option<Vec<Statement>> {
    use datafusion::sql::sqlparser::{parser::Parser, tokenizer::Tokenizer};
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    // `Parser::parse_sql` tokenizes into a vector grown from empty: for a 1,000-row INSERT
    // (~100,000 tokens with the whitespace between them) its regrowths were ~15% of the
    // statement's CPU. A literal VALUES list runs at a token per 4–8 bytes. The guess is
    // capped at 2^17 tokens (~11 MiB at ~88 bytes a token), so a statement of few tokens in
    // many bytes (one long string) does not reserve far more than it holds; a longer list
    // grows from there.
    let mut tokens = Vec::with_capacity((text.len() / 6).min(1 << 17));
    Tokenizer::new(&dialect, text)
        .tokenize_with_location_into_buf(&mut tokens)
        .ok()?;
    Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .ok()
}

/// `response` with its columns named as PostgreSQL names the select `items`.
fn named(response: Response, items: Option<&[colname::Item]>) -> Response {
    match (response, items) {
        (Response::Query(mut results), Some(items)) => {
            let fields = Vec::clone(&results.row_schema);
            results.row_schema = Arc::new(crate::pgwire::postgres_names(fields, items));
            Response::Query(results)
        }
        (response, _) => response,
    }
}
