//! `INSERT INTO t (cols) VALUES (…), …` without planning: the write path of every `INSERT`
//! a driver or an application sends.
//!
//! Planning a `VALUES` list through DataFusion costs milliseconds a statement and a large part
//! of a millisecond a row, far more than storing it. So an `INSERT` whose values are each a
//! literal, a parameter, `NULL`, `DEFAULT` or `now()` — optionally cast to the column's type
//! (`'…'::timestamptz`, `$1::jsonb`, `ARRAY['a']::text[]`, `'{a,b}'` array text) — becomes an
//! [`InsertTemplate`] once, when it is parsed: the table, the target columns and, for each
//! row, where each value comes from. [`InsertTemplate::bind`] then builds the Arrow batch from
//! a statement's parameters in microseconds, and [`crate::engine::ingest`] casts it to the
//! table's types with the same casts, errors and SQLSTATEs as any other write. Anything else —
//! expressions, function calls, a parameter used as two types, casts to another type,
//! `ON CONFLICT`, `RETURNING`, `INSERT … SELECT` — gets `None` and goes through DataFusion
//! unchanged.
//!
//! The simple protocol binds a template with no parameters at once; the extended protocol
//! keeps it in the prepared statement as a [`PreparedInsert`] plan node, whose placeholders
//! carry the parameter types `Describe` reports, and binds it at each `Execute`. A single-row
//! template, what drivers repeat in their batches, binds to checked values instead
//! ([`InsertTemplate::bind_row`]), which [`HeldRows`] appends column by column into one batch
//! for all the rows of a pipeline.
//! Tests: the unit tests below, `tests/e2e/pipeline.rs`, `tests/slt/`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListBuilder, RecordBatch, RecordBatchOptions, StringBuilder,
    new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, DFSchemaRef, ScalarValue};
use datafusion::logical_expr::expr::Placeholder;
use datafusion::logical_expr::{
    Expr as LogicalExpr, Extension, LogicalPlan, UserDefinedLogicalNodeCore,
};
use datafusion::sql::sqlparser::ast::{
    self, ArrayElemTypeDef, CastKind, Expr, FunctionArguments, Insert, ObjectName, ObjectNamePart,
    SetExpr, Statement, TableObject, TimezoneInfo, UnaryOperator, Value,
};

use crate::engine::ingest;
use crate::engine::schema::{Catalog, TableSchema};

/// A parsed `INSERT … VALUES` ready to be bound: see the module documentation.
#[derive(Debug)]
pub struct InsertTemplate {
    pub table: Arc<TableSchema>,
    /// The target columns, in the statement's order, with the table's fields.
    columns: Vec<Field>,
    /// For each row, where each target column's value comes from.
    rows: Vec<Vec<Cell>>,
    /// The types of `$1`, `$2`, …: the column each fills, or the type it is cast to.
    parameters: Vec<ParameterType>,
    /// The schema of the last batch bound, reused while the values keep their types: a
    /// prepared statement's executions almost always bind the same types.
    last_schema: parking_lot::Mutex<Option<SchemaRef>>,
    /// The target columns with the table's fields: the schema of [`HeldRows::finish`].
    table_schema: SchemaRef,
    /// A column every row needs that the statement leaves out.
    missing: Option<String>,
}

/// The type of a parameter: the Arrow type of the column it fills (or of its cast), and
/// whether it is cast to `json` / `jsonb`, which clients send in their JSON encodings.
#[derive(Debug, Clone, PartialEq)]
pub struct ParameterType {
    pub data_type: DataType,
    pub json: bool,
}

/// A bound parameter as [`InsertTemplate::bind_row`] takes it: text as the client sent it (a
/// text-format value, or a binary one of a text type), or a decoded value.
#[derive(Debug, Clone)]
pub enum Parameter<'a> {
    Text(&'a str),
    Value(ScalarValue),
}

impl Parameter<'_> {
    /// The parameter as a value: text as `Utf8`.
    pub fn into_value(self) -> ScalarValue {
        match self {
            Parameter::Text(text) => ScalarValue::Utf8(Some(text.to_string())),
            Parameter::Value(value) => value,
        }
    }
}

/// The checked rows of a single-row template's executions ([`InsertTemplate::bind_row`]),
/// appended column by column as they come: a driver's batch is one statement executed per
/// row, and its text goes from the client's message straight into the column it ends in.
pub struct HeldRows {
    template: Arc<InsertTemplate>,
    columns: Vec<HeldColumn>,
    rows: usize,
}

enum HeldColumn {
    Text(StringBuilder),
    Texts(ListBuilder<StringBuilder>),
    Values(Vec<ScalarValue>),
}

