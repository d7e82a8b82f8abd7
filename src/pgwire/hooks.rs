//! Statements the front end answers before (or instead of) DataFusion, as datafusion-postgres
//! `QueryHook`s, in the order `Handlers::new` lists them: refusals inside a failed transaction
//! block (25P02 for every statement but its end, as PostgreSQL), `VACUUM` (one maintenance pass
//! through [`crate::engine::core::Maintenance`]), `COPY`, literal `INSERT`s, savepoints,
//! settings, syntax-tree rewrites of what DataFusion cannot plan as written
//! ([`crate::sql::srf`], [`crate::sql::pg_forms`], [`crate::sql::subquery`],
//! [`crate::sql::colname::alias_duplicates`]), `DELETE` / `UPDATE`
//! with PostgreSQL's command tags, and last the queries left, through the plan cache
//! ([`crate::sql::plan_cache`]).

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use pgwire::api::ClientInfo;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;

use crate::engine::core::Maintenance;
use crate::engine::ingest::{Ingest, Via};
use crate::engine::schema::{Catalog, TableSchema};
use crate::error::SqlState;
use crate::pgwire::errors::{no_rows_plan, user_error};
use crate::sql::values;
use crate::sql::{colname, mutation, plan_cache, subquery, whole_row};

/// A statement the front end answers itself, in both protocols: [`Answer::answer`] serves a
/// simple query and the `Execute` of a prepared one, [`Answer::plan`] is what `Parse` gets.
/// Each returns `None` for a statement it leaves to the next hook (and in the end to
/// DataFusion). [`Hook`] makes one a datafusion-postgres `QueryHook`.
#[async_trait]
pub(crate) trait Answer: Send + Sync {
    /// `Execute` runs the plan [`Answer::plan`] gave instead of [`Answer::answer`].
    const EXECUTES_PLAN: bool = false;

