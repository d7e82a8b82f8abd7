//! `COPY … FROM STDIN` over the real server: text and CSV through tokio-postgres (extended
//! protocol) and psql (simple protocol), errors with SQLSTATEs, and the rows flushed to Delta
//! exactly once.

mod common;

use std::io::Write;
use std::process::Stdio;

use bytes::Bytes;
use common::*;
use futures::SinkExt;

async fn copy_in(
    client: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    futures::pin_mut!(sink);
    sink.send(Bytes::from(data.to_string())).await?;
    sink.finish().await
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

#[tokio::test]
async fn copy_text_and_csv_from_tokio_postgres_then_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let day = chrono::DateTime::from_timestamp_micros(past_micros(1))
        .expect("timestamp")
        .format("%Y-%m-%d")
        .to_string();

    let text: String = (0..500)
        .map(|i| {
            format!(
                "p1\t{day} 10:{:02}:00+00\tt-{i}\tGET /a\\tb\t{i}\t\\N\n",
                i % 60
            )
        })
        .collect();
    let rows = copy_in(
        &client,
        "COPY otel_logs_and_spans (project_id, timestamp, id, name, duration, level) FROM STDIN",
        &text,
    )
    .await
    .expect("copy text");
    assert_eq!(rows, 500);

    let csv = format!(
        "project_id,timestamp,id,body,hashes\np2,{day}T11:00:00Z,c-1,\"{{\"\"msg\"\": \"\"a, b\"\"}}\",\"{{x,y}}\"\np2,{day}T11:00:01Z,c-2,,{{}}\n"
    );
    let rows = copy_in(
        &client,
        "COPY otel_logs_and_spans (project_id, timestamp, id, body, hashes) FROM STDIN WITH (FORMAT csv, HEADER true)",
        &csv,
    )
    .await
    .expect("copy csv");
    assert_eq!(rows, 2);

    assert_eq!(count(&client, "WHERE project_id = 'p1'").await, 500);
    let row = client
        .query_one(
            "SELECT name, level IS NULL, duration FROM otel_logs_and_spans WHERE id = 't-7'",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(
        row.get::<_, String>(0),
        "GET /a\tb",
        "text escapes are undone"
    );
    assert!(row.get::<_, bool>(1), "\\N is NULL");
    assert_eq!(row.get::<_, i64>(2), 7);
    let row = client
        .query_one(
            "SELECT body, array_length(hashes, 1)::INT FROM otel_logs_and_spans WHERE id = 'c-1'",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "{\"msg\": \"a, b\"}");
    assert_eq!(row.get::<_, i32>(1), 2);

    // Bad data: the whole COPY fails with a SQLSTATE and stores nothing.
    let bad_rows = format!("p3\t{day} 10:00:00+00\tx-1\t1\np3\t{day} 10:00:00+00\tx-2\tslow\n");
    let cases = [
        (
            "a non-integer duration",
            "COPY otel_logs_and_spans (project_id, timestamp, id, duration) FROM STDIN",
            bad_rows.as_str(),
            "22P02",
        ),
        (
            "a missing column",
            "COPY otel_logs_and_spans (project_id, timestamp, id) FROM STDIN",
            "p3\t2024-01-01 00:00:00+00\n",
            "22P04",
        ),
        (
            "no timestamp",
            "COPY otel_logs_and_spans (project_id, id) FROM STDIN",
            "p3\tx-3\n",
            "23502",
        ),
    ];
    for (what, sql, data, expected) in cases {
        let error = copy_in(&client, sql, data).await.expect_err(what);
        assert_eq!(sqlstate(&error), expected, "{what}");
    }
    let Err(unknown) = client.copy_in::<_, Bytes>("COPY nope FROM STDIN").await else {
        panic!("COPY into an unknown table started");
    };
    assert_eq!(sqlstate(&unknown), "42P01");
    assert_eq!(count(&client, "WHERE project_id = 'p3'").await, 0);
    assert_eq!(count(&client, "").await, 502, "the connection still works");

    drop(client);
    assert!(server.terminate().success());
    assert_eq!(delta_rows(dir.path()).await, 502, "flushed exactly once");
}

#[tokio::test]
async fn psql_copy_from_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let mut child = psql_command(
        &server.url(),
        &[
            "-c",
            "\\copy otel_logs_and_spans (project_id, timestamp, id, name) FROM STDIN WITH (FORMAT csv)",
        ],
    )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run psql (install postgresql-client)");
    let mut stdin = child.stdin.take().expect("stdin");
    for i in 0..1000 {
        writeln!(
            stdin,
            "acme,2024-03-10 10:00:{:02}+00,psql-{i},\"GET /x, y\"",
            i % 60
        )
        .expect("write");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("psql");
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "COPY 1000");
    let client = server.client().await;
    assert_eq!(count(&client, "WHERE name = 'GET /x, y'").await, 1000);
}

#[tokio::test]
async fn copy_to_stdout_in_text_and_csv() {
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .execute(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration) VALUES \
             ('out', '2024-03-10T10:00:00Z', 'o-1', 'tab\there', 5), \
             ('out', '2024-03-10T10:00:01Z', 'o-2', NULL, 6)",
            &[],
        )
        .await
        .expect("insert");
    let read = |sql: &'static str| {
        let client = &client;
        async move {
            let stream = client.copy_out(sql).await.expect("copy out");
            let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy data");
            String::from_utf8(chunks.concat()).expect("utf8")
        }
    };
    assert_eq!(
        read("COPY (SELECT id, name, duration FROM otel_logs_and_spans WHERE project_id = 'out' ORDER BY id) TO STDOUT").await,
        "o-1\ttab\\there\t5\no-2\t\\N\t6\n"
    );
    assert_eq!(
        read("COPY (SELECT id, timestamp FROM otel_logs_and_spans WHERE project_id = 'out' ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true)").await,
        "id,timestamp\no-1,2024-03-10 10:00:00+00:00\no-2,2024-03-10 10:00:01+00:00\n"
    );

    // psql's \copy … TO STDOUT, then the same rows loaded back with COPY FROM: a round trip.
    let out = psql_command(
        &server.url(),
        &[
            "-c",
            "\\copy (SELECT 'back' AS project_id, timestamp, id, name FROM otel_logs_and_spans WHERE project_id = 'out') TO STDOUT WITH (FORMAT csv)",
        ],
    )
    .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let rows = copy_in(
        &client,
        "COPY otel_logs_and_spans (project_id, timestamp, id, name) FROM STDIN (FORMAT csv)",
        &csv,
    )
    .await
    .expect("copy the rows back in");
    assert_eq!(rows, 2);
    assert_eq!(
        count(&client, "WHERE project_id = 'back' AND name = 'tab\there'").await,
        1
    );
}
