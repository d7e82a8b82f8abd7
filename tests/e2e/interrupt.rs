//! Stopping a running statement over the Postgres protocol, with tokio-postgres: a cancel
//! request, the session's `statement_timeout` (simple and extended protocol), and the server's
//! default `TIMEFUSION_STATEMENT_TIMEOUT_MS`. Each stop is SQLSTATE 57014 and leaves the
//! connection usable.

use std::time::Duration;

use crate::common::*;
use tokio_postgres::CancelToken;
use tokio_postgres::error::SqlState;

/// How long a stopped statement may take to come back before the test calls it not stopped.
const GRACE: Duration = Duration::from_secs(60);

/// The error of `result`, which must be 57014 with `reason` in its message.
fn assert_canceled<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, reason: &str) {
    let error = result.expect_err("the statement was stopped");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::QUERY_CANCELED, "{db:?}");
    assert!(db.message().contains(reason), "{}", db.message());
}

/// Runs `query` while sending a cancel request with `cancel` every 50 ms, until the query
/// returns. A cancel request stops only the statement running when it arrives (as in
/// PostgreSQL; one that comes before the statement starts does nothing), and the server shows
/// no statement as running, so rather than guess when the statement has started, the
/// requests repeat until it ends. Each request is sent before the next tick; the last one may
/// still be on its way when the query returns, but the next statement needs a round trip on
/// the connection first.
async fn cancelling<T>(cancel: &CancelToken, query: impl Future<Output = T>) -> T {
    let mut query = std::pin::pin!(query);
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            biased;
            result = &mut query => return result,
            _ = every.tick() => cancel
                .cancel_query(tokio_postgres::NoTls)
                .await
                .expect("cancel request sent"),
        }
    }
}

async fn show_timeout(client: &tokio_postgres::Client) -> String {
    let messages = client
        .simple_query("SHOW statement_timeout")
        .await
        .expect("SHOW statement_timeout");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

#[tokio::test]
async fn statement_timeout_stops_a_running_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(show_timeout(&client).await, "0");

    client
        .batch_execute("SET statement_timeout = '1.5s'")
        .await
        .expect("SET");
    assert_eq!(show_timeout(&client).await, "1500ms");
    let simple = tokio::time::timeout(GRACE, client.simple_query(ENDLESS))
        .await
        .expect("the timeout stopped the simple query");
    assert_canceled(simple, "statement timeout");

    // The extended protocol, with a parameter.
    let extended = tokio::time::timeout(
        GRACE,
        client.query(
            "SELECT count(*) FROM generate_series(1, 10000000000) WHERE generate_series > $1",
            &[&0i64],
        ),
    )
    .await
    .expect("the timeout stopped the extended query");
    assert_canceled(extended, "statement timeout");

    // COPY … TO STDOUT: the client has the CopyOutResponse, then the error instead of data.
    let copy = tokio::time::timeout(GRACE, async {
        use futures::TryStreamExt;
        let stream = client
            .copy_out(&format!("COPY ({ENDLESS}) TO STDOUT"))
            .await?;
        stream.try_collect::<Vec<_>>().await
    })
    .await
    .expect("the timeout stopped the COPY");
    assert_canceled(copy, "statement timeout");

    // The connection goes on, and a fast statement is not touched by the timeout.
    let n: i64 = client
        .query_one("SELECT count(*) FROM generate_series(1, 1000)", &[])
        .await
        .expect("a fast query after the timeout")
        .get(0);
    assert_eq!(n, 1000);

    let bad = client.batch_execute("SET statement_timeout = 'soon'").await;
    let code = bad.expect_err("a bad value").code().cloned();
    assert_eq!(code, Some(SqlState::INVALID_PARAMETER_VALUE));
    client
        .batch_execute("RESET statement_timeout")
        .await
        .expect("RESET");
    assert_eq!(show_timeout(&client).await, "0");
}

#[tokio::test]
async fn a_cancel_request_stops_a_running_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let result = tokio::time::timeout(
        GRACE,
        cancelling(&client.cancel_token(), client.query_one(ENDLESS, &[])),
    )
    .await
    .expect("the cancel request stopped the query");
    assert_canceled(result, "user request");

    // Cancel requests with another connection's key, sent all the while, do not reach this
    // one: the running query here ends by its own timeout, not by those cancels.
    client
        .batch_execute("SET statement_timeout = '3s'")
        .await
        .expect("SET");
    let other = server.client().await;
    let result = tokio::time::timeout(
        GRACE,
        cancelling(&other.cancel_token(), client.query_one(ENDLESS, &[])),
    )
    .await
    .expect("the timeout stopped the query");
    assert_canceled(result, "statement timeout");
    let n: i64 = client
        .query_one("SELECT count(*) FROM generate_series(1, 10)", &[])
        .await
        .expect("the connection is usable after a cancel")
        .get(0);
    assert_eq!(n, 10);
}

