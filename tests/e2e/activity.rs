//! The server's sessions as an operator sees them over pgwire: `pg_stat_activity` rows for
//! every session (who, from where, what it runs, in which state), and `pg_cancel_backend` /
//! `pg_terminate_backend` stopping another session's statement or the session itself.

use std::time::Duration;

use crate::common::*;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

/// The session's backend pid, over the simple protocol: `query_one` would prepare a statement
/// whose drop sends a `Close` after the answer, and a session ended while that is in flight
/// answers it with its FATAL error, which tokio-postgres then hands to the dropped statement
/// instead of the connection.
async fn pid(client: &tokio_postgres::Client) -> i32 {
    let messages = client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .expect("pg_backend_pid");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .expect("a row")
        .parse()
        .expect("an integer pid")
}

/// The text columns of `pg_stat_activity`'s row for `pid`, as `name=value` pairs.
async fn activity(observer: &tokio_postgres::Client, pid: i32) -> Option<Vec<(String, String)>> {
    let sql = format!(
        "SELECT datname, usename, application_name, client_addr, state, query, \
         backend_type, CAST(datid IS NOT NULL AS TEXT) AS has_datid, \
         CAST(backend_start <= now() AS TEXT) AS started, \
         CAST(xact_start IS NOT NULL AS TEXT) AS in_xact, \
         CAST(query_start >= backend_start AS TEXT) AS queried \
         FROM pg_stat_activity WHERE pid = {pid}"
    );
    let messages = observer.simple_query(&sql).await.expect("pg_stat_activity");
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        c.name().to_string(),
                        row.get(i).unwrap_or("NULL").to_string(),
                    )
                })
                .collect(),
        ),
        _ => None,
    })
}

/// The row of `pid` once its state is `state`: a session's row turns idle as its connection
/// waits for the next message, just after the reply went out.
async fn settled(
    observer: &tokio_postgres::Client,
    pid: i32,
    state: &str,
) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = activity(observer, pid).await.expect("a row");
        if column(&row, "state") == state {
            return row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {row:?}, waiting for {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs [`ENDLESS`] on `client` in a task that gives the client back, once `observer` sees
/// the session `pid` active.
async fn run_endless(
    observer: &tokio_postgres::Client,
    client: tokio_postgres::Client,
    pid: i32,
) -> tokio::task::JoinHandle<(Result<(), tokio_postgres::Error>, tokio_postgres::Client)> {
    let running = tokio::spawn(async move {
        let result = client.simple_query(ENDLESS).await;
        (result.map(|_| ()), client)
    });
    settled(observer, pid, "active").await;
    running
}

fn column<'a>(row: &'a [(String, String)], name: &str) -> &'a str {
    row.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {name} in {row:?}"))
}

#[tokio::test]
async fn pg_stat_activity_shows_each_session_and_what_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let observer = server.client().await;
    let watched = server.client().await;
    let watched_pid = pid(&watched).await;

    watched
        .batch_execute("SET application_name = 'nightly-report'")
        .await
        .expect("SET application_name");
    watched
        .simple_query("SELECT 42 AS answer")
        .await
        .expect("a statement");
    let row = settled(&observer, watched_pid, "idle").await;
    assert_eq!(column(&row, "datname"), "postgres");
    assert_eq!(column(&row, "usename"), "postgres");
    assert_eq!(column(&row, "application_name"), "nightly-report");
    assert_eq!(column(&row, "client_addr"), "127.0.0.1");
    assert_eq!(column(&row, "state"), "idle");
    assert_eq!(column(&row, "query"), "SELECT 42 AS answer");
    assert_eq!(column(&row, "backend_type"), "client backend");
    assert_eq!(column(&row, "has_datid"), "true");
    assert_eq!(column(&row, "started"), "true");
    assert_eq!(column(&row, "in_xact"), "false");
    assert_eq!(column(&row, "queried"), "true");

    // A literal INSERT (written without planning) is the session's last statement too.
    let insert = insert_sql("activity", &ids("act", 2), past_micros(0));
    watched.simple_query(&insert).await.expect("INSERT");
    let row = settled(&observer, watched_pid, "idle").await;
    assert_eq!(column(&row, "query"), insert);

    // Inside a transaction block, between statements.
    watched.batch_execute("BEGIN").await.expect("BEGIN");
    let row = settled(&observer, watched_pid, "idle in transaction").await;
    assert_eq!(column(&row, "in_xact"), "true");
    watched.batch_execute("COMMIT").await.expect("COMMIT");

    // The observer sees itself running the query that reads the view.
    let own = pid(&observer).await;
    let row = activity(&observer, own).await.expect("its own row");
    assert_eq!(column(&row, "state"), "active");
    assert!(column(&row, "query").contains("pg_stat_activity"));

    // A session that left is gone from the view; the database counts the rest.
    drop(watched);
    eventually(Duration::from_secs(10), "the session leaves", || async {
        activity(&observer, watched_pid).await.is_none()
    })
    .await;
    let backends: i32 = observer
        .query_one(
            "SELECT numbackends FROM pg_stat_database WHERE datname = 'postgres'",
            &[],
        )
        .await
        .expect("pg_stat_database")
        .get(0);
    assert_eq!(backends, 1);
}

