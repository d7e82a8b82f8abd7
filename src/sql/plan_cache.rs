//! Optimized plans of repeated read statements, by text: a dashboard's queries come back
//! with the same text every refresh, and parsing, planning and optimizing one took a quarter
//! of the server's CPU for a one-hour query (BENCHMARKS.md, "Plans of repeated queries
//! cached").
//!
//! An entry is the optimized [`LogicalPlan`] of a statement's text. It is safe to reuse
//! because such a plan holds no data: every table it reads is a
//! [`TimeFusionTable`](crate::sql::table::TimeFusionTable), which takes its buffer snapshot and
//! Delta version when the physical plan is made, each run. Only plans that cannot mean
//! something else on the next run are kept ([`cacheable`]): no function that is not
//! immutable (`now()` is folded into a literal by the optimizer), no placeholder, no table of
//! any other kind (catalog tables may build their rows when they are looked up), no DDL, DML
//! or other statement. The session configuration every plan depends on is shared by all
//! sessions and never changed after start-up (`SET` is kept per session as text:
//! `pgwire::settings`). Entries are evicted least recently used past
//! `TIMEFUSION_PLAN_CACHE_ENTRIES`; texts longer than [`MAX_TEXT`] are not kept.
//!
//! Beside it an entry may keep the physical plan made from it (`TIMEFUSION_PLAN_CACHE_PHYSICAL`):
//! physical planning was the larger half of what a repeated one-hour query still paid. A
//! physical plan is made for one snapshot, so it is kept only when [`keepable`] shows it can
//! run again, and each run [`rebind`]s it: its buffer scans take a snapshot then, and it is
//! made again once a Delta commit has changed a table it reads.
//!
//! A simple query's text, as the client sent it, can lead straight to its entry
//! ([`PlanCache::shortcut`]): the text is parsed, rewritten and printed into the entry's key
//! only the first time, and the result's PostgreSQL column names are kept with it, so a
//! repeated query is neither parsed nor rewritten again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;

use crate::sql::buffer_scan::BufferScanExec;
use crate::sql::table::TimeFusionTable;

/// Statement texts longer than this are planned every time and not kept: the cache's memory
/// is not drawn from the process budget, and a plan grows with its text (a long `IN` list),
/// so this bounds it to about capacity × the plan of a 4 KiB statement.
pub const MAX_TEXT: usize = 4 * 1024;

/// Optimized plans by statement text, least recently used evicted past the capacity.
pub struct PlanCache {
    capacity: usize,
    /// Whether physical plans are kept too ([`keepable`]).
    physical: bool,
    entries: Mutex<Entries>,
    /// `timefusion_plan_cache_lookups_total` by outcome.
    hits: prometheus_client::metrics::counter::Counter,
    misses: prometheus_client::metrics::counter::Counter,
    /// `timefusion_plan_cache_physical_total` by outcome.
    reused: prometheus_client::metrics::counter::Counter,
    made: prometheus_client::metrics::counter::Counter,
    /// `timefusion_plan_cache_shortcuts_total`.
    shortcuts: prometheus_client::metrics::counter::Counter,
}

#[derive(Default)]
struct Entries {
    plans: HashMap<String, Entry>,
    /// Client texts of simple queries whose statement is kept in `plans`.
    shortcuts: HashMap<String, Shortcut>,
    clock: u64,
}

/// Where a simple query's text leads: the key of its plans, and the names PostgreSQL gives
/// its result columns ([`crate::sql::colname::select_names`]).
#[derive(Clone)]
pub struct Shortcut {
    pub key: Arc<str>,
    pub names: Option<Arc<[crate::sql::colname::Item]>>,
}

struct Entry {
    logical: Arc<LogicalPlan>,
    /// The physical plan made from it, as [`keepable`] left it, once one could be kept.
    physical: Option<Arc<dyn ExecutionPlan>>,
    /// Runs of `physical` so far.
    runs: usize,
    used: u64,
}

/// Runs after which a kept physical plan is made again. deltalake's scan node keeps one
/// metrics set across runs and adds its per-partition metrics to it on each (about 1 KB a
/// run): renewing bounds that, at one physical planning in this many runs.
pub const RUNS_PER_PHYSICAL_PLAN: usize = 64;