#[tokio::test]
async fn set_local_lasts_until_the_transaction_ends_and_writes_are_never_cut_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .batch_execute("SET statement_timeout = '10s'")
        .await
        .expect("SET");
    // Outside a transaction block SET LOCAL changes nothing, as in PostgreSQL.
    client
        .batch_execute("SET LOCAL statement_timeout = '1s'")
        .await
        .expect("SET LOCAL");
    assert_eq!(show_timeout(&client).await, "10s");
    client.batch_execute("BEGIN").await.expect("BEGIN");
    client
        .batch_execute("SET LOCAL statement_timeout = '1s'")
        .await
        .expect("SET LOCAL");
    assert_eq!(show_timeout(&client).await, "1s");
    client.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(show_timeout(&client).await, "10s");
    // RESET inside the transaction makes the default the session's value past COMMIT.
    client.batch_execute("BEGIN").await.expect("BEGIN");
    client
        .batch_execute("SET LOCAL statement_timeout = '1s'")
        .await
        .expect("SET LOCAL");
    client
        .batch_execute("RESET statement_timeout")
        .await
        .expect("RESET");
    client.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(show_timeout(&client).await, "0");
    client
        .batch_execute("SET statement_timeout = '10s'")
        .await
        .expect("SET");

    // An INSERT … SELECT that outlives the timeout still stores every row and says so: a
    // write cannot be undone, so it is not interrupted.
    client
        .batch_execute("SET statement_timeout = '1ms'")
        .await
        .expect("SET");
    let inserted = client
        .execute(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) \
             SELECT 'slow', now(), 'slow-' || value, 'n' FROM generate_series(1, 20000) AS g(value)",
            &[],
        )
        .await
        .expect("the INSERT finishes");
    assert_eq!(inserted, 20_000);
    client
        .batch_execute("RESET statement_timeout")
        .await
        .expect("RESET");
    assert_eq!(count(&client, "WHERE project_id = 'slow'").await, 20_000);
}

#[tokio::test]
async fn the_server_default_timeout_applies_to_every_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_STATEMENT_TIMEOUT_MS", "1000")]);
    let client = server.client().await;
    assert_eq!(show_timeout(&client).await, "1s");
    let result = tokio::time::timeout(GRACE, client.query_one(ENDLESS, &[]))
        .await
        .expect("the default timeout stopped the query");
    assert_canceled(result, "statement timeout");

    // A session may lift it, and RESET brings back the server's default.
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .expect("SET 0");
    assert_eq!(show_timeout(&client).await, "0");
    client.batch_execute("RESET ALL").await.expect("RESET ALL");
    assert_eq!(show_timeout(&client).await, "1s");
}

/// `DISCARD ALL`, which connection poolers send before handing a connection to the next
/// client: the settings go back to their start-up values (`statement_timeout` to the server's
/// default), cursors close and prepared statements are deallocated; inside a transaction block
/// it is refused, as in PostgreSQL.
#[tokio::test]
async fn discard_all_resets_the_session_for_the_next_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_STATEMENT_TIMEOUT_MS", "1000")]);
    let client = server.client().await;
    client
        .batch_execute(
            "SET statement_timeout = '5s'; \
             DECLARE c CURSOR WITH HOLD FOR SELECT value FROM generate_series(1, 3)",
        )
        .await
        .expect("SET and DECLARE");
    assert_eq!(show_timeout(&client).await, "5s");
    client.batch_execute("FETCH 1 FROM c").await.expect("FETCH");

    client.batch_execute("BEGIN").await.expect("BEGIN");
    let refused = client.batch_execute("DISCARD ALL").await;
    let error = refused.expect_err("DISCARD ALL in a transaction block");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code(), &SqlState::ACTIVE_SQL_TRANSACTION, "{db:?}");
    assert_eq!(
        db.message(),
        "DISCARD ALL cannot run inside a transaction block"
    );
    client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(
        show_timeout(&client).await,
        "5s",
        "the refused DISCARD did nothing"
    );

    client
        .batch_execute("DISCARD ALL")
        .await
        .expect("DISCARD ALL");
    assert_eq!(show_timeout(&client).await, "1s");
    let closed = client.batch_execute("FETCH 1 FROM c").await;
    let code = closed.expect_err("the cursor is closed").code().cloned();
    assert_eq!(code, Some(SqlState::INVALID_CURSOR_NAME));

    // Prepared statements go too (DEALLOCATE ALL), as in PostgreSQL: the next client may
    // prepare its own under the same names.
    let prepared = client.prepare("SELECT 1").await.expect("prepare");
    client.query(&prepared, &[]).await.expect("runs before");
    client
        .batch_execute("DISCARD ALL")
        .await
        .expect("DISCARD ALL");
    let gone = client.query(&prepared, &[]).await;
    let code = gone.expect_err("deallocated").code().cloned();
    assert_eq!(code, Some(SqlState::INVALID_SQL_STATEMENT_NAME));
    let again = client.prepare("SELECT 2").await.expect("prepare after");
    let row = client.query_one(&again, &[]).await.expect("runs");
    assert_eq!(row.get::<_, i64>(0), 2);

    // The extended protocol (drivers that prepare every statement), and the other forms, which have
    // nothing to discard; psql shows PostgreSQL's command tags.
    client
        .batch_execute("SET statement_timeout = '5s'")
        .await
        .expect("SET");
    client
        .execute("DISCARD ALL", &[])
        .await
        .expect("DISCARD ALL");
    assert_eq!(show_timeout(&client).await, "1s");
    let out = psql_command(
        &server.url(),
        &[
            "-c",
            "DISCARD ALL",
            "-c",
            "DISCARD PLANS",
            "-c",
            "DISCARD TEMPORARY",
            "-c",
            "DISCARD SEQUENCES",
        ],
    )
    .output()
    .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "DISCARD ALL\nDISCARD PLANS\nDISCARD TEMP\nDISCARD SEQUENCES\n"
    );
}

