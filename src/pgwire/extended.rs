//! The extended query protocol. [`Parser`] wraps datafusion-postgres's to name result columns
//! as PostgreSQL does ([`crate::sql::colname`], from the client's own text, kept with the
//! prepared statement for `Describe`) and to keep the parameters the compatibility parser drops
//! with a correlated subquery, which misaligned every later parameter's type (SQLAlchemy's
//! `get_columns`). `Describe` of a statement without result rows answers `NoData`: pgwire 0.41
//! sends an empty `RowDescription` instead, which drivers read as a zero-column result. Each
//! `Execute` of a portal is its own interruptible statement ([`crate::pgwire::cancel`]), so a
//! driver's fetch size gets a deadline per fetch; Parse and Close keep the names of the
//! connection's prepared statements for `DISCARD ALL` ([`crate::pgwire::settings`]). A
//! parameter compared with `= ANY($n)` is described as an array of the other side's type
//! ([`type_parameters`]), and an argument of a function by its signature.
//!
//! `INSERT … VALUES` of literals and parameters never reaches DataFusion: `Parse` keeps it as
//! a [`crate::sql::values`] template, each `Execute` binds the portal's parameters into it
//! ([`crate::pgwire::parameters`]) and holds the rows, and `Sync` writes them
//! ([`crate::pgwire::pipeline`]), as PostgreSQL commits a pipeline's implicit transaction.
//! Tests: `tests/e2e/external/psycopg.rs`, `tests/e2e/external/jdbc.rs`, `tests/e2e/clients.rs`,
//! `tests/e2e/pipeline.rs`.

use std::sync::Arc;

use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion_postgres::DfSessionService;
use pgwire::api::portal::{Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, send_describe_response};
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Describe, Execute, Parse, ParseComplete, Sync as SyncMessage,
    TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};

use crate::engine::ingest::{self, Ingest};
use crate::engine::schema::Catalog;
use crate::error::SqlState;
use crate::metrics::finished;
use crate::pgwire::copy::handler::send_copy_out;
use crate::pgwire::errors::user_error;
use crate::pgwire::simple::parse_plain;
use crate::pgwire::wire_text;
use crate::pgwire::{cancel, hooks, oid_types, parameters, pipeline, settings};
use crate::sql::colname;
use crate::sql::statement_text;
use crate::sql::values::{self, InsertTemplate, PreparedInsert};

/// `plan` with every parameter the client's text uses, even those the compatibility parser
/// dropped: it replaces a correlated subquery in a select list by NULL, parameters and all
/// (SQLAlchemy's `get_columns`, so Superset's column list), which stays so in a statement over
/// the catalog that DataFusion cannot plan as written ([`crate::sql::subquery`]). datafusion-postgres decodes bound
/// values by the plan's parameters in order, so a dropped `$1` made `$2`'s type decode `$1`'s
/// value ("invalid digit found in string"). Each dropped one is referenced again in a filter
/// that is always true, so it keeps its place (its type unknown: the client's, or text).
pub(crate) fn keep_dropped_parameters(plan: LogicalPlan, text: &str) -> LogicalPlan {
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

/// `plan` with a type for each parameter DataFusion leaves untyped where PostgreSQL has one:
/// compared with `= ANY($n)` / `<> ALL($n)`, an array of the other side's type (DataFusion
/// plans `x = ANY($1)` as `array_has($1, x)` and infers nothing for `$1`, so `Describe` said
/// `text` and drivers that encode by the server's types — asyncpg, tokio-postgres, pgx —
/// refused to send a list, where PostgreSQL says `text[]` for a text `x`); an argument of a
/// function whose signature names its type (`pg_cancel_backend($1)` is `int4`, as in
/// PostgreSQL; it was `unknown`, which tokio-postgres refuses to bind an `i32` to). A
/// parameter the client typed keeps its type.
pub(crate) fn type_parameters(plan: LogicalPlan) -> LogicalPlan {
    use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, ExprSchemable};
    use std::collections::HashMap;

    let mut types: HashMap<String, DataType> = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        let inputs = node.inputs();
        let schema = match inputs.as_slice() {
            [input] => input.schema().clone(),
            _ => node.schema().clone(),
        };
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && call.func.name() == "array_has"
                    && let [Expr::Placeholder(p), needle] = call.args.as_slice()
                    && p.field.is_none()
                    && let Ok(item) = needle.get_type(&schema)
                    && item != DataType::Null
                {
                    types
                        .entry(p.id.clone())
                        .or_insert_with(|| DataType::new_list(item, true));
                } else if let Expr::ScalarFunction(call) = e {
                    let signature = &call.func.signature().type_signature;
                    for (i, arg) in call.args.iter().enumerate() {
                        if let Expr::Placeholder(p) = arg
                            && p.field.is_none()
                            && let Some(declared) = argument_type(signature, call.args.len(), i)
                        {
                            types.entry(p.id.clone()).or_insert(declared);
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if types.is_empty() {
        return plan;
    }
    let typed = plan.clone().transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform(|e| match e {
                Expr::Placeholder(mut p) if p.field.is_none() => match types.get(&p.id) {
                    Some(data_type) => {
                        p.field = Some(Arc::new(arrow::datatypes::Field::new(
                            p.id.clone(),
                            data_type.clone(),
                            true,
                        )));
                        Ok(Transformed::yes(Expr::Placeholder(p)))
                    }
                    None => Ok(Transformed::no(Expr::Placeholder(p))),
                },
                other => Ok(Transformed::no(other)),
            })
        })
    });
    typed.map(|t| t.data).unwrap_or(plan)
}

