//! Deterministic generator of realistic `otel_logs_and_spans` rows, shared by the benchmark
//! tools so every system under test receives the same rows, rendered as SQL `VALUES`, as CSV
//! for PostgreSQL `COPY`, or as Arrow batches for Flight (and Arrow IPC files for ClickHouse).

#![allow(dead_code)] // each benchmark tool uses its own part of this module

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Columns the generator fills, in the order of [`Row::sql_values`].
pub const COLUMNS: &[&str] = &[
    "project_id",
    "timestamp",
    "id",
    "parent_id",
    "name",
    "kind",
    "status_code",
    "level",
    "severity___severity_text",
    "severity___severity_number",
    "body",
    "duration",
    "context___trace_id",
    "context___span_id",
    "attributes",
    "attributes___http___request___method",
    "attributes___http___response___status_code",
    "attributes___url___path",
    "resource___service___name",
    "resource___service___version",
    "resource___deployment___environment___name",
];

/// One generated row.
pub struct Row {
    project: String,
    timestamp_micros: i64,
    id: String,
    parent_id: String,
    name: String,
    status_code: &'static str,
    level: &'static str,
    severity: i32,
    body: String,
    duration: i64,
    trace_id: String,
    span_id: String,
    attributes: String,
    method: &'static str,
    http_status: i32,
    path: String,
    service: String,
    version: String,
    environment: &'static str,
}

pub struct Generator {
    rng: StdRng,
    start_micros: i64,
    span_micros: i64,
    counter: u64,
}

const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const LEVELS: &[(&str, i32)] = &[
    ("INFO", 9),
    ("INFO", 9),
    ("INFO", 9),
    ("DEBUG", 5),
    ("WARN", 13),
    ("ERROR", 17),
];