impl HeldRows {
    pub fn new(template: Arc<InsertTemplate>) -> Self {
        let columns = template
            .table_schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                // Grown as rows come: most pipelines hold a few rows, some thousands.
                DataType::Utf8 => HeldColumn::Text(StringBuilder::with_capacity(1, 0)),
                DataType::List(item) if item.data_type() == &DataType::Utf8 => HeldColumn::Texts(
                    ListBuilder::with_capacity(StringBuilder::with_capacity(1, 0), 1)
                        .with_field(item.clone()),
                ),
                _ => HeldColumn::Values(Vec::new()),
            })
            .collect();
        HeldRows {
            template,
            columns,
            rows: 0,
        }
    }

    /// The template whose rows these are.
    pub fn template(&self) -> &Arc<InsertTemplate> {
        &self.template
    }

    /// Whether rows of `template` can join these: the same table and target columns.
    pub fn fits(&self, template: &InsertTemplate) -> bool {
        self.template.table.name == template.table.name
            && self.template.table_schema == template.table_schema
    }

    /// Appends one row from [`InsertTemplate::bind_row`] of this template; the bytes it
    /// takes.
    pub fn push(&mut self, row: Vec<ingest::Checked<'_>>) -> ingest::Result<usize> {
        if row.len() != self.columns.len() {
            return Err(self.mismatch(0));
        }
        // Every value is checked before any is appended, so a row goes in whole or not at all.
        if let Some(j) = row
            .iter()
            .zip(&self.columns)
            .position(|(value, column)| !column.takes(value))
        {
            return Err(self.mismatch(j));
        }
        let mut bytes = 0;
        for (value, column) in row.into_iter().zip(&mut self.columns) {
            bytes += column.append(value);
        }
        self.rows += 1;
        Ok(bytes)
    }

    fn mismatch(&self, column: usize) -> ingest::Error {
        let field = self.template.table_schema.fields().get(column);
        ingest::Error::BadValue {
            column: field.map(|f| f.name().clone()).unwrap_or_default(),
            target: field
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null),
            message: "a checked value does not fit its column".into(),
        }
    }

    /// The rows as one batch of the table's types.
    pub fn finish(self) -> ingest::Result<RecordBatch> {
        let fields = self.template.table_schema.fields();
        let arrays = self
            .columns
            .into_iter()
            .zip(fields.iter())
            .map(|(column, field)| -> ingest::Result<ArrayRef> {
                Ok(match column {
                    HeldColumn::Text(mut builder) => Arc::new(builder.finish()),
                    HeldColumn::Texts(mut builder) => Arc::new(builder.finish()),
                    HeldColumn::Values(values) if values.is_empty() => {
                        new_null_array(field.data_type(), 0)
                    }
                    HeldColumn::Values(values) => {
                        ScalarValue::iter_to_array(values).map_err(|e| ingest::Error::BadValue {
                            column: field.name().clone(),
                            target: field.data_type().clone(),
                            message: e.to_string(),
                        })?
                    }
                })
            })
            .collect::<ingest::Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        Ok(RecordBatch::try_new_with_options(
            self.template.table_schema.clone(),
            arrays,
            &options,
        )?)
    }
}

impl HeldColumn {
    /// Whether `value`, checked for this column, can be appended to it.
    fn takes(&self, value: &ingest::Checked<'_>) -> bool {
        use ingest::Checked;
        match (self, value) {
            (_, Checked::Value(v)) if v.is_null() => true,
            (HeldColumn::Text(_), Checked::Text(_) | Checked::Value(ScalarValue::Utf8(_))) => true,
            (HeldColumn::Texts(_), Checked::Texts(_)) => true,
            (HeldColumn::Texts(_), Checked::Value(ScalarValue::List(list))) => {
                list.len() == 1 && list.values().as_string_opt::<i32>().is_some()
            }
            (HeldColumn::Values(_), Checked::Value(_)) => true,
            _ => false,
        }
    }

    /// Appends `value` ([`HeldColumn::takes`] it); the bytes it takes.
    fn append(&mut self, value: ingest::Checked<'_>) -> usize {
        use ingest::Checked;
        match (self, value) {
            (HeldColumn::Values(values), Checked::Value(value)) => {
                let bytes = value.size();
                values.push(value);
                bytes
            }
            (HeldColumn::Text(builder), Checked::Text(text)) => {
                builder.append_value(text);
                text.len() + 4
            }
            (HeldColumn::Text(builder), Checked::Value(ScalarValue::Utf8(Some(text)))) => {
                builder.append_value(&text);
                text.len() + 4
            }
            (HeldColumn::Texts(builder), Checked::Texts(items)) => {
                let bytes = items.iter().flatten().map(|i| i.len() + 4).sum::<usize>() + 4;
                for item in items {
                    builder.values().append_option(item);
                }
                builder.append(true);
                bytes
            }
            (HeldColumn::Texts(builder), Checked::Value(ScalarValue::List(list)))
                if !list.is_null(0) =>
            {
                let items = list.value(0);
                let items = items.as_string::<i32>();
                builder.values().extend(items);
                builder.append(true);
                items.value_data().len() + 4 * items.len() + 4
            }
            // A null; `takes` lets nothing else through.
            (HeldColumn::Text(builder), _) => {
                builder.append_null();
                4
            }
            (HeldColumn::Texts(builder), _) => {
                builder.append_null();
                4
            }
            (HeldColumn::Values(values), _) => {
                values.push(ScalarValue::Null);
                0
            }
        }
    }
}

/// Where one value of a row comes from.
#[derive(Debug, Clone)]
enum Cell {
    /// A literal: its text (cast to the column by `ingest`), a list, or null.
    Value(ScalarValue),
    /// `$n`, zero-based.
    Parameter(usize),
    /// `now()`, `current_timestamp`: the time of the statement.
    Now,
}

impl InsertTemplate {
    /// The types of the statement's parameters, `$1` first.
    pub fn parameter_types(&self) -> &[ParameterType] {
        &self.parameters
    }

