//! End to end over pgwire: insert → select, flush → select exactly once, concurrency with
//! flushes, SQLSTATEs, psql, graceful shutdown. (delta-rs Python reading the table:
//! `external::delta_rs_python`.)

use std::cell::Cell;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn insert_then_select_with_tokio_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;

    let now = chrono::Utc::now().timestamp_micros();
    let n = client
        .execute(&insert_sql("p1", &ids("a", 3), now), &[])
        .await
        .expect("insert");
    assert_eq!(n, 3, "INSERT reports its row count");
    assert_eq!(count(&client, "").await, 3);

    // Extended protocol with $n parameters.
    let stmt = client
        .prepare(&format!(
            "INSERT INTO {TABLE} (project_id, timestamp, id, name, duration) VALUES ($1, $2, $3, $4, $5)"
        ))
        .await
        .expect("prepare");
    let ts = chrono::Utc::now();
    let inserted = client
        .execute(&stmt, &[&"p2", &ts, &"b-1", &"param row", &42i64])
        .await
        .expect("insert with params");
    assert_eq!(inserted, 1);

    let rows = client
        .query(
            &format!(
                "SELECT id, name, duration, date FROM {TABLE} WHERE project_id = $1 ORDER BY id"
            ),
            &[&"p2"],
        )
        .await
        .expect("select");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "b-1");
    assert_eq!(rows[0].get::<_, String>(1), "param row");
    assert_eq!(rows[0].get::<_, i64>(2), 42);
    assert_eq!(
        rows[0].get::<_, chrono::NaiveDate>(3),
        ts.date_naive(),
        "date derived from timestamp"
    );

    let by_service = client
        .query(
            &format!(
                "SELECT resource___service___name, count(*) FROM {TABLE} WHERE project_id = 'p1' GROUP BY 1 ORDER BY 1"
            ),
            &[],
        )
        .await
        .expect("group by");
    let groups: Vec<(String, i64)> = by_service.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        groups,
        vec![
            ("svc-0".into(), 1),
            ("svc-1".into(), 1),
            ("svc-2".into(), 1)
        ]
    );

    // INSERT … SELECT goes through the same write path.
    let copied = client
        .execute(
            &format!(
                "INSERT INTO {TABLE} (project_id, timestamp, id, name) SELECT 'p3', timestamp, id || '-copy', name FROM {TABLE} WHERE project_id = 'p1'"
            ),
            &[],
        )
        .await
        .expect("insert select");
    assert_eq!(copied, 3);
    assert_eq!(count(&client, "WHERE project_id = 'p3'").await, 3);
    assert_eq!(count(&client, "").await, 7);
}

#[tokio::test]
async fn errors_carry_sqlstates_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .execute(
            &insert_sql("p1", &ids("ok", 2), chrono::Utc::now().timestamp_micros()),
            &[],
        )
        .await
        .expect("insert");

    let code =
        |e: tokio_postgres::Error| e.code().map(|c| c.code().to_string()).unwrap_or_default();
    let cases = [
        ("SELECT * FROM no_such_table", "42P01"),
        ("INSERT INTO no_such_table (id) VALUES ('x')", "42P01"),
        (
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, name) VALUES ('p1', now(), 'no id')",
            "23502",
        ),
        (
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration) VALUES ('p1', now(), 'x', 'ten')",
            "22P02",
        ),
        (
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id) VALUES ('p1', 'yesterday-ish', 'x')",
            "22007",
        ),
        (
            "INSERT INTO otel_logs_and_spans (timestamp, id) VALUES (now(), 'no project')",
            "23502",
        ),
        (
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, date, id) VALUES ('p1', '2026-01-02T00:00:00Z', '2026-01-05', 'x')",
            "23514",
        ),
        ("SELEKT 1", "42601"),
    ];
    for (sql, expected) in cases {
        let err = client.batch_execute(sql).await.expect_err(sql);
        let db = err
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert_eq!(code(err), expected, "{sql}: {db}");
        assert!(!db.is_empty(), "{sql}: the error has a message");
    }
    // The connection still works and nothing was stored by the failed statements.
    assert_eq!(count(&client, "").await, 2);
}