fn timestamp_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Row {
    /// The row's tenant, timestamp (µs) and trace id.
    pub fn key(&self) -> (&str, i64, &str) {
        (&self.project, self.timestamp_micros, &self.trace_id)
    }

    /// The row as SQL literals, in [`COLUMNS`] order.
    pub fn sql_values(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        [
            q(&self.project),
            q(&timestamp_text(self.timestamp_micros)),
            q(&self.id),
            q(&self.parent_id),
            q(&self.name),
            q("SERVER"),
            q(self.status_code),
            q(self.level),
            q(self.level),
            self.severity.to_string(),
            q(&self.body),
            self.duration.to_string(),
            q(&self.trace_id),
            q(&self.span_id),
            q(&self.attributes),
            q(self.method),
            self.http_status.to_string(),
            q(&self.path),
            q(&self.service),
            q(&self.version),
            q(self.environment),
        ]
        .join(", ")
    }

    /// The row as one CSV line, in [`COLUMNS`] order.
    pub fn csv_line(&self, out: &mut String) {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let fields = [
            q(&self.project),
            timestamp_text(self.timestamp_micros),
            q(&self.id),
            q(&self.parent_id),
            q(&self.name),
            "SERVER".into(),
            self.status_code.into(),
            self.level.into(),
            self.level.into(),
            self.severity.to_string(),
            q(&self.body),
            self.duration.to_string(),
            q(&self.trace_id),
            q(&self.span_id),
            q(&self.attributes),
            self.method.into(),
            self.http_status.to_string(),
            q(&self.path),
            q(&self.service),
            q(&self.version),
            self.environment.into(),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
}

impl Generator {
    /// Rows with timestamps spread uniformly over `span_minutes` minutes ending at `end_micros`.
    pub fn new(seed: u64, end_micros: i64, span_minutes: i64) -> Self {
        let span_micros = span_minutes.max(1) * 60_000_000;
        Self::between(seed, end_micros - span_micros, end_micros)
    }

    /// Rows with timestamps spread uniformly over `[start_micros, end_micros)`.
    pub fn between(seed: u64, start_micros: i64, end_micros: i64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            start_micros,
            span_micros: (end_micros - start_micros).max(1),
            counter: seed << 32,
        }
    }

    pub fn row(&mut self) -> Row {
        let r = &mut self.rng;
        self.counter += 1;
        // Skewed tenants: project k gets about half the rows of project k-1.
        let project = (0..7).find(|_| r.random_bool(0.5)).unwrap_or(7);
        let service = r.random_range(0..300u32);
        let endpoint = r.random_range(0..300u32);
        let method = METHODS[r.random_range(0..METHODS.len())];
        let (level, severity) = LEVELS[r.random_range(0..LEVELS.len())];
        let http_status = if level == "ERROR" {
            500
        } else if r.random_bool(0.05) {
            404
        } else {
            200
        };
        // Long-tailed durations: log-uniform from 10 µs to 10 s, in nanoseconds.
        let duration = (10f64.powf(r.random_range(4.0..10.0))) as i64;
        let timestamp_micros = self.start_micros + r.random_range(0..self.span_micros);
        let trace: u128 = r.random();
        let span: u64 = r.random();
        let parent: u64 = r.random();
        let path = format!("/api/v1/resource{endpoint}/items");
        let body = format!(
            "{{\"message\":\"{method} {path} completed with {http_status} in {} ms\",\"request_id\":\"{span:016x}\"}}",
            duration / 1_000_000
        );
        let attributes = format!(
            "{{\"http.request.method\":\"{method}\",\"http.response.status_code\":{http_status},\"url.path\":\"{path}\",\"user.id\":\"user-{}\"}}",
            r.random_range(0..10_000u32)
        );
        Row {
            project: format!("project-{project}"),
            timestamp_micros,
            id: format!("{span:016x}{:08x}", self.counter),
            parent_id: format!("{parent:016x}"),
            name: format!("{method} {path}"),
            status_code: if http_status >= 500 { "ERROR" } else { "OK" },
            level,
            severity,
            body,
            duration,
            trace_id: format!("{trace:032x}"),
            span_id: format!("{span:016x}"),
            attributes,
            method,
            http_status,
            path,
            service: format!("service-{service}"),
            version: format!("1.{}.0", service % 7),
            environment: if service % 5 == 0 {
                "staging"
            } else {
                "production"
            },
        }
    }

    /// The next `n` rows.
    pub fn rows(&mut self, n: usize) -> Vec<Row> {
        (0..n).map(|_| self.row()).collect()
    }
}

/// Rows as one multi-row `INSERT` into `table`, in [`COLUMNS`] order.
pub fn insert_of(table: &str, rows: &[Row]) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", COLUMNS.join(", "));
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&row.sql_values());
        sql.push(')');
    }
    sql
}

/// Rows as CSV for `COPY … FROM STDIN (FORMAT csv)`, in [`COLUMNS`] order.
pub fn csv_of(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        row.csv_line(&mut out);
    }
    out
}

/// Rows as one Arrow batch with the [`COLUMNS`] columns.
pub fn batch_of(rows: &[Row]) -> RecordBatch {
    let text = |f: &dyn Fn(&Row) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        text(&|r| &r.project),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.timestamp_micros))
                .with_timezone("UTC"),
        ),
        text(&|r| &r.id),
        text(&|r| &r.parent_id),
        text(&|r| &r.name),
        text(&|_| "SERVER"),
        text(&|r| r.status_code),
        text(&|r| r.level),
        text(&|r| r.level),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.severity),
        )),
        text(&|r| &r.body),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.duration),
        )),
        text(&|r| &r.trace_id),
        text(&|r| &r.span_id),
        text(&|r| &r.attributes),
        text(&|r| r.method),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.http_status),
        )),
        text(&|r| &r.path),
        text(&|r| &r.service),
        text(&|r| &r.version),
        text(&|r| r.environment),
    ];
    let fields: Vec<Field> = COLUMNS
        .iter()
        .zip(&columns)
        .map(|(name, array)| {
            let data_type = match array.data_type() {
                DataType::Timestamp(_, _) => {
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                }
                other => other.clone(),
            };
            Field::new(*name, data_type, true)
        })
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("generated batch")
}
