//! The SQL layer: the DataFusion session every front end plans and runs statements in.
//!
//! It owns the table provider that serves a table as the union of a buffer snapshot and the
//! Delta table at the version that snapshot complements ([`table`]), the `INSERT` fast path for
//! literal rows ([`values`]), the catalog relations and functions PostgreSQL tools read
//! ([`catalog`], [`functions`]), the sessions as `pg_stat_activity` and kin ([`activity`],
//! served by the front end through [`activity::Backends`]), rewrites of statements DataFusion
//! cannot plan as written ([`srf`], [`pg_forms`], [`colname`], [`statement_text`],
//! [`text_cast`], [`subquery`], [`whole_row`]), and the classification of every error a
//! statement can raise into a SQLSTATE ([`error`]).
//!
//! It depends on the engine only (the buffer, the write path, storage statistics) and knows no
//! wire protocol: nothing here imports the `pgwire`, `flight` or `server` modules.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::cache::Cache;
use datafusion::execution::cache::cache_manager;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::planner::{IdentNormalizer, object_name_to_table_reference};
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion_postgres::auth::AuthManager;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;

use crate::engine::Committed;
use crate::engine::buffer::Buffer;
use crate::engine::core::Mutations;
use crate::engine::ingest::Ingest;
use crate::engine::schema::{Catalog, TableSchema};
use crate::engine::storage::Storage;

pub mod activity;
pub mod buffer_scan;
pub mod catalog;
pub mod colname;
pub mod condition_cache;
pub mod error;
pub mod functions;
pub mod insert;
pub mod lateral;
pub mod literal_values;
pub mod mutation;
pub mod page_index;
pub mod pg_forms;
pub mod plan_cache;
pub mod pruning;
pub mod reg_names;
pub mod slots;
pub mod srf;
pub mod statement_text;
pub mod subquery;
pub mod system;
pub mod table;
pub mod text_cast;
pub mod topk_seed;
pub mod values;
pub mod whole_row;

/// Whether an expression of `plan`, or of a plan inside one of its subqueries, is `found`: the
/// analyzer rules' test before they rewrite (and allocate) anything.
pub(crate) fn any_expression(
    plan: &datafusion::logical_expr::LogicalPlan,
    found: impl Fn(&datafusion::logical_expr::Expr) -> bool,
) -> Result<bool> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut any = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                any = found(e);
                Ok(if any {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })
        })
    })?;
    Ok(any)
}

/// The one database TimeFusion serves, as `current_database()`, `pg_database`, `\l`,
/// `information_schema`'s `table_catalog` and Flight SQL's catalog name it. PostgreSQL's
/// default database name, so a tool that connects to `postgres` (the usual `dbname`) finds
/// itself in the database it asked for. A connection naming another database is served
/// the same one.
pub const DATABASE: &str = "postgres";

/// The version string clients see in `server_version` and `version()`.
pub const SERVER_VERSION: &str = "15.0 (TimeFusion)";

/// What queries may use of the machine.
#[derive(Clone)]
pub struct QueryLimits {
    /// The pool every query's working state is reserved from ([`query_pool`]).
    pub pool: Arc<dyn MemoryPool>,
    /// Where sorts and aggregations spill.
    pub spill_dir: std::path::PathBuf,
    /// Decoded Parquet footers and page indexes every scan reads through ([`metadata_cache`]).
    pub metadata_cache: Arc<MetadataCache>,
    /// Where repeated filters matched in each data file ([`condition_cache`]).
    pub condition_cache: Arc<condition_cache::ConditionCache>,
}

/// DataFusion's file metadata cache, kept by its concrete type so its use can be shown.
pub type MetadataCache =
    DefaultCache<object_store::path::Path, cache_manager::CachedFileMetadataEntry>;

/// The file metadata cache of every query, of `bytes` (least recently used evicted).
pub fn metadata_cache(bytes: usize) -> Arc<MetadataCache> {
    Arc::new(DefaultCache::new(bytes).with_name("parquet_metadata"))
}

