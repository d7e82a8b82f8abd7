//! The buffer side of a table scan ([`BufferScanExec`]), and the physical optimizer rule that
//! lets a top-k (`ORDER BY <time> DESC LIMIT k`, or ascending) read both sides of a table's
//! union newest-first ([`TopKNewestFirst`]).
//!
//! A buffered batch knows the time range of its bucket ([`crate::engine::buffer::Snapshot`]).
//! Asked for an order on the time column, the scan serves batches newest-first (oldest-first
//! for ascending), so the top-k's heap is full after the first batches; and it skips every
//! batch the top-k's dynamic filter (`time > k-th newest so far`) rules out by its range,
//! without touching its rows. On the Delta side DataFusion's Parquet source already knows how
//! to order files and row groups by their statistics for such a sort and to prune the rest by
//! the same dynamic filter, but DataFusion's own sort pushdown stops at the `UnionExec` of the
//! two sides and at deltalake's scan node: the rule carries the order through both.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column as LogicalColumn, Result, project_schema};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::DynamicFilterTracking;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_expr_common::physical_expr::snapshot_generation;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{
    Boundedness, EmissionType, SchedulingType, replace_children_if_necessary,
};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sort_pushdown::SortOrderPushdownResult;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};

/// One buffered batch (all of the table's columns) and bounds of its rows' event times.
#[derive(Debug, Clone)]
pub struct TimedBatch {
    pub batch: RecordBatch,
    /// Microseconds, inclusive.
    pub min: i64,
    pub max: i64,
}

/// How a kept plan's buffer scan reads the buffer again on a later run
/// ([`crate::sql::plan_cache`]): a snapshot taken now with the scan's own arguments.
pub trait Rescan: fmt::Debug + Send + Sync {
    /// The batches of a snapshot taken now, with the chunks the id filters left out (when
    /// the query looks ids up); `None` when the Delta scan planned beside this one no longer
    /// complements the buffer (a flush, merge or mutation committed since), so the plan must
    /// be made again.
    fn rescan(&self) -> Result<Option<(Vec<TimedBatch>, Option<usize>)>>;

    /// Whether the Delta scan planned beside this one still complements the buffer (no
    /// commit since), without taking a snapshot.
    fn current(&self) -> bool;
}

/// A scan of buffered batches in `partitions`, projected onto `projection`.
#[derive(Debug, Clone)]
pub struct BufferScanExec {
    partitions: Vec<Vec<TimedBatch>>,
    projection: Option<Vec<usize>>,
    /// The projected schema (this node's output).
    schema: SchemaRef,
    /// The table's time column, `Timestamp(Microsecond, "UTC")`.
    time_column: String,
    /// Whether the batches were reordered for a top-k (shown by `EXPLAIN`).
    order: Option<Order>,
    /// The top-k's filter, if one was pushed down: batches it rules out are skipped.
    dynamic_filter: Option<Arc<dyn PhysicalExpr>>,
    /// Chunks the id filters left out at planning, when the query looked up ids (`EXPLAIN`).
    id_skipped: Option<usize>,
    /// How a kept plan takes this scan's batches again ([`BufferScanExec::rebound`]).
    rescan: Option<Arc<dyn Rescan>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    NewestFirst,
    OldestFirst,
}

impl Order {
    fn sort(self, batches: &mut [TimedBatch]) {
        match self {
            Order::NewestFirst => batches.sort_by_key(|b| std::cmp::Reverse(b.max)),
            Order::OldestFirst => batches.sort_by_key(|b| b.min),
        }
    }
}