    /// The response to `statement`, run now.
    async fn answer(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>>;

    /// The plan `Parse` gives `statement`: its parameters and result columns for `Describe`.
    async fn plan(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>>;
}

/// An [`Answer`] as a datafusion-postgres `QueryHook`.
pub(crate) struct Hook<A>(pub(crate) A);

#[async_trait]
impl<A: Answer> QueryHook for Hook<A> {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.0.answer(statement, context, client).await
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        self.0.plan(statement, context, client).await
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if A::EXECUTES_PLAN {
            return None;
        }
        self.0.answer(statement, context, client).await
    }
}

/// Plans and runs queries whose syntax tree must change before DataFusion can plan them:
/// set-returning functions ([`crate::sql::srf::rewrite`]), `user` and select-list `EXISTS`
/// ([`crate::sql::pg_forms::rewrite`]), and select lists that repeat a name
/// ([`colname::alias_duplicates`]).
pub struct RewriteHook;

impl RewriteHook {
    fn rewrite(
        statement: &Statement,
        client: &(impl ClientInfo + ?Sized),
    ) -> Option<PgWireResult<Statement>> {
        let srf = match crate::sql::srf::rewrite(statement) {
            Some(Ok(rewritten)) => Some(rewritten),
            Some(Err(e)) => return Some(Err(user_error(e.state, e.message))),
            None => None,
        };
        let current = srf.as_ref().unwrap_or(statement);
        let setting = |name: &str| crate::pgwire::settings::current_value(client, name);
        let all = || crate::pgwire::settings::all_values(client);
        let session = crate::sql::pg_forms::Session {
            pid: client.pid_and_secret_key().0,
            setting: &setting,
            settings: &all,
        };
        let forms = crate::sql::pg_forms::rewrite(current, &session);
        let current = forms.as_ref().or(srf.as_ref()).unwrap_or(statement);
        match colname::alias_duplicates(current) {
            Some(aliased) => Some(Ok(aliased)),
            None => forms.or(srf).map(Ok),
        }
    }
}

tokio::task_local! {
    /// The text of the statement being parsed, as the client wrote it, for
    /// [`subquery::restore`]: set only where the text may hold a nested `SELECT`.
    static CLIENT_TEXT: Arc<str>;
}

/// Runs `work` (datafusion-postgres parsing `text` and calling the hooks) with `text` at hand
/// for [`RewriteHook`].
pub(crate) async fn with_client_text<T>(text: &str, work: impl Future<Output = T>) -> T {
    if subquery::may_nest_select(text) {
        CLIENT_TEXT.scope(text.into(), work).await
    } else {
        work.await
    }
}

impl RewriteHook {
    /// The plan of `statement`, with the client's select-list subqueries as written
    /// ([`subquery::restore`]). A statement that fails to plan is tried again with its
    /// whole-row references as rows ([`whole_row`]). In a statement over the catalog alone,
    /// each correlated subquery DataFusion cannot run is NULL ([`subquery::null_correlated`]),
    /// and failing that the statement is as the compatibility parser left it. `None` when no
    /// rewrite applies (DataFusion plans the statement as received).
    async fn plan_of(
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        let restored = CLIENT_TEXT
            .try_with(|text| subquery::restore(statement, text))
            .ok()
            .flatten();
        let written = restored.as_ref().unwrap_or(statement);
        let rewritten = match Self::rewrite(written, client) {
            Some(Ok(rewritten)) => Some(rewritten),
            Some(Err(e)) => return Some(Err(e)),
            None => None,
        };
        // The text is at hand only where it may nest a `SELECT`.
        let catalog_subqueries = CLIENT_TEXT.try_with(|_| ()).is_ok()
            && matches!(written, Statement::Query(_))
            && subquery::reads_only_catalog(written);
        let whole_rows = whole_row::may_refer(written);
        let current = match rewritten {
            Some(rewritten) => rewritten,
            None if restored.is_some() || whole_rows || catalog_subqueries => written.clone(),
            None => return None,
        };
        let mut planned = Self::statement_plan(current.clone(), context).await;
        if planned.is_err()
            && whole_rows
            && let Some(rows) = whole_row::rewrite(&current, context).await
        {
            planned = Self::statement_plan(rows, context).await;
        }
        if !catalog_subqueries {
            return Some(planned);
        }
        // Over the catalog alone: where DataFusion cannot run a correlated subquery, NULL.
        if let Ok(plan) = &planned
            && runs(context, plan)
        {
            return Some(planned);
        }
        // Each subquery it cannot run on its own (the others NULL) becomes NULL, no other: one
        // plan per subquery, so past a tool's handful every one is NULL instead.
        let correlated = subquery::correlated_count(&current);
        let mut unrunnable = Vec::new();
        for kept in 0..correlated {
            let runs_alone = correlated <= MAX_SUBQUERY_TRIALS
                && match Self::statement_plan(
                    subquery::null_correlated(&current, &|k| k != kept),
                    context,
                )
                .await
                {
                    Ok(plan) => runs(context, &plan),
                    Err(_) => false,
                };
            if !runs_alone {
                unrunnable.push(kept);
            }
        }
        let nulled = subquery::null_correlated(&current, &|k| unrunnable.contains(&k));
        match Self::statement_plan(nulled, context).await {
            Ok(plan) if runs(context, &plan) => Some(Ok(plan)),
            // As the compatibility parser left it.
            _ if restored.is_some() => {
                let received = match Self::rewrite(statement, client) {
                    Some(Ok(rewritten)) => rewritten,
                    Some(Err(e)) => return Some(Err(e)),
                    None => statement.clone(),
                };
                Some(Self::statement_plan(received, context).await)
            }
            _ => Some(planned),
        }
    }

    async fn statement_plan(
        statement: Statement,
        context: &SessionContext,
    ) -> PgWireResult<LogicalPlan> {
        context
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                statement,
            )))
            .await
            .map_err(|e| PgWireError::ApiError(Box::new(e)))
    }
}

/// How many correlated subqueries of a catalog statement are tried one by one (pgAdmin's and
/// SQLAlchemy's have up to six).
const MAX_SUBQUERY_TRIALS: usize = 16;

/// Whether DataFusion can run `plan`: it optimizes, and the optimizer decorrelated every
/// correlated subquery (what it cannot is left in the plan, and fails only when the physical
/// plan is made).
fn runs(context: &SessionContext, plan: &LogicalPlan) -> bool {
    context
        .state()
        .optimize(plan)
        .is_ok_and(|optimized| !subquery::has_correlated(&optimized))
}

