//! The HTTP endpoint: `/health` and `/ready` as orchestrators read them (`/ready` is 503 while
//! the WAL replays), `/metrics` as Prometheus scrapes it, with series that move when rows are
//! ingested, flushed and queried; one log line per slow statement.

use crate::common::*;

/// The value of the series `name` (with its labels, as rendered), or 0 when it is absent.
fn series(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |value| value.parse().expect("a number"))
}

fn scrape(server: &TestServer) -> String {
    let (status, body) = http_get(server.http_port, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn metrics_move_when_rows_are_ingested_flushed_and_queried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
            ("TIMEFUSION_LOG", "timefusion=info,warn"),
            ("TIMEFUSION_LOG_MIN_DURATION_MS", "0"),
        ],
    );
    assert_eq!(http_get(server.http_port, "/health").expect("up").0, 200);
    assert_eq!(
        http_get(server.http_port, "/ready").expect("up"),
        (200, "ready\n".to_string())
    );
    assert_eq!(http_get(server.http_port, "/nothing").expect("up").0, 404);
    let before = scrape(&server);
    assert_eq!(series(&before, "timefusion_buffer_rows"), 0.0);
    assert!(series(&before, "timefusion_buffer_budget_bytes") > 0.0);

    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p1", &ids("m", 50), past_micros(1)))
        .await
        .expect("insert");
    let yesterday = chrono::DateTime::from_timestamp_micros(past_micros(1))
        .expect("timestamp")
        .to_rfc3339();
    let copy = client
        .copy_in("COPY otel_logs_and_spans (project_id, timestamp, id) FROM STDIN")
        .await
        .expect("copy");
    futures::pin_mut!(copy);
    let data = format!("p1\t{yesterday}\tc1\np1\t{yesterday}\tc2\n");
    futures::SinkExt::send(&mut copy, bytes::Bytes::from(data))
        .await
        .expect("copy data");
    assert_eq!(copy.finish().await.expect("copy done"), 2);
    let ingested = scrape(&server);
    let rows = |path: &str| {
        format!("timefusion_ingested_rows_total{{table=\"otel_logs_and_spans\",path=\"{path}\"}}")
    };
    assert_eq!(series(&ingested, &rows("insert")), 50.0, "{ingested}");
    assert_eq!(series(&ingested, &rows("copy")), 2.0);
    assert!(series(&ingested, "timefusion_wal_written_bytes_total") > 0.0);
    assert!(series(&ingested, "timefusion_wal_sync_seconds_count") >= 1.0);
    assert_eq!(series(&ingested, "timefusion_connections"), 1.0);

    // Yesterday's rows are in sealed buckets: the next flush takes them.
    eventually(std::time::Duration::from_secs(30), "the flush", || async {
        series(&scrape(&server), "timefusion_flushed_rows_total") >= 52.0
    })
    .await;
    let flushed = scrape(&server);
    assert!(series(&flushed, "timefusion_flushes_total{outcome=\"ok\"}") >= 1.0);
    assert_eq!(series(&flushed, "timefusion_buffer_rows"), 0.0);
    assert!(
        series(
            &flushed,
            "timefusion_delta_version{table=\"otel_logs_and_spans\"}"
        ) >= 1.0
    );

    assert_eq!(count(&client, "").await, 52);
    let failed = client
        .simple_query("SELECT nope FROM otel_logs_and_spans")
        .await;
    assert!(failed.is_err());
    let queried = scrape(&server);
    let ok = "timefusion_statements_total{protocol=\"extended\",outcome=\"ok\"}";
    let error = "timefusion_statements_total{protocol=\"simple\",outcome=\"error\"}";
    assert!(series(&queried, ok) >= 1.0, "{queried}");
    assert_eq!(series(&queried, error), 1.0);
    let seconds = |outcome: &str| {
        let name = format!(
            "timefusion_statement_seconds_count{{protocol=\"simple\",outcome=\"{outcome}\"}}"
        );
        series(&queried, &name)
    };
    assert!(seconds("ok") >= 1.0, "{queried}");
    assert_eq!(seconds("error"), 1.0);
    // Every statement logged its duration (the threshold is 0 here). The line reaches this
    // process through the server's stderr pipe, so it may land after the client's answer.
    let line = "statement: SELECT nope FROM otel_logs_and_spans";
    eventually(
        std::time::Duration::from_secs(10),
        "the log line",
        || async { server.logged(line) >= 1 },
    )
    .await;
    assert_eq!(server.logged(line), 1);
}

#[tokio::test]
async fn ready_is_503_until_the_wal_is_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    for batch in 0..10 {
        let ids = ids(&format!("w{batch}"), 10_000);
        client
            .batch_execute(&insert_sql("p1", &ids, past_micros(0)))
            .await
            .expect("insert");
    }
    server.kill9();

    // Restart on a known HTTP port and ask while it replays 100,000 rows.
    let port = free_port();
    let data_dir = dir.path().to_path_buf();
    let starting = std::thread::spawn(move || {
        TestServer::start(&data_dir, &[("TIMEFUSION_HTTP_PORT", &port.to_string())])
    });
    let mut answers = Vec::new();
    while !starting.is_finished() {
        if let Some(answer) = http_get(port, "/ready") {
            answers.push(answer);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let server = starting.join().expect("started");
    assert!(
        answers
            .iter()
            .any(|(status, body)| *status == 503 && body.contains("the WAL is being replayed")),
        "{answers:?}"
    );
    // Once ready, it stays ready.
    if let Some(first) = answers.iter().position(|(status, _)| *status == 200) {
        assert!(answers[first..].iter().all(|(status, _)| *status == 200));
    }
    assert_eq!(http_get(port, "/ready").expect("up").0, 200);
    assert_eq!(count(&server.client().await, "").await, 100_000);
}
