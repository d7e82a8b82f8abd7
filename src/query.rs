//! The query side: a DataFusion table provider per table that unions the buffer with Delta.
//!
//! [`TimeFusionTable::scan`] takes one [`crate::buffer::Snapshot`]: the buffered batches and
//! the Delta scan pinned at the version committed together with the last buffer change. Rows
//! move from the buffer to Delta in one atomic step, so every query sees each acknowledged row
//! exactly once, even while a flush commits.
//!
//! Pruning: `project_id = …`, `IN (…)` and `OR`s of them select buffer projects and become
//! Delta partition filters; a `timestamp` range selects buffer buckets and adds a `date`
//! partition filter for Delta. All pruning is inexact (DataFusion still applies the filters).
//! `INSERT` goes through [`TimeFusionTable::insert_into`] into [`Ingest::write`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{ScalarValue, project_schema};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType, col, lit,
};
use datafusion::physical_expr::expressions::{Column, cast};
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::StreamExt;

use crate::Committed;
use crate::buffer::Buffer;
use crate::ingest::Ingest;
use crate::schema::TableSchema;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// An `INSERT … SELECT` is written to the WAL in records of at most this many bytes.
const INSERT_RECORD_BYTES: usize = 64 << 20;

/// A table served from the buffer and its Delta table.
pub struct TimeFusionTable {
    schema: Arc<TableSchema>,
    buffer: Arc<Buffer<Committed>>,
    ingest: Arc<Ingest>,
    /// Default of non-nullable list columns an `INSERT` leaves out: the empty list.
    defaults: Vec<(String, Expr)>,
}

impl fmt::Debug for TimeFusionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeFusionTable")
            .field("table", &self.schema.name)
            .finish()
    }
}

impl TimeFusionTable {
    pub fn new(
        schema: Arc<TableSchema>,
        buffer: Arc<Buffer<Committed>>,
        ingest: Arc<Ingest>,
    ) -> Self {
        let defaults = schema
            .schema
            .fields()
            .iter()
            .filter(|f| !f.is_nullable())
            .filter_map(|f| match f.data_type() {
                DataType::List(item) => Some((
                    f.name().clone(),
                    lit(ScalarValue::List(ScalarValue::new_list_nullable(
                        &[],
                        item.data_type(),
                    ))),
                )),
                _ => None,
            })
            .collect();
        TimeFusionTable {
            schema,
            buffer,
            ingest,
            defaults,
        }
    }
}

/// What the filters of a query allow the scan to skip.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruning {
    /// Only these projects can match (`None`: any).
    pub projects: Option<HashSet<String>>,
    /// Inclusive event-time bounds in microseconds, when the filters bound it.
    pub time_range: Option<(i64, i64)>,
}

impl Pruning {
    pub fn from_filters(filters: &[Expr], tenant: &str, time: &str) -> Self {
        let mut pruning = Pruning::default();
        let mut from = i64::MIN;
        let mut to = i64::MAX;
        for filter in filters {
            for conjunct in split_and(filter) {
                if let Some(projects) = project_set(conjunct, tenant) {
                    pruning.projects = Some(match pruning.projects.take() {
                        Some(prev) => prev.intersection(&projects).cloned().collect(),
                        None => projects,
                    });
                }
                if let Some((lo, hi)) = time_bound(conjunct, time) {
                    from = from.max(lo);
                    to = to.min(hi);
                }
            }
        }
        if from != i64::MIN || to != i64::MAX {
            pruning.time_range = Some((from, to));
        }
        pruning
    }

    /// The `date` partition filter implied by the time range.
    pub fn date_filter(&self, date_column: &str) -> Option<Expr> {
        let (from, to) = self.time_range?;
        let day = |micros: i64| micros.div_euclid(MICROS_PER_DAY) as i32;
        let mut parts = Vec::new();
        if from != i64::MIN {
            parts.push(col(date_column).gt_eq(lit(ScalarValue::Date32(Some(day(from))))));
        }
        if to != i64::MAX {
            parts.push(col(date_column).lt_eq(lit(ScalarValue::Date32(Some(day(to))))));
        }
        parts.into_iter().reduce(Expr::and)
    }
}

fn split_and(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut out = split_and(left);
            out.extend(split_and(right));
            out
        }
        other => vec![other],
    }
}

