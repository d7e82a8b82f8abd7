//! TimeFusion against a real S3 server (SeaweedFS run as a process): tables in the bucket,
//! read by other Delta readers; atomic commits; the Foyer cache in front of the bucket.

use std::process::Command;
use std::time::Duration;

use crate::common::seaweed::Seaweed;
use crate::common::*;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions};

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn cache_stats(client: &tokio_postgres::Client) -> (i64, i64, i64) {
    let row = client
        .query_one("SELECT hits, misses, store_gets FROM timefusion_cache", &[])
        .await
        .expect("timefusion_cache");
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn tables_live_in_the_bucket_and_delta_rs_reads_them() {
    let weed = Seaweed::start("tf-e2e").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = weed.env("e2e");
    env.push(("TIMEFUSION_FLUSH_INTERVAL_SECS".into(), "1".into()));
    let server = TestServer::start(dir.path(), &refs(&env));
    let client = server.client().await;
    client
        .execute(&insert_sql("p1", &ids("s3a", 30), past_micros(1)), &[])
        .await
        .expect("insert");
    client
        .execute(&insert_sql("p2", &ids("s3b", 12), past_micros(2)), &[])
        .await
        .expect("insert");
    assert_eq!(count(&client, "").await, 42, "visible at once");
    eventually(
        Duration::from_secs(60),
        "a flush commit in the bucket",
        || async {
            weed.log_versions("e2e")
                .await
                .iter()
                .any(|n| n == "00000000000000000001.json")
        },
    )
    .await;
    assert_eq!(count(&client, "").await, 42, "exactly once after the flush");
    assert!(
        !dir.path().join("tables").exists(),
        "with a bucket, nothing is written to the local tables folder"
    );

    // Another Delta reader, straight from the bucket.
    let python = python();
    let options: String = weed
        .delta_options()
        .iter()
        .map(|(k, v)| format!("{k:?}: {v:?}, "))
        .collect();
    let script = format!(
        "import os\nfrom deltalake import DeltaTable\nt = DeltaTable('s3://{}/e2e/{TABLE}', storage_options={{{options}}})\nprint(t.to_pyarrow_table().num_rows, flush=True)\nos._exit(0)\n",
        weed.bucket
    );
    let out = Command::new(&python)
        .args(["-c", &script])
        .output()
        .expect("run python (scripts/test-deps.sh installs deltalake)");
    assert!(
        out.status.success(),
        "python deltalake failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // Restart: recovery reads the txn version from the bucket and replays nothing twice.
    drop(client);
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &refs(&env));
    let client = server.client().await;
    assert_eq!(count(&client, "").await, 42);
    assert_eq!(count(&client, "WHERE project_id = 'p2'").await, 12);
}

#[tokio::test]
async fn commit_files_are_put_if_absent() {
    let weed = Seaweed::start("tf-atomic").await;
    let store = weed.store();
    let path = Path::from("t/_delta_log/00000000000000000001.json");
    let create = || PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&path, bytes::Bytes::from_static(b"first").into(), create())
        .await
        .expect("first writer wins");
    let second = store
        .put_opts(&path, bytes::Bytes::from_static(b"second").into(), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "second writer of one version must lose: {second:?}"
    );
    let kept = store
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(&kept[..], b"first");
}

#[tokio::test]
async fn concurrent_flushes_from_two_servers_keep_every_row() {
    // Two servers (two WALs) writing one table in the bucket race for commit versions; the
    // put-if-absent commit makes one retry, so no commit overwrites another.
    let weed = Seaweed::start("tf-race").await;
    let env = {
        let mut env = weed.env("race");
        env.push(("TIMEFUSION_FLUSH_INTERVAL_SECS".into(), "1".into()));
        env
    };
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = TestServer::start(dir_a.path(), &refs(&env));
    let b = TestServer::start(dir_b.path(), &refs(&env));
    let (ca, cb) = (a.client().await, b.client().await);
    for round in 0..5 {
        let next = weed.log_versions("race").await.len() as u64;
        let sql_a = insert_sql("pa", &ids(&format!("a{round}"), 20), past_micros(1));
        let sql_b = insert_sql("pb", &ids(&format!("b{round}"), 20), past_micros(1));
        let (ra, rb) = tokio::join!(ca.execute(&sql_a, &[]), cb.execute(&sql_b, &[]));
        ra.expect("insert a");
        rb.expect("insert b");
        // Both servers commit this round's rows before the next round: five rounds of two
        // flush commits for the same next versions.
        eventually(
            Duration::from_secs(60),
            "a flush commit of each server",
            || async { weed.committers("race", next).await.len() == 2 },
        )
        .await;
    }
    drop((ca, cb));
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let versions = weed.log_versions("race").await;
    let reader = TestServer::start(tempfile::tempdir().expect("c").path(), &refs(&env));
    let client = reader.client().await;
    assert_eq!(
        count(&client, "").await,
        200,
        "every row of both writers, once (log: {versions:?})"
    );
    assert_eq!(count(&client, "WHERE project_id = 'pa'").await, 100);
}

#[tokio::test]
async fn repeated_queries_are_served_from_the_cache_which_survives_restarts() {
    let weed = Seaweed::start("tf-cache").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = weed.env("cache");
    let server = TestServer::start(dir.path(), &refs(&env));
    let client = server.client().await;
    for (project, n) in [("p1", 300), ("p2", 120)] {
        client
            .execute(&insert_sql(project, &ids(project, n), past_micros(1)), &[])
            .await
            .expect("insert");
    }
    drop(client);
    assert!(
        server.terminate().success(),
        "shutdown flushes to the bucket"
    );

    let query = format!(
        "SELECT project_id, count(*), sum(duration), max(name) FROM {TABLE} GROUP BY project_id ORDER BY project_id"
    );
    let server = TestServer::start(dir.path(), &refs(&env));
    let client = server.client().await;
    let before = cache_stats(&client).await;
    let first = client.query(&query, &[]).await.expect("first run");
    let after_first = cache_stats(&client).await;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].get::<_, i64>(1), 300);
    assert!(
        after_first.2 > before.2 && after_first.1 > before.1,
        "a cold query reads the bucket: {before:?} -> {after_first:?}"
    );
    let second = client.query(&query, &[]).await.expect("second run");
    let after_second = cache_stats(&client).await;
    assert_eq!(
        first.iter().map(|r| r.get::<_, i64>(1)).collect::<Vec<_>>(),
        second
            .iter()
            .map(|r| r.get::<_, i64>(1))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        after_second.2, after_first.2,
        "a warm query sends no request to the store: {after_first:?} -> {after_second:?}"
    );
    assert!(
        after_second.0 > after_first.0,
        "it is answered by cache hits"
    );
    drop(client);
    assert!(server.terminate().success());

    // The disk tier survives a restart: the same query is served without reading the
    // Parquet files from the bucket again.
    let server = TestServer::start(dir.path(), &refs(&env));
    let client = server.client().await;
    let before = cache_stats(&client).await;
    let third = client.query(&query, &[]).await.expect("after restart");
    let after = cache_stats(&client).await;
    assert_eq!(third.len(), 2);
    assert_eq!(
        after.2, before.2,
        "after a restart the disk tier answers: {before:?} -> {after:?}"
    );
    assert!(after.0 > before.0);
}