/// What the cache holds for a statement's text.
pub struct Kept {
    pub logical: Arc<LogicalPlan>,
    /// A physical plan to [`rebind`] before it runs.
    pub physical: Option<Arc<dyn ExecutionPlan>>,
}

impl PlanCache {
    /// A cache of at most `capacity` plans; 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        let metrics = crate::metrics::get();
        let lookups = |outcome: &str| {
            metrics
                .plan_cache_lookups
                .get_or_create(&vec![("outcome", outcome.to_string())])
                .clone()
        };
        let physical = |outcome: &str| {
            metrics
                .plan_cache_physical
                .get_or_create(&vec![("outcome", outcome.to_string())])
                .clone()
        };
        PlanCache {
            capacity,
            physical: true,
            entries: Mutex::new(Entries::default()),
            hits: lookups("hit"),
            misses: lookups("miss"),
            reused: physical("reused"),
            made: physical("made"),
            shortcuts: metrics.plan_cache_shortcuts.clone(),
        }
    }

    /// The cache, keeping physical plans too or not.
    pub fn with_physical(mut self, physical: bool) -> Self {
        self.physical = physical;
        self
    }

    /// Whether physical plans are kept beside logical ones.
    pub fn physical_enabled(&self) -> bool {
        self.enabled() && self.physical
    }

    /// Whether plans are kept at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The plans kept for `text`, marked as just used.
    pub fn get(&self, text: &str) -> Option<Kept> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        let found = entries.plans.get_mut(text).map(|entry| {
            entry.used = now;
            if entry.runs >= RUNS_PER_PHYSICAL_PLAN {
                entry.physical = None;
            }
            entry.runs += 1;
            Kept {
                logical: entry.logical.clone(),
                physical: entry.physical.clone(),
            }
        });
        if found.is_some() {
            self.hits.inc();
        } else {
            self.misses.inc();
        }
        found
    }

    /// Keeps `plan` for `text` (the caller checked [`cacheable`]), evicting the least
    /// recently used entry when full.
    pub fn insert(&self, text: &str, plan: Arc<LogicalPlan>) {
        if !self.enabled() || text.len() > MAX_TEXT {
            return;
        }
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        if entries.plans.len() >= self.capacity && !entries.plans.contains_key(text) {
            let oldest = entries
                .plans
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(text, _)| text.clone());
            if let Some(oldest) = oldest {
                entries.plans.remove(&oldest);
                entries
                    .shortcuts
                    .retain(|_, shortcut| *shortcut.key != *oldest);
            }
        }
        entries.plans.insert(
            text.to_string(),
            Entry {
                logical: plan,
                physical: None,
                runs: 0,
                used: now,
            },
        );
    }

    /// Where simple query `text` leads, if a run of it was answered from a kept plan.
    pub fn shortcut(&self, text: &str) -> Option<Shortcut> {
        if !self.enabled() {
            return None;
        }
        let found = self.lock().shortcuts.get(text).cloned();
        if found.is_some() {
            self.shortcuts.inc();
        }
        found
    }

    /// Remembers that simple query `text` is the statement kept under `shortcut.key`, if that
    /// is kept. At most as many texts as plans are remembered; past that, none more until
    /// evictions make room.
    pub fn remember(&self, text: &str, shortcut: Shortcut) {
        if !self.enabled() || text.len() > MAX_TEXT {
            return;
        }
        let mut entries = self.lock();
        if entries.shortcuts.len() < self.capacity && entries.plans.contains_key(&*shortcut.key) {
            entries.shortcuts.insert(text.to_string(), shortcut);
        }
    }

    /// Whether a plan is kept for `text` (not counted as a lookup).
    pub fn contains(&self, text: &str) -> bool {
        self.lock().plans.contains_key(text)
    }

    /// Keeps `physical` (a [`keepable`] answer) beside the logical plan kept for `text`, if
    /// that is still kept. Physical plans of other texts that a Delta commit has made stale
    /// are dropped: each holds its Delta version's snapshot (the file list), which nothing
    /// else may need any more.
    pub fn insert_physical(&self, text: &str, physical: Arc<dyn ExecutionPlan>) {
        let mut entries = self.lock();
        for entry in entries.plans.values_mut() {
            if entry.physical.as_ref().is_some_and(|p| !current(p)) {
                entry.physical = None;
            }
        }
        if let Some(entry) = entries.plans.get_mut(text) {
            entry.physical = Some(physical);
            entry.runs = 0;
        }
    }

    /// Counts a run of a kept logical plan: its kept physical plan `reused`, or a physical
    /// plan made again.
    pub fn count_physical(&self, reused: bool) {
        if reused {
            self.reused.inc();
        } else {
            self.made.inc();
        }
    }

    /// Plans kept now.
    pub fn len(&self) -> usize {
        self.lock().plans.len()
    }

    /// Whether no plan is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while the lock was held left at worst a stale clock: the map is whole.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `plan` (as planned from a statement's text, before optimization) means the same