impl BufferScanExec {
    /// `batches` spread over at most `target_partitions` partitions.
    pub fn try_new(
        batches: Vec<TimedBatch>,
        table_schema: &SchemaRef,
        projection: Option<&Vec<usize>>,
        time_column: &str,
        target_partitions: usize,
    ) -> Result<Self> {
        let schema = project_schema(table_schema, projection)?;
        let count = target_partitions.max(1).min(batches.len().max(1));
        let properties = Arc::new(
            PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(count),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )
            .with_scheduling_type(SchedulingType::Cooperative),
        );
        let mut scan = BufferScanExec {
            partitions: vec![Vec::new(); count],
            projection: projection.cloned(),
            schema,
            time_column: time_column.to_string(),
            order: None,
            dynamic_filter: None,
            id_skipped: None,
            rescan: None,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        };
        scan.deal(batches);
        Ok(scan)
    }

    /// Deals `batches` round-robin over the partitions, so that with batches in top-k order
    /// every partition starts with some of the first.
    fn deal(&mut self, batches: Vec<TimedBatch>) {
        let count = self.partitions.len();
        self.partitions.iter_mut().for_each(Vec::clear);
        for (i, batch) in batches.into_iter().enumerate() {
            self.partitions[i % count].push(batch);
        }
    }

    /// Records (for `EXPLAIN`) how many chunks the id filters left out of this scan.
    pub fn with_id_skipped(mut self, skipped: Option<usize>) -> Self {
        self.id_skipped = skipped;
        self
    }

    /// Lets a kept plan read the buffer again through `rescan` ([`BufferScanExec::rebound`]).
    pub fn with_rescan(mut self, rescan: Arc<dyn Rescan>) -> Self {
        self.rescan = Some(rescan);
        self
    }

    /// This scan as a kept plan holds it: without batches, so a kept plan pins no buffered
    /// rows. `None` when it cannot read the buffer again: no [`Rescan`], or a top-k's dynamic
    /// filter, which the top-k above renews on a later run but this scan would keep.
    pub fn unbound(&self) -> Option<Self> {
        if !self.can_run_again() {
            return None;
        }
        let mut scan = self.clone();
        scan.partitions.iter_mut().for_each(Vec::clear);
        scan.metrics = ExecutionPlanMetricsSet::new();
        Some(scan)
    }

    /// This scan over a snapshot taken now, in the same partitions (the plan above was made
    /// for their count) and the same order; `None` when the plan must be made again
    /// ([`Rescan::rescan`]).
    pub fn rebound(&self) -> Result<Option<Self>> {
        let Some(rescan) = &self.rescan else {
            return Ok(None);
        };
        let Some((mut batches, id_skipped)) = rescan.rescan()? else {
            return Ok(None);
        };
        if let Some(order) = self.order {
            order.sort(&mut batches);
        }
        let mut scan = self.clone();
        scan.id_skipped = id_skipped;
        scan.metrics = ExecutionPlanMetricsSet::new();
        scan.deal(batches);
        Ok(Some(scan))
    }

    /// Whether a kept plan may hold this scan ([`BufferScanExec::unbound`]): it has a
    /// [`Rescan`] and no dynamic filter.
    pub fn can_run_again(&self) -> bool {
        self.rescan.is_some() && self.dynamic_filter.is_none()
    }

    /// Whether a kept plan with this scan could still run ([`Rescan::current`]).
    pub fn current(&self) -> bool {
        self.rescan.as_ref().is_some_and(|r| r.current())
    }

    /// The time column's index in this node's output, if it is projected.
    fn time_index(&self) -> Option<usize> {
        self.schema
            .column_with_name(&self.time_column)
            .map(|(i, _)| i)
    }
}