/// A portal read in pieces (`Execute` with a row limit, each followed by `Sync`, as pgjdbc does
/// with a fetch size inside a transaction): `statement_timeout` counts from each `Execute`, as
/// in PostgreSQL, so a slow reader is not cut off by the first one's deadline, while a later
/// `Execute` that runs too long is still stopped.
#[tokio::test]
async fn each_execute_of_a_portal_gets_its_own_statement_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let mut client = server.client().await;
    client
        .batch_execute("SET statement_timeout = '1s'")
        .await
        .expect("SET");
    let transaction = client.transaction().await.expect("BEGIN");
    let portal = transaction
        .bind("SELECT generate_series FROM generate_series(1, 20)", &[])
        .await
        .expect("bind");
    let mut values = Vec::new();
    for _ in 0..4 {
        let rows = transaction
            .query_portal(&portal, 5)
            .await
            .expect("each fetch well within its own timeout");
        values.extend(rows.iter().map(|row| row.get::<_, i64>(0)));
        // The sleep is the test: a slow reader, 1.6 s of fetches in all, more than one
        // timeout but less than one per Execute.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(values, (1..=20).collect::<Vec<i64>>());
    transaction.commit().await.expect("COMMIT");

    // The first row comes at once, the next after counting ten billion values: the second
    // Execute runs into its own timeout.
    let transaction = client.transaction().await.expect("BEGIN");
    let portal = transaction
        .bind(&format!("SELECT 1 AS n UNION ALL {ENDLESS}"), &[])
        .await
        .expect("bind");
    let first = transaction
        .query_portal(&portal, 1)
        .await
        .expect("first row");
    assert_eq!(first[0].get::<_, i64>(0), 1);
    let next = tokio::time::timeout(GRACE, transaction.query_portal(&portal, 1))
        .await
        .expect("the timeout stopped the second Execute");
    assert_canceled(next, "statement timeout");
}

/// The statements of one simple query run one after another, as in PostgreSQL (and as `psql
/// -c` and Grafana send them): each sees the transaction state the previous one left, and a
/// failed one ends the query.
#[tokio::test]
async fn the_statements_of_one_simple_query_run_one_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;

    // SET LOCAL after BEGIN in the same query applies to the statement after it.
    let stopped = client
        .simple_query(&format!(
            "BEGIN; SET LOCAL statement_timeout = '1s'; {ENDLESS}; COMMIT"
        ))
        .await;
    assert_canceled(stopped, "statement timeout");
    client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(
        show_timeout(&client).await,
        "0",
        "SET LOCAL ended with its block"
    );

    // A failed statement ends the query: the statement after it does not run.
    let failed = client
        .simple_query(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) \
             VALUES ('multi', now(), 'm-1', 'n'); SELECT * FROM no_such_table; \
             INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) \
             VALUES ('multi', now(), 'm-2', 'n')",
        )
        .await;
    let error = failed.expect_err("the query fails");
    assert_eq!(
        error
            .as_db_error()
            .map(|e| (e.code().clone(), e.message().to_string())),
        Some((
            SqlState::UNDEFINED_TABLE,
            "relation \"no_such_table\" does not exist".to_string()
        )),
        "PostgreSQL's code and words: {error:?}"
    );
    assert_eq!(count(&client, "WHERE project_id = 'multi'").await, 1);

    // A COPY FROM STDIN that is not the last statement is refused before anything runs.
    let refused = client
        .simple_query(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) \
             VALUES ('multi', now(), 'm-3', 'n'); \
             COPY otel_logs_and_spans (project_id, timestamp, id, name) FROM STDIN; SELECT 1",
        )
        .await
        .expect_err("refused");
    assert_eq!(
        refused.as_db_error().map(|e| e.code().clone()),
        Some(SqlState::FEATURE_NOT_SUPPORTED),
        "{refused:?}"
    );
    assert_eq!(count(&client, "WHERE project_id = 'multi'").await, 1);
}
