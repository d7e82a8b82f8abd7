//! `COPY … FROM STDIN` over the real server: text, CSV and binary through tokio-postgres
//! (extended protocol) and psql (simple protocol), errors with SQLSTATEs, and the rows flushed
//! to Delta exactly once; `COPY … TO STDOUT` in text, CSV and binary.

use std::io::Write;
use std::process::Stdio;

use crate::common::*;
use bytes::Bytes;
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
        "id,timestamp\no-1,2024-03-10 10:00:00+00\no-2,2024-03-10 10:00:01+00\n"
    );
    // Floats and intervals as PostgreSQL's COPY writes them.
    assert_eq!(
        read(
            "COPY (SELECT 7::float8, 1e20::float8, 0.5::float4, INTERVAL '1 day 2 hours') TO STDOUT"
        )
        .await,
        "7\t1e+20\t0.5\t1 day 02:00:00\n"
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

/// The `COPY n` tag of `COPY … TO STDOUT` counts data rows in every format, never the CSV
/// header line or the binary header: an empty result with a header is `COPY 0`, as in
/// PostgreSQL, and its head still goes out. psql (simple protocol) prints the tag of
/// `\copy … TO file`; tokio-postgres reads the same bytes over the extended protocol.
#[tokio::test]
async fn copy_to_stdout_tags_count_rows_not_headers() {
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    client
        .execute(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name) VALUES \
             ('tag', '2024-03-10T10:00:00Z', 't-1', 'a'), ('tag', '2024-03-10T10:00:01Z', 't-2', 'b')",
            &[],
        )
        .await
        .expect("insert");
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("out");
    let formats = [
        "",
        " WITH (FORMAT csv)",
        " WITH (FORMAT csv, HEADER)",
        " WITH (FORMAT binary)",
    ];
    for (filter, rows) in [("false", 0), ("project_id = 'tag'", 2)] {
        for format in formats {
            let query = format!("SELECT id FROM otel_logs_and_spans WHERE {filter} ORDER BY id");
            let copy = format!("\\copy ({query}) TO '{}'{format}", file.display());
            let printed = psql_command(&server.url(), &["-c", &copy])
                .output()
                .expect("psql");
            assert!(
                printed.status.success(),
                "{copy}: {}",
                String::from_utf8_lossy(&printed.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&printed.stdout),
                format!("COPY {rows}\n"),
                "{copy}"
            );
            let written = std::fs::read(&file).expect("the copied file");
            let stream = client
                .copy_out(&format!("COPY ({query}) TO STDOUT{format}"))
                .await
                .expect("copy out");
            let chunks: Vec<Bytes> = stream.try_collect().await.expect("copy data");
            assert_eq!(
                chunks.concat(),
                written,
                "{format}: the same bytes both ways"
            );
            if rows == 0 {
                let head: &[u8] = match format {
                    " WITH (FORMAT csv, HEADER)" => b"id\n",
                    // Signature, flags, extension length, then the trailer.
                    " WITH (FORMAT binary)" => b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff",
                    _ => b"",
                };
                assert_eq!(written, head, "{format}: the head of an empty result");
            }
        }
    }
}

/// The columns of the binary COPY test and the types tokio-postgres sends them as.
const BINARY_COPY: &str = "COPY otel_logs_and_spans (project_id, timestamp, id, name, body, \
     attributes, hashes, duration, attributes___client___port, context___is_remote) \
     FROM STDIN (FORMAT binary)";

/// What row `i` of the binary COPY test holds.
struct BinaryRow {
    timestamp: chrono::DateTime<chrono::Utc>,
    id: String,
    name: Option<String>,
    body: serde_json::Value,
    attributes: Option<serde_json::Value>,
    hashes: Vec<Option<String>>,
    duration: i64,
    port: Option<i32>,
    remote: bool,
}

fn binary_row(i: usize, base_micros: i64) -> BinaryRow {
    BinaryRow {
        timestamp: chrono::DateTime::from_timestamp_micros(base_micros + i as i64 * 1_000_003)
            .expect("timestamp"),
        id: format!("bin-{i}"),
        name: (!i.is_multiple_of(3)).then(|| format!("GET /b\t{i} ✓")),
        body: serde_json::json!({"msg": format!("hello, {i}"), "n": i}),
        attributes: i
            .is_multiple_of(2)
            .then(|| serde_json::json!({"k": [i, "v"]})),
        hashes: match i % 4 {
            0 => Vec::new(),
            1 => vec![Some(format!("h{i}"))],
            2 => vec![Some("a b".into()), None, Some("\"q\"".into())],
            _ => vec![Some("x".into()), Some("y".into())],
        },
        duration: i as i64 * 1_000_000_007,
        port: (!i.is_multiple_of(5)).then_some(8000 + i as i32),
        remote: i % 2 == 1,
    }
}

