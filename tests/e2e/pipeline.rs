//! INSERTs with parameters on the fast path, and pipelines of them: the messages a driver's
//! batch API sends (Parse once, then Bind/Execute per row, one Sync) are written at the Sync,
//! durably, all or nothing, as PostgreSQL commits the pipeline's implicit transaction. The
//! pipelines are sent as raw protocol messages, so each test controls exactly where the Sync
//! falls; typed binary parameters come from tokio-postgres.

use crate::common::*;

/// A server that lets the test login in without a password, for the raw connections.
fn start(dir: &std::path::Path) -> TestServer {
    TestServer::start(
        dir,
        &[
            ("PGWIRE_PASSWORD", ""),
            ("PGWIRE_INSECURE_NO_PASSWORD", "true"),
        ],
    )
}

const INSERT: &str = "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes, body) VALUES ($1, $2, $3, $4, $5)";

fn completes(n: usize) -> Vec<Reply> {
    (0..n)
        .map(|_| Reply::Complete("INSERT 0 1".into()))
        .collect()
}

#[tokio::test]
async fn a_pipeline_of_inserts_is_written_once_at_its_sync_and_survives_a_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut raw = Raw::connect(server.port).await.expect("connect");
    raw.parse("ins", INSERT);
    let ids = ids("pipe", 200);
    for (i, id) in ids.iter().enumerate() {
        let hashes = format!("{{h{i},\"a b\",NULL}}");
        raw.execute(
            "ins",
            &[
                Some("pipeline"),
                Some("2026-11-23 10:00:00.5+02"),
                Some(id),
                Some(&hashes),
                Some("{\"k\": 1}"),
            ],
        );
    }
    raw.sync();
    let mut expected = completes(200);
    expected.push(Reply::Ready('I'));
    assert_eq!(raw.round_trip().await.expect("round trip"), expected);

    let client = server.client().await;
    assert_eq!(count(&client, "WHERE project_id = 'pipeline'").await, 200);
    let row = client
        .query_one(
            "SELECT hashes, CAST(timestamp AS text), body FROM otel_logs_and_spans WHERE id = $1",
            &[&ids[7]],
        )
        .await
        .expect("row");
    let hashes: Vec<Option<String>> = row.get(0);
    assert_eq!(hashes, [Some("h7".into()), Some("a b".into()), None]);
    assert_eq!(row.get::<_, String>(1), "2026-11-23 08:00:00.5+00");
    assert_eq!(row.get::<_, String>(2), "{\"k\": 1}");
    // One WAL record for the whole pipeline, acknowledged only once durable: a kill -9
    // right after the ReadyForQuery loses none of it.
    server.kill9();
    let server = start(dir.path());
    let client = server.client().await;
    assert_eq!(count(&client, "WHERE project_id = 'pipeline'").await, 200);
}

/// One row of project `held` per id, each Bind and Execute sent in a packet of its own, as
/// psycopg sends them.
async fn send_rows(raw: &mut Raw, ids: &[String]) {
    for id in ids {
        raw.execute(
            "ins",
            &[
                Some("held"),
                Some("2026-11-23 10:00:00+00"),
                Some(id),
                Some("{a}"),
                None,
            ],
        );
        raw.send().await.expect("send");
    }
}

/// Replies to Parse, Bind and Execute wait for the Sync or Flush that ends their exchange,
/// as PostgreSQL holds them, so a pipeline that arrives in many packets (psycopg sends each
/// row's messages on their own) is answered in one write; an error goes out at once.
#[tokio::test]
async fn replies_wait_for_the_sync_or_flush_that_ends_their_exchange() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let quiet = std::time::Duration::from_millis(300);
    let mut raw = Raw::connect(server.port).await.expect("connect");
    raw.parse("ins", INSERT);
    raw.send().await.expect("send");
    let held = ids("held", 23);
    send_rows(&mut raw, &held[..20]).await;
    assert_eq!(raw.arrived_within(quiet).await.expect("read"), 0, "held");
    raw.flush();
    raw.send().await.expect("send");
    // ParseComplete, then BindComplete and CommandComplete for each row.
    let answered = raw
        .arrived_within(std::time::Duration::from_secs(2))
        .await
        .expect("read");
    assert_eq!(
        answered,
        5 + 20 * (5 + 16),
        "everything held, after the Flush"
    );
    send_rows(&mut raw, &held[20..]).await;
    assert_eq!(raw.arrived_within(quiet).await.expect("read"), 0, "held");
    raw.sync();
    let (first, all) = raw.first_read().await.expect("answer");
    assert_eq!(first, all, "one write at the Sync: {first} of {all} bytes");
    // An error is not held: it arrives before the Sync.
    raw.execute(
        "ins",
        &[Some("held"), Some("not a time"), Some("x"), None, None],
    );
    raw.send().await.expect("send");
    assert!(
        raw.arrived_within(quiet).await.expect("read") > 0,
        "the error"
    );
    raw.sync();
    assert_eq!(
        raw.round_trip().await.expect("round trip"),
        [Reply::Ready('I')]
    );
    // A long exchange gets its replies as it goes, in pieces of PostgreSQL's 8 KiB.
    send_rows(&mut raw, &ids("long", 500)).await;
    let before_sync = raw.arrived_within(quiet).await.expect("read");
    assert!(
        (8 << 10..500 * (5 + 16)).contains(&before_sync),
        "{before_sync} bytes before the Sync"
    );
    raw.sync();
    let rest = raw.round_trip().await.expect("round trip");
    assert_eq!(rest.last(), Some(&Reply::Ready('I')));
    assert_eq!(
        rest.len() - 1 + before_sync / (5 + 16),
        500,
        "every row answered once"
    );
    let client = server.client().await;
    assert_eq!(count(&client, "WHERE project_id = 'held'").await, 523);
}

