//! No statement takes the server down: inputs that once overflowed a stack or never finished
//! (a 100,000-term `1+1+…`, a 100,000-value `IN`, a 1,000-deep `ARRAY[ARRAY[…]]`) get an
//! answer or SQLSTATE 54001 on both protocols, and the server answers the next statement on
//! the same connection and on others.

use tokio_postgres::SimpleQueryMessage;

use crate::common::*;

async fn select_one(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT 1::bigint", &[])
        .await
        .expect("the server still answers")
        .get(0)
}

/// The first value of the first row of a simple query.
async fn simple_value(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.expect("answered");
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("one row")
}

#[tokio::test]
async fn deep_and_huge_statements_get_an_answer_or_54001_and_the_server_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let other = server.client().await;
    let chain = |n: usize| format!("SELECT {}", vec!["1"; n].join("+"));
    let arrays = |n: usize| format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n));
    let refused = [
        chain(100_000),
        arrays(1_000),
        format!("SELECT {}1{}", "abs(".repeat(40), ")".repeat(40)),
        format!("SELECT {}1{}", "(SELECT ".repeat(30), ")".repeat(30)),
        // A cast to a type of 200,000 array dimensions overflowed the stack of the thread
        // that parsed it and took the server down, literal INSERT or SELECT alike.
        format!(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, hashes) VALUES ('p', now(), 'i', '{{a}}'::text{})",
            "[]".repeat(200_000)
        ),
        format!("SELECT '{{a}}'::text{}", "[]".repeat(200_000)),
        format!("SELECT '{{a}}'::text{}", "[1]".repeat(200_000)),
    ];
    for sql in &refused {
        let head = &sql[..30];
        assert_eq!(outcome(client.simple_query(sql).await), "54001", "{head}");
        assert_eq!(outcome(client.prepare(sql).await), "54001", "{head}");
        assert_eq!(select_one(&client).await, 1, "{head}");
        assert_eq!(select_one(&other).await, 1, "{head}");
    }
    // Just inside the limits: answered.
    assert_eq!(simple_value(&client, &chain(900)).await, "900");
    let nested_calls = format!("SELECT {}-1{}", "abs(".repeat(16), ")".repeat(16));
    assert_eq!(simple_value(&client, &nested_calls).await, "1");

    // A 64 MiB statement is answered (TIMEFUSION_MAX_MESSAGE_MB is 128).
    let big = format!("SELECT length('{}')", "x".repeat(64 << 20));
    assert_eq!(simple_value(&client, &big).await, (64 << 20).to_string());

    // Long lists are not deep: 100,000 values in IN, 10,000 rows of VALUES.
    let projects: Vec<String> = (0..100_000).map(|i| format!("'p{i}'")).collect();
    let in_list = format!(
        "SELECT count(*) FROM otel_logs_and_spans WHERE project_id IN ({})",
        projects.join(",")
    );
    assert_eq!(simple_value(&client, &in_list).await, "0");
    let ids = ids("v", 10_000);
    client
        .batch_execute(&insert_sql("p7", &ids, past_micros(0)))
        .await
        .expect("a 10,000-row VALUES");
    assert_eq!(simple_value(&client, &in_list).await, "10000");
    // A long OR reaches the Delta scan's filter translation too.
    let ors: Vec<String> = (0..300).map(|i| format!("id = 'v-{i}'")).collect();
    let or_chain = format!(
        "SELECT count(*) FROM otel_logs_and_spans WHERE {}",
        ors.join(" OR ")
    );
    assert_eq!(simple_value(&client, &or_chain).await, "300");
    assert_eq!(select_one(&other).await, 1);
}

