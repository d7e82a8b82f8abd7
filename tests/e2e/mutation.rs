//! `DELETE` and `UPDATE` over pgwire: rows only in the buffer, only in Delta, and in both;
//! PostgreSQL's command tags in both protocols; the `project_id` guard and its opt-in; refused
//! forms with their SQLSTATEs; and the result surviving a graceful restart and a `kill -9`
//! (a deleted buffered row is never resurrected by WAL replay).

use std::time::Duration;

use crate::common::*;

/// `(id, name)` of every row of `project`, by id.
async fn rows(client: &tokio_postgres::Client, project: &str) -> Vec<(String, String)> {
    client
        .query(
            &format!("SELECT id, name FROM {TABLE} WHERE project_id = $1 ORDER BY id"),
            &[&project],
        )
        .await
        .expect("select")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The rows one simple-protocol statement changed, from its command tag.
async fn changed(client: &tokio_postgres::Client, sql: &str) -> u64 {
    let messages = client.simple_query(sql).await.expect(sql);
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .expect("a command tag")
}

/// The SQLSTATE `sql` fails with.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(_) => panic!("{sql} succeeded"),
        Err(e) => sqlstate(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_update_reach_buffered_and_flushed_rows_and_survive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing flushes on its own: what is in Delta is what a restart flushed.
    let env = [("TIMEFUSION_FLUSH_INTERVAL_SECS", "3600")];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let yesterday = past_micros(1);
    client
        .execute(&insert_sql("p1", &ids("old", 6), yesterday), &[])
        .await
        .expect("insert");
    client
        .execute(&insert_sql("p2", &ids("other", 3), yesterday), &[])
        .await
        .expect("insert");
    drop(client);
    assert!(server.terminate().success());
    assert_eq!(delta_rows(dir.path()).await, 9, "the restart flushed them");

    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    client
        .execute(&insert_sql("p1", &ids("new", 6), yesterday), &[])
        .await
        .expect("insert");
    assert_eq!(delta_rows(dir.path()).await, 9, "the new rows are buffered");

    // Only in the buffer.
    assert_eq!(
        changed(
            &client,
            &format!("DELETE FROM {TABLE} WHERE project_id = 'p1' AND id = 'new-0'")
        )
        .await,
        1
    );
    // Only in Delta.
    assert_eq!(
        changed(
            &client,
            &format!("DELETE FROM {TABLE} WHERE project_id = 'p1' AND id IN ('old-0', 'old-1')")
        )
        .await,
        2
    );
    // In both; a filter on another column than the id; nothing of p2 changes.
    assert_eq!(
        changed(&client,
            &format!(
                "UPDATE {TABLE} SET name = 'renamed', level = 'WARN' WHERE project_id = 'p1' AND duration >= 4"
            )
        )
        .await,
        4
    );
    // A statement matching nothing changes nothing.
    assert_eq!(
        changed(
            &client,
            &format!("DELETE FROM {TABLE} WHERE project_id = 'p1' AND id = 'nope'")
        )
        .await,
        0
    );
    let expected: Vec<(String, String)> = [
        ("new-1", "GET /api/1"),
        ("new-2", "GET /api/2"),
        ("new-3", "GET /api/3"),
        ("new-4", "renamed"),
        ("new-5", "renamed"),
        ("old-2", "GET /api/2"),
        ("old-3", "GET /api/3"),
        ("old-4", "renamed"),
        ("old-5", "renamed"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(rows(&client, "p1").await, expected);
    assert_eq!(rows(&client, "p2").await.len(), 3);
    assert_eq!(
        count(&client, "WHERE project_id = 'p1' AND level = 'WARN'").await,
        4
    );

    // The extended protocol with parameters reports the rows changed.
    let changed = client
        .execute(
            &format!("UPDATE {TABLE} SET name = $1 WHERE project_id = $2 AND id = $3"),
            &[&"by-parameter", &"p1", &"new-1"],
        )
        .await
        .expect("update with parameters");
    assert_eq!(changed, 1);
    let deleted = client
        .execute(
            &format!("DELETE FROM {TABLE} WHERE project_id = $1 AND id IN ($2, $3)"),
            &[&"p1", &"new-2", &"old-2"],
        )
        .await
        .expect("delete with parameters");
    assert_eq!(deleted, 2);
    let mut expected = expected;
    expected.retain(|(id, _)| id != "new-2" && id != "old-2");
    expected[0].1 = "by-parameter".into();
    assert_eq!(rows(&client, "p1").await, expected);

    // A row inserted after the mutations stays, and the mutations survive a kill -9 and its
    // WAL replay: no deleted buffered row comes back, no update is lost.
    client
        .execute(&insert_sql("p1", &ids("late", 1), yesterday), &[])
        .await
        .expect("insert");
    drop(client);
    server.kill9();
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let mut with_late = expected.clone();
    with_late.insert(0, ("late-0".into(), "GET /api/0".into()));
    assert_eq!(rows(&client, "p1").await, with_late);
    drop(client);
    assert!(server.terminate().success());

    // And a graceful restart, after which Delta holds everything.
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    assert_eq!(rows(&client, "p1").await, with_late);
    assert_eq!(rows(&client, "p2").await.len(), 3);
    assert_eq!(delta_rows(dir.path()).await, with_late.len() + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_without_a_project_or_of_partition_columns_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let now = chrono::Utc::now().timestamp_micros();
    for project in ["a", "b"] {
        client
            .execute(&insert_sql(project, &ids(project, 3), now), &[])
            .await
            .expect("insert");
    }
    // Every tenant's rows only when the session says so.
    assert_eq!(
        refused(&client, &format!("DELETE FROM {TABLE} WHERE id = 'a-0'")).await,
        "42501"
    );
    assert_eq!(
        refused(&client, &format!("UPDATE {TABLE} SET name = 'x'")).await,
        "42501"
    );
    // The partition columns and the time column are not updated in place.
    for column in [
        "project_id = 'c'",
        "timestamp = now()",
        "date = '2020-01-01'",
    ] {
        assert_eq!(
            refused(
                &client,
                &format!("UPDATE {TABLE} SET {column} WHERE project_id = 'a'")
            )
            .await,
            "0A000",
            "{column}"
        );
    }
    assert_eq!(
        refused(
            &client,
            &format!("DELETE FROM {TABLE} WHERE project_id = 'a' RETURNING id")
        )
        .await,
        "0A000"
    );
    // The statement's own errors keep their classes.
    assert_eq!(
        refused(
            &client,
            &format!(
                "UPDATE {TABLE} SET duration = 1 / (duration - duration) WHERE project_id = 'a'"
            )
        )
        .await,
        "22012"
    );
    assert_eq!(
        refused(
            &client,
            &format!("UPDATE {TABLE} SET nope = 1 WHERE project_id = 'a'")
        )
        .await,
        "42703"
    );
    assert_eq!(
        refused(
            &client,
            &format!("UPDATE {TABLE} SET duration = 'many' WHERE project_id = 'a'")
        )
        .await,
        "22P02"
    );
    // A subquery would reach the table only as a join DataFusion does not hand over: refused
    // rather than widened to every row of the project.
    for filter in [
        "id IN (SELECT 'a-0')",
        "EXISTS (SELECT 1 WHERE false)",
        "duration = (SELECT 1)",
    ] {
        assert_eq!(
            refused(
                &client,
                &format!("DELETE FROM {TABLE} WHERE project_id = 'a' AND {filter}")
            )
            .await,
            "0A000",
            "{filter}"
        );
    }
    // A panic (debug builds' test function) in the filter over buffered rows, or inside
    // deltalake's rewrite, ends the statement alone.
    for sql in [
        format!(
            "DELETE FROM {TABLE} WHERE project_id = 'a' AND timefusion_test_panic(duration) = 1"
        ),
        format!(
            "UPDATE {TABLE} SET duration = timefusion_test_panic(duration) WHERE project_id = 'a'"
        ),
    ] {
        assert_eq!(refused(&client, &sql).await, "XX000", "{sql}");
    }
    assert_eq!(count(&client, "").await, 6, "nothing changed");
    // JSON operators in the filter.
    assert_eq!(
        changed(
            &client,
            &format!(
                "UPDATE {TABLE} SET level = 'json' WHERE project_id = 'a' AND body->>'message' = 'hello a-2'"
            )
        )
        .await,
        1
    );
    assert_eq!(count(&client, "WHERE level = 'json'").await, 1);

    client
        .batch_execute("SET timefusion.allow_all_projects = on")
        .await
        .expect("opt in");
    assert_eq!(
        changed(&client, &format!("DELETE FROM {TABLE} WHERE id LIKE '%-0'")).await,
        2
    );
    // psql prints PostgreSQL's command tags.
    let out = psql_command(
        &server.url(),
        &[
            "-c",
            &format!("UPDATE {TABLE} SET name = 'y' WHERE project_id = 'b' AND id = 'b-1'"),
            "-c",
            &format!("DELETE FROM {TABLE} WHERE project_id = 'b' AND id = 'b-1'"),
        ],
    )
    .output()
    .expect("psql");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "UPDATE 1\nDELETE 1\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The opt-in is the session's own.
    let other = server.client().await;
    assert_eq!(
        refused(&other, &format!("DELETE FROM {TABLE} WHERE id = 'a-1'")).await,
        "42501"
    );
    client
        .batch_execute("RESET timefusion.allow_all_projects")
        .await
        .expect("reset");
    assert_eq!(
        refused(&client, &format!("DELETE FROM {TABLE}")).await,
        "42501"
    );
    assert_eq!(count(&client, "").await, 3);
}

/// Rows with `id` in any of `files`, read as plain Parquet (what is physically on disk,
/// whatever the Delta log says).
async fn rows_on_disk(files: &[std::path::PathBuf], id: &str) -> usize {
    let paths: Vec<String> = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let ctx = datafusion::prelude::SessionContext::new();
    let frame = ctx
        .read_parquet(paths, Default::default())
        .await
        .expect("read parquet")
        .filter(datafusion::prelude::col("id").eq(datafusion::prelude::lit(id)))
        .expect("filter");
    frame.count().await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_row_is_in_no_data_file_after_vacuum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("TIMEFUSION_FLUSH_INTERVAL_SECS", "3600"),
        ("TIMEFUSION_VACUUM_RETENTION_HOURS", "0"),
    ];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let mut rows = ids("keep", 5);
    rows.push("secret".into());
    client
        .execute(&insert_sql("p1", &rows, past_micros(1)), &[])
        .await
        .expect("insert");
    drop(client);
    assert!(server.terminate().success());
    let table = dir.path().join("tables").join(TABLE);
    assert_eq!(rows_on_disk(&parquet_files(&table), "secret").await, 1);

    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let deleted = client
        .execute(
            &format!("DELETE FROM {TABLE} WHERE project_id = 'p1' AND id = 'secret'"),
            &[],
        )
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
    assert_eq!(
        rows_on_disk(&parquet_files(&table), "secret").await,
        1,
        "until vacuum, the file the delete replaced is still on disk (for older versions)"
    );
    client.batch_execute("VACUUM").await.expect("vacuum");
    let files = parquet_files(&table);
    assert_eq!(rows_on_disk(&files, "secret").await, 0, "{files:?}");
    assert_eq!(rows_on_disk(&files, "keep-0").await, 1);
    assert_eq!(count(&client, "").await, 5);
}

/// The actions of the newest commit in the table's Delta log (`add`, `remove`, `commitInfo`…).
fn last_commit_actions(table: &std::path::Path) -> Vec<serde_json::Value> {
    let log = table.join("_delta_log");
    let newest = std::fs::read_dir(&log)
        .expect("log")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .expect("a commit");
    std::fs::read_to_string(newest)
        .expect("commit")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_whole_days_of_a_project_removes_files_without_rewriting_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("TIMEFUSION_FLUSH_INTERVAL_SECS", "3600")];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let day = |days_ago: i64| {
        let micros = past_micros(days_ago).div_euclid(DAY_MICROS) * DAY_MICROS;
        (
            micros,
            chrono::DateTime::from_timestamp_micros(micros)
                .expect("day")
                .format("%Y-%m-%d")
                .to_string(),
        )
    };
    let (two_days_ago, from) = day(2);
    let (yesterday, to) = day(1);
    for (project, at) in [
        ("p1", two_days_ago),
        ("p1", yesterday),
        ("p2", two_days_ago),
    ] {
        client
            .execute(
                &insert_sql(project, &ids(&format!("{project}-{at}"), 4), at + 1),
                &[],
            )
            .await
            .expect("insert");
    }
    drop(client);
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    let deleted = client
        .execute(
            &format!(
                "DELETE FROM {TABLE} WHERE project_id = 'p1' AND timestamp >= '{from}' AND timestamp < '{to}'"
            ),
            &[],
        )
        .await
        .expect("delete");
    assert_eq!(deleted, 4);
    let actions = last_commit_actions(&dir.path().join("tables").join(TABLE));
    let kinds: Vec<&str> = actions
        .iter()
        .filter_map(|a| a.as_object()?.keys().next().map(String::as_str))
        .collect();
    assert!(kinds.contains(&"remove"), "{kinds:?}");
    assert!(
        !kinds.contains(&"add"),
        "a whole-day delete rewrites nothing: {kinds:?}"
    );
    // deltalake was given partition columns only, which it applies without reading files.
    let predicate = actions
        .iter()
        .find_map(|a| a["commitInfo"]["operationParameters"]["predicate"].as_str())
        .expect("the delete's predicate");
    assert!(
        predicate.contains("date") && !predicate.contains("timestamp"),
        "{predicate}"
    );
    assert_eq!(count(&client, "WHERE project_id = 'p1'").await, 4);
    assert_eq!(count(&client, "WHERE project_id = 'p2'").await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_listing_too_many_values_is_refused_and_the_server_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .execute(&insert_sql("p1", &ids("i", 3), past_micros(1)), &[])
        .await
        .expect("insert");
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("'i-{i}'"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // 50,000 values aborted the process inside deltalake (one stack frame per value).
    assert_eq!(
        refused(
            &client,
            &format!(
                "DELETE FROM {TABLE} WHERE project_id = 'p1' AND id IN ({})",
                list(50_000)
            )
        )
        .await,
        "54000"
    );
    // The limit itself works, on rows in Delta too.
    assert_eq!(
        changed(
            &client,
            &format!(
                "DELETE FROM {TABLE} WHERE project_id = 'p1' AND id IN ({})",
                list(10_000)
            )
        )
        .await,
        3
    );
    assert_eq!(count(&client, "").await, 0);
}

/// `(id, name, duration, level)` of every row of `project`, by id.
async fn full_rows(
    client: &tokio_postgres::Client,
    project: &str,
) -> Vec<(String, String, i64, String)> {
    client
        .query(
            &format!(
                "SELECT id, name, duration, level FROM {TABLE} WHERE project_id = $1 ORDER BY id"
            ),
            &[&project],
        )
        .await
        .expect("select")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Rows changed by `DELETE` / `UPDATE` on `path` (`buffer` or `delta`), from `/metrics`.
fn mutated_on(server: &TestServer, path: &str) -> u64 {
    let (_, body) = http_get(server.http_port, "/metrics").expect("metrics");
    body.lines()
        .filter(|l| {
            l.starts_with("timefusion_mutated_rows_total")
                && l.contains(&format!("path=\"{path}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Statements that change buffered rows only are logged as WAL change records (no flush, no
/// Delta commit), apply at once, fail whole on a bad row, and come back exactly as they were
/// after a kill -9, also when a flush took some of the rows they changed before the crash
/// (replay then applies them to the rows still buffered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_of_buffered_rows_are_logged_and_replayed_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The first scheduled flush comes 8 s after the start: every statement below runs before
    // (asserted: nothing is in Delta until then).
    let env = [("TIMEFUSION_FLUSH_INTERVAL_SECS", "8")];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    // Yesterday's rows go to a sealed bucket, flushed at the first scheduled flush; today's
    // stay buffered. Inserted first, yesterday's have the lower WAL sequences.
    client
        .execute(&insert_sql("p1", &ids("old", 6), past_micros(1)), &[])
        .await
        .expect("insert");
    // Five minutes ahead: the 10-minute bucket of these rows cannot end (and be sealed and
    // flushed with yesterday's) while the test runs, whatever the clock says when it starts.
    let now = chrono::Utc::now().timestamp_micros() + 5 * 60 * 1_000_000;
    client
        .execute(&insert_sql("p1", &ids("new", 6), now), &[])
        .await
        .expect("insert");
    client
        .execute(&insert_sql("p2", &ids("other", 3), now), &[])
        .await
        .expect("insert");
    assert_eq!(delta_rows(dir.path()).await, 0);

    // Across both buckets, in both protocols.
    let sql = format!(
        "UPDATE {TABLE} SET name = 'enriched', duration = duration + 100 WHERE project_id = 'p1' AND id IN ('old-1', 'new-1')"
    );
    assert_eq!(changed(&client, &sql).await, 2);
    let updated = client
        .execute(
            &format!("UPDATE {TABLE} SET level = $1 WHERE project_id = $2 AND duration >= $3"),
            &[&"WARN", &"p1", &4i64],
        )
        .await
        .expect("update with parameters");
    assert_eq!(updated, 6, "old-1/new-1 (101) and 4, 5 of each");
    let sql = format!("DELETE FROM {TABLE} WHERE project_id = 'p1' AND id IN ('old-2', 'new-2')");
    assert_eq!(changed(&client, &sql).await, 2);
    // A value that does not fit one selected row fails the whole statement: nothing changes.
    let sql = format!(
        "UPDATE {TABLE} SET duration = (CASE WHEN id = 'new-3' THEN 'x' ELSE '7' END)::bigint WHERE project_id = 'p1'"
    );
    assert_eq!(refused(&client, &sql).await, "22P02");
    // A row inserted after the changes is not touched by them.
    client
        .execute(&insert_sql("p1", &ids("late", 1), now + 1_000), &[])
        .await
        .expect("insert");
    let before = full_rows(&client, "p1").await;
    let expected: Vec<(&str, &str, i64, &str)> = vec![
        ("late-0", "GET /api/0", 0, "INFO"),
        ("new-0", "GET /api/0", 0, "INFO"),
        ("new-1", "enriched", 101, "WARN"),
        ("new-3", "GET /api/3", 3, "INFO"),
        ("new-4", "GET /api/4", 4, "WARN"),
        ("new-5", "GET /api/5", 5, "WARN"),
        ("old-0", "GET /api/0", 0, "INFO"),
        ("old-1", "enriched", 101, "WARN"),
        ("old-3", "GET /api/3", 3, "INFO"),
        ("old-4", "GET /api/4", 4, "WARN"),
        ("old-5", "GET /api/5", 5, "WARN"),
    ];
    let expected: Vec<(String, String, i64, String)> = expected
        .into_iter()
        .map(|(a, b, c, d)| (a.into(), b.into(), c, d.into()))
        .collect();
    assert_eq!(before, expected);
    assert_eq!(full_rows(&client, "p2").await.len(), 3);
    assert_eq!(mutated_on(&server, "buffer"), 10, "all on the buffer path");
    assert_eq!(mutated_on(&server, "delta"), 0);
    assert_eq!(delta_rows(dir.path()).await, 0, "no statement flushed");

    // The scheduled flush takes yesterday's bucket (a WAL prefix below the change records),
    // with the changes in it; then the process dies.
    // The flush is due 8 s after the start; the bound leaves room for a machine busy with the
    // rest of the suite (20 s was once not enough there).
    eventually(
        Duration::from_secs(60),
        "yesterday's rows flushed",
        || async { delta_rows(dir.path()).await == 5 },
    )
    .await;
    drop(client);
    server.kill9();
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    assert_eq!(full_rows(&client, "p1").await, expected, "after kill -9");
    assert_eq!(full_rows(&client, "p2").await.len(), 3);
    drop(client);
    assert!(server.terminate().success());
    assert_eq!(delta_rows(dir.path()).await, expected.len() + 3);
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    assert_eq!(full_rows(&client, "p1").await, expected, "from Delta");
}

/// A change too deep for the WAL writer's stack is not logged: it takes the Delta path, on
/// the statement's own stack, and gives the same answer; a shallow one is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_nested_too_deep_to_log_takes_the_delta_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let now = chrono::Utc::now().timestamp_micros();
    client
        .execute(&insert_sql("p1", &ids("a", 2), now), &[])
        .await
        .expect("insert");
    let chain = |n: usize| format!("duration{}", " + 1".repeat(n));
    let sql = format!(
        "UPDATE {TABLE} SET duration = {} WHERE project_id = 'p1' AND id = 'a-0'",
        chain(10)
    );
    assert_eq!(changed(&client, &sql).await, 1);
    assert_eq!(mutated_on(&server, "buffer"), 1);
    let sql = format!(
        "UPDATE {TABLE} SET duration = {} WHERE project_id = 'p1' AND id = 'a-1'",
        chain(900)
    );
    assert_eq!(changed(&client, &sql).await, 1);
    assert_eq!(mutated_on(&server, "delta"), 1);
    assert_eq!(
        full_rows(&client, "p1")
            .await
            .iter()
            .map(|r| r.2)
            .collect::<Vec<_>>(),
        vec![10, 901]
    );
}