#[tokio::test]
async fn pg_cancel_backend_stops_another_sessions_statement() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let operator = server.client().await;
    let runaway = server.client().await;
    let runaway_pid = pid(&runaway).await;

    let running = run_endless(&operator, runaway, runaway_pid).await;
    let row = activity(&operator, runaway_pid).await.expect("a row");
    assert_eq!(column(&row, "query"), ENDLESS);

    let signalled: bool = operator
        .query_one(&format!("SELECT pg_cancel_backend({runaway_pid})"), &[])
        .await
        .expect("pg_cancel_backend")
        .get(0);
    assert!(signalled);
    let (result, runaway) = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the statement stopped")
        .expect("the task");
    let error = result.expect_err("the statement was canceled");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error:?}");
    // The session goes on.
    assert_eq!(pid(&runaway).await, runaway_pid);

    // No such session: false, as PostgreSQL answers (with a warning) for a pid that is not
    // one of its backends.
    let none: bool = operator
        .query_one("SELECT pg_cancel_backend(-7)", &[])
        .await
        .expect("pg_cancel_backend")
        .get(0);
    assert!(!none);
}

#[tokio::test]
async fn pg_terminate_backend_ends_a_session_with_57p01() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let operator = server.client().await;

    // An idle session ends at once; its client hears why.
    let (idle, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    let ended = tokio::spawn(connection);
    let idle_pid = pid(&idle).await;
    let signalled: bool = operator
        .query_one(&format!("SELECT pg_terminate_backend({idle_pid})"), &[])
        .await
        .expect("pg_terminate_backend")
        .get(0);
    assert!(signalled);
    let error = tokio::time::timeout(Duration::from_secs(30), ended)
        .await
        .expect("the connection ended")
        .expect("the task")
        .expect_err("the server ended the session");
    assert_eq!(error.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{error:?}");
    assert!(idle.is_closed());

    // A busy one: its statement stops, then the session ends.
    let busy = server.client().await;
    let busy_pid = pid(&busy).await;
    let running = run_endless(&operator, busy, busy_pid).await;
    let signalled: bool = operator
        .query_one("SELECT pg_terminate_backend($1::int4, 1000)", &[&busy_pid])
        .await
        .expect("pg_terminate_backend")
        .get(0);
    assert!(signalled);
    let (result, busy) = tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .expect("the statement stopped")
        .expect("the task");
    assert!(result.is_err(), "the statement was stopped");
    eventually(Duration::from_secs(10), "the session is closed", || async {
        busy.is_closed()
    })
    .await;
    eventually(Duration::from_secs(10), "the session leaves", || async {
        activity(&operator, busy_pid).await.is_none()
    })
    .await;
    // The operator's own session is untouched.
    assert_eq!(count(&operator, "").await, 0);
}