/// Runs `plan` and sends its rows in text, as datafusion-postgres answers a simple query.
async fn run_plan(
    plan: LogicalPlan,
    context: &SessionContext,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    let frame = context
        .execute_logical_plan(plan)
        .await
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let query = datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe(
        frame,
        &pgwire::api::portal::Format::UnifiedText,
        Some(text_options(client)),
    )
    .await?;
    Ok(Response::Query(query))
}

/// How `client`'s session writes values as text (`DateStyle` …).
fn text_options(client: &dyn HookClient) -> Arc<pgwire::types::format::FormatOptions> {
    Arc::new(pgwire::types::format::FormatOptions::from_client_metadata(
        client.metadata(),
    ))
}

#[async_trait]
impl Answer for RewriteHook {
    /// Parse planned the rewritten statement; `Execute` runs that plan.
    const EXECUTES_PLAN: bool = true;

    async fn answer(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let plan = match Self::plan_of(statement, context, &*client).await? {
            Ok(plan) => plan,
            Err(e) => return Some(Err(e)),
        };
        Some(run_plan(plan, context, &*client).await)
    }

    async fn plan(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::plan_of(statement, context, client).await
    }
}

/// Runs literal `INSERT … VALUES` statements of the simple protocol without DataFusion
/// planning ([`values::literal_insert`]). The extended protocol's `INSERT`s, with or without
/// parameters, are taken before the hooks by `pgwire::extended`.
pub(crate) struct LiteralInsertHook {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) ingest: Arc<Ingest>,
}

impl LiteralInsertHook {
    pub(crate) async fn run(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        let (table, batch) = values::literal_insert(statement, &self.catalog)?;
        Some(self.write(&table, batch).await)
    }

    /// Writes the bound rows of a literal `INSERT` into `table`, answering as PostgreSQL does.
    pub(crate) async fn write(
        &self,
        table: &TableSchema,
        batch: crate::engine::ingest::Result<RecordBatch>,
    ) -> PgWireResult<Response> {
        let written = match batch {
            Ok(batch) => self.ingest.write(&table.name, batch, Via::Insert).await,
            Err(e) => Err(e),
        };
        written
            .map(|rows| Response::Execution(Tag::new("INSERT").with_oid(0).with_rows(rows)))
            .map_err(|e| user_error(e.sqlstate(), e.to_string()))
    }
}

#[async_trait]
impl Answer for LiteralInsertHook {
    async fn answer(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement).await
    }

    async fn plan(
        &self,
        _statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }
}

/// `SAVEPOINT`, `RELEASE SAVEPOINT` and `ROLLBACK TO SAVEPOINT`, which drivers (psycopg's
/// nested transactions, SQLAlchemy's probes) send inside a transaction. Transactions are
/// accepted for compatibility but every statement is durable on its own (see the README), so
/// these only acknowledge; `ROLLBACK TO` keeps the transaction open, as in PostgreSQL.
pub(crate) struct SavepointHook;

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
impl Answer for SavepointHook {
    async fn answer(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::run(statement)
    }

    async fn plan(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::run(statement).map(|_| Ok(no_rows_plan()))
    }
}

/// PostgreSQL's rule for a transaction block that has failed: every statement but `COMMIT`,
/// `ROLLBACK` and `ROLLBACK TO SAVEPOINT` is refused with 25P02 until the block ends. First in
/// the hook list, so no later hook runs one: without it an `INSERT` (or `COPY`, `VACUUM`,
/// `SET`) sent after the failure was executed and made durable while the client, by
/// PostgreSQL's rules, takes it as ignored; and datafusion-postgres's transaction hook, last
/// in the list, refuses the rest with 25P01, the code for "no transaction".
pub(crate) struct AbortedTransactionHook;

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
                SqlState::IN_FAILED_SQL_TRANSACTION,
                "current transaction is aborted, commands ignored until end of transaction block",
            )
        })
    }
}

#[async_trait]
impl Answer for AbortedTransactionHook {
    async fn answer(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        Self::refuse(statement, client).map(Err)
    }

    async fn plan(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        Self::refuse(statement, client).map(Err)
    }
}

