//! Table schemas: `schemas/*.yaml` files describing each table TimeFusion serves.
//!
//! A schema names the table, lists its Arrow fields (type, nullability, whether the column
//! holds JSON text) and says which columns partition the Delta table, which sort the rows of
//! each Parquet file, which column is the event time, which is the derived UTC date and which
//! is the tenant key. The schemas in the repository's `schemas/` folder are compiled into the
//! binary, so a server started anywhere has them; `TIMEFUSION_SCHEMA_DIR` replaces them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// Schemas built into the binary (the repository's `schemas/` folder).
const BUILT_IN: &[(&str, &str)] = &[
    (
        "otel_logs_and_spans.yaml",
        include_str!("../../schemas/otel_logs_and_spans.yaml"),
    ),
    (
        "otel_metrics.yaml",
        include_str!("../../schemas/otel_metrics.yaml"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read schema directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("schema {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("schema directory {0} holds no *.yaml table schema")]
    Empty(PathBuf),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    fields: Vec<FieldFile>,
    partition_columns: Vec<String>,
    #[serde(default)]
    sort_columns: Vec<String>,
    time_column: String,
    date_column: String,
    tenant_column: String,
    #[serde(default)]
    layout: Layout,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
    #[serde(default)]
    json: bool,
}

/// How a table's Parquet files are laid out (the schema file's `layout:`; flush and
/// compaction write the same). Rows are sorted by the sort columns within each file, so a
/// time range falls in few row groups and pages; the column and offset indexes (per page
/// min/max) and the row group statistics let a reader skip the rest, and a bloom filter per
/// row group lets an equality lookup on an id skip row groups that cannot hold it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Layout {
    /// Rows per row group: the unit statistics and bloom filters prune.
    pub row_group_rows: usize,
    /// Rows per data page at most: the unit the page index prunes and a reader decodes.
    pub page_rows: usize,
    /// Columns with a bloom filter in every row group (equality lookups: ids).
    pub bloom_filter_columns: Vec<String>,
    /// False-positive rate the bloom filters are sized for.
    pub bloom_filter_fpp: f64,
    /// Largest dictionary page of a column chunk, in bytes: past it the rest of the chunk's
    /// values are written plain. A reader decodes a chunk's whole dictionary page before any
    /// of its pages, so a large one costs every lookup that reads one page of the chunk.
    /// The time column and the bloom filter columns (ids) have no dictionary at all.
    pub dictionary_page_bytes: usize,
    /// Columns with min/max/null-count statistics in each file's Delta log entry
    /// (`delta.dataSkippingStatsColumns`); unset, the time column alone
    /// ([`TableSchema::stats_columns`]). Every query's file skipping parses the statistics of
    /// every file of the table, so each column listed costs every query; a column only helps
    /// where its values cluster by file. Time does (a file holds one project's day, in time
    /// order); ids do not (random: their bloom filters prune row groups instead), nor does a
    /// sort column after the tenant (every daily file holds all of a project's metric names).
    pub stats_columns: Option<Vec<String>>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            row_group_rows: DEFAULT_ROW_GROUP_ROWS,
            page_rows: DEFAULT_PAGE_ROWS,
            bloom_filter_columns: Vec::new(),
            bloom_filter_fpp: 0.01,
            dictionary_page_bytes: DEFAULT_DICTIONARY_PAGE_BYTES,
            stats_columns: None,
        }
    }
}

/// Defaults of [`Layout`], measured with `bench/run_query.sh` (BENCHMARKS.md, "File layout").
pub const DEFAULT_ROW_GROUP_ROWS: usize = 131_072;
pub const DEFAULT_PAGE_ROWS: usize = 8_192;
pub const DEFAULT_DICTIONARY_PAGE_BYTES: usize = 64 << 10;

/// One table: its Arrow schema and the roles of its columns.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    pub schema: SchemaRef,
    pub partition_columns: Vec<String>,
    pub sort_columns: Vec<String>,
    /// Event time, `Timestamp(Microsecond, "UTC")`: decides the time bucket and the date.
    pub time_column: String,
    /// UTC date of the event time (`Date32`), derived at ingest when left out.
    pub date_column: String,
    /// Tenant key (`Utf8`): every row must have one.
    pub tenant_column: String,
    pub json_columns: Vec<String>,
    pub layout: Layout,
}

