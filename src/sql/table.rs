//! The query side: a DataFusion table provider per table that unions the buffer with Delta.
//!
//! [`TimeFusionTable::scan`] takes one [`crate::engine::buffer::Snapshot`]: the buffered batches and
//! the Delta scan pinned at the version committed together with the last buffer change. Rows
//! move from the buffer to Delta in one atomic step, so every query sees each acknowledged row
//! exactly once, even while a flush commits.
//!
//! Filters prune buffer projects and buckets and Delta partitions ([`crate::sql::pruning`]).
//! `INSERT` goes through [`TimeFusionTable::insert_into`] into [`Ingest::write`]
//! ([`crate::sql::insert`]); `DELETE` and `UPDATE` into the engine's mutations
//! ([`crate::sql::mutation`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Weak};

use arrow::datatypes::{DataType, Field, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{ScalarValue, project_schema};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType, lit};
use datafusion::physical_expr::expressions::{Column, cast};
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;

use crate::engine::Committed;
use crate::engine::buffer::Buffer;
use crate::engine::core::Mutations;
use crate::engine::delta::Mutation;
use crate::engine::ingest::Ingest;
use crate::engine::schema::TableSchema;

use crate::sql::buffer_scan::{BufferScanExec, Rescan, TimedBatch};
use crate::sql::insert::IngestSink;
use crate::sql::pruning::Pruning;

/// A table served from the buffer and its Delta table.
pub struct TimeFusionTable {
    schema: Arc<TableSchema>,
    buffer: Arc<Buffer<Committed>>,
    ingest: Arc<Ingest>,
    mutations: Arc<dyn Mutations>,
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
        mutations: Arc<dyn Mutations>,
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
            mutations,
            defaults,
        }
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

/// `plan` (a Delta scan) with the `time IS NOT NULL` conjunct taken out of its Parquet
/// predicate once deltalake has planned the files with their statistics. The hint is no
/// filter of the query's (those are applied above the scan, or exactly by the scan itself for
/// the tenant's equalities), and left in the predicate it costs every file a page-index
/// selection that selects every row, which turns off DataFusion's row-group pruning by a
/// top-k's threshold (a scan with a row selection does not prune row groups while it runs):
/// `latest_100` decoded the time column of every row group of the newest file.
fn without_statistics_hint(
    plan: Arc<dyn ExecutionPlan>,
    time: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::datasource::physical_plan::FileSource;
    use datafusion::physical_expr::expressions::IsNotNullExpr;
    use datafusion::physical_expr::{conjunction as and_all, split_conjunction};

    plan.transform_up(|node| {
        let Some((config, source)) = crate::sql::topk_seed::parquet_source(&node) else {
            return Ok(Transformed::no(node));
        };
        let Some(predicate) = FileSource::filter(source) else {
            return Ok(Transformed::no(node));
        };
        let is_hint = |e: &Arc<dyn datafusion::physical_expr::PhysicalExpr>| {
            e.downcast_ref::<IsNotNullExpr>()
                .and_then(|n| n.arg().downcast_ref::<Column>())
                .is_some_and(|c| c.name() == time)
        };
        let conjuncts = split_conjunction(&predicate);
        if !conjuncts.iter().any(|e| is_hint(e)) {
            return Ok(Transformed::no(node));
        }
        let rest: Vec<_> = conjuncts
            .into_iter()
            .filter(|e| !is_hint(e))
            .cloned()
            .collect();
        // An always-true predicate builds no page or row-group pruning.
        let source = source.with_predicate(and_all(rest));
        Ok(Transformed::yes(
            crate::sql::topk_seed::with_parquet_source(config, source),
        ))
    })
    .map(|t| t.data)
}

