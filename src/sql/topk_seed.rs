//! A top-k's threshold found in the Parquet page index before any page is decoded
//! ([`TopKSeedExec`]).
//!
//! [`super::buffer_scan::TopKNewestFirst`] makes `ORDER BY <time> DESC LIMIT k` read the newest
//! file's newest row group first and skip the rest by the top-k's dynamic filter. But the
//! Parquet reader selects a row group's rows before it decodes any of them, and until the top-k
//! has seen k rows its filter selects everything: the first row group (up to the layout's
//! `row_group_rows`, with every projected column, `body` included) was decoded whole.
//!
//! The page index already says where the newest rows are: each page of the time column with
//! its min, max and row count. If the pages whose min is at least `T` hold k non-null values,
//! and every row of the scanned files passes the query's filters, the k-th newest row is at or
//! after `T`. The top-k's dynamic filter then starts as `time >= T` (with `OR time IS NULL` when
//! nulls sort first), so files, row groups and pages before `T` are skipped when opened and the
//! scan decodes only the pages that can hold the answer. The top-k replaces the filter with its
//! own threshold once it has k rows, which is never looser: every row it sees passed `T`.
//!
//! "Every row passes the query's filters" is checked on the plan when the node is made
//! ([`seedable`]): between the top-k and the Parquet scan only unions, projections that keep
//! the time column, repartitions and filters made of `partition column = literal` (or a short
//! `IN` list) — filters deltalake applies exactly by pruning partitions, so every row of a
//! scanned file passes them. Anything else (a filter on a data column, a join, an aggregate)
//! leaves the plan as it was. TimeFusion's tables have no deletion vectors (the table feature
//! is never enabled), so a page's row count is its row count. The buffer side of the union
//! needs nothing: its rows only add to the Delta rows at or after `T`.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileScanConfig, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Operator;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CastExpr, Column, DynamicFilterPhysicalExpr, InListExpr, IsNullExpr, Literal,
};
use datafusion::physical_expr::{PhysicalExpr, split_conjunction};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

use crate::sql::buffer_scan::BufferScanExec;
use crate::sql::pruning::DELTA_MAX_LIST;

/// Larger limits are left to the top-k alone: the seed reads one page entry per 8 k rows.
const MAX_K: usize = 100_000;
/// Files whose page index a seed reads at most (newest first); it usually needs one.
const MAX_FILES: usize = 16;

/// Runs its `SortExec` (a top-k on one column) after seeding the top-k's dynamic filter from
/// the page index of the Parquet files below it (module docs). Made only where [`seedable`]
/// holds; otherwise, and when the files have no page index or too few rows, it just runs the
/// sort.
#[derive(Debug)]
pub struct TopKSeedExec {
    sort: Arc<dyn ExecutionPlan>,
    seeded: Arc<tokio::sync::OnceCell<()>>,
    metrics: ExecutionPlanMetricsSet,
}

