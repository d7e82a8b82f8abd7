//! Crash recovery: insert from several connections, `kill -9` the server at random points
//! (several rounds, flushes running), restart, and check that every acknowledged row is
//! there exactly once and that no row at all is duplicated.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use rand::Rng;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_row_and_duplicates_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1"),
        ("TIMEFUSION_WAL_SEGMENT_MB", "1"),
    ];
    let acked = shared(HashSet::<String>::new());
    let mut rng = rand::rng();
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let server = TestServer::start(dir.path(), &env);
        let port = server.port;
        let mut writers = Vec::new();
        for w in 0..4 {
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                let client = connect(port).await;
                for s in 0.. {
                    let batch = ids(&format!("r{round}-w{w}-s{s}"), 10);
                    let when = if s % 2 == 0 {
                        chrono::Utc::now().timestamp_micros()
                    } else {
                        past_micros(1 + s % 3)
                    };
                    match client
                        .execute(&insert_sql(&format!("p{w}"), &batch, when), &[])
                        .await
                    {
                        Ok(10) => acked.lock().extend(batch),
                        Ok(n) => panic!("insert acknowledged {n} of 10 rows"),
                        Err(_) => return, // the server died under us: not acknowledged
                    }
                }
            }));
        }
        let delay = rng.random_range(300..2500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill9();
        for w in writers {
            w.await.expect("writer");
        }

        let server = TestServer::start(dir.path(), &env);
        let client = server.client().await;
        let rows = client
            .query(&format!("SELECT id FROM {TABLE}"), &[])
            .await
            .expect("select ids");
        let mut seen = HashSet::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(0);
            assert!(
                seen.insert(id.clone()),
                "round {round}: row {id} is duplicated after recovery"
            );
        }
        let acked = acked.lock().clone();
        let in_delta = delta_rows(dir.path()).await;
        eprintln!(
            "round {round}: killed after {delay} ms; {} rows acknowledged so far, {} recovered, {in_delta} in Delta",
            acked.len(),
            seen.len()
        );
        let missing: Vec<_> = acked.difference(&seen).take(5).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged rows lost: {missing:?} (of {})",
            acked.len()
        );
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged; the test proves nothing"
        );
        drop(client);
        server.kill9();
    }
}
