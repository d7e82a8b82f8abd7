//! S3 goes away while rows keep arriving: inserts are still acknowledged from the WAL, queries
//! over buffered rows still answer, and once S3 is back every acknowledged row reaches the
//! bucket exactly once. It stops and restarts its own S3 server, which no other test uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::seaweed::Seaweed;
use crate::common::*;

/// What the server's flusher logs when a flush fails (and will be retried).
const FLUSH_FAILED: &str = "flush failed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_survive_an_s3_outage_exactly_once() {
    let mut weed = Seaweed::start("tf-outage").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = weed.env("outage");
    env.push(("TIMEFUSION_FLUSH_INTERVAL_SECS".into(), "1".into()));
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = TestServer::start(dir.path(), &refs);

    // A writer inserts 10-row statements (sealed buckets, so the flusher takes them) until told
    // to stop, and records every acknowledged statement.
    let acked = shared(0i64);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, port) = (acked.clone(), stop.clone(), server.port);
        tokio::spawn(async move {
            let client = connect(port).await;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let project = if i % 2 == 0 { "up" } else { "down" };
                let sql = insert_sql(project, &ids(&format!("o{i}"), 10), past_micros(1));
                client
                    .execute(&sql, &[])
                    .await
                    .expect("insert acknowledged");
                *acked.lock() += 10;
                i += 1;
                // Pacing, not waiting: a steady stream of inserts across the outage.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let client = server.client().await;
    // Version 0 is the table's creation; version 1, the first flush.
    eventually(Duration::from_secs(60), "a first flush commit", || async {
        weed.log_versions("outage").await.len() > 1
    })
    .await;

    weed.stop();
    let during = *acked.lock();
    // The outage lasts until two flushes have failed against it (the second one, after the
    // flusher's backoff, first tries to settle the failed one) and more inserts were
    // acknowledged meanwhile.
    let failed = server.logged(FLUSH_FAILED);
    eventually(
        Duration::from_secs(60),
        "two failed flushes and acknowledged inserts while S3 is down",
        || async { server.logged(FLUSH_FAILED) >= failed + 2 && *acked.lock() > during },
    )
    .await;
    let later = *acked.lock();
    assert!(
        later > during,
        "inserts are acknowledged while S3 is down ({during} -> {later})"
    );
    // Rows of a project that exists only in the buffer are answered without the store.
    client
        .execute(
            &insert_sql("only-buffered", &ids("ob", 7), past_micros(1)),
            &[],
        )
        .await
        .expect("insert during the outage");
    *acked.lock() += 7;
    assert_eq!(
        count(&client, "WHERE project_id = 'only-buffered'").await,
        7,
        "a query over buffered rows answers during the outage"
    );

    weed.restart().await;
    let committed = weed.log_versions("outage").await.len();
    eventually(
        Duration::from_secs(120),
        "a flush commit once S3 is back, with the writer still running",
        || async { weed.log_versions("outage").await.len() > committed },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let total = *acked.lock();
    assert_eq!(
        count(&client, "").await,
        total,
        "nothing lost or doubled live"
    );

    drop(client);
    assert!(
        server.terminate().success(),
        "final flush succeeds once S3 is back"
    );
    // A fresh server with an empty WAL sees only what is in the bucket.
    let reader_dir = tempfile::tempdir().expect("reader");
    let reader = TestServer::start(reader_dir.path(), &refs);
    let client = reader.client().await;
    assert_eq!(
        count(&client, "").await,
        total,
        "every acknowledged row is in S3"
    );
    let distinct: i64 = client
        .query_one(&format!("SELECT count(DISTINCT id) FROM {TABLE}"), &[])
        .await
        .expect("distinct")
        .get(0);
    assert_eq!(distinct, total, "and none twice");
}