/// on every run, so its optimized form can be kept: it reads at least one TimeFusion table
/// and no other table, is a query (no DDL, DML, `EXPLAIN`, extension node or other
/// statement), and calls only immutable functions and no placeholder, subqueries included.
pub fn cacheable(plan: &LogicalPlan) -> bool {
    cacheable_over(plan, &|provider| {
        let provider: &dyn std::any::Any = provider;
        provider.is::<TimeFusionTable>()
    })
}

/// [`cacheable`], with `ours` telling which tables hold no data of their own.
fn cacheable_over(plan: &LogicalPlan, ours: &dyn Fn(&dyn TableProvider) -> bool) -> bool {
    let mut tables = 0usize;
    let mut ok = true;
    let visited = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                tables += 1;
                ok &= source_as_provider(&scan.source).is_ok_and(|p| ours(p.as_ref()));
            }
            LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
            | LogicalPlan::Extension(_) => ok = false,
            _ => {}
        }
        if ok {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    ok &= immutable(e);
                    Ok(go_on(ok))
                })
            })?;
        }
        Ok(go_on(ok))
    });
    visited.is_ok() && ok && tables > 0
}

/// Continue a walk while `ok`, stop at the first refusal.
fn go_on(ok: bool) -> TreeNodeRecursion {
    if ok {
        TreeNodeRecursion::Continue
    } else {
        TreeNodeRecursion::Stop
    }
}

/// Whether `expr` itself (not its children) gives the same on every run.
fn immutable(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::AggregateFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::Placeholder(_) => false,
        _ => true,
    }
}

/// Physical plans whose scans list more Parquet files than this are not kept: a kept plan
/// holds each file's statistics, and its memory is not drawn from the process budget.
pub const MAX_KEPT_FILES: usize = 64;

