//! The parts of PostgreSQL's catalog that tools read on connect and in their schema browsers,
//! where DataFusion's and `datafusion-pg-catalog`'s versions differ from PostgreSQL's.
//!
//! - `information_schema.columns` in PostgreSQL's shape: PostgreSQL type names in `data_type`,
//!   and `udt_schema` / `udt_name` / `is_identity` …, which Grafana, Metabase and DBeaver read.
//!   DataFusion's own has Arrow type names and none of those columns.
//! - `information_schema.table_constraints` and `key_column_usage`: empty (TimeFusion tables
//!   have no keys), so primary-key lookups answer "none" instead of "no such table". Every other
//!   `information_schema` table is DataFusion's.
//! - `pg_catalog.pg_constraint` and `pg_index`: empty, with `conkey` / `indkey` … as `int2[]`
//!   like PostgreSQL's, so `attnum = ANY(conkey)` and `unnest(indkey)` plan. The tables from
//!   `datafusion-pg-catalog` hold a real server's system rows, with those columns as text.
//! - `pg_class.reloptions` / `relacl` and `pg_database.datcollversion`, PostgreSQL 15 columns
//!   `datafusion-pg-catalog` lacks, NULL (no storage options, default privileges).
//! - The one role, `postgres`, has PostgreSQL's bootstrap superuser oid 10 in `pg_roles` and as
//!   every relation's `relowner` (`datafusion-pg-catalog` writes 0 there, but 10 as
//!   `nspowner` / `datdba`), and `pg_get_userbyid(oid)` names it (`unknown (OID=n)` otherwise).
//! - `current_setting(name [, missing_ok])` (of a constant name, [`crate::sql::pg_forms`]
//!   gives the session's value first; this function knows the server's defaults),
//!   `set_config` (refused here: by itself it is a `SET`, `pgwire::settings`),
//!   `format(fmt, …)`, `pg_type_is_visible(oid)` and `pg_collation_is_visible(oid)` (true),
//!   `col_description(oid, n)`, `obj_description(oid [, catalog])` and
//!   `shobj_description(oid, catalog)` (always NULL: nothing has a comment) and
//!   `pg_get_indexdef(oid [, column, pretty])` (always NULL: there are no indexes),
//!   `pg_get_serial_sequence(table, column)` (always NULL: there are no sequences), and
//!   `pg_typeof(value)` (the type's name as text, as `format_type` prints it), and
//!   `pg_is_in_recovery()` and `pg_is_wal_replay_paused()` (always false: no TimeFusion
//!   server is a standby).
//! - Set-returning functions such as `generate_subscripts`, which SQLAlchemy's reflection
//!   sends, are rewritten by [`crate::sql::srf`].
//!
//! Replays of the tools' queries: `tests/e2e/introspection.rs`.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::information_schema::InformationSchemaProvider;
use datafusion::catalog::{CatalogProviderList, MemTable, SchemaProvider, Session, TableProvider};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarUDF, Signature, SimpleScalarUDF, TypeSignature, Volatility, create_udf,
};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;

use crate::sql::functions::shaped;

const INFORMATION_SCHEMA: &str = "information_schema";
const PG_CATALOG: &str = "pg_catalog";