/// Reads the rows of project `bin` back over SQL and checks each against [`binary_row`].
async fn check_binary_rows(client: &tokio_postgres::Client, rows: usize, base_micros: i64) {
    let read = client
        .query(
            "SELECT id, timestamp, name, body, attributes, hashes, duration, \
             attributes___client___port, context___is_remote FROM otel_logs_and_spans \
             WHERE project_id = 'bin' ORDER BY timestamp",
            &[],
        )
        .await
        .expect("read back");
    assert_eq!(read.len(), rows);
    for (i, row) in read.iter().enumerate() {
        let want = binary_row(i, base_micros);
        assert_eq!(row.get::<_, String>(0), want.id);
        assert_eq!(
            row.get::<_, chrono::DateTime<chrono::Utc>>(1),
            want.timestamp,
            "{}",
            want.id
        );
        assert_eq!(row.get::<_, Option<String>>(2), want.name, "{}", want.id);
        let body: serde_json::Value =
            serde_json::from_str(&row.get::<_, String>(3)).expect("body is JSON text");
        assert_eq!(body, want.body, "{}", want.id);
        let attributes = row
            .get::<_, Option<String>>(4)
            .map(|a| serde_json::from_str::<serde_json::Value>(&a).expect("JSON text"));
        assert_eq!(attributes, want.attributes, "jsonb arrives as JSON text");
        assert_eq!(
            row.get::<_, Option<Vec<Option<String>>>>(5)
                .unwrap_or_default(),
            want.hashes,
            "{}",
            want.id
        );
        assert_eq!(row.get::<_, i64>(6), want.duration);
        assert_eq!(row.get::<_, Option<i32>>(7), want.port);
        assert_eq!(row.get::<_, bool>(8), want.remote);
    }
}

#[tokio::test]
async fn binary_copy_from_tokio_postgres_reads_back_before_and_after_a_flush() {
    use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
    use tokio_postgres::types::{ToSql, Type};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let base = past_micros(1) / 1_000_000 * 1_000_000 + 123_456;
    const ROWS: usize = 2000;

    let sink = client.copy_in(BINARY_COPY).await.expect("copy in");
    let types = [
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::VARCHAR,
        Type::JSON,
        Type::JSONB,
        Type::TEXT_ARRAY,
        Type::INT8,
        Type::INT4,
        Type::BOOL,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    for i in 0..ROWS {
        let row = binary_row(i, base);
        let values: [&(dyn ToSql + Sync); 10] = [
            &"bin",
            &row.timestamp,
            &row.id,
            &row.name,
            &row.body,
            &row.attributes,
            &row.hashes,
            &row.duration,
            &row.port,
            &row.remote,
        ];
        writer.as_mut().write(&values).await.expect("write row");
    }
    assert_eq!(writer.finish().await.expect("finish"), ROWS as u64);
    check_binary_rows(&client, ROWS, base).await;

    // Narrower integers than the columns: int2 for an int8, int2 for an int4.
    let sink = client
        .copy_in(
            "COPY otel_logs_and_spans (project_id, timestamp, id, duration, attributes___client___port) \
             FROM STDIN (FORMAT binary)",
        )
        .await
        .expect("copy in");
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::INT2,
            Type::INT2,
        ],
    );
    futures::pin_mut!(writer);
    let at = chrono::DateTime::from_timestamp_micros(base).expect("timestamp");
    writer
        .as_mut()
        .write(&[&"narrow", &at, &"n-1", &7i16, &-3i16])
        .await
        .expect("write");
    assert_eq!(writer.finish().await.expect("finish"), 1);
    let row = client
        .query_one(
            "SELECT duration, attributes___client___port FROM otel_logs_and_spans WHERE id = 'n-1'",
            &[],
        )
        .await
        .expect("row");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (7, -3));

    // Bad streams: the SQLSTATE, nothing stored, the connection still works.
    let header = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
    let field = |value: &[u8]| [&(value.len() as i32).to_be_bytes()[..], value].concat();
    let good = [
        &3i16.to_be_bytes()[..],
        &field(b"badproj"),
        &field(&(base - 946_684_800_000_000).to_be_bytes()),
        &field(b"x-1"),
    ]
    .concat();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "a wrong field count",
            [
                &header[..],
                &good,
                &2i16.to_be_bytes(),
                &field(b"p"),
                &field(b"q"),
            ]
            .concat(),
            "22P04",
        ),
        (
            "a stream ending inside a tuple",
            [&header[..], &good, &good[..good.len() - 2]].concat(),
            "22P04",
        ),
        (
            "a 3-byte timestamp",
            [
                &header[..],
                &good,
                &3i16.to_be_bytes(),
                &field(b"badproj"),
                &field(&[0, 0, 1]),
                &field(b"x-2"),
            ]
            .concat(),
            "22P03",
        ),
        (
            "text sent as binary",
            b"badproj\t2024-01-01\tx\n".to_vec(),
            "22P04",
        ),
    ];
    for (what, data, expected) in cases {
        let sink = client
            .copy_in::<_, Bytes>(
                "COPY otel_logs_and_spans (project_id, timestamp, id) FROM STDIN (FORMAT binary)",
            )
            .await
            .expect("copy in");
        futures::pin_mut!(sink);
        let sent = sink.send(Bytes::from(data)).await;
        let error = match sent {
            Err(e) => e,
            Ok(()) => sink.finish().await.expect_err(what),
        };
        assert_eq!(sqlstate(&error), expected, "{what}: {error:?}");
    }
    assert_eq!(count(&client, "WHERE project_id = 'badproj'").await, 0);

    // The same rows back out through COPY … TO STDOUT (FORMAT binary).
    let stream = client
        .copy_out(
            "COPY (SELECT id, timestamp, hashes, duration, context___is_remote FROM otel_logs_and_spans \
             WHERE project_id = 'bin' ORDER BY timestamp) TO STDOUT (FORMAT binary)",
        )
        .await
        .expect("copy out");
    let out = BinaryCopyOutStream::new(
        stream,
        &[
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TEXT_ARRAY,
            Type::INT8,
            Type::BOOL,
        ],
    );
    futures::pin_mut!(out);
    let mut seen = 0;
    while let Some(row) = futures::TryStreamExt::try_next(&mut out)
        .await
        .expect("row")
    {
        let want = binary_row(seen, base);
        assert_eq!(row.get::<String>(0), want.id);
        assert_eq!(row.get::<chrono::DateTime<chrono::Utc>>(1), want.timestamp);
        assert_eq!(row.get::<Vec<Option<String>>>(2), want.hashes);
        assert_eq!(row.get::<i64>(3), want.duration);
        assert_eq!(row.get::<bool>(4), want.remote);
        seen += 1;
    }
    assert_eq!(seen, ROWS);

    // After a graceful restart everything is in Delta, exactly once, with the same values.
    drop(client);
    assert!(server.terminate().success());
    assert_eq!(
        delta_rows(dir.path()).await,
        ROWS + 1,
        "flushed exactly once"
    );
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    check_binary_rows(&client, ROWS, base).await;
}