impl TopKSeedExec {
    /// `sort` wrapped in a seed when the plan below it allows one (module docs).
    pub fn wrap(sort: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        if !seedable(&sort) {
            return sort;
        }
        Arc::new(TopKSeedExec {
            sort,
            seeded: Arc::new(tokio::sync::OnceCell::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

/// Whether `plan` is a top-k on one column whose every Parquet row below passes the query's
/// filters (module docs).
fn seedable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let Some(sort) = plan.downcast_ref::<SortExec>() else {
        return false;
    };
    let Some(k) = sort.fetch() else {
        return false;
    };
    let [order] = sort.expr().iter().collect::<Vec<_>>()[..] else {
        return false;
    };
    let Some(column) = order.expr.downcast_ref::<Column>() else {
        return false;
    };
    // Page statistics leave NaN out while counting its rows: a float column's pages say less
    // than they seem to.
    let floating = column
        .data_type(&sort.input().schema())
        .map_or(true, |t| t.is_floating());
    k > 0
        && k <= MAX_K
        && !floating
        && top_k_filter(sort).is_some()
        && every_row_passes(sort.input(), column.name()) == Some(true)
}

/// The dynamic filter a top-k `SortExec` keeps at its k-th row.
fn top_k_filter(sort: &SortExec) -> Option<Arc<dyn PhysicalExpr>> {
    sort.dynamic_expressions_produced()
        .into_iter()
        .find(|e| e.downcast_ref::<DynamicFilterPhysicalExpr>().is_some())
}

/// `Some(true)`: below `plan` are Parquet scans holding `column`, and every row they return
/// reaches `plan`'s output with `column` unchanged; `Some(false)`: only buffer scans (no rows
/// to seed from, none that matter); `None`: anything else.
fn every_row_passes(plan: &Arc<dyn ExecutionPlan>, column: &str) -> Option<bool> {
    let any = plan.as_ref();
    if any.is::<UnionExec>() {
        let mut parquet = false;
        for child in plan.children() {
            parquet |= every_row_passes(child, column)?;
        }
        return Some(parquet);
    }
    if any.is::<BufferScanExec>() {
        return Some(false);
    }
    if any.is::<CoalescePartitionsExec>()
        || any.is::<RepartitionExec>()
        || any.is::<CooperativeExec>()
    {
        return every_row_passes(plan.children()[0], column);
    }
    if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        let kept = projection.expr().iter().any(|e| {
            e.alias == column
                && e.expr
                    .downcast_ref::<Column>()
                    .is_some_and(|c| c.name() == column)
        });
        return if kept {
            every_row_passes(projection.input(), column)
        } else {
            None
        };
    }
    if let Some(filter) = any.downcast_ref::<FilterExec>() {
        filter.schema().column_with_name(column)?;
        let parquet = every_row_passes(filter.input(), column)?;
        if !parquet {
            return Some(false);
        }
        let partitions = partition_columns(filter.input())?;
        let exact = split_conjunction(filter.predicate())
            .into_iter()
            .all(|conjunct| prunes_partitions_exactly(conjunct, &partitions));
        return exact.then_some(true);
    }
    if plan.name() == "DeltaScanExec" && plan.children().len() == 1 {
        let (config, files) = parquet_scan(plan.children()[0])?;
        files.column_with_name(column)?;
        // DataFusion pushes filters on data columns into the Parquet scan itself.
        let predicate = config.file_source().filter();
        let filters_nothing = predicate
            .iter()
            .flat_map(split_conjunction)
            .all(|conjunct| {
                conjunct
                    .downcast_ref::<DynamicFilterPhysicalExpr>()
                    .is_some()
                    || conjunct
                        .downcast_ref::<Literal>()
                        .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)))
            });
        return filters_nothing.then_some(true);
    }
    None
}

/// The partition columns of the Delta scan below `plan` (through projections that keep
/// names and values): deltalake's node adds them to the columns its Parquet scan reads.
fn partition_columns(plan: &Arc<dyn ExecutionPlan>) -> Option<HashSet<String>> {
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let inner = partition_columns(projection.input())?;
        // The table's union reads Delta's `Utf8View` strings as `Utf8`: a cast between
        // string types keeps equality.
        let input = projection.input().schema();
        let same_values = |e: &Arc<dyn PhysicalExpr>| match e.downcast_ref::<CastExpr>() {
            Some(cast) => {
                let from = cast.expr().data_type(&input).ok()?;
                (is_string(&from) && is_string(cast.cast_type())).then(|| cast.expr().clone())
            }
            None => Some(e.clone()),
        };
        return Some(
            projection
                .expr()
                .iter()
                .filter(|e| {
                    same_values(&e.expr).is_some_and(|inner_expr| {
                        inner_expr
                            .downcast_ref::<Column>()
                            .is_some_and(|c| c.name() == e.alias && inner.contains(&e.alias))
                    })
                })
                .map(|e| e.alias.clone())
                .collect(),
        );
    }
    if plan.name() == "DeltaScanExec" && plan.children().len() == 1 {
        let scan = plan.children()[0];
        parquet_scan(scan)?;
        let read = scan.schema();
        return Some(
            plan.schema()
                .fields()
                .iter()
                .filter(|f| read.column_with_name(f.name()).is_none())
                .map(|f| f.name().clone())
                .collect(),
        );
    }
    None
}