/// The type a function's signature gives its argument `i` of `count`: the first exact form of
/// that many arguments, or a string signature's text; `None` where it leaves the choice open
/// (coercible, variadic or user-defined signatures).
fn argument_type(
    signature: &datafusion::logical_expr::TypeSignature,
    count: usize,
    i: usize,
) -> Option<DataType> {
    use datafusion::logical_expr::TypeSignature;
    match signature {
        TypeSignature::Exact(types) if types.len() == count => types.get(i).cloned(),
        TypeSignature::String(n) if *n == count => Some(DataType::Utf8),
        TypeSignature::Uniform(n, types) if *n == count && types.len() == 1 => {
            types.first().cloned()
        }
        TypeSignature::OneOf(forms) => forms.iter().find_map(|f| match f {
            TypeSignature::Exact(types) if types.len() == count => types.get(i).cloned(),
            _ => None,
        }),
        _ => None,
    }
}

/// datafusion-postgres's parser for the extended protocol, given the text after
/// [`statement_text::rewrite`] and naming result columns as PostgreSQL names them ([`colname`]):
/// `Describe` is where a client learns the names. They come from the client's text, kept
/// with the statement in place of the compatibility parser's rewrite of it.
pub struct Parser {
    pub(crate) inner: Arc<datafusion_postgres::Parser>,
    /// `TIMEFUSION_MAX_EXPRESSION_DEPTH`: deeper statements are refused before parsing.
    pub(crate) max_depth: usize,
    /// The tables an `INSERT` on the fast path ([`values::template`]) may name.
    pub(crate) catalog: Arc<Catalog>,
}

