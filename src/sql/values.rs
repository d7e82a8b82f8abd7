//! The fast path for `INSERT INTO t (cols) VALUES (…), …` with literal values.
//!
//! Planning a 1,000-row `VALUES` list through DataFusion costs far more than storing it, so a
//! statement whose values are all plain literals is turned straight into an Arrow batch: one
//! `Utf8` column per target column holding the literals' text, which [`crate::engine::ingest::coerce`]
//! then casts column by column to the table's types (the same casts, errors and SQLSTATEs as
//! any other write). Anything else — expressions, function calls, casts, parameters,
//! `DEFAULT`, arrays, `ON CONFLICT`, `RETURNING`, `INSERT … SELECT` — returns `None` and goes
//! through DataFusion unchanged.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::sql::sqlparser::ast::{
    Expr, Insert, ObjectName, ObjectNamePart, Parens, SetExpr, Statement, TableObject,
    UnaryOperator, Value, Values,
};

use crate::engine::schema::{Catalog, TableSchema};

/// A literal `INSERT` ready for [`crate::engine::ingest::Ingest::write`].
#[derive(Debug)]
pub struct LiteralInsert {
    pub table: Arc<TableSchema>,
    pub batch: RecordBatch,
}

/// Whether the statement is an `INSERT … VALUES` the fast path can take (no planning needed).
pub fn is_literal_insert(statement: &Statement, catalog: &Catalog) -> bool {
    literal_insert(statement, catalog).is_some()
}

/// The batch of a literal `INSERT … VALUES` into a known table, or `None` to let DataFusion
/// plan the statement.
pub fn literal_insert(statement: &Statement, catalog: &Catalog) -> Option<LiteralInsert> {
    let Statement::Insert(insert) = statement else {
        return None;
    };
    let (name, columns, values) = plain_values(insert)?;
    let table = crate::sql::resolve_table(catalog, name)?.clone();
    let (names, targets) = target_columns(&table, columns)?;
    let batch = text_columns(&values.rows, &names, &targets)?;
    Some(LiteralInsert { table, batch })
}

/// The table, target columns and rows of an `INSERT … VALUES` with nothing but them: no
/// `ON CONFLICT`, `RETURNING`, CTE, `ORDER BY`, or other clause that needs planning, and an
/// explicit column list.
fn plain_values(insert: &Insert) -> Option<(&ObjectName, &[ObjectName], &Values)> {
    let Insert {
        or,
        ignore,
        table,
        table_alias,
        columns,
        overwrite,
        source,
        assignments,
        partitioned,
        after_columns,
        on,
        returning,
        output,
        replace_into,
        priority,
        insert_alias,
        settings,
        format_clause,
        multi_table_insert_type,
        multi_table_into_clauses,
        multi_table_when_clauses,
        multi_table_else_clause,
        ..
    } = insert;
    let plain = or.is_none()
        && !ignore
        && table_alias.is_none()
        && !overwrite
        && assignments.is_empty()
        && partitioned.is_none()
        && after_columns.is_empty()
        && on.is_none()
        && returning.is_none()
        && output.is_none()
        && !replace_into
        && priority.is_none()
        && insert_alias.is_none()
        && settings.is_none()
        && format_clause.is_none()
        && multi_table_insert_type.is_none()
        && multi_table_into_clauses.is_empty()
        && multi_table_when_clauses.is_empty()
        && multi_table_else_clause.is_none();
    if !plain || columns.is_empty() {
        return None;
    }
    if !plain || columns.is_empty() {
        return None;
    }
    let TableObject::TableName(name) = table else {
        return None;
    };
    let query = source.as_ref()?;
    let plain_query = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.fetch.is_none()
        && query.locks.is_empty()
        && query.pipe_operators.is_empty();
    let SetExpr::Values(values) = query.body.as_ref() else {
        return None;
    };
    if !plain_query {
        return None;
    }

    Some((name, columns, values))
}

