//! S3 goes away while rows keep arriving: inserts are still acknowledged from the WAL, queries
//! over buffered rows still answer, and once S3 is back every acknowledged row reaches the
//! bucket exactly once. It stops and restarts its own S3 server, which no other test uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::seaweed::Seaweed;
use crate::common::*;

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
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let client = server.client().await;
    eventually(Duration::from_secs(30), "a first flush", || async {
        let acked_now = *acked.lock();
        acked_now > 0 && count(&client, "").await >= acked_now
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    weed.stop();
    let during = *acked.lock();
    tokio::time::sleep(Duration::from_secs(4)).await;
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
    tokio::time::sleep(Duration::from_secs(2)).await;
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
