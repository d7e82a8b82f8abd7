//! The plan cache (`sql::plan_cache`): a query sent again with the same text reuses its
//! optimized plan and still reads the tables as they are now (rows inserted since, rows
//! flushed to Delta since, each counted once); a query calling `now()` is planned every run.
//! A kept physical plan takes a new buffer snapshot each run, concurrent runs included, and
//! is made again after a Delta commit; a top-k's is never kept. Prepared statements without
//! parameters keep theirs too (results in binary); those with parameters never do. A simple
//! query's text answered from a kept plan goes straight to it the next time.

use std::time::Duration;

use crate::common::*;

/// The one `bigint` a simple-protocol query returns.
async fn simple_count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"));
    row.get(0)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{sql}: not a count"))
}

/// `timefusion_plan_cache_<family>_total` for `outcome`, as `/metrics` has it now.
/// (`""`: a counter without labels).
fn counter(server: &TestServer, family: &str, outcome: &str) -> u64 {
    let (_, metrics) = http_get(server.http_port, "/metrics").expect("metrics");
    let series = if outcome.is_empty() {
        format!("timefusion_plan_cache_{family}_total ")
    } else {
        format!("timefusion_plan_cache_{family}_total{{outcome=\"{outcome}\"}} ")
    };
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse().expect("a count"))
}

/// Lookups of plans by `outcome` (`hit`, `miss`).
fn lookups(server: &TestServer, outcome: &str) -> u64 {
    counter(server, "lookups", outcome)
}