/// The buffer side of one scan: what a snapshot is taken with, so that a kept plan
/// ([`crate::sql::plan_cache`]) can take it again on a later run.
struct BufferSide {
    buffer: Arc<Buffer<Committed>>,
    table: Arc<TableSchema>,
    projects: Option<HashSet<String>>,
    time_range: Option<(i64, i64)>,
    /// Of the table's columns.
    projection: Option<Vec<usize>>,
    /// Looked-up id columns: index in the table, index in the projection, the ids.
    lookups: Vec<(usize, usize, Vec<String>)>,
    /// The Delta read handle the plan's Delta scan was made from (set once it is). A weak
    /// reference: a kept plan must not keep an old version's log state alive, and while it
    /// exists no other handle can take its address.
    committed: Option<Weak<dyn TableProvider>>,
}

impl fmt::Debug for BufferSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferSide")
            .field("table", &self.table.name)
            .field("time_range", &self.time_range)
            .finish_non_exhaustive()
    }
}

impl BufferSide {
    /// One snapshot: the buffered batches the scan reads (chunks the id filters rule out
    /// left out), how many were left out when ids are looked up, and the Delta read handle
    /// the batches complement.
    fn read(&self) -> Result<(Vec<TimedBatch>, Option<usize>, Committed)> {
        let table = &self.table;
        let snapshot = self
            .buffer
            .snapshot(
                &table.name,
                self.projects.as_ref(),
                self.time_range,
                self.projection.as_deref(),
            )
            .ok_or_else(|| {
                DataFusionError::Plan(format!("table {} is not loaded", table.name))
            })??;
        let mut id_skipped = 0;
        let mut budget = crate::engine::id_filter::ROWS_HASHED_PER_SCAN;
        let batches: Vec<TimedBatch> = snapshot
            .batches
            .into_iter()
            .zip(snapshot.times)
            .zip(snapshot.ids)
            .filter(|((batch, _), ids)| {
                let kept = self.lookups.iter().all(|(column, at, values)| {
                    ids.may_contain(
                        *column,
                        batch.column(*at),
                        values,
                        table.layout.bloom_filter_fpp,
                        &mut budget,
                    )
                });
                id_skipped += usize::from(!kept);
                kept
            })
            .map(|((batch, (min, max)), _)| TimedBatch { batch, min, max })
            .collect();
        let id_skipped = (!self.lookups.is_empty()).then_some(id_skipped);
        Ok((batches, id_skipped, snapshot.committed))
    }
}

impl BufferSide {
    /// Whether `committed` is the read handle the plan's Delta scan was made from.
    fn planned_with(&self, committed: &Committed) -> bool {
        self.committed
            .as_ref()
            .is_some_and(|planned| Weak::ptr_eq(planned, &Arc::downgrade(committed)))
    }
}

impl Rescan for BufferSide {
    fn rescan(&self) -> Result<Option<(Vec<TimedBatch>, Option<usize>)>> {
        let (batches, id_skipped, committed) = self.read()?;
        Ok(self
            .planned_with(&committed)
            .then_some((batches, id_skipped)))
    }

    fn current(&self) -> bool {
        self.buffer
            .committed(&self.table.name)
            .is_some_and(|committed| self.planned_with(&committed))
    }
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