#[tokio::test]
async fn a_panic_ends_one_statement_not_the_connection_or_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let other = server.client().await;
    client
        .batch_execute(&insert_sql("p1", &ids("r", 20), past_micros(0)))
        .await
        .expect("insert");
    let statements = [
        // Panics while planning (constant folding), then while running over rows.
        (
            "SELECT timefusion_test_panic(7)",
            "timefusion_test_panic(7)",
        ),
        (
            "SELECT timefusion_test_panic(duration) FROM otel_logs_and_spans",
            "timefusion_test_panic(",
        ),
    ];
    for (sql, message) in statements {
        for protocol in ["simple", "extended"] {
            let result = if protocol == "simple" {
                client.simple_query(sql).await.map(|_| ())
            } else {
                client.query(sql, &[]).await.map(|_| ())
            };
            let error = result.expect_err("the statement fails");
            let error = error
                .as_db_error()
                .expect("an error response, not a lost connection");
            assert_eq!(error.code().code(), "XX000", "{sql} ({protocol})");
            assert!(error.message().contains(message), "{}", error.message());
            assert_eq!(select_one(&client).await, 1, "same connection after {sql}");
            assert_eq!(select_one(&other).await, 1, "other connection after {sql}");
        }
    }
    // Inside a transaction block the panic fails the block, as any error does.
    client.batch_execute("BEGIN").await.expect("begin");
    let failed = client.simple_query("SELECT timefusion_test_panic(1)").await;
    assert_eq!(outcome(failed), "XX000");
    assert_eq!(
        outcome(client.simple_query("SELECT 1").await),
        "25P02",
        "the block is aborted"
    );
    client.batch_execute("ROLLBACK").await.expect("rollback");
    assert_eq!(select_one(&client).await, 1);
    // Logged once per panic, with where it happened.
    assert!(server.logged("panicked at src/sql/functions/mod.rs") >= 4);
    assert_eq!(count(&other, "").await, 20, "nothing written was lost");
}

#[tokio::test]
async fn a_query_that_does_not_fit_the_memory_pool_fails_alone_with_53200() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_QUERY_MEMORY_MB", "2")]);
    let client = server.client().await;
    for batch in 0..4 {
        let ids = ids(&format!("m{batch}"), 10_000);
        client
            .batch_execute(&insert_sql("p1", &ids, past_micros(0)))
            .await
            .expect("insert");
    }
    // Queries that need little working memory run as usual.
    let found = client
        .query(
            "SELECT id FROM otel_logs_and_spans WHERE id = 'm3-9999'",
            &[],
        )
        .await
        .expect("a filter fits");
    assert_eq!(found.len(), 1);
    // A hash join's build side cannot spill: past the pool the query gets 53200 (in 2 MiB so
    // would a sort, whose merge reserves 10 MiB up front, or a top-k), and the server goes on.
    let joined = client
        .simple_query(
            "SELECT count(*) FROM otel_logs_and_spans a JOIN otel_logs_and_spans b \
             ON a.body = b.body AND a.id = b.id",
        )
        .await;
    assert_eq!(outcome(joined), "53200");
    assert_eq!(select_one(&client).await, 1);
    assert_eq!(count(&server.client().await, "").await, 40_000);
}

#[tokio::test]
async fn a_query_over_its_share_of_the_process_budget_fails_alone_while_ingest_goes_on() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    // Queries get 20% of the budget: 51 MiB.
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_MEMORY_LIMIT_MB", "256")]);
    let writer = server.client().await;
    let failed = std::sync::Arc::new(AtomicBool::new(false));
    let (started, running) = tokio::sync::oneshot::channel();
    let ingest = tokio::spawn({
        let failed = failed.clone();
        async move {
            let mut started = Some(started);
            let mut batches = 0;
            // Writes before, during and after the query, until it has failed and a few more.
            let mut after = 0;
            while after < 5 {
                let ids = ids(&format!("w{batches}"), 1_000);
                writer
                    .batch_execute(&insert_sql("p1", &ids, past_micros(0)))
                    .await
                    .expect("ingest goes on while the query fails");
                batches += 1;
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
                if failed.load(Ordering::Acquire) {
                    after += 1;
                }
            }
            (writer, batches)
        }
    });
    running.await.expect("ingest started");
    let client = server.client().await;
    // An aggregate without groups cannot spill: 30 M values in one array need far more.
    let gathered = client
        .simple_query("SELECT cardinality(array_agg(x)) FROM generate_series(1, 30000000) AS t(x)")
        .await;
    failed.store(true, Ordering::Release);
    assert_eq!(outcome(gathered), "53200");
    let usage = simple_value(
        &client,
        "SELECT limit_bytes FROM timefusion_memory WHERE consumer = 'query'",
    )
    .await;
    assert_eq!(usage, ((256u64 << 20) / 100 * 20).to_string());
    let (writer, batches) = ingest.await.expect("ingest task");
    assert_eq!(select_one(&client).await, 1);
    assert_eq!(
        count(&writer, "").await,
        batches * 1_000,
        "every insert landed"
    );
}

