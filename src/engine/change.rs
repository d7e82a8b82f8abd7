//! `DELETE` / `UPDATE` of buffered rows as a WAL record: the merge-on-read path for rows not
//! yet in Delta.
//!
//! When no committed row matches a mutation ([`crate::engine::core::Mutations::mutate`]
//! checks under the commit lock), it changes buffered rows only, and is logged instead of
//! flushed: a change record (WAL version 3) holds the mutation's expressions, serialized with
//! datafusion-proto, and its scope. The WAL writer checks it against the buffer as every
//! earlier record left it ([`crate::engine::wal::Wal::append_checked`]): each chunk in scope
//! is rewritten here ([`Compiled::apply`]); if any row fails (a cast, a division by zero),
//! nothing is written and the statement fails; otherwise the record is synced and the
//! rewritten chunks replace the old ones in one step, before any later record applies.
//! Replay applies the record to the rows below it in the same way.
//!
//! That replay rebuilds what the live change did rests on three things:
//! - **Only rows below the record.** The record applies to the buffered rows of records with
//!   a lower sequence, live and in replay (records apply in sequence order). A flush commits a
//!   WAL prefix: the rows it took left the buffer already changed, and replay skips them.
//! - **Row by row.** A row's outcome depends on that row alone: only expressions whose
//!   functions are immutable are logged (`now()` is folded to a literal before), so a replay
//!   over fewer rows (a flush took some) gives each row what it got live. Expressions are
//!   evaluated over a batch, and again row by row when that fails ([`evaluate`]): a
//!   batch-wide `AND` evaluates its right side on rows its left side rules out, which a
//!   single row's never does, so an error is a row's own and replay over any subset of the
//!   rows that passed live passes too.
//! - **Only what decodes.** An expression is logged only if it reads back equal through the
//!   function registry start-up decodes with ([`encode`]); anything else takes the Delta path.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch, interleave};
use arrow::datatypes::SchemaRef;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion, TreeNodeVisitor};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::physical_expr::execution_props::ExecutionProps;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion_proto::bytes::Serializeable;

use crate::engine::batch::{default_column, is_default};
use crate::engine::buffer::{Changed, ChunkRef};
use crate::engine::core::Scope;
use crate::engine::delta::Mutation;
use crate::error::{SqlError, SqlState};

/// Buffered rows a change may reach (in its projects and time range) to be logged: the WAL
/// writer evaluates it while every other writer waits for its acknowledgement, so a statement
/// reaching more takes the Delta path, flushing them first. Measured over 1,000,000 buffered
/// rows of one project (release build, 2 cores): a one-row `UPDATE … WHERE id = …` answers
/// in 6.5 ms, an `UPDATE` of all of them in 22 ms.
pub const MAX_ROWS: usize = 1 << 20;

/// The layout of a change record's body this build writes.
const FORMAT: u8 = 1;

/// `mutation` over `scope` as a change record's body, or `None` when it cannot be logged: an
/// expression calls a function that is not immutable, or does not read back equal through
/// `functions` (the registry replay decodes with).
pub fn encode(mutation: &Mutation, scope: &Scope, functions: &TaskContext) -> Option<Vec<u8>> {
    let (kind, predicate, assignments): (u8, _, &[(String, Expr)]) = match mutation {
        Mutation::Delete { predicate } => (0, predicate, &[]),
        Mutation::Update {
            predicate,
            assignments,
        } => (1, predicate, assignments),
    };
    let mut out = vec![FORMAT, kind];
    match &scope.projects {
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(projects) => {
            out.extend_from_slice(&u32::try_from(projects.len()).ok()?.to_le_bytes());
            let mut sorted: Vec<&String> = projects.iter().collect();
            sorted.sort();
            for project in sorted {
                put_bytes(&mut out, project.as_bytes())?;
            }
        }
    }
    match scope.time_range {
        None => out.push(0),
        Some((from, to)) => {
            out.push(1);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&to.to_le_bytes());
        }
    }
    match predicate {
        None => out.push(0),
        Some(predicate) => {
            out.push(1);
            put_bytes(&mut out, &logged(predicate, functions)?)?;
        }
    }
    out.extend_from_slice(&u32::try_from(assignments.len()).ok()?.to_le_bytes());
    for (column, value) in assignments {
        put_bytes(&mut out, column.as_bytes())?;
        put_bytes(&mut out, &logged(value, functions)?)?;
    }
    Some(out)
}