/// A string type, or a dictionary of one (how partition values may arrive).
fn is_string(data_type: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType::{Dictionary, LargeUtf8, Utf8, Utf8View};
    match data_type {
        Utf8 | Utf8View | LargeUtf8 => true,
        Dictionary(_, values) => is_string(values),
        _ => false,
    }
}

/// `partition = literal` (either side) or `partition IN (short list of literals)`: deltalake
/// keeps exactly the files of those partitions ([`crate::sql::pruning::for_delta`] turns only
/// longer lists into ranges).
fn prunes_partitions_exactly(expr: &Arc<dyn PhysicalExpr>, partitions: &HashSet<String>) -> bool {
    let is_partition = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| partitions.contains(c.name()))
    };
    let is_literal = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .is_some_and(|l| !l.value().is_null())
    };
    if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
        return *binary.op() == Operator::Eq
            && ((is_partition(binary.left()) && is_literal(binary.right()))
                || (is_literal(binary.left()) && is_partition(binary.right())));
    }
    if let Some(in_list) = expr.downcast_ref::<InListExpr>() {
        return !in_list.negated()
            && is_partition(in_list.expr())
            && in_list.list().len() <= DELTA_MAX_LIST
            && in_list.list().iter().all(is_literal);
    }
    false
}

/// The file scan configuration of a Parquet `DataSourceExec` and its files' schema, through
/// the repartitioning DataFusion may put between it and deltalake's node.
fn parquet_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<(&FileScanConfig, SchemaRef)> {
    let any = plan.as_ref();
    if any.is::<RepartitionExec>() || any.is::<CooperativeExec>() {
        return parquet_scan(plan.children()[0]);
    }
    let (config, _) = parquet_source(plan)?;
    Some((config, config.file_schema().clone()))
}

/// `plan`'s file scan configuration and Parquet source, when it is a Parquet `DataSourceExec`.
pub(crate) fn parquet_source(
    plan: &Arc<dyn ExecutionPlan>,
) -> Option<(&FileScanConfig, &ParquetSource)> {
    let exec = plan.downcast_ref::<DataSourceExec>()?;
    let config = exec.data_source().downcast_ref::<FileScanConfig>()?;
    let source = config.file_source().downcast_ref::<ParquetSource>()?;
    Some((config, source))
}

/// A Parquet scan of `config`'s files that reads them with `source`: what a rewrite of
/// [`parquet_source`]'s answer puts in the scan's place.
pub(crate) fn with_parquet_source(
    config: &FileScanConfig,
    source: ParquetSource,
) -> Arc<dyn ExecutionPlan> {
    let config = datafusion::datasource::physical_plan::FileScanConfigBuilder::from(config.clone())
        .with_source(Arc::new(source))
        .build();
    DataSourceExec::from_data_source(config)
}

/// Every Parquet scan configuration below `plan`.
fn parquet_scans(plan: &Arc<dyn ExecutionPlan>, found: &mut Vec<FileScanConfig>) {
    if let Some((config, _)) = parquet_scan(plan) {
        found.push(config.clone());
        return;
    }
    for child in plan.children() {
        parquet_scans(child, found);
    }
}

/// What a seed needs of the top-k.
struct Goal {
    column: String,
    /// The column's type above the scan: every page bound is cast to it before comparing.
    data_type: arrow::datatypes::DataType,
    k: usize,
    descending: bool,
}

