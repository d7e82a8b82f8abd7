//! `DELETE` and `UPDATE`: DataFusion plans them into [`TableProvider::delete_from`] /
//! [`TableProvider::update`] calls on [`crate::sql::table::TimeFusionTable`], which check the
//! statement here and return a [`MutationExec`]; running it hands the change to the engine
//! ([`Mutations::mutate`]), which applies it to buffered and committed rows as one Delta
//! commit, and yields the number of rows changed (PostgreSQL's `DELETE n` / `UPDATE n`).
//!
//! A time range of whole UTC days becomes a filter on the `date` partition column
//! ([`whole_days`]), so deleting a tenant's days removes files without reading them.
//!
//! Checks, before anything runs:
//! - at most [`MAX_LISTED_VALUES`] values in the filters' `IN` lists (54000), where deltalake
//!   would recurse once per value;
//! - a statement whose filters do not name the rows' projects (`project_id = …` or `IN (…)`)
//!   changes every tenant's rows; it is refused with 42501 unless the session opted in
//!   (`SET timefusion.allow_all_projects = on`, carried to the plan as [`AllProjects`]);
//! - `UPDATE` of the partition columns (`project_id`, `date`) or of the time column (from
//!   which `date` is derived) is refused with 0A000: moving a row between partitions is a
//!   `DELETE` and an `INSERT`.
//!
//! [`TableProvider::delete_from`]: datafusion::catalog::TableProvider::delete_from
//! [`TableProvider::update`]: datafusion::catalog::TableProvider::update

use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{
    SendableRecordBatchStream, SessionState, SessionStateBuilder, TaskContext,
};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};

use crate::engine::MICROS_PER_DAY;
use crate::engine::core::{self, Mutations, Scope};
use crate::engine::delta::{self, Mutation};
use crate::engine::schema::TableSchema;
use crate::error::{SqlError, SqlState};
use crate::sql::pruning::Pruning;

/// Values a mutation's filters may list in `IN (…)`, all lists together. deltalake turns a
/// list into a chain of `OR`s for its file skipping and converts that chain recursively, one
/// stack frame per value: 50,000 values overflowed the 16 MiB statement stack and aborted the
/// process, 20,000 did not. Half of that, in release and debug builds alike.
pub const MAX_LISTED_VALUES: usize = 10_000;

/// The session setting that lets a `DELETE` / `UPDATE` without a `project_id` filter run.
pub const ALL_PROJECTS_SETTING: &str = "timefusion.allow_all_projects";

/// Marks a statement's session config when the session set [`ALL_PROJECTS_SETTING`]: its
/// mutations may change every project's rows.
#[derive(Debug)]
pub struct AllProjects;

/// Marks the session a `DELETE` / `UPDATE` is planned in ([`session`]): DataFusion plans the
/// statement's input scan before it calls the provider's `delete_from` / `update` and never
/// runs it, so [`crate::sql::table::TimeFusionTable`] answers that scan with an empty plan.
/// Only the statement's own table is scanned in that session: [`check`] refuses subqueries
/// and joins.
#[derive(Debug)]
pub struct PlanningMutation;

/// The statement forms a mutation's plan may have: DataFusion hands the provider only the
/// filters that sit on the target table, so a subquery (turned into a join by the optimizer)
/// or `UPDATE … FROM` would silently widen the statement to rows it does not select. They
/// are refused (0A000) before anything runs.
pub fn check(plan: &LogicalPlan) -> Result<()> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(());
    };
    let refuse = |what: &str| -> Result<()> {
        Err(SqlError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "{what} in {} is not supported",
                dml.op.name().to_uppercase()
            ),
        )
        .into())
    };
    let mut outcome = Ok(());
    dml.input.apply(|node| {
        match node {
            LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::TableScan(_)
            | LogicalPlan::SubqueryAlias(_) => {}
            _ => {
                outcome = refuse("a join or another relation");
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        let subquery = node.expressions().iter().any(|e| {
            e.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                ))
            })
            .unwrap_or(true)
        });
        if subquery {
            outcome = refuse("a subquery");
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    outcome
}

/// The session a mutation is planned in: `state` without the optimizer passes that move
/// expressions into projections below a filter (`extract_leaf_expressions` and its
/// push-down), since DataFusion 55 hands the provider the filter itself, which then names
/// a column no table has; marked [`PlanningMutation`].
pub fn session(state: SessionState, all_projects: bool) -> SessionState {
    let rules: Vec<_> = state
        .optimizers()
        .iter()
        .filter(|r| {
            !matches!(
                r.name(),
                "extract_leaf_expressions" | "push_down_leaf_projections"
            )
        })
        .cloned()
        .collect();
    let mut config = state
        .config()
        .clone()
        .with_extension(Arc::new(PlanningMutation));
    if all_projects {
        config = config.with_extension(Arc::new(AllProjects));
    }
    SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .with_config(config)
        .build()
}

