//! SQL behaviour, in sqllogictest files (`tests/slt/*.slt`), run against the real server over
//! pgwire (simple query protocol, text results) twice: first with every row still in the
//! buffer, then after a graceful restart has flushed them all to Delta. Both passes must give
//! the same answers.
//!
//! The subset of the sqllogictest format understood here:
//!
//! ```text
//! # a comment
//! statement ok
//! <sql>
//!
//! statement error <text the error message must contain>
//! <sql>
//!
//! query <one type letter per column> [rowsort]
//! <sql>
//! ----
//! <row: values separated by single spaces, NULL for null, (empty) for ''>
//! ```
//!
//! `statement ok` records whose SQL begins with `INSERT` load data and run in the first pass
//! only; every other record runs in both passes.
//!
//! Hand-written rather than the `sqllogictest` crate (DataFusion's runner), which would read
//! these files as they are: its dependency on rand 0.8 turns on getrandom 0.2's `std` feature
//! in test builds only, so `cargo test` would compile ring, rustls, object_store, parquet,
//! DataFusion and deltalake a second time instead of sharing `cargo build`'s artifacts.

use std::path::{Path, PathBuf};

use crate::common::*;
use tokio_postgres::SimpleQueryMessage;

#[derive(Debug)]
enum Record {
    Statement {
        line: usize,
        sql: String,
        error: Option<String>,
    },
    Query {
        line: usize,
        sql: String,
        columns: usize,
        rowsort: bool,
        expected: Vec<String>,
    },
}

fn parse(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).expect("read slt file");
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let header_line = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut sql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim() != "----" {
            sql.push(lines[i]);
            i += 1;
        }
        let sql = sql.join("\n");
        if let Some(rest) = line.strip_prefix("statement") {
            let rest = rest.trim();
            let error = match rest {
                "ok" => None,
                _ => Some(
                    rest.strip_prefix("error")
                        .unwrap_or_else(|| {
                            panic!("{}:{header_line}: bad statement header", path.display())
                        })
                        .trim()
                        .to_string(),
                ),
            };
            records.push(Record::Statement {
                line: header_line,
                sql,
                error,
            });
        } else if let Some(rest) = line.strip_prefix("query ") {
            let mut words = rest.split_whitespace();
            let columns = words.next().map(str::len).unwrap_or(0);
            let rowsort = words.any(|w| w == "rowsort");
            assert!(
                i < lines.len() && lines[i].trim() == "----",
                "{}:{header_line}: query without ----",
                path.display()
            );
            i += 1;
            let mut expected = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].trim_end().to_string());
                i += 1;
            }
            records.push(Record::Query {
                line: header_line,
                sql,
                columns,
                rowsort,
                expected,
            });
        } else {
            panic!("{}:{header_line}: unknown record `{line}`", path.display());
        }
    }
    records
}

fn render(value: Option<&str>) -> String {
    match value {
        None => "NULL".into(),
        Some("") => "(empty)".into(),
        Some(v) => v.replace(' ', "_").replace('\n', "\\n"),
    }
}

/// Runs `records`; returns the failures as readable messages.
async fn run(
    client: &tokio_postgres::Client,
    file: &Path,
    records: &[Record],
    pass: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    let at = |line: &usize| format!("{}:{line} ({pass})", file.display());
    for record in records {
        match record {
            Record::Statement { line, sql, error } => {
                if pass != "buffer" && sql.trim_start().to_uppercase().starts_with("INSERT") {
                    continue;
                }
                let result = client.simple_query(sql).await;
                match (error, result) {
                    (None, Err(e)) => {
                        failures.push(format!("{}: {sql}\n  failed: {e:?}", at(line)))
                    }
                    (Some(want), Ok(_)) => failures.push(format!(
                        "{}: {sql}\n  succeeded, expected an error containing {want:?}",
                        at(line)
                    )),
                    (Some(want), Err(e)) => {
                        let message = e
                            .as_db_error()
                            .map(|d| format!("{} {}", d.code().code(), d.message()))
                            .unwrap_or_else(|| e.to_string());
                        if !message.contains(want.as_str()) {
                            failures.push(format!(
                                "{}: {sql}\n  error {message:?} does not contain {want:?}",
                                at(line)
                            ));
                        }
                    }
                    (None, Ok(_)) => {}
                }
            }
            Record::Query {
                line,
                sql,
                columns,
                rowsort,
                expected,
            } => {
                let messages = match client.simple_query(sql).await {
                    Ok(m) => m,
                    Err(e) => {
                        let message = e
                            .as_db_error()
                            .map(|d| format!("{} {}", d.code().code(), d.message()))
                            .unwrap_or_else(|| e.to_string());
                        failures.push(format!("{}: {sql}\n  failed: {message}", at(line)));
                        continue;
                    }
                };
                let mut rows = Vec::new();
                let mut width = None;
                for message in messages {
                    if let SimpleQueryMessage::Row(row) = message {
                        width = Some(row.len());
                        let values: Vec<String> =
                            (0..row.len()).map(|c| render(row.get(c))).collect();
                        rows.push(values.join(" "));
                    }
                }
                if let Some(width) = width
                    && width != *columns
                {
                    failures.push(format!(
                        "{}: {sql}\n  {width} columns, the header says {columns}",
                        at(line)
                    ));
                    continue;
                }
                let mut expected = expected.clone();
                if *rowsort {
                    rows.sort();
                    expected.sort();
                }
                if rows != expected {
                    failures.push(format!(
                        "{}: {sql}\n  expected:\n    {}\n  got:\n    {}",
                        at(line),
                        expected.join("\n    "),
                        rows.join("\n    ")
                    ));
                }
            }
        }
    }
    failures
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[tokio::test]
async fn slt_files_give_the_same_answers_on_buffer_and_delta() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("TIMEFUSION_FLUSH_INTERVAL_SECS", "3600")];
    let files: Vec<(PathBuf, Vec<Record>)> = slt_files()
        .into_iter()
        .map(|f| {
            let records = parse(&f);
            (f, records)
        })
        .collect();

    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let mut failures = Vec::new();
    for (file, records) in &files {
        failures.extend(run(&client, file, records, "buffer").await);
    }
    let rows = count(&client, "").await;
    drop(client);
    assert!(server.terminate().success(), "shutdown flushes everything");
    assert_eq!(
        delta_rows(dir.path()).await as i64,
        rows,
        "every row is in Delta before the second pass"
    );

    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    for (file, records) in &files {
        failures.extend(run(&client, file, records, "delta").await);
    }
    assert!(
        failures.is_empty(),
        "{} slt failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