    /// The batch of one execution: one column per target column, each built from the rows'
    /// literals and `parameters` (in [`InsertTemplate::parameter_types`]' order, of those
    /// types or any other a value arrived as), with `now_micros` for `now()`. The columns
    /// keep the types the values came in; [`ingest::prepare`] or [`ingest::coerce`] casts
    /// them to the table's.
    pub fn bind(&self, parameters: &[ScalarValue], now_micros: i64) -> ingest::Result<RecordBatch> {
        let rows = self.rows.len();
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (j, field) in self.columns.iter().enumerate() {
            let values = self.rows.iter().map(|row| match &row[j] {
                Cell::Value(v) => v.clone(),
                Cell::Parameter(k) => parameters.get(*k).cloned().unwrap_or(ScalarValue::Null),
                Cell::Now => {
                    ScalarValue::TimestampMicrosecond(Some(now_micros), Some("UTC".into()))
                }
            });
            arrays.push(column(field, values.collect())?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.schema_of(&arrays),
            arrays,
            &options,
        )?)
    }

    /// Whether one execution binds one row: the statement drivers repeat in their batches,
    /// whose rows [`InsertTemplate::bind_row`] checks one by one and [`HeldRows`] builds
    /// into one batch.
    pub fn single_row(&self) -> bool {
        self.rows.len() == 1
    }

    /// The one row of an execution of a single-row template, each value cast to its column's
    /// type and checked ([`ingest::prepare_text`], [`ingest::prepare_value`]): every error the
    /// row can raise, raised now, without building an array for a value, and text borrowed
    /// from the client's message until [`HeldRows::push`] copies it.
    pub fn bind_row<'a>(
        &self,
        parameters: &[Parameter<'a>],
        now_micros: i64,
    ) -> ingest::Result<Vec<ingest::Checked<'a>>> {
        if let Some(column) = &self.missing {
            return Err(ingest::Error::NotNull {
                table: self.table.name.clone(),
                column: column.clone(),
            });
        }
        let Some(row) = self.rows.first() else {
            return Ok(Vec::new());
        };
        let value = |field: &Field, value: ScalarValue| {
            ingest::prepare_value(&self.table, field, value).map(ingest::Checked::Value)
        };
        row.iter()
            .zip(&self.columns)
            .map(|(cell, field)| match cell {
                Cell::Value(v) => value(field, v.clone()),
                Cell::Parameter(k) => match parameters.get(*k) {
                    Some(Parameter::Text(text)) => ingest::prepare_text(&self.table, field, text),
                    Some(Parameter::Value(v)) => value(field, v.clone()),
                    None => value(field, ScalarValue::Null),
                },
                Cell::Now => value(
                    field,
                    ScalarValue::TimestampMicrosecond(Some(now_micros), Some("UTC".into())),
                ),
            })
            .collect()
    }

    /// The schema of a batch of `arrays`, each column's field from [`batch_field`]; the last
    /// one is kept and reused while it still fits.
    fn schema_of(&self, arrays: &[ArrayRef]) -> SchemaRef {
        let mut last = self.last_schema.lock();
        if let Some(schema) = last.as_ref()
            && schema
                .fields()
                .iter()
                .zip(self.columns.iter().zip(arrays))
                .all(|(kept, (field, array))| **kept == batch_field(field, array))
        {
            return schema.clone();
        }
        let schema = Arc::new(Schema::new(
            self.columns
                .iter()
                .zip(arrays)
                .map(|(field, array)| batch_field(field, array))
                .collect::<Vec<_>>(),
        ));
        *last = Some(schema.clone());
        schema
    }
}

/// The field of a bound column `array` for the table's `field`: the table's field when the
/// array has its type and no null it forbids (so `ingest::prepare` can keep the schema),
/// else a nullable field of the array's own type, which `prepare` casts or reports.
pub(crate) fn batch_field(field: &Field, array: &ArrayRef) -> Field {
    if array.data_type() == field.data_type() && (field.is_nullable() || array.null_count() == 0) {
        field.clone()
    } else {
        Field::new(field.name(), array.data_type().clone(), true)
    }
}

/// One column from its values: as they are when they share a type (nulls taking it), else each
/// cast to the column's type first.
fn column(field: &Field, mut values: Vec<ScalarValue>) -> ingest::Result<ArrayRef> {
    let bad = |e: datafusion::error::DataFusionError| ingest::Error::BadValue {
        column: field.name().clone(),
        target: field.data_type().clone(),
        message: e.to_string(),
    };
    let Some(first) = values.iter().find(|v| !v.is_null()).map(|v| v.data_type()) else {
        return Ok(new_null_array(field.data_type(), values.len()));
    };
    if values.iter().all(|v| v.is_null() || v.data_type() == first) {
        let null = ScalarValue::try_from(&first).map_err(bad)?;
        for value in values.iter_mut().filter(|v| v.is_null()) {
            *value = null.clone();
        }
        return ScalarValue::iter_to_array(values).map_err(bad);
    }
    let pieces = values
        .into_iter()
        .map(|v| {
            let array = v.to_array().map_err(bad)?;
            ingest::cast_column(field, &array)
        })
        .collect::<ingest::Result<Vec<_>>>()?;
    let pieces: Vec<&dyn arrow::array::Array> = pieces.iter().map(|a| a.as_ref()).collect();
    Ok(arrow::compute::concat(&pieces)?)
}