/// Installs everything above in `context`, whose default catalog is `catalog` and which must
/// have been built with `with_information_schema(false)` (DataFusion otherwise answers for
/// `information_schema` itself) and have had `setup_pg_catalog` run.
pub fn register(
    context: &SessionContext,
    catalog: &str,
    relations: HashMap<&'static str, Arc<dyn TableProvider>>,
) -> Result<()> {
    let list = context.state().catalog_list().clone();
    let target = context
        .catalog(catalog)
        .ok_or_else(|| DataFusionError::Plan(format!("no catalog {catalog}")))?;
    target.register_schema(
        INFORMATION_SCHEMA,
        Arc::new(PgInformationSchema {
            datafusion: InformationSchemaProvider::new(list.clone()),
            list,
        }),
    )?;
    let pg_catalog = target
        .schema(PG_CATALOG)
        .ok_or_else(|| DataFusionError::Plan("pg_catalog is not set up".into()))?;
    target.register_schema(
        PG_CATALOG,
        Arc::new(PgCatalogFixes::new(pg_catalog, relations)),
    )?;
    context.register_udf(current_setting());
    context.register_udf(pg_get_userbyid());
    context.register_udf(set_config());
    context.register_udf(format());
    // No object has a comment (DBeaver's and pgAdmin's object lists ask for each one's).
    context.register_udf(always_null(
        "col_description",
        Signature::any(2, Volatility::Stable),
    ));
    context.register_udf(always_null(
        "obj_description",
        Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Stable,
        ),
    ));
    context.register_udf(always_null(
        "shobj_description",
        Signature::any(2, Volatility::Stable),
    ));
    // No index exists (`pg_index` is empty), so no index has a definition.
    context.register_udf(always_null(
        "pg_get_indexdef",
        Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(3)],
            Volatility::Stable,
        ),
    ));
    // No column is owned by a sequence (there are none: no `serial`, no identity columns).
    // SQLAlchemy 2.1's `get_columns` asks for every column.
    context.register_udf(always_null(
        "pg_get_serial_sequence",
        Signature::any(2, Volatility::Stable),
    ));
    context.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_typeof",
        Signature::any(1, Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let name = type_display_name(&args[0].data_type());
            Ok(ColumnarValue::Scalar(
                datafusion::common::ScalarValue::Utf8(Some(name)),
            ))
        }),
    )));
    // A TimeFusion server is never a standby replaying another's WAL: monitoring tools
    // (pgAdmin's dashboard, Grafana's PostgreSQL health checks) ask before anything else.
    // Nor is one paused replaying it (pgAdmin asks on connecting).
    for name in ["pg_is_in_recovery", "pg_is_wal_replay_paused"] {
        context.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
            name,
            Signature::exact(vec![], Volatility::Stable),
            DataType::Boolean,
            Arc::new(|_: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(
                    datafusion::common::ScalarValue::Boolean(Some(false)),
                ))
            }),
        )));
    }
    // Every type and collation is in `pg_catalog` or `public`, both on the search path.
    for name in ["pg_type_is_visible", "pg_collation_is_visible"] {
        context.register_udf(create_udf(
            name,
            vec![DataType::Int32],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|args: &[ColumnarValue]| {
                let rows = ColumnarValue::values_to_arrays(args)?[0].len();
                Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
                    true;
                    rows
                ]))))
            }),
        ));
    }
    Ok(())
}

/// A catalog function whose answer is NULL for every object TimeFusion has.
fn always_null(name: &str, signature: Signature) -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        signature,
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = ColumnarValue::values_to_arrays(args)?[0].len();
            Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_null_array(&DataType::Utf8, rows),
            ))
        }),
    ))
}

/// `format(fmt, args…)`: PostgreSQL's `%s`, `%I` (identifier), `%L` (literal), `%%` and
/// positional `%n$s`. Metabase builds `regclass` names with it.
fn format() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "format",
        Signature::variadic_any(Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let Some((fmt, rest)) = arrays.split_first() else {
                return plan_err!("format needs a format string");
            };
            let text = |a: &ArrayRef| -> Result<ArrayRef> {
                Ok(datafusion::arrow::compute::cast(a, &DataType::Utf8)?)
            };
            let fmt = text(fmt)?;
            let values = rest.iter().map(text).collect::<Result<Vec<_>>>()?;
            let mut out = StringBuilder::new();
            for row in 0..fmt.len() {
                let fmt = fmt.as_string::<i32>();
                if fmt.is_null(row) {
                    out.append_null();
                    continue;
                }
                let arg = |i: usize| {
                    values
                        .get(i)
                        .map(|a| a.as_string::<i32>())
                        .map(|a| (!a.is_null(row)).then(|| a.value(row)))
                };
                out.append_value(format_row(fmt.value(row), arg)?);
            }
            shaped(args, Arc::new(out.finish()))
        }),
    ))
}