#[tokio::test]
async fn the_parquet_metadata_cache_is_a_share_of_the_budget_and_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = [("TIMEFUSION_MEMORY_LIMIT_MB", "256")];
    let server = TestServer::start(dir.path(), &budget);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p1", &ids("m", 1_000), past_micros(1)))
        .await
        .expect("insert");
    // A clean stop flushes every buffered row to Parquet.
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &budget);
    let client = server.client().await;
    let metadata = "SELECT used_bytes FROM timefusion_memory WHERE consumer = 'parquet_metadata'";
    let before = simple_value(&client, metadata).await;
    // A filter on a column: the rows are read (a bare count is answered from Delta's stats).
    assert_eq!(count(&client, "WHERE id LIKE 'm%'").await, 1_000);
    let after = simple_value(&client, metadata).await;
    assert_eq!(before, "0", "nothing read yet");
    let used: u64 = after.parse().expect("bytes");
    assert!(used > 0, "the file's footer is cached");
    let limit = simple_value(
        &client,
        "SELECT limit_bytes FROM timefusion_memory WHERE consumer = 'parquet_metadata'",
    )
    .await;
    assert_eq!(limit, ((256u64 << 20) / 100 * 5).to_string());
}

#[tokio::test]
async fn garbage_on_the_wire_closes_only_its_connection() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/pgwire_messages");
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("file"))
        .collect();
    // Frames whose declared length runs past what follows, and random mutations.
    inputs.push(b"\0\0\0\x08\x04\xd2\x16\x2fB\0\0\0?\0\x03\0\0user\0".to_vec());
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    for i in 0..200 {
        let mut input = inputs[i % inputs.len()].clone();
        for _ in 0..rng.random_range(1..8) {
            let at = rng.random_range(0..input.len());
            input[at] = rng.random();
        }
        if let Ok(mut socket) = std::net::TcpStream::connect(("127.0.0.1", server.port)) {
            let _ = socket.write_all(&input);
        }
    }
    assert_eq!(select_one(&client).await, 1, "the open connection");
    assert_eq!(
        select_one(&server.client().await).await,
        1,
        "a new connection"
    );
}

/// What a new connection gets: `"ok"` or the SQLSTATE it was refused with.
async fn connect_outcome(port: u16) -> String {
    match tokio_postgres::connect(&pg_config(port), tokio_postgres::NoTls).await {
        Ok((_client, _connection)) => "ok".into(),
        Err(e) => sqlstate(&e),
    }
}

#[tokio::test]
async fn connections_and_messages_past_their_limits_get_a_fatal_error_and_cancel_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_MAX_CONNECTIONS", "2"),
            ("TIMEFUSION_MAX_MESSAGE_MB", "1"),
        ],
    );
    let first = server.client().await;
    let second = server.client().await;
    assert_eq!(connect_outcome(server.port).await, "53300");

    // A cancel request is a connection of its own: served although the server is full.
    let cancel = second.cancel_token();
    let running = tokio::spawn(async move {
        let result = second
            .query_one("SELECT count(*) FROM generate_series(1, 10000000000)", &[])
            .await;
        (second, result)
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    let (second, result) = tokio::time::timeout(std::time::Duration::from_secs(60), running)
        .await
        .expect("the cancel request stopped the query")
        .expect("task");
    assert_eq!(outcome(result), "57014");

    // Just under the message limit: answered. Over it: FATAL 54000 before the body is read.
    let text = "x".repeat(1_000_000);
    assert_eq!(
        simple_value(&first, &format!("SELECT length('{text}')")).await,
        "1000000"
    );
    let huge = format!("SELECT length('{}')", "x".repeat(2 << 20));
    assert_eq!(outcome(first.simple_query(&huge).await), "54000");
    assert!(first.is_closed() || first.simple_query("SELECT 1").await.is_err());
    assert_eq!(select_one(&second).await, 1, "the other session goes on");
    // The closed session's place is free again.
    eventually(
        std::time::Duration::from_secs(10),
        "a free slot",
        || async { connect_outcome(server.port).await == "ok" },
    )
    .await;
}

#[tokio::test]
async fn an_idle_session_past_its_timeout_is_ended_with_57p05_and_a_busy_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[("TIMEFUSION_IDLE_SESSION_TIMEOUT_SECS", "1")]);
    let (idle, connection) =
        tokio_postgres::connect(&pg_config(server.port), tokio_postgres::NoTls)
            .await
            .expect("connect");
    let ended = tokio::spawn(connection);
    let busy = server.client().await;
    for _ in 0..6 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(
            select_one(&busy).await,
            1,
            "a session that keeps talking stays"
        );
    }
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), ended)
        .await
        .expect("the idle session was ended")
        .expect("task");
    assert_eq!(outcome(ended), "57P05");
    assert!(idle.simple_query("SELECT 1").await.is_err());
}