/// psycopg's `executemany` prepares the same INSERT once per set of parameter types (an int
/// that needs `int8` instead of `int2`, a `None`), so a pipeline alternates between
/// statements: their rows go into one batch with each value where it was sent.
#[tokio::test]
async fn a_pipeline_alternating_between_statements_of_one_insert_keeps_every_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut raw = Raw::connect(server.port).await.expect("connect");
    raw.parse("a", INSERT);
    raw.parse("b", INSERT);
    let ids = ids("alt", 60);
    for (i, id) in ids.iter().enumerate() {
        let hashes = format!("{{\"q\\\"{i}\", x ,NULL}}");
        let statement = if i % 3 == 0 { "b" } else { "a" };
        let time = format!("2026-11-23 10:00:{:02}.25-01", i % 60);
        raw.execute(
            statement,
            &[
                Some("alternating"),
                Some(&time),
                Some(id),
                (i % 4 != 0).then_some(hashes.as_str()),
                (i % 5 != 0).then_some("{\"n\": 1}"),
            ],
        );
    }
    raw.sync();
    let mut expected = completes(60);
    expected.push(Reply::Ready('I'));
    assert_eq!(raw.round_trip().await.expect("round trip"), expected);
    let client = server.client().await;
    for (i, id) in ids.iter().enumerate() {
        let row = client
            .query_one(
                "SELECT hashes, CAST(timestamp AS text), body FROM otel_logs_and_spans WHERE id = $1",
                &[id],
            )
            .await
            .expect("row");
        let hashes: Option<Vec<Option<String>>> = row.get(0);
        let expected_hashes =
            (i % 4 != 0).then(|| vec![Some(format!("q\"{i}")), Some("x".into()), None]);
        assert_eq!(hashes, expected_hashes, "row {i}");
        assert_eq!(
            row.get::<_, String>(1),
            format!("2026-11-23 11:00:{:02}.25+00", i % 60),
            "row {i}"
        );
        let body: Option<String> = row.get(2);
        assert_eq!(
            body.as_deref(),
            (i % 5 != 0).then_some("{\"n\": 1}"),
            "row {i}"
        );
    }
}

/// A driver's single statement (Bind, Execute, Sync in one packet) is answered with one
/// write: `BindComplete` waits for the `CommandComplete` and `ReadyForQuery` that follow it
/// instead of waking the client on its own while the row is made durable.
#[tokio::test]
async fn the_replies_to_messages_sent_together_leave_in_one_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut raw = Raw::connect(server.port).await.expect("connect");
    raw.parse("ins", INSERT);
    raw.sync();
    raw.round_trip().await.expect("parse");
    for id in ids("one-write", 20) {
        raw.execute(
            "ins",
            &[
                Some("one-write"),
                Some("2026-11-23 10:00:00+00"),
                Some(&id),
                None,
                None,
            ],
        );
        raw.sync();
        let (first, all) = raw.first_read().await.expect("answer");
        // BindComplete (5 bytes), CommandComplete "INSERT 0 1" (16), ReadyForQuery (6).
        assert_eq!((first, all), (27, 27), "the answer came in pieces");
    }
    let client = server.client().await;
    assert_eq!(count(&client, "WHERE project_id = 'one-write'").await, 20);
}

#[tokio::test]
async fn an_error_inside_a_pipeline_drops_every_row_of_it_as_postgresql_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut raw = Raw::connect(server.port).await.expect("connect");
    raw.parse("ins", INSERT);
    let row = |id: &'static str, time: &'static str| {
        [Some("rolled-back"), Some(time), Some(id), None, None]
    };
    raw.execute("ins", &row("a", "2026-11-23 10:00:00+00"));
    raw.execute("ins", &row("b", "2026-11-23 10:00:00+00"));
    // A timestamp that does not parse: the error answers this Execute, and the rest of
    // the pipeline is skipped up to the Sync.
    raw.execute("ins", &row("c", "not a time"));
    raw.execute("ins", &row("d", "2026-11-23 10:00:00+00"));
    raw.sync();
    let replies = raw.round_trip().await.expect("round trip");
    assert_eq!(
        replies,
        [
            Reply::Complete("INSERT 0 1".into()),
            Reply::Complete("INSERT 0 1".into()),
            Reply::Error("22007".into()),
            Reply::Ready('I'),
        ]
    );
    // A required column left null, and a year past 9999, each name their error.
    raw.execute(
        "ins",
        &[
            Some("rolled-back"),
            Some("2026-11-23 10:00:00+00"),
            None,
            None,
            None,
        ],
    );
    raw.sync();
    raw.execute("ins", &row("e", "10000-01-01 00:00:00+00"));
    raw.sync();
    let replies = raw.round_trip().await.expect("round trip");
    assert_eq!(
        replies[..2],
        [Reply::Error("23502".into()), Reply::Ready('I')],
        "{replies:?}"
    );
    let replies = raw.round_trip().await.expect("round trip");
    assert_eq!(replies, [Reply::Error("22008".into()), Reply::Ready('I')]);

    let client = server.client().await;
    assert_eq!(count(&client, "WHERE project_id = 'rolled-back'").await, 0);
    // The connection goes on: the next pipeline is written.
    raw.execute("ins", &row("f", "2026-11-23 10:00:00+00"));
    raw.sync();
    assert_eq!(
        raw.round_trip().await.expect("round trip"),
        [Reply::Complete("INSERT 0 1".into()), Reply::Ready('I')]
    );
    assert_eq!(count(&client, "WHERE project_id = 'rolled-back'").await, 1);
}

