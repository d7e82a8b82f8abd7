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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};

use crate::sql::table::TimeFusionTable;

/// Statement texts longer than this are planned every time and not kept: the cache's memory
/// is not drawn from the process budget, and a plan grows with its text (a long `IN` list),
/// so this bounds it to about capacity × the plan of a 4 KiB statement.
pub const MAX_TEXT: usize = 4 * 1024;

/// Optimized plans by statement text, least recently used evicted past the capacity.
pub struct PlanCache {
    capacity: usize,
    entries: Mutex<Entries>,
    /// `timefusion_plan_cache_lookups_total` by outcome.
    hits: prometheus_client::metrics::counter::Counter,
    misses: prometheus_client::metrics::counter::Counter,
}

#[derive(Default)]
struct Entries {
    plans: HashMap<String, (Arc<LogicalPlan>, u64)>,
    clock: u64,
}

impl PlanCache {
    /// A cache of at most `capacity` plans; 0 keeps none.
    pub fn new(capacity: usize) -> Self {
        let lookups = |outcome: &str| {
            crate::metrics::get()
                .plan_cache_lookups
                .get_or_create(&vec![("outcome", outcome.to_string())])
                .clone()
        };
        PlanCache {
            capacity,
            entries: Mutex::new(Entries::default()),
            hits: lookups("hit"),
            misses: lookups("miss"),
        }
    }

    /// Whether plans are kept at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The plan kept for `text`, marked as just used.
    pub fn get(&self, text: &str) -> Option<Arc<LogicalPlan>> {
        if !self.enabled() {
            return None;
        }
        let mut entries = self.lock();
        entries.clock += 1;
        let now = entries.clock;
        let found = entries.plans.get_mut(text).map(|(plan, used)| {
            *used = now;
            plan.clone()
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
                .min_by_key(|(_, (_, used))| *used)
                .map(|(text, _)| text.clone());
            if let Some(oldest) = oldest {
                entries.plans.remove(&oldest);
            }
        }
        entries.plans.insert(text.to_string(), (plan, now));
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
                    Ok(if ok {
                        TreeNodeRecursion::Continue
                    } else {
                        TreeNodeRecursion::Stop
                    })
                })
            })?;
        }
        Ok(if ok {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    visited.is_ok() && ok && tables > 0
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
    fn the_least_recently_used_plan_is_evicted_and_long_texts_are_not_kept() {
        let cache = PlanCache::new(2);
        let plan = Arc::new(LogicalPlan::EmptyRelation(
            datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(datafusion::common::DFSchema::empty()),
            },
        ));
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
}