/// Runs of kept plans by what their physical plan was (`reused`, `made`).
fn physical(server: &TestServer, outcome: &str) -> u64 {
    counter(server, "physical", outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_physical_plan_reads_each_new_snapshot_until_a_delta_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Day-long buckets: today's rows stay buffered, yesterday's flush within a second.
    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
            ("TIMEFUSION_BUCKET_MINS", "1440"),
        ],
    );
    let client = server.client().await;
    let now = past_micros(0);
    let yesterday = past_micros(1);
    client
        .batch_execute(&insert_sql("p1", &ids("a", 3), yesterday))
        .await
        .expect("insert");
    eventually(Duration::from_secs(30), "the rows flushed", || async {
        delta_rows(dir.path()).await == 3
    })
    .await;
    client
        .batch_execute(&insert_sql("p1", &ids("b", 2), now))
        .await
        .expect("insert");

    // Reads `duration`, so deltalake plans a Parquet scan (a bare count it answers from its
    // log, a scan no physical plan is kept of).
    let query = format!("SELECT count(*), sum(duration) FROM {TABLE} WHERE project_id = 'p1'");
    // Kept by the first run, or by the second if the first recorded the query condition
    // cache (a plan recording it is not kept).
    for _ in 0..2 {
        assert_eq!(simple_count(&client, &query).await, 5);
    }
    let reused = physical(&server, "reused");
    client
        .batch_execute(&insert_sql("p1", &ids("c", 4), now))
        .await
        .expect("insert");
    assert_eq!(
        simple_count(&client, &query).await,
        9,
        "rows buffered since"
    );
    assert_eq!(physical(&server, "reused"), reused + 1);

    // Runs of the kept plan at once: each takes its own snapshot and state.
    let runs = (0..6).map(|_| async {
        let client = server.client().await;
        simple_count(&client, &query).await
    });
    assert_eq!(futures::future::join_all(runs).await, vec![9; 6]);
    assert_eq!(physical(&server, "reused"), reused + 7);

    // A flush commits (yesterday's rows, and today's written before them in the WAL, since
    // a flush writes a WAL prefix): the kept plan's Delta side is stale, so the plan is made
    // again, and the rows that moved are counted once.
    client
        .batch_execute(&insert_sql("p1", &ids("d", 2), yesterday))
        .await
        .expect("insert");
    eventually(Duration::from_secs(30), "the rows flushed", || async {
        delta_rows(dir.path()).await == 11
    })
    .await;
    let made = physical(&server, "made");
    assert_eq!(
        simple_count(&client, &query).await,
        11,
        "rows flushed since"
    );
    assert_eq!(
        physical(&server, "made"),
        made + 1,
        "made again after the commit"
    );
    assert_eq!(simple_count(&client, &query).await, 11);
    assert_eq!(physical(&server, "reused"), reused + 8);

    // A top-k hands its dynamic filter to the scans: its physical plan is never kept, and
    // each run sees the newest row.
    let newest = format!(
        "SELECT duration FROM {TABLE} WHERE project_id = 'p1' ORDER BY timestamp DESC LIMIT 1"
    );
    assert_eq!(simple_count(&client, &newest).await, 3, "c's last row");
    assert_eq!(simple_count(&client, &newest).await, 3);
    client
        .batch_execute(&insert_sql("p1", &ids("e", 6), now + 1_000))
        .await
        .expect("insert");
    assert_eq!(simple_count(&client, &newest).await, 5, "e's last row");
    assert_eq!(
        physical(&server, "reused"),
        reused + 8,
        "no top-k plan reused"
    );
    drop(client);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_without_parameters_keep_their_plans_in_binary_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let now = past_micros(0);
    client
        .batch_execute(&insert_sql("p1", &ids("a", 3), now))
        .await
        .expect("insert");
    // tokio-postgres prepares each statement and asks for every result column in binary.
    // Grouped, so the `max` hands no dynamic filter to the scans (a plan whose scans hold
    // one is not kept).
    let query = format!(
        "SELECT count(*), level, max(timestamp) FROM {TABLE} WHERE project_id = 'p1' \
         GROUP BY level"
    );
    let statement = client.prepare(&query).await.expect("prepare");
    let run = |expected: i64| {
        let client = &client;
        let statement = &statement;
        async move {
            let row = client.query_one(statement, &[]).await.expect("query");
            assert_eq!(row.get::<_, i64>(0), expected);
            assert_eq!(row.get::<_, &str>(1), "INFO");
            let newest: chrono::DateTime<chrono::Utc> = row.get(2);
            assert!(newest.timestamp_micros() >= now, "{newest}");
        }
    };
    let hits = lookups(&server, "hit");
    run(3).await;
    run(3).await;
    client
        .batch_execute(&insert_sql("p1", &ids("b", 2), now))
        .await
        .expect("insert");
    run(5).await;
    // The same text prepared again (drivers' unnamed statements) finds the kept plans too.
    let again = client.query_one(&query, &[]).await.expect("query");
    assert_eq!(again.get::<_, i64>(0), 5);
    assert_eq!(
        lookups(&server, "hit"),
        hits + 3,
        "three runs found the kept plan"
    );
    assert!(
        physical(&server, "reused") >= 1,
        "a physical plan was reused"
    );

    // A parameter's value is the run's own: such a statement is never kept.
    let hits = lookups(&server, "hit");
    let by_project = format!("SELECT count(*) FROM {TABLE} WHERE project_id = $1");
    for (project, expected) in [("p1", 5i64), ("p2", 0), ("p1", 5)] {
        let row = client
            .query_one(&by_project, &[&project])
            .await
            .expect("query");
        assert_eq!(row.get::<_, i64>(0), expected, "{project}");
    }
    assert_eq!(lookups(&server, "hit"), hits);
    drop(client);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_query_reuses_its_plan_and_sees_new_and_flushed_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_FLUSH_INTERVAL_SECS", "1")]);
    let client = server.client().await;
    let yesterday = past_micros(1);
    let query = format!("SELECT count(*) FROM {TABLE} WHERE project_id = 'p1'");

    client
        .batch_execute(&insert_sql("p1", &ids("a", 3), yesterday))
        .await
        .expect("insert");
    assert_eq!(simple_count(&client, &query).await, 3);
    let hits = lookups(&server, "hit");
    client
        .batch_execute(&insert_sql("p1", &ids("b", 2), yesterday))
        .await
        .expect("insert");
    assert_eq!(
        simple_count(&client, &query).await,
        5,
        "rows inserted since"
    );
    assert_eq!(lookups(&server, "hit"), hits + 1, "the plan was reused");

    // Flushed to Delta since: counted once.
    eventually(Duration::from_secs(30), "the rows flushed", || async {
        delta_rows(dir.path()).await == 5
    })
    .await;
    assert_eq!(simple_count(&client, &query).await, 5, "rows flushed since");
    client
        .batch_execute(&insert_sql("p1", &ids("c", 1), yesterday))
        .await
        .expect("insert");
    assert_eq!(
        simple_count(&client, &query).await,
        6,
        "in Delta and buffer"
    );
    assert_eq!(lookups(&server, "hit"), hits + 3);

    // `now()` is folded into each run's time by the optimizer: planned every time, so the
    // same text counts fewer rows as they age out of the window.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    client
        .batch_execute(&insert_sql("p2", &ids("d", 1), now))
        .await
        .expect("insert");
    let recent = format!(
        "SELECT count(*) FROM {TABLE} WHERE project_id = 'p2' \
         AND timestamp > now() - interval '5 seconds'"
    );
    assert_eq!(simple_count(&client, &recent).await, 1);
    let hits = lookups(&server, "hit");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(simple_count(&client, &recent).await, 0, "the row aged out");
    assert_eq!(lookups(&server, "hit"), hits, "no plan kept for now()");
    drop(client);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_nothing_is_looked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_PLAN_CACHE_ENTRIES", "0")]);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p1", &ids("a", 2), past_micros(1)))
        .await
        .expect("insert");
    let query = format!("SELECT count(*) FROM {TABLE} WHERE project_id = 'p1'");
    for _ in 0..2 {
        assert_eq!(simple_count(&client, &query).await, 2);
    }
    assert_eq!(lookups(&server, "hit") + lookups(&server, "miss"), 0);
    drop(client);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_physical_plans_off_only_logical_plans_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_PLAN_CACHE_PHYSICAL", "false")]);
    let client = server.client().await;
    let query = format!("SELECT count(*), sum(duration) FROM {TABLE} WHERE project_id = 'p1'");
    for (rows, prefix) in [(2, "a"), (3, "b"), (1, "c")] {
        client
            .batch_execute(&insert_sql("p1", &ids(prefix, rows), past_micros(0)))
            .await
            .expect("insert");
    }
    for _ in 0..3 {
        assert_eq!(simple_count(&client, &query).await, 6);
    }
    assert_eq!(lookups(&server, "hit"), 2);
    assert_eq!(
        physical(&server, "made"),
        2,
        "made from the kept plan each run"
    );
    assert_eq!(physical(&server, "reused"), 0);
    drop(client);
    assert!(server.terminate().success());
}