impl DisplayAs for BufferScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let batches: usize = self.partitions.iter().map(Vec::len).sum();
        write!(
            f,
            "BufferScanExec: partitions={}, batches={batches}",
            self.partitions.len()
        )?;
        match self.order {
            Some(Order::NewestFirst) => write!(f, ", newest_first")?,
            Some(Order::OldestFirst) => write!(f, ", oldest_first")?,
            None => {}
        }
        if let Some(filter) = &self.dynamic_filter {
            write!(f, ", skip_by={filter}")?;
        }
        if let Some(skipped) = self.id_skipped {
            write!(f, ", id_filter_skipped={skipped}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for BufferScanExec {
    fn name(&self) -> &str {
        "BufferScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.dynamic_filter {
            Some(filter) => f(filter),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batches = self.partitions.get(partition).cloned().unwrap_or_default();
        let skipped = MetricBuilder::new(&self.metrics).counter("batches_skipped", partition);
        let mut skipper = match (&self.dynamic_filter, self.time_index()) {
            (Some(filter), Some(_)) => Some(Skipper::new(
                filter.clone(),
                self.schema.clone(),
                &self.time_column,
                &batches,
                skipped,
            )),
            _ => None,
        };
        let projection = self.projection.clone();
        // Rows of a kept batch are filtered too: a batch's range says little when its rows
        // arrived out of time order (a backfill's chunk spans its whole day), and the rows
        // the top-k's threshold rules out would otherwise all pass through the filters
        // above to the top-k.
        let row_filter = skipper.as_ref().map(|s| s.filter.clone());
        let rows_skipped = MetricBuilder::new(&self.metrics).counter("rows_skipped", partition);
        let rows = batches
            .into_iter()
            .enumerate()
            .filter(move |(i, _)| skipper.as_mut().is_none_or(|s| s.keeps(*i)))
            .map(move |(_, timed)| {
                let batch = match &projection {
                    Some(columns) => timed.batch.project(columns)?,
                    None => timed.batch,
                };
                match &row_filter {
                    Some(filter) => keep_rows(filter, batch, &rows_skipped),
                    None => Ok(batch),
                }
            })
            .filter(|batch| batch.as_ref().map_or(true, |b| b.num_rows() > 0));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(rows),
        )))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        // Only the top-k's dynamic filter is taken, and only to skip whole batches: every
        // filter stays the parent's to apply.
        let filters: Vec<_> = child_pushdown_result
            .parent_filters
            .iter()
            .map(|f| f.filter.clone())
            .collect();
        let answer = FilterPushdownPropagation::with_parent_pushdown_result(vec![
            PushedDown::No;
            filters.len()
        ]);
        let dynamic = filters
            .into_iter()
            .find(|f| DynamicFilterTracking::classify(f).contains_dynamic_filter());
        match dynamic {
            Some(filter) if phase == FilterPushdownPhase::Post && self.time_index().is_some() => {
                let mut scan = self.clone();
                scan.dynamic_filter = Some(filter);
                Ok(answer.with_updated_node(Arc::new(scan)))
            }
            _ => Ok(answer),
        }
    }

    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
    ) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        let Some(first) = order.first() else {
            return Ok(SortOrderPushdownResult::Unsupported);
        };
        let on_time = first
            .expr
            .downcast_ref::<Column>()
            .is_some_and(|c| Some(c.index()) == self.time_index());
        if !on_time {
            return Ok(SortOrderPushdownResult::Unsupported);
        }
        let mut batches: Vec<TimedBatch> = self.partitions.iter().flatten().cloned().collect();
        let order = if first.options.descending {
            Order::NewestFirst
        } else {
            Order::OldestFirst
        };
        order.sort(&mut batches);
        let mut scan = self.clone();
        scan.order = Some(order);
        scan.deal(batches);
        Ok(SortOrderPushdownResult::Inexact {
            inner: Arc::new(scan),
        })
    }
}

/// Which batches of one partition a dynamic filter still keeps, re-decided whenever the
/// filter changes (a top-k tightens it as its heap fills).
struct Skipper {
    filter: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
    ranges: TimeRanges,
    generation: Option<u64>,
    keep: Vec<bool>,
    skipped: Count,
}

impl Skipper {
    fn new(
        filter: Arc<dyn PhysicalExpr>,
        schema: SchemaRef,
        time_column: &str,
        batches: &[TimedBatch],
        skipped: Count,
    ) -> Self {
        let zone = match schema.field_with_name(time_column).map(|f| f.data_type()) {
            Ok(DataType::Timestamp(_, zone)) => zone.clone(),
            _ => None,
        };
        let ranges = TimeRanges {
            column: time_column.to_string(),
            min: Arc::new(
                TimestampMicrosecondArray::from_iter_values(batches.iter().map(|b| b.min))
                    .with_timezone_opt(zone.clone()),
            ),
            max: Arc::new(
                TimestampMicrosecondArray::from_iter_values(batches.iter().map(|b| b.max))
                    .with_timezone_opt(zone),
            ),
            rows: Arc::new(UInt64Array::from_iter_values(
                batches.iter().map(|b| b.batch.num_rows() as u64),
            )),
        };
        Skipper {
            filter,
            schema,
            ranges,
            generation: None,
            keep: vec![true; batches.len()],
            skipped,
        }
    }

    fn keeps(&mut self, i: usize) -> bool {
        let generation = snapshot_generation(&self.filter);
        if self.generation != Some(generation) {
            self.generation = Some(generation);
            // A filter that cannot be evaluated on ranges keeps everything.
            self.keep = PruningPredicateBuilder::new()
                .with_file_schema(self.schema.clone())
                .try_build(self.filter.clone())
                .and_then(|predicate| predicate.prune(&self.ranges))
                .unwrap_or_else(|_| vec![true; self.keep.len()]);
        }
        let keep = self.keep.get(i).copied().unwrap_or(true);
        if !keep {
            self.skipped.add(1);
        }
        keep
    }
}