/// The values of every `IN (…)` list in `predicate`.
fn listed_values(predicate: &Expr) -> usize {
    let mut values = 0;
    // The closure never fails.
    let _ = predicate.apply(|e| {
        if let Expr::InList(list) = e {
            values += list.list.len();
        }
        Ok(TreeNodeRecursion::Continue)
    });
    values
}

/// `timestamp >= D AND timestamp < E` with `D` and `E` at UTC midnight selects exactly the
/// rows whose `date` lies in `[D, E)`, since ingest keeps `date` the UTC day of `timestamp`:
/// such a pair of `filters` is replaced by `date >= D AND date < E`. When the rest of the
/// predicate is on partition columns too (`project_id`), deltalake then deletes whole files
/// without reading them, the usual erasure of a tenant's days.
fn whole_days(filters: Vec<Expr>, table: &TableSchema) -> Vec<Expr> {
    use datafusion::logical_expr::{BinaryExpr, Operator, col, lit};
    let bound = |e: &Expr, wanted: Operator| -> Option<i64> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
            return None;
        };
        let (Expr::Column(c), Expr::Literal(value, _)) = (left.as_ref(), right.as_ref()) else {
            return None;
        };
        if *op != wanted || c.name != table.time_column {
            return None;
        }
        let micros = match value {
            ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000)?,
            ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000)?,
            ScalarValue::TimestampMicrosecond(Some(v), _) => *v,
            ScalarValue::TimestampNanosecond(Some(v), _) if v % 1_000 == 0 => v / 1_000,
            _ => return None,
        };
        (micros % MICROS_PER_DAY == 0).then_some(micros / MICROS_PER_DAY)
    };
    // The one bound of each kind, with its position and day.
    let only = |wanted: Operator| -> Option<(usize, i64)> {
        let mut found = filters
            .iter()
            .enumerate()
            .filter_map(|(i, e)| bound(e, wanted).map(|day| (i, day)));
        let first = found.next()?;
        found.next().is_none().then_some(first)
    };
    let (Some((lo, from)), Some((hi, to))) = (only(Operator::GtEq), only(Operator::Lt)) else {
        return filters;
    };
    let (Ok(from), Ok(to)) = (i32::try_from(from), i32::try_from(to)) else {
        return filters;
    };
    let date = || {
        col(datafusion::common::Column::new_unqualified(
            &table.date_column,
        ))
    };
    let mut out: Vec<Expr> = filters
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != lo && *i != hi)
        .map(|(_, e)| e)
        .collect();
    out.push(date().gt_eq(lit(ScalarValue::Date32(Some(from)))));
    out.push(date().lt(lit(ScalarValue::Date32(Some(to)))));
    out
}

/// The mutation's predicate with [`whole_days`] applied.
fn with_whole_days(mutation: Mutation, table: &TableSchema) -> Mutation {
    let split = |predicate: Option<Expr>| {
        predicate.and_then(|p| {
            let filters = split_conjunction(&p).into_iter().cloned().collect();
            conjunction(whole_days(filters, table))
        })
    };
    match mutation {
        Mutation::Delete { predicate } => Mutation::Delete {
            predicate: split(predicate),
        },
        Mutation::Update {
            predicate,
            assignments,
        } => Mutation::Update {
            predicate: split(predicate),
            assignments,
        },
    }
}

/// Checks `mutation` of `table` and returns the plan that applies it when run.
pub fn plan(
    table: &Arc<TableSchema>,
    mutations: &Arc<dyn Mutations>,
    state: &dyn Session,
    mutation: Mutation,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Mutation::Update { assignments, .. } = &mutation {
        let fixed = |column: &str| {
            table.partition_columns.iter().any(|p| p == column)
                || column == table.time_column
                || column == table.tenant_column
        };
        if let Some((column, _)) = assignments.iter().find(|(column, _)| fixed(column)) {
            return Err(SqlError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot UPDATE column \"{column}\" of \"{}\": it places the row in its partition; DELETE the row and INSERT it again",
                    table.name
                ),
            )
            .into());
        }
    }
    let listed = mutation.predicate().map_or(0, listed_values);
    if listed > MAX_LISTED_VALUES {
        return Err(SqlError::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            format!(
                "{} lists {listed} values in IN (…); at most {MAX_LISTED_VALUES} per statement: split it into several",
                mutation.verb()
            ),
        )
        .into());
    }
    let filters: Vec<Expr> = mutation
        .predicate()
        .map(|p| split_conjunction(p).into_iter().cloned().collect())
        .unwrap_or_default();
    let pruning = Pruning::from_filters(&filters, &table.tenant_column, &table.time_column);
    let mutation = with_whole_days(mutation, table);
    if pruning.projects.is_none() && state.config().get_extension::<AllProjects>().is_none() {
        return Err(SqlError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!(
                "{} without a filter on \"{}\" would change the rows of every project; add \"{} = …\" or run SET {ALL_PROJECTS_SETTING} = on first",
                mutation.verb(),
                table.tenant_column,
                table.tenant_column
            ),
        )
        .into());
    }
    let session = state
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("a mutation needs a SessionState".into()))?
        .clone();
    Ok(Arc::new(MutationExec::new(
        table.name.clone(),
        mutation,
        Scope {
            projects: pruning.projects,
            time_range: pruning.time_range,
        },
        session,
        mutations.clone(),
    )))
}