fn is_column(expr: &Expr, name: &str) -> bool {
    match expr {
        Expr::Column(c) => c.name == name,
        Expr::Cast(c) => is_column(&c.expr, name),
        Expr::TryCast(c) => is_column(&c.expr, name),
        _ => false,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        Expr::Cast(c) => literal(&c.expr),
        _ => None,
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match literal(expr)? {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The projects a predicate restricts `tenant` to, if it does.
fn project_set(expr: &Expr, tenant: &str) -> Option<HashSet<String>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_column(left, tenant) {
                string_literal(right).map(|s| [s].into())
            } else if is_column(right, tenant) {
                string_literal(left).map(|s| [s].into())
            } else {
                None
            }
        }
        Expr::InList(list) if !list.negated && is_column(&list.expr, tenant) => {
            list.list.iter().map(string_literal).collect()
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut l = project_set(left, tenant)?;
            l.extend(project_set(right, tenant)?);
            Some(l)
        }
        _ => None,
    }
}

fn timestamp_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        _ => None,
    }
}

/// Inclusive (from, to) microsecond bounds a predicate puts on `time`, if it does.
fn time_bound(expr: &Expr, time: &str) -> Option<(i64, i64)> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_column(left, time) {
                (*op, timestamp_micros(literal(right)?)?)
            } else if is_column(right, time) {
                (op.swap()?, timestamp_micros(literal(left)?)?)
            } else {
                return None;
            };
            match op {
                Operator::Eq => Some((value, value)),
                Operator::Gt | Operator::GtEq => Some((value, i64::MAX)),
                Operator::Lt | Operator::LtEq => Some((i64::MIN, value)),
                _ => None,
            }
        }
        Expr::Between(between) if !between.negated && is_column(&between.expr, time) => Some((
            timestamp_micros(literal(&between.low)?)?,
            timestamp_micros(literal(&between.high)?)?,
        )),
        _ => None,
    }
}

/// Projects `plan` onto `target` by column name, casting where Delta's types differ from ours.
fn align(plan: Arc<dyn ExecutionPlan>, target: &SchemaRef) -> Result<Arc<dyn ExecutionPlan>> {
    let input = plan.schema();
    let same = input.fields().len() == target.fields().len()
        && input
            .fields()
            .iter()
            .zip(target.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
    if same {
        return Ok(plan);
    }
    let mut exprs = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let index = input.index_of(field.name())?;
        let column = Arc::new(Column::new(field.name(), index));
        let expr = if input.field(index).data_type() == field.data_type() {
            column as _
        } else {
            cast(column, &input, field.data_type().clone())?
        };
        exprs.push(ProjectionExpr {
            expr,
            alias: field.name().clone(),
        });
    }
    Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
}

#[async_trait]
impl TableProvider for TimeFusionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, e)| e)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = &self.schema;
        let pruning = Pruning::from_filters(filters, &table.tenant_column, &table.time_column);
        let snapshot = self
            .buffer
            .snapshot(&table.name, pruning.projects.as_ref(), pruning.time_range)
            .ok_or_else(|| DataFusionError::Plan(format!("table {} is not loaded", table.name)))?;
        let projected = project_schema(&table.schema, projection)?;

        let partitions = state
            .config()
            .target_partitions()
            .max(1)
            .min(snapshot.batches.len().max(1));
        let mut buffer_partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
        for (i, batch) in snapshot.batches.into_iter().enumerate() {
            buffer_partitions[i % partitions].push(batch);
        }
        let buffer_scan = MemorySourceConfig::try_new_exec(
            &buffer_partitions,
            table.schema.clone(),
            projection.cloned(),
        )?;

        let delta = snapshot.committed;
        let delta_schema = delta.schema();
        let delta_projection = projected
            .fields()
            .iter()
            .map(|f| delta_schema.index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut delta_filters = filters.to_vec();
        delta_filters.extend(pruning.date_filter(&table.date_column));
        let delta_scan = delta
            .scan(state, Some(&delta_projection), &delta_filters, limit)
            .await?;
        let delta_scan = align(delta_scan, &projected)?;
        UnionExec::try_new(vec![buffer_scan, delta_scan])
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} is not supported: TimeFusion tables are append-only"
            )));
        }
        let fields: Vec<Field> = self
            .schema
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let sink = IngestSink {
            table: self.schema.name.clone(),
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
            ingest: self.ingest.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Where `INSERT` rows go: [`Ingest::write`]. Its schema is all-nullable because constraints
/// (required columns, derived `date`) are checked by the ingest path with proper SQLSTATEs.
struct IngestSink {
    table: String,
    schema: SchemaRef,
    ingest: Arc<Ingest>,
}

impl fmt::Debug for IngestSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestSink")
            .field("table", &self.table)
            .finish()
    }
}

impl DisplayAs for IngestSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TimeFusionIngest: table={}", self.table)
    }
}

impl IngestSink {
    async fn write(&self, pending: &mut Vec<RecordBatch>) -> Result<u64> {
        if pending.is_empty() {
            return Ok(0);
        }
        let batch = concat_batches(&pending[0].schema(), pending.iter())?;
        pending.clear();
        let rows = self
            .ingest
            .write(&self.table, batch)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(rows as u64)
    }
}