/// One pool for every query, of `bytes`: fair shares for the operators that can spill, and
/// the five largest consumers named when a query does not fit.
pub fn query_pool(bytes: usize) -> Arc<dyn MemoryPool> {
    Arc::new(TrackConsumersPool::new(
        FairSpillPool::new(bytes),
        std::num::NonZeroUsize::new(5).expect("five"),
    ))
}

/// What the system relations show: the object-store cache (`timefusion_cache`), the memory
/// budget (`timefusion_memory`) and the front end's sessions (`pg_stat_activity`, [`activity`]).
pub struct Observed {
    pub storage: Arc<Storage>,
    pub memory: Arc<crate::memory::Memory>,
    pub sessions: Arc<dyn activity::Backends>,
    /// What each table stores (`pg_relation_size` and kin, [`functions::size`]).
    pub sizes: Arc<dyn crate::engine::core::Sizes>,
}

/// The session every statement of every front end is planned in: one table provider per
/// table of `catalog`, the system relations over `observed`, the PostgreSQL catalog and
/// TimeFusion's functions and rewrites.
pub async fn session_context(
    catalog: &Catalog,
    buffer: &Arc<Buffer<Committed>>,
    ingest: &Arc<Ingest>,
    mutations: &Arc<dyn Mutations>,
    observed: Observed,
    limits: &QueryLimits,
) -> Result<SessionContext> {
    let mut config = SessionConfig::new()
        // `catalog` serves information_schema, in PostgreSQL's shape.
        .with_information_schema(false)
        .with_default_catalog_and_schema(DATABASE, "public");
    // `now()` and `::timestamptz` are `timestamp with time zone` in UTC, as in PostgreSQL with
    // the UTC session time zone that queries compute in; DataFusion's default (no zone) made
    // them `timestamp without time zone`.
    config.options_mut().execution.time_zone = Some("UTC".to_string());
    // Statements the front ends plan from text are PostgreSQL's: with DataFusion's default
    // (generic) dialect, `?`, `?|` and `?&` (jsonb key tests) read as placeholders.
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    let metadata: Arc<cache_manager::FileMetadataCache> = limits.metadata_cache.clone();
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(
            cache_manager::CacheManagerConfig::default()
                .with_file_metadata_cache(Some(metadata))
                .with_metadata_cache_limit(limits.metadata_cache.cache_limit()),
        )
        .with_memory_pool(limits.pool.clone())
        .with_temp_file_path(&limits.spill_dir)
        .build_arc()?;
    let mut context = SessionContext::new_with_config_rt(config, runtime);
    for schema in catalog.tables() {
        let table = table::TimeFusionTable::new(
            schema.clone(),
            buffer.clone(),
            ingest.clone(),
            mutations.clone(),
        );
        context.register_table(schema.name.as_str(), Arc::new(table))?;
    }
    context.register_table(
        "timefusion_cache",
        Arc::new(system::CacheStatsTable::new(observed.storage)),
    )?;
    context.register_table(
        "timefusion_memory",
        Arc::new(system::MemoryTable::new(observed.memory)),
    )?;
    // The role provider goes in unwrapped: datafusion-pg-catalog 0.19's
    // `impl PgCatalogContextProvider for Arc<T>` calls `self.roles()` / `self.role()` on the
    // `Arc` itself, not on `T`, so any `pg_roles` query through an `Arc` recursed until the
    // stack overflowed and took the process down. `AuthManager` is cheap to clone (shared maps).
    setup_pg_catalog(&context, DATABASE, AuthManager::default()).map_err(|e| *e)?;
    // `json` / `jsonb`, before the type planner the catalog just set (`regclass` and kin).
    {
        let state = context.state_ref();
        let mut builder =
            datafusion::execution::SessionStateBuilder::new_from_existing(state.read().clone());
        let next = builder.type_planner().take();
        let json = functions::json_build::JsonTypes { next };
        // Top-k scans newest-first, placed right after DataFusion's own sort pushdown.
        let mut rules = state.read().physical_optimizers().to_vec();
        let at = rules
            .iter()
            .position(|r| r.name() == "PushdownSort")
            .map_or(rules.len(), |i| i + 1);
        rules.insert(at, Arc::new(buffer_scan::TopKNewestFirst));
        // Once every filter is in the scans, before the final check of the plan.
        let at = rules
            .iter()
            .position(|r| r.name() == "SanityCheckPlan")
            .unwrap_or(rules.len());
        rules.insert(
            at,
            Arc::new(condition_cache::ConditionCacheRule::new(
                limits.condition_cache.clone(),
                limits.metadata_cache.clone(),
            )),
        );
        *state.write() = builder
            .with_type_planner(Arc::new(json))
            .with_physical_optimizer_rules(rules)
            .build();
    }
    let monitoring = activity::register(&context, observed.sessions).await?;
    catalog::register(&context, DATABASE, monitoring)?;
    // After the catalog set-up, so TimeFusion's functions win over any of the same name.
    functions::register(&mut context)?;
    let tables = catalog.tables().map(|t| t.name.clone()).collect();
    for function in functions::size::functions(observed.sizes, tables, DATABASE) {
        context.register_udf(function);
    }
    srf::register(&context);
    text_cast::register(&context);
    subquery::register(&context);
    colname::register(&context);
    Ok(context)
}