/// A change record's body, read back: the mutation and its scope.
pub fn decode(body: &[u8], functions: &TaskContext) -> Result<(Mutation, Scope), String> {
    let mut at = Reader { body, at: 0 };
    let format = at.u8()?;
    if format != FORMAT {
        return Err(format!(
            "change record format {format} is not known to this build"
        ));
    }
    let kind = at.u8()?;
    let projects = match at.u32()? {
        u32::MAX => None,
        n => Some(
            (0..n)
                .map(|_| at.string())
                .collect::<Result<std::collections::HashSet<_>, _>>()?,
        ),
    };
    let time_range = match at.u8()? {
        0 => None,
        _ => Some((at.i64()?, at.i64()?)),
    };
    let expr = |bytes: &[u8]| {
        Expr::from_bytes_with_ctx(bytes, functions).map_err(|e| format!("expression: {e}"))
    };
    let predicate = match at.u8()? {
        0 => None,
        _ => Some(expr(at.bytes()?)?),
    };
    let count = at.u32()?;
    let mut assignments = Vec::new();
    for _ in 0..count {
        let column = at.string()?;
        assignments.push((column, expr(at.bytes()?)?));
    }
    if at.at != body.len() {
        return Err("change record has trailing bytes".into());
    }
    let mutation = match kind {
        0 => Mutation::Delete { predicate },
        1 => Mutation::Update {
            predicate,
            assignments,
        },
        other => return Err(format!("change kind {other} is not known to this build")),
    };
    Ok((
        mutation,
        Scope {
            projects,
            time_range,
        },
    ))
}