/// `physical`, made from a kept logical plan reading `tables` TimeFusion tables, as a kept
/// plan holds it (its buffer scans without batches), or `None` when it cannot run again
/// safely. A physical plan is made for one snapshot: its buffer scans hold that snapshot's
/// batches and its Delta scans the files of one version. It can run again when every buffer
/// scan can take a new snapshot and tell whether the Delta version beside it is still the
/// one the buffer complements ([`BufferScanExec::unbound`]), and every node's state is
/// renewed by `reset_state` ([`rebind`]). So it is kept only when:
/// - it has one buffer scan per table the logical plan reads (none was planned away, e.g.
///   into a count answered from statistics);
/// - every node is one of the operators listed here, whose state `reset_state` renews (no
///   join, window or extension of another crate; no query condition cache recorder, so the
///   plan made once the cache has entries is the one kept, with them);
/// - no node but a top-k's own sort holds a dynamic filter: a sort's `reset_state` makes a
///   new one, and a scan below would keep reading the old (DataFusion's
///   `reset_plan_states` has the same limit);
/// - its Parquet scans list at most [`MAX_KEPT_FILES`] files.
pub fn keepable(
    physical: &Arc<dyn ExecutionPlan>,
    tables: usize,
) -> Option<Arc<dyn ExecutionPlan>> {
    let mut scans = 0usize;
    let mut files = 0usize;
    let mut ok = true;
    let visited = physical.apply(|node| {
        ok &= operator_can_run_again(node);
        if let Some(scan) = node.downcast_ref::<BufferScanExec>() {
            scans += 1;
            ok &= scan.can_run_again();
        }
        if let Some((config, _)) = crate::sql::topk_seed::parquet_source(node) {
            files += config
                .file_groups
                .iter()
                .map(|group| group.len())
                .sum::<usize>();
        }
        if ok && !node.is::<datafusion::physical_plan::sorts::sort::SortExec>() {
            node.apply_expressions(&mut |expr| {
                expr.apply(|e| {
                    ok &= !e.is::<DynamicFilterPhysicalExpr>();
                    Ok(go_on(ok))
                })
            })?;
        }
        Ok(go_on(ok))
    });
    if visited.is_err() || !ok || scans != tables || files > MAX_KEPT_FILES {
        return None;
    }
    let mut faithful = true;
    let kept = physical
        .clone()
        .transform_up(|node| {
            if let Some(scan) = node.downcast_ref::<BufferScanExec>() {
                return Ok(match scan.unbound() {
                    Some(unbound) => Transformed::yes(Arc::new(unbound) as _),
                    None => Transformed::no(node),
                });
            }
            if let Some((config, source)) = crate::sql::topk_seed::parquet_source(&node) {
                // The one the plan runs with now has not run yet: a copy built through the
                // public setters must print the same, or it would read differently.
                let fresh = fresh_parquet_source(source)?;
                faithful &= format!("{fresh:?}") == format!("{source:?}");
                return Ok(Transformed::yes(
                    crate::sql::topk_seed::with_parquet_source(config, fresh),
                ));
            }
            Ok(Transformed::no(node))
        })
        .ok()?;
    faithful.then_some(kept.data)
}

/// `source` with metrics of its own. A Parquet source records each file it opens into its
/// metrics set, which every copy shares and nothing empties: a kept plan run over and over
/// through the same source grew by about 30 KB a run (`services_in_hour`).
fn fresh_parquet_source(
    source: &datafusion::datasource::physical_plan::ParquetSource,
) -> Result<datafusion::datasource::physical_plan::ParquetSource> {
    use datafusion::datasource::physical_plan::{FileSource, ParquetSource};
    let mut fresh = ParquetSource::new(source.table_schema().clone())
        .with_table_parquet_options(source.table_parquet_options().clone());
    if let Some(predicate) = datafusion::datasource::physical_plan::FileSource::filter(source) {
        fresh = fresh.with_predicate(predicate);
    }
    if let Some(factory) = source.parquet_file_reader_factory() {
        fresh = fresh.with_parquet_file_reader_factory(factory.clone());
    }
    if let Some(projection) = source.projection()
        && let Some(projected) = fresh.try_pushdown_projection(projection)?
        && let Some(projected) = projected.downcast_ref::<ParquetSource>()
    {
        fresh = projected.clone();
    }
    Ok(fresh)
}

/// Whether `node` is an operator whose `reset_state` renews all it keeps while it runs.
fn operator_can_run_again(node: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::physical_plan::aggregates::AggregateExec;
    use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
    use datafusion::physical_plan::coop::CooperativeExec;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
    use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
    use datafusion::physical_plan::projection::ProjectionExec;
    use datafusion::physical_plan::repartition::RepartitionExec;
    use datafusion::physical_plan::sorts::sort::SortExec;
    use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
    use datafusion::physical_plan::union::UnionExec;
    node.is::<ProjectionExec>()
        || node.is::<FilterExec>()
        || node.is::<AggregateExec>()
        || node.is::<RepartitionExec>()
        || node.is::<SortExec>()
        || node.is::<SortPreservingMergeExec>()
        || node.is::<CoalescePartitionsExec>()
        || node.is::<CooperativeExec>()
        || node.is::<UnionExec>()
        || node.is::<GlobalLimitExec>()
        || node.is::<LocalLimitExec>()
        || node.is::<EmptyExec>()
        || node.is::<PlaceholderRowExec>()
        || node.is::<BufferScanExec>()
        || crate::sql::topk_seed::parquet_source(node).is_some()
        // deltalake's scan node (not exported by name): its `reset_state` is a copy over the
        // new child, and the one piece of state it keeps while running, a run-time file
        // filter, is a dynamic filter in its Parquet scan's predicate, which `keepable`
        // refuses.
        || node.name() == "DeltaScanExec"
}