impl Parser {
    /// An `INSERT … VALUES` of literals and parameters as a [`PreparedInsert`]: parsed with
    /// the plain PostgreSQL dialect only, never planned.
    fn prepared_insert(
        &self,
        sql: &str,
    ) -> Option<<Self as pgwire::api::stmt::QueryParser>::Statement> {
        let head = sql.trim_start().get(..6)?;
        if !head.eq_ignore_ascii_case("insert") {
            return None;
        }
        let mut statements = parse_plain(sql)?;
        if statements.len() != 1 {
            return None;
        }
        let statement = statements.remove(0);
        let template = values::template(&statement, &self.catalog)?;
        Some((
            sql.to_string(),
            Some((statement, PreparedInsert::plan(template))),
        ))
    }
}

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
        statement_text::check_depth(sql, self.max_depth)
            .map_err(|e| user_error(e.state, e.message))?;
        if let Some(insert) = self.prepared_insert(sql) {
            return Ok(Some(insert));
        }
        let sql = statement_text::rewrite(sql);
        let parsed = crate::panics::catch(hooks::with_client_text(
            &sql,
            self.inner.parse_sql(client, &sql, types),
        ))
        .await
        .unwrap_or_else(|m| Err(cancel::panicked(&m)))?;
        // The text kept with the statement (logs, `cancel`'s write check, result names) is
        // the client's, not the compatibility parser's rewrite of it.
        Ok(parsed.map(|(_, statement)| {
            let statement = statement.map(|(tree, plan)| {
                let plan = type_parameters(keep_dropped_parameters(plan, &sql));
                (tree, plan)
            });
            (sql.into_owned(), statement)
        }))
    }

    fn get_parameter_types(
        &self,
        statement: &Self::Statement,
    ) -> PgWireResult<Vec<pgwire::api::Type>> {
        if let (_, Some((_, plan))) = statement
            && let Some(template) = PreparedInsert::of(plan)
        {
            return Ok(parameter_types(template)
                .into_iter()
                .map(|(_, t)| t)
                .collect());
        }
        let mut types = self.inner.get_parameter_types(statement)?;
        if let (_, Some((tree, _))) = statement {
            oid_types::parameters(tree, &mut types);
        }
        Ok(types)
    }

    fn get_result_schema(
        &self,
        statement: &Self::Statement,
        format: Option<&pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<pgwire::api::results::FieldInfo>> {
        let fields = self.inner.get_result_schema(statement, format)?;
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
        let mut fields = match items {
            Some(items) => crate::pgwire::postgres_names(fields, &items),
            None => fields,
        };
        if let (_, Some((_, plan))) = statement {
            oid_types::results(plan, &mut fields);
        }
        Ok(fields)
    }
}

/// DataFusion's extended-query handler, answering `Describe` of a prepared statement that
/// returns no rows (an `INSERT` with parameters) as PostgreSQL does: `ParameterDescription`
/// then `NoData`. pgwire 0.41 sends an empty `RowDescription` there when the statement has
/// parameters, which pgjdbc reads as "this statement returns rows" and then refuses the
/// `INSERT`'s result ("A result was returned when none was expected").
pub(crate) struct ExtendedQueries {
    pub(crate) session: Arc<DfSessionService>,
    pub(crate) parser: Arc<Parser>,
    /// `TIMEFUSION_LOG_MIN_DURATION_MS`.
    pub(crate) log_min_duration: Option<std::time::Duration>,
    pub(crate) slots: Arc<crate::sql::slots::Slots>,
    /// Where `INSERT`s on the fast path are written ([`pipeline`]).
    pub(crate) ingest: Arc<Ingest>,
}

/// The Arrow and wire types of a template's parameters.
fn parameter_types(template: &InsertTemplate) -> Vec<(DataType, pgwire::api::Type)> {
    template
        .parameter_types()
        .iter()
        .map(|p| {
            (
                p.data_type.clone(),
                parameters::wire_type(&p.data_type, p.json),
            )
        })
        .collect()
}