/// The column names of a simple query's result and its first row's values.
async fn names_and_row(
    client: &tokio_postgres::Client,
    query: &str,
) -> (Vec<String>, Vec<Option<String>>) {
    use tokio_postgres::SimpleQueryMessage;
    let messages = client.simple_query(query).await.expect("query");
    let Some(SimpleQueryMessage::RowDescription(columns)) = messages.first() else {
        panic!("no RowDescription first: {messages:?}");
    };
    let names = columns.iter().map(|c| c.name().to_string()).collect();
    let values = rows(&messages).into_iter().next().expect("a row");
    (names, values)
}

/// A text answered from a kept plan once goes straight to it afterwards, in any session: the
/// same rows (new ones included) under the names PostgreSQL gives the columns; in a failed
/// transaction block it is refused as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_text_goes_straight_to_its_plan_with_postgres_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p1", &ids("a", 3), past_micros(1)))
        .await
        .expect("insert");
    let query = format!(
        "SELECT count(*), max(id) AS last, project_id, 1 + 1 FROM {TABLE} \
         WHERE project_id = 'p1' GROUP BY project_id"
    );
    let run = |client| names_and_row(client, &query);
    let shortcuts = || counter(&server, "shortcuts", "");
    let names = vec!["count", "last", "project_id", "?column?"];
    let first = run(&client).await;
    assert_eq!(first.0, names);
    assert_eq!(
        first.1,
        [Some("3"), Some("a-2"), Some("p1"), Some("2")].map(|v| v.map(String::from))
    );
    assert_eq!(shortcuts(), 0, "the first run is parsed");

    client
        .batch_execute(&insert_sql("p1", &ids("b", 1), past_micros(1)))
        .await
        .expect("insert");
    let again = run(&client).await;
    assert_eq!(
        again.0, names,
        "the names PostgreSQL gives, kept with the text"
    );
    assert_eq!(again.1[0].as_deref(), Some("4"), "the row inserted since");
    assert_eq!(again.1[1].as_deref(), Some("b-0"));
    assert_eq!(shortcuts(), 1);

    let other = server.client().await;
    assert_eq!(run(&other).await, again, "another session");
    assert_eq!(shortcuts(), 2);

    // In a failed transaction block: refused, as every statement but its end.
    client.batch_execute("BEGIN").await.expect("BEGIN");
    assert!(client.batch_execute("SELECT 1/0").await.is_err());
    let refused = client.simple_query(&query).await;
    assert_eq!(outcome(refused), "25P02");
    client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(shortcuts(), 2, "not taken in the failed block");
    assert_eq!(run(&client).await, again);
    drop((client, other));
    assert!(server.terminate().success());
}