impl TableSchema {
    pub fn index_of(&self, column: &str) -> Option<usize> {
        // Not `Schema::index_of`, whose miss formats every field name into an error.
        self.schema.column_with_name(column).map(|(i, _)| i)
    }

    /// The columns each data file's Delta statistics cover: [`Layout::stats_columns`] as
    /// listed, or the time column.
    pub fn stats_columns(&self) -> Vec<String> {
        match &self.layout.stats_columns {
            Some(columns) => columns.clone(),
            None => vec![self.time_column.clone()],
        }
    }

    fn from_file(file: &str, text: &str) -> Result<Self> {
        let invalid = |message: String| Error::Invalid {
            file: file.to_string(),
            message,
        };
        let parsed: SchemaFile = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut fields = Vec::with_capacity(parsed.fields.len());
        let mut json_columns = Vec::new();
        for field in &parsed.fields {
            let data_type = parse_type(&field.data_type)
                .map_err(|e| invalid(format!("column {}: {e}", field.name)))?;
            if fields.iter().any(|f: &Field| f.name() == &field.name) {
                return Err(invalid(format!("column {} appears twice", field.name)));
            }
            if field.json {
                json_columns.push(field.name.clone());
            }
            fields.push(Field::new(&field.name, data_type, field.nullable));
        }
        let schema = Arc::new(Schema::new(fields));
        let table = TableSchema {
            name: parsed.name,
            schema,
            partition_columns: parsed.partition_columns,
            sort_columns: parsed.sort_columns,
            time_column: parsed.time_column,
            date_column: parsed.date_column,
            tenant_column: parsed.tenant_column,
            json_columns,
            layout: parsed.layout,
        };
        table.check_roles().map_err(invalid)?;
        Ok(table)
    }

    fn check_roles(&self) -> std::result::Result<(), String> {
        let type_of = |column: &str| -> std::result::Result<&DataType, String> {
            self.schema
                .field_with_name(column)
                .map(|f| f.data_type())
                .map_err(|_| format!("column {column} is named in the schema but not defined"))
        };
        if !matches!(type_of(&self.time_column)?, DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC")
        {
            return Err(format!(
                "time column {} must be Timestamp(Microsecond, Some(\"UTC\"))",
                self.time_column
            ));
        }
        if type_of(&self.date_column)? != &DataType::Date32 {
            return Err(format!("date column {} must be Date32", self.date_column));
        }
        if type_of(&self.tenant_column)? != &DataType::Utf8 {
            return Err(format!("tenant column {} must be Utf8", self.tenant_column));
        }
        for column in self.partition_columns.iter().chain(&self.sort_columns) {
            type_of(column)?;
        }
        for column in &self.layout.bloom_filter_columns {
            if type_of(column)?.is_nested() {
                return Err(format!(
                    "bloom filter column {column} must be a plain (not a list) column"
                ));
            }
        }
        if let Some(columns) = &self.layout.stats_columns {
            if !columns.contains(&self.time_column) {
                // Time ranges skip files by it, and a top-k orders files by it.
                return Err(format!(
                    "layout: stats_columns must include the time column {}",
                    self.time_column
                ));
            }
            for (i, column) in columns.iter().enumerate() {
                if type_of(column)?.is_nested() || self.partition_columns.contains(column) {
                    return Err(format!(
                        "layout: stats column {column} must be a plain column that is not a \
                         partition column"
                    ));
                }
                if columns[..i].contains(column) {
                    return Err(format!("layout: stats column {column} is listed twice"));
                }
            }
        }
        // The table property is a comma-separated list in which `.` separates nested fields
        // and backticks quote: a name with any of those would silently get no statistics.
        for column in self.stats_columns() {
            if !column
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "layout: stats column {column:?} must be letters, digits and underscores"
                ));
            }
        }
        let layout = &self.layout;
        if layout.page_rows == 0 || layout.row_group_rows < layout.page_rows {
            return Err(format!(
                "layout: page_rows ({}) must be at least 1 and at most row_group_rows ({})",
                layout.page_rows, layout.row_group_rows
            ));
        }
        if layout.dictionary_page_bytes == 0 {
            return Err("layout: dictionary_page_bytes must be at least 1".to_string());
        }
        if !(layout.bloom_filter_fpp > 0.0 && layout.bloom_filter_fpp < 1.0) {
            return Err(format!(
                "layout: bloom_filter_fpp ({}) must be between 0 and 1",
                layout.bloom_filter_fpp
            ));
        }
        if self.partition_columns != [self.tenant_column.clone(), self.date_column.clone()] {
            return Err(format!(
                "partition_columns must be [{}, {}] (tenant, date)",
                self.tenant_column, self.date_column
            ));
        }
        Ok(())
    }
}

