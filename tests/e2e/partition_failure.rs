//! One partition that cannot be written never stops the others: the flush commits every
//! partition it could write, carries the failing one's rows in the WAL (still readable, still
//! exactly once across kill -9), retries it at each flush, and after
//! `TIMEFUSION_FLUSH_PARTITION_ATTEMPTS` moves its rows to `<data>/quarantine`.
//!
//! The failure is real, not mocked: a regular file where the partition's folder must go
//! (`project_id=blocked`), so the local store cannot create the partition's Parquet file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};

use crate::common::*;

const FAST_FLUSH: (&str, &str) = ("TIMEFUSION_FLUSH_INTERVAL_SECS", "1");

/// The file that takes the place of `project`'s partition folder.
fn blocker(data_dir: &Path, project: &str) -> PathBuf {
    data_dir
        .join("tables")
        .join(TABLE)
        .join(format!("project_id={project}"))
}

/// Runs a server whose partition `blocked` cannot be written: `good` keeps flushing, and
/// every row stays readable exactly once, across a kill -9, until the partition can be
/// written again. Returns the data folder, every row flushed and the server stopped.
pub async fn carried_then_recovered() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    // The server creates the table; the blocker goes in before any flush.
    let server = TestServer::start(dir.path(), &[FAST_FLUSH]);
    std::fs::write(blocker(dir.path(), "blocked"), b"not a folder").expect("blocker");
    let client = server.client().await;
    let yesterday = past_micros(1);
    client
        .batch_execute(&insert_sql("blocked", &ids("b", 40), yesterday))
        .await
        .expect("insert");
    client
        .batch_execute(&insert_sql("good", &ids("g", 60), yesterday))
        .await
        .expect("insert");
    eventually(Duration::from_secs(60), "good's rows in Delta", || async {
        delta_rows(dir.path()).await == 60
    })
    .await;
    assert!(server.logged("a partition failed to flush") >= 1);
    assert_eq!(
        count(&client, "").await,
        100,
        "blocked's rows stay readable"
    );
    assert_eq!(count(&client, "WHERE project_id = 'blocked'").await, 40);

    // Later flushes go on for every other partition, and the failing one is retried.
    client
        .batch_execute(&insert_sql("good", &ids("g2", 10), yesterday + 1_000))
        .await
        .expect("insert");
    eventually(
        Duration::from_secs(60),
        "good's later rows in Delta",
        || async { delta_rows(dir.path()).await == 70 },
    )
    .await;
    eventually(Duration::from_secs(30), "a retry", || async {
        server.logged("a partition failed to flush") >= 2
    })
    .await;
    drop(client);
    // A crash now: the carried rows come back from the WAL, once, and the flushed ones do not.
    server.kill9();
    let server = TestServer::start(dir.path(), &[FAST_FLUSH]);
    let client = server.client().await;
    assert_eq!(count(&client, "").await, 110);
    assert_eq!(count(&client, "WHERE project_id = 'blocked'").await, 40);
    assert_eq!(
        count(&client, "WHERE project_id = 'good'").await,
        70,
        "no flushed row replayed"
    );

    // The partition can be written again: its rows flush, once.
    std::fs::remove_file(blocker(dir.path(), "blocked")).expect("remove the blocker");
    eventually(
        Duration::from_secs(60),
        "blocked's rows in Delta",
        || async { delta_rows(dir.path()).await == 110 },
    )
    .await;
    assert_eq!(
        delta_count(dir.path(), "WHERE project_id = 'blocked'").await,
        40
    );
    assert_eq!(count(&client, "").await, 110);
    drop(client);
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(count(&client, "").await, 110, "nothing replayed twice");
    drop(client);
    assert!(server.terminate().success());
    assert!(
        !dir.path().join("quarantine").exists(),
        "nothing was quarantined"
    );
    dir
}

#[tokio::test]
async fn a_partition_that_cannot_be_written_does_not_stop_the_others() {
    carried_then_recovered().await;
}

#[tokio::test]
async fn a_partition_failing_past_its_attempts_is_quarantined_and_the_rest_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [FAST_FLUSH, ("TIMEFUSION_FLUSH_PARTITION_ATTEMPTS", "2")];
    let server = TestServer::start(dir.path(), &env);
    std::fs::write(blocker(dir.path(), "blocked"), b"not a folder").expect("blocker");
    let client = server.client().await;
    let yesterday = past_micros(1);
    client
        .batch_execute(&insert_sql("blocked", &ids("b", 5), yesterday))
        .await
        .expect("insert");
    // Each attempt counts only when another partition is written in the same flush (a
    // failure of every partition is the store's, not the partition's).
    for round in 0..2 {
        let expected = 10 * (round + 1);
        client
            .batch_execute(&insert_sql(
                "good",
                &ids(&format!("g{round}"), 10),
                yesterday + round as i64,
            ))
            .await
            .expect("insert");
        eventually(Duration::from_secs(60), "good's rows in Delta", || async {
            delta_rows(dir.path()).await == expected
        })
        .await;
    }
    eventually(Duration::from_secs(30), "the quarantine", || async {
        server.logged("rows were moved to the quarantine") == 1
    })
    .await;
    assert_eq!(count(&client, "WHERE project_id = 'blocked'").await, 0);
    assert_eq!(count(&client, "").await, 20);
    let files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("quarantine"))
        .expect("the quarantine folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = std::fs::File::open(&files[0]).expect("open");
    let reader = arrow::ipc::reader::FileReader::try_new(file, None).expect("Arrow IPC file");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let mut quarantined: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let id = b.column_by_name("id").expect("id");
            let id = id.as_any().downcast_ref::<StringArray>().expect("utf8");
            id.iter().flatten().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    quarantined.sort();
    assert_eq!(quarantined, ids("b", 5));
    let metrics = http_get(server.http_port, "/metrics").expect("metrics").1;
    assert!(
        metrics.contains("timefusion_quarantined_rows_total 5"),
        "{metrics}"
    );
    // Restarting replays nothing of it: the commit that quarantined it covers its records.
    drop(client);
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(count(&client, "").await, 20);
    assert_eq!(delta_rows(dir.path()).await, 20);
}