/// A failed mutation as a DataFusion error that keeps its class: an error of the statement's
/// own expressions (over buffered rows, or an Arrow error while Delta rewrote files) is
/// classified as any query's; the engine's errors carry their SQLSTATE.
fn into_datafusion(error: core::Error) -> DataFusionError {
    match error {
        core::Error::Evaluate(e) => e,
        core::Error::Delta(delta) => match *delta {
            delta::Error::Mutation {
                source: deltalake::DeltaTableError::Arrow { source },
                ..
            } => DataFusionError::ArrowError(Box::new(source), None),
            delta => DataFusionError::External(Box::new(core::Error::Delta(Box::new(delta)))),
        },
        e => DataFusionError::External(Box::new(e)),
    }
}

/// Applies one mutation when executed; one partition, one row: the `count` of rows changed.
pub struct MutationExec {
    table: String,
    mutation: Mutation,
    scope: Scope,
    session: SessionState,
    mutations: Arc<dyn Mutations>,
    properties: Arc<PlanProperties>,
}

impl MutationExec {
    fn new(
        table: String,
        mutation: Mutation,
        scope: Scope,
        session: SessionState,
        mutations: Arc<dyn Mutations>,
    ) -> Self {
        let schema = count_schema();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        MutationExec {
            table,
            mutation,
            scope,
            session,
            mutations,
            properties,
        }
    }
}

/// The result DataFusion's DML plans have: one `count` column.
fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl fmt::Debug for MutationExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MutationExec")
            .field("table", &self.table)
            .field("mutation", &self.mutation)
            .finish()
    }
}

impl DisplayAs for MutationExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TimeFusion{}: table={}",
            self.mutation.verb(),
            self.table
        )?;
        if let Some(predicate) = self.mutation.predicate() {
            write!(f, ", predicate={predicate}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for MutationExec {
    fn name(&self) -> &str {
        "MutationExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "MutationExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "MutationExec has one partition, not {partition}"
            )));
        }
        let table = self.table.clone();
        let mutation = self.mutation.clone();
        let scope = self.scope.clone();
        let session = self.session.clone();
        let mutations = self.mutations.clone();
        let schema = count_schema();
        let result = schema.clone();
        let stream = futures::stream::once(async move {
            // A task of its own: the change runs to its end (the flush it may need, the Delta
            // commit, the publication) even if whoever waits for it goes away.
            let running = tokio::spawn(async move {
                crate::panics::catch(mutations.mutate(&table, &mutation, &scope, &session))
                    .await
                    .unwrap_or_else(|m| Err(core::Error::Panicked("a mutation", m)))
            });
            let rows = running
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
                .map_err(into_datafusion)?;
            Ok(RecordBatch::try_new(
                result,
                vec![Arc::new(UInt64Array::from(vec![rows]))],
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;
    use crate::engine::schema::Catalog;

    fn at(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn a_range_of_whole_days_becomes_a_date_filter_and_anything_else_stays() {
        let catalog = Catalog::load(None).expect("schemas");
        let table = catalog.get("otel_logs_and_spans").expect("otel");
        let day = MICROS_PER_DAY;
        let project = col("project_id").eq(lit("p"));
        let days = whole_days(
            vec![
                project.clone(),
                col("timestamp").gt_eq(at(20_000 * day)),
                col("timestamp").lt(at(20_002 * day)),
            ],
            table,
        );
        assert_eq!(
            days,
            vec![
                project.clone(),
                col("date").gt_eq(lit(ScalarValue::Date32(Some(20_000)))),
                col("date").lt(lit(ScalarValue::Date32(Some(20_002)))),
            ]
        );
        // Not at midnight, not a half-open range, or one bound only: unchanged.
        for filters in [
            vec![
                col("timestamp").gt_eq(at(20_000 * day + 1)),
                col("timestamp").lt(at(20_002 * day)),
            ],
            vec![
                col("timestamp").gt(at(20_000 * day)),
                col("timestamp").lt(at(20_002 * day)),
            ],
            vec![
                col("timestamp").gt_eq(at(20_000 * day)),
                col("timestamp").lt_eq(at(20_002 * day)),
            ],
            vec![project.clone(), col("timestamp").gt_eq(at(20_000 * day))],
        ] {
            assert_eq!(whole_days(filters.clone(), table), filters);
        }
    }
}