/// One row of `format`: `arg(i)` is the i-th argument, `None` if there are fewer.
fn format_row<'a>(fmt: &str, arg: impl Fn(usize) -> Option<Option<&'a str>>) -> Result<String> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if !digits.is_empty() && chars.peek() == Some(&'$') {
            chars.next();
            digits
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| n - 1)
        } else if digits.is_empty() {
            None
        } else {
            return plan_err!("format: widths are not supported");
        };
        let kind = chars.next();
        if kind == Some('%') {
            out.push('%');
            continue;
        }
        let i = index.unwrap_or(next);
        next = i + 1;
        let Some(value) = arg(i) else {
            return plan_err!("too few arguments for format()");
        };
        match (kind, value) {
            (Some('s'), v) => out.push_str(v.unwrap_or("")),
            (Some('I'), Some(v)) => out.push_str(&quote_ident(v)),
            (Some('I'), None) => {
                return plan_err!("null values cannot be formatted as an SQL identifier");
            }
            (Some('L'), Some(v)) => out.push_str(&format!("'{}'", v.replace('\'', "''"))),
            (Some('L'), None) => out.push_str("NULL"),
            (other, _) => {
                return plan_err!(
                    "unrecognized format() type specifier \"{}\"",
                    other.map(String::from).unwrap_or_default()
                );
            }
        }
    }
    Ok(out)
}

/// PostgreSQL's `quote_ident`: quoted unless a lower-case identifier that needs none.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The settings `current_setting` answers, as a fresh PostgreSQL 15 session reports them.
/// `SET` in a session does not change these answers.
pub(crate) fn setting(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "server_version" => crate::sql::SERVER_VERSION,
        "server_version_num" => "150000",
        "search_path" => "\"$user\", public",
        "timezone" => "UTC",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "client_encoding" | "server_encoding" => "UTF8",
        "standard_conforming_strings" | "integer_datetimes" | "is_superuser" => "on",
        "default_transaction_read_only" | "transaction_read_only" => "off",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "max_identifier_length" => "63",
        "block_size" => "8192",
        "lc_collate" | "lc_ctype" => "C.UTF-8",
        "statement_timeout" => "0",
        "bytea_output" => "hex",
        "application_name" | "default_tablespace" | "temp_tablespaces" => "",
        "default_table_access_method" => "heap",
        _ => return None,
    })
}

/// `set_config(name, value, is_local)` anywhere but by itself, where the front end runs it as
/// the `SET` it is (`pgwire::settings`): a function cannot change its caller's session.
fn set_config() -> ScalarUDF {
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "set_config",
        Signature::exact(
            vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
            Volatility::Volatile,
        ),
        DataType::Utf8,
        Arc::new(|_: &[ColumnarValue]| {
            datafusion::common::not_impl_err!(
                "set_config changes the session only by itself, with constant arguments: \
                 SELECT set_config('name', 'value', is_local)"
            )
        }),
    ))
}

/// `current_setting(name [, missing_ok])`: a setting's value; an unknown name is an error,
/// or NULL when `missing_ok` is true.
fn current_setting() -> ScalarUDF {
    let signature = Signature::one_of(
        vec![
            TypeSignature::Exact(vec![DataType::Utf8]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
        ],
        Volatility::Stable,
    );
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "current_setting",
        signature,
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = arrays[0].as_string::<i32>();
            let missing_ok = arrays.get(1).map(|a| a.as_boolean().clone());
            let mut out = StringBuilder::new();
            for i in 0..names.len() {
                if names.is_null(i) {
                    out.append_null();
                    continue;
                }
                match setting(names.value(i)) {
                    Some(value) => out.append_value(value),
                    None if missing_ok
                        .as_ref()
                        .is_some_and(|m| m.is_valid(i) && m.value(i)) =>
                    {
                        out.append_null()
                    }
                    None => {
                        return Err(crate::error::SqlError::new(
                            crate::error::SqlState::UNDEFINED_OBJECT,
                            format!(
                                "unrecognized configuration parameter \"{}\"",
                                names.value(i)
                            ),
                        )
                        .into());
                    }
                }
            }
            shaped(args, Arc::new(out.finish()))
        }),
    ))
}

/// `information_schema` with PostgreSQL's `columns` and empty key tables in front of
/// DataFusion's provider.
#[derive(Debug)]
struct PgInformationSchema {
    datafusion: InformationSchemaProvider,
    list: Arc<dyn CatalogProviderList>,
}