/// The template of `statement` when it is an `INSERT … VALUES` of literals and parameters
/// into a known table, or `None` to let DataFusion plan it.
pub fn template(statement: &Statement, catalog: &Catalog) -> Option<InsertTemplate> {
    let Statement::Insert(insert) = statement else {
        return None;
    };
    let (name, columns, values) = plain_values(insert)?;
    let table = crate::sql::resolve_table(catalog, name)?.clone();
    let columns = target_columns(&table, columns)?;
    let mut parameters = BTreeMap::new();
    let mut rows = Vec::with_capacity(values.rows.len());
    for row in &values.rows {
        if row.content.len() != columns.len() {
            return None;
        }
        let cells = row
            .content
            .iter()
            .zip(&columns)
            .map(|(expr, field)| cell(expr, field.data_type(), &mut parameters))
            .collect::<Option<Vec<_>>>()?;
        rows.push(cells);
    }
    // Nullable: a row may leave `date` null for the ingest path to derive.
    let columns_copy: Vec<Field> = columns
        .iter()
        .map(|f| f.clone().with_nullable(true))
        .collect();
    let missing = ingest::missing_required(&table, |name| columns.iter().any(|c| c.name() == name));
    // `$1` … `$n`, each with one type; a gap would leave a parameter without one.
    let parameters: Vec<ParameterType> = parameters.into_values().collect();
    if rows
        .iter()
        .flatten()
        .any(|c| matches!(c, Cell::Parameter(k) if *k >= parameters.len()))
    {
        return None;
    }
    Some(InsertTemplate {
        table,
        columns,
        rows,
        parameters,
        last_schema: parking_lot::Mutex::new(None),
        table_schema: Arc::new(Schema::new(columns_copy)),
        missing,
    })
}

/// The batch of a literal `INSERT … VALUES` (one without parameters), or `None` to let
/// DataFusion plan the statement.
pub fn literal_insert(
    statement: &Statement,
    catalog: &Catalog,
) -> Option<(Arc<TableSchema>, ingest::Result<RecordBatch>)> {
    let template = template(statement, catalog)?;
    if !template.parameters.is_empty() {
        return None;
    }
    let batch = template.bind(&[], now_micros());
    Some((template.table, batch))
}

/// The current time in microseconds since the epoch, for `now()`.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The table, target columns and rows of an `INSERT … VALUES` with nothing but them: no
/// `ON CONFLICT`, `RETURNING`, CTE, `ORDER BY`, or other clause that needs planning, and an
/// explicit column list.
fn plain_values(insert: &Insert) -> Option<(&ObjectName, &[ObjectName], &ast::Values)> {
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

/// The fields of `columns` in `table`; `None` for an unknown or repeated column.
pub(crate) fn target_columns(table: &TableSchema, columns: &[ObjectName]) -> Option<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::with_capacity(columns.len());
    for column in columns {
        let [ObjectNamePart::Identifier(ident)] = column.0.as_slice() else {
            return None;
        };
        let name = crate::sql::normalize_ident(ident);
        let field = table.schema.field_with_name(&name).ok()?;
        if fields.iter().any(|f| f.name() == &name) {
            return None;
        }
        fields.push(field.clone());
    }
    Some(fields)
}

/// Where the value `expr` for a column of type `target` comes from, recording the type of a
/// parameter in `parameters`; `None` for anything that needs SQL semantics.
fn cell(
    expr: &Expr,
    target: &DataType,
    parameters: &mut BTreeMap<usize, ParameterType>,
) -> Option<Cell> {
    let uncast = |data_type: &DataType| ParameterType {
        data_type: data_type.clone(),
        json: false,
    };
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(id) => parameter(id, uncast(target), parameters),
            value => literal(value, target).map(Cell::Value),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) if number_casts_exactly(n, target) => {
                    Some(Cell::Value(ScalarValue::Utf8(Some(format!("-{n}")))))
                }
                _ => None,
            },
            _ => None,
        },
        // `x::type` and `CAST(x AS type)` to the column's own type: the value as if uncast
        // (a parameter takes the cast's type, which `Describe` reports).
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr,
            data_type,
            array: false,
            format: None,
        } => {
            let cast = arrow_type(data_type)?;
            if !fits(&cast, target) {
                return None;
            }
            match expr.as_ref() {
                Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => {
                    let Value::Placeholder(id) = &v.value else {
                        return None;
                    };
                    let json = matches!(data_type, ast::DataType::JSON | ast::DataType::JSONB);
                    let declared = ParameterType {
                        data_type: cast,
                        json,
                    };
                    parameter(id, declared, parameters)
                }
                Expr::Cast { .. } | Expr::UnaryOp { .. } | Expr::Function(_) => None,
                inner => cell(inner, target, parameters),
            }
        }
        Expr::Array(ast::Array { elem, .. }) => {
            let DataType::List(item) = target else {
                return None;
            };
            if item.data_type() != &DataType::Utf8 {
                return None;
            }
            let items = elem
                .iter()
                .map(|e| match e {
                    Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s)
                        | Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
                            Some(ScalarValue::Utf8(Some(s.clone())))
                        }
                        Value::Null => Some(ScalarValue::Utf8(None)),
                        _ => None,
                    },
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Cell::Value(ScalarValue::List(
                ScalarValue::new_list_nullable(&items, &DataType::Utf8),
            )))
        }
        Expr::Function(f) if matches!(target, DataType::Timestamp(..)) => {
            let [ObjectNamePart::Identifier(name)] = f.name.0.as_slice() else {
                return None;
            };
            let name = name.value.to_ascii_lowercase();
            let no_arguments = match &f.args {
                FunctionArguments::None => name == "current_timestamp",
                FunctionArguments::List(list) => {
                    list.args.is_empty()
                        && list.clauses.is_empty()
                        && list.duplicate_treatment.is_none()
                        && matches!(
                            name.as_str(),
                            "now"
                                | "current_timestamp"
                                | "transaction_timestamp"
                                | "statement_timestamp"
                        )
                }
                FunctionArguments::Subquery(_) => false,
            };
            let plain = matches!(f.parameters, FunctionArguments::None)
                && f.filter.is_none()
                && f.null_treatment.is_none()
                && f.over.is_none()
                && f.within_group.is_empty();
            (no_arguments && plain).then_some(Cell::Now)
        }
        // `DEFAULT`: no column has a default other than null (or the empty list `ingest`
        // fills in for a required list column).
        Expr::Identifier(ident)
            if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default") =>
        {
            Some(Cell::Value(ScalarValue::Null))
        }
        _ => None,
    }
}