    /// The tenant's equalities are exact: the buffer's snapshot and deltalake's partitions
    /// select the projects, so the tenant column is read only where the query reads it.
    /// Every other filter is inexact (pruning only).
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        use TableProviderFilterPushDown::{Exact, Inexact};
        let tenant = &self.schema.tenant_column;
        let mut pushdown = vec![Inexact; filters.len()];
        // Only these reach deltalake here: it translates a filter with one level of recursion
        // per node, and these are bounded (`pruning::for_delta`).
        let (at, candidates): (Vec<usize>, Vec<&Expr>) = filters
            .iter()
            .enumerate()
            .filter(|(_, f)| crate::sql::pruning::is_exact_tenant_filter(f, tenant))
            .map(|(i, f)| (i, *f))
            .unzip();
        if candidates.is_empty() {
            return Ok(pushdown);
        }
        let Some(delta) = self.buffer.committed(&self.schema.name) else {
            return Ok(pushdown);
        };
        for (i, how) in at
            .into_iter()
            .zip(delta.supports_filters_pushdown(&candidates)?)
        {
            if how == Exact {
                pushdown[i] = Exact;
            }
        }
        Ok(pushdown)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = &self.schema;
        if state
            .config()
            .get_extension::<crate::sql::mutation::PlanningMutation>()
            .is_some()
        {
            // The input of a DELETE / UPDATE, which DataFusion plans and then drops (it hands
            // the provider the statement's filters): nothing to read, and a snapshot and a
            // Delta scan built for nothing were most of a one-row UPDATE's planning.
            let projected = project_schema(&table.schema, projection)?;
            return Ok(Arc::new(datafusion::physical_plan::empty::EmptyExec::new(
                projected,
            )));
        }
        let pruning = Pruning::from_filters(filters, &table.tenant_column, &table.time_column);
        let projected = project_schema(&table.schema, projection)?;
        // Equalities on id columns skip the chunks whose bloom filters rule the ids out.
        let lookups = crate::sql::pruning::id_lookups(filters, &table.layout.bloom_filter_columns)
            .into_iter()
            .filter_map(|(column, values)| {
                let at = projected.index_of(&column).ok()?;
                Some((table.schema.index_of(&column).ok()?, at, values))
            })
            .collect::<Vec<_>>();
        let side = BufferSide {
            buffer: self.buffer.clone(),
            table: table.clone(),
            projects: pruning.projects.clone(),
            time_range: pruning.time_range,
            projection: projection.cloned(),
            lookups,
            committed: None,
        };
        let (batches, id_skipped, delta) = side.read()?;
        let side = BufferSide {
            committed: Some(Arc::downgrade(&delta)),
            ..side
        };
        // The snapshot's batches are projected already.
        let buffer_scan: Arc<dyn ExecutionPlan> = Arc::new(
            BufferScanExec::try_new(
                batches,
                &projected,
                None,
                &table.time_column,
                state.config().target_partitions(),
            )?
            .with_id_skipped(id_skipped)
            .with_rescan(Arc::new(side)),
        );

        let delta_schema = delta.schema();
        let delta_projection = projected
            .fields()
            .iter()
            .map(|f| delta_schema.index_of(f.name()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut delta_filters = crate::sql::pruning::for_delta(filters);
        delta_filters.extend(pruning.date_filter(&table.date_column));
        // deltalake hands DataFusion the files' statistics only for columns its filters name:
        // with the time column's, a top-k orders files newest-first and skips the rest. Only
        // when the scan reads that column anyway: a filter on a column the query does not read
        // would cost a `count(*)` deltalake's answer from the log alone.
        let time = &table.time_column;
        let names_time = delta_filters
            .iter()
            .any(|f| f.column_refs().iter().any(|c| &c.name == time));
        let hint = projected.column_with_name(time).is_some() && !names_time;
        if hint {
            delta_filters.push(datafusion::prelude::col(time).is_not_null());
        }
        let mut delta_scan = delta
            .scan(state, Some(&delta_projection), &delta_filters, limit)
            .await?;
        if hint {
            delta_scan = without_statistics_hint(delta_scan, time)?;
        }
        let delta_scan = crate::sql::page_index::with_cached_page_indexes(delta_scan)?;
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
        let sink = IngestSink::new(
            self.schema.name.clone(),
            Arc::new(arrow::datatypes::Schema::new(fields)),
            self.ingest.clone(),
        );
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mutation = Mutation::Delete {
            predicate: conjunction(filters),
        };
        crate::sql::mutation::plan(&self.schema, &self.mutations, state, mutation)
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mutation = Mutation::Update {
            predicate: conjunction(filters),
            assignments,
        };
        crate::sql::mutation::plan(&self.schema, &self.mutations, state, mutation)
    }
}