#[tokio::test]
async fn psql_inserts_and_selects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let run = |sql: &str| {
        let out = Command::new("psql")
            .args([
                server.url().as_str(),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql (install postgresql-client)");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let insert = run(
        "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) VALUES ('p1', now(), 'psql-1', 'from psql'), ('p1', now(), 'psql-2', 'again')",
    );
    assert_eq!(insert, "INSERT 0 2");
    assert_eq!(
        run("SELECT count(*) FROM otel_logs_and_spans WHERE project_id = 'p1'"),
        "2"
    );
    assert_eq!(
        run("SELECT name FROM otel_logs_and_spans WHERE id = 'psql-2'"),
        "again"
    );
}

#[tokio::test]
async fn rows_are_seen_exactly_once_after_they_flush_to_delta() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_FLUSH_INTERVAL_SECS", "1")]);
    let client = server.client().await;
    // Two days ago: sealed buckets, flushed at the next tick.
    client
        .execute(&insert_sql("p1", &ids("old", 50), past_micros(2)), &[])
        .await
        .expect("insert old");
    client
        .execute(&insert_sql("p2", &ids("old2", 25), past_micros(3)), &[])
        .await
        .expect("insert old");
    assert_eq!(
        count(&client, "").await,
        75,
        "visible at once from the buffer"
    );

    let data_dir = server.data_dir.clone();
    eventually(Duration::from_secs(60), "rows to reach Delta", || {
        let data_dir = data_dir.clone();
        async move { delta_rows(&data_dir).await == 75 }
    })
    .await;
    assert_eq!(count(&client, "").await, 75, "exactly once after the flush");
    assert_eq!(count(&client, "WHERE project_id = 'p2'").await, 25);

    // A row in the current bucket stays in the buffer; the union still counts each row once.
    client
        .execute(
            &insert_sql("p1", &ids("new", 5), chrono::Utc::now().timestamp_micros()),
            &[],
        )
        .await
        .expect("insert new");
    assert_eq!(count(&client, "").await, 80);
    let distinct: i64 = client
        .query_one(&format!("SELECT count(DISTINCT id) FROM {TABLE}"), &[])
        .await
        .expect("distinct")
        .get(0);
    assert_eq!(distinct, 80);

    // Partitioned by project and date, files are zstd Parquet.
    let p1 = dir.path().join("tables").join(TABLE).join("project_id=p1");
    assert!(p1.is_dir(), "project partition directory exists");
    // The plan of `SELECT … FROM {TABLE} WHERE filter`.
    let explain = |columns: &'static str, filter: &'static str| {
        let client = &client;
        async move {
            let plan: Vec<String> = client
                .query(
                    &format!("EXPLAIN SELECT {columns} FROM {TABLE} WHERE {filter}"),
                    &[],
                )
                .await
                .expect("explain")
                .iter()
                .map(|r| r.get::<_, String>(1))
                .collect();
            plan.join("\n")
        }
    };
    let plan = || explain("id, name", "project_id = 'p2'");
    // The commit is on disk a moment before the server publishes it (a reader of the new
    // version, the flushed rows out of its buffer), and the plan is the server's.
    eventually(
        Duration::from_secs(60),
        "the server to read the flushed rows from Delta",
        || async { plan().await.contains("project_id=p2/date=") },
    )
    .await;
    let plan = plan().await;
    // Only p2's Delta partition is scanned: project pruning reached the Delta file list.
    assert!(plan.contains("project_id=p2/date="), "{plan}");
    assert!(!plan.contains("project_id=p1/"), "{plan}");
    // Both sides select the project exactly: no filter above the scan reads the column again,
    // in each form that is exact; the other forms keep their filter.
    assert!(!plan.contains("FilterExec"), "{plan}");
    for (filter, exact) in [
        ("'p2' = project_id", true),
        ("project_id IN ('p1', 'p2')", true),
        ("project_id = 'p1' OR project_id = 'p2'", true),
        ("project_id <> 'p1'", false),
        ("project_id LIKE 'p%'", false),
        ("project_id = 'p1' OR name = 'x'", false),
    ] {
        let plan = explain("id", filter).await;
        assert_eq!(plan.contains("FilterExec"), !exact, "{filter}: {plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_during_flushes_keep_exact_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_FLUSH_INTERVAL_SECS", "1")]);
    let port = server.port;
    let acked = Arc::new(AtomicI64::new(0));
    let issued = Arc::new(AtomicI64::new(0));
    // Writers keep going until two flushes have committed while they write.
    let done = Arc::new(AtomicBool::new(false));
    const WRITERS: usize = 6;
    const ROWS: usize = 25;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acked, issued, done) = (acked.clone(), issued.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let client = connect(port).await;
            let mut s = 0;
            while !done.load(Ordering::SeqCst) {
                // Spread over sealed buckets (flushed while we write) and the open one.
                let when = if s % 3 == 0 {
                    chrono::Utc::now().timestamp_micros()
                } else {
                    past_micros(1 + (s % 4) as i64)
                };
                let sql = insert_sql(
                    &format!("p{}", w % 3),
                    &ids(&format!("w{w}-s{s}"), ROWS),
                    when,
                );
                issued.fetch_add(ROWS as i64, Ordering::SeqCst);
                client.execute(&sql, &[]).await.expect("insert");
                acked.fetch_add(ROWS as i64, Ordering::SeqCst);
                s += 1;
                // Pacing, not waiting: six writers in a steady stream, not a tight loop.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let reader = {
        let (acked, issued, done) = (acked.clone(), issued.clone(), done.clone());
        tokio::spawn(async move {
            let client = connect(port).await;
            let mut checks = 0;
            while !done.load(Ordering::SeqCst) {
                let low = acked.load(Ordering::SeqCst);
                let seen = count(&client, "").await;
                let high = issued.load(Ordering::SeqCst);
                assert!(
                    low <= seen && seen <= high,
                    "count {seen} outside [{low}, {high}]: a row was lost or doubled"
                );
                checks += 1;
            }
            checks
        })
    };
    // A flush is seen as more rows in Delta than at the previous look.
    let (last_delta, flushes) = (Cell::new(0), Cell::new(0));
    eventually(
        Duration::from_secs(60),
        "two flushes while the writers write",
        || async {
            let in_delta = delta_rows(dir.path()).await;
            if in_delta > last_delta.get() {
                flushes.set(flushes.get() + 1);
                last_delta.set(in_delta);
            }
            flushes.get() >= 2
        },
    )
    .await;
    done.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("writer");
    }
    let checks = reader.await.expect("reader");
    assert!(
        checks > 1,
        "the reader checked the count while writes and flushes ran"
    );
    let client = server.client().await;
    let total = acked.load(Ordering::SeqCst);
    assert_eq!(count(&client, "").await, total);
    let distinct: i64 = client
        .query_one(&format!("SELECT count(DISTINCT id) FROM {TABLE}"), &[])
        .await
        .expect("distinct")
        .get(0);
    assert_eq!(distinct, total);
}

#[tokio::test]
async fn graceful_shutdown_flushes_everything_and_restart_sees_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let now = chrono::Utc::now().timestamp_micros();
    client
        .execute(&insert_sql("p1", &ids("g", 40), now), &[])
        .await
        .expect("insert");
    drop(client);
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        delta_rows(dir.path()).await,
        40,
        "shutdown flushed the open bucket too"
    );

    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(
        count(&client, "").await,
        40,
        "no replay duplicates after a clean shutdown"
    );
}