const OWN_TABLES: [&str; 3] = ["columns", "table_constraints", "key_column_usage"];

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.datafusion.table_names();
        names.extend(OWN_TABLES.iter().map(|t| t.to_string()));
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            "columns" => Ok(Some(self.columns().await?)),
            "table_constraints" => Ok(Some(empty(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
                "enforced",
                "nulls_distinct",
            ])?)),
            "key_column_usage" => Ok(Some(empty(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
                "position_in_unique_constraint",
            ])?)),
            _ => self.datafusion.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        OWN_TABLES.contains(&name) || self.datafusion.table_exist(name)
    }
}

/// An empty table of text columns (PostgreSQL's `sql_identifier` / `character_data`).
fn empty(columns: &[&str]) -> Result<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    Ok(Arc::new(View(MemTable::try_new(schema, vec![vec![]])?)))
}

/// An `information_schema` table: listed in `pg_class` as a view, as in PostgreSQL (and as
/// DataFusion's are), so "every table" queries do not pick it up.
#[derive(Debug)]
struct View(MemTable);

#[async_trait]
impl TableProvider for View {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}

impl PgInformationSchema {
    /// `information_schema.columns` of every user table, as PostgreSQL 15 shows it.
    async fn columns(&self) -> Result<Arc<dyn TableProvider>> {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let int = |name: &str| Field::new(name, DataType::Int32, true);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            int("ordinal_position"),
            text("column_default"),
            text("is_nullable"),
            text("data_type"),
            int("character_maximum_length"),
            int("character_octet_length"),
            int("numeric_precision"),
            int("numeric_precision_radix"),
            int("numeric_scale"),
            int("datetime_precision"),
            text("interval_type"),
            text("collation_name"),
            text("domain_schema"),
            text("domain_name"),
            text("udt_catalog"),
            text("udt_schema"),
            text("udt_name"),
            text("dtd_identifier"),
            text("is_identity"),
            text("identity_generation"),
            text("is_generated"),
            text("generation_expression"),
            text("is_updatable"),
        ]));
        let mut rows: Vec<ColumnRow> = Vec::new();
        for catalog_name in self.list.catalog_names() {
            let Some(catalog) = self.list.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if schema_name == INFORMATION_SCHEMA || schema_name == PG_CATALOG {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    let Some(table) = schema.table(&table_name).await? else {
                        continue;
                    };
                    for (i, field) in table.schema().fields().iter().enumerate() {
                        rows.push(ColumnRow {
                            catalog: catalog_name.clone(),
                            schema: schema_name.clone(),
                            table: table_name.clone(),
                            column: field.name().clone(),
                            position: i as i32 + 1,
                            nullable: field.is_nullable(),
                            udt: pg_type_name(field.data_type()),
                        });
                    }
                }
            }
        }
        let texts = |f: &dyn Fn(&ColumnRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let ints = |f: &dyn Fn(&ColumnRow) -> Option<i32>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<Int32Array>())
        };
        let none_text = || texts(&|_| None);
        let none_int = || ints(&|_| None);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                texts(&|r| Some(r.catalog.clone())),
                texts(&|r| Some(r.schema.clone())),
                texts(&|r| Some(r.table.clone())),
                texts(&|r| Some(r.column.clone())),
                ints(&|r| Some(r.position)),
                none_text(),
                texts(&|r| Some(if r.nullable { "YES" } else { "NO" }.to_string())),
                texts(&|r| Some(sql_type_name(&r.udt))),
                none_int(),
                none_int(),
                ints(&|r| numeric_precision(&r.udt)),
                ints(&|r| numeric_precision(&r.udt).map(|_| 2)),
                ints(&|r| numeric_precision(&r.udt).map(|_| 0)),
                ints(&|r| matches!(r.udt.as_str(), "timestamptz" | "timestamp").then_some(6)),
                none_text(),
                none_text(),
                none_text(),
                none_text(),
                texts(&|r| Some(r.catalog.clone())),
                texts(&|_| Some(PG_CATALOG.to_string())),
                texts(&|r| Some(r.udt.clone())),
                texts(&|r| Some(r.position.to_string())),
                texts(&|_| Some("NO".to_string())),
                none_text(),
                texts(&|_| Some("NEVER".to_string())),
                none_text(),
                texts(&|_| Some("YES".to_string())),
            ],
        )?;
        Ok(Arc::new(View(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }
}

struct ColumnRow {
    catalog: String,
    schema: String,
    table: String,
    column: String,
    position: i32,
    nullable: bool,
    /// PostgreSQL's internal type name (`pg_type.typname`): `int8`, `_text`, `timestamptz` …
    udt: String,
}

/// `pg_type.typname` of the type a client sees for an Arrow type.
fn pg_type_name(data_type: &DataType) -> String {
    into_pg_type(data_type)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|_| "text".to_string())
}