/// The lowest `T` (descending; highest for ascending) such that the pages on `T`'s side hold
/// `k` values: `bounds` are each page's min (descending) or max (ascending) with its count of
/// non-null values.
fn threshold(bounds: &mut [(ScalarValue, u64)], goal: &Goal) -> Option<ScalarValue> {
    // Bounds that do not compare (other types, NaN) would make the order meaningless.
    if bounds
        .windows(2)
        .any(|w| w[0].0.partial_cmp(&w[1].0).is_none())
    {
        return None;
    }
    bounds.sort_by(|a, b| {
        let order = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
        if goal.descending {
            order.reverse()
        } else {
            order
        }
    });
    let mut rows = 0u64;
    for (bound, count) in bounds.iter() {
        rows += count;
        if rows >= goal.k as u64 {
            return Some(bound.clone());
        }
    }
    None
}

/// The files of `config`, each once (a file split into byte ranges is listed per range),
/// with the bound of `column` a seed orders them by: its max for descending, min for
/// ascending. `None` when a file has no such statistic.
fn files_by_bound(
    config: &FileScanConfig,
    goal: &Goal,
) -> Option<Vec<(ScalarValue, PartitionedFile)>> {
    let index = config.file_schema().index_of(&goal.column).ok()?;
    let mut seen = HashSet::new();
    let mut files = Vec::new();
    for file in config.file_groups.iter().flat_map(|g| g.files()) {
        if !seen.insert(file.object_meta.location.clone()) {
            continue;
        }
        let stats = file.statistics.as_ref()?.column_statistics.get(index)?;
        let bound = if goal.descending {
            &stats.max_value
        } else {
            &stats.min_value
        };
        let (Precision::Exact(bound) | Precision::Inexact(bound)) = bound else {
            return None;
        };
        let mut whole = file.clone();
        whole.range = None;
        files.push((bound.clone(), whole));
    }
    files.sort_by(|a, b| {
        let order = a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal);
        if goal.descending {
            order.reverse()
        } else {
            order
        }
    });
    Some(files)
}

/// The page bounds of `goal.column` in one file ([`threshold`]'s input), from its page index.
async fn page_bounds(
    factory: &Arc<dyn ParquetFileReaderFactory>,
    file: PartitionedFile,
    goal: &Goal,
    metrics: &ExecutionPlanMetricsSet,
) -> Result<Vec<(ScalarValue, u64)>> {
    let mut reader = factory.create_reader(0, file, None, metrics)?;
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let metadata = reader.get_metadata(Some(&options)).await?;
    let (Some(column_index), Some(offset_index)) =
        (metadata.column_index(), metadata.offset_index())
    else {
        return Ok(Vec::new());
    };
    let schema = datafusion::parquet::arrow::parquet_to_arrow_schema(
        metadata.file_metadata().schema_descr(),
        metadata.file_metadata().key_value_metadata(),
    )?;
    let converter = StatisticsConverter::try_new(
        &goal.column,
        &schema,
        metadata.file_metadata().schema_descr(),
    )?;
    let groups: Vec<usize> = (0..metadata.num_row_groups()).collect();
    let bounds: ArrayRef = if goal.descending {
        converter.data_page_mins(column_index, offset_index, &groups)?
    } else {
        converter.data_page_maxes(column_index, offset_index, &groups)?
    };
    let nulls = converter.data_page_null_counts(column_index, offset_index, &groups)?;
    let Some(rows) =
        converter.data_page_row_counts(offset_index, metadata.row_groups(), &groups)?
    else {
        return Ok(Vec::new());
    };
    let mut pages = Vec::with_capacity(bounds.len());
    for i in 0..bounds.len().min(rows.len()).min(nulls.len()) {
        // A page without statistics or counts says nothing.
        if bounds.is_null(i) || rows.is_null(i) || nulls.is_null(i) {
            continue;
        }
        let values = rows.value(i).saturating_sub(nulls.value(i));
        let bound = ScalarValue::try_from_array(&bounds, i)?.cast_to(&goal.data_type)?;
        pages.push((bound, values));
    }
    Ok(pages)
}