/// A kept physical plan ready to run: every buffer scan over a snapshot taken now and every
/// node's state renewed (`reset_state`, as DataFusion readies a plan to run again); `None`
/// when a Delta scan's version is no longer the one its buffer side complements, so the
/// plan must be made again.
pub fn rebind(kept: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut stale = false;
    let plan = kept.clone().transform_up(|node| {
        if stale {
            return Ok(Transformed::new(node, false, TreeNodeRecursion::Stop));
        }
        match node.downcast_ref::<BufferScanExec>() {
            Some(scan) => match scan.rebound()? {
                Some(scan) => Ok(Transformed::yes(Arc::new(scan) as _)),
                None => {
                    stale = true;
                    Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                }
            },
            None => match crate::sql::topk_seed::parquet_source(&node) {
                Some((config, source)) => Ok(Transformed::yes(
                    crate::sql::topk_seed::with_parquet_source(
                        config,
                        fresh_parquet_source(source)?,
                    ),
                )),
                None => Ok(Transformed::yes(node.reset_state()?)),
            },
        }
    })?;
    Ok((!stale).then_some(plan.data))
}

/// Whether no Delta commit has made kept plan `kept` stale.
fn current(kept: &Arc<dyn ExecutionPlan>) -> bool {
    let mut current = true;
    let _ = kept.apply(|node| {
        if let Some(scan) = node.downcast_ref::<BufferScanExec>() {
            current &= scan.current();
        }
        Ok(go_on(current))
    });
    current
}