/// Parses the type names used in schema files: `Utf8`, `Int32`, `Int64`, `Float64`, `Boolean`,
/// `Date32`, `Timestamp(Microsecond, Some("UTC"))` and `List(<type>)`.
fn parse_type(text: &str) -> std::result::Result<DataType, String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("List(").and_then(|t| t.strip_suffix(')')) {
        let item = parse_type(inner)?;
        return Ok(DataType::List(Arc::new(Field::new("item", item, true))));
    }
    match text {
        "Utf8" => Ok(DataType::Utf8),
        "Int32" => Ok(DataType::Int32),
        "Int64" => Ok(DataType::Int64),
        "Float64" => Ok(DataType::Float64),
        "Boolean" => Ok(DataType::Boolean),
        "Date32" => Ok(DataType::Date32),
        "Timestamp(Microsecond, Some(\"UTC\"))" => Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        )),
        other => Err(format!(
            "unsupported type {other:?}; use Utf8, Int32, Int64, Float64, Boolean, Date32, \
             Timestamp(Microsecond, Some(\"UTC\")) or List(<type>)"
        )),
    }
}

/// Every table the server serves, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tables: BTreeMap<String, Arc<TableSchema>>,
}

impl Catalog {
    /// Loads `dir/*.yaml`, or the built-in schemas when `dir` is `None`.
    pub fn load(dir: Option<&Path>) -> Result<Self> {
        let mut files: Vec<(String, String)> = match dir {
            None => BUILT_IN
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            Some(dir) => {
                let io = |source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                };
                let mut files = Vec::new();
                for entry in std::fs::read_dir(dir).map_err(io)? {
                    let path = entry.map_err(io)?.path();
                    if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                        let text = std::fs::read_to_string(&path).map_err(io)?;
                        files.push((path.display().to_string(), text));
                    }
                }
                if files.is_empty() {
                    return Err(Error::Empty(dir.to_path_buf()));
                }
                files
            }
        };
        files.sort();
        let mut catalog = Catalog::default();
        for (file, text) in files {
            let table = TableSchema::from_file(&file, &text)?;
            if catalog.tables.contains_key(&table.name) {
                return Err(Error::Invalid {
                    file,
                    message: format!("table {} defined twice", table.name),
                });
            }
            catalog.tables.insert(table.name.clone(), Arc::new(table));
        }
        Ok(catalog)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<TableSchema>> {
        self.tables.get(name)
    }

    pub fn tables(&self) -> impl Iterator<Item = &Arc<TableSchema>> {
        self.tables.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_otel_schema_matches_the_column_list() {
        let catalog = Catalog::load(None).expect("built-in schemas load");
        let table = catalog.get("otel_logs_and_spans").expect("otel table");
        let fields = table.schema.fields();
        assert_eq!(fields.len(), 92);
        assert_eq!(fields[0].name(), "date");
        assert_eq!(fields[0].data_type(), &DataType::Date32);
        assert!(!fields[0].is_nullable());
        assert_eq!(fields[1].name(), "timestamp");
        assert_eq!(fields[3].name(), "id");
        assert!(!fields[3].is_nullable());
        let summary = table.schema.field_with_name("summary").expect("summary");
        assert!(matches!(summary.data_type(), DataType::List(_)));
        assert!(!summary.is_nullable());
        assert_eq!(fields[91].name(), "deleted");
        assert_eq!(table.partition_columns, ["project_id", "date"]);
        assert!(table.json_columns.contains(&"attributes".to_string()));
    }

    #[test]
    fn the_layout_defaults_and_is_checked() {
        let catalog = Catalog::load(None).expect("built-in schemas load");
        let layout = &catalog.get("otel_logs_and_spans").expect("otel").layout;
        assert_eq!(layout.row_group_rows, DEFAULT_ROW_GROUP_ROWS);
        assert_eq!(layout.page_rows, DEFAULT_PAGE_ROWS);
        assert!(
            layout
                .bloom_filter_columns
                .contains(&"context___trace_id".to_string())
        );
        let base = "name: t\npartition_columns: [p, d]\ntime_column: ts\ndate_column: d\ntenant_column: p\nfields:\n  - { name: ts, type: 'Timestamp(Microsecond, Some(\"UTC\"))', nullable: false }\n  - { name: d, type: 'Date32', nullable: false }\n  - { name: p, type: 'Utf8', nullable: true }\n  - { name: tags, type: 'List(Utf8)', nullable: true }\n";
        let table = TableSchema::from_file("t.yaml", base).expect("no layout section");
        assert_eq!(table.layout, Layout::default());
        let error = |layout: &str| {
            TableSchema::from_file("t.yaml", &format!("{base}layout: {layout}\n"))
                .unwrap_err()
                .to_string()
        };
        assert!(error("{ page_rows: 0 }").contains("page_rows (0)"));
        assert!(
            error("{ row_group_rows: 100, page_rows: 200 }").contains("at most row_group_rows")
        );
        assert!(error("{ bloom_filter_columns: [nope] }").contains("column nope"));
        assert!(error("{ bloom_filter_columns: [tags] }").contains("plain (not a list)"));
        assert!(error("{ bloom_filter_fpp: 1.5 }").contains("between 0 and 1"));
        assert!(error("{ row_groups: 5 }").contains("unknown field"));
        assert!(error("{ stats_columns: [p, ts] }").contains("not a partition column"));
        assert!(error("{ stats_columns: [ts, tags] }").contains("plain column"));
        assert!(error("{ stats_columns: [] }").contains("include the time column ts"));
        assert!(error("{ stats_columns: [ts, nope] }").contains("column nope"));
        assert!(error("{ stats_columns: [ts, ts] }").contains("listed twice"));
    }

    #[test]
    fn statistics_cover_the_time_column_unless_listed() {
        let catalog = Catalog::load(None).expect("built-in schemas load");
        let otel = catalog.get("otel_logs_and_spans").expect("otel");
        assert_eq!(otel.stats_columns(), ["timestamp"]);
        let metrics = catalog.get("otel_metrics").expect("metrics");
        assert_eq!(metrics.stats_columns(), ["timestamp"]);
        let base = "name: t\npartition_columns: [p, d]\nsort_columns: [p, ts, n]\ntime_column: ts\ndate_column: d\ntenant_column: p\nfields:\n  - { name: ts, type: 'Timestamp(Microsecond, Some(\"UTC\"))', nullable: false }\n  - { name: d, type: 'Date32', nullable: false }\n  - { name: p, type: 'Utf8', nullable: true }\n  - { name: n, type: 'Utf8', nullable: true }\n  - { name: a.b, type: 'Utf8', nullable: true }\n";
        let table = TableSchema::from_file("t.yaml", base).expect("valid");
        assert_eq!(table.stats_columns(), ["ts"]);
        let listed = format!("{base}layout: {{ stats_columns: [n, ts] }}\n");
        let table = TableSchema::from_file("t.yaml", &listed).expect("valid");
        assert_eq!(table.stats_columns(), ["n", "ts"]);
        // `.` separates nested fields in the table property.
        let dotted = format!("{base}layout: {{ stats_columns: [ts, a.b] }}\n");
        let error = TableSchema::from_file("t.yaml", &dotted)
            .unwrap_err()
            .to_string();
        assert!(error.contains("letters, digits and underscores"), "{error}");
    }

    #[test]
    fn rejects_unknown_types_and_bad_roles() {
        let bad_type = "name: t\npartition_columns: [p, d]\ntime_column: ts\ndate_column: d\ntenant_column: p\nfields:\n  - { name: ts, type: 'Decimal', nullable: false }\n";
        let err = TableSchema::from_file("t.yaml", bad_type)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported type"), "{err}");
        let bad_role = "name: t\npartition_columns: [p, d]\ntime_column: ts\ndate_column: d\ntenant_column: p\nfields:\n  - { name: ts, type: 'Int64', nullable: false }\n  - { name: d, type: 'Date32', nullable: false }\n  - { name: p, type: 'Utf8', nullable: true }\n";
        let err = TableSchema::from_file("t.yaml", bad_role)
            .unwrap_err()
            .to_string();
        assert!(err.contains("time column ts"), "{err}");
    }
}