/// Finds the seed and sets the top-k's filter to it; nothing when there is none to find.
async fn seed(
    sort: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
    metrics: ExecutionPlanMetricsSet,
) -> Result<()> {
    let Some(exec) = sort.downcast_ref::<SortExec>() else {
        return Ok(());
    };
    let (Some(filter), Some(k), [order]) = (
        top_k_filter(exec),
        exec.fetch(),
        &exec.expr().iter().collect::<Vec<_>>()[..],
    ) else {
        return Ok(());
    };
    let Some(column) = order.expr.downcast_ref::<Column>() else {
        return Ok(());
    };
    let goal = Goal {
        column: column.name().to_string(),
        data_type: column.data_type(&exec.input().schema())?,
        k,
        descending: order.options.descending,
    };
    let mut scans = Vec::new();
    parquet_scans(exec.input(), &mut scans);
    let read = MetricBuilder::new(&metrics).counter("seed_files_read", 0);
    let mut best: Option<ScalarValue> = None;
    for config in scans {
        let Some(files) = files_by_bound(&config, &goal) else {
            continue;
        };
        let Some(source) = config.file_source().downcast_ref::<ParquetSource>() else {
            continue;
        };
        let factory = match source.parquet_file_reader_factory() {
            Some(factory) => factory.clone(),
            None => Arc::new(DefaultParquetFileReaderFactory::new(
                context
                    .runtime_env()
                    .object_store(&config.object_store_url)?,
            )) as _,
        };
        // Pages of this scan's files so far: a seed holds for the union whichever side its
        // rows are on, so each scan finds its own and the best one wins.
        let mut bounds = Vec::new();
        let mut found: Option<ScalarValue> = None;
        for (bound, file) in files.into_iter().take(MAX_FILES) {
            // Files are ordered by their newest (oldest) value: once one cannot reach past
            // the seed, none after it can.
            if let Some(t) = &found {
                let beyond = if goal.descending {
                    bound < *t
                } else {
                    bound > *t
                };
                if beyond {
                    break;
                }
            }
            // The reader's own file metrics go to a set nobody shows: only the count is ours.
            let reader_metrics = ExecutionPlanMetricsSet::new();
            bounds.extend(page_bounds(&factory, file, &goal, &reader_metrics).await?);
            read.add(1);
            found = threshold(&mut bounds, &goal);
        }
        if let Some(t) = found {
            let better = best
                .as_ref()
                .is_none_or(|b| if goal.descending { t > *b } else { t < *b });
            if better {
                best = Some(t);
            }
        }
    }
    // Of the column's type already: every page bound was cast to it.
    let Some(t) = best else {
        return Ok(());
    };
    let op = if goal.descending {
        Operator::GtEq
    } else {
        Operator::LtEq
    };
    let column_expr: Arc<dyn PhysicalExpr> = order.expr.clone();
    let mut predicate: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
        column_expr.clone(),
        op,
        Arc::new(Literal::new(t)),
    ));
    if order.options.nulls_first {
        predicate = Arc::new(BinaryExpr::new(
            Arc::new(IsNullExpr::new(column_expr)),
            Operator::Or,
            predicate,
        ));
    }
    if let Some(filter) = filter.downcast_ref::<DynamicFilterPhysicalExpr>() {
        filter.update(predicate)?;
        MetricBuilder::new(&metrics).counter("seeded", 0).add(1);
    }
    Ok(())
}

impl DisplayAs for TopKSeedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TopKSeedExec: from the page index")
    }
}