impl ExtendedQueries {
    /// `Execute` of an `INSERT` on the fast path: binds the portal's parameters into the
    /// template's rows, checks them ([`ingest::prepare`]) and holds them until the `Sync`
    /// ([`pipeline`]). No plan, no slot: the work is a few microseconds a row.
    async fn insert<C>(
        &self,
        client: &mut C,
        portal: &Portal<<Self as ExtendedQueryHandler>::Statement>,
        template: &Arc<InsertTemplate>,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Send + Sync,
    {
        if client.transaction_status() == TransactionStatus::Error {
            return Err(user_error(
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        let rejected = |e: ingest::Error| user_error(e.sqlstate(), e.to_string());
        if template.single_row() {
            let parameters = parameters::decode_borrowed(portal, &parameter_types(template))?;
            let row = template
                .bind_row(&parameters, values::now_micros())
                .map_err(rejected)?;
            if pipeline::hold_row(client, template, row).map_err(rejected)? {
                pipeline::commit(client, &self.ingest)
                    .await
                    .map_err(rejected)?;
            }
            return Ok(Response::Execution(
                Tag::new("INSERT").with_oid(0).with_rows(1),
            ));
        }
        let parameters = parameters::decode(portal, &parameter_types(template))?;
        let batch = template
            .bind(&parameters, values::now_micros())
            .and_then(|batch| ingest::prepare(&template.table, &batch))
            .map_err(rejected)?;
        let rows = batch.num_rows();
        if pipeline::hold(client, template.table.clone(), batch).map_err(rejected)? {
            pipeline::commit(client, &self.ingest)
                .await
                .map_err(rejected)?;
        }
        Ok(Response::Execution(
            Tag::new("INSERT").with_oid(0).with_rows(rows),
        ))
    }
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
        if let (_, Some((_, plan))) = &portal.statement.statement
            && let Some(template) = PreparedInsert::of(plan)
        {
            return self.insert(client, portal, template).await;
        }
        // Any other statement sees the rows this pipeline's INSERTs hold.
        if pipeline::holds(client) {
            pipeline::commit(client, &self.ingest)
                .await
                .map_err(|e| user_error(e.sqlstate(), e.to_string()))?;
        }
        let statement =
            cancel::Statement::start(client, &portal.statement.statement.0, &self.slots);
        let response = statement
            .run(hooks::with_result_format(
                portal.result_column_format.clone(),
                self.session.do_query(client, portal, max_rows),
            ))
            .await?;
        match wire_text::postgres_text(statement.bound(response)) {
            // Sent here, so that pgwire's CommandComplete carries the tag that counts rows.
            Response::CopyOut(copy) => Ok(Response::Execution(send_copy_out(client, copy).await?)),
            response => Ok(response),
        }
    }

    /// pgwire's `_on_execute`, after starting a new [`cancel::Statement`] when the portal
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
        let started = std::time::Instant::now();
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let mut statement = None;
        if let Some(Entry::Value(portal)) = client.portal_store().get_portal(name) {
            let state = portal.state();
            let suspended = matches!(*state.lock().await, PortalExecutionState::Suspended(_));
            if suspended {
                cancel::Statement::start(client, &portal.statement.statement.0, &self.slots);
            }
            statement = Some(portal.statement.clone());
        }
        let result = self._on_execute(client, message).await;
        if let Some(statement) = statement {
            let text = &statement.statement.0;
            finished(
                "extended",
                result.is_ok(),
                started,
                text,
                self.log_min_duration,
            );
        }
        result
    }

    /// pgwire's `on_parse`, recording the statement's name for `DISCARD ALL`
    /// ([`settings::PreparedStatements`]).
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
        settings::PreparedStatements::parsed(client, &name);
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// Ends a pipeline as PostgreSQL commits its implicit transaction: the rows its
    /// `INSERT`s hold are written, durably, before `ReadyForQuery` ([`pipeline::commit`]),
    /// or dropped when an error ended the pipeline before this `Sync`. A failed write is an
    /// error response before `ReadyForQuery`. Then pgwire's `on_sync`: the unnamed portal is
    /// closed and `ReadyForQuery` sent.
    async fn on_sync<C>(&self, client: &mut C, _message: SyncMessage) -> PgWireResult<()>
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
        if matches!(client.state(), PgWireConnectionState::AwaitingSync) {
            pipeline::discard(client);
        } else if let Err(e) = pipeline::commit(client, &self.ingest).await {
            let error = ErrorInfo::new("ERROR".into(), e.sqlstate().code().into(), e.to_string());
            client
                .send(PgWireBackendMessage::ErrorResponse(error.into()))
                .await?;
            if client.transaction_status() != TransactionStatus::Idle {
                client.set_transaction_status(TransactionStatus::Error);
            }
        }
        client.portal_store().rm_portal(DEFAULT_NAME);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                client.transaction_status(),
            )))
            .await?;
        client.flush().await?;
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
                settings::PreparedStatements::closed(client, name);
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