/// `batch`'s rows that pass `filter` (the top-k's threshold; `true` until it has one).
fn keep_rows(
    filter: &Arc<dyn PhysicalExpr>,
    batch: RecordBatch,
    skipped: &Count,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    // Until the top-k has a threshold its filter is the literal `true`: nothing to build.
    let keep = match filter.evaluate(&batch)? {
        datafusion::logical_expr::ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Boolean(Some(true)),
        ) => return Ok(batch),
        value => value.into_array(rows)?,
    };
    let Some(keep) = keep.as_any().downcast_ref::<arrow::array::BooleanArray>() else {
        return Ok(batch);
    };
    let kept = keep.true_count();
    if kept == rows {
        return Ok(batch);
    }
    skipped.add(rows - kept);
    Ok(arrow::compute::filter_record_batch(&batch, keep)?)
}

/// The time ranges of a partition's batches, as pruning statistics (one container a batch).
struct TimeRanges {
    column: String,
    min: ArrayRef,
    max: ArrayRef,
    rows: ArrayRef,
}

impl PruningStatistics for TimeRanges {
    fn min_values(&self, column: &LogicalColumn) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.min.clone())
    }

    fn max_values(&self, column: &LogicalColumn) -> Option<ArrayRef> {
        (column.name == self.column).then(|| self.max.clone())
    }

    fn num_containers(&self) -> usize {
        self.rows.len()
    }

    fn null_counts(&self, column: &LogicalColumn) -> Option<ArrayRef> {
        // The time column is never null.
        (column.name == self.column)
            .then(|| Arc::new(UInt64Array::from(vec![0; self.rows.len()])) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(self.rows.clone())
    }

    fn contained(
        &self,
        _column: &LogicalColumn,
        _values: &std::collections::HashSet<datafusion::common::ScalarValue>,
    ) -> Option<arrow::array::BooleanArray> {
        None
    }
}

/// Carries a top-k's order from its `SortExec` through the table's union to the buffer scan
/// and into deltalake's Parquet scan, where DataFusion's sort pushdown cannot reach. Runs
/// after DataFusion's own `PushdownSort` and before the filter pushdown that hands the top-k's
/// dynamic filter to the scans. The `SortExec` stays: the scans only read in a better order.
#[derive(Debug, Default)]
pub struct TopKNewestFirst;

impl PhysicalOptimizerRule for TopKNewestFirst {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !config.optimizer.enable_sort_pushdown {
            return Ok(plan);
        }
        plan.transform_down(|plan| {
            let Some(sort) = plan.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(plan));
            };
            if sort.fetch().is_none() {
                return Ok(Transformed::no(plan));
            }
            let order: Vec<PhysicalSortExpr> = sort.expr().iter().cloned().collect();
            let Some(input) = push_order(sort.input(), &order)? else {
                return Ok(Transformed::no(plan));
            };
            let sort = replace_children_if_necessary(plan.clone(), vec![input])?;
            let plan = crate::sql::topk_seed::TopKSeedExec::wrap(sort);
            // Below a seed are only the sort just made and scans (`topk_seed::seedable`):
            // nothing there to visit again.
            let below = if plan.name() == "TopKSeedExec" {
                TreeNodeRecursion::Jump
            } else {
                TreeNodeRecursion::Continue
            };
            Ok(Transformed::new(plan, true, below))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "TopKNewestFirst"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `plan` reading in `order` where it can, or `None` where nothing changed.
fn push_order(
    plan: &Arc<dyn ExecutionPlan>,
    order: &[PhysicalSortExpr],
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let any = plan.as_ref();
    let through = |child: &Arc<dyn ExecutionPlan>, order: &[PhysicalSortExpr]| {
        Ok::<_, datafusion::error::DataFusionError>(match push_order(child, order)? {
            Some(child) => Some(replace_children_if_necessary(plan.clone(), vec![child])?),
            None => None,
        })
    };
    if any.is::<UnionExec>() {
        let mut changed = false;
        let mut children = Vec::new();
        for child in plan.children() {
            match push_order(child, order)? {
                Some(new) => {
                    changed = true;
                    children.push(new);
                }
                None => children.push(child.clone()),
            }
        }
        return changed
            .then(|| replace_children_if_necessary(plan.clone(), children))
            .transpose();
    }
    if any.is::<CoalescePartitionsExec>()
        || any.is::<RepartitionExec>()
        || any.is::<CooperativeExec>()
    {
        return through(plan.children()[0], order);
    }
    if let Some(filter) = any.downcast_ref::<FilterExec>() {
        let Some(projection) = filter.projection() else {
            return through(filter.input(), order);
        };
        // Output column `i` is input column `projection[i]`.
        let input = filter.input().schema();
        let Some(inner) = remap(order, |column| {
            let index = *projection.get(column.index())?;
            Some(Column::new(input.field(index).name(), index))
        }) else {
            return Ok(None);
        };
        return through(filter.input(), &inner);
    }
    if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        let exprs = projection.expr();
        let Some(inner) = remap(order, |column| {
            exprs
                .get(column.index())?
                .expr
                .downcast_ref::<Column>()
                .cloned()
        }) else {
            return Ok(None);
        };
        return through(projection.input(), &inner);
    }
    if plan.name() == "DeltaScanExec" && plan.children().len() == 1 {
        // deltalake's node maps its Parquet scan's batches one to one (partition values and
        // column mapping added): the same columns by name below it.
        let child = plan.children()[0];
        let schema = child.schema();
        let Some(inner) = remap(order, |column| {
            let (index, _) = schema.column_with_name(column.name())?;
            Some(Column::new(column.name(), index))
        }) else {
            return Ok(None);
        };
        return through(child, &inner);
    }
    Ok(match plan.try_pushdown_sort(order)? {
        SortOrderPushdownResult::Exact { inner } | SortOrderPushdownResult::Inexact { inner } => {
            Some(inner)
        }
        SortOrderPushdownResult::Unsupported => None,
    })
}