#[async_trait]
impl DataSink for IngestSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        // One WAL record per statement when it fits, so a typical INSERT is all-or-nothing;
        // a huge INSERT … SELECT is written in records of INSERT_RECORD_BYTES.
        let mut pending = Vec::new();
        let mut pending_bytes = 0;
        let mut rows = 0;
        while let Some(batch) = data.next().await {
            let batch = batch?;
            pending_bytes += batch.get_array_memory_size();
            pending.push(batch);
            if pending_bytes >= INSERT_RECORD_BYTES {
                rows += self.write(&mut pending).await?;
                pending_bytes = 0;
            }
        }
        rows += self.write(&mut pending).await?;
        Ok(rows)
    }
}

/// `timefusion_cache`: one row with the object-store cache counters at the time of the scan.
pub struct CacheStatsTable {
    storage: Arc<crate::storage::Storage>,
    schema: SchemaRef,
}

impl CacheStatsTable {
    pub fn new(storage: Arc<crate::storage::Storage>) -> Self {
        let columns = [
            "hits",
            "misses",
            "store_gets",
            "store_lists",
            "store_writes",
            "bytes_from_cache",
            "bytes_from_store",
        ];
        let fields: Vec<Field> = columns
            .iter()
            .map(|name| Field::new(*name, DataType::Int64, false))
            .collect();
        CacheStatsTable {
            storage,
            schema: Arc::new(arrow::datatypes::Schema::new(fields)),
        }
    }
}

impl fmt::Debug for CacheStatsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheStatsTable")
    }
}

#[async_trait]
impl TableProvider for CacheStatsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let s = self.storage.cache_stats();
        let values = [
            s.hits,
            s.misses,
            s.store_gets,
            s.store_lists,
            s.store_writes,
            s.bytes_from_cache,
            s.bytes_from_store,
        ];
        let columns: Vec<arrow::array::ArrayRef> = values
            .iter()
            .map(|v| {
                Arc::new(arrow::array::Int64Array::from(vec![*v as i64])) as arrow::array::ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::in_list;

    fn ts(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    fn prune(filters: &[Expr]) -> Pruning {
        Pruning::from_filters(filters, "project_id", "timestamp")
    }

    #[test]
    fn project_equality_in_list_and_or_prune() {
        let p = prune(&[col("project_id").eq(lit("a"))]);
        assert_eq!(p.projects, Some(["a".to_string()].into()));
        let p = prune(&[in_list(col("project_id"), vec![lit("a"), lit("b")], false)]);
        assert_eq!(p.projects, Some(["a".to_string(), "b".to_string()].into()));
        let p = prune(&[lit("c")
            .eq(col("project_id"))
            .or(col("project_id").eq(lit("d")))]);
        assert_eq!(p.projects, Some(["c".to_string(), "d".to_string()].into()));
        let p = prune(&[
            col("project_id").eq(lit("a")),
            in_list(col("project_id"), vec![lit("a"), lit("b")], false),
        ]);
        assert_eq!(
            p.projects,
            Some(["a".to_string()].into()),
            "conjuncts intersect"
        );
    }

    #[test]
    fn filters_that_do_not_bound_the_tenant_do_not_prune() {
        assert_eq!(
            prune(&[in_list(col("project_id"), vec![lit("a")], true)]).projects,
            None
        );
        assert_eq!(
            prune(&[col("project_id").eq(lit("a")).or(col("name").eq(lit("x")))]).projects,
            None
        );
        assert_eq!(prune(&[col("name").eq(lit("a"))]), Pruning::default());
    }

    #[test]
    fn timestamp_ranges_become_date_filters() {
        let day = MICROS_PER_DAY;
        let p = prune(&[col("timestamp")
            .gt_eq(ts(day * 2 + 5))
            .and(col("timestamp").lt(ts(day * 4)))]);
        assert_eq!(p.time_range, Some((day * 2 + 5, day * 4)));
        let date = p.date_filter("date").expect("date filter");
        let expected = col("date")
            .gt_eq(lit(ScalarValue::Date32(Some(2))))
            .and(col("date").lt_eq(lit(ScalarValue::Date32(Some(4)))));
        assert_eq!(date, expected);
        // Reversed operands and nanosecond literals.
        let p = prune(&[ts(day).lt(col("timestamp"))]);
        assert_eq!(p.time_range, Some((day, i64::MAX)));
        let nanos = lit(ScalarValue::TimestampNanosecond(Some(day * 1000), None));
        assert_eq!(
            prune(&[col("timestamp").lt_eq(nanos)]).time_range,
            Some((i64::MIN, day))
        );
        assert_eq!(prune(&[col("timestamp").not_eq(ts(1))]).time_range, None);
    }
}