/// The names and types of `columns` in `table`; `None` for an unknown or repeated column or a
/// list column (array literals need SQL semantics).
fn target_columns(
    table: &TableSchema,
    columns: &[ObjectName],
) -> Option<(Vec<String>, Vec<DataType>)> {
    let mut names = Vec::with_capacity(columns.len());
    let mut targets = Vec::with_capacity(columns.len());
    for column in columns {
        let [ObjectNamePart::Identifier(ident)] = column.0.as_slice() else {
            return None;
        };
        let name = crate::sql::normalize_ident(ident);
        let field = table.schema.field_with_name(&name).ok()?;
        if names.contains(&name) || matches!(field.data_type(), DataType::List(_)) {
            return None;
        }
        names.push(name);
        targets.push(field.data_type().clone());
    }

    Some((names, targets))
}

/// One `Utf8` column per target column holding the literals' text, for `ingest::coerce` to
/// cast; `None` when a row has the wrong width or a value is not a plain literal.
fn text_columns(
    rows: &[Parens<Vec<Expr>>],
    names: &[String],
    targets: &[DataType],
) -> Option<RecordBatch> {
    let mut texts: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); names.len()];
    for row in rows {
        if row.content.len() != names.len() {
            return None;
        }
        for ((expr, column), target) in row.content.iter().zip(texts.iter_mut()).zip(targets) {
            column.push(literal_text(expr, target)?);
        }
    }
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(n, DataType::Utf8, true))
        .collect();
    let arrays: Vec<ArrayRef> = texts
        .into_iter()
        .map(|t| Arc::new(StringArray::from(t)) as ArrayRef)
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).ok()
}

/// The text of a literal whose meaning for `target` is the same as a string cast; `None` for
/// anything that needs SQL semantics (expressions, or numbers where a cast would differ).
fn literal_text(expr: &Expr, target: &DataType) -> Option<Option<String>> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(Some(s.clone())),
            Value::Null => Some(None),
            Value::Boolean(b) if matches!(target, DataType::Boolean | DataType::Utf8) => {
                Some(Some(b.to_string()))
            }
            Value::Number(n, false) if number_casts_exactly(n, target) => Some(Some(n.clone())),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal_text(expr, target)? {
            Some(n) if matches!(expr.as_ref(), Expr::Value(v) if matches!(v.value, Value::Number(..))) => {
                Some(Some(format!("-{n}")))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Integers into integer columns and any number into float or text columns cast exactly as
/// PostgreSQL assigns them; other combinations go through DataFusion.
fn number_casts_exactly(number: &str, target: &DataType) -> bool {
    match target {
        DataType::Int32 | DataType::Int64 => number.bytes().all(|b| b.is_ascii_digit()),
        DataType::Float64 | DataType::Utf8 => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0)
    }

    fn catalog() -> Catalog {
        Catalog::load(None).expect("schemas")
    }

    #[test]
    fn literal_values_become_text_columns() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration, context___is_remote, name) \
                   VALUES ('p1', '2026-01-01T00:00:00Z', 'a', 42, true, NULL), ('p2', '2026-01-01 00:00:01', 'b''s', -7, false, 'n')";
        let insert = literal_insert(&parse(sql), &catalog()).expect("fast path");
        assert_eq!(insert.table.name, "otel_logs_and_spans");
        let batch = insert.batch;
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 6);
        let text = |c: usize, r: usize| batch.column(c).as_string::<i32>().value(r).to_string();
        assert_eq!(text(2, 1), "b's");
        assert_eq!(text(3, 1), "-7");
        assert_eq!(text(4, 0), "true");
        assert!(batch.column(5).is_null(0));
        let coerced = crate::engine::ingest::coerce(
            &catalog().get("otel_logs_and_spans").expect("t").clone(),
            &batch,
        )
        .expect("coerces to the table schema");
        assert_eq!(coerced.num_rows(), 2);
    }

    #[test]
    fn anything_needing_sql_semantics_falls_back() {
        let c = catalog();
        let fallback = [
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('p', now(), 'a')",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ($1, $2, $3)",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration) VALUES ('p', 'x', 'a', 1.5)",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes) VALUES ('p', 'x', 'a', ARRAY['h'])",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) SELECT 'p', now(), 'a'",
            "INSERT INTO otel_logs_and_spans VALUES ('p')",
            "INSERT INTO no_such_table (a) VALUES ('x')",
            "INSERT INTO otel_logs_and_spans (project_id, project_id) VALUES ('p', 'q')",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('p', 'x', 'a') RETURNING id",
            "SELECT 1",
        ];
        for sql in fallback {
            assert!(literal_insert(&parse(sql), &c).is_none(), "{sql}");
        }
    }
}