#[tokio::test]
async fn a_query_inside_a_pipeline_sees_the_rows_inserted_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let mut raw = Raw::connect(server.port).await.expect("connect");
    raw.parse("ins", INSERT);
    for id in ["a", "b", "c"] {
        raw.execute(
            "ins",
            &[
                Some("seen"),
                Some("2026-11-23 10:00:00+00"),
                Some(id),
                None,
                None,
            ],
        );
    }
    raw.parse(
        "count",
        "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = 'seen'",
    );
    raw.execute("count", &[]);
    raw.sync();
    let replies = raw.round_trip().await.expect("round trip");
    assert_eq!(replies[..3], completes(3)[..], "{replies:?}");
    assert_eq!(
        replies[3],
        Reply::Row(vec![Some("3".into())]),
        "{replies:?}"
    );
    assert_eq!(replies.last(), Some(&Reply::Ready('I')));
}

#[tokio::test]
async fn typed_binary_parameters_are_stored_as_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let insert = client
        .prepare(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes, duration, body, \
             context___is_remote, severity___severity_number, observed_timestamp) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, now())",
        )
        .await
        .expect("prepare");
    use tokio_postgres::types::Type;
    assert_eq!(
        insert.params(),
        [
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT_ARRAY,
            Type::INT8,
            Type::JSONB,
            Type::BOOL,
            Type::INT4
        ],
        "Describe reports each parameter's column type, or its cast"
    );
    assert!(insert.columns().is_empty(), "an INSERT returns no rows");
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    let body = serde_json::json!({"user": "ü", "n": [1, 2]});
    let hashes = vec!["x".to_string(), "y z".to_string()];
    let rows = client
        .execute(
            &insert,
            &[&"typed", &at, &"t1", &hashes, &42_i64, &body, &true, &9_i32],
        )
        .await
        .expect("insert");
    assert_eq!(rows, 1);
    let none: Option<Vec<String>> = None;
    let no_duration: Option<i64> = None;
    client
        .execute(
            &insert,
            &[
                &"typed",
                &at,
                &"t2",
                &none,
                &no_duration,
                &body,
                &false,
                &0_i32,
            ],
        )
        .await
        .expect("insert nulls");
    let row = client
        .query_one(
            "SELECT timestamp, hashes, duration, body, context___is_remote, \
             severity___severity_number, observed_timestamp IS NOT NULL \
             FROM otel_logs_and_spans WHERE id = 't1'",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(row.get::<_, chrono::DateTime<chrono::Utc>>(0), at);
    assert_eq!(row.get::<_, Vec<String>>(1), hashes);
    assert_eq!(row.get::<_, i64>(2), 42);
    let stored: String = row.get(3);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stored).expect("json"),
        body
    );
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, i32>(5), 9);
    assert!(row.get::<_, bool>(6), "now() filled in");
    let nulls = client
        .query_one(
            "SELECT hashes IS NULL, duration IS NULL FROM otel_logs_and_spans WHERE id = 't2'",
            &[],
        )
        .await
        .expect("read back nulls");
    assert!(nulls.get::<_, bool>(0) && nulls.get::<_, bool>(1));

    // Errors of a bound value answer its statement with PostgreSQL's SQLSTATE.
    let missing: Option<&str> = None;
    let result = client
        .execute(
            &insert,
            &[
                &"typed", &at, &missing, &hashes, &1_i64, &body, &true, &1_i32,
            ],
        )
        .await;
    assert_eq!(outcome(result), "23502");
    let far = chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .expect("time")
        .with_timezone(&chrono::Utc)
        + chrono::Duration::days(2);
    let result = client
        .execute(
            &insert,
            &[&"typed", &far, &"t3", &hashes, &1_i64, &body, &true, &1_i32],
        )
        .await;
    assert_eq!(outcome(result), "22008");
    assert_eq!(count(&client, "WHERE project_id = 'typed'").await, 2);
    // The session is fine after the errors, and so is every other.
    assert!(client.query_one("SELECT 1", &[]).await.is_ok());
}