/// TimeFusion tables `plan` reads, subqueries included.
pub fn tables_read(plan: &LogicalPlan) -> usize {
    let mut tables = 0;
    let _ = plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::TableScan(_)) {
            tables += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    });
    tables
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A session with the table `t`, standing for a TimeFusion table, and a memory table `m`.
    fn planner() -> SessionContext {
        let context = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("id", DataType::Utf8, true),
            Field::new("parent_id", DataType::Utf8, true),
        ]));
        context
            .register_table("t", Arc::new(EmptyTable::new(schema.clone())))
            .expect("register");
        let memory = MemTable::try_new(schema, vec![vec![]]).expect("memory table");
        context
            .register_table("m", Arc::new(memory))
            .expect("register");
        context
    }

    async fn kept(context: &SessionContext, sql: &str) -> bool {
        let plan = context
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        cacheable_over(&plan, &|provider| {
            let provider: &dyn std::any::Any = provider;
            provider.is::<EmptyTable>()
        })
    }

    #[tokio::test]
    async fn only_queries_over_timefusion_tables_with_immutable_functions_are_kept() {
        let context = planner();
        for sql in [
            "SELECT count(*) FROM t WHERE project_id = 'p'",
            "SELECT date_trunc('hour', timestamp), count(*) FROM t \
             WHERE timestamp >= '2026-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1",
            "SELECT id FROM t WHERE id IN (SELECT parent_id FROM t) LIMIT 3",
        ] {
            assert!(kept(&context, sql).await, "{sql}");
        }
        for sql in [
            // Not immutable: the optimizer folds `now()` into this run's time.
            "SELECT count(*) FROM t WHERE timestamp > now() - interval '1 hour'",
            "SELECT random() FROM t",
            // In a subquery too.
            "SELECT count(*) FROM t WHERE timestamp > (SELECT now())",
            "SELECT id FROM t WHERE id IN (SELECT parent_id FROM t WHERE random() < 0.5)",
            // Another kind of table, alone or beside ours.
            "SELECT count(*) FROM m",
            "SELECT count(*) FROM t JOIN m ON true",
            // No table at all.
            "SELECT 1",
            // Not a query.
            "EXPLAIN SELECT count(*) FROM t",
            // A placeholder.
            "SELECT count(*) FROM t WHERE project_id = $1",
        ] {
            assert!(!kept(&context, sql).await, "{sql}");
        }
    }

    #[test]
    fn a_fresh_parquet_source_reads_the_same_with_metrics_of_its_own() {
        use datafusion::datasource::physical_plan::{FileSource, ParquetSource};
        use datafusion::physical_expr::expressions::{col, lit};
        use datafusion::physical_plan::metrics::MetricBuilder;

        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let predicate = datafusion::physical_expr::expressions::binary(
            col("a", &schema).expect("a"),
            datafusion::logical_expr::Operator::Gt,
            lit(3i64),
            &schema,
        )
        .expect("a > 3");
        let mut options = datafusion::config::TableParquetOptions::default();
        options.global.pushdown_filters = true;
        let source = ParquetSource::new(schema.clone())
            .with_table_parquet_options(options)
            .with_predicate(predicate);
        let projection =
            datafusion::physical_expr::projection::ProjectionExprs::from_indices(&[1], &schema);
        let source = source
            .try_pushdown_projection(&projection)
            .expect("projection")
            .expect("taken");
        let source = source
            .downcast_ref::<ParquetSource>()
            .expect("a parquet source");

        let fresh = fresh_parquet_source(source).expect("fresh");
        assert_eq!(format!("{fresh:?}"), format!("{source:?}"));
        MetricBuilder::new(source.metrics()).counter("files_opened", 0);
        assert_eq!(source.metrics().clone_inner().iter().count(), 1);
        assert_eq!(fresh.metrics().clone_inner().iter().count(), 0);
    }

    /// A plan that reads nothing, for the cache's bookkeeping.
    fn empty_plan() -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::EmptyRelation(
            datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(datafusion::common::DFSchema::empty()),
            },
        ))
    }

    #[test]
    fn the_least_recently_used_plan_is_evicted_and_long_texts_are_not_kept() {
        let cache = PlanCache::new(2);
        let plan = empty_plan();
        cache.insert("a", plan.clone());
        cache.insert("b", plan.clone());
        assert!(cache.get("a").is_some());
        cache.insert("c", plan.clone());
        assert!(cache.get("b").is_none(), "b was used least recently");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        assert_eq!(cache.len(), 2);
        cache.insert(&"x".repeat(MAX_TEXT + 1), plan.clone());
        assert!(cache.get(&"x".repeat(MAX_TEXT + 1)).is_none());
        cache.insert(&"x".repeat(MAX_TEXT), plan.clone());
        assert!(cache.get(&"x".repeat(MAX_TEXT)).is_some());

        let off = PlanCache::new(0);
        off.insert("a", plan);
        assert!(off.get("a").is_none() && off.is_empty());
    }

    #[test]
    fn a_shortcut_leads_to_a_kept_plan_and_goes_with_it() {
        let cache = PlanCache::new(2);
        let plan = empty_plan();
        let to = |key: &str| Shortcut {
            key: key.into(),
            names: None,
        };
        // Only to a plan that is kept.
        cache.remember("select  1 from a", to("a"));
        assert!(cache.shortcut("select  1 from a").is_none());
        cache.insert("a", plan.clone());
        cache.remember("select  1 from a", to("a"));
        cache.remember("SELECT 1 FROM a", to("a"));
        let found = cache.shortcut("select  1 from a").expect("remembered");
        assert_eq!(&*found.key, "a");
        // No more texts than plans.
        cache.insert("b", plan.clone());
        cache.remember("b text", to("b"));
        assert!(cache.shortcut("b text").is_none());
        // Evicting a plan forgets the texts that led to it.
        assert!(cache.get("b").is_some());
        cache.insert("c", plan);
        assert!(cache.get("a").is_none());
        assert!(cache.shortcut("select  1 from a").is_none());
        assert!(cache.shortcut("SELECT 1 FROM a").is_none());
        cache.remember("c text", to("c"));
        assert!(cache.shortcut("c text").is_some());
    }
}