/// `VACUUM [table]`: one maintenance pass now (compaction, retention, vacuum).
pub(crate) struct VacuumHook {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) maintenance: Arc<dyn Maintenance>,
}

impl VacuumHook {
    fn target(&self, statement: &Statement) -> Option<PgWireResult<Option<String>>> {
        let Statement::Vacuum(vacuum) = statement else {
            return None;
        };
        let Some(name) = &vacuum.table_name else {
            return Some(Ok(None));
        };
        Some(
            if let Some(table) = crate::sql::resolve_table(&self.catalog, name) {
                Ok(Some(table.name.clone()))
            } else {
                Err(user_error(
                    SqlState::UNDEFINED_TABLE,
                    format!("relation \"{name}\" does not exist"),
                ))
            },
        )
    }

    async fn run(&self, statement: &Statement) -> Option<PgWireResult<Response>> {
        let table = match self.target(statement)? {
            Ok(table) => table,
            Err(e) => return Some(Err(e)),
        };
        Some(match self.maintenance.maintain(table.as_deref()).await {
            Ok(_) => Ok(Response::Execution(Tag::new("VACUUM"))),
            Err(e) => Err(user_error(e.sqlstate(), format!("maintenance failed: {e}"))),
        })
    }
}

#[async_trait]
impl Answer for VacuumHook {
    async fn answer(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.run(statement).await
    }

    async fn plan(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        matches!(statement, Statement::Vacuum(_)).then(|| Ok(no_rows_plan()))
    }
}

/// `DELETE` and `UPDATE` of a TimeFusion table, in both protocols: DataFusion plans the
/// statement (the table provider checks it and returns [`crate::sql::mutation::MutationExec`]),
/// this hook runs it and answers PostgreSQL's `DELETE n` / `UPDATE n` (datafusion-postgres
/// answers other statements than `INSERT` with a result set). A session that set
/// [`mutation::ALL_PROJECTS_SETTING`] plans with [`mutation::AllProjects`] in its config.
/// `Parse` is left to DataFusion, whose `Describe` of a DML plan has no columns.
pub(crate) struct MutationHook {
    pub(crate) catalog: Arc<Catalog>,
}

impl MutationHook {
    /// The command tag of `statement`, when it is a `DELETE` or `UPDATE` of one of our tables;
    /// 0A000 for `RETURNING`, which they do not have.
    fn verb(&self, statement: &Statement) -> Option<PgWireResult<&'static str>> {
        use datafusion::sql::sqlparser::ast::{FromTable, TableFactor};
        let (verb, relation, returning) = match statement {
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                (
                    "DELETE",
                    &from.first()?.relation,
                    delete.returning.is_some(),
                )
            }
            Statement::Update(update) => {
                ("UPDATE", &update.table.relation, update.returning.is_some())
            }
            _ => return None,
        };
        let TableFactor::Table { name, .. } = relation else {
            return None;
        };
        crate::sql::resolve_table(&self.catalog, name)?;
        Some(if returning {
            Err(user_error(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("{verb} … RETURNING is not supported"),
            ))
        } else {
            Ok(verb)
        })
    }

    /// Whether the session set [`mutation::ALL_PROJECTS_SETTING`] to a true value.
    fn all_projects(client: &dyn HookClient) -> bool {
        client
            .metadata()
            .get(mutation::ALL_PROJECTS_SETTING)
            .is_some_and(|v| matches!(v.to_lowercase().as_str(), "on" | "true" | "1" | "yes"))
    }

    /// Plans (`plan`: the statement, or the prepared plan with its parameters bound), checks
    /// and runs the mutation, answering its command tag.
    async fn run(
        verb: PgWireResult<&'static str>,
        plan: impl std::future::Future<Output = datafusion::error::Result<LogicalPlan>>,
        context: &SessionContext,
        all_projects: bool,
    ) -> PgWireResult<Response> {
        let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
        let verb = verb?;
        let plan = plan.await.map_err(api)?;
        mutation::check(&plan).map_err(api)?;
        let state = mutation::session(context.state(), all_projects);
        let physical = state.create_physical_plan(&plan).await.map_err(api)?;
        let batches = datafusion::physical_plan::collect(physical, state.task_ctx())
            .await
            .map_err(api)?;
        let rows = batches
            .first()
            .and_then(|b| b.column_by_name("count"))
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .map_or(0, |c| c.value(0) as usize);
        Ok(Response::Execution(Tag::new(verb).with_rows(rows)))
    }
}