/// `order` with each column replaced by what `map` says it is below a node, or `None` when a
/// sort expression is not a column or `map` has no answer for it.
fn remap(
    order: &[PhysicalSortExpr],
    map: impl Fn(&Column) -> Option<Column>,
) -> Option<Vec<PhysicalSortExpr>> {
    order
        .iter()
        .map(|sort| {
            let column = map(sort.expr.downcast_ref::<Column>()?)?;
            Some(PhysicalSortExpr::new(Arc::new(column), sort.options))
        })
        .collect()
}

impl BufferScanExec {
    /// For tests: the batches of each partition in the order they are read.
    #[cfg(test)]
    fn read_order(&self) -> Vec<Vec<(i64, i64)>> {
        self.partitions
            .iter()
            .map(|p| p.iter().map(|b| (b.min, b.max)).collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Schema, TimeUnit, TimestampMicrosecondType};
    use datafusion::physical_expr::LexOrdering;
    use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
    use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    }

    /// A batch of `schema()` with `v` and `ts` both `times`, said to span `[min, max]`.
    fn timed(times: Vec<i64>, min: i64, max: i64) -> TimedBatch {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(times.clone())),
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
            ],
        )
        .expect("batch");
        TimedBatch { batch, min, max }
    }

    /// Ten batches of 100 rows; batch `k` holds times `k*1000 .. k*1000+99`, dealt in a
    /// shuffled order.
    fn scan(partitions: usize) -> BufferScanExec {
        let batches = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]
            .into_iter()
            .map(|k: i64| {
                timed(
                    (0..100).map(|i| k * 1000 + i).collect(),
                    k * 1000,
                    k * 1000 + 99,
                )
            })
            .collect();
        BufferScanExec::try_new(batches, &schema(), None, "ts", partitions).expect("scan")
    }

    fn top_k(scan: BufferScanExec, descending: bool) -> Arc<dyn ExecutionPlan> {
        let order = PhysicalSortExpr::new(
            Arc::new(Column::new("ts", 1)),
            arrow::compute::SortOptions {
                descending,
                nulls_first: false,
            },
        );
        let ordering = LexOrdering::new(vec![order]).expect("order");
        let sort = SortExec::new(ordering.clone(), Arc::new(scan))
            .with_fetch(Some(5))
            .with_preserve_partitioning(true);
        let merge = SortPreservingMergeExec::new(ordering, Arc::new(sort)).with_fetch(Some(5));
        let config = ConfigOptions::default();
        let plan = TopKNewestFirst
            .optimize(Arc::new(merge), &config)
            .expect("top-k order");
        FilterPushdown::new_post_optimization()
            .optimize(plan, &config)
            .expect("filter pushdown")
    }

    async fn run(plan: &Arc<dyn ExecutionPlan>) -> (Vec<i64>, usize) {
        let batches =
            datafusion::physical_plan::collect(plan.clone(), SessionContext::new().task_ctx())
                .await
                .expect("run");
        let values = batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<TimestampMicrosecondType>()
                    .values()
                    .to_vec()
            })
            .collect();
        let skipped = find_scan(plan)
            .metrics()
            .and_then(|m| m.sum_by_name("batches_skipped"))
            .map_or(0, |v| v.as_usize());
        (values, skipped)
    }

    /// The buffer scan under `plan`'s first children.
    fn find_scan(plan: &Arc<dyn ExecutionPlan>) -> BufferScanExec {
        let mut node = plan.clone();
        loop {
            if let Some(scan) = node.downcast_ref::<BufferScanExec>() {
                return scan.clone();
            }
            node = node.children()[0].clone();
        }
    }

    #[tokio::test]
    async fn a_top_k_reads_the_newest_batches_first_and_skips_the_rest() {
        let plan = top_k(scan(1), true);
        let scan = find_scan(&plan);
        let maxima: Vec<i64> = scan.read_order()[0].iter().map(|r| r.1).collect();
        assert!(maxima.is_sorted_by(|a, b| a >= b), "{maxima:?}");
        assert!(
            scan.dynamic_filter.is_some(),
            "the top-k's filter reached the scan"
        );
        let (values, skipped) = run(&plan).await;
        assert_eq!(values, vec![9099, 9098, 9097, 9096, 9095]);
        assert_eq!(skipped, 9, "only the newest batch is read");
    }

    /// Batches whose rows arrived out of time order all span the same range: none can be
    /// skipped whole, but once the top-k has a threshold their older rows are dropped in the
    /// scan instead of travelling up to it.
    #[tokio::test]
    async fn rows_of_overlapping_batches_are_filtered_by_the_threshold() {
        let batches = (0..10i64)
            .map(|k| timed((0..100).map(|i| i * 10 + k).collect(), 0, 999))
            .collect();
        let scan = BufferScanExec::try_new(batches, &schema(), None, "ts", 1).expect("scan");
        let plan = top_k(scan, true);
        let (values, skipped) = run(&plan).await;
        assert_eq!(values, vec![999, 998, 997, 996, 995]);
        assert_eq!(skipped, 0, "every batch overlaps the threshold");
        let rows_skipped = find_scan(&plan)
            .metrics()
            .and_then(|m| m.sum_by_name("rows_skipped"))
            .map_or(0, |v| v.as_usize());
        // The first batch passes whole (no threshold yet); each later one keeps only rows
        // newer than the k-th newest so far.
        assert!(rows_skipped >= 800, "{rows_skipped} rows skipped");
    }

    #[tokio::test]
    async fn ascending_reads_the_oldest_first_and_partitions_share_the_filter() {
        let plan = top_k(scan(2), false);
        let scan = find_scan(&plan);
        assert_eq!(
            scan.read_order()[0].first().map(|r| r.0),
            Some(0),
            "partition 0 starts with the oldest batch"
        );
        assert_eq!(scan.read_order()[1].first().map(|r| r.0), Some(1000));
        let (mut values, skipped) = run(&plan).await;
        values.sort();
        assert_eq!(values, vec![0, 1, 2, 3, 4]);
        assert!(skipped >= 7, "{skipped} batches skipped");
    }

    #[tokio::test]
    async fn without_an_order_on_time_nothing_is_reordered_or_skipped() {
        let order = PhysicalSortExpr::new(
            Arc::new(Column::new("v", 0)),
            arrow::compute::SortOptions::default(),
        );
        let scan = scan(1);
        let before = scan.read_order();
        let result = scan.try_pushdown_sort(&[order]).expect("pushdown");
        assert!(matches!(result, SortOrderPushdownResult::Unsupported));
        let plan: Arc<dyn ExecutionPlan> = Arc::new(scan);
        let batches =
            datafusion::physical_plan::collect(plan.clone(), SessionContext::new().task_ctx())
                .await
                .expect("run");
        assert_eq!(
            batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            1000
        );
        assert_eq!(
            plan.downcast_ref::<BufferScanExec>()
                .expect("scan")
                .read_order(),
            before
        );
    }
}