/// `copy_in` with the data cut into 64 KiB `CopyData` messages, as drivers send a long COPY.
async fn copy_in_chunks(
    client: &tokio_postgres::Client,
    sql: &str,
    data: &str,
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in(sql).await?;
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(64 << 10) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

/// CSV rows of `pad` bytes each for project `project`, ids `{project}-{i}`.
fn padded_csv(project: &str, day: &str, rows: usize, pad: usize) -> String {
    let body = "x".repeat(pad);
    (0..rows)
        .map(|i| format!("{project},{day}T12:00:00Z,{project}-{i},{body}\n"))
        .collect()
}

#[tokio::test]
async fn a_copy_longer_than_the_atomic_size_is_written_in_pieces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_COPY_ATOMIC_MB", "1")]);
    let client = server.client().await;
    let day = chrono::DateTime::from_timestamp_micros(past_micros(1))
        .expect("timestamp")
        .format("%Y-%m-%d")
        .to_string();
    let sql =
        "COPY otel_logs_and_spans (project_id, timestamp, id, body) FROM STDIN WITH (FORMAT csv)";

    // 12 MiB of rows, 12 times the atomic size: every row arrives.
    let rows = 12 * 1024;
    let data = padded_csv("big", &day, rows, 1000);
    let copied = copy_in_chunks(&client, sql, &data)
        .await
        .expect("a long COPY");
    assert_eq!(copied, rows as u64);
    assert_eq!(
        count(&client, "WHERE project_id = 'big'").await,
        rows as i64
    );

    // A bad row at the end fails the COPY but keeps the pieces written before it, like a
    // series of INSERTs; a COPY within the atomic size keeps nothing.
    let mut data = padded_csv("cut", &day, rows, 1000);
    data.push_str("cut,not a time,cut-bad,x\n");
    let error = copy_in_chunks(&client, sql, &data)
        .await
        .expect_err("a bad last row");
    assert_eq!(sqlstate(&error), "22007");
    let kept = count(&client, "WHERE project_id = 'cut'").await;
    assert!(kept > 0 && kept < rows as i64, "{kept} of {rows} rows kept");
    let mut data = padded_csv("small", &day, 100, 1000);
    data.push_str("small,not a time,small-bad,x\n");
    copy_in_chunks(&client, sql, &data)
        .await
        .expect_err("a bad last row");
    assert_eq!(count(&client, "WHERE project_id = 'small'").await, 0);

    // A row that never ends is refused once it passes 64 MiB, instead of growing forever.
    let endless = format!("endless,{day}T12:00:00Z,e-1,{}", "y".repeat(65 << 20));
    let error = copy_in_chunks(&client, sql, &endless)
        .await
        .expect_err("an endless row");
    assert_eq!(sqlstate(&error), "22P04");
}