/// `$n` with the type `declared`, when no other use of it gave it another type.
fn parameter(
    id: &str,
    declared: ParameterType,
    parameters: &mut BTreeMap<usize, ParameterType>,
) -> Option<Cell> {
    let index: usize = id.strip_prefix('$')?.parse().ok()?;
    let index = index.checked_sub(1)?;
    match parameters.get(&index) {
        Some(seen) if *seen != declared => return None,
        Some(_) => {}
        None => {
            parameters.insert(index, declared);
        }
    }
    Some(Cell::Parameter(index))
}

/// A literal's value for a column of type `target`: text `ingest` casts as it casts any text
/// (a string, or a number whose cast is exact), or null.
fn literal(value: &Value, target: &DataType) -> Option<ScalarValue> {
    match value {
        Value::SingleQuotedString(s)
        | Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
            Some(ScalarValue::Utf8(Some(s.clone())))
        }
        Value::Null => Some(ScalarValue::Null),
        Value::Boolean(b) if matches!(target, DataType::Boolean | DataType::Utf8) => {
            Some(ScalarValue::Utf8(Some(b.to_string())))
        }
        Value::Number(n, false) if number_casts_exactly(n, target) => {
            Some(ScalarValue::Utf8(Some(n.clone())))
        }
        _ => None,
    }
}

/// Integers into integer columns and any number into float or text columns cast exactly as
/// PostgreSQL assigns them; other combinations go through DataFusion.
pub(crate) fn number_casts_exactly(number: &str, target: &DataType) -> bool {
    match target {
        DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            number.bytes().all(|b| b.is_ascii_digit())
        }
        DataType::Float32 | DataType::Float64 | DataType::Utf8 => true,
        _ => false,
    }
}

/// The Arrow type of a SQL type a value may be cast to on the fast path.
pub(crate) fn arrow_type(data_type: &ast::DataType) -> Option<DataType> {
    use ast::DataType as T;
    Some(match data_type {
        T::Text
        | T::Varchar(_)
        | T::CharacterVarying(_)
        | T::CharVarying(_)
        | T::String(_)
        | T::JSON
        | T::JSONB
        | T::Uuid => DataType::Utf8,
        T::Timestamp(None, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        T::Timestamp(None, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        T::SmallInt(None) | T::Int2(None) => DataType::Int16,
        T::Int(None) | T::Integer(None) | T::Int4(None) => DataType::Int32,
        T::BigInt(None) | T::Int8(None) => DataType::Int64,
        T::Real | T::Float4 => DataType::Float32,
        T::DoublePrecision | T::Float8 => DataType::Float64,
        T::Bool | T::Boolean => DataType::Boolean,
        T::Date => DataType::Date32,
        T::Array(
            ArrayElemTypeDef::SquareBracket(item, None) | ArrayElemTypeDef::AngleBracket(item),
        ) => match arrow_type(item)? {
            DataType::Utf8 => DataType::new_list(DataType::Utf8, true),
            _ => return None,
        },
        _ => return None,
    })
}

/// Whether a value cast to `cast` means the same in a column of type `target` as it would
/// uncast: the same type, or another width of integer (range-checked by the cast), or a
/// timestamp with or without a zone (both read as UTC, as the planner reads them).
pub(crate) fn fits(cast: &DataType, target: &DataType) -> bool {
    use DataType as D;
    match (cast, target) {
        (D::Int16 | D::Int32 | D::Int64, D::Int16 | D::Int32 | D::Int64) => true,
        (D::Timestamp(..), D::Timestamp(..)) => true,
        (D::List(a), D::List(b)) => a.data_type() == b.data_type(),
        (a, b) => a == b,
    }
}

/// A prepared `INSERT` that takes the fast path, as the plan a prepared statement keeps:
/// its placeholders carry the parameter types, it returns no rows. Never executed by
/// DataFusion: the Postgres front end binds [`PreparedInsert::template`] at each `Execute`.
pub struct PreparedInsert {
    pub template: Arc<InsertTemplate>,
    schema: DFSchemaRef,
}

impl PreparedInsert {
    /// `template` as a plan.
    pub fn plan(template: InsertTemplate) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(PreparedInsert {
                template: Arc::new(template),
                schema: Arc::new(DFSchema::empty()),
            }),
        })
    }

    /// The template of a plan [`PreparedInsert::plan`] made.
    pub fn of(plan: &LogicalPlan) -> Option<&Arc<InsertTemplate>> {
        let LogicalPlan::Extension(extension) = plan else {
            return None;
        };
        extension
            .node
            .as_any()
            .downcast_ref::<PreparedInsert>()
            .map(|p| &p.template)
    }
}

