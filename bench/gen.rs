//! Deterministic generator of realistic `otel_logs_and_spans` rows, shared by the benchmark
//! tools so every system under test receives the same rows.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Columns the generator fills, in the order of [`Row::values`].
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

pub struct Generator {
    rng: StdRng,
    start_micros: i64,
    span_micros: i64,
    counter: u64,
}

/// One generated row as SQL literals (strings already quoted).
pub struct Row {
    pub values: Vec<String>,
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

impl Generator {
    /// Rows with timestamps spread uniformly over `days` days ending at `end_micros`.
    pub fn new(seed: u64, end_micros: i64, days: i64) -> Self {
        let span_micros = days * 86_400_000_000;
        Generator {
            rng: StdRng::seed_from_u64(seed),
            start_micros: end_micros - span_micros,
            span_micros,
            counter: 0,
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
        let status = if level == "ERROR" {
            500
        } else if r.random_bool(0.05) {
            404
        } else {
            200
        };
        // Long-tailed durations: log-uniform from 10 µs to 10 s, in nanoseconds.
        let duration = (10f64.powf(r.random_range(4.0..10.0))) as i64;
        let ts = self.start_micros + r.random_range(0..self.span_micros);
        let trace: u128 = r.random();
        let span: u64 = r.random();
        let parent: u64 = r.random();
        let timestamp = chrono::DateTime::from_timestamp_micros(ts)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.6fZ");
        let path = format!("/api/v1/resource{endpoint}/items");
        let body = format!(
            "{{\"message\":\"{method} {path} completed with {status} in {} ms\",\"request_id\":\"{:016x}\"}}",
            duration / 1_000_000,
            span
        );
        let attributes = format!(
            "{{\"http.request.method\":\"{method}\",\"http.response.status_code\":{status},\"url.path\":\"{path}\",\"user.id\":\"user-{}\"}}",
            r.random_range(0..10_000u32)
        );
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        Row {
            values: vec![
                q(&format!("project-{project}")),
                q(&timestamp.to_string()),
                q(&format!("{:016x}{:08x}", span, self.counter)),
                q(&format!("{parent:016x}")),
                q(&format!("{method} {path}")),
                q("SERVER"),
                q(if status >= 500 { "ERROR" } else { "OK" }),
                q(level),
                q(level),
                severity.to_string(),
                q(&body),
                duration.to_string(),
                q(&format!("{trace:032x}")),
                q(&format!("{span:016x}")),
                q(&attributes),
                q(method),
                status.to_string(),
                q(&path),
                q(&format!("service-{service}")),
                q(&format!("1.{}.0", service % 7)),
                q(if service % 5 == 0 {
                    "staging"
                } else {
                    "production"
                }),
            ],
        }
    }

    /// One multi-row INSERT of `n` rows into `table`.
    pub fn insert(&mut self, table: &str, n: usize) -> String {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", COLUMNS.join(", "));
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&self.row().values.join(", "));
            sql.push(')');
        }
        sql
    }
}