#[async_trait]
impl QueryHook for MutationHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let verb = self.verb(statement)?;
        let state = context.state();
        let plan = state.statement_to_plan(datafusion::sql::parser::Statement::Statement(
            Box::new(statement.clone()),
        ));
        Some(Self::run(verb, plan, context, Self::all_projects(client)).await)
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // DataFusion plans the rest.
        self.verb(statement)?.err().map(Err)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let verb = self.verb(statement)?;
        let plan = async { plan.clone().replace_params_with_values(params) };
        Some(Self::run(verb, plan, context, Self::all_projects(client)).await)
    }
}

/// Runs the queries no other hook took, as datafusion-postgres would, keeping the optimized
/// plan of those that mean the same every run ([`plan_cache`]), and the physical plan made
/// from it where it can run again: the same text again skips parsing, planning and
/// optimizing (and physical planning), and reads the tables as they are now. Last of the
/// hooks. A simple query is planned from its text (`SessionContext::sql`); an extended
/// `Execute` of a statement without parameters from the plan `Parse` made, and its rows are
/// encoded in the formats its portal asked for ([`with_result_format`]).
pub(crate) struct PlanCacheHook {
    pub(crate) cache: Arc<plan_cache::PlanCache>,
}

tokio::task_local! {
    /// The result formats of the portal being executed, for [`PlanCacheHook`].
    static RESULT_FORMAT: pgwire::api::portal::Format;
}

/// Runs `work` (datafusion-postgres executing a portal and calling the hooks) with the
/// portal's result `format` at hand for [`PlanCacheHook`]: without it the hook leaves an
/// `Execute` alone.
pub(crate) async fn with_result_format<T>(
    format: pgwire::api::portal::Format,
    work: impl Future<Output = T>,
) -> T {
    RESULT_FORMAT.scope(format, work).await
}

tokio::task_local! {
    /// The key of the kept plan that answered the simple query being run, for
    /// [`recording_plan_key`].
    static ANSWERED_FROM: std::cell::RefCell<Option<Arc<str>>>;
}

/// Runs `work` (datafusion-postgres running one simple query and calling the hooks) and
/// tells which kept plan answered it, if [`PlanCacheHook`] did from a plan it keeps.
pub(crate) async fn recording_plan_key<T>(work: impl Future<Output = T>) -> (T, Option<Arc<str>>) {
    ANSWERED_FROM
        .scope(std::cell::RefCell::new(None), async {
            let out = work.await;
            let key = ANSWERED_FROM.with(|key| key.borrow_mut().take());
            (out, key)
        })
        .await
}

/// How a statement the cache has no plan for is planned.
enum Planning<'a> {
    /// A simple query: from its text, run as datafusion-postgres would when not kept.
    Text,
    /// An extended `Execute`: the plan `Parse` made; left to datafusion-postgres when not
    /// kept.
    Parsed(&'a LogicalPlan),
}

impl PlanCacheHook {
    /// Runs the simple query whose statement is kept under `key` (a
    /// [`plan_cache::Shortcut`]'s), as this hook runs it once the other hooks have left it:
    /// from its kept plans, or from `key`'s text if they were evicted since.
    pub(crate) async fn run_kept(
        &self,
        key: &str,
        context: &SessionContext,
        client: &dyn HookClient,
    ) -> PgWireResult<Response> {
        let format = pgwire::api::portal::Format::UnifiedText;
        match self
            .run(key, Planning::Text, &format, context, client)
            .await
        {
            Some(answer) => answer,
            // `run` answers every simple query itself.
            None => Err(PgWireError::ApiError("a kept query was not run".into())),
        }
    }