impl fmt::Debug for PreparedInsert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreparedInsert: table={}", self.template.table.name)
    }
}

impl PartialEq for PreparedInsert {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.template, &other.template)
    }
}

impl Eq for PreparedInsert {}

impl PartialOrd for PreparedInsert {
    fn partial_cmp(&self, _other: &Self) -> Option<std::cmp::Ordering> {
        None
    }
}

impl std::hash::Hash for PreparedInsert {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.template).hash(state);
    }
}

impl UserDefinedLogicalNodeCore for PreparedInsert {
    fn name(&self) -> &str {
        "PreparedInsert"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// The placeholders, typed: what the parameter types of the plan are read from.
    fn expressions(&self) -> Vec<LogicalExpr> {
        self.template
            .parameters
            .iter()
            .enumerate()
            .map(|(i, parameter)| {
                LogicalExpr::Placeholder(Placeholder::new_with_field(
                    format!("${}", i + 1),
                    Some(Arc::new(Field::new("", parameter.data_type.clone(), true))),
                ))
            })
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<LogicalExpr>,
        _inputs: Vec<LogicalPlan>,
    ) -> datafusion::error::Result<Self> {
        Ok(PreparedInsert {
            template: self.template.clone(),
            schema: self.schema.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
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

    fn table() -> Arc<TableSchema> {
        catalog().get("otel_logs_and_spans").expect("t").clone()
    }

    #[test]
    fn literal_values_become_text_columns() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration, context___is_remote, name) \
                   VALUES ('p1', '2026-01-01T00:00:00Z', 'a', 42, true, NULL), ('p2', '2026-01-01 00:00:01', 'b''s', -7, false, 'n')";
        let (table, batch) = literal_insert(&parse(sql), &catalog()).expect("fast path");
        let batch = batch.expect("binds");
        assert_eq!(table.name, "otel_logs_and_spans");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.num_columns(), 6);
        let text = |c: usize, r: usize| batch.column(c).as_string::<i32>().value(r).to_string();
        assert_eq!(text(2, 1), "b's");
        assert_eq!(text(3, 1), "-7");
        assert_eq!(text(4, 0), "true");
        assert!(batch.column(5).is_null(0));
        let coerced = ingest::coerce(&table, &batch).expect("coerces to the table schema");
        assert_eq!(coerced.num_rows(), 2);
    }

    #[test]
    fn arrays_casts_now_and_default_take_the_fast_path() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes, observed_timestamp, name, body) VALUES \
                   ('p', '2026-01-01 00:00:00+02'::timestamptz, 'a', ARRAY['x', 'y z']::text[], now(), DEFAULT, '{\"k\":1}'::jsonb), \
                   ('p', CAST('2026-01-01' AS timestamp), 'b', '{u,\"v w\",NULL}', CURRENT_TIMESTAMP, 'n', NULL), \
                   ('p', '2026-01-01T00:00:00Z', 'c', ARRAY[]::text[], now(), 'n', NULL)";
        let (table, batch) = literal_insert(&parse(sql), &catalog()).expect("fast path");
        let coerced = ingest::coerce(&table, &batch.expect("binds")).expect("coerces");
        let hashes = coerced.column(table.index_of("hashes").expect("hashes"));
        let hashes = hashes.as_list::<i32>();
        let items = |r: usize| -> Vec<Option<String>> {
            hashes
                .value(r)
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect()
        };
        assert_eq!(items(0), [Some("x".to_string()), Some("y z".to_string())]);
        assert_eq!(
            items(1),
            [Some("u".to_string()), Some("v w".to_string()), None]
        );
        assert!(items(2).is_empty());
        let times = coerced.column(table.index_of("timestamp").expect("ts"));
        let times = times.as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(
            times.value(0),
            1_767_218_400_000_000,
            "+02 read as an offset"
        );
        let observed = coerced.column(table.index_of("observed_timestamp").expect("obs"));
        assert_eq!(observed.null_count(), 0, "now() filled in");
        assert!(
            coerced
                .column(table.index_of("name").expect("name"))
                .is_null(0)
        );
    }

    #[test]
    fn parameters_take_their_column_type_or_their_cast() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes, duration, body) \
                   VALUES ($1, $2::timestamptz, $3, $4, $5, $6::jsonb), ($1, $2, 'x', NULL, 7, NULL)";
        let template = template(&parse(sql), &catalog()).expect("fast path");
        let types: Vec<(DataType, bool)> = template
            .parameter_types()
            .iter()
            .map(|p| (p.data_type.clone(), p.json))
            .collect();
        assert_eq!(
            types,
            [
                (DataType::Utf8, false),
                (
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false
                ),
                (DataType::Utf8, false),
                (DataType::new_list(DataType::Utf8, true), false),
                (DataType::Int64, false),
                (DataType::Utf8, true),
            ]
        );
        let parameters = [
            ScalarValue::Utf8(Some("p".into())),
            ScalarValue::TimestampMicrosecond(Some(5), Some("UTC".into())),
            ScalarValue::Utf8(Some("i".into())),
            ScalarValue::Utf8(Some("{a,b}".into())),
            ScalarValue::Int64(None),
            ScalarValue::Utf8(Some("{}".into())),
        ];
        let batch = template.bind(&parameters, 0).expect("binds");
        assert_eq!(batch.num_rows(), 2);
        // `duration` mixes a typed null parameter with the text of a literal: cast each.
        let prepared = ingest::prepare(&table(), &batch).expect("prepares");
        let duration = prepared
            .column(4)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert!(duration.is_null(0));
        assert_eq!(duration.value(1), 7);
        assert_eq!(prepared.column(3).as_list::<i32>().value(0).len(), 2);
    }

    /// `bind_row` as the extended protocol calls it, every parameter a value.
    fn bind_values(
        template: &InsertTemplate,
        values: &[ScalarValue],
    ) -> ingest::Result<Vec<ingest::Checked<'static>>> {
        let parameters: Vec<Parameter<'static>> =
            values.iter().cloned().map(Parameter::Value).collect();
        template.bind_row(&parameters, 0)
    }

    #[test]
    fn single_rows_are_checked_one_by_one_and_built_once() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes, duration) \
                   VALUES ($1, $2, $3, $4, $5)";
        let template = Arc::new(template(&parse(sql), &catalog()).expect("fast path"));
        assert!(template.single_row());
        let text = |s: &str| ScalarValue::Utf8(Some(s.into()));
        let first = bind_values(
            &template,
            &[
                text("p"),
                text("2026-01-01 00:00:00+00"),
                text("a"),
                text("{x,y}"),
                ScalarValue::Int16(Some(3)),
            ],
        )
        .expect("text and a narrower integer are cast to the columns");
        let second = bind_values(
            &template,
            &[
                text("p"),
                ScalarValue::TimestampMicrosecond(Some(7), Some("UTC".into())),
                text("b"),
                ScalarValue::Null,
                ScalarValue::Int64(None),
            ],
        )
        .expect("typed values and nulls");
        let mut held = HeldRows::new(template.clone());
        held.push(first).expect("fits");
        // The same statement prepared again (as drivers do for other parameter types) fills
        // the same batch; another column list does not.
        let again = super::template(&parse(sql), &catalog()).expect("fast path");
        assert!(held.fits(&again));
        held.push(second).expect("fits");
        let other = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration, hashes) \
                     VALUES ($1, $2, $3, $4, $5)";
        assert!(!held.fits(&super::template(&parse(other), &catalog()).expect("fast path")));
        let batch = held.finish().expect("one batch");
        let coerced = ingest::coerce(&table(), &batch).expect("coerces without a cast");
        assert_eq!(coerced.num_rows(), 2);
        let errors = [
            (
                text("not a time"),
                crate::error::SqlState::INVALID_DATETIME_FORMAT,
            ),
            (
                text("10000-01-01 00:00:00+00"),
                crate::error::SqlState::DATETIME_FIELD_OVERFLOW,
            ),
            (
                ScalarValue::TimestampMicrosecond(Some(i64::MAX), Some("UTC".into())),
                crate::error::SqlState::DATETIME_FIELD_OVERFLOW,
            ),
            (
                ScalarValue::Null,
                crate::error::SqlState::NOT_NULL_VIOLATION,
            ),
        ];
        for (time, state) in errors {
            for parameter in [Parameter::Value(time.clone()), text_parameter(&time)] {
                let error = template
                    .bind_row(
                        &[
                            Parameter::Text("p"),
                            parameter,
                            Parameter::Text("c"),
                            Parameter::Value(ScalarValue::Null),
                            Parameter::Value(ScalarValue::Null),
                        ],
                        0,
                    )
                    .expect_err("refused");
                assert_eq!(error.sqlstate(), state, "{time:?}: {error}");
            }
        }
        let missing = "INSERT INTO otel_logs_and_spans (project_id, timestamp) VALUES ($1, $2)";
        let template = super::template(&parse(missing), &catalog()).expect("fast path");
        let error = bind_values(&template, &[text("p"), text("2026-01-01 00:00:00+00")])
            .expect_err("id is required");
        assert_eq!(error.sqlstate(), crate::error::SqlState::NOT_NULL_VIOLATION);
    }

    /// A text value as the client's text, other values as they are.
    fn text_parameter(value: &ScalarValue) -> Parameter<'_> {
        match value {
            ScalarValue::Utf8(Some(text)) => Parameter::Text(text),
            other => Parameter::Value(other.clone()),
        }
    }

    /// Rows bound one by one, text borrowed from the client's message and read where it can
    /// be without arrays ([`ingest::prepare_text`]), then held column by column, give the
    /// batch the general path gives the same values (`bind` of the whole list, then
    /// `ingest::prepare`), and the same errors: the text forms of timestamps (zones, `T`,
    /// fractions, short times), array literals (quotes, escapes, `NULL`, spaces, malformed),
    /// tenants, integers of every width and nulls.
    #[test]
    fn held_rows_build_what_the_general_path_builds() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes, duration, \
                   attributes___http___response___status_code, name) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let template = Arc::new(template(&parse(sql), &catalog()).expect("fast path"));
        let text = |s: &str| ScalarValue::Utf8(Some(s.into()));
        let long_tenant = "é".repeat(200);
        let times = [
            text("2026-01-01 00:00:00+00"),
            text("2026-01-01T10:11:12.123456Z"),
            text("2026-01-01 10:11:12.5+05:30"),
            text("2026-01-01 10:11:12-08"),
            text("2026-01-01 10:11"),
            text("2026-01-01 9:05:00"),
            text("2026-01-01"),
            text("  2026-01-01 00:00:00  "),
            text("1969-12-31 23:59:59.999999+00"),
            text("0001-01-01 00:00:00+00"),
            text("10000-01-01 00:00:00+00"),
            text("not a time"),
            text(""),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), Some("UTC".into())),
            ScalarValue::TimestampMicrosecond(Some(1_700_000_000_000_000), None),
        ];
        let lists = [
            text("{a,b}"),
            text("{}"),
            text("{ a , b c }"),
            text(r#"{"x,y","q\"uote",NULL,null,"NULL"}"#),
            text("{a,"),
            text("no braces"),
            text(r#"{"unterminated}"#),
            ScalarValue::Null,
            ScalarValue::List(ScalarValue::new_list_nullable(
                &[text("l"), ScalarValue::Utf8(None)],
                &DataType::Utf8,
            )),
        ];
        let tenants = [text("p"), text(&long_tenant), ScalarValue::Null];
        let numbers = [
            ScalarValue::Int16(Some(-3)),
            ScalarValue::Int32(Some(i32::MAX)),
            ScalarValue::Int64(Some(i64::MIN)),
            text("42"),
            text(" 7 "),
            text("4.5"),
            ScalarValue::Null,
        ];
        let mut cases = 0;
        let mut refused = 0;
        for (i, time) in times.iter().enumerate() {
            for (j, list) in lists.iter().enumerate() {
                for (k, tenant) in tenants.iter().enumerate() {
                    let number = &numbers[(i + j + k) % numbers.len()];
                    let code = &numbers[(i * 3 + j + k) % numbers.len()];
                    let values = [
                        tenant.clone(),
                        time.clone(),
                        text("id"),
                        list.clone(),
                        number.clone(),
                        code.clone(),
                        text("name"),
                    ];
                    cases += 1;
                    let general = template
                        .bind(&values, 0)
                        .and_then(|batch| ingest::prepare(&template.table, &batch))
                        .and_then(|batch| ingest::coerce(&template.table, &batch));
                    let parameters: Vec<Parameter<'_>> =
                        values.iter().map(text_parameter).collect();
                    let held = template.bind_row(&parameters, 0).and_then(|row| {
                        let mut held = HeldRows::new(template.clone());
                        held.push(row)?;
                        ingest::coerce(&template.table, &held.finish()?)
                    });
                    match (general, held) {
                        (Ok(general), Ok(held)) => assert_eq!(general, held, "{values:?}"),
                        (Err(general), Err(held)) => {
                            refused += 1;
                            assert_eq!(general.sqlstate(), held.sqlstate(), "{values:?}");
                            assert_eq!(general.to_string(), held.to_string(), "{values:?}");
                        }
                        (general, held) => panic!("{values:?}: {general:?} against {held:?}"),
                    }
                }
            }
        }
        assert!(
            refused > 0 && refused < cases,
            "{refused} of {cases} refused"
        );
    }

    #[test]
    fn prepared_plans_report_their_parameter_types() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ($1, $2, $3)";
        let plan = PreparedInsert::plan(template(&parse(sql), &catalog()).expect("fast path"));
        let types = plan.get_parameter_types().expect("types");
        assert_eq!(types.len(), 3);
        assert_eq!(types["$1"], Some(DataType::Utf8));
        assert!(PreparedInsert::of(&plan).is_some());
        assert!(plan.schema().fields().is_empty(), "no result columns");
    }

    #[test]
    fn bad_values_name_their_column() {
        let sql = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes) VALUES ('p', now(), 'a', 'not an array')";
        let (table, batch) = literal_insert(&parse(sql), &catalog()).expect("fast path");
        let error = ingest::prepare(&table, &batch.expect("binds")).expect_err("malformed");
        assert_eq!(
            error.sqlstate(),
            crate::error::SqlState::INVALID_TEXT_REPRESENTATION
        );
        assert!(
            error.to_string().contains("malformed array literal"),
            "{error}"
        );
        let missing = "INSERT INTO otel_logs_and_spans (project_id, timestamp) VALUES ('p', now())";
        let (table, batch) = literal_insert(&parse(missing), &catalog()).expect("fast path");
        let error = ingest::prepare(&table, &batch.expect("binds")).expect_err("id is required");
        assert_eq!(error.sqlstate(), crate::error::SqlState::NOT_NULL_VIOLATION);
    }

    #[test]
    fn anything_needing_sql_semantics_falls_back() {
        let c = catalog();
        let fallback = [
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('p', now() - interval '1 hour', 'a')",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('p', to_timestamp(1), 'a')",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ($1, $2, $1::int)",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ($1, $3, 'a')",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration) VALUES ('p', 'x', 'a', 1.5)",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration) VALUES ('p', 'x', 'a', '1'::text)",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes) VALUES ('p', 'x', 'a', ARRAY[$1])",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) VALUES ('p', 'x', 'a', ARRAY['h'])",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) SELECT 'p', now(), 'a'",
            "INSERT INTO otel_logs_and_spans VALUES ('p')",
            "INSERT INTO no_such_table (a) VALUES ('x')",
            "INSERT INTO otel_logs_and_spans (project_id, project_id) VALUES ('p', 'q')",
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('p', 'x', 'a') RETURNING id",
            "SELECT 1",
        ];
        for sql in fallback {
            assert!(template(&parse(sql), &c).is_none(), "{sql}");
        }
    }
}