/// `expr` serialized, if every function it calls is immutable and it decodes back equal.
fn logged(expr: &Expr, functions: &TaskContext) -> Option<Vec<u8>> {
    let mut immutable = true;
    let walked = expr.apply(|e| {
        let volatility = match e {
            Expr::ScalarFunction(f) => Some(f.func.signature().volatility),
            Expr::ScalarVariable(..) | Expr::Placeholder(_) => Some(Volatility::Volatile),
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                Some(Volatility::Volatile)
            }
            Expr::AggregateFunction(_) | Expr::WindowFunction(_) => Some(Volatility::Volatile),
            _ => None,
        };
        if volatility.is_some_and(|v| v != Volatility::Immutable) {
            immutable = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if walked.is_err() || !immutable || too_deep(expr) {
        return None;
    }
    let bytes = expr.to_bytes().ok()?;
    let back = Expr::from_bytes_with_ctx(&bytes, functions).ok()?;
    (&back == expr).then(|| bytes.to_vec())
}

/// Expression depth a logged change may have: the WAL writer evaluates it on a thread of the
/// default 2 MiB stack, not on a statement's (`TIMEFUSION_STACK_MB`, sized for
/// `TIMEFUSION_MAX_EXPRESSION_DEPTH`, which an operator may raise). A 995-deep `+` chain ran
/// there in a debug build; deeper changes take the Delta path, on the statement's stack.
const MAX_DEPTH: usize = 256;

/// Whether `expr` nests deeper than [`MAX_DEPTH`].
fn too_deep(expr: &Expr) -> bool {
    struct Depth {
        now: usize,
        max: usize,
    }
    impl<'n> TreeNodeVisitor<'n> for Depth {
        type Node = Expr;
        fn f_down(&mut self, _: &'n Expr) -> Result<TreeNodeRecursion> {
            self.now += 1;
            self.max = self.max.max(self.now);
            Ok(if self.max > MAX_DEPTH {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        }
        fn f_up(&mut self, _: &'n Expr) -> Result<TreeNodeRecursion> {
            self.now -= 1;
            Ok(TreeNodeRecursion::Continue)
        }
    }
    let mut depth = Depth { now: 0, max: 0 };
    expr.visit(&mut depth).is_err() || depth.max > MAX_DEPTH
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
    out.extend_from_slice(bytes);
    Some(())
}

/// A cursor over a change record's body; every read checks the length.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.body.len());
        let end = end.ok_or_else(|| "change record ends early".to_string())?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn i64(&mut self) -> Result<i64, String> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a name is not UTF-8".into())
    }
}

/// A mutation ready to run over batches of one table's schema.
pub struct Compiled {
    schema: SchemaRef,
    predicate: Option<Arc<dyn PhysicalExpr>>,
    /// `None` for `DELETE`; for `UPDATE`, each assigned column's index and value.
    assignments: Option<Vec<(usize, Arc<dyn PhysicalExpr>)>>,
}

impl Compiled {
    /// `mutation` over batches of `schema`; `props` are the statement's (a logged change has
    /// nothing left that reads them: `ExecutionProps::new()`).
    pub fn new(mutation: &Mutation, schema: SchemaRef, props: &ExecutionProps) -> Result<Compiled> {
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let physical = |e: &Expr| {
            create_physical_expr(e, &df_schema, props, &PhysicalPlanningContext::default())
        };
        let predicate = mutation.predicate().map(physical).transpose()?;
        let assignments = match mutation {
            Mutation::Delete { .. } => None,
            Mutation::Update { assignments, .. } => Some(
                assignments
                    .iter()
                    .map(|(column, value)| Ok((schema.index_of(column)?, physical(value)?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(Compiled {
            schema,
            predicate,
            assignments,
        })
    }

    /// `batch` after the change and the number of rows it changed, or `None` when no row
    /// matches. An `UPDATE` evaluates its values over the matching rows only, each over the
    /// row as it was (`SET a = b, b = a` swaps), casts them to the column's type (an error,
    /// not NULL, when a value does not fit) and refuses NULL in a `NOT NULL` column (23502).
    pub fn apply(&self, batch: &RecordBatch) -> Result<Option<(RecordBatch, usize)>> {
        let matches = self.matches(batch)?;
        let changed = matches.true_count();
        if changed == 0 {
            return Ok(None);
        }
        let Some(assignments) = &self.assignments else {
            let kept = filter_record_batch(batch, &arrow::compute::not(&matches)?)?;
            return Ok(Some((self.keeping_defaults(kept)?, changed)));
        };
        let selected = filter_record_batch(batch, &matches)?;
        let mut columns = batch.columns().to_vec();
        let cast = CastOptions {
            safe: false,
            ..Default::default()
        };
        for (index, value) in assignments {
            let field = self.schema.field(*index);
            let values = evaluate(value, &selected)?;
            let values = cast_with_options(&values, field.data_type(), &cast)?;
            if !field.is_nullable() && values.null_count() > 0 {
                return Err(SqlError::new(
                    SqlState::NOT_NULL_VIOLATION,
                    format!(
                        "null value in column \"{}\" violates not-null constraint",
                        field.name()
                    ),
                )
                .into());
            }
            columns[*index] = scatter(&matches, &columns[*index], &values)?;
        }
        Ok(Some((
            RecordBatch::try_new(self.schema.clone(), columns)?,
            changed,
        )))
    }

    /// The rows of `batch` the change selects (a NULL predicate selects none).
    pub fn matches(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let Some(predicate) = &self.predicate else {
            return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
        };
        let selected = evaluate(predicate, batch)?;
        let selected = selected
            .as_boolean_opt()
            .ok_or_else(|| DataFusionError::Plan("the predicate is not boolean".into()))?;
        Ok(if selected.null_count() > 0 {
            arrow::compute::prep_null_mask_filter(selected)
        } else {
            selected.clone()
        })
    }

    /// The memory to charge for `new`, this change's rows of a chunk charged `old_bytes` for
    /// `old`. A `DELETE`'s rows are copies of their own. An `UPDATE`'s keep `old`'s other
    /// columns (slices, perhaps, of a larger batch, whose share `old_bytes` is): the share of
    /// the replaced columns is taken off in proportion to their size, and the new columns,
    /// allocations of their own, are added, so updating a chunk again and again does not
    /// grow its charge.
    pub fn charged(&self, old: &RecordBatch, old_bytes: usize, new: &RecordBatch) -> usize {
        let Some(assignments) = &self.assignments else {
            return crate::engine::batch::owned_bytes(new);
        };
        let size = |batch: &RecordBatch, i: usize| batch.column(i).get_array_memory_size();
        let all: usize = (0..old.num_columns()).map(|i| size(old, i)).sum();
        let replaced: usize = assignments.iter().map(|(i, _)| size(old, *i)).sum();
        let kept = if all == 0 {
            old_bytes
        } else {
            (old_bytes as u128 * (all - replaced.min(all)) as u128 / all as u128) as usize
        };
        kept + assignments
            .iter()
            .map(|(i, _)| size(new, *i))
            .sum::<usize>()
    }

    /// `batch` with each column every row of which holds its default as ingest's shared
    /// default array, as the buffer keeps left-out columns.
    fn keeping_defaults(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let columns = self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| {
                if rows > 0 && is_default(field, column) {
                    default_column(field, rows)
                } else {
                    column.clone()
                }
            })
            .collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }
}

/// Each of `chunks` the change `compiled` changes, with its new rows, and the rows changed.
pub fn changes(compiled: &Compiled, chunks: Vec<ChunkRef>) -> Result<(u64, Vec<Changed>)> {
    let mut rows = 0;
    let mut changed = Vec::new();
    for chunk in chunks {
        if let Some((batch, n)) = compiled.apply(&chunk.batch)? {
            rows += n as u64;
            let bytes = compiled.charged(&chunk.batch, chunk.bytes, &batch);
            changed.push(Changed {
                at: chunk,
                rows: Some(batch),
                bytes,
            });
        }
    }
    Ok((rows, changed))
}

/// `old` with the rows `matches` selects replaced, in order, by `new`'s.
fn scatter(matches: &BooleanArray, old: &ArrayRef, new: &ArrayRef) -> Result<ArrayRef> {
    let mut next = 0;
    let indices: Vec<(usize, usize)> = (0..matches.len())
        .map(|row| {
            if matches.value(row) {
                next += 1;
                (1, next - 1)
            } else {
                (0, row)
            }
        })
        .collect();
    Ok(interleave(&[old.as_ref(), new.as_ref()], &indices)?)
}

/// `expr` over `batch`, and when that fails, over each row on its own: the first row whose
/// own evaluation fails gives the error (see the module's "row by row").
fn evaluate(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<ArrayRef> {
    let whole = |batch: &RecordBatch| {
        expr.evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
    };
    match whole(batch) {
        Err(_) if batch.num_rows() > 1 => {
            let rows = (0..batch.num_rows())
                .map(|row| whole(&batch.slice(row, 1)))
                .collect::<Result<Vec<_>>>()?;
            let rows: Vec<&dyn Array> = rows.iter().map(|a| a.as_ref()).collect();
            Ok(arrow::compute::concat(&rows)?)
        }
        evaluated => evaluated,
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::{cast, col, lit};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("project_id", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "b", "a"])),
                Arc::new(StringArray::from(vec!["1", "2", "3", "4"])),
                Arc::new(Int64Array::from(vec![Some(10), None, Some(30), Some(40)])),
                Arc::new(StringArray::from(vec![
                    Some("x"),
                    Some("7"),
                    None,
                    Some("y"),
                ])),
            ],
        )
        .expect("batch")
    }

    fn ints(batch: &RecordBatch, column: &str) -> Vec<Option<i64>> {
        let column = batch.column_by_name(column).expect("column");
        column
            .as_primitive::<arrow::datatypes::Int64Type>()
            .iter()
            .collect()
    }

    #[test]
    fn a_change_reads_back_through_the_registry_and_keeps_its_scope() {
        let functions = TaskContext::default();
        let mutation = Mutation::Update {
            predicate: Some(col("project_id").eq(lit("a")).and(col("n").gt(lit(5i64)))),
            assignments: vec![
                ("s".into(), lit("done")),
                ("n".into(), col("n") + lit(1i64)),
            ],
        };
        let scope = Scope {
            projects: Some(["a".to_string()].into()),
            time_range: Some((-5, i64::MAX)),
        };
        let body = encode(&mutation, &scope, &functions).expect("loggable");
        let (back, back_scope) = decode(&body, &functions).expect("decode");
        let Mutation::Update {
            predicate,
            assignments,
        } = back
        else {
            panic!("an UPDATE reads back as {back:?}");
        };
        assert_eq!(predicate.as_ref(), mutation.predicate());
        assert_eq!(assignments.len(), 2);
        assert_eq!(back_scope.projects, scope.projects);
        assert_eq!(back_scope.time_range, scope.time_range);
        // Truncated or extended bodies are errors, never panics.
        for cut in 0..body.len() {
            assert!(decode(&body[..cut], &functions).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer, &functions).is_err());
    }

    #[test]
    fn only_immutable_expressions_that_read_back_are_logged() {
        let functions = datafusion::prelude::SessionContext::new().task_ctx();
        let scope = Scope::default();
        let now = datafusion::functions::datetime::expr_fn::now();
        let volatile = Mutation::Delete {
            predicate: Some(col("n").lt(cast(now, DataType::Int64))),
        };
        assert!(encode(&volatile, &scope, &functions).is_none());
        let random = Mutation::Update {
            predicate: None,
            assignments: vec![("n".into(), datafusion::functions::math::expr_fn::random())],
        };
        assert!(encode(&random, &scope, &functions).is_none());
        // A function the registry does not hold does not read back.
        let unknown = Mutation::Delete {
            predicate: Some(datafusion::functions::string::expr_fn::upper(col("s")).eq(lit("X"))),
        };
        let bare = TaskContext::default();
        assert!(encode(&unknown, &scope, &bare).is_none());
        assert!(encode(&unknown, &scope, &functions).is_some());
        // Deeper than the WAL writer's stack is sized for: not logged.
        let chain = |n: usize| (0..n).fold(col("n"), |e, _| e + lit(1i64));
        let deep = |n| Mutation::Update {
            predicate: None,
            assignments: vec![("n".into(), chain(n))],
        };
        assert!(encode(&deep(MAX_DEPTH - 2), &scope, &functions).is_some());
        assert!(encode(&deep(MAX_DEPTH + 1), &scope, &functions).is_none());
    }

    #[test]
    fn delete_and_update_change_only_matching_rows() {
        let batch = batch();
        let delete = Mutation::Delete {
            predicate: Some(col("project_id").eq(lit("a")).and(col("n").gt(lit(15i64)))),
        };
        let compiled =
            Compiled::new(&delete, batch.schema(), &ExecutionProps::new()).expect("compile");
        let (kept, changed) = compiled.apply(&batch).expect("apply").expect("a match");
        assert_eq!(changed, 1);
        assert_eq!(ints(&kept, "n"), vec![Some(10), None, Some(30)]);

        // Values over the rows as they were; NULL predicate rows (n is NULL) do not match.
        let update = Mutation::Update {
            predicate: Some(col("n").lt(lit(35i64))),
            assignments: vec![
                ("n".into(), col("n") + lit(1i64)),
                ("s".into(), cast(col("n"), DataType::Utf8)),
            ],
        };
        let compiled =
            Compiled::new(&update, batch.schema(), &ExecutionProps::new()).expect("compile");
        let (updated, changed) = compiled.apply(&batch).expect("apply").expect("a match");
        assert_eq!(changed, 2);
        assert_eq!(
            ints(&updated, "n"),
            vec![Some(11), None, Some(31), Some(40)]
        );
        let s = updated.column_by_name("s").expect("s").as_string::<i32>();
        let s: Vec<Option<&str>> = s.iter().collect();
        assert_eq!(s, vec![Some("10"), Some("7"), Some("30"), Some("y")]);

        let none = Mutation::Delete {
            predicate: Some(col("id").eq(lit("nope"))),
        };
        let compiled =
            Compiled::new(&none, batch.schema(), &ExecutionProps::new()).expect("compile");
        assert!(compiled.apply(&batch).expect("apply").is_none());
    }

    #[test]
    fn a_row_fails_on_its_own_or_not_at_all() {
        let batch = batch();
        // Row "2" holds s = '7', the others text: the cast fails for them, but only row "2"
        // is selected, and a value is computed over the selected rows alone.
        let update = Mutation::Update {
            predicate: Some(col("id").eq(lit("2"))),
            assignments: vec![("n".into(), cast(col("s"), DataType::Int64))],
        };
        let compiled =
            Compiled::new(&update, batch.schema(), &ExecutionProps::new()).expect("compile");
        let (updated, _) = compiled.apply(&batch).expect("apply").expect("a match");
        assert_eq!(
            ints(&updated, "n"),
            vec![Some(10), Some(7), Some(30), Some(40)]
        );
        // Selecting a row whose value cannot be cast is the statement's error.
        let failing = Mutation::Update {
            predicate: Some(col("id").eq(lit("1"))),
            assignments: vec![("n".into(), cast(col("s"), DataType::Int64))],
        };
        let compiled =
            Compiled::new(&failing, batch.schema(), &ExecutionProps::new()).expect("compile");
        assert!(compiled.apply(&batch).is_err());
        // A predicate whose right side fails on rows its left side rules out: evaluated over
        // the batch it fails, row by row it selects row "3" (s is NULL there).
        let and = Mutation::Delete {
            predicate: Some(
                col("project_id")
                    .eq(lit("b"))
                    .and(cast(col("s"), DataType::Int64).is_null()),
            ),
        };
        let compiled =
            Compiled::new(&and, batch.schema(), &ExecutionProps::new()).expect("compile");
        let (kept, changed) = compiled.apply(&batch).expect("apply").expect("a match");
        assert_eq!((changed, kept.num_rows()), (1, 3));
        // NULL into a NOT NULL column: 23502.
        let null = Mutation::Update {
            predicate: Some(col("id").eq(lit("1"))),
            assignments: vec![(
                "id".into(),
                lit(datafusion::common::ScalarValue::Utf8(None)),
            )],
        };
        let compiled =
            Compiled::new(&null, batch.schema(), &ExecutionProps::new()).expect("compile");
        let error = compiled.apply(&batch).expect_err("23502");
        assert!(error.to_string().contains("not-null"), "{error}");
    }
}