impl ExecutionPlan for TopKSeedExec {
    fn name(&self) -> &str {
        "TopKSeedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.sort.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.sort]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(sort) = children.pop() else {
            return Ok(self);
        };
        Ok(Arc::new(TopKSeedExec {
            sort,
            seeded: Arc::new(tokio::sync::OnceCell::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let sort = self.sort.clone();
        let seeded = self.seeded.clone();
        let metrics = self.metrics.clone();
        let schema = sort.schema();
        let stream = futures::stream::once(async move {
            seeded
                .get_or_init(|| async {
                    // A seed only speeds the top-k up: without one it runs as it would.
                    if let Err(e) = seed(sort.clone(), context.clone(), metrics).await {
                        tracing::debug!(error = %e, "no top-k seed from the page index");
                    }
                })
                .await;
            sort.execute(partition, context)
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.boxed(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(v: i64) -> ScalarValue {
        ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into()))
    }

    fn goal(k: usize, descending: bool) -> Goal {
        Goal {
            column: "ts".into(),
            data_type: arrow::datatypes::DataType::Timestamp(
                arrow::datatypes::TimeUnit::Microsecond,
                Some("UTC".into()),
            ),
            k,
            descending,
        }
    }

    /// Pages (bound, values): the seed is the bound where the pages on its side first hold k.
    #[test]
    fn the_threshold_is_where_the_pages_beyond_it_hold_k_values() {
        let pages = || {
            vec![
                (micros(100), 50),
                (micros(300), 40),
                (micros(200), 30),
                (micros(0), 500),
            ]
        };
        // Newest first: 40 values at or after 300, 70 at or after 200, 120 at or after 100.
        assert_eq!(threshold(&mut pages(), &goal(40, true)), Some(micros(300)));
        assert_eq!(threshold(&mut pages(), &goal(41, true)), Some(micros(200)));
        assert_eq!(threshold(&mut pages(), &goal(120, true)), Some(micros(100)));
        assert_eq!(
            threshold(&mut pages(), &goal(621, true)),
            None,
            "fewer rows than k"
        );
        // Oldest first the bounds are the pages' maxima: 500 values at or before 0.
        assert_eq!(threshold(&mut pages(), &goal(500, false)), Some(micros(0)));
        assert_eq!(
            threshold(&mut pages(), &goal(501, false)),
            Some(micros(100))
        );
        // Bounds that do not compare give no seed.
        let mut mixed = pages();
        mixed.push((ScalarValue::Int64(Some(7)), 1_000));
        assert_eq!(threshold(&mut mixed, &goal(1, true)), None);
    }

    #[test]
    fn only_partition_equalities_and_short_lists_prune_exactly() {
        use datafusion::physical_expr::expressions::{col, in_list, lit};
        let schema = arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("project_id", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("level", arrow::datatypes::DataType::Utf8, true),
        ]);
        let partitions: HashSet<String> = ["project_id".to_string()].into();
        let column = |name| col(name, &schema).expect("column");
        let eq = |l: Arc<dyn PhysicalExpr>, r: Arc<dyn PhysicalExpr>| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(l, Operator::Eq, r))
        };
        assert!(prunes_partitions_exactly(
            &eq(column("project_id"), lit("p1")),
            &partitions
        ));
        assert!(prunes_partitions_exactly(
            &eq(lit("p1"), column("project_id")),
            &partitions
        ));
        assert!(!prunes_partitions_exactly(
            &eq(column("level"), lit("INFO")),
            &partitions
        ));
        let ne: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            column("project_id"),
            Operator::NotEq,
            lit("p1"),
        ));
        assert!(!prunes_partitions_exactly(&ne, &partitions));
        let short = in_list(
            column("project_id"),
            vec![lit("a"), lit("b")],
            &false,
            &schema,
        )
        .expect("in list");
        assert!(prunes_partitions_exactly(&short, &partitions));
        let negated = in_list(column("project_id"), vec![lit("a")], &true, &schema).expect("in");
        assert!(!prunes_partitions_exactly(&negated, &partitions));
        // deltalake gets a longer list as a range of values: not exact.
        let long: Vec<_> = (0..=DELTA_MAX_LIST).map(|i| lit(format!("p{i}"))).collect();
        let long = in_list(column("project_id"), long, &false, &schema).expect("in list");
        assert!(!prunes_partitions_exactly(&long, &partitions));
    }
}