    /// `None` when an extended statement's plan cannot be kept: datafusion-postgres runs it.
    async fn run(
        &self,
        key: &str,
        planning: Planning<'_>,
        format: &pgwire::api::portal::Format,
        context: &SessionContext,
        client: &dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
        let state = context.state();
        let kept = self.cache.get(key);
        let reused = match kept.as_ref().and_then(|k| k.physical.as_ref()) {
            Some(physical) => match plan_cache::rebind(physical) {
                Ok(reused) => reused,
                Err(e) => return Some(Err(api(e))),
            },
            None => None,
        };
        let (optimized, physical) = match (kept, reused) {
            (Some(kept), Some(physical)) => {
                self.cache.count_physical(true);
                (kept.logical, physical)
            }
            (kept, _) => {
                let optimized = match kept {
                    Some(kept) => {
                        self.cache.count_physical(false);
                        kept.logical
                    }
                    None => {
                        let plan = match planning {
                            Planning::Text => match state.create_logical_plan(key).await {
                                Ok(plan) => plan,
                                Err(e) => return Some(Err(api(e))),
                            },
                            Planning::Parsed(plan) => plan.clone(),
                        };
                        if !plan_cache::cacheable(&plan) {
                            return match planning {
                                Planning::Text => Some(run_plan(plan, context, client).await),
                                Planning::Parsed(_) => None,
                            };
                        }
                        let optimized = match state.optimize(&plan) {
                            Ok(optimized) => Arc::new(optimized),
                            Err(e) => return Some(Err(api(e))),
                        };
                        self.cache.insert(key, optimized.clone());
                        optimized
                    }
                };
                let physical = match state
                    .query_planner()
                    .create_physical_plan(&optimized, &state)
                    .await
                {
                    Ok(physical) => physical,
                    Err(e) => return Some(Err(api(e))),
                };
                if self.cache.physical_enabled()
                    && let Some(keep) =
                        plan_cache::keepable(&physical, plan_cache::tables_read(&optimized))
                {
                    self.cache.insert_physical(key, keep);
                }
                (optimized, physical)
            }
        };
        let task = Arc::new(datafusion::execution::TaskContext::from(&state));
        Some(
            datafusion::physical_plan::execute_stream(physical, task)
                .map_err(api)
                .and_then(|batches| encode(optimized.schema().as_arrow(), batches, format, client)),
        )
    }
}

/// The rows of `batches` as a query response in `format`: datafusion-postgres's
/// `encode_dataframe` for a physical plan already made.
fn encode(
    schema: &arrow::datatypes::Schema,
    batches: datafusion::execution::SendableRecordBatchStream,
    format: &pgwire::api::portal::Format,
    client: &dyn HookClient,
) -> PgWireResult<Response> {
    use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
    use futures::StreamExt;
    let fields = Arc::new(arrow_schema_to_pg_fields(
        schema,
        format,
        Some(text_options(client)),
    )?);
    let encoded = fields.clone();
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(encoded.clone(), batch),
                Err(e) => Box::new(std::iter::once(Err(PgWireError::ApiError(e.into())))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(pgwire::api::results::QueryResponse::new(
        fields, rows,
    )))
}

/// A [`QueryHook`] of its own rather than an [`Answer`]: the extended protocol's `Execute`
/// runs the plan `Parse` made, in the portal's result formats, and only when it has no
/// parameters (a kept plan holds no parameter values).
#[async_trait]
impl QueryHook for PlanCacheHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if !self.cache.enabled() || !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let text = statement.to_string();
        let format = pgwire::api::portal::Format::UnifiedText;
        let answer = self
            .run(&text, Planning::Text, &format, context, &*client)
            .await;
        if matches!(answer, Some(Ok(_))) && self.cache.contains(&text) {
            let _ = ANSWERED_FROM.try_with(|key| *key.borrow_mut() = Some(text.into()));
        }
        answer
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _context: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        params: &ParamValues,
        context: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let no_params = match params {
            ParamValues::List(values) => values.is_empty(),
            ParamValues::Map(values) => values.is_empty(),
        };
        if !self.cache.enabled() || !no_params || !matches!(statement, Statement::Query(_)) {
            return None;
        }
        let format = RESULT_FORMAT.try_with(Clone::clone).ok()?;
        // Apart from the simple protocol's plans: `Parse` plans a statement its own way
        // (parameters kept and typed, result columns named as PostgreSQL names them).
        let key = format!("\u{1}extended\u{1}{statement}");
        self.run(&key, Planning::Parsed(plan), &format, context, &*client)
            .await
    }
}