/// The functions a change record's expressions are read back with at start-up, before the
/// session exists (`engine::change`): DataFusion's and TimeFusion's own
/// ([`functions::register`]). A mutation calling any other function of the session (the
/// catalog's, `pg_relation_size` …) is not logged but takes the Delta path.
pub fn change_functions() -> Result<Arc<datafusion::execution::TaskContext>> {
    let mut config = SessionConfig::new();
    config.options_mut().execution.time_zone = Some("UTC".to_string());
    let mut context = SessionContext::new_with_config(config);
    functions::register(&mut context)?;
    Ok(context.task_ctx())
}

/// A column or other name part as DataFusion's planner normalizes it: in lower case unless
/// quoted.
pub fn normalize_ident(ident: &Ident) -> String {
    IdentNormalizer::new(true).normalize(ident.clone())
}

/// The table of `catalog` that `name` names as a client wrote it (`t`, `public.t`, `"T"`,
/// `postgres.public.t`), resolved as DataFusion's planner resolves names: unquoted parts in
/// lower case, quoted ones as written, in the default schema `public` of [`DATABASE`].
pub fn resolve_table<'a>(catalog: &'a Catalog, name: &ObjectName) -> Option<&'a Arc<TableSchema>> {
    let reference = object_name_to_table_reference(name.clone(), true).ok()?;
    let in_default_schema = reference.schema().is_none_or(|schema| schema == "public")
        && reference
            .catalog()
            .is_none_or(|database| database == DATABASE);
    in_default_schema
        .then(|| catalog.get(reference.table()))
        .flatten()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn name(text: &str) -> ObjectName {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(text)
            .and_then(|mut p| p.parse_object_name(false))
            .expect("a name")
    }

    #[test]
    fn table_names_resolve_as_the_planner_resolves_them() {
        let catalog = Catalog::load(None).expect("catalog");
        for found in [
            "otel_logs_and_spans",
            "OTEL_LOGS_AND_SPANS",
            "public.otel_logs_and_spans",
            "\"otel_logs_and_spans\"",
            "postgres.public.otel_logs_and_spans",
        ] {
            assert!(resolve_table(&catalog, &name(found)).is_some(), "{found}");
        }
        for missing in [
            "\"OTEL_LOGS_AND_SPANS\"",
            "other.otel_logs_and_spans",
            "elsewhere.public.otel_logs_and_spans",
            "nope",
        ] {
            assert!(
                resolve_table(&catalog, &name(missing)).is_none(),
                "{missing}"
            );
        }
    }
}
