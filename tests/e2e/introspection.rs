//! Replays the catalog queries BI tools and drivers send on connect and in their schema
//! browsers (Grafana, Metabase, DBeaver, SQLAlchemy, pgAdmin), taken from their source into
//! `tests/introspection/*.sql`, against the real server, over the simple protocol and again
//! over the extended one, as drivers send them.
//!
//! Each entry names its source and what it must give: `ok`, `rows>=1`, or `contains=<text>` in
//! some cell. Known gaps, each with a `-- gap:` line saying why, expect `error=<text>` or
//! `rows=0`: they fail the test once fixed, so the entry gets its real expectation back.
//! `{table_oid}`, `{public_oid}` and `{database_oid}` stand for object ids the tools read in an
//! earlier query; the replay reads them from the server the same way. All failures of a file
//! are reported together.

use crate::common::*;
use tokio_postgres::SimpleQueryMessage;

struct Entry {
    source: String,
    expect: String,
    sql: String,
}

fn entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let (mut source, mut expect, mut sql) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("-- source: ") {
            source = s.to_string();
        } else if let Some(e) = line.strip_prefix("-- expect: ") {
            expect = e.trim().to_string();
        } else if line.starts_with("-- gap: ") {
            // Why the entry is a known gap; for the reader.
        } else if !line.trim().is_empty() {
            sql.push_str(line);
            sql.push('\n');
            if line.trim_end().ends_with(';') {
                out.push(Entry {
                    source: std::mem::take(&mut source),
                    expect: std::mem::take(&mut expect),
                    sql: std::mem::take(&mut sql),
                });
            }
        }
    }
    assert!(sql.trim().is_empty(), "unterminated query: {sql}");
    out
}

async fn check(client: &tokio_postgres::Client, entry: &Entry) -> Result<(), String> {
    let result = client
        .simple_query(&entry.sql)
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        });
    // A known gap: the query must still fail this way (update the entry once it is fixed).
    if let Some(text) = entry.expect.strip_prefix("error=") {
        return match result {
            Err(message) if message.contains(text) => Ok(()),
            Err(message) => Err(format!("failed otherwise than expected: {message}")),
            Ok(_) => Err(format!(
                "now succeeds: the known gap ({text}) is closed; update the entry"
            )),
        };
    }
    let messages = result?;
    let cells: Vec<Option<String>> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .flat_map(|row| (0..row.len()).map(|i| row.get(i).map(str::to_string)))
        .collect();
    let rows = messages
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    // Drivers send the same text over the extended protocol (Parse, Describe, Execute).
    client
        .query(entry.sql.trim().trim_end_matches(';'), &[])
        .await
        .map_err(|e| match e.as_db_error() {
            Some(db) => format!("extended protocol: {}: {}", db.code().code(), db.message()),
            None => format!("extended protocol: {e}"),
        })?;
    match entry.expect.as_str() {
        "ok" => Ok(()),
        "rows=0" if rows == 0 => Ok(()),
        "rows=0" => Err(format!(
            "now returns {rows} rows: the known gap is closed; update the entry"
        )),
        "rows>=1" if rows >= 1 => Ok(()),
        "rows>=1" => Err("returned no rows".into()),
        e => match e.strip_prefix("contains=") {
            Some(text) if cells.iter().flatten().any(|c| c.contains(text)) => Ok(()),
            Some(text) => Err(format!("no cell contains {text:?} in {rows} rows")),
            None => Err(format!("unknown expectation {e:?}")),
        },
    }
}

async fn replay(file: &str) {
    let text = std::fs::read_to_string(format!(
        "{}/tests/introspection/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("read replay file");
    let entries = entries(&text);
    assert!(!entries.is_empty(), "{file} holds no queries");
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    // The tools pass object ids they read in an earlier query; so does the replay.
    let oid = |sql: &'static str| {
        let client = &client;
        async move {
            let row = client.query_one(sql, &[]).await.expect(sql);
            row.try_get::<_, i32>(0)
                .map(i64::from)
                .or_else(|_| row.try_get::<_, i64>(0))
                .or_else(|_| row.try_get::<_, u32>(0).map(i64::from))
                .expect("an oid")
                .to_string()
        }
    };
    let table_oid =
        oid("SELECT oid FROM pg_catalog.pg_class WHERE relname = 'otel_logs_and_spans'").await;
    let public_oid = oid("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'public'").await;
    let database_oid =
        oid("SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()").await;
    let entries: Vec<Entry> = entries
        .into_iter()
        .map(|e| Entry {
            sql: e
                .sql
                .replace("{table_oid}", &table_oid)
                .replace("{public_oid}", &public_oid)
                .replace("{database_oid}", &database_oid),
            ..e
        })
        .collect();
    let mut failures = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if let Err(why) = check(&client, entry).await {
            failures.push(format!(
                "#{} ({}): {why}\n{}",
                i + 1,
                entry.source,
                entry.sql.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{file}: {} of {} queries failed:\n\n{}",
        failures.len(),
        entries.len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn grafana() {
    replay("grafana.sql").await;
}

#[tokio::test]
async fn metabase() {
    replay("metabase.sql").await;
}

#[tokio::test]
async fn dbeaver() {
    replay("dbeaver.sql").await;
}

#[tokio::test]
async fn pgadmin() {
    replay("pgadmin.sql").await;
}

#[tokio::test]
async fn sqlalchemy() {
    replay("sqlalchemy.sql").await;
}