#[tokio::test]
async fn a_statement_past_the_concurrency_cap_waits_then_gets_53000_and_inserts_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(
        dir.path(),
        &[
            ("TIMEFUSION_MAX_CONCURRENT_STATEMENTS", "1"),
            ("TIMEFUSION_STATEMENT_QUEUE_TIMEOUT_MS", "300"),
        ],
    );
    let busy = server.client().await;
    let other = server.client().await;
    let cancel = busy.cancel_token();
    // Holds the one slot until cancelled, also while its rows are being sent.
    let running = tokio::spawn(async move {
        busy.query_one("SELECT count(*) FROM generate_series(1, 10000000000)", &[])
            .await
    });
    eventually(
        std::time::Duration::from_secs(10),
        "the slot taken",
        || async {
            let (_, metrics) = http_get(server.http_port, "/metrics").expect("metrics");
            metrics
                .lines()
                .any(|l| l == "timefusion_statements_running 1")
        },
    )
    .await;
    assert_eq!(outcome(other.simple_query("SELECT 1").await), "53000");
    assert_eq!(
        outcome(other.query("SELECT $1::bigint", &[&1i64]).await),
        "53000"
    );
    // A literal INSERT takes no slot.
    other
        .batch_execute(&insert_sql("p1", &ids("cap", 3), past_micros(0)))
        .await
        .expect("a literal insert is not queued");

    cancel
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("cancel request sent");
    let cancelled = tokio::time::timeout(std::time::Duration::from_secs(60), running)
        .await
        .expect("stopped")
        .expect("task");
    assert_eq!(outcome(cancelled), "57014");
    // The slot came back with the cancelled statement.
    assert_eq!(count(&other, "WHERE id LIKE 'cap-%'").await, 3);
}

/// The message limit acts on the header: a client that declares 512 MiB and sends a few bytes
/// is answered at once, without the server waiting for (or buffering) the body.
#[test]
fn a_declared_length_past_the_limit_is_refused_before_the_body_arrives() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(
        dir.path(),
        &[
            ("PGWIRE_PASSWORD", ""),
            ("PGWIRE_INSECURE_NO_PASSWORD", "true"),
            ("TIMEFUSION_MAX_MESSAGE_MB", "1"),
        ],
    );
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("timeout");
    let body = b"\0\x03\0\0user\0postgres\0\0";
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend_from_slice(body);
    socket.write_all(&startup).expect("startup");
    // Up to ReadyForQuery ('Z', length 5, status).
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"Z\0\0\0\x05I") {
        socket.read_exact(&mut byte).expect("start-up answer");
        seen.push(byte[0]);
    }
    let mut query = b"Q".to_vec();
    query.extend_from_slice(&(512u32 << 20).to_be_bytes());
    query.extend_from_slice(b"SELECT '");
    socket.write_all(&query).expect("header");
    let mut answer = Vec::new();
    socket
        .read_to_end(&mut answer)
        .expect("an answer, then the end");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with('E'), "{answer}");
    assert!(answer.contains("C54000"), "{answer}");
    assert!(answer.contains("TIMEFUSION_MAX_MESSAGE_MB"), "{answer}");
}