/// The SQL-standard name `information_schema.columns.data_type` gives for a `typname`.
fn sql_type_name(udt: &str) -> String {
    match udt {
        u if u.starts_with('_') => "ARRAY",
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "bool" => "boolean",
        "varchar" => "character varying",
        "timestamptz" => "timestamp with time zone",
        "timestamp" => "timestamp without time zone",
        "timetz" => "time with time zone",
        "time" => "time without time zone",
        other => other,
    }
    .to_string()
}

/// A type as PostgreSQL's `format_type` (and so `pg_typeof`) prints it: `bigint`, `text[]`,
/// `timestamp with time zone` ….
fn type_display_name(data_type: &DataType) -> String {
    let udt = pg_type_name(data_type);
    match udt.strip_prefix('_') {
        Some(element) => format!("{}[]", sql_type_name(element)),
        None => sql_type_name(&udt),
    }
}

fn numeric_precision(udt: &str) -> Option<i32> {
    match udt {
        "int2" => Some(16),
        "int4" => Some(32),
        "int8" => Some(64),
        "float4" => Some(24),
        "float8" => Some(53),
        _ => None,
    }
}

/// `pg_catalog` with `pg_constraint` and `pg_index` replaced by empty tables whose key
/// columns are `int2[]` as in PostgreSQL; everything else is `datafusion-pg-catalog`'s.
#[derive(Debug)]
struct PgCatalogFixes {
    inner: Arc<dyn SchemaProvider>,
    arrays: HashMap<&'static str, &'static [&'static str]>,
    /// Relations `datafusion-pg-catalog` does not have ([`crate::sql::activity`]).
    added: HashMap<&'static str, Arc<dyn TableProvider>>,
}

impl PgCatalogFixes {
    fn new(
        inner: Arc<dyn SchemaProvider>,
        added: HashMap<&'static str, Arc<dyn TableProvider>>,
    ) -> Self {
        let arrays: HashMap<&'static str, &'static [&'static str]> = HashMap::from([
            (
                "pg_constraint",
                &[
                    "conkey",
                    "confkey",
                    "conpfeqop",
                    "conppeqop",
                    "conffeqop",
                    "conexclop",
                ][..],
            ),
            (
                "pg_index",
                &["indkey", "indcollation", "indclass", "indoption"][..],
            ),
        ]);
        PgCatalogFixes {
            inner,
            arrays,
            added,
        }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogFixes {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.added.keys().map(|name| name.to_string()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.added.get(name) {
            return Ok(Some(owned(name, table.clone())));
        }
        let table = self.inner.table(name).await?.map(|t| owned(name, t));
        if !missing_columns(name).is_empty()
            && let Some(table) = &table
        {
            return Ok(Some(with_missing_columns(name, table.clone())?));
        }
        let (Some(table), Some(arrays)) = (&table, self.arrays.get(name)) else {
            return Ok(table);
        };
        let fields: Vec<Field> = table
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if arrays.contains(&f.name().as_str()) {
                    let item = if f.name().starts_with("ind") && f.name() != "indkey" {
                        DataType::Int32
                    } else {
                        DataType::Int16
                    };
                    Field::new(f.name(), DataType::new_list(item, true), true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        Ok(Some(Arc::new(MemTable::try_new(
            Arc::new(Schema::new(fields)),
            vec![vec![]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.added.contains_key(name) || self.inner.table_exist(name)
    }
}

/// PostgreSQL 15 columns `datafusion-pg-catalog`'s relations lack, all NULL here: `pg_class`'s
/// `reloptions` (`text[]`: no table has storage options; SQLAlchemy's index reflection selects
/// it) and `relacl` (the default privileges: TimeFusion grants none; pgAdmin's table
/// properties), `pg_database`'s `datcollversion` (pgAdmin's database properties).
fn missing_columns(name: &str) -> &'static [(&'static str, bool)] {
    // (column, whether it is `text[]` rather than `text`)
    match name {
        "pg_class" => &[("reloptions", true), ("relacl", true)],
        "pg_database" => &[("datcollversion", false)],
        _ => &[],
    }
}

/// PostgreSQL's bootstrap superuser, the one role TimeFusion's catalog lists (`postgres`).
const SUPERUSER_OID: i64 = 10;

/// Columns holding a role's oid that `datafusion-pg-catalog` 0.19 fills with 0 (a "TODO" there)
/// while its `pg_namespace.nspowner` and `pg_database.datdba` say 10: `pg_roles.oid` and
/// `pg_class.relowner`, [`SUPERUSER_OID`] here, so that tools joining a relation's owner to
/// `pg_roles` (DBeaver's and pgAdmin's table properties) or to `pg_get_userbyid` find it.
fn owner_columns(name: &str) -> &'static [&'static str] {
    match name {
        "pg_class" => &["relowner"],
        "pg_roles" => &["oid"],
        // Views over `pg_roles` planned before this schema wraps it (`sql::activity`).
        "pg_user" | "pg_stat_activity" => &["usesysid"],
        _ => &[],
    }
}

/// `table`, relation `name` of `pg_catalog`, with its [`owner_columns`] fixed ([`Owned`]).
fn owned(name: &str, table: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
    match owner_columns(name) {
        [] => table,
        columns => Arc::new(Owned {
            inner: table,
            columns,
        }),
    }
}

/// A catalog relation whose [`owner_columns`] say [`SUPERUSER_OID`] where they said 0, as it is
/// scanned (NULL stays NULL: a session of a role `pg_roles` does not list). Its
/// schema is the relation's own, field metadata included (`pg.oid_alias`, which a projection
/// computing the column would drop, and which a `UNION` with another oid column must match:
/// pgAdmin's role query). The relations are small (a row per role, per relation).
#[derive(Debug)]
struct Owned {
    inner: Arc<dyn TableProvider>,
    columns: &'static [&'static str],
}

#[async_trait]
impl TableProvider for Owned {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let plan = self.inner.scan(state, None, &[], None).await?;
        let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        let batches = batches
            .into_iter()
            .map(|batch| {
                let columns = schema
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(
                        |(field, column)| match self.columns.contains(&field.name().as_str()) {
                            true => superuser_for_zero(column),
                            false => Ok(column.clone()),
                        },
                    )
                    .collect::<Result<Vec<_>>>()?;
                Ok(RecordBatch::try_new(schema.clone(), columns)?)
            })
            .collect::<Result<Vec<_>>>()?;
        MemTable::try_new(schema, vec![batches])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// `oids` (an integer column) with 0 as [`SUPERUSER_OID`], in its own type.
fn superuser_for_zero(oids: &ArrayRef) -> Result<ArrayRef> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::Int64Type;
    let fixed: Int64Array = cast(oids, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .iter()
        .map(|oid| oid.map(|o| if o == 0 { SUPERUSER_OID } else { o }))
        .collect();
    Ok(cast(&fixed, oids.data_type())?)
}

/// `pg_get_userbyid(role oid)`: the role's name, `unknown (OID=n)` for an oid no role has (as
/// PostgreSQL answers), NULL for NULL; the oid as an integer (a negative `int4` wraps into the
/// unsigned oid range, as PostgreSQL's cast does; outside both ranges 22003) or as text (22P02
/// when it is not a number). `datafusion-pg-catalog`'s answers `postgres` for any oid and takes
/// only an `int4` (so an integer literal, an `int8` here, failed to plan).
fn pg_get_userbyid() -> ScalarUDF {
    use crate::error::{SqlError, SqlState};
    use datafusion::arrow::datatypes::Int64Type;
    fn push(out: &mut StringBuilder, oid: Option<i64>) -> Result<()> {
        let Some(oid) = oid else {
            out.append_null();
            return Ok(());
        };
        let oid = match oid {
            0..=0xFFFF_FFFF => oid as u32,
            -0x8000_0000..=-1 => oid as i32 as u32,
            _ => {
                return Err(SqlError::new(
                    SqlState::NUMERIC_VALUE_OUT_OF_RANGE,
                    "OID out of range",
                )
                .into());
            }
        };
        if i64::from(oid) == SUPERUSER_OID {
            out.append_value("postgres");
        } else {
            out.append_value(format!("unknown (OID={oid})"));
        }
        Ok(())
    }
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_get_userbyid",
        Signature::one_of(
            vec![
                TypeSignature::Uniform(1, vec![DataType::Int64]),
                TypeSignature::Exact(vec![DataType::Utf8]),
            ],
            Volatility::Stable,
        ),
        DataType::Utf8,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let mut out = StringBuilder::new();
            if let Some(texts) = arrays[0].as_string_opt::<i32>() {
                for text in texts.iter() {
                    let oid = text
                        .map(|t| {
                            t.trim().parse::<i64>().map_err(|_| {
                                SqlError::new(
                                    SqlState::INVALID_TEXT_REPRESENTATION,
                                    format!("invalid input syntax for type oid: \"{t}\""),
                                )
                            })
                        })
                        .transpose()?;
                    push(&mut out, oid)?;
                }
            } else {
                let oids = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int64)?;
                for oid in oids.as_primitive::<Int64Type>().iter() {
                    push(&mut out, oid)?;
                }
            }
            shaped(args, Arc::new(out.finish()))
        }),
    ))
}

/// `table` as a view with the [`missing_columns`] of relation `name` added, NULL.
fn with_missing_columns(
    name: &str,
    table: Arc<dyn TableProvider>,
) -> Result<Arc<dyn TableProvider>> {
    use datafusion::catalog::view::ViewTable;
    use datafusion::logical_expr::{LogicalPlanBuilder, cast, lit};
    let schema = table.schema();
    let missing: Vec<_> = missing_columns(name)
        .iter()
        .filter(|(column, _)| schema.column_with_name(column).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(table);
    }
    let source = datafusion::datasource::provider_as_source(table);
    let scan = LogicalPlanBuilder::scan(name, source, None)?.build()?;
    let mut columns: Vec<Expr> = scan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    for (column, array) in missing {
        let data_type = if *array {
            DataType::new_list(DataType::Utf8, true)
        } else {
            DataType::Utf8
        };
        columns.push(cast(lit(datafusion::common::ScalarValue::Null), data_type).alias(*column));
    }
    let plan = LogicalPlanBuilder::from(scan).project(columns)?.build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_typeof_prints_like_format_type() {
        assert_eq!(type_display_name(&DataType::Int32), "integer");
        assert_eq!(type_display_name(&DataType::Utf8), "text");
        assert_eq!(
            type_display_name(&DataType::new_list(DataType::Utf8, true)),
            "text[]"
        );
    }

    #[test]
    fn type_names_follow_postgres() {
        assert_eq!(pg_type_name(&DataType::Int64), "int8");
        assert_eq!(sql_type_name(&pg_type_name(&DataType::Int64)), "bigint");
        let ts = DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            Some("UTC".into()),
        );
        assert_eq!(
            sql_type_name(&pg_type_name(&ts)),
            "timestamp with time zone"
        );
        let list = DataType::new_list(DataType::Utf8, true);
        assert_eq!(pg_type_name(&list), "_text");
        assert_eq!(sql_type_name("_text"), "ARRAY");
    }

    #[test]
    fn format_follows_postgres() {
        let args = ["public", "My Table", "it's"];
        let arg = |i: usize| args.get(i).map(|a| Some(*a));
        assert_eq!(format_row("%s.%s", arg).expect("s"), "public.My Table");
        assert_eq!(format_row("%I.%I", arg).expect("I"), "public.\"My Table\"");
        assert_eq!(
            format_row("%3$L %1$s %%", arg).expect("L"),
            "'it''s' public %"
        );
        assert!(format_row("%s %s %s %s", arg).is_err(), "too few arguments");
        assert_eq!(format_row("%L", |_| Some(None)).expect("null"), "NULL");
    }

    #[test]
    fn settings_are_case_insensitive_and_unknown_ones_missing() {
        assert_eq!(setting("TimeZone"), Some("UTC"));
        assert_eq!(setting("server_version_num"), Some("150000"));
        assert_eq!(setting("no_such_thing"), None);
    }
}
